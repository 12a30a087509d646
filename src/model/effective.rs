//! The cost of a pruned model as it would run with its zeros taken out: non-zero weights
//! (unstructured pruning) and removed channels (filter pruning).
//!
//! A convolution output channel is *dead* when it is exactly zero for every input: all its
//! weights that read live input channels are zero and the constant it adds (conv bias, or
//! BN shift `b − w·mean/√(var+ε)`) is zero, with an activation that keeps 0 at 0. Dead
//! channels flow through max-pools, upsamples and routes; a shortcut output channel is dead
//! only when both summands are. Effective cost counts, per convolution, the non-zero
//! weights that connect a live input channel to a live output channel (params; MACs are
//! that times the output area) plus bias/BN/activation of live output channels, and scales
//! max-pool and upsample MACs by their live channels — the ptflops convention of
//! [`super::graph`] applied to the model with dead channels and zero weights removed.
//! On a dense model it equals the graph's dense cost.

use super::cfg::{Activation, BlockKind, Cfg};
use super::graph::{Graph, Source};
use super::weights::{ConvKeys, Layout, Weights};

/// Parameters and MACs of one block (batch 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    pub params: u64,
    pub macs: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        // Saturating: effective cost never exceeds the dense cost, which Graph::build has
        // checked for overflow, so this only guards against misuse.
        Cost { params: self.params.saturating_add(o.params), macs: self.macs.saturating_add(o.macs) }
    }
}

/// What effective cost needs to know of one convolution's tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvCounts {
    pub filters: usize,
    /// Input channels per group.
    pub per_group: usize,
    pub groups: usize,
    /// Non-zero weights of filter f reading its local input channel c, at `f * per_group + c`.
    pub nonzero: Vec<u32>,
    /// Output channel f adds a zero constant (so it is dead once its weights read nothing live).
    pub zero_constant: Vec<bool>,
}

impl ConvCounts {
    /// Counts of convolution `keys` of `cfg` in `weights` (missing tensors count as dense);
    /// None when block `keys.block` is no convolution.
    pub fn of(cfg: &Cfg, weights: &Weights, keys: &ConvKeys) -> Option<Self> {
        let (act, groups) = match &cfg.blocks.get(keys.block)?.kind {
            BlockKind::Convolutional(c) => (c.activation, c.groups),
            _ => return None,
        };
        let w = weights.tensors.get(&keys.weight);
        let shape = w.map(|t| t.shape.clone()).unwrap_or_default();
        let filters = shape.first().copied().unwrap_or(0);
        let per_group = shape.get(1).copied().unwrap_or(0);
        let kk = shape.iter().skip(2).product::<usize>().max(1);
        let nonzero = match w {
            Some(t) => t.data.chunks(kk).map(|k| k.iter().filter(|v| **v != 0.0).count() as u32).collect(),
            None => vec![kk as u32; filters.saturating_mul(per_group)],
        };
        let keeps_zero = !matches!(act, Activation::Logistic);
        let get = |k: &String, f: usize| weights.tensors.get(k).and_then(|t| t.data.get(f)).copied();
        let zero_constant = (0..filters)
            .map(|f| {
                let c = if let Some([bw, bb, mean, var]) = &keys.bn {
                    let (w, b, m, v) = (get(bw, f), get(bb, f), get(mean, f), get(var, f));
                    match (w, b, m, v) {
                        (Some(w), Some(b), Some(m), Some(v)) => {
                            b as f64 - w as f64 * m as f64 / (v as f64 + 1e-5).sqrt()
                        }
                        _ => 1.0,
                    }
                } else if let Some(bias) = &keys.bias {
                    get(bias, f).map(|b| b as f64).unwrap_or(1.0)
                } else {
                    0.0
                };
                keeps_zero && c == 0.0
            })
            .collect();
        Some(ConvCounts { filters, per_group, groups: groups.max(1), nonzero, zero_constant })
    }
}

/// Per-convolution counts of a model, from which effective cost is computed quickly (also
/// with one layer replaced, for what-if questions).
#[derive(Debug, Clone)]
pub struct ModelCounts {
    /// By block index; None for blocks that are not convolutions.
    pub convs: Vec<Option<ConvCounts>>,
}

