//! The sensitivity view: small multiples of every analysed layer, a large plot of the
//! selected one whose threshold is dragged, and the inspection of its weights.

use super::super::app::{App, YAxis};
use super::super::widgets::small_plot::{SmallPlot, CURVE, THRESHOLD};
use crate::gui::app::Action;
use egui::{RichText, Vec2};
use egui_plot::{Bar, BarChart, HLine, Line, LineStyle, Plot, PlotPoints, Points, VLine};

const CELL: Vec2 = Vec2::new(190.0, 118.0);

pub fn show(app: &mut App, ui: &mut egui::Ui) {
    let Some(p) = &app.project else {
        ui.centered_and_justified(|ui| ui.label("Open a project: File ▸ Open folder, or drop one here."));
        return;
    };
    if p.curves.is_none() {
        ui.vertical_centered(|ui| {
            ui.add_space(40.0);
            ui.heading("No sensitivity run yet");
            ui.label("Start one in the Analysis tab (points appear here as they finish), or open a run folder.");
        });
        return;
    }
    egui::Panel::right("detail").resizable(true).default_size(ui.available_width() * 0.5).show(ui, |ui| {
        // Sized from the visible height, scrolled when the window is smaller than the content.
        let visible = ui.available_height();
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| detail(app, ui, visible));
    });
    egui::CentralPanel::default().show(ui, |ui| grid_only(app, ui));
}

/// The grid of small multiples (only the visible rows are drawn).
pub fn grid_only(app: &mut App, ui: &mut egui::Ui) {
    let reveal = std::mem::take(&mut app.reveal_selected);
    let (offset, visible) = app.grid_view;
    let selected = app.selected;
    let Some(p) = &app.project else { return };
    let Some(curves) = &p.curves else { return };
    let spacing = 6.0;
    let cols = (((ui.available_width() + spacing) / (CELL.x + spacing)).floor() as usize).max(1);
    let n = curves.layers.len();
    let rows = n.div_ceil(cols);
    let x_max = curves.layers.iter().map(|l| l.max_sparsity()).fold(0.0f64, f64::max).max(0.1) * 1.05;
    let y_range = shared_y_range(curves);
    let mut clicked = None;
    let images = p.run.as_ref().map(|r| format!(" on {} images", r.header.dataset.images)).unwrap_or_default();
    ui.label(
        RichText::new(format!(
            "{} of {} layers analysed · {} vs sparsity, one scale for all · dashed: baseline {:.4}{images} · \
             orange: threshold",
            n,
            p.layers.len(),
            curves.metric.label(),
            curves.baseline
        ))
        .weak(),
    );
    ui.spacing_mut().item_spacing = Vec2::splat(spacing);
    let mut area = egui::ScrollArea::vertical().auto_shrink([false, false]);
    if reveal {
        // A selection made by keys or elsewhere scrolls into view (only as far as needed).
        let row_h = CELL.y + spacing;
        let top = (selected / cols) as f32 * row_h;
        if top < offset {
            area = area.vertical_scroll_offset(top);
        } else if top + row_h > offset + visible {
            area = area.vertical_scroll_offset(top + row_h - visible);
        }
    }
    let shown = area.show_rows(ui, CELL.y, rows, |ui, range| {
        for r in range {
            ui.horizontal(|ui| {
                for c in 0..cols {
                    let i = r * cols + c;
                    let Some(l) = curves.layers.get(i) else { break };
                    let pct = p.row(l.block).map(|x| x.macs_percent).unwrap_or(0.0);
                    let title = super::short_layer(&l.layer, 20);
                    let resp = SmallPlot {
                        name: &l.layer,
                        title: &title,
                        subtitle: format!("{pct:.1}% MACs"),
                        points: &l.points,
                        baseline: curves.baseline,
                        threshold: p.sparsity(l.block),
                        selected: i == app.selected,
                        frozen: p.is_frozen(l.block),
                        x_max,
                        y_range,
                    }
                    .show(ui, CELL);
                    let drop = p
                        .predicted_drop(l.block)
                        .map(|d| super::fixed(d, 4))
                        .unwrap_or("past the measured range".into());
                    let resp = resp.on_hover_text(format!(
                        "{}: threshold {:.0} %, estimated drop {drop} (this layer alone)\nclick to select",
                        l.layer,
                        p.sparsity(l.block) * 100.0
                    ));
                    if resp.clicked() {
                        clicked = Some(i);
                    }
                }
            });
        }
    });
    app.grid_view = (shown.state.clamped_offset().y, shown.inner_rect.height());
    app.grid_columns = cols;
    if let Some(i) = clicked {
        app.act(Action::Select(i));
    }
}

/// The y range of every analysed layer's points and the baseline, padded.
fn shared_y_range(curves: &crate::plan::Curves) -> (f64, f64) {
    let (mut lo, mut hi) = (curves.baseline, curves.baseline);
    for l in &curves.layers {
        for &(_, y) in &l.points {
            lo = lo.min(y);
            hi = hi.max(y);
        }
    }
    let pad = (hi - lo).max(1e-3) * 0.08;
    (lo - pad, hi + pad)
}

