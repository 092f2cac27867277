//! The control socket's server. One JSON request line per connection, one JSON response line
//! back, served from the appliance's control loop without ever waiting on one client:
//!
//! - the peer is checked with `SO_PEERCRED`: root or the appliance's own uid only (the socket
//!   is also mode 0600, so this matters when its mode or directory was loosened); anyone else
//!   gets an error response to its request line, and the refusal is logged with the peer's
//!   uid and pid;
//! - a request line holds at most [`Limits::max_request_bytes`]; a longer one gets an error
//!   naming the limit, and nothing past the limit is read into memory;
//! - a client has [`Limits::timeout`] to send its line and as long again to take the response,
//!   so one that connects and sends nothing holds only its own slot, and only until then;
//! - at most [`Limits::max_clients`] are served at once; one more is told to retry.
//!
//! Sockets are non-blocking and multiplexed with poll(2), so a slow client costs nothing but
//! its slot and its buffer.

use std::{
    io::{self, Read, Write},
    os::{
        fd::AsRawFd,
        unix::{
            fs::PermissionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::lb::control::protocol::{Request, Response};

/// What one client may cost the appliance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest request line, newline excluded.
    pub max_request_bytes: usize,
    /// Time to send the request line, and again to take the response.
    pub timeout: Duration,
    /// Clients served at once.
    pub max_clients: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 64 * 1024,
            timeout: Duration::from_secs(5),
            max_clients: 256,
        }
    }
}

/// Why the control socket could not be served.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // fields: the message names each one
pub enum ControlError {
    /// A live appliance answers at the path.
    #[error(
        "control socket {0} is in use by another appliance; stop that one first, or give this one another `control` path"
    )]
    InUse(PathBuf),
    /// Creating, binding or setting up the socket failed.
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Waiting on the sockets failed.
    #[error("poll(2) on the control socket {} failed", path.display())]
    Poll {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Accepts at most this many connections per call, so a flood of connects cannot keep the
/// control loop from its other work.
const ACCEPTS_PER_POLL: usize = 64;

/// The appliance's end of the control socket: the listener and the clients being served.
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    owner_uid: u32,
    limits: Limits,
    clients: Vec<Client>,
}

struct Client {
    stream: UnixStream,
    /// The request line so far; never longer than the limit plus one byte.
    input: Vec<u8>,
    /// The response, once there is one, and how much of it has been written.
    output: Option<Vec<u8>>,
    written: usize,
    deadline: Instant,
    done: bool,
    /// Why this peer may not ask: it still gets to send its line, and this is the answer.
    refusal: Option<String>,
}