/// Effective cost per block of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveCost {
    pub blocks: Vec<Cost>,
    /// Live output channels of each block (feature maps; 0 for yolo heads).
    pub live_channels: Vec<usize>,
}

impl EffectiveCost {
    pub fn total(&self) -> Cost {
        self.blocks.iter().fold(Cost::default(), |a, b| a + *b)
    }
}

/// The dense cost of every block, as the graph gives it.
pub fn dense(graph: &Graph) -> Vec<Cost> {
    graph.nodes.iter().map(|n| Cost { params: n.params, macs: n.macs }).collect()
}

impl ModelCounts {
    pub fn of(cfg: &Cfg, layout: &Layout, weights: &Weights) -> Self {
        let mut convs = vec![None; cfg.blocks.len()];
        for keys in &layout.convs {
            convs[keys.block] = ConvCounts::of(cfg, weights, keys);
        }
        ModelCounts { convs }
    }

    /// Effective cost; `replace` swaps in other counts for some convolutions (by block).
    pub fn effective(&self, cfg: &Cfg, graph: &Graph, replace: &[(usize, &ConvCounts)]) -> EffectiveCost {
        let n = graph.nodes.len();
        let mut live: Vec<Vec<bool>> = Vec::with_capacity(n);
        let mut blocks = Vec::with_capacity(n);
        let image_live = vec![true; graph.input_shape.get(1).copied().unwrap_or(0)];
        for node in &graph.nodes {
            let i = node.index;
            let input = |s: &Source, live: &Vec<Vec<bool>>| -> Vec<bool> {
                match s {
                    Source::Image => image_live.clone(),
                    Source::Block(j) => live[*j].clone(),
                }
            };
            let area = |shape: &[usize]| -> u64 {
                if shape.len() == 4 {
                    (shape[0] as u64).saturating_mul(shape[2] as u64).saturating_mul(shape[3] as u64)
                } else {
                    0
                }
            };
            let (out_live, cost) = match &cfg.blocks[i].kind {
                BlockKind::Convolutional(c) => {
                    let counts = match replace.iter().find(|(b, _)| *b == i) {
                        Some((_, r)) => Some(*r),
                        None => self.convs[i].as_ref(),
                    };
                    let inp = input(&node.inputs[0], &live);
                    let hw = area(&node.output_shape);
                    match counts {
                        Some(k)
                            if k.filters == c.filters
                                && k.per_group.saturating_mul(k.groups) == inp.len()
                                && k.nonzero.len() == k.filters.saturating_mul(k.per_group)
                                && k.zero_constant.len() == k.filters =>
                        {
                            let per_out = k.filters / k.groups;
                            let mut out = vec![false; k.filters];
                            let mut nz: u64 = 0;
                            for (f, live_f) in out.iter_mut().enumerate() {
                                let g = f / per_out.max(1);
                                let row = &k.nonzero[f * k.per_group..(f + 1) * k.per_group];
                                let reads: u64 = row
                                    .iter()
                                    .enumerate()
                                    .filter(|(c, _)| inp[g * k.per_group + c])
                                    .fold(0u64, |a, (_, v)| a.saturating_add(*v as u64));
                                *live_f = reads > 0 || !k.zero_constant[f];
                                if *live_f {
                                    nz = nz.saturating_add(reads);
                                }
                            }
                            let lo = out.iter().filter(|l| **l).count() as u64;
                            let extra = if c.batch_normalize { 2 } else { 1 };
                            let act = u64::from(matches!(c.activation, Activation::Leaky | Activation::Relu));
                            let params = nz.saturating_add(extra * lo);
                            let macs = hw.saturating_mul(nz.saturating_add((extra + act) * lo));
                            (out, Cost { params, macs })
                        }
                        // Counts that do not fit the cfg: dense (Weights::check refuses such files).
                        _ => (vec![true; c.filters], Cost { params: node.params, macs: node.macs }),
                    }
                }
                BlockKind::Maxpool { .. } | BlockKind::Upsample { .. } => {
                    let inp = input(&node.inputs[0], &live);
                    let frac = fraction(&inp);
                    (inp, Cost { params: 0, macs: (node.macs as f64 * frac).round() as u64 })
                }
                BlockKind::Route { groups, group_id, .. } => {
                    let all: Vec<bool> = node.inputs.iter().flat_map(|s| input(s, &live)).collect();
                    let per = all.len() / (*groups).max(1);
                    (all[group_id * per..(group_id + 1) * per].to_vec(), Cost::default())
                }
                BlockKind::Shortcut { .. } => {
                    let a = input(&node.inputs[0], &live);
                    let b = input(&node.inputs[1], &live);
                    (a.iter().zip(&b).map(|(x, y)| *x || *y).collect(), Cost::default())
                }
                BlockKind::Yolo(_) => (Vec::new(), Cost::default()),
            };
            live.push(out_live);
            blocks.push(cost);
        }
        let live_channels = live.iter().map(|l| l.iter().filter(|x| **x).count()).collect();
        EffectiveCost { blocks, live_channels }
    }
}

