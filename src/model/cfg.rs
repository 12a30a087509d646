//! Darknet `.cfg` parser.
//!
//! Produces a typed description of every block with the line it came from, so that later
//! stages (shape inference, weight loading) can point at the offending line too.
//! Semantics follow PyTorch-YOLOv3 where it differs from Darknet (max-pool padding,
//! size-2 stride-1 pools padded on the right and bottom), because its checkpoints and
//! outputs are the reference the tool is compared against.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A cfg error: the file, the 1-based line and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line_suffix(*.line))]
pub struct CfgError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Larger files are refused before they are read: real cfgs are a few KiB.
const MAX_CFG_BYTES: u64 = 16 << 20;

/// ":line" for errors at a line; nothing for errors about the whole file (line 0).
fn line_suffix(line: usize) -> String {
    if line > 0 {
        format!(":{line}")
    } else {
        String::new()
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
        let fail = |line: usize, message: String| CfgError { file: file.clone(), line, message };
        if path.is_dir() {
            return Err(fail(0, "is a directory: expected a Darknet .cfg text file".into()));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_CFG_BYTES + 1), &mut bytes))
            .map_err(|e| fail(0, format!("cannot read the cfg file: {e}")))?;
        if bytes.len() as u64 > MAX_CFG_BYTES {
            return Err(fail(
                0,
                format!(
                    "the file is larger than {} MiB: expected a Darknet .cfg text file (a few KiB)",
                    MAX_CFG_BYTES >> 20
                ),
            ));
        }
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&bytes);
        let text = std::str::from_utf8(body).map_err(|e| {
            let at = e.valid_up_to();
            let before = &body[..at];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            fail(
                line,
                format!(
                    "the file is not UTF-8: byte 0x{:02X} at column {column} is not valid UTF-8 (a Latin-1 or Windows-1252 character?); expected a UTF-8 or ASCII text file, re-save it as UTF-8",
                    body[at]
                ),
            )
        })?;
        Self::parse(text, &file)
    }

    /// Parses cfg text; `source` names the file in error messages.
    pub fn parse(text: &str, source: &str) -> Result<Self, CfgError> {
        // A UTF-8 byte order mark (Windows editors write one) is not part of the text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let sections = split_sections(text, source)?;
        let err = |line: usize, message: String| CfgError { file: source.to_string(), line, message };
        let Some(first) = sections.first() else {
            return Err(err(1, "empty cfg: expected a [net] section followed by layer sections".into()));
        };
        if first.name != "net" && first.name != "network" {
            return Err(err(first.line, format!("expected the first section to be [net], found [{}]", first.name)));
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
                            err(line, format!("`layers`: expected integers separated by commas, found `{item}`"))
                        })?;
                        layers.push(resolve_index(rel, index, "route `layers`", line, source)?);
                    }
                    if layers.is_empty() {
                        return Err(err(line, "`layers`: expected at least one block index".into()));
                    }
                    let groups = f.usize_or("groups", 1)?;
                    f.positive("groups", groups)?;
                    let group_id = f.usize_or("group_id", 0)?;
                    if group_id >= groups {
                        return Err(err(
                            f.line_of("group_id"),
                            format!("`group_id`: expected a value below groups={groups}, found {group_id}"),
                        ));
                    }
                    BlockKind::Route { layers, groups, group_id }
                }
                "shortcut" => {
                    let (raw, line) = f.required("from")?;
                    let rel: i64 = raw
                        .trim()
                        .parse()
                        .map_err(|_| err(line, format!("`from`: expected an integer, found `{raw}`")))?;
                    let from = resolve_index(rel, index, "shortcut `from`", line, source)?;
                    if index == 0 {
                        return Err(err(section.line, "a [shortcut] cannot be the first block: it adds the previous block's output".into()));
                    }
                    if let Some(a) = f.take("activation") {
                        if a.0 != "linear" {
                            return Err(err(a.1, format!("`activation`: only `linear` is supported for [shortcut], found `{}`", a.0)));
                        }
                    }
                    f.ignore(&["weights_type", "weights_normalization"]);
                    BlockKind::Shortcut { from }
                }
                "yolo" => parse_yolo(&mut f)?,
                other => {
                    return Err(err(
                        section.line,
                        format!(
                            "unknown section [{other}]: expected one of [convolutional], [maxpool], [upsample], [route], [shortcut], [yolo]"
                        ),
                    ))
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
                    return Err(CfgError {
                        file: self.source.clone(),
                        line: p.line,
                        message: format!(
                            "filters={} of [convolutional] block {} does not match the [yolo] head at line {}: expected {} = {} anchors x ({} classes + 5)",
                            c.filters, p.index, b.line, need, y.mask.len(), y.classes
                        ),
                    });
                }
                Some((BlockKind::Convolutional(_), _)) => {}
                _ => {
                    return Err(CfgError {
                        file: self.source.clone(),
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
        return Err(
            f.error(f.line_of("groups"), format!("`groups`: filters={filters} is not divisible by groups={groups}"))
        );
    }
    let batch_normalize = match f.usize_or("batch_normalize", 0)? {
        0 => false,
        1 => true,
        v => {
            return Err(f.error(f.line_of("batch_normalize"), format!("`batch_normalize`: expected 0 or 1, found {v}")))
        }
    };
    let activation = match f.take("activation") {
        None => Activation::Logistic, // Darknet's default
        Some((v, line)) => Activation::parse(&v).ok_or_else(|| {
            f.error(
                line,
                format!("`activation`: expected one of linear, leaky, relu, mish, swish, logistic; found `{v}`"),
            )
        })?,
    };
    if let Some((v, line)) = f.take("dilation") {
        if v != "1" {
            return Err(f.error(line, format!("`dilation`: only 1 is supported, found `{v}`")));
        }
    }
    Ok(BlockKind::Convolutional(Conv { filters, size, stride, padding, groups, batch_normalize, activation }))
}

fn parse_yolo(f: &mut Fields) -> Result<BlockKind, CfgError> {
    let classes = f.required_usize("classes")?;
    f.positive("classes", classes)?;
    let (raw, aline) = f.required("anchors")?;
    let values = parse_numbers::<f32>(&raw, "anchors", aline, f.source)?;
    if values.is_empty() || values.len() % 2 != 0 {
        return Err(
            f.error(aline, format!("`anchors`: expected pairs of numbers (w,h), found {} values", values.len()))
        );
    }
    if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(f.error(aline, format!("`anchors`: expected positive finite numbers, found `{bad}`")));
    }
    let anchors: Vec<(f32, f32)> = values.chunks(2).map(|p| (p[0], p[1])).collect();
    let num = f.usize_or("num", anchors.len())?;
    if num != anchors.len() {
        return Err(f.error(
            f.line_of("num"),
            format!("`num`: expected {} (the number of anchor pairs), found {num}", anchors.len()),
        ));
    }
    let mask = match f.take("mask") {
        Some((raw, line)) => {
            let mask = parse_numbers::<usize>(&raw, "mask", line, f.source)?;
            if let Some(bad) = mask.iter().find(|&&m| m >= anchors.len()) {
                return Err(f.error(
                    line,
                    format!("`mask`: index {bad} out of range, expected 0..{} (the anchor pairs)", anchors.len() - 1),
                ));
            }
            if mask.is_empty() {
                return Err(f.error(line, "`mask`: expected at least one anchor index".into()));
            }
            mask
        }
        None => (0..anchors.len()).collect(),
    };
    let new_coords = match f.usize_or("new_coords", 0)? {
        0 => false,
        1 => true,
        v => return Err(f.error(f.line_of("new_coords"), format!("`new_coords`: expected 0 or 1, found {v}"))),
    };
    let scale_x_y = match f.take("scale_x_y") {
        None => 1.0,
        Some((v, line)) => match v.parse::<f32>() {
            Ok(s) if s.is_finite() && s > 0.0 && s <= 16.0 => s,
            _ => {
                return Err(
                    f.error(line, format!("`scale_x_y`: expected a number in (0, 16] such as 1.05, found `{v}`"))
                )
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
        let range = if index == 0 {
            "there is no earlier block to read".to_string()
        } else {
            format!("expected a block before this one: 0..{} or -1..-{}", index - 1, index)
        };
        return Err(CfgError {
            file: source.into(),
            line,
            message: format!("{what}: index {rel} is out of range for block {index}; {range}"),
        });
    }
    Ok(abs as usize)
}

fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_numbers<T: std::str::FromStr>(raw: &str, key: &str, line: usize, source: &str) -> Result<Vec<T>, CfgError> {
    split_list(raw)
        .map(|s| {
            s.parse::<T>().map_err(|_| CfgError {
                file: source.into(),
                line,
                message: format!("`{key}`: expected numbers separated by commas, found `{s}`"),
            })
        })
        .collect()
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
        let err = |message: String| CfgError { file: source.to_string(), line: line_no, message };
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

    fn error(&self, line: usize, message: String) -> CfgError {
        CfgError { file: self.source.to_string(), line, message }
    }

    fn line_of(&self, key: &str) -> usize {
        self.lines.get(key).copied().unwrap_or(self.header_line)
    }

    fn take(&mut self, key: &'static str) -> Option<(String, usize)> {
        self.used.push(key);
        self.fields.remove(key)
    }

    fn required(&mut self, key: &'static str) -> Result<(String, usize), CfgError> {
        self.take(key)
            .ok_or_else(|| self.error(self.header_line, format!("[{}] is missing the required key `{key}`", self.name)))
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
        match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            Ok(n) => Err(self.error(line, format!("`{key}`: {n} is too large, expected at most {max}"))),
            Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                Err(self.error(line, format!("`{key}`: {v} is too large, expected at most {max}")))
            }
            Err(_) => Err(self.error(line, format!("`{key}`: expected a non-negative integer, found `{v}`"))),
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
            return Err(self.error(self.line_of(key), format!("`{key}`: expected a positive integer, found 0")));
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
            let mut known: Vec<&str> = self.used.clone();
            known.sort_unstable();
            known.dedup();
            return Err(self.error(
                *line,
                format!("unknown key `{key}` in [{}]: expected one of {}", self.name, known.join(", ")),
            ));
        }
        Ok(())
    }
}
