//! Shared plotting set-up: PNGs drawn with plotters and the bundled DejaVu Sans font (no
//! system fonts are looked up, so reports look the same everywhere).

use std::sync::Once;

static FONT: Once = Once::new();

/// The font family name reports use; registered on first use.
pub fn font() -> &'static str {
    FONT.call_once(|| {
        // The font is part of the binary; registering it cannot fail on valid TTF bytes.
        let _ = plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
        );
    });
    "sans-serif"
}
