//! What the user asks for, from any input (keys, buttons, menus, drops, tests), as one
//! `Action`. Inputs only queue actions ([`App::act`]); the queue is applied once per frame
//! ([`App::apply_actions`]), so a key and its button take the same path.

use super::{App, Pick, Tab};
use crate::gui::state::ProjectPaths;
use crate::plan::ExportFormat;
use std::path::PathBuf;

/// The answers to "the plan has unsaved edits".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Save the plan, then go on.
    SaveFirst,
    /// Go on; the edits are lost.
    Discard,
    Cancel,
}

/// One thing the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    OpenProject(ProjectPaths),
    OpenFolder(PathBuf),
    /// Another run of the open model (a new plan for it).
    OpenRun(PathBuf),
    /// The run the loaded plan was made from, with that plan.
    OpenPlanRun,
    /// The answer to the question about unsaved plan edits.
    Confirm(Answer),
    /// Show the Open window (Ctrl+O).
    ShowOpen,
    /// Files dropped on the window.
    Dropped(Vec<PathBuf>),
    Dialog(Pick),
    SetTab(Tab),
    /// Select a layer by its index among the curves (clamped).
    Select(usize),
    /// Move the selection by this many layers (a grid row is `columns` layers).
    MoveSelection(isize),
    /// The selected layer's threshold by this many percent, or to the next measured point.
    Nudge {
        steps: i32,
        to_measured: bool,
    },
    /// Freeze or unfreeze a layer (by block); the F key and the buttons name the selected one.
    ToggleFreeze(usize),
    Undo,
    Redo,
    ClearPlan,
    Suggest,
    StartAnalysis {
        resume: bool,
    },
    CancelAnalysis,
    StartCompare,
    LoadPlan(PathBuf),
    /// Save to the plan field's file, or ask where (Ctrl+S).
    SavePlan,
    ExportBesidePlan(ExportFormat),
    Quit,
}

impl App {
    /// Queues `a`; it is applied at the end of this frame.
    pub fn act(&mut self, a: Action) {
        self.actions.push(a);
    }

    /// Applies the queued actions in order.
    pub fn apply_actions(&mut self) {
        for a in std::mem::take(&mut self.actions) {
            self.apply(a);
        }
    }

    /// Applies one action now.
    pub fn apply(&mut self, a: Action) {
        match a {
            Action::OpenProject(p) => self.open_project(p),
            Action::OpenFolder(d) => self.open_folder(&d),
            Action::OpenRun(d) => self.open_run(d),
            Action::OpenPlanRun => self.open_plan_run(),
            Action::Confirm(answer) => self.answer(answer),
            Action::ShowOpen => {
                // The window shows the open project's files (a failed load leaves its own).
                if let (Some(p), None) = (&self.project, &self.loading) {
                    if !self.open.visible {
                        self.open.fill(&p.paths);
                    }
                }
                self.open.visible = true;
            }
            Action::Dropped(paths) => self.dropped(paths),
            Action::Dialog(pick) => self.dialog(pick),
            Action::SetTab(t) => self.tab = t,
            Action::Select(i) => self.select(i),
            Action::MoveSelection(by) => self.select(self.selected.saturating_add_signed(by)),
            Action::Nudge { steps, to_measured } => self.nudge(steps, to_measured),
            Action::ToggleFreeze(block) => self.toggle_freeze(block),
            Action::Undo => self.undo(),
            Action::Redo => self.redo(),
            Action::ClearPlan => self.clear_plan(),
            Action::Suggest => self.run_suggest(),
            Action::StartAnalysis { resume } => self.start_analysis(resume),
            Action::CancelAnalysis => self.cancel_analysis(),
            Action::StartCompare => self.start_compare(),
            Action::LoadPlan(path) => self.load_plan(&path),
            Action::SavePlan => self.save_plan_here_or_ask(),
            Action::ExportBesidePlan(kind) => self.export_beside_plan(kind),
            Action::Quit => self.quit = true,
        }
    }

    /// Goes on with (or drops) the action that waits for the user's answer.
    fn answer(&mut self, answer: Answer) {
        let Some(waiting) = self.confirm.take() else { return };
        match answer {
            Answer::Discard => {
                self.discard_ok = true;
                self.apply(waiting);
                self.discard_ok = false;
            }
            Answer::SaveFirst => {
                self.after_save = Some(waiting);
                self.save_plan_here_or_ask();
            }
            Answer::Cancel => {}
        }
    }

    /// After a save: what waited for it.
    pub(super) fn saved(&mut self) {
        if let Some(a) = self.after_save.take() {
            self.apply(a);
        }
    }

    /// The selected layer's freeze toggle, as the F key and the buttons ask for it.
    pub fn toggle_freeze_action(&self) -> Option<Action> {
        self.selected_block().map(Action::ToggleFreeze)
    }

    /// The keyboard shortcuts, as actions.
    pub(super) fn keys(&mut self, ctx: &egui::Context) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let sc = |m, k| KeyboardShortcut::new(m, k);
        // Ctrl+Shift+Z before Ctrl+Z: egui matches shortcuts ignoring an extra Shift.
        let (redo, undo, redo2, save, open, quit) = ctx.input_mut(|i| {
            (
                i.consume_shortcut(&sc(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::Z)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::Y)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::S)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::O)),
                i.consume_shortcut(&sc(Modifiers::COMMAND, Key::Q)),
            )
        });
        if quit {
            self.act(Action::Quit);
        }
        let tab_keys = [Key::Num1, Key::Num2, Key::Num3, Key::Num4];
        for (k, t) in tab_keys.into_iter().zip(Tab::ALL) {
            if ctx.input_mut(|i| i.consume_shortcut(&sc(Modifiers::COMMAND, k))) {
                self.act(Action::SetTab(t));
            }
        }
        if redo || redo2 {
            self.act(Action::Redo);
        } else if undo {
            self.act(Action::Undo);
        }
        if save {
            self.act(Action::SavePlan);
        }
        if open {
            self.act(Action::ShowOpen);
        }
        if ctx.egui_wants_keyboard_input() || self.tab != Tab::Sensitivity && self.tab != Tab::Layers {
            return;
        }
        let (left, right, up, down, plus, minus, shift, freeze) = ctx.input(|i| {
            (
                i.key_pressed(Key::ArrowLeft),
                i.key_pressed(Key::ArrowRight),
                i.key_pressed(Key::ArrowUp),
                i.key_pressed(Key::ArrowDown),
                i.key_pressed(Key::Plus) || i.key_pressed(Key::Equals),
                i.key_pressed(Key::Minus),
                i.modifiers.shift,
                i.key_pressed(Key::F),
            )
        });
        let cols = if self.tab == Tab::Layers { 1 } else { self.grid_columns.max(1) } as isize;
        for (pressed, by) in [(left, -1), (right, 1), (up, -cols), (down, cols)] {
            if pressed {
                self.act(Action::MoveSelection(by));
            }
        }
        if plus {
            self.act(Action::Nudge { steps: 1, to_measured: shift });
        }
        if minus {
            self.act(Action::Nudge { steps: -1, to_measured: shift });
        }
        if freeze {
            if let Some(a) = self.toggle_freeze_action() {
                self.act(a);
            }
        }
    }
}
