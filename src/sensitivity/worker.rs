//! A worker: owns a model copy on its device and computes the points of one layer at a time.
//!
//! For layer L it fetches, per batch, the activations the blocks depending on L read (from
//! the cache, or recomputed past the memory cap), runs L with each sparsity's weights (for
//! filter pruning: L once, then its pruned channels zeroed, which is what the pruned layer
//! outputs), then only the blocks that depend on L.

use super::{Metrics, PointRecord, SensitivityError};
use crate::data::{load_rgb, try_letterbox, DataError, DetectionDataset, Letterboxed};
use crate::eval::{self, EvalConfig, EvalError, EvalReport, ImagePrediction};
use crate::model::weights::ConvKeys;
use crate::model::{
    Activation as Act, BlockKind, Cfg, ConvParams, Darknet, ForwardError, Graph, Layout, LayoutError, Source,
    TensorF32, Weights,
};
use crate::prune::{self, Method};
use crossbeam_channel::{Receiver, Sender};
use std::collections::BTreeMap;
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
    /// The layer's tensors, taken from the checkpoint to be pruned.
    #[error("{0}")]
    Layout(#[from] LayoutError),
    /// Scoring the detections.
    #[error("{0}")]
    Eval(#[from] EvalError),
    #[error("block {block} is no convolution")]
    NotConv { block: usize },
    #[error("the checkpoint has no tensor {tensor}")]
    NoWeight { tensor: String },
    #[error("the output of block {block} is missing")]
    BlockOutputMissing { block: usize },
    #[error("block {block} missing from the cache")]
    NotCached { block: usize },
    #[error("the input of block {block} is missing")]
    LayerInputMissing { block: usize },
    #[error("the images of the batch are missing")]
    ImageMissing,
}

/// A decoded image as a batch keeps it: the smaller of two forms that both give back exactly
/// the letterboxed floats the evaluation feeds the model (`letterbox` is deterministic), or
/// nothing when it is past the memory cap.
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

    /// The input, N·3·S·S floats, exactly as `letterbox` gives each image.
    pub fn input(&self, size: u32, dataset: &DetectionDataset) -> Result<Vec<f32>, WorkerError> {
        let boxed = |img: &image::RgbImage, path: &std::path::Path| {
            try_letterbox(img, size)
                .map_err(|source| WorkerError::Decode(DataError::Letterbox { file: path.to_path_buf(), source }))
        };
        let plane = 3 * size as usize * size as usize;
        let mut out = Vec::with_capacity(plane * self.metas.len());
        for ((i, _), px) in self.metas.iter().zip(&self.images) {
            match px {
                Pixels::Rgb(img) => out.extend_from_slice(&boxed(img, &dataset.samples[*i].image)?.data),
                Pixels::Letterboxed(v) => out.extend_from_slice(v),
                Pixels::Reload => {
                    let path = &dataset.samples[*i].image;
                    let img = load_rgb(path).map_err(WorkerError::Decode)?;
                    out.extend_from_slice(&boxed(&img, path)?.data);
                }
            }
        }
        Ok(out)
    }

    /// The input as a tensor `[N, 3, S, S]` on `device`.
    pub fn tensor(&self, size: u32, device: Device, dataset: &DetectionDataset) -> Result<Tensor, WorkerError> {
        let s = size as i64;
        let input = self.input(size, dataset)?;
        Ok(Tensor::f_from_slice(&input)?.f_view([self.metas.len() as i64, 3, s, s])?.f_to_device(device)?)
    }
}

/// A cached activation as plain data (shared by all workers; tensors are not Sync).
pub(crate) struct Activation {
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

impl Activation {
    pub fn from_tensor(t: &Tensor) -> Result<Self, tch::TchError> {
        let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
        Ok(Self { shape: t.size(), data: Vec::<f32>::try_from(t.f_flatten(0, -1)?)? })
    }

