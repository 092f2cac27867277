//! An AF_XDP socket bound to one (interface, queue), with its four rings.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::{
    FramePool, Umem, XskError,
    batch::{KernelFrames, RxBatch, TxBatch},
    ring::{Layout, Ring},
    sys,
    umem::Owner,
};

/// asm-generic/socket.h; not in every libc release.
const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
/// The RX and TX ring mmap offsets, as the u64 the other two rings' constants are.
const RX_RING: u64 = libc::XDP_PGOFF_RX_RING as u64;
const TX_RING: u64 = libc::XDP_PGOFF_TX_RING as u64;

/// How the socket reaches the UMEM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// The kernel copies packets between the driver's buffers and the UMEM. Works on any
    /// driver with XDP.
    Copy,
    /// The driver DMAs straight into the UMEM. Needs driver support (not veth).
    ZeroCopy,
    /// Zero-copy if the driver offers it, else copy; the fallback is reported.
    #[default]
    Auto,
}

/// Busy polling (include/uapi/asm-generic/socket.h). The kernel polls the NAPI context
/// from the syscalls the socket makes instead of waiting for interrupts. Pair it with the
/// device's `napi_defer_hard_irqs` and `gro_flush_timeout` sysfs knobs (see README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    /// SO_BUSY_POLL: microseconds to busy-poll in a blocking call.
    pub timeout_us: u32,
    /// SO_BUSY_POLL_BUDGET: packets per NAPI poll.
    pub budget: u32,
}

impl Default for BusyPoll {
    fn default() -> BusyPoll {
        BusyPoll {
            timeout_us: 20,
            budget: 64,
        }
    }
}

/// How [`Socket::bind`] sets up a socket. The default suits most uses: `Auto` mode, 2048
/// entries per ring, need-wakeup on, no multi-buffer, no busy polling.
#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// Copy, zero-copy, or zero-copy when the driver offers it.
    pub mode: BindMode,
    /// Entries per ring; powers of two. A zero RX or TX size leaves that ring out.
    pub rx_size: u32,
    /// TX ring entries (0: no TX ring).
    pub tx_size: u32,
    /// Fill ring entries; not zero. The UMEM needs at least this many frames, so the ring can
    /// be filled.
    pub fill_size: u32,
    /// Completion ring entries; not zero.
    pub completion_size: u32,
    /// XDP_USE_NEED_WAKEUP: the kernel says when it needs a syscall to make progress.
    pub need_wakeup: bool,
    /// XDP_USE_SG: packets larger than a frame arrive and leave as chains of frames.
    pub multi_buffer: bool,
    /// Busy-polling settings; `None` leaves the socket to interrupts.
    pub busy_poll: Option<BusyPoll>,
}

impl Default for SocketConfig {
    fn default() -> SocketConfig {
        SocketConfig {
            mode: BindMode::Auto,
            rx_size: 2048,
            tx_size: 2048,
            fill_size: 2048,
            completion_size: 2048,
            need_wakeup: true,
            multi_buffer: false,
            busy_poll: None,
        }
    }
}

impl SocketConfig {
    fn validate(&self, umem: &Umem) -> Result<(), XskError> {
        let rings = [
            ("rx_size", self.rx_size, true),
            ("tx_size", self.tx_size, true),
            ("fill_size", self.fill_size, false),
            ("completion_size", self.completion_size, false),
        ];
        for (field, size, may_be_zero) in rings {
            if (size == 0 && !may_be_zero) || (size != 0 && !size.is_power_of_two()) {
                return Err(XskError::config(
                    field,
                    format!("{size} is not a power of two"),
                ));
            }
        }
        if self.rx_size == 0 && self.tx_size == 0 {
            return Err(XskError::config(
                "rx_size",
                "a socket needs an RX or a TX ring",
            ));
        }
        let frames = umem.frame_count();
        if frames < self.fill_size {
            return Err(XskError::config(
                "frame_count",
                format!(
                    "UMEM too small for the rings: {frames} frames cannot fill a {}-entry \
                     fill ring; give the UMEM at least {} frames",
                    self.fill_size, self.fill_size
                ),
            ));
        }
        Ok(())
    }
}

/// The socket's counters: every field of `struct xdp_statistics` (include/uapi/linux/if_xdp.h),
/// read with `getsockopt(XDP_STATISTICS)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Statistics {
    /// Dropped for reasons other than an invalid descriptor, e.g. no room in the RX ring.
    pub rx_dropped: u64,
    /// RX-side descriptors the kernel found invalid.
    pub rx_invalid_descs: u64,
    /// TX descriptors the kernel refused: address or length outside the UMEM, or bad options.
    pub tx_invalid_descs: u64,
    /// The RX ring was full.
    pub rx_ring_full: u64,
    /// The fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// The TX ring was empty when the kernel looked for work.
    pub tx_ring_empty_descs: u64,
}

