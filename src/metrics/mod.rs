//! Detection and classification metrics: COCO-faithful mAP, VOC AP, precision/recall,
//! confusion matrices, accuracy.

pub mod coco;
