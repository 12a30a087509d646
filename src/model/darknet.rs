//! The Darknet importer: a cfg and its checked weights as a [`Net`] of the format-neutral IR,
//! node for node what `forward::Darknet` computes. Names stay PyTorch-YOLOv3's: the
//! convolution of cfg block i is node `conv_{i}` (its BN `batch_norm_{i}`), weights keep their
//! state-dict keys, block i's output is tensor `block_{i}`, the input is `input` and the
//! concatenated yolo heads are `output` ([N, rows, 5 + classes]).

use super::cfg::{Activation, BlockKind, Cfg};
use super::graph::{Graph, Source};
use super::ir::{Attr, Net, NetError, Node, ValueInfo};
use super::weights::{Layout, Weights};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

/// The IR of `cfg` with `weights` (checked against the layout of `graph`, built for any input
/// size), for inputs of any batch and any size a multiple of 32.
pub fn to_net(cfg: &Cfg, graph: &Graph, weights: &Weights, path: &Path) -> Result<Net, NetError> {
    let layout = Layout::of(cfg, graph);
    let bad = |what: String| NetError::Model { path: path.to_path_buf(), what };
    weights.check(&layout).map_err(|e| bad(e.to_string()))?;
    let mut b = Builder::default();
    let tensor = |s: &Source| match s {
        Source::Image => "input".to_string(),
        Source::Block(j) => format!("block_{j}"),
    };
    let mut heads = Vec::new();
    for (block, node) in cfg.blocks.iter().zip(&graph.nodes) {
        let i = block.index;
        let out = format!("block_{i}");
        let x = node.inputs.first().map(tensor).ok_or_else(|| bad(format!("block {i} has no input")))?;
        match &block.kind {
            BlockKind::Convolutional(c) => {
                let keys = layout.conv(i).ok_or_else(|| bad(format!("block {i}: no convolution in the layout")))?;
                let (k, s, p) = (c.size as i64, c.stride as i64, c.padding as i64);
                let mut inputs = vec![x, keys.weight.clone()];
                inputs.extend(keys.bias.clone());
                let attrs = [
                    ("kernel_shape", Attr::Ints(vec![k, k])),
                    ("strides", Attr::Ints(vec![s, s])),
                    ("pads", Attr::Ints(vec![p, p, p, p])),
                    ("dilations", Attr::Ints(vec![1, 1])),
                    ("group", Attr::Int(c.groups as i64)),
                ];
                let mut y = b.node(&format!("conv_{i}"), "Conv", inputs, &format!("conv_{i}"), attrs);
                if let Some([w, bias, mean, var]) = &keys.bn {
                    let inputs = vec![y, w.clone(), bias.clone(), mean.clone(), var.clone()];
                    y = b.node(
                        &format!("batch_norm_{i}"),
                        "BatchNormalization",
                        inputs,
                        &format!("batch_norm_{i}"),
                        [("epsilon", Attr::Float(1e-5))],
                    );
                }
                let act = |name: &str| format!("{name}_{i}");
                match c.activation {
                    Activation::Linear => b.rename(&y, &out),
                    Activation::Leaky => {
                        b.node(&act("leaky"), "LeakyRelu", vec![y], &out, [("alpha", Attr::Float(0.1))]);
                    }
                    Activation::Relu => {
                        b.node(&act("relu"), "Relu", vec![y], &out, []);
                    }
                    Activation::Mish => {
                        b.node(&act("mish"), "Mish", vec![y], &out, []);
                    }
                    Activation::Logistic => {
                        b.node(&act("logistic"), "Sigmoid", vec![y], &out, []);
                    }
                    Activation::Swish => {
                        let s = b.node(&act("swish_sigmoid"), "Sigmoid", vec![y.clone()], &act("swish_sigmoid"), []);
                        b.node(&act("swish"), "Mul", vec![y, s], &out, []);
                    }
                }
            }
            BlockKind::Maxpool { size, stride } => {
                let (k, s) = (*size as i64, *stride as i64);
                let pool = |pads: Vec<i64>| {
                    [
                        ("kernel_shape", Attr::Ints(vec![k, k])),
                        ("strides", Attr::Ints(vec![s, s])),
                        ("pads", Attr::Ints(pads)),
                    ]
                };
                if k == 2 && s == 1 {
                    // PyTorch-YOLOv3 pads right and bottom with zeros (not −∞), then pools.
                    let pads =
                        b.constant(&format!("maxpool_{i}.pads"), Tensor::from_slice(&[0i64, 0, 0, 0, 0, 0, 1, 1]));
                    let padded = b.node(&format!("pad_{i}"), "Pad", vec![x, pads], &format!("pad_{i}"), []);
                    b.node(&format!("maxpool_{i}"), "MaxPool", vec![padded], &out, pool(vec![0, 0, 0, 0]));
                } else {
                    let p = (k - 1) / 2;
                    b.node(&format!("maxpool_{i}"), "MaxPool", vec![x], &out, pool(vec![p, p, p, p]));
                }
            }
            BlockKind::Upsample { stride } => {
                let s = *stride as f32;
                let scales = b.constant(&format!("upsample_{i}.scales"), Tensor::from_slice(&[1.0f32, 1.0, s, s]));
                let attrs = [
                    ("mode", Attr::Text("nearest".into())),
                    ("coordinate_transformation_mode", Attr::Text("asymmetric".into())),
                    ("nearest_mode", Attr::Text("floor".into())),
                ];
                b.node(&format!("upsample_{i}"), "Resize", vec![x, String::new(), scales], &out, attrs);
            }
            BlockKind::Route { groups, group_id, .. } => {
                let parts: Vec<String> = node.inputs.iter().map(tensor).collect();
                let cat = if parts.len() == 1 {
                    parts[0].clone()
                } else {
                    b.node(&format!("route_{i}"), "Concat", parts, &format!("route_{i}.cat"), [("axis", Attr::Int(1))])
                };
                if *groups > 1 {
                    let channels = node.output_shape[1] as i64;
                    let start = channels * *group_id as i64;
                    let starts = b.constant(&format!("route_{i}.starts"), Tensor::from_slice(&[start]));
                    let ends = b.constant(&format!("route_{i}.ends"), Tensor::from_slice(&[start + channels]));
                    let axes = b.constant(&format!("route_{i}.axes"), Tensor::from_slice(&[1i64]));
                    b.node(&format!("route_{i}.group"), "Slice", vec![cat, starts, ends, axes], &out, []);
                } else {
                    b.node(&format!("route_{i}"), "Identity", vec![cat], &out, []);
                }
            }
            BlockKind::Shortcut { .. } => {
                let from = node.inputs.get(1).map(tensor).ok_or_else(|| bad(format!("shortcut {i} has one input")))?;
                b.node(&format!("shortcut_{i}"), "Add", vec![x, from], &out, []);
            }
            BlockKind::Yolo(y) => {
                let anchors: Vec<f32> = y.head_anchors().iter().flat_map(|&(w, h)| [w, h]).collect();
                let attrs = [
                    ("anchors", Attr::Floats(anchors)),
                    ("outputs", Attr::Int(y.outputs_per_anchor() as i64)),
                    ("new_coords", Attr::Int(i64::from(y.new_coords))),
                    ("scale_x_y", Attr::Float(y.scale_x_y)),
                ];
                b.node(&format!("yolo_{i}"), "DarknetYolo", vec![x, "input".into()], &out, attrs);
                heads.push(out);
            }
        }
    }
    if heads.is_empty() {
        // A backbone without yolo heads: its last block is the output.
        let last = format!("block_{}", cfg.blocks.len().saturating_sub(1));
        b.node("output", "Identity", vec![last], "output", []);
    } else {
        b.node("yolo_heads", "Concat", heads, "output", [("axis", Attr::Int(1))]);
    }
    let mut initializers = b.constants;
    for (key, t) in &weights.tensors {
        let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        initializers.insert(key.clone(), Tensor::from_slice(&t.data).reshape(shape));
    }
    let input = ValueInfo {
        name: "input".into(),
        // Any batch and any size a multiple of 32 (the yolo heads take their strides from it).
        dims: vec![None, Some(cfg.channels as i64), None, None],
    };
    let net = Net {
        path: path.to_path_buf(),
        opset: *super::ir::OPSETS.end(),
        producer: "darknet".into(),
        metadata: BTreeMap::new(),
        nodes: b.nodes,
        inputs: vec![input],
        outputs: vec![ValueInfo { name: "output".into(), dims: Vec::new() }],
        initializers,
        file_batch: None,
        batch_reshapes: Default::default(),
        silu: HashMap::new(),
        in_place: HashMap::new(),
        packs: Default::default(),
        conv_act: HashMap::new(),
    };
    net.prepare()
}