/// An AF_XDP socket bound to one queue of one interface, with its fill, completion, RX and TX
/// rings mapped. It holds a [`Umem`] handle, so the UMEM's memory lives at least as long
/// as the socket; closing it (drop or [`Socket::shutdown`]) removes it from every XSKMAP.
pub struct Socket {
    fd: OwnedFd,
    umem: Umem,
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Option<Ring<libc::xdp_desc>>,
    tx: Option<Ring<libc::xdp_desc>>,
    kernel: KernelFrames,
    /// Frames [`Socket::refill`] was asked to give back and could not place yet.
    fill_owed: u32,
    iface: String,
    queue: u32,
    zero_copy: bool,
    fallback: Option<String>,
    need_wakeup: bool,
    busy_poll: bool,
    owns_umem: bool,
}

impl Socket {
    /// Creates the socket, sets up its rings on `umem` and binds it to `queue` of `iface`.
    /// The first socket on a UMEM registers it; later ones share it (XDP_SHARED_UMEM) and
    /// must be on another queue or interface.
    pub fn bind(
        umem: &Umem,
        iface: &str,
        queue: u32,
        config: &SocketConfig,
    ) -> Result<Socket, XskError> {
        config.validate(umem)?;
        let ifindex =
            nic::ifindex(iface).map_err(|_| XskError::NoSuchInterface(iface.to_string()))?;
        if let Ok(available) = nic::ethtool::queue_count(iface)
            && queue >= available
        {
            return Err(XskError::NoSuchQueue {
                iface: iface.to_string(),
                queue,
                available,
            });
        }
        let fd = sys::xdp_socket().map_err(|error| {
            let hint = match error.raw_os_error() {
                Some(libc::EAFNOSUPPORT) => "the kernel lacks CONFIG_XDP_SOCKETS",
                Some(libc::EPERM) | Some(libc::EACCES) => "AF_XDP needs CAP_NET_RAW; run as root",
                _ => "cannot create an AF_XDP socket",
            };
            XskError::syscall_with_hint("socket(AF_XDP)", error, hint)
        })?;

        // The owner slot stays locked until bind is done, so the owner socket cannot close
        // under a sharing socket that is about to name its fd.
        let mut owner = umem.area.owner.lock().unwrap_or_else(|e| e.into_inner());
        let shared_with = match *owner {
            Owner::Unregistered => {
                register_umem(fd.as_fd(), umem)?;
                None
            }
            Owner::Socket { fd, .. } => Some(fd),
            Owner::Closed => return Err(XskError::UmemOwnerClosed),
        };

        let socket_fd = fd.as_fd();
        set_ring_size(
            socket_fd,
            libc::XDP_UMEM_FILL_RING,
            config.fill_size,
            "fill",
        )?;
        set_ring_size(
            socket_fd,
            libc::XDP_UMEM_COMPLETION_RING,
            config.completion_size,
            "completion",
        )?;
        if config.rx_size > 0 {
            set_ring_size(socket_fd, libc::XDP_RX_RING, config.rx_size, "RX")?;
        }
        if config.tx_size > 0 {
            set_ring_size(socket_fd, libc::XDP_TX_RING, config.tx_size, "TX")?;
        }
        if let Some(busy_poll) = config.busy_poll {
            set_busy_poll(socket_fd, busy_poll)?;
        }
        let (offsets, _) = sys::get_option::<libc::xdp_mmap_offsets>(
            socket_fd,
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
        )
        .map_err(|error| XskError::syscall("getsockopt(XDP_MMAP_OFFSETS)", error))?;
        let fill = Ring::map(
            socket_fd,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            Layout::from(offsets.fr),
            config.fill_size,
            "mmap(fill ring)",
        )?
        .into_producer();
        let completion = Ring::map(
            socket_fd,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            Layout::from(offsets.cr),
            config.completion_size,
            "mmap(completion ring)",
        )?
        .into_consumer();
        // The RX and TX rings are optional: a size of zero leaves one out.
        let rx = (config.rx_size > 0)
            .then(|| {
                let ring = Layout::from(offsets.rx);
                Ring::map(socket_fd, RX_RING, ring, config.rx_size, "mmap(RX ring)")
            })
            .transpose()?
            .map(Ring::into_consumer);
        let tx = (config.tx_size > 0)
            .then(|| {
                let ring = Layout::from(offsets.tx);
                Ring::map(socket_fd, TX_RING, ring, config.tx_size, "mmap(TX ring)")
            })
            .transpose()?
            .map(Ring::into_producer);

        let address = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flags(config, shared_with.is_some()),
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_with.unwrap_or(0) as u32,
        };
        bind_retrying_busy(socket_fd, &address)
            .map_err(|error| bind_error(error, iface, queue, config, shared_with.is_some()))?;

