//! The read-only HTTP server behind `fastpath serve`: `std::net` only, one thread per
//! connection, one request per connection (`Connection: close`).
//!
//! Why no HTTP crate: the server answers a handful of GET routes with small bodies to a
//! scraper and a browser on localhost; an HTTP/1.1 request line and a response with a
//! length are some 60 lines, where a framework would bring an async runtime or a dozen
//! crates into the CLI for nothing it would use.
//!
//! Routes:
//! - `/metrics`: [`crate::metrics::render`], `text/plain; version=0.0.4`;
//! - `/api`: the routes below; `/api/all`: the whole [`crate::metrics::Collected`];
//!   `/api/chains`, `/api/steering`, `/api/tunnels`: one part of it, as JSON.
//!
//! Anything but GET or HEAD gets 405: the server changes nothing.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use crate::{ObserveError, metrics};

/// A response: status, content type, body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Its content type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn json(value: &impl serde::Serialize) -> Response {
        Response {
            status: 200,
            content_type: "application/json",
            body: serde_json::to_string_pretty(value).unwrap_or_default(),
        }
    }

    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }
}

/// The answer to `method` on `path`, with `collect` as the source of the data.
pub fn route(method: &str, path: &str, collect: impl Fn() -> metrics::Collected) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "fastpath serve is read-only: GET only");
    }
    let path = path.split('?').next().unwrap_or(path);
    match path.trim_end_matches('/') {
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(&collect()),
        },
        "/api" => Response::json(&serde_json::json!({
            "routes": ["/metrics", "/api/all", "/api/chains", "/api/steering", "/api/tunnels"]
        })),
        "/api/all" => Response::json(&collect()),
        "/api/chains" => Response::json(&collect().chains),
        "/api/steering" => Response::json(&collect().steering),
        "/api/tunnels" => Response::json(&collect().tunnels),
        "" => Response::text(
            200,
            "fastpath: /metrics (Prometheus), /api (JSON). The tunnel graph page is not built yet.",
        ),
        _ => Response::text(404, &format!("no route {path}: see /api")),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}

/// Serves `listener` until the process ends, each connection on a thread of its own.
pub fn serve(listener: TcpListener) -> Result<(), ObserveError> {
    for stream in listener.incoming() {
        let stream = stream.map_err(|source| ObserveError::Io {
            what: "accept a connection".into(),
            source,
        })?;
        std::thread::spawn(move || {
            // A client that goes away mid-request is its own problem, not the server's.
            let _ = answer(stream);
        });
    }
    Ok(())
}

fn answer(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.by_ref().take(8192).read_line(&mut request_line)?;
    // Headers: read up to the blank line, ignored.
    let mut header = String::new();
    for _ in 0..100 {
        header.clear();
        if reader.by_ref().take(8192).read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let response = match (words.next(), words.next()) {
        (Some(method), Some(path)) => route(method, path, metrics::collect),
        _ => Response::text(400, "not an HTTP request"),
    };
    let head = request_line.starts_with("HEAD ");
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )?;
    if !head {
        stream.write_all(response.body.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answer_and_refuse_writes() {
        let empty = metrics::Collected::default;
        assert_eq!(route("GET", "/metrics", empty).status, 200);
        assert_eq!(route("GET", "/api/tunnels", empty).body.trim(), "[]");
        assert_eq!(route("GET", "/nowhere", empty).status, 404);
        assert_eq!(route("POST", "/metrics", empty).status, 405);
    }
}
