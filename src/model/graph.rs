//! The graph IR: every block's inputs, shapes and cost for one input size and batch.
//!
//! Cost follows the ptflops convention (see DESIGN.md). Parameters are conv weight, conv
//! bias, BN weight and bias. MACs per block are conv MACs, plus conv bias (one per output
//! element), plus BN 2·numel, plus LeakyReLU/ReLU numel; upsample counts its output numel;
//! maxpool counts the numel of the `nn.MaxPool2d` input (for size-2 stride-1 pools that is
//! after PyTorch-YOLOv3's `ZeroPad2d((0,1,0,1))`, exactly what ptflops hooks see); other
//! activations, route, shortcut and yolo count 0.

use super::cfg::{Activation, BlockKind, Cfg, CfgError};
use serde::Serialize;

/// Where a block reads a tensor from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Source {
    /// The network input image batch.
    Image,
    /// The output of a block, by cfg index.
    Block(usize),
}

/// One block with its shapes and cost.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub index: usize,
    /// PyTorch-YOLOv3 module name (`conv_3`, `route_9`, ...).
    pub name: String,
    /// Cfg section (`convolutional`, `maxpool`, ...).
    pub kind: &'static str,
    pub inputs: Vec<Source>,
    /// Shape of the first input, NCHW.
    pub input_shape: Vec<usize>,
    /// Output shape: NCHW, or `[N, anchors·H·W, 5 + classes]` for yolo heads.
    pub output_shape: Vec<usize>,
    pub params: u64,
    /// All MACs of the block under the ptflops convention.
    pub macs: u64,
    /// MACs of the convolution alone (no bias, BN or activation).
    pub conv_macs: u64,
}

/// Shapes and cost of a cfg at one input size.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub batch: usize,
    /// Input NCHW.
    pub input_shape: Vec<usize>,
    pub nodes: Vec<Node>,
}

