//! The Darknet forward pass on tch, in eval mode, matching PyTorch-YOLOv3 output for output.
//!
//! Besides the full pass it can keep every block's output and run only a suffix of the
//! network from given tensors (the sensitivity analysis prunes layer L and reruns from L).

use super::cfg::{Activation, BlockKind, Cfg};
use super::graph::{Graph, Source};
use super::weights::{ConvKeys, Layout, LayoutError, TensorF32, Weights};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// A forward-pass error.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("input of shape {got:?}: expected [N, {channels}, H, W] with H and W positive multiples of 32")]
    BadInput { got: Vec<i64>, channels: usize },
    #[error("block {block} needs the output of {input:?}, which was not given")]
    MissingInput { block: usize, input: Source },
    #[error("start block {start} is past the last block ({blocks} blocks)")]
    BadStart { start: usize, blocks: usize },
    #[error("weights do not fit the cfg: {0}")]
    Weights(#[source] LayoutError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The IR executor.
    #[error("{0}")]
    Net(#[from] super::ir::NetError),
    /// Output the task cannot read.
    #[error("{0}")]
    Task(String),
}

/// A `--device` value that names no device of this machine; `value` is what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not `cpu`, `cuda`, `cuda:N` or `auto`.
    #[error("device `{value}`: expected cpu, cuda, cuda:N or auto")]
    Unknown { value: String },
    /// A CUDA device asked for where libtorch sees no GPU.
    #[error("device `{value}`: CUDA is not available on this machine (libtorch sees no GPU); use --device cpu")]
    NoCuda { value: String },
    /// A CUDA index at or past the number of GPUs (`count` > 0).
    #[error("device `{value}`: only {count} CUDA device(s) present (cuda:0..cuda:{})", count - 1)]
    NoSuchGpu { value: String, count: usize },
}

