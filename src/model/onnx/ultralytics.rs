//! What Ultralytics writes into an exported model's `metadata_props`: the task, the class
//! names (a Python dict literal), the input size, the stride, the keypoint shape and the
//! licence. Values that are missing or malformed are `None`; the raw properties stay in
//! [`crate::model::ir::Net::metadata`].

use std::collections::BTreeMap;

/// The typed Ultralytics metadata of a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ultralytics {
    /// `detect`, `pose`, `classify`, `segment`, `obb`.
    pub task: Option<String>,
    /// Class names by index.
    pub names: Option<Vec<String>>,
    /// Input size, [height, width].
    pub imgsz: Option<[u32; 2]>,
    pub stride: Option<u32>,
    /// Keypoints per object and values per keypoint (2: x, y; 3: x, y, visibility).
    pub kpt_shape: Option<[u32; 2]>,
    pub license: Option<String>,
}

impl Ultralytics {
    /// The metadata, if the file was written by Ultralytics (`author` says so or `task` is set).
    pub fn of(props: &BTreeMap<String, String>) -> Option<Self> {
        let by_ultralytics =
            props.get("author").is_some_and(|a| a.contains("Ultralytics")) || props.contains_key("task");
        if !by_ultralytics {
            return None;
        }
        let pair = |key: &str| -> Option<[u32; 2]> {
            let v = ints(props.get(key)?)?;
            match v.as_slice() {
                [a, b] => Some([*a, *b]),
                [a] => Some([*a, *a]),
                _ => None,
            }
        };
        Some(Ultralytics {
            task: props.get("task").cloned(),
            names: props.get("names").and_then(|n| names(n)),
            imgsz: pair("imgsz"),
            stride: props.get("stride").and_then(|s| s.trim().parse().ok()),
            kpt_shape: pair("kpt_shape"),
            license: props.get("license").cloned(),
        })
    }
}

/// `[160, 160]` or `640` as numbers.
fn ints(s: &str) -> Option<Vec<u32>> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    s.split(',').map(|x| x.trim().parse().ok()).collect()
}

/// A Python dict literal `{0: 'person', 1: "it's"}` as the names in index order; the indices
/// must be 0..n, each once.
fn names(s: &str) -> Option<Vec<String>> {
    let mut chars = s.trim().chars().peekable();
    if chars.next()? != '{' {
        return None;
    }
    let mut by_index = BTreeMap::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek() == Some(&'}') {
            break;
        }
        let mut index = String::new();
        while let Some(c) = chars.peek().copied().filter(char::is_ascii_digit) {
            index.push(c);
            chars.next();
        }
        let index: usize = index.parse().ok()?;
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next()? != ':' {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let quote = chars.next().filter(|q| *q == '\'' || *q == '"')?;
        let mut name = String::new();
        loop {
            match chars.next()? {
                '\\' => name.push(chars.next()?),
                c if c == quote => break,
                c => name.push(c),
            }
        }
        if by_index.insert(index, name).is_some() {
            return None;
        }
    }
    let n = by_index.len();
    (by_index.keys().copied().eq(0..n)).then(|| by_index.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ultralytics_metadata_is_typed() {
        let m = Ultralytics::of(&props(&[
            ("author", "Ultralytics"),
            ("task", "pose"),
            ("names", "{0: 'person', 1: \"it's\", 2: 'water activities, outdoor'}"),
            ("imgsz", "[160, 160]"),
            ("stride", "32"),
            ("kpt_shape", "[17, 3]"),
            ("license", "AGPL-3.0 License (https://ultralytics.com/license)"),
        ]))
        .unwrap();
        assert_eq!(m.task.as_deref(), Some("pose"));
        assert_eq!(m.names.unwrap(), ["person", "it's", "water activities, outdoor"]);
        assert_eq!((m.imgsz, m.stride, m.kpt_shape), (Some([160, 160]), Some(32), Some([17, 3])));
        assert!(m.license.unwrap().starts_with("AGPL-3.0"));
    }

    #[test]
    fn malformed_values_are_none_and_other_files_have_none() {
        assert_eq!(Ultralytics::of(&props(&[("producer", "torch")])), None);
        let m = Ultralytics::of(&props(&[("task", "detect"), ("names", "{1: 'a'}"), ("imgsz", "[x]")])).unwrap();
        assert_eq!((m.names, m.imgsz), (None, None), "indices must start at 0; sizes must be numbers");
        for bad in ["{0: 'a', 0: 'b'}", "{0: 'a'", "[0, 1]", "{0: a}"] {
            assert_eq!(names(bad), None, "{bad}");
        }
    }
}
