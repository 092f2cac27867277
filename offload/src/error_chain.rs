//! Errors shown on one line, for reports that keep text (mode fallbacks, probe trials).

/// An error and its causes on one line, "a: b: c", skipping a cause whose text its parent
/// already shows (aya's messages sometimes embed their source).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
