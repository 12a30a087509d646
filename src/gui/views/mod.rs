//! The window: menu and tabs on top, the plan on the right, status and errors below, the
//! selected view in the middle.

mod analysis;
mod compare;
mod confusion;
mod layers;
mod plan;
mod sensitivity;

use super::app::{App, Pick, Tab};
use crate::gui::app::{Action, Answer};
use crate::plan::ExportFormat;
use egui::RichText;

pub use sensitivity::grid_only;

pub fn show(app: &mut App, ui: &mut egui::Ui) {
    egui::Panel::top("menu").show(ui, |ui| {
        egui::MenuBar::new().ui(ui, |ui| menu(app, ui));
        ui.horizontal(|ui| {
            for t in Tab::ALL {
                let i = Tab::ALL.iter().position(|x| *x == t).unwrap_or(0) + 1;
                ui.selectable_value(&mut app.tab, t, RichText::new(t.label()).size(15.0))
                    .on_hover_text(format!("Ctrl+{i}"));
            }
            ui.separator();
            match (&app.project, &app.loading) {
                (_, Some(l)) => {
                    ui.spinner();
                    ui.label(format!("opening {}", l.title()));
                }
                (Some(p), None) => {
                    ui.label(RichText::new(p.paths.title()).strong()).on_hover_text(format!(
                        "cfg {}\nweights {}\ndata {}\nrun {}",
                        p.paths.cfg.display(),
                        p.paths.weights.display(),
                        p.paths.data.as_ref().map(|d| d.display().to_string()).unwrap_or("–".into()),
                        p.paths.run.as_ref().map(|d| d.display().to_string()).unwrap_or("–".into())
                    ));
                    run_menu(app, ui);
                }
                (None, None) => {
                    ui.label("no project: File ▸ Open (Ctrl+O) or drop a folder here");
                }
            }
        });
    });
    egui::Panel::bottom("status").show(ui, |ui| status(app, ui));
    if app.project.is_some() {
        egui::Panel::right("plan").resizable(true).default_size(300.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| plan::show(app, ui));
        });
    }
    egui::CentralPanel::default().show(ui, |ui| match app.tab {
        Tab::Sensitivity => sensitivity::show(app, ui),
        Tab::Layers => layers::show(app, ui),
        Tab::Analysis => analysis::show(app, ui),
        Tab::Compare => compare::show(app, ui),
    });
    open_window(app, ui.ctx());
    confirm_window(app, ui.ctx());
    drop_hint(ui.ctx());
}

/// The name of a run folder as menus show it.
pub(super) fn run_name(dir: &std::path::Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string())
}

/// The open run and the others of this model the user can switch to.
fn run_menu(app: &mut App, ui: &mut egui::Ui) {
    let Some(p) = &app.project else { return };
    let open = p.paths.run.clone();
    let label = open.as_deref().map(run_name).unwrap_or_else(|| "no run".into());
    let writing = app.analysis.running.then_some(app.analysis.run_dir.as_deref()).flatten();
    let mut chosen = None;
    ui.label("run");
    egui::ComboBox::from_id_salt("run-menu")
        .selected_text(label)
        .width(180.0)
        .show_ui(ui, |ui| {
            for dir in &app.runs {
                let is_open = open.as_deref().is_some_and(|o| crate::fsio::same_path(o, dir));
                let mut text = run_name(dir);
                if writing.is_some_and(|w| crate::fsio::same_path(w, dir)) {
                    text.push_str("  (being written)");
                }
                if ui.selectable_label(is_open, text).on_hover_text(dir.display().to_string()).clicked() && !is_open {
                    chosen = Some(dir.clone());
                }
            }
            if app.runs.is_empty() {
                ui.label("no run yet: start one in the Analysis tab");
            }
        })
        .response
        .on_hover_text(open.map(|o| o.display().to_string()).unwrap_or("no sensitivity run is open".into()));
    if let Some(d) = chosen {
        app.act(Action::OpenRun(d));
    }
}

