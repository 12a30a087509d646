//! One small multiple of the sensitivity grid: a layer's metric against sparsity, its
//! baseline and its threshold, cheap enough to draw seventy-five of per frame.

use egui::{Color32, Pos2, Rect, Sense, Stroke, Vec2};

/// What one cell shows.
pub struct SmallPlot<'a> {
    /// The layer's full name (the cell's accessible label).
    pub name: &'a str,
    /// What the cell shows of it (shortened to fit).
    pub title: &'a str,
    pub subtitle: String,
    /// (sparsity, metric), sorted by sparsity, the baseline at 0 first.
    pub points: &'a [(f64, f64)],
    pub baseline: f64,
    pub threshold: f64,
    pub selected: bool,
    pub frozen: bool,
    /// Shared axis ranges, so cells compare at a glance.
    pub x_max: f64,
    pub y_range: (f64, f64),
}

pub const THRESHOLD: Color32 = Color32::from_rgb(230, 126, 34);
pub const CURVE: Color32 = Color32::from_rgb(52, 152, 219);

impl SmallPlot<'_> {
    pub fn show(self, ui: &mut egui::Ui, size: Vec2) -> egui::Response {
        let (rect, response) = ui.allocate_exact_size(size, Sense::click());
        let label = format!("sensitivity plot {}", self.name);
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Figure, true, &label));
        if !ui.is_rect_visible(rect) {
            return response;
        }
        let v = ui.visuals();
        let painter = ui.painter_at(rect);
        let bg = if self.selected { v.selection.bg_fill.gamma_multiply(0.35) } else { v.extreme_bg_color };
        painter.rect_filled(rect, 4.0, bg);
        let border = if self.selected {
            Stroke::new(2.0, v.selection.stroke.color)
        } else if response.hovered() {
            Stroke::new(1.0, v.widgets.hovered.fg_stroke.color)
        } else {
            Stroke::new(1.0, v.widgets.noninteractive.bg_stroke.color)
        };
        painter.rect_stroke(rect, 4.0, border, egui::StrokeKind::Inside);
        let font = egui::FontId::proportional(12.0);
        painter.text(
            rect.left_top() + Vec2::new(6.0, 3.0),
            egui::Align2::LEFT_TOP,
            self.title,
            font.clone(),
            v.strong_text_color(),
        );
        painter.text(
            rect.right_top() + Vec2::new(-6.0, 3.0),
            egui::Align2::RIGHT_TOP,
            &self.subtitle,
            egui::FontId::proportional(11.0),
            v.weak_text_color(),
        );
        let plot =
            Rect::from_min_max(rect.left_top() + Vec2::new(8.0, 20.0), rect.right_bottom() - Vec2::new(8.0, 8.0));
        let (y0, y1) = self.y_range;
        let span = (y1 - y0).max(1e-9);
        let to_screen = |x: f64, y: f64| -> Pos2 {
            Pos2::new(
                plot.left() + (x / self.x_max.max(1e-9)) as f32 * plot.width(),
                plot.bottom() - ((y - y0) / span) as f32 * plot.height(),
            )
        };
        // Baseline, dashed.
        let by = to_screen(0.0, self.baseline).y;
        painter.extend(egui::Shape::dashed_line(
            &[Pos2::new(plot.left(), by), Pos2::new(plot.right(), by)],
            Stroke::new(1.0, v.weak_text_color()),
            4.0,
            3.0,
        ));
        let pts: Vec<Pos2> = self.points.iter().map(|&(x, y)| to_screen(x, y)).collect();
        painter.add(egui::Shape::line(pts.clone(), Stroke::new(1.5, CURVE)));
        for p in &pts {
            painter.circle_filled(*p, 2.0, CURVE);
        }
        let tx = to_screen(self.threshold, y0).x;
        painter.line_segment([Pos2::new(tx, plot.top()), Pos2::new(tx, plot.bottom())], Stroke::new(1.5, THRESHOLD));
        let tag = if self.frozen { "frozen".to_string() } else { format!("{:.0}%", self.threshold * 100.0) };
        painter.text(
            Pos2::new((tx + 3.0).min(plot.right() - 30.0), plot.bottom() - 2.0),
            egui::Align2::LEFT_BOTTOM,
            tag,
            egui::FontId::proportional(11.0),
            THRESHOLD,
        );
        response
    }
}