    fn to_tensor(&self, device: Device) -> Result<Tensor, tch::TchError> {
        Tensor::f_from_slice(&self.data)?.f_view(self.shape.as_slice())?.f_to_device(device)
    }
}

/// What every worker reads.
pub(crate) struct Shared<'a> {
    pub cfg: &'a Cfg,
    pub graph: &'a Graph,
    pub layout: &'a Layout,
    pub weights: &'a Weights,
    pub dataset: &'a DetectionDataset,
    pub ecfg: &'a EvalConfig,
    pub batches: &'a [Batch],
    /// Per batch: cached block outputs by block index (None: recompute).
    pub cache: &'a [Option<BTreeMap<usize, Activation>>],
    pub method: Method,
    pub size: u32,
}

/// The sparsities of one layer still to compute.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub block: usize,
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

pub(crate) fn metrics_of(r: &EvalReport) -> Metrics {
    Metrics { map50: r.map50, map: r.map, precision: r.precision, recall: r.recall }
}

/// Whether a pruned filter of this layer outputs zero: its activation maps 0 to 0.
fn zero_preserving(cfg: &Cfg, block: usize) -> bool {
    match &cfg.blocks[block].kind {
        BlockKind::Convolutional(c) => !matches!(c.activation, Act::Logistic),
        _ => false,
    }
}

/// MACs one image costs for `job` (ptflops convention): the layer per sparsity (once for
/// filter pruning) plus the blocks depending on it per sparsity.
pub(crate) fn job_macs(graph: &Graph, job: &Job) -> u64 {
    let deps = graph.descendants(job.block);
    let after: u64 = graph.nodes.iter().filter(|n| deps[n.index] && n.index != job.block).map(|n| n.macs).sum();
    (graph.nodes[job.block].macs + after) * job.sparsities.len() as u64
}

fn to_device(t: &TensorF32, device: Device) -> Result<Tensor, tch::TchError> {
    let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_slice(&t.data)?.f_reshape(&shape)?.f_to_device(device)
}

/// How one sparsity changes the layer.
enum Variant {
    /// The layer's own tensors, pruned.
    Params(ConvParams),
    /// Per-channel keep mask `[1, C, 1, 1]` applied to the unpruned layer output.
    ChannelMask(Tensor),
}

fn variants(
    cfg: &Cfg,
    weights: &Weights,
    method: Method,
    keys: &ConvKeys,
    sparsities: &[f64],
    device: Device,
) -> Result<Vec<(Variant, usize)>, WorkerError> {
    let block = keys.block;
    let weight =
        weights.tensors.get(&keys.weight).ok_or_else(|| WorkerError::NoWeight { tensor: keys.weight.clone() })?;
    let mut out = Vec::new();
    for &s in sparsities {
        if method.is_structured() && zero_preserving(cfg, block) {
            let gone = prune::mask::filters(weight, s, method == Method::L2Filter);
            let mut keep = vec![1f32; weight.shape[0]];
            for &f in &gone {
                keep[f] = 0.0;
            }
            let per = weight.data.len() / weight.shape[0].max(1);
            let mask = Tensor::from_slice(&keep).view([1, -1, 1, 1]).to_device(device);
            out.push((Variant::ChannelMask(mask), gone.len() * per));
        } else {
            let mut w = weights.of_layer(keys)?;
            let count = prune::prune_layer(&mut w, keys, method, s);
            let dev = |k: &String| to_device(&w.tensors[k], device);
            let params = ConvParams {
                weight: dev(&keys.weight)?,
                bias: keys.bias.as_ref().map(dev).transpose()?,
                bn: match &keys.bn {
                    Some([a, b, c, d]) => Some([dev(a)?, dev(b)?, dev(c)?, dev(d)?]),
                    None => None,
                },
            };
            out.push((Variant::Params(params), count.weights_zeroed));
        }
    }
    Ok(out)
}

