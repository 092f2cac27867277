//! Shared by the load-balancer tests: a lab with servers, the appliance as a real process,
//! and real clients.
#![allow(dead_code)] // each test file uses its own part

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use lab::{segment::LbLab, services::Servers};

pub struct Setup {
    pub lab: LbLab,
    servers: Vec<Option<Servers>>,
}

impl Setup {
    /// Backend `index` vanishes as a container would: its servers stop and its namespace is
    /// deleted, which takes its veth pair (the bridge port with it) once nothing holds it.
    pub fn vanish_backend(&mut self, index: usize) {
        self.servers[index] = None;
        lab::netns::delete(&self.lab.backends[index].namespace).expect("delete the namespace");
    }

    /// A lab whose servers the test runs itself.
    pub fn from_lab(lab: LbLab) -> Setup {
        Setup {
            lab,
            servers: Vec::new(),
        }
    }
}

/// The segment lab with an HTTP and UDP echo server on port 80 in every backend ("b1".."b3"),
/// the VIPs on the backends' loopbacks (for DSR).
pub fn setup(tag: &str, lb_queues: u32) -> Setup {
    let lab = LbLab::for_test(tag, lb_queues);
    lab.hold_vips_on_backends().expect("VIPs on backends");
    let servers = lab
        .backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let addresses = [b.ipv4, b.ipv6, lab.vip(true), lab.vip(false)];
            let servers = Servers::start(&b.namespace, &format!("b{}", i + 1), 80, &addresses);
            Some(servers.expect("servers"))
        })
        .collect();
    Setup { lab, servers }
}

pub fn config(
    setup: &Setup,
    v4: bool,
    protocol: &str,
    forwarding: &str,
    extra_top: &str,
    weights: [u32; 3],
) -> String {
    let lab = &setup.lab;
    let vip = lab.vip(v4);
    let snat = if forwarding == "nat" {
        format!(
            "snat_address = \"{}\"\n",
            if v4 { lab.lb.ipv4 } else { lab.lb.ipv6 }
        )
    } else {
        String::new()
    };
    let mut text = format!(
        "interface = \"{}\"\ncontrol = \"/run/fastpath/{}.sock\"\n{extra_top}\n[[vip]]\naddress = \"{vip}\"\nport = 80\nprotocol = \"{protocol}\"\nforwarding = \"{forwarding}\"\n{snat}",
        lab.lb.iface, lab.prefix
    );
    for (backend, weight) in lab.backends.iter().zip(weights) {
        let address = if v4 { backend.ipv4 } else { backend.ipv6 };
        text += &format!("[[vip.backend]]\naddress = \"{address}\"\nweight = {weight}\n");
    }
    text
}

/// The appliance, run as `fastpath --netns <lb> lb --config FILE`; stopped with SIGTERM on drop.
pub struct Appliance {
    child: Child,
    pub config: PathBuf,
    pub control: PathBuf,
    pub namespace: String,
    /// Where its stderr goes, when captured.
    log: Option<PathBuf>,
}

impl Appliance {
    pub fn start(setup: &Setup, config_text: &str) -> Appliance {
        let mut appliance = Appliance::spawn(setup, config_text, &[], false);
        if let Err(error) = appliance.wait_ready() {
            panic!("{error}");
        }
        appliance
    }

    /// Starts the appliance with extra environment variables, its stderr kept for [`log`]
    /// when `capture`; does not wait for it to serve.
    pub fn spawn(
        setup: &Setup,
        config_text: &str,
        env: &[(&str, &str)],
        capture: bool,
    ) -> Appliance {
        let config = std::env::temp_dir().join(format!("{}.toml", setup.lab.prefix));
        std::fs::write(&config, config_text).unwrap();
        let control = PathBuf::from(format!("/run/fastpath/{}.sock", setup.lab.prefix));
        let namespace = setup.lab.namespace("lb");
        let log = capture
            .then(|| std::env::temp_dir().join(format!("{}-{}.log", setup.lab.prefix, unique())));
        let stderr = match &log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_fastpath"))
            .args(["--netns", &namespace, "lb", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start fastpath lb");
        Appliance {
            child,
            config,
            control,
            namespace,
            log,
        }
    }

    /// Waits until the appliance answers on its control socket.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "fastpath lb exited early: {status}\n{}",
                    self.log()
                ));
            }
            if std::os::unix::net::UnixStream::connect(&self.control).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the appliance did not come up\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the appliance wrote to stderr so far (empty when not captured).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Runs `fastpath lb ARGS --control SOCK [--json]`; returns (success, stdout, stderr).
    pub fn control(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_fastpath"))
            .args(["--netns", &self.namespace, "--json", "lb"])
            .args(args)
            .arg("--control")
            .arg(&self.control)
            .output()
            .expect("run fastpath lb control");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn status(&self) -> serde_json::Value {
        let (ok, out, err) = self.control(&["status"]);
        assert!(ok, "status failed: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["status"].clone()
    }

    /// kill -9: no cleanup at all.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops with SIGTERM and returns whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    fn terminate(&mut self) -> bool {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        let _ = std::fs::remove_file(&self.config);
        if let Some(log) = &self.log {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// A number no other call in this process returns.
fn unique() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `count` HTTP GETs to the VIP from the client namespace, each on its own connection.
pub fn http_gets(setup: &Setup, v4: bool, count: usize) -> Vec<Result<String, String>> {
    let target = SocketAddr::new(setup.lab.vip(v4), 80);
    lab::services::http_gets(
        &setup.lab.client.namespace,
        target,
        count,
        Duration::from_secs(3),
    )
    .unwrap()
}

/// Counts bodies per backend name; panics listing the failures if any request failed.
pub fn tally(results: &[Result<String, String>]) -> [usize; 3] {
    let (counts, failures) = lab::services::count_bodies(results, &["b1", "b2", "b3"]);
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        results.len(),
        &failures[..failures.len().min(3)]
    );
    [counts[0], counts[1], counts[2]]
}

/// A raw capture on each backend's interface, in backend order.
pub fn backend_captures(setup: &Setup) -> Vec<lab::raw::RawSocket> {
    setup
        .lab
        .backends
        .iter()
        .map(|b| lab::raw::RawSocket::open(&b.namespace, &b.iface).unwrap())
        .collect()
}
