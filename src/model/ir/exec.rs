//! Runs a [`Net`] node by node on tch (inference semantics, the device of the inputs).
//! Each operator follows the ONNX specification of opsets 11–22; what it does not cover (an
//! attribute value, a mode, a rank) is an error naming the node, never a silently wrong result.
//! Tensors are freed after their last use unless every node output is kept.

use super::kernels::{self, Activation};
use super::{Attr, Net, NetError, Node};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// The operators the executor implements.
pub const SUPPORTED: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Div",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mish",
    "Mul",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
    "Upsample",
];

/// What a run keeps: the graph outputs only, or every node output too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Outputs,
    All,
}

type OpResult = Result<Vec<Tensor>, String>;

impl Net {
    /// Runs the graph on `feeds` (graph input name → tensor) and returns the graph outputs
    /// (and with [`Keep::All`] every node output) by name.
    pub fn run(&self, feeds: Vec<(String, Tensor)>, keep: Keep) -> Result<HashMap<String, Tensor>, NetError> {
        let mut values: HashMap<String, Tensor> = HashMap::new();
        for input in &self.inputs {
            let Some((_, t)) = feeds.iter().find(|(n, _)| *n == input.name) else {
                return Err(NetError::Model {
                    path: self.path.clone(),
                    what: format!("no value for graph input '{}'", input.name),
                });
            };
            // Axes the graph fixes (all but the batch) must match: a graph exported for one
            // size carries it in its constants.
            let size = t.size();
            let fixed_differs = input.dims.len() == size.len()
                && input.dims.iter().zip(&size).skip(1).any(|(d, &s)| d.is_some_and(|d| d != s));
            if fixed_differs || (!input.dims.is_empty() && input.dims.len() != size.len()) {
                // Any batch runs (see `Net::generalize_batch`).
                let want: Vec<String> = input
                    .dims
                    .iter()
                    .enumerate()
                    .map(|(i, d)| d.filter(|_| i > 0).map(|d| d.to_string()).unwrap_or("N".into()))
                    .collect();
                return Err(NetError::Model {
                    path: self.path.clone(),
                    what: format!(
                        "input '{}' is {size:?}; the model takes [{}] (an export fixes its input size: export again at the size you need)",
                        input.name,
                        want.join(", ")
                    ),
                });
            }
            let t = executor_layout(t);
            values.insert(input.name.clone(), t);
        }
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.execute(&all, values, &HashMap::new(), keep)
    }

