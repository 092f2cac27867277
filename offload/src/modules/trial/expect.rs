//! Expectations for a trial (`module test --expect EXPECT.json`): per packet, the verdict,
//! and optionally the module that gave it and the frame as it leaves.
//!
//! ```json
//! {
//!   "packets": [
//!     { "packet": 1, "verdict": "chain-end" },
//!     { "packet": 2, "verdict": "drop", "module": "dropper" },
//!     { "packet": 3, "verdict": "tx", "module": "ttl", "output": "02 00 00 00 00 01 ..." }
//!   ]
//! }
//! ```
//!
//! Packets are numbered from 1, as in the capture (Wireshark's frame numbers); a packet the
//! file does not name is not checked. `verdict` is one of [`Verdict::name`] (`port` means
//! `forward`); `output` is the whole frame in hex (space-separated bytes as `module map`
//! reads them). Unknown fields are refused, so a misspelt one cannot pass unchecked.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Deserializer, de};

use super::{ByteChanges, Trial, Verdict};
use crate::modules::map::parse_bytes;

/// An expectation file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    /// It could not be read.
    #[error("read {}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not valid JSON, or a field is wrong.
    #[error("{}: line {line} column {column}: {field}: {message}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// Where (from 1).
        line: usize,
        /// Where in the line (from 1).
        column: usize,
        /// The field's path, e.g. `packets[2].verdict` (`.` for the whole document).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A packet named twice, or numbered 0.
    #[error("{}: packets[{index}]: {reason}", file.display())]
    BadEntry {
        /// The file.
        file: PathBuf,
        /// The entry's index in `packets`, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// What one packet should do.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Its number, from 1.
    pub packet: usize,
    /// Its terminal verdict.
    #[serde(deserialize_with = "verdict")]
    pub verdict: Verdict,
    /// The module that gives it (unchecked when absent).
    #[serde(default)]
    pub module: Option<String>,
    /// The frame as it leaves (unchecked when absent).
    #[serde(default, deserialize_with = "hex_bytes")]
    pub output: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = r#"an object {"packets": [...]}"#)]
struct Document {
    packets: Vec<Expected>,
}

/// The expectations of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectations {
    /// The file they came from.
    pub file: PathBuf,
    /// One per packet named, in file order.
    pub packets: Vec<Expected>,
}

fn verdict<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Verdict, D::Error> {
    let name = String::deserialize(deserializer)?;
    Verdict::from_name(&name).ok_or_else(|| {
        let known: Vec<&str> = Verdict::ALL.iter().map(|verdict| verdict.name()).collect();
        de::Error::custom(format!(
            "unknown verdict {name:?}; expected one of {} (or port)",
            known.join(", ")
        ))
    })
}

fn hex_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_bytes("output", &text)
        .map(Some)
        .map_err(|error| de::Error::custom(crate::error_chain(&error)))
}

impl Expectations {
    /// Reads and checks `file`.
    pub fn read(file: &Path) -> Result<Expectations, ExpectError> {
        let text = std::fs::read_to_string(file).map_err(|source| ExpectError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Expectations::parse(file, &text)
    }

    /// Parses `text` (`file` names it in errors).
    pub fn parse(file: &Path, text: &str) -> Result<Expectations, ExpectError> {
        let mut json = serde_json::Deserializer::from_str(text);
        let document: Document = serde_path_to_error::deserialize(&mut json).map_err(|error| {
            let field = error.path().to_string();
            let inner = error.into_inner();
            ExpectError::Parse {
                file: file.to_path_buf(),
                line: inner.line(),
                column: inner.column(),
                field,
                message: strip_position(&inner.to_string()),
            }
        })?;
        let bad = |index, reason: String| ExpectError::BadEntry {
            file: file.to_path_buf(),
            index,
            reason,
        };
        for (index, expected) in document.packets.iter().enumerate() {
            if expected.packet == 0 {
                return Err(bad(index, "packets are numbered from 1".into()));
            }
            if let Some(first) = document.packets[..index]
                .iter()
                .position(|other| other.packet == expected.packet)
            {
                return Err(bad(
                    index,
                    format!(
                        "packet {} is named again (first in packets[{first}])",
                        expected.packet
                    ),
                ));
            }
        }
        Ok(Expectations {
            file: file.to_path_buf(),
            packets: document.packets,
        })
    }

    /// How `trial` differs from these expectations, packet by packet (in file order).
    pub fn check(&self, trial: &Trial) -> Vec<Mismatch> {
        self.packets
            .iter()
            .filter_map(|expected| {
                let outcome = expected
                    .packet
                    .checked_sub(1)
                    .and_then(|index| trial.packets.get(index));
                let Some(outcome) = outcome else {
                    return Some(Mismatch {
                        packet: expected.packet,
                        name: String::new(),
                        differences: vec![Difference {
                            field: "packet",
                            expected: format!("packet {}", expected.packet),
                            actual: format!("only {} packets ran", trial.packets.len()),
                        }],
                    });
                };
                let mut differences = Vec::new();
                if outcome.verdict != expected.verdict {
                    differences.push(Difference {
                        field: "verdict",
                        expected: expected.verdict.to_string(),
                        actual: outcome.verdict.to_string(),
                    });
                }
                if let Some(module) = &expected.module
                    && outcome.module.as_ref() != Some(module)
                {
                    differences.push(Difference {
                        field: "module",
                        expected: module.clone(),
                        actual: outcome
                            .module
                            .clone()
                            .unwrap_or_else(|| "none (the chain ended it)".into()),
                    });
                }
                if let Some(output) = &expected.output
                    && *output != outcome.output_bytes
                {
                    differences.push(Difference {
                        field: "output",
                        expected: format!("the file's {} bytes", output.len()),
                        actual: output_difference(output, &outcome.output_bytes),
                    });
                }
                (!differences.is_empty()).then(|| Mismatch {
                    packet: expected.packet,
                    name: outcome.name.clone(),
                    differences,
                })
            })
            .collect()
    }
}

/// serde_json puts " at line L column C" after its message; the error names them already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Where the frame that left differs from the expected one, in a few words.
fn output_difference(expected: &[u8], actual: &[u8]) -> String {
    let changes = ByteChanges::between(expected, actual);
    let mut parts: Vec<String> = changes
        .runs
        .iter()
        .take(4)
        .map(|run| {
            let shown = |hex: &str| {
                if hex.is_empty() {
                    "nothing".to_string()
                } else {
                    hex.to_string()
                }
            };
            format!(
                "at {}: expected {}, got {}",
                run.offset,
                shown(&run.old),
                shown(&run.new)
            )
        })
        .collect();
    if changes.runs.len() > 4 {
        parts.push(format!("and {} more runs", changes.runs.len() - 4));
    }
    format!("{} bytes, differing {}", actual.len(), parts.join("; "))
}

/// A packet that did not do what was expected.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// Its number, from 1.
    pub packet: usize,
    /// Its name (empty when the packet is not there).
    pub name: String,
    /// Each field that differs.
    pub differences: Vec<Difference>,
}

/// One field of a [`Mismatch`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// "verdict", "module", "output" or "packet".
    pub field: &'static str,
    /// What the file expects.
    pub expected: String,
    /// What happened.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "packet {}", self.packet)?;
        if !self.name.is_empty() {
            write!(f, " ({})", self.name)?;
        }
        let fields: Vec<String> = self
            .differences
            .iter()
            .map(|d| format!("{}: expected {}, got {}", d.field, d.expected, d.actual))
            .collect();
        write!(f, ": {}", fields.join("; "))
    }
}

#[cfg(test)]
mod tests;
