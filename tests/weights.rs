//! Weight IO: the three formats load the same numbers, round trips are exact, files we write
//! load in PyTorch exactly like the reference's own state dict, and bad files are refused
//! with the tensor and the shapes named.

mod common;

use prunescope::model::{Cfg, Graph, Layout, TensorF32, Weights};
use std::path::{Path, PathBuf};
use std::process::Command;

fn parity() -> (Cfg, Layout, Weights) {
    let cfg = Cfg::from_file(&common::darknet("parity.cfg")).unwrap();
    let layout = Layout::of(&cfg, &Graph::build(&cfg, 1, 128, 128).unwrap());
    let w = Weights::load(&common::darknet("parity.weights"), &layout).unwrap();
    (cfg, layout, w)
}

fn err_of(path: &Path, layout: &Layout) -> String {
    Weights::load(path, layout).expect_err("must be refused").to_string()
}

#[test]
fn layout_matches_the_darknet_float_count() {
    let (_, layout, w) = parity();
    // parity.weights is 434,180 bytes = 20-byte header + 4 · 108,540 floats: the 107,836
    // parameters plus running mean and var of the BN convolutions (2 · 352 channels).
    assert_eq!(layout.float_count(), 108_540);
    assert_eq!(w.tensors.len(), layout.tensors.len());
    let bn_channels: usize = layout.convs.iter().filter(|c| c.bn.is_some()).map(|c| w.get(&c.weight).shape[0]).sum();
    assert_eq!(bn_channels, 352);
}

#[test]
fn round_trips_are_exact_in_every_format() {
    let (_, layout, w) = parity();
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.weights", "b.pth", "c.safetensors"] {
        let p = dir.path().join(name);
        w.save(&p, &layout).unwrap();
        let back = Weights::load(&p, &layout).unwrap();
        assert_eq!(back, w, "{name}");
        // Saving what was loaded gives the same bytes again (same name: the zip of a .pth
        // names its records after the file).
        let again = dir.path().join("again");
        std::fs::create_dir_all(&again).unwrap();
        let p2 = again.join(name);
        back.save(&p2, &layout).unwrap();
        assert!(std::fs::read(&p).unwrap() == std::fs::read(&p2).unwrap(), "{name}: bytes differ");
    }
}

