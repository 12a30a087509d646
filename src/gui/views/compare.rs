//! Prune & compare: apply the plan, evaluate the original and the pruned checkpoint, and
//! show them side by side (the table, the layers, the confusion matrices) with exports.

use super::super::app::{App, Pick};
use crate::eval::compare::ModelReport;
use crate::gui::app::Action;
use egui::RichText;

/// The form, the progress and the results scroll together: at 1280×800 a 21-class matrix
/// needs more height than is left below a fixed form.
pub fn show(app: &mut App, ui: &mut egui::Ui) {
    egui::ScrollArea::vertical().auto_shrink([false, false]).id_salt("compare-view").show(ui, |ui| content(app, ui));
}

fn content(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Prune & compare");
    ui.label(
        RichText::new(
            "Applies the plan to the checkpoint, then evaluates both on the dataset (as `prunescope prune --compare`).",
        )
        .weak(),
    );
    let running = app.compare.running;
    let mut pick = None;
    ui.add_enabled_ui(!running, |ui| {
        egui::Grid::new("compare-form").num_columns(3).show(ui, |ui| {
            super::text_field(ui, "dataset", &mut app.compare.data, "data.yaml", 360.0);
            if ui.button("Browse…").clicked() {
                pick = Some(Pick::CompareData);
            }
            ui.end_row();
            super::text_field(ui, "report folder", &mut app.compare.out, "a new folder in the cache", 360.0);
            ui.end_row();
            super::text_field(
                ui,
                "also compare",
                &mut app.compare.also,
                "optional: e.g. the fine-tuned checkpoint",
                360.0,
            );
            if ui.button("Browse…").clicked() {
                pick = Some(Pick::CompareAlso);
            }
            ui.end_row();
            super::image_limit(ui, &mut app.compare.limit);
            ui.end_row();
            super::field(ui, "latency runs", egui::DragValue::new(&mut app.compare.latency_runs).range(1..=1000));
            ui.end_row();
            super::text_field(ui, "device", &mut app.compare.device, "", 100.0);
            ui.end_row();
        });
    });
    if let Some(p) = pick {
        app.act(Action::Dialog(p));
    }
    ui.horizontal(|ui| {
        let has = app.project.is_some();
        if ui.add_enabled(has && !running, egui::Button::new(RichText::new("▶ Prune & compare").strong())).clicked() {
            app.act(Action::StartCompare);
        }
        if running {
            let c = &app.compare;
            let frac = if c.total > 0 { c.done as f32 / c.total as f32 } else { 0.0 };
            ui.add(egui::ProgressBar::new(frac).text(super::compare_progress(c)).animate(true));
        }
    });
    let Some(o) = &app.compare.outcome else {
        if !running {
            ui.label(RichText::new("No comparison yet.").weak());
        }
        return;
    };
    ui.horizontal(|ui| {
        if ui.button("Export pruned checkpoint…").clicked() {
            pick = Some(Pick::ExportCheckpoint);
        }
        if ui.button("Export report…").clicked() {
            pick = Some(Pick::ExportReport);
        }
        ui.label(RichText::new(format!("report in {}", o.dir.display())).weak());
    });
    if let Some(p) = pick {
        app.act(Action::Dialog(p));
    }
    let Some(o) = &app.compare.outcome else { return };
    let c = &o.comparison;
    summary(ui, &c.models, o.plan.as_ref());
    ui.add_space(8.0);
    egui::CollapsingHeader::new(RichText::new("Per layer").strong()).default_open(false).show(ui, |ui| {
        layers(ui, &c.models);
    });
    ui.add_space(8.0);
    super::confusion::show(ui, c);
}

/// Why the pruned file size and latency do not shrink (until filters are removed physically).
pub const MASKED_NOTE: &str = "Pruned weights are masked: zeros are stored and run densely, so the file size and \
the latency do not shrink (latency differences are run-to-run noise); the compressed size and the effective counts \
show what the zeros save.";

