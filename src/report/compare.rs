//! Comparison of two or more checkpoints of one cfg on one validation set: parameters
//! (total, non-zero, effective), MACs (dense and effective, ptflops convention), file size and
//! deflate-compressed size, mAP, P/R, per-class AP, confusion matrices, latency, and the
//! per-layer parameter table. Written as report.json, report.md and PNGs.

use crate::data::{DetectionDataset, OnBad};
use crate::eval::{self, ClassReport, EvalConfig};
use crate::metrics::confusion::ConfusionMatrix;
use crate::model::effective;
use crate::model::{parse_device, Cfg, Darknet, Graph, Layout, Weights};
use plotters::prelude::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to compare and how.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    pub cfg: PathBuf,
    pub data: PathBuf,
    pub img_size: Option<u32>,
    pub device: String,
    pub limit: Option<usize>,
    /// Timed forward passes per model (batch 1), after 3 warm-up passes.
    pub latency_runs: usize,
}

/// One layer of one model.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub layer: String,
    pub params: u64,
    pub nonzero: u64,
    /// Parameters left with dead channels and zero weights removed.
    pub effective_params: u64,
    pub effective_macs: u64,
}

/// Everything measured of one checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub label: String,
    pub weights: PathBuf,
    pub file_bytes: u64,
    /// The weights file in a deflate zip (default level).
    pub compressed_bytes: u64,
    pub compression_ratio: f64,
    pub params: u64,
    pub nonzero_params: u64,
    pub effective_params: u64,
    pub macs: u64,
    pub effective_macs: u64,
    pub map50: f64,
    pub map: f64,
    pub precision: f64,
    pub recall: f64,
    pub classes: Vec<ClassReport>,
    pub confusion: ConfusionMatrix,
    /// Median of the timed passes, batch 1, on `device`.
    pub latency_ms: f64,
    pub device: String,
    pub layers: Vec<LayerRow>,
}

/// A comparison: the reports and the class names.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub format: &'static str,
    pub cfg: PathBuf,
    pub data: PathBuf,
    pub images: usize,
    pub img_size: u32,
    pub names: Vec<String>,
    pub models: Vec<ModelReport>,
}

