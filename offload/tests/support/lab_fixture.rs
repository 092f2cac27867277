//! A lab per test (unique prefix), with helpers to act inside the dut and send real UDP.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use lab::Lab;
use offload::{
    AttachOptions, Attachment, OffloadError, Steering, mode::ModePolicy, rules::Action,
    rules::RuleSpec,
};

pub struct LabFixture {
    pub lab: Lab,
}

impl LabFixture {
    /// `tag` is two letters unique to the test: it keeps namespaces and interface names apart
    /// when tests run in parallel.
    pub fn up(tag: &str) -> LabFixture {
        LabFixture {
            lab: Lab::for_test(tag),
        }
    }

    pub fn iface(&self) -> String {
        self.lab.dut.iface.clone()
    }

    /// Runs `work` in the dut's namespace.
    pub fn in_dut<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        Lab::run_in(&self.lab.dut.namespace, work).expect("enter dut namespace")
    }

    pub fn attach(&self, policy: ModePolicy) -> Result<Attachment, OffloadError> {
        let iface = self.iface();
        self.in_dut(move || {
            offload::attach(&AttachOptions {
                iface,
                policy,
                default_action: Action::Pass,
                prefilter: Vec::new(),
            })
        })
    }

    pub fn steering<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Steering) -> T + Send + 'static,
    ) -> T {
        let iface = self.iface();
        self.in_dut(move || work(&mut Steering::open(&iface).expect("open steering maps")))
    }

    /// A UDP rule on the dut's address and `port`.
    pub fn udp_rule(&self, action: Action, port: u16) -> RuleSpec {
        let mut spec = RuleSpec::new(action);
        spec.proto = Some("udp".parse().unwrap());
        spec.dst = Some(self.lab.dut.ipv4.into());
        spec.dport = Some(port.to_string().parse().unwrap());
        spec
    }

    pub fn client_socket(&self) -> UdpSocket {
        Lab::udp_socket(&self.lab.client.namespace, "0.0.0.0:0".parse().unwrap()).unwrap()
    }

    /// A UDP server in the dut with a buffer large enough for a test's whole burst.
    pub fn dut_server(&self, port: u16) -> UdpSocket {
        let socket = Lab::udp_socket(
            &self.lab.dut.namespace,
            SocketAddr::new(self.lab.dut.ipv4, port),
        )
        .unwrap();
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20))
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        socket
    }

    pub fn dut_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.lab.dut.ipv4, port)
    }
}

impl Drop for LabFixture {
    /// A test that fails before detaching leaves pins; they go once its interfaces do.
    fn drop(&mut self) {
        let iface = self.iface();
        let _ = Lab::run_in(&self.lab.dut.namespace, move || offload::detach(&iface));
    }
}

/// Sends `count` datagrams, pausing briefly when the socket buffer is full (for at most a
/// few seconds per datagram).
pub fn send(socket: &UdpSocket, to: SocketAddr, count: u64) {
    for _ in 0..count {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match socket.send_to(b"fastpath test payload", to) {
                Ok(_) => break,
                Err(error)
                    if error.raw_os_error() == Some(libc::ENOBUFS)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_micros(50))
                }
                Err(error) => panic!("send: {error}"),
            }
        }
    }
}

/// Reads on a thread until `stop` is set and the socket then stays quiet for its read
/// timeout, counting into `count` as it goes (so a test can wait on it); returns the count.
/// Reading while the sender runs keeps the buffer from filling.
pub fn drain_while(
    socket: UdpSocket,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> std::thread::JoinHandle<u64> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        loop {
            match socket.recv_from(&mut buffer) {
                Ok(_) => {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) if stop.load(Ordering::Relaxed) => return count.load(Ordering::Relaxed),
                Err(_) => {}
            }
        }
    })
}

/// Reads until `expected` datagrams have arrived (for up to 10 s), then until the socket
/// stays quiet for its read timeout, so any extra is counted too.
pub fn drain_expecting(socket: &UdpSocket, expected: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut buffer = [0u8; 2048];
    let mut count = 0;
    while count < expected && std::time::Instant::now() < deadline {
        if socket.recv_from(&mut buffer).is_ok() {
            count += 1;
        }
    }
    count + drain(socket)
}

/// Reads until the socket stays quiet for its read timeout.
pub fn drain(socket: &UdpSocket) -> u64 {
    let mut buffer = [0u8; 2048];
    let mut count = 0;
    while socket.recv_from(&mut buffer).is_ok() {
        count += 1;
    }
    count
}
