//! The confusion matrices of a 20-class comparison stay readable (egui_kittest): every full
//! class name is on both axes of every matrix, the axes carry their titles, the difference
//! matrix has its better/worse legend, and the hovered cell is reported by its full names.

mod common;

use common::ui::{harness_of, opened};
use egui_kittest::kittest::Queryable;
use prunescope::eval::compare::{Comparison, ModelReport};
use prunescope::eval::ClassReport;
use prunescope::gui::app::Tab;
use prunescope::gui::worker::CompareOutcome;
use prunescope::gui::App;
use prunescope::metrics::confusion::ConfusionMatrix;
use std::path::PathBuf;

const NAMES: [&str; 20] = [
    "water activities",
    "home activities",
    "conditioning exercise",
    "bicycling",
    "dancing",
    "fishing and hunting",
    "home repair",
    "inactivity quiet/light",
    "lawn and garden",
    "miscellaneous",
    "music playing",
    "occupation",
    "running",
    "self care",
    "sports",
    "transportation",
    "volunteer activities",
    "walking",
    "winter activities",
    "religious activities",
];

/// A model whose confusion matrix (predicted × true, background last) has a strong diagonal,
/// a few confusions, false detections and misses; `pruned` loses some of each class's correct
/// detections to confusions and misses.
fn report(label: &str, pruned: bool) -> ModelReport {
    let n = NAMES.len() + 1;
    let mut confusion = ConfusionMatrix::new(n);
    for (t, _) in NAMES.iter().enumerate() {
        let loss = if pruned { (t % 4) as u64 } else { 0 };
        confusion.counts[t][t] = 30 + (t as u64 * 7) % 25 - loss;
        confusion.counts[(t + 1) % NAMES.len()][t] = 2 + (t % 3) as u64 + loss / 2;
        confusion.counts[n - 1][t] = 1 + (t % 5) as u64 + loss - loss / 2;
        confusion.counts[t][n - 1] = (t % 4) as u64 + u64::from(pruned && t % 3 == 0);
        // A few classes gain from fine-tuning after pruning: more found, fewer missed.
        if pruned && t % 5 == 4 {
            confusion.counts[t][t] += 5;
            confusion.counts[n - 1][t] -= 1;
        }
    }
    let classes = NAMES
        .iter()
        .map(|name| ClassReport {
            name: name.to_string(),
            objects: 40,
            ap50: 0.6,
            ap: 0.4,
            voc_ap50: 0.6,
            precision: 0.7,
            recall: 0.6,
        })
        .collect();
    ModelReport {
        label: label.into(),
        weights: PathBuf::from(format!("{label}.weights")),
        file_bytes: 1_000_000,
        compressed_bytes: 900_000,
        compression_ratio: 1.1,
        params: 250_000,
        nonzero_params: if pruned { 150_000 } else { 250_000 },
        effective_params: if pruned { 140_000 } else { 250_000 },
        macs: 5_000_000,
        effective_macs: if pruned { 3_000_000 } else { 5_000_000 },
        map50: if pruned { 0.55 } else { 0.6 },
        map: if pruned { 0.35 } else { 0.4 },
        precision: 0.7,
        recall: 0.6,
        ultralytics_map50: Some(if pruned { 0.56 } else { 0.61 }),
        ultralytics_map: Some(if pruned { 0.36 } else { 0.41 }),
        top1: None,
        top5: None,
        classes,
        confusion,
        latency_ms: None,
        device: "cpu".into(),
        layers: Vec::new(),
    }
}

fn comparison() -> Comparison {
    Comparison {
        format: "prunescope-compare-1",
        cfg: PathBuf::from("activities.cfg"),
        data: PathBuf::from("activities.yaml"),
        images: 500,
        img_size: 416,
        task: "detect",
        preprocess: "letterbox",
        names: NAMES.iter().map(|s| s.to_string()).collect(),
        models: vec![report("origin", false), report("pruned", true)],
    }
}

#[test]
fn a_20_class_confusion_matrix_shows_full_names_and_axis_titles() {
    let mut h = harness_of(App::new(None, None, None));
    // The bundled sample opens first; let it settle so that nothing arrives mid-snapshot.
    opened(&mut h);
    {
        let app = h.state_mut();
        app.compare.outcome = Some(CompareOutcome {
            comparison: comparison(),
            dir: PathBuf::from("report"),
            pruned: PathBuf::new(),
            plan: None,
        });
        app.tab = Tab::Compare;
    }
    h.run_steps(3);

    // Two count matrices and their difference, each with every class on both axes.
    let matrices = ["origin", "pruned", "pruned − origin"];
    h.get_by_label("pruned − origin");
    for name in NAMES.iter().copied().chain(["background"]) {
        let found = h.query_all_by_label(name).count();
        assert!(found >= 2 * matrices.len(), "{name:?}: {found} labels, want a row and a column per matrix");
    }
    for title in ["predicted class", "true class"] {
        assert_eq!(h.query_all_by_label(title).count(), matrices.len(), "{title}");
    }
    h.get_by_label("better");
    h.get_by_label("worse");

    // One 21-class matrix is about as tall as the window at 1280×800: one image of the top
    // (titles, column names), one of the bottom of the difference (its legend).
    h.query_all_by_label("true class").next().unwrap().scroll_to_me();
    h.run_steps(3);
    h.snapshot("confusion-20-classes");

    // Hovering a cell names its row and column in full, with every model's count.
    let labels: Vec<egui::Rect> = h.query_all_by_label("water activities").map(|n| n.rect()).collect();
    let row = labels.iter().find(|r| r.width() > r.height()).unwrap();
    let labels: Vec<egui::Rect> = h.query_all_by_label("dancing").map(|n| n.rect()).collect();
    let col = labels.iter().find(|r| r.height() > r.width()).unwrap();
    h.hover_at(egui::pos2(col.center().x, row.center().y));
    h.run_steps(3);
    h.get_by_label_contains("predicted water activities / true dancing — origin: ");

    h.get_by_label("better").scroll_to_me();
    h.run_steps(3);
    // The difference is the last matrix: its cell is reported better or worse, not just by sign.
    let labels: Vec<egui::Rect> = h.query_all_by_label("dancing").map(|n| n.rect()).collect();
    let row = labels.iter().rfind(|r| r.width() > r.height()).unwrap();
    let col = labels.iter().rfind(|r| r.height() > r.width()).unwrap();
    h.hover_at(egui::pos2(col.center().x, row.center().y));
    h.run_steps(3);
    h.get_by_label("predicted dancing / true dancing — origin: 33, pruned: 38, change +5 (better)");
    h.snapshot("confusion-20-classes-difference");
}
