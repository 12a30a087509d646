//! SGD with momentum and Adam over a model's parameter tensors (updated in place, so masks
//! re-applied after a step act on the very tensors the model uses). Weight decay applies to
//! convolution weights only, as is usual for detectors (not to biases or batch-norm
//! parameters).

use tch::Tensor;

/// Which update rule to train with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// SGD with heavy-ball momentum.
    Sgd,
    /// Adam (β1 = momentum, β2 = 0.999) with L2 decay added to the gradient.
    Adam,
}

impl crate::quantity::Named for OptimizerKind {
    const ALL: &'static [Self] = &[OptimizerKind::Sgd, OptimizerKind::Adam];
    fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::Adam => "adam",
        }
    }
}

fn decayed(key: &str, p: &Tensor, g: Tensor, decay: f64) -> Tensor {
    if decay != 0.0 && key.ends_with(".weight") && key.contains(".conv_") {
        g + p * decay
    } else {
        g
    }
}

/// SGD with (heavy-ball) momentum.
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    velocity: Vec<Tensor>,
}

impl Sgd {
    pub fn new(params: &[(&str, &Tensor)], momentum: f64, weight_decay: f64) -> Self {
        let velocity = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self { momentum, weight_decay, velocity }
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, params: &[(&str, &Tensor)], lr: f64) {
        tch::no_grad(|| {
            for ((key, p), v) in params.iter().zip(self.velocity.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = decayed(key, p, g, self.weight_decay);
                *v = &*v * self.momentum + g;
                let mut handle = p.shallow_clone();
                let _ = handle.f_sub_(&(&*v * lr));
            }
        });
    }

    /// Clears the gradients of `params`.
    pub fn zero_grad(params: &[(&str, &Tensor)]) {
        for (_, p) in params {
            let mut handle = p.shallow_clone();
            handle.zero_grad();
        }
    }
}

/// Adam with bias correction.
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    steps: i32,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub fn new(params: &[(&str, &Tensor)], beta1: f64, weight_decay: f64) -> Self {
        let zeros = || params.iter().map(|(_, p)| p.zeros_like()).collect();
        Self { beta1, beta2: 0.999, weight_decay, steps: 0, m: zeros(), v: zeros() }
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone.
    pub fn step(&mut self, params: &[(&str, &Tensor)], lr: f64) {
        self.steps += 1;
        let c1 = 1.0 - self.beta1.powi(self.steps);
        let c2 = 1.0 - self.beta2.powi(self.steps);
        tch::no_grad(|| {
            for (((key, p), m), v) in params.iter().zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = decayed(key, p, g, self.weight_decay);
                *m = &*m * self.beta1 + &g * (1.0 - self.beta1);
                *v = &*v * self.beta2 + g.square() * (1.0 - self.beta2);
                let update = (&*m / c1) / ((&*v / c2).sqrt() + 1e-8) * lr;
                let mut handle = p.shallow_clone();
                let _ = handle.f_sub_(&update);
            }
        });
    }
}

/// Either optimizer behind one `step`.
pub enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, params: &[(&str, &Tensor)], momentum: f64, weight_decay: f64) -> Self {
        match kind {
            OptimizerKind::Sgd => Self::Sgd(Sgd::new(params, momentum, weight_decay)),
            OptimizerKind::Adam => Self::Adam(Adam::new(params, momentum, weight_decay)),
        }
    }

    pub fn step(&mut self, params: &[(&str, &Tensor)], lr: f64) {
        match self {
            Self::Sgd(o) => o.step(params, lr),
            Self::Adam(o) => o.step(params, lr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_by_lr_against_the_gradient_sign() {
        // With bias correction, m̂ = g and v̂ = g² after one step, so the update is
        // lr · g / (|g| + 1e-8) ≈ lr · sign(g) whatever the gradient's size.
        let p = Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true);
        let loss = (&p * Tensor::from_slice(&[10.0f32, -0.01, 0.0])).sum(tch::Kind::Float);
        loss.backward();
        let mut adam = Adam::new(&[("b.bias", &p)], 0.9, 0.0);
        adam.step(&[("b.bias", &p)], 0.1);
        let v = Vec::<f32>::try_from(p.detach()).unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-5 && v[2] == 3.0, "{v:?}");
    }
}
