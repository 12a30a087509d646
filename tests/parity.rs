//! Forward-pass parity with PyTorch-YOLOv3: outputs and every stored block output of
//! `parity_io.safetensors` (made by PyTorch-YOLOv3 in eval mode) within 1e-4.

mod common;

use prunescope::model::{Cfg, Darknet, Graph, Layout, Source, Weights};
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use tch::{Device, Tensor};

fn reference() -> BTreeMap<String, Tensor> {
    let bytes = std::fs::read(common::darknet("parity_io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            let data: Vec<f32> =
                v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
            (name, Tensor::from_slice(&data).reshape(&shape))
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a - b).abs().max().double_value(&[])
}

/// max |a − b| / max(1, |b|): an absolute difference for values up to 1, relative above.
///
/// The final output holds box widths/heights in pixels up to ~10,000 for these random
/// weights, where one float32 ulp is ~5e-4, so an absolute 1e-4 is finer than the format.
/// They come from exp(t)·anchor, which turns the 3.2e-6 by which block 14 differs here into
/// Δw ≈ 6548 · 3.2e-6 ≈ 0.02. That block difference is the platform's: PyTorch 2.13 itself,
/// run on this CPU on the stored `a.layer.12`, reproduces conv_13 only to 8.1e-6 (exactly
/// what we get), so the reference was made where the convolution kernels round differently.
fn max_scaled_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    ((a - b).abs() / b.abs().clamp_min(1.0)).max().double_value(&[])
}

fn load(weights_file: &std::path::Path) -> (Cfg, Weights) {
    let cfg = Cfg::from_file(&common::darknet("parity.cfg")).unwrap();
    let graph = Graph::build(&cfg, 1, 128, 128).unwrap();
    let w = Weights::load(weights_file, &Layout::of(&cfg, &graph)).unwrap();
    (cfg, w)
}

/// Checks both reference cases (a: 1x3x128x128, b: 2x3x96x96) against one set of weights.
fn check_parity(cfg: &Cfg, weights: &Weights, label: &str) {
    let refs = reference();
    for case in ["a", "b"] {
        let input = &refs[&format!("{case}.input")];
        let size = input.size();
        let graph = Graph::build(cfg, size[0] as usize, size[2] as usize, size[3] as usize).unwrap();
        let net = Darknet::new(cfg, &graph, weights, Device::Cpu).unwrap();
        let out = net.forward_all(input).unwrap();
        let d = max_scaled_diff(&out.detections, &refs[&format!("{case}.output")]);
        assert!(d <= 1e-4, "{label} case {case}: output differs by {d} (scaled)");
        let mut checked = 0;
        for (i, t) in out.blocks.iter().enumerate() {
            if let Some(r) = refs.get(&format!("{case}.layer.{i}")) {
                let d = max_abs_diff(t.as_ref().unwrap(), r);
                assert!(d <= 1e-4, "{label} case {case}: block {i} differs by {d}");
                checked += 1;
            }
        }
        // Every convolutional, maxpool and upsample block of parity.cfg is stored: convs
        // 0,1,2,3,6,8,10,12,13,14,17,20,21 (13), maxpools 5,11 (2), upsample 18 (1) = 16.
        assert_eq!(checked, 16, "{label} case {case}");
        // The declared output shape of the graph matches what the network produced.
        let last = graph.nodes.iter().filter(|n| n.kind == "yolo").map(|n| n.output_shape[1]).sum::<usize>();
        assert_eq!(out.detections.size()[1] as usize, last);
    }
}

#[test]
fn parity_from_darknet_weights() {
    let (cfg, w) = load(&common::darknet("parity.weights"));
    check_parity(&cfg, &w, "parity.weights");
}

#[test]
fn parity_from_pth() {
    let (cfg, w) = load(&common::darknet("parity.pth"));
    check_parity(&cfg, &w, "parity.pth");
    // The two reference files hold the same numbers.
    let (_, from_darknet) = load(&common::darknet("parity.weights"));
    assert_eq!(w, from_darknet);
}

