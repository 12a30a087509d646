//! The format-neutral graph IR: a DAG of nodes (operator, attributes, named input and output
//! tensors) over named weights, what every importer (`model::onnx`, and the Darknet one to
//! come) produces and the executor (`exec`) and cost model (`cost`) work on. Operators are
//! ONNX's (opsets 11–22, the subset in [`exec::SUPPORTED`]); names are the file's.

pub mod cost;
pub mod exec;
pub mod kernels;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tch::Tensor;

/// The opsets of the default ONNX domain the executor implements.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=22;

/// An attribute of a node.
#[derive(Debug)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Text(String),
    Tensor(Tensor),
}

/// One node of the graph, as the file lists it (ONNX requires topological order).
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub op: String,
    /// Input tensor names; an empty name is an omitted optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: HashMap<String, Attr>,
}

/// A graph input or output: its name and dimensions (None where symbolic or unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub dims: Vec<Option<i64>>,
}

/// A network in the IR, with its weights.
#[derive(Debug)]
pub struct Net {
    pub path: PathBuf,
    /// The default domain's opset.
    pub opset: i64,
    pub producer: String,
    /// `metadata_props` (Ultralytics writes task, names, imgsz, stride, kpt_shape, licence).
    pub metadata: BTreeMap<String, String>,
    pub nodes: Vec<Node>,
    /// Graph inputs that are not initializers.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub initializers: HashMap<String, Tensor>,
    /// The batch size the file fixes (its input's first dimension), if it fixes one.
    pub file_batch: Option<i64>,
    /// Reshape nodes (by index) whose constant shape carries the file's batch size: at run
    /// time their first dimension becomes the batch of the input.
    pub batch_reshapes: std::collections::HashSet<usize>,
    /// `x · Sigmoid(x)` pairs (Sigmoid node → its Mul), run as one SiLU when only the
    /// outputs are kept: a third fewer kernel calls in Ultralytics graphs.
    pub silu: HashMap<usize, usize>,
    /// Activation nodes (and SiLU pairs' Sigmoids) → the node that makes their input, where
    /// that node allocates it fresh and only they read it: when a run computes both and keeps
    /// only outputs, the activation overwrites its input instead of allocating.
    pub in_place: HashMap<usize, usize>,
    /// Convolution weights packed for the executor's own kernel, by node. Initializers are
    /// replaced, never written in place: the cache knows a weight by its memory.
    pub(crate) packs: kernels::PackCache,
    /// Convolutions → the activation (a SiLU pair's Sigmoid) that alone reads their output:
    /// the executor's own convolutions apply it as they store (when only outputs are kept).
    pub conv_act: HashMap<usize, usize>,
}

/// Why an ONNX file cannot be read or run.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an ONNX model (the protobuf does not decode: {source})")]
    Decode { path: PathBuf, source: prost::DecodeError },
    #[error("{path}: {what}")]
    Model { path: PathBuf, what: String },
    #[error("{path}: opset {opset} of the default domain is not supported (supported: {}–{})", OPSETS.start(), OPSETS.end())]
    Opset { path: PathBuf, opset: i64 },
    #[error("{path}: tensor '{name}': {what}")]
    Tensor { path: PathBuf, name: String, what: String },
    #[error(
        "{path}: node '{node}': operator {op} (opset {opset}) is not supported; supported: {}",
        exec::SUPPORTED.join(", ")
    )]
    UnsupportedOp { path: PathBuf, node: String, op: String, opset: i64 },
    #[error("{path}: node '{node}' ({op}): {what}")]
    Node { path: PathBuf, node: String, op: String, what: String },
}

impl Net {
    /// Gives input `input` of node `node` an initializer of its own when other nodes (or
    /// other inputs) read the same one, so that a mask changes that node only: the copy is
    /// named `<name>/<node name>`. Returns the name the node now reads.
    pub fn own_initializer(&mut self, node: usize, input: usize) -> Option<String> {
        let name = self.nodes.get(node)?.inputs.get(input)?.clone();
        let t = self.initializers.get(&name)?;
        let readers = self.nodes.iter().flat_map(|n| n.inputs.iter()).filter(|i| **i == name).count();
        if readers <= 1 {
            return Some(name);
        }
        let copy = format!("{name}/{}", self.nodes[node].name);
        let value = t.copy();
        self.initializers.insert(copy.clone(), value);
        self.nodes[node].inputs[input] = copy.clone();
        Some(copy)
    }

