//! `prunescope inspect`: the per-layer cost table of a cfg.

use crate::model::ir::exec::Keep;
use crate::model::{parse_device, Cfg, Graph, Layout, Source, Weights};
use crate::prune::stats::{Cut, LayerStats};
use crate::prune::Method;
use crate::report::thousands;
use crate::sensitivity::DEFAULT_SPARSITIES;
use anyhow::Context;
use serde::Serialize;
use std::path::PathBuf;
use tch::Device;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["model", "cfg"])))]
pub struct Args {
    /// An ONNX model: its nodes (ONNX names), parameters, MACs, the thop total, metadata.
    #[arg(long, conflicts_with_all = ["cfg", "weights", "latency", "layer", "batch"])]
    pub model: Option<PathBuf>,
    /// Darknet cfg file.
    #[arg(long)]
    pub cfg: Option<PathBuf>,
    /// Weights to check against the cfg (.weights, .pth or .safetensors); adds non-zero counts.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Square input size (a multiple of 32); default: the cfg's width and height.
    #[arg(long, value_parser = crate::quantity::img_size)]
    pub img_size: Option<u32>,
    /// Batch size the MACs are counted for.
    #[arg(long, default_value_t = 1, value_parser = crate::quantity::batch)]
    pub batch: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Time N forward passes of a random batch (needs --weights); 0 skips the measurement.
    #[arg(long, default_value_t = 0, value_parser = crate::quantity::runs)]
    pub latency: usize,
    /// Device for --latency: cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Weight statistics of these convolutions (comma-separated, needs --weights): the |w|
    /// histogram, filter norms and what each sparsity removes under each method.
    #[arg(long, value_delimiter = ',', requires = "weights")]
    pub layer: Vec<String>,
}

/// One layer's statistics with what the default sparsities remove under each method.
#[derive(Serialize)]
struct LayerWeights {
    #[serde(flatten)]
    stats: LayerStats,
    cuts: Vec<MethodCuts>,
}

#[derive(Serialize)]
struct MethodCuts {
    method: Method,
    cuts: Vec<Cut>,
}

/// Forward-pass timing of one batch.
#[derive(Serialize)]
struct Latency {
    device: String,
    runs: usize,
    batch: usize,
    median_ms: f64,
    mean_ms: f64,
    min_ms: f64,
}

#[derive(Serialize)]
struct LayerRow {
    index: usize,
    name: String,
    kind: &'static str,
    inputs: Vec<String>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    params: u64,
    macs: u64,
    macs_percent: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonzero_params: Option<u64>,
}

