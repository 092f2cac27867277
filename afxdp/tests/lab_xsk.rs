//! AF_XDP on the lab with real packets: the dut's interfaces run the steering program, the
//! sockets bind there, and frames come from (or go to) raw sockets in the peer namespaces.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use afxdp::{BindMode, FramePool, Socket, SocketConfig, Umem, UmemConfig, XskError};
use lab::{
    Lab,
    frame::{FrameSpec, frame_tag, tagged_udp_frame},
    raw::RawSocket,
};
use offload::{AttachOptions, Steering, mode::ModePolicy, rules::Action};

const PORT: u16 = 4791;

struct XskLab {
    lab: Lab,
}

impl XskLab {
    /// A lab for one test; `tag` is two letters unique to the test. None without root
    /// (outside CI, where `require_root` fails the test instead).
    fn up(test: &str, tag: &str) -> XskLab {
        lab::require_root(test);
        XskLab {
            lab: Lab::for_test(tag),
        }
    }

    fn dut_ns(&self) -> String {
        self.lab.dut.namespace.clone()
    }

    /// Attaches the steering program to a dut interface.
    fn attach(&self, iface: &str, default_action: Action) {
        let iface = iface.to_string();
        Lab::run_in(&self.dut_ns(), move || {
            offload::attach(&AttachOptions {
                iface,
                policy: ModePolicy::Auto,
                default_action,
                prefilter: Vec::new(),
            })
        })
        .unwrap()
        .expect("attach steering");
    }

    fn bind(
        &self,
        umem: &Umem,
        iface: &str,
        queue: u32,
        config: &SocketConfig,
    ) -> Result<Socket, XskError> {
        bind_in(&self.dut_ns(), umem, iface, queue, config)
    }

    fn register(&self, socket: &Socket) {
        use std::os::fd::AsRawFd;
        let (iface, queue, fd) = (
            socket.iface().to_string(),
            socket.queue(),
            socket.as_raw_fd(),
        );
        Lab::run_in(&self.dut_ns(), move || {
            Steering::open(&iface)?.register_socket(queue, fd)
        })
        .unwrap()
        .expect("register socket in XSKMAP");
    }

    /// Frames from the client to the dut's address.
    fn client_to_dut(&self) -> FrameSpec {
        spec(&self.lab.client, &self.lab.dut)
    }
}

impl Drop for XskLab {
    fn drop(&mut self) {
        for iface in [self.lab.dut.iface.clone(), self.lab.dut_lan.iface.clone()] {
            let _ = Lab::run_in(&self.dut_ns(), move || offload::detach(&iface));
        }
    }
}

fn bind_in(
    namespace: &str,
    umem: &Umem,
    iface: &str,
    queue: u32,
    config: &SocketConfig,
) -> Result<Socket, XskError> {
    let (umem, iface, config) = (umem.clone(), iface.to_string(), config.clone());
    Lab::run_in(namespace, move || {
        Socket::bind(&umem, &iface, queue, &config)
    })
    .unwrap()
}

fn ipv4(address: IpAddr) -> std::net::Ipv4Addr {
    match address {
        IpAddr::V4(address) => address,
        IpAddr::V6(_) => panic!("expected an IPv4 address"),
    }
}

fn spec(from: &lab::Endpoint, to: &lab::Endpoint) -> FrameSpec {
    FrameSpec {
        src_mac: from.read_mac().unwrap(),
        dst_mac: to.read_mac().unwrap(),
        src_ip: ipv4(from.ipv4),
        dst_ip: ipv4(to.ipv4),
        src_port: PORT,
        dst_port: PORT,
    }
}

fn small_config() -> SocketConfig {
    SocketConfig {
        mode: BindMode::Copy,
        rx_size: 512,
        tx_size: 512,
        fill_size: 512,
        completion_size: 512,
        ..SocketConfig::default()
    }
}

fn umem(frame_size: u32, frame_count: u32) -> (Umem, FramePool) {
    Umem::new(UmemConfig {
        frame_size,
        frame_count,
        ..UmemConfig::default()
    })
    .expect("UMEM")
}

