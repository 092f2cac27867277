//! Keeps `gen_tx` in the kernel's XDP dispatcher for the whole run.
//!
//! Each `BPF_PROG_RUN` with `repeat > 1` adds its program to the XDP dispatcher before the
//! run and removes it after (`bpf_prog_change_xdp`), and each change waits for an RCU grace
//! period. On the 2-core VM that was about 90% of a generator thread's time: 0.66 Mpps with
//! the CPU mostly idle, 4.0 Mpps with the hold. While the program stays attached somewhere
//! the dispatcher only counts users, so the hold attaches `gen_tx` in generic mode to a veth
//! pair made for the purpose (this kernel has no dummy driver), left down so that it never
//! sees a frame, and deletes the pair on drop. The pair is made in the caller's network
//! namespace; a process killed outright leaves it behind, down and without the program (the
//! link closes with the process).

use std::{
    process,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{
    Xdp,
    xdp::{XdpLink, XdpMode},
};
use futures::TryStreamExt;
use rtnetlink::{Handle, LinkVeth};

use crate::error::GenError;

pub(crate) struct DispatcherHold {
    name: String,
    ifindex: u32,
    /// Dropped first, so the program leaves the interface before the interface goes.
    link: Option<XdpLink>,
}

/// The pair's name (the peer adds `p`), unique to this run within an interface name's 15
/// bytes: the process and a count of holds it made.
fn hold_name(serial: u32) -> String {
    format!("fpgh{}x{}", process::id() % 1_000_000, serial % 1000)
}

static HOLDS: AtomicU32 = AtomicU32::new(0);

impl DispatcherHold {
    pub(crate) fn new(program: &mut Xdp) -> Result<DispatcherHold, GenError> {
        let name = hold_name(HOLDS.fetch_add(1, Ordering::Relaxed));
        let ifindex = netlink("create the dispatcher-hold veth", {
            let name = name.clone();
            async move |handle| {
                handle
                    .link()
                    .add(LinkVeth::new(&name, &format!("{name}p")).build())
                    .execute()
                    .await?;
                let mut links = handle.link().get().match_name(name).execute();
                Ok(links.try_next().await?.map(|link| link.header.index))
            }
        })?
        .ok_or_else(|| GenError::UnknownInterface(name.clone()))?;
        let mut hold = DispatcherHold {
            name,
            ifindex,
            link: None,
        };
        let attach_error = |source| GenError::Program {
            what: "attach gen_tx to the dispatcher-hold veth",
            source,
        };
        let link_id = program
            .attach_to_if_index(ifindex, XdpMode::Skb)
            .map_err(attach_error)?;
        hold.link = Some(program.take_link(link_id).map_err(attach_error)?);
        Ok(hold)
    }
}

impl Drop for DispatcherHold {
    fn drop(&mut self) {
        drop(self.link.take());
        let ifindex = self.ifindex;
        let deleted = netlink("delete the dispatcher-hold veth", async move |handle| {
            handle.link().del(ifindex).execute().await
        });
        if let Err(error) = deleted {
            eprintln!("warning: {error}; remove interface {} by hand", self.name);
        }
    }
}

/// One rtnetlink exchange on its own socket and small runtime: twice per run, not a hot
/// path, and it keeps the generator's API synchronous. `what` names the request in the error.
fn netlink<T>(
    what: &'static str,
    work: impl AsyncFnOnce(Handle) -> Result<T, rtnetlink::Error>,
) -> Result<T, GenError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|error| GenError::syscall("start netlink runtime", error))?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|error| GenError::syscall("open rtnetlink socket", error))?;
        tokio::spawn(connection);
        work(handle)
            .await
            .map_err(|source| GenError::Netlink { what, source })
    })
}
