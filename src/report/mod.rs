//! Reports and exports: sensitivity tables and plots (and, later, comparisons).

pub mod plot;
pub mod sensitivity;