/// The side-by-side table: each model, its change against the first, and the plan's
/// estimate beside the pruned model's measured values.
fn summary(ui: &mut egui::Ui, models: &[ModelReport], plan: Option<&crate::plan::Plan>) {
    let Some(base) = models.first() else { return };
    let classifier = base.top1.is_some();
    let pr = plan.map(|p| &p.predicted).filter(|p| p.params_before > 0);
    let metric = plan.map(|p| p.metric.label());
    let estimate_head = "plan's estimate";
    let cols = models.len() * 2 + 1 + usize::from(pr.is_some());
    egui::Grid::new("compare-summary").striped(true).min_col_width(90.0).num_columns(cols).show(ui, |ui| {
        ui.strong("");
        for (i, m) in models.iter().enumerate() {
            ui.strong(&m.label);
            if i > 0 {
                ui.strong("Δ");
            }
            if i == 1 && pr.is_some() {
                ui.strong(estimate_head).on_hover_text(
                    "What the plan predicted. Parameters and MACs are exact effective counts; the metric is an \
                     additive estimate: the baseline minus the sum of each layer's drop measured alone (layers \
                     interact, so the measured drop is usually larger).",
                );
            }
        }
        ui.end_row();
        type Get = fn(&ModelReport) -> f64;
        // (label, value, integer, dense: a masked checkpoint does not change it)
        let quality: [(&str, Get, bool, bool); 2] = if classifier {
            [
                ("top-1", |m| m.top1.unwrap_or(f64::NAN), false, false),
                ("top-5", |m| m.top5.unwrap_or(f64::NAN), false, false),
            ]
        } else {
            [("mAP@0.5", |m| m.map50, false, false), ("mAP@0.5:0.95", |m| m.map, false, false)]
        };
        let ultralytics: Vec<(&str, Get, bool, bool)> = match classifier {
            true => Vec::new(),
            false => vec![
                ("mAP50 (Ultralytics)", |m| m.ultralytics_map50.unwrap_or(f64::NAN), false, false),
                ("mAP50-95 (Ultralytics)", |m| m.ultralytics_map.unwrap_or(f64::NAN), false, false),
            ],
        };
        let rows: Vec<(&str, Get, bool, bool)> = [
            ("parameters", (|m| m.params as f64) as Get, true, false),
            ("non-zero parameters", |m| m.nonzero_params as f64, true, false),
            ("effective parameters", |m| m.effective_params as f64, true, false),
            ("MACs (effective, ptflops)", |m| m.effective_macs as f64, true, false),
            ("file size (bytes)", |m| m.file_bytes as f64, true, true),
            ("compressed size (bytes)", |m| m.compressed_bytes as f64, true, false),
        ]
        .into_iter()
        .chain(quality)
        .chain(ultralytics)
        .chain([
            ("precision", (|m| m.precision) as Get, false, false),
            ("recall", |m| m.recall, false, false),
            ("latency (ms, batch 1)", |m| m.latency_ms.unwrap_or(f64::NAN), false, true),
        ])
        .collect();
        for (label, get, integer, dense) in rows {
            let head = ui.label(if dense { format!("{label} †") } else { label.to_string() });
            if dense {
                head.on_hover_text(MASKED_NOTE);
            }
            let b = get(base);
            for (i, m) in models.iter().enumerate() {
                let v = get(m);
                if v.is_nan() {
                    ui.label("not measured");
                } else if integer {
                    ui.label(super::count(v as u64));
                } else {
                    ui.label(format!("{v:.4}"));
                }
                if i > 0 && (v.is_nan() || b.is_nan()) {
                    ui.label("");
                } else if i > 0 {
                    let text = if integer {
                        let rel = if b != 0.0 { 100.0 * (v - b) / b } else { 0.0 };
                        format!("{} %", super::signed(rel, 1))
                    } else {
                        super::signed(v - b, 4)
                    };
                    let text = RichText::new(text);
                    ui.label(if dense { text.weak() } else { text.strong() });
                }
                if i == 1 {
                    if let Some(pr) = pr {
                        let estimate = match label {
                            "effective parameters" => Some(super::count(pr.params_after)),
                            "MACs (effective, ptflops)" => Some(super::count(pr.macs_after)),
                            l if Some(l) == metric => pr.metric.map(|e| format!("{e:.4} (additive)")),
                            _ => None,
                        };
                        ui.label(estimate.unwrap_or_default());
                    }
                }
            }
            ui.end_row();
        }
    });
    if let (Some(run), Some(pr)) = (plan.and_then(|p| p.run.as_ref()), pr) {
        if let (Some(b), Some(first)) = (pr.baseline, models.first()) {
            ui.label(
                RichText::new(format!(
                    "The estimate starts from the run's baseline {b:.4} ({}, {} images); this comparison measured the \
                     origin at {:.4}.",
                    super::run_name(&run.path),
                    run.dataset.images,
                    plan.map(|p| p.metric).map(|m| metric_of(first, m)).unwrap_or(f64::NAN),
                ))
                .weak()
                .small(),
            );
        }
    }
    ui.label(RichText::new(format!("† {MASKED_NOTE}")).weak().small());
}

/// The value of `metric` in a report.
fn metric_of(m: &ModelReport, metric: crate::sensitivity::Metric) -> f64 {
    use crate::sensitivity::Metric;
    match metric {
        Metric::Map50 => m.map50,
        Metric::Map => m.map,
        Metric::Precision => m.precision,
        Metric::Recall => m.recall,
        Metric::UltralyticsMap50 => m.ultralytics_map50.unwrap_or(f64::NAN),
        Metric::UltralyticsMap => m.ultralytics_map.unwrap_or(f64::NAN),
        Metric::Top1 => m.top1.unwrap_or(f64::NAN),
        Metric::Top5 => m.top5.unwrap_or(f64::NAN),
    }
}

fn layers(ui: &mut egui::Ui, models: &[ModelReport]) {
    let Some(base) = models.first() else { return };
    egui::Grid::new("compare-layers").striped(true).show(ui, |ui| {
        ui.strong("layer");
        for m in models {
            ui.strong(format!("{} non-zero", m.label));
            ui.strong(format!("{} eff. MACs", m.label));
        }
        ui.end_row();
        for (i, l) in base.layers.iter().enumerate() {
            ui.label(&l.layer);
            for m in models {
                if let Some(r) = m.layers.get(i) {
                    ui.label(super::count(r.nonzero));
                    ui.label(super::macs(r.effective_macs));
                }
            }
            ui.end_row();
        }
    });
}
