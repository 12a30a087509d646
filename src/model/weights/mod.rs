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

pub use pickle::PickleError;
pub use pth::ViewError;

/// The file types weights are read from, for messages.
const EXPECTED_FILES: &str =
    "expected a file ending in .weights (Darknet), .pth/.pt (PyTorch state dict) or .safetensors";

/// A weights error. Every message names the file and, where there is one, the tensor with its
/// shapes; an underlying failure (I/O, zip, pickle, safetensors) is spelled out in the message
/// and kept as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The path is a folder.
    #[error("{}: is a directory, not a weights file: {EXPECTED_FILES}", path.display())]
    IsDir { path: PathBuf },
    /// An extension that names no weights format (`ext` is empty when there is none).
    #[error("{}: {}", path.display(), extension_message(ext))]
    Extension { path: PathBuf, ext: String },
    /// The file cannot be opened or read.
    #[error("{}: cannot read the file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file cannot be written (nothing was replaced: writes are atomic).
    #[error("{}: cannot write the file: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a file of `format` as this tool reads it: a Darknet file whose size
    /// fits no header (truncated, oversized, another kind of file), a zip without `data.pkl`, a
    /// pickle that is not a state dict, a storage record too short, …
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, format: WeightsFormat, message: String },
    /// A tensor whose shape in the file is not the one the cfg gives it.
    #[error("{}: tensor `{key}` has shape {found:?} in the file but the cfg expects {expected:?}", path.display())]
    Shape { path: PathBuf, key: String, expected: Vec<usize>, found: Vec<usize> },
    /// Tensors the cfg needs that the file lacks, with their shapes.
    #[error("{}: {} tensor(s) the cfg needs are missing: {}", path.display(), keys.len(), preview_shapes(keys))]
    Missing { path: PathBuf, keys: Vec<(String, Vec<usize>)> },
    /// Tensors in the file the cfg has no place for, with their shapes.
    #[error(
        "{}: {} tensor(s) in the file have no place in the cfg: {} (is this the right cfg?)",
        path.display(),
        keys.len(),
        preview_shapes(keys)
    )]
    Extra { path: PathBuf, keys: Vec<(String, Vec<usize>)> },
    /// A tensor stored with an element type that is not converted.
    #[error("{}: tensor `{key}` has dtype {dtype}: expected F32 (or F64)", path.display())]
    Dtype { path: PathBuf, key: String, dtype: String },
    /// A tensor that cannot be read from its storage as the file describes it.
    #[error("{}: tensor `{key}`: {source}", path.display())]
    Tensor {
        path: PathBuf,
        key: String,
        #[source]
        source: ViewError,
    },
    /// A `.pth` pickle record that cannot be unpickled.
    #[error("{}: {record}: {source}", path.display())]
    Pickle {
        path: PathBuf,
        record: String,
        #[source]
        source: PickleError,
    },
    /// A `.pth` zip archive that cannot be opened, read or written; `what` says which step.
    #[error("{}: {what}: {source}", path.display())]
    Zip {
        path: PathBuf,
        what: String,
        #[source]
        source: zip::result::ZipError,
    },
    /// A record of the zip archive that cannot be read.
    #[error("{}: cannot read record `{record}`: {source}", path.display())]
    Record {
        path: PathBuf,
        record: String,
        #[source]
        source: std::io::Error,
    },
    /// Bytes that are not a safetensors file.
    #[error(
        "{}: not a valid safetensors file: {source}; expected an 8-byte little-endian header length, a JSON header and the tensor data it describes",
        path.display()
    )]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// Tensors the safetensors writer refuses.
    #[error("{}: cannot serialize safetensors: {source}", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// Weights that cannot be saved as a Darknet or `.pth` file: these formats are laid out
    /// by the cfg and need every tensor with its shape.
    #[error("{}: cannot save: {source}", path.display())]
    Incomplete {
        path: PathBuf,
        #[source]
        source: LayoutError,
    },
}

