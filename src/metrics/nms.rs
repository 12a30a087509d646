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

/// Rows of one image whose best possible score passes `conf`, copied to the CPU:
/// `[n, 5 + classes]` flattened, with the row width.
pub fn candidate_rows(output: &Tensor, conf: f32) -> Result<(Vec<f32>, usize), tch::TchError> {
    let no = output.size()[1];
    let best = output.f_narrow(1, 5, no - 5)?.f_amax([1], false)?.f_mul(&output.f_select(1, 4)?)?;
    let idx = best.f_gt(conf as f64)?.f_nonzero()?.f_squeeze_dim(1)?;
    let rows = output.f_index_select(0, &idx)?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let flat: Vec<f32> = Vec::<f32>::try_from(rows.f_flatten(0, -1)?)?;
    Ok((flat, no as usize))
}

/// Candidates from rows (cx, cy, w, h, obj, class scores…): score = obj × class score.
pub fn candidates(rows: &[f32], width: usize, cfg: &NmsConfig) -> Vec<Det> {
    let mut out = Vec::new();
    for r in rows.chunks_exact(width) {
        let (cx, cy, w, h, obj) = (r[0], r[1], r[2], r[3], r[4]);
        let xyxy = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        if cfg.multi_label {
            for (c, &s) in r[5..].iter().enumerate() {
                let score = s * obj;
                if score > cfg.conf {
                    out.push(Det { xyxy, score, class: c });
                }
            }
        } else if let Some((c, &s)) = r[5..].iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
            let score = s * obj;
            if score > cfg.conf {
                out.push(Det { xyxy, score, class: c });
            }
        }
    }
    out
}

/// IoU of two xyxy boxes.
pub fn iou_xyxy(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Class-aware greedy NMS: highest score first, per class; at most `max_det` kept, sorted by
/// descending score (ties keep candidate order).
pub fn nms(mut cands: Vec<Det>, cfg: &NmsConfig) -> Vec<Det> {
    cands.sort_by(|a, b| b.score.total_cmp(&a.score));
    cands.truncate(cfg.max_candidates);
    let classes = cands.iter().map(|d| d.class + 1).max().unwrap_or(0);
    let mut per_class: Vec<Vec<Det>> = vec![Vec::new(); classes];
    for d in cands {
        per_class[d.class].push(d);
    }
    let mut kept = Vec::new();
    for list in per_class {
        let mut keep: Vec<Det> = Vec::new();
        for d in list {
            if keep.iter().all(|k| iou_xyxy(&k.xyxy, &d.xyxy) <= cfg.iou) {
                keep.push(d);
            }
        }
        kept.extend(keep);
    }
    kept.sort_by(|a, b| b.score.total_cmp(&a.score));
    kept.truncate(cfg.max_det);
    kept
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
        let rows = [50.0, 40.0, 20.0, 10.0, 0.5, 0.8, 0.001];
        let c = candidates(&rows, 7, &NmsConfig::default());
        assert_eq!(c, vec![Det { xyxy: [40.0, 35.0, 60.0, 45.0], score: 0.4, class: 0 }]);
        let rows = [50.0, 40.0, 20.0, 10.0, 0.5, 0.8, 0.6];
        assert_eq!(candidates(&rows, 7, &NmsConfig::default()).len(), 2);
        assert_eq!(candidates(&rows, 7, &NmsConfig { multi_label: false, ..Default::default() }).len(), 1);
    }
}
