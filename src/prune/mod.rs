//! Pruning: masks for one layer (unstructured and filter), threshold suggestion from a
//! sensitivity run, and plans applied to whole checkpoints.

pub mod mask;
pub mod plan;
pub mod stats;
pub mod suggest;

pub use mask::{prune_layer, pruned_count, Method, PruneCount};
pub use plan::{Origin, Plan, PlanCoster, PlanError, PlanLayer, PlanModel, Prediction, Rule};
pub use suggest::{Budget, Curves, LayerCurve, Resource};
