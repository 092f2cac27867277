//! `fastpath serve` run by a test in a lab namespace, and tracers unloaded when a test ends.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
};

use lab::Lab;
use serde_json::Value;

use super::fastpath;

/// `fastpath serve` in a namespace on an ephemeral port of its loopback, killed on drop.
pub struct Server {
    child: Child,
    /// Where it listens, inside its namespace.
    pub address: SocketAddr,
    /// Its namespace.
    pub namespace: String,
}

impl Server {
    /// Starts `fastpath --netns NAMESPACE serve` with `extra` arguments.
    pub fn start(namespace: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fastpath"))
            .args([
                "--json",
                "--netns",
                namespace,
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run fastpath serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: Value = serde_json::from_str(&line).expect("serve prints where it listens");
        Server {
            child,
            address: started["listening"].as_str().unwrap().parse().unwrap(),
            namespace: namespace.to_string(),
        }
    }

    /// The URL of `path` (as seen from the server's namespace).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// GET `path`: (status line, body).
    pub fn get(&self, path: &str) -> (String, String) {
        let (address, request) = (
            self.address,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        );
        let response = Lab::run_in(&self.namespace, move || {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("a response");
        (head.lines().next().unwrap().to_string(), body.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vxlan-trace` on some chains of a namespace's interfaces, unloaded when the test ends,
/// pass or fail (pins outlive the lab's interfaces otherwise).
pub struct Tracers {
    /// The namespace.
    pub namespace: String,
    /// (interface, hook) of each chain the tracer was loaded into.
    pub chains: Vec<(String, String)>,
}

impl Tracers {
    /// The tracer on each (interface, hook) of `namespace`, loaded by the first snapshot
    /// of each and unloaded from all on drop.
    pub fn new(namespace: &str, chains: &[(&str, &str)]) -> Tracers {
        Tracers {
            namespace: namespace.to_string(),
            chains: chains
                .iter()
                .map(|(iface, hook)| (iface.to_string(), hook.to_string()))
                .collect(),
        }
    }

    /// [`Tracers::new`], loaded on every chain now.
    pub fn load(namespace: &str, chains: &[(&str, &str)]) -> Tracers {
        let tracers = Tracers::new(namespace, chains);
        for (iface, hook) in &tracers.chains {
            tracers.snapshot(iface, hook);
        }
        tracers
    }

    /// Unloads the tracer from `iface`'s `hook` now (`fastpath module unload`), which must
    /// succeed.
    pub fn unload(&self, iface: &str, hook: &str) {
        let output = fastpath(&[
            "--netns",
            &self.namespace,
            "module",
            "unload",
            "--iface",
            iface,
            "--hook",
            hook,
            "vxlan-trace",
        ]);
        assert!(
            output.status.success(),
            "unload vxlan-trace from {iface} {hook}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The tracer's snapshot on `iface`'s `hook` (`fastpath trace vxlan --once --json`).
    pub fn snapshot(&self, iface: &str, hook: &str) -> Value {
        super::json(&[
            "--netns",
            &self.namespace,
            "trace",
            "vxlan",
            "--iface",
            iface,
            "--hook",
            hook,
            "--once",
        ])
    }
}

impl Drop for Tracers {
    fn drop(&mut self) {
        for (iface, hook) in &self.chains {
            let _ = fastpath(&[
                "--netns",
                &self.namespace,
                "module",
                "unload",
                "--iface",
                iface,
                "--hook",
                hook,
                "vxlan-trace",
            ]);
        }
    }
}
