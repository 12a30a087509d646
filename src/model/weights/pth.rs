//! PyTorch state-dict files (`torch.save(model.state_dict())`, zip format).

use super::pickle::{self, DType, TensorEntry, TensorRef, Value};
use super::{Layout, TensorF32, Weights, WeightsError, WeightsFormat};
use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;

/// The largest `data.pkl` accepted: a state dict's pickle takes well under a MiB.
const MAX_PICKLE: u64 = 64 << 20;

/// Reads a state dict, checking every name and shape against `layout` before any tensor data
/// is read, so that sizes declared in the file (zip entries, shapes, offsets) never decide an
/// allocation: each storage record is read only as far as the cfg's tensors need, with
/// checked arithmetic, and records larger than what the cfg can need are refused.
pub(super) fn read(path: &Path, bytes: &[u8], layout: &Layout) -> Result<BTreeMap<String, TensorF32>, WeightsError> {
    let fail = |m: String| WeightsError::format(path, WeightsFormat::Pth, m);
    if !bytes.starts_with(b"PK") {
        return Err(fail(
            "not a zip-format PyTorch file: expected a file written by torch.save (PyTorch >= 1.6); legacy pickled files are not supported".into(),
        ));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|source| WeightsError::Zip {
        path: path.to_path_buf(),
        what: "cannot open the zip archive".into(),
        source,
    })?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .map(str::to_string)
        .ok_or_else(|| fail("no data.pkl record: expected a torch.save archive".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    // Reads at most `limit` bytes of a record; `exact` also requires at least that many.
    let mut record = |name: &str, limit: u64, exact: bool| -> Result<Vec<u8>, WeightsError> {
        let f = zip.by_name(name).map_err(|source| WeightsError::Zip {
            path: path.to_path_buf(),
            what: format!("missing record `{name}`"),
            source,
        })?;
        let declared = f.size();
        if exact && declared < limit {
            return Err(fail(format!(
                "record `{name}` holds {declared} bytes but the tensors that use it need {limit} (truncated file?)"
            )));
        }
        if !exact && declared > limit {
            return Err(fail(format!("record `{name}` declares {declared} bytes, expected at most {limit}")));
        }
        let mut buf = Vec::new();
        f.take(limit).read_to_end(&mut buf).map_err(|source| WeightsError::Record {
            path: path.to_path_buf(),
            record: name.to_string(),
            source,
        })?;
        if exact && (buf.len() as u64) < limit {
            return Err(fail(format!(
                "record `{name}` ends after {} bytes but the tensors that use it need {limit} (truncated file?)",
                buf.len()
            )));
        }
        Ok(buf)
    };
    if let Ok(order) = record(&format!("{prefix}byteorder"), 64, false) {
        if order != b"little" {
            return Err(fail(format!(
                "byte order `{}` is not supported: expected little",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pkl = record(&pkl_name, MAX_PICKLE, false)?;
    let root = pickle::load(&pkl).map_err(|source| WeightsError::Pickle {
        path: path.to_path_buf(),
        record: pkl_name.clone(),
        source,
    })?;
    // Python dict semantics: a repeated key keeps its last value.
    let dict: BTreeMap<String, TensorRef> = state_dict_of(path, root)?.into_iter().collect();
    super::check_shapes(path, dict.iter().map(|(k, t)| (k.as_str(), t.shape.as_slice())), layout)?;
    // Only the tensors the cfg uses are read (the others are buffers such as anchors).
    let wanted: Vec<(&String, &TensorRef)> =
        dict.iter().filter(|(k, _)| layout.tensors.iter().any(|(name, _)| name == *k)).collect();
    // Bytes of each storage the wanted tensors reach, checked against what the cfg can need
    // in all (every float as f64, plus alignment slack).
    let budget = (layout.float_count() as u64).saturating_mul(8).saturating_add(1 << 20);
    let mut need: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, t) in &wanted {
        let n = extent(t).map_err(|source| tensor_error(path, key, source))?;
        let e = need.entry(t.storage_key.as_str()).or_insert(0);
        *e = (*e).max(n);
    }
    let total = need.values().fold(0u64, |a, n| a.saturating_add(*n));
    if total > budget {
        return Err(fail(format!(
            "the tensors reach {total} bytes of storage, more than the {budget} bytes this cfg's {} floats can need (a malformed file?)",
            layout.float_count()
        )));
    }
    let mut storages: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (storage, n) in &need {
        let data = record(&format!("{prefix}data/{storage}"), *n, true)?;
        storages.insert(storage, data);
    }
    let mut out = BTreeMap::new();
    for (key, t) in wanted {
        let tensor = gather(t, &storages[t.storage_key.as_str()]).map_err(|source| tensor_error(path, key, source))?;
        out.insert(key.clone(), tensor);
    }
    Ok(out)
}

/// A tensor whose view of its storage is impossible.
fn tensor_error(path: &Path, key: &str, source: ViewError) -> WeightsError {
    WeightsError::Tensor { path: path.to_path_buf(), key: key.to_string(), source }
}

/// Why a tensor cannot be read from its storage as the file describes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// Shape and stride of different lengths.
    #[error("shape {shape:?} and stride {stride:?} differ in rank")]
    Rank { shape: Vec<usize>, stride: Vec<usize> },
    /// A view whose byte extent (or element count) overflows 64 bits.
    #[error("shape {shape:?}, stride {stride:?} and offset {offset} overflow")]
    Overflow { shape: Vec<usize>, stride: Vec<usize>, offset: usize },
    /// A view reaching past the end of its storage record.
    #[error(
        "shape {shape:?} at offset {offset} needs {need} bytes of storage `{storage}` but the record has {have} (truncated file?)"
    )]
    Short { shape: Vec<usize>, offset: usize, need: u64, storage: String, have: usize },
    /// A tensor whose data holds another number of values than its shape.
    #[error("holds {values} values for shape {shape:?}")]
    Count { values: usize, shape: Vec<usize> },
}

/// The number of storage bytes a tensor view reaches: (largest element index + 1) · element
/// size, with checked arithmetic (0 for an empty tensor).
fn extent(t: &TensorRef) -> Result<u64, ViewError> {
    if t.stride.len() != t.shape.len() {
        return Err(ViewError::Rank { shape: t.shape.clone(), stride: t.stride.clone() });
    }
    if t.shape.contains(&0) {
        return Ok(0);
    }
    let overflow = || ViewError::Overflow { shape: t.shape.clone(), stride: t.stride.clone(), offset: t.offset };
    let mut last = t.offset as u64;
    for (&n, &s) in t.shape.iter().zip(&t.stride) {
        let reach = ((n - 1) as u64).checked_mul(s as u64).ok_or_else(overflow)?;
        last = last.checked_add(reach).ok_or_else(overflow)?;
    }
    last.checked_add(1).and_then(|n| n.checked_mul(t.dtype.size() as u64)).ok_or_else(overflow)
}

/// Finds the name → tensor mapping: the top-level dict, or one nested under `state_dict` or
/// `model` (training checkpoints).
fn state_dict_of(path: &Path, root: Value) -> Result<Vec<(String, TensorRef)>, WeightsError> {
    let fail = |m: String| WeightsError::format(path, WeightsFormat::Pth, m);
    let Value::Dict(items) = root else {
        return Err(fail(format!(
            "expected a state dict (a dict of tensors), found a pickled {}; save model.state_dict() instead of the model",
            root.type_name()
        )));
    };
    let has_tensors = items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    if !has_tensors {
        for (k, v) in &items {
            if matches!(k, Value::Str(s) if s == "state_dict" || s == "model") && matches!(v, Value::Dict(_)) {
                return state_dict_of(path, v.clone());
            }
        }
        return Err(fail("the pickled dict holds no tensors: expected a state dict".into()));
    }
    let mut out = Vec::new();
    for (k, v) in items {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => out.push((k, t)),
            (Value::Str(k), other) => {
                return Err(fail(format!("entry `{k}` is a {} where a tensor was expected", other.type_name())))
            }
            (k, _) => return Err(fail(format!("a state dict key is a {} where a string was expected", k.type_name()))),
        }
    }
    Ok(out)
}

/// Copies a (possibly strided) view out of its storage as f32. The shape has been checked
/// against the cfg, so the element count is one the model really has.
fn gather(t: &TensorRef, storage: &[u8]) -> Result<TensorF32, ViewError> {
    let es = t.dtype.size();
    let need = extent(t)?;
    if need > storage.len() as u64 {
        return Err(ViewError::Short {
            shape: t.shape.clone(),
            offset: t.offset,
            need,
            storage: t.storage_key.clone(),
            have: storage.len(),
        });
    }
    let numel = t.shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n)).ok_or_else(|| ViewError::Overflow {
        shape: t.shape.clone(),
        stride: t.stride.clone(),
        offset: t.offset,
    })?;
    let mut data = Vec::with_capacity(numel);
    let mut idx = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        // In bounds and without overflow: every index is at most the one `extent` checked.
        let e = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        data.push(t.dtype.read_f32(&storage[e * es..(e + 1) * es]));
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < t.shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(TensorF32::new(t.shape.clone(), data))
}

