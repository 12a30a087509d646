//! COCO bbox evaluation, a faithful port of pycocotools' `COCOeval` (iouType "bbox").
//!
//! Every step mirrors the reference so results agree to floating-point noise: crowd ground
//! truth is ignored and matched by intersection over detection area, detections are sorted
//! by score with a stable sort (ties keep file order), the greedy matching falls back to
//! lower-IoU unmatched ground truth, precision is made monotone and sampled at 101 recall
//! points with `searchsorted(side="left")`, and the 12 summary stats average the entries that
//! are not -1.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// A COCO value that fails a check: names the file (the label the caller gave), the entry
/// and what was expected. Reading and parsing the files is `data::coco_json`'s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CocoError {
    /// A ground-truth annotation whose image is not in `images`.
    #[error("{file}: annotations[{index}] (id {id}): image_id {image_id} is not in `images`")]
    AnnotationImage { file: String, index: usize, id: i64, image_id: i64 },
    /// A ground-truth annotation whose category is not in `categories`.
    #[error("{file}: annotations[{index}] (id {id}): category_id {category_id} is not in `categories`")]
    AnnotationCategory { file: String, index: usize, id: i64, category_id: i64 },
    /// A ground-truth box with a negative size or a value that is not finite.
    #[error("{file}: annotations[{index}] (id {id}): bbox {bbox:?}: expected finite [x, y, w, h] with w, h >= 0")]
    AnnotationBox { file: String, index: usize, id: i64, bbox: [f64; 4] },
    /// A detection whose box or score is not a finite number.
    #[error("{file}: [{index}]: bbox {bbox:?} and score {score} must be finite numbers")]
    DetectionNotFinite { file: String, index: usize, bbox: [f64; 4], score: f64 },
    /// A detection for an image the ground truth does not have (pycocotools asserts).
    #[error("detection [{index}] for image_id {image_id} which is not in the ground truth images")]
    UnknownImage { index: usize, image_id: i64 },
}

/// A ground-truth annotation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GtAnnotation {
    pub id: i64,
    pub image_id: i64,
    pub category_id: i64,
    /// x, y, w, h in pixels.
    pub bbox: [f64; 4],
    /// Segment area as stored; COCOeval uses it (not w·h) for the area ranges.
    #[serde(default)]
    pub area: Option<f64>,
    #[serde(default)]
    pub iscrowd: u8,
}

impl GtAnnotation {
    fn area(&self) -> f64 {
        self.area.unwrap_or(self.bbox[2] * self.bbox[3])
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ImageInfo {
    pub id: i64,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Category {
    pub id: i64,
    #[serde(default)]
    pub name: String,
}

/// A COCO ground-truth file (the parts bbox evaluation needs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CocoGt {
    pub images: Vec<ImageInfo>,
    #[serde(default)]
    pub annotations: Vec<GtAnnotation>,
    pub categories: Vec<Category>,
}

/// One detection of a COCO results file.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Detection {
    pub image_id: i64,
    pub category_id: i64,
    /// x, y, w, h in pixels.
    pub bbox: [f64; 4],
    pub score: f64,
}

impl CocoGt {
    /// Refuses annotations that point at unknown images or categories, and negative sizes;
    /// `file` names the ground truth in the messages.
    pub fn check(&self, file: &str) -> Result<(), CocoError> {
        let images: std::collections::HashSet<i64> = self.images.iter().map(|i| i.id).collect();
        let cats: std::collections::HashSet<i64> = self.categories.iter().map(|c| c.id).collect();
        for (index, a) in self.annotations.iter().enumerate() {
            // The label is copied only for an error.
            let (file, id) = (|| file.to_string(), a.id);
            if !images.contains(&a.image_id) {
                return Err(CocoError::AnnotationImage { file: file(), index, id, image_id: a.image_id });
            }
            if !cats.contains(&a.category_id) {
                return Err(CocoError::AnnotationCategory { file: file(), index, id, category_id: a.category_id });
            }
            if a.bbox[2] < 0.0 || a.bbox[3] < 0.0 || a.bbox.iter().any(|v| !v.is_finite()) {
                return Err(CocoError::AnnotationBox { file: file(), index, id, bbox: a.bbox });
            }
        }
        Ok(())
    }
}

/// Refuses detections whose box or score is not a finite number; `file` names the results in
/// the messages.
pub fn check_detections(dets: &[Detection], file: &str) -> Result<(), CocoError> {
    match dets.iter().enumerate().find(|(_, d)| d.bbox.iter().any(|v| !v.is_finite()) || !d.score.is_finite()) {
        Some((index, d)) => {
            Err(CocoError::DetectionNotFinite { file: file.to_string(), index, bbox: d.bbox, score: d.score })
        }
        None => Ok(()),
    }
}

/// IoU thresholds .50:.05:.95 exactly as `np.linspace(.5, .95, 10)` computes them.
pub fn iou_thresholds() -> [f64; 10] {
    linspace::<10>(0.5, 0.95)
}

/// Recall points 0:.01:1 exactly as `np.linspace(0, 1, 101)`.
pub fn recall_thresholds() -> [f64; 101] {
    linspace::<101>(0.0, 1.0)
}

fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let step = (stop - start) / (N - 1) as f64;
    let mut out = [0.0; N];
    for (i, v) in out.iter_mut().enumerate() {
        *v = i as f64 * step + start;
    }
    out[N - 1] = stop;
    out
}

