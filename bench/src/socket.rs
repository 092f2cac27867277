//! An app's AF_XDP socket: how it is bound, and the steering program that sends its queue's
//! traffic to it. `fastpath xsk` and the line-rate sinks share both.

use std::os::fd::AsRawFd;

use afxdp::{BindMode, BusyPoll, FramePool, Socket, SocketConfig, Umem, UmemConfig, XskError};
use offload::{AttachOptions, OffloadError, Steering, mode::ModePolicy, rules::Action};

/// The loop to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XskApp {
    /// Receive and drop.
    Rxdrop,
    /// Send UDP frames as fast as possible.
    Txpush,
    /// Receive, swap the MACs, send back out.
    L2fwd,
}

/// How an app's AF_XDP socket is bound: `fastpath xsk` and the line-rate sinks alike.
#[derive(Clone, Debug)]
pub struct SocketSettings {
    /// The interface to bind on.
    pub iface: String,
    /// Its queue to bind.
    pub queue: u32,
    /// Copy, zero-copy, or zero-copy falling back to copy.
    pub mode: BindMode,
    /// Busy-poll with SO_PREFER_BUSY_POLL, SO_BUSY_POLL=20 and SO_BUSY_POLL_BUDGET=batch.
    pub busy_poll: bool,
    /// Descriptors per ring operation.
    pub batch: u32,
    /// UMEM frame size.
    pub frame_size: u32,
    /// Entries per ring (RX, TX, fill, completion).
    pub ring_size: u32,
    /// XDP_USE_SG: packets larger than a frame as chains.
    pub multi_buffer: bool,
}

impl SocketSettings {
    /// A UMEM of four frames per ring entry, and a socket on it with the rings `app` uses.
    pub fn bind(&self, app: XskApp) -> Result<(Socket, FramePool), XskError> {
        let ring = self.ring_size;
        let (umem, pool) = Umem::new(UmemConfig {
            frame_size: self.frame_size,
            frame_count: ring * 4,
            ..UmemConfig::default()
        })?;
        let config = SocketConfig {
            mode: self.mode,
            rx_size: if app == XskApp::Txpush { 0 } else { ring },
            tx_size: if app == XskApp::Rxdrop { 0 } else { ring },
            fill_size: ring,
            completion_size: ring,
            need_wakeup: true,
            multi_buffer: self.multi_buffer,
            busy_poll: self.busy_poll.then_some(BusyPoll {
                budget: self.batch,
                ..BusyPoll::default()
            }),
        };
        let socket = Socket::bind(&umem, &self.iface, self.queue, &config)?;
        Ok((socket, pool))
    }
}

/// The steering program sending a queue's traffic to an AF_XDP socket. If no fastpath
/// program is attached, one whose default action is `xsk` is attached for the run and
/// detached on drop; an existing attachment (and its rules) is used as it is.
pub struct SocketSteering {
    iface: String,
    /// The mode of the attachment made for this run; None when one was there already.
    attached_mode: Option<String>,
}

impl SocketSteering {
    /// Registers `socket` in the XSKMAP of the program on `iface`, attaching one if needed.
    pub fn register(iface: &str, socket: &Socket) -> Result<SocketSteering, OffloadError> {
        let (steering, attached_mode) = match Steering::open(iface) {
            Ok(steering) => (steering, None),
            Err(OffloadError::NotAttached(..)) => {
                let attachment = offload::attach(&AttachOptions {
                    iface: iface.to_string(),
                    policy: ModePolicy::Auto,
                    default_action: Action::Xsk,
                    prefilter: Vec::new(),
                })?;
                (Steering::open(iface)?, Some(attachment.mode.to_string()))
            }
            Err(error) => return Err(error),
        };
        let guard = SocketSteering {
            iface: iface.to_string(),
            attached_mode,
        };
        steering.register_socket(socket.queue(), socket.as_raw_fd())?;
        Ok(guard)
    }

    /// The XDP mode of the program attached for this run, if one was.
    pub fn attached_mode(&self) -> Option<&str> {
        self.attached_mode.as_deref()
    }
}

impl Drop for SocketSteering {
    fn drop(&mut self) {
        if self.attached_mode.is_some()
            && let Err(error) = offload::detach(&self.iface)
        {
            eprintln!("warning: could not detach from {}: {error}", self.iface);
        }
    }
}
