//! End-to-end evaluation on YOLO-format datasets the tests draw themselves: real image
//! files, labels, letterboxing, batching, NMS, mapping back and every metric.
//!
//! Predictions come from `ColourDetector`, a predictor that finds the solid rectangles drawn
//! in each class colour in the letterboxed batch and reports them with score 1, so the
//! pipeline is exercised with perfect (or deliberately imperfect) predictions.

mod common;

use prunescope::data::{DetectionDataset, OnBad};
use prunescope::eval::{self, EvalConfig, Predictor};
use prunescope::model::ForwardError;
use std::path::Path;
use tch::{Device, Kind, Tensor};

const COLOURS: [[u8; 3]; 2] = [[220, 30, 30], [30, 200, 30]];
const BACKGROUND: [u8; 3] = [60, 60, 60];
const SIZE: u32 = 128;

/// (class, x, y, w, h) in pixels.
type Obj = (usize, u32, u32, u32, u32);

struct Img {
    w: u32,
    h: u32,
    drawn: Vec<Obj>,
    /// None: no label file at all.
    labelled: Option<Vec<Obj>>,
}

fn write_dataset(dir: &Path, images: &[Img]) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("images/val")).unwrap();
    std::fs::create_dir_all(dir.join("labels/val")).unwrap();
    for (i, im) in images.iter().enumerate() {
        let mut img = image::RgbImage::from_pixel(im.w, im.h, image::Rgb(BACKGROUND));
        for &(c, x, y, w, h) in &im.drawn {
            for yy in y..y + h {
                for xx in x..x + w {
                    img.put_pixel(xx, yy, image::Rgb(COLOURS[c]));
                }
            }
        }
        img.save(dir.join(format!("images/val/img{i}.png"))).unwrap();
        if let Some(labels) = &im.labelled {
            let text: String = labels
                .iter()
                .map(|&(c, x, y, w, h)| {
                    let (iw, ih) = (im.w as f64, im.h as f64);
                    format!(
                        "{c} {} {} {} {}\n",
                        (x as f64 + w as f64 / 2.0) / iw,
                        (y as f64 + h as f64 / 2.0) / ih,
                        w as f64 / iw,
                        h as f64 / ih
                    )
                })
                .collect();
            std::fs::write(dir.join(format!("labels/val/img{i}.txt")), text).unwrap();
        }
    }
    let yaml = dir.join("data.yaml");
    std::fs::write(&yaml, "path: .\nval: images/val\nnames:\n  0: red\n  1: green\n").unwrap();
    yaml
}

/// Finds 4-connected regions of each class colour and reports their bounding boxes.
struct ColourDetector;

