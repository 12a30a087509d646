//! Training on tch: the YOLOv3 loss and the optimiser; fine-tuning that keeps pruning masks
//! builds on these.

pub mod loss;
pub mod optim;
pub mod trainer;

pub use loss::{yolo_loss, Head, LossWeights, Target};
pub use optim::{Adam, Optimizer, OptimizerKind, Sgd};
pub use trainer::{train, EpochReport, TrainConfig, TrainError, TrainSample};
