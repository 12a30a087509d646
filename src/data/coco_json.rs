//! COCO json detection datasets (`images`, `annotations`, `categories`, `iscrowd`).

use super::{read_text, DataError, DetectionDataset, DetectionSample, GtBox, SkipReport, MAX_JSON_BYTES};
use crate::metrics::coco::CocoGt;
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

/// Reads and checks a COCO ground-truth file: a UTF-8 byte-order mark is accepted, invalid
/// UTF-8 and malformed json are errors naming the file and the line.
pub fn read_gt(json: &Path) -> Result<CocoGt, DataError> {
    parse_gt(json, &read_text(json, MAX_JSON_BYTES)?)
}

/// Parses and checks the text of a COCO ground-truth file named `json`.
pub fn parse_gt(json: &Path, text: &str) -> Result<CocoGt, DataError> {
    let gt: CocoGt = serde_json::from_str(text).map_err(|e| {
        DataError::new(
            json,
            Some(e.line()).filter(|l| *l > 0),
            format!("not a valid COCO ground-truth file (images, annotations, categories): {e}"),
        )
    })?;
    gt.check(&json.display().to_string()).map_err(|e| DataError::new(json, None, e.message))?;
    Ok(gt)
}
