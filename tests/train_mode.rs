//! The training-mode forward pass: raw head outputs, gradients reaching every parameter,
//! batch-norm running statistics updated with PyTorch's momentum, and weights read back.

mod common;

use prunescope::model::{Cfg, Darknet, Graph, Layout, Weights};
use tch::{Device, Kind, Tensor};

#[test]
fn raw_heads_gradients_and_running_stats() {
    let cfg = Cfg::from_file(&common::darknet("parity.cfg")).unwrap();
    let graph = Graph::build(&cfg, 2, 96, 96).unwrap();
    let layout = Layout::of(&cfg, &graph);
    let w = Weights::load(&common::darknet("parity.weights"), &layout).unwrap();
    let mut net = Darknet::new(&cfg, &graph, &w, Device::Cpu).unwrap();
    assert_eq!(net.to_weights().unwrap(), w, "weights read back unchanged");

    let x = Tensor::rand([2, 3, 96, 96], (Kind::Float, Device::Cpu));
    // Raw heads: 3 anchors x (stride 16: 6x6, stride 4: 24x24) x (5 + 1 class), the same
    // layout as the stored b.output rows 3·36 + 3·576 = 1836.
    net.set_trainable(true);
    let heads = net.forward_train(&x).unwrap();
    assert_eq!(heads.iter().map(|h| h.size()).collect::<Vec<_>>(), vec![vec![2, 3, 6, 6, 6], vec![2, 3, 24, 24, 6]]);
    // The eval decode of the same raw numbers: sigmoid of objectness is what forward() gives
    // when BN uses running statistics; here we only check the raw values are pre-sigmoid
    // (some fall outside [0, 1]).
    let obj = heads[1].narrow(4, 4, 1);
    assert!(obj.min().double_value(&[]) < 0.0 || obj.max().double_value(&[]) > 1.0);

    let loss = heads.iter().map(|h| h.square().sum(Kind::Float)).fold(Tensor::from(0.0f32), |a, b| a + b);
    loss.backward();
    let params = net.parameters();
    // 13 convolutions: weights, BN weight+bias for the 11 with BN, bias for the 2 heads.
    assert_eq!(params.len(), 13 + 2 * 11 + 2);
    for (k, p) in &params {
        let g = p.grad();
        assert!(g.defined(), "{k} has no gradient");
        assert_eq!(g.size(), p.size(), "{k}");
    }
    // Running statistics moved by momentum 0.1 towards the batch statistics of conv_0.
    let after = net.to_weights().unwrap();
    let mean0 = &w.get("module_list.0.batch_norm_0.running_mean").data;
    let mean1 = &after.get("module_list.0.batch_norm_0.running_mean").data;
    assert!(mean0.iter().zip(mean1).any(|(a, b)| (a - b).abs() > 1e-4));
    assert_eq!(after.get("module_list.0.conv_0.weight"), w.get("module_list.0.conv_0.weight"));
}

/// A few SGD steps on one tiny batch lower the YOLO loss (the model can fit it).
#[test]
fn a_few_steps_reduce_the_loss() {
    use prunescope::model::BlockKind;
    use prunescope::train::{yolo_loss, Head, LossWeights, Sgd, Target};
    tch::manual_seed(0);
    let cfg = Cfg::from_file(&common::darknet("parity.cfg")).unwrap();
    let graph = Graph::build(&cfg, 2, 96, 96).unwrap();
    let w = Weights::initialize(&Layout::of(&cfg, &graph), 3);
    let mut net = Darknet::new(&cfg, &graph, &w, Device::Cpu).unwrap();
    net.set_trainable(true);
    let heads: Vec<Head> = cfg
        .yolo_blocks()
        .iter()
        .map(|&i| {
            let BlockKind::Yolo(y) = &cfg.blocks[i].kind else { unreachable!() };
            let stride = 96.0 / graph.nodes[i - 1].output_shape[2] as f32;
            Head { anchors: y.head_anchors(), stride }
        })
        .collect();
    let x = Tensor::rand([2, 3, 96, 96], (Kind::Float, Device::Cpu));
    let targets = [
        Target { image: 0, class: 0, cxcywh: [30.0, 40.0, 20.0, 24.0] },
        Target { image: 1, class: 0, cxcywh: [60.0, 50.0, 40.0, 30.0] },
    ];
    let params = net.parameters();
    let mut sgd = Sgd::new(&params, 0.9, 5e-4);
    let mut losses = Vec::new();
    for _ in 0..15 {
        Sgd::zero_grad(&params);
        let raw = net.forward_train(&x).unwrap();
        let loss = yolo_loss(&raw, &heads, &targets, LossWeights::default());
        losses.push(loss.total.double_value(&[]));
        loss.total.backward();
        sgd.step(&params, 0.01);
    }
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[14] < 0.5 * losses[0], "loss did not fall: {losses:?}");
}

/// Fine-tuning a pruned model: every weight that is zero at the start (half of conv_2's
/// weights, and the BN weight and bias of filter 0 of conv_4) is exactly zero afterwards,
/// and the other weights moved.
#[test]
fn finetune_keeps_zeros_at_zero() {
    use prunescope::data::synth::{self, SynthConfig};
    use prunescope::data::{DetectionDataset, OnBad, Split};
    use prunescope::train::{self, trainer, TrainConfig};
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), &SynthConfig { train: 8, val: 2, seed: 1, ..Default::default() }, 2, &|_, _| {})
        .unwrap();
    let ds = DetectionDataset::open_split(&dir.path().join("data.yaml"), Split::Train, None, OnBad::Error).unwrap();
    let cfg_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/yolov3-tiny-shapes.cfg");
    let cfg = Cfg::from_file(&cfg_path).unwrap();
    let graph = Graph::build(&cfg, 1, 160, 160).unwrap();
    let mut w = Weights::initialize(&Layout::of(&cfg, &graph), 2);
    let conv2 = w.get_mut("module_list.2.conv_2.weight").unwrap();
    for v in conv2.data.iter_mut().step_by(2) {
        *v = 0.0;
    }
    w.get_mut("module_list.4.batch_norm_4.weight").unwrap().data[0] = 0.0;
    w.get_mut("module_list.4.batch_norm_4.bias").unwrap().data[0] = 0.0;
    let zeros_before = w.count_nonzero();
    let mut net = Darknet::new(&cfg, &graph, &w, Device::Cpu).unwrap();
    let (samples, _) = trainer::prepare(&ds, 160, 2, OnBad::Error).unwrap();
    let tc =
        TrainConfig { epochs: 1, batch: 4, img_size: 160, keep_zeros: true, warmup_epochs: 0.0, ..Default::default() };
    train::train(&mut net, &trainer::heads(&cfg, &graph), &samples, &tc, &mut |_, _, _, _| {}, &mut |_, _| Ok(true))
        .unwrap();
    let after = net.to_weights().unwrap();
    let (b2, a2) = (&w.get("module_list.2.conv_2.weight").data, &after.get("module_list.2.conv_2.weight").data);
    for (i, (b, a)) in b2.iter().zip(a2).enumerate() {
        if *b == 0.0 {
            assert_eq!(*a, 0.0, "conv_2 weight {i} left zero");
        }
    }
    assert!(b2.iter().zip(a2).any(|(b, a)| *b != 0.0 && a != b), "other weights must change");
    assert_eq!(after.get("module_list.4.batch_norm_4.weight").data[0], 0.0);
    assert_eq!(after.get("module_list.4.batch_norm_4.bias").data[0], 0.0);
    assert_eq!(after.count_nonzero(), zeros_before, "no zero became non-zero and no weight became exactly zero");
}
