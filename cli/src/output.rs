//! Printing: JSON when asked, aligned tables otherwise.

use serde::Serialize;

pub fn json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// Prints rows with columns padded to the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|cell| cell.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A value's serde name ("dsr-l2", "draining", "live-frames").
pub fn serde_name(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A change a command made, said in one line: `{"done": message}` with `--json`.
pub fn done(as_json: bool, message: &str) {
    if as_json {
        json(&serde_json::json!({ "done": message }));
    } else {
        println!("{message}");
    }
}
