//! YOLO txt layouts: images with one `class cx cy w h` line (normalised) per object in a
//! `.txt` beside each image or under the parallel `labels/` folder.
//!
//! Opening reads each file once: the description (`.data` or `data.yaml`) is parsed into a
//! [`Layout`] (class names, or where to find them, and the image sources), then the sources
//! are scanned in sorted order and each image's label read as it is met, stopping at the
//! limit.

use super::{
    clip, is_image, is_unreadable_image, read_text, unreadable_format, DataError, DetectionDataset, DetectionSample,
    GtBox, OnBad, OpenOptions, SkipReport, SourceKind, Split, MAX_CLASSES, MAX_CONFIG_BYTES, MAX_LABEL_BYTES,
    MAX_LIST_BYTES,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, ScanError, Scanner, TokenType};
use yaml_rust2::{Yaml, YamlLoader};

/// Where a split's images come from: a folder (scanned) or a list file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSource {
    pub path: PathBuf,
    /// The description key that named it (`val`, `valid`, ...), for messages.
    pub key: Option<&'static str>,
    pub line: Option<usize>,
}

/// The class names of a layout, or where to find them.
#[derive(Debug, Clone, PartialEq)]
pub enum Names {
    Given(Vec<String>),
    /// A names file (Darknet `names=`), named at `line` of the description; `count` is the
    /// declared `classes=`.
    File {
        file: PathBuf,
        line: usize,
        count: Option<usize>,
    },
    /// `classes.txt` / `obj.names` / `classes.names` in `dir`, else `class0..` for `count`
    /// (or the caller's class count).
    Find {
        dir: PathBuf,
        count: Option<usize>,
    },
}

/// What a dataset description says.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub names: Names,
    pub sources: Vec<ImageSource>,
    /// Keypoints per object and values per keypoint (`kpt_shape` of a pose `data.yaml`):
    /// label lines then carry that many values after the box.
    pub kpt_shape: Option<[usize; 2]>,
}

/// Opens a YOLO-layout dataset of the given kind (decided by [`SourceKind::of`]).
pub(crate) fn open(path: &Path, kind: SourceKind, opts: &OpenOptions) -> Result<DetectionDataset, DataError> {
    let parent = || path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let layout = match kind {
        SourceKind::Folder => {
            // A dataset root with images/ is read from there so labels/ is not scanned.
            let images_dir = path.join("images");
            let root = if images_dir.is_dir() { images_dir } else { path.to_path_buf() };
            Layout {
                names: Names::Find { dir: path.to_path_buf(), count: None },
                sources: vec![ImageSource { path: root, key: None, line: None }],
                kpt_shape: None,
            }
        }
        SourceKind::ImageList => Layout {
            names: Names::Find { dir: parent(), count: None },
            sources: vec![ImageSource { path: path.to_path_buf(), key: None, line: None }],
            kpt_shape: None,
        },
        SourceKind::DarknetData => parse_darknet_data(path, &read_text(path, MAX_CONFIG_BYTES)?, opts.split)?,
        SourceKind::UltralyticsYaml => parse_data_yaml(path, &read_text(path, MAX_CONFIG_BYTES)?, opts.split)?,
        SourceKind::CocoJson => return Err(DataError::new(path, None, "a COCO json is not a YOLO layout")),
    };
    let names = resolve_names(path, layout.names.clone(), opts.classes)?;
    build(path, names, &layout, opts)
}

/// Parses a Darknet `.data` file: `valid=` or `train=` (list file or folder), `names=`,
/// `classes=`. Paths are resolved against the file's folder.
pub fn parse_darknet_data(path: &Path, text: &str, split: Split) -> Result<Layout, DataError> {
    let key = match split {
        Split::Val => "valid",
        Split::Train => "train",
    };
    let (mut valid, mut names_file, mut count) = (None, None, None);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(DataError::new(
                path,
                Some(i + 1),
                format!("expected `key = value`, found `{}`", clip(line, 80)),
            ));
        };
        match k.trim() {
            k if k == key => valid = Some((v.trim().to_string(), i + 1)),
            "names" => names_file = Some((v.trim().to_string(), i + 1)),
            "classes" => {
                let n = v.trim().parse::<usize>().ok().filter(|n| (1..=MAX_CLASSES).contains(n));
                count = Some(n.ok_or_else(|| {
                    DataError::new(
                        path,
                        Some(i + 1),
                        format!("`classes`: expected a number 1..={MAX_CLASSES}, found `{}`", clip(v.trim(), 40)),
                    )
                })?)
            }
            _ => {} // train, backup, eval, ... are not needed for evaluation
        }
    }
    let Some((valid, vline)) = valid else {
        return Err(DataError::new(path, None, format!("missing `{key} = <list file or folder>`")));
    };
    let names = match names_file {
        Some((n, line)) => Names::File { file: resolve(path, &n), line, count },
        None => Names::Find { dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(), count },
    };
    let source = ImageSource { path: resolve(path, &valid), key: Some(key), line: Some(vline) };
    Ok(Layout { names, sources: vec![source], kpt_shape: None })
}

