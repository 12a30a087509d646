//! Weight statistics of one convolution, for choosing its threshold: the |w| distribution,
//! the per-filter norms, and what a sparsity removes under each method (the same selection
//! as [`super::prune_layer`]).

use super::mask::{filter_norms, pruned_count, Method};
use crate::model::weights::ConvKeys;
use crate::model::Weights;
use serde::Serialize;

/// Why a layer's statistics could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// The checkpoint lacks the convolution's weight tensor.
    #[error("conv_{block}: the checkpoint has no tensor {tensor}")]
    NoTensor { block: usize, tensor: String },
}

/// The statistics of one layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerStats {
    pub layer: String,
    pub block: usize,
    /// Weights of the convolution (its OIHW tensor).
    pub weights: usize,
    /// |w| sorted ascending (the cut of sparsity s sits at s·n).
    #[serde(skip)]
    pub sorted_magnitudes: Vec<f32>,
    /// Counts of |w| in `histogram.len()` bins of `bin_width` from 0.
    pub histogram: Vec<u64>,
    pub bin_width: f64,
    /// Per output filter, in filter order.
    pub filter_l1: Vec<f64>,
    pub filter_l2: Vec<f64>,
}

/// What one sparsity removes from the layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cut {
    pub sparsity: f64,
    /// Weights zeroed (whole filters for the filter methods).
    pub weights: usize,
    pub filters: usize,
    /// The largest |w| (L1) or filter norm (filter methods) that is removed; 0 when nothing is.
    pub threshold: f64,
}

impl LayerStats {
    /// Statistics of convolution `keys` in `weights`, with a histogram of `bins` bins.
    pub fn of(weights: &Weights, keys: &ConvKeys, bins: usize) -> Result<Self, StatsError> {
        let w = weights
            .tensors
            .get(&keys.weight)
            .ok_or_else(|| StatsError::NoTensor { block: keys.block, tensor: keys.weight.clone() })?;
        let mut sorted: Vec<f32> = w.data.iter().map(|v| v.abs()).collect();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let max = sorted.last().copied().unwrap_or(0.0) as f64;
        let bins = bins.max(1);
        let bin_width = if max > 0.0 { max / bins as f64 } else { 1.0 };
        let mut histogram = vec![0u64; bins];
        for v in &sorted {
            histogram[((*v as f64 / bin_width) as usize).min(bins - 1)] += 1;
        }
        Ok(LayerStats {
            layer: format!("conv_{}", keys.block),
            block: keys.block,
            weights: sorted.len(),
            sorted_magnitudes: sorted,
            histogram,
            bin_width,
            filter_l1: filter_norms(w, false),
            filter_l2: filter_norms(w, true),
        })
    }

    pub fn filters(&self) -> usize {
        self.filter_l1.len()
    }

    /// What `method` at `sparsity` removes.
    pub fn cut(&self, method: Method, sparsity: f64) -> Cut {
        if method.is_structured() {
            let norms = if method == Method::L2Filter { &self.filter_l2 } else { &self.filter_l1 };
            let mut sorted = norms.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            let k = pruned_count(sparsity, sorted.len());
            let per = self.weights / sorted.len().max(1);
            let threshold = if k > 0 { sorted[k - 1] } else { 0.0 };
            Cut { sparsity, weights: k * per, filters: k, threshold }
        } else {
            let k = pruned_count(sparsity, self.weights);
            let threshold = if k > 0 { self.sorted_magnitudes[k - 1] as f64 } else { 0.0 };
            Cut { sparsity, weights: k, filters: 0, threshold }
        }
    }
}
