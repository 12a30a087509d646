//! A labelled matrix heatmap (confusion matrices): full class names on both axes (rows on the
//! left, columns rotated above), axis titles, values in the cells when they fit, a colour
//! legend, and the hovered cell reported back.

use egui::epaint::TextShape;
use egui::text::{LayoutJob, TextWrapping};
use egui::{Align2, Color32, FontId, Galley, Id, Pos2, Rect, Sense, Stroke, Vec2, WidgetInfo};
use std::sync::Arc;

/// Title of the row axis (rows are predictions).
pub const PREDICTED: &str = "predicted class";
/// Title of the column axis (columns are ground truth).
pub const TRUE: &str = "true class";
/// Legend label of the colour of an improvement in a difference matrix.
pub const BETTER: &str = "better";
/// Legend label of the colour of a degradation in a difference matrix.
pub const WORSE: &str = "worse";

/// Longest class-name label in points: longer names are elided with "…" (and shown whole on
/// hover) so that one long name cannot push the matrix off the screen.
const MAX_LABEL: f32 = 150.0;
const PAD: f32 = 4.0;
const LABEL_SIZE: f32 = 11.0;
const AXIS_SIZE: f32 = 12.0;
const TITLE_SIZE: f32 = 13.0;
/// Smaller cells cannot hold a number readably.
const NUMBERS_FROM: f32 = 22.0;
const LEGEND_BAR: Vec2 = Vec2::new(64.0, 10.0);
/// Room the legend needs even when the matrix is small.
const LEGEND_WIDTH: f32 = 250.0;

const NEUTRAL: Color32 = Color32::from_rgb(247, 247, 247);
/// Okabe–Ito blue and vermillion: distinguishable with the common colour-vision deficiencies.
const BETTER_COLOR: Color32 = Color32::from_rgb(0, 114, 178);
const WORSE_COLOR: Color32 = Color32::from_rgb(213, 94, 0);
const COUNT_LOW: Color32 = Color32::from_rgb(240, 244, 250);
const COUNT_HIGH: Color32 = Color32::from_rgb(20, 70, 160);

/// How the values are coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Non-negative counts, light to dark by the square root of value / max (so that the few
    /// large diagonal counts do not wash out the confusions).
    Counts,
    /// The difference of two confusion matrices, coloured by [`goodness`]: better or worse,
    /// whatever the sign.
    Difference,
}

/// A square matrix with named rows and columns.
pub struct Heatmap<'a> {
    /// Distinguishes the matrices in one view (part of the widget ids).
    pub id: &'a str,
    /// Shown above the matrix; also the accessible name of the figure.
    pub title: &'a str,
    /// Row-major values, `names.len()` squared; rows are predicted, columns true.
    pub values: &'a [f64],
    pub names: &'a [String],
    pub scale: Scale,
}

/// Whether a change of `delta` in cell (`row`, `col`) of a confusion matrix is an improvement
/// (> 0) or a degradation (< 0). On the diagonal (correct detections) more is better; every
/// other cell counts errors (confusions, missed objects in the background row, false
/// detections in the background column), so there more is worse.
pub fn goodness(row: usize, col: usize, delta: f64) -> f64 {
    if row == col {
        delta
    } else {
        -delta
    }
}

fn lerp(a: Color32, b: Color32, t: f64) -> Color32 {
    let t = t.clamp(0.0, 1.0) as f32;
    let l = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * t).round() as u8;
    Color32::from_rgb(l(a.r(), b.r()), l(a.g(), b.g()), l(a.b(), b.b()))
}

/// Colour of a count at `t` = sqrt(value / max) in [0, 1].
fn count_color(t: f64) -> Color32 {
    lerp(COUNT_LOW, COUNT_HIGH, t)
}

/// Colour of a goodness `g` / max in [-1, 1].
fn goodness_color(g: f64) -> Color32 {
    if g >= 0.0 {
        lerp(NEUTRAL, BETTER_COLOR, g)
    } else {
        lerp(NEUTRAL, WORSE_COLOR, -g)
    }
}

/// How strongly cell (`row`, `col`) holding `value` is coloured, in [0, 1] (`max` > 0: the
/// largest magnitude in the matrix).
fn intensity(scale: Scale, value: f64, max: f64) -> f64 {
    match scale {
        Scale::Counts => (value / max).max(0.0).sqrt(),
        Scale::Difference => (value.abs() / max).min(1.0),
    }
}

/// Colour of cell (`row`, `col`) holding `value`; `max` > 0 is the largest magnitude in the
/// matrix.
pub fn cell_color(scale: Scale, row: usize, col: usize, value: f64, max: f64) -> Color32 {
    match scale {
        Scale::Counts => count_color(intensity(scale, value, max)),
        Scale::Difference => goodness_color(goodness(row, col, value) / max),
    }
}