    /// The nodes that depend on node `start`'s outputs, `start` included, in graph order.
    /// (Exporters interleave branches, so "every node after `start`" would run too much.)
    pub fn descendants(&self, start: usize) -> Vec<usize> {
        let mut reached: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, n) in self.nodes.iter().enumerate().skip(start) {
            if i == start || n.inputs.iter().any(|x| reached.contains(x.as_str())) {
                reached.extend(n.outputs.iter().map(String::as_str));
                out.push(i);
            }
        }
        out
    }

    /// Runs node `start` and its descendants only, taking every other tensor they read from
    /// `cached` (a full run's values, say): the sensitivity engine's suffix run. Returns the
    /// graph outputs (with [`Keep::All`], every computed tensor too); outputs that do not
    /// depend on `start` come from `cached`.
    pub fn run_from(
        &self,
        start: usize,
        cached: &HashMap<String, Tensor>,
        keep: Keep,
    ) -> Result<HashMap<String, Tensor>, NetError> {
        let nodes = self.descendants(start);
        let mut values = HashMap::new();
        for name in self.outside_inputs(&nodes) {
            let t = cached.get(&name).ok_or_else(|| NetError::Model {
                path: self.path.clone(),
                what: format!("suffix run from node {start}: no cached value for '{name}'"),
            })?;
            values.insert(name, t.shallow_clone());
        }
        self.execute(&nodes, values, &HashMap::new(), keep)
    }

    /// The tensors running `nodes` reads from outside them (weights aside), and the graph
    /// outputs they do not produce: what a run of those nodes must be given.
    pub fn outside_inputs(&self, nodes: &[usize]) -> Vec<String> {
        let produced: std::collections::HashSet<&str> =
            nodes.iter().flat_map(|&i| self.nodes[i].outputs.iter().map(String::as_str)).collect();
        let mut seen = std::collections::HashSet::new();
        nodes
            .iter()
            .flat_map(|&i| self.nodes[i].inputs.iter())
            .chain(self.outputs.iter().map(|o| &o.name))
            .filter(|n| !n.is_empty() && !produced.contains(n.as_str()) && !self.initializers.contains_key(*n))
            .filter(|n| seen.insert(n.as_str()))
            .cloned()
            .collect()
    }

    /// Runs `order` (node indices in graph order) on `values` (every tensor they read from
    /// outside, see [`Net::outside_inputs`]), with `overrides` in place of the initializers
    /// of the same names (a pruned layer's weights, say).
    pub fn run_nodes(
        &self,
        order: &[usize],
        values: HashMap<String, Tensor>,
        overrides: &HashMap<String, Tensor>,
        keep: Keep,
    ) -> Result<HashMap<String, Tensor>, NetError> {
        self.execute(order, values, overrides, keep)
    }

    /// Runs `order` (node indices in graph order) over `values`.
    fn execute(
        &self,
        order: &[usize],
        mut values: HashMap<String, Tensor>,
        overrides: &HashMap<String, Tensor>,
        keep: Keep,
    ) -> Result<HashMap<String, Tensor>, NetError> {
        let _guard = tch::no_grad_guard();
        let device = values.values().next().map(Tensor::device).unwrap_or(tch::Device::Cpu);
        let mut last_use: HashMap<&str, usize> = HashMap::new();
        for &i in order {
            for name in &self.nodes[i].inputs {
                last_use.insert(name.as_str(), i);
            }
        }
        let outputs: std::collections::HashSet<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        // Weights on another device than the run's are copied once, before it starts; the
        // others are read in place.
        let mut moved: HashMap<&str, Tensor> = HashMap::new();
        for &i in order {
            for name in &self.nodes[i].inputs {
                if values.contains_key(name) || moved.contains_key(name.as_str()) {
                    continue;
                }
                if let Some(t) = overrides.get(name).or_else(|| self.initializers.get(name)) {
                    if t.device() != device {
                        moved.insert(name.as_str(), t.to_device(device));
                    }
                }
            }
        }
        let weight =
            |name: &str| moved.get(name).or_else(|| overrides.get(name)).or_else(|| self.initializers.get(name));
        // SiLU pairs run as one kernel whatever is kept, so that cached tensors (Keep::All)
        // and outputs are computed alike and a suffix run from them is exact.
        let in_order: std::collections::HashSet<usize> = order.iter().copied().collect();
        let fused: HashMap<usize, usize> = self
            .silu
            .iter()
            .filter(|(s, m)| in_order.contains(s) && in_order.contains(m))
            .map(|(&s, &m)| (s, m))
            .collect();
        let fused_muls: std::collections::HashSet<usize> = fused.values().copied().collect();
        // An activation may overwrite its input where this run made it for it alone.
        let in_place = |i: usize| keep == Keep::Outputs && self.in_place.get(&i).is_some_and(|p| in_order.contains(p));
        let mut skip = std::collections::HashSet::new();
        for &i in order {
            let node = &self.nodes[i];
            if skip.contains(&i) {
                self.free_inputs(&mut values, node, i, &last_use, &outputs, keep);
                continue;
            }
            if let Some(&mul) = fused.get(&i) {
                let x = node
                    .inputs
                    .first()
                    .and_then(|n| values.get(n))
                    .ok_or_else(|| self.node_error(node, "no input".into()))?
                    .shallow_clone();
                if keep == Keep::All {
                    let sigmoid = Activation::Sigmoid.apply(x.shallow_clone(), false);
                    let sigmoid = sigmoid.map_err(|e| self.node_error(node, tch(e)))?;
                    if let Some(out) = node.outputs.first() {
                        values.insert(out.clone(), sigmoid);
                    }
                }
                let y = self.activate(node, Activation::Silu, x, &mut values, in_place(i))?;
                if let Some(out) = self.nodes[mul].outputs.first() {
                    values.insert(out.clone(), y);
                }
                continue;
            }
            if fused_muls.contains(&i) {
                self.free_inputs(&mut values, node, i, &last_use, &outputs, keep);
                continue;
            }
            let mut args: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                if name.is_empty() {
                    args.push(None);
                } else if let Some(t) = values.get(name).or_else(|| weight(name)) {
                    args.push(Some(t));
                } else {
                    return Err(self.node_error(node, format!("input '{name}' has no value")));
                }
            }
            let batch;
            if self.batch_reshapes.contains(&i) {
                batch = batch_shape(&args)?;
                args[1] = Some(&batch);
            }
            if let Some(act) = activation_of(node, &args, self.opset).map_err(|e| self.node_error(node, e))? {
                let x = need(&args, 0).map_err(|e| self.node_error(node, e))?.shallow_clone();
                drop(args);
                let y = self.activate(node, act, x, &mut values, in_place(i))?;
                if let Some(out) = node.outputs.first() {
                    values.insert(out.clone(), y);
                }
                self.free_inputs(&mut values, node, i, &last_use, &outputs, keep);
                continue;
            }
            // The net's own weights are packed once; a trial weight (an override) or one
            // moved for this run is packed for the call.
            let own = |k: usize| {
                node.inputs.get(k).is_none_or(|n| {
                    n.is_empty()
                        || (!overrides.contains_key(n)
                            && !moved.contains_key(n.as_str())
                            && self.initializers.contains_key(n))
                })
            };
            let cache = || (own(1) && own(2)).then_some((&self.packs, i));
            let produced = if node.op == "Gemm" {
                gemm(node, &args, cache())
            } else if node.op == "Conv" {
                // An activation (or SiLU pair) that alone reads this output is applied as
                // our kernel stores it, where it runs the convolution.
                let fusion = self.conv_act.get(&i).copied().filter(|a| {
                    keep == Keep::Outputs
                        && in_order.contains(a)
                        && self.silu.get(a).is_none_or(|m| in_order.contains(m))
                });
                let act = match fusion {
                    Some(a) if self.silu.contains_key(&a) => Some(Activation::Silu),
                    Some(a) => {
                        let n = &self.nodes[a];
                        // Its other inputs (Clip's bounds) are constants or earlier outputs.
                        let bounds: Vec<Option<&Tensor>> = (n.inputs.iter().enumerate())
                            .map(|(k, x)| {
                                (k > 0 && !x.is_empty()).then(|| values.get(x).or_else(|| weight(x))).flatten()
                            })
                            .collect();
                        activation_of(n, &bounds, self.opset).map_err(|e| self.node_error(n, e))?
                    }
                    None => None,
                };
                let (y, fused) = conv(node, &args, cache(), act).map_err(|e| self.node_error(node, e))?;
                if let (true, Some(a)) = (fused, fusion) {
                    drop(args);
                    let last = self.silu.get(&a).copied().unwrap_or(a);
                    skip.extend([a, last]);
                    if let Some(out) = self.nodes[last].outputs.first() {
                        values.insert(out.clone(), y);
                    }
                    self.free_inputs(&mut values, node, i, &last_use, &outputs, keep);
                    continue;
                }
                Ok(vec![y])
            } else {
                apply(node, &args, self.opset, device)
            };
            let produced = produced.map_err(|e| self.node_error(node, e))?;
            for (name, t) in node.outputs.iter().zip(produced) {
                if !name.is_empty() {
                    values.insert(name.clone(), t);
                }
            }
            self.free_inputs(&mut values, node, i, &last_use, &outputs, keep);
        }
        if keep == Keep::Outputs {
            values.retain(|k, _| outputs.contains(k.as_str()));
        }
        Ok(values)
    }

    /// `act` on `x`, node `node`'s first input: overwritten where `in_place`, once `values`
    /// no longer holds it.
    fn activate(
        &self,
        node: &Node,
        act: Activation,
        x: Tensor,
        values: &mut HashMap<String, Tensor>,
        in_place: bool,
    ) -> Result<Tensor, NetError> {
        if in_place {
            if let Some(name) = node.inputs.first() {
                values.remove(name);
            }
        }
        act.apply(x, in_place).map_err(|e| self.node_error(node, tch(e)))
    }

    /// Drops the inputs node `i` was the last to read (unless every tensor is kept).
    fn free_inputs(
        &self,
        values: &mut HashMap<String, Tensor>,
        node: &Node,
        i: usize,
        last_use: &HashMap<&str, usize>,
        outputs: &std::collections::HashSet<&str>,
        keep: Keep,
    ) {
        if keep == Keep::Outputs {
            for name in &node.inputs {
                if last_use.get(name.as_str()) == Some(&i) && !outputs.contains(name.as_str()) {
                    values.remove(name);
                }
            }
        }
    }

    fn node_error(&self, node: &Node, what: String) -> NetError {
        NetError::Node { path: self.path.clone(), node: node.name.clone(), op: node.op.clone(), what }
    }
}

