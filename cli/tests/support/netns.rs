//! Commands and checks run inside a lab namespace (`ip netns exec`), as a user would.

use std::{
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use lab::wait_until;

/// Runs `args` in `namespace` and returns what it did.
pub fn run_in(namespace: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args)
        .output()
        .expect("run ip netns exec")
}

/// Starts `args` in `namespace`, its output discarded.
pub fn spawn_in(namespace: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ip netns exec")
}

/// One ICMP echo from `namespace` to `to`, answered within a second.
pub fn ping_once(namespace: &str, to: &str) -> bool {
    run_in(namespace, &["ping", "-n", "-c", "1", "-W", "1", to])
        .status
        .success()
}

/// Waits until `to` answers a ping from `namespace` (a router resolves a next hop on the
/// first packet), then requires three echoes in a row to be answered.
pub fn ping_works(namespace: &str, to: &str) {
    wait_until(
        Duration::from_secs(10),
        &format!("{namespace} pings {to}"),
        || ping_once(namespace, to),
    );
    let output = run_in(
        namespace,
        &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", to],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("3 received"),
        "ping {to} from {namespace}: {text}"
    );
}

/// Whether `frame` (untagged) is an ARP request for `target`.
pub fn is_arp_request_for(frame: &[u8], target: [u8; 4]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 1]
        && frame[38..42] == target
}

/// `python3 -m http.server PORT --bind BIND --directory DIR` (Debian's Python) in
/// `namespace`, killed when the test ends.
pub fn http_server(namespace: &str, port: u16, bind: &str, dir: &std::path::Path) -> Killed {
    Killed(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                namespace,
                "/usr/bin/python3",
                "-m",
                "http.server",
            ])
            .args([&port.to_string(), "--bind", bind, "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server"),
    )
}

/// A process killed when the test ends, passed or not.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Takes topology `name` of `namespace` down when the test ends, passed or not (before
/// the lab goes).
pub struct TopologyDown {
    pub namespace: String,
    pub name: &'static str,
}

impl Drop for TopologyDown {
    fn drop(&mut self) {
        let _ = super::fastpath(&[
            "--netns",
            &self.namespace,
            "topology",
            "down",
            "--name",
            self.name,
        ]);
    }
}

/// `topology apply PATH` in the node namespace `node`: its JSON.
pub fn topology_apply(node: &str, path: &std::path::Path) -> serde_json::Value {
    super::json(&["--netns", node, "topology", "apply", path.to_str().unwrap()])
}

/// `topology show --name NAME` in the node namespace `node`: its JSON.
pub fn topology_show(node: &str, name: &str) -> serde_json::Value {
    super::json(&["--netns", node, "topology", "show", "--name", name])
}

/// The counter `name` of a `[[name, value], ...]` list of `topology show --json`.
pub fn named_counter(counters: &serde_json::Value, name: &str) -> Option<u64> {
    counters
        .as_array()?
        .iter()
        .find(|counter| counter[0] == name)
        .and_then(|counter| counter[1].as_u64())
}

/// The counter `counter` of instance `instance` in a `topology show --json` (panics,
/// naming what it shows, when there is none).
pub fn instance_counter(shown: &serde_json::Value, instance: &str, counter: &str) -> u64 {
    let found = shown["instances"]
        .as_array()
        .and_then(|instances| instances.iter().find(|known| known["name"] == instance))
        .unwrap_or_else(|| panic!("no instance {instance}: {shown}"));
    named_counter(&found["counters"], counter)
        .unwrap_or_else(|| panic!("no counter {counter} of {instance}: {found}"))
}

/// `curl` in `namespace` fetching `url` into nothing within `seconds`, at most at `rate`
/// ("200k"), printing the bytes it got.
pub fn download(namespace: &str, url: &str, seconds: &str, rate: Option<&str>) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace, "curl", "-s", "-o", "/dev/null"])
        .args(["-w", "%{size_download}", "-m", seconds, url])
        .stdout(Stdio::piped());
    if let Some(rate) = rate {
        command.args(["--limit-rate", rate]);
    }
    command
}