/// Parses an Ultralytics `data.yaml`: `path` (root; the yaml's folder when absent), `val`
/// (folder, list file, or a list of them) and `names` (a list or a map index -> name).
pub fn parse_data_yaml(path: &Path, text: &str, split: Split) -> Result<Layout, DataError> {
    let doc = load_yaml(path, text)?;
    if doc.as_hash().is_none() {
        return Err(DataError::new(path, None, "expected a mapping with `path`, `val` and `names`"));
    }
    let root = match &doc["path"] {
        Yaml::String(s) => resolve(path, s),
        Yaml::BadValue | Yaml::Null => path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        other => {
            return Err(DataError::new(path, None, format!("`path`: expected a string, found {}", yaml_kind(other))))
        }
    };
    let names = match &doc["names"] {
        Yaml::Array(a) => Names::Given(
            a.iter()
                .enumerate()
                .map(|(i, y)| yaml_scalar(y).ok_or_else(|| bad_scalar(path, &format!("names[{i}]"), y)))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut pairs = Vec::new();
            for (k, v) in h {
                let Some(i) = k.as_i64().filter(|i| *i >= 0) else {
                    let k =
                        yaml_scalar(k).map(|k| format!("`{}`", clip(&k, 40))).unwrap_or_else(|| yaml_kind(k).into());
                    return Err(DataError::new(
                        path,
                        None,
                        format!("`names`: expected integer keys 0..n-1, found {k}"),
                    ));
                };
                pairs.push((i as u64, yaml_scalar(v).ok_or_else(|| bad_scalar(path, &format!("names[{i}]"), v))?));
            }
            pairs.sort();
            if pairs.iter().enumerate().any(|(i, (k, _))| i as u64 != *k) {
                return Err(DataError::new(path, None, "`names`: expected keys 0..n-1 without gaps"));
            }
            Names::Given(pairs.into_iter().map(|(_, n)| n).collect())
        }
        Yaml::BadValue | Yaml::Null => {
            let count = match &doc["nc"] {
                Yaml::BadValue | Yaml::Null => None,
                Yaml::Integer(n) if (1..=MAX_CLASSES as i64).contains(n) => Some(*n as usize),
                other => {
                    let found =
                        yaml_scalar(other).map(|s| format!("`{}`", clip(&s, 40))).unwrap_or(yaml_kind(other).into());
                    return Err(DataError::new(
                        path,
                        None,
                        format!("`nc`: expected a number 1..={MAX_CLASSES}, found {found}"),
                    ));
                }
            };
            Names::Find { dir: root.clone(), count }
        }
        other => {
            return Err(DataError::new(
                path,
                None,
                format!("`names`: expected a list or a map, found {}", yaml_kind(other)),
            ))
        }
    };
    let key = match split {
        Split::Val => "val",
        Split::Train => "train",
    };
    let vals: Vec<String> = match &doc[key] {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, y)| yaml_scalar(y).ok_or_else(|| bad_scalar(path, &format!("{key}[{i}]"), y)))
            .collect::<Result<_, _>>()?,
        _ => {
            let msg = format!("missing `{key}`: expected a folder, a list file, or a list of them");
            return Err(DataError::new(path, None, msg));
        }
    };
    let sources = vals
        .into_iter()
        .map(|v| {
            let p = if Path::new(&v).is_absolute() { PathBuf::from(&v) } else { root.join(&v) };
            ImageSource { path: p, key: Some(key), line: None }
        })
        .collect();
    let kpt_shape = match &doc["kpt_shape"] {
        Yaml::BadValue | Yaml::Null => None,
        Yaml::Array(a) if a.len() == 2 => {
            let n = |y: &Yaml| y.as_i64().filter(|v| (1..=1000).contains(v)).map(|v| v as usize);
            match (n(&a[0]), n(&a[1])) {
                (Some(k), Some(d)) if d == 2 || d == 3 => Some([k, d]),
                _ => return Err(DataError::new(path, None, "`kpt_shape`: expected [keypoints, 2 or 3], e.g. [17, 3]")),
            }
        }
        other => {
            return Err(DataError::new(
                path,
                None,
                format!("`kpt_shape`: expected [keypoints, 2 or 3], found {}", yaml_kind(other)),
            ))
        }
    };
    Ok(Layout { names, sources, kpt_shape })
}

