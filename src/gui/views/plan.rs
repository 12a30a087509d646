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
            ui.label(RichText::new("unsaved").color(ui.visuals().warn_fg_color));
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
    ui.separator();
    let pr = &p.plan.predicted;
    egui::Grid::new("totals").num_columns(3).show(ui, |ui| {
        if pr.params_before == 0 {
            ui.spinner();
            ui.label("computing…");
            ui.end_row();
            return;
        }
        let pct = |b: u64, a: u64| if b > 0 { 100.0 * (b as f64 - a as f64) / b as f64 } else { 0.0 };
        ui.label("parameters");
        ui.label(format!(
            "{} → {}",
            super::count(pr.params_before),
            RichText::new(super::count(pr.params_after)).text()
        ));
        ui.label(RichText::new(format!("−{:.1} %", pct(pr.params_before, pr.params_after))).strong());
        ui.end_row();
        ui.label("MACs").on_hover_text("ptflops convention; effective: dead channels and zero weights left out");
        ui.label(format!("{} → {}", super::macs(pr.macs_before), super::macs(pr.macs_after)));
        ui.label(RichText::new(format!("−{:.1} %", pct(pr.macs_before, pr.macs_after))).strong());
        ui.end_row();
        if let (Some(b), Some(m)) = (pr.baseline, pr.metric) {
            ui.label(p.plan.metric.label())
                .on_hover_text("estimate: baseline minus the sum of the layers' measured drops");
            ui.label(format!("{b:.4} → {m:.4}"));
            ui.label(RichText::new(format!("−{:.4}", pr.drop)).strong());
            ui.end_row();
        }
    });
    // One line whatever the state, so that nothing below moves while the totals update.
    let pruned = p.plan.layers.iter().filter(|l| l.sparsity > 0.0).count();
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("{pruned} of {} layers pruned", p.plan.layers.len())).weak());
        if !current {
            ui.spinner();
            ui.label(RichText::new("updating").weak());
        }
    });
    ui.separator();

    ui.strong("Suggest thresholds");
    let has_run = p.curves.is_some();
    let f = &mut app.suggest;
    ui.radio_value(&mut f.global, false, "per-layer budget");
    ui.add_enabled_ui(!f.global, |ui| {
        ui.horizontal(|ui| {
            super::field(
                ui,
                "drop ≤",
                egui::DragValue::new(&mut f.budget).range(0.0..=100.0).speed(0.05).max_decimals(2),
            );
            ui.selectable_value(&mut f.budget_relative, false, "mAP points");
            ui.selectable_value(&mut f.budget_relative, true, "% of baseline");
        });
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
        for name in &frozen {
            if ui.button(format!("{name} ✕")).on_hover_text("unfreeze").clicked() {
                unfreeze = crate::plan::suggest::block_of(name);
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
    ui.horizontal(|ui| {
        super::field(ui, "plan file", egui::TextEdit::singleline(&mut app.plan_file).desired_width(f32::INFINITY));
    });
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
