//! A model opened for the tool, whatever its format: the weights by name, the layers that can
//! be pruned, and per node of the IR what the effective cost needs (its cost at the chosen
//! input size and how its output channels follow its inputs'). The sensitivity engine,
//! plans, pruning, comparison and the GUI see this and the IR it builds
//! ([`Model::net`]); only [`Model::open`] and [`Model::save`] know the file formats.
//!
//! Plain data (no libtorch tensors), so one `Model` is shared by every thread; each thread
//! that runs the model builds its own [`Net`].

use super::cfg::Cfg;
use super::graph::Graph;
use super::ir::{Attr, Net, NetError};
use super::task::Task;
use super::weights::{ConvKeys, Layout, TensorF32, Weights, WeightsError, WeightsFormat};
use crate::provenance::{FileRef, ModelRef};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// The files a model is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// A Darknet cfg and its checkpoint (.weights, .pth or .safetensors).
    Darknet { cfg: PathBuf, weights: PathBuf },
    /// An ONNX file (its external data beside it); `task` (detect, pose, classify) where the
    /// file's metadata does not say it.
    Onnx { path: PathBuf, task: Option<String> },
}

/// Whether `path` names an ONNX file (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

impl ModelFiles {
    /// The files of a stored model reference (`model.cfg` and `model.weights` of a run or a
    /// plan): an ONNX model is recorded with its file under both.
    pub fn of_paths(cfg: &Path, weights: &Path) -> ModelFiles {
        if is_onnx(cfg) && cfg == weights {
            ModelFiles::Onnx { path: cfg.to_path_buf(), task: None }
        } else {
            ModelFiles::Darknet { cfg: cfg.to_path_buf(), weights: weights.to_path_buf() }
        }
    }

    /// The same model with the weights of `path` (a pruned or fine-tuned copy).
    pub fn with_weights(&self, path: &Path) -> ModelFiles {
        match self {
            ModelFiles::Darknet { cfg, .. } => ModelFiles::Darknet { cfg: cfg.clone(), weights: path.to_path_buf() },
            ModelFiles::Onnx { task, .. } => ModelFiles::Onnx { path: path.to_path_buf(), task: task.clone() },
        }
    }
}

/// Why a model cannot be opened or saved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Cfg(#[from] super::CfgError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {what}")]
    Model { path: PathBuf, what: String },
    /// An input size the model cannot take (the message names the size).
    #[error("{what}")]
    ImgSize { what: String },
}

/// A layer that can be pruned: a convolution with its weights in the file (not one reading a
/// softmax, such as the DFL's fixed 0…15 weights), and the per-channel
/// nodes right after it (an unfolded batch norm, the activation) whose output a zeroed filter
/// leaves at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// What runs, plans and the GUI call it: `conv_{i}` for Darknet, the node name for ONNX.
    pub name: String,
    /// Its index in the files that name it beside the name (`block` in runs and plans): the
    /// cfg block for Darknet, the node's position for ONNX.
    pub id: usize,
    /// The convolution, its batch norm and activation nodes (IR indices, graph order).
    pub chain: Vec<usize>,
    /// The chain's output tensor.
    pub output: String,
    /// Weight, bias and batch-norm tensors (`keys.block` is `id`).
    pub keys: ConvKeys,
    pub bn_epsilon: f64,
    pub groups: usize,
    /// Whether the chain maps 0 to 0 (no sigmoid gate): a zeroed filter then outputs zero.
    pub zero_preserving: bool,
    /// An output convolution: no other layer depends on it.
    pub head: bool,
    /// Parameters and MACs of the chain (batch 1).
    pub params: u64,
    pub macs: u64,
    /// The chain's output at batch 1.
    pub output_shape: Vec<usize>,
    pub weight_shape: Vec<usize>,
}