fn fraction(live: &[bool]) -> f64 {
    if live.is_empty() {
        1.0
    } else {
        live.iter().filter(|l| **l).count() as f64 / live.len() as f64
    }
}

/// Effective cost of `weights`.
pub fn effective(cfg: &Cfg, graph: &Graph, layout: &Layout, weights: &Weights) -> EffectiveCost {
    ModelCounts::of(cfg, layout, weights).effective(cfg, graph, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "[net]\nwidth=32\nheight=32\nchannels=3\n\
        [convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
        [maxpool]\nsize=2\nstride=2\n\
        [convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n";

    fn model() -> (Cfg, Graph, Layout, Weights) {
        let cfg = Cfg::parse(CFG, "t.cfg").unwrap();
        let graph = Graph::build(&cfg, 1, 32, 32).unwrap();
        let layout = Layout::of(&cfg, &graph);
        let mut w = Weights::initialize(&layout, 3);
        // Non-zero biases so only pruning makes channels dead.
        for v in &mut w.get_mut("module_list.2.conv_2.bias").unwrap().data {
            *v = 0.5;
        }
        for v in &mut w.get_mut("module_list.0.batch_norm_0.bias").unwrap().data {
            *v = 0.1;
        }
        (cfg, graph, layout, w)
    }

    #[test]
    fn dense_model_costs_what_the_graph_says() {
        let (cfg, graph, layout, w) = model();
        let e = effective(&cfg, &graph, &layout, &w);
        assert_eq!(e.blocks, dense(&graph));
        assert_eq!(e.live_channels, vec![4, 4, 6]);
    }

    /// Hand-derived: conv_0 (4 filters 3×3×3, BN, leaky, 32×32 out) loses filter 1;
    /// conv_2 (6 filters 1×1×4, bias, 16×16 out) loses two single weights.
    #[test]
    fn removed_channels_and_zero_weights() {
        let (cfg, graph, layout, mut w) = model();
        let wt = w.get_mut("module_list.0.conv_0.weight").unwrap();
        for v in &mut wt.data[27..54] {
            *v = 0.0;
        }
        w.get_mut("module_list.0.batch_norm_0.weight").unwrap().data[1] = 0.0;
        w.get_mut("module_list.0.batch_norm_0.bias").unwrap().data[1] = 0.0;
        let w2 = w.get_mut("module_list.2.conv_2.weight").unwrap();
        w2.data[0] = 0.0; // filter 0, input channel 0
        w2.data[5] = 0.0; // filter 1, input channel 1: reads the dead channel anyway
        let e = effective(&cfg, &graph, &layout, &w);
        // conv_0: 3 live filters × 27 weights + 3 × 2 BN = 87 params;
        // MACs 1024 × (81 + 3 × (2 + 1)) = 1024 × 90.
        assert_eq!(e.blocks[0], Cost { params: 87, macs: 1024 * 90 });
        // maxpool: input numel 4 × 1024, 3 of 4 channels live.
        assert_eq!(e.blocks[1], Cost { params: 0, macs: 3 * 1024 });
        // conv_2: 6 filters × 3 live inputs = 18 weights, one of them zeroed (filter 0, ch 0)
        // -> 17, + 6 biases; MACs 256 × (17 + 6).
        assert_eq!(e.blocks[2], Cost { params: 23, macs: 256 * 23 });
        assert_eq!(e.live_channels, vec![3, 3, 6]);
    }
}
