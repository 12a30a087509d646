//! `run`: settings checked, the run store opened (or resumed), images decoded once, the
//! baseline and the activation cache built, the points handed to workers and their results
//! stored and streamed as events.

use super::store::{self, EvalSettings, RunHeader, RunWriter, RUN_FORMAT};
use super::worker::{self, Batch, Job, Pixels, Shared, WorkerMsg};
use super::{
    AnalysisConfig, Event, LayerInfo, Metric, Metrics, PointRecord, Record, RunSummary, RunTiming, SensitivityError,
};
use crate::data::preprocess::Preprocess;
use crate::data::{load_rgb, DataError, Dataset, Letterboxed, OnBad, OpenOptions, SkipReport};
use crate::eval::{EvalConfig, NetPredictor};
use crate::metrics::nms::NmsConfig;
use crate::model::ir::exec::Keep;
use crate::model::{parse_device, Model, ModelFiles};
use crate::provenance::{self, DatasetRef};
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;
use tch::Device;

type Result<T> = std::result::Result<T, SensitivityError>;

/// Matches `name` against a pattern with `*` (any run) and `?` (one character).
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The layers to analyse, as indices into [`Model::layers`]: all of them, minus the output
/// convolutions (heads) unless `include_heads`, filtered by `patterns` (`*`/`?` wildcards; a
/// leading `!` excludes). A pattern that matches no layer is an error.
pub fn select_layers(model: &Model, patterns: &[String], include_heads: bool) -> Result<Vec<usize>> {
    let convs: Vec<usize> = (0..model.layers.len()).collect();
    let name = |i: usize| model.layers[i].name.clone();
    let patterns: Vec<&str> = patterns.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).collect();
    let (excludes, includes): (Vec<&str>, Vec<&str>) = patterns.iter().partition(|p| p.starts_with('!'));
    let excludes: Vec<&str> = excludes.iter().map(|p| &p[1..]).collect();
    for p in includes.iter().chain(&excludes) {
        if !convs.iter().any(|&i| glob(p, &name(i))) {
            return Err(SensitivityError::NoMatch {
                pattern: p.to_string(),
                model: model.path().display().to_string(),
                layers: model.layer_summary(),
            });
        }
    }
    let selected: Vec<usize> = convs
        .iter()
        .copied()
        .filter(|&i| {
            let n = name(i);
            // A head convolution is analysed with include_heads, or when named exactly.
            let head_ok = include_heads || !model.layers[i].head || includes.contains(&n.as_str());
            let included = includes.is_empty() || includes.iter().any(|p| glob(p, &n));
            head_ok && included && !excludes.iter().any(|p| glob(p, &n))
        })
        .collect();
    if selected.is_empty() {
        return Err(SensitivityError::NoLayers);
    }
    Ok(selected)
}

/// SHA-256 over the image list (paths relative to the dataset) and every label.
fn dataset_hash(ds: &Dataset) -> String {
    use sha2::Digest;
    let source = ds.source();
    let root = source.canonicalize().ok().map(|p| if p.is_dir() { p } else { p.parent().unwrap_or(&p).to_path_buf() });
    let mut h = sha2::Sha256::new();
    for i in 0..ds.len() {
        let image = ds.image(i);
        let abs = image.canonicalize().unwrap_or_else(|_| image.to_path_buf());
        let rel = root.as_ref().and_then(|r| abs.strip_prefix(r).ok()).unwrap_or(&abs);
        h.update(rel.to_string_lossy().as_bytes());
        match ds {
            Dataset::Detection(d) => {
                for b in &d.samples[i].boxes {
                    h.update(format!(
                        "|{} {:.6} {:.6} {:.6} {:.6} {}",
                        b.class, b.coords[0], b.coords[1], b.coords[2], b.coords[3], b.crowd
                    ));
                }
            }
            Dataset::Classification(d) => h.update(format!("|{}", d.names[d.samples[i].1])),
        }
        h.update(b"\n");
    }
    provenance::hex(&h.finalize())
}

