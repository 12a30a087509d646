//! Detection metrics the way Ultralytics 8.4 computes them (`DetectionValidator` and
//! `utils/metrics.py`), so our figures equal what `yolo val` prints:
//! - matching per image at IoU 0.50:0.05:0.95 (torch's float32 `linspace`): every
//!   (label, prediction) pair of one class with IoU ≥ t, by descending IoU, one match per
//!   prediction, then one per label, the lowest prediction index (the highest score: an image's
//!   predictions come in descending score order) winning (`match_predictions`); IoU in
//!   float32 with ε = 1e-7 (`box_iou`);
//! - `ap_per_class`: predictions of all images by descending confidence, per class with labels
//!   the precision envelope sampled at 101 recall points and integrated by the trapezoid rule
//!   (`compute_ap`), and P and R read from curves on 1000 confidence points at the maximum of
//!   the mean F1 (smoothed by a 101-point box filter). mAP, P and R are means over the classes
//!   that have labels.

/// IoU thresholds as `torch.linspace(0.5, 0.95, 10)` gives them (float32).
pub fn iou_thresholds() -> [f32; 10] {
    let (start, end) = (0.5f32, 0.95f32);
    let step = (end - start) / 9.0;
    let mut t = [0f32; 10];
    for (i, v) in t.iter_mut().enumerate() {
        // ATen's linspace: from the start for the first half, from the end for the rest.
        *v = if i < 5 { start + step * i as f32 } else { end - step * (9 - i) as f32 };
    }
    t
}

/// `box_iou` of two x1, y1, x2, y2 boxes in float32.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |x: [f32; 4]| (x[2] - x[0]) * (x[3] - x[1]);
    inter / (area(a) + area(b) - inter + 1e-7)
}

/// Which predictions are true positives at each threshold: `iou[l][p]` between label l and
/// prediction p (predictions in descending score order), classes of both.
pub fn match_predictions(iou: &[Vec<f32>], pred_class: &[usize], label_class: &[usize]) -> Vec<[bool; 10]> {
    let mut correct = vec![[false; 10]; pred_class.len()];
    for (k, t) in iou_thresholds().into_iter().enumerate() {
        // (label, prediction) pairs of one class at IoU ≥ t, by descending IoU.
        let mut pairs: Vec<(usize, usize, f32)> = Vec::new();
        for (l, row) in iou.iter().enumerate() {
            for (p, &v) in row.iter().enumerate() {
                if label_class[l] == pred_class[p] && v >= t {
                    pairs.push((l, p, v));
                }
            }
        }
        // numpy: argsort ascending then reversed; among equal IoUs the later pair first.
        let order: Vec<usize> = {
            let mut idx: Vec<usize> = (0..pairs.len()).collect();
            idx.sort_by(|&a, &b| pairs[a].2.total_cmp(&pairs[b].2).then(a.cmp(&b)));
            idx.reverse();
            idx
        };
        // One match per prediction (its first, best pair), kept in prediction order ...
        let mut by_pred: Vec<(usize, usize)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for &i in &order {
            let (l, p, _) = pairs[i];
            if seen.insert(p) {
                by_pred.push((l, p));
            }
        }
        by_pred.sort_by_key(|&(_, p)| p);
        // ... then one per label: the first in that order.
        let mut labels = std::collections::HashSet::new();
        for (l, p) in by_pred {
            if labels.insert(l) {
                correct[p][k] = true;
            }
        }
    }
    correct
}

/// `np.interp(x, xp, fp, left)` for increasing `xp` (right: the last value).
fn interp(x: f64, xp: &[f64], fp: &[f64], left: f64) -> f64 {
    let n = xp.len();
    if n == 0 {
        return left;
    }
    if x < xp[0] {
        return left;
    }
    if x > xp[n - 1] {
        return fp[n - 1];
    }
    // The last j with xp[j] <= x.
    let j = xp.partition_point(|&v| v <= x).saturating_sub(1);
    if j >= n - 1 || xp[j] == x {
        return fp[j];
    }
    let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    let v = slope * (x - xp[j]) + fp[j];
    if v.is_nan() {
        let w = slope * (x - xp[j + 1]) + fp[j + 1];
        if w.is_nan() && fp[j] == fp[j + 1] {
            return fp[j];
        }
        return w;
    }
    v
}

