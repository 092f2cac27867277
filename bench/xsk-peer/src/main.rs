//! `xsk-peer rxdrop|l2fwd|txpush IFACE NETNS SECONDS FRAME_SIZE BATCH RING WIRE_SIZE XSKS_PIN`
//!
//! Mirrors `fastpath xsk` with xsk-rs: copy mode, need_wakeup, the same ring, batch and frame
//! sizes. It uses fastpath's steering program (already attached by the bench runner) and
//! registers its socket in that program's pinned XSKMAP, so the kernel side is identical.
//! The runner names that pin (`XSKS_PIN`): pins live in a folder per network namespace, and
//! the runner finds it with fastpath's own lookup rather than a second copy of it here.
//! Prints one JSON line: packets, bytes, seconds, mpps.

use std::{
    ffi::CString,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use xsk_rs::{
    FrameDesc, Socket, Umem,
    config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig},
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 10 {
        eprintln!(
            "usage: xsk-peer rxdrop|l2fwd|txpush IFACE NETNS SECONDS FRAME_SIZE BATCH RING WIRE_SIZE XSKS_PIN"
        );
        std::process::exit(2);
    }
    let app = args[1].as_str();
    let iface = &args[2];
    enter_netns(&args[3]);
    let seconds: f64 = args[4].parse().expect("SECONDS");
    let frame_size: u32 = args[5].parse().expect("FRAME_SIZE");
    let batch: usize = args[6].parse().expect("BATCH");
    let ring: u32 = args[7].parse().expect("RING");
    let wire_size: usize = args[8].parse().expect("WIRE_SIZE");
    let xsks_pin = &args[9];

    let umem_config = UmemConfig::builder()
        .frame_size(FrameSize::new(frame_size).unwrap())
        .fill_queue_size(QueueSize::new(ring).unwrap())
        .comp_queue_size(QueueSize::new(ring).unwrap())
        .build()
        .unwrap();
    let (umem, mut descs) =
        Umem::new(umem_config, (ring * 4).try_into().unwrap(), false).expect("UMEM");
    let socket_config = SocketConfig::builder()
        .rx_queue_size(QueueSize::new(ring).unwrap())
        .tx_queue_size(QueueSize::new(ring).unwrap())
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(BindFlags::XDP_COPY | BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    // SAFETY (xsk-rs contract): the UMEM outlives the socket and frames are not aliased.
    let (mut tx, mut rx, fq_cq) =
        unsafe { Socket::new(socket_config, &umem, &iface.parse().unwrap(), 0) }.expect("socket");
    let (mut fq, mut cq) = fq_cq.expect("fill and completion queues");
    if app != "txpush" {
        register(xsks_pin, rx.fd().as_raw_fd());
    }

    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let (mut packets, mut bytes) = (0u64, 0u64);
    match app {
        "rxdrop" => unsafe {
            // xsk-rs produces all or nothing: fill exactly one ring's worth.
            let (filled, spare) = descs.split_at_mut(ring as usize);
            assert_eq!(fq.produce(filled), filled.len());
            let mut got = descs_of(&spare[..batch]);
            while Instant::now() < deadline {
                let n = rx.consume(&mut got);
                if n == 0 {
                    if fq.needs_wakeup() {
                        fq.wakeup(rx.fd_mut(), 0).ok();
                    }
                    continue;
                }
                for desc in &got[..n] {
                    bytes += desc.lengths().data() as u64;
                }
                packets += n as u64;
                fq.produce(&got[..n]);
            }
        },
        "l2fwd" => unsafe {
            let (filled, rest) = descs.split_at_mut(ring as usize);
            assert_eq!(fq.produce(filled), filled.len());
            let mut got = descs_of(&rest[..batch]);
            let mut done = descs_of(&rest[..batch]);
            while Instant::now() < deadline {
                let completed = cq.consume(&mut done);
                if completed > 0 {
                    fq.produce(&done[..completed]);
                }
                let n = rx.consume(&mut got);
                if n == 0 {
                    if fq.needs_wakeup() {
                        fq.wakeup(rx.fd_mut(), 0).ok();
                    }
                    if tx.needs_wakeup() {
                        tx.wakeup().ok();
                    }
                    continue;
                }
                for desc in got[..n].iter_mut() {
                    let mut data = umem.data_mut(desc);
                    let frame = data.contents_mut();
                    let (dst, src) = frame.split_at_mut(6);
                    dst.swap_with_slice(&mut src[..6]);
                    bytes += frame.len() as u64;
                }
                packets += n as u64;
                let mut sent = 0;
                while sent < n {
                    sent += tx.produce(&got[sent..n]);
                    if tx.needs_wakeup() {
                        tx.wakeup().ok();
                    }
                    let completed = cq.consume(&mut done);
                    if completed > 0 {
                        fq.produce(&done[..completed]);
                    }
                }
            }
        },
        "txpush" => unsafe {
            let spec = lab::frame::FrameSpec {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [0xff; 6],
                src_ip: [192, 0, 2, 1].into(),
                dst_ip: [192, 0, 2, 2].into(),
                src_port: 9,
                dst_port: 9,
            };
            let frame = lab::frame::udp_frame(&spec, wire_size);
            for desc in descs.iter_mut() {
                use std::io::Write;
                umem.data_mut(desc).cursor().write_all(&frame).unwrap();
            }
            let mut free: Vec<FrameDesc> = descs.clone();
            let mut done = descs_of(&descs[..batch * 2]);
            let mut in_flight = 0usize;
            while Instant::now() < deadline {
                let completed = cq.consume(&mut done);
                in_flight -= completed;
                packets += completed as u64;
                bytes += (completed * frame.len()) as u64;
                // Completed descriptors come back with no length; the bytes are still there.
                for desc in done[..completed].iter_mut() {
                    umem.data_mut(desc).cursor().set_pos(frame.len());
                }
                free.extend_from_slice(&done[..completed]);
                let take = batch.min(free.len());
                let start_at = free.len() - take;
                let sent = tx.produce(&free[start_at..]);
                free.truncate(free.len() - sent);
                in_flight += sent;
                if in_flight > 0 && tx.needs_wakeup() {
                    tx.wakeup().ok();
                }
            }
        },
        other => panic!("unknown app {other}"),
    }
    let seconds = start.elapsed().as_secs_f64();
    let stats = tx.fd().xdp_statistics().expect("XDP_STATISTICS");
    println!(
        "{{\"packets\":{packets},\"bytes\":{bytes},\"seconds\":{seconds},\"mpps\":{},\"tx_invalid_descs\":{},\"rx_dropped\":{}}}",
        packets as f64 / seconds / 1e6,
        stats.tx_invalid_descs(),
        stats.rx_dropped()
    );
}

fn descs_of(descs: &[FrameDesc]) -> Vec<FrameDesc> {
    descs.to_vec()
}

fn enter_netns(name: &str) {
    let path = CString::new(format!("/run/netns/{name}")).unwrap();
    // SAFETY: open + setns on a namespace file; the fd is closed after.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        assert!(fd >= 0, "open netns {name}");
        assert_eq!(libc::setns(fd, libc::CLONE_NEWNET), 0, "setns {name}");
        libc::close(fd);
    }
}

