//! The training loop: images decoded and letterboxed once, flip and HSV augmentation per
//! step, SGD with warm-up and a cosine schedule, and (for fine-tuning) every weight that is
//! zero at the start kept at exactly zero.

use super::loss::{yolo_loss, Head, LossWeights, Target};
use super::optim::{Optimizer, OptimizerKind, Sgd};
use crate::data::synth::Rng;
use crate::data::{DataError, DetectionDataset, OnBad, Prefetcher, SkipReport};
use crate::model::{BlockKind, Cfg, Darknet, ForwardError, Graph, Weights};
use std::time::Instant;
use tch::{Kind, Tensor};

/// Training settings (defaults: the usual YOLO SGD recipe).
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub img_size: u32,
    pub optimizer: OptimizerKind,
    pub lr0: f64,
    /// Final learning rate as a fraction of `lr0` (end of the cosine).
    pub lr_final: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    /// Probability of a horizontal flip.
    pub flip: f64,
    /// Hue, saturation and value gains: each factor is drawn in [1 − g, 1 + g].
    pub hsv: [f64; 3],
    pub seed: u64,
    /// Keep every parameter that is zero at the start at zero (fine-tuning a pruned model).
    pub keep_zeros: bool,
    pub loss: LossWeights,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            batch: 16,
            img_size: 160,
            optimizer: OptimizerKind::Sgd,
            lr0: 0.01,
            lr_final: 0.01,
            momentum: 0.937,
            weight_decay: 5e-4,
            warmup_epochs: 1.0,
            flip: 0.5,
            hsv: [0.015, 0.5, 0.3],
            seed: 0,
            keep_zeros: false,
            loss: LossWeights::default(),
        }
    }
}

/// A training image: letterboxed pixels (CHW, u8) and its boxes (class, cx, cy, w, h in
/// letterboxed pixels).
#[derive(Debug, Clone)]
pub struct TrainSample {
    pub pixels: Vec<u8>,
    pub boxes: Vec<(usize, [f32; 4])>,
}

/// Progress of one epoch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub box_loss: f64,
    pub obj_loss: f64,
    pub cls_loss: f64,
    pub lr: f64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Forward(#[from] ForwardError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("the loss became {0} at epoch {1}: lower the learning rate")]
    Diverged(f64, usize),
    #[error("{0}")]
    Callback(String),
    #[error("{0}")]
    Unsupported(String),
}

/// Training decodes boxes as YOLOv3 does; yolo heads with YOLOv4's `scale_x_y` or
/// `new_coords` (which inference supports) are refused rather than trained with a loss that
/// does not match them.
pub fn check_trainable(cfg: &Cfg) -> Result<(), TrainError> {
    for (i, b) in cfg.blocks.iter().enumerate() {
        if let BlockKind::Yolo(y) = &b.kind {
            if y.scale_x_y != 1.0 || y.new_coords {
                return Err(TrainError::Unsupported(format!(
                    "block {i} ([yolo], line {}): training heads with scale_x_y or new_coords (YOLOv4) is not supported; \
                     evaluate, analyse, prune and compare work, fine-tune with a YOLOv3-style head",
                    b.line
                )));
            }
        }
    }
    Ok(())
}

/// The yolo heads of a cfg (anchors and strides at the graph's input size).
pub fn heads(cfg: &Cfg, graph: &Graph) -> Vec<Head> {
    let input_h = graph.input_shape[2] as f32;
    cfg.yolo_blocks()
        .iter()
        .filter_map(|&i| match &cfg.blocks[i].kind {
            BlockKind::Yolo(y) => {
                Some(Head { anchors: y.head_anchors(), stride: input_h / graph.nodes[i - 1].output_shape[2] as f32 })
            }
            _ => None,
        })
        .collect()
}