    /// Moves the weights to `device` once (the executor runs where its inputs are; weights
    /// elsewhere would be copied on every run).
    pub fn to_device(&mut self, device: tch::Device) {
        for t in self.initializers.values_mut() {
            if t.device() != device {
                *t = t.to_device(device);
            }
        }
    }

    /// Finishes a net an importer built: checks its wiring, lets a fixed-batch graph run at
    /// any batch, and finds the SiLU pairs.
    pub fn prepare(mut self) -> Result<Self, NetError> {
        self.check_wiring()?;
        // 4-D weights in channels-last layout: libtorch's CPU convolutions then skip the
        // layout conversions (≈ +20–35 % images/s on the fixture models).
        for t in self.initializers.values_mut() {
            *t = exec::executor_layout(t);
        }
        self.generalize_batch()?;
        self.silu = self.silu_pairs();
        self.in_place = self.in_place_activations();
        self.conv_act = self
            .in_place
            .iter()
            .filter(|&(a, &p)| {
                (self.silu.contains_key(a) || self.nodes[*a].op != "Sigmoid") && self.nodes[p].op == "Conv"
            })
            .map(|(&a, &p)| (p, a))
            .collect();
        Ok(self)
    }

    /// Every node input is a graph input, an initializer or an earlier node's output, and
    /// every graph output is produced: what the executor relies on.
    fn check_wiring(&self) -> Result<(), NetError> {
        let mut known: std::collections::HashSet<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
        known.extend(self.initializers.keys().map(String::as_str));
        for n in &self.nodes {
            if let Some(missing) = n.inputs.iter().find(|i| !i.is_empty() && !known.contains(i.as_str())) {
                return Err(NetError::Node {
                    path: self.path.clone(),
                    node: n.name.clone(),
                    op: n.op.clone(),
                    what: format!("input '{missing}' is produced by no earlier node, initializer or graph input"),
                });
            }
            known.extend(n.outputs.iter().map(String::as_str));
        }
        if let Some(o) = self.outputs.iter().find(|o| !known.contains(o.name.as_str())) {
            return Err(NetError::Model {
                path: self.path.clone(),
                what: format!("graph output '{}' is never produced", o.name),
            });
        }
        Ok(())
    }