/// The same NCHW tensor stored channels-last (NHWC strides), the layout libtorch's CPU
/// convolutions work in.
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// A tensor in the layout the executor keeps it (4-D floats channels-last, anything else as
/// is): what `prepare` makes of weights and `run` of inputs. A weight or input given to a
/// partial run in another layout would run other kernels and round differently.
pub fn executor_layout(t: &Tensor) -> Tensor {
    if t.dim() == 4 && t.is_floating_point() {
        channels_last(t)
    } else {
        t.shallow_clone()
    }
}

/// A Reshape target whose first element is the batch of its data input.
fn batch_shape(args: &[Option<&Tensor>]) -> Result<Tensor, NetError> {
    let (data, target) = (args[0].as_ref(), args[1].as_ref());
    let (Some(data), Some(target)) = (data, target) else {
        return Err(NetError::Model { path: Default::default(), what: "a batch Reshape without its inputs".into() });
    };
    let mut shape = values_of(target).unwrap_or_default();
    if let (Some(s), Some(&b)) = (shape.first_mut(), data.size().first()) {
        *s = b;
    }
    Ok(Tensor::from_slice(&shape))
}

/// The first element of an integer tensor.
pub(super) fn first_value(t: &Tensor) -> Option<i64> {
    values_of(t).ok()?.first().copied()
}

/// A deterministic input in [0, 1) for probing a graph (no global RNG state touched).
pub(super) fn probe_input(shape: &[i64], seed: u64) -> Tensor {
    let n: i64 = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}

/// The tensor of input `i`, which the operator requires.
fn need<'a>(args: &[Option<&'a Tensor>], i: usize) -> Result<&'a Tensor, String> {
    opt(args, i).ok_or_else(|| format!("input {i} is required"))
}

fn opt<'a>(args: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    args.get(i).copied().flatten()
}

fn int(node: &Node, key: &str, default: i64) -> Result<i64, String> {
    match node.attrs.get(key) {
        None => Ok(default),
        Some(Attr::Int(v)) => Ok(*v),
        Some(other) => Err(format!("attribute '{key}' should be an int, not {other:?}")),
    }
}

fn float(node: &Node, key: &str, default: f32) -> Result<f32, String> {
    match node.attrs.get(key) {
        None => Ok(default),
        Some(Attr::Float(v)) => Ok(*v),
        Some(other) => Err(format!("attribute '{key}' should be a float, not {other:?}")),
    }
}

fn ints(node: &Node, key: &str) -> Result<Option<Vec<i64>>, String> {
    match node.attrs.get(key) {
        None => Ok(None),
        Some(Attr::Ints(v)) => Ok(Some(v.clone())),
        Some(other) => Err(format!("attribute '{key}' should be a list of ints, not {other:?}")),
    }
}

fn text(node: &Node, key: &str, default: &str) -> Result<String, String> {
    match node.attrs.get(key) {
        None => Ok(default.to_string()),
        Some(Attr::Text(v)) => Ok(v.clone()),
        Some(other) => Err(format!("attribute '{key}' should be a string, not {other:?}")),
    }
}

/// An integer tensor's values (shapes, axes, indices).
fn values_of(t: &Tensor) -> Result<Vec<i64>, String> {
    let flat = t.f_reshape([-1]).and_then(|t| t.f_to_kind(Kind::Int64)).map_err(|e| e.to_string())?;
    Vec::<i64>::try_from(&flat.to_device(tch::Device::Cpu)).map_err(|e| e.to_string())
}

fn floats_of(t: &Tensor) -> Result<Vec<f64>, String> {
    let flat = t.f_reshape([-1]).and_then(|t| t.f_to_kind(Kind::Double)).map_err(|e| e.to_string())?;
    Vec::<f64>::try_from(&flat.to_device(tch::Device::Cpu)).map_err(|e| e.to_string())
}