/// Sets the biases of the yolo output convolutions of a freshly initialised model to the
/// priors of the data (as Ultralytics does): objectness to log(objects per image / cells of
/// the head) and class scores to log(0.6 / (classes − 0.99)). Training from scratch then
/// starts near "nothing here, classes equally likely" instead of spending its first epoch
/// pushing 50 % objectness down everywhere.
pub fn prior_biases(weights: &mut Weights, cfg: &Cfg, graph: &Graph, objects_per_image: f64) {
    for y in cfg.yolo_blocks() {
        let BlockKind::Yolo(head) = &cfg.blocks[y].kind else { continue };
        let conv = y - 1;
        let Some(bias) = weights.tensors.get_mut(&format!("module_list.{conv}.conv_{conv}.bias")) else { continue };
        let shape = &graph.nodes[conv].output_shape;
        let cells = (shape[2] * shape[3]) as f64;
        let per_anchor = head.outputs_per_anchor();
        let obj = (objects_per_image.max(0.1) / cells).ln() as f32;
        let cls = (0.6 / (head.classes as f64 - 0.99).max(0.01)).ln() as f32;
        for (i, b) in bias.data.iter_mut().enumerate() {
            match i % per_anchor {
                4 => *b = obj,
                k if k >= 5 => *b = cls,
                _ => {}
            }
        }
    }
}

/// Decodes and letterboxes every image once (on `threads` threads).
pub fn prepare(
    ds: &DetectionDataset,
    size: u32,
    threads: usize,
    on_bad: OnBad,
) -> Result<(Vec<TrainSample>, SkipReport), DataError> {
    let paths = ds.samples.iter().map(|s| s.image.clone()).collect();
    let mut skipped = SkipReport::default();
    let mut out = Vec::with_capacity(ds.samples.len());
    for (i, item) in Prefetcher::new(paths, size, threads, 64) {
        let lb = match item {
            Ok(lb) => lb,
            Err(e) => {
                skipped.handle(on_bad, e)?;
                continue;
            }
        };
        let (w, h) = lb.original;
        let boxes = ds.samples[i]
            .boxes
            .iter()
            .filter(|b| !b.crowd)
            .map(|b| {
                let [x, y, bw, bh] = b.pixels_xywh(w, h);
                let r = lb.ratio;
                let cx = ((x + bw / 2.0) * r) as f32 + lb.pad.0 as f32;
                let cy = ((y + bh / 2.0) * r) as f32 + lb.pad.1 as f32;
                (b.class, [cx, cy, (bw * r) as f32, (bh * r) as f32])
            })
            .collect();
        let pixels = lb.data.iter().map(|&v| (v * 255.0).round() as u8).collect();
        out.push(TrainSample { pixels, boxes });
    }
    Ok((out, skipped))
}

/// Flips and colour-jitters one image into `dst` (CHW floats) and returns its targets.
fn augment(
    s: &TrainSample,
    size: usize,
    tc: &TrainConfig,
    rng: &mut Rng,
    image: usize,
    dst: &mut [f32],
) -> Vec<Target> {
    let flip = rng.f64() < tc.flip;
    let gains: [f64; 3] = std::array::from_fn(|k| 1.0 + rng.range(-tc.hsv[k], tc.hsv[k]));
    let plane = size * size;
    for y in 0..size {
        for x in 0..size {
            let sx = if flip { size - 1 - x } else { x };
            let src = y * size + sx;
            let rgb = [s.pixels[src], s.pixels[plane + src], s.pixels[2 * plane + src]];
            let out = jitter(rgb, gains);
            for c in 0..3 {
                dst[c * plane + y * size + x] = out[c];
            }
        }
    }
    s.boxes
        .iter()
        .map(|&(class, [cx, cy, w, h])| Target {
            image,
            class,
            cxcywh: [if flip { size as f32 - cx } else { cx }, cy, w, h],
        })
        .collect()
}

/// Scales hue, saturation and value of one pixel; returns floats in [0, 1].
fn jitter(rgb: [u8; 3], g: [f64; 3]) -> [f32; 3] {
    let [r, gr, b] = rgb.map(|v| v as f64 / 255.0);
    let max = r.max(gr).max(b);
    let min = r.min(gr).min(b);
    let d = max - min;
    let mut h = if d == 0.0 {
        0.0
    } else if max == r {
        ((gr - b) / d).rem_euclid(6.0) / 6.0
    } else if max == gr {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - gr) / d + 4.0) / 6.0
    };
    let s = if max == 0.0 { 0.0 } else { d / max };
    h = (h * g[0]).rem_euclid(1.0);
    let s = (s * g[1]).clamp(0.0, 1.0);
    let v = (max * g[2]).clamp(0.0, 1.0);
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, gr, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r as f32, gr as f32, b as f32]
}

