//! Datasets (read-only): YOLO txt layouts found from a Darknet `.data`, an Ultralytics
//! `data.yaml`, a list file or a folder; COCO json; classification image folders. Plus image
//! decoding, letterboxing and a prefetching decoder pool.

pub mod classify;
pub mod coco_json;
pub mod letterbox;
pub mod prefetch;
pub mod preprocess;
pub mod synth;
pub mod synth_classify;
pub mod yolo;

pub use classify::ClassificationDataset;
pub use letterbox::{try_letterbox, LetterboxError, Letterboxed};
pub use prefetch::Prefetcher;

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A dataset error. Every message names the file (and the line where there is one) and what
/// was expected; the underlying failure is spelled out in the message and kept as the
/// [`source`](std::error::Error::source).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DataError {
    /// A value in a file that is not what was expected (a bad label, a missing key, …).
    #[error("{}{}: {message}", file.display(), at_line(*line))]
    Invalid { file: PathBuf, line: Option<usize>, message: String },
    /// A file or folder that cannot be read, listed or written.
    #[error("{}: {what}: {source}", file.display())]
    Io {
        file: PathBuf,
        /// What was being done: "cannot read", "cannot list the folder", …
        what: &'static str,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A file larger than a file of its kind may be.
    #[error("{}: larger than {max} bytes: is this the right file?", file.display())]
    TooLarge { file: PathBuf, max: u64 },
    /// A text file that is not UTF-8: the line and column of the first bad byte.
    #[error("{}:{line}: not UTF-8 (byte 0x{byte:02X} at column {column}): save the file as UTF-8", file.display())]
    NotUtf8 { file: PathBuf, line: usize, column: usize, byte: u8 },
    /// An image that cannot be decoded or encoded.
    #[error("{}: {what}: {source}", file.display())]
    Image {
        file: PathBuf,
        /// "cannot decode the image", "cannot encode"
        what: &'static str,
        #[source]
        source: Arc<image::ImageError>,
    },
    /// A json file that does not parse as what it should be.
    #[error("{}: line {} column {}: not a valid {what}: {source}", file.display(), source.line(), source.column())]
    Json {
        file: PathBuf,
        /// What the file should be, e.g. "COCO ground-truth file (images, annotations, categories)".
        what: &'static str,
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// A YAML file that does not parse.
    #[error("{}:{line}: not valid YAML: {source}", file.display())]
    Yaml {
        file: PathBuf,
        line: usize,
        #[source]
        source: yaml_rust2::ScanError,
    },
    /// COCO json whose values fail the checks of [`crate::metrics::coco`] (its message names
    /// the file).
    #[error("{source}")]
    Coco {
        file: PathBuf,
        #[source]
        source: crate::metrics::coco::CocoError,
    },
    /// An image that cannot be letterboxed. A model size that no image fits is fatal (see
    /// [`DataError::is_fatal`]).
    #[error("{}: {source}", file.display())]
    Letterbox {
        file: PathBuf,
        #[source]
        source: LetterboxError,
    },
    /// An output that cannot be written in place (see [`crate::fsio`]).
    #[error("{source}")]
    Write {
        #[source]
        source: Arc<crate::fsio::IoError>,
    },
    /// Not a bad image but a failure of the reader itself (a decoder that panicked, an image
    /// stream that ended early): never skipped, whatever [`OnBad`] says.
    #[error("{}: {message}", file.display())]
    Fatal { file: PathBuf, message: String },
}

/// `:line` where there is a line.
fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

impl DataError {
    /// A value that is not what was expected, in `file` (at `line`).
    pub fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        Self::Invalid { file: file.to_path_buf(), line, message: message.into() }
    }

    /// An error that stops the run under every [`OnBad`] (see [`DataError::Fatal`]).
    pub fn fatal(file: &Path, message: impl Into<String>) -> Self {
        Self::Fatal { file: file.to_path_buf(), message: message.into() }
    }

    /// A failure of the system on `file` while doing `what` ("cannot read", …).
    pub fn io(file: &Path, what: &'static str, source: std::io::Error) -> Self {
        Self::Io { file: file.to_path_buf(), what, source: Arc::new(source) }
    }

    /// An image codec failure on `file` while doing `what`.
    pub fn image(file: &Path, what: &'static str, source: image::ImageError) -> Self {
        Self::Image { file: file.to_path_buf(), what, source: Arc::new(source) }
    }

    /// Whether the error stops the run whatever [`OnBad`] says: a failure of the reader
    /// itself, or a model size no image can be letterboxed to.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Fatal { .. } | Self::Letterbox { source: LetterboxError::Size { .. }, .. })
    }

    /// The file the error is about.
    pub fn file(&self) -> &Path {
        match self {
            Self::Invalid { file, .. }
            | Self::Io { file, .. }
            | Self::TooLarge { file, .. }
            | Self::NotUtf8 { file, .. }
            | Self::Image { file, .. }
            | Self::Json { file, .. }
            | Self::Yaml { file, .. }
            | Self::Coco { file, .. }
            | Self::Letterbox { file, .. }
            | Self::Fatal { file, .. } => file,
            Self::Write { source } => &source.path,
        }
    }

    /// The line of the file the error is about, where there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => *line,
            Self::NotUtf8 { line, .. } | Self::Yaml { line, .. } => Some(*line),
            Self::Json { source, .. } => Some(source.line()).filter(|l| *l > 0),
            _ => None,
        }
    }
}

