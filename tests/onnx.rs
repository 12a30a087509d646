//! The ONNX reader and executor against onnxruntime (tests/fixtures/onnx, see its README):
//! every Conv/Gemm/MatMul node output within 1e-4 absolute and the graph outputs within 1e-4
//! relative to max(1, |reference|), for all four models; and the files it must refuse.

mod common;

use prunescope::model::ir::exec::Keep;
use prunescope::model::ir::{Net, NetError};
use prunescope::model::onnx;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const MODELS: [&str; 4] = ["yolov8pico-pose", "yolo11pico-detect", "yolov8pico-cls", "mobilenet_v3_small-cls"];
/// Those and Ultralytics 8.3's detector (tests/fixtures/onnx83: one Split([64, nc]) of the
/// concatenated head outputs; opset 22).
const ALL_MODELS: [&str; 5] =
    ["yolov8pico-pose", "yolo11pico-detect", "yolov8pico-cls", "mobilenet_v3_small-cls", "yolov8pico83-detect"];

/// The folder of a fixture model.
fn dir_of(name: &str) -> PathBuf {
    match name {
        "yolov8pico83-detect" => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx83"),
        "dense-matmul-cls" => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx_matmul"),
        _ => dir(),
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

/// The tensors of a safetensors file (f32 and i64), by name.
fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let kind = match view.dtype() {
                safetensors::Dtype::F32 => Kind::Float,
                safetensors::Dtype::I64 => Kind::Int64,
                other => panic!("{name}: dtype {other:?}"),
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            (name, Tensor::from_data_size(view.data(), &shape, kind))
        })
        .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn every_model_matches_onnxruntime_node_by_node() {
    for name in ALL_MODELS {
        let dir = dir_of(name);
        let model = onnx::read(&dir.join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let io = read_tensors(&dir.join(format!("{name}_io.safetensors")));
        let input = io["a.input"].shallow_clone();
        let feeds = vec![(model.inputs[0].name.clone(), input)];
        let got = model.run(feeds, Keep::All).unwrap_or_else(|e| panic!("{e}"));
        let mut nodes = 0;
        for (key, want) in &io {
            if let Some(tensor) = key.strip_prefix("a.node.") {
                let have = got.get(tensor).unwrap_or_else(|| panic!("{name}: no value for node output {tensor}"));
                assert_eq!(have.size(), want.size(), "{name}: {tensor}");
                let d = max_abs(have, want);
                assert!(d <= 1e-4, "{name}: node output {tensor} differs by {d}");
                nodes += 1;
            } else if let Some(output) = key.strip_prefix("a.output.") {
                let have = &got[output];
                assert_eq!(have.size(), want.size(), "{name}: {output}");
                let scale = want.abs().clamp_min(1.0);
                let d = ((have - want).abs() / scale).max().double_value(&[]);
                assert!(d <= 1e-4, "{name}: graph output {output} differs by {d} (relative)");
            }
        }
        assert!(nodes > 10, "{name}: only {nodes} node outputs compared");
        // Outputs only: the same values, intermediate tensors freed.
        let feeds = vec![(model.inputs[0].name.clone(), io["a.input"].shallow_clone())];
        let outs = model.run(feeds, Keep::Outputs).unwrap();
        assert_eq!(outs.len(), model.outputs.len(), "{name}");
        for o in &model.outputs {
            assert_eq!(max_abs(&outs[&o.name], &got[&o.name]), 0.0, "{name}: {}", o.name);
        }
    }
}

#[test]
fn ultralytics_metadata_is_read() {
    let m = onnx::read(&dir().join("yolov8pico-pose.onnx")).unwrap();
    assert_eq!(m.opset, 18);
    assert_eq!(m.metadata.get("task").map(String::as_str), Some("pose"));
    assert_eq!(m.metadata.get("kpt_shape").map(String::as_str), Some("[17, 3]"));
    assert!(m.metadata["license"].starts_with("AGPL-3.0"));
    let mobilenet = onnx::read(&dir().join("mobilenet_v3_small-cls.onnx")).unwrap();
    assert_eq!(mobilenet.opset, 20);
    assert!(mobilenet.metadata.is_empty());
}

/// A copy of a fixture in a temporary folder, changed by `edit` (the decoded protobuf).
fn edited(
    name: &str,
    edit: impl FnOnce(&mut prunescope::model::onnx::proto::ModelProto),
) -> (tempfile::TempDir, PathBuf) {
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir().join(name)).unwrap();
    let mut m = prunescope::model::onnx::proto::ModelProto::decode(bytes.as_slice()).unwrap();
    edit(&mut m);
    let path = tmp.path().join(name);
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    (tmp, path)
}

fn refused(path: &Path) -> String {
    match onnx::read(path) {
        Ok(_) => panic!("{} was accepted", path.display()),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "the file is not named: {text}");
            text
        }
    }
}