impl WeightsError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::IsDir { path }
            | Self::Extension { path, .. }
            | Self::Read { path, .. }
            | Self::Write { path, .. }
            | Self::Format { path, .. }
            | Self::Shape { path, .. }
            | Self::Missing { path, .. }
            | Self::Extra { path, .. }
            | Self::Dtype { path, .. }
            | Self::Tensor { path, .. }
            | Self::Pickle { path, .. }
            | Self::Zip { path, .. }
            | Self::Record { path, .. }
            | Self::Safetensors { path, .. }
            | Self::Serialize { path, .. }
            | Self::Incomplete { path, .. } => path,
        }
    }

    /// A [`WeightsError::Format`] error.
    pub(crate) fn format(path: &Path, format: WeightsFormat, message: impl Into<String>) -> Self {
        Self::Format { path: path.to_path_buf(), format, message: message.into() }
    }
}

fn extension_message(ext: &str) -> String {
    if ext.is_empty() {
        format!("the file name has no extension: {EXPECTED_FILES}")
    } else {
        format!("unknown weights extension `.{ext}`: expected .weights (Darknet), .pth/.pt (PyTorch state dict) or .safetensors")
    }
}

/// Weights that do not fit a layout: a tensor missing or of another shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// A tensor the layout needs (with its shape, where the layout gives it) is absent.
    #[error("tensor `{key}`{} is missing", shape.as_ref().map(|s| format!(" {s:?}")).unwrap_or_default())]
    Missing { key: String, shape: Option<Vec<usize>> },
    /// A tensor of another shape than the layout's.
    #[error("tensor `{key}` has shape {found:?}, the cfg expects {expected:?}")]
    Shape { key: String, expected: Vec<usize>, found: Vec<usize> },
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
        if path.is_dir() {
            return Err(WeightsError::IsDir { path: path.to_path_buf() });
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "weights" => Ok(Self::Darknet),
            "pth" | "pt" => Ok(Self::Pth),
            "safetensors" => Ok(Self::Safetensors),
            _ => Err(WeightsError::Extension { path: path.to_path_buf(), ext }),
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
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Read { path: path.to_path_buf(), source })?;
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
            self.check(layout).map_err(|source| WeightsError::Incomplete { path: path.to_path_buf(), source })?;
        }
        let bytes = match format {
            WeightsFormat::Darknet => darknet::write(self, layout),
            WeightsFormat::Pth => pth::write(self, layout, path)?,
            WeightsFormat::Safetensors => st::write(self, path)?,
        };
        // Temporary file + rename: a kill never leaves a torn checkpoint (an existing one stays).
        crate::fsio::write_atomic(path, bytes)
            .map_err(|e| WeightsError::Write { path: path.to_path_buf(), source: e.source })
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
    pub fn check(&self, layout: &Layout) -> Result<(), LayoutError> {
        for (key, shape) in &layout.tensors {
            match self.tensors.get(key) {
                None => return Err(LayoutError::Missing { key: key.clone(), shape: Some(shape.clone()) }),
                Some(t) if &t.shape != shape => {
                    return Err(LayoutError::Shape {
                        key: key.clone(),
                        expected: shape.clone(),
                        found: t.shape.clone(),
                    })
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
    pub fn of_layer(&self, keys: &ConvKeys) -> Result<Weights, LayoutError> {
        let mut w = Weights::default();
        for k in std::iter::once(&keys.weight).chain(keys.bias.iter()).chain(keys.bn.iter().flatten()) {
            let t = self.tensors.get(k).ok_or_else(|| LayoutError::Missing { key: k.clone(), shape: None })?;
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
            None => missing.push((key.clone(), shape.clone())),
            Some(s) if s != shape.as_slice() => {
                return Err(WeightsError::Shape {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    expected: shape.clone(),
                    found: s.to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        return Err(WeightsError::Missing { path: path.to_path_buf(), keys: missing });
    }
    let extra: Vec<(String, Vec<usize>)> =
        declared.iter().filter(|(k, _)| !layout.is_ignored_key(k)).map(|(k, s)| (k.to_string(), s.to_vec())).collect();
    if !extra.is_empty() {
        return Err(WeightsError::Extra { path: path.to_path_buf(), keys: extra });
    }
    Ok(())
}

/// Running statistics are buffers, not parameters.
pub fn is_buffer(key: &str) -> bool {
    key.ends_with(".running_mean") || key.ends_with(".running_var")
}

/// `key [shape]` of the first few tensors, and how many more.
fn preview_shapes(items: &[(String, Vec<usize>)]) -> String {
    const SHOW: usize = 5;
    let mut s = items.iter().take(SHOW).map(|(k, shape)| format!("{k} {shape:?}")).collect::<Vec<_>>().join(", ");
    if items.len() > SHOW {
        s.push_str(&format!(", … and {} more", items.len() - SHOW));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;
    use std::io::Write;

    fn mini() -> Layout {
        let cfg = Cfg::parse(
            "[net]\nwidth=32\nheight=32\nchannels=1\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n",
            "m.cfg",
        )
        .unwrap();
        Layout::of(&cfg, &Graph::build(&cfg, 1, 32, 32).unwrap())
    }

    fn zip_with_pickle(path: &Path, pickle: &[u8]) {
        let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        z.start_file("archive/data.pkl", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(pickle).unwrap();
        z.finish().unwrap();
    }

    /// A broken pickle: the PickleError is the source, its text appears once in the message
    /// and the chain printer adds nothing.
    #[test]
    fn pickle_error_is_the_source_and_printed_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pth");
        zip_with_pickle(&p, b"\x80\x02}\xff");
        let err = Weights::load(&p, &mini()).unwrap_err();
        let WeightsError::Pickle { record, source, .. } = &err else { panic!("expected Pickle, got {err:?}") };
        assert_eq!(record, "archive/data.pkl");
        assert_eq!(*source, PickleError::Opcode { op: 0xff, at: 3 });
        let cause = err.source().and_then(|s| s.downcast_ref::<PickleError>()).expect("the PickleError is the source");
        let text = crate::error::text(&err);
        assert_eq!(text, err.to_string());
        assert_eq!(text.matches(&cause.to_string()).count(), 1, "{text}");
        assert_eq!(text, format!("{}: archive/data.pkl: pickle: unsupported opcode 0xff at offset 3", p.display()));
        assert_eq!(err.path(), p);
    }

    /// A read failure keeps the io::Error; shapes and missing tensors are fields to match on.
    #[test]
    fn read_and_layout_errors_can_be_matched() {
        let dir = tempfile::tempdir().unwrap();
        let layout = mini();
        let err = Weights::load(&dir.path().join("absent.pth"), &layout).unwrap_err();
        let WeightsError::Read { source, .. } = &err else { panic!("expected Read, got {err:?}") };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        let text = crate::error::text(&err);
        assert_eq!(text, err.to_string());
        assert_eq!(text.matches(&source.to_string()).count(), 1, "{text}");

        let mut w = Weights::initialize(&layout, 1);
        w.tensors.remove("module_list.0.conv_0.bias");
        let p = dir.path().join("m.safetensors");
        w.save(&p, &layout).unwrap();
        let err = Weights::load(&p, &layout).unwrap_err();
        assert!(
            matches!(&err, WeightsError::Missing { keys, .. } if keys == &[("module_list.0.conv_0.bias".to_string(), vec![2])]),
            "{err:?}"
        );
        let err = w.save(&dir.path().join("m.weights"), &layout).unwrap_err();
        let WeightsError::Incomplete { source, .. } = &err else { panic!("expected Incomplete, got {err:?}") };
        assert_eq!(*source, LayoutError::Missing { key: "module_list.0.conv_0.bias".into(), shape: Some(vec![2]) });
        assert_eq!(crate::error::text(&err), err.to_string());
        assert!(err.to_string().ends_with("cannot save: tensor `module_list.0.conv_0.bias` [2] is missing"), "{err}");
    }

    /// A cut zip: the ZipError is the source and is not printed twice.
    #[test]
    fn zip_error_is_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cut.pth");
        std::fs::write(&p, b"PK\x03\x04 not a whole archive").unwrap();
        let err = Weights::load(&p, &mini()).unwrap_err();
        assert!(matches!(&err, WeightsError::Zip { .. }), "{err:?}");
        let zip = err.source().and_then(|s| s.downcast_ref::<zip::result::ZipError>()).expect("a ZipError source");
        let text = crate::error::text(&err);
        assert!(text.starts_with(&format!("{}: cannot open the zip archive: ", p.display())), "{text}");
        assert_eq!(text.matches(&zip.to_string()).count(), 1, "{text}");
    }
}
