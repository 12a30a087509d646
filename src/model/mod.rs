//! Models: the format-neutral IR (`ir`) with its executor and cost model, the importers
//! (Darknet cfg + checkpoint, ONNX), the opened model every later step sees (`open`), its
//! effective cost, the task layer, and the Darknet forward pass training uses.

pub mod cfg;
pub mod darknet;
pub mod effective;
pub mod forward;
pub mod graph;
pub mod ir;
pub mod onnx;
pub mod open;
pub mod task;
pub mod weights;

pub use cfg::{Activation, Block, BlockKind, Cfg, CfgError, Conv, Yolo};
pub use forward::{parse_device, ConvParams, Darknet, DeviceError, ForwardError, ForwardOutput};
pub use graph::{Graph, Node, Source};
pub use open::{Layer, Model, ModelError, ModelFiles};
pub use weights::{Layout, LayoutError, PickleError, TensorF32, ViewError, Weights, WeightsError, WeightsFormat};
