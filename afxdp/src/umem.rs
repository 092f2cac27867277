//! The UMEM: one memory area, cut into equal frames, that the kernel and user space pass
//! back and forth through the rings. Frame ownership is carried by `Frame` tokens: whoever
//! holds the token may touch the bytes, and a token is moved (never copied) into a ring.

use std::{
    ptr::NonNull,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use crate::{XskError, sys};

/// Room the kernel keeps in front of every received packet (include/net/xdp.h).
pub const XDP_PACKET_HEADROOM: u32 = 256;
const HUGE_PAGE: usize = 2 << 20;

/// The shape of a UMEM: frame size and count, headroom, and how the memory is backed.
#[derive(Clone, Debug)]
pub struct UmemConfig {
    /// Bytes per frame: 2048 or 4096 (any size from 2048 to 4096 with `unaligned_chunks`).
    pub frame_size: u32,
    /// Frames in the area; the area is `frame_size * frame_count` bytes, rounded up to whole
    /// pages.
    pub frame_count: u32,
    /// Extra bytes the kernel leaves in front of each packet, after its own 256.
    pub headroom: u32,
    /// Back the area with 2 MiB huge pages (they must be reserved beforehand).
    pub huge_pages: bool,
    /// Unaligned-chunk mode: descriptors may point anywhere, not only at chunk starts.
    pub unaligned_chunks: bool,
}

impl Default for UmemConfig {
    fn default() -> UmemConfig {
        UmemConfig {
            frame_size: 4096,
            frame_count: 8192,
            headroom: 0,
            huge_pages: false,
            unaligned_chunks: false,
        }
    }
}

impl UmemConfig {
    fn validate(&self) -> Result<(), XskError> {
        let size = self.frame_size;
        if self.unaligned_chunks {
            if !(2048..=4096).contains(&size) {
                return Err(XskError::config(
                    "frame_size",
                    format!("{size} is outside 2048..=4096"),
                ));
            }
        } else if size != 2048 && size != 4096 {
            return Err(XskError::config(
                "frame_size",
                format!("{size} must be 2048 or 4096 (other sizes need unaligned chunks)"),
            ));
        }
        if self.frame_count == 0 {
            return Err(XskError::config("frame_count", "must be at least 1"));
        }
        // The kernel wants room for its headroom and a minimal packet after ours
        // (net/xdp/xdp_umem.c: xdp_umem_reg).
        if self.headroom + XDP_PACKET_HEADROOM + 64 > size {
            return Err(XskError::config(
                "headroom",
                format!(
                    "{} leaves no room for a packet in a {size}-byte frame",
                    self.headroom
                ),
            ));
        }
        Ok(())
    }

    fn area_len(&self) -> usize {
        let len = self.frame_size as usize * self.frame_count as usize;
        let unit = if self.huge_pages {
            HUGE_PAGE
        } else {
            page_size()
        };
        len.div_ceil(unit) * unit
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Who registered the UMEM with the kernel: the first socket bound on it. Later sockets
/// share the UMEM through that socket's fd (net/xdp/xsk.c: xsk_bind, XDP_SHARED_UMEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Unregistered,
    Socket {
        fd: std::os::fd::RawFd,
        /// Sharing sockets inherit it (they may not set bind flags of their own).
        need_wakeup: bool,
    },
    Closed,
}

pub(crate) struct Area {
    base: NonNull<u8>,
    len: usize,
    pub config: UmemConfig,
    pub id: u32,
    pub owner: Mutex<Owner>,
}

// SAFETY: the area is plain memory; which thread may touch which frame is decided by the
// `Frame` tokens, and the owner slot is behind a mutex.
unsafe impl Send for Area {}
// SAFETY: as above.
unsafe impl Sync for Area {}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: every socket holds an `Arc<Area>`, so nothing uses the memory any more.
        unsafe { sys::munmap(self.base, self.len) };
    }
}

