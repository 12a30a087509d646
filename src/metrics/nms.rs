//! YOLO output post-processing: confidence filter and class-aware greedy NMS.

use tch::Tensor;

/// Post-processing settings (defaults: conf 0.001, IoU 0.6, 300 detections per image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NmsConfig {
    /// Minimum objectness × class score.
    pub conf: f32,
    /// Boxes of the same class overlapping a kept one by more than this are dropped.
    pub iou: f32,
    pub max_det: usize,
    /// Candidates kept (by score) before NMS, bounding its cost.
    pub max_candidates: usize,
    /// One candidate per (box, class) above `conf` (as Ultralytics validation does) instead
    /// of only the best class of each box.
    pub multi_label: bool,
}

impl Default for NmsConfig {
    fn default() -> Self {
        Self { conf: 0.001, iou: 0.6, max_det: 300, max_candidates: 30_000, multi_label: true }
    }
}

/// A detection in model-input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Det {
    /// x1, y1, x2, y2.
    pub xyxy: [f32; 4],
    pub score: f32,
    pub class: usize,
}

/// Candidates of one image from its output rows `[rows, 5 + classes]` (cx, cy, w, h, obj,
/// class scores): score = obj × class score above `conf`, at most `max_candidates` of the
/// best. Selection runs in libtorch (on the model's device); only the survivors are copied.
pub fn candidates(output: &Tensor, cfg: &NmsConfig) -> Result<Vec<Det>, tch::TchError> {
    let no = output.size()[1];
    let nc = no - 5;
    let obj = output.f_narrow(1, 4, 1)?;
    let cls = output.f_narrow(1, 5, nc)?;
    let (flat, stride) = if cfg.multi_label {
        (cls.f_mul(&obj)?.f_flatten(0, -1)?, nc)
    } else {
        let (best, arg) = cls.f_max_dim(1, false)?;
        // Encode (row, class) as row·nc + class so both paths decode alike.
        let rows = Tensor::f_arange(best.size()[0], (tch::Kind::Int64, output.device()))?;
        let scores = best.f_mul(&obj.f_squeeze_dim(1)?)?;
        let keep = scores.f_gt(cfg.conf as f64)?.f_nonzero()?.f_squeeze_dim(1)?;
        let code = rows.f_mul_scalar(nc)?.f_add(&arg)?.f_index_select(0, &keep)?;
        return collect(output, &scores.f_index_select(0, &keep)?, &code, nc, cfg);
    };
    let keep = flat.f_gt(cfg.conf as f64)?.f_nonzero()?.f_squeeze_dim(1)?;
    let scores = flat.f_index_select(0, &keep)?;
    collect(output, &scores, &keep, stride, cfg)
}

/// Keeps the best `max_candidates` of (score, row·nc + class) and copies them with boxes.
fn collect(
    output: &Tensor,
    scores: &Tensor,
    code: &Tensor,
    nc: i64,
    cfg: &NmsConfig,
) -> Result<Vec<Det>, tch::TchError> {
    let (scores, code) = if scores.size()[0] > cfg.max_candidates as i64 {
        let (v, i) = scores.f_topk(cfg.max_candidates as i64, 0, true, true)?;
        (v, code.f_index_select(0, &i)?)
    } else {
        (scores.shallow_clone(), code.shallow_clone())
    };
    let rows = code.f_floor_divide_scalar(nc)?;
    let boxes = output.f_narrow(1, 0, 4)?.f_index_select(0, &rows)?.f_to_device(tch::Device::Cpu)?;
    let boxes: Vec<f32> = Vec::<f32>::try_from(boxes.f_contiguous()?.f_flatten(0, -1)?)?;
    let scores: Vec<f32> = Vec::<f32>::try_from(scores.f_to_device(tch::Device::Cpu)?)?;
    let classes: Vec<i64> = Vec::<i64>::try_from(code.f_remainder(nc)?.f_to_device(tch::Device::Cpu)?)?;
    Ok(boxes
        .chunks_exact(4)
        .zip(scores)
        .zip(classes)
        .map(|((b, score), c)| Det {
            xyxy: [b[0] - b[2] / 2.0, b[1] - b[3] / 2.0, b[0] + b[2] / 2.0, b[1] + b[3] / 2.0],
            score,
            class: c as usize,
        })
        .collect())
}

