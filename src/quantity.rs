//! Parsing and range checks of the quantities users type: sparsity lists, probabilities,
//! counts, sizes. One parser each for the CLI (clap value parsers) and the GUI's forms, so
//! both accept and refuse the same things with the same words.

/// A closed set of choices with the names users type (`--method l1-filter`); the CLI builds
/// its value parsers from this, so engine enums carry no CLI derive.
pub trait Named: Copy + Send + Sync + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

/// A finite number, with `what` and the text in the message when it is not one.
fn number(s: &str, what: &str) -> Result<f64, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("{what} `{t}`: expected a number")),
    }
}

/// A probability or IoU threshold in [0, 1] (`--report-conf`).
pub fn probability(s: &str) -> Result<f64, String> {
    let v = number(s, "value")?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("`{}`: expected a value between 0 and 1", s.trim()));
    }
    Ok(v)
}

/// [`probability`] as f32 (`--conf`, `--iou`).
pub fn unit_interval(s: &str) -> Result<f32, String> {
    probability(s).map(|v| v as f32)
}

/// An integer in `min..=max`, with `what` named when it is not.
pub fn count_in(s: &str, what: &str, min: usize, max: usize) -> Result<usize, String> {
    let t = s.trim();
    let v: usize = t.parse().map_err(|_| format!("{what} `{t}`: expected a whole number from {min} to {max}"))?;
    if v < min || v > max {
        return Err(format!("{what} `{t}`: expected a whole number from {min} to {max}"));
    }
    Ok(v)
}

/// A finite number in (0, `max`] (`--lr`).
pub fn positive(s: &str, what: &str, max: f64) -> Result<f64, String> {
    let v = number(s, what)?;
    if !(v > 0.0 && v <= max) {
        return Err(format!("{what} `{}`: expected a number above 0 and at most {max}", s.trim()));
    }
    Ok(v)
}

/// A finite number in [0, `max`] (`--warmup`).
pub fn non_negative(s: &str, what: &str, max: f64) -> Result<f64, String> {
    let v = number(s, what)?;
    if !(0.0..=max).contains(&v) {
        return Err(format!("{what} `{}`: expected a number from 0 to {max}", s.trim()));
    }
    Ok(v)
}

/// Images per forward pass: 1 to 1,024.
pub fn batch(s: &str) -> Result<usize, String> {
    count_in(s, "batch", 1, 1024)
}

/// Detections kept per image: 1 to 100,000.
pub fn max_det(s: &str) -> Result<usize, String> {
    count_in(s, "max-det", 1, 100_000)
}

/// Timed forward passes: 0 (none) to 100,000.
pub fn runs(s: &str) -> Result<usize, String> {
    count_in(s, "runs", 0, 100_000)
}

/// An image limit: at least one image (`--limit 0` would evaluate nothing).
pub fn limit(s: &str) -> Result<usize, String> {
    count_in(s, "limit", 1, usize::MAX >> 1)
}

/// Worker threads: 0 (the default rule) to 256.
pub fn workers(s: &str) -> Result<usize, String> {
    count_in(s, "workers", 0, 256)
}

/// The largest model input side accepted (pixels).
pub const MAX_IMG_SIZE: u32 = 4096;
/// The stride every supported model's input side must be a multiple of.
pub const STRIDE: u32 = 32;

/// A square model input side: a multiple of 32 from 32 to 4,096.
pub fn img_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let v: u32 = t.parse().map_err(|_| format!("image size `{t}`: expected a whole number of pixels"))?;
    check_img_size(v)?;
    Ok(v)
}

/// See [`img_size`].
pub fn check_img_size(v: u32) -> Result<(), String> {
    if !(STRIDE..=MAX_IMG_SIZE).contains(&v) || !v.is_multiple_of(STRIDE) {
        return Err(format!(
            "image size {v}: expected a multiple of the model stride {STRIDE} from {STRIDE} to {MAX_IMG_SIZE}"
        ));
    }
    Ok(())
}

/// `512MiB`, `2GiB`, `100M`, `1G` or a plain byte count; at most 1 TiB.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("`{s}`: expected a size such as 2GiB, 512MiB or 1000000");
    let v: f64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1u64,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit `{}` (use KiB, MiB, GiB or TiB)", unit.trim())),
    };
    let b = v * mult as f64;
    if !b.is_finite() || b > (1u64 << 40) as f64 {
        return Err(format!("`{s}`: more than 1 TiB"));
    }
    Ok(b as u64)
}