#[derive(Serialize)]
struct Report {
    format: &'static str,
    cfg: String,
    input_shape: Vec<usize>,
    macs_convention: &'static str,
    layers: Vec<LayerRow>,
    total_params: u64,
    total_macs: u64,
    total_conv_macs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_nonzero_params: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    layer_weights: Vec<LayerWeights>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let cfg_path = match (&args.model, &args.cfg) {
        (Some(model), _) => return run_onnx(args, model),
        (None, Some(cfg)) => cfg,
        (None, None) => anyhow::bail!("give --model M.onnx or --cfg C"),
    };
    let cfg = Cfg::from_file(cfg_path)?;
    let (h, w) = match args.img_size {
        Some(s) => (s as usize, s as usize),
        None => (cfg.height, cfg.width),
    };
    let graph = Graph::build(&cfg, args.batch, h, w)?;
    if args.latency > 0 && args.weights.is_none() {
        anyhow::bail!("--latency needs --weights: the forward pass runs the real model");
    }
    let device = parse_device(&args.device)?;
    let mut latency = None;
    let mut layer_weights = Vec::new();
    let nonzero = match &args.weights {
        Some(path) => {
            let layout = Layout::of(&cfg, &graph);
            let weights =
                Weights::load(path, &layout).with_context(|| format!("loading weights for {}", cfg_path.display()))?;
            if args.latency > 0 {
                latency = Some(measure_latency(&cfg, &graph, &weights, cfg_path, device, args.latency)?);
            }
            for name in &args.layer {
                let keys = crate::plan::suggest::block_of(name).and_then(|b| layout.conv(b)).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--layer {name}: {} has no convolution of that name (they are conv_{{block}}: {})",
                        cfg_path.display(),
                        layout.convs.iter().map(|k| format!("conv_{}", k.block)).collect::<Vec<_>>().join(", ")
                    )
                })?;
                let stats = LayerStats::of(&weights, keys, 20)?;
                let cuts = [Method::L1, Method::L1Filter, Method::L2Filter]
                    .into_iter()
                    .map(|m| MethodCuts {
                        method: m,
                        cuts: DEFAULT_SPARSITIES.iter().map(|&s| stats.cut(m, s)).collect(),
                    })
                    .collect();
                layer_weights.push(LayerWeights { stats, cuts });
            }
            let mut per_block = vec![0u64; graph.nodes.len()];
            for c in &layout.convs {
                let mut keys = vec![&c.weight];
                keys.extend(c.bias.iter());
                if let Some(bn) = &c.bn {
                    keys.extend(&bn[..2]);
                }
                per_block[c.block] = keys.iter().map(|k| weights.get(k).count_nonzero() as u64).sum();
            }
            Some(per_block)
        }
        None => None,
    };
    let report = Report {
        format: "prunescope.inspect/1",
        cfg: cfg_path.display().to_string(),
        input_shape: graph.input_shape.clone(),
        macs_convention: "ptflops",
        layers: graph
            .nodes
            .iter()
            .map(|n| LayerRow {
                index: n.index,
                name: n.name.clone(),
                kind: n.kind,
                inputs: n
                    .inputs
                    .iter()
                    .map(|s| match s {
                        Source::Image => "input".to_string(),
                        Source::Block(j) => j.to_string(),
                    })
                    .collect(),
                input_shape: n.input_shape.clone(),
                output_shape: n.output_shape.clone(),
                params: n.params,
                macs: n.macs,
                macs_percent: graph.macs_percent(n.index),
                nonzero_params: nonzero.as_ref().map(|v| v[n.index]),
            })
            .collect(),
        total_params: graph.total_params(),
        total_macs: graph.total_macs(),
        total_conv_macs: graph.total_conv_macs(),
        total_nonzero_params: nonzero.as_ref().map(|v| v.iter().sum()),
        latency,
        layer_weights,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
        for l in &report.layer_weights {
            print!("{}", layer_table(l));
        }
    }
    Ok(())
}

/// A layer's |w| histogram as text bars and what each sparsity removes per method.
fn layer_table(l: &LayerWeights) -> String {
    use std::fmt::Write;
    let st = &l.stats;
    let mut s = String::new();
    let _ = writeln!(s, "\n{}: {} weights in {} filters", st.layer, thousands(st.weights as u64, ','), st.filters());
    let most = st.histogram.iter().copied().max().unwrap_or(0).max(1);
    for (i, &c) in st.histogram.iter().enumerate() {
        let bar = "#".repeat(((c as f64 / most as f64) * 50.0).round() as usize);
        let (lo, hi) = (i as f64 * st.bin_width, (i + 1) as f64 * st.bin_width);
        let _ = writeln!(s, "  |w| {lo:>9.5} – {hi:<9.5} {c:>10} {bar}");
    }
    let _ = writeln!(
        s,
        "  {:>8}  {:>12} {:>10}  {:>16} {:>10}  {:>16} {:>10}",
        "sparsity", "l1: weights", "|w| ≤", "l1-filter: filt.", "L1 ≤", "l2-filter: filt.", "L2 ≤"
    );
    for (i, sp) in DEFAULT_SPARSITIES.iter().enumerate() {
        let [a, b, c] = [&l.cuts[0].cuts[i], &l.cuts[1].cuts[i], &l.cuts[2].cuts[i]];
        let _ = writeln!(
            s,
            "  {:>7.0}%  {:>12} {:>10.5}  {:>16} {:>10.4}  {:>16} {:>10.4}",
            sp * 100.0,
            thousands(a.weights as u64, ','),
            a.threshold,
            b.filters,
            b.threshold,
            c.filters,
            c.threshold
        );
    }
    s
}

