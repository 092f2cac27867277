//! Real servers and clients for tests and demos: a small HTTP/1.0 server and a UDP echo
//! server run on threads inside a namespace; clients open real kernel TCP/UDP sockets there.

use std::{
    io::{Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{LabError, netns};

/// Servers running until dropped.
pub struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Binds a UDP socket to `at`, waiting up to 2 s for the address to become usable. An IPv6
/// address stays tentative after its link comes up until the kernel's DAD work has run, even
/// with DAD off, and binding it meanwhile fails with EADDRNOTAVAIL; a busy machine widens
/// that window.
fn bind_when_ready(at: SocketAddr) -> std::io::Result<UdpSocket> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match UdpSocket::bind(at) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrNotAvailable
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            result => return result,
        }
    }
}

impl Servers {
    /// Starts, in `namespace`, an HTTP server on `[::]:port` (IPv4 too) answering every
    /// request with the body `name` and a newline, and UDP echo servers on the same port
    /// answering `name:` and the datagram, one on each of `udp_addresses`. (A UDP reply
    /// leaves from the address its socket is bound to, and a server answering for a VIP it
    /// holds, as in direct server return, must answer from the VIP: so one socket per
    /// address rather than one wildcard.)
    pub fn start(
        namespace: &str,
        name: &str,
        port: u16,
        udp_addresses: &[IpAddr],
    ) -> Result<Servers, LabError> {
        let bind: SocketAddr = format!("[::]:{port}").parse().unwrap();
        let udp_binds: Vec<SocketAddr> = udp_addresses
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        let (tcp, udp_sockets) = netns::run_in(namespace, move || {
            let udp: std::io::Result<Vec<UdpSocket>> =
                udp_binds.iter().map(|&at| bind_when_ready(at)).collect();
            Ok::<_, std::io::Error>((TcpListener::bind(bind)?, udp?))
        })?
        .map_err(|e| LabError::io("bind lab servers", e))?;
        tcp.set_nonblocking(true)
            .map_err(|e| LabError::io("nonblocking listener", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let body = format!("{name}\n");
        let http = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((stream, _)) => {
                            let body = body.clone();
                            std::thread::spawn(move || serve_http(stream, &body));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        let mut threads = vec![http];
        for udp in udp_sockets {
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .map_err(|e| LabError::io("UDP timeout", e))?;
            let stop = stop.clone();
            let prefix = format!("{name}:");
            threads.push(std::thread::spawn(move || {
                // Room for a whole datagram: fragmented ones are 3000 bytes and more.
                let mut buffer = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((len, peer)) = udp.recv_from(&mut buffer) {
                        let mut reply = prefix.clone().into_bytes();
                        reply.extend_from_slice(&buffer[..len]);
                        let _ = udp.send_to(&reply, peer);
                    }
                }
            }));
        }
        Ok(Servers { stop, threads })
    }
}

fn serve_http(mut stream: TcpStream, body: &str) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let _ = write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// One HTTP/1.0 GET over a fresh TCP connection from the calling thread's namespace;
/// returns the body of a 200 response.
pub fn http_get(target: SocketAddr, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("connect {target}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET / HTTP/1.0\r\nHost: {target}\r\n\r\n")
        .map_err(|e| format!("send to {target}: {e}"))?;
    read_response(stream).map_err(|e| format!("{target}: {e}"))
}

/// Reads a response to its end; returns the body of a 200.
fn read_response(mut stream: TcpStream) -> Result<String, String> {
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read response: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("truncated response: {response:?}"))?;
    if !head.starts_with("HTTP/1.0 200") {
        return Err(format!("bad status: {head:?}"));
    }
    Ok(body.to_string())
}

/// HTTP requests left half-sent on established connections (the request line is out, the
/// blank line that ends the headers is not), so a test can change the load balancer while
/// connections are open, then `finish` them.
pub struct PendingRequests {
    streams: Vec<TcpStream>,
}

impl PendingRequests {
    /// Opens `count` connections to `target` from the calling thread's namespace.
    pub fn open(
        target: SocketAddr,
        count: usize,
        timeout: Duration,
    ) -> Result<PendingRequests, String> {
        let mut streams = Vec::with_capacity(count);
        for _ in 0..count {
            let mut stream = TcpStream::connect_timeout(&target, timeout)
                .map_err(|e| format!("connect {target}: {e}"))?;
            stream
                .write_all(b"GET / HTTP/1.0\r\n")
                .map_err(|e| format!("send to {target}: {e}"))?;
            streams.push(stream);
        }
        Ok(PendingRequests { streams })
    }

    /// Completes every request; returns each response body, or why it failed.
    pub fn finish(self, timeout: Duration) -> Vec<Result<String, String>> {
        self.streams
            .into_iter()
            .map(|mut stream| {
                stream
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| e.to_string())?;
                stream
                    .write_all(b"\r\n")
                    .map_err(|e| format!("finish request: {e}"))?;
                read_response(stream)
            })
            .collect()
    }
}

/// `count` HTTP GETs to `target` from `namespace`, each on its own connection.
pub fn http_gets(
    namespace: &str,
    target: SocketAddr,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Result<String, String>>, LabError> {
    netns::run_in(namespace, move || {
        (0..count).map(|_| http_get(target, timeout)).collect()
    })
}

/// How many responses carried each of `names` as their body, and every other outcome
/// (failures and unexpected bodies).
pub fn count_bodies(
    results: &[Result<String, String>],
    names: &[&str],
) -> (Vec<usize>, Vec<String>) {
    let mut counts = vec![0; names.len()];
    let mut others = Vec::new();
    for result in results {
        match result.as_deref().map(str::trim) {
            Ok(body) => match names.iter().position(|name| *name == body) {
                Some(i) => counts[i] += 1,
                None => others.push(format!("unexpected body {body:?}")),
            },
            Err(error) => others.push(error.to_string()),
        }
    }
    (counts, others)
}
