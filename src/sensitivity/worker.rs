//! A worker: owns a model copy (its IR) on its device and computes the points of one layer at
//! a time.
//!
//! For layer L it fetches, per batch, the tensors the nodes depending on L read (from the
//! cache, or recomputed past the memory cap), runs L with each sparsity's weights (for filter
//! pruning of a layer that keeps 0 at 0: L's chain once, then its pruned channels zeroed,
//! which is what the pruned layer outputs), then only the nodes that depend on L.

use super::{Metrics, PointRecord, SensitivityError};
use crate::data::preprocess::Preprocess;
use crate::data::{load_rgb, DataError, Dataset, Letterboxed};
use crate::eval::{self, EvalConfig, EvalError, ImagePrediction, NetPredictor, Predictor};
use crate::model::ir::exec::{executor_layout, Keep};
use crate::model::ir::{Net, NetError};
use crate::model::{ForwardError, Layer, LayoutError, Model, Weights};
use crate::prune::{self, Method};
use crossbeam_channel::{Receiver, Sender};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Why a batch's input or a layer's pruned outputs could not be computed; the cause is spelled
/// out in the message and kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// An image past `--cache-mem` that no longer decodes.
    #[error("decoding again (past --cache-mem): {0}")]
    Decode(#[source] DataError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The model's forward pass.
    #[error("{0}")]
    Forward(#[from] ForwardError),
    /// The IR executor.
    #[error("{0}")]
    Net(#[from] NetError),
    /// The layer's tensors, taken from the checkpoint to be pruned.
    #[error("{0}")]
    Layout(#[from] LayoutError),
    /// Scoring the detections.
    #[error("{0}")]
    Eval(#[from] EvalError),
    #[error("the model has no prunable layer {block}")]
    NotConv { block: usize },
    #[error("the checkpoint has no tensor {tensor}")]
    NoWeight { tensor: String },
    /// A tensor a suffix run reads that neither the cache nor the full pass gave.
    #[error("tensor '{tensor}' is missing")]
    TensorMissing { tensor: String },
}

/// A decoded image as a batch keeps it: the smaller of two forms that both give back exactly
/// the floats the evaluation feeds the model (preprocessing is deterministic), or nothing
/// when it is past the memory cap.
pub(crate) enum Pixels {
    /// The decoded RGB picture (3 bytes a pixel), letterboxed again when used.
    Rgb(image::RgbImage),
    /// The letterboxed floats (3·S·S·4 bytes), for pictures larger than that.
    Letterboxed(Vec<f32>),
    /// Not kept (past `--cache-mem`): decoded from its file again when used.
    Reload,
}

impl Pixels {
    /// The smaller exact form of a picture and its letterboxed floats.
    pub fn compact(img: image::RgbImage, letterboxed: Vec<f32>) -> Self {
        if img.as_raw().len() <= letterboxed.len() * 4 {
            Pixels::Rgb(img)
        } else {
            Pixels::Letterboxed(letterboxed)
        }
    }

    /// A decoded picture and its letterbox as a batch keeps them: the compact form and the
    /// geometry (its `data` emptied, so that no float buffer outlives the decoding).
    pub fn keep(img: image::RgbImage, mut lb: Letterboxed) -> (Self, Letterboxed) {
        let data = std::mem::take(&mut lb.data);
        (Self::compact(img, data), lb)
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        match self {
            Pixels::Rgb(img) => img.as_raw().len() as u64,
            Pixels::Letterboxed(v) => v.len() as u64 * 4,
            Pixels::Reload => 0,
        }
    }
}

/// The images of one batch and, per image, its sample index and letterbox geometry (the
/// geometry's `data` is left empty: the pixels are in `images`).
#[derive(Default)]
pub(crate) struct Batch {
    pub images: Vec<Pixels>,
    pub metas: Vec<(usize, Letterboxed)>,
}

impl Batch {
    /// Adds sample `index`: its pixels and letterbox geometry (see [`Pixels::keep`]).
    pub fn push(&mut self, index: usize, pixels: Pixels, lb: Letterboxed) {
        self.images.push(pixels);
        self.metas.push((index, lb));
    }

    /// Bytes of pixels held.
    pub fn bytes(&self) -> u64 {
        self.images.iter().map(Pixels::bytes).sum()
    }

    /// Drops the pixels: they are decoded from their files again when used.
    pub fn forget(&mut self) {
        for p in &mut self.images {
            *p = Pixels::Reload;
        }
    }

    /// The input, N·3·S·S floats, exactly as `prep` gives each image.
    pub fn input(&self, size: u32, dataset: &Dataset, prep: Preprocess) -> Result<Vec<f32>, WorkerError> {
        let boxed = |img: &image::RgbImage, path: &std::path::Path| {
            prep.apply(img, size)
                .map_err(|source| WorkerError::Decode(DataError::Letterbox { file: path.to_path_buf(), source }))
        };
        let plane = 3 * size as usize * size as usize;
        let mut out = Vec::with_capacity(plane * self.metas.len());
        for ((i, _), px) in self.metas.iter().zip(&self.images) {
            match px {
                Pixels::Rgb(img) => out.extend_from_slice(&boxed(img, dataset.image(*i))?.data),
                Pixels::Letterboxed(v) => out.extend_from_slice(v),
                Pixels::Reload => {
                    let path = dataset.image(*i);
                    let img = load_rgb(path).map_err(WorkerError::Decode)?;
                    out.extend_from_slice(&boxed(&img, path)?.data);
                }
            }
        }
        Ok(out)
    }

    /// The input as a tensor `[N, 3, S, S]` on `device`.
    pub fn tensor(
        &self,
        size: u32,
        device: Device,
        dataset: &Dataset,
        prep: Preprocess,
    ) -> Result<Tensor, WorkerError> {
        let s = size as i64;
        let input = self.input(size, dataset, prep)?;
        Ok(Tensor::f_from_slice(&input)?.f_view([self.metas.len() as i64, 3, s, s])?.f_to_device(device)?)
    }
}

/// A cached tensor as plain data (shared by all workers; tensors are not Sync), kept in its
/// memory order so that it comes back with the layout it had: a convolution reading it then
/// runs the same kernel as in the full pass, and the suffix run stays exact.
pub(crate) struct Activation {
    pub shape: Vec<i64>,
    /// NCHW stored channels-last (NHWC order).
    channels_last: bool,
    kind: Kind,
    data: Data,
}

enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Activation {
    pub fn from_tensor(t: &Tensor) -> Result<Self, tch::TchError> {
        let (size, stride) = (t.size(), t.stride());
        // Channels vary fastest: what `exec::channels_last` and convolutions on it give.
        let channels_last = size.len() == 4 && size[1] > 1 && stride[1] < stride[2].min(stride[3]);
        let t = t.f_to_device(Device::Cpu)?;
        let ordered = if channels_last { t.f_permute([0, 2, 3, 1])?.f_contiguous()? } else { t.f_contiguous()? };
        let flat = ordered.f_flatten(0, -1)?;
        let data = if t.is_floating_point() {
            Data::F32(Vec::<f32>::try_from(flat.f_to_kind(Kind::Float)?)?)
        } else {
            Data::I64(Vec::<i64>::try_from(flat.f_to_kind(Kind::Int64)?)?)
        };
        Ok(Self { shape: size, channels_last, kind: t.kind(), data })
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        match &self.data {
            Data::F32(v) => v.len() as u64 * 4,
            Data::I64(v) => v.len() as u64 * 8,
        }
    }

    fn to_tensor(&self, device: Device) -> Result<Tensor, tch::TchError> {
        let flat = match &self.data {
            Data::F32(v) => Tensor::f_from_slice(v)?,
            Data::I64(v) => Tensor::f_from_slice(v)?,
        };
        let t = if self.channels_last {
            let s = &self.shape;
            flat.f_view([s[0], s[2], s[3], s[1]])?.f_permute([0, 3, 1, 2])?
        } else {
            flat.f_view(self.shape.as_slice())?
        };
        let t = if t.kind() == self.kind { t } else { t.f_to_kind(self.kind)? };
        t.f_to_device(device)
    }
}

/// What every worker reads.
pub(crate) struct Shared<'a> {
    pub model: &'a Model,
    pub dataset: &'a Dataset,
    pub prep: Preprocess,
    pub ecfg: &'a EvalConfig,
    pub batches: &'a [Batch],
    /// Per batch: cached tensors by name (None: recompute).
    pub cache: &'a [Option<BTreeMap<String, Activation>>],
    pub method: Method,
    pub size: u32,
}

/// The sparsities of one layer still to compute.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Index into [`Model::layers`].
    pub layer: usize,
    pub sparsities: Vec<f64>,
}

pub(crate) enum WorkerMsg {
    /// MACs and images run since the last message.
    Progress {
        macs: u64,
        images: u64,
    },
    Point(PointRecord),
    Failed(SensitivityError),
}

/// Time spent and MACs run by one worker.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WorkerTiming {
    pub forward_s: f64,
    pub nms_s: f64,
    pub metrics_s: f64,
    pub activations_s: f64,
    pub macs: u64,
}

/// What a model predicted for the images run so far, kept to be scored: detections after NMS,
/// or a classifier's classes ranked.
pub(crate) enum Collected {
    Boxes(Vec<ImagePrediction>),
    Ranked(Vec<(usize, Vec<usize>)>),
}

impl Collected {
    pub fn new(dataset: &Dataset) -> Self {
        match dataset {
            Dataset::Detection(_) => Collected::Boxes(Vec::new()),
            Dataset::Classification(_) => Collected::Ranked(Vec::new()),
        }
    }

    /// Adds one batch's predictions from the net's first output.
    pub fn add(
        &mut self,
        predictor: &NetPredictor,
        output: &Tensor,
        metas: &[(usize, Letterboxed)],
        shared_dataset: &Dataset,
        ecfg: &EvalConfig,
    ) -> Result<(), WorkerError> {
        match (self, shared_dataset) {
            (Collected::Boxes(preds), _) => {
                let rows = predictor.rows(output)?.f_to_kind(Kind::Float)?;
                preds.extend(eval::postprocess(&rows, metas, &ecfg.nms)?);
            }
            (Collected::Ranked(ranked), Dataset::Classification(ds)) => {
                let samples: Vec<usize> = metas.iter().map(|m| m.0).collect();
                ranked.extend(eval::classify::ranked(predictor, output, &samples, ds)?);
            }
            (Collected::Ranked(_), Dataset::Detection(_)) => {
                return Err(WorkerError::Eval(EvalError::Mismatch("a classifier on a detection dataset".into())))
            }
        }
        Ok(())
    }

    /// Every metric of what was collected.
    pub fn score(&self, dataset: &Dataset, ecfg: &EvalConfig) -> Result<Metrics, EvalError> {
        match (self, dataset) {
            (Collected::Boxes(preds), Dataset::Detection(ds)) => {
                let r = eval::score(ds, preds, ecfg)?;
                Ok(Metrics {
                    map50: r.map50,
                    map: r.map,
                    precision: r.precision,
                    recall: r.recall,
                    ultralytics_map50: Some(r.ultralytics.map50),
                    ultralytics_map: Some(r.ultralytics.map),
                    top1: None,
                    top5: None,
                })
            }
            (Collected::Ranked(ranked), Dataset::Classification(ds)) => {
                let m = eval::classify::score(ds, ranked)?;
                Ok(Metrics {
                    map50: 0.0,
                    map: 0.0,
                    ultralytics_map50: None,
                    ultralytics_map: None,
                    precision: m.precision,
                    recall: m.recall,
                    top1: Some(m.top1),
                    top5: Some(m.top5),
                })
            }
            _ => Err(EvalError::Mismatch("predictions of another task than the dataset's".into())),
        }
    }
}

/// How the runs of one layer go: the nodes depending on it, and what they read from outside.
pub(crate) struct Suffix {
    /// What the layer's chain (its convolution, batch norm and activation) reads from outside
    /// it: not the graph outputs a suffix run must also be given.
    chain_inputs: Vec<String>,
    /// The nodes depending on the layer, the chain included (graph order).
    nodes: Vec<usize>,
    /// Those past the chain.
    after: Vec<usize>,
    /// What `nodes` read from outside (and graph outputs they do not produce).
    pub needed: Vec<String>,
    /// What `after` reads from outside, the chain's output included.
    after_needed: Vec<String>,
}

impl Suffix {
    pub fn of(net: &Net, layer: &Layer) -> Self {
        let nodes = net.descendants(layer.chain[0]);
        let after: Vec<usize> = nodes.iter().copied().filter(|n| !layer.chain.contains(n)).collect();
        let needed = net.outside_inputs(&nodes);
        let after_needed = net.outside_inputs(&after);
        let reads = |n: &String| layer.chain.iter().any(|&i| net.nodes[i].inputs.contains(n));
        let chain_inputs = net.outside_inputs(&layer.chain).into_iter().filter(reads).collect();
        Suffix { chain_inputs, nodes, after, needed, after_needed }
    }
}

/// MACs one image costs for `job` (ptflops convention): the layer per sparsity (once for
/// filter pruning) plus the nodes depending on it per sparsity.
pub(crate) fn job_macs(model: &Model, job: &Job) -> u64 {
    let layer = &model.layers[job.layer];
    let macs: u64 = model.descendants(layer.chain[0]).iter().map(|&i| model.nodes[i].macs).sum();
    macs * job.sparsities.len() as u64
}

/// How one sparsity changes the layer.
enum Variant {
    /// The layer's own tensors, pruned (by name, on the device, laid out as the net's).
    Params(HashMap<String, Tensor>),
    /// Per-channel keep mask `[1, C, 1, 1]` applied to the unpruned chain output.
    ChannelMask(Tensor),
}

fn variants(
    model: &Model,
    layer: &Layer,
    method: Method,
    sparsities: &[f64],
    device: Device,
) -> Result<Vec<(Variant, usize)>, WorkerError> {
    let keys = &layer.keys;
    let weights = &model.weights;
    let weight =
        weights.tensors.get(&keys.weight).ok_or_else(|| WorkerError::NoWeight { tensor: keys.weight.clone() })?;
    let rank = layer.output_shape.len().max(2);
    let mut out = Vec::new();
    for &s in sparsities {
        if method.is_structured() && layer.zero_preserving {
            let gone = prune::mask::filters(weight, s, method == Method::L2Filter);
            let mut keep = vec![1f32; weight.shape[0]];
            for &f in &gone {
                keep[f] = 0.0;
            }
            let per = weight.data.len() / weight.shape[0].max(1);
            let mut shape = vec![1i64; rank];
            shape[1] = -1;
            let mask = Tensor::f_from_slice(&keep)?.f_view(shape.as_slice())?.f_to_device(device)?;
            out.push((Variant::ChannelMask(mask), gone.len() * per));
        } else {
            let mut w: Weights = weights.of_layer(keys)?;
            let count = prune::prune_layer(&mut w, keys, method, s);
            let mut changed = HashMap::new();
            for (name, t) in &w.tensors {
                let t = model.net_tensor(name, t);
                changed.insert(name.clone(), t.f_to_device(device)?);
            }
            out.push((Variant::Params(changed), count.weights_zeroed));
        }
    }
    Ok(out)
}

/// The model's first output with the layer changed by `variant`: the layer from `acts`
/// (or its unpruned chain output masked), then the nodes that depend on it.
fn variant_output(
    net: &Net,
    suffix: &Suffix,
    layer: &Layer,
    acts: &HashMap<String, Tensor>,
    unpruned: Option<&Tensor>,
    variant: &Variant,
) -> Result<Tensor, WorkerError> {
    let given = |names: &[String], acts: &HashMap<String, Tensor>| -> Result<HashMap<String, Tensor>, WorkerError> {
        names
            .iter()
            .map(|n| {
                let t = acts.get(n).ok_or_else(|| WorkerError::TensorMissing { tensor: n.clone() })?;
                Ok((n.clone(), t.shallow_clone()))
            })
            .collect()
    };
    let out = match (variant, unpruned) {
        (Variant::ChannelMask(m), Some(u)) => {
            let mut with =
                given(&suffix.after_needed.iter().filter(|n| **n != layer.output).cloned().collect::<Vec<_>>(), acts)?;
            with.insert(layer.output.clone(), u.f_mul(m)?);
            net.run_nodes(&suffix.after, with, &HashMap::new(), Keep::Outputs)?
        }
        (Variant::ChannelMask(_), None) => return Err(WorkerError::TensorMissing { tensor: layer.output.clone() }),
        (Variant::Params(p), _) => net.run_nodes(&suffix.nodes, given(&suffix.needed, acts)?, p, Keep::Outputs)?,
    };
    let name = &net.outputs[0].name;
    out.get(name).map(Tensor::shallow_clone).ok_or_else(|| WorkerError::TensorMissing { tensor: name.clone() })
}

/// The chain's unpruned output from `acts`.
fn unpruned_output(
    net: &Net,
    suffix: &Suffix,
    layer: &Layer,
    acts: &HashMap<String, Tensor>,
) -> Result<Tensor, WorkerError> {
    let mut given = HashMap::new();
    for n in &suffix.chain_inputs {
        let t = acts.get(n).ok_or_else(|| WorkerError::TensorMissing { tensor: n.clone() })?;
        given.insert(n.clone(), t.shallow_clone());
    }
    let mut out = net.run_nodes(&layer.chain, given, &HashMap::new(), Keep::All)?;
    out.remove(&layer.output).ok_or_else(|| WorkerError::TensorMissing { tensor: layer.output.clone() })
}

/// YOLO rows of `predictor`'s model for `image` with layer `block` (its id) pruned at each of
/// `sparsities` by `method`, computed the engine's way: the full pass's tensors the pruned
/// layer and its dependents read, the layer, then only the nodes that depend on it.
pub fn pruned_detections(
    predictor: &NetPredictor,
    model: &Model,
    block: usize,
    method: Method,
    sparsities: &[f64],
    image: &Tensor,
) -> Result<Vec<Tensor>, WorkerError> {
    let net = &predictor.net;
    let layer = model.layer_by_id(block).ok_or(WorkerError::NotConv { block })?;
    let variants = variants(model, layer, method, sparsities, predictor.device())?;
    let input = net.inputs[0].name.clone();
    let mut acts = net.run(vec![(input.clone(), image.shallow_clone())], Keep::All)?;
    acts.insert(input, executor_layout(image));
    let suffix = Suffix::of(net, layer);
    let unpruned = if variants.iter().any(|v| matches!(v.0, Variant::ChannelMask(_))) {
        Some(unpruned_output(net, &suffix, layer, &acts)?)
    } else {
        None
    };
    variants
        .iter()
        .map(|(v, _)| {
            let out = variant_output(net, &suffix, layer, &acts, unpruned.as_ref(), v)?;
            Ok(predictor.rows(&out)?.f_to_kind(Kind::Float)?)
        })
        .collect()
}

/// Runs jobs from `jobs` until it is empty or `cancel` is set.
pub(crate) fn run_worker(
    shared: &Shared,
    device: Device,
    threads: usize,
    jobs: Receiver<Job>,
    msgs: Sender<WorkerMsg>,
    cancel: &AtomicBool,
) -> WorkerTiming {
    tch::set_num_threads(threads as i32);
    let mut timing = WorkerTiming::default();
    let predictor = match NetPredictor::new(shared.model, &shared.model.weights, device) {
        Ok(n) => n,
        Err(e) => {
            let _ = msgs.send(WorkerMsg::Failed(SensitivityError::WorkerStart { device, source: Box::new(e) }));
            return timing;
        }
    };
    for job in jobs.iter() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        if let Err(e) = run_job(shared, &predictor, device, &job, &msgs, cancel, &mut timing) {
            let layer = shared.model.layers[job.layer].name.clone();
            let _ = msgs.send(WorkerMsg::Failed(SensitivityError::Point { layer, source: Box::new(e) }));
            break;
        }
    }
    timing
}

