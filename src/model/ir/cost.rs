//! Parameters and MACs per node of an ONNX graph, from the shapes of one dry run at batch 1.
//!
//! Parameters: the weight and bias initializers of Conv, Gemm and MatMul nodes (and the
//! scale and shift of a BatchNormalization that was not folded into its Conv), counted at
//! every node that uses them (a bias shared by three convolutions counts three times, as
//! PyTorch counts the modules it came from). Other initializers (anchors, strides, shape,
//! split and scale constants) are not parameters.
//!
//! MACs, the project's convention (ptflops'), per node with output numel `n`:
//! Conv = n·Cin/groups·kh·kw (+ n with a bias); Gemm = numel(A)·N (+ N with C); MatMul =
//! numel(A)·K (K: the last axis of B); BatchNormalization = 2n; Relu, LeakyRelu, Clip = n;
//! MaxPool, AveragePool, GlobalAveragePool, ReduceMean = numel of the input; Resize/Upsample
//! = n; everything else (other activations, arithmetic, shape ops, Softmax) = 0.
//!
//! The thop total, as ultralytics-thop counts a PyTorch model (`model.info()`'s GFLOPs are
//! twice it): it hooks modules only, so Conv = n·Cin/groups·kh·kw (no bias), Gemm (a Linear)
//! = n·in_features, GlobalAveragePool (an AdaptiveAvgPool2d) = n·(kh·kw + 1); MatMul and
//! Softmax (functional in the attention and the DFL), pools, upsampling and activations = 0.

use super::exec::Keep;
use super::{Net, NetError};
use tch::{Kind, Tensor};

/// The cost of one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeCost {
    pub params: u64,
    pub macs: u64,
    pub thop_macs: u64,
    /// The shape of the node's first output in the dry run.
    pub output_shape: Vec<i64>,
}

impl Net {
    /// The cost of every node (in graph order) for an input of `shape` (batch 1 is the
    /// convention for MACs).
    pub fn costs(&self, shape: &[i64]) -> Result<Vec<NodeCost>, NetError> {
        Ok(self.costs_and_values(shape)?.0)
    }

    /// [`Net::costs`] and every tensor of the dry run (zeros of `shape`) it counted from.
    pub fn costs_and_values(
        &self,
        shape: &[i64],
    ) -> Result<(Vec<NodeCost>, std::collections::HashMap<String, Tensor>), NetError> {
        let input = Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu));
        let name = self.inputs[0].name.clone();
        let values = self.run(vec![(name.clone(), input.shallow_clone())], Keep::All)?;
        let size = |t: &str| -> Vec<i64> {
            if t == name {
                input.size()
            } else {
                values.get(t).or_else(|| self.initializers.get(t)).map(Tensor::size).unwrap_or_default()
            }
        };
        let numel = |s: &[i64]| s.iter().map(|&d| d.max(0) as u64).product::<u64>();
        let weight = |t: &str| self.initializers.get(t).map(|w| w.numel() as u64).unwrap_or(0);
        let mut out = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let input = |i: usize| node.inputs.get(i).map(String::as_str).unwrap_or("");
            let y = node.outputs.first().map(|o| size(o)).unwrap_or_default();
            let n = numel(&y);
            let x = size(input(0));
            let cost = match node.op.as_str() {
                "Conv" => {
                    let w = size(input(1));
                    let per_output = w.get(1..).map(numel).unwrap_or(0);
                    let bias = !input(2).is_empty();
                    NodeCost {
                        params: weight(input(1)) + weight(input(2)),
                        macs: n * per_output + if bias { n } else { 0 },
                        thop_macs: n * per_output,
                        ..Default::default()
                    }
                }
                "Gemm" => {
                    let trans_a = matches!(node.attrs.get("transA"), Some(super::Attr::Int(v)) if *v != 0);
                    let k = if trans_a { x.first() } else { x.last() }.copied().unwrap_or(0).max(0) as u64;
                    let cols = y.last().copied().unwrap_or(0).max(0) as u64;
                    let bias = !input(2).is_empty();
                    NodeCost {
                        params: weight(input(1)) + weight(input(2)),
                        macs: numel(&x) * cols + if bias { cols } else { 0 },
                        thop_macs: n * k,
                        ..Default::default()
                    }
                }
                "MatMul" => {
                    let b = size(input(1));
                    let k = b.last().copied().unwrap_or(0).max(0) as u64;
                    NodeCost {
                        params: weight(input(0)) + weight(input(1)),
                        macs: numel(&x) * k,
                        thop_macs: numel(&x) * k,
                        ..Default::default()
                    }
                }
                // Scale and shift are parameters (an unfolded BN: Darknet's, a training export's).
                "BatchNormalization" => {
                    NodeCost { params: weight(input(1)) + weight(input(2)), macs: 2 * n, ..Default::default() }
                }
                "Relu" | "LeakyRelu" | "Clip" => NodeCost { macs: n, ..Default::default() },
                "MaxPool" | "AveragePool" | "ReduceMean" => NodeCost { macs: numel(&x), ..Default::default() },
                "GlobalAveragePool" => {
                    let kernel = x.get(2..).map(numel).unwrap_or(1);
                    NodeCost { macs: numel(&x), thop_macs: n * (kernel + 1), ..Default::default() }
                }
                "Resize" | "Upsample" => NodeCost { macs: n, ..Default::default() },
                _ => NodeCost::default(),
            };
            out.push(NodeCost { output_shape: y, ..cost });
        }
        Ok((out, values))
    }

    /// The input shape at batch 1: the graph input's dims, with `img_size` for symbolic
    /// spatial axes (and the given ones where the file fixes them).
    pub fn input_shape(&self, img_size: Option<i64>) -> Result<Vec<i64>, NetError> {
        let dims = &self.inputs[0].dims;
        if dims.len() != 4 {
            return Err(NetError::Model {
                path: self.path.clone(),
                what: format!(
                    "input '{}' has rank {}; expected an image batch [N, C, H, W]",
                    self.inputs[0].name,
                    dims.len()
                ),
            });
        }
        let spatial = |d: Option<i64>| {
            img_size.or(d).ok_or_else(|| NetError::Model {
                path: self.path.clone(),
                what: "the input size is symbolic: give it (--img-size)".into(),
            })
        };
        Ok(vec![1, dims[1].unwrap_or(3), spatial(dims[2])?, spatial(dims[3])?])
    }
}