/// Asks before an open discards unsaved plan edits.
fn confirm_window(app: &mut App, ctx: &egui::Context) {
    let Some(waiting) = &app.confirm else { return };
    let what = match waiting {
        Action::OpenProject(p) => match &p.run {
            Some(r) => format!("Opening run {} starts a new plan.", run_name(r)),
            None => format!("Opening {} starts a new plan.", p.title()),
        },
        _ => "This replaces the plan.".into(),
    };
    let mut answer = None;
    egui::Modal::new(egui::Id::unique("unsaved-plan")).show(ctx, |ui| {
        ui.heading("The plan has unsaved edits");
        ui.label(what);
        ui.label(format!("Save them to {} first?", crate::gui::views::short_path(app.plan_file.trim(), 60)));
        ui.horizontal(|ui| {
            if ui.button("Save, then open").clicked() {
                answer = Some(Answer::SaveFirst);
            }
            if ui.button("Discard edits").clicked() {
                answer = Some(Answer::Discard);
            }
            if ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                answer = Some(Answer::Cancel);
            }
        });
    });
    if let Some(a) = answer {
        app.act(Action::Confirm(a));
    }
}

/// A layer name for a small space: an ONNX node name without its leading `/` and trailing
/// operator (`/model.22/cv2.0/cv2.0.0/conv/Conv` → `model.22/cv2.0/cv2.0.0/conv`), shortened in
/// the middle to about `max` characters; the full name goes on the hover text.
pub fn short_layer(name: &str, max: usize) -> String {
    let trimmed = match name.strip_prefix('/') {
        Some(rest) => rest.rsplit_once('/').map(|(path, _op)| path).unwrap_or(rest),
        None => name,
    };
    short_path(trimmed, max)
}

/// A path shortened in the middle to about `max` characters (the file name stays whole).
pub fn short_path(path: &str, max: usize) -> String {
    let chars: Vec<char> = path.chars().collect();
    if chars.len() <= max {
        return path.to_string();
    }
    let tail = max * 2 / 3;
    let head = max.saturating_sub(tail + 1);
    let start: String = chars[..head].iter().collect();
    let end: String = chars[chars.len() - tail..].iter().collect();
    format!("{start}…{end}")
}