/// How a node's output channels (axis 1) depend on its inputs', for the effective cost.
#[derive(Debug, Clone, PartialEq)]
pub enum Channels {
    /// The convolution of `layers[k]`.
    Layer(usize),
    /// A batch norm or activation in the chain of `layers[k]`: that layer's live outputs.
    Chain(usize),
    /// Per channel, zero stays zero: the first input's channels (pools, resizes, ReLU, a
    /// division of it).
    Same,
    /// Live where any input is (a sum, or a concatenation along another axis).
    Any,
    /// Live where every input is (a product).
    Every,
    /// A concatenation along the channels.
    Concat,
    /// Output k takes channels `parts[k]` (start, count) of the input.
    Split(Vec<(usize, usize)>),
    /// Channels `start, start + step, …` (`count` of them) of the input.
    Slice { start: usize, step: usize, count: usize },
    /// Every output channel counts as live (anything else).
    Dense,
}

/// What the effective cost needs of one IR node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub op: String,
    /// Indices into [`Model::channels`] of the inputs that are activations (None: a weight
    /// or an omitted input).
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    pub params: u64,
    pub macs: u64,
    /// Elements of the first output at batch 1 per channel (the area a channel covers).
    pub area: u64,
    pub rule: Channels,
}

/// Where the IR comes from, to build it again with other weights.
#[derive(Debug, Clone)]
enum Format {
    Darknet { cfg: Box<Cfg>, graph: Box<Graph>, layout: Box<Layout> },
    Onnx,
}

/// A model opened at one input size.
#[derive(Debug, Clone)]
pub struct Model {
    pub files: ModelFiles,
    /// The files by path and content hash (what runs and plans record).
    pub reference: ModelRef,
    pub img_size: u32,
    /// The input at batch 1, `[1, C, H, W]`.
    pub input_shape: Vec<i64>,
    pub task: Task,
    /// Float weights by name, as the file holds them.
    pub weights: Weights,
    /// Prunable layers in graph order.
    pub layers: Vec<Layer>,
    pub nodes: Vec<NodeInfo>,
    /// Channels (axis 1) of every activation tensor [`NodeInfo`] refers to; the graph input is 0.
    pub channels: Vec<usize>,
    /// The names of those tensors.
    pub tensors: Vec<String>,
    /// Elements per image of every activation tensor, by name.
    pub sizes: HashMap<String, u64>,
    /// Dense totals (batch 1).
    pub params: u64,
    pub macs: u64,
    /// The file carries Ultralytics' metadata (its conventions apply: NMS IoU 0.7, its
    /// classify transform).
    pub by_ultralytics: bool,
    /// Weights held transposed in [`Model::weights`]: a MatMul's `[in, out]` matrix kept as
    /// `[out, in]`, so that a filter is a row as everywhere else ([`Model::net_tensor`] gives
    /// the file's layout back).
    pub transposed: std::collections::BTreeSet<String>,
    format: Format,
}

impl Model {
    /// Opens a model at `img_size` (default: the cfg's width, or the size the ONNX file fixes).
    pub fn open(files: &ModelFiles, img_size: Option<u32>) -> Result<Model, ModelError> {
        match files {
            ModelFiles::Darknet { cfg, weights } => Self::open_darknet(cfg, weights, img_size),
            ModelFiles::Onnx { path, task } => Self::open_onnx(path, task.as_deref(), img_size),
        }
    }

    fn open_darknet(cfg_path: &Path, weights_path: &Path, img_size: Option<u32>) -> Result<Model, ModelError> {
        let cfg = Cfg::from_file(cfg_path)?;
        let size = img_size.unwrap_or(cfg.width as u32);
        crate::quantity::check_img_size(size).map_err(|what| ModelError::ImgSize { what })?;
        let graph = Graph::build(&cfg, 1, size as usize, size as usize)?;
        let layout = Layout::of(&cfg, &graph);
        let weights = Weights::load(weights_path, &layout)?;
        let net = super::darknet::to_net(&cfg, &graph, &weights, cfg_path)?;
        let reference = ModelRef { cfg: file_ref(cfg_path)?, weights: file_ref(weights_path)? };
        let task = Task::DarknetYolo { classes: cfg.classes() };
        let format = Format::Darknet { cfg: Box::new(cfg), graph: Box::new(graph), layout: Box::new(layout) };
        let files = ModelFiles::Darknet { cfg: cfg_path.to_path_buf(), weights: weights_path.to_path_buf() };
        // Darknet layers keep the cfg's block index: `conv_{i}` is block i.
        let id = |name: &str, _: usize| name.strip_prefix("conv_").and_then(|i| i.parse().ok());
        Self::build(net, files, reference, size, task, weights, format, Default::default(), &id)
    }

