//! The analysis form (the settings of `prunescope analyze`), Start/Cancel/Resume and the
//! progress of the running analysis.

use super::super::app::{App, Pick};
use crate::prune::Method;
use crate::sensitivity::Metric;
use egui::RichText;

pub fn show(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Sensitivity analysis");
    ui.label(RichText::new("Prunes one layer at a time at each sparsity and measures the metric on the dataset; the same as `prunescope analyze`.").weak());
    ui.add_space(6.0);
    let running = app.analysis.running;
    ui.add_enabled_ui(!running, |ui| form(app, ui));
    ui.add_space(8.0);
    ui.horizontal(|ui| {
        let has = app.project.is_some();
        if ui.add_enabled(has && !running, egui::Button::new(RichText::new("▶ Start").strong())).clicked() {
            app.start_analysis(false);
        }
        if ui
            .add_enabled(has && !running, egui::Button::new("↻ Resume"))
            .on_hover_text("continue the run in the run folder: finished points are kept")
            .clicked()
        {
            app.start_analysis(true);
        }
        if ui.add_enabled(running, egui::Button::new("■ Cancel")).clicked() {
            app.cancel_analysis();
        }
    });
    let a = &app.analysis;
    if a.total > 0 || running {
        let frac = if a.total > 0 { a.done as f32 / a.total as f32 } else { 0.0 };
        let eta = a.eta_s.map(|s| format!(" · ETA {}", crate::report::duration(s))).unwrap_or_default();
        let elapsed = a
            .started
            .map(|t| format!(" · {} elapsed", crate::report::duration(t.elapsed().as_secs_f64())))
            .unwrap_or_default();
        ui.add(
            egui::ProgressBar::new(frac)
                .text(format!("{}/{} points · {:.1} images/s{eta}{elapsed}", a.done, a.total, a.images_per_s))
                .animate(running),
        );
    }
    ui.add_space(6.0);
    egui::ScrollArea::vertical().stick_to_bottom(true).max_height(ui.available_height()).show(ui, |ui| {
        for line in &app.analysis.log {
            ui.label(RichText::new(line).monospace());
        }
    });
}

fn form(app: &mut App, ui: &mut egui::Ui) {
    let mut pick = None;
    let f = &mut app.analysis_form;
    egui::Grid::new("analysis-form").num_columns(3).spacing([10.0, 6.0]).show(ui, |ui| {
        super::text_field(ui, "dataset", &mut f.data, "data.yaml or image folder", 360.0);
        if ui.button("Browse…").clicked() {
            pick = Some(Pick::AnalysisData);
        }
        ui.end_row();
        super::text_field(ui, "run folder", &mut f.out, "", 360.0);
        if ui.button("Browse…").clicked() {
            pick = Some(Pick::AnalysisOut);
        }
        ui.end_row();
        ui.label("method");
        ui.horizontal(|ui| {
            for m in [Method::L1, Method::L1Filter, Method::L2Filter] {
                ui.selectable_value(&mut f.method, m, m.name());
            }
        });
        ui.end_row();
        super::text_field(ui, "sparsities (%)", &mut f.sparsities, "", 360.0);
        ui.end_row();
        super::text_field(ui, "layers", &mut f.layers, "all prunable layers (e.g. conv_0, conv_1*)", 360.0);
        ui.checkbox(&mut f.include_heads, "include heads");
        ui.end_row();
        ui.label("metric");
        ui.horizontal(|ui| {
            for m in [Metric::Map50, Metric::Map] {
                ui.selectable_value(&mut f.metric, m, m.label());
            }
        });
        ui.end_row();
        super::field(
            ui,
            "workers",
            egui::DragValue::new(&mut f.workers).range(0..=64).custom_formatter(|v, _| {
                if v == 0.0 {
                    "all cores".into()
                } else {
                    format!("{v}")
                }
            }),
        );
        ui.end_row();
        super::text_field(ui, "device", &mut f.device, "cpu, cuda, auto", 100.0);
        ui.end_row();
        super::image_limit(ui, &mut f.limit);
        ui.end_row();
        super::field(ui, "batch", egui::DragValue::new(&mut f.batch).range(1..=256));
        ui.end_row();
    });
    if let Some(p) = pick {
        app.dialog(p);
    }
}
