//! `prunescope analyze`: the layer-wise sensitivity analysis with a progress bar; writes the
//! run store, sensitivity.csv and sensitivity.png. `prunescope merge` joins shard runs.

use crate::data::preprocess::ClassifyPreset;
use crate::prune::Method;
use crate::quantity;
use crate::report;
use crate::sensitivity::{self, merge, store, AnalysisConfig, Event, Metric, Shard, StoredRun};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Darknet cfg of the model (with --weights).
    #[arg(long, required_unless_present = "model", conflicts_with = "model", requires = "weights")]
    pub cfg: Option<PathBuf>,
    /// Weights (.weights, .pth or .safetensors).
    #[arg(long, requires = "cfg")]
    pub weights: Option<PathBuf>,
    /// An ONNX model instead of --cfg/--weights (an Ultralytics detector: its task, names,
    /// input size from its metadata).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The task of an ONNX file whose metadata does not say it.
    #[arg(long, requires = "model", value_parser = ["detect", "pose", "classify"])]
    pub task: Option<String>,
    /// Validation data (.data, data.yaml, COCO .json, image list or folder).
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder (run.json, points.jsonl, sensitivity.csv, sensitivity.png).
    #[arg(long)]
    pub out: PathBuf,
    /// l1: unstructured (smallest |w|); l1-filter / l2-filter: whole output filters with the
    /// smallest L1 / L2 norm.
    #[arg(long, default_value = "l1", value_parser = super::choice::<Method>())]
    pub method: Method,
    /// Sparsities as percents (5,10,20 or 5%,10%) or fractions (0.05,0.1), not mixed.
    #[arg(long, default_value = "5,10,20,30,40,50,60,70,80,88", value_parser = quantity::sparsities)]
    pub sparsities: quantity::Sparsities,
    /// Layer name patterns, comma-separated (`conv_1*`, `conv_?`, `!conv_0` excludes); default: all.
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Also analyse the convolutions feeding the yolo heads (excluded by default: usually left dense).
    #[arg(long)]
    pub include_heads: bool,
    /// The metric plotted and used for thresholds (all are stored).
    /// Detectors: map50 (COCO mAP@0.5), map (mAP@0.5:0.95), precision or recall (at
    /// confidence 0.25), ultralytics-map50 or ultralytics-map (mAP in `yolo val`'s convention).
    /// Classifiers: top1, top5, precision or recall (of the top-1 class).
    #[arg(long, default_value = "map50", value_parser = super::choice::<Metric>())]
    pub metric: Metric,
    /// A classifier's input transform: torchvision (resize to size/0.875, centre crop,
    /// ImageNet mean/std) or ultralytics (resize to size, centre crop, /255); default:
    /// ultralytics for Ultralytics exports, else torchvision.
    #[arg(long, value_parser = super::choice::<ClassifyPreset>())]
    pub preprocess: Option<ClassifyPreset>,
    /// Worker threads, each with its own model copy (default: one per GPU, else one).
    #[arg(long, default_value_t = 0, value_parser = quantity::workers)]
    pub workers: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Only the first N validation images (in sorted order).
    #[arg(long, value_parser = quantity::limit)]
    pub limit: Option<usize>,
    /// Model input size (multiple of 32); default: the cfg's width.
    #[arg(long, value_parser = quantity::img_size)]
    pub img_size: Option<u32>,
    #[arg(long, default_value_t = 8, value_parser = quantity::batch)]
    pub batch: usize,
    /// Memory for decoded images and cached activations together (e.g. 2GiB, 512MiB); past it
    /// activations are recomputed and images decoded again.
    #[arg(long, default_value = "2GiB", value_parser = quantity::bytes)]
    pub cache_mem: u64,
    /// Continue an interrupted run in --out without redoing its finished points.
    #[arg(long)]
    pub resume: bool,
    /// Compute only part i of n of the grid (0-based), e.g. 0/4; join with `prunescope merge`.
    #[arg(long)]
    pub shard: Option<Shard>,
}

/// How often `analyze` prints a progress line when stderr is no terminal (no bar is drawn).
const PROGRESS_LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