/// Deepest nesting of a `data.yaml` (its parser recurses once per level).
pub const MAX_YAML_DEPTH: usize = 64;
/// Budget of a `data.yaml` after alias expansion: every node counts 64, every scalar its
/// bytes besides. A "billion laughs" document of a few hundred bytes exceeds it at once.
pub const MAX_YAML_COST: u64 = 16 << 20;
const YAML_NODE_COST: u64 = 64;

/// Loads the first YAML document of `text` after checking that its nesting and its size
/// with aliases expanded stay within bounds (yaml-rust2 copies an aliased node per use).
pub fn load_yaml(path: &Path, text: &str) -> Result<Yaml, DataError> {
    let not_yaml = |e: ScanError| DataError::Yaml { file: path.to_path_buf(), line: e.marker().line(), source: e };
    let checked = std::panic::catch_unwind(|| -> Result<Yaml, DataError> {
        // Nesting, from the tokens (the scanner does not recurse).
        let mut depth = 0usize;
        let mut scanner = Scanner::new(text.chars());
        for tok in &mut scanner {
            match tok.1 {
                TokenType::BlockSequenceStart
                | TokenType::BlockMappingStart
                | TokenType::FlowSequenceStart
                | TokenType::FlowMappingStart => {
                    depth += 1;
                    if depth > MAX_YAML_DEPTH {
                        return Err(DataError::new(
                            path,
                            Some(tok.0.line()),
                            format!("nested deeper than {MAX_YAML_DEPTH} levels: not a dataset description"),
                        ));
                    }
                }
                TokenType::BlockEnd | TokenType::FlowSequenceEnd | TokenType::FlowMappingEnd => {
                    depth = depth.saturating_sub(1)
                }
                _ => {}
            }
        }
        if let Some(e) = scanner.get_error() {
            return Err(not_yaml(e));
        }
        // Size with aliases expanded, from the events.
        let mut budget = YamlBudget::default();
        Parser::new_from_str(text).load(&mut budget, true).map_err(not_yaml)?;
        if let Some(line) = budget.over {
            return Err(DataError::new(
                path,
                Some(line),
                "too large once its aliases (`*name`) are expanded: refusing a YAML alias bomb",
            ));
        }
        let docs = YamlLoader::load_from_str(text).map_err(not_yaml)?;
        Ok(docs.into_iter().next().unwrap_or(Yaml::Null))
    });
    checked.unwrap_or_else(|_| Err(DataError::new(path, None, "not valid YAML (the YAML parser failed on it)")))
}

/// Counts what loading would build, aliases expanded; `over` is the line where the budget
/// ran out.
#[derive(Default)]
struct YamlBudget {
    /// Open collections: anchor id and expanded cost so far.
    stack: Vec<(usize, u64)>,
    /// Expanded cost of each anchored node.
    anchors: HashMap<usize, u64>,
    total: u64,
    over: Option<usize>,
}

impl YamlBudget {
    /// A node of expanded `cost` is built: counted, and added to the open collection.
    fn built(&mut self, anchor: usize, cost: u64, mark: &Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, cost);
        }
        if let Some(top) = self.stack.last_mut() {
            top.1 = top.1.saturating_add(cost);
        }
        if self.total > MAX_YAML_COST && self.over.is_none() {
            self.over = Some(mark.line());
        }
    }
}

impl MarkedEventReceiver for YamlBudget {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(v, _, anchor, _) => {
                let cost = YAML_NODE_COST + v.len() as u64;
                self.total = self.total.saturating_add(cost);
                self.built(anchor, cost, &mark);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.total = self.total.saturating_add(YAML_NODE_COST);
                self.stack.push((anchor, YAML_NODE_COST));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, cost)) = self.stack.pop() {
                    self.built(anchor, cost, &mark);
                }
            }
            Event::Alias(id) => {
                // yaml-rust2 copies the anchored node here.
                let cost = self.anchors.get(&id).copied().unwrap_or(YAML_NODE_COST);
                self.total = self.total.saturating_add(cost);
                self.built(0, cost, &mark);
            }
            _ => {}
        }
    }
}

