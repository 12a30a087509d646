//! COCO evaluation against pycocotools: the reference fixture to 1e-6, and corner cases whose
//! expected values are derived in the comments (and agree with pycocotools 2.0).

mod common;

use prunescope::data::coco_json;
use prunescope::metrics::coco::{self, Category, CocoError, CocoGt, Detection, GtAnnotation, ImageInfo};

#[test]
fn matches_pycocotools_on_the_fixture() {
    let dir = common::fixtures().join("coco");
    let gt = coco_json::read_gt(&dir.join("gt.json")).unwrap();
    let dets = coco_json::read_detections(&dir.join("dets.json")).unwrap();
    let r = coco::evaluate(&gt, &dets).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let bbox = expected["bbox"].as_array().unwrap();
    assert_eq!(bbox.len(), 12);
    for (i, e) in bbox.iter().enumerate() {
        let e = e.as_f64().unwrap();
        assert!((r.stats[i] - e).abs() <= 1e-6, "stat {i}: {} vs pycocotools {e}", r.stats[i]);
    }
    let per_class = r.per_class_ap50();
    let exp = expected["per_class_ap50"].as_object().unwrap();
    assert_eq!(exp.len(), per_class.len());
    for (id, e) in exp {
        let ours = per_class[&id.parse::<i64>().unwrap()];
        let e = e.as_f64().unwrap();
        assert!((ours - e).abs() <= 1e-6, "category {id}: {ours} vs pycocotools {e}");
    }
}

/// Builds ground truth: (image, category, box, iscrowd); ids 1.. in order, area = w·h.
fn gt(images: &[i64], cats: &[i64], anns: &[(i64, i64, [f64; 4], u8)]) -> CocoGt {
    CocoGt {
        images: images.iter().map(|&id| ImageInfo { id, width: None, height: None, file_name: None }).collect(),
        categories: cats.iter().map(|&id| Category { id, name: format!("c{id}") }).collect(),
        annotations: anns
            .iter()
            .enumerate()
            .map(|(n, &(image_id, category_id, bbox, iscrowd))| GtAnnotation {
                id: n as i64 + 1,
                image_id,
                category_id,
                bbox,
                area: Some(bbox[2] * bbox[3]),
                iscrowd,
            })
            .collect(),
    }
}

