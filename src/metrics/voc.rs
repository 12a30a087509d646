//! VOC all-point AP at one IoU threshold, as PyTorch-YOLOv3's `get_batch_statistics` and
//! `ap_per_class` compute it (including its "+1 pixel" box areas and its greedy matching
//! without fallback).

/// PyTorch-YOLOv3's `bbox_iou` for x1y1x2y2 boxes: widths and heights count +1 pixel.
pub fn iou_plus_one(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = ((a[2].min(b[2])) - a[0].max(b[0]) + 1.0).max(0.0);
    let ih = ((a[3].min(b[3])) - a[1].max(b[1]) + 1.0).max(0.0);
    let inter = iw * ih;
    let aa = (a[2] - a[0] + 1.0) * (a[3] - a[1] + 1.0);
    let ba = (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    inter / (aa + ba - inter + 1e-16)
}

/// True-positive flags of one image's predictions (sorted by descending score): each is
/// compared with the same-class target of highest IoU; a hit needs IoU ≥ `thr` and that
/// target not already taken.
pub fn match_image(preds: &[([f64; 4], usize)], targets: &[([f64; 4], usize)], thr: f64) -> Vec<bool> {
    let mut tp = vec![false; preds.len()];
    let mut taken: Vec<usize> = Vec::new();
    for (pi, (pbox, pcls)) in preds.iter().enumerate() {
        if taken.len() == targets.len() {
            break;
        }
        let mut best: Option<(f64, usize)> = None;
        for (ti, (tbox, tcls)) in targets.iter().enumerate() {
            if tcls != pcls {
                continue;
            }
            let v = iou_plus_one(pbox, tbox);
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, ti));
            }
        }
        if let Some((v, ti)) = best {
            if v >= thr && !taken.contains(&ti) {
                tp[pi] = true;
                taken.push(ti);
            }
        }
    }
    tp
}

/// AP, final precision and recall of one class, as `ap_per_class` returns them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassAp {
    pub class: usize,
    pub ap: f64,
    pub precision: f64,
    pub recall: f64,
}

/// `ap_per_class`: predictions (tp flag, confidence, class) over all images and the target
/// classes. Classes are those with targets, in increasing order.
pub fn ap_per_class(preds: &[(bool, f64, usize)], target_classes: &[usize]) -> Vec<ClassAp> {
    let mut order: Vec<usize> = (0..preds.len()).collect();
    order.sort_by(|&a, &b| preds[b].1.total_cmp(&preds[a].1));
    let mut classes: Vec<usize> = target_classes.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut out = Vec::new();
    for c in classes {
        let n_gt = target_classes.iter().filter(|&&t| t == c).count();
        let mine: Vec<bool> = order.iter().filter(|&&i| preds[i].2 == c).map(|&i| preds[i].0).collect();
        if mine.is_empty() {
            out.push(ClassAp { class: c, ap: 0.0, precision: 0.0, recall: 0.0 });
            continue;
        }
        let (mut tpc, mut fpc) = (0.0, 0.0);
        let mut recall = Vec::with_capacity(mine.len());
        let mut precision = Vec::with_capacity(mine.len());
        for tp in mine {
            if tp {
                tpc += 1.0;
            } else {
                fpc += 1.0;
            }
            recall.push(tpc / (n_gt as f64 + 1e-16));
            precision.push(tpc / (tpc + fpc));
        }
        out.push(ClassAp {
            class: c,
            ap: compute_ap(&recall, &precision),
            precision: *precision.last().unwrap_or(&0.0),
            recall: *recall.last().unwrap_or(&0.0),
        });
    }
    out
}

/// All-point interpolated AP: the area under the precision envelope.
pub fn compute_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let mut mrec = Vec::with_capacity(recall.len() + 2);
    mrec.push(0.0);
    mrec.extend_from_slice(recall);
    mrec.push(1.0);
    let mut mpre = Vec::with_capacity(precision.len() + 2);
    mpre.push(0.0);
    mpre.extend_from_slice(precision);
    mpre.push(0.0);
    for i in (1..mpre.len()).rev() {
        mpre[i - 1] = mpre[i - 1].max(mpre[i]);
    }
    (0..mrec.len() - 1).filter(|&i| mrec[i + 1] != mrec[i]).map(|i| (mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ap_of_a_hand_made_ranking() {
        // 3 targets; ranked predictions tp, fp, tp: recall [1/3, 1/3, 2/3], precision
        // [1, 1/2, 2/3]. Envelope over mrec [0, 1/3, 1/3, 2/3, 1] with mpre [0, 1, .5, 2/3, 0]
        // -> [1, 1, 2/3, 2/3, 0]; AP = 1/3·1 + 1/3·2/3 = 5/9.
        let r = ap_per_class(&[(true, 0.9, 0), (false, 0.8, 0), (true, 0.7, 0)], &[0, 0, 0]);
        assert!((r[0].ap - 5.0 / 9.0).abs() < 1e-12);
        assert!((r[0].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((r[0].recall - 2.0 / 3.0).abs() < 1e-12);
        // A target class without predictions has AP 0; a predicted class without targets is
        // not reported.
        let r = ap_per_class(&[(false, 0.9, 1)], &[0]);
        assert_eq!(r, vec![ClassAp { class: 0, ap: 0.0, precision: 0.0, recall: 0.0 }]);
    }

    #[test]
    fn matching_takes_the_best_target_without_fallback() {
        // Two targets; both predictions overlap target 0 most. The second one's best target
        // is taken, so it is a false positive even though it overlaps target 1 enough.
        let t = [([0.0, 0.0, 9.0, 9.0], 0), ([2.0, 0.0, 11.0, 9.0], 0)];
        let p = [([0.0, 0.0, 9.0, 9.0], 0), ([0.5, 0.0, 9.5, 9.0], 0)];
        assert_eq!(match_image(&p, &t, 0.5), vec![true, false]);
        // +1 pixel areas: [0,0,9,9] is 10x10 = 100; [5,0,14,9] overlaps 5x10 = 50 -> 50/150.
        assert!((iou_plus_one(&[0.0, 0.0, 9.0, 9.0], &[5.0, 0.0, 14.0, 9.0]) - 1.0 / 3.0).abs() < 1e-12);
    }
}
