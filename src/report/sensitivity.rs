//! The finished analysis as `sensitivity.csv` (one row per point, the baseline first) and
//! `sensitivity.png` (one small plot per layer: metric vs sparsity with the baseline line).

use crate::sensitivity::{Metric, StoredRun};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// The CSV text: `layer,block,sparsity,map50,map,precision,recall,zeroed,seconds`.
pub fn csv(run: &StoredRun) -> String {
    let mut out = String::from("layer,block,sparsity,map50,map,precision,recall,zeroed,seconds\n");
    if let Some((m, s)) = &run.baseline {
        let _ = writeln!(out, "baseline,,0,{},{},{},{},0,{s:.3}", m.map50, m.map, m.precision, m.recall);
    }
    for p in sorted_points(run) {
        let m = &p.metrics;
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.3}",
            p.layer, p.block, p.sparsity, m.map50, m.map, m.precision, m.recall, p.zeroed, p.seconds
        );
    }
    out
}

fn sorted_points(run: &StoredRun) -> Vec<&crate::sensitivity::PointRecord> {
    let mut points: Vec<_> = run.points.iter().collect();
    points.sort_by(|a, b| a.block.cmp(&b.block).then(a.sparsity.total_cmp(&b.sparsity)));
    points
}

/// Curves of one layer: (sparsity %, metric) with the baseline at 0 %.
pub fn curve(run: &StoredRun, layer: &str, metric: Metric) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = run.baseline.iter().map(|(m, _)| (0.0, m.get(metric))).collect();
    pts.extend(
        sorted_points(run)
            .into_iter()
            .filter(|p| p.layer == layer)
            .map(|p| (p.sparsity * 100.0, p.metrics.get(metric))),
    );
    pts
}

/// Draws the grid of per-layer plots into a PNG at `path`; `thresholds` (layer, sparsity)
/// adds each layer's chosen sparsity as a vertical line.
pub fn png(
    run: &StoredRun,
    metric: Metric,
    path: &Path,
    thresholds: &[(String, f64)],
) -> Result<(), super::ReportError> {
    let layers = &run.header.layers;
    let n = layers.len().max(1);
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let rows = n.div_ceil(cols);
    let (cell_w, cell_h) = (300u32, 220u32);
    let title_h = 40u32;
    let size = (cols as u32 * cell_w, rows as u32 * cell_h + title_h);
    let family = super::plot::font();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| super::ReportError::draw(path, e);
    root.fill(&WHITE).map_err(e)?;
    let (title, body) = root.split_vertically(title_h);
    let baseline = run.baseline.map(|(m, _)| m.get(metric));
    let heading = format!(
        "{} vs sparsity, {} pruning, one layer at a time (baseline {})",
        metric.label(),
        run.header.method,
        baseline.map(|b| format!("{b:.4}")).unwrap_or_else(|| "–".into())
    );
    title.draw_text(&heading, &(family, 18).into_font().color(&BLACK), (10, 10)).map_err(e)?;
    let top = run.points.iter().map(|p| p.metrics.get(metric)).chain(baseline).fold(0.0f64, f64::max).max(1e-3) * 1.08;
    for (cell, layer) in body.split_evenly((rows, cols)).iter().zip(layers) {
        let mut chart = ChartBuilder::on(cell)
            .caption(layer, (family, 15))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..100.0, 0.0..top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|v| format!("{v:.0}%"))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .label_style((family, 11))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        if let Some(b) = baseline {
            chart
                .draw_series(DashedLineSeries::new([(0.0, b), (100.0, b)], 6, 4, RGBColor(200, 60, 60).stroke_width(1)))
                .map_err(e)?;
        }
        let pts = curve(run, layer, metric);
        let blue = RGBColor(40, 90, 190);
        chart.draw_series(LineSeries::new(pts.iter().copied(), blue.stroke_width(2))).map_err(e)?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, blue.filled()))).map_err(e)?;
        if let Some((_, s)) = thresholds.iter().find(|(l, _)| l == layer) {
            let x = s * 100.0;
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, top)], RGBColor(230, 140, 20).stroke_width(2)))
                .map_err(e)?;
        }
    }
    root.present().map_err(e)?;
    Ok(())
}

/// Writes sensitivity.csv and sensitivity.png into `dir`.
pub fn write(run: &StoredRun, dir: &Path) -> Result<(), super::ReportError> {
    crate::fsio::write_atomic(&dir.join("sensitivity.csv"), csv(run))?;
    crate::fsio::write_via(&dir.join("sensitivity.png"), |tmp| png(run, run.header.metric, tmp, &[]))
}