/// Detections with layer `l` changed by `variant`: the layer from its input `x_in` (or the
/// unpruned output masked), then the blocks in `after` from `acts` and the layer output.
#[allow(clippy::too_many_arguments)]
fn variant_detections(
    net: &Darknet,
    l: usize,
    after: &[bool],
    acts: &BTreeMap<Source, Tensor>,
    x_in: &Tensor,
    unpruned: Option<&Tensor>,
    variant: &Variant,
    image_shape: &[i64],
) -> Result<Tensor, WorkerError> {
    let y = match (variant, unpruned) {
        (Variant::ChannelMask(m), Some(u)) => u.f_mul(m)?,
        (Variant::ChannelMask(m), None) => {
            let own = net.conv_params(l).ok_or(WorkerError::NotConv { block: l })?;
            net.apply_conv(l, x_in, &own)?.f_mul(m)?
        }
        (Variant::Params(p), _) => net.apply_conv(l, x_in, p)?,
    };
    let mut given: BTreeMap<Source, Tensor> = acts.iter().map(|(s, t)| (*s, t.shallow_clone())).collect();
    given.insert(Source::Block(l), y);
    let det = net.forward_subset(after, image_shape, given)?;
    Ok(det.f_to_kind(Kind::Float)?)
}

/// The detections of `net` for `image` with convolution `block` pruned at each of
/// `sparsities` by `method`, computed the engine's way: the block outputs the pruned layer
/// and its dependents read, the layer, then only the blocks that depend on it.
#[allow(clippy::too_many_arguments)]
pub fn pruned_detections(
    net: &Darknet,
    cfg: &Cfg,
    graph: &Graph,
    weights: &Weights,
    block: usize,
    method: Method,
    sparsities: &[f64],
    image: &Tensor,
) -> Result<Vec<Tensor>, WorkerError> {
    let layout = Layout::of(cfg, graph);
    let keys = layout.convs.iter().find(|c| c.block == block).ok_or(WorkerError::NotConv { block })?;
    let variants = variants(cfg, weights, method, keys, sparsities, net.device())?;
    let out = net.forward_from(0, &image.size(), BTreeMap::from([(Source::Image, image.shallow_clone())]), true)?;
    let compute = graph.descendants(block);
    let mut after = compute.clone();
    after[block] = false;
    let mut acts = BTreeMap::new();
    for s in graph.subset_inputs(&compute) {
        let t = match s {
            Source::Image => image.shallow_clone(),
            Source::Block(j) => {
                out.blocks[j].as_ref().ok_or(WorkerError::BlockOutputMissing { block: j })?.shallow_clone()
            }
        };
        acts.insert(s, t);
    }
    let x_in = acts.get(&graph.nodes[block].inputs[0]).ok_or(WorkerError::LayerInputMissing { block })?.shallow_clone();
    variants.iter().map(|(v, _)| variant_detections(net, block, &after, &acts, &x_in, None, v, &image.size())).collect()
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
    let net = match Darknet::new(shared.cfg, shared.graph, shared.weights, device) {
        Ok(n) => n,
        Err(e) => {
            let _ = msgs.send(WorkerMsg::Failed(SensitivityError::WorkerStart { device, source: e }));
            return timing;
        }
    };
    for job in jobs.iter() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        if let Err(e) = run_job(shared, &net, device, &job, &msgs, cancel, &mut timing) {
            let _ = msgs.send(WorkerMsg::Failed(SensitivityError::Point { block: job.block, source: Box::new(e) }));
            break;
        }
    }
    timing
}