impl Predictor for ColourDetector {
    fn predict(&self, batch: &Tensor) -> Result<Tensor, ForwardError> {
        let size = batch.size();
        let (n, s) = (size[0] as usize, size[2] as usize);
        let data: Vec<f32> = Vec::<f32>::try_from(batch.flatten(0, -1)).unwrap();
        let mut all: Vec<Vec<[f32; 7]>> = Vec::new();
        for b in 0..n {
            let px = |c: usize, y: usize, x: usize| data[((b * 3 + c) * s + y) * s + x];
            let mut rows = Vec::new();
            for (class, col) in COLOURS.iter().enumerate() {
                let is = |y: usize, x: usize| (0..3).all(|c| (px(c, y, x) - col[c] as f32 / 255.0).abs() < 1e-3);
                let mut seen = vec![false; s * s];
                for y0 in 0..s {
                    for x0 in 0..s {
                        if seen[y0 * s + x0] || !is(y0, x0) {
                            continue;
                        }
                        let (mut x1, mut y1, mut x2, mut y2) = (x0, y0, x0, y0);
                        let mut stack = vec![(y0, x0)];
                        seen[y0 * s + x0] = true;
                        while let Some((y, x)) = stack.pop() {
                            (x1, y1, x2, y2) = (x1.min(x), y1.min(y), x2.max(x), y2.max(y));
                            let mut push = |yy: usize, xx: usize| {
                                if !seen[yy * s + xx] && is(yy, xx) {
                                    seen[yy * s + xx] = true;
                                    stack.push((yy, xx));
                                }
                            };
                            if x > 0 {
                                push(y, x - 1)
                            }
                            if x + 1 < s {
                                push(y, x + 1)
                            }
                            if y > 0 {
                                push(y - 1, x)
                            }
                            if y + 1 < s {
                                push(y + 1, x)
                            }
                        }
                        let (w, h) = ((x2 + 1 - x1) as f32, (y2 + 1 - y1) as f32);
                        let mut row = [x1 as f32 + w / 2.0, y1 as f32 + h / 2.0, w, h, 1.0, 0.0, 0.0];
                        row[5 + class] = 1.0;
                        rows.push(row);
                    }
                }
            }
            all.push(rows);
        }
        let m = all.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
        let mut flat = vec![0f32; n * m * 7];
        for (b, rows) in all.iter().enumerate() {
            for (r, row) in rows.iter().enumerate() {
                flat[(b * m + r) * 7..(b * m + r + 1) * 7].copy_from_slice(row);
            }
        }
        Ok(Tensor::from_slice(&flat).view([n as i64, m as i64, 7]).to_kind(Kind::Float))
    }

    fn device(&self) -> Device {
        Device::Cpu
    }
}

