//! Threshold suggestion from a finished sensitivity run.
//!
//! - Per layer: the largest sparsity whose metric drop stays within a budget, interpolating
//!   linearly between measured points and never going past the largest measured sparsity.
//! - Global: reach a target reduction of MACs or parameters with the least predicted metric
//!   loss. Solved exactly over the measured levels as a multiple-choice knapsack (one level
//!   per layer, 0 % included) by dynamic programming; a greedy on marginal loss per MAC is
//!   only optimal on convex curves, and measured curves are not convex (a layer is often
//!   flat up to 50 % and then falls off a cliff).
//!
//! The predicted metric of a plan is the baseline minus the sum of the per-layer drops: an
//! estimate that assumes the layers' losses add up.

use super::PlanError;
use crate::sensitivity::{Metric, StoredRun};
use serde::{Deserialize, Serialize};

/// One layer's measured curve: (sparsity, metric), starting with (0, baseline).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerCurve {
    pub layer: String,
    pub block: usize,
    pub points: Vec<(f64, f64)>,
}

impl LayerCurve {
    /// The metric at `s`, interpolated linearly; None past the largest measured sparsity.
    pub fn value_at(&self, s: f64) -> Option<f64> {
        let pts = &self.points;
        let (first, last) = (pts.first()?, pts.last()?);
        if s < first.0 || s > last.0 + 1e-12 {
            return None;
        }
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if s <= x1 + 1e-12 {
                let t = if x1 > x0 { ((s - x0) / (x1 - x0)).clamp(0.0, 1.0) } else { 1.0 };
                return Some(y0 + t * (y1 - y0));
            }
        }
        Some(last.1)
    }

    /// The largest sparsity measured for this layer.
    pub fn max_sparsity(&self) -> f64 {
        self.points.last().map(|p| p.0).unwrap_or(0.0)
    }
}

/// The curves of a run for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    pub metric: Metric,
    pub baseline: f64,
    pub layers: Vec<LayerCurve>,
}

impl Curves {
    /// The curves of `run`'s layers (every layer of the run, measured points only).
    pub fn of(run: &StoredRun, metric: Metric) -> Result<Self, PlanError> {
        let baseline = run.baseline.map(|(m, _)| m.get(metric)).ok_or(PlanError::NoBaseline)?;
        // A metric outside 0…1 (COCOeval's −1 for "no ground truth") is no measurement: curves
        // made from it would turn into a plan "with no drop".
        let measured = |v: f64| (0.0..=1.0).contains(&v);
        if !measured(baseline) {
            return Err(PlanError::InvalidBaseline { metric, value: baseline });
        }
        if let Some(p) = run.points.iter().find(|p| !measured(p.metrics.get(metric))) {
            return Err(PlanError::InvalidPoint {
                layer: p.layer.clone(),
                sparsity: p.sparsity,
                metric,
                value: p.metrics.get(metric),
            });
        }
        let mut layers = Vec::new();
        for name in &run.header.layers {
            let mut pts: Vec<(f64, f64)> =
                run.points.iter().filter(|p| &p.layer == name).map(|p| (p.sparsity, p.metrics.get(metric))).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let block = run.points.iter().find(|p| &p.layer == name).map(|p| p.block).or_else(|| block_of(name));
            let Some(block) = block else { continue };
            pts.insert(0, (0.0, baseline));
            layers.push(LayerCurve { layer: name.clone(), block, points: pts });
        }
        Ok(Curves { metric, baseline, layers })
    }

    /// The drop from the baseline at `s` for layer `i` (negative drops — noise — count as 0);
    /// None past the largest measured sparsity.
    pub fn drop_at(&self, i: usize, s: f64) -> Option<f64> {
        self.layers[i].value_at(s).map(|v| (self.baseline - v).max(0.0))
    }

    pub fn index_of(&self, layer: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.layer == layer)
    }
}

/// `conv_12` -> 12.
pub fn block_of(name: &str) -> Option<usize> {
    name.strip_prefix("conv_")?.parse().ok()
}

/// How much metric a layer may lose.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Budget {
    /// In metric units (0.01 = one mAP point).
    Absolute(f64),
    /// As a fraction of the baseline (0.02 = 2 % of it).
    Relative(f64),
}

impl Budget {
    pub fn allowed(self, baseline: f64) -> f64 {
        match self {
            Budget::Absolute(a) => a,
            Budget::Relative(r) => r * baseline,
        }
    }
}

