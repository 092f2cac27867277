//! What a chain changed in a frame: runs of changed bytes, and where the frame grew or
//! shrank when a module moved its start (`bpf_xdp_adjust_head`: an encapsulation, a
//! decapsulation) or its end (`bpf_xdp_adjust_tail`).

use serde::Serialize;

use crate::modules::map::format_bytes;

/// The end of a frame where bytes were added or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameEnd {
    /// Its start moved (headers pushed or pulled).
    Front,
    /// Its end moved.
    Back,
}

/// A run of consecutive changed bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangedBytes {
    /// Where the run starts in the frame as it left (in the frame as it came when bytes were
    /// removed there).
    pub offset: usize,
    /// The bytes before, space-separated hex; empty where bytes were added.
    pub old: String,
    /// The bytes after; empty where bytes were removed.
    pub new: String,
}

/// Everything that differs between the frame that went in and the one that came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ByteChanges {
    /// Length going in.
    pub length_in: usize,
    /// Length coming out.
    pub length_out: usize,
    /// Where the length changed, when it did: the end whose alignment leaves fewer changed
    /// bytes (a pushed header keeps the rest of the frame aligned on the back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resized_at: Option<FrameEnd>,
    /// The changed runs, in frame order.
    pub runs: Vec<ChangedBytes>,
}

impl ByteChanges {
    /// The changes from `before` to `after`.
    pub fn between(before: &[u8], after: &[u8]) -> ByteChanges {
        let common = before.len().min(after.len());
        let grown = after.len() as isize - before.len() as isize;
        let (resized_at, runs) = if grown == 0 {
            (None, runs_of(before, after, 0))
        } else {
            let front_aligned = runs_of(&before[..common], &after[..common], 0);
            let back_aligned = runs_of(
                &before[before.len() - common..],
                &after[after.len() - common..],
                after.len() - common,
            );
            let changed =
                |runs: &[ChangedBytes]| runs.iter().map(|run| byte_count(&run.old)).sum::<usize>();
            let size = grown.unsigned_abs();
            if changed(&back_aligned) < changed(&front_aligned) {
                // The start moved: bytes added or removed at offset 0.
                let edge = if grown > 0 {
                    added(0, &after[..size])
                } else {
                    removed(0, &before[..size])
                };
                let mut runs = vec![edge];
                runs.extend(back_aligned);
                (Some(FrameEnd::Front), runs)
            } else {
                let mut runs = front_aligned;
                runs.push(if grown > 0 {
                    added(common, &after[common..])
                } else {
                    removed(common, &before[common..])
                });
                (Some(FrameEnd::Back), runs)
            }
        };
        ByteChanges {
            length_in: before.len(),
            length_out: after.len(),
            resized_at,
            runs,
        }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// One line for people: "unchanged", "2 bytes at 22, 24-25", "+20 bytes at the front;
    /// 1 byte at 30".
    pub fn summary(&self) -> String {
        if self.is_empty() {
            return "unchanged".to_string();
        }
        let mut parts = Vec::new();
        if let Some(end) = self.resized_at {
            let grown = self.length_out as isize - self.length_in as isize;
            let end = match end {
                FrameEnd::Front => "front",
                FrameEnd::Back => "back",
            };
            parts.push(format!("{grown:+} bytes at the {end}"));
        }
        let rewritten: Vec<&ChangedBytes> = self
            .runs
            .iter()
            .filter(|run| !run.old.is_empty() && !run.new.is_empty())
            .collect();
        if !rewritten.is_empty() {
            let bytes: usize = rewritten.iter().map(|run| byte_count(&run.new)).sum();
            let places: Vec<String> = rewritten
                .iter()
                .map(|run| match byte_count(&run.new) {
                    1 => run.offset.to_string(),
                    n => format!("{}-{}", run.offset, run.offset + n - 1),
                })
                .collect();
            let noun = if bytes == 1 { "byte" } else { "bytes" };
            parts.push(format!("{bytes} {noun} at {}", places.join(", ")));
        }
        parts.join("; ")
    }
}

/// Bytes in a space-separated hex string.
fn byte_count(hex: &str) -> usize {
    hex.split_whitespace().count()
}

fn added(offset: usize, bytes: &[u8]) -> ChangedBytes {
    ChangedBytes {
        offset,
        old: String::new(),
        new: format_bytes(bytes),
    }
}

fn removed(offset: usize, bytes: &[u8]) -> ChangedBytes {
    ChangedBytes {
        offset,
        old: format_bytes(bytes),
        new: String::new(),
    }
}

/// Runs of differing bytes between two slices of one length; `base` is added to offsets.
fn runs_of(before: &[u8], after: &[u8], base: usize) -> Vec<ChangedBytes> {
    let mut runs = Vec::new();
    let mut index = 0;
    while index < before.len() {
        if before[index] == after[index] {
            index += 1;
            continue;
        }
        let start = index;
        while index < before.len() && before[index] != after[index] {
            index += 1;
        }
        runs.push(ChangedBytes {
            offset: base + start,
            old: format_bytes(&before[start..index]),
            new: format_bytes(&after[start..index]),
        });
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_frame_has_no_runs() {
        let frame = [1, 2, 3, 4];
        let changes = ByteChanges::between(&frame, &frame);
        assert!(changes.is_empty());
        assert_eq!(changes.summary(), "unchanged");
    }

    #[test]
    fn rewritten_bytes_are_grouped_in_runs() {
        let before = [0u8; 10];
        let mut after = before;
        after[2] = 0xff;
        after[5] = 1;
        after[6] = 2;
        let changes = ByteChanges::between(&before, &after);
        assert_eq!(
            changes.runs,
            [
                ChangedBytes {
                    offset: 2,
                    old: "00".into(),
                    new: "ff".into()
                },
                ChangedBytes {
                    offset: 5,
                    old: "00 00".into(),
                    new: "01 02".into()
                },
            ]
        );
        assert_eq!(changes.resized_at, None);
        assert_eq!(changes.summary(), "3 bytes at 2, 5-6");
    }

    #[test]
    fn a_pushed_header_shows_as_added_at_the_front() {
        let before: Vec<u8> = (10..30).collect();
        let after = [vec![0xee; 4], before.clone()].concat();
        let changes = ByteChanges::between(&before, &after);
        assert_eq!(changes.resized_at, Some(FrameEnd::Front));
        assert_eq!(changes.runs.len(), 1);
        assert_eq!(changes.runs[0].new, "ee ee ee ee");
        assert_eq!(changes.summary(), "+4 bytes at the front");
    }

    #[test]
    fn a_cut_tail_shows_as_removed_at_the_back() {
        let before: Vec<u8> = (10..30).collect();
        let mut after = before[..16].to_vec();
        after[0] = 0;
        let changes = ByteChanges::between(&before, &after);
        assert_eq!(changes.resized_at, Some(FrameEnd::Back));
        assert_eq!(
            changes.runs.last().unwrap(),
            &ChangedBytes {
                offset: 16,
                old: "1a 1b 1c 1d".into(),
                new: String::new()
            }
        );
        assert_eq!(changes.summary(), "-4 bytes at the back; 1 byte at 0");
    }

    #[test]
    fn a_pulled_header_shows_as_removed_at_the_front() {
        let before: Vec<u8> = (0..40).collect();
        let after = before[14..].to_vec();
        let changes = ByteChanges::between(&before, &after);
        assert_eq!(changes.resized_at, Some(FrameEnd::Front));
        assert_eq!(changes.runs.len(), 1);
        assert_eq!(changes.runs[0].offset, 0);
        assert_eq!(byte_count(&changes.runs[0].old), 14);
    }
}