#[test]
fn unsupported_and_broken_files_are_refused_with_the_file_and_node_named() {
    // An operator outside the supported set: named with its node and opset.
    let (_t, p) = edited("yolov8pico-cls.onnx", |m| {
        let n = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type() == "Sigmoid").unwrap();
        n.op_type = Some("Erf".into());
    });
    let e = refused(&p);
    assert!(e.contains("operator Erf (opset 18) is not supported") && e.contains("Conv"), "{e}");
    // Opset out of range.
    let (_t, p) = edited("yolov8pico-cls.onnx", |m| m.opset_import[0].version = Some(9));
    let e = refused(&p);
    assert!(e.contains("opset 9") && e.contains("11–22"), "{e}");
    // An initializer whose raw data is shorter than its dims.
    let (_t, p) = edited("yolov8pico-cls.onnx", |m| {
        let t = m
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| t.raw_data.as_ref().is_some_and(|r| r.len() > 64))
            .unwrap();
        t.raw_data.as_mut().unwrap().truncate(64);
    });
    let e = refused(&p);
    assert!(e.contains("raw data holds 64 bytes"), "{e}");
    // A truncated protobuf.
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("cut.onnx");
    let bytes = std::fs::read(dir().join("yolov8pico-cls.onnx")).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = refused(&p);
    assert!(e.contains("not an ONNX model"), "{e}");
    // The external data file missing.
    let p = tmp.path().join("mobilenet_v3_small-cls.onnx");
    std::fs::copy(dir().join("mobilenet_v3_small-cls.onnx"), &p).unwrap();
    let e = refused(&p);
    assert!(e.contains("mobilenet_v3_small-cls.onnx.data"), "{e}");
    // An activation without its input: an error naming the node, not a panic.
    let (_t, p) = edited("yolov8pico-cls.onnx", |m| {
        let n = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type() == "Sigmoid").unwrap();
        n.op_type = Some("Relu".into());
        n.input.clear();
    });
    let e = refused(&p);
    assert!(e.contains("(Relu): input 0 is required"), "{e}");
    // A Resize mode the executor does not implement: refused when run, naming the node.
    let (_t, p) = edited("yolov8pico-pose.onnx", |m| {
        let n = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type() == "Resize").unwrap();
        for a in &mut n.attribute {
            if a.name() == "mode" {
                a.s = Some(b"linear".to_vec());
            }
        }
    });
    // An input of another size than the export's: refused before any node runs.
    let m = onnx::read(&dir().join("yolo11pico-detect.onnx")).unwrap();
    let x = Tensor::zeros([2, 3, 64, 64], (Kind::Float, tch::Device::Cpu));
    let e = m.run(vec![("images".into(), x)], Keep::Outputs).unwrap_err().to_string();
    assert!(e.contains("is [2, 3, 64, 64]; the model takes [N, 3, 160, 160]"), "{e}");
    // (Found by the dry run that reading a fixed-batch file makes.)
    let e = onnx::read(&p).unwrap_err();
    assert!(matches!(e, NetError::Node { .. }), "{e}");
    assert!(e.to_string().contains("node '/model.10/Resize' (Resize): Resize mode 'linear'"), "{e}");
}

/// Parameters as models.json counts them (weights and biases of Conv/Gemm/MatMul, shared
/// initializers once per use) and the thop total as ultralytics-thop gives it at the export size.
#[test]
fn params_and_thop_macs_equal_the_references() {
    let models: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("models.json")).unwrap()).unwrap();
    for name in MODELS {
        let m = onnx::read(&dir().join(format!("{name}.onnx"))).unwrap();
        let shape = m.input_shape(None).unwrap();
        let costs = m.costs(&shape).unwrap_or_else(|e| panic!("{e}"));
        let params: u64 = costs.iter().map(|c| c.params).sum();
        assert_eq!(params, models[name]["onnx_weight_params"].as_u64().unwrap(), "{name}: parameters");
        if let Some(thop) = models[name]["thop_macs_at_imgsz"].as_u64() {
            let ours: u64 = costs.iter().map(|c| c.thop_macs).sum();
            assert_eq!(ours, thop, "{name}: thop MACs");
        }
        let macs: u64 = costs.iter().map(|c| c.macs).sum();
        assert!(macs > 0, "{name}");
    }
}

/// Files exported at a fixed batch (1 for Ultralytics, 2 for the torch export) run at any
/// batch: image by image the outputs equal those of the image alone.
#[test]
fn fixed_batch_exports_run_at_any_batch() {
    for name in ALL_MODELS {
        let m = onnx::read(&dir_of(name).join(format!("{name}.onnx"))).unwrap();
        let shape = m.input_shape(None).unwrap();
        let input = m.inputs[0].name.clone();
        let images: Vec<Tensor> = (0..8)
            .map(|i| {
                Tensor::rand([1, shape[1], shape[2], shape[3]], (Kind::Float, tch::Device::Cpu))
                    * (1.0 + i as f64 * 0.1)
            })
            .collect();
        let batch = Tensor::cat(&images, 0);
        let out = &m.outputs[0].name;
        let together = m.run(vec![(input.clone(), batch)], Keep::Outputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, image) in images.iter().enumerate() {
            let alone = m.run(vec![(input.clone(), image.shallow_clone())], Keep::Outputs).unwrap();
            // Relative to max(1, |value|): boxes are in input pixels.
            let want = &alone[out];
            let d = ((&together[out].narrow(0, i as i64, 1) - want).abs() / want.abs().clamp_min(1.0))
                .max()
                .double_value(&[]);
            assert!(d <= 1e-5, "{name}: image {i} of 8 differs by {d} from its batch-1 output");
        }
    }
    let m = onnx::read(&dir().join("mobilenet_v3_small-cls.onnx")).unwrap();
    assert_eq!(m.file_batch, Some(2));
    assert!(!m.batch_reshapes.is_empty(), "the batch-carrying Reshape is found");
}

/// Writes one float tensor to a safetensors file under `name`.
fn write_one(path: &Path, name: &str, t: &Tensor) {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(t.reshape([-1])).unwrap();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes).unwrap();
    std::fs::write(path, safetensors::serialize([(name, view)], None).unwrap()).unwrap();
}

