//! safetensors files with PyTorch-YOLOv3 key names.

use super::{Layout, TensorF32, Weights, WeightsError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads the tensors the layout names; names and shapes are checked against it before any
/// data is converted. Header and offsets are validated by the safetensors crate (checked
/// arithmetic, offsets within the file).
pub(super) fn read(path: &Path, bytes: &[u8], layout: &Layout) -> Result<BTreeMap<String, TensorF32>, WeightsError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        WeightsError::new(
            path,
            format!(
                "not a valid safetensors file: {e}; expected an 8-byte little-endian header length, a JSON header and the tensor data it describes"
            ),
        )
    })?;
    let views = st.tensors();
    super::check_shapes(path, views.iter().map(|(k, v)| (k.as_str(), v.shape())), layout)?;
    let mut out = BTreeMap::new();
    for (name, view) in views {
        if !layout.tensors.iter().any(|(k, _)| *k == name) {
            continue; // a buffer the cfg does not use (anchors, num_batches_tracked)
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            other => {
                return Err(WeightsError::new(
                    path,
                    format!("tensor `{name}` has dtype {other:?}: expected F32 (or F64)"),
                ));
            }
        };
        let numel = view.shape().iter().product::<usize>();
        if values.len() != numel {
            return Err(WeightsError::new(
                path,
                format!("tensor `{name}` holds {} values for shape {:?}", values.len(), view.shape()),
            ));
        }
        out.insert(name, TensorF32::new(view.shape().to_vec(), values));
    }
    Ok(out)
}

pub(super) fn write(weights: &Weights, path: &Path) -> Result<Vec<u8>, WeightsError> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone()))
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| Ok((k.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()
        .map_err(|e| WeightsError::new(path, format!("cannot build safetensors: {e}")))?;
    safetensors::serialize(views, None)
        .map_err(|e| WeightsError::new(path, format!("cannot serialize safetensors: {e}")))
}
