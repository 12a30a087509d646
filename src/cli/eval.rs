//! `prunescope eval`: a model over a validation set with mAP, P/R and a confusion matrix.

use crate::data::preprocess::{ClassifyPreset, Preprocess};
use crate::data::{ClassificationDataset, DetectionDataset, OnBad, OpenOptions};
use crate::eval::{self, EvalConfig, EvalReport, NetPredictor};
use crate::metrics::NmsConfig;
use crate::model::{parse_device, Model, ModelFiles};
use crate::quantity;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Darknet cfg of the model.
    #[arg(long, required_unless_present_any = ["preds", "model"], conflicts_with_all = ["preds", "model"], requires = "weights")]
    pub cfg: Option<PathBuf>,
    /// An ONNX detector instead of --cfg/--weights (an Ultralytics export: task, names and
    /// input size from its metadata). Scored like a Darknet model (pycocotools' convention).
    #[arg(long, conflicts_with = "preds")]
    pub model: Option<PathBuf>,
    /// The task of an ONNX file whose metadata does not say it.
    #[arg(long, requires = "model", value_parser = ["detect", "pose", "classify"])]
    pub task: Option<String>,
    /// Weights (.weights, .pth or .safetensors).
    #[arg(long, requires = "cfg")]
    pub weights: Option<PathBuf>,
    /// Score saved predictions instead of running a model: a JSON object, image file stem →
    /// list of {"class", "score", "box_xywh": [cx, cy, w, h] in pixels, optional
    /// "keypoints"}. Scored in Ultralytics' convention (what `yolo val` prints).
    #[arg(long)]
    pub preds: Option<PathBuf>,
    /// Validation data: a Darknet .data, an Ultralytics data.yaml, a COCO .json, an image
    /// list .txt or a folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Square model input size (a multiple of 32); default: the cfg's width.
    #[arg(long, value_parser = quantity::img_size)]
    pub img_size: Option<u32>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8, value_parser = quantity::batch)]
    pub batch: usize,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Evaluate only the first N images (in sorted order).
    #[arg(long, value_parser = quantity::limit)]
    pub limit: Option<usize>,
    /// Confidence threshold before NMS.
    #[arg(long, default_value_t = 0.001, value_parser = quantity::unit_interval)]
    pub conf: f32,
    /// NMS IoU threshold; default 0.6 (PyTorch-YOLOv3's), 0.7 for an Ultralytics model (what
    /// `yolo val` uses).
    #[arg(long, value_parser = quantity::unit_interval)]
    pub iou: Option<f32>,
    /// Detections kept per image.
    #[arg(long, default_value_t = 300, value_parser = quantity::max_det)]
    pub max_det: usize,
    /// Confidence at which precision, recall and the confusion matrix are reported.
    #[arg(long, default_value_t = 0.25, value_parser = quantity::probability)]
    pub report_conf: f64,
    /// Stop at the first bad label or unreadable image instead of skipping and counting it.
    #[arg(long)]
    pub strict: bool,
    /// Write the detections as a COCO results json.
    #[arg(long)]
    pub save_dets: Option<PathBuf>,
    /// A classifier's input transform: torchvision (resize to size/0.875, centre crop,
    /// ImageNet mean/std) or ultralytics (resize to size, centre crop, /255); default:
    /// ultralytics for Ultralytics exports, else torchvision.
    #[arg(long, value_parser = super::choice::<ClassifyPreset>())]
    pub preprocess: Option<ClassifyPreset>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(preds) = &args.preds {
        return run_preds(args, preds);
    }
    let files = match (&args.model, &args.cfg, &args.weights) {
        (Some(path), _, _) => ModelFiles::Onnx { path: path.clone(), task: args.task.clone() },
        (None, Some(cfg), Some(weights)) => ModelFiles::Darknet { cfg: cfg.clone(), weights: weights.clone() },
        _ => anyhow::bail!("give --cfg and --weights or --model (a model to run), or --preds (saved predictions)"),
    };
    if let Some(out) = &args.save_dets {
        let mut inputs: Vec<(&str, &std::path::Path)> = vec![("--data", &args.data)];
        inputs.extend(args.cfg.as_deref().map(|p| ("--cfg", p)));
        inputs.extend(args.weights.as_deref().map(|p| ("--weights", p)));
        inputs.extend(args.model.as_deref().map(|p| ("--model", p)));
        crate::fsio::refuse_input_as_output(out, &inputs)?;
        let is_json = out.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if out.exists() && !is_json {
            anyhow::bail!(
                "--save-dets {}: the file exists and is not a .json results file; choose a new file ending in .json",
                out.display()
            );
        }
    }
    if let Some(size) = args.img_size {
        crate::quantity::check_img_size(size).map_err(|e| anyhow::anyhow!("--img-size: {e}"))?;
    }
    let model = Model::open(&files, args.img_size)?;
    let size = model.img_size;
    let device = parse_device(&args.device)?;
    let on_bad = if args.strict { OnBad::Error } else { OnBad::Skip };
    let prep = Preprocess::choose(model.is_classifier(), model.by_ultralytics, args.preprocess);
    if let Preprocess::Classify(preset) = prep {
        return run_classifier(args, &model, preset, device, on_bad);
    }
    if args.preprocess.is_some() {
        anyhow::bail!(
            "--preprocess: {} is a detector; it letterboxes (the option is for classifiers)",
            model.path().display()
        );
    }
    let opts = OpenOptions { classes: Some(model.classes()), on_bad, limit: args.limit, ..Default::default() };
    let dataset = DetectionDataset::open_with(&args.data, opts)?;
    if dataset.num_classes() != model.classes() {
        anyhow::bail!(
            "{} names {} classes but {} predicts {}: expected the same class list",
            args.data.display(),
            dataset.num_classes(),
            model.path().display(),
            model.classes()
        );
    }
    let net = NetPredictor::new(&model, &model.weights, device)?;
    let ultralytics =
        matches!(model.task, crate::model::task::Task::Detect { .. } | crate::model::task::Task::Pose { .. });
    let default_iou = if ultralytics { 0.7 } else { 0.6 };
    let ecfg = EvalConfig {
        img_size: size,
        batch: args.batch,
        nms: NmsConfig {
            conf: args.conf,
            iou: args.iou.unwrap_or(default_iou),
            max_det: args.max_det,
            ..Default::default()
        },
        on_bad,
        cm_conf: args.report_conf,
        pr_conf: args.report_conf,
        prep,
        ..Default::default()
    };
    let bar = indicatif::ProgressBar::new(dataset.samples.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("eval");
    let report = eval::evaluate(&net, &dataset, &ecfg, &mut |done, _| {
        bar.set_position(done as u64);
        true
    })?;
    bar.finish_and_clear();
    if let Some(path) = &args.save_dets {
        let json = serde_json::to_string(&report.detections)?;
        crate::fsio::write_atomic(path, json)?;
    }
    if !report.skipped.is_empty() {
        eprintln!("warning: {}", report.skipped.summary(5));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report, &dataset.names, device));
    }
    Ok(())
}

