//! The layer-wise sensitivity engine: prune one layer at a time at each sparsity and measure
//! the metric on a validation set, with background workers and streamed events.
//!
//! Work that is the same for every point is done once: images are decoded once, the
//! baseline forward pass is run once per batch and keeps the activations later points read,
//! and a point for layer L runs only the blocks whose output depends on L. What is kept (the
//! decoded images, in a compact exact form, and the activations) stays within one memory cap,
//! `cache_mem`: past it, images are decoded again and activations recomputed when used, so
//! any dataset size runs in bounded memory. Finished points go to the run store as they
//! finish, so a run can be resumed.

pub mod engine;
pub mod merge;
pub mod store;
mod worker;

pub use worker::{pruned_detections, WorkerError};

pub use engine::{run, select_layers};
pub use store::{PointRecord, Record, RunHeader, Shard, StoredRun};

use crate::prune::Method;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The default sparsities: 5, 10, 20, …, 80, 88 %.
pub const DEFAULT_SPARSITIES: [f64; 10] = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.88];

/// Every metric measured at a point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    pub map50: f64,
    /// mAP@0.5:0.95.
    pub map: f64,
    pub precision: f64,
    pub recall: f64,
    /// A detector's mAP@0.5 and mAP@0.5:0.95 in Ultralytics' convention (what `yolo val`
    /// prints: its matching, 101-point AP); absent in runs made before it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ultralytics_map50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ultralytics_map: Option<f64>,
    /// A classifier's top-1 and top-5 accuracy (its mAPs are 0: it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top5: Option<f64>,
}

impl Metrics {
    pub fn get(&self, m: Metric) -> f64 {
        match m {
            Metric::Map50 => self.map50,
            Metric::Map => self.map,
            Metric::Precision => self.precision,
            Metric::Recall => self.recall,
            Metric::UltralyticsMap50 => self.ultralytics_map50.unwrap_or(0.0),
            Metric::UltralyticsMap => self.ultralytics_map.unwrap_or(0.0),
            Metric::Top1 => self.top1.unwrap_or(0.0),
            Metric::Top5 => self.top5.unwrap_or(0.0),
        }
    }
}

/// The metric a run is judged by (every one is stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// COCO mAP@0.5.
    Map50,
    /// COCO mAP@0.5:0.95.
    Map,
    /// Mean precision over classes at the report confidence (0.25).
    Precision,
    /// Mean recall over classes at the report confidence (0.25); a classifier's: of its
    /// top-1 predictions.
    Recall,
    /// mAP@0.5 in Ultralytics' convention (`yolo val`'s).
    UltralyticsMap50,
    /// mAP@0.5:0.95 in Ultralytics' convention.
    UltralyticsMap,
    /// A classifier's top-1 accuracy.
    Top1,
    /// A classifier's top-5 accuracy.
    Top5,
}

impl crate::quantity::Named for Metric {
    const ALL: &'static [Self] = &[
        Metric::Map50,
        Metric::Map,
        Metric::Precision,
        Metric::Recall,
        Metric::UltralyticsMap50,
        Metric::UltralyticsMap,
        Metric::Top1,
        Metric::Top5,
    ];
    fn name(self) -> &'static str {
        match self {
            Metric::Map50 => "map50",
            Metric::Map => "map",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::UltralyticsMap50 => "ultralytics-map50",
            Metric::UltralyticsMap => "ultralytics-map",
            Metric::Top1 => "top1",
            Metric::Top5 => "top5",
        }
    }
}

impl Metric {
    /// Whether a model of this kind measures the metric.
    pub fn fits(self, classifier: bool) -> bool {
        matches!(self, Metric::Precision | Metric::Recall) || classifier == matches!(self, Metric::Top1 | Metric::Top5)
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::Map50 => "mAP@0.5",
            Metric::Map => "mAP@0.5:0.95",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::UltralyticsMap50 => "mAP50 (Ultralytics)",
            Metric::UltralyticsMap => "mAP50-95 (Ultralytics)",
            Metric::Top1 => "top-1",
            Metric::Top5 => "top-5",
        }
    }
}

/// What to analyse and how.
#[derive(Debug, Clone)]
pub struct AnalysisConfig {
    pub cfg: PathBuf,
    pub weights: PathBuf,
    /// An ONNX model instead of `cfg` and `weights`, and its task where its metadata does
    /// not say it.
    pub model: Option<PathBuf>,
    pub task: Option<String>,
    /// A classifier's input transform (default: the model's, see [`Model::preprocess`]).
    ///
    /// [`Model::preprocess`]: crate::model::Model::preprocess
    pub preprocess: Option<crate::data::preprocess::ClassifyPreset>,
    /// Validation data (any source `prunescope eval` reads; the val split of .data/.yaml).
    pub data: PathBuf,
    /// The run folder.
    pub out: PathBuf,
    pub method: Method,
    /// Fractions in (0, 1).
    pub sparsities: Vec<f64>,
    /// Layer name patterns (`*` and `?` wildcards, a leading `!` excludes); empty: all.
    pub layers: Vec<String>,
    /// Also analyse the convolutions that feed a yolo head (left dense by default).
    pub include_heads: bool,
    pub metric: Metric,
    /// Worker threads, each with a model copy (0: one per CUDA device with `cuda`/`auto`,
    /// else one). The GUI and the CLI both start from [`AnalysisConfig::default`].
    pub workers: usize,
    /// cpu, cuda, cuda:N or auto.
    pub device: String,
    /// Only the first N validation images (in sorted order).
    pub limit: Option<usize>,
    /// Model input size; default: the cfg's width.
    pub img_size: Option<u32>,
    pub batch: usize,
    /// Memory for decoded images and cached activations, bytes; past it activations are
    /// recomputed and images decoded again from their files.
    pub cache_mem: u64,
    pub resume: bool,
    pub shard: Option<Shard>,
    pub conf: f32,
    /// NMS IoU; None: the model's convention (0.7 for Ultralytics exports, what `yolo val`
    /// uses; PyTorch-YOLOv3's 0.6 otherwise).
    pub iou: Option<f32>,
    pub max_det: usize,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        Self {
            cfg: PathBuf::new(),
            weights: PathBuf::new(),
            model: None,
            task: None,
            preprocess: None,
            data: PathBuf::new(),
            out: PathBuf::new(),
            method: Method::L1,
            sparsities: DEFAULT_SPARSITIES.to_vec(),
            layers: Vec::new(),
            include_heads: false,
            metric: Metric::Map50,
            workers: 0,
            device: "cpu".into(),
            limit: None,
            img_size: None,
            batch: 8,
            cache_mem: 2 << 30,
            resume: false,
            shard: None,
            conf: 0.001,
            iou: None,
            max_det: 300,
        }
    }
}