impl From<crate::fsio::IoError> for DataError {
    fn from(e: crate::fsio::IoError) -> Self {
        DataError::Write { source: Arc::new(e) }
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
#[derive(Debug, Clone, Default)]
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

    /// Records `err` under `Skip`, or returns it under `Error`. A fatal error is always
    /// returned.
    pub fn handle(&mut self, on_bad: OnBad, err: DataError) -> Result<(), DataError> {
        if err.is_fatal() {
            return Err(err);
        }
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

/// How to open a detection dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Which split of a `.data` or `.yaml` file; other sources are a split by themselves.
    pub split: Split,
    /// The class count when the source names no classes (list files, folders).
    pub classes: Option<usize>,
    pub on_bad: OnBad,
    /// Keep only the first `n` usable images: the scan stops there (a dataset rooted at `/`
    /// does not walk the whole disk first).
    pub limit: Option<usize>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self { split: Split::Val, classes: None, on_bad: OnBad::Skip, limit: None }
    }
}

/// What a dataset path names; decided once, by [`SourceKind::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A folder of images (its `images/` sub-folder when it has one).
    Folder,
    /// A Darknet `.data` file.
    DarknetData,
    /// An Ultralytics `data.yaml`.
    UltralyticsYaml,
    /// A COCO annotation `.json`.
    CocoJson,
    /// A `.txt` list of image paths.
    ImageList,
}

impl SourceKind {
    /// The one place that decides what the user gave.
    pub fn of(path: &Path) -> Result<Self, DataError> {
        if !path.exists() {
            return Err(DataError::new(
                path,
                None,
                "not found: expected a .data, .yaml, .json or .txt file, or a folder of images",
            ));
        }
        if path.is_dir() {
            return Ok(Self::Folder);
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "data" => Ok(Self::DarknetData),
            "yaml" | "yml" => Ok(Self::UltralyticsYaml),
            "json" => Ok(Self::CocoJson),
            "txt" => Ok(Self::ImageList),
            _ => Err(DataError::new(
                path,
                None,
                format!("unknown dataset file `.{ext}`: expected .data (Darknet), .yaml (Ultralytics), .json (COCO), .txt (image list) or a folder"),
            )),
        }
    }
}

impl DetectionDataset {
    /// Opens a dataset from a Darknet `.data`, an Ultralytics `.yaml`, a COCO `.json`, a
    /// `.txt` list of images or a folder. `classes` names the classes when the source does
    /// not (list files, folders); labels with class ids ≥ the class count are bad labels.
    pub fn open(path: &Path, classes: Option<usize>, on_bad: OnBad) -> Result<Self, DataError> {
        Self::open_with(path, OpenOptions { classes, on_bad, ..Default::default() })
    }

    /// Like [`open`](Self::open) for a given split of a `.data` or `.yaml` file (`train` /
    /// `val`); other sources are a split by themselves.
    pub fn open_split(path: &Path, split: Split, classes: Option<usize>, on_bad: OnBad) -> Result<Self, DataError> {
        Self::open_with(path, OpenOptions { split, classes, on_bad, limit: None })
    }

