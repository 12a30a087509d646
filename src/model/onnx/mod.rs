//! ONNX models: the reader (protobuf → nodes, attributes and initializers as tch tensors,
//! weights inline or in an external data file) and the executor (`exec`). Everything a file
//! can get wrong is an [`OnnxError`] naming the file and the node or tensor, never a panic.

pub mod cost;
pub mod exec;
pub mod proto;

use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The opsets of the default domain the executor implements.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=21;

/// Largest tensor a file may declare (elements): 2³² floats is 16 GiB, past any model here.
const MAX_ELEMENTS: u64 = 1 << 32;

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

/// An ONNX model read into memory.
#[derive(Debug)]
pub struct OnnxModel {
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
}

/// Why an ONNX file cannot be read or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
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

impl OnnxModel {
    /// Reads and checks `path` (and its external data files, beside it).
    pub fn read(path: &Path) -> Result<Self, OnnxError> {
        let p = || path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Read { path: p(), source })?;
        let model =
            proto::ModelProto::decode(bytes.as_slice()).map_err(|source| OnnxError::Decode { path: p(), source })?;
        let bad = |what: String| OnnxError::Model { path: p(), what };
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx"))
            .and_then(|o| o.version)
            .ok_or_else(|| bad("no opset of the default ONNX domain is imported".into()))?;
        if !OPSETS.contains(&opset) {
            return Err(OnnxError::Opset { path: p(), opset });
        }
        let graph = model.graph.ok_or_else(|| bad("the model has no graph".into()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut initializers = HashMap::new();
        for t in &graph.initializer {
            let name = t.name.clone().unwrap_or_default();
            let tensor = tensor_of(t, dir).map_err(|what| OnnxError::Tensor { path: p(), name: name.clone(), what })?;
            initializers.insert(name, tensor);
        }
        let mut nodes = Vec::with_capacity(graph.node.len());
        for (i, n) in graph.node.iter().enumerate() {
            let name = n.name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("node {i}"));
            let op = n.op_type.clone().unwrap_or_default();
            let domain = n.domain.clone().unwrap_or_default();
            if !(domain.is_empty() || domain == "ai.onnx") || !exec::SUPPORTED.contains(&op.as_str()) {
                let op = if domain.is_empty() { op } else { format!("{domain}.{op}") };
                return Err(OnnxError::UnsupportedOp { path: p(), node: name, op, opset });
            }
            let mut attrs = HashMap::new();
            for a in &n.attribute {
                let key = a.name.clone().unwrap_or_default();
                let value = attr_of(a, dir).map_err(|what| OnnxError::Node {
                    path: p(),
                    node: name.clone(),
                    op: op.clone(),
                    what: format!("attribute '{key}': {what}"),
                })?;
                attrs.insert(key, value);
            }
            nodes.push(Node { name, op, inputs: n.input.clone(), outputs: n.output.clone(), attrs });
        }
        let info = |v: &proto::ValueInfoProto| ValueInfo { name: v.name.clone().unwrap_or_default(), dims: dims_of(v) };
        let inputs: Vec<ValueInfo> =
            graph.input.iter().filter(|v| !initializers.contains_key(v.name())).map(info).collect();
        if inputs.is_empty() {
            return Err(bad("the graph has no input".into()));
        }
        let outputs: Vec<ValueInfo> = graph.output.iter().map(info).collect();
        let metadata = model
            .metadata_props
            .iter()
            .map(|e| (e.key.clone().unwrap_or_default(), e.value.clone().unwrap_or_default()))
            .collect();
        let file_batch = inputs[0].dims.first().copied().flatten();
        let mut m = OnnxModel {
            path: p(),
            opset,
            producer: model.producer_name.unwrap_or_default(),
            metadata,
            nodes,
            inputs,
            outputs,
            initializers,
            file_batch,
            batch_reshapes: Default::default(),
            silu: HashMap::new(),
        };
        m.silu = m.silu_pairs();
        m.check_wiring()?;
        m.generalize_batch()?;
        Ok(m)
    }