fn check_sparsities(s: &[f64]) -> Result<Vec<f64>> {
    if s.is_empty() {
        return Err(SensitivityError::NoSparsities);
    }
    let mut out = Vec::new();
    for &v in s {
        if !(v > 0.0 && v < 1.0) {
            return Err(SensitivityError::Sparsity { value: v });
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The run's devices: one per worker.
fn devices(config: &AnalysisConfig) -> Result<Vec<Device>> {
    let first = parse_device(&config.device)?;
    let gpus = if matches!(first, Device::Cuda(_)) { tch::Cuda::device_count() as usize } else { 0 };
    Ok(match first {
        // `cuda`/`auto` with GPUs: one worker per device unless told otherwise.
        Device::Cuda(0) if config.device != "cuda:0" && config.workers == 0 => (0..gpus).map(Device::Cuda).collect(),
        d => vec![d; config.workers.max(1)],
    })
}

/// Decodes and preprocesses `paths` on `threads` threads: the results in order, each in the
/// form a batch keeps it.
fn decode(
    paths: &[PathBuf],
    size: u32,
    prep: Preprocess,
    threads: usize,
) -> Vec<std::result::Result<(Pixels, Letterboxed), DataError>> {
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<_>>> = paths.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, paths.len().max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(k) else { break };
                let item = load_rgb(path).and_then(|img| {
                    let lb = prep
                        .apply(&img, size)
                        .map_err(|source| DataError::Letterbox { file: path.to_path_buf(), source })?;
                    Ok(Pixels::keep(img, lb))
                });
                *slots[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(item);
            });
        }
    });
    slots
        .into_iter()
        .zip(paths)
        .map(|(m, p)| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(DataError::new(p, None, "not decoded (a decoding thread failed)")))
        })
        .collect()
}

/// Which batches keep what within the memory cap, in batch order: while a batch's pixels
/// and activations both fit, both (the activation cache is a prefix of the batches); then,
/// while its pixels fit, those; past that nothing (decoded again and recomputed when used).
struct MemoryPlan {
    cap: u64,
    used: u64,
    /// Activation bytes per image.
    act_per_image: u64,
    cached_batches: usize,
    caching: bool,
    keeping: bool,
    forgotten_batches: usize,
}

impl MemoryPlan {
    /// `cache`: whether activations are wanted at all (there are points to compute).
    fn new(cap: u64, act_per_image: u64, cache: bool) -> Self {
        MemoryPlan {
            cap,
            used: 0,
            act_per_image,
            cached_batches: 0,
            caching: cache,
            keeping: true,
            forgotten_batches: 0,
        }
    }

    /// Places a decoded batch: keeps its pixels or forgets them, and counts its activations.
    fn place(&mut self, batch: &mut Batch) {
        let pixels = batch.bytes();
        let acts = self.act_per_image * batch.metas.len() as u64;
        if self.caching && self.used + pixels + acts <= self.cap {
            self.used += pixels + acts;
            self.cached_batches += 1;
            return;
        }
        self.caching = false;
        if self.keeping && self.used + pixels <= self.cap {
            self.used += pixels;
            return;
        }
        self.keeping = false;
        self.forgotten_batches += 1;
        batch.forget();
    }
}

