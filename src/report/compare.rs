//! The comparison report (`eval::compare`) as files: report.json, report.md, confusion.png and
//! layers.png.

use super::ReportError;
use crate::eval::compare::Comparison;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

fn pct(after: u64, before: u64) -> String {
    if before == 0 {
        return "–".into();
    }
    format!("{:+.1}%", 100.0 * (after as f64 / before as f64 - 1.0))
}

/// report.md.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Comparison\n\nmodel `{}`, {} images of `{}` at {} px ({} preprocessing). MACs follow the ptflops convention; \"effective\" counts what remains with zero weights and dead channels removed.\n", c.cfg.display(), c.images, c.data.display(), c.img_size, c.preprocess);
    let classifier = c.is_classifier();
    let quality = if classifier { "top-1 | top-5" } else { "mAP@0.5 | mAP@0.5:0.95" };
    let _ = writeln!(s, "| model | params | non-zero | effective params | MACs | effective MACs | file | compressed (ratio) | {quality} | P | R | latency |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = &c.models[0];
    for m in &c.models {
        let (q1, q2) =
            if classifier { (m.top1.unwrap_or(f64::NAN), m.top5.unwrap_or(f64::NAN)) } else { (m.map50, m.map) };
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}) | {} | {} | {} ({}) | {} | {} ({:.2}×) | {:.4} | {:.4} | {:.3} | {:.3} | {} |",
            m.label,
            m.params,
            m.nonzero_params,
            pct(m.nonzero_params, base.nonzero_params),
            m.effective_params,
            m.macs,
            m.effective_macs,
            pct(m.effective_macs, base.effective_macs),
            m.file_bytes,
            m.compressed_bytes,
            m.compression_ratio,
            q1,
            q2,
            m.precision,
            m.recall,
            m.latency_ms.map(|v| format!("{v:.2} ms")).unwrap_or_else(|| "not measured".into())
        );
    }
    if !classifier {
        let _ = writeln!(
            s,
            "\nmAP@0.5 and mAP@0.5:0.95 are pycocotools'. In Ultralytics' convention (what `yolo val` prints: its matching, 101-point AP): {}.",
            c.models
                .iter()
                .map(|m| format!(
                    "{} mAP50 {:.4}, mAP50-95 {:.4}",
                    m.label,
                    m.ultralytics_map50.unwrap_or(f64::NAN),
                    m.ultralytics_map.unwrap_or(f64::NAN)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let _ = writeln!(s, "\nLatency: median of timed batch-1 forward passes on {}. Pruned weights are masked: the zeros are stored and run densely, so the file size and the latency do not shrink (latency differences are run-to-run noise); the compressed size and the effective counts show what the zeros save.\n", base.device);
    let _ = write!(s, "## Per-layer parameters (non-zero)\n\n| layer | ");
    let _ = writeln!(s, "{} |", c.models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(c.models.len()));
    for (i, l) in base.layers.iter().enumerate() {
        let cells: Vec<String> = c.models.iter().map(|m| m.layers[i].nonzero.to_string()).collect();
        let _ = writeln!(s, "| {} | {} |", l.layer, cells.join(" | "));
    }
    let per_class = if classifier { "recall (top-1 accuracy of the class)" } else { "AP@0.5" };
    let _ = write!(s, "\n## Per-class {per_class}\n\n| class | ");
    let _ = writeln!(s, "{} |", c.models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(c.models.len()));
    for (i, name) in c.names.iter().enumerate() {
        let value = |k: &crate::eval::ClassReport| if classifier { k.recall } else { k.ap50 };
        let cells: Vec<String> =
            c.models.iter().map(|m| m.classes.get(i).map(|k| format!("{:.4}", value(k))).unwrap_or_default()).collect();
        let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
    }
    let _ = writeln!(s, "\n![confusion matrices](confusion.png)\n\n![per-layer parameters](layers.png)");
    s
}

/// `name` in at most `n` characters: its start and its end around an ellipsis, so that names
/// that differ at the end (`blunt-star4`, `blunt-star5`) stay apart.
fn abbreviate(name: &str, n: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= n {
        return name.to_string();
    }
    let tail = (n - 1) / 2;
    let head = n - 1 - tail;
    chars[..head].iter().chain(['…'].iter()).chain(&chars[chars.len() - tail..]).collect()
}

/// The confusion matrices side by side, counts in the cells (rows predicted, columns true).
pub fn confusion_png(c: &Comparison, path: &Path) -> Result<(), super::ReportError> {
    let labels = c.confusion_labels();
    let n = labels.len();
    let cell = 46u32;
    let (left, top) = (110u32, 70u32);
    let panel = left + cell * n as u32 + 30;
    let size = (panel * c.models.len() as u32, top + cell * n as u32 + 40);
    let family = super::plot::font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| super::ReportError::draw(path, e);
    root.fill(&WHITE).map_err(e)?;
    for (k, m) in c.models.iter().enumerate() {
        let x0 = (k as u32 * panel) as i32;
        let title = format!("{} (rows predicted, columns true)", m.label);
        root.draw_text(&title, &(family, 15).into_font().color(&BLACK), (x0 + 10, 10)).map_err(e)?;
        let max = m.confusion.counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
        for (r, row) in m.confusion.counts.iter().enumerate() {
            for (col, &v) in row.iter().enumerate() {
                let (x, y) = (x0 + left as i32 + (col as u32 * cell) as i32, top as i32 + (r as u32 * cell) as i32);
                let t = (v as f64 / max).sqrt();
                let shade = (255.0 - 200.0 * t) as u8;
                let color = RGBColor(shade, shade, 255);
                root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], color.filled())).map_err(e)?;
                let tc = if t > 0.6 { WHITE } else { BLACK };
                root.draw_text(&v.to_string(), &(family, 13).into_font().color(&tc), (x + 6, y + 16)).map_err(e)?;
            }
            let short = abbreviate(&labels[r], 14);
            root.draw_text(
                &short,
                &(family, 12).into_font().color(&BLACK),
                (x0 + 8, top as i32 + (r as u32 * cell) as i32 + 16),
            )
            .map_err(e)?;
        }
        for (col, l) in labels.iter().enumerate() {
            let short = abbreviate(l, 7);
            root.draw_text(
                &short,
                &(family, 11).into_font().color(&BLACK),
                (x0 + left as i32 + (col as u32 * cell) as i32 + 2, top as i32 - 16),
            )
            .map_err(e)?;
        }
    }
    root.present().map_err(e)
}