fn yaml_scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Real(_) => "a number",
        Yaml::Integer(_) => "an integer",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Alias(_) => "an alias",
        Yaml::Null => "null",
        Yaml::BadValue => "an invalid value",
    }
}

fn bad_scalar(path: &Path, what: &str, y: &Yaml) -> DataError {
    DataError::new(path, None, format!("`{what}`: expected a name or a path, found {}", yaml_kind(y)))
}

/// Resolves `p` written inside `base_file`: absolute as is; relative to the file's folder
/// when that exists, else to the working directory.
fn resolve(base_file: &Path, p: &str) -> PathBuf {
    let pb = PathBuf::from(p.trim());
    if pb.is_absolute() {
        return pb;
    }
    let beside = base_file.parent().unwrap_or(Path::new(".")).join(&pb);
    // Drop `.` components so messages show clean paths.
    let clean = |p: PathBuf| -> PathBuf { p.components().collect() };
    if beside.exists() {
        clean(beside)
    } else {
        clean(pb)
    }
}

/// The class names of a layout, read once.
fn resolve_names(source: &Path, names: Names, classes: Option<usize>) -> Result<Vec<String>, DataError> {
    let read_names = |p: &Path| -> Result<Vec<String>, DataError> {
        let t = read_text(p, MAX_CONFIG_BYTES)?;
        Ok(t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
    };
    let names =
        match names {
            Names::Given(n) => n,
            Names::File { file, line, count } => {
                if !file.is_file() {
                    return Err(DataError::new(
                        source,
                        Some(line),
                        format!("`names`: cannot read {}: not a file", file.display()),
                    ));
                }
                let names = read_names(&file)?;
                if let Some(c) = count {
                    if c != names.len() {
                        return Err(DataError::new(
                            source,
                            None,
                            format!("`classes={c}` but the names file lists {} names", names.len()),
                        ));
                    }
                }
                names
            }
            Names::Find { dir, count } => {
                match ["classes.txt", "obj.names", "classes.names"].iter().map(|c| dir.join(c)).find(|p| p.is_file()) {
                    Some(p) => read_names(&p)?,
                    None => match count.or(classes) {
                        Some(n) if n <= MAX_CLASSES => (0..n).map(|i| format!("class{i}")).collect(),
                        Some(n) => {
                            return Err(DataError::new(
                                source,
                                None,
                                format!("{n} classes: expected at most {MAX_CLASSES}"),
                            ))
                        }
                        None => return Err(DataError::new(
                            &dir,
                            None,
                            "class names unknown: add classes.txt, use a .data or data.yaml, or give the class count",
                        )),
                    },
                }
            }
        };
    if names.is_empty() {
        return Err(DataError::new(source, None, "no class names: expected at least one class"));
    }
    if names.len() > MAX_CLASSES {
        return Err(DataError::new(source, None, format!("{} classes: expected at most {MAX_CLASSES}", names.len())));
    }
    Ok(names)
}

/// Most directory entries a folder scan looks at before giving up.
pub const MAX_SCAN_ENTRIES: usize = 10_000_000;

/// Visits every image below `root` in sorted path order (the order of sorting all paths)
/// until `visit` returns false. Links to folders are followed only when they lead to a
/// folder inside `root` not visited yet: never out of the dataset, never in a loop.
/// Files in formats that cannot be decoded are visited too (the caller reports them).
pub fn walk_images(root: &Path, visit: &mut dyn FnMut(PathBuf) -> Result<bool, DataError>) -> Result<(), DataError> {
    let canon_root = std::fs::canonicalize(root).map_err(|e| DataError::io(root, "cannot list the folder", e))?;
    let mut visited: HashSet<PathBuf> = HashSet::from([canon_root.clone()]);
    let mut seen = 0usize;
    let first = list_dir(root, &canon_root, &canon_root, &mut visited, &mut seen)?;
    let mut stack = vec![first.into_iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            None => {
                stack.pop();
            }
            Some((p, Some(canon))) => {
                let entries = list_dir(&p, &canon, &canon_root, &mut visited, &mut seen)?;
                stack.push(entries.into_iter());
            }
            Some((p, None)) => {
                if !visit(p)? {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The entries of `dir` worth visiting, sorted: images (no folder) and folders to enter
/// (with their canonical path).
fn list_dir(
    dir: &Path,
    canon_dir: &Path,
    canon_root: &Path,
    visited: &mut HashSet<PathBuf>,
    seen: &mut usize,
) -> Result<Vec<(PathBuf, Option<PathBuf>)>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "cannot list the folder", e))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        *seen += 1;
        if *seen > MAX_SCAN_ENTRIES {
            return Err(DataError::new(
                canon_root,
                None,
                format!("more than {MAX_SCAN_ENTRIES} files and folders below: is this the dataset folder?"),
            ));
        }
        let p = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            let canon = canon_dir.join(entry.file_name());
            if visited.insert(canon.clone()) {
                out.push((p, Some(canon)));
            }
        } else if ft.is_symlink() {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => {
                    if let Ok(target) = std::fs::canonicalize(&p) {
                        if target.starts_with(canon_root) && visited.insert(target.clone()) {
                            out.push((p, Some(target)));
                        }
                    }
                }
                _ => {
                    if is_image(&p) || is_unreadable_image(&p) {
                        out.push((p, None));
                    }
                }
            }
        } else if is_image(&p) || is_unreadable_image(&p) {
            out.push((p, None));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Parses an image list: one path per line (blank lines and `#` comments skipped), each
/// resolved against the list's folder.
pub fn parse_list(path: &Path, text: &str) -> Vec<PathBuf> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| resolve(path, l)).collect()
}

