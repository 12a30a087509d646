//! What the explorer's UI tests share: the harness at the laptop size every view must fit,
//! waiting for the workers, and a project fully opened.

use egui_kittest::Harness;
use prunescope::gui::App;
use std::time::{Duration, Instant};

/// Every view must be usable at 1280×800 (a laptop screen): the tests drive them there.
pub const SIZE: egui::Vec2 = egui::Vec2::new(1280.0, 800.0);

/// The explorer in a kittest harness of [`SIZE`].
pub fn harness_of(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size(SIZE)
        .with_context_setup(prunescope::gui::setup_context)
        .build_ui_state(|ui, app: &mut App| app.frame(ui), app)
}

/// Steps frames until `done` holds (workers report between frames).
pub fn wait(h: &mut Harness<'static, App>, what: &str, done: impl Fn(&App) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if done(h.state()) {
            // A few more frames so that what arrived is also drawn.
            h.run_steps(3);
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}; errors: {:?}",
            h.state().errors
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for the project, its totals and the selected layer's weight statistics.
pub fn opened(h: &mut Harness<'static, App>) {
    wait(h, "the project", |a| a.loading.is_none() && (a.project.is_some() || !a.errors.is_empty()));
    assert!(h.state().errors.is_empty(), "{:?}", h.state().errors);
    wait(h, "the totals", |a| a.totals_current());
    // The selected layer's weight statistics (a spinner until they arrive).
    wait(h, "the layer statistics", |a| a.layer_count() == 0 || a.stats.is_some());
}

/// Drags the selected layer's threshold across its large plot, as a mouse does, from
/// `from` to `to` of the plot's width.
pub fn drag_threshold(h: &mut Harness<'static, App>, from: f32, to: f32) {
    use egui_kittest::kittest::Queryable;
    let rect = h.get_by_label("threshold plot").rect();
    let at = |f: f32| egui::pos2(rect.left() + rect.width() * f, rect.center().y);
    let (from, to) = (at(from), at(to));
    h.hover_at(from);
    h.step();
    h.drag_at(from);
    h.run_steps(2);
    h.hover_at(to);
    h.run_steps(2);
    h.drop_at(to);
    h.step();
}
