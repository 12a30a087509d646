//! YOLO txt layouts: images with one `class cx cy w h` line (normalised) per object in a
//! `.txt` beside each image or under the parallel `labels/` folder.

use super::{is_image, resolve, DataError, DetectionDataset, DetectionSample, GtBox, OnBad, SkipReport, Split};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// A folder: every image below it (sorted), labels found per image.
pub fn open_folder(dir: &Path, classes: Option<usize>, on_bad: OnBad) -> Result<DetectionDataset, DataError> {
    // A dataset root with images/ is read from there so labels/ is not scanned for images.
    let images_dir = dir.join("images");
    let root = if images_dir.is_dir() { images_dir } else { dir.to_path_buf() };
    let images = collect_images(&root)?;
    let names = default_names(dir, classes)?;
    build(dir, names, images, on_bad)
}

/// A text file with one image path per line.
pub fn open_list(path: &Path, classes: Option<usize>, on_bad: OnBad) -> Result<DetectionDataset, DataError> {
    let images = read_list(path)?;
    let names = default_names(path.parent().unwrap_or(Path::new(".")), classes)?;
    build(path, names, images, on_bad)
}

/// A Darknet `.data` file: `valid=` or `train=` (list file or folder), `names=`, `classes=`.
pub fn open_darknet_data(
    path: &Path,
    split: Split,
    classes: Option<usize>,
    on_bad: OnBad,
) -> Result<DetectionDataset, DataError> {
    let key = match split {
        Split::Val => "valid",
        Split::Train => "train",
    };
    let text = std::fs::read_to_string(path).map_err(|e| DataError::new(path, None, format!("cannot read: {e}")))?;
    let (mut valid, mut names_file, mut count) = (None, None, None);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(DataError::new(path, Some(i + 1), format!("expected `key = value`, found `{line}`")));
        };
        match k.trim() {
            k if k == key => valid = Some((v.trim().to_string(), i + 1)),
            "names" => names_file = Some((v.trim().to_string(), i + 1)),
            "classes" => {
                count = Some(v.trim().parse::<usize>().map_err(|_| {
                    DataError::new(path, Some(i + 1), format!("`classes`: expected a number, found `{}`", v.trim()))
                })?)
            }
            _ => {} // train, backup, eval, ... are not needed for evaluation
        }
    }
    let Some((valid, vline)) = valid else {
        return Err(DataError::new(path, None, format!("missing `{key} = <list file or folder>`")));
    };
    let names = match names_file {
        Some((n, line)) => {
            let p = resolve(path, &n);
            let t = std::fs::read_to_string(&p)
                .map_err(|e| DataError::new(path, Some(line), format!("`names`: cannot read {}: {e}", p.display())))?;
            t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect::<Vec<_>>()
        }
        None => default_names(path.parent().unwrap_or(Path::new(".")), count.or(classes))?,
    };
    if let Some(c) = count {
        if c != names.len() {
            return Err(DataError::new(
                path,
                None,
                format!("`classes={c}` but the names file lists {} names", names.len()),
            ));
        }
    }
    let vpath = resolve(path, &valid);
    let images = if vpath.is_dir() {
        collect_images(&vpath)?
    } else if vpath.is_file() {
        read_list(&vpath)?
    } else {
        return Err(DataError::new(
            path,
            Some(vline),
            format!("`valid`: {} is neither a list file nor a folder", vpath.display()),
        ));
    };
    build(path, names, images, on_bad)
}

/// An Ultralytics `data.yaml`: `path` (root), `val` (folder, list file, or a list of them)
/// and `names` (a list or a map index -> name).
pub fn open_ultralytics_yaml(
    path: &Path,
    split: Split,
    classes: Option<usize>,
    on_bad: OnBad,
) -> Result<DetectionDataset, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::new(path, None, format!("cannot read: {e}")))?;
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| DataError::new(path, Some(e.marker().line()), format!("not valid YAML: {}", e.info())))?;
    let doc = docs.first().cloned().unwrap_or(Yaml::Null);
    if doc.as_hash().is_none() {
        return Err(DataError::new(path, None, "expected a mapping with `path`, `val` and `names`"));
    }
    let root = match &doc["path"] {
        Yaml::String(s) => resolve(path, s),
        Yaml::BadValue | Yaml::Null => path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        other => return Err(DataError::new(path, None, format!("`path`: expected a string, found {other:?}"))),
    };
    let names: Vec<String> = match &doc["names"] {
        Yaml::Array(a) => a.iter().map(yaml_scalar).collect(),
        Yaml::Hash(h) => {
            let mut pairs = Vec::new();
            for (k, v) in h {
                let Some(i) = k.as_i64().filter(|i| *i >= 0) else {
                    return Err(DataError::new(
                        path,
                        None,
                        format!("`names`: expected integer keys 0..n-1, found {k:?}"),
                    ));
                };
                pairs.push((i as usize, yaml_scalar(v)));
            }
            pairs.sort();
            if pairs.iter().enumerate().any(|(i, (k, _))| i != *k) {
                return Err(DataError::new(path, None, "`names`: expected keys 0..n-1 without gaps"));
            }
            pairs.into_iter().map(|(_, n)| n).collect()
        }
        Yaml::BadValue | Yaml::Null => default_names(&root, doc["nc"].as_i64().map(|n| n as usize).or(classes))?,
        other => return Err(DataError::new(path, None, format!("`names`: expected a list or a map, found {other:?}"))),
    };
    let key = match split {
        Split::Val => "val",
        Split::Train => "train",
    };
    let vals: Vec<String> = match &doc[key] {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(a) => a.iter().map(yaml_scalar).collect(),
        _ => {
            let msg = format!("missing `{key}`: expected a folder, a list file, or a list of them");
            return Err(DataError::new(path, None, msg));
        }
    };
    let mut images = Vec::new();
    for v in vals {
        let p = if Path::new(&v).is_absolute() { PathBuf::from(&v) } else { root.join(&v) };
        if p.is_dir() {
            images.extend(collect_images(&p)?);
        } else if p.is_file() {
            images.extend(read_list(&p)?);
        } else {
            return Err(DataError::new(
                path,
                None,
                format!("`{key}`: {} is neither a folder nor a list file", p.display()),
            ));
        }
    }
    build(path, names, images, on_bad)
}

