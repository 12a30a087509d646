//! Reports and exports: sensitivity tables and plots, and comparisons of checkpoints.

pub mod compare;
pub mod plot;
pub mod sensitivity;
