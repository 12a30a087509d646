//! Reports and exports: sensitivity tables and plots, and comparisons of checkpoints.

pub mod compare;
pub mod plot;
pub mod sensitivity;

/// 61949149 -> "61,949,149" (with `sep` between groups of three digits).
pub fn thousands(v: u64, sep: char) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}