    fn open_onnx(path: &Path, task: Option<&str>, img_size: Option<u32>) -> Result<Model, ModelError> {
        let mut net = super::onnx::read(path)?;
        own_layer_initializers(&mut net);
        let shape = net.input_shape(img_size.map(i64::from))?;
        let size = shape[2].max(shape[3]) as u32;
        let task_name = task;
        let task =
            Task::of(&net, task_name, None).map_err(|what| ModelError::Model { path: path.to_path_buf(), what })?;
        // The parameters: what Conv, Gemm, MatMul and BatchNormalization read as weights
        // (not anchors, strides or shape constants).
        let mut weights = Weights::default();
        for n in &net.nodes {
            let reads: &[usize] = match n.op.as_str() {
                "Conv" | "Gemm" => &[1, 2],
                "MatMul" => &[0, 1],
                "BatchNormalization" => &[1, 2, 3, 4],
                _ => &[],
            };
            for name in reads.iter().filter_map(|&k| n.inputs.get(k)) {
                if let Some(t) = net.initializers.get(name).filter(|t| t.is_floating_point()) {
                    weights.tensors.insert(name.clone(), tensor_f32(t));
                }
            }
        }
        // A MatMul reading a matrix initializer (tf2onnx's Dense) read by no other node: its
        // filters are the matrix's columns; held as rows.
        let readers = readers(&net);
        let mut transposed = std::collections::BTreeSet::new();
        for n in net.nodes.iter().filter(|n| n.op == "MatMul") {
            let Some(b) = n.inputs.get(1) else { continue };
            let sole = readers.get(b.as_str()).is_some_and(|r| r.len() == 1);
            if let (true, Some(t)) = (sole, weights.tensors.get_mut(b)) {
                if let [k, m] = t.shape[..] {
                    let data =
                        (0..m).flat_map(|j| (0..k).map(move |i| (i, j))).map(|(i, j)| t.data[i * m + j]).collect();
                    *t = TensorF32::new(vec![m, k], data);
                    transposed.insert(b.clone());
                }
            }
        }
        let f = file_ref(path)?;
        let reference = ModelRef { cfg: f.clone(), weights: f };
        let files = ModelFiles::Onnx { path: path.to_path_buf(), task: task_name.map(String::from) };
        let format = Format::Onnx;
        Self::build(net, files, reference, size, task, weights, format, transposed, &|_, node| Some(node))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        net: Net,
        files: ModelFiles,
        reference: ModelRef,
        size: u32,
        task: Task,
        weights: Weights,
        format: Format,
        transposed: std::collections::BTreeSet<String>,
        id: &dyn Fn(&str, usize) -> Option<usize>,
    ) -> Result<Model, ModelError> {
        let input_shape = net.input_shape(Some(i64::from(size)))?;
        let (costs, values) = net.costs_and_values(&input_shape)?;
        let shape_of = |name: &str| -> Option<Vec<i64>> {
            if name == net.inputs[0].name {
                return Some(input_shape.clone());
            }
            values.get(name).map(Tensor::size)
        };
        let value_of = |name: &str| -> Option<Vec<i64>> {
            let t = net.initializers.get(name).or_else(|| values.get(name))?;
            let t = t.to_kind(tch::Kind::Int64).flatten(0, -1);
            Vec::<i64>::try_from(t).ok()
        };
        // Activation tensors get an index; initializers and empty names none.
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut channels = Vec::new();
        let mut tensors = Vec::new();
        let mut tensor = |name: &str, index: &mut HashMap<String, usize>| -> Option<usize> {
            if name.is_empty() || net.initializers.contains_key(name) {
                return None;
            }
            if let Some(&k) = index.get(name) {
                return Some(k);
            }
            let shape = shape_of(name).unwrap_or_default();
            channels.push(if shape.len() >= 2 { shape[1].max(0) as usize } else { 0 });
            tensors.push(name.to_string());
            index.insert(name.to_string(), channels.len() - 1);
            Some(channels.len() - 1)
        };
        tensor(&net.inputs[0].name, &mut index);
        let readers = readers(&net);
        let layers = find_layers(&net, &costs, &readers, &weights, &transposed, id)?;
        let mut in_chain: HashMap<usize, usize> = HashMap::new();
        for (k, l) in layers.iter().enumerate() {
            for &n in &l.chain[1..] {
                in_chain.insert(n, k);
            }
        }
        let conv_of: HashMap<usize, usize> = layers.iter().enumerate().map(|(k, l)| (l.chain[0], k)).collect();
        let mut nodes = Vec::with_capacity(net.nodes.len());
        for (i, (n, c)) in net.nodes.iter().zip(&costs).enumerate() {
            let inputs: Vec<Option<usize>> = n.inputs.iter().map(|x| tensor(x, &mut index)).collect();
            let outputs: Vec<usize> = n.outputs.iter().filter_map(|x| tensor(x, &mut index)).collect();
            let out_shape = &c.output_shape;
            let first_channels = out_shape.get(1).copied().unwrap_or(1).max(1) as u64;
            let numel: u64 = out_shape.iter().map(|&d| d.max(0) as u64).product();
            let area = if out_shape.len() >= 2 { numel / first_channels } else { numel };
            let axis = |default: i64| -> i64 {
                let a = match n.attrs.get("axis") {
                    Some(Attr::Int(a)) => *a,
                    _ => default,
                };
                if a < 0 {
                    a + out_shape.len() as i64
                } else {
                    a
                }
            };
            let rule = if let Some(&k) = conv_of.get(&i) {
                Channels::Layer(k)
            } else if let Some(&k) = in_chain.get(&i) {
                Channels::Chain(k)
            } else {
                channel_rule(n, &axis, &shape_of, &value_of).unwrap_or(Channels::Dense)
            };
            nodes.push(NodeInfo {
                name: n.name.clone(),
                op: n.op.clone(),
                inputs,
                outputs,
                params: c.params,
                macs: c.macs,
                area,
                rule,
            });
        }
        let mut sizes: HashMap<String, u64> = values.iter().map(|(k, t)| (k.clone(), t.numel() as u64)).collect();
        sizes.insert(net.inputs[0].name.clone(), input_shape.iter().product::<i64>() as u64);
        let params = costs.iter().map(|c| c.params).sum();
        let macs = costs.iter().map(|c| c.macs).sum();
        let by_ultralytics = super::onnx::ultralytics::Ultralytics::of(&net.metadata).is_some();
        Ok(Model {
            files,
            reference,
            img_size: size,
            input_shape,
            task,
            weights,
            layers,
            nodes,
            channels,
            tensors,
            sizes,
            params,
            macs,
            by_ultralytics,
            transposed,
            format,
        })
    }