/// A shared handle on the UMEM. Cloning it is cheap; the memory lives until the last
/// handle and the last socket using it are gone.
#[derive(Clone)]
pub struct Umem {
    pub(crate) area: Arc<Area>,
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

impl Umem {
    /// Maps the area and hands back every frame in a pool.
    pub fn new(config: UmemConfig) -> Result<(Umem, FramePool), XskError> {
        config.validate()?;
        let len = config.area_len();
        let base = sys::mmap_anonymous(len, config.huge_pages).map_err(|error| {
            if config.huge_pages {
                XskError::HugePagesUnavailable {
                    bytes: len,
                    pages: len / HUGE_PAGE,
                    source: error,
                }
            } else {
                XskError::syscall_with_hint(
                    "mmap(UMEM)",
                    error,
                    format!("{len} bytes; lower frame_count"),
                )
            }
        })?;
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let umem = Umem {
            area: Arc::new(Area {
                base,
                len,
                config,
                id,
                owner: Mutex::new(Owner::Unregistered),
            }),
        };
        let pool = FramePool {
            frames: (0..umem.frame_count())
                .rev()
                .map(|index| umem.fresh_frame(index))
                .collect(),
        };
        Ok((umem, pool))
    }

    /// The configuration the UMEM was made with.
    pub fn config(&self) -> &UmemConfig {
        &self.area.config
    }

    /// Frames in the UMEM.
    pub fn frame_count(&self) -> u32 {
        self.area.config.frame_count
    }

    /// Bytes per frame (the chunk size registered with the kernel).
    pub fn frame_size(&self) -> u32 {
        self.area.config.frame_size
    }

    pub(crate) fn base(&self) -> NonNull<u8> {
        self.area.base
    }

    pub(crate) fn len(&self) -> usize {
        self.area.len
    }

    /// Where a fresh frame's data starts: the same offset the kernel uses on receive, so
    /// code that prepends headers has the same room either way.
    fn data_offset(&self) -> u32 {
        self.area.config.headroom + XDP_PACKET_HEADROOM
    }

    fn fresh_frame(&self, index: u32) -> Frame {
        Frame {
            base: index as u64 * self.frame_size() as u64,
            len: 0,
            offset: self.data_offset() as u16,
            options: 0,
            umem: self.area.id,
        }
    }

    /// The frame index for an address inside a frame. Aligned frame sizes are powers of two,
    /// so this is a shift there instead of a division (this runs several times per packet).
    pub(crate) fn index_of(&self, address: u64) -> usize {
        let size = self.frame_size() as u64;
        let index = if size.is_power_of_two() {
            address >> size.trailing_zeros()
        } else {
            address / size
        };
        index as usize
    }

    /// Rebuilds the token for an address the kernel returned on the RX or completion ring.
    /// In unaligned mode the upper 16 bits carry an offset (include/uapi/linux/if_xdp.h:
    /// XSK_UNALIGNED_BUF_OFFSET_SHIFT); adding both halves gives the data address.
    pub(crate) fn frame_at(&self, address: u64, len: u32, options: u32) -> Frame {
        let data = (address & libc::XSK_UNALIGNED_BUF_ADDR_MASK)
            + (address >> libc::XSK_UNALIGNED_BUF_OFFSET_SHIFT);
        let index = self.index_of(data) as u64;
        assert!(
            index < self.frame_count() as u64,
            "kernel returned address {address:#x} outside the UMEM"
        );
        let base = index * self.frame_size() as u64;
        Frame {
            base,
            len,
            offset: (data - base) as u16,
            options: options as u16,
            umem: self.area.id,
        }
    }

    /// The descriptor address for a frame going to the TX ring.
    pub(crate) fn tx_address(&self, frame: &Frame) -> u64 {
        self.check(frame);
        frame.base + frame.offset as u64
    }

    fn check(&self, frame: &Frame) {
        assert_eq!(
            frame.umem, self.area.id,
            "a frame of UMEM {} was used with UMEM {}",
            frame.umem, self.area.id
        );
    }

    /// The packet bytes of a frame the caller owns.
    pub fn data<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        self.check(frame);
        let start = frame.base as usize + frame.offset as usize;
        // SAFETY: the token proves the frame is ours, not the kernel's; `len` never exceeds
        // the frame (`set_len` checks it), and the frame lies inside the area.
        unsafe {
            std::slice::from_raw_parts(self.area.base.as_ptr().add(start), frame.len as usize)
        }
    }