fn yaml_scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Names from `classes.txt` / `obj.names` / `*.names` in `dir`, else `class0..` for `count`.
fn default_names(dir: &Path, count: Option<usize>) -> Result<Vec<String>, DataError> {
    for candidate in ["classes.txt", "obj.names", "classes.names"] {
        let p = dir.join(candidate);
        if let Ok(t) = std::fs::read_to_string(&p) {
            return Ok(t.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect());
        }
    }
    match count {
        Some(n) => Ok((0..n).map(|i| format!("class{i}")).collect()),
        None => Err(DataError::new(
            dir,
            None,
            "class names unknown: add classes.txt, use a .data or data.yaml, or give the class count",
        )),
    }
}

/// Every image below `dir`, sorted by path.
fn collect_images(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| DataError::new(&d, None, format!("cannot list the folder: {e}")))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if is_image(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read_list(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| DataError::new(path, None, format!("cannot read the list: {e}")))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| resolve(path, l)).collect())
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

/// Parses a YOLO label file: `class cx cy w h` per line, normalised to [0, 1].
pub fn parse_labels(path: &Path, text: &str, num_classes: usize) -> Result<Vec<GtBox>, DataError> {
    let mut boxes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let err = |m: String| DataError::new(path, Some(i + 1), m);
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(err(format!("expected 5 values `class cx cy w h`, found {}: `{line}`", fields.len())));
        }
        let nums: Vec<f64> = fields
            .iter()
            .map(|f| f.parse::<f64>().map_err(|_| err(format!("expected a number, found `{f}` in `{line}`"))))
            .collect::<Result<_, _>>()?;
        let c = nums[0];
        if c < 0.0 || c.fract() != 0.0 || !c.is_finite() {
            return Err(err(format!("class `{}`: expected a non-negative integer", fields[0])));
        }
        let class = c as usize;
        if class >= num_classes {
            return Err(err(format!(
                "unknown class id {class}: expected 0..{} ({num_classes} classes)",
                num_classes.saturating_sub(1)
            )));
        }
        let coords = [nums[1], nums[2], nums[3], nums[4]];
        if coords.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(err(format!("coordinates {:?}: expected normalised values in [0, 1]", &fields[1..])));
        }
        if coords[2] <= 0.0 || coords[3] <= 0.0 {
            return Err(err(format!("box size {} x {}: expected a positive width and height", fields[3], fields[4])));
        }
        boxes.push(GtBox { class, coords, normalized: true, crowd: false });
    }
    Ok(boxes)
}

fn build(
    source: &Path,
    names: Vec<String>,
    images: Vec<PathBuf>,
    on_bad: OnBad,
) -> Result<DetectionDataset, DataError> {
    if names.is_empty() {
        return Err(DataError::new(source, None, "no class names: expected at least one class"));
    }
    let mut skipped = SkipReport::default();
    let mut samples = Vec::with_capacity(images.len());
    let mut unlabelled = 0;
    for image in images {
        if !image.is_file() {
            skipped.handle(on_bad, DataError::new(&image, None, "image file not found"))?;
            continue;
        }
        let boxes = match label_path(&image) {
            None => {
                unlabelled += 1;
                Vec::new()
            }
            Some(lp) => {
                let parsed = std::fs::read_to_string(&lp)
                    .map_err(|e| DataError::new(&lp, None, format!("cannot read the label file: {e}")))
                    .and_then(|t| parse_labels(&lp, &t, names.len()));
                match parsed {
                    Ok(b) => b,
                    Err(e) => {
                        skipped.handle(on_bad, e)?;
                        continue;
                    }
                }
            }
        };
        samples.push(DetectionSample { image, boxes, coco_id: None });
    }
    if samples.is_empty() {
        let why = if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.summary(3)) };
        return Err(DataError::new(source, None, format!("no usable images found{why}")));
    }
    Ok(DetectionDataset { source: source.to_path_buf(), names, samples, skipped, unlabelled, coco: None })
}
