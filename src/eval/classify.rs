//! Classifier evaluation: decode and transform the images on a prefetch pool, run the model in
//! batches, rank the classes of each image and score top-1, top-5, per-class precision and
//! recall and the confusion matrix.

use super::{EvalError, NetPredictor, Predictor, Timing};
use crate::data::preprocess::{ClassifyPreset, Preprocess};
use crate::data::{ClassificationDataset, DataError, OnBad, Prefetcher, SkipReport};
use crate::metrics::classify::{self, ClassifyMetrics};
use crate::model::ForwardError;
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Classes ranked per image, kept for scoring: the five best suffice for top-1 and top-5.
pub const RANKED: usize = 5;

/// Settings of a classifier evaluation.
#[derive(Debug, Clone)]
pub struct ClassifyEvalConfig {
    pub img_size: u32,
    pub batch: usize,
    pub preset: ClassifyPreset,
    pub on_bad: OnBad,
    pub decode_threads: usize,
}

/// Everything a classifier evaluation measured.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyReport {
    /// The input transform (`torchvision`, `ultralytics`).
    pub preprocess: ClassifyPreset,
    pub img_size: u32,
    pub skipped_images: usize,
    #[serde(skip)]
    pub skipped: SkipReport,
    #[serde(flatten)]
    pub metrics: ClassifyMetrics,
    pub timing: Timing,
}

/// Per image of a batch (sample indices `samples`), its true class and its classes best
/// first, from the classifier's output `[N, nc]` (logits or probabilities: softmax keeps the
/// order).
pub fn ranked(
    predictor: &NetPredictor,
    output: &Tensor,
    samples: &[usize],
    dataset: &ClassificationDataset,
) -> Result<Vec<(usize, Vec<usize>)>, EvalError> {
    let scores = predictor.task.class_scores(output).map_err(ForwardError::Task)?;
    let nc = scores.size()[1] as usize;
    let flat = Vec::<f32>::try_from(scores.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
    if flat.iter().any(|v| v.is_nan()) {
        return Err(EvalError::Mismatch("the classifier's output holds NaN".into()));
    }
    Ok(samples
        .iter()
        .enumerate()
        .map(|(b, &i)| (dataset.samples[i].1, classify::top_k(&flat[b * nc..(b + 1) * nc], RANKED)))
        .collect())
}

/// Scores ranked images; refuses none (top-1 of no image is undefined).
pub fn score(dataset: &ClassificationDataset, ranked: &[(usize, Vec<usize>)]) -> Result<ClassifyMetrics, EvalError> {
    if ranked.is_empty() {
        return Err(EvalError::Mismatch(format!(
            "{}: no image was evaluated: accuracy of no images is undefined",
            dataset.source.display()
        )));
    }
    Ok(classify::score(ranked, &dataset.names))
}

/// Runs `predictor` over the dataset and scores it. `progress(done, total)` is called after
/// every batch; returning false cancels.
pub fn evaluate(
    predictor: &NetPredictor,
    dataset: &ClassificationDataset,
    cfg: &ClassifyEvalConfig,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<ClassifyReport, EvalError> {
    let started = Instant::now();
    let total = dataset.samples.len();
    let paths = dataset.samples.iter().map(|s| s.0.clone()).collect();
    let (size, prep) = (cfg.img_size, Preprocess::Classify(cfg.preset));
    let mut prefetch = Prefetcher::with_preprocess(paths, size, prep, cfg.decode_threads, 4 * cfg.batch.max(1));
    let mut skipped = SkipReport::default();
    let mut timing = Timing::default();
    let mut all = Vec::with_capacity(total);
    let (mut flat, mut samples) = (Vec::new(), Vec::new());
    let mut done = 0;
    loop {
        let t = Instant::now();
        let next = prefetch.next();
        timing.decode_wait_s += t.elapsed().as_secs_f64();
        let finished = next.is_none();
        if let Some((i, item)) = next {
            done += 1;
            match item {
                Ok(lb) => {
                    flat.extend_from_slice(&lb.data);
                    samples.push(i);
                }
                Err(e) => skipped.handle(cfg.on_bad, e)?,
            }
        }
        if samples.len() == cfg.batch.max(1) || (finished && !samples.is_empty()) {
            let t = Instant::now();
            let s = size as i64;
            let x = Tensor::f_from_slice(&flat)?
                .f_view([samples.len() as i64, 3, s, s])?
                .f_to_device(predictor.device())?;
            let out = predictor.output(&x)?;
            all.extend(ranked(predictor, &out, &samples, dataset)?);
            timing.forward_s += t.elapsed().as_secs_f64();
            flat.clear();
            samples.clear();
            if !progress(done, total) {
                return Err(EvalError::Cancelled);
            }
        }
        if finished {
            if done < total {
                let e = DataError::fatal(
                    &dataset.samples[done].0,
                    format!("the image stream ended before this image ({done} of {total} read)"),
                );
                return Err(e.into());
            }
            break;
        }
    }
    let t = Instant::now();
    let metrics = score(dataset, &all)?;
    timing.metrics_s = t.elapsed().as_secs_f64();
    timing.total_s = started.elapsed().as_secs_f64();
    timing.images_per_s = all.len() as f64 / timing.total_s.max(1e-9);
    Ok(ClassifyReport {
        preprocess: cfg.preset,
        img_size: size,
        skipped_images: skipped.len(),
        skipped,
        metrics,
        timing,
    })
}