/// Area ranges all, small, medium, large.
pub const AREA_RANGES: [(f64, f64); 4] = [(0.0, 1e10), (0.0, 1024.0), (1024.0, 9216.0), (9216.0, 1e10)];
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// Detections of one (image, category) by descending score, and their IoUs with its gt.
struct Ranked {
    order: Vec<usize>,
    ious: Vec<Vec<f64>>,
}

/// Per-image, per-category matching result (pycocotools' `evaluateImg` output).
struct ImageEval {
    /// Scores of the (at most maxDets[-1]) detections, sorted descending.
    dt_scores: Vec<f64>,
    /// Per detection, per IoU threshold: FP, TP or IGNORED (layout [D][T]).
    outcome: Vec<[u8; 10]>,
    gt_ignore: Vec<bool>,
}

const FP: u8 = 0;
const TP: u8 = 1;
const IGNORED: u8 = 2;

/// The result of an evaluation.
#[derive(Debug, Clone)]
pub struct CocoEvalResult {
    /// The 12 COCOeval stats (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl).
    pub stats: [f64; 12],
    /// Category ids in evaluation order.
    pub category_ids: Vec<i64>,
    /// precision[t][r][k][a][m] flattened; -1 where undefined.
    precision: Vec<f64>,
    /// recall[t][k][a][m] flattened.
    recall: Vec<f64>,
    num_cats: usize,
}