/// The y range of the large plot for `mode`.
fn y_range(mode: YAxis, curves: &crate::plan::Curves, points: &[(f64, f64)]) -> (f64, f64) {
    let baseline = curves.baseline;
    match mode {
        YAxis::Shared => shared_y_range(curves),
        YAxis::Fit => {
            let lo = points.iter().map(|p| p.1).fold(baseline, f64::min);
            let hi = points.iter().map(|p| p.1).fold(baseline, f64::max);
            // At least 0.02 of the metric: a flat layer's noise stays flat.
            let span = (hi - lo).max(0.02);
            let mid = (hi + lo) / 2.0;
            (mid - span * 0.55, mid + span * 0.55)
        }
        YAxis::Zero => (0.0, points.iter().map(|p| p.1).fold(baseline, f64::max) * 1.05),
    }
}

fn detail(app: &mut App, ui: &mut egui::Ui, visible: f32) {
    let Some(p) = &app.project else { return };
    let Some(curves) = &p.curves else { return };
    let Some(curve) = curves.layers.get(app.selected) else { return };
    let block = curve.block;
    let s = p.sparsity(block);
    let frozen = p.is_frozen(block);
    let row = p.row(block);
    ui.horizontal(|ui| {
        ui.heading(&curve.layer);
        if let Some(r) = row {
            ui.label(format!(
                "{:?} · {} params · {} ({:.1}% of the model)",
                r.shape,
                super::count(r.params),
                super::macs(r.macs),
                r.macs_percent
            ));
        }
    });
    ui.horizontal(|ui| {
        let drop = p.predicted_drop(block);
        ui.label(RichText::new(format!("threshold {:.0} %", s * 100.0)).color(THRESHOLD).strong());
        match drop {
            Some(d) => ui
                .label(format!(
                    "estimated drop {} → {} {:.4} (this layer alone)",
                    super::fixed(d, 4),
                    curves.metric.label(),
                    curves.baseline - d
                ))
                .on_hover_text("read from the layer's measured curve, interpolated between measured points"),
            None => ui.label(RichText::new("past the measured range: no prediction").color(ui.visuals().warn_fg_color)),
        };
        if frozen {
            ui.label(RichText::new("frozen (F to unfreeze)").color(ui.visuals().warn_fg_color));
        }
    });
    let pts: Vec<[f64; 2]> = curve.points.iter().map(|&(x, y)| [x * 100.0, y]).collect();
    let measured: Vec<f64> = curve.points.iter().map(|x| x.0).collect();
    let baseline = curves.baseline;
    let metric = curves.metric.label();
    // The per-layer budget of the Suggest form, as the line a threshold should stay above.
    let budget_line = (!app.suggest.global).then(|| match app.suggest.rule() {
        crate::plan::Rule::PerLayer(b) => baseline - b.allowed(baseline),
        crate::plan::Rule::Global { .. } => baseline,
    });
    let height = (visible * 0.5).max(180.0);
    let mut mode = app.table.y_axis;
    let budget_color = egui::Color32::from_rgb(231, 76, 60);
    // The legend above the plot, where it covers no data.
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!("━● {metric} measured")).color(CURVE));
        ui.label(RichText::new(format!("┅ baseline {baseline:.4}")).color(egui::Color32::GRAY));
        if let Some(y) = budget_line {
            ui.label(RichText::new(format!("┈ per-layer budget {y:.4}")).color(budget_color));
        }
        ui.label(RichText::new("┃ threshold").color(THRESHOLD));
        ui.separator();
        ui.label("y axis");
        for m in YAxis::ALL {
            ui.selectable_value(&mut mode, m, m.label());
        }
    });
    if mode != app.table.y_axis {
        app.table.y_axis = mode;
    }
    let (y_lo, y_hi) = y_range(mode, curves, &curve.points);
    let resp = Plot::new(("detail-plot", block))
        .height(height)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .include_x(0.0)
        .include_x(100.0)
        .include_y(y_lo)
        .include_y(y_hi)
        .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [5.0, 10.0, 50.0]))
        // Labels every 10 % where they fit (egui_plot's default wants 60 px between them).
        .custom_x_axes(vec![egui_plot::AxisHints::new_x()
            .label("sparsity")
            .formatter(|m, _| format!("{:.0} %", m.value))
            .label_spacing(28.0..=40.0)])
        .y_axis_label(metric)
        .show(ui, |pu| {
            pu.hline(HLine::new("baseline", baseline).style(LineStyle::dashed_loose()).color(egui::Color32::GRAY));
            if let Some(y) = budget_line {
                pu.hline(HLine::new("per-layer budget", y).style(LineStyle::dotted_dense()).color(budget_color));
            }
            pu.line(Line::new(metric, PlotPoints::from(pts.clone())).color(CURVE).width(2.0));
            pu.points(Points::new(metric, PlotPoints::from(pts)).color(CURVE).radius(4.0));
            pu.vline(VLine::new("threshold", s * 100.0).color(THRESHOLD).width(2.5));
        });
    let r = &resp.response;
    let pressed = r.is_pointer_button_down_on();
    if pressed && !frozen {
        if app.drag_before.is_none() {
            app.drag_before = app.project.as_ref().map(|p| p.snapshot());
        }
        if let Some(pos) = r.interact_pointer_pos() {
            let x = resp.transform.value_from_position(pos).x / 100.0;
            let snap = ui.input(|i| i.modifiers.shift);
            let target = if snap {
                measured.iter().copied().min_by(|a, b| (a - x).abs().total_cmp(&(b - x).abs())).unwrap_or(x)
            } else {
                (x * 100.0).round() / 100.0
            };
            if let Some(p) = &mut app.project {
                p.set_sparsity(block, target);
            }
        }
    } else if let Some(before) = app.drag_before.take() {
        if let Some(p) = &mut app.project {
            p.commit(before);
        }
    }
    resp.response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Slider, true, "threshold plot"));
    ui.label(RichText::new("drag to set the threshold (Shift snaps to measured points) · +/− keys · F freezes").weak());
    ui.separator();
    inspection(app, ui, block, s, visible);
}