impl ControlServer {
    /// Binds `path` (mode 0600), removing a socket file left by a dead appliance; refuses when
    /// a live one answers there.
    pub fn bind(path: &Path, limits: Limits) -> Result<ControlServer, ControlError> {
        let io_error = |what, source| ControlError::Io {
            what,
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_error("create the directory of", e))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener = UnixListener::bind(path).map_err(|e| io_error("bind control socket", e))?;
        let server = ControlServer {
            path: path.to_path_buf(),
            listener,
            // SAFETY: geteuid has no preconditions.
            owner_uid: unsafe { libc::geteuid() },
            limits,
            clients: Vec::new(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error("chmod 0600", e))?;
        server
            .listener
            .set_nonblocking(true)
            .map_err(|e| io_error("make non-blocking", e))?;
        Ok(server)
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The most request bytes held for any one client (at most the limit plus one).
    pub fn largest_buffer(&self) -> usize {
        self.clients
            .iter()
            .map(|c| c.input.len())
            .max()
            .unwrap_or(0)
    }

    /// Waits up to `wait` for something to do, then does it: accepts, reads, answers each
    /// complete request with `handle`, writes responses and drops clients past their deadline.
    /// `log` gets a line for each refused or failed client.
    pub fn poll(
        &mut self,
        wait: Duration,
        handle: &mut dyn FnMut(Request) -> Response,
        log: &mut dyn FnMut(String),
    ) -> Result<(), ControlError> {
        let now = Instant::now();
        let wait = self
            .clients
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .fold(wait, Duration::min);
        let mut fds = Vec::with_capacity(self.clients.len() + 1);
        fds.push(libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for client in &self.clients {
            fds.push(libc::pollfd {
                fd: client.stream.as_raw_fd(),
                events: if client.output.is_some() {
                    libc::POLLOUT
                } else {
                    libc::POLLIN
                },
                revents: 0,
            });
        }
        let timeout_ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(ControlError::Poll {
                path: self.path.clone(),
                source: error,
            });
        }
        let limits = self.limits;
        for (client, fd) in self.clients.iter_mut().zip(&fds[1..]) {
            if fd.revents == 0 {
                continue;
            }
            if client.output.is_none() {
                client.read(&limits, handle);
            }
            if client.output.is_some() {
                client.write();
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            self.accept(log);
        }
        let now = Instant::now();
        for client in &mut self.clients {
            if client.done || now < client.deadline {
                continue;
            }
            if client.output.is_none() {
                log(format!(
                    "control: a client sent no complete request within {:?}; answered with an error and closed",
                    limits.timeout
                ));
                client.answer(
                    Response::error(format!(
                        "timed out: no complete request line within {:?}",
                        limits.timeout
                    )),
                    &limits,
                );
                client.write();
            }
            // A client that has not taken its response in time loses it.
            client.done = true;
        }
        self.clients.retain(|client| !client.done);
        Ok(())
    }

    fn accept(&mut self, log: &mut dyn FnMut(String)) {
        for _ in 0..ACCEPTS_PER_POLL {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // ECONNABORTED, EMFILE...: this connection is lost, the listener is not.
                    log(format!("control: accept failed: {error}"));
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let mut client = Client {
                stream,
                input: Vec::new(),
                output: None,
                written: 0,
                deadline: Instant::now() + self.limits.timeout,
                done: false,
                refusal: None,
            };
            client.refusal = match peer_credentials(&client.stream) {
                Ok(peer) if peer_allowed(peer.uid, self.owner_uid) => None,
                Ok(peer) => {
                    log(format!(
                        "control: refused a client with uid {} (pid {}): only root and uid {} may use {}",
                        peer.uid,
                        peer.pid,
                        self.owner_uid,
                        self.path.display()
                    ));
                    Some(format!(
                        "permission denied: this control socket takes requests from root and uid {} only, not uid {}",
                        self.owner_uid, peer.uid
                    ))
                }
                Err(error) => {
                    log(format!(
                        "control: refused a client whose credentials could not be read: {error}"
                    ));
                    Some(format!("permission denied: SO_PEERCRED failed ({error})"))
                }
            };
            if self.clients.len() >= self.limits.max_clients {
                log(format!(
                    "control: {} clients already connected; told one more to retry",
                    self.clients.len()
                ));
                // Answered at once and closed, to keep the limit: a short reply fits the
                // socket's buffer, and a client that finds its request refused reads it.
                let message = format!(
                    "busy: {} control clients are being served (the limit); retry shortly",
                    self.limits.max_clients
                );
                client.answer(Response::error(message), &self.limits);
                client.write();
                continue;
            }
            self.clients.push(client);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Client {
    /// Reads what has arrived, never holding more than the limit plus one byte; answers
    /// once the line is complete, too long, or ended by the peer.
    fn read(&mut self, limits: &Limits, handle: &mut dyn FnMut(Request) -> Response) {
        let cap = limits.max_request_bytes + 1;
        let mut chunk = [0u8; 4096];
        let mut ended = false;
        let mut complete = false;
        while self.input.len() < cap && !complete {
            let room = (cap - self.input.len()).min(chunk.len());
            match self.stream.read(&mut chunk[..room]) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => {
                    complete = chunk[..n].contains(&b'\n');
                    self.input.extend_from_slice(&chunk[..n]);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.done = true;
                    return;
                }
            }
        }
        let complete = self.input.contains(&b'\n');
        let too_long = self.input.len() > limits.max_request_bytes;
        if let Some(refusal) = &self.refusal
            && (complete || too_long || ended)
        {
            let response = Response::error(refusal.clone());
            self.answer(response, limits);
            return;
        }
        let response = if let Some(end) = self.input.iter().position(|&b| b == b'\n') {
            respond(&self.input[..end], handle)
        } else if too_long {
            Response::error(format!(
                "request too long: a request line may hold at most {} bytes",
                limits.max_request_bytes
            ))
        } else if ended && !self.input.is_empty() {
            // The peer closed its side after a line without a newline: answer that line.
            respond(&self.input, handle)
        } else if ended {
            // Connected and left without asking anything: nothing to answer.
            self.done = true;
            return;
        } else {
            return;
        };
        self.answer(response, limits);
    }

    fn answer(&mut self, response: Response, limits: &Limits) {
        let mut line = serde_json::to_vec(&response).unwrap_or_else(|error| {
            format!("{{\"ok\":false,\"error\":\"cannot encode the response: {error}\"}}")
                .into_bytes()
        });
        line.push(b'\n');
        self.output = Some(line);
        self.written = 0;
        self.input = Vec::new();
        self.deadline = Instant::now() + limits.timeout;
    }

    /// Writes as much of the response as the socket takes; done when all of it went, or the
    /// peer is gone.
    fn write(&mut self) {
        let Some(output) = &self.output else {
            return;
        };
        while self.written < output.len() {
            match self.stream.write(&output[self.written..]) {
                Ok(0) => break,
                Ok(n) => self.written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.done = true;
    }
}

/// Parses one request line and runs it; every bad line gets an error saying what was wrong.
fn respond(line: &[u8], handle: &mut dyn FnMut(Request) -> Response) -> Response {
    match parse_request(line) {
        Ok(request) => handle(request),
        Err(message) => Response::error(message),
    }
}

/// One request line (without its newline) as a request, or what is wrong with it.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line)
        .map_err(|error| format!("bad request: not UTF-8 ({error})"))?
        .trim();
    if text.is_empty() {
        return Err(
            "bad request: empty line; send one JSON object per line, e.g. {\"command\":\"status\"}"
                .to_string(),
        );
    }
    serde_json::from_str(text).map_err(|error| {
        format!(
            "bad request: {error}; send one JSON object per line, e.g. {{\"command\":\"status\"}}"
        )
    })
}

/// Root may always ask; anyone else only if they are the uid the appliance runs as.
pub fn peer_allowed(peer_uid: u32, owner_uid: u32) -> bool {
    peer_uid == 0 || peer_uid == owner_uid
}

struct Peer {
    uid: u32,
    pid: i32,
}

fn peer_credentials(stream: &UnixStream) -> io::Result<Peer> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `credentials`, which is that large.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        uid: credentials.uid,
        pid: credentials.pid,
    })
}

#[cfg(test)]
mod tests;