pub fn run(a: &Args) -> anyhow::Result<()> {
    let config = AnalysisConfig {
        cfg: a.cfg.clone().unwrap_or_default(),
        weights: a.weights.clone().unwrap_or_default(),
        model: a.model.clone(),
        task: a.task.clone(),
        data: a.data.clone(),
        out: a.out.clone(),
        method: a.method,
        sparsities: a.sparsities.0.clone(),
        layers: a.layers.clone(),
        include_heads: a.include_heads,
        metric: a.metric,
        preprocess: a.preprocess,
        workers: a.workers,
        device: a.device.clone(),
        limit: a.limit,
        img_size: a.img_size,
        batch: a.batch,
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
    // Lines for the log: around the bar on a terminal, and also when stderr is no terminal (a
    // batch job's log), where the bar draws nothing and `bar.println` would print nothing.
    let say = |line: String| bar.suspend(|| eprintln!("{line}"));
    let mut last_line: Option<std::time::Instant> = None;
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
                    say(format!(
                        "{} layers × {} sparsities = {total} points{resumed}",
                        layers.len(),
                        config.sparsities.len()
                    ));
                }
                Event::Baseline { metrics, .. } => say(match (metrics.top1, metrics.top5) {
                    (Some(top1), Some(top5)) => format!(
                        "baseline: top-1 {top1:.4}  top-5 {top5:.4}  P {:.4}  R {:.4}",
                        metrics.precision, metrics.recall
                    ),
                    _ => format!(
                        "baseline: mAP@0.5 {:.4}  mAP@0.5:0.95 {:.4}  P {:.4}  R {:.4}  (Ultralytics' convention: mAP50 {:.4}  mAP50-95 {:.4})",
                        metrics.map50,
                        metrics.map,
                        metrics.precision,
                        metrics.recall,
                        metrics.ultralytics_map50.unwrap_or(f64::NAN),
                        metrics.ultralytics_map.unwrap_or(f64::NAN)
                    ),
                }),
                Event::Point(p) => bar.set_message(format!("last: {} @ {:.0}%", p.layer, p.sparsity * 100.0)),
                Event::Progress { done, total, images_per_s, eta_s } => {
                    bar.set_position(done as u64);
                    let eta = eta_s.map(|e| format!("ETA {}", crate::report::duration(e))).unwrap_or_default();
                    bar.set_prefix(format!("analyze {images_per_s:.0} img/s {eta}"));
                    // No bar without a terminal: a plain line now and then, and at the end.
                    if bar.is_hidden()
                        && (done == total || last_line.is_none_or(|t| t.elapsed() >= PROGRESS_LINE_EVERY))
                    {
                        last_line = Some(std::time::Instant::now());
                        eprintln!("analyze: {done}/{total} points, {images_per_s:.0} img/s {eta}");
                    }
                }
                Event::Warning(w) => say(format!("warning: {w}")),
                Event::Finished(_) | Event::Cancelled => {}
            }
        }
        worker.join().map_err(|_| anyhow::anyhow!("the analysis thread panicked"))
    })?;
    bar.finish_and_clear();
    // The run's error is returned (not streamed), so it is printed once, by main.
    let summary = result?;
    let run = store::read(&config.out)?;
    report::sensitivity::write(&run, &config.out)?;
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
    // ONNX node names are long: the column is as wide as the longest.
    let w = h.layers.iter().map(|l| l.chars().count()).max().unwrap_or(0).max(10);
    out.push_str(&format!("\n{:<w$}", "layer"));
    for s in &h.sparsities {
        out.push_str(&format!("{:>7}", format!("{:.0}%", s * 100.0)));
    }
    out.push('\n');
    for layer in &h.layers {
        out.push_str(&format!("{layer:<w$}"));
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
    report::sensitivity::write(&run, &a.out)?;
    print!("{}", table(&run));
    println!("merged {} shards into {}", a.shards.len(), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `prunescope analyze` with only the required options runs the engine's defaults (the
    /// explorer's form starts from them too).
    #[test]
    fn cli_defaults_are_the_engine_defaults() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "analyze",
            "--cfg",
            "m.cfg",
            "--weights",
            "m.weights",
            "--data",
            "d.yaml",
            "--out",
            "o",
        ])
        .unwrap();
        let a = cli.args;
        let d = AnalysisConfig::default();
        assert_eq!(
            (a.method, a.metric, a.workers, a.device.as_str(), a.batch, a.include_heads, a.cache_mem),
            (d.method, d.metric, d.workers, d.device.as_str(), d.batch, d.include_heads, d.cache_mem)
        );
        assert_eq!(
            (a.limit, a.img_size, a.layers.is_empty(), a.resume, a.shard),
            (d.limit, d.img_size, true, d.resume, d.shard)
        );
        assert_eq!(a.sparsities.0, d.sparsities);
    }
}
