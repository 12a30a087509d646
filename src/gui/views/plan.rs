//! The plan panel: live totals, Suggest, frozen layers, undo/redo, save, load and export.

use super::super::app::{App, Pick, Tab};
use crate::gui::app::Action;
use crate::plan::Resource;
use egui::RichText;

pub fn show(app: &mut App, ui: &mut egui::Ui) {
    let current = app.totals_current();
    let Some(p) = &app.project else { return };
    ui.horizontal(|ui| {
        ui.heading("Plan");
        if p.unsaved() {
            ui.label(RichText::new("unsaved").color(ui.visuals().warn_fg_color))
                .on_hover_text("the thresholds differ from the plan file's (Ctrl+S saves)");
        }
    });
    let file = p.paths.plan.as_ref().and_then(|f| f.file_name()).map(|f| f.to_string_lossy().into_owned());
    ui.label(
        RichText::new(format!(
            "{} · {} pruning · {}",
            file.unwrap_or("not saved yet".into()),
            p.plan.method.name(),
            p.plan.rule.clone().unwrap_or("set by hand".into())
        ))
        .weak(),
    );
    let mut open_plan_run = false;
    if let Some(from) = &p.plan_from_other_run {
        let warn = ui.visuals().warn_fg_color;
        egui::Frame::group(ui.style()).stroke(egui::Stroke::new(1.0, warn)).show(ui, |ui| {
            ui.label(RichText::new("⚠ plan made from another run").color(warn).strong());
            ui.label(format!(
                "It came from run {} ({}, {} images of {}). Its thresholds are costed here with the open \
                 run's curves{}.",
                super::run_name(&from.path),
                from.created_at,
                from.dataset.images,
                super::short_path(&from.dataset.path.display().to_string(), 40),
                p.paths.run.as_deref().map(|r| format!(" ({})", super::run_name(r))).unwrap_or_default()
            ))
            .on_hover_text(from.path.display().to_string());
            open_plan_run = ui
                .button("Open that run")
                .on_hover_text("open the run the plan was made from, with this plan")
                .clicked();
        });
    }
    if open_plan_run {
        app.act(Action::OpenPlanRun);
    }
    let Some(p) = &app.project else { return };
    ui.separator();
    let pr = &p.plan.predicted;
    let metric = p.plan.metric.label();
    egui::Grid::new("totals").num_columns(3).show(ui, |ui| {
        if pr.params_before == 0 {
            ui.spinner();
            ui.label("computing…");
            ui.end_row();
            return;
        }
        let pct = |b: u64, a: u64| if b > 0 { 100.0 * (b as f64 - a as f64) / b as f64 } else { 0.0 };
        ui.label("parameters");
        ui.label(format!("{} → {}", super::count(pr.params_before), super::count(pr.params_after)));
        ui.label(RichText::new(format!("{} %", super::signed(-pct(pr.params_before, pr.params_after), 1))).strong());
        ui.end_row();
        ui.label("MACs").on_hover_text("ptflops convention; effective: dead channels and zero weights left out");
        ui.label(format!("{} → {}", super::macs(pr.macs_before), super::macs(pr.macs_after)));
        ui.label(RichText::new(format!("{} %", super::signed(-pct(pr.macs_before, pr.macs_after), 1))).strong());
        ui.end_row();
        if let (Some(b), Some(m)) = (pr.baseline, pr.metric) {
            ui.label(format!("{metric} (estimate)")).on_hover_text(
                "additive estimate: the baseline minus the sum of each layer's drop measured alone; layers \
                 interact, so the measured drop after pruning is usually larger",
            );
            ui.label(format!("{b:.4} → {m:.4}"));
            ui.label(RichText::new(super::signed(-pr.drop, 4)).strong());
            ui.end_row();
        }
    });
    // One line whatever the state, so that nothing below moves while the totals update.
    let pruned = p.plan.layers.iter().filter(|l| l.sparsity > 0.0).count();
    let blind = p.pruned_without_curve();
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!("{pruned} of {} layers pruned", p.plan.layers.len())).weak());
        if !blind.is_empty() && p.curves.is_some() {
            let names: Vec<&str> = blind.iter().map(|l| l.layer.as_str()).collect();
            ui.label(
                RichText::new(format!("· {} without a curve in this run: not in the estimate", blind.len()))
                    .color(ui.visuals().warn_fg_color),
            )
            .on_hover_text(names.join(", "));
        }
        if !current {
            ui.spinner();
            ui.label(RichText::new("updating").weak());
        }
    });
    ui.separator();

    ui.strong("Suggest thresholds");
    let has_run = p.curves.is_some();
    let baseline = p.curves.as_ref().map(|c| c.baseline);
    let planned_drop = pr.baseline.map(|_| pr.drop);
    let f = &mut app.suggest;
    ui.radio_value(&mut f.global, false, "per-layer budget");
    ui.add_enabled_ui(!f.global, |ui| {
        ui.horizontal(|ui| {
            super::field(
                ui,
                "drop ≤",
                egui::DragValue::new(&mut f.budget).range(0.0..=100.0).speed(0.05).max_decimals(2),
            );
            ui.selectable_value(&mut f.budget_relative, false, "points")
                .on_hover_text(format!("a point is 0.01 of {metric}, which runs from 0 to 1"));
            ui.selectable_value(&mut f.budget_relative, true, "% of baseline");
        });
        if let crate::plan::Rule::PerLayer(budget) = f.rule() {
            let allowed = baseline.map(|b| budget.allowed(b));
            let mut text = match allowed {
                Some(a) => format!("each layer may lose {a:.4} {metric}"),
                None => format!("each layer may lose {} of {metric}", f.budget / 100.0),
            };
            if let Some(d) = planned_drop {
                text.push_str(&format!("; the plan's layers add up to {} (additive estimate)", super::fixed(d, 4)));
            }
            ui.label(RichText::new(text).weak());
        }
    });
    ui.radio_value(&mut f.global, true, "global target");
    ui.add_enabled_ui(f.global, |ui| {
        ui.horizontal(|ui| {
            super::field(ui, "remove", egui::DragValue::new(&mut f.target).range(1.0..=95.0).speed(0.5).suffix(" %"));
            ui.label("of the");
            ui.selectable_value(&mut f.resource, Resource::Macs, "MACs");
            ui.selectable_value(&mut f.resource, Resource::Params, "params");
        });
    });
    ui.horizontal(|ui| {
        let suggest = ui
            .add_enabled(has_run && !app.suggesting, egui::Button::new("Suggest"))
            .on_hover_text("fill the thresholds from the run (frozen layers stay at 0 %); undo restores");
        if suggest.clicked() {
            app.act(Action::Suggest);
        }
        if app.suggesting {
            ui.spinner();
        }
    });
    ui.separator();

    let Some(p) = &app.project else { return };
    let frozen = p.frozen();
    let ids: Vec<Option<usize>> = frozen.iter().map(|n| p.model.layer(n).map(|l| l.id)).collect();
    ui.horizontal(|ui| {
        ui.strong("Frozen layers");
        if ui.button("freeze selected (F)").clicked() {
            if let Some(a) = app.toggle_freeze_action() {
                app.act(a);
            }
        }
    });
    if frozen.is_empty() {
        ui.label(RichText::new("none").weak());
    }
    let mut unfreeze = None;
    ui.horizontal_wrapped(|ui| {
        for (name, id) in frozen.iter().zip(&ids) {
            if ui.button(format!("{name} ✕")).on_hover_text("unfreeze").clicked() {
                unfreeze = *id;
            }
        }
    });
    if let Some(b) = unfreeze {
        app.act(Action::ToggleFreeze(b));
    }
    ui.separator();
    let Some(p) = &app.project else { return };
    let (can_undo, can_redo) = (p.can_undo(), p.can_redo());
    ui.horizontal(|ui| {
        if ui.add_enabled(can_undo, egui::Button::new("↶ Undo")).on_hover_text("Ctrl+Z").clicked() {
            app.act(Action::Undo);
        }
        if ui.add_enabled(can_redo, egui::Button::new("↷ Redo")).on_hover_text("Ctrl+Shift+Z").clicked() {
            app.act(Action::Redo);
        }
        if ui.button("Clear").on_hover_text("every layer back to 0 % (undo restores)").clicked() {
            app.act(Action::ClearPlan);
        }
    });
    plan_file(app, ui);
    ui.horizontal(|ui| {
        if ui.button("Save").on_hover_text("to the plan file (Ctrl+S)").clicked() {
            app.act(Action::SavePlan);
        }
        if ui.button("Load").on_hover_text("from the plan file").clicked() {
            let path = std::path::PathBuf::from(app.plan_file.trim());
            app.act(Action::LoadPlan(path));
        }
        if ui.button("Save as…").clicked() {
            app.act(Action::Dialog(Pick::SavePlan));
        }
        if ui.button("Open…").clicked() {
            app.act(Action::Dialog(Pick::Plan));
        }
        ui.menu_button("Export", |ui| super::export_buttons(app, ui));
    });
    ui.separator();
    if ui.button(RichText::new("Prune & compare…").strong()).clicked() {
        app.tab = Tab::Compare;
    }
}

/// Where Save writes: the path shortened in the middle (whole on hover), editable on ✎.
fn plan_file(app: &mut App, ui: &mut egui::Ui) {
    let id = egui::Id::unique("editing-plan-file");
    let mut editing = ui.data(|d| d.get_temp::<bool>(id)).unwrap_or(false);
    ui.horizontal(|ui| {
        let l = ui.label("plan file");
        if editing {
            let r = ui
                .add(egui::TextEdit::singleline(&mut app.plan_file).desired_width(ui.available_width() - 30.0))
                .labelled_by(l.id);
            if r.lost_focus() {
                editing = false;
            }
        } else {
            let width = ((ui.available_width() - 30.0) / 7.0).max(16.0) as usize;
            let shown = if app.plan_file.trim().is_empty() {
                "(Save asks where)".to_string()
            } else {
                super::short_path(app.plan_file.trim(), width)
            };
            ui.label(RichText::new(shown).monospace()).on_hover_text(app.plan_file.clone()).labelled_by(l.id);
        }
        if ui.small_button("✎").on_hover_text("type the path").clicked() {
            editing = !editing;
        }
    });
    ui.data_mut(|d| d.insert_temp(id, editing));
}
