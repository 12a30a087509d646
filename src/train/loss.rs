//! The YOLOv3 loss in the form PyTorch-YOLOv3 trains with: anchors assigned to targets by
//! width/height ratio (< 4 in both directions), CIoU box regression on the assigned cells,
//! objectness BCE against the (detached) IoU of the assigned predictions, class BCE.

use tch::{Kind, Tensor};

/// A target box: image index in the batch, class, and (cx, cy, w, h) in input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub image: usize,
    pub class: usize,
    pub cxcywh: [f32; 4],
}

/// One yolo head: its anchors in input pixels and its stride.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub anchors: Vec<(f32, f32)>,
    pub stride: f32,
}

/// Loss weights (PyTorch-YOLOv3's hyper-parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub box_: f64,
    pub obj: f64,
    pub cls: f64,
    /// Anchor/target width-height ratio limit.
    pub anchor_t: f32,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self { box_: 0.05, obj: 1.0, cls: 0.5, anchor_t: 4.0 }
    }
}

/// The loss and its parts (parts detached, for logging).
pub struct Loss {
    pub total: Tensor,
    pub box_: f64,
    pub obj: f64,
    pub cls: f64,
}

/// Targets assigned to one head: (image, anchor, grid y, grid x) and the box in grid units
/// relative to the cell (x, y offsets, w, h), plus the class.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub index: Vec<[i64; 4]>,
    pub tbox: Vec<[f32; 4]>,
    pub class: Vec<i64>,
}

/// Assigns each target to every anchor of `head` whose width and height ratios to it are
/// below `anchor_t`, in the cell holding its centre.
pub fn assign(targets: &[Target], head: &Head, grid: (i64, i64), anchor_t: f32) -> Assigned {
    let (gh, gw) = grid;
    let mut out = Assigned { index: Vec::new(), tbox: Vec::new(), class: Vec::new() };
    for t in targets {
        let [cx, cy, w, h] = t.cxcywh.map(|v| v / head.stride);
        for (a, &(aw, ah)) in head.anchors.iter().enumerate() {
            let (rw, rh) = (w / (aw / head.stride), h / (ah / head.stride));
            if rw.max(1.0 / rw).max(rh.max(1.0 / rh)) >= anchor_t {
                continue;
            }
            let gi = (cx.floor() as i64).clamp(0, gw - 1);
            let gj = (cy.floor() as i64).clamp(0, gh - 1);
            out.index.push([t.image as i64, a as i64, gj, gi]);
            out.tbox.push([cx - gi as f32, cy - gj as f32, w, h]);
            out.class.push(t.class as i64);
        }
    }
    out
}

/// Complete IoU of (x, y, w, h) boxes, `[n, 4]` each.
pub fn ciou(b1: &Tensor, b2: &Tensor) -> Tensor {
    let eps = 1e-9;
    let col = |b: &Tensor, i: i64| b.select(1, i);
    let (x1, y1, w1, h1) = (col(b1, 0), col(b1, 1), col(b1, 2), col(b1, 3));
    let (x2, y2, w2, h2) = (col(b2, 0), col(b2, 1), col(b2, 2), col(b2, 3));
    let (b1x1, b1x2) = (&x1 - &w1 / 2.0, &x1 + &w1 / 2.0);
    let (b1y1, b1y2) = (&y1 - &h1 / 2.0, &y1 + &h1 / 2.0);
    let (b2x1, b2x2) = (&x2 - &w2 / 2.0, &x2 + &w2 / 2.0);
    let (b2y1, b2y2) = (&y2 - &h2 / 2.0, &y2 + &h2 / 2.0);
    let iw = (b1x2.minimum(&b2x2) - b1x1.maximum(&b2x1)).clamp_min(0.0);
    let ih = (b1y2.minimum(&b2y2) - b1y1.maximum(&b2y1)).clamp_min(0.0);
    let inter = &iw * &ih;
    let union = &w1 * &h1 + &w2 * &h2 - &inter + eps;
    let iou = &inter / &union;
    let cw = b1x2.maximum(&b2x2) - b1x1.minimum(&b2x1);
    let ch = b1y2.maximum(&b2y2) - b1y1.minimum(&b2y1);
    let c2 = cw.square() + ch.square() + eps;
    let rho2 = ((&b2x1 + &b2x2 - &b1x1 - &b1x2).square() + (&b2y1 + &b2y2 - &b1y1 - &b1y2).square()) / 4.0;
    let v = ((&w2 / (&h2 + eps)).atan() - (&w1 / (&h1 + eps)).atan()).square() * (4.0 / std::f64::consts::PI.powi(2));
    // 1e-6, not eps: in f32, 1 + 1e-9 is 1 and a perfect match would give 0/0.
    let alpha = tch::no_grad(|| &v / (&v - &iou + (1.0 + 1e-6)));
    iou - (rho2 / c2 + v * alpha)
}

