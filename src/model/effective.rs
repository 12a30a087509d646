//! The cost of a pruned model as it would run with its zeros taken out: non-zero weights
//! (unstructured pruning) and removed channels (filter pruning), over the IR of any model.
//!
//! An output channel of a convolution is *dead* when it is exactly zero for every input: all
//! its weights that read live input channels are zero and the constant it adds (conv bias,
//! or with an unfolded BN its shift `b + w·(bias − mean)/√(var+ε)`) is zero, with a chain
//! that keeps 0 at 0 (no sigmoid gate). Dead channels flow through per-channel ops (pools,
//! resizes, ReLU-like activations), concatenations and splits along the channels; a sum's
//! channel is dead only when every summand's is, a product's when any factor's is; any other
//! op's outputs count as live. Effective cost counts, per convolution, the non-zero weights
//! that connect a live input channel to a live output channel (params; MACs are that times
//! the output area) plus bias of live outputs; its batch norm and activation, and every
//! per-channel op, scale with their live channels — the ptflops convention of
//! [`super::ir::cost`] applied to the model with dead channels and zero weights removed. On
//! a dense model it equals the dense cost node for node.

use super::open::{Channels, Layer, Model};
use super::weights::Weights;

/// Parameters and MACs (batch 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    pub params: u64,
    pub macs: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        // Saturating: effective cost never exceeds the dense cost, so this only guards
        // against misuse.
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
    /// Counts of `layer` in `weights` (missing tensors count as dense).
    pub fn of(layer: &Layer, weights: &Weights) -> Self {
        let keys = &layer.keys;
        let w = weights.tensors.get(&keys.weight);
        let shape = w.map(|t| t.shape.clone()).unwrap_or_else(|| layer.weight_shape.clone());
        let filters = shape.first().copied().unwrap_or(0);
        let per_group = shape.get(1).copied().unwrap_or(0);
        let kk = shape.iter().skip(2).product::<usize>().max(1);
        let nonzero = match w {
            Some(t) => t.data.chunks(kk).map(|k| k.iter().filter(|v| **v != 0.0).count() as u32).collect(),
            None => vec![kk as u32; filters.saturating_mul(per_group)],
        };
        let get = |k: &String, f: usize| weights.tensors.get(k).and_then(|t| t.data.get(f)).copied();
        let zero_constant = (0..filters)
            .map(|f| {
                let bias = match &keys.bias {
                    Some(b) => get(b, f).map(f64::from),
                    None => Some(0.0),
                };
                let c = match (&keys.bn, bias) {
                    (Some([bw, bb, mean, var]), Some(bias)) => {
                        match (get(bw, f), get(bb, f), get(mean, f), get(var, f)) {
                            (Some(w), Some(b), Some(m), Some(v)) => {
                                let scale = w as f64 / (v as f64 + layer.bn_epsilon).sqrt();
                                if bias == 0.0 {
                                    b as f64 - m as f64 * scale
                                } else {
                                    b as f64 + (bias - m as f64) * scale
                                }
                            }
                            _ => 1.0,
                        }
                    }
                    (None, Some(bias)) => bias,
                    (_, None) => 1.0,
                };
                layer.zero_preserving && c == 0.0
            })
            .collect();
        ConvCounts { filters, per_group, groups: layer.groups.max(1), nonzero, zero_constant }
    }
}

/// Per-layer counts of a model, from which effective cost is computed quickly (also with
/// some layers replaced, for what-if questions).
#[derive(Debug, Clone)]
pub struct ModelCounts {
    /// By layer, in [`Model::layers`] order.
    pub layers: Vec<ConvCounts>,
}

/// Effective cost of a model: per IR node, and per layer (its chain).
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveCost {
    pub nodes: Vec<Cost>,
    /// Per layer, in [`Model::layers`] order: the cost of its chain.
    pub layers: Vec<Cost>,
    /// Live output channels of each layer.
    pub live_channels: Vec<usize>,
}

impl EffectiveCost {
    pub fn total(&self) -> Cost {
        self.nodes.iter().fold(Cost::default(), |a, b| a + *b)
    }

    /// The cost of the node called `name`.
    pub fn node(&self, model: &Model, name: &str) -> Option<Cost> {
        model.nodes.iter().position(|n| n.name == name).map(|i| self.nodes[i])
    }
}

/// The dense cost of every layer (its chain), in [`Model::layers`] order.
pub fn dense(model: &Model) -> Vec<Cost> {
    model.layers.iter().map(|l| Cost { params: l.params, macs: l.macs }).collect()
}

impl ModelCounts {
    pub fn of(model: &Model, weights: &Weights) -> Self {
        ModelCounts { layers: model.layers.iter().map(|l| ConvCounts::of(l, weights)).collect() }
    }