/// Collects nodes and constant tensors.
#[derive(Default)]
struct Builder {
    nodes: Vec<Node>,
    constants: HashMap<String, Tensor>,
    /// Tensors renamed (a linear activation is no node: the block's output is its conv/BN).
    aliases: HashMap<String, String>,
}

impl Builder {
    /// Adds a node with one output; returns the output's name.
    fn node<const N: usize>(
        &mut self,
        name: &str,
        op: &str,
        inputs: Vec<String>,
        out: &str,
        attrs: [(&str, Attr); N],
    ) -> String {
        let inputs = inputs.into_iter().map(|i| self.aliases.get(&i).cloned().unwrap_or(i)).collect();
        let attrs = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        self.nodes.push(Node { name: name.into(), op: op.into(), inputs, outputs: vec![out.into()], attrs });
        out.to_string()
    }

    fn constant(&mut self, name: &str, t: Tensor) -> String {
        self.constants.insert(name.into(), t);
        name.to_string()
    }

    /// Makes `alias` another name of `tensor` (what later nodes read).
    fn rename(&mut self, tensor: &str, alias: &str) {
        // The last node that produced `tensor` produces `alias` instead.
        if let Some(n) = self.nodes.iter_mut().rev().find(|n| n.outputs.iter().any(|o| o == tensor)) {
            for o in &mut n.outputs {
                if o == tensor {
                    *o = alias.to_string();
                }
            }
        }
        self.aliases.insert(tensor.to_string(), alias.to_string());
    }
}