/// `np.linspace(0, 1, n)`.
fn linspace01(n: usize) -> Vec<f64> {
    let step = 1.0 / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step).collect();
    v[n - 1] = 1.0;
    v
}

/// `compute_ap` of 8.4: at 101 recall points r the precision envelope (the best precision at
/// this recall or beyond) of the first point whose recall exceeds r (`searchsorted`, side
/// right), 0 past the last; integrated by the trapezoid rule. (Checked against Ultralytics'
/// own figures in tests/fixtures/pose: sampling the envelope with `np.interp` instead gives
/// 0.0687 more mAP50 there.)
pub fn compute_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let mut envelope = precision.to_vec();
    for i in (0..envelope.len().saturating_sub(1)).rev() {
        envelope[i] = envelope[i].max(envelope[i + 1]);
    }
    let x = linspace01(101);
    let y: Vec<f64> = x
        .iter()
        .map(|&v| {
            let k = recall.partition_point(|&r| r <= v);
            envelope.get(k).copied().unwrap_or(0.0)
        })
        .collect();
    (0..100).map(|i| (x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2.0).sum()
}

/// `smooth(y, 0.1)`: a box filter of 2·round(n·0.1)/2 + 1 points, ends padded with the end values.
fn smooth(y: &[f64], f: f64) -> Vec<f64> {
    let nf = ((y.len() as f64 * f * 2.0).round() as usize) / 2 + 1;
    let half = nf / 2;
    let mut padded = vec![y[0]; half];
    padded.extend_from_slice(y);
    padded.extend(std::iter::repeat_n(y[y.len() - 1], half));
    let k = 1.0 / nf as f64;
    (0..y.len()).map(|i| padded[i..i + nf].iter().map(|v| v * k).sum()).collect()
}

/// Per class with labels: precision and recall at the best mean F1, and AP at each threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ApPerClass {
    /// The classes that have labels, ascending.
    pub classes: Vec<usize>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub ap: Vec<[f64; 10]>,
}

