//! Precision and recall per class at one confidence threshold.

use serde::Serialize;

/// Counts and ratios of one class at a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassPr {
    pub tp: u64,
    pub fp: u64,
    pub gt: u64,
    pub precision: f64,
    pub recall: f64,
}

/// Greedy matching per image and class at IoU ≥ `iou`, detections with score ≥ `conf` in
/// descending score, each taking the unmatched ground truth of highest IoU (COCO's rule).
/// Crowd ground truth is not counted, and detections matching only crowd are ignored.
/// `gt`: per image (xyxy, class, crowd); `dets`: per image (xyxy, score, class).
pub fn precision_recall(
    gt: &[Vec<([f64; 4], usize, bool)>],
    dets: &[Vec<([f64; 4], f64, usize)>],
    nc: usize,
    conf: f64,
    iou: f64,
) -> Vec<ClassPr> {
    let mut tp = vec![0u64; nc];
    let mut fp = vec![0u64; nc];
    let mut ngt = vec![0u64; nc];
    for (g, d) in gt.iter().zip(dets) {
        for &(_, c, crowd) in g {
            if !crowd && c < nc {
                ngt[c] += 1;
            }
        }
        let mut order: Vec<usize> = (0..d.len()).filter(|&i| d[i].1 >= conf && d[i].2 < nc).collect();
        order.sort_by(|&a, &b| d[b].1.total_cmp(&d[a].1));
        let mut taken = vec![false; g.len()];
        for i in order {
            let (b, _, c) = d[i];
            let mut best: Option<(f64, usize)> = None;
            for (j, &(gb, gc, _)) in g.iter().enumerate() {
                if gc != c || taken[j] {
                    continue;
                }
                let v = super::iou_xyxy(&b, &gb);
                if v >= iou && best.is_none_or(|(bv, _)| v > bv) {
                    best = Some((v, j));
                }
            }
            match best {
                Some((_, j)) if g[j].2 => {} // crowd: neither
                Some((_, j)) => {
                    taken[j] = true;
                    tp[c] += 1;
                }
                None => fp[c] += 1,
            }
        }
    }
    (0..nc)
        .map(|c| {
            let precision = if tp[c] + fp[c] > 0 { tp[c] as f64 / (tp[c] + fp[c]) as f64 } else { 0.0 };
            let recall = if ngt[c] > 0 { tp[c] as f64 / ngt[c] as f64 } else { 0.0 };
            ClassPr { tp: tp[c], fp: fp[c], gt: ngt[c], precision, recall }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_at_a_confidence() {
        // Class 0: two objects; detections 0.9 (hit), 0.8 (duplicate on the same object: fp),
        // 0.1 (below conf 0.25: not counted). P = 1/2, R = 1/2.
        let g = vec![vec![([0.0, 0.0, 10.0, 10.0], 0, false), ([50.0, 0.0, 60.0, 10.0], 0, false)]];
        let d = vec![vec![
            ([0.0, 0.0, 10.0, 10.0], 0.9, 0),
            ([0.0, 0.0, 10.0, 10.0], 0.8, 0),
            ([50.0, 0.0, 60.0, 10.0], 0.1, 0),
        ]];
        let r = precision_recall(&g, &d, 1, 0.25, 0.5);
        assert_eq!(r[0], ClassPr { tp: 1, fp: 1, gt: 2, precision: 0.5, recall: 0.5 });
    }
}
