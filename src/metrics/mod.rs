//! Detection and classification metrics: COCO-faithful mAP, VOC AP, precision/recall at a
//! confidence, confusion matrices, accuracy; and YOLO post-processing (NMS).

pub mod classify;
pub mod coco;
pub mod confusion;
pub mod nms;
pub mod pr;
pub mod ultralytics;
pub mod voc;

pub use confusion::ConfusionMatrix;
pub use nms::{Det, NmsConfig};

/// IoU of two (x1, y1, x2, y2) boxes; 0 when the union is empty.
pub fn iou_xyxy(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}