    /// Effective cost; `replace` swaps in other counts for some layers (by layer id).
    pub fn effective(&self, model: &Model, replace: &[(usize, &ConvCounts)]) -> EffectiveCost {
        let mut live: Vec<Option<Vec<bool>>> = vec![None; model.channels.len()];
        if let Some(c) = model.channels.first() {
            live[0] = Some(vec![true; *c]);
        }
        let channels_of = |t: usize, live: &Vec<Option<Vec<bool>>>| -> Vec<bool> {
            live[t].clone().unwrap_or_else(|| vec![true; model.channels[t]])
        };
        let mut layer_live: Vec<Vec<bool>> = vec![Vec::new(); model.layers.len()];
        let mut nodes = Vec::with_capacity(model.nodes.len());
        for node in &model.nodes {
            let dense = Cost { params: node.params, macs: node.macs };
            let input = |k: usize, live: &Vec<Option<Vec<bool>>>| -> Option<Vec<bool>> {
                node.inputs.get(k).copied().flatten().map(|t| channels_of(t, live))
            };
            let acts: Vec<Vec<bool>> = node.inputs.iter().flatten().map(|&t| channels_of(t, &live)).collect();
            let out_channels = node.outputs.first().map(|&t| model.channels[t]).unwrap_or(0);
            let scaled =
                |out: &[bool]| -> Cost { Cost { params: scale(dense.params, out), macs: scale(dense.macs, out) } };
            let (outs, cost): (Vec<Vec<bool>>, Cost) = match &node.rule {
                Channels::Layer(k) => {
                    let layer = &model.layers[*k];
                    let counts = match replace.iter().find(|(id, _)| *id == layer.id) {
                        Some((_, r)) => *r,
                        None => &self.layers[*k],
                    };
                    let inp = input(0, &live).unwrap_or_default();
                    match conv(counts, &inp, node.area, layer.keys.bias.is_some()) {
                        Some((out, cost)) if out.len() == out_channels => {
                            layer_live[*k] = out.clone();
                            (vec![out], cost)
                        }
                        // Counts that do not fit the model: dense.
                        _ => {
                            layer_live[*k] = vec![true; out_channels];
                            (vec![vec![true; out_channels]], dense)
                        }
                    }
                }
                Channels::Chain(k) => {
                    let out = layer_live[*k].clone();
                    let cost = if out.len() == out_channels { scaled(&out) } else { dense };
                    (vec![out], cost)
                }
                Channels::Same => {
                    let out = input(0, &live).unwrap_or_default();
                    (vec![out.clone()], scaled(&out))
                }
                Channels::Any | Channels::Every => {
                    let any = node.rule == Channels::Any;
                    let out: Vec<bool> = (0..out_channels)
                        .map(|c| {
                            let mut it = acts.iter().map(|a| a.get(c).copied().unwrap_or(true));
                            if any {
                                it.any(|l| l)
                            } else {
                                it.all(|l| l)
                            }
                        })
                        .collect();
                    (vec![out.clone()], scaled(&out))
                }
                Channels::Concat => {
                    let out: Vec<bool> = acts.concat();
                    (vec![out.clone()], scaled(&out))
                }
                Channels::Split(parts) => {
                    let inp = input(0, &live).unwrap_or_default();
                    let outs: Vec<Vec<bool>> = parts
                        .iter()
                        .map(|&(s, c)| (s..s + c).map(|i| inp.get(i).copied().unwrap_or(true)).collect())
                        .collect();
                    (outs, dense)
                }
                Channels::Slice { start, step, count } => {
                    let inp = input(0, &live).unwrap_or_default();
                    let out: Vec<bool> =
                        (0..*count).map(|i| inp.get(start + i * step).copied().unwrap_or(true)).collect();
                    (vec![out.clone()], scaled(&out))
                }
                Channels::Dense => (Vec::new(), dense),
            };
            for (k, &t) in node.outputs.iter().enumerate() {
                live[t] = outs.get(k).filter(|o| o.len() == model.channels[t]).cloned();
            }
            nodes.push(cost);
        }
        let layers = model.layers.iter().map(|l| l.chain.iter().fold(Cost::default(), |a, &i| a + nodes[i])).collect();
        let live_channels = layer_live.iter().map(|l| l.iter().filter(|x| **x).count()).collect();
        EffectiveCost { nodes, layers, live_channels }
    }
}

/// The live outputs and cost of a convolution with `counts` reading `inp`.
fn conv(k: &ConvCounts, inp: &[bool], area: u64, bias: bool) -> Option<(Vec<bool>, Cost)> {
    let fits = k.per_group.saturating_mul(k.groups) == inp.len()
        && k.nonzero.len() == k.filters.saturating_mul(k.per_group)
        && k.zero_constant.len() == k.filters
        && k.filters.is_multiple_of(k.groups);
    if !fits {
        return None;
    }
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
    let b = u64::from(bias);
    Some((out, Cost { params: nz.saturating_add(b * lo), macs: area.saturating_mul(nz.saturating_add(b * lo)) }))
}