/// Runs (or resumes) the analysis described by `config`, sending events as it goes.
/// Setting `cancel` stops it within one batch; finished points stay in the store.
pub fn run(config: &AnalysisConfig, events: &Sender<Event>, cancel: &AtomicBool) -> Result<RunSummary> {
    let started = Instant::now();
    let send = |e: Event| {
        let _ = events.send(e);
    };
    let sparsities = check_sparsities(&config.sparsities)?;
    if let Some(size) = config.img_size {
        crate::quantity::check_img_size(size).map_err(SensitivityError::ImgSize)?;
    }
    let files = match &config.model {
        Some(path) => ModelFiles::Onnx { path: path.clone(), task: config.task.clone() },
        None => ModelFiles::Darknet { cfg: config.cfg.clone(), weights: config.weights.clone() },
    };
    let model = Model::open(&files, config.img_size)?;
    let size = model.img_size;
    let classifier = model.is_classifier();
    if !config.metric.fits(classifier) {
        use crate::quantity::Named;
        let fitting: Vec<&str> = Metric::ALL.iter().filter(|m| m.fits(classifier)).map(|m| m.name()).collect();
        return Err(SensitivityError::Metric {
            metric: config.metric.name(),
            model: model.path().to_path_buf(),
            kind: if classifier { "classifier" } else { "detector" },
            fitting: fitting.join(", "),
        });
    }
    let prep = Preprocess::choose(classifier, model.by_ultralytics, config.preprocess);
    let iou = config.iou.unwrap_or(if model.by_ultralytics { 0.7 } else { 0.6 });
    let opts =
        OpenOptions { classes: Some(model.classes()), on_bad: OnBad::Skip, limit: config.limit, ..Default::default() };
    let dataset = Dataset::open(&config.data, classifier, opts)?;
    if dataset.names().len() != model.classes() {
        return Err(SensitivityError::Classes {
            data: config.data.clone(),
            classes: dataset.names().len(),
            cfg: model.path().to_path_buf(),
            cfg_classes: model.classes(),
        });
    }
    if dataset.is_empty() {
        return Err(SensitivityError::NoImages { data: config.data.clone() });
    }
    let layers = select_layers(&model, &config.layers, config.include_heads)?;
    let devices = devices(config)?;

    let header = RunHeader {
        format: RUN_FORMAT.into(),
        model: model.reference.clone(),
        dataset: DatasetRef { path: config.data.clone(), images: dataset.len(), sha256: dataset_hash(&dataset) },
        method: config.method,
        sparsities: sparsities.clone(),
        layers: layers.iter().map(|&i| model.layers[i].name.clone()).collect(),
        metric: config.metric,
        eval: EvalSettings { img_size: size, conf: config.conf, iou, max_det: config.max_det, preprocess: prep },
        device: config.device.clone(),
        created_at: provenance::now_rfc3339(),
        shard: config.shard,
    };
    // The writer holds the run folder's lock until the run ends.
    let (mut writer, stored) = RunWriter::open(&config.out, &header, config.resume)?;
    if let Some(s) = &stored {
        if !s.torn_lines.is_empty() {
            send(Event::Warning(format!(
                "{}: ignored a torn last line (line {}) left by an interrupted run",
                config.out.join(store::POINTS_FILE).display(),
                s.torn_lines[0]
            )));
        }
    }

    // The grid (layer indices × sparsities), this shard's part of it, and what is still to do.
    let grid: Vec<(usize, f64)> = layers.iter().flat_map(|&l| sparsities.iter().map(move |&s| (l, s))).collect();
    let mine: Vec<(usize, f64)> = grid
        .iter()
        .enumerate()
        .filter(|(k, _)| config.shard.is_none_or(|sh| k % sh.count == sh.index))
        .map(|(_, &p)| p)
        .collect();
    let index_of = |name: &str| model.layers.iter().position(|l| l.name == name);
    let done: BTreeSet<(usize, u64)> = stored
        .as_ref()
        .map(|s| s.points.iter().filter_map(|p| Some((index_of(&p.layer)?, p.sparsity.to_bits()))).collect())
        .unwrap_or_default();
    let pending: Vec<(usize, f64)> = mine.iter().copied().filter(|(l, s)| !done.contains(&(*l, s.to_bits()))).collect();
    let already_done = mine.len() - pending.len();
    let layer_infos: Vec<LayerInfo> = layers
        .iter()
        .map(|&i| {
            let l = &model.layers[i];
            LayerInfo {
                name: l.name.clone(),
                block: l.id,
                shape: l.output_shape.clone(),
                params: l.params,
                macs: l.macs,
            }
        })
        .collect();
    send(Event::Started {
        run_dir: config.out.clone(),
        layers: layer_infos,
        sparsities: sparsities.clone(),
        total: mine.len(),
        already_done,
    });

    // What the points read: per layer, the tensors the nodes depending on it read from
    // outside (the image aside: the batches keep it).
    let predictor = NetPredictor::new(&model, &model.weights, devices[0])?;
    let input = predictor.net.inputs[0].name.clone();
    let pending_layers: Vec<usize> = layers.iter().copied().filter(|l| pending.iter().any(|p| p.0 == *l)).collect();
    let mut cached_sources: BTreeSet<String> = BTreeSet::new();
    for &l in &pending_layers {
        let suffix = worker::Suffix::of(&predictor.net, &model.layers[l]);
        cached_sources.extend(suffix.needed.into_iter().filter(|n| *n != input));
    }
    let per_image_bytes: u64 = cached_sources.iter().map(|n| model.sizes.get(n).copied().unwrap_or(0) * 4).sum();

    // Decode every image once; what is kept counts against --cache-mem with the activations.
    let t = Instant::now();
    let ecfg = EvalConfig {
        img_size: size,
        batch: config.batch.max(1),
        nms: NmsConfig { conf: config.conf, iou, max_det: config.max_det, ..Default::default() },
        ..Default::default()
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let paths: Vec<PathBuf> = (0..dataset.len()).map(|i| dataset.image(i).to_path_buf()).collect();
    let mut memory = MemoryPlan::new(config.cache_mem, per_image_bytes, !pending.is_empty());
    let mut skipped = SkipReport::default();
    let mut batches: Vec<Batch> = Vec::new();
    let mut current = Batch::default();
    let chunk = (threads * 8).max(ecfg.batch);
    for (c, part) in paths.chunks(chunk).enumerate() {
        for (k, item) in decode(part, size, prep, threads).into_iter().enumerate() {
            match item {
                Ok((px, lb)) => {
                    current.push(c * chunk + k, px, lb);
                    if current.metas.len() == ecfg.batch {
                        memory.place(&mut current);
                        batches.push(std::mem::take(&mut current));
                    }
                }
                Err(e) => skipped.handle(OnBad::Skip, e)?,
            }
        }
        if cancel.load(Ordering::Relaxed) {
            send(Event::Cancelled);
            return Err(SensitivityError::Cancelled);
        }
    }
    if !current.metas.is_empty() {
        memory.place(&mut current);
        batches.push(current);
    }
    if !skipped.is_empty() || !dataset.skipped().is_empty() {
        send(Event::Warning(format!(
            "skipped unreadable validation data: {} {}",
            dataset.skipped().summary(3),
            skipped.summary(3)
        )));
    }
    let images: usize = batches.iter().map(|b| b.metas.len()).sum();
    let mut timing = RunTiming { decode_s: t.elapsed().as_secs_f64(), ..Default::default() };

    let batch_bytes = per_image_bytes * ecfg.batch as u64;
    let cacheable = if pending.is_empty() { batches.len() } else { memory.cached_batches };
    if !pending.is_empty() && cacheable < batches.len() {
        send(Event::Warning(format!(
            "activation cache: {} of {} batches fit in --cache-mem {} MiB ({:.1} MiB a batch); the rest are recomputed",
            cacheable,
            batches.len(),
            config.cache_mem >> 20,
            batch_bytes as f64 / 1048576.0
        )));
    }
    if memory.forgotten_batches > 0 {
        send(Event::Warning(format!(
            "decoded images: {} of {} batches do not fit in --cache-mem {} MiB; they are decoded again from their files when used (a larger --cache-mem keeps them)",
            memory.forgotten_batches,
            batches.len(),
            config.cache_mem >> 20
        )));
    }

    // Baseline pass: the unpruned metric, and the activations points will read.
    let t = Instant::now();
    tch::set_num_threads(threads as i32);
    let need_baseline = stored.as_ref().and_then(|s| s.baseline).is_none();
    let mut cache: Vec<Option<BTreeMap<String, worker::Activation>>> = Vec::with_capacity(batches.len());
    let mut baseline_preds = worker::Collected::new(&dataset);
    let mut cache_bytes = 0u64;
    for (b, batch) in batches.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            send(Event::Cancelled);
            return Err(SensitivityError::Cancelled);
        }
        let want_cache = b < cacheable && !pending.is_empty();
        if !want_cache && !need_baseline {
            cache.push(None);
            continue;
        }
        let x = batch.tensor(size, devices[0], &dataset, prep)?;
        let keep = if want_cache { Keep::All } else { Keep::Outputs };
        let mut out = predictor.net.run(vec![(input.clone(), x)], keep).map_err(crate::model::ForwardError::from)?;
        if need_baseline {
            let first = &predictor.net.outputs[0].name;
            let y = out.get(first).ok_or_else(|| {
                crate::model::ForwardError::Task(format!("the model did not produce its output '{first}'"))
            })?;
            baseline_preds.add(&predictor, y, &batch.metas, &dataset, &ecfg)?;
        }
        if want_cache {
            let mut acts = BTreeMap::new();
            for j in &cached_sources {
                if let Some(t) = out.remove(j) {
                    let a = worker::Activation::from_tensor(&t)?;
                    cache_bytes += a.bytes();
                    acts.insert(j.clone(), a);
                }
            }
            cache.push(Some(acts));
        } else {
            cache.push(None);
        }
    }
    drop(predictor);
    let baseline = match stored.as_ref().and_then(|s| s.baseline) {
        Some((m, _)) => m,
        None => {
            let m = baseline_preds.score(&dataset, &ecfg)?;
            let seconds = t.elapsed().as_secs_f64();
            writer.append(&Record::Baseline { metrics: m, seconds })?;
            send(Event::Baseline { metrics: m, seconds });
            m
        }
    };
    if stored.is_some() {
        send(Event::Baseline { metrics: baseline, seconds: 0.0 });
    }
    timing.baseline_s = t.elapsed().as_secs_f64();

    // Points, one job per layer (its sparsities share the layer's activations).
    let shared = Shared {
        model: &model,
        dataset: &dataset,
        prep,
        ecfg: &ecfg,
        batches: &batches,
        cache: &cache,
        method: config.method,
        size,
    };
    let jobs: Vec<Job> = pending_layers
        .iter()
        .map(|&l| Job { layer: l, sparsities: pending.iter().filter(|p| p.0 == l).map(|p| p.1).collect() })
        .collect();
    let cost: Vec<u64> = jobs.iter().map(|j| worker::job_macs(&model, j) * images as u64).collect();
    let total_cost: u64 = cost.iter().sum();
    let (job_tx, job_rx) = crossbeam_channel::unbounded::<Job>();
    for j in &jobs {
        let _ = job_tx.send(j.clone());
    }
    drop(job_tx);
    let (msg_tx, msg_rx) = crossbeam_channel::unbounded::<WorkerMsg>();
    let per_worker_threads = if matches!(devices[0], Device::Cpu) { (threads / devices.len()).max(1) } else { 1 };
    let points_started = Instant::now();
    let mut computed = 0usize;
    let mut failure: Option<SensitivityError> = None;
    let mut point_macs = 0u64;
    let mut images_run = 0u64;
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for &device in &devices {
            let (job_rx, msg_tx, shared) = (job_rx.clone(), msg_tx.clone(), &shared);
            handles.push(
                scope.spawn(move || worker::run_worker(shared, device, per_worker_threads, job_rx, msg_tx, cancel)),
            );
        }
        drop(msg_tx);
        let mut done_macs = 0u64;
        for msg in msg_rx.iter() {
            match msg {
                WorkerMsg::Progress { macs, images } => {
                    done_macs += macs;
                    images_run += images;
                    let elapsed = points_started.elapsed().as_secs_f64();
                    let fraction = done_macs as f64 / total_cost.max(1) as f64;
                    let eta = (fraction > 0.0).then(|| elapsed * (1.0 - fraction) / fraction);
                    send(Event::Progress {
                        done: already_done + computed,
                        total: mine.len(),
                        images_per_s: images_run as f64 / elapsed.max(1e-9),
                        eta_s: eta,
                    });
                }
                WorkerMsg::Point(p) => {
                    if let Err(e) = writer.append(&Record::Point(p.clone())) {
                        failure.get_or_insert(e.into());
                        cancel.store(true, Ordering::Relaxed);
                        continue;
                    }
                    computed += 1;
                    send(Event::Point(p));
                    let elapsed = points_started.elapsed().as_secs_f64();
                    let fraction = done_macs as f64 / total_cost.max(1) as f64;
                    send(Event::Progress {
                        done: already_done + computed,
                        total: mine.len(),
                        images_per_s: images_run as f64 / elapsed.max(1e-9),
                        eta_s: (fraction > 0.0).then(|| elapsed * (1.0 - fraction) / fraction),
                    });
                }
                WorkerMsg::Failed(e) => {
                    failure.get_or_insert(e);
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        }
        for h in handles {
            match h.join() {
                Ok(t) => {
                    timing.forward_s += t.forward_s;
                    timing.nms_s += t.nms_s;
                    timing.metrics_s += t.metrics_s;
                    timing.activations_s += t.activations_s;
                    point_macs += t.macs;
                }
                Err(_) => {
                    failure.get_or_insert(SensitivityError::WorkerPanicked);
                }
            }
        }
    });
    timing.wall_s = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e);
    }
    if computed < pending.len() {
        send(Event::Cancelled);
        return Err(SensitivityError::Cancelled);
    }
    let summary = RunSummary {
        run_dir: config.out.clone(),
        baseline,
        total_points: mine.len(),
        resumed_points: already_done,
        computed_points: computed,
        images,
        workers: devices.len(),
        cache_bytes,
        cached_batches: cache.iter().filter(|c| c.is_some()).count(),
        batches: batches.len(),
        point_macs,
        timing,
    };
    send(Event::Finished(summary.clone()));
    Ok(summary)
}