impl CocoEvalResult {
    fn p_index(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> usize {
        (((t * 101 + r) * self.num_cats + k) * 4 + a) * 3 + m
    }

    /// Precision at IoU index `t`, recall point `r`, category index `k`, area `a`, maxDets `m`.
    pub fn precision(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        self.precision[self.p_index(t, r, k, a, m)]
    }

    pub fn recall(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        self.recall[((t * self.num_cats + k) * 4 + a) * 3 + m]
    }

    /// AP of category index `k` averaged over the IoU thresholds `ts` (area all, 100 dets);
    /// -1 when the category has no ground truth.
    pub fn class_ap(&self, k: usize, ts: &[usize]) -> f64 {
        mean_defined(ts.iter().flat_map(|&t| (0..101).map(move |r| (t, r))).map(|(t, r)| self.precision(t, r, k, 0, 2)))
    }

    /// Per category id: AP at IoU 0.5 (area all, maxDets 100).
    pub fn per_class_ap50(&self) -> BTreeMap<i64, f64> {
        self.category_ids.iter().enumerate().map(|(k, &id)| (id, self.class_ap(k, &[0]))).collect()
    }

    /// Per category id: AP at IoU .50:.95 (area all, maxDets 100).
    pub fn per_class_ap(&self) -> BTreeMap<i64, f64> {
        let all: Vec<usize> = (0..10).collect();
        self.category_ids.iter().enumerate().map(|(k, &id)| (id, self.class_ap(k, &all))).collect()
    }

    /// The summary lines pycocotools prints.
    pub fn summary(&self) -> String {
        let rows = [
            ("Average Precision", "(AP)", "0.50:0.95", "all", 100),
            ("Average Precision", "(AP)", "0.50", "all", 100),
            ("Average Precision", "(AP)", "0.75", "all", 100),
            ("Average Precision", "(AP)", "0.50:0.95", "small", 100),
            ("Average Precision", "(AP)", "0.50:0.95", "medium", 100),
            ("Average Precision", "(AP)", "0.50:0.95", "large", 100),
            ("Average Recall", "(AR)", "0.50:0.95", "all", 1),
            ("Average Recall", "(AR)", "0.50:0.95", "all", 10),
            ("Average Recall", "(AR)", "0.50:0.95", "all", 100),
            ("Average Recall", "(AR)", "0.50:0.95", "small", 100),
            ("Average Recall", "(AR)", "0.50:0.95", "medium", 100),
            ("Average Recall", "(AR)", "0.50:0.95", "large", 100),
        ];
        let mut s = String::new();
        for ((title, kind, iou, area, md), v) in rows.iter().zip(self.stats) {
            s.push_str(&format!(
                " {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={md:>3} ] = {v:0.3}\n"
            ));
        }
        s
    }
}

/// np.mean of the entries > -1, or -1 when there are none.
fn mean_defined(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values.filter(|&v| v > -1.0) {
        sum += v;
        n += 1;
    }
    if n == 0 {
        -1.0
    } else {
        sum / n as f64
    }
}

/// IoU of boxes in xywh; for crowd ground truth the union is the detection's area
/// (pycocotools' `maskUtils.iou` on boxes).
fn iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let i = w * h;
    let da = d[2] * d[3];
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// Evaluates detections against ground truth like `COCOeval(gt, dt, "bbox")` followed by
/// `evaluate()`, `accumulate()` and `summarize()`.
///
/// Detections whose image is not in the ground truth are refused (pycocotools asserts).
pub fn evaluate(gt: &CocoGt, dets: &[Detection]) -> Result<CocoEvalResult, CocoError> {
    let mut img_ids: Vec<i64> = gt.images.iter().map(|i| i.id).collect();
    img_ids.sort_unstable();
    img_ids.dedup();
    let mut cat_ids: Vec<i64> = gt.categories.iter().map(|c| c.id).collect();
    cat_ids.sort_unstable();
    cat_ids.dedup();
    let img_index: HashMap<i64, usize> = img_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let cat_index: HashMap<i64, usize> = cat_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    if let Some((index, d)) = dets.iter().enumerate().find(|(_, d)| !img_index.contains_key(&d.image_id)) {
        return Err(CocoError::UnknownImage { index, image_id: d.image_id });
    }
    let (ni, nk) = (img_ids.len(), cat_ids.len());
    // Group by (image, category); keep file order inside each group.
    let mut gts: Vec<Vec<&GtAnnotation>> = vec![Vec::new(); ni * nk];
    for a in &gt.annotations {
        if let (Some(&i), Some(&k)) = (img_index.get(&a.image_id), cat_index.get(&a.category_id)) {
            gts[i * nk + k].push(a);
        }
    }
    // Results get ids 1..=n in file order (loadRes).
    let mut dts: Vec<Vec<(i64, &Detection)>> = vec![Vec::new(); ni * nk];
    for (n, d) in dets.iter().enumerate() {
        if let Some(&k) = cat_index.get(&d.category_id) {
            dts[img_index[&d.image_id] * nk + k].push((n as i64 + 1, d));
        }
    }
    let thresholds = iou_thresholds();
    let max_det = MAX_DETS[2];
    // evals[(k * 4 + a) * ni + i]
    let mut evals: Vec<Option<ImageEval>> = Vec::with_capacity(nk * 4 * ni);
    // Per (image, category): detection order by score and the IoU matrix [det][gt].
    let mut ranked: Vec<Ranked> = Vec::with_capacity(ni * nk);
    for i in 0..ni {
        for k in 0..nk {
            let dt = &dts[i * nk + k];
            let g = &gts[i * nk + k];
            // Detections by score, descending, stable; at most maxDets[-1].
            let mut order: Vec<usize> = (0..dt.len()).collect();
            order.sort_by(|&a, &b| dt[b].1.score.total_cmp(&dt[a].1.score));
            order.truncate(max_det);
            let ious: Vec<Vec<f64>> = order
                .iter()
                .map(|&di| g.iter().map(|ga| iou(&dt[di].1.bbox, &ga.bbox, ga.iscrowd != 0)).collect())
                .collect();
            ranked.push(Ranked { order, ious });
        }
    }
    for k in 0..nk {
        for &(lo, hi) in AREA_RANGES.iter() {
            for i in 0..ni {
                let dt = &dts[i * nk + k];
                let g = &gts[i * nk + k];
                if dt.is_empty() && g.is_empty() {
                    evals.push(None);
                    continue;
                }
                let Ranked { order, ious } = &ranked[i * nk + k];
                let g_ignore_raw: Vec<bool> =
                    g.iter().map(|ga| ga.iscrowd != 0 || ga.area() < lo || ga.area() > hi).collect();
                // Ground truth with non-ignored first (stable).
                let mut gorder: Vec<usize> = (0..g.len()).collect();
                gorder.sort_by_key(|&j| g_ignore_raw[j]);
                let gt_ignore: Vec<bool> = gorder.iter().map(|&j| g_ignore_raw[j]).collect();
                let crowd: Vec<bool> = gorder.iter().map(|&j| g[j].iscrowd != 0).collect();
                let nd = order.len();
                let ng = g.len();
                // pycocotools keeps the matched gt id per (threshold, detection) and treats
                // id 0 as "unmatched"; the outcome codes below follow the same rules.
                let mut outcome = vec![[FP; 10]; nd];
                let mut gt_matched = vec![0i64; ng];
                if ng > 0 {
                    for (t, &thr) in thresholds.iter().enumerate() {
                        gt_matched.fill(0);
                        for (di, out) in outcome.iter_mut().enumerate() {
                            let mut best = thr.min(1.0 - 1e-10);
                            let mut m: Option<usize> = None;
                            for gi in 0..ng {
                                if gt_matched[gi] > 0 && !crowd[gi] {
                                    continue;
                                }
                                if let Some(mm) = m {
                                    if !gt_ignore[mm] && gt_ignore[gi] {
                                        break;
                                    }
                                }
                                let v = ious[di][gorder[gi]];
                                if v < best {
                                    continue;
                                }
                                best = v;
                                m = Some(gi);
                            }
                            if let Some(mm) = m {
                                gt_matched[mm] = dt[order[di]].0;
                                out[t] = if gt_ignore[mm] {
                                    IGNORED
                                } else if g[gorder[mm]].id != 0 {
                                    TP
                                } else {
                                    FP
                                };
                            }
                        }
                    }
                }
                // Unmatched detections outside the area range are ignored.
                for (di, out) in outcome.iter_mut().enumerate() {
                    let b = &dt[order[di]].1.bbox;
                    let area = b[2] * b[3];
                    if area < lo || area > hi {
                        for o in out.iter_mut().filter(|o| **o == FP) {
                            *o = IGNORED;
                        }
                    }
                }
                evals.push(Some(ImageEval {
                    dt_scores: order.iter().map(|&di| dt[di].1.score).collect(),
                    outcome,
                    gt_ignore,
                }));
            }
        }
    }
    Ok(accumulate(&evals, ni, cat_ids))
}

fn accumulate(evals: &[Option<ImageEval>], ni: usize, cat_ids: Vec<i64>) -> CocoEvalResult {
    let nk = cat_ids.len();
    let rec_thr = recall_thresholds();
    let (nt, nr, na, nm) = (10, 101, 4, 3);
    let mut res = CocoEvalResult {
        stats: [0.0; 12],
        category_ids: cat_ids,
        precision: vec![-1.0; nt * nr * nk * na * nm],
        recall: vec![-1.0; nt * nk * na * nm],
        num_cats: nk,
    };
    for k in 0..nk {
        // The detections of one category, concatenated in image order and stably sorted by
        // score, are the same for every area range (only their ignore flags differ), and the
        // stable sort of the first `maxDet` per image is this order filtered: sort once.
        let images: Vec<usize> = (0..ni).filter(|&i| evals[k * na * ni + i].is_some()).collect();
        let mut sorted: Vec<(f64, usize, usize)> = Vec::new();
        for (ei, &i) in images.iter().enumerate() {
            let e = evals[k * na * ni + i].as_ref().expect("filtered above");
            sorted.extend(e.dt_scores.iter().enumerate().map(|(d, &s)| (s, ei, d)));
        }
        sorted.sort_by(|x, y| y.0.total_cmp(&x.0));
        for a in 0..na {
            let es: Vec<&ImageEval> = images
                .iter()
                .map(|&i| evals[(k * na + a) * ni + i].as_ref().expect("same images for every area"))
                .collect();
            if es.is_empty() {
                continue;
            }
            let npig = es.iter().flat_map(|e| e.gt_ignore.iter()).filter(|&&g| !g).count();
            if npig == 0 {
                continue;
            }
            // Outcomes in score order, gathered once for the three maxDets.
            let outcomes: Vec<(usize, [u8; 10])> = sorted.iter().map(|&(_, ei, d)| (d, es[ei].outcome[d])).collect();
            for (m, &max_det) in MAX_DETS.iter().enumerate() {
                let nd = outcomes.iter().filter(|o| o.0 < max_det).count();
                for t in 0..nt {
                    // pycocotools builds recall and precision at every detection, makes
                    // precision monotone from the right and reads it at searchsorted(recall,
                    // r). Recall only rises at true positives, so the index found for r > 0
                    // is a true positive, and the suffix maximum of precision is reached at
                    // one: (recall, precision) at the true positives alone give the same
                    // numbers, with the same arithmetic.
                    let (mut tp, mut fp) = (0.0f64, 0.0f64);
                    let mut events: Vec<(f64, f64)> = Vec::new();
                    for (d, o) in &outcomes {
                        if *d >= max_det {
                            continue;
                        }
                        match o[t] {
                            TP => {
                                tp += 1.0;
                                events.push((tp / npig as f64, tp / (fp + tp + f64::EPSILON)));
                            }
                            FP => fp += 1.0,
                            _ => {} // ignored: neither
                        }
                    }
                    let ri = (t * nk + k) * na * nm + a * nm + m;
                    res.recall[ri] = if nd > 0 { tp / npig as f64 } else { 0.0 };
                    for i in (1..events.len()).rev() {
                        if events[i].1 > events[i - 1].1 {
                            events[i - 1].1 = events[i].1;
                        }
                    }
                    for (r, &thr) in rec_thr.iter().enumerate() {
                        // searchsorted(recall, thr, side="left"); past the end reads 0.
                        let pi = events.partition_point(|&(v, _)| v < thr);
                        let q = events.get(pi).map_or(0.0, |e| e.1);
                        let idx = res.p_index(t, r, k, a, m);
                        res.precision[idx] = q;
                    }
                }
            }
        }
    }
    res.stats = summarize(&res);
    res
}

fn summarize(r: &CocoEvalResult) -> [f64; 12] {
    let thresholds = iou_thresholds();
    let nk = r.num_cats;
    let ap = |iou: Option<f64>, a: usize, m: usize| -> f64 {
        let ts: Vec<usize> = (0..10).filter(|&t| iou.is_none_or(|v| thresholds[t] == v)).collect();
        mean_defined(ts.iter().flat_map(|&t| {
            (0..101).flat_map(move |rr| (0..nk).map(move |k| (t, rr, k))).map(|(t, rr, k)| r.precision(t, rr, k, a, m))
        }))
    };
    let ar =
        |a: usize, m: usize| -> f64 { mean_defined((0..10).flat_map(|t| (0..nk).map(move |k| r.recall(t, k, a, m)))) };
    [
        ap(None, 0, 2),
        ap(Some(0.5), 0, 2),
        ap(Some(0.75), 0, 2),
        ap(None, 1, 2),
        ap(None, 2, 2),
        ap(None, 3, 2),
        ar(0, 0),
        ar(0, 1),
        ar(0, 2),
        ar(1, 2),
        ar(2, 2),
        ar(3, 2),
    ]
}
