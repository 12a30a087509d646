//! Confusion matrices: detection ((nc+1)², Ultralytics' matching) and classification.

use super::iou_xyxy;
use serde::Serialize;

/// Rows are predicted classes, columns true classes; for detection the last index is
/// background (row: missed objects; column: detections of nothing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusionMatrix {
    pub size: usize,
    /// counts[predicted][true]
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    pub fn new(size: usize) -> Self {
        Self { size, counts: vec![vec![0; size]; size] }
    }

    /// Adds one image of a detector with `nc` classes (matrix size nc + 1): detections with
    /// score > `conf` are matched one-to-one to ground truth by IoU > `iou`, highest IoU
    /// first; a matched pair counts at (predicted class, true class), an unmatched object at
    /// (background, true class), an unmatched detection at (predicted class, background).
    pub fn add_detections(&mut self, gt: &[([f64; 4], usize)], dets: &[([f64; 4], f64, usize)], conf: f64, iou: f64) {
        let bg = self.size - 1;
        let dets: Vec<&([f64; 4], f64, usize)> = dets.iter().filter(|d| d.1 > conf).collect();
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (gi, (g, _)) in gt.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                let v = iou_xyxy(g, &d.0);
                if v > iou {
                    pairs.push((v, gi, di));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut gt_match = vec![None; gt.len()];
        let mut det_used = vec![false; dets.len()];
        for (_, gi, di) in pairs {
            if gt_match[gi].is_none() && !det_used[di] {
                gt_match[gi] = Some(di);
                det_used[di] = true;
            }
        }
        for (gi, (_, gc)) in gt.iter().enumerate() {
            match gt_match[gi] {
                Some(di) => self.counts[dets[di].2][*gc] += 1,
                None => self.counts[bg][*gc] += 1,
            }
        }
        for (di, d) in dets.iter().enumerate() {
            if !det_used[di] {
                self.counts[d.2][bg] += 1;
            }
        }
    }

    /// Adds one classification: predicted and true class.
    pub fn add(&mut self, predicted: usize, truth: usize) {
        self.counts[predicted][truth] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_matrix_counts_hits_confusions_misses_and_false_alarms() {
        // 2 classes + background. Image: a class-0 object found as class 1 (confusion), a
        // class-1 object missed, a detection of nothing (class 0), one below conf (ignored).
        let mut m = ConfusionMatrix::new(3);
        let gt = [([0.0, 0.0, 10.0, 10.0], 0), ([50.0, 50.0, 60.0, 60.0], 1)];
        let dets = [
            ([0.0, 0.0, 10.0, 10.0], 0.9, 1),
            ([100.0, 100.0, 110.0, 110.0], 0.8, 0),
            ([50.0, 50.0, 60.0, 60.0], 0.1, 1),
        ];
        m.add_detections(&gt, &dets, 0.25, 0.45);
        assert_eq!(m.counts, vec![vec![0, 0, 1], vec![1, 0, 0], vec![0, 1, 0]]);
        // Two detections on one object: the better overlap is the match, the other a false alarm.
        let mut m = ConfusionMatrix::new(2);
        m.add_detections(
            &[([0.0, 0.0, 10.0, 10.0], 0)],
            &[([1.0, 0.0, 11.0, 10.0], 0.9, 0), ([0.0, 0.0, 10.0, 10.0], 0.5, 0)],
            0.25,
            0.45,
        );
        assert_eq!(m.counts, vec![vec![1, 1], vec![0, 0]]);
    }
}
