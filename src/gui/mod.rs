//! The desktop explorer (eframe/egui). The engine never imports this module; everything
//! here calls the same engine functions as the CLI, on worker threads.

pub mod app;
pub mod state;
pub mod views;
pub mod widgets;
pub mod worker;

pub use app::{App, Persisted};
pub use state::{Project, ProjectPaths};

const STORAGE_KEY: &str = "prunescope";

/// The eframe shell around [`App`]: persistence and the frame call.
struct Shell {
    app: App,
}

impl eframe::App for Shell {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.app.frame(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.app.persisted());
    }
}

/// Installs what the explorer draws with: the bundled DejaVu Sans as the fallback for the
/// arrows, math and shape symbols that egui's default font lacks.
pub fn setup_context(ctx: &egui::Context) {
    use egui::epaint::text::{FontInsert, FontPriority, InsertFontFamily};
    let data = egui::FontData::from_static(include_bytes!("../../assets/fonts/DejaVuSans.ttf"));
    let families = [egui::FontFamily::Proportional, egui::FontFamily::Monospace]
        .into_iter()
        .map(|family| InsertFontFamily { family, priority: FontPriority::Lowest })
        .collect();
    ctx.add_font(FontInsert::new("DejaVuSans", data, families));
}

/// Opens the explorer window; `start` opens those files instead of the last project.
pub fn run(start: Option<ProjectPaths>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("prunescope")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([900.0, 600.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "prunescope",
        options,
        Box::new(move |cc| {
            setup_context(&cc.egui_ctx);
            let persisted: Option<Persisted> = cc.storage.and_then(|s| eframe::get_value(s, STORAGE_KEY));
            Ok(Box::new(Shell { app: App::new(Some(cc.egui_ctx.clone()), persisted, start) }))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
