//! Classification metrics: top-1 and top-5 accuracy (as Ultralytics' ClassifyMetrics and
//! torchvision's reference compute them: the true class among the k highest scores, ties
//! broken by the lower class index, as a stable sort ranks them), per-class precision and
//! recall of the top-1 prediction, and the nc × nc confusion matrix.

use super::ConfusionMatrix;
use serde::Serialize;

/// The `k` highest-scoring classes of one image, best first; equal scores rank the lower
/// class first.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// One class's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassAccuracy {
    pub name: String,
    /// Images of this class.
    pub images: u64,
    /// Of this class's images, the fraction predicted as it (its recall; top-1 accuracy).
    pub recall: f64,
    /// Of the images predicted as this class, the fraction that are (0 when none is).
    pub precision: f64,
}

/// What a classifier scored on a set of images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassifyMetrics {
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
    /// Means over the classes with images.
    pub precision: f64,
    pub recall: f64,
    pub classes: Vec<ClassAccuracy>,
    /// counts[predicted][true] (top-1), in the order of `classes`.
    pub confusion: ConfusionMatrix,
}

/// Scores `ranked`: per image, its true class and its classes best first (at least one).
pub fn score(ranked: &[(usize, Vec<usize>)], names: &[String]) -> ClassifyMetrics {
    let nc = names.len();
    let mut confusion = ConfusionMatrix::new(nc);
    let (mut top1, mut top5) = (0u64, 0u64);
    for (truth, top) in ranked {
        top1 += (top.first() == Some(truth)) as u64;
        top5 += top.iter().take(5).any(|c| c == truth) as u64;
        if let Some(&p) = top.first() {
            if p < nc && *truth < nc {
                confusion.add(p, *truth);
            }
        }
    }
    let classes: Vec<ClassAccuracy> = (0..nc)
        .map(|c| {
            let images: u64 = (0..nc).map(|p| confusion.counts[p][c]).sum();
            let predicted: u64 = confusion.counts[c].iter().sum();
            let hit = confusion.counts[c][c] as f64;
            ClassAccuracy {
                name: names[c].clone(),
                images,
                recall: if images > 0 { hit / images as f64 } else { 0.0 },
                precision: if predicted > 0 { hit / predicted as f64 } else { 0.0 },
            }
        })
        .collect();
    let seen: Vec<&ClassAccuracy> = classes.iter().filter(|c| c.images > 0).collect();
    let mean = |f: fn(&ClassAccuracy) -> f64| {
        if seen.is_empty() {
            0.0
        } else {
            seen.iter().map(|c| f(c)).sum::<f64>() / seen.len() as f64
        }
    };
    let n = ranked.len().max(1) as f64;
    ClassifyMetrics {
        images: ranked.len(),
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        precision: mean(|c| c.precision),
        recall: mean(|c| c.recall),
        classes,
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_rank_the_lower_class_first() {
        assert_eq!(top_k(&[0.1, 0.7, 0.2, 0.7], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[0.5], 5), vec![0]);
    }

    /// Three classes, four images (derived by hand): image 1 right, image 2 a (class 0 seen
    /// as 1), image 3 right, image 4 class 2 seen as 0 with the truth third.
    #[test]
    fn accuracy_precision_recall_and_confusion() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let ranked = vec![(0, vec![0, 1, 2]), (0, vec![1, 0, 2]), (1, vec![1, 2, 0]), (2, vec![0, 1, 2])];
        let m = score(&ranked, &names);
        assert_eq!((m.top1, m.top5), (0.5, 1.0));
        assert_eq!(m.confusion.counts, vec![vec![1, 0, 1], vec![1, 1, 0], vec![0, 0, 0]]);
        // recall: a 1/2, b 1/1, c 0/1; precision: a 1/2, b 1/2, c 0 (never predicted).
        assert_eq!(m.classes[0].recall, 0.5);
        assert_eq!(m.classes[1].precision, 0.5);
        assert!((m.recall - 0.5).abs() < 1e-12 && (m.precision - 1.0 / 3.0).abs() < 1e-12);
    }
}
