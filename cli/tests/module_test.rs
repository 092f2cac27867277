//! `fastpath module test`: a pcap file written from frames of `wire`'s builder runs through
//! a chain of four C modules built with clang inside the test (a counter that continues,
//! a dropper for UDP port 9, a module that decrements the TTL of IPv4 UDP to port 7, fixes
//! the header checksum and sends the frame back out, and one that pushes a VLAN tag), with
//! BPF_PROG_TEST_RUN and nothing attached. Checked: each packet's verdict, module and changed bytes (the
//! rewritten frame against one computed with `wire::checksum`), a passing and a failing
//! `--expect`, the bad inputs, that no pin outlives the command, and that the pins of a
//! run killed mid-way are removed by the next one.

mod support;
use support::{DROPPER, TempDir, clang, failure, fastpath};

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
};

use lab::require_root;
use wire::build::FrameBuilder;

/// Counts packets per IP protocol and continues every one.
const COUNTER: &str = r#"
#include "module.h"
FASTPATH_MODULE("counter", "1.0.0", 1);
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u64);
} PROTOCOLS SEC(".maps");
SEC("xdp.frags")
int counter(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return XDP_PASS;
	__u32 key = fp->protocol;
	__u64 *count = bpf_map_lookup_elem(&PROTOCOLS, &key);
	if (count)
		*count += 1;
	return fp_continue(ctx, fp);
}
"#;

/// IPv4 UDP to port 7: TTL down by one, header checksum updated as `wire::checksum::update`
/// does (RFC 1624 eqn. 3), sent back out; a TTL of 1 is dropped. Others continue.
const TTL: &str = r#"
#include "module.h"
FASTPATH_MODULE("ttl", "1.0.0", 1);
SEC("xdp.frags")
int ttl(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return XDP_PASS;
	if (fp->parse != FP_PARSE_IP || fp->ip_version != 4 || fp->protocol != 17 ||
	    !fp->has_ports || fp->dst_port != 7)
		return fp_continue(ctx, fp);
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = fp->l3_offset;
	if (l3 > 64)
		return fp_continue(ctx, fp);
	__u8 *ip = data + l3;
	if ((void *)(ip + 20) > data_end)
		return fp_continue(ctx, fp);
	if (ip[8] <= 1)
		return fp_drop(fp);
	__u16 old_word = (ip[8] << 8) | ip[9];
	ip[8] -= 1;
	__u16 new_word = (ip[8] << 8) | ip[9];
	__u16 check = (ip[10] << 8) | ip[11];
	__u32 sum = (__u16)~check + (__u16)~old_word + new_word;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	check = ~sum;
	ip[10] = check >> 8;
	ip[11] = check & 0xff;
	return fp_tx(fp);
}
"#;

/// UDP to port 5000 without a VLAN tag: an 802.1Q tag (VLAN 100) pushed in front of the
/// EtherType (`bpf_xdp_adjust_head`, the MAC addresses moved to the new start), sent back
/// out. Others continue.
const TAGGER: &str = r#"
#include "module.h"
FASTPATH_MODULE("tagger", "1.0.0", 1);
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)44;
SEC("xdp.frags")
int tagger(struct xdp_md *ctx)
{
	struct fp_context *fp = fp_context();
	if (!fp)
		return XDP_PASS;
	if (fp->parse != FP_PARSE_IP || !fp->has_ports || fp->dst_port != 5000 || fp->vlan_count)
		return fp_continue(ctx, fp);
	if (bpf_xdp_adjust_head(ctx, -4))
		return fp_abort(fp);
	__u8 *data = (void *)(long)ctx->data;
	__u8 *data_end = (void *)(long)ctx->data_end;
	if ((void *)(data + 18) > (void *)data_end)
		return fp_abort(fp);
	for (int i = 0; i < 12; i++)
		data[i] = data[i + 4];
	data[12] = 0x81;
	data[13] = 0x00;
	data[14] = 0x00;
	data[15] = 100;
	return fp_tx(fp);
}
"#;

