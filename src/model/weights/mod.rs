//! Model weights as plain Rust data, independent of libtorch: loading and saving Darknet
//! `.weights`, PyTorch-YOLOv3 state-dict `.pth` files and safetensors, all checked against
//! the layout the cfg expects.

mod darknet;
mod pickle;
mod pth;
mod st;

use super::cfg::{BlockKind, Cfg};
use super::graph::Graph;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A weights error; the message names the file and, where there is one, the tensor.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct WeightsError {
    pub file: PathBuf,
    pub message: String,
}

impl WeightsError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), message: message.into() }
    }
}

/// A dense float32 tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorF32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl TensorF32 {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn count_nonzero(&self) -> usize {
        self.data.iter().filter(|v| **v != 0.0).count()
    }
}

/// The file formats weights can be read from and written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    Darknet,
    Pth,
    Safetensors,
}

impl WeightsFormat {
    /// Picks the format from the file extension.
    pub fn from_path(path: &Path) -> Result<Self, WeightsError> {
        const EXPECTED: &str =
            "expected a file ending in .weights (Darknet), .pth/.pt (PyTorch state dict) or .safetensors";
        if path.is_dir() {
            return Err(WeightsError::new(path, format!("is a directory, not a weights file: {EXPECTED}")));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "weights" => Ok(Self::Darknet),
            "pth" | "pt" => Ok(Self::Pth),
            "safetensors" => Ok(Self::Safetensors),
            "" => Err(WeightsError::new(path, format!("the file name has no extension: {EXPECTED}"))),
            _ => Err(WeightsError::new(
                path,
                format!("unknown weights extension `.{ext}`: expected .weights (Darknet), .pth/.pt (PyTorch state dict) or .safetensors"),
            )),
        }
    }
}

impl fmt::Display for WeightsFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Darknet => "Darknet .weights",
            Self::Pth => "PyTorch state dict",
            Self::Safetensors => "safetensors",
        })
    }
}

/// The tensors of one convolution block as they appear in a state dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvKeys {
    pub block: usize,
    pub weight: String,
    /// Conv bias, present only without batch norm.
    pub bias: Option<String>,
    /// BN weight, bias, running mean, running var.
    pub bn: Option<[String; 4]>,
}

/// The `anchors` and `anchor_grid` buffers of one yolo head.
#[derive(Debug, Clone)]
pub struct AnchorBuffers {
    pub block: usize,
    pub anchors_key: String,
    pub grid_key: String,
    pub anchors: Vec<(f32, f32)>,
}

/// The parameter layout a cfg expects: every tensor key with its shape, in Darknet order.
#[derive(Debug, Clone)]
pub struct Layout {
    pub convs: Vec<ConvKeys>,
    /// (key, shape) in the order of the Darknet file.
    pub tensors: Vec<(String, Vec<usize>)>,
    /// Yolo anchor buffers PyTorch-YOLOv3 stores in its state dicts.
    pub anchor_buffers: Vec<AnchorBuffers>,
}

impl Layout {
    /// The keys of the convolution of cfg block `block`, if it is one.
    pub fn conv(&self, block: usize) -> Option<&ConvKeys> {
        self.convs.iter().find(|k| k.block == block)
    }

    /// The layout of `cfg`; input channels come from the graph.
    pub fn of(cfg: &Cfg, graph: &Graph) -> Self {
        let mut convs = Vec::new();
        let mut tensors = Vec::new();
        let mut anchor_buffers = Vec::new();
        for b in &cfg.blocks {
            let i = b.index;
            match &b.kind {
                BlockKind::Convolutional(c) => {
                    let cin = graph.nodes[i].input_shape[1];
                    let weight = format!("module_list.{i}.conv_{i}.weight");
                    let wshape = vec![c.filters, cin / c.groups, c.size, c.size];
                    let mut keys = ConvKeys { block: i, weight: weight.clone(), bias: None, bn: None };
                    if c.batch_normalize {
                        let p = format!("module_list.{i}.batch_norm_{i}");
                        // Darknet order: bias, weight, running mean, running var.
                        let bn = [
                            format!("{p}.weight"),
                            format!("{p}.bias"),
                            format!("{p}.running_mean"),
                            format!("{p}.running_var"),
                        ];
                        for k in [&bn[1], &bn[0], &bn[2], &bn[3]] {
                            tensors.push((k.clone(), vec![c.filters]));
                        }
                        keys.bn = Some(bn);
                    } else {
                        let bias = format!("module_list.{i}.conv_{i}.bias");
                        tensors.push((bias.clone(), vec![c.filters]));
                        keys.bias = Some(bias);
                    }
                    tensors.push((weight, wshape));
                    convs.push(keys);
                }
                BlockKind::Yolo(y) => anchor_buffers.push(AnchorBuffers {
                    block: i,
                    anchors_key: format!("module_list.{i}.yolo_{i}.anchors"),
                    grid_key: format!("module_list.{i}.yolo_{i}.anchor_grid"),
                    anchors: y.head_anchors(),
                }),
                _ => {}
            }
        }
        Layout { convs, tensors, anchor_buffers }
    }

