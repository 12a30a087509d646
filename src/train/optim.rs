//! SGD with momentum and weight decay over a model's parameter tensors (updated in place,
//! so masks re-applied after a step act on the very tensors the model uses).

use tch::Tensor;

/// SGD with (heavy-ball) momentum; decay applies to convolution weights only, as is usual
/// for detectors (not to biases or batch-norm parameters).
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
                let g = if key.ends_with(".weight") && key.contains(".conv_") { g + *p * self.weight_decay } else { g };
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