/// The loss of raw head outputs (`[N, A, H, W, 5 + C]`, as `Darknet::forward_train` gives).
pub fn yolo_loss(raw: &[Tensor], heads: &[Head], targets: &[Target], w: LossWeights) -> Loss {
    let device = raw[0].device();
    let batch = raw[0].size()[0];
    let zero = || Tensor::zeros([], (Kind::Float, device));
    let (mut lbox, mut lobj, mut lcls) = (zero(), zero(), zero());
    for (p, head) in raw.iter().zip(heads) {
        let size = p.size();
        let (gh, gw, no) = (size[2], size[3], size[4]);
        let nc = no - 5;
        let asg = assign(targets, head, (gh, gw), w.anchor_t);
        let mut tobj = Tensor::zeros([size[0], size[1], gh, gw], (Kind::Float, device));
        if !asg.index.is_empty() {
            let n = asg.index.len() as i64;
            let col = |k: usize| {
                Tensor::from_slice(&asg.index.iter().map(|ix| ix[k]).collect::<Vec<i64>>()).to_device(device)
            };
            let idx = [Some(col(0)), Some(col(1)), Some(col(2)), Some(col(3))];
            let ps = p.index(&idx); // [n, no]
            let anchors: Vec<f32> = asg
                .index
                .iter()
                .flat_map(|ix| {
                    let (aw, ah) = head.anchors[ix[1] as usize];
                    [aw / head.stride, ah / head.stride]
                })
                .collect();
            let anchors = Tensor::from_slice(&anchors).view([n, 2]).to_device(device);
            let pxy = ps.narrow(1, 0, 2).sigmoid();
            // exp of the raw width/height, bounded so an early wild step cannot overflow.
            let pwh = ps.narrow(1, 2, 2).clamp_max(8.0).exp() * anchors;
            let pbox = Tensor::cat(&[pxy, pwh], 1);
            let tbox: Vec<f32> = asg.tbox.iter().flatten().copied().collect();
            let tbox = Tensor::from_slice(&tbox).view([n, 4]).to_device(device);
            let iou = ciou(&pbox, &tbox);
            lbox += (iou.ones_like() - &iou).mean(Kind::Float);
            let score = iou.detach().clamp_min(0.0);
            tobj = tobj.index_put(&idx, &score, false);
            if nc > 1 {
                let classes = Tensor::from_slice(&asg.class).to_device(device);
                let onehot = classes.one_hot(nc).to_kind(Kind::Float);
                lcls += ps.narrow(1, 5, nc).binary_cross_entropy_with_logits::<Tensor>(
                    &onehot,
                    None,
                    None,
                    tch::Reduction::Mean,
                );
            }
        }
        lobj += p.select(4, 4).binary_cross_entropy_with_logits::<Tensor>(&tobj, None, None, tch::Reduction::Mean);
    }
    let (lbox, lobj, lcls) = (lbox * w.box_, lobj * w.obj, lcls * w.cls);
    let parts = (lbox.double_value(&[]), lobj.double_value(&[]), lcls.double_value(&[]));
    Loss { total: (lbox + lobj + lcls) * batch as f64, box_: parts.0, obj: parts.1, cls: parts.2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_by_ratio_and_cell() {
        // Stride 16, anchors 10x14, 23x27, 81x82 px. A 20x30 px target centred at (40, 24):
        // ratios to the anchors: (2, 2.14), (0.87, 1.11), (0.25, 0.37) -> the first two only
        // (1/0.25 = 4 is not < 4). Cell: (40/16, 24/16) = (2.5, 1.5) -> gi 2, gj 1, offsets .5.
        let head = Head { anchors: vec![(10.0, 14.0), (23.0, 27.0), (81.0, 82.0)], stride: 16.0 };
        let t = Target { image: 1, class: 3, cxcywh: [40.0, 24.0, 20.0, 30.0] };
        let a = assign(&[t], &head, (10, 10), 4.0);
        assert_eq!(a.index, vec![[1, 0, 1, 2], [1, 1, 1, 2]]);
        assert_eq!(a.tbox[0], [0.5, 0.5, 1.25, 1.875]);
        assert_eq!(a.class, vec![3, 3]);
    }

    #[test]
    fn ciou_of_hand_made_boxes() {
        // Identical boxes: 1. Two 2x2 boxes side by side, centres 1 apart on x:
        // IoU = 2/6 = 1/3; enclosing box 3x2 -> c² = 13; centre distance² = 1;
        // same aspect -> v = 0. CIoU = 1/3 − 1/13.
        let a = Tensor::from_slice(&[5.0f32, 5.0, 2.0, 2.0, 5.0, 5.0, 2.0, 2.0]).view([2, 4]);
        let b = Tensor::from_slice(&[5.0f32, 5.0, 2.0, 2.0, 6.0, 5.0, 2.0, 2.0]).view([2, 4]);
        let c = Vec::<f32>::try_from(ciou(&a, &b)).unwrap();
        assert!((c[0] - 1.0).abs() < 1e-6);
        assert!((c[1] - (1.0 / 3.0 - 1.0 / 13.0)).abs() < 1e-6, "{}", c[1]);
    }
}
