//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fuzz;

use std::path::PathBuf;

/// `tests/fixtures`: reference files made by PyTorch-YOLOv3, pycocotools and PyTorch, copied
/// byte for byte with their provenance (tests/fixtures/README.md).
pub fn fixtures() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    assert!(p.is_dir(), "reference fixtures not found at {}", p.display());
    p
}

pub fn darknet(name: &str) -> PathBuf {
    fixtures().join("darknet").join(name)
}