    /// Whether the model is a classifier (one label per image).
    pub fn is_classifier(&self) -> bool {
        matches!(self.task, Task::Classify { .. })
    }

    /// The nodes that depend on node `start`, `start` included, in graph order.
    pub fn descendants(&self, start: usize) -> Vec<usize> {
        let mut reached = vec![false; self.channels.len()];
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate().skip(start) {
            if i == start || n.inputs.iter().flatten().any(|&t| reached[t]) {
                for &t in &n.outputs {
                    reached[t] = true;
                }
                out.push(i);
            }
        }
        out
    }

    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// The layer with file index `id` (`block` in runs and plans).
    pub fn layer_by_id(&self, id: usize) -> Option<&Layer> {
        self.layers.iter().find(|l| l.id == id)
    }

    /// The layer names, for messages: "12 layers, conv_0 … conv_20".
    pub fn layer_summary(&self) -> String {
        match (self.layers.first(), self.layers.last()) {
            (Some(a), Some(b)) if self.layers.len() > 1 => {
                format!("{} layers, {} … {}", self.layers.len(), a.name, b.name)
            }
            (Some(a), _) => a.name.clone(),
            _ => "no prunable layers".into(),
        }
    }

    /// The model's source file for messages (the cfg or the .onnx file).
    pub fn path(&self) -> &Path {
        match &self.files {
            ModelFiles::Darknet { cfg, .. } => cfg,
            ModelFiles::Onnx { path, .. } => path,
        }
    }

