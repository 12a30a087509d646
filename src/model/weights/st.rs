//! safetensors files with PyTorch-YOLOv3 key names.

use super::{Layout, TensorF32, Weights, WeightsError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads the tensors the layout names; names and shapes are checked against it before any
/// data is converted. Header and offsets are validated by the safetensors crate (checked
/// arithmetic, offsets within the file).
pub(super) fn read(path: &Path, bytes: &[u8], layout: &Layout) -> Result<BTreeMap<String, TensorF32>, WeightsError> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|source| WeightsError::Safetensors { path: path.to_path_buf(), source })?;
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
                return Err(WeightsError::Dtype { path: path.to_path_buf(), key: name, dtype: format!("{other:?}") });
            }
        };
        let numel = view.shape().iter().product::<usize>();
        if values.len() != numel {
            return Err(WeightsError::Tensor {
                path: path.to_path_buf(),
                key: name,
                source: super::ViewError::Count { values: values.len(), shape: view.shape().to_vec() },
            });
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
        .map_err(|source| WeightsError::Serialize { path: path.to_path_buf(), source })?;
    safetensors::serialize(views, None).map_err(|source| WeightsError::Serialize { path: path.to_path_buf(), source })
}
