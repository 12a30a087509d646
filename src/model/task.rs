//! The task layer: what a net's output means, and its output as predictions in one layout
//! per task, whatever the model's format.
//! - Darknet yolo heads: `[B, rows, 5 + nc]`: cx, cy, w, h in input pixels, objectness, class
//!   scores (sigmoid applied).
//! - Ultralytics detect: `[B, 4 + nc, A]`: cx, cy, w, h in input pixels and sigmoid class
//!   scores, no objectness. Pose adds `kpt_shape` values per anchor after the scores.
//! - Classify: `[B, nc]` logits or probabilities.

use super::ir::Net;
use super::onnx::ultralytics::Ultralytics;
use tch::{Kind, Tensor};

/// What a model predicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Darknet yolo heads (objectness and class scores).
    DarknetYolo { classes: usize },
    /// Ultralytics Detect: boxes and class scores per anchor, no objectness.
    Detect { classes: usize },
    /// Ultralytics Pose: Detect plus keypoints (`kpt_shape`: count, values per keypoint).
    Pose { classes: usize, kpt_shape: [usize; 2] },
    /// One label per image.
    Classify { classes: usize },
}

/// Per-anchor detections of an Ultralytics Detect or Pose output.
pub struct Detections {
    /// `[B, A, 4]`: cx, cy, w, h in input pixels.
    pub boxes: Tensor,
    /// `[B, A, nc]`: class scores in [0, 1].
    pub scores: Tensor,
    /// `[B, A, K, D]` keypoints (x, y in input pixels, then the visibility score), for Pose.
    pub keypoints: Option<Tensor>,
}

impl Task {
    /// The task of an ONNX net from its Ultralytics metadata (or `fallback`, a task name
    /// given by the user, with `classes` from the dataset; or, for an output `[B, nc]`,
    /// classify), checked against the output shape.
    pub fn of(net: &Net, fallback: Option<&str>, classes: Option<usize>) -> Result<Task, String> {
        let meta = Ultralytics::of(&net.metadata);
        let out = net.outputs.first().map(|o| o.dims.clone()).unwrap_or_default();
        // An output `[B, nc]` can only be a classifier's: the other tasks' are per anchor.
        let by_shape = (out.len() == 2).then(|| "classify".to_string());
        let task = meta.as_ref().and_then(|m| m.task.clone()).or(fallback.map(String::from)).or(by_shape).ok_or_else(
            || format!("{}: the file does not say its task: give it (--task detect|classify)", net.path.display()),
        )?;
        let nc = meta.as_ref().and_then(|m| m.names.as_ref().map(Vec::len)).or(classes);
        let channels = out.get(1).copied().flatten().map(|c| c as usize);
        let bad = |what: String| format!("{}: {what}", net.path.display());
        match task.as_str() {
            "detect" => {
                let classes =
                    channels.map(|c| c.saturating_sub(4)).or(nc).ok_or_else(|| bad("unknown class count".into()))?;
                if nc.is_some_and(|n| n != classes) {
                    return Err(bad(format!("the output has {} class scores but {} names", classes, nc.unwrap_or(0))));
                }
                Ok(Task::Detect { classes })
            }
            "pose" => {
                let k = meta
                    .as_ref()
                    .and_then(|m| m.kpt_shape)
                    .ok_or_else(|| bad("a pose model without kpt_shape".into()))?;
                let kpt_shape = [k[0] as usize, k[1] as usize];
                let classes = nc.ok_or_else(|| bad("unknown class count".into()))?;
                if let Some(c) = channels {
                    if c != 4 + classes + kpt_shape[0] * kpt_shape[1] {
                        return Err(bad(format!(
                            "the output has {c} values per anchor; 4 + {classes} classes + {}×{} keypoints expected",
                            kpt_shape[0], kpt_shape[1]
                        )));
                    }
                }
                Ok(Task::Pose { classes, kpt_shape })
            }
            "classify" => {
                Ok(Task::Classify { classes: channels.or(nc).ok_or_else(|| bad("unknown class count".into()))? })
            }
            other => Err(bad(format!("task '{other}' is not supported (detect, pose, classify)"))),
        }
    }

    /// Splits a Detect or Pose output `[B, 4 + nc (+ K·D), A]` into boxes, scores and keypoints.
    pub fn detections(&self, output: &Tensor) -> Result<Detections, String> {
        let (classes, kpt) = match self {
            Task::Detect { classes } => (*classes as i64, None),
            Task::Pose { classes, kpt_shape } => (*classes as i64, Some([kpt_shape[0] as i64, kpt_shape[1] as i64])),
            other => return Err(format!("{other:?} has no per-anchor detections")),
        };
        let size = output.size();
        let want = 4 + classes + kpt.map(|[k, d]| k * d).unwrap_or(0);
        if size.len() != 3 || size[1] != want {
            return Err(format!("the output is {size:?}; [B, {want}, anchors] expected"));
        }
        let rows = output.transpose(1, 2);
        let boxes = rows.narrow(2, 0, 4);
        let scores = rows.narrow(2, 4, classes);
        let keypoints = kpt.map(|[k, d]| rows.narrow(2, 4 + classes, k * d).reshape([size[0], size[2], k, d]));
        Ok(Detections { boxes, scores, keypoints })
    }

    /// The class scores `[B, nc]` of a Classify output (logits or probabilities), checked.
    pub fn class_scores(&self, output: &Tensor) -> Result<Tensor, String> {
        let Task::Classify { classes } = self else { return Err(format!("{self:?} is not a classifier")) };
        let size = output.size();
        if size.len() != 2 || size[1] != *classes as i64 {
            return Err(format!("the output is {size:?}; [B, {classes}] expected"));
        }
        Ok(output.shallow_clone())
    }

    /// Class probabilities `[B, nc]` of a Classify output: softmax of logits, or the output
    /// itself when it already is a distribution (Ultralytics exports end in a softmax).
    pub fn probabilities(&self, output: &Tensor) -> Result<Tensor, String> {
        let Task::Classify { classes } = self else { return Err(format!("{self:?} is not a classifier")) };
        let size = output.size();
        if size.len() != 2 || size[1] != *classes as i64 {
            return Err(format!("the output is {size:?}; [B, {classes}] expected"));
        }
        let in_range = output.min().double_value(&[]) >= 0.0 && output.max().double_value(&[]) <= 1.0;
        let sums = output.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
        let normalised = (sums - 1.0).abs().max().double_value(&[]) <= 1e-4;
        Ok(if in_range && normalised { output.shallow_clone() } else { output.softmax(1, Kind::Float) })
    }
}
