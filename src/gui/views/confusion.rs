//! The confusion matrices of a comparison: one per model and, for two or more, the
//! difference of the second from the first, coloured better/worse.

use super::super::widgets::heatmap::{self, Heatmap, Scale};
use crate::eval::compare::{Comparison, ModelReport};

/// Smallest cell side: below it the class names (one per row and column) overlap, so the
/// matrices go onto more rows instead of shrinking further.
const MIN_CELL: f32 = 14.0;
/// Largest cell side, and the largest grid, so that a few classes do not fill the screen.
const MAX_CELL: f32 = 64.0;
const MAX_GRID: f32 = 330.0;
const GAP: f32 = 12.0;

/// The cell side and how many matrices go on one row, for `panels` matrices of `n` classes
/// each needing `chrome` points of width besides the grid, in `width` points.
fn fit(width: f32, panels: usize, n: usize, chrome: f32) -> (f32, usize) {
    let n = n.max(1) as f32;
    let largest = (MAX_GRID / n).clamp(MIN_CELL, MAX_CELL);
    let cell_for = |per_row: usize| ((width / per_row as f32 - GAP - chrome) / n).min(largest);
    let mut per_row = panels.max(1);
    while per_row > 1 && cell_for(per_row) < MIN_CELL {
        per_row -= 1;
    }
    (cell_for(per_row).max(MIN_CELL).floor(), per_row)
}

/// Shows the matrices and, under them, the counts of the hovered cell in every model.
pub fn show(ui: &mut egui::Ui, c: &Comparison) {
    ui.strong("Confusion matrices");
    let names = c.confusion_labels();
    let n = names.len();
    let flat = |m: &ModelReport| -> Vec<f64> { m.confusion.counts.iter().flatten().map(|&x| x as f64).collect() };
    let mut panels: Vec<(String, String, Vec<f64>, Scale)> = c
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("model {i}"), m.label.clone(), flat(m), Scale::Counts))
        .filter(|p| p.2.len() == n * n)
        .collect();
    if c.models.len() >= 2 {
        let (a, b) = (flat(&c.models[0]), flat(&c.models[1]));
        if a.len() == n * n && b.len() == n * n {
            let d: Vec<f64> = b.iter().zip(&a).map(|(x, y)| x - y).collect();
            let title = format!("{} − {}", c.models[1].label, c.models[0].label);
            panels.push(("difference".into(), title, d, Scale::Difference));
        }
    }
    let chrome = Heatmap::chrome(ui, &names).x;
    let (cell, per_row) = fit(ui.available_width(), panels.len(), n, chrome);
    let mut hovered = None;
    for row in panels.chunks(per_row) {
        ui.horizontal_top(|ui| {
            ui.spacing_mut().item_spacing.x = GAP;
            for (id, title, values, scale) in row {
                let map = Heatmap { id, title, values, names: &names, scale: *scale };
                if let Some(h) = map.show(ui, cell) {
                    hovered = Some(h);
                }
            }
        });
    }
    if let Some((r, col)) = hovered {
        let count = |m: &ModelReport| m.confusion.counts.get(r).and_then(|x| x.get(col)).copied().unwrap_or(0);
        let mut cells: Vec<String> = c.models.iter().map(|m| format!("{}: {}", m.label, count(m))).collect();
        if let [a, b, ..] = c.models.as_slice() {
            let d = count(b) as f64 - count(a) as f64;
            cells.push(format!("change {d:+} ({})", heatmap::verdict(r, col, d)));
        }
        ui.label(format!("predicted {} / true {} — {}", names[r], names[col], cells.join(", ")));
    } else {
        // Holds the line's place: were it to come and go, the content under a pointer near
        // the end of the scroll area would jump away from it.
        ui.label(egui::RichText::new("hover a cell for its counts in every model").weak());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_classes_wrap_rather_than_shrink() {
        // Three 21-class matrices do not fit side by side in 1200 points at the smallest
        // readable cell: two go on the first row, at least that cell size.
        let (cell, per_row) = fit(1200.0, 3, 21, 200.0);
        assert_eq!(per_row, 2);
        assert!(cell >= MIN_CELL);
        // A few classes keep the larger cells.
        let (cell, per_row) = fit(1200.0, 3, 4, 120.0);
        assert_eq!(per_row, 3);
        assert!(cell > 40.0);
        // However narrow, one per row at the smallest cell.
        assert_eq!(fit(100.0, 3, 21, 200.0), (MIN_CELL, 1));
    }
}
