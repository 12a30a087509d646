//! Detection and classification metrics: COCO-faithful mAP, VOC AP, precision/recall at a
//! confidence, confusion matrices, accuracy; and YOLO post-processing (NMS).

pub mod coco;
pub mod confusion;
pub mod nms;
pub mod pr;
pub mod voc;

pub use confusion::ConfusionMatrix;
pub use nms::{Det, NmsConfig};