fn inspection(app: &mut App, ui: &mut egui::Ui, block: usize, s: f64, visible: f32) {
    let Some(p) = &app.project else { return };
    let method = p.plan.method;
    ui.horizontal(|ui| {
        ui.strong("Weights of this layer");
        ui.label(RichText::new(format!("({} pruning)", method.name())).weak());
    });
    let Some(stats) = app.stats.as_ref().filter(|st| st.block == block) else {
        ui.spinner();
        return;
    };
    let c = stats.cut(method, s);
    let filters = stats.filters();
    let l2 = method == crate::prune::Method::L2Filter;
    let mut sorted_norms = if l2 { stats.filter_l2.clone() } else { stats.filter_l1.clone() };
    sorted_norms.sort_by(|a, b| a.total_cmp(b));
    if method.is_structured() {
        ui.label(format!(
            "{:.0} % removes {} of {filters} filters (norm ≤ {:.4}), {} of {} weights",
            s * 100.0,
            c.filters,
            c.threshold,
            super::count(c.weights as u64),
            super::count(stats.weights as u64)
        ));
    } else {
        ui.label(format!(
            "{:.0} % removes {} of {} weights (|w| ≤ {:.5})",
            s * 100.0,
            super::count(c.weights as u64),
            super::count(stats.weights as u64),
            c.threshold
        ));
    }
    let cut = if method.is_structured() { 0.0 } else { c.threshold };
    let h = (visible * 0.28).max(110.0);
    ui.columns(2, |cols| {
        let bars: Vec<Bar> = stats
            .histogram
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let x = (i as f64 + 0.5) * stats.bin_width;
                let removed = !method.is_structured() && x <= cut;
                Bar::new(x, c as f64).width(stats.bin_width).fill(if removed { THRESHOLD } else { CURVE })
            })
            .collect();
        Plot::new(("hist", block))
            .height(h)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .x_axis_label("|w|")
            .y_axis_label("weights")
            .show(&mut cols[0], |pu| {
                pu.bar_chart(BarChart::new("|w| histogram", bars));
                if !method.is_structured() && cut > 0.0 {
                    pu.vline(VLine::new("cut", cut).color(THRESHOLD));
                }
            });
        let fb: Vec<Bar> = sorted_norms
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let removed = method.is_structured() && i < c.filters;
                Bar::new(i as f64, v).width(0.9).fill(if removed { THRESHOLD } else { CURVE })
            })
            .collect();
        Plot::new(("norms", block))
            .height(h)
            .allow_drag(false)
            .allow_zoom(false)
            .allow_scroll(false)
            .x_axis_label("filter (sorted)")
            .y_axis_label(if l2 { "L2 norm" } else { "L1 norm" })
            .show(&mut cols[1], |pu| pu.bar_chart(BarChart::new("filter norms", fb)));
    });
    // What each measured sparsity removes, for reading thresholds against the curve.
    egui::CollapsingHeader::new("what each measured sparsity removes").show(ui, |ui| {
        egui::Grid::new("cuts").striped(true).show(ui, |ui| {
            ui.strong("sparsity");
            ui.strong("removes");
            ui.strong(if method.is_structured() { "norm ≤" } else { "|w| ≤" });
            ui.end_row();
            let sp: Vec<f64> = p
                .curves
                .as_ref()
                .and_then(|c| c.layers.iter().find(|l| l.block == block))
                .map(|l| l.points.iter().skip(1).map(|x| x.0).collect())
                .unwrap_or_default();
            for x in sp {
                let c = stats.cut(method, x);
                ui.label(format!("{:.0} %", x * 100.0));
                if method.is_structured() {
                    ui.label(format!("{} of {filters} filters", c.filters));
                } else {
                    ui.label(format!("{} weights", super::count(c.weights as u64)));
                }
                ui.label(format!("{:.5}", c.threshold));
                ui.end_row();
            }
        });
    });
}
