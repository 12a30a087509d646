//! prunescope: layer-wise pruning experiments for Darknet/YOLO detectors.
//!
//! The engine (`model`, and the modules later issues add) never depends on the GUI or the
//! CLI; both call the same engine functions.

pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod fsio;
#[cfg(feature = "gui")]
pub mod gui;
pub mod metrics;
pub mod model;
pub mod plan;
pub mod project;
pub mod provenance;
pub mod prune;
pub mod quantity;
pub mod report;
pub mod sensitivity;
pub mod train;