/// `axis` of a tensor of rank `rank`, negative counting from the end, checked.
fn axis(a: i64, rank: usize) -> Result<i64, String> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&v) {
        Ok(v)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

/// Our loop for an Add, Sub, Mul or Div where it applies (see [`kernels::binary`]).
fn binary_kernel(node: &Node, args: &[Option<&Tensor>]) -> Option<Result<Tensor, tch::TchError>> {
    let op = match node.op.as_str() {
        "Add" => kernels::Binary::Add,
        "Sub" => kernels::Binary::Sub,
        "Mul" => kernels::Binary::Mul,
        _ => kernels::Binary::Div,
    };
    kernels::binary(op, opt(args, 0)?, opt(args, 1)?)
}

fn tch(e: tch::TchError) -> String {
    // libtorch's messages carry a C++ backtrace after the first line.
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn one(t: Result<Tensor, tch::TchError>) -> OpResult {
    t.map(|t| vec![t]).map_err(tch)
}

fn apply(node: &Node, args: &[Option<&Tensor>], opset: i64, device: tch::Device) -> OpResult {
    let x = || need(args, 0);
    match node.op.as_str() {
        "Identity" => Ok(vec![x()?.shallow_clone()]),
        "Mish" => one(x()?.f_mish()),
        // The IR's own operator (not read from ONNX files): a Darknet yolo head's decoding.
        "DarknetYolo" => {
            let image = need(args, 1)?.size();
            let anchors = match node.attrs.get("anchors") {
                Some(Attr::Floats(a)) if a.len() % 2 == 0 => a.chunks(2).map(|c| (c[0], c[1])).collect::<Vec<_>>(),
                _ => return Err("anchors should be a list of (w, h) floats".into()),
            };
            let (outputs, new_coords) = (int(node, "outputs", 0)?, int(node, "new_coords", 0)? != 0);
            let scale = float(node, "scale_x_y", 1.0)? as f64;
            let (h, w) = (image.get(2).copied().unwrap_or(0), image.get(3).copied().unwrap_or(0));
            crate::model::forward::yolo(x()?, &anchors, outputs, new_coords, scale, h, w)
                .map(|t| vec![t])
                .map_err(|e| e.to_string())
        }
        "Add" | "Sub" | "Mul" | "Div" if let Some(y) = binary_kernel(node, args) => one(y),
        "Add" => one(x()?.f_add(need(args, 1)?)),
        "Sub" => one(x()?.f_sub(need(args, 1)?)),
        "Mul" => one(x()?.f_mul(need(args, 1)?)),
        "Div" => {
            let (a, b) = (x()?, need(args, 1)?);
            if a.is_floating_point() {
                one(a.f_div(b))
            } else {
                one(a.f_div_tensor_mode(b, "trunc"))
            }
        }
        "MatMul" => one(x()?.f_matmul(need(args, 1)?)),
        "Gemm" => gemm(node, args, None),
        "Conv" => Ok(vec![conv(node, args, None, None)?.0]),
        "MaxPool" => pool(node, x()?, true),
        "AveragePool" => pool(node, x()?, false),
        "GlobalAveragePool" => {
            let x = x()?;
            if let Some(y) = kernels::spatial_mean(x) {
                return one(y);
            }
            let dims: Vec<i64> = (2..x.dim() as i64).collect();
            one(x.f_mean_dim(dims.as_slice(), true, None))
        }
        "ReduceMean" => reduce_mean(node, args, opset),
        "BatchNormalization" => {
            let eps = float(node, "epsilon", 1e-5)? as f64;
            one(x()?.f_batch_norm(
                Some(need(args, 1)?),
                Some(need(args, 2)?),
                Some(need(args, 3)?),
                Some(need(args, 4)?),
                false,
                0.0,
                eps,
                false,
            ))
        }
        "Softmax" => softmax(node, x()?, opset),
        "Concat" => {
            let xs: Vec<&Tensor> = args.iter().flatten().copied().collect();
            let rank = xs.first().map(|t| t.dim()).ok_or("no inputs")?;
            let axis = axis(int(node, "axis", 0)?, rank)?;
            if let Some(y) = kernels::concat(&xs, axis as usize) {
                return one(y);
            }
            one(Tensor::f_cat(&xs, axis))
        }
        "Split" => split(node, args, opset),
        "Slice" => slice(args),
        "Reshape" => reshape(node, args),
        "Transpose" => {
            let x = x()?;
            let perm = ints(node, "perm")?.unwrap_or_else(|| (0..x.dim() as i64).rev().collect());
            one(x.f_permute(perm.as_slice()))
        }
        "Flatten" => {
            let x = x()?;
            let a = axis(int(node, "axis", 1)?, x.dim() + 1)? as usize;
            let size = x.size();
            let outer: i64 = size[..a].iter().product();
            let inner: i64 = size[a..].iter().product();
            one(x.f_reshape([outer, inner]))
        }
        "Squeeze" => {
            let x = x()?;
            let axes = if opset >= 13 { opt(args, 1).map(values_of).transpose()? } else { ints(node, "axes")? };
            match axes {
                None => one(x.f_squeeze()),
                Some(axes) => {
                    let mut axes: Vec<i64> = axes.iter().map(|&a| axis(a, x.dim())).collect::<Result<_, _>>()?;
                    axes.sort_unstable();
                    let mut t = x.shallow_clone();
                    for a in axes.iter().rev() {
                        if t.size()[*a as usize] != 1 {
                            return Err(format!("cannot squeeze axis {a} of size {}", t.size()[*a as usize]));
                        }
                        t = t.f_squeeze_dim(*a).map_err(tch)?;
                    }
                    Ok(vec![t])
                }
            }
        }
        "Unsqueeze" => {
            let x = x()?;
            let axes = if opset >= 13 { values_of(need(args, 1)?)? } else { ints(node, "axes")?.unwrap_or_default() };
            let rank = x.dim() + axes.len();
            let mut axes: Vec<i64> = axes.iter().map(|&a| axis(a, rank)).collect::<Result<_, _>>()?;
            axes.sort_unstable();
            let mut t = x.shallow_clone();
            for a in axes {
                t = t.f_unsqueeze(a).map_err(tch)?;
            }
            Ok(vec![t])
        }
        "Resize" | "Upsample" => resize(node, args),
        "Pad" => pad(node, args, opset),
        "Constant" => constant(node, device),
        "Shape" => {
            let size = x()?.size();
            let rank = size.len() as i64;
            let clamp = |v: i64| if v < 0 { (v + rank).max(0) } else { v.min(rank) };
            let start = clamp(int(node, "start", 0)?) as usize;
            let end = clamp(int(node, "end", rank)?) as usize;
            let part = if start < end { &size[start..end] } else { &[][..] };
            Ok(vec![Tensor::from_slice(part).to_device(device)])
        }
        "Gather" => {
            let (data, indices) = (x()?, need(args, 1)?);
            let a = axis(int(node, "axis", 0)?, data.dim())?;
            let n = data.size()[a as usize];
            let idx = indices.f_to_kind(Kind::Int64).map_err(tch)?;
            // Negative indices count from the end.
            let idx = idx.f_remainder(n).map_err(tch)?;
            let picked = data.f_index_select(a, &idx.f_reshape([-1]).map_err(tch)?).map_err(tch)?;
            let mut shape: Vec<i64> = data.size()[..a as usize].to_vec();
            shape.extend(indices.size());
            shape.extend(&data.size()[a as usize + 1..]);
            one(picked.f_reshape(shape.as_slice()))
        }
        "Cast" => {
            let to = int(node, "to", 1)? as i32;
            let kind = match proto_kind(to) {
                Some(k) => k,
                None => return Err(format!("cast to element type {to} is not supported")),
            };
            one(x()?.f_to_kind(kind))
        }
        other => Err(format!("operator {other} is not implemented")),
    }
}

/// The tch kind of an ONNX element type code (`TensorProto.DataType`, which Cast's `to` uses).
fn proto_kind(data_type: i32) -> Option<Kind> {
    Some(match data_type {
        1 => Kind::Float,
        2 => Kind::Uint8,
        6 => Kind::Int,
        7 => Kind::Int64,
        9 => Kind::Bool,
        10 => Kind::Half,
        11 => Kind::Double,
        _ => return None,
    })
}

/// The operators [`activation_of`] recognises.
pub(super) const ACTIVATIONS: &[&str] = &["Relu", "Sigmoid", "HardSwish", "LeakyRelu", "HardSigmoid", "Clip"];

/// The activation node `node` computes, if it is one.
fn activation_of(node: &Node, args: &[Option<&Tensor>], opset: i64) -> Result<Option<Activation>, String> {
    Ok(Some(match node.op.as_str() {
        "Relu" => Activation::Relu,
        "Sigmoid" => Activation::Sigmoid,
        "HardSwish" => Activation::HardSwish,
        "LeakyRelu" => Activation::LeakyRelu(float(node, "alpha", 0.01)?),
        "HardSigmoid" => Activation::HardSigmoid { alpha: float(node, "alpha", 0.2)?, beta: float(node, "beta", 0.5)? },
        "Clip" => {
            let (lo, hi) = if opset >= 11 {
                let scalar = |i| opt(args, i).map(floats_of).transpose().map(|v| v.and_then(|v| v.first().copied()));
                (scalar(1)?, scalar(2)?)
            } else {
                (Some(float(node, "min", f32::MIN)? as f64), Some(float(node, "max", f32::MAX)? as f64))
            };
            Activation::Clip { lo: lo.unwrap_or(f64::NEG_INFINITY), hi: hi.unwrap_or(f64::INFINITY) }
        }
        _ => return Ok(None),
    }))
}

/// `cache` as for [`conv`].
fn gemm(node: &Node, args: &[Option<&Tensor>], cache: Option<(&kernels::PackCache, usize)>) -> OpResult {
    let (alpha, beta) = (float(node, "alpha", 1.0)? as f64, float(node, "beta", 1.0)? as f64);
    let mut a = need(args, 0)?.shallow_clone();
    let mut b = need(args, 1)?.shallow_clone();
    if a.dim() != 2 || b.dim() != 2 {
        return Err(format!("Gemm takes 2-D inputs, got {:?} and {:?}", a.size(), b.size()));
    }
    let (trans_a, trans_b) = (int(node, "transA", 0)? != 0, int(node, "transB", 0)? != 0);
    // A fully connected layer (`x · Wᵀ + b`, what torch exports for a Linear) is a 1×1
    // convolution over a 1×1 image: our kernel where it takes it.
    if alpha == 1.0 && (beta == 1.0 || opt(args, 2).is_none()) && !trans_a && trans_b {
        if let Some(y) = kernels::linear(&a, &b, opt(args, 2), cache) {
            return one(y);
        }
    }
    if trans_a {
        a = a.f_transpose(0, 1).map_err(tch)?;
    }
    if trans_b {
        b = b.f_transpose(0, 1).map_err(tch)?;
    }
    let mut y = a.f_matmul(&b).map_err(tch)?;
    if alpha != 1.0 {
        y = y.f_mul_scalar(alpha).map_err(tch)?;
    }
    if let Some(c) = opt(args, 2) {
        let c = if beta != 1.0 { c.f_mul_scalar(beta).map_err(tch)? } else { c.shallow_clone() };
        y = y.f_add(&c).map_err(tch)?;
    }
    Ok(vec![y])
}

/// Spatial pads as (begin, end) per spatial axis, from `pads` or `auto_pad`.
fn spatial_pads(
    node: &Node,
    in_size: &[i64],
    kernel: &[i64],
    strides: &[i64],
    dilations: &[i64],
) -> Result<Vec<(i64, i64)>, String> {
    let n = kernel.len();
    let auto = text(node, "auto_pad", "NOTSET")?;
    match auto.as_str() {
        "NOTSET" | "" => {
            let pads = ints(node, "pads")?.unwrap_or_else(|| vec![0; 2 * n]);
            if pads.len() != 2 * n || pads.iter().any(|&p| p < 0) {
                return Err(format!("pads {pads:?} do not fit {n} spatial axes"));
            }
            Ok((0..n).map(|i| (pads[i], pads[i + n])).collect())
        }
        "VALID" => Ok(vec![(0, 0); n]),
        "SAME_UPPER" | "SAME_LOWER" => Ok((0..n)
            .map(|i| {
                let out = (in_size[i] + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - in_size[i]).max(0);
                let small = total / 2;
                if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
        other => Err(format!("auto_pad {other} is not supported")),
    }
}

/// The most elements a tensor that a file's attributes size (Resize, Pad) may have: 2³¹.
const MAX_GROWN: i128 = 1 << 31;

/// Refuses an output of `shape` past [`MAX_GROWN`] elements before it is allocated.
fn check_grown(shape: &[i64]) -> Result<(), String> {
    let n = shape.iter().try_fold(1i128, |acc, &d| if d < 0 { None } else { Some(acc * d as i128) });
    match n {
        Some(n) if n <= MAX_GROWN => Ok(()),
        _ => Err(format!("the output would be {shape:?}, more than {MAX_GROWN} elements")),
    }
}

/// Pads the last `pads.len()` axes explicitly (torch pads symmetric only).
fn pad_explicit(x: &Tensor, pads: &[(i64, i64)], value: f64) -> Result<Tensor, String> {
    let size = x.size();
    let first = size.len().saturating_sub(pads.len());
    let mut grown = size.clone();
    for (i, &(b, e)) in pads.iter().enumerate() {
        if let Some(d) = grown.get_mut(first + i) {
            *d = d.saturating_add(b).saturating_add(e);
        }
    }
    check_grown(&grown)?;
    // constant_pad_nd takes (begin, end) pairs from the last axis backwards.
    let flat: Vec<i64> = pads.iter().rev().flat_map(|&(b, e)| [b, e]).collect();
    if value == 0.0 {
        x.f_constant_pad_nd(flat.as_slice()).map_err(tch)
    } else {
        Tensor::f_pad(x, flat.as_slice(), "constant", Some(value)).map_err(tch)
    }
}

/// `cache`: the net's pack cache and the node, where its weights are the net's own. `act`
/// is applied to the output where our kernel can (the second value says whether it was).
fn conv(
    node: &Node,
    args: &[Option<&Tensor>],
    cache: Option<(&kernels::PackCache, usize)>,
    act: Option<Activation>,
) -> Result<(Tensor, bool), String> {
    let (x, w) = (need(args, 0)?, need(args, 1)?);
    if x.dim() != 4 || w.dim() != 4 {
        return Err(format!("only 2-D convolutions are supported (input {:?}, weight {:?})", x.size(), w.size()));
    }
    let kernel = ints(node, "kernel_shape")?.unwrap_or_else(|| w.size()[2..].to_vec());
    let strides = ints(node, "strides")?.unwrap_or_else(|| vec![1, 1]);
    let dilations = ints(node, "dilations")?.unwrap_or_else(|| vec![1, 1]);
    let group = int(node, "group", 1)?;
    let pads = spatial_pads(node, &x.size()[2..], &kernel, &strides, &dilations)?;
    let shape = kernels::ConvShape { kernel: &kernel, strides: &strides, dilations: &dilations, pads: &pads, group };
    let b = opt(args, 2);
    // A small NCHW input (an attention block's reshaped product) is copied channels-last
    // for our kernels: the copy costs less than libtorch's call.
    let small_nchw = x.device() == tch::Device::Cpu
        && x.kind() == Kind::Float
        && x.stride()[1] != 1
        && x.is_contiguous()
        && x.numel() < kernels::GRAIN;
    let nhwc;
    let x = if small_nchw {
        nhwc = channels_last(x);
        &nhwc
    } else {
        x
    };
    if let Some(y) =
        kernels::dense(x, w, b, &shape, cache, act).or_else(|| kernels::depthwise(x, w, b, &shape, cache, act))
    {
        return y.map_err(tch);
    }
    if let Some(y) = kernels::pointwise(x, w, b, &shape) {
        return Ok((y.map_err(tch)?, false));
    }
    let symmetric = pads.iter().all(|(b, e)| b == e);
    let (input, padding) = if symmetric {
        (x.shallow_clone(), pads.iter().map(|p| p.0).collect::<Vec<_>>())
    } else {
        (pad_explicit(x, &pads, 0.0)?, vec![0, 0])
    };
    let y = input.f_conv2d(w, opt(args, 2), strides.as_slice(), padding.as_slice(), dilations.as_slice(), group);
    Ok((y.map_err(tch)?, false))
}

fn pool(node: &Node, x: &Tensor, max: bool) -> OpResult {
    if x.dim() != 4 {
        return Err(format!("only 2-D pooling is supported (input {:?})", x.size()));
    }
    let kernel = ints(node, "kernel_shape")?.ok_or("kernel_shape is required")?;
    if kernel.len() != 2 {
        return Err(format!("kernel_shape {kernel:?}: only 2-D pooling is supported"));
    }
    let strides = ints(node, "strides")?.unwrap_or_else(|| vec![1, 1]);
    let dilations = ints(node, "dilations")?.unwrap_or_else(|| vec![1, 1]);
    let ceil = int(node, "ceil_mode", 0)? != 0;
    let pads = spatial_pads(node, &x.size()[2..], &kernel, &strides, &dilations)?;
    if max {
        // Padding never wins a max: pad with −∞ where torch would not pad symmetrically.
        let symmetric = pads.iter().all(|(b, e)| b == e && 2 * b <= kernel[0].min(kernel[1]));
        let (input, padding) = if symmetric {
            (x.shallow_clone(), pads.iter().map(|p| p.0).collect::<Vec<_>>())
        } else {
            (pad_explicit(x, &pads, f64::NEG_INFINITY)?, vec![0, 0])
        };
        return one(input.f_max_pool2d(
            kernel.as_slice(),
            strides.as_slice(),
            padding.as_slice(),
            dilations.as_slice(),
            ceil,
        ));
    }
    if dilations.iter().any(|&d| d != 1) {
        return Err("AveragePool with dilations is not supported".into());
    }
    // The average over the window's elements inside the input (count_include_pad = 0) or
    // inside input and pads (1): a sum of the zero-padded input over a sum of a mask.
    let include = int(node, "count_include_pad", 0)? != 0;
    let padded = pad_explicit(x, &pads, 0.0)?;
    let ones = Tensor::f_ones([1, 1, x.size()[2], x.size()[3]], (x.kind(), x.device())).map_err(tch)?;
    let mask = if include { pad_explicit(&ones, &pads, 1.0)? } else { pad_explicit(&ones, &pads, 0.0)? };
    let avg = |t: &Tensor| t.f_avg_pool2d(kernel.as_slice(), strides.as_slice(), [0, 0], ceil, true, None::<i64>);
    let num = avg(&padded).map_err(tch)?;
    let den = avg(&mask).map_err(tch)?;
    one(num.f_div(&den))
}

fn reduce_mean(node: &Node, args: &[Option<&Tensor>], opset: i64) -> OpResult {
    let x = need(args, 0)?;
    let keep = int(node, "keepdims", 1)? != 0;
    let axes = if opset >= 18 { opt(args, 1).map(values_of).transpose()? } else { ints(node, "axes")? };
    let axes = match axes {
        Some(a) if !a.is_empty() => a.iter().map(|&a| axis(a, x.dim())).collect::<Result<Vec<_>, _>>()?,
        _ if int(node, "noop_with_empty_axes", 0)? != 0 => return Ok(vec![x.shallow_clone()]),
        _ => (0..x.dim() as i64).collect(),
    };
    if axes == [2, 3] || axes == [3, 2] {
        if let Some(y) = kernels::spatial_mean(x) {
            return one(if keep { y } else { y.and_then(|y| y.f_flatten(1, -1)) });
        }
    }
    one(x.f_mean_dim(axes.as_slice(), keep, None))
}

fn softmax(node: &Node, x: &Tensor, opset: i64) -> OpResult {
    if opset >= 13 {
        let a = axis(int(node, "axis", -1)?, x.dim())?;
        return one(x.f_softmax(a, None));
    }
    // Before opset 13 the input is seen as 2-D, [outer, inner] around the axis.
    let a = axis(int(node, "axis", 1)?, x.dim())? as usize;
    let size = x.size();
    let outer: i64 = size[..a].iter().product();
    let y = x.f_reshape([outer, -1]).and_then(|t| t.f_softmax(1, None)).and_then(|t| t.f_reshape(size.as_slice()));
    one(y)
}

fn split(node: &Node, args: &[Option<&Tensor>], opset: i64) -> OpResult {
    let x = need(args, 0)?;
    let a = axis(int(node, "axis", 0)?, x.dim())?;
    let len = x.size()[a as usize];
    let given = if opset >= 13 { opt(args, 1).map(values_of).transpose()? } else { ints(node, "split")? };
    let parts = node.outputs.len() as i64;
    let sizes = match given {
        Some(s) => s,
        None => {
            let n = int(node, "num_outputs", parts)?.max(1);
            let each = (len + n - 1) / n;
            (0..n).map(|i| each.min(len - i * each).max(0)).collect()
        }
    };
    if sizes.iter().sum::<i64>() != len || sizes.iter().any(|&s| s < 0) {
        return Err(format!("split sizes {sizes:?} do not add up to {len}"));
    }
    x.f_split_with_sizes(sizes.as_slice(), a).map_err(tch)
}

fn slice(args: &[Option<&Tensor>]) -> OpResult {
    let x = need(args, 0)?;
    let starts = values_of(need(args, 1)?)?;
    let ends = values_of(need(args, 2)?)?;
    let rank = x.dim();
    let axes = match opt(args, 3) {
        Some(t) => values_of(t)?.into_iter().map(|a| axis(a, rank)).collect::<Result<Vec<_>, _>>()?,
        None => (0..starts.len() as i64).collect(),
    };
    let steps = match opt(args, 4) {
        Some(t) => values_of(t)?,
        None => vec![1; starts.len()],
    };
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut t = x.shallow_clone();
    for i in 0..starts.len() {
        let (a, step) = (axes[i], steps[i]);
        let dim = t.size()[a as usize];
        if step == 0 {
            return Err("a slice step of 0".into());
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        if step > 0 {
            let s = norm(starts[i]).clamp(0, dim);
            let e = norm(ends[i]).clamp(0, dim);
            t = t.f_slice(a, s, e.max(s), step).map_err(tch)?;
        } else {
            // Walk backwards: indices s, s+step, … while > e.
            let s = norm(starts[i]).clamp(-1, dim - 1);
            let e = norm(ends[i]).clamp(-1, dim - 1);
            let idx: Vec<i64> = (0..).map(|k| s + k * step).take_while(|&j| j > e && j >= 0).collect();
            let idx = Tensor::from_slice(&idx).to_device(t.device());
            t = t.f_index_select(a, &idx).map_err(tch)?;
        }
    }
    Ok(vec![t])
}

fn reshape(node: &Node, args: &[Option<&Tensor>]) -> OpResult {
    let x = need(args, 0)?;
    let mut shape = values_of(need(args, 1)?)?;
    let allow_zero = int(node, "allowzero", 0)? != 0;
    if !allow_zero {
        let given = shape.clone();
        for (i, d) in shape.iter_mut().enumerate() {
            if *d == 0 {
                *d = *x
                    .size()
                    .get(i)
                    .ok_or_else(|| format!("shape {given:?}: 0 at axis {i} has no input axis to copy"))?;
            }
        }
    }
    one(x.f_reshape(shape.as_slice()))
}

fn resize(node: &Node, args: &[Option<&Tensor>]) -> OpResult {
    let x = need(args, 0)?;
    let mode = text(node, "mode", "nearest")?;
    let transform = text(node, "coordinate_transformation_mode", "half_pixel")?;
    let rounding = text(node, "nearest_mode", "round_prefer_floor")?;
    let upsample = node.op == "Upsample";
    // Nearest with asymmetric coordinates and floor is what Ultralytics, torchvision and
    // Darknet-style upsampling export; other modes would need their own kernels.
    if mode != "nearest" || (!upsample && (transform != "asymmetric" || rounding != "floor")) {
        return Err(format!(
            "Resize mode '{mode}', coordinate_transformation_mode '{transform}', nearest_mode '{rounding}' is not \
             supported (only nearest / asymmetric / floor)"
        ));
    }
    if x.dim() != 4 {
        return Err(format!("only 4-D Resize is supported (input {:?})", x.size()));
    }
    let scales_at = if upsample { 1 } else { 2 };
    let scales = opt(args, scales_at).map(floats_of).transpose()?.filter(|s| !s.is_empty());
    let sizes = if upsample { None } else { opt(args, 3).map(values_of).transpose()?.filter(|s| !s.is_empty()) };
    let size = x.size();
    let (out, sh, sw) = match (scales, sizes) {
        (Some(s), _) if s.len() == 4 => {
            if s[0] != 1.0 || s[1] != 1.0 {
                return Err(format!("scales {s:?}: only the two spatial axes may be resized"));
            }
            let out = [(size[2] as f64 * s[2]).floor() as i64, (size[3] as f64 * s[3]).floor() as i64];
            (out, Some(s[2]), Some(s[3]))
        }
        (_, Some(z)) if z.len() == 4 => {
            if z[0] != size[0] || z[1] != size[1] {
                return Err(format!("sizes {z:?}: only the two spatial axes may be resized"));
            }
            ([z[2], z[3]], None, None)
        }
        _ => return Err("neither scales nor sizes for all four axes".into()),
    };
    check_grown(&[size[0], size[1], out[0], out[1]])?;
    if out.iter().any(|&d| d <= 0) {
        return Err(format!("the output size {out:?} is empty"));
    }
    one(x.f_upsample_nearest2d(out, sh, sw))
}

fn pad(node: &Node, args: &[Option<&Tensor>], opset: i64) -> OpResult {
    let x = need(args, 0)?;
    let rank = x.dim();
    let mode = text(node, "mode", "constant")?;
    let (pads, value) = if opset >= 11 {
        let pads = values_of(need(args, 1)?)?;
        let value = opt(args, 2).map(floats_of).transpose()?.and_then(|v| v.first().copied()).unwrap_or(0.0);
        (pads, value)
    } else {
        (ints(node, "pads")?.unwrap_or_default(), float(node, "value", 0.0)? as f64)
    };
    let axes: Vec<i64> = match opt(args, 3) {
        Some(t) => values_of(t)?.into_iter().map(|a| axis(a, rank)).collect::<Result<_, _>>()?,
        None => (0..rank as i64).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("pads {pads:?} do not fit {} axes", axes.len()));
    }
    let mut per_axis = vec![(0i64, 0i64); rank];
    for (i, &a) in axes.iter().enumerate() {
        per_axis[a as usize] = (pads[i], pads[i + axes.len()]);
    }
    if mode == "constant" {
        if per_axis.iter().any(|&(b, e)| b < 0 || e < 0) {
            return Err("negative pads are not supported".into());
        }
        return pad_explicit(x, &per_axis, value).map(|t| vec![t]);
    }
    let spatial_only = rank == 4 && per_axis[..2].iter().all(|&p| p == (0, 0));
    if !spatial_only {
        return Err(format!("Pad mode '{mode}' is supported on the two spatial axes of a 4-D input only"));
    }
    let flat = [per_axis[3].0, per_axis[3].1, per_axis[2].0, per_axis[2].1];
    match mode.as_str() {
        "reflect" => one(x.f_reflection_pad2d(flat)),
        "edge" => one(x.f_replication_pad2d(flat)),
        other => Err(format!("Pad mode '{other}' is not supported (constant, reflect, edge)")),
    }
}

fn constant(node: &Node, device: tch::Device) -> OpResult {
    let t = if let Some(Attr::Tensor(t)) = node.attrs.get("value") {
        t.shallow_clone()
    } else if let Some(Attr::Float(v)) = node.attrs.get("value_float") {
        Tensor::from(*v)
    } else if let Some(Attr::Floats(v)) = node.attrs.get("value_floats") {
        Tensor::from_slice(v)
    } else if let Some(Attr::Int(v)) = node.attrs.get("value_int") {
        Tensor::from(*v)
    } else if let Some(Attr::Ints(v)) = node.attrs.get("value_ints") {
        Tensor::from_slice(v)
    } else {
        return Err("Constant without a supported value attribute (value, value_float(s), value_int(s))".into());
    };
    Ok(vec![t.to_device(device)])
}