impl std::str::FromStr for Budget {
    type Err = String;
    /// `0.01` (absolute) or `2%` (relative to the baseline).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("budget `{s}`: expected a metric drop such as 0.01, or a percentage of the baseline such as 2%");
        let t = s.trim();
        let b = if let Some(p) = t.strip_suffix('%') {
            Budget::Relative(p.trim().parse::<f64>().map_err(|_| bad())? / 100.0)
        } else {
            Budget::Absolute(t.parse::<f64>().map_err(|_| bad())?)
        };
        match b {
            Budget::Absolute(v) if !(v.is_finite() && (0.0..=1.0).contains(&v)) => Err(format!(
                "budget `{s}`: a drop of {v} is outside 0…1 (metrics are fractions: 0.01 is one mAP point); a percentage of the baseline is written 2%"
            )),
            Budget::Relative(v) if !(v.is_finite() && (0.0..=1.0).contains(&v)) => {
                Err(format!("budget `{s}`: expected a percentage of the baseline from 0% to 100%"))
            }
            _ => Ok(b),
        }
    }
}

/// The largest sparsity of curve `i` such that the drop stays within `allowed` everywhere
/// from 0 up to it (the first crossing, interpolated), capped at the largest measured one.
pub fn within_budget(curves: &Curves, i: usize, allowed: f64) -> f64 {
    let pts = &curves.layers[i].points;
    let drop = |y: f64| (curves.baseline - y).max(0.0);
    let mut best = 0.0;
    for w in pts.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let (d0, d1) = (drop(y0), drop(y1));
        if d1 <= allowed + 1e-12 {
            best = x1;
            continue;
        }
        // d0 ≤ allowed < d1: the crossing inside this segment.
        if d1 > d0 {
            best = x0 + (x1 - x0) * ((allowed - d0) / (d1 - d0)).clamp(0.0, 1.0);
        }
        break;
    }
    best
}

/// What a reduction target counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Macs,
    Params,
}

impl crate::quantity::Named for Resource {
    const ALL: &'static [Self] = &[Resource::Macs, Resource::Params];
    fn name(self) -> &'static str {
        match self {
            Resource::Macs => "macs",
            Resource::Params => "params",
        }
    }
}

impl Resource {
    pub fn label(self) -> &'static str {
        match self {
            Resource::Macs => "MACs",
            Resource::Params => "parameters",
        }
    }
}

/// One choice for a layer: a sparsity, what it removes, and the loss it is predicted to cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub sparsity: f64,
    pub removed: u64,
    pub loss: f64,
}