/// Non-zero parameters per layer, one bar per model.
pub fn layers_png(c: &Comparison, path: &Path) -> Result<(), ReportError> {
    let family = super::plot::font();
    let layers = &c.models[0].layers;
    let root = BitMapBackend::new(path, (120 + 70 * layers.len() as u32, 420)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| super::ReportError::draw(path, e);
    root.fill(&WHITE).map_err(e)?;
    let top = layers.iter().map(|l| l.params).max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("non-zero parameters per layer", (family, 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5..layers.len() as f64 - 0.5, 0.0..top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(layers.len())
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 {
                layers.get(i as usize).map(|l| l.layer.clone()).unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .label_style((family, 11))
        .draw()
        .map_err(e)?;
    let colors = [RGBColor(40, 90, 190), RGBColor(220, 120, 40), RGBColor(60, 160, 80), RGBColor(150, 60, 160)];
    let w = 0.8 / c.models.len() as f64;
    for (k, m) in c.models.iter().enumerate() {
        let color = colors[k % colors.len()];
        chart
            .draw_series(m.layers.iter().enumerate().map(|(i, l)| {
                let x = i as f64 - 0.4 + k as f64 * w;
                Rectangle::new([(x, 0.0), (x + w, l.nonzero as f64)], color.filled())
            }))
            .map_err(e)?
            .label(m.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart.configure_series_labels().label_font((family, 12)).border_style(BLACK).draw().map_err(e)?;
    root.present().map_err(e)
}

/// The files a comparison report folder holds (with `pruned.*` from the explorer).
pub const REPORT_FILES: [&str; 6] =
    ["report.json", "report.md", "confusion.png", "layers.png", "curves.png", "plan.json"];

/// A report folder replaces an earlier report whole (`fsio::write_dir_via`), so it must be new,
/// empty or an earlier report (it holds report.json), and hold none of the `inputs`.
pub fn check_report_dir(out: &Path, inputs: &[&Path]) -> Result<(), ReportError> {
    let folder = |message: String| ReportError::Folder { path: out.to_path_buf(), message };
    if out.is_file() {
        return Err(folder("this is a file; the report is a folder".into()));
    }
    let non_empty = crate::fsio::non_empty_dir(out);
    if non_empty && !out.join("report.json").is_file() {
        return Err(folder(
            "the folder exists and holds no earlier report (report.json); the report replaces its folder whole, so choose a new or empty folder".into(),
        ));
    }
    // An earlier report is replaced whole: files someone added to it would go with it.
    let ours = |name: &str| REPORT_FILES.contains(&name) || name.starts_with("pruned.") || name.starts_with('.');
    let foreign: Vec<String> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| !ours(n))
        .collect();
    if !foreign.is_empty() {
        return Err(folder(format!(
            "the earlier report here also holds {} (not written by a comparison), which replacing the report would delete: move it away or choose another folder",
            foreign.join(", ")
        )));
    }
    if let Ok(o) = std::fs::canonicalize(out) {
        for p in inputs {
            if std::fs::canonicalize(p).is_ok_and(|p| p.starts_with(&o)) {
                return Err(folder(format!(
                    "the input {} is inside this folder, which the report replaces",
                    p.display()
                )));
            }
        }
    }
    Ok(())
}

/// Writes report.json, report.md, confusion.png and layers.png into the folder `dir`. Callers
/// build a report in a temporary folder (`fsio::write_dir_via`), so the report folder is
/// complete or absent, never a mix of two runs.
pub fn write_files(c: &Comparison, dir: &Path) -> Result<(), ReportError> {
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| crate::fsio::IoError::new(&p, "cannot write", e))
    };
    let json = serde_json::to_string_pretty(c)
        .map_err(|source| ReportError::Json { path: dir.join("report.json"), source })?;
    w("report.json", json + "\n")?;
    w("report.md", markdown(c))?;
    confusion_png(c, &dir.join("confusion.png"))?;
    layers_png(c, &dir.join("layers.png"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviations_keep_both_ends() {
        assert_eq!(abbreviate("blunt-star4", 7), "blu…ar4");
        assert_eq!(abbreviate("circle", 7), "circle");
        assert_eq!(abbreviate("background", 14), "background");
    }
}
