//! ONNX files: the protobuf (`proto`, generated from the vendored onnx.proto) read into the
//! IR ([`crate::model::ir::Net`]), weights inline or in an external data file beside it.
//! Everything a file can get wrong is a [`NetError`] naming the file and the node or
//! tensor, never a panic.

pub mod proto;
pub mod ultralytics;

use crate::model::ir::{exec, Attr, Net, NetError, Node, ValueInfo, OPSETS};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Largest tensor a file may declare (elements): 2³² floats is 16 GiB, past any model here.
const MAX_ELEMENTS: u64 = 1 << 32;

/// The files a model is stored in: `path`, then the external data files its initializers
/// name (each once, in the order first named).
pub fn files(path: &Path) -> Result<Vec<PathBuf>, NetError> {
    let bytes = std::fs::read(path).map_err(|source| NetError::Read { path: path.to_path_buf(), source })?;
    let model = proto::ModelProto::decode(bytes.as_slice())
        .map_err(|source| NetError::Decode { path: path.to_path_buf(), source })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = vec![path.to_path_buf()];
    for t in model.graph.iter().flat_map(|g| &g.initializer) {
        let location =
            t.external_data.iter().find(|e| e.key.as_deref() == Some("location")).and_then(|e| e.value.clone());
        if let Some(file) = location.map(|l| dir.join(l)) {
            if !out.contains(&file) {
                out.push(file);
            }
        }
    }
    Ok(out)
}

