//! Detection evaluation: decode and letterbox a dataset on a prefetch pool, run a predictor
//! in batches, post-process (NMS), map boxes back to original pixels, and score with COCO
//! mAP, VOC AP, precision/recall and a confusion matrix. `compare` measures several
//! checkpoints side by side.

pub mod classify;
pub mod compare;
pub mod preds;

use crate::data::{DataError, DetectionDataset, Letterboxed, OnBad, Prefetcher, SkipReport};
use crate::metrics::coco::{self, Category, CocoGt, Detection, GtAnnotation, ImageInfo};
use crate::metrics::confusion::ConfusionMatrix;
use crate::metrics::nms::{self, Det, NmsConfig};
use crate::metrics::pr::{self, ClassPr};
use crate::metrics::voc;
use crate::model::ir::{exec::Keep, Net};
use crate::model::task::Task;
use crate::model::{Darknet, ForwardError, Model, ModelError, Weights};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Something that turns an image batch `[N, 3, S, S]` into YOLO rows `[N, rows, 5 + C]`
/// (cx, cy, w, h in input pixels, objectness and class scores in [0, 1]).
pub trait Predictor {
    fn predict(&self, batch: &Tensor) -> Result<Tensor, ForwardError>;
    fn device(&self) -> Device;
}

impl Predictor for Darknet {
    fn predict(&self, batch: &Tensor) -> Result<Tensor, ForwardError> {
        self.forward(batch)
    }

    fn device(&self) -> Device {
        Darknet::device(self)
    }
}

/// A model's IR on one device, read through its task: what evaluations, comparisons and the
/// sensitivity engine run (whatever the model's format).
pub struct NetPredictor {
    pub net: Net,
    pub task: Task,
    device: Device,
}

impl NetPredictor {
    /// `model` with `weights` (its own, or a pruned copy) on `device`.
    pub fn new(model: &Model, weights: &Weights, device: Device) -> Result<Self, ModelError> {
        Ok(NetPredictor { net: model.net(weights, device)?, task: model.task.clone(), device })
    }

    /// YOLO rows `[N, rows, 5 + C]` of the net's first output: the Darknet heads' as they
    /// are; an Ultralytics detector's `[N, 4 + C, A]` transposed, with objectness 1.
    pub fn rows(&self, output: &Tensor) -> Result<Tensor, ForwardError> {
        match &self.task {
            Task::DarknetYolo { .. } => Ok(output.shallow_clone()),
            Task::Detect { .. } => {
                let d = self.task.detections(output).map_err(ForwardError::Task)?;
                let ones = d.boxes.f_narrow(2, 0, 1)?.f_ones_like()?;
                Ok(Tensor::f_cat(&[&d.boxes, &ones, &d.scores], 2)?)
            }
            other => Err(ForwardError::Task(format!("a {other:?} model has no detections to evaluate"))),
        }
    }

    /// The net's first output for `batch`.
    pub fn output(&self, batch: &Tensor) -> Result<Tensor, ForwardError> {
        let input = self.net.inputs[0].name.clone();
        let mut out = self.net.run(vec![(input, batch.shallow_clone())], Keep::Outputs)?;
        let name = &self.net.outputs[0].name;
        out.remove(name).ok_or_else(|| ForwardError::Task(format!("the model did not produce its output '{name}'")))
    }
}

impl Predictor for NetPredictor {
    fn predict(&self, batch: &Tensor) -> Result<Tensor, ForwardError> {
        self.rows(&self.output(batch)?)
    }

    fn device(&self) -> Device {
        self.device
    }
}

/// Evaluation settings; the defaults are those of DESIGN.md.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    pub img_size: u32,
    pub batch: usize,
    pub nms: NmsConfig,
    pub on_bad: OnBad,
    pub decode_threads: usize,
    /// Confusion matrix: detection confidence and IoU.
    pub cm_conf: f64,
    pub cm_iou: f64,
    /// Confidence at which precision and recall are reported.
    pub pr_conf: f64,
    /// How pictures become inputs (a detector's letterbox).
    pub prep: crate::data::preprocess::Preprocess,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            img_size: 416,
            batch: 8,
            nms: NmsConfig::default(),
            on_bad: OnBad::Skip,
            // Decoding a small image costs well under a millisecond: half the cores keep far
            // ahead of the model without taking its cores.
            decode_threads: (std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) / 2).clamp(1, 8),
            cm_conf: 0.25,
            cm_iou: 0.45,
            pr_conf: 0.25,
            prep: crate::data::preprocess::Preprocess::Letterbox,
        }
    }
}