/// Receives until `count` of our test packets (chains joined) arrived or `timeout` passed;
/// every frame goes back to `pool`, and other lab traffic is skipped.
fn receive_packets(
    socket: &mut Socket,
    pool: &mut FramePool,
    count: usize,
    timeout: Duration,
) -> Vec<Vec<u8>> {
    let umem = socket.umem().clone();
    let deadline = Instant::now() + timeout;
    let mut packets = Vec::new();
    let mut current = Vec::new();
    while packets.len() < count && Instant::now() < deadline {
        socket.fill(pool, 64);
        let mut got_any = false;
        for frame in socket.receive(64) {
            got_any = true;
            current.extend_from_slice(umem.data(&frame));
            let ends_packet = !frame.continues();
            pool.put(frame, &umem);
            if ends_packet {
                let packet = std::mem::take(&mut current);
                if frame_tag(&packet, PORT).is_some() {
                    packets.push(packet);
                }
            }
        }
        if !got_any {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    packets
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn rx_returns_the_exact_bytes_sent_for_sizes_60_to_1514() {
    let lab = XskLab::up("rx_returns_the_exact_bytes_sent", "xr");
    let dut = lab.lab.dut.iface.clone();
    lab.attach(&dut, Action::Xsk);
    let sender = RawSocket::open(&lab.lab.client.namespace, &lab.lab.client.iface).unwrap();
    // Frame sizes on the wire; the bytes sent are 4 fewer (no FCS): 60 to 1514.
    let sizes = [64, 65, 100, 128, 256, 511, 512, 1000, 1500, 1518];
    let umems = [
        UmemConfig {
            frame_size: 4096,
            frame_count: 1024,
            ..UmemConfig::default()
        },
        UmemConfig {
            frame_size: 2048,
            frame_count: 1024,
            headroom: 128,
            ..UmemConfig::default()
        },
        UmemConfig {
            frame_size: 3000,
            frame_count: 1024,
            headroom: 64,
            unaligned_chunks: true,
            ..UmemConfig::default()
        },
    ];
    for config in umems {
        let (umem, mut pool) = Umem::new(config.clone()).unwrap();
        let mut socket = lab.bind(&umem, &dut, 0, &small_config()).unwrap();
        lab.register(&socket);
        socket.fill(&mut pool, 512);
        let sent: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(tag, &size)| tagged_udp_frame(&lab.client_to_dut(), size, tag as u32))
            .collect();
        for frame in &sent {
            sender.send(frame).unwrap();
        }
        let received = receive_packets(&mut socket, &mut pool, sent.len(), Duration::from_secs(5));
        assert_eq!(
            received, sent,
            "UMEM {config:?}: bytes differ or packets missing"
        );
        assert_eq!(60, sent[0].len());
        assert_eq!(1514, sent[sent.len() - 1].len());
    }
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn jumbo_frames_arrive_as_chains_with_multi_buffer() {
    let lab = XskLab::up("jumbo_frames_arrive_as_chains", "xj");
    let (client, dut) = (lab.lab.client.clone(), lab.lab.dut.clone());
    for endpoint in [&client, &dut] {
        let iface = endpoint.iface.clone();
        Lab::run_in(&endpoint.namespace, move || {
            lab::netlink::set_mtu(&iface, 9000)
        })
        .unwrap()
        .expect("MTU 9000");
    }
    lab.attach(&dut.iface, Action::Xsk);
    let (umem, mut pool) = umem(4096, 1024);
    let config = SocketConfig {
        multi_buffer: true,
        ..small_config()
    };
    let mut socket = lab.bind(&umem, &dut.iface, 0, &config).unwrap();
    lab.register(&socket);
    socket.fill(&mut pool, 512);
    let sender = RawSocket::open(&client.namespace, &client.iface).unwrap();
    let jumbo = tagged_udp_frame(&lab.client_to_dut(), 9018, 7);
    assert_eq!(jumbo.len(), 9014);
    sender.send(&jumbo).unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut chain = Vec::new();
    'receive: while Instant::now() < deadline {
        for frame in socket.receive(64) {
            chain.push((umem.data(&frame).to_vec(), frame.continues()));
            let last = !frame.continues();
            pool.put(frame, &umem);
            if last {
                if frame_tag(&chain[0].0, PORT).is_some() {
                    break 'receive;
                }
                chain.clear();
            }
        }
    }
    assert!(
        chain.len() >= 3,
        "9014 bytes in 4096-byte frames need 3+ buffers: {}",
        chain.len()
    );
    let flags: Vec<bool> = chain.iter().map(|(_, continues)| *continues).collect();
    assert!(flags[..flags.len() - 1].iter().all(|&c| c) && !flags[flags.len() - 1]);
    let joined: Vec<u8> = chain.into_iter().flat_map(|(bytes, _)| bytes).collect();
    assert_eq!(joined, jumbo, "the chain joined must be the frame sent");

    // And back: the same jumbo frame sent as a chain arrives whole at the client.
    let reply = tagged_udp_frame(&spec(&dut, &client), 9018, 8);
    let mut tx = socket.transmit(&mut pool, 8);
    let pieces: Vec<&[u8]> = reply.chunks(3000).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let mut frame = tx.pool().take().unwrap();
        umem.write(&mut frame, piece).unwrap();
        frame.set_continues(i + 1 < pieces.len());
        tx.push(frame).unwrap();
    }
    tx.commit();
    socket.wake_tx().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = None;
    while got.is_none() && Instant::now() < deadline {
        match sender.receive(Duration::from_millis(500)).unwrap() {
            Some(frame) if frame_tag(&frame, PORT) == Some(8) => got = Some(frame),
            _ => socket.wake_tx().unwrap(),
        }
    }
    assert_eq!(
        got.as_deref(),
        Some(&reply[..]),
        "a 3-frame TX chain arrives as one frame"
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn tx_frames_arrive_intact_at_a_raw_socket_in_the_peer() {
    let lab = XskLab::up("tx_frames_arrive_intact", "xt");
    let (client, dut) = (lab.lab.client.clone(), lab.lab.dut.clone());
    let receiver = RawSocket::open(&dut.namespace, &dut.iface).unwrap();
    let (umem, mut pool) = umem(2048, 1024);
    let mut socket = bind_in(&client.namespace, &umem, &client.iface, 0, &small_config()).unwrap();
    let sent: Vec<Vec<u8>> = [64, 128, 777, 1518]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
        .map(|(tag, &size)| tagged_udp_frame(&lab.client_to_dut(), size, tag as u32))
        .collect();
    let mut tx = socket.transmit(&mut pool, sent.len() as u32);
    for bytes in &sent {
        let mut frame = tx.pool().take().unwrap();
        umem.write(&mut frame, bytes).unwrap();
        tx.push(frame).unwrap();
    }
    assert_eq!(tx.commit(), sent.len() as u32);
    socket.wake_tx().unwrap();

    let mut received = Vec::new();
    while received.len() < sent.len() {
        match receiver.receive(Duration::from_secs(3)).unwrap() {
            Some(frame) if frame_tag(&frame, PORT).is_some() => received.push(frame),
            Some(_) => {}
            None => break,
        }
        socket.wake_tx().unwrap();
    }
    assert_eq!(received, sent);
    let deadline = Instant::now() + Duration::from_secs(2);
    while pool.len() < 1024 && Instant::now() < deadline {
        socket.complete(&mut pool, 64);
    }
    assert_eq!(
        pool.len(),
        1024,
        "every sent frame completes back to the pool"
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn every_frame_is_back_in_the_pool_after_a_million_packets() {
    let lab = XskLab::up("every_frame_is_back_in_the_pool", "xa");
    let (client, dut) = (lab.lab.client.clone(), lab.lab.dut.clone());
    lab.attach(&dut.iface, Action::Xsk);
    let (rx_umem, mut rx_pool) = umem(2048, 4096);
    let (tx_umem, mut tx_pool) = umem(2048, 4096);
    let config = SocketConfig {
        mode: BindMode::Copy,
        ..SocketConfig::default()
    };
    let mut receiver = lab.bind(&rx_umem, &dut.iface, 0, &config).unwrap();
    lab.register(&receiver);
    let mut sender = bind_in(&client.namespace, &tx_umem, &client.iface, 0, &config).unwrap();
    let packet = tagged_udp_frame(&lab.client_to_dut(), 64, 1);

    // One thread drives both ends: each TX kick runs the veth and the XDP program in this
    // thread's softirq, so the receiver is never starved by another core.
    const TARGET: u64 = 1_000_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0u64;
    receiver.fill(&mut rx_pool, 2048);
    while received < TARGET && Instant::now() < deadline {
        sender.complete(&mut tx_pool, 256);
        let mut tx = sender.transmit(&mut tx_pool, 64);
        while tx.remaining() > 0 {
            let Some(mut frame) = tx.pool().take() else {
                break;
            };
            tx_umem.write(&mut frame, &packet).unwrap();
            tx.push(frame).unwrap();
        }
        tx.commit();
        sender.wake_tx().unwrap();
        for frame in receiver.receive(256) {
            received += 1;
            rx_pool.put(frame, &rx_umem);
        }
        receiver.fill(&mut rx_pool, 256);
    }
    assert!(
        received >= TARGET,
        "only {received} packets arrived in time"
    );
    assert_eq!(
        rx_pool.len() + receiver.frames_in_kernel(),
        4096,
        "every frame is in the pool or held by the kernel"
    );
    receiver.shutdown(&mut rx_pool);
    assert_eq!(rx_pool.len(), 4096, "after shutdown every RX frame is back");
    let deadline = Instant::now() + Duration::from_secs(2);
    while sender.frames_in_kernel() > 0 && Instant::now() < deadline {
        sender.wake_tx().unwrap();
        sender.complete(&mut tx_pool, 4096);
    }
    sender.shutdown(&mut tx_pool);
    assert_eq!(tx_pool.len(), 4096, "after shutdown every TX frame is back");
}

/// The receiver gives back exactly the frames it received, never more (as every app does):
/// a refill that finds the fill ring full must place the rest later, or frames leave
/// circulation and the kernel ends up finding the fill ring empty. The sender runs on its
/// own thread, so the kernel's flush (RX ring first, fill ring consumer index after) races
/// the receiver's refills as it does in the apps.
#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn no_frame_leaves_circulation_when_refills_race_the_kernel() {
    let lab = XskLab::up("no_frame_leaves_circulation", "xf");
    let (client, dut) = (lab.lab.client.clone(), lab.lab.dut.clone());
    lab.attach(&dut.iface, Action::Xsk);
    // More frames than the fill ring holds: the ring starts full and a reserve stays in the
    // pool, as in `fastpath xsk rxdrop`.
    let (rx_umem, mut rx_pool) = umem(2048, 4096);
    let config = SocketConfig {
        mode: BindMode::Copy,
        fill_size: 1024,
        ..SocketConfig::default()
    };
    let mut receiver = lab.bind(&rx_umem, &dut.iface, 0, &config).unwrap();
    lab.register(&receiver);
    let ring_frames = receiver.fill(&mut rx_pool, u32::MAX);
    assert_eq!(ring_frames, 1024, "the fill ring starts full");

    const SENT: u64 = 500_000;
    let packet = tagged_udp_frame(&lab.client_to_dut(), 64, 1);
    let sender = {
        let (namespace, iface, config) = (client.namespace.clone(), client.iface.clone(), config);
        std::thread::spawn(move || {
            let (tx_umem, mut tx_pool) = umem(2048, 4096);
            let mut sender = bind_in(&namespace, &tx_umem, &iface, 0, &config).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut sent = 0u64;
            while sent < SENT && Instant::now() < deadline {
                sender.complete(&mut tx_pool, 256);
                let mut tx = sender.transmit(&mut tx_pool, (SENT - sent).min(64) as u32);
                while tx.remaining() > 0 {
                    let Some(mut frame) = tx.pool().take() else {
                        break;
                    };
                    tx_umem.write(&mut frame, &packet).unwrap();
                    tx.push(frame).unwrap();
                }
                sent += u64::from(tx.commit());
                sender.wake_tx().unwrap();
            }
            sent
        })
    };

    let mut received = 0u64;
    let mut short_refills = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sender.is_finished() && Instant::now() < deadline {
        let mut returned = 0;
        for frame in receiver.receive(64) {
            received += 1;
            returned += 1;
            rx_pool.put(frame, &rx_umem);
        }
        let owed_before = receiver.fill_owed() + returned;
        if receiver.refill(&mut rx_pool, returned) < owed_before {
            short_refills += 1;
        }
    }
    let sent = sender.join().expect("sender thread");
    // The kernel has flushed everything by now: what is still owed fits the ring.
    let settle = Instant::now() + Duration::from_secs(5);
    while (receiver.fill_owed() > 0 || receiver.frames_in_kernel() < ring_frames as usize)
        && Instant::now() < settle
    {
        let mut returned = 0;
        for frame in receiver.receive(64) {
            received += 1;
            returned += 1;
            rx_pool.put(frame, &rx_umem);
        }
        receiver.refill(&mut rx_pool, returned);
    }
    let stats = receiver.statistics().unwrap();
    assert!(received > 0, "nothing arrived of {sent} sent");
    assert_eq!(
        receiver.frames_in_kernel(),
        ring_frames as usize,
        "every frame is back in circulation after {received} received ({short_refills} refills \
         found the ring full; fill ring found empty {} times)",
        stats.rx_fill_ring_empty_descs
    );
    assert_eq!(receiver.fill_owed(), 0);
    assert_eq!(rx_pool.len() + receiver.frames_in_kernel(), 4096);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn two_sockets_on_two_interfaces_share_one_umem() {
    let lab = XskLab::up("two_sockets_share_one_umem", "xs");
    let (dut, dut_lan) = (lab.lab.dut.clone(), lab.lab.dut_lan.clone());
    let backend = lab.lab.backends[0].clone();
    lab.attach(&dut.iface, Action::Xsk);
    lab.attach(&dut_lan.iface, Action::Xsk);
    let (umem, mut pool) = umem(2048, 2048);
    let mut second_pool = pool.split_off(1024);
    let mut first = lab.bind(&umem, &dut.iface, 0, &small_config()).unwrap();
    let mut second = lab.bind(&umem, &dut_lan.iface, 0, &small_config()).unwrap();
    lab.register(&first);
    lab.register(&second);
    first.fill(&mut pool, 512);
    second.fill(&mut second_pool, 512);

    let to_dut = tagged_udp_frame(&lab.client_to_dut(), 200, 11);
    let to_lan = tagged_udp_frame(&spec(&backend, &dut_lan), 300, 22);
    RawSocket::open(&lab.lab.client.namespace, &lab.lab.client.iface)
        .unwrap()
        .send(&to_dut)
        .unwrap();
    RawSocket::open(&backend.namespace, &backend.iface)
        .unwrap()
        .send(&to_lan)
        .unwrap();
    let timeout = Duration::from_secs(5);
    assert_eq!(
        receive_packets(&mut first, &mut pool, 1, timeout),
        vec![to_dut]
    );
    assert_eq!(
        receive_packets(&mut second, &mut second_pool, 1, timeout),
        vec![to_lan]
    );
    // Frames of one socket may be handed to the other: they are the same UMEM.
    let moved = pool.split_off(16);
    second_pool.merge(moved);
    second.fill(&mut second_pool, 16);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn zero_copy_on_veth_fails_clearly_and_auto_reports_the_fallback() {
    let lab = XskLab::up("zero_copy_on_veth", "xz");
    let dut = lab.lab.dut.iface.clone();
    let (umem, _pool) = umem(4096, 1024);
    let forced = SocketConfig {
        mode: BindMode::ZeroCopy,
        ..small_config()
    };
    let error = lab
        .bind(&umem, &dut, 0, &forced)
        .err()
        .expect("zero-copy must fail on veth");
    assert!(
        matches!(error, XskError::ZeroCopyUnsupported { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("zero-copy not supported by driver veth"),
        "{error}"
    );
    let auto = SocketConfig {
        mode: BindMode::Auto,
        ..small_config()
    };
    let socket = lab
        .bind(&umem, &dut, 0, &auto)
        .expect("auto falls back to copy");
    assert!(!socket.is_zero_copy());
    let fallback = socket.fallback().expect("the fallback is reported");
    assert!(
        fallback.contains("zero-copy not supported by driver veth"),
        "{fallback}"
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn bad_interface_queue_and_umem_give_clear_errors() {
    let lab = XskLab::up("bad_interface_queue_and_umem", "xe");
    let dut = lab.lab.dut.iface.clone();
    let (umem, _pool) = umem(4096, 1024);

    let error = lab
        .bind(&umem, "fp-nosuch0", 0, &small_config())
        .err()
        .unwrap();
    assert_eq!(error.to_string(), "interface fp-nosuch0 does not exist");

    let error = lab.bind(&umem, &dut, 3, &small_config()).err().unwrap();
    assert_eq!(
        error.to_string(),
        format!("queue 3 does not exist (device {dut} has 1)")
    );

    let (tiny, _pool) = self::umem(4096, 256);
    let error = lab
        .bind(&tiny, &dut, 0, &SocketConfig::default())
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        message.starts_with("invalid frame_count: UMEM too small for the rings"),
        "{message}"
    );
    assert!(message.contains("256 frames") && message.contains("2048-entry fill ring"));

    let odd = SocketConfig {
        rx_size: 1000,
        ..small_config()
    };
    let error = lab.bind(&umem, &dut, 0, &odd).err().unwrap();
    assert_eq!(
        error.to_string(),
        "invalid rx_size: 1000 is not a power of two"
    );
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn dropping_the_socket_hands_its_traffic_back_to_the_kernel() {
    let lab = XskLab::up("dropping_the_socket", "xd");
    let dut = lab.lab.dut.clone();
    lab.attach(&dut.iface, Action::Pass);
    let rule_port = 7100;
    let iface = dut.iface.clone();
    let dut_ip = dut.ipv4;
    Lab::run_in(&lab.dut_ns(), move || {
        let mut rule = offload::rules::RuleSpec::new(Action::Xsk);
        rule.proto = Some("udp".parse().unwrap());
        rule.dst = Some(dut_ip.into());
        rule.dport = Some(rule_port.to_string().parse().unwrap());
        Steering::open(&iface)?.add_rule(&rule)
    })
    .unwrap()
    .expect("xsk rule");

    let server = Lab::udp_socket(&dut.namespace, (dut.ipv4, rule_port).into()).unwrap();
    server
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let client = Lab::udp_socket(&lab.lab.client.namespace, "0.0.0.0:0".parse().unwrap()).unwrap();
    let send = |payload: &[u8]| client.send_to(payload, (dut.ipv4, rule_port)).unwrap();

    let (umem, mut pool) = umem(2048, 1024);
    let mut socket = lab.bind(&umem, &dut.iface, 0, &small_config()).unwrap();
    lab.register(&socket);
    socket.fill(&mut pool, 512);
    send(b"to the socket");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = false;
    while !seen && Instant::now() < deadline {
        for frame in socket.receive(16) {
            seen |= umem.data(&frame).ends_with(b"to the socket");
            pool.put(frame, &umem);
        }
    }
    assert!(seen, "the registered socket receives the rule's traffic");
    let mut buffer = [0u8; 64];
    assert!(
        server.recv(&mut buffer).is_err(),
        "the kernel must not see it meanwhile"
    );

    drop(socket);
    send(b"to the kernel");
    let len = server
        .recv(&mut buffer)
        .expect("after the drop the kernel gets the traffic");
    assert_eq!(&buffer[..len], b"to the kernel");
    let iface = dut.iface.clone();
    let counters = Lab::run_in(&lab.dut_ns(), move || Steering::open(&iface)?.counters())
        .unwrap()
        .unwrap();
    assert!(counters.xsk_fallback >= 1, "{counters:?}");
}

#[test]
fn huge_pages_error_says_how_to_reserve_them() {
    let config = UmemConfig {
        huge_pages: true,
        frame_count: 1024,
        ..UmemConfig::default()
    };
    match Umem::new(config) {
        Ok(_) => {} // the machine has huge pages reserved: nothing to report
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("huge pages"), "{message}");
            assert!(message.contains("vm.nr_hugepages=2"), "{message}");
        }
    }
}