        let zero_copy = zero_copy_in_use(socket_fd)?;
        let fallback = (config.mode == BindMode::Auto && !zero_copy).then(|| {
            let driver = nic::ethtool::driver(iface).unwrap_or_else(|_| "unknown".into());
            format!("zero-copy not supported by driver {driver} on {iface}; using copy mode")
        });
        let owns_umem = shared_with.is_none();
        let need_wakeup = match *owner {
            Owner::Socket { need_wakeup, .. } => need_wakeup,
            _ => config.need_wakeup,
        };
        if owns_umem {
            *owner = Owner::Socket {
                fd: fd.as_raw_fd(),
                need_wakeup,
            };
        }
        drop(owner);
        Ok(Socket {
            kernel: KernelFrames::new(umem.frame_count() as usize),
            fill_owed: 0,
            fd,
            umem: umem.clone(),
            fill,
            completion,
            rx,
            tx,
            iface: iface.to_string(),
            queue,
            zero_copy,
            fallback,
            need_wakeup,
            busy_poll: config.busy_poll.is_some(),
            owns_umem,
        })
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The queue index the socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The UMEM the socket's descriptors point into.
    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// Whether the driver runs this socket in zero-copy mode (XDP_OPTIONS).
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Why `BindMode::Auto` ended in copy mode, if it did.
    pub fn fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Whether the socket was set up for busy polling ([`SocketConfig::busy_poll`]).
    pub fn is_busy_polling(&self) -> bool {
        self.busy_poll
    }

    /// Frames currently owned by the kernel through this socket's fill and TX rings.
    pub fn frames_in_kernel(&self) -> usize {
        self.kernel.count()
    }

    /// Gives up to `max` frames from `pool` to the kernel for receiving.
    pub fn fill(&mut self, pool: &mut FramePool, max: u32) -> u32 {
        let wanted = max.min(pool.len() as u32);
        let mut batch = self.fill.produce(wanted);
        for _ in 0..batch.capacity() {
            let Some(frame) = pool.take() else { break };
            self.kernel.give(self.umem.index_of(frame.base()));
            batch.push(frame.base());
        }
        batch.commit()
    }

    /// Gives the kernel back `returned` frames for receiving (frames that came back to
    /// `pool` since the last call), plus those earlier calls could not place. Returns how
    /// many it placed.
    ///
    /// Why a debt: the kernel publishes its fill ring consumer index when it flushes, just
    /// *after* it made the received frames visible on the RX ring. A refill in between
    /// finds a full fill ring full still, and places fewer frames than it was asked to. A
    /// frame not placed then must be placed later, or it leaves circulation for good: the
    /// fill ring shrinks until the kernel finds it empty and drops packets.
    pub fn refill(&mut self, pool: &mut FramePool, returned: u32) -> u32 {
        self.fill_owed = self.fill_owed.saturating_add(returned);
        if self.fill_owed == 0 {
            return 0;
        }
        let placed = self.fill(pool, self.fill_owed);
        self.fill_owed -= placed;
        placed
    }

    /// Frames [`Socket::refill`] still owes the fill ring (placed by its next calls).
    pub fn fill_owed(&self) -> u32 {
        self.fill_owed
    }

