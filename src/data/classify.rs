//! Image folders for classification: one sub-folder per class, sorted by name.

use super::{is_image, DataError};
use std::path::{Path, PathBuf};

/// A classification dataset: (image, class index) pairs in sorted order.
#[derive(Debug, Clone)]
pub struct ClassificationDataset {
    pub root: PathBuf,
    pub names: Vec<String>,
    pub samples: Vec<(PathBuf, usize)>,
}

impl ClassificationDataset {
    pub fn open(root: &Path) -> Result<Self, DataError> {
        let entries = std::fs::read_dir(root).map_err(|e| DataError::io(root, "cannot list the folder", e))?;
        let mut classes: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        classes.sort();
        if classes.is_empty() {
            return Err(DataError::new(root, None, "expected one sub-folder per class, found none"));
        }
        let mut samples = Vec::new();
        let mut names = Vec::new();
        for (i, dir) in classes.iter().enumerate() {
            names.push(dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            let mut imgs: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| DataError::io(dir, "cannot list the folder", e))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| is_image(p))
                .collect();
            imgs.sort();
            samples.extend(imgs.into_iter().map(|p| (p, i)));
        }
        if samples.is_empty() {
            return Err(DataError::new(root, None, "the class folders hold no .jpg/.png/.bmp/.webp/.tif images"));
        }
        Ok(Self { root: root.to_path_buf(), names, samples })
    }
}
