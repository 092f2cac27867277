//! Capture files: the packets of a classic pcap or a pcapng file, Ethernet frames only, read
//! with every length checked; and a classic pcap writer for tests and fixtures.
//!
//! Formats: classic pcap in either byte order, with microsecond (`a1b2c3d4`) or nanosecond
//! (`a1b23c4d`) timestamps (<https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html>);
//! pcapng's section header, interface description, enhanced and simple packet blocks,
//! every other block skipped (<https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html>).
//! Written here rather than taken from a crate: the formats need a hundred lines, and an
//! error must name the record and the byte offset where the file goes wrong.

use std::{error::Error, fmt};

/// `LINKTYPE_ETHERNET`: the only link type fastpath's data path sees.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The largest record read: libpcap's own limit for a packet (`MAXIMUM_SNAPLEN`). A length
/// beyond it is a damaged file, never a packet.
pub const MAX_RECORD: usize = 262_144;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const FILE_HEADER: usize = 24;
const RECORD_HEADER: usize = 16;

const BLOCK_SECTION: u32 = 0x0a0d_0d0a;
const BLOCK_INTERFACE: u32 = 1;
const BLOCK_SIMPLE_PACKET: u32 = 3;
const BLOCK_ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

/// One packet of a capture file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Its number in the file, from 1 (as Wireshark numbers frames).
    pub number: usize,
    /// The byte offset of its record (classic) or block (pcapng) in the file.
    pub offset: usize,
    /// The frame's length on the wire; more than `data.len()` when the capture cut it.
    pub original_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// What is wrong with a capture file; offsets are bytes from the start of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PcapError {
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    NotPcap {
        /// The first bytes of the file (up to four).
        magic: Vec<u8>,
    },
    /// The file ends inside its file header (classic) or its first block (pcapng).
    TruncatedHeader {
        /// The file's length.
        len: usize,
    },
    /// The captured packets are not Ethernet frames.
    LinkType {
        /// The link type (`LINKTYPE_*` of the tcpdump.org list).
        link_type: u32,
        /// The packet whose interface has it (pcapng), or 0 for the file (classic).
        packet: usize,
    },
    /// A record or block is cut short or says a length it cannot have.
    BadRecord {
        /// "record" (classic) or "block" (pcapng).
        unit: &'static str,
        /// The packet's number (classic) or the block's (pcapng), from 1.
        record: usize,
        /// Where the record or block starts.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::NotPcap { magic } => write!(
                f,
                "not a pcap or pcapng file (it starts with {}; a capture starts with a1b2c3d4, a1b23c4d or 0a0d0d0a)",
                hex(magic)
            ),
            PcapError::TruncatedHeader { len } => {
                write!(f, "truncated: the file ends in its header ({len} bytes)")
            }
            PcapError::LinkType { link_type, packet } => {
                let name = link_type_name(*link_type);
                if *packet == 0 {
                    write!(
                        f,
                        "link type {link_type} ({name}): only Ethernet (1) captures can be tested"
                    )
                } else {
                    write!(
                        f,
                        "packet {packet}: link type {link_type} ({name}); only Ethernet (1) captures can be tested"
                    )
                }
            }
            PcapError::BadRecord {
                unit,
                record,
                offset,
                reason,
            } => write!(f, "{unit} {record} at byte offset {offset}: {reason}"),
        }
    }
}

impl Error for PcapError {}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing (the file is empty)".to_string();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A name for the link types one meets in practice.
fn link_type_name(link_type: u32) -> &'static str {
    match link_type {
        0 => "BSD loopback",
        1 => "Ethernet",
        101 => "raw IP",
        105 => "IEEE 802.11",
        113 => "Linux cooked capture, tcpdump -i any",
        127 => "802.11 radiotap",
        228 => "raw IPv4",
        229 => "raw IPv6",
        276 => "Linux cooked capture v2, tcpdump -i any",
        _ => "see tcpdump.org/linktypes.html",
    }
}

/// The packets of a classic pcap or pcapng file, in file order.
pub fn read(file: &[u8]) -> Result<Vec<CapturedPacket>, PcapError> {
    let Some(magic) = file.get(..4) else {
        return Err(PcapError::NotPcap {
            magic: file.to_vec(),
        });
    };
    let magic_le = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic_le == BLOCK_SECTION {
        return read_pcapng(file);
    }
    let little = match magic_le {
        MAGIC_MICROS | MAGIC_NANOS => true,
        _ if [MAGIC_MICROS, MAGIC_NANOS].contains(&magic_le.swap_bytes()) => false,
        _ => {
            return Err(PcapError::NotPcap {
                magic: magic.to_vec(),
            });
        }
    };
    read_classic(file, Endian { little })
}

#[derive(Clone, Copy)]
struct Endian {
    little: bool,
}

impl Endian {
    fn u16(self, bytes: &[u8], at: usize) -> u16 {
        let raw = [bytes[at], bytes[at + 1]];
        if self.little {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        }
    }
    fn u32(self, bytes: &[u8], at: usize) -> u32 {
        let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if self.little {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        }
    }
}