fn value_text(scale: Scale, x: f64) -> String {
    match scale {
        Scale::Counts => format!("{x}"),
        Scale::Difference => format!("{x:+}"),
    }
}

/// "better" / "worse" / "same" for a difference in cell (`row`, `col`).
pub fn verdict(row: usize, col: usize, delta: f64) -> &'static str {
    let g = goodness(row, col, delta);
    if g > 0.0 {
        BETTER
    } else if g < 0.0 {
        WORSE
    } else {
        "same"
    }
}

/// The class-name galleys and the margins around the grid they need.
struct Layout {
    galleys: Vec<Arc<Galley>>,
    /// Width of the row-label column and height of the column-label band.
    label: f32,
    axis_h: f32,
    title_h: f32,
    left: f32,
    top: f32,
    bottom: f32,
}

impl Layout {
    fn measure(ui: &egui::Ui, names: &[String]) -> Self {
        let painter = ui.painter();
        let galleys: Vec<Arc<Galley>> = names
            .iter()
            .map(|name| {
                let mut job =
                    LayoutJob::simple_singleline(name.clone(), FontId::proportional(LABEL_SIZE), Color32::PLACEHOLDER);
                job.wrap = TextWrapping::truncate_at_width(MAX_LABEL);
                painter.layout_job(job)
            })
            .collect();
        let label = galleys.iter().fold(12.0f32, |m, g| m.max(g.size().x)).ceil();
        let axis_h = ui.fonts_mut(|f| f.row_height(&FontId::proportional(AXIS_SIZE))).ceil();
        let title_h = ui.fonts_mut(|f| f.row_height(&FontId::proportional(TITLE_SIZE))).ceil();
        let label_h = ui.fonts_mut(|f| f.row_height(&FontId::proportional(LABEL_SIZE))).ceil();
        Layout {
            galleys,
            label,
            axis_h,
            title_h,
            left: axis_h + PAD + label + PAD,
            top: title_h + PAD + axis_h + PAD + label + PAD,
            bottom: PAD + label_h.max(LEGEND_BAR.y) + PAD,
        }
    }

    fn size(&self, n: usize, cell: f32) -> Vec2 {
        let grid = n as f32 * cell;
        Vec2::new((self.left + grid + PAD).max(self.axis_h + PAD + LEGEND_WIDTH), self.top + grid + self.bottom)
    }
}

/// Registers `rect` as a hoverable label named `name` (what screen readers and tests find)
/// that shows `hover` in a tooltip.
fn label_region(ui: &egui::Ui, rect: Rect, id: Id, name: &str, hover: &str) {
    let response = ui.interact(rect, id, Sense::hover());
    response.widget_info(|| WidgetInfo::labeled(egui::Role::Label, true, name));
    response.on_hover_text(hover);
}

