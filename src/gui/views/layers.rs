//! The layer table (sortable, filterable) and the MACs / parameters per layer with the part
//! the plan removes shaded.

use super::super::app::{App, SortBy};
use super::super::widgets::small_plot::{CURVE, THRESHOLD};
use crate::gui::app::Action;
use egui::RichText;
use egui_plot::{Bar, BarChart, Plot};

pub fn show(app: &mut App, ui: &mut egui::Ui) {
    let selected = app.selected_block();
    let mut sort = app.table.sort;
    let mut desc = app.table.descending;
    let Some(p) = &app.project else {
        ui.label("Open a project first.");
        return;
    };
    ui.horizontal(|ui| {
        super::text_field(ui, "filter", &mut app.table.filter, "conv_1, 3x3 …", 160.0);
        ui.separator();
        ui.label("chart").on_hover_text(
            "MACs: ptflops convention; after the plan: effective (dead channels and zero weights left out)",
        );
        ui.selectable_value(&mut app.table.params_chart, false, "MACs");
        ui.selectable_value(&mut app.table.params_chart, true, "parameters");
    });
    let after = p.costs_after.as_deref();
    let filter = app.table.filter.to_lowercase();
    let analysed: Vec<usize> =
        p.curves.as_ref().map(|c| c.layers.iter().map(|l| l.block).collect()).unwrap_or_default();
    let mut rows: Vec<&super::super::state::LayerRow> = p
        .layers
        .iter()
        .filter(|r| {
            filter.is_empty()
                || r.name.contains(&filter)
                || format!("{}x{}", r.shape.get(2).unwrap_or(&0), r.shape.get(3).unwrap_or(&0)).contains(&filter)
        })
        .collect();
    let key = |r: &super::super::state::LayerRow| -> f64 {
        match app.table.sort {
            SortBy::Block => r.block as f64,
            SortBy::Params => r.params as f64,
            SortBy::Macs => r.macs as f64,
            SortBy::Sparsity => p.sparsity(r.block),
            SortBy::Drop => p.predicted_drop(r.block).unwrap_or(-1.0),
        }
    };
    rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
    if app.table.descending {
        rows.reverse();
    }
    let chart_h = (ui.available_height() * 0.4).max(160.0);
    let mut clicked_block = None;
    egui::Panel::bottom("layer-chart").resizable(true).default_size(chart_h).show(ui, |ui| {
        // The bars follow the table: its filter, its order, its selection.
        let params = app.table.params_chart;
        let (scale, unit) = if params { (1e6, "M parameters") } else { (1e9, "GMac") };
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let dense = if params { r.params } else { r.macs } as f64;
            let left = after
                .as_ref()
                .and_then(|a| a.get(r.index))
                .map(|c| if params { c.params } else { c.macs } as f64)
                .unwrap_or(dense)
                .min(dense);
            let outline = if selected == Some(r.block) {
                egui::Stroke::new(2.0, ui.visuals().strong_text_color())
            } else {
                egui::Stroke::NONE
            };
            kept.push(Bar::new(i as f64, left / scale).width(0.8).name(&r.name).fill(CURVE).stroke(outline));
            removed.push(
                Bar::new(i as f64, (dense - left) / scale)
                    .width(0.8)
                    .name(&r.name)
                    .fill(THRESHOLD.gamma_multiply(0.6))
                    .stroke(outline),
            );
        }
        let tip = move |what: &'static str| {
            Box::new(move |b: &Bar, _: &BarChart| format!("{}\n{what}: {:.4} {unit}", b.name, b.value))
                as Box<dyn Fn(&Bar, &BarChart) -> String>
        };
        let kept = BarChart::new("kept", kept).color(CURVE).element_formatter(tip("kept"));
        let removed = BarChart::new("removed by the plan", removed)
            .color(THRESHOLD)
            .stack_on(&[&kept])
            .element_formatter(tip("removed by the plan"));
        let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
        ui.horizontal(|ui| {
            ui.label(RichText::new("■ kept").color(CURVE));
            ui.label(RichText::new("■ removed by the plan").color(THRESHOLD));
            ui.label(
                RichText::new(format!("{} of {} layers, in the table's order", rows.len(), p.layers.len())).weak(),
            );
        });
        // A name under every bar where they fit (egui_plot skips the ones that would overlap).
        let x_axis = egui_plot::AxisHints::new_x()
            .label("convolution")
            .formatter(move |mark, _| {
                let i = mark.value.round();
                if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .label_spacing(24.0..=36.0);
        Plot::new("layer-bars")
            .custom_x_axes(vec![x_axis])
            .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 5.0, 10.0]))
            .allow_scroll(false)
            .y_axis_label(unit)
            .show(ui, |pu| {
                pu.bar_chart(kept);
                pu.bar_chart(removed);
            });
    });
    egui::CentralPanel::default().show(ui, |ui| {
        let header = |ui: &mut egui::Ui, app_sort: &mut SortBy, desc: &mut bool, label: &str, s: SortBy| {
            let arrow = if *app_sort == s {
                if *desc {
                    " ▼"
                } else {
                    " ▲"
                }
            } else {
                ""
            };
            if ui.button(RichText::new(format!("{label}{arrow}")).strong()).clicked() {
                if *app_sort == s {
                    *desc = !*desc;
                } else {
                    *app_sort = s;
                    *desc = s != SortBy::Block;
                }
            }
        };
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            egui::Grid::new("layer-table").striped(true).num_columns(8).show(ui, |ui| {
                header(ui, &mut sort, &mut desc, "layer", SortBy::Block);
                ui.strong("shape");
                header(ui, &mut sort, &mut desc, "params", SortBy::Params);
                header(ui, &mut sort, &mut desc, "MACs", SortBy::Macs);
                ui.strong("% MACs");
                header(ui, &mut sort, &mut desc, "sparsity", SortBy::Sparsity);
                header(ui, &mut sort, &mut desc, "est. drop", SortBy::Drop);
                ui.strong("state");
                ui.end_row();
                for r in &rows {
                    let is_sel = selected == Some(r.block);
                    if ui.selectable_label(is_sel, &r.name).clicked() {
                        clicked_block = Some(r.block);
                    }
                    ui.label(format!("{:?}", r.shape));
                    ui.label(super::count(r.params));
                    ui.label(super::macs(r.macs));
                    ui.label(format!("{:.2}", r.macs_percent));
                    let s = p.sparsity(r.block);
                    ui.label(if s > 0.0 { format!("{:.0} %", s * 100.0) } else { "–".into() });
                    ui.label(p.predicted_drop(r.block).map(|d| super::fixed(d, 4)).unwrap_or("–".into()));
                    if p.is_frozen(r.block) {
                        ui.label("frozen");
                    } else if analysed.contains(&r.block) {
                        ui.label("analysed");
                    } else if s > 0.0 && p.curves.is_some() {
                        ui.label(RichText::new("⚠ no curve").color(ui.visuals().warn_fg_color)).on_hover_text(
                            "pruned by the plan, but the open run has no curve for it: its drop is not in the estimate",
                        );
                    } else {
                        ui.label("not analysed");
                    }
                    ui.end_row();
                }
            });
        });
    });
    app.table.sort = sort;
    app.table.descending = desc;
    if let Some(b) = clicked_block {
        let i = app
            .project
            .as_ref()
            .and_then(|p| p.curves.as_ref())
            .and_then(|c| c.layers.iter().position(|l| l.block == b));
        if let Some(i) = i {
            app.act(Action::Select(i));
        }
    }
}
