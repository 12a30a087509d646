//! Printing an error with its causes, each once. Engine errors write their cause into their
//! own message and also keep it as `source()` (so callers can inspect it): a cause whose text is
//! already in what was printed is skipped.

use std::error::Error;

/// `error: cause: cause …`, skipping causes already spelled out.
pub fn chain<'a>(errors: impl IntoIterator<Item = &'a (dyn Error + 'static)>) -> String {
    let mut out = String::new();
    for e in errors {
        let text = e.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// [`chain`] of one error and its sources.
pub fn text(e: &(dyn Error + 'static)) -> String {
    chain(std::iter::successors(Some(e), |&e| e.source()))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("model.cfg: cannot read: {source}")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn a_cause_in_the_message_is_not_repeated() {
        let e = Outer { source: std::io::Error::other("permission denied") };
        assert_eq!(super::text(&e), "model.cfg: cannot read: permission denied");
        let io = std::io::Error::other("disk gone");
        let outer: Vec<&(dyn std::error::Error + 'static)> = vec![&e, &io];
        assert_eq!(super::chain(outer), "model.cfg: cannot read: permission denied: disk gone");
    }
}