/// A value with `decimals`; what rounds to zero has no minus sign.
pub fn fixed(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// A signed value with `decimals`, without a minus sign on what rounds to zero.
pub fn signed(x: f64, decimals: usize) -> String {
    let s = format!("{x:+.decimals$}");
    let zero = format!("{:.decimals$}", 0.0);
    if s[1..] == zero {
        zero
    } else {
        s.replacen('-', "−", 1)
    }
}

fn menu(app: &mut App, ui: &mut egui::Ui) {
    ui.menu_button("File", |ui| {
        if ui.button("Open folder…").clicked() {
            app.act(Action::Dialog(Pick::Folder));
        }
        if ui.button("Open files…  (Ctrl+O)").clicked() {
            app.act(Action::ShowOpen);
        }
        if let Some(s) = super::app::sample_dir() {
            if ui.button("Open the sample").clicked() {
                app.act(Action::OpenFolder(s));
            }
        }
        ui.menu_button("Recent", |ui| {
            if app.recent.is_empty() {
                ui.label("nothing yet");
            }
            for r in app.recent.clone() {
                if ui.button(r.title()).on_hover_text(r.cfg.display().to_string()).clicked() {
                    app.act(Action::OpenProject(r));
                }
            }
        });
        ui.separator();
        let has = app.project.is_some();
        if ui.add_enabled(has, egui::Button::new("Load plan…")).clicked() {
            app.act(Action::Dialog(Pick::Plan));
        }
        if ui.add_enabled(has, egui::Button::new("Save plan  (Ctrl+S)")).clicked() {
            app.act(Action::SavePlan);
        }
        if ui.add_enabled(has, egui::Button::new("Save plan as…")).clicked() {
            app.act(Action::Dialog(Pick::SavePlan));
        }
        ui.menu_button("Export plan", |ui| export_buttons(app, ui));
        ui.separator();
        if ui.button("Quit  (Ctrl+Q)").clicked() {
            ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
        }
    });
    ui.menu_button("Edit", |ui| {
        let (u, r) = app.project.as_ref().map(|p| (p.can_undo(), p.can_redo())).unwrap_or_default();
        if ui.add_enabled(u, egui::Button::new("Undo  (Ctrl+Z)")).clicked() {
            app.act(Action::Undo);
        }
        if ui.add_enabled(r, egui::Button::new("Redo  (Ctrl+Shift+Z)")).clicked() {
            app.act(Action::Redo);
        }
        if ui.button("Freeze / unfreeze selected layer  (F)").clicked() {
            if let Some(a) = app.toggle_freeze_action() {
                app.act(a);
            }
        }
    });
    ui.menu_button("Help", |ui| {
        ui.label("←/→/↑/↓  select a layer");
        ui.label("+ / −  move its threshold by 1 %");
        ui.label("Shift + (+/−)  jump to the next measured point");
        ui.label("drag on the large plot  set the threshold (Shift snaps)");
        ui.label("F  freeze the layer (Suggest keeps it at 0 %)");
        ui.label("Ctrl+Z / Ctrl+Shift+Z  undo / redo");
        ui.label("Ctrl+S  save the plan;  Ctrl+O  open files;  Ctrl+Q  quit");
        ui.label("Ctrl+1 … Ctrl+4  Sensitivity, Layers, Analysis, Prune & compare");
        ui.separator();
        ui.label("MACs follow the ptflops convention; effective counts leave out dead channels and zero weights.");
    });
}

pub(super) fn export_buttons(app: &mut App, ui: &mut egui::Ui) {
    let has = app.project.is_some();
    for (k, label, suffix) in [
        (ExportFormat::Csv, "CSV (spreadsheet)", ".csv"),
        (ExportFormat::TorchPruning, "Torch-Pruning pruning_ratio_dict", ".torch_pruning.json"),
        (ExportFormat::Nni, "NNI config_list", ".nni.json"),
    ] {
        ui.horizontal(|ui| {
            if ui
                .add_enabled(has, egui::Button::new(label))
                .on_hover_text(format!("beside the plan file, as …{suffix}"))
                .clicked()
            {
                app.act(Action::ExportBesidePlan(k));
                ui.close();
            }
            if ui.add_enabled(has, egui::Button::new("…")).on_hover_text("choose the file").clicked() {
                app.act(Action::Dialog(Pick::Export(k)));
                ui.close();
            }
        });
    }
}

fn status(app: &mut App, ui: &mut egui::Ui) {
    let mut dismiss = None;
    for (i, e) in app.errors.iter().enumerate().rev().take(4) {
        ui.horizontal(|ui| {
            if ui.small_button("✕").on_hover_text("dismiss").clicked() {
                dismiss = Some(i);
            }
            ui.label(RichText::new(format!("error: {e}")).color(ui.visuals().error_fg_color));
        });
    }
    if let Some(i) = dismiss {
        app.errors.remove(i);
    }
    ui.horizontal(|ui| {
        if app.errors.len() > 1 && ui.small_button("dismiss all").clicked() {
            app.errors.clear();
        }
        if app.analysis.running {
            ui.spinner();
            let a = &app.analysis;
            let run = a.run_dir.as_deref().map(|d| format!(" → {}", run_name(d))).unwrap_or_default();
            ui.label(format!("analysis {}/{} points{run}", a.done, a.total));
        }
        if app.compare.running {
            ui.spinner();
            ui.label(compare_progress(&app.compare));
        }
        if let Some(n) = &app.notice {
            ui.label(RichText::new(n).weak());
        }
    });
}

fn open_window(app: &mut App, ctx: &egui::Context) {
    if !app.open.visible {
        return;
    }
    let mut visible = true;
    egui::Window::new("Open a project").open(&mut visible).collapsible(false).default_width(560.0).show(ctx, |ui| {
        ui.label(
            "A Darknet cfg and its checkpoint, or an ONNX file; optionally the dataset, a sensitivity run and a plan.",
        );
        egui::Grid::new("open-grid").num_columns(3).show(ui, |ui| {
            for (label, pick, field) in [
                ("cfg or .onnx", Pick::Cfg, 0),
                ("weights", Pick::Weights, 1),
                ("data.yaml", Pick::Data, 2),
                ("run folder", Pick::Run, 3),
                ("plan", Pick::OpenPlan, 4),
            ] {
                let l = ui.label(label);
                let text = match field {
                    0 => &mut app.open.cfg,
                    1 => &mut app.open.weights,
                    2 => &mut app.open.data,
                    3 => &mut app.open.run,
                    _ => &mut app.open.plan,
                };
                ui.add_sized([380.0, 20.0], egui::TextEdit::singleline(text).id_salt(("open", field)))
                    .labelled_by(l.id);
                if ui.button("Browse…").clicked() {
                    app.act(Action::Dialog(pick));
                }
                ui.end_row();
            }
        });
        ui.horizontal(|ui| {
            if ui.button("Open").clicked() {
                match app.open.paths() {
                    Ok(p) => {
                        app.open.visible = false;
                        app.act(Action::OpenProject(p));
                    }
                    Err(e) => app.errors.push(e),
                }
            }
            if ui.button("Open folder…").clicked() {
                app.act(Action::Dialog(Pick::Folder));
            }
        });
    });
    if !visible {
        app.open.visible = false;
    }
}

fn drop_hint(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if hovering {
        let painter =
            ctx.layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("prunescope-drop")));
        let rect = ctx.content_rect();
        painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(160));
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            "Drop a project folder, a cfg, a checkpoint, a run folder or a plan",
            egui::FontId::proportional(22.0),
            egui::Color32::WHITE,
        );
    }
}