    /// Total number of floats of all tensors (what a Darknet file holds after its header);
    /// saturates instead of overflowing (Graph::build keeps real layouts far below).
    pub fn float_count(&self) -> usize {
        self.tensors
            .iter()
            .map(|(_, s)| s.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
            .fold(0usize, |a, n| a.saturating_add(n))
    }

    /// Keys a state dict may carry that are buffers we neither need nor check.
    fn is_ignored_key(&self, key: &str) -> bool {
        key.ends_with(".num_batches_tracked")
            || self.anchor_buffers.iter().any(|b| key == b.anchors_key || key == b.grid_key)
    }
}

/// Every parameter tensor of a model, keyed by PyTorch-YOLOv3 state-dict names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    pub tensors: BTreeMap<String, TensorF32>,
}

impl Weights {
    /// Loads weights in the format given by the extension and checks them against `layout`.
    pub fn load(path: &Path, layout: &Layout) -> Result<Self, WeightsError> {
        let format = WeightsFormat::from_path(path)?;
        if format == WeightsFormat::Darknet {
            // Sized from the cfg: the file is read whole only when its size fits.
            return darknet::load(path, layout);
        }
        let bytes = std::fs::read(path).map_err(|e| WeightsError::new(path, format!("cannot read the file: {e}")))?;
        let raw = match format {
            WeightsFormat::Pth => pth::read(path, &bytes, layout)?,
            _ => st::read(path, &bytes, layout)?,
        };
        Self::from_named(path, raw, layout)
    }

    /// Saves in the format given by the extension.
    pub fn save(&self, path: &Path, layout: &Layout) -> Result<(), WeightsError> {
        let format = WeightsFormat::from_path(path)?;
        if format != WeightsFormat::Safetensors {
            // Darknet and .pth files are laid out by the cfg: every tensor must be there.
            self.check(layout).map_err(|m| WeightsError::new(path, format!("cannot save: {m}")))?;
        }
        let bytes = match format {
            WeightsFormat::Darknet => darknet::write(self, layout),
            WeightsFormat::Pth => pth::write(self, layout, path)?,
            WeightsFormat::Safetensors => st::write(self, path)?,
        };
        // Temporary file + rename: a kill never leaves a torn checkpoint (an existing one stays).
        crate::fsio::write_atomic(path, bytes)
            .map_err(|e| WeightsError::new(path, format!("cannot write the file: {}", e.source)))
    }

    /// Checks a name → tensor map against the layout: missing, extra and misshaped tensors
    /// are refused with their names and shapes.
    fn from_named(path: &Path, mut raw: BTreeMap<String, TensorF32>, layout: &Layout) -> Result<Self, WeightsError> {
        check_shapes(path, raw.iter().map(|(k, t)| (k.as_str(), t.shape.as_slice())), layout)?;
        let mut tensors = BTreeMap::new();
        for (key, _) in &layout.tensors {
            if let Some(t) = raw.remove(key) {
                tensors.insert(key.clone(), t);
            }
        }
        Ok(Self { tensors })
    }

