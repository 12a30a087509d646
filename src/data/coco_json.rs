//! COCO json detection datasets (`images`, `annotations`, `categories`, `iscrowd`).
//!
//! Reading and parsing the json is here; the checks of the values and the evaluation are
//! [`crate::metrics::coco`]'s.

use super::{read_text_as, DataError, DetectionDataset, DetectionSample, GtBox, SkipReport, MAX_JSON_BYTES};
use crate::metrics::coco::{check_detections, CocoGt, Detection};
use std::collections::HashMap;
use std::path::Path;

/// Opens a COCO annotation file. Images are looked up in `images_dir`, else beside the json,
/// else in an `images/` folder beside it. Classes are the categories sorted by id.
pub fn open(json: &Path, images_dir: Option<&Path>) -> Result<DetectionDataset, DataError> {
    from_gt(json, read_gt(json)?, images_dir)
}

/// The dataset of a checked ground truth read from `json` (see [`open`]).
pub fn from_gt(json: &Path, gt: CocoGt, images_dir: Option<&Path>) -> Result<DetectionDataset, DataError> {
    let mut cats: Vec<(i64, String)> = gt.categories.iter().map(|c| (c.id, c.name.clone())).collect();
    cats.sort();
    let class_of: HashMap<i64, usize> = cats.iter().enumerate().map(|(i, (id, _))| (*id, i)).collect();
    let base = json.parent().unwrap_or(Path::new("."));
    let mut by_image: HashMap<i64, Vec<GtBox>> = HashMap::new();
    for a in &gt.annotations {
        by_image.entry(a.image_id).or_default().push(GtBox {
            class: class_of[&a.category_id],
            coords: a.bbox,
            normalized: false,
            crowd: a.iscrowd != 0,
        });
    }
    let mut images = gt.images.clone();
    images.sort_by_key(|i| i.id);
    let mut samples = Vec::with_capacity(images.len());
    for (n, info) in images.iter().enumerate() {
        let Some(name) = &info.file_name else {
            return Err(DataError::new(json, None, format!("images[{n}] (id {}): missing `file_name`", info.id)));
        };
        let candidates =
            [images_dir.map(|d| d.join(name)), Some(base.join(name)), Some(base.join("images").join(name))];
        let image = candidates.iter().flatten().find(|p| p.is_file()).cloned().unwrap_or_else(|| base.join(name));
        samples.push(DetectionSample {
            image,
            boxes: by_image.remove(&info.id).unwrap_or_default(),
            coco_id: Some(info.id),
        });
    }
    let ids = cats.iter().map(|(id, _)| *id).collect();
    Ok(DetectionDataset {
        source: json.to_path_buf(),
        names: cats.into_iter().map(|(_, n)| n).collect(),
        samples,
        skipped: SkipReport::default(),
        unlabelled: 0,
        coco: Some((gt, ids)),
    })
}

/// What a COCO ground-truth file holds, for messages.
const GT_WHAT: &str = "COCO ground-truth file (images, annotations, categories)";
/// What a COCO results file holds, for messages.
const RESULTS_WHAT: &str = "COCO results file (a list of {image_id, category_id, bbox, score})";

/// Reads and checks a COCO ground-truth file: a UTF-8 byte-order mark is accepted, invalid
/// UTF-8 and malformed json are errors naming the file, the line and the column.
pub fn read_gt(json: &Path) -> Result<CocoGt, DataError> {
    parse_gt(json, &read_text_as(json, MAX_JSON_BYTES, "cannot read the COCO ground-truth file")?)
}

/// Parses and checks the text of a COCO ground-truth file named `json`.
pub fn parse_gt(json: &Path, text: &str) -> Result<CocoGt, DataError> {
    let gt: CocoGt = parse_json(json, text, GT_WHAT)?;
    gt.check(&json.display().to_string()).map_err(|source| DataError::Coco { file: json.to_path_buf(), source })?;
    Ok(gt)
}

/// Reads and checks a COCO results file (a json list of detections), as [`read_gt`] does.
pub fn read_detections(json: &Path) -> Result<Vec<Detection>, DataError> {
    parse_detections(json, &read_text_as(json, MAX_JSON_BYTES, "cannot read the COCO results file")?)
}

/// Parses and checks the text of a COCO results file named `json`: boxes and scores must be
/// finite numbers.
pub fn parse_detections(json: &Path, text: &str) -> Result<Vec<Detection>, DataError> {
    let dets: Vec<Detection> = parse_json(json, text, RESULTS_WHAT)?;
    check_detections(&dets, &json.display().to_string())
        .map_err(|source| DataError::Coco { file: json.to_path_buf(), source })?;
    Ok(dets)
}

fn parse_json<T: serde::de::DeserializeOwned>(json: &Path, text: &str, what: &'static str) -> Result<T, DataError> {
    serde_json::from_str(text).map_err(|e| DataError::Json {
        file: json.to_path_buf(),
        what,
        source: std::sync::Arc::new(e),
    })
}
