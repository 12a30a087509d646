//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/fixtures` beside the project root: reference files made by PyTorch-YOLOv3,
/// pycocotools and PyTorch (read in place, never copied).
pub fn fixtures() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    assert!(p.is_dir(), "reference fixtures not found at {}", p.display());
    p
}

pub fn darknet(name: &str) -> PathBuf {
    fixtures().join("darknet").join(name)
}
