//! Darknet models: cfg parsing, the graph IR with shapes and cost, weight IO and the tch
//! forward pass.

pub mod cfg;
pub mod darknet;
pub mod effective;
pub mod forward;
pub mod graph;
pub mod ir;
pub mod onnx;
pub mod task;
pub mod weights;

pub use cfg::{Activation, Block, BlockKind, Cfg, CfgError, Conv, Yolo};
pub use forward::{parse_device, ConvParams, Darknet, DeviceError, ForwardError, ForwardOutput};
pub use graph::{Graph, Node, Source};
pub use weights::{Layout, LayoutError, PickleError, TensorF32, ViewError, Weights, WeightsError, WeightsFormat};
