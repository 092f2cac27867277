//! The read-only HTTP server behind `fastpath serve`: `std::net` only, one thread per
//! connection, one request per connection (`Connection: close`).
//!
//! Why no HTTP crate: the server answers a handful of GET routes with small bodies to a
//! scraper and a browser on localhost; an HTTP/1.1 request line and a response with a
//! length are some 60 lines, where a framework would bring an async runtime or a dozen
//! crates into the CLI for nothing it would use.
//!
//! Routes:
//! - `/`: the tunnel graph page (`observe/web/`, built into the binary: no CDN, works
//!   offline), with `/graph.js` and `/graph.css`;
//! - `/metrics`: [`crate::metrics::render`], `text/plain; version=0.0.4`;
//! - `/api`: the routes below; `/api/all`: the whole [`crate::metrics::Collected`];
//!   `/api/chains`, `/api/steering`, `/api/tunnels`, `/api/firewall`, `/api/lb`: one part
//!   of it, as JSON; `/api/graph`: the tunnel graph with rates and health
//!   ([`crate::graph`]).
//!
//! Anything but GET or HEAD gets 405: the server changes nothing.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{ObserveError, graph, metrics};

/// The page and its assets, built into the binary.
const INDEX_HTML: &str = include_str!("../web/index.html");
const GRAPH_JS: &str = include_str!("../web/graph.js");
const GRAPH_CSS: &str = include_str!("../web/graph.css");

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

    fn asset(content_type: &'static str, body: &str) -> Response {
        Response {
            status: 200,
            content_type,
            body: body.to_string(),
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

/// Where the server's data comes from: the kernel and the appliances
/// ([`metrics::Sources`]), or a fake in tests.
pub trait Collector: Send + Sync + 'static {
    /// Everything.
    fn collect(&self) -> metrics::Collected;
    /// The tracers' snapshots and the errors reading them: all the graph needs (it polls
    /// every second). The rest of the collection may stay empty.
    fn tunnels(&self) -> metrics::Collected {
        self.collect()
    }
}

impl Collector for metrics::Sources {
    fn collect(&self) -> metrics::Collected {
        metrics::collect(self)
    }

    fn tunnels(&self) -> metrics::Collected {
        metrics::collect_tunnels()
    }
}

/// The server's state: where it collects from, and the tunnel graph's past (health is
/// judged on the samples of the last seconds, taken as the page polls).
pub struct Server {
    collector: Box<dyn Collector>,
    history: Mutex<graph::History>,
    started: Instant,
}

impl Server {
    /// A server answering from `collector`.
    pub fn new(collector: impl Collector) -> Server {
        Server {
            collector: Box::new(collector),
            history: Mutex::new(graph::History::default()),
            started: Instant::now(),
        }
    }

    /// The answer to `method` on `path`.
    pub fn route(&self, method: &str, path: &str) -> Response {
        if method != "GET" && method != "HEAD" {
            return Response::text(405, "fastpath serve is read-only: GET only");
        }
        let collect = || self.collector.collect();
        let path = path.split('?').next().unwrap_or(path);
        match path.trim_end_matches('/') {
            "" | "/index.html" => Response::asset("text/html; charset=utf-8", INDEX_HTML),
            "/graph.js" => Response::asset("text/javascript; charset=utf-8", GRAPH_JS),
            "/graph.css" => Response::asset("text/css; charset=utf-8", GRAPH_CSS),
            "/metrics" => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: metrics::render(&collect()),
            },
            "/api" => Response::json(&serde_json::json!({
                "routes": [
                    "/metrics", "/api/all", "/api/chains", "/api/steering", "/api/tunnels",
                    "/api/firewall", "/api/lb", "/api/graph"
                ]
            })),
            "/api/all" => Response::json(&collect()),
            "/api/chains" => Response::json(&collect().chains),
            "/api/steering" => Response::json(&collect().steering),
            "/api/tunnels" => Response::json(&collect().tunnels),
            "/api/firewall" => Response::json(&collect().firewalls),
            "/api/lb" => Response::json(&collect().load_balancers),
            "/api/graph" => {
                let collected = self.collector.tunnels();
                // A poisoned lock only means another request panicked mid-sample: the
                // history is still a list of whole samples.
                let mut history = self
                    .history
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut graph = history.sample(self.started.elapsed(), &collected.tunnels);
                graph.errors = collected.errors;
                Response::json(&graph)
            }
            _ => Response::text(404, &format!("no route {path}: see /api")),
        }
    }

    /// Serves `listener` until the process ends, each connection on a thread of its own.
    pub fn serve(self: Arc<Self>, listener: TcpListener) -> Result<(), ObserveError> {
        for stream in listener.incoming() {
            let stream = stream.map_err(|source| ObserveError::Io {
                what: "accept a connection".into(),
                source,
            })?;
            let server = Arc::clone(&self);
            std::thread::spawn(move || {
                // A client that goes away mid-request is its own problem, not the server's.
                let _ = server.answer(stream);
            });
        }
        Ok(())
    }

    fn answer(&self, stream: TcpStream) -> std::io::Result<()> {
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
            (Some(method), Some(path)) => self.route(method, path),
            _ => Response::text(400, "not an HTTP request"),
        };
        let head = request_line.starts_with("HEAD ");
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing loaded anywhere.
    struct Empty;

    impl Collector for Empty {
        fn collect(&self) -> metrics::Collected {
            metrics::Collected::default()
        }
    }

    #[test]
    fn routes_answer_and_refuse_writes() {
        let server = Server::new(Empty);
        assert_eq!(server.route("GET", "/metrics").status, 200);
        assert_eq!(server.route("GET", "/api/tunnels").body.trim(), "[]");
        assert_eq!(server.route("GET", "/nowhere").status, 404);
        assert_eq!(server.route("POST", "/metrics").status, 405);
    }

    #[test]
    fn the_page_and_its_assets_are_served_from_the_binary() {
        let server = Server::new(Empty);
        let page = server.route("GET", "/?vtep=10.0.0.1");
        assert!(page.content_type.starts_with("text/html"));
        // Everything the page loads comes from this server: no other origin.
        for asset in ["/graph.js", "/graph.css"] {
            assert!(page.body.contains(&format!("\"{asset}\"")), "{asset}");
            assert_eq!(server.route("GET", asset).status, 200);
        }
        assert!(
            !page.body.contains("://"),
            "the page loads nothing from elsewhere"
        );
        // The one URL in the script is SVG's namespace name, which is never fetched.
        let script = GRAPH_JS.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !script.contains("://"),
            "the script loads nothing from elsewhere"
        );
        let graph: serde_json::Value =
            serde_json::from_str(&server.route("GET", "/api/graph").body).unwrap();
        assert_eq!(graph["vteps"], serde_json::json!([]));
    }
}