/// An evaluation error.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Coco(#[from] crate::metrics::coco::CocoError),
    #[error("{0}")]
    Mismatch(String),
    #[error("cancelled")]
    Cancelled,
}

/// Metrics of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    pub name: String,
    /// Ground-truth objects (crowd excluded).
    pub objects: u64,
    pub ap50: f64,
    pub ap: f64,
    pub voc_ap50: f64,
    pub precision: f64,
    pub recall: f64,
}

/// Where the time went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timing {
    pub total_s: f64,
    pub forward_s: f64,
    pub postprocess_s: f64,
    /// Time the model waited for decoded images.
    pub decode_wait_s: f64,
    pub metrics_s: f64,
    pub images_per_s: f64,
}

/// Everything an evaluation measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub images: usize,
    #[serde(skip)]
    pub skipped: SkipReport,
    pub skipped_images: usize,
    pub unlabelled_images: usize,
    /// The 12 COCOeval stats.
    pub coco: [f64; 12],
    pub map50: f64,
    pub map: f64,
    /// VOC all-point mAP@0.5 (PyTorch-YOLOv3's ap_per_class).
    pub voc_map50: f64,
    /// Mean over classes with objects, at `pr_conf`.
    pub precision: f64,
    pub recall: f64,
    pub pr_conf: f64,
    pub classes: Vec<ClassReport>,
    pub confusion: ConfusionMatrix,
    /// The same detections in Ultralytics' convention (what `yolo val` computes from them:
    /// its matching, 101-point envelope AP, P and R at the best mean F1).
    pub ultralytics: preds::BoxMetrics,
    pub timing: Timing,
    #[serde(skip)]
    pub detections: Vec<Detection>,
}

/// Detections of one evaluated image, in original pixels (x1, y1, x2, y2).
#[derive(Debug, Clone)]
pub struct ImagePrediction {
    pub sample: usize,
    pub size: (u32, u32),
    pub dets: Vec<([f64; 4], f64, usize)>,
}