/// The label file of an image: the last `/images/` replaced by `/labels/` (Ultralytics,
/// Darknet) when that exists, else a `.txt` beside the image.
pub fn label_path(image: &Path) -> Option<PathBuf> {
    let s = image.to_string_lossy();
    let sep = std::path::MAIN_SEPARATOR;
    let pat = format!("{sep}images{sep}");
    if let Some(pos) = s.rfind(&pat) {
        let swapped =
            PathBuf::from(format!("{}{sep}labels{sep}{}", &s[..pos], &s[pos + pat.len()..])).with_extension("txt");
        if swapped.is_file() {
            return Some(swapped);
        }
    }
    let beside = image.with_extension("txt");
    beside.is_file().then_some(beside)
}

/// Parses a YOLO label file: `class cx cy w h` per line, normalised to [0, 1], then
/// `keypoint_values` numbers (a pose dataset's keypoints: read as numbers, not kept).
pub fn parse_labels(
    path: &Path,
    text: &str,
    num_classes: usize,
    keypoint_values: usize,
) -> Result<Vec<GtBox>, DataError> {
    let mut boxes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let err = |m: String| DataError::new(path, Some(i + 1), m);
        let shown = || clip(line, 80);
        let all: Vec<&str> = line.split_whitespace().collect();
        if all.len() != 5 + keypoint_values {
            let want = if keypoint_values == 0 {
                "5 values `class cx cy w h`".to_string()
            } else {
                format!(
                    "{} values `class cx cy w h` and {keypoint_values} keypoint values (kpt_shape)",
                    5 + keypoint_values
                )
            };
            return Err(err(format!("expected {want}, found {}: `{}`", all.len(), shown())));
        }
        if let Some(bad) = all[5..].iter().find(|f| f.parse::<f64>().map_or(true, |v| !v.is_finite())) {
            return Err(err(format!("keypoint value `{}`: expected a number", clip(bad, 40))));
        }
        let fields = &all[..5];
        let nums: Vec<f64> = fields
            .iter()
            .map(|f| {
                f.parse::<f64>()
                    .map_err(|_| err(format!("expected a number, found `{}` in `{}`", clip(f, 40), shown())))
            })
            .collect::<Result<_, _>>()?;
        let c = nums[0];
        if !c.is_finite() || c < 0.0 || c.fract() != 0.0 {
            return Err(err(format!("class `{}`: expected a non-negative integer", clip(fields[0], 40))));
        }
        if c >= num_classes as f64 {
            return Err(err(format!(
                "unknown class id {}: expected 0..{} ({num_classes} classes)",
                clip(fields[0], 40),
                num_classes.saturating_sub(1)
            )));
        }
        let class = c as usize;
        let coords = [nums[1], nums[2], nums[3], nums[4]];
        if coords.iter().any(|v| !(0.0..=1.0).contains(v)) {
            let shown: Vec<String> = fields[1..].iter().map(|f| clip(f, 20)).collect();
            return Err(err(format!("coordinates {shown:?}: expected normalised values in [0, 1]")));
        }
        if coords[2] <= 0.0 || coords[3] <= 0.0 {
            return Err(err(format!(
                "box size {} x {}: expected a positive width and height",
                clip(fields[3], 20),
                clip(fields[4], 20)
            )));
        }
        boxes.push(GtBox { class, coords, normalized: true, crowd: false });
    }
    Ok(boxes)
}

