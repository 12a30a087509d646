//! Predictions made elsewhere (by another tool, or saved by an earlier run), scored against a
//! dataset in Ultralytics' convention ([`crate::metrics::ultralytics`]), so a user can hold
//! any tool's output against `yolo val`'s figures.
//!
//! The file: a JSON object, image file stem → list of
//! `{"class": int, "score": float, "box_xywh": [cx, cy, w, h]}` in the image's pixels (box
//! centre and size), optionally `"keypoints": [[x, y, score], …]` (read and checked, not
//! scored here). Every image of the dataset without an entry has no predictions.

use crate::data::DetectionDataset;
use crate::metrics::ultralytics::{ap_per_class, iou, match_predictions};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a predictions file cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum PredsError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: {what}", path.display())]
    Content { path: PathBuf, what: String },
    #[error("{}: cannot read its size: {source}", path.display())]
    Image { path: PathBuf, source: image::ImageError },
}

/// One saved prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPrediction {
    pub class: usize,
    pub score: f64,
    /// Centre x, centre y, width, height in the image's pixels.
    pub box_xywh: [f64; 4],
    pub keypoints: Option<Vec<[f64; 3]>>,
}

/// Box metrics in Ultralytics' convention (what `yolo val` prints for the box).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoxMetrics {
    #[serde(rename = "P")]
    pub p: f64,
    #[serde(rename = "R")]
    pub r: f64,
    #[serde(rename = "mAP50")]
    pub map50: f64,
    #[serde(rename = "mAP50-95")]
    pub map: f64,
    /// AP@0.5 of each class that has labels, by class index.
    pub per_class_ap50: BTreeMap<String, f64>,
}

/// Reads a predictions file (see the module documentation), checking every field.
pub fn read(path: &Path, classes: usize) -> Result<BTreeMap<String, Vec<SavedPrediction>>, PredsError> {
    let bad = |what: String| PredsError::Content { path: path.to_path_buf(), what };
    let bytes = std::fs::read(path).map_err(|source| PredsError::Read { path: path.to_path_buf(), source })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("line {}: not JSON: {e}", e.line())))?;
    let obj = value.as_object().ok_or_else(|| bad("expected an object: image stem → list of predictions".into()))?;
    let mut out = BTreeMap::new();
    for (image, list) in obj {
        let list = list.as_array().ok_or_else(|| bad(format!("\"{image}\": expected a list of predictions")))?;
        let mut preds = Vec::with_capacity(list.len());
        for (k, p) in list.iter().enumerate() {
            let at = |field: &str, what: &str| bad(format!("\"{image}\"[{k}].{field}: expected {what}"));
            let class = p
                .get("class")
                .and_then(|v| v.as_u64())
                .filter(|&c| (c as usize) < classes)
                .ok_or_else(|| at("class", &format!("a class index 0..{}", classes.saturating_sub(1))))?;
            let score = p
                .get("score")
                .and_then(|v| v.as_f64())
                .filter(|s| s.is_finite())
                .ok_or_else(|| at("score", "a number"))?;
            let numbers = |v: &serde_json::Value| -> Option<Vec<f64>> {
                v.as_array()?.iter().map(|x| x.as_f64().filter(|f| f.is_finite())).collect()
            };
            let b = p.get("box_xywh").and_then(numbers).filter(|b| b.len() == 4 && b[2] >= 0.0 && b[3] >= 0.0);
            let b = b.ok_or_else(|| at("box_xywh", "[cx, cy, w, h] in pixels, w and h ≥ 0"))?;
            let keypoints = match p.get("keypoints") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => {
                    let rows = v.as_array().ok_or_else(|| at("keypoints", "a list of [x, y, score]"))?;
                    let mut kps = Vec::with_capacity(rows.len());
                    for r in rows {
                        let r = numbers(r).filter(|r| r.len() == 3 || r.len() == 2);
                        let r = r.ok_or_else(|| at("keypoints", "a list of [x, y, score]"))?;
                        kps.push([r[0], r[1], r.get(2).copied().unwrap_or(1.0)]);
                    }
                    Some(kps)
                }
            };
            preds.push(SavedPrediction { class: class as usize, score, box_xywh: [b[0], b[1], b[2], b[3]], keypoints });
        }
        out.insert(image.clone(), preds);
    }
    Ok(out)
}

