//! Comparison of two or more checkpoints of one cfg on one validation set: parameters
//! (total, non-zero, effective), MACs (dense and effective, ptflops convention), file size and
//! deflate-compressed size, mAP, P/R, per-class AP, confusion matrices, latency, and the
//! per-layer parameter table. `report::compare` writes it as report.json, report.md and PNGs.

use super::{self as eval, ClassReport, EvalConfig, NetPredictor};
use crate::data::preprocess::{ClassifyPreset, Preprocess};
use crate::data::{Dataset, OnBad, OpenOptions};
use crate::metrics::confusion::ConfusionMatrix;
use crate::model::effective;
use crate::model::{parse_device, Model, ModelFiles};
use serde::Serialize;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The Darknet cfg of the compared checkpoints, or (an .onnx file) that each compared
    /// file is a whole ONNX model.
    pub cfg: PathBuf,
    pub data: PathBuf,
    pub img_size: Option<u32>,
    pub device: String,
    pub limit: Option<usize>,
    /// Timed forward passes per model (batch 1), after 3 warm-up passes.
    pub latency_runs: usize,
    /// A classifier's input transform (default: the model's).
    pub preprocess: Option<ClassifyPreset>,
}

/// One layer of one model.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub layer: String,
    pub params: u64,
    pub nonzero: u64,
    /// Parameters left with dead channels and zero weights removed.
    pub effective_params: u64,
    pub effective_macs: u64,
}

/// Everything measured of one checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub label: String,
    pub weights: PathBuf,
    pub file_bytes: u64,
    /// The weights file (an ONNX model: with its external data files) in a deflate zip
    /// (default level).
    pub compressed_bytes: u64,
    pub compression_ratio: f64,
    pub params: u64,
    pub nonzero_params: u64,
    pub effective_params: u64,
    pub macs: u64,
    pub effective_macs: u64,
    pub map50: f64,
    pub map: f64,
    pub precision: f64,
    pub recall: f64,
    /// A detector's mAPs in Ultralytics' convention (`yolo val`'s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ultralytics_map50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ultralytics_map: Option<f64>,
    /// A classifier's accuracy (its mAPs are 0 and its classes' APs too: it has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top5: Option<f64>,
    /// Per class: a detector's AP, P and R; a classifier's images (`objects`), P and R.
    pub classes: Vec<ClassReport>,
    /// A detector's (nc + 1)² with background last; a classifier's nc².
    pub confusion: ConfusionMatrix,
    /// Median of the timed passes, batch 1, on `device`.
    /// None when no timed runs were asked for (`--latency-runs 0`).
    pub latency_ms: Option<f64>,
    pub device: String,
    pub layers: Vec<LayerRow>,
}

/// A comparison: the reports and the class names.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub format: &'static str,
    pub cfg: PathBuf,
    pub data: PathBuf,
    pub images: usize,
    pub img_size: u32,
    /// `detect` or `classify`.
    pub task: &'static str,
    /// How pictures became inputs (`letterbox`, `torchvision`, `ultralytics`).
    pub preprocess: &'static str,
    pub names: Vec<String>,
    pub models: Vec<ModelReport>,
}

impl Comparison {
    pub fn is_classifier(&self) -> bool {
        self.task == "classify"
    }

    /// The confusion matrices' labels: the classes, and background for a detector.
    pub fn confusion_labels(&self) -> Vec<String> {
        let mut labels = self.names.clone();
        if !self.is_classifier() {
            labels.push("background".into());
        }
        labels
    }
}