    /// Opens a dataset with every option, the limit applied while scanning.
    pub fn open_with(path: &Path, opts: OpenOptions) -> Result<Self, DataError> {
        match SourceKind::of(path)? {
            SourceKind::CocoJson => {
                let mut ds = coco_json::open(path, None)?;
                if let Some(n) = opts.limit {
                    ds.limit(n);
                }
                Ok(ds)
            }
            kind => yolo::open(path, kind, &opts),
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

/// Image file extensions the decoder reads (`mpo` is a JPEG with extra frames).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff", "mpo"];

/// Image formats Ultralytics reads that prunescope cannot decode: such files are counted and
/// named as skipped, never silently ignored.
pub const UNREADABLE_IMAGE_EXTENSIONS: [&str; 5] = ["dng", "pfm", "heic", "heif", "avif"];

fn lower_ext(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase())
}

pub fn is_image(path: &Path) -> bool {
    lower_ext(path).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// An image file prunescope cannot decode (see [`UNREADABLE_IMAGE_EXTENSIONS`]).
pub fn is_unreadable_image(path: &Path) -> bool {
    lower_ext(path).is_some_and(|e| UNREADABLE_IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// The skip entry of an image in a format prunescope cannot decode.
pub(crate) fn unreadable_format(path: &Path) -> DataError {
    let ext = lower_ext(path).unwrap_or_default();
    DataError::new(path, None, format!("`.{ext}` images cannot be read: convert them to .jpg or .png"))
}

/// Decodes an image file (jpg/png/bmp/webp/tiff, detected from content) to RGB8.
pub fn load_rgb(path: &Path) -> Result<image::RgbImage, DataError> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, "cannot open the image", e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, "cannot read the image", e))?;
    let img = reader.decode().map_err(|e| DataError::image(path, "cannot decode the image", e))?;
    Ok(img.to_rgb8())
}

/// Largest dataset description (`data.yaml`, `.data`, a names file).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest image list file.
pub const MAX_LIST_BYTES: u64 = 256 << 20;
/// Largest YOLO label file.
pub const MAX_LABEL_BYTES: u64 = 16 << 20;
/// Largest COCO json.
pub const MAX_JSON_BYTES: u64 = 2 << 30;
/// Most classes a dataset may declare (`nc`, `classes=`, a class count).
pub const MAX_CLASSES: usize = 100_000;

/// Reads a text file of at most `max` bytes: a UTF-8 byte-order mark is dropped, invalid
/// UTF-8 is an error naming the file and the line.
pub fn read_text(path: &Path, max: u64) -> Result<String, DataError> {
    read_text_as(path, max, "cannot read")
}

/// [`read_text`] with what an I/O error says was being done ("cannot read the …").
pub(crate) fn read_text_as(path: &Path, max: u64, what: &'static str) -> Result<String, DataError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, what, e))?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| DataError::io(path, what, e))?;
    if bytes.len() as u64 > max {
        return Err(DataError::TooLarge { file: path.to_path_buf(), max });
    }
    decode_text(path, bytes)
}

/// `bytes` as text: a UTF-8 byte-order mark is dropped; invalid UTF-8 is an error with the
/// line and column of the first bad byte.
pub fn decode_text(path: &Path, mut bytes: Vec<u8>) -> Result<String, DataError> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at - bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        DataError::NotUtf8 { file: path.to_path_buf(), line, column, byte: bytes[at] }
    })
}

