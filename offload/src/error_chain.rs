//! Errors as one line of text with every cause: aya's errors keep the errno in a source
//! several levels down, and a report that stops at the top says too little.

/// An error with its whole source chain ("bpf_link_create failed: Operation not supported").
pub fn describe(error: &dyn std::error::Error) -> String {
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