/// The stage of a running prune & compare ("evaluating pruned 12/60 images"; pruning has
/// no image count).
pub(super) fn compare_progress(c: &crate::gui::app::CompareState) -> String {
    if c.stage.starts_with("evaluating") && c.total > 0 {
        format!("{} {}/{} images", c.stage, c.done, c.total)
    } else {
        format!("{}…", c.stage)
    }
}

/// Thousands separated by narrow spaces, for counts.
pub fn count(n: u64) -> String {
    crate::report::thousands(n, '\u{202f}')
}

/// A form field named by its label (for screen readers and the UI tests).
pub(super) fn field(ui: &mut egui::Ui, label: &str, widget: impl egui::Widget) -> egui::Response {
    let l = ui.label(label);
    ui.add(widget).labelled_by(l.id)
}

/// A one-line text field named by its label.
pub(super) fn text_field(ui: &mut egui::Ui, label: &str, text: &mut String, hint: &str, width: f32) -> egui::Response {
    let l = ui.label(label);
    ui.add_sized([width, 20.0], egui::TextEdit::singleline(text).hint_text(hint)).labelled_by(l.id)
}

/// How many validation images to use; 0 means all.
pub(super) fn image_limit(ui: &mut egui::Ui, limit: &mut usize) {
    let drag = egui::DragValue::new(limit).range(0..=1_000_000).custom_formatter(|v, _| {
        if v == 0.0 {
            "all".into()
        } else {
            format!("first {v}")
        }
    });
    field(ui, "images", drag);
}

/// MACs as GMac (or MMac for small models).
pub fn macs(n: u64) -> String {
    if n >= 100_000_000 {
        format!("{:.3} GMac", n as f64 / 1e9)
    } else {
        format!("{:.2} MMac", n as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::{fixed, short_layer, short_path, signed};

    #[test]
    fn onnx_layer_names_lose_the_slash_and_operator() {
        assert_eq!(short_layer("conv_12", 20), "conv_12");
        assert_eq!(short_layer("/model.0/conv/Conv", 20), "model.0/conv");
        let s = short_layer("/model.22/cv2.0/cv2.0.0/conv/Conv", 20);
        assert!(s.chars().count() <= 20 && s.starts_with("model") && s.ends_with("conv"), "{s}");
    }

    #[test]
    fn numbers_that_round_to_zero_have_no_sign() {
        assert_eq!(signed(-0.00001, 4), "0.0000");
        assert_eq!(signed(0.00001, 4), "0.0000");
        assert_eq!(signed(-0.0123, 4), "−0.0123");
        assert_eq!(signed(0.0123, 4), "+0.0123");
        assert_eq!(fixed(-0.00001, 4), "0.0000");
        assert_eq!(fixed(-0.0123, 4), "-0.0123");
        assert_eq!(fixed(0.5, 1), "0.5");
    }

    #[test]
    fn long_paths_are_shortened_in_the_middle() {
        let p = "/home/someone/experiments/yolo/sample_runs/shapes/plans/l1-params50.json";
        let s = short_path(p, 40);
        assert_eq!(s.chars().count(), 40);
        assert!(s.ends_with("plans/l1-params50.json") && s.starts_with("/home/") && s.contains('…'), "{s}");
        assert_eq!(short_path("plans/a.json", 40), "plans/a.json");
    }
}
