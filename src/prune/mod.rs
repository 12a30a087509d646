//! Pruning: masks for one layer (unstructured and filter), and later plans and their
//! application to whole checkpoints.

pub mod mask;

pub use mask::{prune_layer, pruned_count, Method, PruneCount};
