//! Reports and exports: sensitivity tables and plots, and comparisons of checkpoints.

pub mod compare;
pub mod plot;
pub mod sensitivity;

use std::path::PathBuf;

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Io(#[from] crate::fsio::IoError),
    /// plotters failed (its errors are generic over the backend, so kept as text).
    #[error("{}: cannot draw: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    #[error("{}: cannot serialise the report: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The report folder cannot take the report (a file, another folder, holds an input).
    #[error("{}: {message}", path.display())]
    Folder { path: PathBuf, message: String },
}

impl ReportError {
    fn draw(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        ReportError::Draw { path: path.to_path_buf(), message: e.to_string() }
    }
}

/// 61949149 -> "61,949,149" (with `sep` between groups of three digits).
pub fn thousands(v: u64, sep: char) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// Seconds as `42s`, `3m05s` or `1h02m`, for progress lines and ETAs.
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