fn config() -> EvalConfig {
    EvalConfig { img_size: SIZE, batch: 2, ..Default::default() }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn perfect_predictions_give_map_one() {
    let dir = tempfile::tempdir().unwrap();
    let objs0 = vec![(0, 10, 12, 30, 20), (1, 60, 70, 40, 41)];
    let objs1 = vec![(1, 5, 5, 100, 50)]; // 128x96: letterbox pads 16 px top and bottom
    let objs2 = vec![(0, 3, 90, 20, 30), (0, 50, 10, 8, 9)]; // 96x128: padded left/right
    let images = [
        Img { w: 128, h: 128, drawn: objs0.clone(), labelled: Some(objs0) },
        Img { w: 128, h: 96, drawn: objs1.clone(), labelled: Some(objs1) },
        Img { w: 96, h: 128, drawn: objs2.clone(), labelled: Some(objs2) },
        Img { w: 128, h: 128, drawn: vec![], labelled: None }, // background, no label file
        Img { w: 100, h: 60, drawn: vec![], labelled: Some(vec![]) },
    ];
    let yaml = write_dataset(dir.path(), &images);
    let ds = DetectionDataset::open(&yaml, None, OnBad::Skip).unwrap();
    assert_eq!(
        (ds.samples.len(), ds.unlabelled, ds.names.clone()),
        (5, 1, vec!["red".to_string(), "green".to_string()])
    );
    let r = eval::evaluate(&ColourDetector, &ds, &config(), &mut |_, _| true).unwrap();
    assert_eq!(r.images, 5);
    // Every stat with ground truth is 1 (precision 1/(1+eps) per pycocotools); there are
    // small (< 32²) and medium objects but no large ones (> 96²).
    // AR with maxDets=1: image 2 holds two red objects, so red recalls 2 of its 3 and
    // green 1 of 1: (2/3 + 1)/2.
    for (i, v) in r.coco.iter().enumerate() {
        if i == 5 || i == 11 {
            assert_eq!(*v, -1.0, "stat {i}");
        } else if i == 6 {
            assert!(close(*v, (2.0 / 3.0 + 1.0) / 2.0), "stat {i}: {v}");
        } else {
            assert!(close(*v, 1.0), "stat {i}: {v}");
        }
    }
    assert!(close(r.voc_map50, 1.0));
    assert_eq!((r.precision, r.recall), (1.0, 1.0));
    // Ultralytics' convention tops out at 0.995 for perfect detections: the envelope is 1 at
    // recall 0…0.99 and 0 at recall 1 (no point has a larger recall), so the last of the 100
    // trapezoids is (1 + 0)/2 · 0.01: 0.99 + 0.005.
    assert!((r.ultralytics.map50 - 0.995).abs() < 1e-12, "{}", r.ultralytics.map50);
    assert!((r.ultralytics.map - 0.995).abs() < 1e-12 && (r.ultralytics.p, r.ultralytics.r) == (1.0, 1.0));
    assert_eq!(r.confusion.counts, vec![vec![3, 0, 0], vec![0, 2, 0], vec![0, 0, 0]]);
    // Boxes came back to original pixels: the green box of the 128x96 image.
    let d = r.detections.iter().find(|d| d.image_id == 1).unwrap();
    assert_eq!(d.bbox, [5.0, 5.0, 100.0, 50.0]);
}

/// Image 0: a red object, drawn and labelled (found). Image 1: a green object (found) and a
/// red one drawn but not labelled (a false positive). Image 2: a red object labelled but
/// not drawn (missed). All scores are 1, so the ties are broken by image order.
/// COCO, class red: 2 objects; detections in order tp (img 0), fp (img 1): recall [.5,.5],
/// precision [1, .5] -> monotone [1, .5]; recall points 0…0.50 (51 of 101) read 1, the rest
/// 0: AP = 51/101 at every IoU (boxes are exact). Class green: AP 1.
/// mAP@0.5 = mAP@0.5:0.95 = (51/101 + 1)/2 = 0.752475…
/// VOC (all-point): red: mrec [0,.5,.5,1], envelope [1,1,.5,0] -> 0.5·1 = 0.5; green 1; mAP 0.75.
/// P/R at 0.25: red 1 tp 1 fp of 2 objects -> .5/.5; green 1/1; means .75/.75.
/// Confusion (rows predicted, columns true, last background): red-red 1, green-green 1,
/// red predicted on background 1, a red object missed (background row) 1.
#[test]
fn hand_derived_case() {
    let dir = tempfile::tempdir().unwrap();
    let a = (0, 10, 10, 30, 30);
    let b = (1, 70, 20, 40, 30);
    let c = (0, 10, 70, 25, 25);
    let d = (0, 60, 60, 30, 30);
    let images = [
        Img { w: 128, h: 128, drawn: vec![a], labelled: Some(vec![a]) },
        Img { w: 128, h: 128, drawn: vec![b, c], labelled: Some(vec![b]) },
        Img { w: 128, h: 128, drawn: vec![], labelled: Some(vec![d]) },
    ];
    let yaml = write_dataset(dir.path(), &images);
    let ds = DetectionDataset::open(&yaml, None, OnBad::Skip).unwrap();
    let r = eval::evaluate(&ColourDetector, &ds, &config(), &mut |_, _| true).unwrap();
    let map = (51.0 / 101.0 + 1.0) / 2.0;
    assert!(close(r.map50, map) && close(r.map, map), "{} {}", r.map50, r.map);
    assert!(close(r.classes[0].ap50, 51.0 / 101.0) && close(r.classes[1].ap50, 1.0));
    assert!(close(r.voc_map50, 0.75) && close(r.classes[0].voc_ap50, 0.5));
    assert_eq!((r.classes[0].precision, r.classes[0].recall), (0.5, 0.5));
    assert_eq!((r.precision, r.recall), (0.75, 0.75));
    assert_eq!(r.confusion.counts, vec![vec![1, 0, 1], vec![0, 1, 0], vec![1, 0, 0]]);
}

#[test]
fn bad_labels_are_skipped_and_counted_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = (0, 10, 10, 30, 30);
    let images = [
        Img { w: 128, h: 128, drawn: vec![a], labelled: Some(vec![a]) },
        Img { w: 128, h: 128, drawn: vec![a], labelled: Some(vec![a]) },
        Img { w: 128, h: 128, drawn: vec![a], labelled: Some(vec![a]) },
    ];
    let yaml = write_dataset(dir.path(), &images);
    std::fs::write(dir.path().join("labels/val/img1.txt"), "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n").unwrap();
    std::fs::write(dir.path().join("images/val/img2.png"), b"not a png").unwrap();
    let ds = DetectionDataset::open(&yaml, None, OnBad::Skip).unwrap();
    assert_eq!(ds.samples.len(), 2);
    assert_eq!(ds.skipped.len(), 1);
    assert!(ds.skipped.skipped[0].to_string().ends_with("img1.txt:2: unknown class id 7: expected 0..1 (2 classes)"));
    let r = eval::evaluate(&ColourDetector, &ds, &config(), &mut |_, _| true).unwrap();
    // img2 cannot be decoded: skipped at decode time, counted with the label skip.
    assert_eq!((r.images, r.skipped_images), (1, 2));
    assert!(r.skipped.summary(5).contains("cannot decode the image"), "{}", r.skipped.summary(5));
    assert!(close(r.map50, 1.0));
    // Strict mode refuses the first bad label with file and line.
    let e = DetectionDataset::open(&yaml, None, OnBad::Error).unwrap_err().to_string();
    assert!(e.ends_with("labels/val/img1.txt:2: unknown class id 7: expected 0..1 (2 classes)"), "{e}");
}