    /// Number of classes the model predicts.
    pub fn classes(&self) -> usize {
        match self.task {
            Task::DarknetYolo { classes }
            | Task::Detect { classes }
            | Task::Pose { classes, .. }
            | Task::Classify { classes } => classes,
        }
    }

    /// The IR of this model with `weights` (the model's own, or pruned ones with the same
    /// names and shapes), on `device`.
    pub fn net(&self, weights: &Weights, device: Device) -> Result<Net, ModelError> {
        let mut net = match &self.format {
            Format::Darknet { cfg, graph, .. } => super::darknet::to_net(cfg, graph, weights, self.path())?,
            Format::Onnx => {
                let mut net = super::onnx::read(self.path())?;
                own_layer_initializers(&mut net);
                for (name, t) in &weights.tensors {
                    let Some(old) = net.initializers.get(name) else { continue };
                    let new = self.net_tensor(name, t);
                    if old.size() != new.size() {
                        return Err(ModelError::Model {
                            path: self.path().to_path_buf(),
                            what: format!("tensor '{name}' changed shape: {:?} → {:?}", old.size(), new.size()),
                        });
                    }
                    net.initializers.insert(name.clone(), new);
                }
                net
            }
        };
        net.to_device(device);
        Ok(net)
    }

    /// Weight `name` (as [`Model::weights`] holds it) as the net reads it: in the file's layout
    /// (a transposed MatMul matrix transposed back), in the executor's memory order.
    pub fn net_tensor(&self, name: &str, t: &TensorF32) -> Tensor {
        let t = to_tensor(t);
        let t = if self.transposed.contains(name) { t.transpose(0, 1).contiguous() } else { t };
        super::ir::exec::executor_layout(&t)
    }

    /// Writes the model with `weights` to `out`: a checkpoint beside the cfg for Darknet
    /// (format by extension), for ONNX the same graph with its changed initializers.
    pub fn save(&self, weights: &Weights, out: &Path) -> Result<(), ModelError> {
        match &self.format {
            Format::Darknet { layout, .. } => Ok(weights.save(out, layout)?),
            Format::Onnx => {
                let net = self.net(weights, Device::Cpu)?;
                let changed: Vec<&str> = self
                    .layers
                    .iter()
                    .flat_map(|l| std::iter::once(&l.keys.weight).chain(&l.keys.bias).chain(l.keys.bn.iter().flatten()))
                    .map(String::as_str)
                    .collect();
                Ok(super::onnx::write_net(self.path(), out, &net, &changed)?)
            }
        }
    }

