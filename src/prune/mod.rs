//! Pruning one layer: masks (unstructured and filter) and the layer's weight statistics. Plans
//! that prune whole checkpoints are in `plan`, above the sensitivity engine.

pub mod mask;
pub mod stats;

pub use mask::{prune_layer, pruned_count, Method, PruneCount};