/// Learning rate at iteration `it` of `total`: linear warm-up from 10 % over `warmup`
/// iterations, then a cosine from `lr0` to `lr0 · lr_final`.
pub fn learning_rate(tc: &TrainConfig, it: usize, warmup: usize, total: usize) -> f64 {
    if it < warmup {
        return tc.lr0 * (0.1 + 0.9 * it as f64 / warmup as f64);
    }
    let span = (total - warmup).max(1) as f64;
    let progress = ((it - warmup) as f64 / span).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    tc.lr0 * (tc.lr_final + (1.0 - tc.lr_final) * cosine)
}

/// Trains `net` on `samples`. `on_step(epoch, step, steps, loss)` reports progress;
/// `on_epoch(net, report)` may validate and save, and returns false to stop early.
pub fn train(
    net: &mut Darknet,
    heads: &[Head],
    samples: &[TrainSample],
    tc: &TrainConfig,
    on_step: &mut dyn FnMut(usize, usize, usize, f64),
    on_epoch: &mut dyn FnMut(&Darknet, &EpochReport) -> Result<bool, String>,
) -> Result<Vec<EpochReport>, TrainError> {
    let size = tc.img_size as usize;
    let device = net.device();
    net.set_trainable(true);
    let masks: Vec<Option<Tensor>> = {
        let params = net.parameters();
        params.iter().map(|(_, p)| tc.keep_zeros.then(|| p.detach().not_equal(0.0).to_kind(Kind::Float))).collect()
    };
    let mut optimizer = Optimizer::new(tc.optimizer, &net.parameters(), tc.momentum, tc.weight_decay);
    let batch = tc.batch.max(1);
    let steps = samples.len().div_ceil(batch);
    let total = steps * tc.epochs;
    let warmup = ((tc.warmup_epochs * steps as f64) as usize).min(total.saturating_sub(1));
    let mut rng = Rng::new(tc.seed ^ 0x0074_7261_696E);
    let mut reports = Vec::new();
    let mut order: Vec<usize> = (0..samples.len()).collect();
    for epoch in 0..tc.epochs {
        let started = Instant::now();
        // Fisher–Yates with our RNG: the same seed gives the same batches.
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let (mut sum, mut sbox, mut sobj, mut scls) = (0.0, 0.0, 0.0, 0.0);
        let mut lr = tc.lr0;
        for (step, chunk) in order.chunks(batch).enumerate() {
            let mut pixels = vec![0f32; chunk.len() * 3 * size * size];
            let mut targets = Vec::new();
            for (b, &i) in chunk.iter().enumerate() {
                let dst = &mut pixels[b * 3 * size * size..(b + 1) * 3 * size * size];
                targets.extend(augment(&samples[i], size, tc, &mut rng, b, dst));
            }
            let x = Tensor::f_from_slice(&pixels)?
                .f_view([chunk.len() as i64, 3, size as i64, size as i64])?
                .f_to_device(device)?;
            let params = net.parameters();
            Sgd::zero_grad(&params);
            let raw = net.forward_train(&x)?;
            let loss = yolo_loss(&raw, heads, &targets, tc.loss);
            let value = loss.total.double_value(&[]) / chunk.len() as f64;
            if !value.is_finite() {
                return Err(TrainError::Diverged(value, epoch + 1));
            }
            loss.total.f_backward()?;
            lr = learning_rate(tc, epoch * steps + step, warmup, total);
            optimizer.step(&params, lr);
            if tc.keep_zeros {
                tch::no_grad(|| -> Result<(), tch::TchError> {
                    for ((_, p), m) in params.iter().zip(&masks) {
                        if let Some(m) = m {
                            let _ = p.shallow_clone().f_mul_(m)?;
                        }
                    }
                    Ok(())
                })?;
            }
            sum += value;
            sbox += loss.box_;
            sobj += loss.obj;
            scls += loss.cls;
            on_step(epoch + 1, step + 1, steps, sum / (step + 1) as f64);
        }
        let n = steps.max(1) as f64;
        let report = EpochReport {
            epoch: epoch + 1,
            loss: sum / n,
            box_loss: sbox / n,
            obj_loss: sobj / n,
            cls_loss: scls / n,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        reports.push(report.clone());
        if !on_epoch(net, &report).map_err(TrainError::Callback)? {
            break;
        }
    }
    net.set_trainable(false);
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yolov4_heads_are_refused_for_training() {
        let head = |extra: &str| {
            format!(
                "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=18\nsize=1\nactivation=linear\n\
                 [yolo]\nmask=0,1,2\nanchors=1,1,2,2,3,3\nclasses=1\nnum=3\n{extra}"
            )
        };
        assert!(check_trainable(&Cfg::parse(&head(""), "v3.cfg").unwrap()).is_ok());
        let e = check_trainable(&Cfg::parse(&head("scale_x_y=1.05\n"), "v4.cfg").unwrap()).unwrap_err();
        assert!(e.to_string().contains("block 1 ([yolo], line 9): training heads with scale_x_y"), "{e}");
    }

    #[test]
    fn schedule_warms_up_then_follows_a_cosine() {
        let tc = TrainConfig { lr0: 0.01, lr_final: 0.01, ..Default::default() };
        assert!((learning_rate(&tc, 0, 10, 110) - 0.001).abs() < 1e-12); // 10 % at the start
        assert!((learning_rate(&tc, 10, 10, 110) - 0.01).abs() < 1e-12); // lr0 after warm-up
                                                                         // Half-way through the cosine: lr0·(lr_final + (1 − lr_final)·0.5) = 0.00505.
        assert!((learning_rate(&tc, 60, 10, 110) - 0.00505).abs() < 1e-12);
        assert!((learning_rate(&tc, 110, 10, 110) - 0.0001).abs() < 1e-12);
    }

    #[test]
    fn prior_biases_of_the_sample_heads() {
        // Sample cfg at 160: conv_13 feeds the 10x10 head, conv_20 the 20x20 head; 5 classes,
        // 10 outputs per anchor. With 4 objects per image: objectness ln(4/100) and ln(4/400),
        // classes ln(0.6/4.01); box biases untouched.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/yolov3-tiny-shapes.cfg");
        let cfg = Cfg::from_file(&path).unwrap();
        let graph = Graph::build(&cfg, 1, 160, 160).unwrap();
        let layout = crate::model::Layout::of(&cfg, &graph);
        let mut w = Weights::initialize(&layout, 0);
        let before = w.clone();
        prior_biases(&mut w, &cfg, &graph, 4.0);
        for (conv, cells) in [(13, 100.0f64), (20, 400.0)] {
            let key = format!("module_list.{conv}.conv_{conv}.bias");
            let b = &w.get(&key).data;
            for a in 0..3 {
                assert!((b[a * 10 + 4] as f64 - (4.0 / cells).ln()).abs() < 1e-6);
                for c in 5..10 {
                    assert!((b[a * 10 + c] as f64 - (0.6f64 / 4.01).ln()).abs() < 1e-6);
                }
                assert_eq!(b[a * 10..a * 10 + 4], before.get(&key).data[a * 10..a * 10 + 4]);
            }
        }
    }

    #[test]
    fn jitter_with_unit_gains_is_the_identity() {
        for rgb in [[0u8, 0, 0], [255, 255, 255], [200, 30, 90], [12, 250, 128]] {
            let out = jitter(rgb, [1.0, 1.0, 1.0]);
            for c in 0..3 {
                assert!((out[c] * 255.0 - rgb[c] as f32).abs() < 1e-3, "{rgb:?} -> {out:?}");
            }
        }
        // Value gain 0.5 halves the brightest channel of a grey pixel.
        let out = jitter([200, 200, 200], [1.0, 1.0, 0.5]);
        assert!((out[0] * 255.0 - 100.0).abs() < 1e-3);
    }
}
