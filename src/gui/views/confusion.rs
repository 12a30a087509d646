//! The confusion matrices of a comparison: one per model and, for two or more, the
//! difference of the second from the first.

use super::super::widgets::heatmap::Heatmap;
use crate::eval::compare::{Comparison, ModelReport};
use egui::Vec2;

pub fn show(ui: &mut egui::Ui, c: &Comparison) {
    ui.strong("Confusion matrices");
    let names: Vec<String> = c.names.iter().cloned().chain(std::iter::once("background".to_string())).collect();
    let n = names.len();
    let flat = |m: &ModelReport| -> Vec<f64> { m.confusion.counts.iter().flatten().map(|&x| x as f64).collect() };
    let mut hovered = None;
    let panels = c.models.len() + usize::from(c.models.len() >= 2);
    let side = ((ui.available_width() - 24.0) / panels as f32).clamp(160.0, 330.0);
    ui.horizontal(|ui| {
        for (i, m) in c.models.iter().enumerate() {
            let values = flat(m);
            if values.len() == n * n {
                let title = m.label.clone();
                if let Some(h) =
                    (Heatmap { id: &m.label, title: &title, values: &values, names: &names, diverging: false })
                        .show(ui, Vec2::new(side, side + 40.0))
                {
                    hovered = Some((i, h.0, h.1));
                }
            }
        }
        if c.models.len() >= 2 {
            let (a, b) = (flat(&c.models[0]), flat(&c.models[1]));
            if a.len() == n * n && b.len() == n * n {
                let d: Vec<f64> = b.iter().zip(&a).map(|(x, y)| x - y).collect();
                let title = format!("{} − {}", c.models[1].label, c.models[0].label);
                if let Some(h) =
                    (Heatmap { id: "difference", title: &title, values: &d, names: &names, diverging: true })
                        .show(ui, Vec2::new(side, side + 40.0))
                {
                    hovered = Some((2, h.0, h.1));
                }
            }
        }
    });
    if let Some((_, r, col)) = hovered {
        let cells: Vec<String> = c
            .models
            .iter()
            .map(|m| {
                format!("{}: {}", m.label, m.confusion.counts.get(r).and_then(|x| x.get(col)).copied().unwrap_or(0))
            })
            .collect();
        ui.label(format!("predicted {} / true {} — {}", names[r], names[col], cells.join(", ")));
    }
}