    /// The packet bytes of a frame the caller owns, writable.
    pub fn data_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        self.check(frame);
        let start = frame.base as usize + frame.offset as usize;
        // SAFETY: as in `data`; `&mut Frame` makes this the only view of these bytes.
        unsafe {
            std::slice::from_raw_parts_mut(self.area.base.as_ptr().add(start), frame.len as usize)
        }
    }

    /// Packet bytes a frame holds from the offset fresh frames start at.
    pub fn data_room(&self) -> u32 {
        self.frame_size() - self.data_offset()
    }

    /// Room from the frame's data offset to the end of its chunk.
    pub fn capacity(&self, frame: &Frame) -> u32 {
        self.frame_size() - frame.offset as u32
    }

    /// Sets the packet length; fails if it would run past the frame.
    pub fn set_len(&self, frame: &mut Frame, len: u32) -> Result<(), XskError> {
        let capacity = self.capacity(frame);
        if len > capacity {
            return Err(XskError::config(
                "len",
                format!("{len} bytes do not fit in a frame with {capacity} bytes of room"),
            ));
        }
        frame.len = len;
        Ok(())
    }

    /// Makes room for `bytes` more bytes in front of the packet (for an encapsulation
    /// header), taken from the frame's headroom; the new bytes are left as they were.
    pub fn grow_front(&self, frame: &mut Frame, bytes: u16) -> Result<(), XskError> {
        if frame.offset < bytes {
            return Err(XskError::config(
                "headroom",
                format!(
                    "{bytes} bytes do not fit in front of a packet with {} bytes of headroom",
                    frame.offset
                ),
            ));
        }
        frame.offset -= bytes;
        frame.len += u32::from(bytes);
        Ok(())
    }

    /// Copies `bytes` into the frame and sets its length.
    pub fn write(&self, frame: &mut Frame, bytes: &[u8]) -> Result<(), XskError> {
        self.set_len(frame, bytes.len() as u32)?;
        self.data_mut(frame).copy_from_slice(bytes);
        Ok(())
    }
}

/// Ownership of one UMEM frame. Not `Clone`: a frame is in exactly one place at a time —
/// a pool, user code, or (as a descriptor) one of the kernel's rings.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    base: u64,
    len: u32,
    offset: u16,
    options: u16,
    umem: u32,
}

impl Frame {
    /// The packet's length in bytes (for a received frame, what the kernel wrote).
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the frame holds no packet bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Multi-buffer: more frames of the same packet follow this one (XDP_PKT_CONTD).
    pub fn continues(&self) -> bool {
        self.options as u32 & libc::XDP_PKT_CONTD != 0
    }

    /// Marks this frame as followed by another of the same packet, for sending a chain.
    pub fn set_continues(&mut self, continues: bool) {
        self.options = if continues {
            libc::XDP_PKT_CONTD as u16
        } else {
            0
        };
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn options(&self) -> u32 {
        self.options as u32
    }

    /// Resets length and offset before the frame is given back to the kernel for receive.
    pub(crate) fn recycle(&mut self, data_offset: u16) {
        self.len = 0;
        self.offset = data_offset;
        self.options = 0;
    }
}

/// Frames owned by user space and free for use. `Umem::new` returns one holding them all;
/// `split_off` divides it between sockets or threads.
#[derive(Debug, Default)]
pub struct FramePool {
    frames: Vec<Frame>,
}

impl FramePool {
    /// Frames in the pool.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the pool holds no frames.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Takes a frame out of the pool, if any is left.
    pub fn take(&mut self) -> Option<Frame> {
        self.frames.pop()
    }

    /// Returns a frame, ready for reuse (length and options reset).
    pub fn put(&mut self, mut frame: Frame, umem: &Umem) {
        umem.check(&frame);
        frame.recycle(umem.data_offset() as u16);
        self.frames.push(frame);
    }

    /// Moves `count` frames (or all, if fewer) into a new pool.
    pub fn split_off(&mut self, count: usize) -> FramePool {
        let keep = self.frames.len().saturating_sub(count);
        FramePool {
            frames: self.frames.split_off(keep),
        }
    }

    /// Moves every frame of `other` into this pool (the inverse of `split_off`).
    pub fn merge(&mut self, other: FramePool) {
        self.frames.extend(other.frames);
    }
}