/// Puts the socket in fastpath's pinned XSKMAP (the pin `xsks_pin`) at queue 0 (BPF_OBJ_GET,
/// BPF_MAP_UPDATE_ELEM).
fn register(xsks_pin: &str, socket_fd: i32) {
    let path = CString::new(xsks_pin).unwrap();
    let mut attr = [0u64; 16];
    attr[0] = path.as_ptr() as u64;
    // SAFETY: bpf(2) with a zero-padded attr union; BPF_OBJ_GET = 7.
    let map_fd = unsafe { libc::syscall(libc::SYS_bpf, 7, attr.as_mut_ptr(), 128) };
    assert!(
        map_fd >= 0,
        "open pinned XSKMAP (is the steering program attached?)"
    );
    let key: u32 = 0;
    let value: u32 = socket_fd as u32;
    let mut attr = [0u64; 16];
    attr[0] = map_fd as u64;
    attr[1] = &key as *const u32 as u64;
    attr[2] = &value as *const u32 as u64;
    // SAFETY: BPF_MAP_UPDATE_ELEM = 2, with map fd, key and value pointers.
    let result = unsafe { libc::syscall(libc::SYS_bpf, 2, attr.as_mut_ptr(), 128) };
    assert_eq!(result, 0, "register in XSKMAP");
}