/// `prunescope forward MODEL_ARGS --input INPUT --out OUT --all-nodes`.
fn forward_cli(model: &[&Path], input: &Path, out: &Path) {
    let flags = if model.len() == 1 { &["--model"][..] } else { &["--cfg", "--weights"][..] };
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"));
    cmd.arg("forward");
    for (flag, path) in flags.iter().zip(model) {
        cmd.arg(flag).arg(path);
    }
    let out = cmd.arg("--input").arg(input).arg("--out").arg(out).arg("--all-nodes").output().unwrap();
    assert!(out.status.success(), "forward {model:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `prunescope forward` on an ONNX model and on a Darknet model gives the references' outputs.
#[test]
fn forward_writes_what_the_references_compute() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, out) = (tmp.path().join("in.safetensors"), tmp.path().join("out.safetensors"));
    // ONNX: one tensor in the file, whatever its name; every node output with --all-nodes.
    let io = read_tensors(&dir().join("mobilenet_v3_small-cls_io.safetensors"));
    write_one(&input, "x", &io["a.input"]);
    forward_cli(&[&dir().join("mobilenet_v3_small-cls.onnx")], &input, &out);
    let got = read_tensors(&out);
    let d = max_abs(&got["logits"], &io["a.output.logits"]);
    assert!(d <= 1e-4, "logits differ by {d}");
    for (key, want) in &io {
        if let Some(tensor) = key.strip_prefix("a.node.") {
            assert!(max_abs(&got[tensor], want) <= 1e-4, "{tensor}");
        }
    }
    // Darknet: the parity fixture of PyTorch-YOLOv3.
    let darknet = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/darknet");
    let io = read_tensors(&darknet.join("parity_io.safetensors"));
    write_one(&input, "input", &io["a.input"]);
    forward_cli(&[&darknet.join("parity.cfg"), &darknet.join("parity.weights")], &input, &out);
    let got = read_tensors(&out);
    let mut blocks = 0;
    for (key, want) in &io {
        if let Some(i) = key.strip_prefix("a.layer.") {
            let d = max_abs(&got[&format!("block_{i}")], want);
            assert!(d <= 1e-4, "Darknet block {i} differs by {d}");
            blocks += 1;
        }
    }
    assert_eq!(blocks, 16);
    // Scaled as tests/parity.rs does (box sizes in pixels reach ~10,000 with these weights).
    let want = &io["a.output"];
    let d = ((&got["output"] - want).abs() / want.abs().clamp_min(1.0)).max().double_value(&[]);
    assert!(d <= 1e-4, "Darknet output differs by {d} (scaled)");
}

/// From the cached tensors of a full forward, running any node and its descendants gives
/// the full forward's outputs bit for bit (the sensitivity engine's suffix run).
#[test]
fn suffix_runs_equal_the_full_forward_bit_for_bit() {
    for name in ALL_MODELS {
        let m = onnx::read(&dir_of(name).join(format!("{name}.onnx"))).unwrap();
        let shape = m.input_shape(None).unwrap();
        let x = Tensor::rand(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
        let full = m.run(vec![(m.inputs[0].name.clone(), x)], Keep::All).unwrap();
        let convs: Vec<usize> = m.nodes.iter().enumerate().filter(|(_, n)| n.op == "Conv").map(|(i, _)| i).collect();
        // Every fourth convolution, the first and the last.
        let mut starts: Vec<usize> = convs.iter().step_by(4).copied().collect();
        starts.extend(convs.last());
        for start in starts {
            let desc = m.descendants(start);
            assert_eq!(desc[0], start);
            let mut cached = full.shallow_clone_map();
            for &i in &desc {
                for o in &m.nodes[i].outputs {
                    cached.remove(o);
                }
            }
            let out = m.run_from(start, &cached, Keep::Outputs).unwrap_or_else(|e| panic!("{name} from {start}: {e}"));
            for o in &m.outputs {
                assert!(
                    out[&o.name].equal(&full[&o.name]),
                    "{name}: suffix from node {start} ({}) changes {}",
                    m.nodes[start].name,
                    o.name
                );
            }
        }
    }
}

trait ShallowCloneMap {
    fn shallow_clone_map(&self) -> HashMap<String, Tensor>;
}

impl ShallowCloneMap for HashMap<String, Tensor> {
    fn shallow_clone_map(&self) -> HashMap<String, Tensor> {
        self.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect()
    }
}

/// Runs `model` in onnxruntime (the per-user venv's) on the tensor in `input` (safetensors,
/// one tensor) and writes the first output to `out`.
fn onnxruntime(model: &Path, input: &Path, out: &Path) {
    let script = r#"
import sys, json, struct, numpy as np, onnxruntime as ort
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    ((name, info),) = [(k, v) for k, v in header.items() if k != "__metadata__"]
    a, b = info["data_offsets"]
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(info["shape"])
x = load(sys.argv[2])
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
y = s.run(None, {s.get_inputs()[0].name: x})[0].astype(np.float32)
body = y.tobytes()
header = json.dumps({"y": {"dtype": "F32", "shape": list(y.shape), "data_offsets": [0, len(body)]}}).encode()
header += b" " * (-len(header) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(header)) + header + body)
"#;
    let status = std::process::Command::new(common::venv_python())
        .args(["-c", script])
        .arg(model)
        .arg(input)
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "onnxruntime on {}", model.display());
}