/// `value` scaled by the live fraction of `live` (all of it when there are no channels).
fn scale(value: u64, live: &[bool]) -> u64 {
    if live.is_empty() {
        return value;
    }
    let n = live.iter().filter(|l| **l).count() as u64;
    if n == live.len() as u64 {
        value
    } else {
        (value as f64 * (n as f64 / live.len() as f64)).round() as u64
    }
}

/// Effective cost of `model` with `weights`.
pub fn effective(model: &Model, weights: &Weights) -> EffectiveCost {
    ModelCounts::of(model, weights).effective(model, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::open::ModelFiles;
    use crate::model::{Cfg, Graph, Layout};

    const CFG: &str = "[net]\nwidth=32\nheight=32\nchannels=3\n\
        [convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
        [maxpool]\nsize=2\nstride=2\n\
        [convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n";

    /// The model (its weights as the file holds them) and the dense costs of the cfg's
    /// three blocks as `Graph` counts them.
    fn model(dir: &std::path::Path) -> (Model, Vec<Cost>) {
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
        std::fs::write(dir.join("t.cfg"), CFG).unwrap();
        w.save(&dir.join("t.safetensors"), &layout).unwrap();
        let files = ModelFiles::Darknet { cfg: dir.join("t.cfg"), weights: dir.join("t.safetensors") };
        let dense = graph.nodes.iter().map(|n| Cost { params: n.params, macs: n.macs }).collect();
        (Model::open(&files, None).unwrap(), dense)
    }

    /// The cost of cfg block `i`: its nodes in the IR (`conv_i`, `batch_norm_i`, …, `maxpool_i`).
    fn block(m: &Model, e: &EffectiveCost, i: usize) -> Cost {
        let suffix = format!("_{i}");
        m.nodes
            .iter()
            .zip(&e.nodes)
            .filter(|(n, _)| n.name.ends_with(&suffix))
            .fold(Cost::default(), |a, (_, c)| a + *c)
    }

    #[test]
    fn dense_model_costs_what_the_graph_says() {
        let d = tempfile::tempdir().unwrap();
        let (m, graph) = model(d.path());
        let e = effective(&m, &m.weights);
        assert_eq!((0..3).map(|i| block(&m, &e, i)).collect::<Vec<_>>(), graph);
        assert_eq!(e.layers, dense(&m));
        assert_eq!(e.live_channels, vec![4, 6]);
        assert_eq!(e.total(), Cost { params: m.params, macs: m.macs });
    }

    /// Hand-derived: conv_0 (4 filters 3×3×3, BN, leaky, 32×32 out) loses filter 1;
    /// conv_2 (6 filters 1×1×4, bias, 16×16 out) loses two single weights.
    #[test]
    fn removed_channels_and_zero_weights() {
        let d = tempfile::tempdir().unwrap();
        let (m, _) = model(d.path());
        let mut w = m.weights.clone();
        let wt = w.get_mut("module_list.0.conv_0.weight").unwrap();
        for v in &mut wt.data[27..54] {
            *v = 0.0;
        }
        w.get_mut("module_list.0.batch_norm_0.weight").unwrap().data[1] = 0.0;
        w.get_mut("module_list.0.batch_norm_0.bias").unwrap().data[1] = 0.0;
        let w2 = w.get_mut("module_list.2.conv_2.weight").unwrap();
        w2.data[0] = 0.0; // filter 0, input channel 0
        w2.data[5] = 0.0; // filter 1, input channel 1: reads the dead channel anyway
        let e = effective(&m, &w);
        // conv_0: 3 live filters × 27 weights + 3 × 2 BN = 87 params;
        // MACs 1024 × (81 + 3 × (2 + 1)) = 1024 × 90.
        assert_eq!(block(&m, &e, 0), Cost { params: 87, macs: 1024 * 90 });
        // maxpool: input numel 4 × 1024, 3 of 4 channels live.
        assert_eq!(block(&m, &e, 1), Cost { params: 0, macs: 3 * 1024 });
        // conv_2: 6 filters × 3 live inputs = 18 weights, one of them zeroed (filter 0, ch 0)
        // -> 17, + 6 biases; MACs 256 × (17 + 6).
        assert_eq!(block(&m, &e, 2), Cost { params: 23, macs: 256 * 23 });
        assert_eq!(e.layers, vec![block(&m, &e, 0), block(&m, &e, 2)]);
        assert_eq!(e.live_channels, vec![3, 6]);
    }
}