    /// Received frames, at most `max`. The guard yields each frame once; frames not taken
    /// out of it stay in the RX ring for the next call.
    pub fn receive(&mut self, max: u32) -> RxBatch<'_> {
        let ring = self
            .rx
            .as_mut()
            .expect("socket was bound without an RX ring");
        RxBatch::new(ring.consume(max), &self.umem, &mut self.kernel)
    }

    /// Room for up to `max` frames on the TX ring. Frames of a batch dropped uncommitted go
    /// back to `pool`.
    pub fn transmit<'a>(&'a mut self, pool: &'a mut FramePool, max: u32) -> TxBatch<'a> {
        let ring = self
            .tx
            .as_mut()
            .expect("socket was bound without a TX ring");
        TxBatch::new(ring.produce(max), &self.umem, &mut self.kernel, pool)
    }

    /// Free TX slots, at most `wanted` (0 without a TX ring).
    pub fn tx_room(&mut self, wanted: u32) -> u32 {
        self.tx.as_mut().map_or(0, |ring| ring.free(wanted))
    }

    /// Moves up to `max` sent frames from the completion ring back to `pool`.
    pub fn complete(&mut self, pool: &mut FramePool, max: u32) -> u32 {
        let mut done = 0;
        for address in self.completion.consume(max) {
            let frame = self.umem.frame_at(address, 0, 0);
            self.kernel.take(self.umem.index_of(frame.base()));
            pool.put(frame, &self.umem);
            done += 1;
        }
        done
    }

    /// Whether the kernel needs a `wake_rx` (or `poll`) to refill from the fill ring.
    pub fn fill_needs_wakeup(&self) -> bool {
        !self.need_wakeup || self.fill.needs_wakeup()
    }

    /// Whether the kernel needs a `wake_tx` to transmit. In copy mode it always does: the
    /// copy happens inside the syscall (net/xdp/xsk.c: xsk_generic_xmit).
    pub fn tx_needs_wakeup(&self) -> bool {
        !self.need_wakeup || self.tx.as_ref().is_some_and(Ring::needs_wakeup)
    }

    /// Kicks the kernel to transmit. Transient refusals (the device queue is busy or full)
    /// are not errors: the frames stay in the TX ring for the next kick.
    pub fn wake_tx(&self) -> Result<(), XskError> {
        match sys::send_wakeup(self.fd.as_fd()) {
            Err(error)
                if !matches!(
                    error.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
                ) =>
            {
                Err(XskError::syscall("sendto(TX wakeup)", error))
            }
            _ => Ok(()),
        }
    }

    /// Kicks the kernel to receive (and, with busy polling, runs the NAPI poll).
    pub fn wake_rx(&self) -> Result<(), XskError> {
        match sys::receive_wakeup(self.fd.as_fd()) {
            Err(error) if !matches!(error.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                Err(XskError::syscall("recvfrom(RX wakeup)", error))
            }
            _ => Ok(()),
        }
    }

    /// Sleeps until packets arrive or `timeout_ms` passes; returns whether any arrived.
    pub fn poll(&self, timeout_ms: i32) -> Result<bool, XskError> {
        match sys::poll_readable(self.fd.as_fd(), timeout_ms) {
            Err(error) if error.raw_os_error() == Some(libc::EINTR) => Ok(false),
            result => result.map_err(|error| XskError::syscall("poll", error)),
        }
    }

    /// The kernel's counters for this socket (`getsockopt(XDP_STATISTICS)`), since it was
    /// created.
    pub fn statistics(&self) -> Result<Statistics, XskError> {
        let (raw, _) = sys::get_option::<libc::xdp_statistics>(
            self.fd.as_fd(),
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
        )
        .map_err(|error| XskError::syscall("getsockopt(XDP_STATISTICS)", error))?;
        // Kernels before 5.9 fill in only the first three fields; the rest stay zero.
        Ok(Statistics {
            rx_dropped: raw.rx_dropped,
            rx_invalid_descs: raw.rx_invalid_descs,
            tx_invalid_descs: raw.tx_invalid_descs,
            rx_ring_full: raw.rx_ring_full,
            rx_fill_ring_empty_descs: raw.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: raw.tx_ring_empty_descs,
        })
    }

    /// Closes the socket and returns every frame its rings held, so the caller's pool is
    /// whole again. (Closing makes the kernel release the rings: net/xdp/xsk.c xsk_release.)
    pub fn shutdown(self, pool: &mut FramePool) {
        let umem = self.umem.clone();
        let held = self.kernel.indexes();
        drop(self);
        for index in held {
            pool.put(
                umem.frame_at(index as u64 * umem.frame_size() as u64, 0, 0),
                &umem,
            );
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Closing the fd (after this) also removes the socket from every XSKMAP it was in
        // (net/xdp/xsk.c: xsk_release -> xsk_delete_from_maps), so the steering program
        // falls back to passing its traffic to the kernel.
        if self.owns_umem {
            *self
                .umem
                .area
                .owner
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Owner::Closed;
        }
    }
}

fn register_umem(fd: BorrowedFd<'_>, umem: &Umem) -> Result<(), XskError> {
    let config = umem.config();
    let registration = libc::xdp_umem_reg {
        addr: umem.base().as_ptr() as u64,
        len: umem.len() as u64,
        chunk_size: config.frame_size,
        headroom: config.headroom,
        flags: if config.unaligned_chunks {
            libc::XDP_UMEM_UNALIGNED_CHUNK_FLAG
        } else {
            0
        },
        tx_metadata_len: 0,
    };
    sys::set_option(fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &registration).map_err(|error| {
        let hint = match error.raw_os_error() {
            Some(libc::ENOMEM) | Some(libc::ENOBUFS) => {
                "cannot pin the UMEM pages; raise RLIMIT_MEMLOCK or shrink the UMEM"
            }
            _ => "the kernel rejected the UMEM geometry (frame size, headroom, alignment)",
        };
        XskError::syscall_with_hint("setsockopt(XDP_UMEM_REG)", error, hint)
    })
}