fn table(r: &Report) -> String {
    use std::fmt::Write;
    let with_nz = r.total_nonzero_params.is_some();
    let mut s = String::new();
    let shape = |v: &[usize]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let _ = writeln!(s, "{}  input {}  (MACs, ptflops convention)", r.cfg, shape(&r.input_shape));
    let _ = write!(
        s,
        "{:>4}  {:<14} {:<14} {:<10} {:<18} {:>12} {:>10} {:>8}",
        "#", "name", "type", "from", "output shape", "params", "GMac", "% MACs"
    );
    if with_nz {
        let _ = write!(s, " {:>12} {:>9}", "non-zero", "sparsity");
    }
    s.push('\n');
    for l in &r.layers {
        let _ = write!(
            s,
            "{:>4}  {:<14} {:<14} {:<10} {:<18} {:>12} {:>10.4} {:>8.2}",
            l.index,
            l.name,
            l.kind,
            l.inputs.join(","),
            shape(&l.output_shape),
            thousands(l.params, ','),
            l.macs as f64 / 1e9,
            l.macs_percent
        );
        if let Some(nz) = l.nonzero_params {
            if l.params > 0 {
                let _ = write!(s, " {:>12} {:>8.2}%", thousands(nz, ','), 100.0 * (1.0 - nz as f64 / l.params as f64));
            }
        }
        s.push('\n');
    }
    let _ = writeln!(s, "total params      {:>16}", thousands(r.total_params, ','));
    if let Some(nz) = r.total_nonzero_params {
        let _ = writeln!(
            s,
            "non-zero params   {:>16}  (sparsity {:.2}%)",
            thousands(nz, ','),
            100.0 * (1.0 - nz as f64 / r.total_params.max(1) as f64)
        );
    }
    let _ =
        writeln!(s, "total MACs        {:>16}  ({:.3} GMac)", thousands(r.total_macs, ','), r.total_macs as f64 / 1e9);
    let _ = writeln!(
        s,
        "convolution MACs  {:>16}  ({:.3} GMac)",
        thousands(r.total_conv_macs, ','),
        r.total_conv_macs as f64 / 1e9
    );
    if let Some(l) = &r.latency {
        let _ = writeln!(
            s,
            "forward latency   {:>13.2} ms  median of {} runs, batch {} on {} (mean {:.2}, min {:.2})",
            l.median_ms, l.runs, l.batch, l.device, l.mean_ms, l.min_ms
        );
    }
    s
}

/// Times forward passes of a uniform-random batch after one warm-up pass, through the IR
/// executor every later step runs.
fn measure_latency(
    cfg: &Cfg,
    graph: &Graph,
    weights: &Weights,
    path: &std::path::Path,
    device: Device,
    runs: usize,
) -> anyhow::Result<Latency> {
    let mut net = crate::model::darknet::to_net(cfg, graph, weights, path)?;
    net.to_device(device);
    let shape: Vec<i64> = graph.input_shape.iter().map(|&d| d as i64).collect();
    let x = tch::Tensor::f_rand(&shape, (tch::Kind::Float, device))?;
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let feed = || vec![(net.inputs[0].name.clone(), x.shallow_clone())];
    let _ = net.run(feed(), Keep::Outputs)?;
    sync();
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        let _ = net.run(feed(), Keep::Outputs)?;
        sync();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Latency {
        device: format!("{device:?}").to_lowercase(),
        runs,
        batch: graph.batch,
        median_ms: sorted[runs / 2],
        mean_ms: ms.iter().sum::<f64>() / runs as f64,
        min_ms: sorted[0],
    })
}

/// One node of an ONNX model as `inspect` lists it.
#[derive(Serialize)]
struct OnnxRow {
    index: usize,
    name: String,
    op: String,
    output_shape: Vec<i64>,
    params: u64,
    macs: u64,
    thop_macs: u64,
}

