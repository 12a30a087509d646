//! Weight IO: the three formats load the same numbers, round trips are exact, files we write
//! load in PyTorch exactly like the reference's own state dict, and bad files are refused
//! with the tensor and the shapes named.

mod common;

use prunescope::model::{Cfg, Graph, Layout, TensorF32, Weights};
use std::path::Path;
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
    let out = Command::new(common::venv_python())
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

/// A one-convolution model (bias, no BN): tensors `module_list.0.conv_0.bias` [2] and
/// `module_list.0.conv_0.weight` [2, 1, 1, 1].
fn mini() -> Layout {
    let text = "[net]\nwidth=32\nheight=32\nchannels=1\n[convolutional]\nfilters=2\nsize=1\nactivation=linear\n";
    let cfg = Cfg::parse(text, "mini.cfg").unwrap();
    Layout::of(&cfg, &Graph::build(&cfg, 1, 32, 32).unwrap())
}

/// A pickle int the way torch writes it: BININT, or LONG1 with 8 bytes.
fn pint(out: &mut Vec<u8>, v: u64) {
    if v <= i32::MAX as u64 {
        out.push(b'J');
        out.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        out.extend_from_slice(&[0x8a, 8]);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn pstr(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The pickle of a state dict of float tensors (key, storage key, offset, shape, stride),
/// as `torch.save` lays it out.
/// (key, storage key, offset, shape, stride) of one tensor entry.
type Entry<'a> = (&'a str, &'a str, u64, Vec<u64>, Vec<u64>);

fn state_dict_pickle(entries: &[Entry]) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(".to_vec();
    for (key, storage, offset, shape, stride) in entries {
        pstr(&mut p, key);
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
        pstr(&mut p, "storage");
        p.extend_from_slice(b"ctorch\nFloatStorage\n");
        pstr(&mut p, storage);
        pstr(&mut p, "cpu");
        pint(&mut p, 2);
        p.extend_from_slice(b"tQ");
        pint(&mut p, *offset);
        for v in [shape, stride] {
            p.push(b'(');
            for &x in v {
                pint(&mut p, x);
            }
            p.push(b't');
        }
        p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend_from_slice(b"u.");
    p
}

fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        z.start_file(*name, o).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
}

/// Crafted .pth files of a few hundred bytes: each is a clear error naming the file, never a
/// panic, an abort, a stack overflow or an allocation the file's numbers decide.
#[test]
fn crafted_pth_files_are_clear_errors() {
    let layout = mini();
    let dir = tempfile::tempdir().unwrap();
    let storage = [0u8; 8]; // two floats
    let bias = ("module_list.0.conv_0.bias", "0", 0u64, vec![2u64], vec![1u64]);
    let check = |name: &str, pickle: &[u8], expect: &str| {
        let p = dir.path().join(name);
        write_zip(&p, &[("archive/data.pkl", pickle), ("archive/data/0", &storage), ("archive/data/1", &storage)]);
        let e = err_of(&p, &layout);
        assert!(e.starts_with(&p.display().to_string()), "{name}: {e}");
        assert!(e.contains(expect), "{name}: got `{e}`, expected `{expect}`");
    };
    // The well-formed file loads: the crafting is right.
    let good =
        state_dict_pickle(&[bias.clone(), ("module_list.0.conv_0.weight", "1", 0, vec![2, 1, 1, 1], vec![1, 1, 1, 1])]);
    let p = dir.path().join("good.pth");
    write_zip(&p, &[("archive/data.pkl", &good), ("archive/data/0", &storage), ("archive/data/1", &storage)]);
    Weights::load(&p, &layout).unwrap();

    // Shape [2^40] with stride 0 fits one float of storage: it used to be allocated (abort).
    let huge = state_dict_pickle(&[bias.clone(), ("module_list.0.conv_0.weight", "1", 0, vec![1 << 40], vec![0])]);
    check(
        "huge.pth",
        &huge,
        "tensor `module_list.0.conv_0.weight` has shape [1099511627776] in the file but the cfg expects [2, 1, 1, 1]",
    );
    // Offset and stride whose byte extent wraps 64 bits: it used to pass the bounds check.
    let big = i64::MAX as u64;
    let wrap = state_dict_pickle(&[
        bias.clone(),
        ("module_list.0.conv_0.weight", "1", big, vec![2, 1, 1, 1], vec![big, 1, 1, 1]),
    ]);
    check("wrap.pth", &wrap, "tensor `module_list.0.conv_0.weight`: shape [2, 1, 1, 1], stride");
    check("wrap.pth", &wrap, "overflow");
    // A storage too short for the tensor.
    let short =
        state_dict_pickle(&[bias.clone(), ("module_list.0.conv_0.weight", "1", 1, vec![2, 1, 1, 1], vec![1, 1, 1, 1])]);
    check("short.pth", &short, "record `archive/data/1` holds 8 bytes but the tensors that use it need 12");
    // 10^6 nested lists (`]` a million times, then APPEND): used to overflow the stack.
    let mut nested = b"\x80\x02".to_vec();
    nested.extend(std::iter::repeat_n(b']', 1_000_000));
    nested.extend(std::iter::repeat_n(b'a', 999_999));
    nested.push(b'.');
    check("nested.pth", &nested, "archive/data.pkl: pickle:");
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b']', 1000));
    deep.extend(std::iter::repeat_n(b'a', 999));
    deep.push(b'.');
    check("deep.pth", &deep, "nested more than 100 levels deep");
    // A list that doubles 64 times through the memo (2^64 elements): used to grow unbounded.
    let mut doubling = b"\x80\x02]q\x00".to_vec();
    for _ in 0..64 {
        doubling.extend_from_slice(b"0(h\x00h\x00lq\x00");
    }
    doubling.push(b'.');
    check("doubling.pth", &doubling, "exceed 64 MiB");
    // The same with DUP and APPENDS.
    let mut dup = b"\x80\x02]".to_vec();
    for _ in 0..64 {
        dup.extend_from_slice(b"(2e");
    }
    dup.push(b'.');
    check("dup.pth", &dup, "archive/data.pkl: pickle:");
}

/// A zip entry declaring 3 GiB is refused from its declaration, not allocated up front.
#[test]
fn pth_record_declaring_3_gib_is_refused_before_reading() {
    let layout = mini();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("declared.pth");
    write_zip(&p, &[("archive/data.pkl", b"\x80\x02}.")]);
    let mut bytes = std::fs::read(&p).unwrap();
    // Central directory header of archive/data.pkl: uncompressed size at offset 24.
    let cd = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
    bytes[cd + 24..cd + 28].copy_from_slice(&0xC000_0000u32.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("record `archive/data.pkl` declares 3221225472 bytes, expected at most 67108864"), "{e}");
}

/// A directory given as weights says so and lists the file types expected.
#[test]
fn directory_as_weights_is_named_as_such() {
    let layout = mini();
    let dir = tempfile::tempdir().unwrap();
    for p in [dir.path().to_path_buf(), dir.path().join("run.weights")] {
        std::fs::create_dir_all(&p).unwrap();
        let e = err_of(&p, &layout);
        assert!(
            e.contains("is a directory, not a weights file: expected a file ending in .weights (Darknet), .pth/.pt (PyTorch state dict) or .safetensors"),
            "{e}"
        );
    }
    let e = err_of(&dir.path().join("noext"), &layout);
    assert!(e.contains("the file name has no extension"), "{e}");
}

/// A JPEG renamed .weights, and a header of absurd ints: "not a Darknet file", no overflow.
#[test]
fn non_darknet_files_renamed_weights_are_refused_clearly() {
    let layout = mini();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("photo.weights");
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F'];
    jpeg.resize(5000, 0x7F);
    std::fs::write(&p, &jpeg).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("this is not a Darknet .weights file: it starts like a JPEG image"), "{e}");
    assert!(e.contains("expected 36 bytes (20-byte header + 4 floats)"), "{e}");
    // major = minor = i32::MAX: major*10 + minor used to overflow.
    let p = dir.path().join("ints.weights");
    let mut ints = Vec::new();
    for v in [i32::MAX, i32::MAX, 7, 0, 0, 0, 0] {
        ints.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(&p, &ints).unwrap();
    let e = err_of(&p, &layout);
    assert!(e.contains("its header reads version 2147483647.2147483647.7"), "{e}");
}

/// Malformed safetensors headers and offsets: errors naming the file and the expectation.
#[test]
fn malformed_safetensors_are_clear_errors() {
    let layout = mini();
    let dir = tempfile::tempdir().unwrap();
    let header = |json: &str| {
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        b
    };
    let mut huge_len = u64::MAX.to_le_bytes().to_vec();
    huge_len.extend_from_slice(b"{}");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("huge header length", huge_len),
        ("offsets past the end", {
            let mut b = header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4000000000]}}"#);
            b.extend_from_slice(&[0; 8]);
            b
        }),
        ("shape overflow", header(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#)),
        ("reversed offsets", {
            let mut b = header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#);
            b.extend_from_slice(&[0; 8]);
            b
        }),
        ("short", vec![1, 2, 3]),
    ];
    for (what, bytes) in cases {
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        let e = err_of(&p, &layout);
        assert!(e.starts_with(&format!("{}: not a valid safetensors file", p.display())), "{what}: {e}");
        assert!(e.contains("expected an 8-byte little-endian header length, a JSON header"), "{what}: {e}");
    }
}
