//! A labelled matrix heatmap (confusion matrices): class names on both axes, counts in the
//! cells, the hovered cell reported back.

use egui::{Color32, Pos2, Rect, Sense, Stroke, Vec2};

pub struct Heatmap<'a> {
    pub id: &'a str,
    pub title: &'a str,
    /// Row-major values, `names.len()` squared; rows are predicted, columns true.
    pub values: &'a [f64],
    pub names: &'a [String],
    /// Signed values (a difference) use a blue–white–red scale.
    pub diverging: bool,
}

/// Colour of `t` in [0, 1] (or [-1, 1] when diverging).
fn color(t: f64, diverging: bool) -> Color32 {
    let lerp = |a: u8, b: u8, t: f64| (a as f64 + (b as f64 - a as f64) * t.clamp(0.0, 1.0)) as u8;
    if diverging {
        if t >= 0.0 {
            Color32::from_rgb(lerp(245, 200, t), lerp(245, 40, t), lerp(245, 40, t))
        } else {
            Color32::from_rgb(lerp(245, 40, -t), lerp(245, 90, -t), lerp(245, 200, -t))
        }
    } else {
        Color32::from_rgb(lerp(240, 20, t), lerp(244, 70, t), lerp(250, 160, t))
    }
}

impl Heatmap<'_> {
    /// Draws the matrix in `size`; returns the hovered (row, column).
    pub fn show(self, ui: &mut egui::Ui, size: Vec2) -> Option<(usize, usize)> {
        let n = self.names.len();
        let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Figure, true, self.title));
        if n == 0 || self.values.len() != n * n || !ui.is_rect_visible(rect) {
            return None;
        }
        let v = ui.visuals();
        let painter = ui.painter_at(rect);
        let font = egui::FontId::proportional(11.0);
        painter.text(
            rect.center_top(),
            egui::Align2::CENTER_TOP,
            self.title,
            egui::FontId::proportional(13.0),
            v.strong_text_color(),
        );
        let label_w = 72.0;
        let top = 36.0;
        let side = ((rect.width() - label_w - 8.0).min(rect.height() - top - 18.0) / n as f32).max(4.0);
        let origin = Pos2::new(rect.left() + label_w, rect.top() + top);
        let max = self.values.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-9);
        let mut hovered = None;
        let pointer = response.hover_pos();
        for r in 0..n {
            for c in 0..n {
                let cell = Rect::from_min_size(origin + Vec2::new(c as f32 * side, r as f32 * side), Vec2::splat(side));
                let x = self.values[r * n + c];
                let t = if self.diverging { x / max } else { (x / max).sqrt() };
                painter.rect_filled(cell.shrink(0.5), 0.0, color(t, self.diverging));
                if side >= 22.0 && x != 0.0 {
                    let dark = !self.diverging && t > 0.55 || self.diverging && t.abs() > 0.6;
                    let text = if self.diverging { format!("{x:+}") } else { format!("{x}") };
                    painter.text(
                        cell.center(),
                        egui::Align2::CENTER_CENTER,
                        text,
                        font.clone(),
                        if dark { Color32::WHITE } else { Color32::BLACK },
                    );
                }
                if pointer.is_some_and(|p| cell.contains(p)) {
                    hovered = Some((r, c));
                    painter.rect_stroke(cell, 0.0, Stroke::new(2.0, Color32::YELLOW), egui::StrokeKind::Inside);
                }
            }
        }
        for (i, name) in self.names.iter().enumerate() {
            let short: String = name.chars().take(10).collect();
            painter.text(
                Pos2::new(origin.x - 4.0, origin.y + (i as f32 + 0.5) * side),
                egui::Align2::RIGHT_CENTER,
                &short,
                font.clone(),
                v.text_color(),
            );
            let p = Pos2::new(origin.x + (i as f32 + 0.5) * side, origin.y - 3.0);
            painter.text(
                p,
                egui::Align2::CENTER_BOTTOM,
                short.chars().take(5).collect::<String>(),
                font.clone(),
                v.text_color(),
            );
        }
        painter.text(
            Pos2::new(origin.x, origin.y + n as f32 * side + 3.0),
            egui::Align2::LEFT_TOP,
            "rows: predicted · columns: true",
            egui::FontId::proportional(10.0),
            v.weak_text_color(),
        );
        if let Some((r, c)) = hovered {
            let x = self.values[r * n + c];
            response.on_hover_text_at_pointer(format!(
                "predicted {}, true {}: {}",
                self.names[r],
                self.names[c],
                if self.diverging { format!("{x:+}") } else { format!("{x}") }
            ));
        }
        hovered
    }
}
