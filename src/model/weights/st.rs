//! safetensors files with PyTorch-YOLOv3 key names.

use super::{TensorF32, Weights, WeightsError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, TensorF32>, WeightsError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| WeightsError::new(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F64 => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            // Integer buffers such as num_batches_tracked: kept only so the key check sees them.
            Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
            other => {
                return Err(WeightsError::new(
                    path,
                    format!("tensor `{name}` has dtype {other:?}: expected F32 (or F64)"),
                ));
            }
        };
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