/// Reads and parses the label file of `image` (none: background).
pub fn read_labels(image: &Path, num_classes: usize, keypoint_values: usize) -> Result<Option<Vec<GtBox>>, DataError> {
    match label_path(image) {
        None => Ok(None),
        Some(lp) => parse_labels(&lp, &read_text(&lp, MAX_LABEL_BYTES)?, num_classes, keypoint_values).map(Some),
    }
}

/// Samples gathered image by image, up to the limit.
struct Builder {
    num_classes: usize,
    keypoint_values: usize,
    on_bad: OnBad,
    limit: usize,
    samples: Vec<DetectionSample>,
    skipped: SkipReport,
    unlabelled: usize,
}

impl Builder {
    fn full(&self) -> bool {
        self.samples.len() >= self.limit
    }

    /// Adds one image; false once the limit is reached.
    fn add(&mut self, image: PathBuf) -> Result<bool, DataError> {
        if self.full() {
            return Ok(false);
        }
        if is_unreadable_image(&image) {
            self.skipped.handle(self.on_bad, unreadable_format(&image))?;
            return Ok(true);
        }
        if !image.is_file() {
            self.skipped.handle(self.on_bad, DataError::new(&image, None, "image file not found"))?;
            return Ok(true);
        }
        match read_labels(&image, self.num_classes, self.keypoint_values) {
            Ok(None) => {
                self.unlabelled += 1;
                self.samples.push(DetectionSample { image, boxes: Vec::new(), coco_id: None });
            }
            Ok(Some(boxes)) => self.samples.push(DetectionSample { image, boxes, coco_id: None }),
            Err(e) => self.skipped.handle(self.on_bad, e)?,
        }
        Ok(!self.full())
    }
}

