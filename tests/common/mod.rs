//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fuzz;
#[cfg(feature = "gui")]
pub mod ui;

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

/// The Python of the torch venv that scripts/env.sh made: from PRUNESCOPE_TORCH_VENV when set
/// (env.sh exports it), else found from the libtorch this test binary was linked against (the
/// wheel's `torch/lib` inside that venv), so a plain `cargo test` works too.
pub fn venv_python() -> PathBuf {
    if let Ok(venv) = std::env::var("PRUNESCOPE_TORCH_VENV") {
        return PathBuf::from(venv).join("bin/python");
    }
    let lib = PathBuf::from(env!("PRUNESCOPE_LIBTORCH_LIB"));
    lib.ancestors()
        .map(|d| d.join("bin/python"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no Python venv above libtorch at {}: source scripts/env.sh first", lib.display()))
}