    /// Every node input is a graph input, an initializer or an earlier node's output, and
    /// every graph output is produced: what the executor relies on.
    fn check_wiring(&self) -> Result<(), OnnxError> {
        let mut known: std::collections::HashSet<&str> = self.inputs.iter().map(|v| v.name.as_str()).collect();
        known.extend(self.initializers.keys().map(String::as_str));
        for n in &self.nodes {
            if let Some(missing) = n.inputs.iter().find(|i| !i.is_empty() && !known.contains(i.as_str())) {
                return Err(OnnxError::Node {
                    path: self.path.clone(),
                    node: n.name.clone(),
                    op: n.op.clone(),
                    what: format!("input '{missing}' is produced by no earlier node, initializer or graph input"),
                });
            }
            known.extend(n.outputs.iter().map(String::as_str));
        }
        if let Some(o) = self.outputs.iter().find(|o| !known.contains(o.name.as_str())) {
            return Err(OnnxError::Model {
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
    fn generalize_batch(&mut self) -> Result<(), OnnxError> {
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
                    return Err(OnnxError::Node {
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

    /// The node that produces tensor `name`.
    pub fn producer_of(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.outputs.iter().any(|o| o == name))
    }
}

fn dims_of(v: &proto::ValueInfoProto) -> Vec<Option<i64>> {
    use proto::tensor_shape_proto::dimension::Value;
    let Some(proto::type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Vec::new();
    };
    let Some(shape) = &t.shape else { return Vec::new() };
    shape
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Value::DimValue(x)) if x > 0 => Some(x),
            _ => None,
        })
        .collect()
}

fn attr_of(a: &proto::AttributeProto, dir: &Path) -> Result<Attr, String> {
    use proto::attribute_proto::AttributeType as T;
    let kind = a.r#type.and_then(|t| T::try_from(t).ok());
    Ok(match kind {
        Some(T::Int) => Attr::Int(a.i.unwrap_or(0)),
        Some(T::Float) => Attr::Float(a.f.unwrap_or(0.0)),
        Some(T::Ints) => Attr::Ints(a.ints.clone()),
        Some(T::Floats) => Attr::Floats(a.floats.clone()),
        Some(T::String) => Attr::Text(String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into_owned()),
        Some(T::Tensor) => Attr::Tensor(tensor_of(a.t.as_ref().ok_or("a tensor attribute without its tensor")?, dir)?),
        other => return Err(format!("attribute type {other:?} is not supported")),
    })
}

/// The element type of a tensor: the tch kind and the bytes per element in the file.
fn kind_of(data_type: i32) -> Result<(Kind, usize), String> {
    use proto::tensor_proto::DataType as D;
    match D::try_from(data_type) {
        Ok(D::Float) => Ok((Kind::Float, 4)),
        Ok(D::Int64) => Ok((Kind::Int64, 8)),
        Ok(D::Int32) => Ok((Kind::Int, 4)),
        Ok(D::Double) => Ok((Kind::Double, 8)),
        Ok(D::Bool) => Ok((Kind::Bool, 1)),
        Ok(D::Uint8) => Ok((Kind::Uint8, 1)),
        Ok(other) => Err(format!(
            "element type {} is not supported (float, double, int64, int32, bool, uint8)",
            other.as_str_name()
        )),
        Err(_) => Err(format!("unknown element type {data_type}")),
    }
}

/// The tensor's values as a tch tensor (CPU), checked against its dims.
pub(crate) fn tensor_of(t: &proto::TensorProto, dir: &Path) -> Result<Tensor, String> {
    let (kind, size) = kind_of(t.data_type.unwrap_or(0))?;
    if t.dims.iter().any(|&d| d < 0) {
        return Err(format!("negative dimension in {:?}", t.dims));
    }
    let count = t
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&c| c <= MAX_ELEMENTS)
        .ok_or_else(|| format!("dims {:?} hold more than {MAX_ELEMENTS} elements", t.dims))?;
    let bytes = count as usize * size;
    let external = t.data_location == Some(proto::tensor_proto::DataLocation::External as i32);
    let raw: Vec<u8> = if external {
        external_bytes(t, dir, bytes)?
    } else if let Some(raw) = t.raw_data.as_ref().filter(|r| !r.is_empty() || count == 0) {
        if raw.len() != bytes {
            return Err(format!("raw data holds {} bytes, dims {:?} need {bytes}", raw.len(), t.dims));
        }
        raw.clone()
    } else {
        typed_bytes(t, kind, count as usize)?
    };
    let shape: Vec<i64> = t.dims.clone();
    Ok(Tensor::from_data_size(&raw, &shape, kind))
}

/// Values stored in the typed fields (`float_data`, `int64_data`, …), as little-endian bytes.
fn typed_bytes(t: &proto::TensorProto, kind: Kind, count: usize) -> Result<Vec<u8>, String> {
    let (n, bytes): (usize, Vec<u8>) = match kind {
        Kind::Float => (t.float_data.len(), t.float_data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Kind::Double => (t.double_data.len(), t.double_data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Kind::Int64 => (t.int64_data.len(), t.int64_data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Kind::Int => (t.int32_data.len(), t.int32_data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Kind::Bool | Kind::Uint8 => (t.int32_data.len(), t.int32_data.iter().map(|&x| x as u8).collect()),
        _ => return Err("unsupported element type".into()),
    };
    if n != count {
        return Err(format!("holds {n} values, dims {:?} need {count}", t.dims));
    }
    Ok(bytes)
}

/// The bytes of an externally stored tensor: `location` (a file beside the model, never
/// outside its folder), `offset` and `length`.
fn external_bytes(t: &proto::TensorProto, dir: &Path, bytes: usize) -> Result<Vec<u8>, String> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
    let location = get("location").ok_or("external data without a location")?;
    let rel = Path::new(&location);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("external data file '{location}' is outside the model's folder"));
    }
    let number = |k: &str| -> Result<u64, String> {
        get(k)
            .map(|v| v.parse::<u64>().map_err(|_| format!("external data {k} '{v}' is not a number")))
            .unwrap_or(Ok(0))
    };
    let offset = number("offset")?;
    let length = match get("length") {
        Some(_) => number("length")?,
        None => bytes as u64,
    };
    if length != bytes as u64 {
        return Err(format!("external data length {length} bytes, dims {:?} need {bytes}", t.dims));
    }
    let file = dir.join(rel);
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&file).map_err(|e| format!("external data file {}: {e}", file.display()))?;
    let size = f.metadata().map_err(|e| format!("{}: {e}", file.display()))?.len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(format!(
            "external data {}: bytes {offset}..{} are past its end ({size} bytes)",
            file.display(),
            offset.saturating_add(length)
        ));
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut buf = vec![0u8; bytes];
    f.read_exact(&mut buf).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(buf)
}
