//! Darknet `.cfg` parser.
//!
//! Produces a typed description of every block with the line it came from, so that later
//! stages (shape inference, weight loading) can point at the offending line too.
//! Semantics follow PyTorch-YOLOv3 where it differs from Darknet (max-pool padding,
//! size-2 stride-1 pools padded on the right and bottom), because its checkpoints and
//! outputs are the reference the tool is compared against.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A cfg error: every message names the file, the 1-based line where there is one, the key or
/// section and what was expected there. An I/O failure is spelled out in the message and kept
/// as the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum CfgError {
    /// The path is a folder.
    #[error("{}: is a directory: expected a Darknet .cfg text file", path.display())]
    IsDir { path: PathBuf },
    /// The file cannot be opened or read.
    #[error("{}: cannot read the cfg file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file far larger than any cfg, refused before it is read.
    #[error(
        "{}: the file is larger than {} MiB: expected a Darknet .cfg text file (a few KiB)",
        path.display(),
        max >> 20
    )]
    TooLarge { path: PathBuf, max: u64 },
    /// Text that is not UTF-8: the line and column of the first bad byte.
    #[error(
        "{}:{line}: the file is not UTF-8: byte 0x{byte:02X} at column {column} is not valid UTF-8 (a Latin-1 or Windows-1252 character?); expected a UTF-8 or ASCII text file, re-save it as UTF-8",
        path.display()
    )]
    NotUtf8 { path: PathBuf, line: usize, column: usize, byte: u8 },
    /// A line that is neither `key=value`, a `[section]` header nor a comment, or one in the
    /// wrong place (a key before any section, a key set twice, no `[net]` first, no sections).
    #[error("{}:{line}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, message: String },
    /// A section name that is not a Darknet layer this tool knows.
    #[error(
        "{}:{line}: unknown section [{section}]: expected one of [convolutional], [maxpool], [upsample], [route], [shortcut], [yolo]",
        path.display()
    )]
    UnknownSection { path: PathBuf, line: usize, section: String },
    /// A key the section does not take (most often a typo); `known` lists the ones it takes.
    #[error("{}:{line}: unknown key `{key}` in [{section}]: expected one of {}", path.display(), known.join(", "))]
    UnknownKey { path: PathBuf, line: usize, section: String, key: String, known: Vec<String> },
    /// A required key that is absent (`line` is the section header's).
    #[error("{}:{line}: [{section}] is missing the required key `{key}`", path.display())]
    MissingKey { path: PathBuf, line: usize, section: String, key: String },
    /// A value that is not what the key takes.
    #[error("{}:{line}: `{key}`: {message}", path.display())]
    Value { path: PathBuf, line: usize, key: String, message: String },
    /// An integer above the bound real models stay far below.
    #[error("{}:{line}: `{key}`: {value} is too large, expected at most {max}", path.display())]
    TooBig { path: PathBuf, line: usize, key: String, value: String, max: usize },
    /// A route or shortcut index outside the blocks before block `block`.
    #[error(
        "{}:{line}: {what}: index {index} is out of range for block {block}; {}",
        path.display(),
        index_range(*block)
    )]
    Index { path: PathBuf, line: usize, what: String, index: i64, block: usize },
    /// Blocks that do not fit together: a head after something else than a convolution, a
    /// convolution whose filters do not match its head, a shortcut first.
    #[error("{}:{line}: {message}", path.display())]
    Structure { path: PathBuf, line: usize, message: String },
    /// Shapes that do not fit at the input size given to [`Graph::build`](super::Graph::build).
    #[error("{}:{line}: {message}", path.display())]
    Shape { path: PathBuf, line: usize, message: String },
    /// A size or cost of a block that overflows 64 bits at the input size.
    #[error(
        "{}:{line}: [{section}] block {block}: its {what} overflows at input {height}x{width}: expected sizes a real model can have",
        path.display()
    )]
    Overflow {
        path: PathBuf,
        line: usize,
        section: &'static str,
        block: usize,
        what: String,
        height: usize,
        width: usize,
    },
    /// An input size or batch the model cannot be built for, or totals that overflow.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
}