    /// Checks that `out` can hold this model's weights (by its extension), before any work.
    pub fn check_output(&self, out: &Path) -> Result<(), ModelError> {
        match &self.format {
            Format::Darknet { .. } => {
                WeightsFormat::from_path(out)?;
            }
            Format::Onnx => {
                if !is_onnx(out) {
                    return Err(ModelError::Model {
                        path: out.to_path_buf(),
                        what: "an ONNX model is written as .onnx".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The files a pruned copy must not overwrite, by what they are.
    pub fn inputs(&self) -> Vec<(&'static str, &Path)> {
        match &self.files {
            ModelFiles::Darknet { cfg, weights } => vec![("checkpoint", weights.as_path()), ("cfg", cfg.as_path())],
            ModelFiles::Onnx { path, .. } => vec![("model", path.as_path())],
        }
    }
}

fn file_ref(path: &Path) -> Result<FileRef, ModelError> {
    let sha256 =
        crate::provenance::file_sha256(path).map_err(|source| ModelError::Read { path: path.to_path_buf(), source })?;
    // Absolute, so that a run or plan made here names the same files wherever it is saved.
    Ok(FileRef { path: crate::provenance::absolute(path), sha256 })
}

/// A float tensor as plain data (logical NCHW order whatever its strides).
pub fn tensor_f32(t: &Tensor) -> TensorF32 {
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let data = Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).contiguous().flatten(0, -1)).unwrap_or_default();
    TensorF32::new(shape, data)
}

/// Plain data as a CPU tensor.
pub fn to_tensor(t: &TensorF32) -> Tensor {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&t.data).reshape(shape)
}

/// Gives every prunable convolution weights of its own (a bias shared by three
/// convolutions is copied for each), so that pruning one changes only it.
fn own_layer_initializers(net: &mut Net) {
    for i in 0..net.nodes.len() {
        let weight = net.nodes[i].inputs.get(1).is_some_and(|w| net.initializers.contains_key(w));
        if net.nodes[i].op == "Conv" && weight {
            for input in 1..net.nodes[i].inputs.len().min(3) {
                net.own_initializer(i, input);
            }
        }
    }
}

/// Node indices reading each tensor.
fn readers(net: &Net) -> HashMap<&str, Vec<usize>> {
    let mut r: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in net.nodes.iter().enumerate() {
        for x in &n.inputs {
            r.entry(x.as_str()).or_default().push(i);
        }
    }
    r
}

/// The prunable convolutions and their chains.
fn find_layers(
    net: &Net,
    costs: &[super::ir::cost::NodeCost],
    readers: &HashMap<&str, Vec<usize>>,
    weights: &Weights,
    transposed: &std::collections::BTreeSet<String>,
    id: &dyn Fn(&str, usize) -> Option<usize>,
) -> Result<Vec<Layer>, ModelError> {
    let graph_outputs: std::collections::HashSet<&str> = net.outputs.iter().map(|o| o.name.as_str()).collect();
    // The one node reading `t`, when no one else (and no graph output) does.
    let sole = |t: &str| -> Option<usize> {
        match readers.get(t).map(Vec::as_slice) {
            Some([j]) if !graph_outputs.contains(t) => Some(*j),
            _ => None,
        }
    };
    let mut layers = Vec::new();
    for (i, n) in net.nodes.iter().enumerate() {
        // A file can give a node fewer inputs or outputs than its operator has: such a node
        // is no layer (the executor refuses it when it runs).
        let (Some(x), Some(w), Some(y)) = (n.inputs.first(), n.inputs.get(1), n.outputs.first()) else { continue };
        let rank = weights.tensors.get(w).map(|t| t.shape.len());
        let int = |k: &str| match n.attrs.get(k) {
            Some(Attr::Int(v)) => *v,
            _ => 0,
        };
        // A Gemm is a layer when its weight is `[out, in]` (transB = 1: torch's Linear), so
        // that a filter is a row as a convolution's is a kernel.
        let is_layer = match n.op.as_str() {
            "Conv" => rank.is_some_and(|r| r >= 3),
            "Gemm" => rank == Some(2) && int("transB") == 1 && int("transA") == 0,
            // Its weight held as rows (see `Model::transposed`), on a 2-D input.
            "MatMul" => rank == Some(2) && transposed.contains(w) && costs[i].output_shape.len() == 2,
            _ => false,
        };
        if !is_layer {
            continue;
        }
        // A convolution reading a softmax is a fixed expectation, not a learned layer
        // (Ultralytics' DFL: the distribution over 16 bins times 0…15).
        if net.producer_of(x).is_some_and(|p| p.op == "Softmax") {
            continue;
        }
        let Some(id) = id(&n.name, i) else {
            return Err(ModelError::Model {
                path: net.path.clone(),
                what: format!("{} '{}' has no layer index", n.op, n.name),
            });
        };
        let bias = n.inputs.get(2).filter(|b| !b.is_empty() && weights.tensors.contains_key(*b)).cloned();
        let mut chain = vec![i];
        let mut out = y.clone();
        let mut bn = None;
        let mut bn_epsilon = 1e-5;
        let mut zero_preserving = true;
        if let Some(j) = sole(&out) {
            let m = &net.nodes[j];
            if m.op == "BatchNormalization"
                && m.inputs.len() == 5
                && !m.outputs.is_empty()
                && m.inputs[1..].iter().all(|k| weights.tensors.contains_key(k))
            {
                bn = Some([m.inputs[1].clone(), m.inputs[2].clone(), m.inputs[3].clone(), m.inputs[4].clone()]);
                if let Some(Attr::Float(e)) = m.attrs.get("epsilon") {
                    bn_epsilon = f64::from(*e);
                }
                chain.push(j);
                out = m.outputs[0].clone();
            }
        }
        // The activation: one per-channel op, or x · sigmoid(x).
        let act_readers = readers.get(out.as_str()).cloned().unwrap_or_default();
        if !graph_outputs.contains(out.as_str()) {
            match act_readers.as_slice() {
                [j] => {
                    let m = &net.nodes[*j];
                    let keeps = match m.op.as_str() {
                        "Relu" | "LeakyRelu" | "Mish" | "HardSwish" => Some(true),
                        "Sigmoid" | "HardSigmoid" => Some(false),
                        "Clip" => Some(clip_keeps_zero(net, m)),
                        _ => None,
                    };
                    if let (Some(keeps), Some(y)) = (keeps, m.outputs.first()) {
                        zero_preserving = keeps;
                        chain.push(*j);
                        out = y.clone();
                    }
                }
                // x · sigmoid(x), as `Net::prepare` found the pairs (the sigmoid read by the
                // product alone, so nothing past the chain needs it).
                [a, b] => {
                    let (s, m) = if net.nodes[*a].op == "Sigmoid" { (*a, *b) } else { (*b, *a) };
                    if let (Some(&mul), Some(y)) = (net.silu.get(&s).filter(|&&p| p == m), net.nodes[m].outputs.first())
                    {
                        chain.extend([s.min(mul), s.max(mul)]);
                        out = y.clone();
                    }
                }
                _ => {}
            }
        }
        let weight_shape = weights.tensors[w].shape.clone();
        let groups = match n.attrs.get("group") {
            Some(Attr::Int(g)) => (*g).max(1) as usize,
            _ => 1,
        };
        let last = *chain.last().unwrap_or(&i);
        layers.push(Layer {
            name: n.name.clone(),
            id,
            params: chain.iter().map(|&k| costs[k].params).sum(),
            macs: chain.iter().map(|&k| costs[k].macs).sum(),
            output_shape: costs[last].output_shape.iter().map(|&d| d.max(0) as usize).collect(),
            chain,
            output: out,
            keys: ConvKeys { block: id, weight: w.clone(), bias, bn },
            bn_epsilon,
            groups,
            zero_preserving,
            head: false,
            weight_shape,
        });
    }
    // A head: no other layer depends on it.
    let convs: std::collections::HashSet<usize> = layers.iter().map(|l| l.chain[0]).collect();
    for l in &mut layers {
        let start = l.chain[0];
        l.head = !net.descendants(start).iter().any(|d| *d != start && convs.contains(d));
    }
    Ok(layers)
}

fn clip_keeps_zero(net: &Net, n: &super::ir::Node) -> bool {
    let scalar = |k: usize| -> Option<f64> {
        let t = net.initializers.get(n.inputs.get(k)?)?;
        Some(t.double_value(&[]))
    };
    let lo = match n.attrs.get("min") {
        Some(Attr::Float(v)) => Some(f64::from(*v)),
        _ => scalar(1),
    };
    let hi = match n.attrs.get("max") {
        Some(Attr::Float(v)) => Some(f64::from(*v)),
        _ => scalar(2),
    };
    lo.is_none_or(|v| v <= 0.0) && hi.is_none_or(|v| v >= 0.0)
}

/// The channel rule of a node outside every layer's chain.
fn channel_rule(
    n: &super::ir::Node,
    axis: &dyn Fn(i64) -> i64,
    shape_of: &dyn Fn(&str) -> Option<Vec<i64>>,
    value_of: &dyn Fn(&str) -> Option<Vec<i64>>,
) -> Option<Channels> {
    let in_shape = shape_of(n.inputs.first()?)?;
    let first_out = n.outputs.first()?;
    let rank = in_shape.len();
    let same_shape = |o: &str| shape_of(o).is_some_and(|s| s.len() == rank && s.get(1) == in_shape.get(1));
    Some(match n.op.as_str() {
        "Relu" | "LeakyRelu" | "Mish" | "HardSwish" | "Identity" | "MaxPool" | "AveragePool" | "GlobalAveragePool"
        | "Resize" | "Upsample" | "Div"
            if rank == 4 && same_shape(first_out) =>
        {
            Channels::Same
        }
        "Pad" if rank == 4 && same_shape(first_out) => Channels::Same,
        "Add" | "Sub" if n.inputs.iter().all(|i| shape_of(i).as_ref() == Some(&in_shape)) => Channels::Any,
        "Mul" if n.inputs.iter().all(|i| shape_of(i).as_ref() == Some(&in_shape)) => Channels::Every,
        "Concat" if axis(0) == 1 => Channels::Concat,
        "Concat" if rank >= 2 && n.inputs.iter().all(|i| shape_of(i).is_some_and(|s| s.get(1) == in_shape.get(1))) => {
            Channels::Any
        }
        "Split" if axis(0) == 1 => {
            let mut start = 0usize;
            let mut parts = Vec::new();
            for o in &n.outputs {
                let c = shape_of(o)?.get(1).copied()? as usize;
                parts.push((start, c));
                start += c;
            }
            Channels::Split(parts)
        }
        "Slice" if rank >= 2 => {
            let starts = value_of(n.inputs.get(1)?)?;
            let ends = value_of(n.inputs.get(2)?)?;
            let axes = match n.inputs.get(3).filter(|a| !a.is_empty()) {
                Some(a) => value_of(a)?,
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match n.inputs.get(4).filter(|s| !s.is_empty()) {
                Some(s) => value_of(s)?,
                None => vec![1; starts.len()],
            };
            // Lengths that disagree are the executor's to refuse; here they are no rule.
            if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                return None;
            }
            let k = axes.iter().position(|&a| a == 1 || a == 1 - rank as i64);
            let others_whole = axes.iter().enumerate().all(|(j, _)| {
                Some(j) == k || {
                    let dim = in_shape.get(axes[j].rem_euclid(rank as i64) as usize).copied().unwrap_or(0);
                    starts[j] == 0 && ends[j] >= dim && steps[j] == 1
                }
            });
            let (Some(k), true) = (k, others_whole) else { return None };
            let c = in_shape[1];
            let clamp = |v: i64| if v < 0 { (v + c).max(0) } else { v.min(c) };
            if steps[k] < 1 {
                return None;
            }
            let (start, end) = (clamp(starts[k]), clamp(ends[k]));
            let count = if end > start { ((end - start) + steps[k] - 1) / steps[k] } else { 0 };
            Channels::Slice { start: start as usize, step: steps[k] as usize, count: count as usize }
        }
        _ => return None,
    })
}