    /// Checks that every tensor `layout` needs is present with its shape.
    pub fn check(&self, layout: &Layout) -> Result<(), String> {
        for (key, shape) in &layout.tensors {
            match self.tensors.get(key) {
                None => return Err(format!("tensor `{key}` {shape:?} is missing")),
                Some(t) if &t.shape != shape => {
                    return Err(format!("tensor `{key}` has shape {:?}, the cfg expects {shape:?}", t.shape))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The tensor under `key`; panics only on a programming error (keys come from a Layout).
    pub fn get(&self, key: &str) -> &TensorF32 {
        self.tensors.get(key).unwrap_or_else(|| panic!("weights have no tensor `{key}`"))
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut TensorF32> {
        self.tensors.get_mut(key)
    }

    /// Fresh weights for `layout`, as PyTorch initialises the modules: conv weight and bias
    /// uniform in ±1/sqrt(fan_in) (kaiming_uniform with a=√5), BN weight 1, bias 0, running
    /// mean 0, running var 1. Deterministic for a seed.
    pub fn initialize(layout: &Layout, seed: u64) -> Self {
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        let mut uniform = move || {
            // splitmix64 -> [0, 1)
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut tensors = BTreeMap::new();
        for c in &layout.convs {
            let shape = layout.tensors.iter().find(|(k, _)| *k == c.weight).map(|(_, s)| s.clone()).unwrap_or_default();
            let fan_in: usize = shape[1..].iter().product();
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            let mut draw = |n: usize| (0..n).map(|_| ((2.0 * uniform() - 1.0) * bound) as f32).collect::<Vec<f32>>();
            let filters = shape[0];
            tensors.insert(c.weight.clone(), TensorF32::new(shape.clone(), draw(shape.iter().product())));
            if let Some(b) = &c.bias {
                tensors.insert(b.clone(), TensorF32::new(vec![filters], draw(filters)));
            }
            if let Some([w, b, mean, var]) = &c.bn {
                tensors.insert(w.clone(), TensorF32::new(vec![filters], vec![1.0; filters]));
                tensors.insert(b.clone(), TensorF32::new(vec![filters], vec![0.0; filters]));
                tensors.insert(mean.clone(), TensorF32::new(vec![filters], vec![0.0; filters]));
                tensors.insert(var.clone(), TensorF32::new(vec![filters], vec![1.0; filters]));
            }
        }
        Self { tensors }
    }

    /// The tensors of one convolution (weight, bias, BN), or the first key missing.
    pub fn of_layer(&self, keys: &ConvKeys) -> Result<Weights, String> {
        let mut w = Weights::default();
        for k in std::iter::once(&keys.weight).chain(keys.bias.iter()).chain(keys.bn.iter().flatten()) {
            let t = self.tensors.get(k).ok_or_else(|| format!("no tensor {k}"))?;
            w.tensors.insert(k.clone(), t.clone());
        }
        Ok(w)
    }

    /// Non-zero parameters in total (what a pruned model really keeps).
    pub fn count_nonzero(&self) -> usize {
        self.tensors.iter().filter(|(k, _)| !is_buffer(k)).map(|(_, t)| t.count_nonzero()).sum()
    }
}

/// Checks the names and shapes a file declares against the layout, before any tensor data is
/// read (so that a shape in a file never decides an allocation): misshaped, missing and extra
/// tensors are refused with their names and shapes.
fn check_shapes<'a>(
    path: &Path,
    declared: impl IntoIterator<Item = (&'a str, &'a [usize])>,
    layout: &Layout,
) -> Result<(), WeightsError> {
    let mut declared: BTreeMap<&str, &[usize]> = declared.into_iter().collect();
    let mut missing = Vec::new();
    for (key, shape) in &layout.tensors {
        match declared.remove(key.as_str()) {
            None => missing.push(format!("{key} {shape:?}")),
            Some(s) if s != shape.as_slice() => {
                return Err(WeightsError::new(
                    path,
                    format!("tensor `{key}` has shape {s:?} in the file but the cfg expects {shape:?}"),
                ))
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(WeightsError::new(
            path,
            format!("{} tensor(s) the cfg needs are missing: {}", missing.len(), preview(&missing)),
        ));
    }
    let extra: Vec<String> =
        declared.iter().filter(|(k, _)| !layout.is_ignored_key(k)).map(|(k, s)| format!("{k} {s:?}")).collect();
    if !extra.is_empty() {
        return Err(WeightsError::new(
            path,
            format!(
                "{} tensor(s) in the file have no place in the cfg: {} (is this the right cfg?)",
                extra.len(),
                preview(&extra)
            ),
        ));
    }
    Ok(())
}

/// Running statistics are buffers, not parameters.
pub fn is_buffer(key: &str) -> bool {
    key.ends_with(".running_mean") || key.ends_with(".running_var")
}

fn preview(items: &[String]) -> String {
    const SHOW: usize = 5;
    let mut s = items.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOW {
        s.push_str(&format!(", … and {} more", items.len() - SHOW));
    }
    s
}
