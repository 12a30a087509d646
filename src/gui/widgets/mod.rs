//! Widgets drawn with the painter where egui_plot would be too heavy (dozens at once) or
//! does not fit (labelled matrices).

pub mod heatmap;
pub mod small_plot;
