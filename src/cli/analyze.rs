//! `prunescope analyze`: the layer-wise sensitivity analysis with a progress bar; writes the
//! run store, sensitivity.csv and sensitivity.png. `prunescope merge` joins shard runs.

use crate::prune::Method;
use crate::report;
use crate::sensitivity::{self, merge, store, AnalysisConfig, Event, Metric, Shard, StoredRun};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Darknet cfg of the model.
    #[arg(long)]
    pub cfg: PathBuf,
    /// Weights (.weights, .pth or .safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// Validation data (.data, data.yaml, COCO .json, image list or folder).
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder (run.json, points.jsonl, sensitivity.csv, sensitivity.png).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "l1")]
    pub method: Method,
    /// Sparsities as percents (5,10,20) or fractions (0.05,0.1).
    #[arg(long, value_delimiter = ',', default_value = "5,10,20,30,40,50,60,70,80,88")]
    pub sparsities: Vec<f64>,
    /// Layer name patterns, comma-separated (`conv_1*`, `conv_?`, `!conv_0` excludes); default: all.
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Also analyse the convolutions feeding the yolo heads (excluded by default: usually left dense).
    #[arg(long)]
    pub include_heads: bool,
    /// The metric plotted and used for thresholds (all are stored).
    #[arg(long, value_enum, default_value = "map50")]
    pub metric: Metric,
    /// Worker threads, each with its own model copy (default: one per GPU, else one).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Only the first N validation images (in sorted order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Model input size (multiple of 32); default: the cfg's width.
    #[arg(long)]
    pub img_size: Option<u32>,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Memory for cached activations (e.g. 2GiB, 512MiB); past it they are recomputed.
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    pub cache_mem: u64,
    /// Continue an interrupted run in --out without redoing its finished points.
    #[arg(long)]
    pub resume: bool,
    /// Compute only part i of n of the grid (0-based), e.g. 0/4; join with `prunescope merge`.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// `512MiB`, `2GiB`, `100M`, `1G` or a plain byte count.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| format!("`{s}`: expected a size such as 2GiB, 512MiB or 1000000"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use KiB, MiB or GiB)")),
    };
    Ok((v * mult as f64) as u64)
}

/// Percent lists (any value ≥ 1) become fractions.
pub fn fractions(values: &[f64]) -> Vec<f64> {
    if values.iter().any(|&v| v >= 1.0) {
        values.iter().map(|v| v / 100.0).collect()
    } else {
        values.to_vec()
    }
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let config = AnalysisConfig {
        cfg: a.cfg.clone(),
        weights: a.weights.clone(),
        data: a.data.clone(),
        out: a.out.clone(),
        method: a.method,
        sparsities: fractions(&a.sparsities),
        layers: a.layers.clone(),
        include_heads: a.include_heads,
        metric: a.metric,
        workers: a.workers,
        device: a.device.clone(),
        limit: a.limit,
        img_size: a.img_size,
        batch: a.batch.max(1),
        cache_mem: a.cache_mem,
        resume: a.resume,
        shard: a.shard,
        ..Default::default()
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let cancel = AtomicBool::new(false);
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} points  {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("analyze");
    let result = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let r = sensitivity::run(&config, &tx, &cancel);
            drop(tx);
            r
        });
        for event in rx.iter() {
            match event {
                Event::Started { total, already_done, layers, .. } => {
                    bar.set_length(total as u64);
                    bar.set_position(already_done as u64);
                    let resumed = if already_done > 0 {
                        format!(" ({already_done} already done, resuming)")
                    } else {
                        String::new()
                    };
                    bar.println(format!(
                        "{} layers × {} sparsities = {total} points{resumed}",
                        layers.len(),
                        config.sparsities.len()
                    ));
                }
                Event::Baseline { metrics, .. } => bar.println(format!(
                    "baseline: mAP@0.5 {:.4}  mAP@0.5:0.95 {:.4}  P {:.4}  R {:.4}",
                    metrics.map50, metrics.map, metrics.precision, metrics.recall
                )),
                Event::Point(p) => bar.set_message(format!("last: {} @ {:.0}%", p.layer, p.sparsity * 100.0)),
                Event::Progress { done, images_per_s, eta_s, .. } => {
                    bar.set_position(done as u64);
                    let eta = eta_s.map(|e| format!("ETA {}", crate::report::duration(e))).unwrap_or_default();
                    bar.set_prefix(format!("analyze {images_per_s:.0} img/s {eta}"));
                }
                Event::Warning(w) => bar.println(format!("warning: {w}")),
                Event::Error(e) => bar.println(format!("error: {e}")),
                Event::Finished(_) | Event::Cancelled => {}
            }
        }
        worker.join().map_err(|_| anyhow::anyhow!("the analysis thread panicked"))
    })?;
    bar.finish_and_clear();
    let summary = result?;
    let run = store::read(&config.out)?;
    report::sensitivity::write(&run, &config.out).map_err(anyhow::Error::msg)?;
    print!("{}", table(&run));
    let t = &summary.timing;
    println!(
        "{} points computed ({} resumed) on {} images in {}: forward {:.1} s, NMS {:.1} s, metrics {:.1} s, activations {:.1} s, baseline {:.1} s, decode {:.1} s",
        summary.computed_points,
        summary.resumed_points,
        summary.images,
        crate::report::duration(t.wall_s),
        t.forward_s,
        t.nms_s,
        t.metrics_s,
        t.activations_s,
        t.baseline_s,
        t.decode_s
    );
    println!(
        "activation cache: {:.1} MiB, {} of {} batches",
        summary.cache_bytes as f64 / 1048576.0,
        summary.cached_batches,
        summary.batches
    );
    if let Some(mib) = peak_rss_mib() {
        println!("peak memory (RSS): {mib:.0} MiB");
    }
    println!("wrote {}/{{run.json, points.jsonl, sensitivity.csv, sensitivity.png}}", config.out.display());
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Layers × sparsities of the run's metric, as text.
pub fn table(run: &StoredRun) -> String {
    let h = &run.header;
    let metric = h.metric;
    let mut out = format!("{} by layer and sparsity", metric.label());
    if let Some((b, _)) = &run.baseline {
        out.push_str(&format!(" (baseline {:.4})", b.get(metric)));
    }
    out.push_str(&format!("\n{:<10}", "layer"));
    for s in &h.sparsities {
        out.push_str(&format!("{:>7}", format!("{:.0}%", s * 100.0)));
    }
    out.push('\n');
    for layer in &h.layers {
        out.push_str(&format!("{layer:<10}"));
        for s in &h.sparsities {
            match run.points.iter().find(|p| &p.layer == layer && p.sparsity == *s) {
                Some(p) => out.push_str(&format!("{:>7.3}", p.metrics.get(metric))),
                None => out.push_str(&format!("{:>7}", "·")),
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shard run folders (all n of them).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// The merged run folder.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run_merge(a: &MergeArgs) -> anyhow::Result<()> {
    let run = merge::merge(&a.shards, &a.out)?;
    report::sensitivity::write(&run, &a.out).map_err(anyhow::Error::msg)?;
    print!("{}", table(&run));
    println!("merged {} shards into {}", a.shards.len(), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_percents() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("2 parsecs").is_err());
        assert_eq!(fractions(&[5.0, 50.0]), vec![0.05, 0.5]);
        assert_eq!(fractions(&[0.05, 0.5]), vec![0.05, 0.5]);
    }
}