fn xyxy_f32(b: [f64; 4]) -> [f32; 4] {
    let [cx, cy, w, h] = b.map(|v| v as f32);
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

/// One image for [`box_metrics`]: its labels and predictions as (class, x1, y1, x2, y2 in
/// pixels), predictions with their scores.
#[derive(Debug, Clone, Default)]
pub struct ImageBoxes {
    pub labels: Vec<(usize, [f32; 4])>,
    pub preds: Vec<(usize, f64, [f32; 4])>,
}

/// The labels of `sample` in pixels of its `w`×`h` image, as Ultralytics builds them
/// (xywh2xyxy on the normalised box, then times the size; COCO boxes as they are).
pub fn labels_of(sample: &crate::data::DetectionSample, w: u32, h: u32) -> Vec<(usize, [f32; 4])> {
    sample
        .boxes
        .iter()
        .map(|b| {
            let [cx, cy, bw, bh] = b.coords.map(|v| v as f32);
            if b.normalized {
                let (sw, sh) = (w as f32, h as f32);
                let xyxy = [cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0];
                (b.class, [xyxy[0] * sw, xyxy[1] * sh, xyxy[2] * sw, xyxy[3] * sh])
            } else {
                // COCO pixels: x, y (top left), w, h.
                (b.class, [cx, cy, cx + bw, cy + bh])
            }
        })
        .collect()
}

/// Box metrics in Ultralytics' convention over `images`.
pub fn box_metrics(images: &[ImageBoxes]) -> BoxMetrics {
    let (mut tp, mut conf, mut pred_class, mut label_class) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for img in images {
        // An image's predictions in descending score order, as NMS gives them.
        let mut mine: Vec<&(usize, f64, [f32; 4])> = img.preds.iter().collect();
        mine.sort_by(|a, b| b.1.total_cmp(&a.1));
        let classes: Vec<usize> = mine.iter().map(|p| p.0).collect();
        let ious: Vec<Vec<f32>> = img.labels.iter().map(|(_, l)| mine.iter().map(|p| iou(*l, p.2)).collect()).collect();
        let lc: Vec<usize> = img.labels.iter().map(|l| l.0).collect();
        tp.extend(match_predictions(&ious, &classes, &lc));
        conf.extend(mine.iter().map(|p| p.1));
        pred_class.extend(classes);
        label_class.extend(lc);
    }
    let r = ap_per_class(&tp, &conf, &pred_class, &label_class);
    BoxMetrics {
        p: r.mp(),
        r: r.mr(),
        map50: r.map50(),
        map: r.map(),
        per_class_ap50: r.classes.iter().zip(&r.ap).map(|(c, ap)| (c.to_string(), ap[0])).collect(),
    }
}

/// Scores `preds` (from `path`, named in errors) against `dataset` the way Ultralytics does.
/// A prediction for an image the dataset does not have is an error.
pub fn score_ultralytics(
    dataset: &DetectionDataset,
    preds: &BTreeMap<String, Vec<SavedPrediction>>,
    path: &Path,
) -> Result<BoxMetrics, PredsError> {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let known: std::collections::HashSet<String> = dataset.samples.iter().map(|s| stem(&s.image)).collect();
    if let Some(unknown) = preds.keys().find(|k| !known.contains(*k)) {
        return Err(PredsError::Content {
            path: path.to_path_buf(),
            what: format!(
                "\"{unknown}\": no image of that name in {} ({} images)",
                dataset.source.display(),
                known.len()
            ),
        });
    }
    let none = Vec::new();
    let mut images = Vec::with_capacity(dataset.samples.len());
    for s in &dataset.samples {
        let (w, h) =
            image::image_dimensions(&s.image).map_err(|source| PredsError::Image { path: s.image.clone(), source })?;
        let preds = preds.get(&stem(&s.image)).unwrap_or(&none);
        images.push(ImageBoxes {
            labels: labels_of(s, w, h),
            preds: preds.iter().map(|p| (p.class, p.score, xyxy_f32(p.box_xywh))).collect(),
        });
    }
    Ok(box_metrics(&images))
}