/// One sparsity in percent, `5` or `5%`, strictly between 0 and 100.
fn percent(item: &str) -> Result<f64, String> {
    let t = item.trim();
    let v = number(t.trim_end_matches('%'), "sparsity")?;
    if !(v > 0.0 && v < 100.0) {
        return Err(format!("sparsity `{t}`: expected a percentage between 0 and 100 (exclusive)"));
    }
    Ok(v)
}

fn items(s: &str) -> Vec<&str> {
    s.split(',').map(str::trim).filter(|t| !t.is_empty()).collect()
}

/// Sorted, without repeats; at least one value.
fn finish(mut v: Vec<f64>) -> Result<Vec<f64>, String> {
    if v.is_empty() {
        return Err("sparsities: give at least one, e.g. 10,20,30".into());
    }
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    Ok(v)
}

/// The GUI's sparsity list: percentages only (`5, 10, 20` or `5%, 10%`), as fractions.
pub fn percent_list(s: &str) -> Result<Vec<f64>, String> {
    finish(items(s).into_iter().map(|t| percent(t).map(|p| p / 100.0)).collect::<Result<_, _>>()?)
}

/// The CLI's sparsity list, as fractions: percentages (`5,10,20`, `5%,10%`) or fractions
/// (`0.05,0.1`), never a mix of the two: in `5,0.5` the 0.5 could mean either, so such a
/// list is refused with the two spellings that are unambiguous.
pub fn sparsity_list(s: &str) -> Result<Vec<f64>, String> {
    let list = items(s);
    let bare: Vec<f64> =
        list.iter().filter(|t| !t.ends_with('%')).map(|t| number(t, "sparsity")).collect::<Result<_, _>>()?;
    let any_percent_sign = bare.len() < list.len();
    let all_fractions = !bare.is_empty() && bare.iter().all(|&v| v < 1.0);
    let any_fraction = bare.iter().any(|&v| v < 1.0);
    if all_fractions && !any_percent_sign {
        if let Some(v) = bare.iter().find(|&&v| v <= 0.0) {
            return Err(format!("sparsity `{v}`: expected a fraction between 0 and 1 (exclusive)"));
        }
        return finish(bare);
    }
    if any_fraction {
        return Err(format!(
            "sparsities `{s}`: values below 1 among percentages are ambiguous; write all as percents (5,0.5%) or all as fractions (0.05,0.005)"
        ));
    }
    percent_list(s)
}

/// A parsed sparsity list (fractions), for clap.
#[derive(Debug, Clone, PartialEq)]
pub struct Sparsities(pub Vec<f64>);

/// clap value parser for [`sparsity_list`].
pub fn sparsities(s: &str) -> Result<Sparsities, String> {
    sparsity_list(s).map(Sparsities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparsity_lists() {
        assert_eq!(sparsity_list("5,10,20").unwrap(), vec![0.05, 0.1, 0.2]);
        assert_eq!(sparsity_list("0.05, 0.1").unwrap(), vec![0.05, 0.1]);
        assert_eq!(sparsity_list("5%,0.5%").unwrap(), vec![0.005, 0.05]);
        assert_eq!(sparsity_list("20,10,10").unwrap(), vec![0.1, 0.2]);
        // The mixed list of the issue: 0.5 could be 0.5 % or 50 %.
        assert!(sparsity_list("5,0.5").unwrap_err().contains("ambiguous"));
        assert!(sparsity_list("0.5,5%").unwrap_err().contains("ambiguous"));
        for bad in ["", "NaN", "inf", "100", "0", "-5", "150%", "0,0.5", "five"] {
            assert!(sparsity_list(bad).is_err(), "{bad}");
        }
        assert_eq!(percent_list("5, 10%").unwrap(), vec![0.05, 0.1]);
        // The GUI takes percents only: 0.5 is half a percent there.
        assert_eq!(percent_list("0.5").unwrap(), vec![0.005]);
    }

    #[test]
    fn ranges() {
        assert!(unit_interval("5").is_err());
        assert!(unit_interval("2").is_err());
        assert!(unit_interval("NaN").is_err());
        assert!(unit_interval("-0.1").is_err());
        assert_eq!(unit_interval("0.45").unwrap(), 0.45);
        assert!(max_det("0").is_err());
        assert!(batch("1000000000").is_err());
        assert!(runs("1000000000").is_err());
        assert!(limit("0").is_err());
        assert!(img_size("65536").is_err());
        assert!(img_size("100").unwrap_err().contains("multiple"));
        assert_eq!(img_size("416").unwrap(), 416);
        assert_eq!(bytes("512MiB").unwrap(), 512 << 20);
        assert!(bytes("1e30").is_err());
        assert!(bytes("NaN").is_err());
    }
}