fn read_classic(file: &[u8], endian: Endian) -> Result<Vec<CapturedPacket>, PcapError> {
    if file.len() < FILE_HEADER {
        return Err(PcapError::TruncatedHeader { len: file.len() });
    }
    // The upper bits carry the FCS length (pcap draft 4.1): the link type is the low 28.
    let link_type = endian.u32(file, 20) & 0x0fff_ffff;
    if link_type != LINKTYPE_ETHERNET {
        return Err(PcapError::LinkType {
            link_type,
            packet: 0,
        });
    }
    let mut packets = Vec::new();
    let mut offset = FILE_HEADER;
    while offset < file.len() {
        let record = packets.len() + 1;
        let bad = |reason: String| PcapError::BadRecord {
            unit: "record",
            record,
            offset,
            reason,
        };
        let available = file.len() - offset;
        if available < RECORD_HEADER {
            return Err(bad(format!(
                "truncated: the file ends {available} bytes into the {RECORD_HEADER}-byte record header"
            )));
        }
        let captured = endian.u32(file, offset + 8) as usize;
        let original_len = endian.u32(file, offset + 12);
        if captured > MAX_RECORD {
            return Err(bad(format!(
                "captured length {captured} is beyond any packet ({MAX_RECORD} at most); the file is damaged"
            )));
        }
        let start = offset + RECORD_HEADER;
        let Some(data) = file.get(start..start + captured) else {
            return Err(bad(format!(
                "truncated: the record says {captured} captured bytes, the file holds {}",
                file.len() - start
            )));
        };
        packets.push(CapturedPacket {
            number: record,
            offset,
            original_len,
            data: data.to_vec(),
        });
        offset = start + captured;
    }
    Ok(packets)
}

/// One section's interfaces: (link type, snap length) by interface id.
fn read_pcapng(file: &[u8]) -> Result<Vec<CapturedPacket>, PcapError> {
    let mut packets = Vec::new();
    let mut interfaces: Vec<(u32, u32)> = Vec::new();
    let mut endian = Endian { little: true };
    let mut offset = 0;
    let mut block = 0;
    while offset < file.len() {
        block += 1;
        let bad = |reason: String| PcapError::BadRecord {
            unit: "block",
            record: block,
            offset,
            reason,
        };
        let available = file.len() - offset;
        if available < 12 {
            if block == 1 {
                return Err(PcapError::TruncatedHeader { len: file.len() });
            }
            return Err(bad(format!(
                "truncated: the file ends {available} bytes into a block (12 at least)"
            )));
        }
        let raw_type = Endian { little: true }.u32(file, offset);
        if raw_type == BLOCK_SECTION {
            // A new section: its byte order and its own interfaces.
            let order = Endian { little: true }.u32(file, offset + 8);
            endian = match order {
                BYTE_ORDER_MAGIC => Endian { little: true },
                _ if order.swap_bytes() == BYTE_ORDER_MAGIC => Endian { little: false },
                _ => return Err(bad(format!("byte-order magic {order:08x} is not 1a2b3c4d"))),
            };
            interfaces.clear();
        } else if block == 1 {
            return Err(PcapError::NotPcap {
                magic: file[..4].to_vec(),
            });
        }
        let kind = endian.u32(file, offset);
        let len = endian.u32(file, offset + 4) as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return Err(bad(format!(
                "block length {len} is impossible (a multiple of 4, from 12)"
            )));
        }
        let Some(block_bytes) = file.get(offset..offset + len) else {
            if block == 1 {
                return Err(PcapError::TruncatedHeader { len: file.len() });
            }
            return Err(bad(format!(
                "truncated: the block says {len} bytes, the file holds {available}"
            )));
        };
        let body = &block_bytes[8..len - 4];
        if endian.u32(block_bytes, len - 4) as usize != len {
            return Err(bad(
                "the block's trailing length differs from its leading one".to_string(),
            ));
        }
        let short = || bad(format!("block type {kind} is too short ({len} bytes)"));
        match kind {
            BLOCK_INTERFACE => {
                if body.len() < 8 {
                    return Err(short());
                }
                interfaces.push((u32::from(endian.u16(body, 0)), endian.u32(body, 4)));
            }
            BLOCK_ENHANCED_PACKET | BLOCK_SIMPLE_PACKET => {
                let number = packets.len() + 1;
                let enhanced = kind == BLOCK_ENHANCED_PACKET;
                let header = if enhanced { 20 } else { 4 };
                if body.len() < header {
                    return Err(short());
                }
                let interface = if enhanced { endian.u32(body, 0) } else { 0 };
                let Some(&(link_type, snap_len)) = interfaces.get(interface as usize) else {
                    return Err(bad(format!(
                        "packet {number} names interface {interface}; the section describes {}",
                        interfaces.len()
                    )));
                };
                if link_type != LINKTYPE_ETHERNET {
                    return Err(PcapError::LinkType {
                        link_type,
                        packet: number,
                    });
                }
                let (captured, original_len) = if enhanced {
                    (endian.u32(body, 12) as usize, endian.u32(body, 16))
                } else {
                    // A simple packet block holds min(original length, snap length) bytes.
                    let original = endian.u32(body, 0);
                    let snap = if snap_len == 0 { u32::MAX } else { snap_len };
                    (original.min(snap) as usize, original)
                };
                let Some(data) = body.get(header..header + captured) else {
                    return Err(bad(format!(
                        "packet {number} says {captured} captured bytes, its block holds {}",
                        body.len() - header
                    )));
                };
                packets.push(CapturedPacket {
                    number,
                    offset,
                    original_len,
                    data: data.to_vec(),
                });
            }
            _ => {}
        }
        offset += len;
    }
    Ok(packets)
}

/// A classic pcap file (little-endian, microsecond timestamps, Ethernet) holding `frames`,
/// their timestamps one microsecond apart.
pub fn write(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut file = Vec::new();
    file.extend_from_slice(&MAGIC_MICROS.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    file.extend_from_slice(&0i32.to_le_bytes());
    file.extend_from_slice(&0u32.to_le_bytes());
    file.extend_from_slice(&(MAX_RECORD as u32).to_le_bytes());
    file.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (index, frame) in frames.iter().enumerate() {
        file.extend_from_slice(&0u32.to_le_bytes());
        file.extend_from_slice(&(index as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(frame);
    }
    file
}

#[cfg(test)]
mod tests;