impl Heatmap<'_> {
    /// Width and height of everything but the grid (labels, titles, legend) for `names`, so
    /// that a view can choose the cell size from the room it has.
    pub fn chrome(ui: &egui::Ui, names: &[String]) -> Vec2 {
        let l = Layout::measure(ui, names);
        Vec2::new(l.left + PAD, l.top + l.bottom)
    }

    /// Draws the matrix with square cells of side `cell`; returns the hovered (row, column).
    pub fn show(self, ui: &mut egui::Ui, cell: f32) -> Option<(usize, usize)> {
        let n = self.names.len();
        let layout = Layout::measure(ui, self.names);
        let (rect, response) = ui.allocate_exact_size(layout.size(n, cell), Sense::hover());
        response.widget_info(|| WidgetInfo::labeled(egui::Role::Figure, true, self.title));
        if n == 0 || self.values.len() != n * n {
            return None;
        }
        let base = ui.make_persistent_id(("heatmap", self.id));
        let origin = rect.min + Vec2::new(layout.left, layout.top);
        let grid = Rect::from_min_size(origin, Vec2::splat(n as f32 * cell));
        let label = layout.label;

        // Hover regions come first so that screen readers and tests find every full name even
        // while the matrix is scrolled out of view.
        for (i, name) in self.names.iter().enumerate() {
            let row = Rect::from_min_max(
                Pos2::new(origin.x - PAD - label, origin.y + i as f32 * cell),
                Pos2::new(origin.x, origin.y + (i + 1) as f32 * cell),
            );
            label_region(ui, row, base.with(("row", i)), name, name);
            let col = Rect::from_min_max(
                Pos2::new(origin.x + i as f32 * cell, origin.y - PAD - label),
                Pos2::new(origin.x + (i + 1) as f32 * cell, origin.y),
            );
            label_region(ui, col, base.with(("col", i)), name, name);
        }
        let v = ui.visuals().clone();
        let painter = ui.painter_at(rect);
        let axis_font = FontId::proportional(AXIS_SIZE);
        let true_galley = painter.layout_no_wrap(TRUE.into(), axis_font.clone(), v.strong_text_color());
        let true_rect = Align2::CENTER_TOP
            .anchor_size(Pos2::new(grid.center().x, rect.top() + layout.title_h + PAD), true_galley.size());
        label_region(
            ui,
            true_rect,
            base.with("true axis"),
            TRUE,
            "columns: the ground-truth class of an object (background: a false detection)",
        );
        let predicted_galley = painter.layout_no_wrap(PREDICTED.into(), axis_font, v.strong_text_color());
        let predicted_rect = Rect::from_center_size(
            Pos2::new(rect.left() + layout.axis_h / 2.0, grid.center().y),
            Vec2::new(predicted_galley.size().y, predicted_galley.size().x),
        );
        label_region(
            ui,
            predicted_rect,
            base.with("predicted axis"),
            PREDICTED,
            "rows: the class the model predicted (background: an object it missed)",
        );

        let max = self.values.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-9);
        let legend = Rect::from_min_size(
            Pos2::new(rect.left() + layout.axis_h + PAD, grid.bottom() + PAD),
            Vec2::new(rect.right() - rect.left() - layout.axis_h - PAD, rect.bottom() - grid.bottom() - PAD),
        );
        self.legend(ui, &painter, legend, base, max);

        let cells = ui.interact(grid, base.with("cells"), Sense::hover());
        let hovered = cells.hover_pos().filter(|p| grid.contains(*p)).map(|p| {
            let at = |x: f32| ((x / cell) as usize).min(n - 1);
            (at(p.y - origin.y), at(p.x - origin.x))
        });
        if let Some((r, c)) = hovered {
            let x = self.values[r * n + c];
            let mut text =
                format!("predicted {}, true {}: {}", self.names[r], self.names[c], value_text(self.scale, x));
            if self.scale == Scale::Difference {
                text += &format!(" ({})", verdict(r, c, x));
            }
            cells.on_hover_text_at_pointer(text);
        }

        if !ui.is_rect_visible(rect) {
            return hovered;
        }
        painter.text(
            Pos2::new(grid.center().x, rect.top()),
            Align2::CENTER_TOP,
            self.title,
            FontId::proportional(TITLE_SIZE),
            v.strong_text_color(),
        );
        painter.galley(true_rect.min, true_galley, v.strong_text_color());
        // Rotated a quarter turn anticlockwise about its top-left corner, the text reads
        // upwards from there and its height extends to the right.
        painter.add(
            TextShape::new(predicted_rect.left_bottom(), predicted_galley, v.strong_text_color())
                .with_angle(-std::f32::consts::FRAC_PI_2),
        );
        let font = FontId::proportional(LABEL_SIZE);
        for r in 0..n {
            for c in 0..n {
                let at = Rect::from_min_size(origin + Vec2::new(c as f32 * cell, r as f32 * cell), Vec2::splat(cell));
                let x = self.values[r * n + c];
                painter.rect_filled(at.shrink(0.5), 0.0, cell_color(self.scale, r, c, x, max));
                if cell >= NUMBERS_FROM && x != 0.0 {
                    let dark = intensity(self.scale, x, max) > 0.6;
                    painter.text(
                        at.center(),
                        Align2::CENTER_CENTER,
                        value_text(self.scale, x),
                        font.clone(),
                        if dark { Color32::WHITE } else { Color32::BLACK },
                    );
                }
                if hovered == Some((r, c)) {
                    painter.rect_stroke(at, 0.0, Stroke::new(2.0, Color32::YELLOW), egui::StrokeKind::Inside);
                }
            }
        }
        for (i, g) in layout.galleys.iter().enumerate() {
            let centre = (i as f32 + 0.5) * cell;
            let size = g.size();
            // The hovered cell's row and column names stand out.
            let emphasis = |on: bool| if on { v.strong_text_color() } else { v.text_color() };
            let row_color = emphasis(hovered.is_some_and(|(r, _)| r == i));
            let col_color = emphasis(hovered.is_some_and(|(_, c)| c == i));
            painter.galley(Pos2::new(origin.x - PAD - size.x, origin.y + centre - size.y / 2.0), g.clone(), row_color);
            painter.add(
                TextShape::new(Pos2::new(origin.x + centre - size.y / 2.0, origin.y - PAD), g.clone(), col_color)
                    .with_angle(-std::f32::consts::FRAC_PI_2),
            );
        }
        hovered
    }

    /// The colour scale under the matrix: 0 … max for counts, worse … better for a difference.
    fn legend(&self, ui: &egui::Ui, painter: &egui::Painter, rect: Rect, base: Id, max: f64) {
        let v = ui.visuals();
        let font = FontId::proportional(LABEL_SIZE);
        let y = rect.top()
            + LEGEND_BAR.y.max(painter.layout_no_wrap("0".into(), font.clone(), v.text_color()).size().y) / 2.0;
        let visible = ui.is_rect_visible(rect);
        // Paints `text` starting at `x`; returns its rect.
        let text = |x: f32, s: &str, color: Color32| -> Rect {
            let g = painter.layout_no_wrap(s.to_owned(), font.clone(), color);
            let r = Align2::LEFT_CENTER.anchor_size(Pos2::new(x, y), g.size());
            if visible {
                painter.galley(r.min, g, color);
            }
            r
        };
        let bar = |x: f32, from: Color32, to: Color32, curve: fn(f64) -> f64| -> f32 {
            const STEPS: usize = 16;
            let w = LEGEND_BAR.x / STEPS as f32;
            if visible {
                for s in 0..STEPS {
                    let t = curve((s as f64 + 0.5) / STEPS as f64);
                    let r = Rect::from_min_size(
                        Pos2::new(x + s as f32 * w, y - LEGEND_BAR.y / 2.0),
                        Vec2::new(w + 0.5, LEGEND_BAR.y),
                    );
                    painter.rect_filled(r, 0.0, lerp(from, to, t));
                }
            }
            x + LEGEND_BAR.x
        };
        let max_text = if max < 1e-6 { "0".to_string() } else { format!("{max}") };
        match self.scale {
            Scale::Counts => {
                let zero = text(rect.left(), "0", v.text_color());
                let x = bar(zero.right() + PAD, COUNT_LOW, COUNT_HIGH, f64::sqrt);
                let top = text(x + PAD, &max_text, v.text_color());
                let scale = zero.union(top);
                label_region(
                    ui,
                    scale,
                    base.with("legend"),
                    &format!("count scale 0 … {max_text}"),
                    "objects per cell",
                );
            }
            Scale::Difference => {
                let worse = text(rect.left(), WORSE, v.text_color());
                let x = bar(worse.right() + PAD, WORSE_COLOR, NEUTRAL, |t| t);
                let x = bar(x, NEUTRAL, BETTER_COLOR, |t| t);
                let better = text(x + PAD, BETTER, v.text_color());
                text(better.right() + 2.0 * PAD, &format!("|change| up to {max_text}"), v.weak_text_color());
                let rule = "on the diagonal more correct detections are better; elsewhere (confusions, \
                            false detections, missed objects) more is worse";
                label_region(ui, worse, base.with("worse"), WORSE, rule);
                label_region(ui, better, base.with("better"), BETTER, rule);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_is_coloured_better_or_worse_not_by_sign() {
        let max = 4.0;
        let diagonal_loss = cell_color(Scale::Difference, 2, 2, -3.0, max);
        let confusion_gain = cell_color(Scale::Difference, 2, 5, 3.0, max);
        let background_gain = cell_color(Scale::Difference, 20, 3, 3.0, max);
        let missed_gain = cell_color(Scale::Difference, 3, 20, 3.0, max);
        assert_eq!(diagonal_loss, confusion_gain);
        assert_eq!(diagonal_loss, background_gain);
        assert_eq!(diagonal_loss, missed_gain);
        let diagonal_gain = cell_color(Scale::Difference, 2, 2, 3.0, max);
        let confusion_loss = cell_color(Scale::Difference, 2, 5, -3.0, max);
        assert_eq!(diagonal_gain, confusion_loss);
        // Worse is orange-red, better blue; no change is near-white.
        assert!(diagonal_loss.r() > diagonal_loss.b());
        assert!(diagonal_gain.b() > diagonal_gain.r());
        assert_eq!(cell_color(Scale::Difference, 1, 1, 0.0, max), NEUTRAL);
        assert_eq!(cell_color(Scale::Difference, 1, 2, 0.0, max), NEUTRAL);
        // Stronger for a larger change.
        let small = cell_color(Scale::Difference, 2, 2, -1.0, max);
        assert!(small.b() > diagonal_loss.b());
        assert_eq!(verdict(2, 2, -1.0), WORSE);
        assert_eq!(verdict(2, 5, -1.0), BETTER);
    }
}