/// Writes a state dict PyTorch-YOLOv3 loads with `strict=True`: parameters, running stats,
/// `num_batches_tracked` (0) and the yolo heads' anchor buffers, in module order.
pub(super) fn write(weights: &Weights, layout: &Layout, path: &Path) -> Result<Vec<u8>, WeightsError> {
    struct Item {
        block: usize,
        key: String,
        dtype: DType,
        shape: Vec<usize>,
        bytes: Vec<u8>,
    }
    let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut items: Vec<Item> = Vec::new();
    for c in &layout.convs {
        let mut keys = vec![c.weight.clone()];
        keys.extend(c.bias.iter().cloned());
        if let Some(bn) = &c.bn {
            keys.extend(bn.iter().cloned());
        }
        for k in keys {
            let t = weights.get(&k);
            items.push(Item {
                block: c.block,
                key: k,
                dtype: DType::F32,
                shape: t.shape.clone(),
                bytes: f32s(&t.data),
            });
        }
        if let Some(bn) = &c.bn {
            let key = bn[0].replace(".weight", ".num_batches_tracked");
            items.push(Item {
                block: c.block,
                key,
                dtype: DType::I64,
                shape: vec![],
                bytes: 0i64.to_le_bytes().to_vec(),
            });
        }
    }
    for a in &layout.anchor_buffers {
        let flat: Vec<f32> = a.anchors.iter().flat_map(|&(w, h)| [w, h]).collect();
        let n = a.anchors.len();
        items.push(Item {
            block: a.block,
            key: a.anchors_key.clone(),
            dtype: DType::F32,
            shape: vec![n, 2],
            bytes: f32s(&flat),
        });
        items.push(Item {
            block: a.block,
            key: a.grid_key.clone(),
            dtype: DType::F32,
            shape: vec![1, n, 1, 1, 2],
            bytes: f32s(&flat),
        });
    }
    items.sort_by_key(|i| i.block); // stable: keeps the order within a block

    let entries: Vec<TensorEntry> = items
        .iter()
        .enumerate()
        .map(|(i, it)| TensorEntry {
            key: &it.key,
            storage: if it.dtype == DType::I64 { "LongStorage" } else { "FloatStorage" },
            storage_key: i.to_string(),
            shape: &it.shape,
        })
        .collect();
    let pkl = pickle::Writer::state_dict(&entries);

    let stem = path.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty() && s.is_ascii()).unwrap_or("archive");
    let zip_err = |what: &str, source: zip::result::ZipError| WeightsError::Zip {
        path: path.to_path_buf(),
        what: what.to_string(),
        source,
    };
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    // PyTorch stores records uncompressed and 64-byte aligned so they can be memory-mapped.
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(64);
    let mut put = |name: String, data: &[u8]| -> Result<(), WeightsError> {
        zip.start_file(name, opts).map_err(|e| zip_err("cannot build the zip archive", e))?;
        zip.write_all(data).map_err(|e| zip_err("cannot build the zip archive", e.into()))
    };
    put(format!("{stem}/data.pkl"), &pkl)?;
    put(format!("{stem}/.format_version"), b"1")?;
    put(format!("{stem}/.storage_alignment"), b"64")?;
    put(format!("{stem}/byteorder"), b"little")?;
    for (i, it) in items.iter().enumerate() {
        put(format!("{stem}/data/{i}"), &it.bytes)?;
    }
    put(format!("{stem}/version"), b"3\n")?;
    let cursor = zip.finish().map_err(|e| zip_err("cannot finish the zip archive", e))?;
    Ok(cursor.into_inner())
}