#[test]
fn darknet_header_of_16_bytes_is_read() {
    // An old-style header: major=0, minor=1, revision=0, seen as int32 (16 bytes).
    let (_, layout, w) = parity();
    let bytes = std::fs::read(common::darknet("parity.weights")).unwrap();
    let mut old = Vec::new();
    for v in [0i32, 1, 0, 0] {
        old.extend_from_slice(&v.to_le_bytes());
    }
    old.extend_from_slice(&bytes[20..]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("old.weights");
    std::fs::write(&p, old).unwrap();
    assert_eq!(Weights::load(&p, &layout).unwrap(), w);
}

fn venv_python() -> PathBuf {
    let venv = std::env::var("PRUNESCOPE_TORCH_VENV")
        .expect("PRUNESCOPE_TORCH_VENV is not set: run the tests with `make test`, which installs and exports it");
    PathBuf::from(venv).join("bin/python")
}

/// The .pth we write loads with torch.load(weights_only=True) and equals the state dict
/// PyTorch-YOLOv3 itself saved: same keys (buffers included, so load_state_dict(strict=True)
/// accepts it), shapes, dtypes and values.
#[test]
fn written_pth_loads_in_pytorch_like_the_reference() {
    let (_, layout, w) = parity();
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.pth");
    w.save(&ours, &layout).unwrap();
    let script = r#"
import sys, torch
ref = torch.load(sys.argv[1], weights_only=True)
ours = torch.load(sys.argv[2], weights_only=True)
assert list(ref.keys()) == list(ours.keys()), (set(ref) ^ set(ours))
for k in ref:
    a, b = ref[k], ours[k]
    assert a.dtype == b.dtype and a.shape == b.shape, (k, a.dtype, b.dtype, a.shape, b.shape)
    if not k.endswith("num_batches_tracked"):
        assert torch.equal(a, b), k
print("OK", len(ref))
"#;
    let out = Command::new(venv_python())
        .args(["-W", "ignore", "-c", script])
        .arg(common::darknet("parity.pth"))
        .arg(&ours)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("OK"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_weight_files_are_refused_with_names_and_shapes() {
    let (cfg, layout, w) = parity();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dk = std::fs::read(common::darknet("parity.weights")).unwrap();

    // 1. Darknet file cut short: 20 + 4·500 bytes hold conv_0 (8+8+8+8+216 = 248 floats)
    // and conv_1's first BN vectors (4·16 = 64 -> 312); conv_1.weight needs floats 312..1,464.
    let p = d.join("short.weights");
    std::fs::write(&p, &dk[..20 + 4 * 500]).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("truncated: the file ends inside tensor `module_list.1.conv_1.weight` [16, 8, 3, 3], which needs floats 312..1464"), "{e}");
    assert!(e.contains("expected 434180 bytes"), "{e}");

    // 2. Darknet file with 10 floats too many.
    let p = d.join("long.weights");
    let mut long = dk.clone();
    long.extend_from_slice(&[0u8; 40]);
    std::fs::write(&p, long).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("oversized: 40 bytes (10 floats) remain after the last tensor"), "{e}");

    // 3. The right file against the wrong cfg (yolov3-tiny needs 8.8 M floats).
    let tiny = Cfg::from_file(&common::darknet("yolov3-tiny.cfg")).unwrap();
    let tiny_layout = Layout::of(&tiny, &Graph::build(&tiny, 1, 416, 416).unwrap());
    let e = err_of(&common::darknet("parity.weights"), &tiny_layout);
    assert!(e.contains("truncated: the file ends inside tensor"), "{e}");

    // 4. A wrong shape names the tensor and both shapes.
    let mut bad = w.clone();
    bad.tensors.insert("module_list.0.conv_0.weight".into(), TensorF32::new(vec![8, 3, 1, 1], vec![0.0; 24]));
    let p = d.join("shape.safetensors");
    bad.save(&p, &layout).unwrap();
    let e = err_of(&p, &layout);
    assert!(
        e.contains(
            "tensor `module_list.0.conv_0.weight` has shape [8, 3, 1, 1] in the file but the cfg expects [8, 3, 3, 3]"
        ),
        "{e}"
    );

    // 5. A missing tensor.
    let mut bad = w.clone();
    bad.tensors.remove("module_list.14.conv_14.bias");
    let p = d.join("missing.safetensors");
    bad.save(&p, &layout).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("1 tensor(s) the cfg needs are missing: module_list.14.conv_14.bias [18]"), "{e}");

    // 6. An extra tensor (num_batches_tracked and anchors are fine, others are not).
    let mut bad = w.clone();
    bad.tensors.insert("module_list.4.conv_4.weight".into(), TensorF32::new(vec![2], vec![1.0, 2.0]));
    bad.tensors.insert("module_list.0.batch_norm_0.num_batches_tracked".into(), TensorF32::new(vec![], vec![3.0]));
    let p = d.join("extra.safetensors");
    bad.save(&p, &layout).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("1 tensor(s) in the file have no place in the cfg: module_list.4.conv_4.weight [2]"), "{e}");

    // 7. A truncated .pth (zip cut in half).
    let pth = std::fs::read(common::darknet("parity.pth")).unwrap();
    let p = d.join("cut.pth");
    std::fs::write(&p, &pth[..pth.len() / 2]).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("cut.pth: cannot open the zip archive"), "{e}");

    // 8. Not a zip at all (a legacy pickle or another file renamed).
    let p = d.join("legacy.pth");
    std::fs::write(&p, b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("not a zip-format PyTorch file"), "{e}");

    // 9. A broken safetensors header.
    let p = d.join("junk.safetensors");
    std::fs::write(&p, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}").unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("junk.safetensors: not a valid safetensors file"), "{e}");

    // 10. An unknown extension.
    let e = err_of(&d.join("model.onnx"), &layout);
    assert!(e.contains("unknown weights extension `.onnx`"), "{e}");

    // 11. A file that does not exist.
    let e = err_of(&d.join("absent.weights"), &layout);
    assert!(e.contains("absent.weights: cannot read the file"), "{e}");

    // 12. A pth whose pickle is not a state dict.
    let p = d.join("model.pth");
    write_zip_pickle(&p, b"\x80\x02ctorch.nn\nModule\nq\x00)\x81q\x01.");
    let e = err_of(&p, &layout);
    assert!(e.contains("expected a state dict (a dict of tensors), found a pickled torch.nn.Module"), "{e}");

    // 13. A Darknet file shorter than any header.
    let p = d.join("tiny.weights");
    std::fs::write(&p, [0u8; 7]).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("7 bytes is too short for a Darknet header"), "{e}");
    drop(cfg);
}

fn write_zip_pickle(path: &Path, pickle: &[u8]) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", o).unwrap();
    z.write_all(pickle).unwrap();
    z.finish().unwrap();
}

/// Cutting a valid .pth anywhere never panics the reader.
#[test]
fn every_prefix_of_a_pth_is_refused_cleanly() {
    let (_, layout, _) = parity();
    let pth = std::fs::read(common::darknet("parity.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.pth");
    for cut in (0..pth.len()).step_by(997) {
        std::fs::write(&p, &pth[..cut]).unwrap();
        assert!(Weights::load(&p, &layout).is_err(), "prefix of {cut} bytes");
    }
}

#[test]
fn initialized_weights_fit_the_layout_and_follow_pytorch_bounds() {
    let (_, layout, _) = parity();
    let a = Weights::initialize(&layout, 7);
    assert_eq!(a, Weights::initialize(&layout, 7));
    assert_ne!(a, Weights::initialize(&layout, 8));
    // Saving and loading checks every key and shape against the layout.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("init.safetensors");
    a.save(&p, &layout).unwrap();
    assert_eq!(Weights::load(&p, &layout).unwrap(), a);
    // conv_0: 8x3x3x3, fan_in 27 -> |w| < 1/sqrt(27) = 0.19245; BN weight 1, var 1.
    let w = a.get("module_list.0.conv_0.weight");
    assert!(w.data.iter().all(|v| v.abs() < 0.19246) && w.data.iter().any(|v| v.abs() > 0.15));
    assert!(a.get("module_list.0.batch_norm_0.weight").data.iter().all(|&v| v == 1.0));
    assert!(a.get("module_list.0.batch_norm_0.running_var").data.iter().all(|&v| v == 1.0));
}

#[test]
fn saving_incomplete_weights_is_refused_not_a_panic() {
    let (_, layout, mut w) = parity();
    w.tensors.remove("module_list.3.conv_3.weight");
    let dir = tempfile::tempdir().unwrap();
    for name in ["x.weights", "x.pth"] {
        let e = w.save(&dir.path().join(name), &layout).unwrap_err().to_string();
        assert!(e.contains("cannot save: tensor `module_list.3.conv_3.weight` [16, 8, 3, 3] is missing"), "{e}");
    }
}