fn run_job(
    shared: &Shared,
    net: &Darknet,
    device: Device,
    job: &Job,
    msgs: &Sender<WorkerMsg>,
    cancel: &AtomicBool,
    timing: &mut WorkerTiming,
) -> Result<(), WorkerError> {
    let started = Instant::now();
    let l = job.block;
    let graph = shared.graph;
    let keys = shared.layout.convs.iter().find(|c| c.block == l).ok_or(WorkerError::NotConv { block: l })?;
    let variants = variants(shared.cfg, shared.weights, shared.method, keys, &job.sparsities, device)?;
    let own = net.conv_params(l).ok_or(WorkerError::NotConv { block: l })?;
    let compute = graph.descendants(l);
    let mut after = compute.clone();
    after[l] = false;
    let needed = graph.subset_inputs(&compute);
    let x_src = graph.nodes[l].inputs[0];
    let per_image_macs = job_macs(graph, job);
    let mut preds: Vec<Vec<ImagePrediction>> = vec![Vec::new(); variants.len()];
    for (b, batch) in shared.batches.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(());
        }
        let t = Instant::now();
        let side = shared.size as i64;
        let image_shape = vec![batch.metas.len() as i64, 3, side, side];
        // The images are read only to recompute activations or by a layer that reads them.
        let x = if shared.cache[b].is_none() || needed.contains(&Source::Image) {
            Some(batch.tensor(shared.size, device, shared.dataset)?)
        } else {
            None
        };
        let image = || x.as_ref().map(|x| x.shallow_clone()).ok_or(WorkerError::ImageMissing);
        let mut acts: BTreeMap<Source, Tensor> = BTreeMap::new();
        match &shared.cache[b] {
            Some(cached) => {
                for s in &needed {
                    let t = match s {
                        Source::Image => image()?,
                        Source::Block(j) => {
                            cached.get(j).ok_or(WorkerError::NotCached { block: *j })?.to_tensor(device)?
                        }
                    };
                    acts.insert(*s, t);
                }
            }
            None => {
                let out = net.forward_from(0, &image_shape, BTreeMap::from([(Source::Image, image()?)]), true)?;
                for s in &needed {
                    let t = match s {
                        Source::Image => image()?,
                        Source::Block(j) => out.blocks[*j]
                            .as_ref()
                            .ok_or(WorkerError::BlockOutputMissing { block: *j })?
                            .shallow_clone(),
                    };
                    acts.insert(*s, t);
                }
            }
        }
        timing.activations_s += t.elapsed().as_secs_f64();
        let x_in = acts.get(&x_src).ok_or(WorkerError::LayerInputMissing { block: l })?.shallow_clone();
        let t = Instant::now();
        let unpruned = if variants.iter().any(|v| matches!(v.0, Variant::ChannelMask(_))) {
            Some(net.apply_conv(l, &x_in, &own)?)
        } else {
            None
        };
        let mut forward_s = t.elapsed().as_secs_f64();
        for (k, (variant, _)) in variants.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            let t = Instant::now();
            let det = variant_detections(net, l, &after, &acts, &x_in, unpruned.as_ref(), variant, &image_shape)?;
            if let Device::Cuda(i) = device {
                tch::Cuda::synchronize(i as i64);
            }
            forward_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            preds[k].extend(eval::postprocess(&det, &batch.metas, &shared.ecfg.nms)?);
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
        let report = eval::score(shared.dataset, &preds[k], shared.ecfg)?;
        timing.metrics_s += t.elapsed().as_secs_f64();
        let _ = msgs.send(WorkerMsg::Point(PointRecord {
            layer: format!("conv_{l}"),
            block: l,
            sparsity: job.sparsities[k],
            zeroed: *zeroed,
            metrics: metrics_of(&report),
            seconds,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::OnBad;

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
        let ds = DetectionDataset::open(d.path(), Some(1), OnBad::Error).unwrap();
        assert_eq!(ds.samples.len(), 4);
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
        let got = batch.input(size, &ds).unwrap();
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
        let t = batch.tensor(size, Device::Cpu, &ds).unwrap();
        assert_eq!(t.size(), vec![4, 3, 32, 32]);
        assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), before);
        // Forgetting keeps nothing; the input is still the same.
        batch.forget();
        assert_eq!(batch.bytes(), 0);
        let again = batch.input(size, &ds).unwrap();
        assert!(again.iter().zip(&before).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