fn set_ring_size(
    fd: BorrowedFd<'_>,
    option: libc::c_int,
    size: u32,
    ring: &str,
) -> Result<(), XskError> {
    sys::set_option(fd, libc::SOL_XDP, option, &size).map_err(|error| {
        XskError::syscall_with_hint(
            "setsockopt(ring size)",
            error,
            format!("{ring} ring of {size}"),
        )
    })
}

fn set_busy_poll(fd: BorrowedFd<'_>, busy_poll: BusyPoll) -> Result<(), XskError> {
    let options = [
        ("setsockopt(SO_PREFER_BUSY_POLL)", SO_PREFER_BUSY_POLL, 1),
        (
            "setsockopt(SO_BUSY_POLL)",
            SO_BUSY_POLL,
            busy_poll.timeout_us,
        ),
        (
            "setsockopt(SO_BUSY_POLL_BUDGET)",
            SO_BUSY_POLL_BUDGET,
            busy_poll.budget,
        ),
    ];
    for (call, option, value) in options {
        sys::set_option(fd, libc::SOL_SOCKET, option, &(value as libc::c_int)).map_err(
            |error| {
                XskError::syscall_with_hint(
                    call,
                    error,
                    "values above net.core.busy_poll and the default budget need CAP_NET_ADMIN",
                )
            },
        )?;
    }
    Ok(())
}

/// Binds, retrying EBUSY for a moment: a socket closed just before leaves its queue busy
/// until the kernel's deferred pool release runs (net/xdp/xsk_buff_pool.c:
/// xp_put_pool -> xp_release_deferred).
fn bind_retrying_busy(fd: BorrowedFd<'_>, address: &libc::sockaddr_xdp) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        match sys::bind_xdp(fd, address) {
            Err(error)
                if error.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

fn bind_flags(config: &SocketConfig, shared: bool) -> u16 {
    if shared {
        // A sharing socket may not set any other flag: it inherits the first socket's mode,
        // need_wakeup and multi-buffer settings (net/xdp/xsk.c: xsk_bind).
        return libc::XDP_SHARED_UMEM;
    }
    let mut flags = match config.mode {
        BindMode::Copy => libc::XDP_COPY,
        BindMode::ZeroCopy => libc::XDP_ZEROCOPY,
        // No mode flag: the kernel tries zero-copy and falls back to copy
        // (net/xdp/xsk_buff_pool.c: xp_assign_dev).
        BindMode::Auto => 0,
    };
    if config.need_wakeup {
        flags |= libc::XDP_USE_NEED_WAKEUP;
    }
    if config.multi_buffer {
        flags |= libc::XDP_USE_SG;
    }
    flags
}

fn bind_error(
    error: std::io::Error,
    iface: &str,
    queue: u32,
    config: &SocketConfig,
    shared: bool,
) -> XskError {
    let errno = error.raw_os_error();
    if config.mode == BindMode::ZeroCopy && matches!(errno, Some(libc::EOPNOTSUPP)) {
        return XskError::ZeroCopyUnsupported {
            iface: iface.to_string(),
            driver: nic::ethtool::driver(iface).unwrap_or_else(|_| "unknown".into()),
            source: error,
        };
    }
    let hint = match errno {
        Some(libc::EBUSY) => {
            format!("queue {queue} of {iface} already has an AF_XDP socket or zero-copy pool bound")
        }
        Some(libc::EINVAL) if shared => format!(
            "a socket sharing a UMEM must be on another queue or interface than the first \
             (queue {queue} of {iface})"
        ),
        Some(libc::EOPNOTSUPP) if config.multi_buffer => {
            format!("driver of {iface} does not support multi-buffer (XDP_USE_SG)")
        }
        Some(libc::ENETDOWN) => format!("{iface} is down"),
        _ => format!("binding queue {queue} of {iface}"),
    };
    XskError::syscall_with_hint("bind(AF_XDP)", error, hint)
}

fn zero_copy_in_use(fd: BorrowedFd<'_>) -> Result<bool, XskError> {
    let (options, _) = sys::get_option::<libc::xdp_options>(fd, libc::SOL_XDP, libc::XDP_OPTIONS)
        .map_err(|error| XskError::syscall("getsockopt(XDP_OPTIONS)", error))?;
    Ok(options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}