#[derive(Serialize)]
struct OnnxReport {
    format: &'static str,
    model: String,
    opset: i64,
    producer: String,
    input_shape: Vec<i64>,
    /// The batch size the file fixes, if any (it runs at any batch).
    file_batch: Option<i64>,
    metadata: std::collections::BTreeMap<String, String>,
    macs_convention: &'static str,
    nodes: Vec<OnnxRow>,
    total_params: u64,
    total_macs: u64,
    /// The total as ultralytics-thop counts it (what `model.info()` reports, GFLOPs = 2× this).
    total_macs_thop: u64,
}

fn run_onnx(args: &Args, path: &std::path::Path) -> anyhow::Result<()> {
    let model = crate::model::onnx::read(path)?;
    let shape = model.input_shape(args.img_size.map(i64::from))?;
    let costs = model.costs(&shape)?;
    let nodes: Vec<OnnxRow> = model
        .nodes
        .iter()
        .zip(&costs)
        .enumerate()
        .map(|(index, (n, c))| OnnxRow {
            index,
            name: n.name.clone(),
            op: n.op.clone(),
            output_shape: c.output_shape.clone(),
            params: c.params,
            macs: c.macs,
            thop_macs: c.thop_macs,
        })
        .collect();
    let report = OnnxReport {
        format: "prunescope.inspect/1",
        model: path.display().to_string(),
        opset: model.opset,
        producer: model.producer.clone(),
        input_shape: shape,
        file_batch: model.file_batch,
        metadata: model.metadata.clone(),
        macs_convention: "ptflops",
        total_params: costs.iter().map(|c| c.params).sum(),
        total_macs: costs.iter().map(|c| c.macs).sum(),
        total_macs_thop: costs.iter().map(|c| c.thop_macs).sum(),
        nodes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", onnx_table(&report));
    }
    Ok(())
}

fn onnx_table(r: &OnnxReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} (opset {}, {}), input {:?}",
        r.model,
        r.opset,
        if r.producer.is_empty() { "unknown producer" } else { &r.producer },
        r.input_shape
    );
    if let Some(b) = r.file_batch {
        let _ = writeln!(s, "exported at batch {b}; runs at any batch");
    }
    if let Some(u) = crate::model::onnx::ultralytics::Ultralytics::of(&r.metadata) {
        let show = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "Ultralytics {} model: {} classes ({}), input {}, stride {}{}",
            show(u.task.clone()),
            u.names.as_ref().map(Vec::len).map(|n| n.to_string()).unwrap_or("?".into()),
            u.names.as_ref().map(|n| n.join(", ")).unwrap_or_default(),
            show(u.imgsz.map(|[h, w]| format!("{h}×{w}"))),
            show(u.stride.map(|x| x.to_string())),
            u.kpt_shape.map(|[k, d]| format!(", {k} keypoints × {d}")).unwrap_or_default()
        );
        if let Some(l) = &u.license {
            let _ = writeln!(s, "licence (from the file's metadata): {l}");
        }
    }
    let _ = writeln!(s, "\n{:>4}  {:<48} {:<18} {:>18} {:>10} {:>14}", "#", "node", "op", "output", "params", "MACs");
    for n in r.nodes.iter().filter(|n| n.params > 0 || n.macs > 0) {
        let _ = writeln!(
            s,
            "{:>4}  {:<48} {:<18} {:>18} {:>10} {:>14}",
            n.index,
            n.name,
            n.op,
            format!("{:?}", n.output_shape),
            thousands(n.params, ','),
            thousands(n.macs, ',')
        );
    }
    let _ = writeln!(
        s,
        "\ntotal: {} parameters, {} MACs (ptflops convention), {} MACs as thop counts them (Ultralytics GFLOPs {:.3})",
        thousands(r.total_params, ','),
        thousands(r.total_macs, ','),
        thousands(r.total_macs_thop, ','),
        2.0 * r.total_macs_thop as f64 / 1e9
    );
    let _ = writeln!(s, "{} nodes; only those with parameters or MACs are listed (--json lists all)", r.nodes.len());
    s
}