    /// A graph exported at a fixed batch (Ultralytics' default, torch's exporter) carries it
    /// in Reshape constants such as `[1, 4, 16, A]`. Those whose first element is the file's
    /// batch and whose input's first axis is the batch (seen in a dry run) follow the batch of
    /// the input at run time. Checked here: a batch of two different images must give, image
    /// by image, what each gives alone; where not, the first node that mixes images is named.
    fn generalize_batch(&mut self) -> Result<(), NetError> {
        let Some(b0) = self.file_batch else { return Ok(()) };
        let Ok(shape) = self.input_shape(None) else { return Ok(()) };
        let at = |b: i64| [b, shape[1], shape[2], shape[3]];
        let name = self.inputs[0].name.clone();
        let probe = exec::probe_input(&at(b0), 0);
        let values = self.run(vec![(name.clone(), probe)], exec::Keep::All)?;
        let constants: HashMap<&str, &Tensor> = self
            .nodes
            .iter()
            .filter(|n| n.op == "Constant")
            .filter_map(|n| n.outputs.first().zip(values.get(n.outputs.first()?)))
            .map(|(o, t)| (o.as_str(), t))
            .chain(self.initializers.iter().map(|(k, v)| (k.as_str(), v)))
            .collect();
        let mut marked = std::collections::HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.op != "Reshape" {
                continue;
            }
            let (Some(data), Some(target)) = (n.inputs.first(), n.inputs.get(1)) else { continue };
            let Some(target) = constants.get(target.as_str()) else { continue };
            let first = exec::first_value(target);
            let data_batch = values.get(data).map(|t| t.size().first().copied());
            if first == Some(b0) && data_batch == Some(Some(b0)) {
                marked.insert(i);
            }
        }
        self.batch_reshapes = marked;
        // Two images together, and each alone, at a batch other than the file's.
        let (b1, b2) = (exec::probe_input(&at(1), 1), exec::probe_input(&at(1), 2));
        let both = Tensor::cat(&[&b1, &b2], 0);
        let together = self.run(vec![(name.clone(), both)], exec::Keep::All)?;
        let first = self.run(vec![(name.clone(), b1)], exec::Keep::All)?;
        let second = self.run(vec![(name, b2)], exec::Keep::All)?;
        for n in &self.nodes {
            for o in &n.outputs {
                let (Some(t), Some(a), Some(b)) = (together.get(o), first.get(o), second.get(o)) else { continue };
                if !t.is_floating_point() || t.size().first() != Some(&2) || a.size().first() != Some(&1) {
                    continue;
                }
                let Ok(alone) = Tensor::f_cat(&[a, b], 0) else { continue };
                let same = t.size() == alone.size()
                    && (t - &alone).abs().max().double_value(&[])
                        <= 1e-4 * alone.abs().max().double_value(&[]).max(1.0);
                if !same {
                    return Err(NetError::Node {
                        path: self.path.clone(),
                        node: n.name.clone(),
                        op: n.op.clone(),
                        what: format!(
                            "the file is exported at batch {b0} and this node mixes the images of a batch, so it cannot \
                             run at other batch sizes; export it with a dynamic batch axis"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Sigmoid nodes whose output only a Mul of the Sigmoid's own input reads.
    fn silu_pairs(&self) -> HashMap<usize, usize> {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for x in &n.inputs {
                readers.entry(x.as_str()).or_default().push(i);
            }
        }
        let outputs: std::collections::HashSet<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        let mut pairs = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let (Some(x), Some(y)) = (n.inputs.first(), n.outputs.first()) else { continue };
            if n.op != "Sigmoid" || outputs.contains(y.as_str()) {
                continue;
            }
            if let Some([j]) = readers.get(y.as_str()).map(Vec::as_slice) {
                let m = &self.nodes[*j];
                let mut ins: Vec<&str> = m.inputs.iter().map(String::as_str).collect();
                ins.sort_unstable();
                let mut want = vec![x.as_str(), y.as_str()];
                want.sort_unstable();
                if m.op == "Mul" && ins == want && *j > i {
                    pairs.insert(i, *j);
                }
            }
        }
        pairs
    }

    /// See [`Net::in_place`].
    fn in_place_activations(&self) -> HashMap<usize, usize> {
        // Ops whose outputs the executor always allocates anew.
        const FRESH: &[&str] = &["Conv", "Gemm", "MatMul", "BatchNormalization", "Add", "Sub", "Mul", "Div", "Concat"];
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for x in n.inputs.iter().filter(|x| !x.is_empty()) {
                readers.entry(x.as_str()).or_default().push(i);
            }
            for y in &n.outputs {
                producer.insert(y.as_str(), i);
            }
        }
        let outputs: std::collections::HashSet<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        let mut found = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(x) = n.inputs.first() else { continue };
            // A SiLU pair's Mul reads the input too.
            let alone: Vec<usize> = match self.silu.get(&i) {
                Some(&m) => vec![i, m],
                None => vec![i],
            };
            let sole = readers.get(x.as_str()).is_some_and(|r| r.iter().all(|j| alone.contains(j)));
            let Some(&p) = producer.get(x.as_str()) else { continue };
            if exec::ACTIVATIONS.contains(&n.op.as_str())
                && sole
                && !outputs.contains(x.as_str())
                && FRESH.contains(&self.nodes[p].op.as_str())
            {
                found.insert(i, p);
            }
        }
        found
    }

    /// The node that produces tensor `name`.
    pub fn producer_of(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.outputs.iter().any(|o| o == name))
    }
}
