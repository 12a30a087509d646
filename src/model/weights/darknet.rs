//! Darknet `.weights`: a header, then every convolution's floats in cfg order.
//!
//! The header is 3 int32 (major, minor, revision) and `seen`, an int64 when
//! major*10+minor >= 2 and an int32 otherwise. PyTorch-YOLOv3 always writes five int32, so
//! the header length is decided from the file size against the float count of the cfg.

use super::{Layout, TensorF32, Weights, WeightsError, WeightsFormat};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Reads a Darknet file for `layout`: the file size is compared with the two header layouts
/// before anything but the first bytes is read.
pub(super) fn load(path: &Path, layout: &Layout) -> Result<Weights, WeightsError> {
    let cannot = |source: std::io::Error| WeightsError::Read { path: path.to_path_buf(), source };
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    let Some(need) = body_bytes(layout) else {
        return Err(WeightsError::format(
            path,
            WeightsFormat::Darknet,
            "the cfg's tensors hold more floats than a file can address",
        ));
    };
    if size == 20 + need || size == 16 + need {
        let bytes = std::fs::read(path).map_err(cannot)?;
        return read(path, &bytes, layout);
    }
    let mut head = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(HEAD as u64).read_to_end(&mut head)).map_err(cannot)?;
    Err(WeightsError::format(path, WeightsFormat::Darknet, mismatch_message(size, &head, layout)))
}

/// Bytes the header-less body of a file for `layout` takes (None when that overflows).
fn body_bytes(layout: &Layout) -> Option<u64> {
    let mut floats = 0u64;
    for (_, shape) in &layout.tensors {
        let n = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
        floats = floats.checked_add(n)?;
    }
    floats.checked_mul(4).filter(|&b| b < u64::MAX / 2)
}

/// How many leading bytes are read of a file whose size fits no header layout.
const HEAD: usize = 20;

pub(super) fn read(path: &Path, bytes: &[u8], layout: &Layout) -> Result<Weights, WeightsError> {
    let size = bytes.len() as u64;
    let need = body_bytes(layout);
    let header = match need {
        Some(n) if size == 20 + n => 20,
        Some(n) if size == 16 + n => 16,
        _ => return Err(WeightsError::format(path, WeightsFormat::Darknet, mismatch_message(size, bytes, layout))),
    };
    // The size matches, so every tensor below lies within the file.
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

/// What a file starting with `head` looks like when it is not a Darknet file at all.
fn sniff(head: &[u8]) -> Option<&'static str> {
    Some(match head {
        [0xFF, 0xD8, 0xFF, ..] => "a JPEG image",
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [b'B', b'M', ..] => "a BMP image",
        [b'P', b'K', 3, 4, ..] => "a zip archive (a PyTorch .pth file? then name it .pth)",
        [0x80, 2..=5, ..] => "a Python pickle (a legacy PyTorch file?)",
        [b'[', ..] => "a text file (a .cfg?)",
        _ => return None,
    })
}

/// Explains a file whose size fits neither header: not a Darknet file at all, where it ends
/// early, or how much is left. `head` holds (at least) the first bytes of the file.
fn mismatch_message(size: u64, head: &[u8], layout: &Layout) -> String {
    let floats = layout.float_count() as u64;
    let need = floats.saturating_mul(4);
    let expected = format!(
        "expected {} bytes (20-byte header + {floats} floats) or {} bytes (16-byte header), found {size}",
        need.saturating_add(20),
        need.saturating_add(16)
    );
    if let Some(kind) = sniff(head) {
        return format!("this is not a Darknet .weights file: it starts like {kind}; {expected}");
    }
    if size < 16 || head.len() < 16 {
        return format!(
            "{size} bytes is too short for a Darknet header (16 or 20 bytes); expected {} bytes for this cfg",
            need.saturating_add(20)
        );
    }
    let int = |i: usize| i32::from_le_bytes([head[4 * i], head[4 * i + 1], head[4 * i + 2], head[4 * i + 3]]);
    let (major, minor, revision) = (int(0), int(1), int(2));
    if !(0..=100).contains(&major) || !(0..=100).contains(&minor) || revision < 0 {
        return format!(
            "this is not a Darknet .weights file: its header reads version {major}.{minor}.{revision}, expected a small version such as 0.2.5; {expected}"
        );
    }
    // Guess the header from the version to point at the place where the file goes wrong.
    let header: u64 = if (major == 0 && minor == 0) || major * 10 + minor >= 2 { 20 } else { 16 };
    let body = size.saturating_sub(header);
    if body < need {
        let have = body / 4;
        let mut start = 0u64;
        for (key, shape) in &layout.tensors {
            let n = shape.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
            let end = start.saturating_add(n);
            if end > have {
                return format!(
                    "truncated: the file ends inside tensor `{key}` {shape:?}, which needs floats {start}..{end} but the file holds {have} after its {header}-byte header; {expected}"
                );
            }
            start = end;
        }
    }
    let extra = body.saturating_sub(need);
    format!(
        "oversized: {extra} bytes ({} floats) remain after the last tensor the cfg expects (is this the right cfg?); {expected}",
        extra / 4
    )
}

/// Writes a header valid under both readings (major=0, minor=2, revision=5, seen=0 as int64).
pub(super) fn write(weights: &Weights, layout: &Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(layout.float_count().saturating_mul(4).saturating_add(20));
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