fn text(r: &EvalReport, names: &[String], device: tch::Device) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} images evaluated ({} skipped, {} without a label file)",
        r.images, r.skipped_images, r.unlabelled_images
    );
    let _ = writeln!(
        s,
        "mAP@0.5 {:.4}   mAP@0.5:0.95 {:.4}   P {:.4}   R {:.4} (at conf {})   VOC mAP@0.5 {:.4}",
        r.map50, r.map, r.precision, r.recall, r.pr_conf, r.voc_map50
    );
    let u = &r.ultralytics;
    let _ = writeln!(
        s,
        "Ultralytics' convention (yolo val): mAP50 {:.4}   mAP50-95 {:.4}   P {:.4}   R {:.4} (at the best mean F1)",
        u.map50, u.map, u.p, u.r
    );
    let _ = writeln!(
        s,
        "\n{:<16} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "class", "objects", "AP50", "AP50:95", "P", "R", "VOC AP50"
    );
    for c in &r.classes {
        let _ = writeln!(
            s,
            "{:<16} {:>8} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.4}",
            c.name, c.objects, c.ap50, c.ap, c.precision, c.recall, c.voc_ap50
        );
    }
    let _ = writeln!(s, "\nconfusion matrix (rows predicted, columns true; conf {}, IoU 0.45)", r.pr_conf);
    let mut labels: Vec<String> = names.to_vec();
    labels.push("background".into());
    let w = labels.iter().map(|l| l.len()).max().unwrap_or(4).clamp(6, 14);
    let _ = write!(s, "{:>w$}", "");
    for l in &labels {
        let _ = write!(s, " {:>w$}", truncate(l, w));
    }
    s.push('\n');
    for (i, row) in r.confusion.counts.iter().enumerate() {
        let _ = write!(s, "{:>w$}", truncate(&labels[i], w));
        for v in row {
            let _ = write!(s, " {v:>w$}");
        }
        s.push('\n');
    }
    let t = &r.timing;
    let n = r.images.max(1) as f64;
    let _ = writeln!(
        s,
        "\nspeed on {}: {:.1} images/s; per image: forward {:.1} ms, NMS {:.2} ms, decode wait {:.2} ms; metrics {:.2} s",
        format!("{device:?}").to_lowercase(),
        t.images_per_s,
        1e3 * t.forward_s / n,
        1e3 * t.postprocess_s / n,
        1e3 * t.decode_wait_s / n,
        t.metrics_s
    );
    s
}