/// An XDP program without module metadata.
const PLAIN: &str = r#"
#include "module.h"
SEC("xdp")
int plain(struct xdp_md *ctx)
{
	return XDP_PASS;
}
char _license[] SEC("license") = "GPL";
"#;

struct Built {
    dir: TempDir,
    counter: String,
    dropper: String,
    ttl: String,
    tagger: String,
    plain: String,
}

/// The modules, built in a folder of `test`'s own (the tests run in parallel).
fn build(test: &str) -> Built {
    let dir = std::env::temp_dir().join(format!(
        "fastpath-module-test-{test}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let object = |name: &str, text: &str| {
        let source = dir.0.join(format!("{name}.c"));
        std::fs::write(&source, text).unwrap();
        let object = dir.0.join(format!("{name}.o"));
        clang(&source, &object);
        object.to_str().unwrap().to_string()
    };
    Built {
        counter: object("counter", COUNTER),
        dropper: object("dropper", DROPPER),
        ttl: object("ttl", TTL),
        tagger: object("tagger", TAGGER),
        plain: object("plain", PLAIN),
        dir,
    }
}

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The capture's frames: UDP to 53 (continued to the end), UDP to 9 (dropped), UDP to 7
/// (TTL rewritten, sent back), TCP (continued), IPv6 UDP to 7 (not IPv4: continued), UDP to
/// 7 with a TTL of 1 (dropped by ttl), UDP to 5000 (tagged, sent back).
fn frames() -> Vec<Vec<u8>> {
    let udp = |port| {
        FrameBuilder::udp(addr("10.0.0.1"), addr("10.0.0.2"))
            .ports(40000, port)
            .payload(vec![0x5a; 24])
    };
    let mut last_hop = udp(7).build();
    last_hop[14 + 8] = 1;
    refresh_ipv4_checksum(&mut last_hop);
    vec![
        udp(53).build(),
        udp(9).build(),
        udp(7).build(),
        FrameBuilder::tcp(addr("10.0.0.1"), addr("10.0.0.2"), 0x02).build(),
        FrameBuilder::udp(addr("fd00::1"), addr("fd00::2"))
            .ports(40000, 7)
            .build(),
        last_hop,
        udp(5000).build(),
    ]
}

/// Recomputes the IPv4 header checksum of an untagged frame with `wire`.
fn refresh_ipv4_checksum(frame: &mut [u8]) {
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = wire::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_pcap(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// The transient pin folders a process with this pid left.
fn pins_left_by(pid: u32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf/fastpath/transient-objects") else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.split('-').nth(1) == Some(pid.to_string().as_str())
        })
        .map(|entry| entry.path())
        .collect()
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn module_test_reports_each_packets_verdict_module_and_changed_bytes() {
    require_root("module test (BPF_PROG_TEST_RUN)");
    let built = build("verdicts");
    let frames = frames();
    let pcap = write_pcap(&built.dir.0, "in.pcap", &wire::pcap::write(&frames));
    let chain = [
        built.counter.as_str(),
        built.dropper.as_str(),
        built.ttl.as_str(),
        built.tagger.as_str(),
    ];

    // Run as a child whose pid is known, to check it left no pin.
    let child = Command::new(env!("CARGO_BIN_EXE_fastpath"))
        .args(
            [
                &["--json", "module", "test"],
                &chain[..],
                &["--pcap", &pcap],
            ]
            .concat(),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run fastpath");
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(pins_left_by(pid), Vec::<PathBuf>::new(), "pins left behind");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["frags"], true);
    let packets = report["packets"].as_array().unwrap();
    assert_eq!(packets.len(), frames.len());
    let summary: Vec<(u64, &str, Option<&str>, &str)> = packets
        .iter()
        .map(|packet| {
            (
                packet["packet"].as_u64().unwrap(),
                packet["verdict"].as_str().unwrap(),
                packet["module"].as_str(),
                packet["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "chain-end", None, "pass"),
            (2, "drop", Some("dropper"), "drop"),
            (3, "tx", Some("ttl"), "tx"),
            (4, "chain-end", None, "pass"),
            (5, "chain-end", None, "pass"),
            (6, "drop", Some("ttl"), "drop"),
            (7, "tx", Some("tagger"), "tx"),
        ]
    );
    assert_eq!(
        packets[1]["continued_by"],
        serde_json::json!(["counter"]),
        "the counter continued the dropped packet"
    );
    assert_eq!(
        packets[0]["continued_by"],
        serde_json::json!(["counter", "dropper", "ttl", "tagger"])
    );
    for index in [0, 1, 3, 4, 5] {
        assert_eq!(
            packets[index]["changes"]["runs"],
            serde_json::json!([]),
            "packet {}",
            index + 1
        );
        assert!(packets[index].get("output").is_none());
    }

    // The rewritten frame: TTL 64 -> 63 and the checksum wire computes for it.
    let mut expected = frames[2].clone();
    expected[22] -= 1;
    refresh_ipv4_checksum(&mut expected);
    assert_eq!(packets[2]["output"], hex(&expected));
    let runs = packets[2]["changes"]["runs"].as_array().unwrap();
    assert_eq!(runs[0]["offset"], 22);
    assert_eq!(runs[0]["old"], "40");
    assert_eq!(runs[0]["new"], "3f");
    let changed: Vec<u64> = runs
        .iter()
        .map(|run| run["offset"].as_u64().unwrap())
        .collect();
    assert!(
        changed
            .iter()
            .skip(1)
            .all(|offset| (24..26).contains(offset)),
        "only the TTL and the checksum change: {runs:?}"
    );
    assert_eq!(packets[2]["changes"]["length_out"], frames[2].len());

    // The tagged frame: 4 bytes more, its start moved, and the bytes `wire`'s builder
    // makes for the same datagram with a VLAN tag.
    let tagged = FrameBuilder::udp(addr("10.0.0.1"), addr("10.0.0.2"))
        .ports(40000, 5000)
        .payload(vec![0x5a; 24])
        .vlan(0x8100, 100)
        .build();
    assert_eq!(packets[6]["output"], hex(&tagged));
    let changes = &packets[6]["changes"];
    assert_eq!(changes["length_in"], frames[6].len());
    assert_eq!(changes["length_out"], frames[6].len() + 4);
    assert_eq!(changes["resized_at"], "front");
    assert_eq!(changes["runs"][0]["offset"], 0);
    assert_eq!(changes["runs"][0]["old"], "");
    assert_eq!(
        changes["runs"][0]["new"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        4
    );

    // The human output: one line per packet, then the summary.
    let output = fastpath(&[&["module", "test"], &chain[..], &["--pcap", &pcap]].concat());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.starts_with(&["3", "tx", "ttl", "tx"]) && line.contains(" at 22")
        }),
        "{text}"
    );
    assert!(
        text.contains(
            "7 packets: 3 chain-end, 1 drop (dropper), 1 drop (ttl), 1 tx (tagger), 1 tx (ttl); 2 changed"
        ),
        "{text}"
    );

    // A passing expectation file.
    let passing = built.dir.0.join("passing.json");
    let document = serde_json::json!({ "packets": [
        { "packet": 1, "verdict": "chain-end" },
        { "packet": 2, "verdict": "drop", "module": "dropper" },
        { "packet": 3, "verdict": "tx", "module": "ttl", "output": hex(&expected) },
        { "packet": 6, "verdict": "drop" },
    ]});
    std::fs::write(&passing, document.to_string()).unwrap();
    let passing = passing.to_str().unwrap();
    let output = fastpath(
        &[
            &["module", "test"],
            &chain[..],
            &["--pcap", &pcap, "--expect", passing],
        ]
        .concat(),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("all 4 packets named match"));

    // A failing one: packet 2 is not passed, packet 3's frame is not left as it came.
    let failing = built.dir.0.join("failing.json");
    let document = serde_json::json!({ "packets": [
        { "packet": 1, "verdict": "chain-end" },
        { "packet": 2, "verdict": "pass" },
        { "packet": 3, "verdict": "tx", "output": hex(&frames[2]) },
    ]});
    std::fs::write(&failing, document.to_string()).unwrap();
    let failing = failing.to_str().unwrap();
    let args = [
        &["module", "test"],
        &chain[..],
        &["--pcap", &pcap, "--expect", failing],
    ]
    .concat();
    let error = failure(&args);
    assert!(
        error.contains("packet 2 (in.pcap#2): verdict: expected pass, got drop"),
        "{error}"
    );
    assert!(
        error.contains("packet 3 (in.pcap#3): output: expected the file's")
            && error.contains("at 22: expected 40, got 3f"),
        "{error}"
    );
    assert!(
        error.contains("2 of the 3 packets") && error.contains("differ: packet 2, 3"),
        "{error}"
    );
    // With --json too: the report, then a non-zero exit.
    let output = fastpath(&[&["--json"], &args[..]].concat());
    assert!(!output.status.success());
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["mismatches"].as_array().unwrap().len(), 2);
    assert_eq!(report["mismatches"][0]["packet"], 2);
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn module_test_names_the_bad_input() {
    require_root("module test errors");
    let built = build("errors");
    let frames = frames();
    let pcap = wire::pcap::write(&frames);
    let good = write_pcap(&built.dir.0, "good.pcap", &pcap);

    // Not a pcap: a module object given as the capture.
    let error = failure(&["module", "test", &built.counter, "--pcap", &built.dropper]);
    assert!(
        error.contains("dropper.o: not a pcap or pcapng file (it starts with 7f454c46"),
        "{error}"
    );

    // A capture cut inside its third record.
    let third = 24 + (16 + frames[0].len()) + (16 + frames[1].len());
    let cut = write_pcap(&built.dir.0, "cut.pcap", &pcap[..third + 20]);
    let error = failure(&["module", "test", &built.counter, "--pcap", &cut]);
    assert!(
        error.contains(&format!(
            "cut.pcap: record 3 at byte offset {third}: truncated"
        )),
        "{error}"
    );

    // An ELF that is no module.
    let error = failure(&["module", "test", &built.plain, "--pcap", &good]);
    assert!(
        error.contains("plain.o has no fastpath module metadata"),
        "{error}"
    );

    // A capture that is not given as a file that exists.
    let error = failure(&[
        "module",
        "test",
        &built.counter,
        "--pcap",
        "/nonexistent/in.pcap",
    ]);
    assert!(error.contains("read /nonexistent/in.pcap"), "{error}");

    // Bad JSON in the expectation file names its line and field.
    let expect = built.dir.0.join("bad.json");
    std::fs::write(
        &expect,
        "{\"packets\": [\n {\"packet\": 1, \"verdict\": \"dorp\"}\n]}",
    )
    .unwrap();
    let error = failure(&[
        "module",
        "test",
        &built.counter,
        "--pcap",
        &good,
        "--expect",
        expect.to_str().unwrap(),
    ]);
    assert!(
        error.contains("bad.json: line 2 column 33: packets[0].verdict: unknown verdict \"dorp\""),
        "{error}"
    );

    // The same module twice: a chain's names are unique.
    let error = failure(&[
        "module",
        "test",
        &built.counter,
        &built.counter,
        "--pcap",
        &good,
    ]);
    assert!(error.contains("two modules named counter"), "{error}");
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn a_killed_module_test_leaves_pins_that_the_next_one_removes() {
    use std::os::unix::process::ExitStatusExt;
    require_root("module test killed");
    let built = build("killed");
    let pcap = write_pcap(&built.dir.0, "in.pcap", &wire::pcap::write(&frames()));
    let run = |kill_at: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fastpath"));
        command.args(["module", "test", &built.counter, "--pcap", &pcap]);
        if let Some(point) = kill_at {
            command.env("FASTPATH_KILL_AT", point);
        }
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run fastpath");
        let pid = child.id();
        (pid, child.wait_with_output().unwrap().status)
    };
    let (dead, status) = run(Some("trial:built"));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(
        pins_left_by(dead).len(),
        1,
        "the killed run's chain is pinned"
    );
    let (_, status) = run(None);
    assert!(status.success());
    assert_eq!(
        pins_left_by(dead),
        Vec::<PathBuf>::new(),
        "the next run prunes a dead run's pins"
    );
}