/// Reads and checks `path` (and its external data files, beside it).
pub fn read(path: &Path) -> Result<Net, NetError> {
    let p = || path.to_path_buf();
    let bytes = std::fs::read(path).map_err(|source| NetError::Read { path: p(), source })?;
    let model = proto::ModelProto::decode(bytes.as_slice()).map_err(|source| NetError::Decode { path: p(), source })?;
    let bad = |what: String| NetError::Model { path: p(), what };
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx"))
        .and_then(|o| o.version)
        .ok_or_else(|| bad("no opset of the default ONNX domain is imported".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(NetError::Opset { path: p(), opset });
    }
    let graph = model.graph.ok_or_else(|| bad("the model has no graph".into()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut initializers = HashMap::new();
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let tensor = tensor_of(t, dir).map_err(|what| NetError::Tensor { path: p(), name: name.clone(), what })?;
        initializers.insert(name, tensor);
    }
    let mut nodes = Vec::with_capacity(graph.node.len());
    for (i, n) in graph.node.iter().enumerate() {
        let name = n.name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| format!("node {i}"));
        let op = n.op_type.clone().unwrap_or_default();
        let domain = n.domain.clone().unwrap_or_default();
        if !(domain.is_empty() || domain == "ai.onnx") || !exec::SUPPORTED.contains(&op.as_str()) {
            let op = if domain.is_empty() { op } else { format!("{domain}.{op}") };
            return Err(NetError::UnsupportedOp { path: p(), node: name, op, opset });
        }
        let mut attrs = HashMap::new();
        for a in &n.attribute {
            let key = a.name.clone().unwrap_or_default();
            let value = attr_of(a, dir).map_err(|what| NetError::Node {
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
    let m = Net {
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
        in_place: HashMap::new(),
        packs: Default::default(),
        conv_act: HashMap::new(),
    };
    m.prepare()
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

/// Writes `source` (an ONNX file) to `out` with the initializers in `changed` replaced (same
/// names, shapes and element types): the graph, the metadata and the external-data layout
/// are kept. External tensors go to `<out file name>.data` beside `out`, at their original
/// offsets (the original data file copied, the changed ranges overwritten).
pub fn write_changed(source: &Path, out: &Path, changed: &HashMap<String, Tensor>) -> Result<(), NetError> {
    write_with(source, out, changed, None)
}

/// Writes `net`, read from `source`, to `out`: the initializers named in `changed` with the
/// net's values (new ones, such as the copies [`Net::own_initializer`] made, stored inline)
/// and every node's inputs as the net has them; the rest as in [`write_changed`].
pub fn write_net(source: &Path, out: &Path, net: &Net, changed: &[&str]) -> Result<(), NetError> {
    let values = changed
        .iter()
        .map(|n| {
            let t = net.initializers.get(*n).ok_or_else(|| NetError::Tensor {
                path: source.to_path_buf(),
                name: n.to_string(),
                what: "the net has no initializer of that name".into(),
            })?;
            Ok((n.to_string(), t.shallow_clone()))
        })
        .collect::<Result<HashMap<_, _>, NetError>>()?;
    write_with(source, out, &values, Some(&net.nodes))
}

fn write_with(
    source: &Path,
    out: &Path,
    changed: &HashMap<String, Tensor>,
    nodes: Option<&[Node]>,
) -> Result<(), NetError> {
    let p = || source.to_path_buf();
    let bytes = std::fs::read(source).map_err(|e| NetError::Read { path: p(), source: e })?;
    let mut model =
        proto::ModelProto::decode(bytes.as_slice()).map_err(|e| NetError::Decode { path: p(), source: e })?;
    let dir = source.parent().unwrap_or(Path::new("."));
    let graph =
        model.graph.as_mut().ok_or_else(|| NetError::Model { path: p(), what: "the model has no graph".into() })?;
    let out_name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model.onnx".into());
    let data_name = format!("{out_name}.data");
    // The external data files of the source, copied once each into the one new data file.
    let mut external: Option<(String, Vec<u8>)> = None;
    let mut remaining: std::collections::HashSet<&str> = changed.keys().map(String::as_str).collect();
    for t in &mut graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        let is_external = t.data_location == Some(proto::tensor_proto::DataLocation::External as i32);
        let new = changed.get(&name);
        if let Some(new) = new {
            remaining.remove(name.as_str());
            let (kind, _) = kind_of(t.data_type.unwrap_or(0)).map_err(|what| NetError::Tensor {
                path: p(),
                name: name.clone(),
                what,
            })?;
            if new.size() != t.dims || new.kind() != kind {
                return Err(NetError::Tensor {
                    path: p(),
                    name,
                    what: format!(
                        "the new value is {:?} {:?}, the file's is {:?} {kind:?}",
                        new.size(),
                        new.kind(),
                        t.dims
                    ),
                });
            }
        }
        if !is_external {
            if let Some(new) = new {
                t.raw_data = Some(le_bytes(new));
                t.float_data.clear();
                t.int64_data.clear();
                t.int32_data.clear();
                t.double_data.clear();
            }
            continue;
        }
        let get = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
        let location = get("location").unwrap_or_default();
        let offset: usize = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        match &external {
            None => {
                let file = dir.join(&location);
                let data = std::fs::read(&file).map_err(|e| NetError::Read { path: file.clone(), source: e })?;
                external = Some((location.clone(), data));
            }
            Some((loc, _)) if *loc != location => {
                return Err(NetError::Model {
                    path: p(),
                    what: format!("external data in two files ({loc}, {location}) is not supported for writing"),
                });
            }
            Some(_) => {}
        }
        if let (Some(new), Some((_, data))) = (new, external.as_mut()) {
            let b = le_bytes(new);
            let end = offset.checked_add(b.len()).filter(|&e| e <= data.len()).ok_or_else(|| NetError::Tensor {
                path: p(),
                name: name.clone(),
                what: "its external data range is past the end of the data file".into(),
            })?;
            data[offset..end].copy_from_slice(&b);
        }
        for e in &mut t.external_data {
            if e.key.as_deref() == Some("location") {
                e.value = Some(data_name.clone());
            }
        }
    }
    match nodes {
        None => {
            if let Some(name) = remaining.into_iter().next() {
                return Err(NetError::Tensor {
                    path: p(),
                    name: name.to_string(),
                    what: "no initializer of that name".into(),
                });
            }
        }
        Some(nodes) => {
            if nodes.len() != graph.node.len() {
                return Err(NetError::Model {
                    path: p(),
                    what: format!(
                        "the net has {} nodes, the file {}: not the net read from it",
                        nodes.len(),
                        graph.node.len()
                    ),
                });
            }
            for (proto_node, node) in graph.node.iter_mut().zip(nodes) {
                proto_node.input.clone_from(&node.inputs);
            }
            let mut added: Vec<&str> = remaining.into_iter().collect();
            added.sort_unstable();
            for name in added {
                let t = &changed[name];
                let data_type = match t.kind() {
                    Kind::Float => 1,
                    Kind::Int64 => 7,
                    Kind::Int => 6,
                    Kind::Double => 11,
                    other => {
                        return Err(NetError::Tensor {
                            path: p(),
                            name: name.into(),
                            what: format!("element type {other:?}"),
                        })
                    }
                };
                graph.initializer.push(proto::TensorProto {
                    name: Some(name.to_string()),
                    dims: t.size(),
                    data_type: Some(data_type),
                    raw_data: Some(le_bytes(t)),
                    ..Default::default()
                });
            }
        }
    }
    if let Some((_, data)) = external {
        let data_path = out.with_file_name(&data_name);
        crate::fsio::write_atomic(&data_path, data)
            .map_err(|e| NetError::Model { path: data_path.clone(), what: e.to_string() })?;
    }
    crate::fsio::write_atomic(out, model.encode_to_vec())
        .map_err(|e| NetError::Model { path: out.to_path_buf(), what: e.to_string() })
}

/// A tensor's values as little-endian bytes (the ONNX raw_data layout).
fn le_bytes(t: &Tensor) -> Vec<u8> {
    let t = t.to_device(tch::Device::Cpu).contiguous();
    let n = t.numel();
    let size = t.kind().elt_size_in_bytes();
    let mut out = vec![0u8; n * size];
    t.copy_data_u8(&mut out, n);
    out
}
