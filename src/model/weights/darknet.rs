//! Darknet `.weights`: a header, then every convolution's floats in cfg order.
//!
//! The header is 3 int32 (major, minor, revision) and `seen`, an int64 when
//! major*10+minor >= 2 and an int32 otherwise. PyTorch-YOLOv3 always writes five int32, so
//! the header length is decided from the file size against the float count of the cfg.

use super::{Layout, TensorF32, Weights, WeightsError};
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn read(path: &Path, bytes: &[u8], layout: &Layout) -> Result<Weights, WeightsError> {
    let floats = layout.float_count();
    let need = 4 * floats;
    let size = bytes.len();
    let header = if size == 20 + need {
        20
    } else if size == 16 + need {
        16
    } else {
        return Err(WeightsError::new(path, mismatch_message(bytes, layout)));
    };
    let mut tensors = BTreeMap::new();
    let mut offset = header;
    for (key, shape) in &layout.tensors {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = bytes[offset..offset + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        offset += 4 * n;
        tensors.insert(key.clone(), TensorF32::new(shape.clone(), data));
    }
    Ok(Weights { tensors })
}

/// Explains a file whose size fits neither header: where it ends early, or how much is left.
fn mismatch_message(bytes: &[u8], layout: &Layout) -> String {
    let size = bytes.len();
    let floats = layout.float_count();
    if size < 16 {
        return format!(
            "{size} bytes is too short for a Darknet header (16 or 20 bytes); expected {} bytes for this cfg",
            20 + 4 * floats
        );
    }
    let int = |i: usize| i32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let (major, minor) = (int(0), int(1));
    // Guess the header from the version to point at the place where the file goes wrong.
    let header = if (major == 0 && minor == 0) || major * 10 + minor >= 2 { 20 } else { 16 };
    let expected = format!(
        "expected {} bytes (20-byte header + {floats} floats) or {} bytes (16-byte header), found {size}",
        20 + 4 * floats,
        16 + 4 * floats
    );
    let body = size.saturating_sub(header);
    if body < 4 * floats {
        let have = body / 4;
        let mut start = 0usize;
        for (key, shape) in &layout.tensors {
            let n: usize = shape.iter().product();
            if start + n > have {
                return format!(
                    "truncated: the file ends inside tensor `{key}` {shape:?}, which needs floats {start}..{} but the file holds {have} after its {header}-byte header; {expected}",
                    start + n
                );
            }
            start += n;
        }
    }
    let extra = body as i64 - 4 * floats as i64;
    format!(
        "oversized: {extra} bytes ({} floats) remain after the last tensor the cfg expects (is this the right cfg?); {expected}",
        extra / 4
    )
}

/// Writes a header valid under both readings (major=0, minor=2, revision=5, seen=0 as int64).
pub(super) fn write(weights: &Weights, layout: &Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + 4 * layout.float_count());
    for v in [0i32, 2, 5] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0i64.to_le_bytes());
    for (key, _) in &layout.tensors {
        for v in &weights.get(key).data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}