/// At most `max` characters of `s` for an error message.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the front ends print: the error and the causes not already in its message.
    fn printed(e: &DataError) -> String {
        crate::error::text(e)
    }

    #[test]
    fn causes_are_in_the_message_once_and_kept_as_sources() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.yaml");
        let e = read_text(&absent, 10).unwrap_err();
        assert!(matches!(&e, DataError::Io { what: "cannot read", .. }), "{e:?}");
        let cause = std::error::Error::source(&e).expect("the io error");
        assert!(cause.downcast_ref::<Arc<std::io::Error>>().is_some());
        assert!(e.to_string().starts_with(&format!("{}: cannot read: ", absent.display())), "{e}");
        assert!(e.to_string().ends_with(&cause.to_string()), "{e}");
        assert_eq!(printed(&e), e.to_string());
        assert_eq!(e.file(), absent);
        assert!(!e.is_fatal());

        let yaml = Path::new("data.yaml");
        let e = yolo::load_yaml(yaml, "names: [a\nval: x\n").unwrap_err();
        assert!(matches!(&e, DataError::Yaml { .. }), "{e:?}");
        assert!(e.to_string().starts_with("data.yaml:"), "{e}");
        assert!(e.to_string().contains(": not valid YAML: "), "{e}");
        assert_eq!(printed(&e), e.to_string());

        let img = dir.path().join("bad.png");
        std::fs::write(&img, b"\x89PNG\r\n\x1a\nnot a png").unwrap();
        let e = load_rgb(&img).unwrap_err();
        assert!(matches!(&e, DataError::Image { what: "cannot decode the image", .. }), "{e:?}");
        assert!(e.to_string().starts_with(&format!("{}: cannot decode the image: ", img.display())), "{e}");
        assert_eq!(printed(&e), e.to_string());

        let json = Path::new("gt.json");
        let e = coco_json::parse_gt(json, r#"{"images": [], "categories": [], "annotations": [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]}"#).unwrap_err();
        assert!(matches!(&e, DataError::Coco { .. }), "{e:?}");
        assert_eq!(e.to_string(), "gt.json: annotations[0] (id 3): image_id 1 is not in `images`");
        assert_eq!(printed(&e), e.to_string());
        assert_eq!(e.file(), json);
    }

    #[test]
    fn fatal_errors_are_never_skipped() {
        let mut skipped = SkipReport::default();
        let bad = DataError::new(Path::new("a.txt"), Some(2), "unknown class id 7");
        assert_eq!(bad.to_string(), "a.txt:2: unknown class id 7");
        assert_eq!(bad.line(), Some(2));
        assert!(skipped.handle(OnBad::Skip, bad.clone()).is_ok());
        assert!(skipped.handle(OnBad::Error, bad).is_err());
        let size = DataError::Letterbox { file: "b.png".into(), source: LetterboxError::Size { size: 0 } };
        let empty =
            DataError::Letterbox { file: "b.png".into(), source: LetterboxError::EmptyImage { width: 0, height: 1 } };
        let fatal = DataError::fatal(Path::new("c.png"), "the image decoder panicked: boom");
        assert!(size.is_fatal() && fatal.is_fatal() && !empty.is_fatal());
        assert!(skipped.handle(OnBad::Skip, size).is_err());
        assert!(skipped.handle(OnBad::Skip, fatal).is_err());
        assert!(skipped.handle(OnBad::Skip, empty).is_ok());
        assert_eq!(skipped.len(), 2);
    }
}

/// A validation set of either task: what the sensitivity engine and the GUI's evaluations read.
#[derive(Debug, Clone)]
pub enum Dataset {
    Detection(DetectionDataset),
    Classification(ClassificationDataset),
}

impl Dataset {
    /// Opens `path` for a classifier (image folders) or a detector (every detection source).
    pub fn open(path: &Path, classify: bool, opts: OpenOptions) -> Result<Self, DataError> {
        if classify {
            let mut ds = ClassificationDataset::open_split(path, opts.split)?;
            if let Some(n) = opts.limit {
                ds.limit(n);
            }
            Ok(Dataset::Classification(ds))
        } else {
            Ok(Dataset::Detection(DetectionDataset::open_with(path, opts)?))
        }
    }

    /// The picture of sample `i`.
    pub fn image(&self, i: usize) -> &Path {
        match self {
            Dataset::Detection(d) => &d.samples[i].image,
            Dataset::Classification(d) => &d.samples[i].0,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Dataset::Detection(d) => d.samples.len(),
            Dataset::Classification(d) => d.samples.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn names(&self) -> &[String] {
        match self {
            Dataset::Detection(d) => &d.names,
            Dataset::Classification(d) => &d.names,
        }
    }

    /// What the user gave.
    pub fn source(&self) -> &Path {
        match self {
            Dataset::Detection(d) => &d.source,
            Dataset::Classification(d) => &d.source,
        }
    }

    /// Images left out while opening (classification folders list only images).
    pub fn skipped(&self) -> SkipReport {
        match self {
            Dataset::Detection(d) => d.skipped.clone(),
            Dataset::Classification(_) => SkipReport::default(),
        }
    }
}
