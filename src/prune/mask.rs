//! Pruning masks: L1 unstructured (the smallest-|w| weights of one layer) and structured
//! filter pruning by L1 or L2 norm (whole output filters, with the batch-norm weight and
//! bias of those channels, so a pruned channel outputs exactly zero after BN and the
//! activation, as if it had been removed). Counts are exact: round(fraction × size)
//! weights, or round(fraction × filters) filters; ties go to the lower index.

use crate::model::weights::ConvKeys;
use crate::model::{TensorF32, Weights};
use serde::{Deserialize, Serialize};

/// How a layer is pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    /// Unstructured: zero the smallest-magnitude weights.
    #[serde(rename = "l1")]
    L1,
    /// Structured: zero the output filters with the smallest L1 norm.
    #[serde(rename = "l1-filter")]
    L1Filter,
    /// Structured: zero the output filters with the smallest L2 norm.
    #[serde(rename = "l2-filter")]
    L2Filter,
}

impl crate::quantity::Named for Method {
    const ALL: &'static [Self] = &[Method::L1, Method::L1Filter, Method::L2Filter];
    fn name(self) -> &'static str {
        Method::name(self)
    }
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::L1 => "l1",
            Method::L1Filter => "l1-filter",
            Method::L2Filter => "l2-filter",
        }
    }

    pub fn is_structured(self) -> bool {
        !matches!(self, Method::L1)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How many of `n` items a sparsity prunes: round(fraction × n), halves away from zero.
pub fn pruned_count(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).round().max(0.0) as usize).min(n)
}

/// Indices of the `k` smallest `keys`, ties to the lower index (O(n) selection).
fn smallest(keys: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..keys.len()).collect();
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &usize, b: &usize| keys[*a].total_cmp(&keys[*b]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable();
    idx
}

/// Positions of the weights L1 unstructured pruning zeroes at `fraction`.
pub fn unstructured(weight: &[f32], fraction: f64) -> Vec<usize> {
    let keys: Vec<f64> = weight.iter().map(|w| w.abs() as f64).collect();
    smallest(&keys, pruned_count(fraction, weight.len()))
}

/// Norm of each output filter of an OIHW weight: L1 (sum of |w|) or L2.
pub fn filter_norms(weight: &TensorF32, l2: bool) -> Vec<f64> {
    let filters = weight.shape.first().copied().unwrap_or(0);
    let per = weight.data.len() / filters.max(1);
    weight
        .data
        .chunks(per.max(1))
        .take(filters)
        .map(|f| {
            if l2 {
                f.iter().map(|&w| (w as f64) * (w as f64)).sum::<f64>().sqrt()
            } else {
                f.iter().map(|&w| (w as f64).abs()).sum()
            }
        })
        .collect()
}

/// Output filters structured pruning zeroes at `fraction`.
pub fn filters(weight: &TensorF32, fraction: f64, l2: bool) -> Vec<usize> {
    let norms = filter_norms(weight, l2);
    smallest(&norms, pruned_count(fraction, norms.len()))
}

/// What pruning one layer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PruneCount {
    /// Weights of the convolution set to zero (including ones already zero).
    pub weights_zeroed: usize,
    /// Whole filters zeroed (structured methods).
    pub filters_zeroed: usize,
}

/// Prunes convolution `keys` of `weights` in place at `fraction` with `method`.
pub fn prune_layer(weights: &mut Weights, keys: &ConvKeys, method: Method, fraction: f64) -> PruneCount {
    let Some(w) = weights.tensors.get_mut(&keys.weight) else { return PruneCount::default() };
    match method {
        Method::L1 => {
            let zero = unstructured(&w.data, fraction);
            for &i in &zero {
                w.data[i] = 0.0;
            }
            PruneCount { weights_zeroed: zero.len(), filters_zeroed: 0 }
        }
        Method::L1Filter | Method::L2Filter => {
            let gone = filters(w, fraction, method == Method::L2Filter);
            let per = w.data.len() / w.shape[0].max(1);
            for &f in &gone {
                w.data[f * per..(f + 1) * per].fill(0.0);
            }
            // The channel must output zero whatever its input: BN scale and shift, or the
            // conv bias when there is no BN.
            let mut channel_keys: Vec<&String> = Vec::new();
            if let Some([bn_w, bn_b, _, _]) = &keys.bn {
                channel_keys.extend([bn_w, bn_b]);
            }
            if let Some(b) = &keys.bias {
                channel_keys.push(b);
            }
            for k in channel_keys {
                if let Some(t) = weights.tensors.get_mut(k) {
                    for &f in &gone {
                        t.data[f] = 0.0;
                    }
                }
            }
            PruneCount { weights_zeroed: gone.len() * per, filters_zeroed: gone.len() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_half_away_from_zero() {
        assert_eq!(pruned_count(0.05, 10), 1); // 0.5 -> 1
        assert_eq!(pruned_count(0.88, 16), 14); // 14.08
        assert_eq!(pruned_count(0.3, 5), 2); // 1.5 -> 2
        assert_eq!(pruned_count(0.0, 7), 0);
        assert_eq!(pruned_count(0.999, 3), 3);
    }

    #[test]
    fn unstructured_zeroes_the_smallest_with_ties_to_the_lower_index() {
        let w = [0.5f32, -0.1, 0.1, 0.3, -0.1, 2.0];
        // 50 % of 6 = 3: |−0.1| at 1, |0.1| at 2, |−0.1| at 4 (all ties at 0.1).
        assert_eq!(unstructured(&w, 0.5), vec![1, 2, 4]);
        // 2 of 6: the three 0.1s tie; the lower indices 1 and 2 go first.
        assert_eq!(unstructured(&w, 0.3), vec![1, 2]);
    }

    #[test]
    fn filter_norms_by_hand() {
        // Two filters of 1x2x1x1: [3, -4] and [1, 1]. L1: 7 and 2; L2: 5 and √2.
        let w = TensorF32::new(vec![2, 2, 1, 1], vec![3.0, -4.0, 1.0, 1.0]);
        assert_eq!(filter_norms(&w, false), vec![7.0, 2.0]);
        let l2 = filter_norms(&w, true);
        assert!((l2[0] - 5.0).abs() < 1e-12 && (l2[1] - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(filters(&w, 0.5, true), vec![1]);
    }
}