/// Size of `bytes` as one deflated zip entry.
pub fn compressed_size(name: &str, bytes: &[u8]) -> Result<u64, String> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(name, opts).map_err(|e| e.to_string())?;
    zip.write_all(bytes).map_err(|e| e.to_string())?;
    let out = zip.finish().map_err(|e| e.to_string())?;
    Ok(out.into_inner().len() as u64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Measures every `(label, weights)` checkpoint. `progress(model, done, total)` follows the
/// evaluations.
pub fn compare(
    c: &CompareConfig,
    models: &[(String, PathBuf)],
    progress: &mut dyn FnMut(usize, usize, usize),
) -> anyhow::Result<Comparison> {
    if models.is_empty() {
        anyhow::bail!("nothing to compare: give at least one checkpoint");
    }
    let cfg = Cfg::from_file(&c.cfg)?;
    let size = c.img_size.unwrap_or(cfg.width as u32);
    let graph = Graph::build(&cfg, 1, size as usize, size as usize)?;
    let layout = Layout::of(&cfg, &graph);
    let device = parse_device(&c.device).map_err(anyhow::Error::msg)?;
    let mut ds = DetectionDataset::open(&c.data, Some(cfg.classes()), OnBad::Skip)?;
    if let Some(n) = c.limit {
        ds.limit(n);
    }
    let ecfg = EvalConfig { img_size: size, ..Default::default() };
    let dense = effective::dense(&graph);
    let mut out = Vec::new();
    for (m, (label, path)) in models.iter().enumerate() {
        let weights = Weights::load(path, &layout)?;
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let compressed = compressed_size(&name, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let eff = effective::effective(&cfg, &graph, &layout, &weights);
        let mut layers = Vec::new();
        for keys in &layout.convs {
            let nz = weights.of_layer(keys).map_err(anyhow::Error::msg)?.count_nonzero() as u64;
            layers.push(LayerRow {
                layer: format!("conv_{}", keys.block),
                params: dense[keys.block].params,
                nonzero: nz,
                effective_params: eff.blocks[keys.block].params,
                effective_macs: eff.blocks[keys.block].macs,
            });
        }
        let net = Darknet::new(&cfg, &graph, &weights, device)?;
        let report = eval::evaluate(&net, &ds, &ecfg, &mut |d, t| {
            progress(m, d, t);
            true
        })?;
        let latency_ms = latency(&net, size, device, c.latency_runs)?;
        let total = eff.total();
        out.push(ModelReport {
            label: label.clone(),
            weights: path.clone(),
            file_bytes: bytes.len() as u64,
            compressed_bytes: compressed,
            compression_ratio: bytes.len() as f64 / compressed.max(1) as f64,
            params: graph.total_params(),
            nonzero_params: weights.count_nonzero() as u64,
            effective_params: total.params,
            macs: graph.total_macs(),
            effective_macs: total.macs,
            map50: report.map50,
            map: report.map,
            precision: report.precision,
            recall: report.recall,
            classes: report.classes.clone(),
            confusion: report.confusion.clone(),
            latency_ms,
            device: c.device.clone(),
            layers,
        });
    }
    Ok(Comparison {
        format: "prunescope.compare/1",
        cfg: c.cfg.clone(),
        data: c.data.clone(),
        images: ds.samples.len(),
        img_size: size,
        names: ds.names.clone(),
        models: out,
    })
}

fn latency(net: &Darknet, size: u32, device: tch::Device, runs: usize) -> anyhow::Result<f64> {
    let x = tch::Tensor::zeros([1, 3, size as i64, size as i64], (tch::Kind::Float, device));
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let _guard = tch::no_grad_guard();
    for _ in 0..3 {
        let _ = net.forward(&x)?;
    }
    sync();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let _ = net.forward(&x)?;
        sync();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(times))
}

fn pct(after: u64, before: u64) -> String {
    if before == 0 {
        return "–".into();
    }
    format!("{:+.1}%", 100.0 * (after as f64 / before as f64 - 1.0))
}

/// report.md.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Comparison\n\ncfg `{}`, {} images of `{}` at {} px. MACs follow the ptflops convention; \"effective\" counts what remains with zero weights and dead channels removed.\n", c.cfg.display(), c.images, c.data.display(), c.img_size);
    let _ = writeln!(s, "| model | params | non-zero | effective params | MACs | effective MACs | file | compressed (ratio) | mAP@0.5 | mAP@0.5:0.95 | P | R | latency |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let base = &c.models[0];
    for m in &c.models {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}) | {} | {} | {} ({}) | {} | {} ({:.2}×) | {:.4} | {:.4} | {:.3} | {:.3} | {:.2} ms |",
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
            m.map50,
            m.map,
            m.precision,
            m.recall,
            m.latency_ms
        );
    }
    let _ = writeln!(s, "\nLatency: median of timed batch-1 forward passes on {} (masked dense tensors: zeros are not skipped by the kernels).\n", base.device);
    let _ = write!(s, "## Per-layer parameters (non-zero)\n\n| layer | ");
    let _ = writeln!(s, "{} |", c.models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(c.models.len()));
    for (i, l) in base.layers.iter().enumerate() {
        let cells: Vec<String> = c.models.iter().map(|m| m.layers[i].nonzero.to_string()).collect();
        let _ = writeln!(s, "| {} | {} |", l.layer, cells.join(" | "));
    }
    let _ = write!(s, "\n## Per-class AP@0.5\n\n| class | ");
    let _ = writeln!(s, "{} |", c.models.iter().map(|m| m.label.as_str()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(s, "|---|{}", "---:|".repeat(c.models.len()));
    for (i, name) in c.names.iter().enumerate() {
        let cells: Vec<String> =
            c.models.iter().map(|m| m.classes.get(i).map(|k| format!("{:.4}", k.ap50)).unwrap_or_default()).collect();
        let _ = writeln!(s, "| {name} | {} |", cells.join(" | "));
    }
    let _ = writeln!(s, "\n![confusion matrices](confusion.png)\n\n![per-layer parameters](layers.png)");
    s
}

/// The confusion matrices side by side, counts in the cells (rows predicted, columns true).
pub fn confusion_png(c: &Comparison, path: &Path) -> Result<(), String> {
    let n = c.names.len() + 1;
    let cell = 46u32;
    let (left, top) = (90u32, 70u32);
    let panel = left + cell * n as u32 + 30;
    let size = (panel * c.models.len() as u32, top + cell * n as u32 + 40);
    let family = super::plot::font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| format!("{}: cannot draw: {e}", path.display());
    root.fill(&WHITE).map_err(e)?;
    let mut labels: Vec<String> = c.names.clone();
    labels.push("background".into());
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
            let short: String = labels[r].chars().take(10).collect();
            root.draw_text(
                &short,
                &(family, 12).into_font().color(&BLACK),
                (x0 + 8, top as i32 + (r as u32 * cell) as i32 + 16),
            )
            .map_err(e)?;
        }
        for (col, l) in labels.iter().enumerate() {
            let short: String = l.chars().take(6).collect();
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
pub fn layers_png(c: &Comparison, path: &Path) -> Result<(), String> {
    let family = super::plot::font();
    let layers = &c.models[0].layers;
    let root = BitMapBackend::new(path, (120 + 70 * layers.len() as u32, 420)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| format!("{}: cannot draw: {e}", path.display());
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

/// A report folder replaces an earlier report whole (`fsio::write_dir_via`), so it must be new,
/// empty or an earlier report (it holds report.json), and hold none of the `inputs`.
pub fn check_report_dir(out: &Path, inputs: &[&Path]) -> Result<(), String> {
    if out.is_file() {
        return Err(format!("{}: this is a file; the report is a folder", out.display()));
    }
    let non_empty = std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !out.join("report.json").is_file() {
        return Err(format!(
            "{}: the folder exists and holds no earlier report (report.json); the report replaces its folder whole, so choose a new or empty folder",
            out.display()
        ));
    }
    if let Ok(o) = std::fs::canonicalize(out) {
        for p in inputs {
            if std::fs::canonicalize(p).is_ok_and(|p| p.starts_with(&o)) {
                return Err(format!(
                    "{}: the input {} is inside this folder, which the report replaces",
                    out.display(),
                    p.display()
                ));
            }
        }
    }
    Ok(())
}

/// Writes report.json, report.md, confusion.png and layers.png into the folder `dir`. Callers
/// build a report in a temporary folder (`fsio::write_dir_via`), so the report folder is
/// complete or absent, never a mix of two runs.
pub fn write_files(c: &Comparison, dir: &Path) -> Result<(), crate::fsio::WriteError> {
    let w = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| crate::fsio::IoError::new(&p, "cannot write", e))
    };
    w("report.json", serde_json::to_string_pretty(c).map_err(|e| e.to_string())? + "\n")?;
    w("report.md", markdown(c))?;
    confusion_png(c, &dir.join("confusion.png"))?;
    layers_png(c, &dir.join("layers.png"))?;
    Ok(())
}
