//! Datasets (read-only): YOLO txt layouts found from a Darknet `.data`, an Ultralytics
//! `data.yaml`, a list file or a folder; COCO json; classification image folders. Plus image
//! decoding, letterboxing and a prefetching decoder pool.

pub mod classify;
pub mod coco_json;
pub mod letterbox;
pub mod prefetch;
pub mod synth;
pub mod yolo;

pub use classify::ClassificationDataset;
pub use letterbox::{letterbox, Letterboxed};
pub use prefetch::Prefetcher;

use std::fmt;
use std::path::{Path, PathBuf};

/// A dataset error: the file, the line where there is one, and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DataError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl DataError {
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self { file: file.to_path_buf(), line, message: message.into() }
    }
}

/// Which part of a dataset description to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

/// What to do with bad labels and unreadable images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBad {
    /// Leave the image out, count it and report it (the default).
    #[default]
    Skip,
    /// Stop with the error.
    Error,
}

/// Images left out, with the reason for each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkipReport {
    pub skipped: Vec<DataError>,
}

impl SkipReport {
    pub fn len(&self) -> usize {
        self.skipped.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skipped.is_empty()
    }

    /// Records `err` under `Skip`, or returns it under `Error`.
    pub fn handle(&mut self, on_bad: OnBad, err: DataError) -> Result<(), DataError> {
        match on_bad {
            OnBad::Skip => {
                self.skipped.push(err);
                Ok(())
            }
            OnBad::Error => Err(err),
        }
    }

    /// A short human summary: the count and the first few reasons.
    pub fn summary(&self, max: usize) -> String {
        let mut s = format!("{} image(s) skipped", self.skipped.len());
        for e in self.skipped.iter().take(max) {
            s.push_str(&format!("\n  {e}"));
        }
        if self.skipped.len() > max {
            s.push_str(&format!("\n  … and {} more", self.skipped.len() - max));
        }
        s
    }
}

/// A ground-truth box of a detection sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GtBox {
    /// Class index (0-based, contiguous).
    pub class: usize,
    /// Either normalised (cx, cy, w, h) in [0,1] (YOLO labels) or pixels (x, y, w, h) (COCO).
    pub coords: [f64; 4],
    pub normalized: bool,
    pub crowd: bool,
}

impl GtBox {
    /// The box as pixel (x, y, w, h) in an image of `width × height`.
    pub fn pixels_xywh(&self, width: u32, height: u32) -> [f64; 4] {
        if self.normalized {
            let (w, h) = (width as f64, height as f64);
            let [cx, cy, bw, bh] = self.coords;
            [(cx - bw / 2.0) * w, (cy - bh / 2.0) * h, bw * w, bh * h]
        } else {
            self.coords
        }
    }
}

/// One image of a detection dataset with its boxes.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSample {
    pub image: PathBuf,
    pub boxes: Vec<GtBox>,
    /// The image id in the COCO json this sample came from.
    pub coco_id: Option<i64>,
}

/// A detection dataset: samples in a deterministic order, class names and what was skipped.
#[derive(Debug, Clone)]
pub struct DetectionDataset {
    /// The path the dataset was opened from.
    pub source: PathBuf,
    pub names: Vec<String>,
    pub samples: Vec<DetectionSample>,
    pub skipped: SkipReport,
    /// Images without a label file (treated as background, as Ultralytics does).
    pub unlabelled: usize,
    /// For COCO json datasets: the ground truth as given, and class index -> category id.
    pub coco: Option<(crate::metrics::coco::CocoGt, Vec<i64>)>,
}

impl DetectionDataset {
    /// Opens a dataset from a Darknet `.data`, an Ultralytics `.yaml`, a COCO `.json`, a
    /// `.txt` list of images or a folder. `classes` names the classes when the source does
    /// not (list files, folders); labels with class ids ≥ the class count are bad labels.
    pub fn open(path: &Path, classes: Option<usize>, on_bad: OnBad) -> Result<Self, DataError> {
        Self::open_split(path, Split::Val, classes, on_bad)
    }

    /// Like [`open`](Self::open) for a given split of a `.data` or `.yaml` file (`train` /
    /// `val`); other sources are a split by themselves.
    pub fn open_split(path: &Path, split: Split, classes: Option<usize>, on_bad: OnBad) -> Result<Self, DataError> {
        if !path.exists() {
            return Err(DataError::new(
                path,
                None,
                "not found: expected a .data, .yaml, .json or .txt file, or a folder of images",
            ));
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            _ if path.is_dir() => yolo::open_folder(path, classes, on_bad),
            "data" => yolo::open_darknet_data(path, split, classes, on_bad),
            "yaml" | "yml" => yolo::open_ultralytics_yaml(path, split, classes, on_bad),
            "json" => coco_json::open(path, None),
            "txt" => yolo::open_list(path, classes, on_bad),
            _ => Err(DataError::new(
                path,
                None,
                format!("unknown dataset file `.{ext}`: expected .data (Darknet), .yaml (Ultralytics), .json (COCO), .txt (image list) or a folder"),
            )),
        }
    }

    /// Keeps the first `n` samples (deterministic: samples are in sorted order).
    pub fn limit(&mut self, n: usize) {
        self.samples.truncate(n);
    }

    pub fn num_classes(&self) -> usize {
        self.names.len()
    }
}

/// Image file extensions the decoder reads.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes an image file (jpg/png/bmp, detected from content) to RGB8.
pub fn load_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::new(path, None, format!("cannot open the image: {e}")))?
        .with_guessed_format()
        .map_err(|e| DataError::new(path, None, format!("cannot read the image: {e}")))?;
    let img = reader.decode().map_err(|e| DataError::new(path, None, format!("cannot decode the image: {e}")))?;
    Ok(img.to_rgb8())
}

/// Resolves `p` written inside `base_file`: absolute as is; relative to the file's folder
/// when that exists, else to the working directory.
pub(crate) fn resolve(base_file: &Path, p: &str) -> PathBuf {
    let pb = PathBuf::from(p.trim());
    if pb.is_absolute() {
        return pb;
    }
    let beside = base_file.parent().unwrap_or(Path::new(".")).join(&pb);
    // Drop `.` components so messages show clean paths.
    let clean = |p: PathBuf| -> PathBuf { p.components().collect() };
    if beside.exists() {
        clean(beside)
    } else {
        clean(pb)
    }
}