/// The largest difference between our executor's first output for `net` (read from `file`)
/// and onnxruntime's on the same random input at the file's batch, relative to
/// max(1, |onnxruntime's value|); `tmp` holds the tensors.
fn ours_against_onnxruntime(net: &Net, file: &Path, tmp: &Path) -> f64 {
    let mut shape = net.input_shape(None).unwrap();
    shape[0] = net.file_batch.unwrap_or(1);
    let x = Tensor::rand(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
    let input = tmp.join("x.safetensors");
    write_one(&input, "x", &x);
    let ours = net.run(vec![(net.inputs[0].name.clone(), x)], Keep::Outputs).unwrap();
    let ort_out = tmp.join("y.safetensors");
    onnxruntime(file, &input, &ort_out);
    // Relative to max(1, |value|), the issue's tolerance for final outputs: boxes are in input
    // pixels, and a random-weight detector's sizes reach the thousands (an ulp there is 1.2e-4).
    let want = &read_tensors(&ort_out)["y"];
    ((&ours[&net.outputs[0].name] - want).abs() / want.abs().clamp_min(1.0)).max().double_value(&[])
}

/// A pruned ONNX file (a Conv's first filter zeroed) keeps its graph, metadata and external
/// data layout, reads back with the new values, and onnxruntime runs it to our executor's
/// output (≤ 1e-4).
#[test]
fn changed_initializers_are_written_and_run_in_onnxruntime() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["yolov8pico-cls", "mobilenet_v3_small-cls"] {
        let source = dir().join(format!("{name}.onnx"));
        let m = onnx::read(&source).unwrap();
        let conv = m.nodes.iter().find(|n| n.op == "Conv").unwrap();
        let key = conv.inputs[1].clone();
        let w = m.initializers[&key].copy();
        let _ = w.get(0).f_zero_().unwrap();
        let changed = std::collections::HashMap::from([(key.clone(), w.shallow_clone())]);
        let out = tmp.path().join(format!("pruned-{name}.onnx"));
        onnx::write_changed(&source, &out, &changed).unwrap();
        let back = onnx::read(&out).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.initializers[&key].equal(&w), "{name}: the written weight");
        assert_eq!(back.metadata, m.metadata, "{name}: metadata");
        assert_eq!(back.nodes.len(), m.nodes.len());
        for (k, v) in &m.initializers {
            if *k != key {
                assert!(back.initializers[k].equal(v), "{name}: {k} changed");
            }
        }
        let external = out.with_file_name(format!("pruned-{name}.onnx.data"));
        assert_eq!(external.is_file(), name.starts_with("mobilenet"), "{name}: the external data file");
        let d = ours_against_onnxruntime(&back, &out, tmp.path());
        assert!(d <= 1e-4, "{name}: onnxruntime and our executor differ by {d} on the written file");
    }
    // The source's own data file is untouched.
    let m = onnx::read(&dir().join("mobilenet_v3_small-cls.onnx")).unwrap();
    let conv = m.nodes.iter().find(|n| n.op == "Conv").unwrap();
    assert!(m.initializers[&conv.inputs[1]].get(0).abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

/// `inspect --model --json` carries the totals models.json holds for the Ultralytics models.
#[test]
fn inspect_json_totals_equal_the_references() {
    let models: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("models.json")).unwrap()).unwrap();
    for name in ["yolo11pico-detect", "yolov8pico-cls"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"))
            .args(["inspect", "--json", "--model"])
            .arg(dir().join(format!("{name}.onnx")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(j["total_params"], models[name]["onnx_weight_params"], "{name}");
        assert_eq!(j["total_macs_thop"], models[name]["thop_macs_at_imgsz"], "{name}");
        assert!(j["total_macs"].as_u64().unwrap() > 0);
        assert_eq!(j["metadata"]["license"], models[name]["metadata_props"]["license"]);
        assert!(j["nodes"].as_array().unwrap().iter().any(|n| n["name"].as_str().unwrap().starts_with("/model.")));
    }
    // Darknet and ONNX are exclusive; one of them is required.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope")).args(["inspect"]).output().unwrap();
    assert!(!out.status.success());
}

/// The task layer reads the task from Ultralytics' metadata and splits the fixtures' outputs:
/// detect rows (boxes in pixels, scores in [0, 1]), pose keypoints, classifier probabilities
/// (Ultralytics' softmax kept, torchvision's logits turned into one).
#[test]
fn the_task_layer_reads_the_fixture_outputs() {
    use prunescope::model::task::Task;
    let io = |name: &str| read_tensors(&dir().join(format!("{name}_io.safetensors")));
    let det = onnx::read(&dir().join("yolo11pico-detect.onnx")).unwrap();
    let task = Task::of(&det, None, None).unwrap();
    assert_eq!(task, Task::Detect { classes: 5 });
    let out = &io("yolo11pico-detect")["a.output.output0"];
    let d = task.detections(out).unwrap();
    assert_eq!((d.boxes.size(), d.scores.size()), (vec![1, 525, 4], vec![1, 525, 5]));
    // Row a of the split is column a of the output.
    assert!(d.boxes.get(0).get(7).equal(&out.get(0).narrow(0, 0, 4).select(1, 7)));
    assert!(d.scores.min().double_value(&[]) >= 0.0 && d.scores.max().double_value(&[]) <= 1.0);
    let pose = onnx::read(&dir().join("yolov8pico-pose.onnx")).unwrap();
    let task = Task::of(&pose, None, None).unwrap();
    assert_eq!(task, Task::Pose { classes: 1, kpt_shape: [17, 3] });
    let out = &io("yolov8pico-pose")["a.output.output0"];
    let d = task.detections(out).unwrap();
    let k = d.keypoints.unwrap();
    assert_eq!(k.size(), vec![1, 525, 17, 3]);
    // Keypoint 2 of anchor 9: values 4 + 1 + 2·3 … of column 9.
    assert!(k.get(0).get(9).get(2).equal(&out.get(0).narrow(0, 5 + 2 * 3, 3).select(1, 9)));
    let cls = onnx::read(&dir().join("yolov8pico-cls.onnx")).unwrap();
    let task = Task::of(&cls, None, None).unwrap();
    assert_eq!(task, Task::Classify { classes: 20 });
    let out = &io("yolov8pico-cls")["a.output.output0"];
    assert!(task.probabilities(out).unwrap().equal(out), "a softmax output is kept");
    let mobilenet = onnx::read(&dir().join("mobilenet_v3_small-cls.onnx")).unwrap();
    // No metadata: an output [B, nc] can only be a classifier's.
    assert_eq!(Task::of(&mobilenet, None, None).unwrap(), Task::Classify { classes: 20 });
    let task = Task::of(&mobilenet, Some("classify"), Some(20)).unwrap();
    let logits = &io("mobilenet_v3_small-cls")["a.output.logits"];
    let p = task.probabilities(logits).unwrap();
    let sums = p.sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
    assert!(p.argmax(1, false).equal(&logits.argmax(1, false)));
}

/// A bias shared by three convolutions (onnxslim merged equal biases) is copied before one
/// of them changes it: only that convolution sees the change, in memory and in the written
/// file, which onnxruntime runs to our executor's output.
#[test]
fn a_shared_initializer_is_copied_before_it_changes() {
    let source = dir().join("yolo11pico-detect.onnx");
    let mut net = onnx::read(&source).unwrap();
    let shared = "model.23.cv2.0.2.bias";
    let readers: Vec<usize> =
        (0..net.nodes.len()).filter(|&i| net.nodes[i].inputs.iter().any(|x| x == shared)).collect();
    assert_eq!(readers.len(), 3, "the fixture's shared bias");
    let params_before: u64 = net.costs(&net.input_shape(None).unwrap()).unwrap().iter().map(|c| c.params).sum();
    let own = net.own_initializer(readers[0], 2).unwrap();
    assert_ne!(own, shared);
    let _ = net.initializers.get_mut(&own).unwrap().f_zero_().unwrap();
    assert!(net.initializers[shared].abs().sum(Kind::Float).double_value(&[]) > 0.0, "the other two keep theirs");
    // A second call for the same input: already its own.
    assert_eq!(net.own_initializer(readers[0], 2).unwrap(), own);
    let params_after: u64 = net.costs(&net.input_shape(None).unwrap()).unwrap().iter().map(|c| c.params).sum();
    assert_eq!(params_after, params_before, "a copy counts as the shared one did");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("owned.onnx");
    onnx::write_net(&source, &out, &net, &[own.as_str()]).unwrap();
    let back = onnx::read(&out).unwrap();
    assert_eq!(back.nodes[readers[0]].inputs[2], own);
    assert_eq!(back.nodes[readers[1]].inputs[2], shared);
    assert_eq!(back.initializers[&own].abs().sum(Kind::Float).double_value(&[]), 0.0);
    let x = Tensor::rand([1, 3, 160, 160], (Kind::Float, tch::Device::Cpu));
    let ours = net.run(vec![("images".into(), x.shallow_clone())], Keep::Outputs).unwrap();
    let written = back.run(vec![("images".into(), x.shallow_clone())], Keep::Outputs).unwrap();
    assert!(ours["output0"].equal(&written["output0"]));
    let original = onnx::read(&source).unwrap().run(vec![("images".into(), x.shallow_clone())], Keep::Outputs).unwrap();
    assert!(max_abs(&ours["output0"], &original["output0"]) > 0.0, "the change reached the output");
    let input = tmp.path().join("x.safetensors");
    write_one(&input, "x", &x);
    let ort_out = tmp.path().join("y.safetensors");
    onnxruntime(&out, &input, &ort_out);
    let theirs = &read_tensors(&ort_out)["y"];
    let d = ((&ours["output0"] - theirs).abs() / theirs.abs().clamp_min(1.0)).max().double_value(&[]);
    assert!(d <= 1e-4, "onnxruntime differs by {d} (relative to max(1, |value|))");
}

const ULTRALYTICS: [&str; 3] = ["yolov8pico-pose", "yolo11pico-detect", "yolov8pico-cls"];

fn opened(name: &str) -> prunescope::model::Model {
    let task = (name == "mobilenet_v3_small-cls").then(|| "classify".to_string());
    let files = prunescope::model::ModelFiles::Onnx { path: dir().join(format!("{name}.onnx")), task };
    prunescope::model::Model::open(&files, None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// An opened ONNX model: every Conv with a weight initializer is a layer (its SiLU in its
/// chain), its parameters are models.json's, and the effective cost of the dense weights is
/// the dense cost node for node.
#[test]
fn opened_onnx_models_cost_densely_what_the_references_count() {
    use prunescope::model::effective::{self, Cost};
    let models: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("models.json")).unwrap()).unwrap();
    for name in ULTRALYTICS {
        let m = opened(name);
        assert_eq!(m.params, models[name]["onnx_weight_params"].as_u64().unwrap(), "{name}");
        let net = onnx::read(&dir().join(format!("{name}.onnx"))).unwrap();
        // Every convolution with weights, less the DFL's (it reads a softmax; weights 0…15),
        // and every Gemm of a Linear (transB = 1: the weight is [out, in]).
        let dfl = |n: &prunescope::model::ir::Node| net.producer_of(&n.inputs[0]).is_some_and(|p| p.op == "Softmax");
        let linear = |n: &prunescope::model::ir::Node| {
            n.op == "Gemm" && matches!(n.attrs.get("transB"), Some(prunescope::model::ir::Attr::Int(1)))
        };
        let convs = net
            .nodes
            .iter()
            .filter(|n| (n.op == "Conv" && !dfl(n) || linear(n)) && net.initializers.contains_key(&n.inputs[1]))
            .count();
        assert_eq!(m.layers.len(), convs, "{name}");
        // Ultralytics' Conv modules are conv + SiLU: the chain holds the pair.
        let silu = m.layers.iter().filter(|l| l.chain.len() == 3 && l.zero_preserving).count();
        assert!(silu * 10 >= convs * 8, "{name}: {silu} of {convs} layers end in a SiLU");
        let e = effective::effective(&m, &m.weights);
        let dense: Vec<Cost> = m.nodes.iter().map(|n| Cost { params: n.params, macs: n.macs }).collect();
        assert_eq!(e.nodes, dense, "{name}");
        assert_eq!(e.total(), Cost { params: m.params, macs: m.macs }, "{name}");
        assert_eq!(e.layers, effective::dense(&m), "{name}");
    }
}

/// Filter pruning of a layer whose only reader is another convolution, derived by hand: the
/// layer keeps (F − d)·(C·k² + 1) parameters, its SiLU's MACs scale by (F − d)/F, and the
/// next convolution reads only the live channels: G·(F − d)·k'² weights + G biases.
#[test]
fn a_filter_pruned_onnx_layer_costs_what_is_left() {
    use prunescope::model::effective;
    use prunescope::prune::{prune_layer, Method};
    let m = opened("yolo11pico-detect");
    let readers = |tensor: &str| -> Vec<usize> {
        let t = m.tensors.iter().position(|n| n == tensor).unwrap();
        m.nodes.iter().enumerate().filter(|(_, n)| n.inputs.contains(&Some(t))).map(|(i, _)| i).collect()
    };
    // The first layer whose chain output only one other layer's convolution reads.
    let (k, next) = m
        .layers
        .iter()
        .enumerate()
        .find_map(|(k, l)| {
            let r = readers(&l.output);
            let next = m.layers.iter().position(|o| r == vec![o.chain[0]] && o.groups == 1)?;
            Some((k, next))
        })
        .expect("a layer feeding one convolution");
    let (layer, reader) = (&m.layers[k], &m.layers[next]);
    let mut w = m.weights.clone();
    let count = prune_layer(&mut w, &layer.keys, Method::L1Filter, 0.5);
    let d = count.filters_zeroed as u64;
    let ws = &layer.weight_shape;
    let (f, per) = (ws[0] as u64, (ws[1] * ws[2] * ws[3]) as u64);
    let e = effective::effective(&m, &w);
    assert_eq!(e.live_channels[k] as u64, f - d);
    assert_eq!(e.layers[k].params, (f - d) * (per + 1));
    let rs = &reader.weight_shape;
    let (g, kk) = (rs[0] as u64, (rs[2] * rs[3]) as u64);
    assert_eq!(rs[1] as u64, f);
    assert_eq!(e.layers[next].params, g * (f - d) * kk + g);
    let area = e.layers[next].macs / (g * (f - d) * kk + g);
    assert_eq!(e.layers[next].macs, area * (g * (f - d) * kk + g));
    assert!(e.total().params < m.params);
}

/// The engine's suffix run on an ONNX detector (its SiLU chains, concatenations, splits and
/// the DFL head): for layers at the start, the middle and the end, and each method, the
/// pruned model's output equals its full forward pass bit for bit.
#[test]
fn engine_suffix_on_an_onnx_detector_equals_the_full_pass() {
    use prunescope::eval::{NetPredictor, Predictor};
    use prunescope::prune::{prune_layer, Method};
    let m = opened("yolo11pico-detect");
    let net = NetPredictor::new(&m, &m.weights, tch::Device::Cpu).unwrap();
    tch::manual_seed(3);
    let image = Tensor::rand([2, 3, 160, 160], (Kind::Float, tch::Device::Cpu));
    let n = m.layers.len();
    for layer in [&m.layers[0], &m.layers[n / 2], &m.layers[n - 2]] {
        for method in [Method::L1, Method::L1Filter] {
            let got = prunescope::sensitivity::pruned_detections(&net, &m, layer.id, method, &[0.5], &image).unwrap();
            let mut w = m.weights.clone();
            prune_layer(&mut w, &layer.keys, method, 0.5);
            let full = NetPredictor::new(&m, &w, tch::Device::Cpu).unwrap().predict(&image).unwrap();
            assert!(got[0].equal(&full), "{} {method}: the suffix run differs from the full pass", layer.name);
        }
    }
}

/// `prunescope prune --model` with a plan filter-pruning every third layer at 50 %: the
/// written ONNX file keeps the graph, the metadata and (mobilenet) the external-data layout;
/// its pruned filters are zero, its effective parameters are the plan's prediction, and
/// onnxruntime runs it to our executor's output (≤ 1e-4).
#[test]
fn a_plan_prunes_an_onnx_model_into_an_onnx_file() {
    use prunescope::model::effective;
    use prunescope::plan::Plan;
    use prunescope::prune::Method;
    use prunescope::sensitivity::Metric;
    let tmp = tempfile::tempdir().unwrap();
    for name in ["yolo11pico-detect", "mobilenet_v3_small-cls"] {
        let m = opened(name);
        let ids: Vec<usize> = m.layers.iter().step_by(3).map(|l| l.id).collect();
        let mut plan = Plan::new(&m, Method::L1Filter, Metric::Map50, &ids);
        for &id in &ids {
            plan.set(id, 0.5, None).unwrap();
        }
        plan.refresh_prediction(&m, None);
        let plan_file = tmp.path().join(format!("{name}.plan.json"));
        plan.write(&plan_file).unwrap();
        let out = tmp.path().join(format!("pruned-{name}.onnx"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"));
        cmd.arg("prune").arg("--model").arg(dir().join(format!("{name}.onnx")));
        if name.starts_with("mobilenet") {
            cmd.args(["--task", "classify"]);
        }
        let status = cmd.arg("--plan").arg(&plan_file).arg("--out").arg(&out).output().unwrap();
        assert!(status.status.success(), "{name}: {}", String::from_utf8_lossy(&status.stderr));
        let source = onnx::read(&dir().join(format!("{name}.onnx"))).unwrap();
        let back = onnx::read(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.metadata, source.metadata, "{name}: metadata");
        assert_eq!(back.nodes.len(), source.nodes.len(), "{name}: nodes");
        let external = out.with_file_name(format!("pruned-{name}.onnx.data"));
        assert_eq!(external.is_file(), name.starts_with("mobilenet"), "{name}: the external data file");
        // Reopened, the pruned model costs what the plan predicted.
        let files = m.files.with_weights(&out);
        let pruned = prunescope::model::Model::open(&files, None).unwrap();
        let e = effective::effective(&pruned, &pruned.weights);
        assert_eq!(e.total().params, plan.predicted.params_after, "{name}");
        assert!(plan.predicted.params_after < plan.predicted.params_before, "{name}");
        for &id in &ids {
            let layer = pruned.layer_by_id(id).unwrap();
            let w = &pruned.weights.tensors[&layer.keys.weight];
            let per = w.data.len() / w.shape[0];
            let zero = w.data.chunks(per).filter(|f| f.iter().all(|v| *v == 0.0)).count();
            assert_eq!(zero, (w.shape[0] as f64 * 0.5).round() as usize, "{name}: {}", layer.name);
        }
        let d = ours_against_onnxruntime(&back, &out, tmp.path());
        assert!(d <= 1e-4, "{name}: onnxruntime and our executor differ by {d} on the pruned file");
    }
}

/// `prune --model … --data … --compare DIR` prunes an ONNX detector and compares the two ONNX
/// files (`compare` without --cfg): the report's pruned model has the plan's effective
/// parameters and the original the model's.
#[test]
fn prune_and_compare_onnx_from_the_command_line() {
    use prunescope::plan::Plan;
    use prunescope::prune::Method;
    use prunescope::sensitivity::Metric;
    let tmp = tempfile::tempdir().unwrap();
    let m = opened("yolo11pico-detect");
    let ids: Vec<usize> = m.layers.iter().take(3).map(|l| l.id).collect();
    let mut plan = Plan::new(&m, Method::L1Filter, Metric::Map50, &ids);
    for &id in &ids {
        plan.set(id, 0.5, None).unwrap();
    }
    plan.refresh_prediction(&m, None);
    let plan_file = tmp.path().join("plan.json");
    plan.write(&plan_file).unwrap();
    let report = tmp.path().join("report");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_runs/shapes/data.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"))
        .arg("prune")
        .arg("--model")
        .arg(dir().join("yolo11pico-detect.onnx"))
        .arg("--plan")
        .arg(&plan_file)
        .arg("--out")
        .arg(tmp.path().join("pruned.onnx"))
        .arg("--data")
        .arg(&data)
        .arg("--compare")
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap()).unwrap();
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["effective_params"].as_u64().unwrap(), m.params);
    assert_eq!(models[1]["effective_params"].as_u64().unwrap(), plan.predicted.params_after);
    assert!(plan.predicted.params_after < m.params);
}

/// Ultralytics 8.3's detector head (scripts/make_yolov8_83_fixture.py, Ultralytics 8.3.253):
/// the levels' outputs concatenated, then one Split([64, nc]) into the DFL's box
/// distributions and the class scores. It is a detector by its metadata with the output's
/// class count, its parameters are what its graph holds, its prunable layers are its
/// convolutions less the DFL's, the Split carries channels (so the effective cost of the
/// dense model is its dense cost), and a pruned class-branch filter leaves the box branch.
#[test]
fn an_ultralytics_8_3_split_head_detector() {
    use prunescope::model::effective::{self, Cost};
    use prunescope::model::task::Task;
    let path = dir_of("yolov8pico83-detect").join("yolov8pico83-detect.onnx");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir_of("yolov8pico83-detect").join("models.json")).unwrap())
            .unwrap();
    let info = &info["yolov8pico83-detect"];
    assert!(info["split_sizes"].as_array().unwrap().iter().any(|s| s == &serde_json::json!([64, 5])));
    let m =
        prunescope::model::Model::open(&prunescope::model::ModelFiles::Onnx { path: path.clone(), task: None }, None)
            .unwrap();
    assert_eq!(m.task, Task::Detect { classes: 5 });
    assert!(m.by_ultralytics);
    assert_eq!(m.params, info["onnx_weight_params"].as_u64().unwrap());
    let net = onnx::read(&path).unwrap();
    let split = net
        .nodes
        .iter()
        .position(|n| n.op == "Split" && net.producer_of(&n.inputs[0]).is_some_and(|p| p.op == "Concat"));
    let split = split.expect("the head's Split of the concatenation");
    assert!(matches!(m.nodes[split].rule, prunescope::model::open::Channels::Split(_)), "{:?}", m.nodes[split].rule);
    let e = effective::effective(&m, &m.weights);
    let dense: Vec<Cost> = m.nodes.iter().map(|n| Cost { params: n.params, macs: n.macs }).collect();
    assert_eq!(e.nodes, dense);
    assert_eq!(e.layers, effective::dense(&m));
    // A class-branch head convolution (its 5 filters are the 5 class scores): one filter
    // zeroed removes that filter's weights and bias from the layer, and nothing from the box
    // branches' layers.
    let cls = m.layers.iter().position(|l| l.head && l.weight_shape[0] == 5).expect("a class head");
    let mut w = m.weights.clone();
    let keys = &m.layers[cls].keys;
    let per = m.layers[cls].weight_shape[1..].iter().product::<usize>();
    {
        let t = w.tensors.get_mut(&keys.weight).unwrap();
        t.data[..per].iter_mut().for_each(|v| *v = 0.0);
    }
    if let Some(b) = &keys.bias {
        w.tensors.get_mut(b).unwrap().data[0] = 0.0;
    }
    let after = effective::effective(&m, &w);
    assert_eq!(after.layers[cls].params + per as u64 + 1, e.layers[cls].params);
    for (k, l) in m.layers.iter().enumerate() {
        if l.head && k != cls && l.weight_shape[0] == 64 {
            assert_eq!(after.layers[k], e.layers[k], "{}: a box branch is untouched", l.name);
        }
    }
}