/// The optimum of a multiple-choice knapsack: one level per item, total `removed` ≥ `need`,
/// least total loss. Costs are counted in units of `need / resolution` rounded down, so a
/// returned choice always meets `need`; with integer costs and `need ≤ resolution` the
/// answer is exact. Returns the chosen level per item and the total loss, or None when even
/// the largest levels do not reach `need`.
pub fn knapsack(items: &[Vec<Level>], need: u64, resolution: u64) -> Option<(Vec<usize>, f64)> {
    if need == 0 {
        // Nothing to remove: the cheapest level of each item (ties: the first).
        let choice: Vec<usize> = items
            .iter()
            .map(|lv| (0..lv.len()).min_by(|&a, &b| lv[a].loss.total_cmp(&lv[b].loss).then(a.cmp(&b))).unwrap_or(0))
            .collect();
        let loss = choice.iter().zip(items).map(|(&c, lv)| lv.get(c).map(|l| l.loss).unwrap_or(0.0)).sum();
        return Some((choice, loss));
    }
    let unit = need.div_ceil(resolution.max(1)).max(1);
    let cap = need.div_ceil(unit) as usize;
    // dp[c]: least loss with rounded removed = c (saturated at cap); back[i][c]: the level
    // of item i and the state before it.
    let mut dp = vec![f64::INFINITY; cap + 1];
    dp[0] = 0.0;
    let mut back: Vec<Vec<(u16, u32)>> = Vec::with_capacity(items.len());
    for levels in items {
        let mut next = vec![f64::INFINITY; cap + 1];
        let mut from = vec![(u16::MAX, 0u32); cap + 1];
        for (c, &base) in dp.iter().enumerate() {
            if !base.is_finite() {
                continue;
            }
            for (k, l) in levels.iter().enumerate() {
                let to = (c + (l.removed / unit) as usize).min(cap);
                let v = base + l.loss;
                if v < next[to] - 1e-15 {
                    next[to] = v;
                    from[to] = (k as u16, c as u32);
                }
            }
        }
        dp = next;
        back.push(from);
    }
    if !dp[cap].is_finite() {
        return None;
    }
    let mut choice = vec![0usize; items.len()];
    let mut c = cap;
    for i in (0..items.len()).rev() {
        let (k, prev) = back[i][c];
        choice[i] = k as usize;
        c = prev as usize;
    }
    Some((choice, dp[cap]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(points: &[(f64, f64)]) -> Curves {
        Curves {
            metric: Metric::Map50,
            baseline: points[0].1,
            layers: vec![LayerCurve { layer: "conv_0".into(), block: 0, points: points.to_vec() }],
        }
    }

    #[test]
    fn interpolation_and_no_extrapolation() {
        let c = curve(&[(0.0, 0.9), (0.5, 0.8), (0.8, 0.5)]);
        let l = &c.layers[0];
        assert!((l.value_at(0.25).unwrap() - 0.85).abs() < 1e-12);
        assert!((l.value_at(0.65).unwrap() - 0.65).abs() < 1e-12);
        assert_eq!(l.value_at(0.81), None);
        // Budget 0.05: the drop reaches 0.05 at s = 0.25 (0.1 over the first 0.5).
        assert!((within_budget(&c, 0, 0.05) - 0.25).abs() < 1e-12);
        // Budget 0.2: past 0.5 (drop 0.1); the segment 0.5→0.8 drops 0.1→0.4, 0.2 at 0.6.
        assert!((within_budget(&c, 0, 0.2) - 0.6).abs() < 1e-12);
        // A budget larger than every drop stops at the largest measured sparsity.
        assert_eq!(within_budget(&c, 0, 1.0), 0.8);
    }

    #[test]
    fn the_first_crossing_counts_even_if_the_curve_recovers() {
        // Drops 0, 0.1, 0.0: with budget 0.05 the crossing is at 0.15 on the first segment.
        let c = curve(&[(0.0, 0.9), (0.3, 0.8), (0.6, 0.9)]);
        assert!((within_budget(&c, 0, 0.05) - 0.15).abs() < 1e-12);
    }

    #[test]
    fn budgets_parse() {
        assert_eq!("0.01".parse::<Budget>().unwrap(), Budget::Absolute(0.01));
        assert_eq!("2%".parse::<Budget>().unwrap(), Budget::Relative(0.02));
        assert!("-1".parse::<Budget>().unwrap_err().contains("outside 0…1"));
        assert!("x".parse::<Budget>().unwrap_err().contains("expected a metric drop"));
        assert!("x%".parse::<Budget>().is_err());
    }

    fn lv(sparsity: f64, removed: u64, loss: f64) -> Level {
        Level { sparsity, removed, loss }
    }

    /// Three layers, need 10 units removed. Options (removed, loss):
    ///   A: (0,0) (6,0.10) (10,0.50)
    ///   B: (0,0) (5,0.02) (8,0.30)
    ///   C: (0,0) (4,0.03) (7,0.04)
    /// Every combination reaching ≥ 10, by hand:
    ///   A6+B5 = 11 → 0.12; A6+C4 = 10 → 0.13; A6+C7 = 13 → 0.14; B5+C7 = 12 → 0.06;
    ///   B8+C4 = 12 → 0.33; B5+C4 = 9 (short); A10 alone → 0.50; B8+C7 → 0.34; ...
    /// The optimum is B5 + C7 = 0.06.
    #[test]
    fn knapsack_finds_the_derived_optimum() {
        let items = vec![
            vec![lv(0.0, 0, 0.0), lv(0.5, 6, 0.10), lv(0.8, 10, 0.50)],
            vec![lv(0.0, 0, 0.0), lv(0.5, 5, 0.02), lv(0.8, 8, 0.30)],
            vec![lv(0.0, 0, 0.0), lv(0.5, 4, 0.03), lv(0.8, 7, 0.04)],
        ];
        let (choice, loss) = knapsack(&items, 10, 1000).unwrap();
        assert_eq!(choice, vec![0, 1, 2]);
        assert!((loss - 0.06).abs() < 1e-12);
        // Unreachable: 10 + 8 + 7 = 25 < 26.
        assert!(knapsack(&items, 26, 1000).is_none());
    }

    /// Need 10. X: (0,0) (5,0.5) (10,0.52) — flat, then nearly free to go further;
    /// Y: (0,0) (5,0.3). Greedy by loss per unit removed takes Y5 (0.06/unit), then X5
    /// (0.1/unit): 0.8. The options reaching 10 are X10 (0.52), X10+Y5 (0.82), X5+Y5 (0.8):
    /// the optimum is X10 alone, 0.52.
    #[test]
    fn knapsack_beats_greedy_on_a_non_convex_curve() {
        let items =
            vec![vec![lv(0.0, 0, 0.0), lv(0.5, 5, 0.5), lv(0.88, 10, 0.52)], vec![lv(0.0, 0, 0.0), lv(0.5, 5, 0.3)]];
        let (choice, loss) = knapsack(&items, 10, 1000).unwrap();
        assert_eq!(choice, vec![2, 0]);
        assert!((loss - 0.52).abs() < 1e-12);
    }
}