/// `eval` of a classifier: top-1, top-5, per-class precision and recall, the confusion matrix.
fn run_classifier(
    args: &Args,
    model: &Model,
    preset: ClassifyPreset,
    device: tch::Device,
    on_bad: OnBad,
) -> anyhow::Result<()> {
    if args.save_dets.is_some() {
        anyhow::bail!("--save-dets: {} is a classifier; it makes no detections", model.path().display());
    }
    let mut dataset = ClassificationDataset::open(&args.data)?;
    if let Some(n) = args.limit {
        dataset.limit(n);
    }
    if dataset.num_classes() != model.classes() {
        anyhow::bail!(
            "{} has {} class folders but {} predicts {} classes: expected the same class list",
            dataset.root.display(),
            dataset.num_classes(),
            model.path().display(),
            model.classes()
        );
    }
    let net = NetPredictor::new(model, &model.weights, device)?;
    let cfg = eval::classify::ClassifyEvalConfig {
        img_size: model.img_size,
        batch: args.batch,
        preset,
        on_bad,
        decode_threads: EvalConfig::default().decode_threads,
    };
    let bar = indicatif::ProgressBar::new(dataset.samples.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("eval [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let report = eval::classify::evaluate(&net, &dataset, &cfg, &mut |done, _| {
        bar.set_position(done as u64);
        true
    })?;
    bar.finish_and_clear();
    if !report.skipped.is_empty() {
        eprintln!("warning: {}", report.skipped.summary(5));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    use crate::quantity::Named;
    use std::fmt::Write;
    let m = &report.metrics;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} images evaluated ({} skipped) at {} px, {} preprocessing",
        m.images,
        report.skipped_images,
        report.img_size,
        preset.name()
    );
    let _ = writeln!(
        s,
        "top-1 {:.4}   top-5 {:.4}   P {:.4}   R {:.4} (means over classes)",
        m.top1, m.top5, m.precision, m.recall
    );
    let w = m.classes.iter().map(|c| c.name.chars().count()).max().unwrap_or(5).max(5);
    let _ = writeln!(s, "\n{:<w$} {:>7} {:>8} {:>8}", "class", "images", "P", "R");
    for c in &m.classes {
        let _ = writeln!(s, "{:<w$} {:>7} {:>8.4} {:>8.4}", c.name, c.images, c.precision, c.recall);
    }
    let _ = writeln!(s, "\nconfusion matrix (rows predicted, columns true)");
    let names: Vec<String> = m.classes.iter().map(|c| c.name.clone()).collect();
    let cw = names.iter().map(|l| l.len()).max().unwrap_or(4).clamp(4, 12);
    let _ = write!(s, "{:>w$}", "");
    for l in &names {
        let _ = write!(s, " {:>cw$}", truncate(l, cw));
    }
    s.push('\n');
    for (i, row) in m.confusion.counts.iter().enumerate() {
        let _ = write!(s, "{:>w$}", names[i]);
        for v in row {
            let _ = write!(s, " {v:>cw$}");
        }
        s.push('\n');
    }
    let t = &report.timing;
    let _ = writeln!(
        s,
        "\nspeed on {}: {:.1} images/s; per image: forward {:.1} ms, decode wait {:.2} ms",
        format!("{device:?}").to_lowercase(),
        t.images_per_s,
        1e3 * t.forward_s / m.images.max(1) as f64,
        1e3 * t.decode_wait_s / m.images.max(1) as f64,
    );
    print!("{s}");
    Ok(())
}

fn truncate(s: &str, w: usize) -> String {
    s.chars().take(w).collect()
}

/// `eval --preds`: saved predictions against the dataset, Ultralytics' convention.
fn run_preds(args: &Args, preds_path: &std::path::Path) -> anyhow::Result<()> {
    let on_bad = if args.strict { OnBad::Error } else { OnBad::Skip };
    let opts = OpenOptions { on_bad, limit: args.limit, ..Default::default() };
    let dataset = DetectionDataset::open_with(&args.data, opts)?;
    let preds = eval::preds::read(preds_path, dataset.num_classes())?;
    let metrics = eval::preds::score_ultralytics(&dataset, &preds, preds_path)?;
    if !dataset.skipped.is_empty() {
        eprintln!("warning: {}", dataset.skipped.summary(5));
    }
    if args.json {
        let report = serde_json::json!({
            "convention": "ultralytics",
            "images": dataset.samples.len(),
            "predictions": preds.values().map(Vec::len).sum::<usize>(),
            "box": metrics,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} images, {} predictions (Ultralytics convention: 101-point AP, P and R at the best mean F1)",
            dataset.samples.len(),
            preds.values().map(Vec::len).sum::<usize>()
        );
        println!(
            "box  P {:.4}  R {:.4}  mAP50 {:.4}  mAP50-95 {:.4}",
            metrics.p, metrics.r, metrics.map50, metrics.map
        );
        for (c, ap) in &metrics.per_class_ap50 {
            let name = c.parse::<usize>().ok().and_then(|i| dataset.names.get(i)).cloned().unwrap_or_default();
            println!("  {c:>3} {name:<20} AP50 {ap:.4}");
        }
    }
    Ok(())
}
