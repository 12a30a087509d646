//! Prune & compare: apply the plan, evaluate the original and the pruned checkpoint, and
//! show them side by side (the table, the layers, the confusion matrices) with exports.

use super::super::app::{App, Pick};
use crate::eval::compare::ModelReport;
use crate::gui::app::Action;
use egui::RichText;

pub fn show(app: &mut App, ui: &mut egui::Ui) {
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
            ui.add(
                egui::ProgressBar::new(frac).text(format!("{} {}/{} images", c.stage, c.done, c.total)).animate(true),
            );
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
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        summary(ui, &c.models);
        ui.add_space(8.0);
        egui::CollapsingHeader::new(RichText::new("Per layer").strong()).default_open(false).show(ui, |ui| {
            layers(ui, &c.models);
        });
        ui.add_space(8.0);
        super::confusion::show(ui, c);
    });
}

fn summary(ui: &mut egui::Ui, models: &[ModelReport]) {
    let Some(base) = models.first() else { return };
    egui::Grid::new("compare-summary").striped(true).min_col_width(96.0).num_columns(models.len() * 2 + 1).show(
        ui,
        |ui| {
            ui.strong("");
            for (i, m) in models.iter().enumerate() {
                ui.strong(&m.label);
                if i > 0 {
                    ui.strong("Δ");
                }
            }
            ui.end_row();
            type Get = fn(&ModelReport) -> f64;
            let rows: [(&str, Get, bool); 11] = [
                ("parameters", |m| m.params as f64, true),
                ("non-zero parameters", |m| m.nonzero_params as f64, true),
                ("effective parameters", |m| m.effective_params as f64, true),
                ("MACs (effective, ptflops)", |m| m.effective_macs as f64, true),
                ("file size (bytes)", |m| m.file_bytes as f64, true),
                ("compressed size (bytes)", |m| m.compressed_bytes as f64, true),
                ("mAP@0.5", |m| m.map50, false),
                ("mAP@0.5:0.95", |m| m.map, false),
                ("precision", |m| m.precision, false),
                ("recall", |m| m.recall, false),
                ("latency (ms, batch 1)", |m| m.latency_ms.unwrap_or(f64::NAN), false),
            ];
            for (label, get, integer) in rows {
                ui.label(label);
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
                        let rel = if b != 0.0 { 100.0 * (v - b) / b } else { 0.0 };
                        let text = if integer { format!("{rel:+.1} %") } else { format!("{:+.4}", v - b) };
                        ui.label(RichText::new(text).strong());
                    }
                }
                ui.end_row();
            }
        },
    );
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