/// Class-aware greedy NMS: highest score first, per class; at most `max_det` kept, sorted by
/// descending score (ties keep candidate order).
///
/// Candidates are visited once in global score order and each is compared only with the
/// kept boxes of its class. A box's fate depends only on higher-scored boxes of its class, so
/// this equals per-class NMS followed by the top `max_det`, and it can stop as soon as
/// `max_det` boxes are kept.
pub fn nms(mut cands: Vec<Det>, cfg: &NmsConfig) -> Vec<Det> {
    let by_score = |a: &Det, b: &Det| b.score.total_cmp(&a.score);
    if cands.len() > cfg.max_candidates && cfg.max_candidates > 0 {
        // Keep the best `max_candidates` without sorting everything.
        cands.select_nth_unstable_by(cfg.max_candidates - 1, by_score);
        cands.truncate(cfg.max_candidates);
    }
    cands.sort_by(by_score);
    let classes = cands.iter().map(|d| d.class + 1).max().unwrap_or(0);
    let mut kept_by_class: Vec<Vec<([f32; 4], f32)>> = vec![Vec::new(); classes];
    let mut out = Vec::new();
    for d in cands {
        if out.len() == cfg.max_det {
            break;
        }
        let b = &d.xyxy;
        let area = (b[2] - b[0]) * (b[3] - b[1]);
        let kept = &mut kept_by_class[d.class];
        let overlaps = kept.iter().any(|(a, a_area)| {
            let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
            let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            let inter = iw * ih;
            // inter / union > thr without a division.
            inter > cfg.iou * (a_area + area - inter)
        });
        if !overlaps {
            kept.push((*b, area));
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, score: f32, class: usize) -> Det {
        Det { xyxy: [x, 0.0, x + 10.0, 10.0], score, class }
    }

    #[test]
    fn suppresses_overlaps_of_the_same_class_only() {
        // Boxes shifted by 1 px overlap with IoU 90/110 = 0.818 > 0.6; by 5 px 50/150 = 0.33.
        let cfg = NmsConfig::default();
        let kept = nms(vec![det(0.0, 0.9, 0), det(1.0, 0.8, 0), det(1.0, 0.7, 1), det(5.0, 0.6, 0)], &cfg);
        assert_eq!(kept, vec![det(0.0, 0.9, 0), det(1.0, 0.7, 1), det(5.0, 0.6, 0)]);
        let one = NmsConfig { max_det: 1, ..cfg };
        assert_eq!(nms(vec![det(0.0, 0.5, 0), det(50.0, 0.9, 0)], &one), vec![det(50.0, 0.9, 0)]);
    }

    #[test]
    fn candidates_multiply_objectness_and_keep_every_class_above_conf() {
        // obj 0.5, class scores 0.8 and 0.001 -> 0.4 and 0.0005 (below 0.001).
        let rows = |v: &[f32]| Tensor::from_slice(v).view([-1, 7]);
        let c = candidates(&rows(&[50.0, 40.0, 20.0, 10.0, 0.5, 0.8, 0.001]), &NmsConfig::default()).unwrap();
        assert_eq!(c, vec![Det { xyxy: [40.0, 35.0, 60.0, 45.0], score: 0.4, class: 0 }]);
        let two = rows(&[50.0, 40.0, 20.0, 10.0, 0.5, 0.8, 0.6]);
        assert_eq!(candidates(&two, &NmsConfig::default()).unwrap().len(), 2);
        let single = NmsConfig { multi_label: false, ..Default::default() };
        assert_eq!(
            candidates(&two, &single).unwrap(),
            vec![Det { xyxy: [40.0, 35.0, 60.0, 45.0], score: 0.4, class: 0 }]
        );
        // At most max_candidates, the best ones: scores 0.5·{0.8, 0.6} and 0.9·{0.1, 0.7}.
        let four = rows(&[50.0, 40.0, 20.0, 10.0, 0.5, 0.8, 0.6, 10.0, 10.0, 4.0, 4.0, 0.9, 0.1, 0.7]);
        let top2 = NmsConfig { max_candidates: 2, ..Default::default() };
        let c = candidates(&four, &top2).unwrap();
        assert_eq!(c.iter().map(|d| (d.class, d.score)).collect::<Vec<_>>(), vec![(1, 0.63), (0, 0.4)]);
    }
}