fn dets(d: &[(i64, i64, [f64; 4], f64)]) -> Vec<Detection> {
    d.iter().map(|&(image_id, category_id, bbox, score)| Detection { image_id, category_id, bbox, score }).collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

const BOX: [f64; 4] = [0.0, 0.0, 40.0, 40.0]; // area 1600: "medium"

/// Class 1 has ground truth and no detection: npig = 1, no detections, so every recall point
/// reads precision 0 -> AP 0 (not -1). Class 2 is found perfectly: tp=1, fp=0, precision
/// 1/(1+eps) at all 101 points -> AP 1. mAP = (0 + 1)/2 = 0.5.
#[test]
fn class_with_ground_truth_and_no_detections_counts_as_zero() {
    let g = gt(&[1], &[1, 2], &[(1, 1, BOX, 0), (1, 2, [50.0, 50.0, 40.0, 40.0], 0)]);
    let r = coco::evaluate(&g, &dets(&[(1, 2, [50.0, 50.0, 40.0, 40.0], 0.9)])).unwrap();
    let ap50 = r.per_class_ap50();
    assert_eq!(ap50[&1], 0.0);
    assert!(close(ap50[&2], 1.0));
    assert!(close(r.stats[0], 0.5) && close(r.stats[1], 0.5));
    // AR100: recall 0 for class 1 and 1 for class 2 at every threshold -> 0.5.
    assert!(close(r.stats[8], 0.5));
    // No small or large ground truth: those stats are undefined (-1).
    assert_eq!((r.stats[3], r.stats[5]), (-1.0, -1.0));
}

/// Class 2 has detections but no ground truth anywhere: npig = 0, its precision stays -1 and
/// it is left out of every mean, so mAP is class 1's alone: 1.
#[test]
fn class_with_detections_and_no_ground_truth_is_left_out() {
    let g = gt(&[1], &[1, 2], &[(1, 1, BOX, 0)]);
    let r = coco::evaluate(&g, &dets(&[(1, 1, BOX, 0.9), (1, 2, [60.0, 60.0, 20.0, 20.0], 0.8)])).unwrap();
    assert_eq!(r.per_class_ap50()[&2], -1.0);
    assert!(close(r.stats[0], 1.0));
}

/// A crowd box [0,0,100,100] and a normal one. Detections inside the crowd region match it by
/// intersection over *detection* area (400/400 = 1 and 100/100 = 1), crowd can be matched
/// repeatedly, and matches to ignored ground truth are neither true nor false positives. The
/// perfect detection of the normal box is the only counted one: AP 1. With maxDets=1 the
/// only detection considered is the top-scored (0.95, on the crowd): ignored -> AR1 = 0.
#[test]
fn crowd_boxes_absorb_detections() {
    let g = gt(&[1], &[1], &[(1, 1, [0.0, 0.0, 100.0, 100.0], 1), (1, 1, [200.0, 200.0, 50.0, 50.0], 0)]);
    let d = dets(&[
        (1, 1, [10.0, 10.0, 20.0, 20.0], 0.9),
        (1, 1, [50.0, 50.0, 10.0, 10.0], 0.95),
        (1, 1, [200.0, 200.0, 50.0, 50.0], 0.8),
    ]);
    let r = coco::evaluate(&g, &d).unwrap();
    assert!(close(r.stats[0], 1.0), "{:?}", r.stats);
    assert_eq!(r.stats[6], 0.0);
    assert!(close(r.stats[7], 1.0));
}

/// Two detections with the same score 0.5: a false positive first in the file, then a perfect
/// one. The stable sort keeps file order: tp = [0,1], fp = [1,1], recall [0,1], precision
/// [0, 0.5] -> made monotone [0.5, 0.5]; recall point 0 reads index 0 and the rest index 1:
/// AP = 0.5 at every IoU. AR1 looks at the first detection only: 0.
#[test]
fn ties_in_score_keep_file_order() {
    let g = gt(&[1], &[1], &[(1, 1, BOX, 0)]);
    let r = coco::evaluate(&g, &dets(&[(1, 1, [100.0, 100.0, 40.0, 40.0], 0.5), (1, 1, BOX, 0.5)])).unwrap();
    assert!(close(r.stats[0], 0.5) && close(r.stats[1], 0.5));
    assert_eq!(r.stats[6], 0.0);
    // The other file order finds the true positive first: precision [1, 0.5] -> AP 1.
    let r = coco::evaluate(&g, &dets(&[(1, 1, BOX, 0.5), (1, 1, [100.0, 100.0, 40.0, 40.0], 0.5)])).unwrap();
    assert!(close(r.stats[0], 1.0));
}

/// Image 2 has no ground truth. Its detection is a false positive that only hurts when it
/// outranks the true one: scores (0.9 tp, 0.8 fp) -> recall [1,1], precision [1, .5] -> AP 1;
/// scores (0.95 fp, 0.9 tp) -> recall [0,1], precision [0,.5] -> [.5,.5] -> AP 0.5. An
/// image with neither ground truth nor detections (3) changes nothing.
#[test]
fn empty_images() {
    let g = gt(&[1, 2, 3], &[1], &[(1, 1, BOX, 0)]);
    let r = coco::evaluate(&g, &dets(&[(1, 1, BOX, 0.9), (2, 1, BOX, 0.8)])).unwrap();
    assert!(close(r.stats[0], 1.0));
    let r = coco::evaluate(&g, &dets(&[(1, 1, BOX, 0.9), (2, 1, BOX, 0.95)])).unwrap();
    assert!(close(r.stats[0], 0.5));
    // No detections at all: every class with ground truth has AP 0.
    let r = coco::evaluate(&g, &[]).unwrap();
    assert_eq!(r.stats[0], 0.0);
}

/// g1 = [0,0,10,10], g2 = [2,0,10,10]. d1 = g1 (score .9) takes g1 (IoU 1 vs 80/120).
/// d2 = [0.5,0,10,10] (score .8) is best with g1 (95/105 = 0.905), which is taken, so it
/// falls back to g2 with IoU 85/115 = 0.739: a true positive at thresholds .50–.70 (5 of 10)
/// and a false positive at .75–.95.
/// AP at .50–.70: recall [.5, 1], precision [1, 1] -> 1.
/// AP at .75–.95: recall [.5, .5], precision [1, .5] -> [1, .5]; recall points 0…0.50
/// (51 of 101) read index 0 (precision 1), the rest fall past the end (0) -> 51/101.
/// AP = (5·1 + 5·51/101)/10 = 0.752475…, AP50 = 1, AP75 = 51/101.
/// AR100 = (5·1 + 5·0.5)/10 = 0.75; AR1 = 0.5 (d1 alone recalls one of two).
/// All boxes have area 100 < 32²: "small" equals "all".
#[test]
fn detection_whose_best_ground_truth_is_taken_falls_back() {
    let g = gt(&[1], &[1], &[(1, 1, [0.0, 0.0, 10.0, 10.0], 0), (1, 1, [2.0, 0.0, 10.0, 10.0], 0)]);
    let r =
        coco::evaluate(&g, &dets(&[(1, 1, [0.0, 0.0, 10.0, 10.0], 0.9), (1, 1, [0.5, 0.0, 10.0, 10.0], 0.8)])).unwrap();
    let ap75 = 51.0 / 101.0;
    assert!(close(r.stats[0], (5.0 + 5.0 * ap75) / 10.0), "{:?}", r.stats);
    assert!(close(r.stats[1], 1.0));
    assert!(close(r.stats[2], ap75));
    assert!(close(r.stats[3], r.stats[0]));
    assert_eq!((r.stats[4], r.stats[5]), (-1.0, -1.0));
    assert!(close(r.stats[6], 0.5) && close(r.stats[8], 0.75));
}

/// Two boxes in one image, both found: with maxDets = 1 only the top detection counts
/// (AR1 = 0.5), with 10 both (AR10 = 1).
#[test]
fn max_dets_limits_recall() {
    let g2 = [100.0, 100.0, 40.0, 40.0];
    let g = gt(&[1], &[1], &[(1, 1, BOX, 0), (1, 1, g2, 0)]);
    let r = coco::evaluate(&g, &dets(&[(1, 1, BOX, 0.9), (1, 1, g2, 0.8)])).unwrap();
    assert_eq!(r.stats[6], 0.5);
    assert_eq!(r.stats[7], 1.0);
}

#[test]
fn thresholds_are_numpy_linspace() {
    let t = coco::iou_thresholds();
    assert_eq!(t[0], 0.5);
    assert_eq!(t[5], 0.75); // summarize() finds AP75 by equality, as numpy does
    assert_eq!(t[9], 0.95);
    let r = coco::recall_thresholds();
    assert_eq!((r[0], r[50], r[100]), (0.0, 0.5, 1.0));
}

#[test]
fn bad_files_are_refused_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gt.json");
    std::fs::write(&p, r#"{"images":[{"id":1}],"categories":[{"id":1}],"annotations":[{"id":1,"image_id":2,"category_id":1,"bbox":[0,0,1,1]}]}"#).unwrap();
    let e = coco_json::read_gt(&p).unwrap_err();
    assert!(matches!(&e, prunescope::data::DataError::Coco { source: CocoError::AnnotationImage { .. }, .. }), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("gt.json: annotations[0] (id 1): image_id 2 is not in `images`"), "{e}");
    std::fs::write(&p, "{\"images\": [}").unwrap();
    let e = coco_json::read_gt(&p).unwrap_err();
    // The parser's message is in the error's own, and kept as its source.
    let cause = std::error::Error::source(&e).expect("the json error").to_string();
    let e = e.to_string();
    assert!(e.contains("gt.json: line 1 column 13: not a valid COCO ground-truth file"), "{e}");
    assert!(e.ends_with(&cause), "{e} / {cause}");
    let d = dir.path().join("dets.json");
    std::fs::write(&d, r#"[{"image_id":1,"category_id":1,"bbox":[0,0,1],"score":0.5}]"#).unwrap();
    let e = coco_json::read_detections(&d).unwrap_err().to_string();
    assert!(e.contains("dets.json: line 1 column"), "{e}");
    let e = coco_json::read_detections(&dir.path().join("absent.json")).unwrap_err().to_string();
    assert!(e.contains("absent.json: cannot read the COCO results file: "), "{e}");
    // Values that are not finite: the json parser reads no NaN, the check is for callers
    // building detections themselves.
    let e = coco::check_detections(&dets(&[(1, 1, [0.0, 0.0, f64::NAN, 1.0], 0.5)]), "mine").unwrap_err().to_string();
    assert!(e.starts_with("mine: [0]: bbox [0.0, 0.0, NaN, 1.0] and score 0.5 must be finite numbers"), "{e}");
    // Results for an image the ground truth does not have.
    let g = gt(&[1], &[1], &[]);
    let e = coco::evaluate(&g, &dets(&[(7, 1, BOX, 0.5)])).unwrap_err();
    assert_eq!(e, CocoError::UnknownImage { index: 0, image_id: 7 });
    assert!(e.to_string().contains("image_id 7 which is not in the ground truth images"), "{e}");
}