/// A point's stored record, for tests and tools that compare runs.
pub fn points_of(dir: &Path) -> std::result::Result<Vec<PointRecord>, store::StoreError> {
    Ok(store::read(dir)?.points)
}

/// Baseline metrics of a stored run.
pub fn baseline_of(dir: &Path) -> std::result::Result<Option<Metrics>, store::StoreError> {
    Ok(store::read(dir)?.baseline.map(|b| b.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::try_letterbox;

    #[test]
    fn globs() {
        assert!(glob("conv_1*", "conv_12") && glob("conv_1*", "conv_1") && !glob("conv_1*", "conv_2"));
        assert!(glob("conv_?", "conv_3") && !glob("conv_?", "conv_30"));
        assert!(glob("*", "conv_0"));
    }

    /// What the memory plan keeps (pixels and activations) never exceeds the cap, whatever
    /// the number of images: batches are cached whole, then keep their pixels, then nothing.
    #[test]
    fn memory_plan_stays_within_the_cap() {
        let batch = || {
            let mut b = Batch::default();
            for i in 0..4 {
                let img = image::RgbImage::new(10, 10);
                let lb = try_letterbox(&img, 16).unwrap();
                let (px, lb) = Pixels::keep(img, lb);
                b.push(i, px, lb);
            }
            b
        };
        let pixels = batch().bytes();
        assert_eq!(pixels, 4 * 300);
        for (cap, act) in [(0u64, 0u64), (1, 100), (5_000, 100), (20_000, 1_000), (1 << 30, 1 << 20)] {
            let mut plan = MemoryPlan::new(cap, act, true);
            let mut batches: Vec<Batch> = (0..1000).map(|_| batch()).collect();
            for b in &mut batches {
                plan.place(b);
            }
            let kept: u64 = batches.iter().map(|b| b.bytes()).sum::<u64>() + plan.cached_batches as u64 * 4 * act;
            assert!(kept <= cap, "cap {cap}: kept {kept}");
            assert_eq!(kept, plan.used);
            let keeping = batches.iter().filter(|b| b.bytes() > 0).count();
            assert!(plan.cached_batches <= keeping && keeping + plan.forgotten_batches == 1000);
            assert_eq!(plan.cached_batches, ((cap / (pixels + 4 * act)) as usize).min(1000), "cap {cap}");
        }
    }

    #[test]
    fn sparsities_are_checked_sorted_and_deduplicated() {
        assert_eq!(check_sparsities(&[0.5, 0.1, 0.5]).unwrap(), vec![0.1, 0.5]);
        assert!(check_sparsities(&[1.0]).unwrap_err().to_string().contains("outside (0, 1)"));
        assert!(check_sparsities(&[]).is_err());
    }
}