#[test]
fn dataset_sources_agree() {
    let dir = tempfile::tempdir().unwrap();
    let a = (0, 10, 10, 30, 30);
    let images = [
        Img { w: 128, h: 128, drawn: vec![a], labelled: Some(vec![a]) },
        Img { w: 64, h: 32, drawn: vec![], labelled: None },
    ];
    let yaml = write_dataset(dir.path(), &images);
    let from_yaml = DetectionDataset::open(&yaml, None, OnBad::Error).unwrap();
    // A list file and a Darknet .data pointing at it.
    let list = dir.path().join("val.txt");
    std::fs::write(&list, "images/val/img0.png\nimages/val/img1.png\n").unwrap();
    std::fs::write(dir.path().join("names.txt"), "red\ngreen\n").unwrap();
    let data = dir.path().join("shapes.data");
    std::fs::write(&data, "classes = 2\nvalid = val.txt\nnames = names.txt\n").unwrap();
    let from_data = DetectionDataset::open(&data, None, OnBad::Error).unwrap();
    let from_list = DetectionDataset::open(&list, Some(2), OnBad::Error).unwrap();
    let from_folder = DetectionDataset::open(dir.path(), Some(2), OnBad::Error).unwrap();
    for ds in [&from_data, &from_list, &from_folder] {
        assert_eq!(ds.samples.len(), 2);
        assert_eq!(ds.samples[0].boxes, from_yaml.samples[0].boxes);
        assert!(ds.samples[1].boxes.is_empty());
    }
    assert_eq!(from_data.names, vec!["red", "green"]);
    assert_eq!(from_list.names, vec!["class0", "class1"]);
    // Errors name the file and what was expected.
    std::fs::write(&data, "classes = 3\nvalid = val.txt\nnames = names.txt\n").unwrap();
    let e = DetectionDataset::open(&data, None, OnBad::Error).unwrap_err().to_string();
    assert!(e.contains("shapes.data: `classes=3` but the names file lists 2 names"), "{e}");
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "path: .\nnames: [a, b]\n").unwrap();
    let e = DetectionDataset::open(&bad_yaml, None, OnBad::Error).unwrap_err().to_string();
    assert!(e.contains("bad.yaml: missing `val`"), "{e}");
    let e = DetectionDataset::open(&dir.path().join("nope.yaml"), None, OnBad::Error).unwrap_err().to_string();
    assert!(e.contains("nope.yaml: not found"), "{e}");
}

