//! The packets of a capture file, for a trial.

use std::path::{Path, PathBuf};

use wire::pcap::{self, PcapError};

use super::Packet;

/// The largest capture read: far more packets than a test runs, and bounded so that a
/// wrong path (a disk image, `/dev/zero`) fails at once.
const MAX_CAPTURE_BYTES: u64 = 256 << 20;

/// A capture file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// It could not be read.
    #[error("read {}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a regular file, or too large.
    #[error("{}: {reason}", file.display())]
    NotACapture {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Its contents are not a capture of Ethernet frames.
    #[error("capture {}", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What the reader found.
        source: PcapError,
    },
}

/// The packets of the classic pcap or pcapng file `file`, named `FILE#N` (N from 1, as
/// Wireshark numbers frames); a frame the capture cut says so in its name.
pub fn packets_from_pcap(file: &Path) -> Result<Vec<Packet>, CaptureError> {
    let read_error = |source| CaptureError::Read {
        file: file.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(file).map_err(read_error)?;
    let refuse = |reason: String| CaptureError::NotACapture {
        file: file.to_path_buf(),
        reason,
    };
    if !metadata.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    if metadata.len() > MAX_CAPTURE_BYTES {
        return Err(refuse(format!(
            "{} bytes; a capture to test is at most {MAX_CAPTURE_BYTES}",
            metadata.len()
        )));
    }
    let bytes = std::fs::read(file).map_err(read_error)?;
    let packets = pcap::read(&bytes).map_err(|source| CaptureError::Format {
        file: file.to_path_buf(),
        source,
    })?;
    let short = file.file_name().map_or_else(
        || file.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    Ok(packets
        .into_iter()
        .map(|packet| {
            let cut = packet.original_len as usize > packet.data.len();
            Packet {
                name: if cut {
                    format!(
                        "{short}#{} (captured {} of {} bytes)",
                        packet.number,
                        packet.data.len(),
                        packet.original_len
                    )
                } else {
                    format!("{short}#{}", packet.number)
                },
                data: packet.data,
            }
        })
        .collect())
}