impl Graph {
    /// Infers shapes for an input of `batch × channels × height × width`.
    ///
    /// Height and width must be positive multiples of 32 (the largest stride of YOLO models).
    pub fn build(cfg: &Cfg, batch: usize, height: usize, width: usize) -> Result<Self, CfgError> {
        let path = || std::path::PathBuf::from(&cfg.source);
        let err = |line: usize, message: String| CfgError::Shape { path: path(), line, message };
        let input = |message: String| CfgError::Input { path: path(), message };
        if batch == 0 {
            return Err(input("batch size must be at least 1".into()));
        }
        if height > 1 << 20 || width > 1 << 20 {
            return Err(input(format!("input size {height}x{width}: expected at most 1048576 on each side")));
        }
        if height == 0 || width == 0 || !height.is_multiple_of(32) || !width.is_multiple_of(32) {
            return Err(input(format!("input size {height}x{width}: expected positive multiples of 32")));
        }
        let input_shape = vec![batch, cfg.channels, height, width];
        let mut nodes: Vec<Node> = Vec::with_capacity(cfg.blocks.len());
        const MAX_ALL_CHANNELS: usize = 1 << 26;
        let mut all_channels = 0usize;
        for b in &cfg.blocks {
            let i = b.index;
            let prev = if i == 0 { Source::Image } else { Source::Block(i - 1) };
            let shape_of = |s: Source| -> Vec<usize> {
                match s {
                    Source::Image => input_shape.clone(),
                    Source::Block(j) => nodes[j].output_shape.clone(),
                }
            };
            let x = shape_of(prev);
            let is_map = |s: &Vec<usize>| s.len() == 4;
            let needs_map = |s: &Vec<usize>, what: &str| -> Result<(), CfgError> {
                if is_map(s) {
                    Ok(())
                } else {
                    Err(err(
                        b.line,
                        format!(
                            "[{}] block {i} reads {what}, which is a yolo head output, not a feature map",
                            b.kind.section()
                        ),
                    ))
                }
            };
            // Every size and cost is computed with checked arithmetic: absurd cfg values
            // become an error at the block's line, never a wrapped number or a panic.
            let overflow = |what: &str| CfgError::Overflow {
                path: path(),
                line: b.line,
                section: b.kind.section(),
                block: i,
                what: what.to_string(),
                height,
                width,
            };
            let numel = |s: &[usize]| -> Result<u64, CfgError> {
                s.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).ok_or_else(|| overflow("element count"))
            };
            let mul = |what: &str, xs: &[u64]| -> Result<u64, CfgError> {
                xs.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| overflow(what))
            };
            let add = |what: &str, xs: &[u64]| -> Result<u64, CfgError> {
                xs.iter().try_fold(0u64, |a, &d| a.checked_add(d)).ok_or_else(|| overflow(what))
            };
            // A feature map dimension beyond this is no real model (and would not fit memory).
            const MAX_DIM: usize = 1 << 20;
            let dims_ok = |s: &[usize]| -> Result<(), CfgError> {
                match s.iter().find(|&&d| d > MAX_DIM) {
                    Some(d) => Err(err(
                        b.line,
                        format!(
                            "[{}] block {i}: output shape {s:?} has a dimension of {d}, expected at most {MAX_DIM}",
                            b.kind.section()
                        ),
                    )),
                    None => Ok(()),
                }
            };
            let (inputs, output_shape, params, macs, conv_macs) = match &b.kind {
                BlockKind::Convolutional(c) => {
                    needs_map(&x, "the previous block")?;
                    let (n, cin, h, w) = (x[0], x[1], x[2], x[3]);
                    if cin % c.groups != 0 {
                        return Err(err(
                            b.line,
                            format!("groups={} does not divide the {cin} input channels", c.groups),
                        ));
                    }
                    let (hp, wp) = (h as u64 + 2 * c.padding as u64, w as u64 + 2 * c.padding as u64);
                    if hp < c.size as u64 || wp < c.size as u64 {
                        return Err(err(
                            b.line,
                            format!("kernel size {} is larger than the padded input {h}x{w}", c.size),
                        ));
                    }
                    let ho = ((hp - c.size as u64) / c.stride as u64 + 1) as usize;
                    let wo = ((wp - c.size as u64) / c.stride as u64 + 1) as usize;
                    let out = vec![n, c.filters, ho, wo];
                    dims_ok(&out)?;
                    let (f, k) = (c.filters as u64, c.size as u64);
                    let per_filter = mul("weight count", &[(cin / c.groups) as u64, k, k])?;
                    let weights = mul("weight count", &[f, per_filter])?;
                    let params = add("parameter count", &[weights, if c.batch_normalize { 2 * f } else { f }])?;
                    let out_numel = numel(&out)?;
                    let conv = mul("MAC count", &[n as u64, ho as u64, wo as u64, per_filter, f])?;
                    // Conv bias (one per output element) or BN (two), plus LeakyReLU/ReLU.
                    let extra = if c.batch_normalize { 2 } else { 1 }
                        + u64::from(matches!(c.activation, Activation::Leaky | Activation::Relu));
                    let macs = add("MAC count", &[conv, mul("MAC count", &[extra, out_numel])?])?;
                    (vec![prev], out, params, macs, conv)
                }
                BlockKind::Maxpool { size, stride } => {
                    needs_map(&x, "the previous block")?;
                    let (n, ch, h, w) = (x[0], x[1], x[2], x[3]);
                    let (pad_total, pad_each) = if *size == 2 && *stride == 1 { (1, 0) } else { (0, (size - 1) / 2) };
                    let (hp, wp) = (h + pad_total + 2 * pad_each, w + pad_total + 2 * pad_each);
                    if hp < *size || wp < *size {
                        return Err(err(b.line, format!("pool size {size} is larger than the input {h}x{w}")));
                    }
                    let out = vec![n, ch, (hp - size) / stride + 1, (wp - size) / stride + 1];
                    let macs = numel(&[n, ch, h + pad_total, w + pad_total])?;
                    (vec![prev], out, 0, macs, 0)
                }
                BlockKind::Upsample { stride } => {
                    needs_map(&x, "the previous block")?;
                    let up = |d: usize| d.checked_mul(*stride).ok_or_else(|| overflow("output size"));
                    let out = vec![x[0], x[1], up(x[2])?, up(x[3])?];
                    dims_ok(&out)?;
                    let macs = numel(&out)?;
                    (vec![prev], out, 0, macs, 0)
                }
                BlockKind::Route { layers, groups, group_id: _ } => {
                    let srcs: Vec<Source> = layers.iter().map(|&l| Source::Block(l)).collect();
                    let first = shape_of(srcs[0]);
                    let mut channels = 0;
                    for (&l, s) in layers.iter().zip(&srcs) {
                        let sh = shape_of(*s);
                        needs_map(&sh, &format!("block {l}"))?;
                        if sh[2] != first[2] || sh[3] != first[3] {
                            return Err(err(
                                b.line,
                                format!(
                                    "route concatenates block {} ({}x{}) with block {l} ({}x{}): expected equal spatial sizes at input {height}x{width}",
                                    layers[0], first[2], first[3], sh[2], sh[3]
                                ),
                            ));
                        }
                        channels += sh[1];
                        if channels > MAX_DIM {
                            return Err(err(
                                b.line,
                                format!("route concatenates more than {MAX_DIM} channels: expected a real model"),
                            ));
                        }
                    }
                    if channels % groups != 0 {
                        return Err(err(
                            b.line,
                            format!("groups={groups} does not divide the {channels} routed channels"),
                        ));
                    }
                    let out = vec![first[0], channels / groups, first[2], first[3]];
                    (srcs, out, 0, 0, 0)
                }
                BlockKind::Shortcut { from } => {
                    let other = shape_of(Source::Block(*from));
                    if other != x {
                        return Err(err(
                            b.line,
                            format!(
                                "shortcut adds block {} {:?} and block {from} {:?}: expected equal shapes",
                                i - 1,
                                x,
                                other
                            ),
                        ));
                    }
                    (vec![prev, Source::Block(*from)], x.clone(), 0, 0, 0)
                }
                BlockKind::Yolo(y) => {
                    needs_map(&x, "the previous block")?;
                    let rows = mul("row count", &[y.mask.len() as u64, x[2] as u64, x[3] as u64])?;
                    let rows = usize::try_from(rows).map_err(|_| overflow("row count"))?;
                    let out = vec![x[0], rows, y.outputs_per_anchor()];
                    numel(&out)?;
                    (vec![prev], out, 0, 0, 0)
                }
            };
            // Per-channel bookkeeping (effective cost keeps a flag per channel and block)
            // must stay small: real models have some 10^5 channels in all.
            if output_shape.len() == 4 {
                all_channels = all_channels.saturating_add(output_shape[1]);
                if all_channels > MAX_ALL_CHANNELS {
                    return Err(err(
                        b.line,
                        format!(
                            "the blocks up to this one output more than {MAX_ALL_CHANNELS} channels in all: expected a real model"
                        ),
                    ));
                }
            }
            nodes.push(Node {
                index: i,
                name: b.name(),
                kind: b.kind.section(),
                inputs,
                input_shape: x,
                output_shape,
                params,
                macs,
                conv_macs,
            });
        }
        // Totals too must fit (a model of many huge blocks).
        let total = |f: fn(&Node) -> u64| nodes.iter().try_fold(0u64, |a, n| a.checked_add(f(n)));
        if total(|n| n.params).is_none() || total(|n| n.macs).is_none() {
            return Err(input(format!("the model's total parameter or MAC count overflows at input {height}x{width}: expected sizes a real model can have")));
        }
        Ok(Graph { batch, input_shape, nodes })
    }

    /// Sums cannot overflow: [`Graph::build`] refuses a model whose totals would.
    pub fn total_params(&self) -> u64 {
        self.nodes.iter().fold(0u64, |a, n| a.saturating_add(n.params))
    }

    pub fn total_macs(&self) -> u64 {
        self.nodes.iter().fold(0u64, |a, n| a.saturating_add(n.macs))
    }

    pub fn total_conv_macs(&self) -> u64 {
        self.nodes.iter().fold(0u64, |a, n| a.saturating_add(n.conv_macs))
    }

    /// Percentage of all MACs spent in block `i`.
    pub fn macs_percent(&self, i: usize) -> f64 {
        let total = self.total_macs();
        if total == 0 {
            0.0
        } else {
            100.0 * self.nodes[i].macs as f64 / total as f64
        }
    }

    /// The tensors that cross a cut before block `start`: sources produced before `start` and
    /// read by `start` or any later block, plus the yolo heads before `start` (the final
    /// concatenation reads them). Running blocks `start..` needs exactly these.
    pub fn crossing(&self, start: usize) -> Vec<Source> {
        let start = start.min(self.nodes.len());
        let mut out: Vec<Source> = self.nodes[start..]
            .iter()
            .flat_map(|n| n.inputs.iter().copied())
            .filter(|s| match s {
                Source::Image => true,
                Source::Block(j) => *j < start,
            })
            .chain(self.nodes[..start].iter().filter(|n| n.kind == "yolo").map(|n| Source::Block(n.index)))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The blocks whose output changes when block `start` changes: `start` and every block
    /// that reads one of them, directly or not.
    pub fn descendants(&self, start: usize) -> Vec<bool> {
        let mut out = vec![false; self.nodes.len()];
        if start < out.len() {
            out[start] = true;
        }
        for n in self.nodes.iter().skip(start + 1) {
            out[n.index] = n.inputs.iter().any(|s| matches!(s, Source::Block(j) if out[*j]));
        }
        out
    }

    /// What running only the blocks marked in `compute` needs from outside: sources the
    /// computed blocks read but do not compute, plus the yolo heads not computed (the final
    /// concatenation reads them).
    pub fn subset_inputs(&self, compute: &[bool]) -> Vec<Source> {
        let computed = |j: usize| compute.get(j).copied().unwrap_or(false);
        let mut out: Vec<Source> = self
            .nodes
            .iter()
            .filter(|n| computed(n.index))
            .flat_map(|n| n.inputs.iter().copied())
            .filter(|s| match s {
                Source::Image => true,
                Source::Block(j) => !computed(*j),
            })
            .chain(self.nodes.iter().filter(|n| n.kind == "yolo" && !computed(n.index)).map(|n| Source::Block(n.index)))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// For each block, the index of the last block that reads its output (None: nobody
    /// does, e.g. yolo heads, whose outputs are collected separately).
    pub fn last_use(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.nodes.len()];
        for n in &self.nodes {
            for s in &n.inputs {
                if let Source::Block(j) = s {
                    last[*j] = Some(n.index);
                }
            }
        }
        last
    }
}