/// The eval command on a real Darknet model (parity.cfg, one class) and a drawn dataset:
/// it runs, prints the report, and its saved detections re-evaluate to the same mAP.
#[test]
fn eval_command_runs_a_real_model() {
    let dir = tempfile::tempdir().unwrap();
    let a = (0, 10, 10, 30, 30);
    let images = [
        Img { w: 128, h: 128, drawn: vec![a], labelled: Some(vec![a]) },
        Img { w: 120, h: 80, drawn: vec![], labelled: Some(vec![]) },
    ];
    let yaml = write_dataset(dir.path(), &images);
    std::fs::write(&yaml, "path: .\nval: images/val\nnames: [red]\n").unwrap();
    let dets = dir.path().join("dets.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"))
        .args(["eval", "--cfg"])
        .arg(common::darknet("parity.cfg"))
        .arg("--weights")
        .arg(common::darknet("parity.weights"))
        .arg("--data")
        .arg(&yaml)
        .arg("--save-dets")
        .arg(&dets)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["images"], 2);
    assert_eq!(report["classes"][0]["objects"], 1);
    let saved: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&dets).unwrap()).unwrap();
    assert!(saved.len() <= 600, "at most 300 detections per image");
    assert!(!saved.is_empty(), "a random model still produces candidates above conf 0.001");
}

#[test]
fn classification_folders() {
    use prunescope::data::ClassificationDataset;
    let dir = tempfile::tempdir().unwrap();
    for (class, n) in [("cat", 2), ("dog", 1)] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..n {
            image::RgbImage::new(4, 4).save(dir.path().join(format!("{class}/{i}.png"))).unwrap();
        }
    }
    std::fs::write(dir.path().join("dog/notes.txt"), "not an image").unwrap();
    let ds = ClassificationDataset::open(dir.path()).unwrap();
    assert_eq!(ds.names, vec!["cat", "dog"]);
    assert_eq!(ds.samples.iter().map(|s| s.1).collect::<Vec<_>>(), vec![0, 0, 1]);
    let e = ClassificationDataset::open(&dir.path().join("cat")).unwrap_err().to_string();
    assert!(e.contains("expected one sub-folder per class, found none"), "{e}");
}

/// A COCO json dataset (with a crowd region) evaluates against the json's own annotations:
/// the crowd box absorbs the detection drawn inside it, so the result is still perfect.
#[test]
fn coco_json_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let a = (0, 10, 10, 30, 30);
    let b = (1, 70, 70, 20, 20);
    let images = [
        Img { w: 128, h: 128, drawn: vec![a, b], labelled: None },
        Img { w: 128, h: 96, drawn: vec![b], labelled: None },
    ];
    write_dataset(dir.path(), &images);
    let json = serde_json::json!({
        "images": [{"id": 7, "file_name": "images/val/img0.png"}, {"id": 9, "file_name": "images/val/img1.png"}],
        "categories": [{"id": 3, "name": "red"}, {"id": 5, "name": "green"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 5, "bbox": [60, 60, 50, 50], "area": 2500, "iscrowd": 1},
            {"id": 3, "image_id": 9, "category_id": 5, "bbox": [70, 70, 20, 20], "area": 400, "iscrowd": 0}
        ]
    });
    let path = dir.path().join("instances.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let ds = DetectionDataset::open(&path, None, OnBad::Error).unwrap();
    assert_eq!(ds.names, vec!["red", "green"]);
    let r = eval::evaluate(&ColourDetector, &ds, &config(), &mut |_, _| true).unwrap();
    assert!(close(r.map50, 1.0) && close(r.map, 1.0), "{:?}", r.coco);
    // Detections carry the json's image and category ids.
    let ids: Vec<(i64, i64)> = r.detections.iter().map(|d| (d.image_id, d.category_id)).collect();
    assert_eq!(ids, vec![(7, 3), (7, 5), (9, 5)]);
    // Crowd is not counted as an object to find.
    assert_eq!(r.classes[1].objects, 1);
}