fn build(
    source: &Path,
    names: Vec<String>,
    layout: &Layout,
    opts: &OpenOptions,
) -> Result<DetectionDataset, DataError> {
    let sources = &layout.sources;
    let mut b = Builder {
        num_classes: names.len(),
        keypoint_values: layout.kpt_shape.map(|[k, d]| k * d).unwrap_or(0),
        on_bad: opts.on_bad,
        limit: opts.limit.unwrap_or(usize::MAX),
        samples: Vec::new(),
        skipped: SkipReport::default(),
        unlabelled: 0,
    };
    for src in sources {
        if b.full() {
            break;
        }
        let p = &src.path;
        if p.is_dir() {
            walk_images(p, &mut |img| b.add(img))?;
        } else if p.is_file() {
            for img in parse_list(p, &read_text(p, MAX_LIST_BYTES)?) {
                if !b.add(img)? {
                    break;
                }
            }
        } else {
            let what = src.key.map(|k| format!("`{k}`: ")).unwrap_or_default();
            return Err(DataError::new(
                source,
                src.line,
                format!("{what}{} is neither a folder nor a list file", p.display()),
            ));
        }
    }
    if b.samples.is_empty() {
        let why = if b.skipped.is_empty() { String::new() } else { format!(" ({})", b.skipped.summary(3)) };
        return Err(DataError::new(source, None, format!("no usable images found{why}")));
    }
    let Builder { samples, skipped, unlabelled, .. } = b;
    Ok(DetectionDataset { source: source.to_path_buf(), names, samples, skipped, unlabelled, coco: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load_rgb, DetectionDataset};

    fn png(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 6, image::Rgb([200, 10, 10])).save(p).unwrap();
    }

    fn opts(on_bad: OnBad, limit: Option<usize>) -> OpenOptions {
        OpenOptions { classes: Some(2), on_bad, limit, ..Default::default() }
    }

    #[test]
    fn the_source_kind_is_decided_once_from_the_path() {
        let d = tempfile::tempdir().unwrap();
        for (name, kind) in [
            ("a.yaml", SourceKind::UltralyticsYaml),
            ("a.YML", SourceKind::UltralyticsYaml),
            ("a.data", SourceKind::DarknetData),
            ("a.json", SourceKind::CocoJson),
            ("a.txt", SourceKind::ImageList),
        ] {
            std::fs::write(d.path().join(name), "").unwrap();
            assert_eq!(SourceKind::of(&d.path().join(name)).unwrap(), kind);
        }
        assert_eq!(SourceKind::of(d.path()).unwrap(), SourceKind::Folder);
        std::fs::write(d.path().join("a.csv"), "").unwrap();
        assert!(SourceKind::of(&d.path().join("a.csv"))
            .unwrap_err()
            .to_string()
            .contains("unknown dataset file `.csv`"));
    }

    #[test]
    fn a_bom_is_accepted_and_invalid_utf8_names_the_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("images/val/a.png"));
        std::fs::create_dir_all(d.path().join("labels/val")).unwrap();
        std::fs::write(d.path().join("labels/val/a.txt"), b"\xEF\xBB\xBF0 0.5 0.5 0.2 0.2\n").unwrap();
        let yaml = d.path().join("data.yaml");
        std::fs::write(&yaml, b"\xEF\xBB\xBFval: images/val\nnames: [a, b]\n").unwrap();
        let ds = DetectionDataset::open(&yaml, None, OnBad::Error).unwrap();
        assert_eq!((ds.names.len(), ds.samples[0].boxes.len()), (2, 1));
        // One Latin-1 byte (é) in the yaml, on line 2.
        std::fs::write(&yaml, b"val: images/val\nnames: [caf\xE9, b]\n").unwrap();
        let e = DetectionDataset::open(&yaml, None, OnBad::Error).unwrap_err().to_string();
        assert!(e.contains("data.yaml:2: not UTF-8 (byte 0xE9 at column 12)"), "{e}");
        // ... and in a label file, on line 2: strict stops, the default skips and says why.
        std::fs::write(&yaml, b"val: images/val\nnames: [a, b]\n").unwrap();
        std::fs::write(d.path().join("labels/val/a.txt"), b"0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2 \xFF\n").unwrap();
        let e = DetectionDataset::open(&yaml, None, OnBad::Error).unwrap_err().to_string();
        assert!(e.contains("labels/val/a.txt:2: not UTF-8"), "{e}");
        let e = DetectionDataset::open(&yaml, None, OnBad::Skip).unwrap_err().to_string();
        assert!(e.contains("no usable images found") && e.contains("a.txt:2: not UTF-8"), "{e}");
    }

    #[test]
    fn a_yaml_alias_bomb_or_deep_nesting_is_refused_quickly() {
        // The "billion laughs": 9 levels of 9 aliases each, 9^9 strings once expanded.
        let mut bomb =
            String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
        for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            let refs = vec![format!("*{prev}"); 9].join(",");
            bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        assert!(bomb.len() < 600, "{}", bomb.len());
        let t = std::time::Instant::now();
        let e = parse_data_yaml(Path::new("bomb.yaml"), &bomb, Split::Val).unwrap_err().to_string();
        assert!(e.starts_with("bomb.yaml:") && e.contains("alias bomb"), "{e}");
        assert!(t.elapsed().as_secs_f64() < 2.0);
        // A few aliases are fine.
        let ok = "n: &n [a, b]\nnames: *n\nval: images\n";
        assert_eq!(
            parse_data_yaml(Path::new("ok.yaml"), ok, Split::Val).unwrap().names,
            Names::Given(vec!["a".into(), "b".into()])
        );
        for deep in ["[".repeat(200_000), "- ".repeat(200_000) + "x", "{a: ".repeat(100_000)] {
            let e = parse_data_yaml(Path::new("deep.yaml"), &deep, Split::Val).unwrap_err().to_string();
            assert!(e.starts_with("deep.yaml:"), "{e}");
        }
    }

    #[test]
    fn folder_links_are_followed_neither_out_of_the_dataset_nor_in_loops() {
        let d = tempfile::tempdir().unwrap();
        let val = d.path().join("ds/images/val");
        for i in 0..6 {
            png(&val.join(format!("{i}.png")));
        }
        png(&d.path().join("outside/x.png"));
        png(&d.path().join("ds/images/train/t.png"));
        let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, val.join(name)).unwrap();
        link(&d.path().join("ds"), "up"); // a parent of the scanned folder
        link(&val, "loop"); // itself
        link(Path::new(".."), "rel-up");
        link(&d.path().join("outside"), "out"); // out of the dataset
        let ds = DetectionDataset::open(&val, Some(1), OnBad::Error).unwrap();
        assert_eq!(ds.samples.len(), 6, "{:?}", ds.samples.iter().map(|s| &s.image).collect::<Vec<_>>());
        // A link to another folder inside the scanned one is read once.
        png(&val.join("sub/s.png"));
        link(&val.join("sub"), "alias-of-sub");
        let ds = DetectionDataset::open(&val, Some(1), OnBad::Error).unwrap();
        assert_eq!(ds.samples.len(), 7);
    }

    #[test]
    fn the_limit_applies_while_scanning() {
        // Images after the first two are broken (a dangling link, a list entry that does
        // not exist): in strict mode only a scan that stops at the limit succeeds.
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("a.png"));
        png(&d.path().join("b.png"));
        std::os::unix::fs::symlink(d.path().join("gone.png"), d.path().join("c.png")).unwrap();
        std::fs::create_dir(d.path().join("z")).unwrap();
        std::os::unix::fs::symlink(d.path().join("nope"), d.path().join("z/d.png")).unwrap();
        assert!(DetectionDataset::open_with(d.path(), opts(OnBad::Error, None)).is_err());
        let ds = DetectionDataset::open_with(d.path(), opts(OnBad::Error, Some(2))).unwrap();
        assert_eq!(
            ds.samples.iter().map(|s| s.image.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(),
            ["a.png", "b.png"]
        );
        let list = d.path().join("list.txt");
        std::fs::write(&list, "a.png\nb.png\nmissing.png\n").unwrap();
        assert!(DetectionDataset::open_with(&list, opts(OnBad::Error, None)).is_err());
        assert_eq!(DetectionDataset::open_with(&list, opts(OnBad::Error, Some(2))).unwrap().samples.len(), 2);
        // Under Skip the limit counts usable images.
        let ds = DetectionDataset::open_with(&list, opts(OnBad::Skip, Some(5))).unwrap();
        assert_eq!((ds.samples.len(), ds.skipped.len()), (2, 1));
    }

    #[test]
    fn webp_and_tiff_are_read_and_unreadable_formats_are_named() {
        let d = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 5]));
        img.save(d.path().join("a.png")).unwrap();
        img.save(d.path().join("b.tiff")).unwrap();
        img.save(d.path().join("c.TIF")).unwrap();
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .encode(img.as_raw(), 9, 7, image::ExtendedColorType::Rgb8)
            .unwrap();
        std::fs::write(d.path().join("d.webp"), webp).unwrap();
        for n in ["b.tiff", "c.TIF", "d.webp"] {
            assert_eq!(load_rgb(&d.path().join(n)).unwrap(), img, "{n}");
        }
        std::fs::write(d.path().join("e.heic"), b"not decodable").unwrap();
        std::fs::write(d.path().join("f.dng"), b"not decodable").unwrap();
        let ds = DetectionDataset::open_with(d.path(), opts(OnBad::Skip, None)).unwrap();
        assert_eq!(ds.samples.len(), 4);
        let summary = ds.skipped.summary(3);
        assert!(summary.starts_with("2 image(s) skipped"), "{summary}");
        assert!(summary.contains("e.heic: `.heic` images cannot be read") && summary.contains("f.dng"), "{summary}");
        let e = DetectionDataset::open_with(d.path(), opts(OnBad::Error, None)).unwrap_err().to_string();
        assert!(e.contains("e.heic"), "{e}");
    }

    #[test]
    fn huge_class_counts_are_errors_not_allocations() {
        let p = Path::new("x.data");
        let e = parse_darknet_data(p, "classes = 99999999999\nvalid = v.txt\n", Split::Val).unwrap_err().to_string();
        assert!(e.starts_with("x.data:1: `classes`: expected a number"), "{e}");
        let e = parse_data_yaml(Path::new("x.yaml"), "nc: -1\nval: v\n", Split::Val).unwrap_err().to_string();
        assert!(e.contains("x.yaml: `nc`: expected a number"), "{e}");
        let e = resolve_names(p, Names::Find { dir: "/nonexistent".into(), count: None }, Some(usize::MAX));
        assert!(e.unwrap_err().to_string().contains("expected at most"));
    }
}
