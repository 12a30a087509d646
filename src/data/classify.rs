//! Image folders for classification: one sub-folder per class, sorted by name. A dataset is
//! given as the folder of class folders, as a folder holding `train/` and `val/` (or `test/`)
//! ones (Ultralytics' layout), or as a data.yaml naming them (`path`, `train`, `val`, and
//! optionally `names`, which must then match the folders).

use super::{is_image, DataError, Split};
use std::path::{Path, PathBuf};

/// A classification dataset: (image, class index) pairs, classes in name order.
#[derive(Debug, Clone)]
pub struct ClassificationDataset {
    /// What the user gave.
    pub source: PathBuf,
    /// The folder of class folders.
    pub root: PathBuf,
    pub names: Vec<String>,
    /// Sorted by class, then file name.
    pub samples: Vec<(PathBuf, usize)>,
}

impl ClassificationDataset {
    /// The validation split of `path` (a folder of class folders is the split itself).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        Self::open_split(path, Split::Val)
    }

    pub fn open_split(path: &Path, split: Split) -> Result<Self, DataError> {
        if !path.exists() {
            return Err(DataError::new(
                path,
                None,
                "not found: expected a folder of class folders (or of train/ and val/ ones) or a data.yaml naming them",
            ));
        }
        if path.is_dir() {
            let named = match split {
                Split::Val => ["val", "test"].iter().map(|s| path.join(s)).find(|p| p.is_dir()),
                Split::Train => Some(path.join("train")).filter(|p| p.is_dir()),
            };
            return Self::open_folder(path, named.as_deref().unwrap_or(path), None);
        }
        let text = super::read_text(path, 1 << 20)?;
        let layout = super::yolo::parse_data_yaml(path, &text, split)?;
        let [source] = layout.sources.as_slice() else {
            return Err(DataError::new(path, None, "a classification split is one folder of class folders"));
        };
        let names = match layout.names {
            super::yolo::Names::Given(n) => Some(n),
            _ => None,
        };
        Self::open_folder(path, &source.path, names)
    }

    fn open_folder(source: &Path, root: &Path, names: Option<Vec<String>>) -> Result<Self, DataError> {
        let entries = std::fs::read_dir(root).map_err(|e| DataError::io(root, "cannot list the folder", e))?;
        let mut folders: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        if folders.is_empty() {
            return Err(DataError::new(root, None, "expected one sub-folder per class, found none"));
        }
        let names = match names {
            Some(names) => {
                if let Some(extra) = folders.iter().find(|f| !names.contains(f)) {
                    return Err(DataError::new(
                        source,
                        None,
                        format!("`names` does not name the class folder '{extra}' of {}", root.display()),
                    ));
                }
                names
            }
            None => folders,
        };
        let mut samples = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let dir = root.join(name);
            if !dir.is_dir() {
                continue; // a class without validation images
            }
            let mut imgs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| DataError::io(&dir, "cannot list the folder", e))?
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
        Ok(Self { source: source.to_path_buf(), root: root.to_path_buf(), names, samples })
    }

    /// Keeps `n` samples, taken round-robin over the classes (the first of each class, then
    /// the second, …) so that a limited run still sees every class; deterministic.
    pub fn limit(&mut self, n: usize) {
        if n >= self.samples.len() {
            return;
        }
        let mut rank = vec![0usize; self.names.len()];
        let mut keyed: Vec<(usize, usize, (PathBuf, usize))> = std::mem::take(&mut self.samples)
            .into_iter()
            .map(|s| {
                let r = rank[s.1];
                rank[s.1] += 1;
                (r, s.1, s)
            })
            .collect();
        keyed.sort_by_key(|k| (k.0, k.1));
        keyed.truncate(n);
        let mut kept: Vec<(PathBuf, usize)> = keyed.into_iter().map(|k| k.2).collect();
        kept.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        self.samples = kept;
    }

    pub fn num_classes(&self) -> usize {
        self.names.len()
    }
}