/// `eval --preds` on tests/fixtures/pose (predictions and the figures Ultralytics 8.4.190
/// computed from them, see its README): the `box` section to 1e-6, through the library and
/// the command's JSON.
#[test]
fn saved_predictions_score_like_ultralytics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pose");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let want = &expected["box"];
    let close = |got: f64, key: &str| {
        let w = want[key].as_f64().unwrap();
        assert!((got - w).abs() <= 1e-6, "{key}: {got} vs Ultralytics' {w}");
    };
    let ds = DetectionDataset::open(&dir.join("data.yaml"), None, OnBad::Error).unwrap();
    assert_eq!(ds.samples.len(), 40);
    let preds = eval::preds::read(&dir.join("preds.json"), ds.num_classes()).unwrap();
    let m = eval::preds::score_ultralytics(&ds, &preds, &dir.join("preds.json")).unwrap();
    close(m.p, "P");
    close(m.r, "R");
    close(m.map50, "mAP50");
    close(m.map, "mAP50-95");
    assert_eq!(m.per_class_ap50.len(), 2);
    for (c, ap) in &m.per_class_ap50 {
        let w = want["per_class_ap50"][c].as_f64().unwrap();
        assert!((ap - w).abs() <= 1e-6, "class {c}: {ap} vs {w}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"))
        .args(["eval", "--json", "--data"])
        .arg(dir.join("data.yaml"))
        .arg("--preds")
        .arg(dir.join("preds.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["P", "R", "mAP50", "mAP50-95"] {
        close(json["box"][key].as_f64().unwrap(), key);
    }
    // A prediction for an image the dataset does not have, or a class it does not have, is
    // refused with the file and the entry named.
    let d = tempfile::tempdir().unwrap();
    for (bad, says) in [
        (r#"{"img999": []}"#, "\"img999\": no image of that name"),
        (r#"{"img000": [{"class": 7, "score": 0.5, "box_xywh": [1, 2, 3, 4]}]}"#, "\"img000\"[0].class"),
        (r#"{"img000": [{"class": 0, "score": 0.5, "box_xywh": [1, 2, 3]}]}"#, "\"img000\"[0].box_xywh"),
    ] {
        let f = d.path().join("p.json");
        std::fs::write(&f, bad).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"))
            .args(["eval", "--data"])
            .arg(dir.join("data.yaml"))
            .arg("--preds")
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says) && err.contains("p.json"), "{bad}: {err}");
    }
}

/// Ultralytics' validation letterbox (tests/fixtures/letterbox, made by
/// scripts/make_letterbox_fixture.py with Ultralytics 8.3.253 and OpenCV 5.1.0: `load_image`'s
/// INTER_LINEAR resize of the long side with sizes rounded up, then `LetterBox(scaleup=False)`)
/// reproduced bit for bit on PNG pictures that shrink, enlarge, keep their size and halve; the
/// geometry is what its validator maps boxes back through (the height ratio, the padding).
#[test]
fn ultralytics_letterbox_equals_opencv_and_ultralytics() {
    use prunescope::data::letterbox::letterbox_ultralytics;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/letterbox");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let images = info["images"].as_object().unwrap();
    assert_eq!(images.len(), 10);
    for (name, meta) in images {
        let img = prunescope::data::load_rgb(&dir.join(format!("{name}.png"))).unwrap();
        let lb = letterbox_ultralytics(&img, 160).unwrap();
        let view = st.tensor(&format!("img.{name}")).unwrap();
        let want: Vec<f32> =
            view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(want.len(), lb.data.len(), "{name}");
        let differ = lb.data.iter().zip(&want).filter(|(a, b)| **a != **b / 255.0).count();
        assert_eq!(differ, 0, "{name}: {differ} values differ from Ultralytics'");
        let pad = (meta["pad"][0].as_u64().unwrap() as u32, meta["pad"][1].as_u64().unwrap() as u32);
        assert_eq!(lb.pad, pad, "{name}");
        assert_eq!(lb.ratio, meta["ratio"][0].as_f64().unwrap(), "{name}");
    }
}