/// What one evaluation gave, in the report's terms.
struct Measured {
    map50: f64,
    map: f64,
    ultralytics: Option<(f64, f64)>,
    precision: f64,
    recall: f64,
    top1: Option<f64>,
    top5: Option<f64>,
    classes: Vec<ClassReport>,
    confusion: ConfusionMatrix,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("nothing to compare: give at least one checkpoint")]
    Nothing,
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Forward(#[from] crate::model::ForwardError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Eval(#[from] eval::EvalError),
    #[error(transparent)]
    Device(#[from] crate::model::DeviceError),
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot measure the compressed size: {source}", path.display())]
    Compress {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{}: {source}", path.display())]
    Layer {
        path: PathBuf,
        #[source]
        source: crate::model::LayoutError,
    },
}

/// Size of `bytes` as one deflated zip entry.
pub fn compressed_size(name: &str, bytes: &[u8]) -> Result<u64, zip::result::ZipError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(name, opts)?;
    zip.write_all(bytes)?;
    let out = zip.finish()?;
    Ok(out.into_inner().len() as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Measures every `(label, weights)` checkpoint. `progress(model, done, total)` follows the
/// evaluations.
pub fn compare(
    c: &CompareConfig,
    models: &[(String, PathBuf)],
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<Comparison, CompareError> {
    if models.is_empty() {
        return Err(CompareError::Nothing);
    }
    let device = parse_device(&c.device).map_err(CompareError::Device)?;
    // With an .onnx as the model, each compared file is a whole ONNX model.
    let onnx = crate::model::open::is_onnx(&c.cfg);
    let files = |weights: &PathBuf| match onnx {
        true => ModelFiles::Onnx { path: weights.clone(), task: None },
        false => ModelFiles::Darknet { cfg: c.cfg.clone(), weights: weights.clone() },
    };
    let first = Model::open(&files(&models[0].1), c.img_size)?;
    let size = first.img_size;
    let prep = Preprocess::choose(first.is_classifier(), first.by_ultralytics, c.preprocess);
    let classifier = matches!(prep, Preprocess::Classify(_));
    let opts =
        OpenOptions { classes: Some(first.classes()), on_bad: OnBad::Skip, limit: c.limit, ..Default::default() };
    let ds = Dataset::open(&c.data, classifier, opts)?;
    let ecfg = EvalConfig { img_size: size, prep, ..Default::default() };
    let mut out = Vec::new();
    for (m, (label, path)) in models.iter().enumerate() {
        let model = if m == 0 { first.clone() } else { Model::open(&files(path), Some(size))? };
        let weights = &model.weights;
        // An ONNX model's weights may lie in external data files: its size is all of them.
        let stored = match onnx {
            true => crate::model::onnx::files(path).map_err(crate::model::ModelError::from)?,
            false => vec![path.clone()],
        };
        let mut bytes = Vec::new();
        for file in &stored {
            let mut b = std::fs::read(file).map_err(|source| CompareError::Read { path: file.clone(), source })?;
            bytes.append(&mut b);
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let compressed =
            compressed_size(&name, &bytes).map_err(|source| CompareError::Compress { path: path.clone(), source })?;
        let eff = effective::effective(&model, weights);
        let mut layers = Vec::new();
        for (k, layer) in model.layers.iter().enumerate() {
            let nz = weights
                .of_layer(&layer.keys)
                .map_err(|source| CompareError::Layer { path: path.clone(), source })?
                .count_nonzero() as u64;
            layers.push(LayerRow {
                layer: layer.name.clone(),
                params: layer.params,
                nonzero: nz,
                effective_params: eff.layers[k].params,
                effective_macs: eff.layers[k].macs,
            });
        }
        let net = NetPredictor::new(&model, weights, device)?;
        let mut report_progress = |d, t| {
            progress(m, d, t);
            true
        };
        let r = match (&ds, prep) {
            (Dataset::Classification(ds), Preprocess::Classify(preset)) => {
                let cfg = eval::classify::ClassifyEvalConfig {
                    img_size: size,
                    batch: ecfg.batch,
                    preset,
                    on_bad: OnBad::Skip,
                    decode_threads: ecfg.decode_threads,
                };
                let r = eval::classify::evaluate(&net, ds, &cfg, &mut report_progress)?.metrics;
                let classes = r
                    .classes
                    .iter()
                    .map(|k| ClassReport {
                        name: k.name.clone(),
                        objects: k.images,
                        ap50: 0.0,
                        ap: 0.0,
                        voc_ap50: 0.0,
                        precision: k.precision,
                        recall: k.recall,
                    })
                    .collect();
                Measured {
                    map50: 0.0,
                    map: 0.0,
                    ultralytics: None,
                    precision: r.precision,
                    recall: r.recall,
                    top1: Some(r.top1),
                    top5: Some(r.top5),
                    classes,
                    confusion: r.confusion,
                }
            }
            (Dataset::Detection(ds), _) => {
                let r = eval::evaluate(&net, ds, &ecfg, &mut report_progress)?;
                Measured {
                    map50: r.map50,
                    map: r.map,
                    ultralytics: Some((r.ultralytics.map50, r.ultralytics.map)),
                    precision: r.precision,
                    recall: r.recall,
                    top1: None,
                    top5: None,
                    classes: r.classes,
                    confusion: r.confusion,
                }
            }
            _ => return Err(eval::EvalError::Mismatch("a classifier on a detection dataset".into()).into()),
        };
        let latency_ms = (c.latency_runs > 0).then(|| latency(&net, size, device, c.latency_runs)).transpose()?;
        let total = eff.total();
        out.push(ModelReport {
            label: label.clone(),
            weights: path.clone(),
            file_bytes: bytes.len() as u64,
            compressed_bytes: compressed,
            compression_ratio: bytes.len() as f64 / compressed.max(1) as f64,
            params: model.params,
            nonzero_params: weights.count_nonzero() as u64,
            effective_params: total.params,
            macs: model.macs,
            effective_macs: total.macs,
            map50: r.map50,
            map: r.map,
            ultralytics_map50: r.ultralytics.map(|u| u.0),
            ultralytics_map: r.ultralytics.map(|u| u.1),
            precision: r.precision,
            recall: r.recall,
            top1: r.top1,
            top5: r.top5,
            classes: r.classes,
            confusion: r.confusion,
            latency_ms,
            device: c.device.clone(),
            layers,
        });
    }
    Ok(Comparison {
        format: "prunescope.compare/1",
        cfg: c.cfg.clone(),
        data: c.data.clone(),
        images: ds.len(),
        img_size: size,
        task: if classifier { "classify" } else { "detect" },
        preprocess: prep.name(),
        names: ds.names().to_vec(),
        models: out,
    })
}

fn latency(net: &NetPredictor, size: u32, device: tch::Device, runs: usize) -> Result<f64, CompareError> {
    let x = tch::Tensor::zeros([1, 3, size as i64, size as i64], (tch::Kind::Float, device));
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let _guard = tch::no_grad_guard();
    for _ in 0..3 {
        let _ = net.output(&x)?;
    }
    sync();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let _ = net.output(&x)?;
        sync();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(times))
}