#[test]
fn parity_from_safetensors_we_wrote() {
    let (cfg, w) = load(&common::darknet("parity.weights"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("parity.safetensors");
    let graph = Graph::build(&cfg, 1, 128, 128).unwrap();
    w.save(&path, &Layout::of(&cfg, &graph)).unwrap();
    let (_, reloaded) = load(&path);
    assert_eq!(reloaded, w);
    check_parity(&cfg, &reloaded, "written safetensors");
}

/// Running only blocks `start..` from the tensors crossing the cut gives the full result.
#[test]
fn suffix_runs_match_the_full_forward() {
    let (cfg, w) = load(&common::darknet("parity.weights"));
    let refs = reference();
    let input = &refs["b.input"];
    let graph = Graph::build(&cfg, 2, 96, 96).unwrap();
    let net = Darknet::new(&cfg, &graph, &w, Device::Cpu).unwrap();
    let full = net.forward_all(input).unwrap();
    for start in 0..cfg.blocks.len() {
        let given: BTreeMap<Source, Tensor> = graph
            .crossing(start)
            .into_iter()
            .map(|s| {
                let t = match s {
                    Source::Image => input.shallow_clone(),
                    Source::Block(j) => full.blocks[j].as_ref().unwrap().shallow_clone(),
                };
                (s, t)
            })
            .collect();
        let part = net.forward_from(start, &input.size(), given, false).unwrap();
        assert_eq!(max_abs_diff(&part.detections, &full.detections), 0.0, "suffix from block {start}");
        let d = max_scaled_diff(&part.detections, &refs["b.output"]);
        assert!(d <= 1e-4, "suffix from block {start} vs reference: {d}");
    }
}

#[test]
fn suffix_run_without_a_crossing_tensor_is_an_error() {
    let (cfg, w) = load(&common::darknet("parity.weights"));
    let graph = Graph::build(&cfg, 1, 128, 128).unwrap();
    let net = Darknet::new(&cfg, &graph, &w, Device::Cpu).unwrap();
    // Block 19 routes blocks 18 and 10; give only 18 (and the yolo head 15).
    let t = Tensor::zeros([1, 32, 32, 32], (tch::Kind::Float, Device::Cpu));
    let y = Tensor::zeros([1, 192, 6], (tch::Kind::Float, Device::Cpu));
    let given = BTreeMap::from([(Source::Block(18), t), (Source::Block(15), y)]);
    let err = net.forward_from(19, &[1, 3, 128, 128], given, false).err().expect("must fail");
    assert!(err.to_string().contains("block 19 needs the output of Block(10)"), "{err}");
    assert_eq!(graph.crossing(19), vec![Source::Block(10), Source::Block(15), Source::Block(18)]);
}

#[test]
fn bad_input_shape_is_an_error() {
    let (cfg, w) = load(&common::darknet("parity.weights"));
    let graph = Graph::build(&cfg, 1, 128, 128).unwrap();
    let net = Darknet::new(&cfg, &graph, &w, Device::Cpu).unwrap();
    for shape in [[1i64, 3, 100, 128], [1, 1, 128, 128]] {
        let x = Tensor::zeros(shape, (tch::Kind::Float, Device::Cpu));
        let err = net.forward(&x).expect_err("must fail");
        assert!(err.to_string().contains("expected [N, 3, H, W]"), "{err}");
    }
}

#[test]
fn weights_of_another_cfg_are_refused_by_the_model() {
    let (_, w) = load(&common::darknet("parity.weights"));
    let tiny = Cfg::from_file(&common::darknet("yolov3-tiny.cfg")).unwrap();
    let graph = Graph::build(&tiny, 1, 416, 416).unwrap();
    let err = Darknet::new(&tiny, &graph, &w, Device::Cpu).err().expect("must fail");
    assert!(
        err.to_string().starts_with(
            "weights do not fit the cfg: tensor `module_list.0.batch_norm_0.bias` has shape [8], the cfg expects [16]"
        ),
        "{err}"
    );
}

/// The Darknet model imported into the format-neutral IR (`model::darknet::to_net`) and run
/// by the IR's executor: the reference's outputs and block outputs within 1e-4, the Darknet
/// forward's within 1e-5, and IR suffix runs from any convolution bit for bit.
#[test]
fn parity_through_the_ir() {
    use prunescope::model::ir::exec::Keep;
    let (cfg, w) = load(&common::darknet("parity.weights"));
    let refs = reference();
    for case in ["a", "b"] {
        let input = &refs[&format!("{case}.input")];
        let size = input.size();
        let graph = Graph::build(&cfg, size[0] as usize, size[2] as usize, size[3] as usize).unwrap();
        let ir = prunescope::model::darknet::to_net(&cfg, &graph, &w, &common::darknet("parity.cfg")).unwrap();
        let out = ir.run(vec![("input".into(), input.shallow_clone())], Keep::All).unwrap();
        let d = max_scaled_diff(&out["output"], &refs[&format!("{case}.output")]);
        assert!(d <= 1e-4, "case {case}: IR output differs by {d} (scaled)");
        let mut checked = 0;
        for i in 0..cfg.blocks.len() {
            if let Some(r) = refs.get(&format!("{case}.layer.{i}")) {
                let d = max_abs_diff(&out[&format!("block_{i}")], r);
                assert!(d <= 1e-4, "case {case}: IR block {i} differs by {d}");
                checked += 1;
            }
        }
        assert_eq!(checked, 16, "case {case}");
        let net = Darknet::new(&cfg, &graph, &w, Device::Cpu).unwrap();
        let darknet = net.forward_all(input).unwrap();
        // Not bit for bit: the IR runs convolutions channels-last, whose kernels round
        // differently from the Darknet forward's NCHW ones.
        let d = max_scaled_diff(&out["output"], &darknet.detections);
        assert!(d <= 1e-5, "case {case}: IR vs Darknet forward differ by {d} (scaled)");
        for start in (0..ir.nodes.len()).filter(|&i| ir.nodes[i].op == "Conv") {
            let mut cached: std::collections::HashMap<String, Tensor> =
                out.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
            for &i in &ir.descendants(start) {
                for o in &ir.nodes[i].outputs {
                    cached.remove(o);
                }
            }
            let part = ir.run_from(start, &cached, Keep::Outputs).unwrap();
            assert_eq!(
                max_abs_diff(&part["output"], &out["output"]),
                0.0,
                "case {case}: IR suffix from {}",
                ir.nodes[start].name
            );
        }
    }
}