impl CfgError {
    /// The file the error is about (the name given to [`Cfg::parse`]).
    pub fn path(&self) -> &Path {
        match self {
            Self::IsDir { path }
            | Self::Read { path, .. }
            | Self::TooLarge { path, .. }
            | Self::NotUtf8 { path, .. }
            | Self::Syntax { path, .. }
            | Self::UnknownSection { path, .. }
            | Self::UnknownKey { path, .. }
            | Self::MissingKey { path, .. }
            | Self::Value { path, .. }
            | Self::TooBig { path, .. }
            | Self::Index { path, .. }
            | Self::Structure { path, .. }
            | Self::Shape { path, .. }
            | Self::Overflow { path, .. }
            | Self::Input { path, .. } => path,
        }
    }

    /// The 1-based line the error is at; None for errors about the whole file.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::IsDir { .. } | Self::Read { .. } | Self::TooLarge { .. } | Self::Input { .. } => None,
            Self::NotUtf8 { line, .. }
            | Self::Syntax { line, .. }
            | Self::UnknownSection { line, .. }
            | Self::UnknownKey { line, .. }
            | Self::MissingKey { line, .. }
            | Self::Value { line, .. }
            | Self::TooBig { line, .. }
            | Self::Index { line, .. }
            | Self::Structure { line, .. }
            | Self::Shape { line, .. }
            | Self::Overflow { line, .. } => Some(*line),
        }
    }

    /// The key the error is about, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { key, .. }
            | Self::MissingKey { key, .. }
            | Self::Value { key, .. }
            | Self::TooBig { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Larger files are refused before they are read: real cfgs are a few KiB.
const MAX_CFG_BYTES: u64 = 16 << 20;

/// The valid indices for a route or shortcut of block `index`, for messages.
fn index_range(index: usize) -> String {
    if index == 0 {
        "there is no earlier block to read".to_string()
    } else {
        format!("expected a block before this one: 0..{} or -1..-{}", index - 1, index)
    }
}

/// Activation applied after a convolution (and its batch norm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Leaky,
    Relu,
    Mish,
    Swish,
    Logistic,
}

impl Activation {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "linear" => Self::Linear,
            "leaky" => Self::Leaky,
            "relu" => Self::Relu,
            "mish" => Self::Mish,
            "swish" | "silu" => Self::Swish,
            "logistic" => Self::Logistic,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Leaky => "leaky",
            Self::Relu => "relu",
            Self::Mish => "mish",
            Self::Swish => "swish",
            Self::Logistic => "logistic",
        }
    }
}

/// A `[convolutional]` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    pub filters: usize,
    pub size: usize,
    pub stride: usize,
    /// Zero padding on each side, already resolved from `pad`/`padding`.
    pub padding: usize,
    pub groups: usize,
    pub batch_normalize: bool,
    pub activation: Activation,
}

/// A `[yolo]` detection head.
#[derive(Debug, Clone, PartialEq)]
pub struct Yolo {
    /// Indices into `anchors` used by this head.
    pub mask: Vec<usize>,
    /// All anchors of the cfg line, (w, h) in input pixels.
    pub anchors: Vec<(f32, f32)>,
    pub classes: usize,
    /// Scaled-YOLOv4 style decoding (`new_coords=1`).
    pub new_coords: bool,
    /// Darknet's `scale_x_y` (YOLOv4): box centres are `σ(t)·s − (s−1)/2` cells from the
    /// cell corner instead of `σ(t)` (1 = plain YOLOv3).
    pub scale_x_y: f32,
}

impl Yolo {
    /// The anchors this head uses, in mask order.
    pub fn head_anchors(&self) -> Vec<(f32, f32)> {
        self.mask.iter().map(|&m| self.anchors[m]).collect()
    }

    /// Values per anchor: box (4) + objectness (1) + classes.
    pub fn outputs_per_anchor(&self) -> usize {
        5 + self.classes
    }
}

/// What a block does.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockKind {
    Convolutional(Conv),
    Maxpool {
        size: usize,
        stride: usize,
    },
    Upsample {
        stride: usize,
    },
    /// Concatenates absolute block indices along channels, then keeps channel group `group_id`
    /// of `groups`.
    Route {
        layers: Vec<usize>,
        groups: usize,
        group_id: usize,
    },
    /// Adds the previous block's output and block `from` (absolute).
    Shortcut {
        from: usize,
    },
    Yolo(Yolo),
}