fn run_job(
    shared: &Shared,
    predictor: &NetPredictor,
    device: Device,
    job: &Job,
    msgs: &Sender<WorkerMsg>,
    cancel: &AtomicBool,
    timing: &mut WorkerTiming,
) -> Result<(), WorkerError> {
    let started = Instant::now();
    let net = &predictor.net;
    let model = shared.model;
    let layer = &model.layers[job.layer];
    let variants = variants(model, layer, shared.method, &job.sparsities, device)?;
    let suffix = Suffix::of(net, layer);
    let input = net.inputs[0].name.clone();
    let reads_image = suffix.needed.contains(&input);
    let per_image_macs = job_macs(model, job);
    let mut preds: Vec<Collected> = variants.iter().map(|_| Collected::new(shared.dataset)).collect();
    for (b, batch) in shared.batches.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let t = Instant::now();
        // The images are read only to recompute tensors or by a layer that reads them.
        let x = if shared.cache[b].is_none() || reads_image {
            Some(batch.tensor(shared.size, device, shared.dataset, shared.prep)?)
        } else {
            None
        };
        let mut acts: HashMap<String, Tensor> = HashMap::new();
        match (&shared.cache[b], &x) {
            (Some(cached), _) => {
                for n in suffix.needed.iter().filter(|n| **n != input) {
                    let a = cached.get(n).ok_or_else(|| WorkerError::TensorMissing { tensor: n.clone() })?;
                    acts.insert(n.clone(), a.to_tensor(device)?);
                }
            }
            (None, Some(x)) => {
                let mut all = net.run(vec![(input.clone(), x.shallow_clone())], Keep::All)?;
                for n in suffix.needed.iter().filter(|n| **n != input) {
                    let t = all.remove(n).ok_or_else(|| WorkerError::TensorMissing { tensor: n.clone() })?;
                    acts.insert(n.clone(), t);
                }
            }
            (None, None) => return Err(WorkerError::TensorMissing { tensor: input.clone() }),
        }
        if let (true, Some(x)) = (reads_image, &x) {
            // As `Net::run` feeds it.
            acts.insert(input.clone(), executor_layout(x));
        }
        timing.activations_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let unpruned = if variants.iter().any(|v| matches!(v.0, Variant::ChannelMask(_))) {
            Some(unpruned_output(net, &suffix, layer, &acts)?)
        } else {
            None
        };
        let mut forward_s = t.elapsed().as_secs_f64();
        for (k, (variant, _)) in variants.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            let t = Instant::now();
            let out = variant_output(net, &suffix, layer, &acts, unpruned.as_ref(), variant)?;
            if let Device::Cuda(i) = device {
                tch::Cuda::synchronize(i as i64);
            }
            forward_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            preds[k].add(predictor, &out, &batch.metas, shared.dataset, shared.ecfg)?;
            timing.nms_s += t.elapsed().as_secs_f64();
        }
        timing.forward_s += forward_s;
        let n = batch.metas.len() as u64;
        timing.macs += per_image_macs * n;
        let _ = msgs.send(WorkerMsg::Progress { macs: per_image_macs * n, images: n * variants.len() as u64 });
    }
    let seconds = started.elapsed().as_secs_f64() / variants.len().max(1) as f64;
    for (k, (_, zeroed)) in variants.iter().enumerate() {
        let t = Instant::now();
        let metrics = preds[k].score(shared.dataset, shared.ecfg)?;
        timing.metrics_s += t.elapsed().as_secs_f64();
        let _ = msgs.send(WorkerMsg::Point(PointRecord {
            layer: layer.name.clone(),
            block: layer.id,
            sparsity: job.sparsities[k],
            zeroed: *zeroed,
            metrics,
            seconds,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{try_letterbox, OnBad};

    fn picture(w: u32, h: u32, seed: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| {
            let v = |c: u32| ((x * 37 + y * 101 + c * 53 + seed * 7919).wrapping_mul(2_654_435_761) >> 24) as u8;
            image::Rgb([v(0), v(1), v(2)])
        })
    }

    /// However a batch keeps its images (the picture, the floats, or nothing: decoded again
    /// from the file), its input is exactly what the batch held before images were kept
    /// compactly: each image's letterboxed floats, one after the other. At the model size the
    /// letterbox copies the picture, so each float is derived here as pixel × (1/255), CHW.
    #[test]
    fn stored_pixels_give_back_the_letterboxed_floats() {
        let d = tempfile::tempdir().unwrap();
        let size = 32u32;
        // At the model size; smaller (scaled up, padded); larger than its floats (kept as
        // floats); and one whose pixels are forgotten (decoded again).
        let pics = [picture(32, 32, 1), picture(20, 12, 2), picture(200, 150, 3), picture(40, 30, 4)];
        for (i, p) in pics.iter().enumerate() {
            p.save(d.path().join(format!("{i}.png"))).unwrap();
        }
        let ds = Dataset::Detection(crate::data::DetectionDataset::open(d.path(), Some(1), OnBad::Error).unwrap());
        let prep = Preprocess::Letterbox;
        assert_eq!(ds.len(), 4);
        let mut batch = Batch::default();
        for (i, p) in pics.iter().enumerate() {
            let (px, lb) = Pixels::keep(p.clone(), try_letterbox(p, size).unwrap());
            batch.push(i, px, lb);
        }
        batch.images[3] = Pixels::Reload;
        assert!(matches!(batch.images[0], Pixels::Rgb(_)) && matches!(batch.images[1], Pixels::Rgb(_)));
        assert!(matches!(batch.images[2], Pixels::Letterboxed(_)));
        assert!(batch.metas.iter().all(|(_, lb)| lb.data.is_empty()));
        let plane = (3 * size * size) as usize;
        assert_eq!(batch.bytes(), (32 * 32 * 3 + 20 * 12 * 3 + plane * 4) as u64);
        let before: Vec<f32> = pics.iter().flat_map(|p| try_letterbox(p, size).unwrap().data).collect();
        let got = batch.input(size, &ds, prep).unwrap();
        assert_eq!(got.len(), before.len());
        assert!(got.iter().zip(&before).all(|(a, b)| a.to_bits() == b.to_bits()));
        let s = size as usize;
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    let want = pics[0].get_pixel(x as u32, y as u32)[c] as f32 * (1.0 / 255.0);
                    assert_eq!(got[c * s * s + y * s + x].to_bits(), want.to_bits(), "c {c} y {y} x {x}");
                }
            }
        }
        let t = batch.tensor(size, Device::Cpu, &ds, prep).unwrap();
        assert_eq!(t.size(), vec![4, 3, 32, 32]);
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), before);
        // Forgetting keeps nothing; the input is still the same.
        batch.forget();
        assert_eq!(batch.bytes(), 0);
        let again = batch.input(size, &ds, prep).unwrap();
        assert!(again.iter().zip(&before).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