/// Runs `predictor` over the dataset and scores it. `progress(done, total)` is called after
/// every batch; returning false cancels.
pub fn evaluate(
    predictor: &dyn Predictor,
    dataset: &DetectionDataset,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<EvalReport, EvalError> {
    let started = Instant::now();
    let (preds, mut skipped, mut timing) = predict_all(predictor, dataset, cfg, progress)?;
    skipped.skipped.splice(0..0, dataset.skipped.skipped.iter().cloned());
    let t = Instant::now();
    let mut report = score(dataset, &preds, cfg)?;
    timing.metrics_s = t.elapsed().as_secs_f64();
    timing.total_s = started.elapsed().as_secs_f64();
    timing.images_per_s = preds.len() as f64 / timing.total_s.max(1e-9);
    report.skipped_images = skipped.len();
    report.skipped = skipped;
    report.timing = timing;
    Ok(report)
}

/// Inference over every sample: detections per decoded image, what was skipped, timings.
///
/// Three stages overlap: decoding on the prefetch pool, the forward pass on this thread, and
/// post-processing (candidate selection, NMS, mapping back) on a thread of its own.
pub fn predict_all(
    predictor: &dyn Predictor,
    dataset: &DetectionDataset,
    cfg: &EvalConfig,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<(Vec<ImagePrediction>, SkipReport, Timing), EvalError> {
    let total = dataset.samples.len();
    let paths = dataset.samples.iter().map(|s| s.image.clone()).collect();
    let mut prefetch =
        Prefetcher::with_preprocess(paths, cfg.img_size, cfg.prep, cfg.decode_threads, 4 * cfg.batch.max(1));
    let mut skipped = SkipReport::default();
    let mut timing = Timing::default();
    let (tx, rx) = crossbeam_channel::bounded::<(Tensor, Vec<(usize, Letterboxed)>)>(2);
    let nms_cfg = cfg.nms;
    let post = std::thread::spawn(move || -> Result<(Vec<ImagePrediction>, f64), tch::TchError> {
        let _guard = tch::no_grad_guard();
        let mut preds = Vec::new();
        let mut seconds = 0.0;
        for (out, metas) in rx {
            let t = Instant::now();
            preds.extend(postprocess(&out, &metas, &nms_cfg)?);
            seconds += t.elapsed().as_secs_f64();
        }
        Ok((preds, seconds))
    });
    let mut batch: Vec<(usize, Letterboxed)> = Vec::with_capacity(cfg.batch);
    let mut done = 0;
    let mut result = Ok(());
    loop {
        let t = Instant::now();
        let next = prefetch.next();
        timing.decode_wait_s += t.elapsed().as_secs_f64();
        let finished = next.is_none();
        if let Some((i, item)) = next {
            done += 1;
            match item {
                Ok(lb) => batch.push((i, lb)),
                Err(e) => {
                    // A fatal error (a decoder that panicked) stops the run under every OnBad.
                    if let Err(e) = skipped.handle(cfg.on_bad, e) {
                        result = Err(e.into());
                        break;
                    }
                }
            }
        }
        if batch.len() == cfg.batch.max(1) || (finished && !batch.is_empty()) {
            let t = Instant::now();
            match forward_batch(predictor, &mut batch, cfg.img_size) {
                Ok(out) => {
                    timing.forward_s += t.elapsed().as_secs_f64();
                    if tx.send((out, std::mem::take(&mut batch))).is_err() {
                        break; // the post-processing thread failed; its error is reported below
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if !progress(done, total) {
                result = Err(EvalError::Cancelled);
                break;
            }
        }
        if finished {
            // The prefetcher yields every image or a fatal error; never accept a short stream.
            if done < total {
                let e = DataError::fatal(
                    &dataset.samples[done].image,
                    format!("the image stream ended before this image ({done} of {total} read)"),
                );
                result = Err(e.into());
            }
            break;
        }
    }
    drop(tx);
    let (mut preds, post_s) =
        post.join().map_err(|_| EvalError::Mismatch("post-processing thread panicked".into()))??;
    result?;
    timing.postprocess_s = post_s;
    preds.sort_by_key(|p| p.sample);
    Ok((preds, skipped, timing))
}

/// NMS of one batch of model outputs `[N, rows, 5 + C]`, boxes mapped back to the original
/// pixels of each image (`metas[b]`: sample index and letterbox geometry of row `b`).
pub fn postprocess(
    out: &Tensor,
    metas: &[(usize, Letterboxed)],
    nms_cfg: &NmsConfig,
) -> Result<Vec<ImagePrediction>, tch::TchError> {
    let _guard = tch::no_grad_guard();
    let mut preds = Vec::with_capacity(metas.len());
    for (b, (i, lb)) in metas.iter().enumerate() {
        let kept: Vec<Det> = nms::nms(nms::candidates(&out.f_get(b as i64)?, nms_cfg)?, nms_cfg);
        preds.push(ImagePrediction {
            sample: *i,
            size: lb.original,
            dets: kept.iter().map(|d| (lb.to_original(d.xyxy), d.score as f64, d.class)).collect(),
        });
    }
    Ok(preds)
}

/// Runs one batch through the predictor; the letterboxed pixels are released, the
/// geometry needed to map boxes back is kept.
fn forward_batch(
    predictor: &dyn Predictor,
    batch: &mut [(usize, Letterboxed)],
    size: u32,
) -> Result<Tensor, EvalError> {
    let s = size as i64;
    let mut flat = Vec::with_capacity(batch.len() * (3 * s * s) as usize);
    for (_, lb) in batch.iter_mut() {
        flat.extend_from_slice(&lb.data);
        lb.data = Vec::new();
    }
    let x = Tensor::f_from_slice(&flat)?.f_view([batch.len() as i64, 3, s, s])?.f_to_device(predictor.device())?;
    let out = predictor.predict(&x)?.f_to_kind(Kind::Float)?;
    if let Device::Cuda(i) = predictor.device() {
        tch::Cuda::synchronize(i as i64);
    }
    Ok(out)
}

fn xywh_to_xyxy(b: [f64; 4]) -> [f64; 4] {
    [b[0], b[1], b[0] + b[2], b[1] + b[3]]
}

/// Scores predictions against the dataset's ground truth (only the images predicted).
/// Refuses to score nothing: no image evaluated, or no labelled object among them, would give
/// an undefined mAP that reads like a result (−1, or a plan "with no drop").
pub fn score(dataset: &DetectionDataset, preds: &[ImagePrediction], cfg: &EvalConfig) -> Result<EvalReport, EvalError> {
    if preds.is_empty() {
        return Err(EvalError::Mismatch(format!(
            "{}: no image was evaluated ({} listed, {} could not be used): metrics of no images are undefined",
            dataset.source.display(),
            dataset.samples.len() + dataset.skipped.skipped.len(),
            dataset.skipped.skipped.len()
        )));
    }
    let labelled: usize = preds.iter().map(|p| dataset.samples[p.sample].boxes.len()).sum();
    if labelled == 0 {
        return Err(EvalError::Mismatch(format!(
            "{}: the {} evaluated images hold no labelled object: mAP is undefined (are the label files beside the images, in labels/ for images/?)",
            dataset.source.display(),
            preds.len()
        )));
    }
    let nc = dataset.num_classes();
    if let Some(bad) = preds.iter().flat_map(|p| &p.dets).find(|d| d.2 >= nc) {
        return Err(EvalError::Mismatch(format!(
            "the model predicts class {} but the dataset names only {nc} classes ({})",
            bad.2,
            dataset.source.display()
        )));
    }
    // Ground truth per evaluated image, in pixels.
    let gt_boxes: Vec<Vec<([f64; 4], usize, bool)>> = preds
        .iter()
        .map(|p| {
            dataset.samples[p.sample]
                .boxes
                .iter()
                .map(|b| (xywh_to_xyxy(b.pixels_xywh(p.size.0, p.size.1)), b.class, b.crowd))
                .collect()
        })
        .collect();
    let (gt, cat_of_class) = coco_ground_truth(dataset, preds, &gt_boxes);
    let image_id = |p: &ImagePrediction| dataset.samples[p.sample].coco_id.unwrap_or(p.sample as i64);
    let detections: Vec<Detection> = preds
        .iter()
        .flat_map(|p| {
            let id = image_id(p);
            let cats = &cat_of_class;
            p.dets.iter().map(move |&(b, score, c)| Detection {
                image_id: id,
                category_id: cats[c],
                bbox: [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                score,
            })
        })
        .collect();
    let coco = coco::evaluate(&gt, &detections)?;
    let k_of_cat: std::collections::HashMap<i64, usize> =
        coco.category_ids.iter().enumerate().map(|(k, &id)| (id, k)).collect();
    let all_t: Vec<usize> = (0..10).collect();

    // VOC AP@0.5, PyTorch-YOLOv3 style.
    let mut voc_preds = Vec::new();
    let mut target_classes = Vec::new();
    for (p, g) in preds.iter().zip(&gt_boxes) {
        let targets: Vec<([f64; 4], usize)> = g.iter().filter(|b| !b.2).map(|b| (b.0, b.1)).collect();
        target_classes.extend(targets.iter().map(|t| t.1));
        let ps: Vec<([f64; 4], usize)> = p.dets.iter().map(|d| (d.0, d.2)).collect();
        let tp = voc::match_image(&ps, &targets, 0.5);
        voc_preds.extend(p.dets.iter().zip(tp).map(|(d, tp)| (tp, d.1, d.2)));
    }
    let voc_aps = voc::ap_per_class(&voc_preds, &target_classes);

    let dets_px: Vec<Vec<([f64; 4], f64, usize)>> = preds.iter().map(|p| p.dets.clone()).collect();
    let prs: Vec<ClassPr> = pr::precision_recall(&gt_boxes, &dets_px, nc, cfg.pr_conf, 0.5);
    let mut confusion = ConfusionMatrix::new(nc + 1);
    for (g, d) in gt_boxes.iter().zip(&dets_px) {
        let g: Vec<([f64; 4], usize)> = g.iter().filter(|b| !b.2).map(|b| (b.0, b.1)).collect();
        confusion.add_detections(&g, d, cfg.cm_conf, cfg.cm_iou);
    }

    let classes: Vec<ClassReport> = (0..nc)
        .map(|c| {
            let k = k_of_cat[&cat_of_class[c]];
            ClassReport {
                name: dataset.names[c].clone(),
                objects: prs[c].gt,
                ap50: coco.class_ap(k, &[0]),
                ap: coco.class_ap(k, &all_t),
                voc_ap50: voc_aps.iter().find(|a| a.class == c).map(|a| a.ap).unwrap_or(-1.0),
                precision: prs[c].precision,
                recall: prs[c].recall,
            }
        })
        .collect();
    let with_objects: Vec<&ClassReport> = classes.iter().filter(|c| c.objects > 0).collect();
    let mean = |f: &dyn Fn(&ClassReport) -> f64| {
        if with_objects.is_empty() {
            0.0
        } else {
            with_objects.iter().map(|c| f(c)).sum::<f64>() / with_objects.len() as f64
        }
    };
    let voc_map50 =
        if voc_aps.is_empty() { 0.0 } else { voc_aps.iter().map(|a| a.ap).sum::<f64>() / voc_aps.len() as f64 };
    Ok(EvalReport {
        images: preds.len(),
        skipped: SkipReport::default(),
        skipped_images: 0,
        unlabelled_images: dataset.unlabelled,
        coco: coco.stats,
        map50: coco.stats[1],
        map: coco.stats[0],
        voc_map50,
        precision: mean(&|c| c.precision),
        recall: mean(&|c| c.recall),
        pr_conf: cfg.pr_conf,
        classes,
        confusion,
        ultralytics: preds::box_metrics(
            &preds
                .iter()
                .map(|p| preds::ImageBoxes {
                    labels: preds::labels_of(&dataset.samples[p.sample], p.size.0, p.size.1),
                    preds: p
                        .dets
                        .iter()
                        .map(|(b, s, c)| (*c, *s, [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32]))
                        .collect(),
                })
                .collect::<Vec<_>>(),
        ),
        timing: Timing::default(),
        detections,
    })
}

/// COCO ground truth of the evaluated images: the dataset's own json when it came from one,
/// else built from the YOLO labels (area = box area, class index = category id).
fn coco_ground_truth(
    dataset: &DetectionDataset,
    preds: &[ImagePrediction],
    gt_boxes: &[Vec<([f64; 4], usize, bool)>],
) -> (CocoGt, Vec<i64>) {
    if let Some((gt, ids)) = &dataset.coco {
        let keep: std::collections::HashSet<i64> =
            preds.iter().filter_map(|p| dataset.samples[p.sample].coco_id).collect();
        let gt = CocoGt {
            images: gt.images.iter().filter(|i| keep.contains(&i.id)).cloned().collect(),
            annotations: gt.annotations.iter().filter(|a| keep.contains(&a.image_id)).cloned().collect(),
            categories: gt.categories.clone(),
        };
        return (gt, ids.clone());
    }
    let mut annotations = Vec::new();
    for (p, g) in preds.iter().zip(gt_boxes) {
        for &(b, c, crowd) in g {
            let bbox = [b[0], b[1], b[2] - b[0], b[3] - b[1]];
            annotations.push(GtAnnotation {
                id: annotations.len() as i64 + 1,
                image_id: p.sample as i64,
                category_id: c as i64,
                bbox,
                area: Some(bbox[2] * bbox[3]),
                iscrowd: crowd as u8,
            });
        }
    }
    let gt = CocoGt {
        images: preds
            .iter()
            .map(|p| ImageInfo { id: p.sample as i64, width: Some(p.size.0), height: Some(p.size.1), file_name: None })
            .collect(),
        annotations,
        categories: dataset.names.iter().enumerate().map(|(i, n)| Category { id: i as i64, name: n.clone() }).collect(),
    };
    (gt, (0..dataset.num_classes() as i64).collect())
}
