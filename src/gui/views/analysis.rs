//! The analysis form (the settings of `prunescope analyze`), Start/Cancel/Resume and the
//! progress of the running analysis.

use super::super::app::{App, Pick};
use crate::gui::app::Action;
use crate::prune::Method;
use crate::sensitivity::Metric;
use egui::RichText;

/// The methods and metrics the form offers: every one `prunescope analyze` takes.
const METHODS: &[Method] = &[Method::L1, Method::L1Filter, Method::L2Filter];
const METRICS: &[Metric] = <Metric as crate::quantity::Named>::ALL;

/// How the form shows `workers = 0`: the engine's choice.
const WORKERS_AUTO: &str = "auto";

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
            app.act(Action::StartAnalysis { resume: false });
        }
        if ui
            .add_enabled(has && !running, egui::Button::new("↻ Resume"))
            .on_hover_text("continue the run in the run folder: finished points are kept")
            .clicked()
        {
            app.act(Action::StartAnalysis { resume: true });
        }
        if ui.add_enabled(running, egui::Button::new("■ Cancel")).clicked() {
            app.act(Action::CancelAnalysis);
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
    let run = app.analysis.run_dir.clone();
    let open = app.project.as_ref().and_then(|p| p.paths.run.clone());
    if let Some(dir) = run.filter(|d| !open.as_deref().is_some_and(|o| crate::fsio::same_path(o, d))) {
        ui.horizontal(|ui| {
            let (what, hint) = if running {
                ("is being written", "open it now: the points that finished are shown and the rest stream in")
            } else {
                ("is not the open run", "open it beside the model (the open plan is kept until then)")
            };
            ui.label(format!("run {} {what}", super::run_name(&dir))).on_hover_text(dir.display().to_string());
            if ui.button(RichText::new("Open this run").strong()).on_hover_text(hint).clicked() {
                app.act(Action::OpenRun(dir));
            }
        });
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
    // The metrics the open model measures (a classifier has no mAP, a detector no top-1).
    let classifier = app.project.as_ref().is_some_and(|p| p.model.is_classifier());
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
            for &m in METHODS {
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
            for &m in METRICS.iter().filter(|m| m.fits(classifier)) {
                ui.selectable_value(&mut f.metric, m, m.label());
            }
        });
        ui.end_row();
        super::field(
            ui,
            "workers",
            egui::DragValue::new(&mut f.workers).range(0..=64).custom_formatter(|v, _| {
                if v == 0.0 {
                    WORKERS_AUTO.into()
                } else {
                    format!("{v}")
                }
            }),
        )
        .on_hover_text("model copies computing points in parallel; auto: one per GPU with cuda, else one");
        ui.end_row();
        super::text_field(ui, "device", &mut f.device, "cpu, cuda, auto", 100.0);
        ui.end_row();
        super::image_limit(ui, &mut f.limit);
        ui.end_row();
        super::field(ui, "batch", egui::DragValue::new(&mut f.batch).range(1..=256));
        ui.end_row();
    });
    if let Some(p) = pick {
        app.act(Action::Dialog(p));
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::app::AnalysisForm;
    use super::{METHODS, METRICS};
    use crate::sensitivity::{AnalysisConfig, Metric};
    use std::path::Path;

    /// The analysis form starts from the engine's defaults (which `prunescope analyze` uses):
    /// workers 0 is the engine's choice (one per GPU, else one), not one per core.
    #[test]
    fn the_form_starts_from_the_engine_defaults() {
        let (f, d) = (AnalysisForm::default(), AnalysisConfig::default());
        assert_eq!(
            (f.method, f.metric, f.workers, f.device.as_str(), f.batch, f.include_heads),
            (d.method, d.metric, d.workers, d.device.as_str(), d.batch, d.include_heads)
        );
        assert_eq!((f.limit, d.limit), (0, None));
        assert_eq!(f.layers, d.layers.join(", "));
        let percents: Vec<f64> = f.sparsities.split(',').map(|s| s.trim().parse::<f64>().unwrap() / 100.0).collect();
        assert_eq!(percents.len(), d.sparsities.len());
        assert!(percents.iter().zip(&d.sparsities).all(|(a, b)| (a - b).abs() < 1e-12), "{percents:?}");
        // What the form hands the engine, untouched, is the engine's default.
        let mut form = f.clone();
        form.data = "d.yaml".into();
        form.out = "o".into();
        let c = form.config_for(Path::new("m.cfg"), Path::new("m.weights"), false).unwrap();
        assert_eq!(
            (c.method, c.metric, c.workers, c.device.as_str(), c.batch, c.limit, c.cache_mem, c.include_heads),
            (d.method, d.metric, d.workers, d.device.as_str(), d.batch, d.limit, d.cache_mem, d.include_heads)
        );
        assert_eq!((c.layers, c.sparsities.len()), (d.layers, d.sparsities.len()));
        // Every metric and method the CLI takes is one the form offers.
        assert_eq!(METRICS, <Metric as crate::quantity::Named>::ALL);
        assert_eq!(METHODS, <crate::prune::Method as crate::quantity::Named>::ALL);
    }
}