/// A layer of the grid, for displays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    pub name: String,
    pub block: usize,
    /// Output shape NCHW (batch 1).
    pub shape: Vec<usize>,
    pub params: u64,
    pub macs: u64,
}

/// Where the time of a run went (seconds, summed over workers).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    pub decode_s: f64,
    pub baseline_s: f64,
    pub forward_s: f64,
    pub nms_s: f64,
    pub metrics_s: f64,
    /// Fetching cached activations or recomputing them.
    pub activations_s: f64,
    pub wall_s: f64,
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    pub baseline: Metrics,
    /// Points of this run (or shard) in the grid, already stored before this call, and
    /// computed by it.
    pub total_points: usize,
    pub resumed_points: usize,
    pub computed_points: usize,
    pub images: usize,
    pub workers: usize,
    /// Activation cache: bytes held, batches cached out of all.
    pub cache_bytes: u64,
    pub cached_batches: usize,
    pub batches: usize,
    /// MACs of the blocks the points ran (ptflops convention), for MACs/s.
    pub point_macs: u64,
    pub timing: RunTiming,
}

/// Events a run streams (to a progress bar or the GUI): progress and warnings. Errors are
/// not events: `run` returns them, and its caller reports them once.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        run_dir: PathBuf,
        layers: Vec<LayerInfo>,
        sparsities: Vec<f64>,
        total: usize,
        already_done: usize,
    },
    Baseline {
        metrics: Metrics,
        seconds: f64,
    },
    Point(PointRecord),
    /// Points done of all, images run per second, estimated seconds left.
    Progress {
        done: usize,
        total: usize,
        images_per_s: f64,
        eta_s: Option<f64>,
    },
    Warning(String),
    Finished(RunSummary),
    Cancelled,
}

/// A sensitivity error: bad settings or input (naming the option or file), or a failure on
/// the way. Where another module's error is the cause, the message spells it out and keeps it
/// as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum SensitivityError {
    /// A `--layers` pattern that matches no prunable layer of the model.
    #[error("--layers: `{pattern}` matches no convolution of {model} (it has {layers})")]
    NoMatch { pattern: String, model: String, layers: String },
    #[error("--layers selects no convolution")]
    NoLayers,
    #[error("--sparsities: give at least one sparsity")]
    NoSparsities,
    #[error("--img-size: {0}")]
    ImgSize(String),
    #[error("--sparsities: {value} is outside (0, 1): give fractions such as 0.05,0.5 or percents such as 5,50")]
    Sparsity { value: f64 },
    /// The dataset's class list is not the model's.
    #[error("{} names {classes} classes but {} predicts {cfg_classes}: expected the same class list", data.display(), cfg.display())]
    Classes { data: PathBuf, classes: usize, cfg: PathBuf, cfg_classes: usize },
    /// A metric the model does not measure.
    #[error("--metric {metric}: {} (a {kind}) has no such metric; use {fitting}", model.display())]
    Metric { metric: &'static str, model: PathBuf, kind: &'static str, fitting: String },
    #[error("{}: no validation images", data.display())]
    NoImages { data: PathBuf },
    #[error("{0}")]
    Device(#[from] crate::model::DeviceError),
    #[error("{0}")]
    Model(#[from] crate::model::ModelError),
    #[error("{0}")]
    Data(#[from] crate::data::DataError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Forward(#[from] crate::model::ForwardError),
    #[error("{0}")]
    Eval(#[from] crate::eval::EvalError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A batch's input for the baseline pass.
    #[error("{0}")]
    Input(#[source] Box<WorkerError>),
    /// A worker that could not put its model copy on its device.
    #[error("worker on {device:?}: {source}")]
    WorkerStart {
        device: tch::Device,
        #[source]
        source: Box<crate::model::ModelError>,
    },
    /// A worker's failure on the points of one layer.
    #[error("{layer}: {source}")]
    Point {
        layer: String,
        #[source]
        source: Box<WorkerError>,
    },
    #[error("a worker panicked")]
    WorkerPanicked,
    #[error("cancelled")]
    Cancelled,
}

impl From<WorkerError> for SensitivityError {
    fn from(e: WorkerError) -> Self {
        Self::Input(Box::new(e))
    }
}