impl BlockKind {
    /// The cfg section name.
    pub fn section(&self) -> &'static str {
        match self {
            Self::Convolutional(_) => "convolutional",
            Self::Maxpool { .. } => "maxpool",
            Self::Upsample { .. } => "upsample",
            Self::Route { .. } => "route",
            Self::Shortcut { .. } => "shortcut",
            Self::Yolo(_) => "yolo",
        }
    }

    /// The short prefix PyTorch-YOLOv3 uses for module names (`conv_3`, `maxpool_5`, ...).
    pub fn prefix(&self) -> &'static str {
        match self {
            Self::Convolutional(_) => "conv",
            other => other.section(),
        }
    }
}

/// One block of the cfg (`[net]` excluded), with its 0-based index and header line.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub index: usize,
    pub line: usize,
    pub kind: BlockKind,
}

impl Block {
    /// PyTorch-YOLOv3's module name for this block, e.g. `conv_12`.
    pub fn name(&self) -> String {
        format!("{}_{}", self.kind.prefix(), self.index)
    }
}

/// A parsed cfg: network input and the blocks in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Cfg {
    /// The file name used in error messages.
    pub source: String,
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub blocks: Vec<Block>,
}

impl Cfg {
    /// Reads and parses a cfg file (UTF-8, a leading byte order mark is skipped).
    pub fn from_file(path: &Path) -> Result<Self, CfgError> {
        let file = path.display().to_string();
        if path.is_dir() {
            return Err(CfgError::IsDir { path: path.to_path_buf() });
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_CFG_BYTES + 1), &mut bytes))
            .map_err(|source| CfgError::Read { path: path.to_path_buf(), source })?;
        if bytes.len() as u64 > MAX_CFG_BYTES {
            return Err(CfgError::TooLarge { path: path.to_path_buf(), max: MAX_CFG_BYTES });
        }
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&bytes);
        let text = std::str::from_utf8(body).map_err(|e| {
            let at = e.valid_up_to();
            let before = &body[..at];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            CfgError::NotUtf8 { path: path.to_path_buf(), line, column, byte: body[at] }
        })?;
        Self::parse(text, &file)
    }

    /// Parses cfg text; `source` names the file in error messages.
    pub fn parse(text: &str, source: &str) -> Result<Self, CfgError> {
        // A UTF-8 byte order mark (Windows editors write one) is not part of the text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let sections = split_sections(text, source)?;
        let path = || PathBuf::from(source);
        let Some(first) = sections.first() else {
            return Err(CfgError::Syntax {
                path: path(),
                line: 1,
                message: "empty cfg: expected a [net] section followed by layer sections".into(),
            });
        };
        if first.name != "net" && first.name != "network" {
            return Err(CfgError::Syntax {
                path: path(),
                line: first.line,
                message: format!("expected the first section to be [net], found [{}]", first.name),
            });
        }
        let mut net = Fields::new(first, source);
        let width = net.usize_or("width", 416)?;
        let height = net.usize_or("height", 416)?;
        let channels = net.usize_or("channels", 3)?;
        net.positive("width", width)?;
        net.positive("height", height)?;
        net.positive("channels", channels)?;
        // [net] carries many training-only settings; they do not affect the graph.
        net.ignore_rest();

        let mut blocks: Vec<Block> = Vec::with_capacity(sections.len() - 1);
        for section in &sections[1..] {
            let index = blocks.len();
            let mut f = Fields::new(section, source);
            let kind = match section.name.as_str() {
                "convolutional" | "conv" => parse_conv(&mut f)?,
                "maxpool" | "max" => {
                    let size = f.usize_or("size", 2)?;
                    let stride = f.usize_or("stride", size)?;
                    f.positive("size", size)?;
                    f.positive("stride", stride)?;
                    BlockKind::Maxpool { size, stride }
                }
                "upsample" => {
                    let stride = f.usize_or("stride", 2)?;
                    f.positive("stride", stride)?;
                    BlockKind::Upsample { stride }
                }
                "route" => {
                    let (raw, line) = f.required("layers")?;
                    let mut layers = Vec::new();
                    for item in split_list(&raw) {
                        let rel: i64 = item.parse().map_err(|_| {
                            f.value(line, "layers", format!("expected integers separated by commas, found `{item}`"))
                        })?;
                        layers.push(resolve_index(rel, index, "route `layers`", line, source)?);
                    }
                    if layers.is_empty() {
                        return Err(f.value(line, "layers", "expected at least one block index".into()));
                    }
                    let groups = f.usize_or("groups", 1)?;
                    f.positive("groups", groups)?;
                    let group_id = f.usize_or("group_id", 0)?;
                    if group_id >= groups {
                        return Err(f.value(
                            f.line_of("group_id"),
                            "group_id",
                            format!("expected a value below groups={groups}, found {group_id}"),
                        ));
                    }
                    BlockKind::Route { layers, groups, group_id }
                }
                "shortcut" => {
                    let (raw, line) = f.required("from")?;
                    let rel: i64 = raw
                        .trim()
                        .parse()
                        .map_err(|_| f.value(line, "from", format!("expected an integer, found `{raw}`")))?;
                    let from = resolve_index(rel, index, "shortcut `from`", line, source)?;
                    if index == 0 {
                        return Err(CfgError::Structure {
                            path: path(),
                            line: section.line,
                            message: "a [shortcut] cannot be the first block: it adds the previous block's output"
                                .into(),
                        });
                    }
                    if let Some(a) = f.take("activation") {
                        if a.0 != "linear" {
                            return Err(f.value(
                                a.1,
                                "activation",
                                format!("only `linear` is supported for [shortcut], found `{}`", a.0),
                            ));
                        }
                    }
                    f.ignore(&["weights_type", "weights_normalization"]);
                    BlockKind::Shortcut { from }
                }
                "yolo" => parse_yolo(&mut f)?,
                other => {
                    return Err(CfgError::UnknownSection {
                        path: path(),
                        line: section.line,
                        section: other.to_string(),
                    })
                }
            };
            f.finish()?;
            blocks.push(Block { index, line: section.line, kind });
        }
        let cfg = Cfg { source: source.to_string(), width, height, channels, blocks };
        cfg.check_heads()?;
        Ok(cfg)
    }

    /// Every `[yolo]` must read a convolution with `len(mask) * (classes + 5)` filters.
    fn check_heads(&self) -> Result<(), CfgError> {
        for b in &self.blocks {
            let BlockKind::Yolo(y) = &b.kind else { continue };
            let need = y.mask.len().saturating_mul(y.outputs_per_anchor());
            let prev = b.index.checked_sub(1).map(|i| &self.blocks[i]);
            match prev.map(|p| (&p.kind, p)) {
                Some((BlockKind::Convolutional(c), p)) if c.filters != need => {
                    return Err(CfgError::Structure {
                        path: PathBuf::from(&self.source),
                        line: p.line,
                        message: format!(
                            "filters={} of [convolutional] block {} does not match the [yolo] head at line {}: expected {} = {} anchors x ({} classes + 5)",
                            c.filters, p.index, b.line, need, y.mask.len(), y.classes
                        ),
                    });
                }
                Some((BlockKind::Convolutional(_), _)) => {}
                _ => {
                    return Err(CfgError::Structure {
                        path: PathBuf::from(&self.source),
                        line: b.line,
                        message: "a [yolo] head must directly follow a [convolutional] block".into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Indices of the blocks that are yolo heads, in order.
    pub fn yolo_blocks(&self) -> Vec<usize> {
        self.blocks.iter().filter(|b| matches!(b.kind, BlockKind::Yolo(_))).map(|b| b.index).collect()
    }

    /// Indices of convolutions whose output feeds a yolo head directly (usually left dense).
    pub fn head_convs(&self) -> Vec<usize> {
        self.yolo_blocks().into_iter().map(|y| y - 1).collect()
    }

    /// The number of classes of the first yolo head (0 when there is none).
    pub fn classes(&self) -> usize {
        self.blocks
            .iter()
            .find_map(|b| match &b.kind {
                BlockKind::Yolo(y) => Some(y.classes),
                _ => None,
            })
            .unwrap_or(0)
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn parse_conv(f: &mut Fields) -> Result<BlockKind, CfgError> {
    let filters = f.required_usize("filters")?;
    f.positive("filters", filters)?;
    let size = f.required_usize("size")?;
    f.positive("size", size)?;
    let stride = f.usize_or("stride", 1)?;
    f.positive("stride", stride)?;
    let pad = f.usize_or("pad", 0)?;
    let explicit = f.usize_or("padding", 0)?;
    // Darknet: pad=1 means "same" padding of size/2, otherwise `padding` is used as given.
    let padding = if pad != 0 { size / 2 } else { explicit };
    let groups = f.usize_or("groups", 1)?;
    f.positive("groups", groups)?;
    if filters % groups != 0 {
        return Err(f.value(
            f.line_of("groups"),
            "groups",
            format!("filters={filters} is not divisible by groups={groups}"),
        ));
    }
    let batch_normalize = match f.usize_or("batch_normalize", 0)? {
        0 => false,
        1 => true,
        v => {
            return Err(f.value(f.line_of("batch_normalize"), "batch_normalize", format!("expected 0 or 1, found {v}")))
        }
    };
    let activation = match f.take("activation") {
        None => Activation::Logistic, // Darknet's default
        Some((v, line)) => Activation::parse(&v).ok_or_else(|| {
            f.value(
                line,
                "activation",
                format!("expected one of linear, leaky, relu, mish, swish, logistic; found `{v}`"),
            )
        })?,
    };
    if let Some((v, line)) = f.take("dilation") {
        if v != "1" {
            return Err(f.value(line, "dilation", format!("only 1 is supported, found `{v}`")));
        }
    }
    Ok(BlockKind::Convolutional(Conv { filters, size, stride, padding, groups, batch_normalize, activation }))
}

fn parse_yolo(f: &mut Fields) -> Result<BlockKind, CfgError> {
    let classes = f.required_usize("classes")?;
    f.positive("classes", classes)?;
    let (raw, aline) = f.required("anchors")?;
    let values = f.numbers::<f32>(&raw, "anchors", aline)?;
    if values.is_empty() || values.len() % 2 != 0 {
        return Err(f.value(
            aline,
            "anchors",
            format!("expected pairs of numbers (w,h), found {} values", values.len()),
        ));
    }
    if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(f.value(aline, "anchors", format!("expected positive finite numbers, found `{bad}`")));
    }
    let anchors: Vec<(f32, f32)> = values.chunks(2).map(|p| (p[0], p[1])).collect();
    let num = f.usize_or("num", anchors.len())?;
    if num != anchors.len() {
        return Err(f.value(
            f.line_of("num"),
            "num",
            format!("expected {} (the number of anchor pairs), found {num}", anchors.len()),
        ));
    }
    let mask = match f.take("mask") {
        Some((raw, line)) => {
            let mask = f.numbers::<usize>(&raw, "mask", line)?;
            if let Some(bad) = mask.iter().find(|&&m| m >= anchors.len()) {
                return Err(f.value(
                    line,
                    "mask",
                    format!("index {bad} out of range, expected 0..{} (the anchor pairs)", anchors.len() - 1),
                ));
            }
            if mask.is_empty() {
                return Err(f.value(line, "mask", "expected at least one anchor index".into()));
            }
            mask
        }
        None => (0..anchors.len()).collect(),
    };
    let new_coords = match f.usize_or("new_coords", 0)? {
        0 => false,
        1 => true,
        v => return Err(f.value(f.line_of("new_coords"), "new_coords", format!("expected 0 or 1, found {v}"))),
    };
    let scale_x_y = match f.take("scale_x_y") {
        None => 1.0,
        Some((v, line)) => match v.parse::<f32>() {
            Ok(s) if s.is_finite() && s > 0.0 && s <= 16.0 => s,
            _ => {
                return Err(f.value(
                    line,
                    "scale_x_y",
                    format!("expected a number in (0, 16] such as 1.05, found `{v}`"),
                ))
            }
        },
    };
    // Keys that only steer training (augmentation, loss and its normalisers, label
    // assignment) or Darknet's own NMS (`nms_kind`, `beta_nms`: detections here go through
    // the evaluator's NMS): they do not change the head's outputs, so they are accepted and
    // ignored. Keys that would change the decoded outputs are refused as unknown keys.
    f.ignore(&[
        "jitter",
        "ignore_thresh",
        "truth_thresh",
        "random",
        "iou_thresh",
        "iou_loss",
        "iou_normalizer",
        "cls_normalizer",
        "obj_normalizer",
        "nms_kind",
        "beta_nms",
        "max_delta",
        "resize",
        "counters_per_class",
        "label_smooth_eps",
        "iou_thresh_kind",
        "objectness_smooth",
        "focal_loss",
        "max",
    ]);
    Ok(BlockKind::Yolo(Yolo { mask, anchors, classes, new_coords, scale_x_y }))
}

fn resolve_index(rel: i64, index: usize, what: &str, line: usize, source: &str) -> Result<usize, CfgError> {
    let abs = if rel < 0 { index as i64 + rel } else { rel };
    if abs < 0 || abs >= index as i64 {
        return Err(CfgError::Index {
            path: PathBuf::from(source),
            line,
            what: what.to_string(),
            index: rel,
            block: index,
        });
    }
    Ok(abs as usize)
}

fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A raw `[section]` with its key/value lines.
struct Section {
    name: String,
    line: usize,
    /// key -> (value, line)
    fields: BTreeMap<String, (String, usize)>,
}

fn split_sections(text: &str, source: &str) -> Result<Vec<Section>, CfgError> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| CfgError::Syntax { path: PathBuf::from(source), line: line_no, message };
        // Comments start with '#' or ';' (Darknet); an inline '#' also ends the value.
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(err(format!("expected a section header like `[convolutional]`, found `{line}`")));
            };
            sections.push(Section { name: name.trim().to_ascii_lowercase(), line: line_no, fields: BTreeMap::new() });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(err(format!("expected `key=value` or a `[section]` header, found `{line}`")));
        };
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(err(format!("expected a key before `=`, found `{line}`")));
        }
        let Some(section) = sections.last_mut() else {
            return Err(err(format!("`{key}` appears before any section; expected a `[net]` header first")));
        };
        if let Some((_, first)) = section.fields.get(&key) {
            return Err(err(format!("`{key}` is set twice in [{}] (first at line {first})", section.name)));
        }
        section.fields.insert(key, (value.trim().to_string(), line_no));
    }
    Ok(sections)
}

/// Typed access to a section's fields; every key must be consumed or explicitly ignored.
struct Fields<'a> {
    name: String,
    header_line: usize,
    source: &'a str,
    fields: BTreeMap<String, (String, usize)>,
    /// Line of every key, kept after the key is consumed.
    lines: BTreeMap<String, usize>,
    used: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(s: &Section, source: &'a str) -> Self {
        let lines = s.fields.iter().map(|(k, (_, l))| (k.clone(), *l)).collect();
        Self { name: s.name.clone(), header_line: s.line, source, fields: s.fields.clone(), lines, used: Vec::new() }
    }

    /// A bad value of `key` at `line`.
    fn value(&self, line: usize, key: &str, message: String) -> CfgError {
        CfgError::Value { path: PathBuf::from(self.source), line, key: key.to_string(), message }
    }

    /// Numbers separated by commas.
    fn numbers<T: std::str::FromStr>(&self, raw: &str, key: &str, line: usize) -> Result<Vec<T>, CfgError> {
        split_list(raw)
            .map(|s| {
                s.parse::<T>()
                    .map_err(|_| self.value(line, key, format!("expected numbers separated by commas, found `{s}`")))
            })
            .collect()
    }

    fn line_of(&self, key: &str) -> usize {
        self.lines.get(key).copied().unwrap_or(self.header_line)
    }

    fn take(&mut self, key: &'static str) -> Option<(String, usize)> {
        self.used.push(key);
        self.fields.remove(key)
    }

    fn required(&mut self, key: &'static str) -> Result<(String, usize), CfgError> {
        self.take(key).ok_or_else(|| CfgError::MissingKey {
            path: PathBuf::from(self.source),
            line: self.header_line,
            section: self.name.clone(),
            key: key.to_string(),
        })
    }

    fn parse_usize(&self, key: &str, v: &str, line: usize) -> Result<usize, CfgError> {
        // Bounds far above any real model that keep absurd values (a typo, a corrupted file)
        // from reaching the shape and cost computations.
        let max: usize = match key {
            "width" | "height" => 16_384,
            "channels" => 4_096,
            "filters" | "classes" | "groups" | "group_id" => 65_536,
            "size" | "stride" | "padding" => 128,
            _ => 1 << 20,
        };
        let too_big = || CfgError::TooBig {
            path: PathBuf::from(self.source),
            line,
            key: key.to_string(),
            value: v.to_string(),
            max,
        };
        match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            Ok(_) => Err(too_big()),
            Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Err(too_big()),
            Err(_) => Err(self.value(line, key, format!("expected a non-negative integer, found `{v}`"))),
        }
    }

    fn required_usize(&mut self, key: &'static str) -> Result<usize, CfgError> {
        let (v, line) = self.required(key)?;
        self.parse_usize(key, &v, line)
    }

    fn usize_or(&mut self, key: &'static str, default: usize) -> Result<usize, CfgError> {
        match self.take(key) {
            Some((v, line)) => self.parse_usize(key, &v, line),
            None => Ok(default),
        }
    }

    fn positive(&self, key: &str, v: usize) -> Result<(), CfgError> {
        if v == 0 {
            return Err(self.value(self.line_of(key), key, "expected a positive integer, found 0".into()));
        }
        Ok(())
    }

    fn ignore(&mut self, keys: &[&'static str]) {
        for k in keys {
            self.take(k);
        }
    }

    fn ignore_rest(&mut self) {
        self.fields.clear();
    }

    /// Refuses keys that were neither used nor ignored: most often a typo.
    fn finish(self) -> Result<(), CfgError> {
        if let Some((key, (_, line))) = self.fields.iter().next() {
            let mut known: Vec<String> = self.used.iter().map(|k| k.to_string()).collect();
            known.sort_unstable();
            known.dedup();
            return Err(CfgError::UnknownKey {
                path: PathBuf::from(self.source),
                line: *line,
                section: self.name.clone(),
                key: key.clone(),
                known,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// An unreadable file: the io::Error is the source, spelled out once in the message and
    /// not repeated by the chain printer.
    #[test]
    fn read_error_keeps_the_io_error_as_source_and_prints_it_once() {
        let path = Path::new("/nonexistent/prunescope/x.cfg");
        let err = Cfg::from_file(path).unwrap_err();
        let CfgError::Read { source, .. } = &err else { panic!("expected CfgError::Read, got {err:?}") };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        let io = err.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the io::Error is the source");
        let text = crate::error::text(&err);
        assert_eq!(text, err.to_string());
        assert_eq!(text.matches(&io.to_string()).count(), 1, "{text}");
        assert!(text.starts_with("/nonexistent/prunescope/x.cfg: cannot read the cfg file: "), "{text}");
        assert_eq!(err.path(), path);
        assert_eq!(err.line(), None);
    }

    /// Parse errors can be matched on: the key, the line and the file are fields.
    #[test]
    fn value_errors_carry_file_line_and_key() {
        let err = Cfg::parse("[net]\n[convolutional]\nfilters=1\nsize=1\nactivation=gelu\n", "m.cfg").unwrap_err();
        assert!(matches!(&err, CfgError::Value { line: 5, key, .. } if key == "activation"), "{err:?}");
        assert_eq!(err.key(), Some("activation"));
        assert!(err.to_string().starts_with("m.cfg:5: `activation`: expected one of linear"), "{err}");
        let err = Cfg::parse("[net]\n[convolutional]\nfilters=1\n", "m.cfg").unwrap_err();
        assert!(matches!(&err, CfgError::MissingKey { line: 2, key, .. } if key == "size"), "{err:?}");
        let err = Cfg::parse("[net]\n[convolutional]\nfilters=99999999\nsize=1\n", "m.cfg").unwrap_err();
        assert!(matches!(&err, CfgError::TooBig { line: 3, max: 65_536, .. }), "{err:?}");
    }
}
