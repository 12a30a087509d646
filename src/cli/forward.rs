//! `prunescope forward`: one forward pass of an input tensor, the outputs (and every node
//! output) written to a safetensors file, to check an import against onnxruntime or PyTorch.

use crate::model::ir::exec::Keep;
use crate::model::onnx;
use crate::model::{parse_device, Cfg, Graph, Layout, Weights};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["model", "cfg"])))]
pub struct Args {
    /// An ONNX model (.onnx; its external data file beside it).
    #[arg(long, conflicts_with_all = ["cfg", "weights"])]
    pub model: Option<PathBuf>,
    /// A Darknet cfg (with --weights).
    #[arg(long, requires = "weights")]
    pub cfg: Option<PathBuf>,
    /// The Darknet checkpoint (.weights, .pth or .safetensors).
    #[arg(long, requires = "cfg")]
    pub weights: Option<PathBuf>,
    /// A safetensors file holding the input under the graph input's name (ONNX; `input` for
    /// Darknet), or holding one tensor, taken whatever its name: [N, C, H, W] float32.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the outputs (safetensors): each graph output under its own name
    /// (Darknet: `output`, [N, rows, 5 + classes]).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the output of every node, under its tensor name (Darknet: `block_{i}` for
    /// cfg block i, `conv_{i}` and `batch_norm_{i}` inside a convolutional block).
    #[arg(long)]
    pub all_nodes: bool,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let device = parse_device(&args.device)?;
    let mut inputs = vec![("input", &args.input)];
    let model_file = args.model.as_ref().or(args.weights.as_ref());
    if let Some(m) = model_file {
        inputs.push(("model", m));
    }
    crate::fsio::refuse_input_as_output(&args.out, &inputs.iter().map(|(k, p)| (*k, p.as_path())).collect::<Vec<_>>())?;
    let tensors = read_input(&args.input)?;
    let outputs: BTreeMap<String, Tensor> = match (&args.model, &args.cfg, &args.weights) {
        (Some(path), _, _) => {
            let mut model = onnx::read(path)?;
            model.to_device(device);
            let name = model.inputs[0].name.clone();
            let x = pick(&tensors, &name, &args.input)?.to_device(device);
            let keep = if args.all_nodes { Keep::All } else { Keep::Outputs };
            model.run(vec![(name, x)], keep)?.into_iter().collect()
        }
        (None, Some(cfg_path), Some(weights_path)) => {
            let cfg = Cfg::from_file(cfg_path)?;
            let x = pick(&tensors, "input", &args.input)?;
            let size = x.size();
            if size.len() != 4 {
                bail!("{}: the input is {:?}; expected [N, C, H, W]", args.input.display(), size);
            }
            let graph = Graph::build(&cfg, size[0] as usize, size[2] as usize, size[3] as usize)?;
            let layout = Layout::of(&cfg, &graph);
            let weights = Weights::load(weights_path, &layout)
                .with_context(|| format!("loading weights for {}", cfg_path.display()))?;
            // The same IR and executor as ONNX models.
            let mut net = crate::model::darknet::to_net(&cfg, &graph, &weights, cfg_path)?;
            net.to_device(device);
            let keep = if args.all_nodes { Keep::All } else { Keep::Outputs };
            net.run(vec![("input".to_string(), x.to_device(device))], keep)?.into_iter().collect()
        }
        _ => bail!("give --model M.onnx, or --cfg C --weights W"),
    };
    let bytes =
        write_tensors(&outputs).with_context(|| format!("{}: cannot encode the outputs", args.out.display()))?;
    crate::fsio::write_atomic(&args.out, bytes)?;
    eprintln!("wrote {} tensors to {}", outputs.len(), args.out.display());
    Ok(())
}

/// The float tensors of a safetensors file.
fn read_input(path: &Path) -> anyhow::Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = match view.dtype() {
            safetensors::Dtype::F32 => Tensor::from_data_size(view.data(), &shape, Kind::Float),
            safetensors::Dtype::F64 => Tensor::from_data_size(view.data(), &shape, Kind::Double).to_kind(Kind::Float),
            other => bail!("{}: tensor '{name}' is {other:?}; expected float32 (or float64)", path.display()),
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// The input named `name`, or the only tensor of the file.
fn pick(tensors: &BTreeMap<String, Tensor>, name: &str, path: &Path) -> anyhow::Result<Tensor> {
    if let Some(t) = tensors.get(name) {
        return Ok(t.shallow_clone());
    }
    match tensors.values().collect::<Vec<_>>().as_slice() {
        [one] => Ok(one.shallow_clone()),
        _ => {
            let mut names: Vec<String> = tensors.keys().take(6).cloned().collect();
            if tensors.len() > names.len() {
                names.push("…".into());
            }
            bail!(
                "{}: no tensor named '{name}' and {} tensors ({}): name the input '{name}' or keep only it",
                path.display(),
                tensors.len(),
                names.join(", ")
            )
        }
    }
}

/// A safetensors file of the tensors (float32, int64 and bool as uint8, on the CPU).
fn write_tensors(tensors: &BTreeMap<String, Tensor>) -> anyhow::Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let mut data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let (dtype, bytes) = match t.kind() {
            Kind::Int64 | Kind::Int => {
                let v = Vec::<i64>::try_from(t.to_kind(Kind::Int64).reshape([-1]))?;
                (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
            Kind::Bool | Kind::Uint8 => {
                let v = Vec::<u8>::try_from(t.to_kind(Kind::Uint8).reshape([-1]))?;
                (Dtype::U8, v)
            }
            _ => {
                let v = Vec::<f32>::try_from(t.to_kind(Kind::Float).reshape([-1]))?;
                (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        };
        data.push((name.clone(), dtype, shape, bytes));
    }
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, None)?)
}