/// Picks a device from a `--device` value: `cpu`, `cuda`, `cuda:N` or `auto`.
pub fn parse_device(s: &str) -> Result<Device, DeviceError> {
    let cuda_count = || if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
    match s.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if cuda_count() > 0 { Device::Cuda(0) } else { Device::Cpu }),
        other => {
            let index = match other.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| DeviceError::Unknown { value: s.to_string() })?,
                None => return Err(DeviceError::Unknown { value: s.to_string() }),
            };
            let n = cuda_count();
            if index >= n {
                return Err(if n == 0 {
                    DeviceError::NoCuda { value: s.to_string() }
                } else {
                    DeviceError::NoSuchGpu { value: s.to_string(), count: n }
                });
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// The tensors of one convolution block: weight, optional bias, optional batch norm
/// (weight, bias, running mean, running var).
pub struct ConvParams {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub bn: Option<[Tensor; 4]>,
}

struct ConvLayer {
    weight: Tensor,
    bias: Option<Tensor>,
    /// weight, bias, running mean, running var
    bn: Option<[Tensor; 4]>,
    stride: i64,
    padding: i64,
    groups: i64,
    activation: Activation,
    keys: ConvKeys,
}

enum Layer {
    Conv(Box<ConvLayer>),
    Maxpool { size: i64, stride: i64 },
    Upsample { stride: i64 },
    Route { layers: Vec<usize>, groups: i64, group_id: i64 },
    Shortcut { from: usize },
    Yolo { anchors: Vec<(f32, f32)>, outputs: i64, new_coords: bool, scale_x_y: f64 },
}

/// The outputs of a forward pass.
pub struct ForwardOutput {
    /// `[N, rows, 5 + classes]`: boxes (cx, cy, w, h in input pixels), objectness and class
    /// scores after sigmoid, concatenated over the yolo heads in cfg order.
    pub detections: Tensor,
    /// Per block: its output when kept (all of them with `keep_all`), else None.
    pub blocks: Vec<Option<Tensor>>,
}

/// A Darknet model on one device, ready for inference.
pub struct Darknet {
    layers: Vec<Layer>,
    inputs: Vec<Vec<Source>>,
    last_use: Vec<Option<usize>>,
    channels: usize,
    device: Device,
}

impl Darknet {
    /// Builds the model from a cfg, its graph (any input size) and checked weights.
    pub fn new(cfg: &Cfg, graph: &Graph, weights: &Weights, device: Device) -> Result<Self, ForwardError> {
        let layout = Layout::of(cfg, graph);
        weights.check(&layout).map_err(ForwardError::Weights)?;
        let mut convs: BTreeMap<usize, _> = layout.convs.iter().map(|c| (c.block, c)).collect();
        let to_dev = |t: &TensorF32| -> Result<Tensor, ForwardError> {
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            Ok(Tensor::f_from_slice(&t.data)?.f_reshape(&shape)?.f_to_device(device)?)
        };
        let mut layers = Vec::with_capacity(cfg.blocks.len());
        for b in &cfg.blocks {
            layers.push(match &b.kind {
                BlockKind::Convolutional(c) => {
                    let keys = convs.remove(&b.index).expect("layout has every convolution");
                    let bn = match &keys.bn {
                        Some([w, bias, mean, var]) => Some([
                            to_dev(weights.get(w))?,
                            to_dev(weights.get(bias))?,
                            to_dev(weights.get(mean))?,
                            to_dev(weights.get(var))?,
                        ]),
                        None => None,
                    };
                    Layer::Conv(Box::new(ConvLayer {
                        weight: to_dev(weights.get(&keys.weight))?,
                        bias: keys.bias.as_ref().map(|k| to_dev(weights.get(k))).transpose()?,
                        bn,
                        stride: c.stride as i64,
                        padding: c.padding as i64,
                        groups: c.groups as i64,
                        activation: c.activation,
                        keys: keys.clone(),
                    }))
                }
                BlockKind::Maxpool { size, stride } => Layer::Maxpool { size: *size as i64, stride: *stride as i64 },
                BlockKind::Upsample { stride } => Layer::Upsample { stride: *stride as i64 },
                BlockKind::Route { layers, groups, group_id } => {
                    Layer::Route { layers: layers.clone(), groups: *groups as i64, group_id: *group_id as i64 }
                }
                BlockKind::Shortcut { from } => Layer::Shortcut { from: *from },
                BlockKind::Yolo(y) => Layer::Yolo {
                    anchors: y.head_anchors(),
                    outputs: y.outputs_per_anchor() as i64,
                    new_coords: y.new_coords,
                    scale_x_y: y.scale_x_y as f64,
                },
            });
        }
        Ok(Self {
            layers,
            inputs: graph.nodes.iter().map(|n| n.inputs.clone()).collect(),
            last_use: graph.last_use(),
            channels: cfg.channels,
            device,
        })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn num_blocks(&self) -> usize {
        self.layers.len()
    }

    /// Detections for an image batch `[N, C, H, W]`.
    pub fn forward(&self, image: &Tensor) -> Result<Tensor, ForwardError> {
        Ok(self
            .forward_from(0, image.size().as_slice(), BTreeMap::from([(Source::Image, image.shallow_clone())]), false)?
            .detections)
    }

    /// Detections plus the output of every block.
    pub fn forward_all(&self, image: &Tensor) -> Result<ForwardOutput, ForwardError> {
        self.forward_from(0, image.size().as_slice(), BTreeMap::from([(Source::Image, image.shallow_clone())]), true)
    }

    /// Runs blocks `start..` from `given`: every tensor that crosses the cut before `start`
    /// (see [`Graph::crossing`]). `image_shape` is the shape of the network input, which the
    /// yolo heads need for their strides. With `keep_all` every computed block output is
    /// returned; otherwise outputs are freed after their last use.
    pub fn forward_from(
        &self,
        start: usize,
        image_shape: &[i64],
        given: BTreeMap<Source, Tensor>,
        keep_all: bool,
    ) -> Result<ForwardOutput, ForwardError> {
        let _guard = tch::no_grad_guard();
        let (blocks, heads) = self.run(start, image_shape, given, keep_all, false, None)?;
        let detections = Tensor::f_cat(&heads, 1)?;
        Ok(ForwardOutput { detections, blocks })
    }

    /// Runs only the blocks marked in `compute` (see [`Graph::descendants`]); every other
    /// block a computed one reads, and every yolo head not computed, must be in `given`
    /// (see [`Graph::subset_inputs`]). Returns the detections.
    pub fn forward_subset(
        &self,
        compute: &[bool],
        image_shape: &[i64],
        given: BTreeMap<Source, Tensor>,
    ) -> Result<Tensor, ForwardError> {
        let _guard = tch::no_grad_guard();
        let start = compute.iter().position(|&c| c).unwrap_or(self.layers.len());
        let (_, heads) = self.run(start, image_shape, given, false, false, Some(compute))?;
        Ok(Tensor::f_cat(&heads, 1)?)
    }

    /// The tensors of convolution `block` (shallow copies), or None if it is no convolution.
    pub fn conv_params(&self, block: usize) -> Option<ConvParams> {
        match self.layers.get(block)? {
            Layer::Conv(c) => Some(ConvParams {
                weight: c.weight.shallow_clone(),
                bias: c.bias.as_ref().map(|b| b.shallow_clone()),
                bn: c.bn.as_ref().map(|bn| bn.each_ref().map(|t| t.shallow_clone())),
            }),
            _ => None,
        }
    }

    /// Convolution `block` (with its batch norm and activation) applied to `x` with `params`
    /// in place of its own tensors.
    pub fn apply_conv(&self, block: usize, x: &Tensor, params: &ConvParams) -> Result<Tensor, ForwardError> {
        let _guard = tch::no_grad_guard();
        match self.layers.get(block) {
            Some(Layer::Conv(c)) => {
                let swapped = ConvLayer {
                    weight: params.weight.shallow_clone(),
                    bias: params.bias.as_ref().map(|b| b.shallow_clone()),
                    bn: params.bn.as_ref().map(|bn| bn.each_ref().map(|t| t.shallow_clone())),
                    stride: c.stride,
                    padding: c.padding,
                    groups: c.groups,
                    activation: c.activation,
                    keys: c.keys.clone(),
                };
                conv(&swapped, x, false)
            }
            _ => Err(ForwardError::BadStart { start: block, blocks: self.layers.len() }),
        }
    }

    /// Training-mode pass: batch-norm uses batch statistics (and updates the running ones),
    /// gradients are recorded, and the yolo heads return their raw predictions
    /// `[N, anchors, H, W, 5 + classes]` (before sigmoid/exp), in cfg order.
    pub fn forward_train(&self, image: &Tensor) -> Result<Vec<Tensor>, ForwardError> {
        let given = BTreeMap::from([(Source::Image, image.shallow_clone())]);
        Ok(self.run(0, image.size().as_slice(), given, false, true, None)?.1)
    }

    /// Runs blocks `start..`; returns the kept block outputs and the yolo head outputs
    /// (decoded in eval mode, raw in training mode).
    fn run(
        &self,
        start: usize,
        image_shape: &[i64],
        mut given: BTreeMap<Source, Tensor>,
        keep_all: bool,
        train: bool,
        compute: Option<&[bool]>,
    ) -> Result<(Vec<Option<Tensor>>, Vec<Tensor>), ForwardError> {
        let n = self.layers.len();
        if start >= n {
            return Err(ForwardError::BadStart { start, blocks: n });
        }
        let ok_shape = image_shape.len() == 4
            && image_shape[1] == self.channels as i64
            && image_shape[0] > 0
            && image_shape[2] > 0
            && image_shape[3] > 0
            && image_shape[2] % 32 == 0
            && image_shape[3] % 32 == 0;
        if !ok_shape {
            return Err(ForwardError::BadInput { got: image_shape.to_vec(), channels: self.channels });
        }
        let (img_h, img_w) = (image_shape[2], image_shape[3]);
        let image = given.remove(&Source::Image);
        let mut slots: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        for (s, t) in given {
            if let Source::Block(j) = s {
                if j < n {
                    slots[j] = Some(t);
                }
            }
        }
        let mut yolo_heads = Vec::new();
        for i in 0..n {
            if matches!(self.layers[i], Layer::Yolo { .. }) {
                yolo_heads.push(i);
            }
        }
        for i in start..n {
            if compute.is_some_and(|c| !c.get(i).copied().unwrap_or(false)) {
                continue;
            }
            let get = |s: Source, slots: &[Option<Tensor>]| -> Result<Tensor, ForwardError> {
                let t = match s {
                    Source::Image => image.as_ref(),
                    Source::Block(j) => slots[j].as_ref(),
                };
                t.map(|t| t.shallow_clone()).ok_or(ForwardError::MissingInput { block: i, input: s })
            };
            let x = get(self.inputs[i][0], &slots)?;
            let out = match &self.layers[i] {
                Layer::Conv(c) => conv(c, &x, train)?,
                Layer::Maxpool { size, stride } => {
                    if *size == 2 && *stride == 1 {
                        // PyTorch-YOLOv3 pads right and bottom with zeros (not -inf).
                        x.f_constant_pad_nd([0, 1, 0, 1])?.f_max_pool2d([2, 2], [1, 1], [0, 0], [1, 1], false)?
                    } else {
                        let p = (size - 1) / 2;
                        x.f_max_pool2d([*size, *size], [*stride, *stride], [p, p], [1, 1], false)?
                    }
                }
                Layer::Upsample { stride } => {
                    let (h, w) = (x.size()[2], x.size()[3]);
                    x.f_upsample_nearest2d([h * stride, w * stride], Some(*stride as f64), Some(*stride as f64))?
                }
                Layer::Route { layers, groups, group_id } => {
                    let parts: Vec<Tensor> =
                        layers.iter().map(|&l| get(Source::Block(l), &slots)).collect::<Result<_, _>>()?;
                    let cat = if parts.len() == 1 { parts[0].shallow_clone() } else { Tensor::f_cat(&parts, 1)? };
                    if *groups == 1 {
                        cat
                    } else {
                        let g = cat.size()[1] / groups;
                        cat.f_narrow(1, g * group_id, g)?
                    }
                }
                Layer::Shortcut { from } => x.f_add(&get(Source::Block(*from), &slots)?)?,
                Layer::Yolo { anchors, outputs, .. } if train => {
                    let size = x.size();
                    let na = anchors.len() as i64;
                    x.f_view([size[0], na, *outputs, size[2], size[3]])?.f_permute([0, 1, 3, 4, 2])?.f_contiguous()?
                }
                Layer::Yolo { anchors, outputs, new_coords, scale_x_y } => {
                    yolo(&x, anchors, *outputs, *new_coords, *scale_x_y, img_h, img_w)?
                }
            };
            slots[i] = Some(out);
            if !keep_all {
                for s in &self.inputs[i] {
                    if let Source::Block(j) = *s {
                        if self.last_use[j] == Some(i) && !yolo_heads.contains(&j) {
                            slots[j] = None;
                        }
                    }
                }
            }
        }
        let heads: Vec<Tensor> = yolo_heads
            .iter()
            .map(|&h| {
                slots[h]
                    .as_ref()
                    .map(|t| t.shallow_clone())
                    .ok_or(ForwardError::MissingInput { block: n, input: Source::Block(h) })
            })
            .collect::<Result<_, _>>()?;
        Ok((slots, heads))
    }

    /// Turns gradient recording of the parameters (conv weight and bias, BN weight and
    /// bias) on or off; running statistics never record gradients.
    pub fn set_trainable(&mut self, on: bool) {
        for l in &mut self.layers {
            if let Layer::Conv(c) = l {
                c.weight = c.weight.set_requires_grad(on);
                if let Some(b) = &mut c.bias {
                    *b = b.set_requires_grad(on);
                }
                if let Some([w, b, _, _]) = &mut c.bn {
                    *w = w.set_requires_grad(on);
                    *b = b.set_requires_grad(on);
                }
            }
        }
    }

    /// The trainable parameters with their state-dict keys.
    pub fn parameters(&self) -> Vec<(&str, &Tensor)> {
        let mut out = Vec::new();
        for l in &self.layers {
            if let Layer::Conv(c) = l {
                out.push((c.keys.weight.as_str(), &c.weight));
                if let (Some(k), Some(t)) = (&c.keys.bias, &c.bias) {
                    out.push((k.as_str(), t));
                }
                if let (Some(k), Some(t)) = (&c.keys.bn, &c.bn) {
                    out.push((k[0].as_str(), &t[0]));
                    out.push((k[1].as_str(), &t[1]));
                }
            }
        }
        out
    }

    /// Every tensor (parameters and running statistics) copied back to plain Rust data.
    pub fn to_weights(&self) -> Result<Weights, ForwardError> {
        let mut w = Weights::default();
        let mut put = |k: &str, t: &Tensor| -> Result<(), ForwardError> {
            let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let data = Vec::<f32>::try_from(t.f_flatten(0, -1)?)?;
            w.tensors.insert(k.to_string(), TensorF32::new(shape, data));
            Ok(())
        };
        for l in &self.layers {
            if let Layer::Conv(c) = l {
                put(&c.keys.weight, &c.weight)?;
                if let (Some(k), Some(t)) = (&c.keys.bias, &c.bias) {
                    put(k, t)?;
                }
                if let (Some(k), Some(t)) = (&c.keys.bn, &c.bn) {
                    for (key, tensor) in k.iter().zip(t.iter()) {
                        put(key, tensor)?;
                    }
                }
            }
        }
        Ok(w)
    }
}

fn conv(c: &ConvLayer, x: &Tensor, train: bool) -> Result<Tensor, ForwardError> {
    let y = x.f_conv2d(&c.weight, c.bias.as_ref(), [c.stride, c.stride], [c.padding, c.padding], [1, 1], c.groups)?;
    let y = match &c.bn {
        Some([w, b, mean, var]) => y.f_batch_norm(Some(w), Some(b), Some(mean), Some(var), train, 0.1, 1e-5, true)?,
        None => y,
    };
    Ok(match c.activation {
        Activation::Linear => y,
        // LeakyReLU(0.1): max(x, 0.1·x).
        Activation::Leaky => y.f_maximum(&y.f_mul_scalar(0.1)?)?,
        Activation::Relu => y.f_relu()?,
        Activation::Mish => y.f_mish()?,
        Activation::Swish => y.f_silu()?,
        Activation::Logistic => y.f_sigmoid()?,
    })
}

/// PyTorch-YOLOv3's YOLOLayer in eval mode, with Darknet's `scale_x_y` (YOLOv4): the cell
/// offset `σ(t)` (or `t` with `new_coords`) becomes `σ(t)·s − (s−1)/2` before the grid is added.
pub(crate) fn yolo(
    x: &Tensor,
    anchors: &[(f32, f32)],
    no: i64,
    new_coords: bool,
    scale_x_y: f64,
    img_h: i64,
    img_w: i64,
) -> Result<Tensor, ForwardError> {
    let size = x.size();
    let (bs, ny, nx) = (size[0], size[2], size[3]);
    let na = anchors.len() as i64;
    let dev = x.device();
    let x = x.f_view([bs, na, no, ny, nx])?.f_permute([0, 1, 3, 4, 2])?.f_contiguous()?;
    let xs = Tensor::f_arange(nx, (Kind::Float, dev))?.f_view([1, nx])?.f_expand([ny, nx], false)?;
    let ys = Tensor::f_arange(ny, (Kind::Float, dev))?.f_view([ny, 1])?.f_expand([ny, nx], false)?;
    let grid = Tensor::f_stack(&[xs, ys], 2)?.f_view([1, 1, ny, nx, 2])?;
    // Integer strides, as PyTorch-YOLOv3 computes them (img_size // grid size).
    let stride = Tensor::f_from_slice(&[(img_w / nx) as f32, (img_h / ny) as f32])?.f_to_device(dev)?;
    let flat: Vec<f32> = anchors.iter().flat_map(|&(w, h)| [w, h]).collect();
    let anchor_grid = Tensor::f_from_slice(&flat)?.f_view([1, na, 1, 1, 2])?.f_to_device(dev)?;
    let txy = x.f_narrow(4, 0, 2)?;
    let twh = x.f_narrow(4, 2, 2)?;
    let rest = x.f_narrow(4, 4, no - 4)?;
    let scale = |t: Tensor| -> Result<Tensor, ForwardError> {
        Ok(if scale_x_y == 1.0 { t } else { t.f_mul_scalar(scale_x_y)?.f_sub_scalar(0.5 * (scale_x_y - 1.0))? })
    };
    let (xy, wh, rest) = if new_coords {
        (scale(txy)?.f_add(&grid)?.f_mul(&stride)?, twh.f_square()?.f_mul(&anchor_grid.f_mul_scalar(4.0)?)?, rest)
    } else {
        (scale(txy.f_sigmoid()?)?.f_add(&grid)?.f_mul(&stride)?, twh.f_exp()?.f_mul(&anchor_grid)?, rest.f_sigmoid()?)
    };
    Ok(Tensor::f_cat(&[xy, wh, rest], 4)?.f_view([bs, -1, no])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device(" CPU "), Ok(Device::Cpu));
        let auto = parse_device("auto").unwrap();
        assert_eq!(auto == Device::Cpu, !tch::Cuda::is_available());
        for bad in ["gpu", "cuda:x", "cuda0", ""] {
            let e = parse_device(bad).unwrap_err();
            assert_eq!(e, DeviceError::Unknown { value: bad.to_string() });
            assert!(e.to_string().contains("expected cpu, cuda, cuda:N or auto"), "{bad}: {e}");
        }
        if !tch::Cuda::is_available() {
            let e = parse_device("cuda").unwrap_err();
            assert!(matches!(e, DeviceError::NoCuda { .. }), "{e}");
            assert!(e.to_string().contains("CUDA is not available on this machine"), "{e}");
        } else {
            let n = tch::Cuda::device_count();
            let e = parse_device(&format!("cuda:{n}")).unwrap_err();
            assert!(e.to_string().contains("CUDA device(s) present"), "{e}");
        }
    }
}