impl ApPerClass {
    /// Mean precision over the classes.
    pub fn mp(&self) -> f64 {
        mean(&self.precision)
    }
    pub fn mr(&self) -> f64 {
        mean(&self.recall)
    }
    pub fn map50(&self) -> f64 {
        mean(&self.ap.iter().map(|a| a[0]).collect::<Vec<_>>())
    }
    /// mAP@0.5:0.95.
    pub fn map(&self) -> f64 {
        mean(&self.ap.iter().map(|a| a.iter().sum::<f64>() / 10.0).collect::<Vec<_>>())
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// `ap_per_class` over the predictions of every image (`tp`, `conf`, `pred_class`) and the
/// classes of every label.
pub fn ap_per_class(tp: &[[bool; 10]], conf: &[f64], pred_class: &[usize], label_class: &[usize]) -> ApPerClass {
    const EPS: f64 = 1e-16;
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[b].total_cmp(&conf[a]));
    let mut classes: Vec<usize> = label_class.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let x = linspace01(1000);
    let mut p_curve = vec![vec![0.0; 1000]; classes.len()];
    let mut r_curve = vec![vec![0.0; 1000]; classes.len()];
    let mut ap = vec![[0.0; 10]; classes.len()];
    for (ci, &c) in classes.iter().enumerate() {
        let n_l = label_class.iter().filter(|&&l| l == c).count() as f64;
        let idx: Vec<usize> = order.iter().copied().filter(|&i| pred_class[i] == c).collect();
        if idx.is_empty() {
            continue;
        }
        let neg_conf: Vec<f64> = idx.iter().map(|&i| -conf[i]).collect();
        let mut recall = vec![[0.0; 10]; idx.len()];
        let mut precision = vec![[0.0; 10]; idx.len()];
        let (mut tpc, mut fpc) = ([0.0f64; 10], [0.0f64; 10]);
        for (n, &i) in idx.iter().enumerate() {
            for j in 0..10 {
                if tp[i][j] {
                    tpc[j] += 1.0;
                } else {
                    fpc[j] += 1.0;
                }
                recall[n][j] = tpc[j] / (n_l + EPS);
                precision[n][j] = tpc[j] / (tpc[j] + fpc[j]);
            }
        }
        let r0: Vec<f64> = recall.iter().map(|r| r[0]).collect();
        let p0: Vec<f64> = precision.iter().map(|p| p[0]).collect();
        for (k, &xv) in x.iter().enumerate() {
            r_curve[ci][k] = interp(-xv, &neg_conf, &r0, 0.0);
            p_curve[ci][k] = interp(-xv, &neg_conf, &p0, 1.0);
        }
        for j in 0..10 {
            let r: Vec<f64> = recall.iter().map(|v| v[j]).collect();
            let p: Vec<f64> = precision.iter().map(|v| v[j]).collect();
            ap[ci][j] = compute_ap(&r, &p);
        }
    }
    let f1: Vec<Vec<f64>> = p_curve
        .iter()
        .zip(&r_curve)
        .map(|(p, r)| p.iter().zip(r).map(|(p, r)| 2.0 * p * r / (p + r + EPS)).collect())
        .collect();
    let mean_f1: Vec<f64> = (0..1000).map(|k| f1.iter().map(|c| c[k]).sum::<f64>() / f1.len().max(1) as f64).collect();
    let smoothed = smooth(&mean_f1, 0.1);
    // argmax: the first maximum.
    let best = smoothed.iter().enumerate().fold(0, |b, (i, v)| if *v > smoothed[b] { i } else { b });
    ApPerClass {
        precision: p_curve.iter().map(|c| c[best]).collect(),
        recall: r_curve.iter().map(|c| c[best]).collect(),
        classes,
        ap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_torch_linspace() {
        let t = iou_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[9], 0.95);
        assert!((t[4] - 0.7).abs() < 1e-6 && (t[5] - 0.75).abs() < 1e-6);
    }

    /// Hand-derived: one class, two labels, three predictions by score (TP, FP, TP at every
    /// threshold). Recall 0.5, 0.5, 1; precision 1, 0.5, 2/3; envelope 1, 2/3, 2/3.
    #[test]
    fn ap_of_a_small_case_by_hand() {
        let tp = [[true; 10], [false; 10], [true; 10]];
        let r = ap_per_class(&tp, &[0.9, 0.8, 0.7], &[0, 0, 0], &[0, 0]);
        // The first point with recall > x: the first below 0.5 (envelope 1), the third from
        // 0.5 to 0.99 (2/3), none at 1 (0). Trapezoids of width 0.01: 49 at height 1, one from
        // 1 to 2/3, 49 at 2/3, and one from 2/3 to 0.
        let want = 0.49 + 0.01 * (1.0 + 2.0 / 3.0) / 2.0 + 0.49 * 2.0 / 3.0 + 0.01 * (2.0 / 3.0) / 2.0;
        assert!((r.ap[0][0] - want).abs() < 1e-12, "{} vs {want}", r.ap[0][0]);
        assert_eq!(r.classes, vec![0]);
    }

    /// A prediction matches one label, a label one prediction: two predictions on one label
    /// give one TP (the first, higher-scored one) even when the second overlaps more.
    #[test]
    fn one_match_per_label_the_first_prediction_wins() {
        let iou = vec![vec![0.6f32, 0.9]];
        let c = match_predictions(&iou, &[0, 0], &[0]);
        assert!(c[0][0] && !c[1][0]);
        // At 0.65 and above only the second reaches the label.
        assert!(!c[0][3] && c[1][3]);
    }
}