/// Fully connected layers as MatMul + Add with `[in, out]` weights (tests/fixtures/onnx_matmul,
/// built with onnx.helper as tf2onnx exports Keras Dense layers): the executor matches
/// onnxruntime; each MatMul on a 2-D input is a prunable layer whose filters are the matrix's
/// columns (held as rows, given back in the file's layout to the net and the written file);
/// a plan's filter pruning zeroes whole columns in the pruned file, which onnxruntime runs as
/// our executor does, and reopened it costs what the plan predicted.
#[test]
fn matmul_weight_layers_prune_by_columns() {
    use prunescope::model::effective::{self, Cost};
    use prunescope::model::task::Task;
    use prunescope::plan::Plan;
    use prunescope::prune::Method;
    use prunescope::sensitivity::Metric;
    let path = dir_of("dense-matmul-cls").join("dense-matmul-cls.onnx");
    let net = onnx::read(&path).unwrap();
    let io = read_tensors(&dir_of("dense-matmul-cls").join("dense-matmul-cls_io.safetensors"));
    let got = net.run(vec![(net.inputs[0].name.clone(), io["a.input"].shallow_clone())], Keep::All).unwrap();
    for (key, want) in &io {
        if let Some(t) = key.strip_prefix("a.node.").or(key.strip_prefix("a.output.")) {
            assert!(max_abs(&got[t], want) <= 1e-5, "{t}");
        }
    }
    let m =
        prunescope::model::Model::open(&prunescope::model::ModelFiles::Onnx { path: path.clone(), task: None }, None)
            .unwrap();
    assert_eq!(m.task, Task::Classify { classes: 4 });
    let dense: Vec<_> = m.layers.iter().filter(|l| m.nodes[l.chain[0]].op == "MatMul").collect();
    assert_eq!(dense.len(), 2);
    assert_eq!((dense[0].weight_shape.clone(), dense[0].keys.weight.as_str()), (vec![12, 8], "dense/kernel"));
    let file: Vec<f32> = Vec::try_from(net.initializers["dense/kernel"].contiguous().flatten(0, -1)).unwrap();
    let held = &m.weights.tensors["dense/kernel"];
    for (i, j) in [(0, 0), (3, 7), (7, 11)] {
        assert_eq!(held.data[j * 8 + i], file[i * 12 + j], "row {j} of the held matrix is column {j} of the file's");
    }
    let again = m.net(&m.weights, tch::Device::Cpu).unwrap();
    let out = again.run(vec![(net.inputs[0].name.clone(), io["a.input"].shallow_clone())], Keep::Outputs).unwrap();
    assert_eq!(max_abs(&out["logits"], &got["logits"]), 0.0);
    let e = effective::effective(&m, &m.weights);
    let dense_cost: Vec<Cost> = m.nodes.iter().map(|n| Cost { params: n.params, macs: n.macs }).collect();
    assert_eq!(e.nodes, dense_cost);
    assert_eq!(e.layers, effective::dense(&m));

    let tmp = tempfile::tempdir().unwrap();
    let ids = vec![dense[0].id];
    let mut plan = Plan::new(&m, Method::L1Filter, Metric::Top1, &ids);
    plan.set(dense[0].id, 0.5, None).unwrap();
    plan.refresh_prediction(&m, None);
    let plan_file = tmp.path().join("plan.json");
    plan.write(&plan_file).unwrap();
    let pruned_file = tmp.path().join("pruned.onnx");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_prunescope"))
        .args(["prune", "--model", path.to_str().unwrap(), "--plan", plan_file.to_str().unwrap()])
        .args(["--out", pruned_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let back = onnx::read(&pruned_file).unwrap();
    let w = &back.initializers["dense/kernel"];
    assert_eq!(w.size(), vec![8, 12], "the file keeps its [in, out] layout");
    let zero_columns = (0..12).filter(|&j| w.select(1, j).abs().max().double_value(&[]) == 0.0).count();
    assert_eq!(zero_columns, 6);
    let d = ours_against_onnxruntime(&back, &pruned_file, tmp.path());
    assert!(d <= 1e-5, "onnxruntime and our executor differ by {d} on the pruned file");
    let reopened = prunescope::model::Model::open(&m.files.with_weights(&pruned_file), None).unwrap();
    let e = effective::effective(&reopened, &reopened.weights);
    assert_eq!(e.total().params, plan.predicted.params_after);
    assert!(plan.predicted.params_after < plan.predicted.params_before);
}
