//! The kernel's classification against the compiler's reference: random policies applied
//! to a lab veth's firewall, random packets run through the real chain's entry with
//! `BPF_PROG_TEST_RUN`, each verdict (drop, or accept: the chain's end passes) compared
//! with what `Tables::classify` (the same tuple-space search in user space) decides.

use std::{net::IpAddr, path::Path};

use aya::programs::Xdp;
use firewall::Policy;
use lab::{Lab, require_root};
use offload_common::{
    FAMILY_V4, FAMILY_V6,
    firewall::{RuleKey, ct_state, verdict},
    proto,
};
use wire::build::{FrameBuilder, L4};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const ROUNDS: usize = 12;
const PACKETS: usize = 400;

/// xorshift64*: reproducible without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn v4(random: &mut Random, second: u8) -> [u8; 4] {
    [10, second, random.below(4) as u8, random.below(4) as u8]
}

fn random_policy(random: &mut Random, iface: &str) -> String {
    let mut text = format!("default = \"{}\"\n", random.pick(&["accept", "drop"]));
    for _ in 0..(5 + random.below(40)) {
        text.push_str("[[rule]]\n");
        let six = random.below(6) == 0;
        let protocol = *random.pick(&[None, Some("tcp"), Some("udp"), Some("icmp")]);
        let protocol = if six && protocol == Some("icmp") {
            Some("icmpv6")
        } else {
            protocol
        };
        if six {
            if random.below(2) == 0 {
                text.push_str(&format!(
                    "src = \"fd00::{:x}/{}\"\n",
                    random.below(4),
                    random.pick(&[126, 128])
                ));
            }
        } else {
            if let Some(prefix) = random.pick(&[None, Some(16), Some(24), Some(32)]) {
                let [a, b, c, d] = v4(random, 1);
                text.push_str(&format!("src = \"{a}.{b}.{c}.{d}/{prefix}\"\n"));
            }
            if random.below(3) == 0 {
                let [a, b, c, d] = v4(random, 2);
                text.push_str(&format!("dst = \"{a}.{b}.{c}.{d}/24\"\n"));
            }
        }
        if let Some(protocol) = protocol {
            text.push_str(&format!("proto = \"{protocol}\"\n"));
            match protocol {
                "tcp" | "udp" if random.below(2) == 0 => {
                    let low = 1000 + random.below(8);
                    let high = low + *random.pick(&[0, 1, 3]);
                    text.push_str(&format!("dst_port = \"{low}-{high}\"\n"));
                }
                "icmp" | "icmpv6" if random.below(2) == 0 => {
                    text.push_str(&format!(
                        "icmp_type = {}\n",
                        random.pick(&[0, 3, 8, 128, 129])
                    ));
                }
                _ => {}
            }
        }
        match random.below(4) {
            0 => text.push_str("ct_state = [\"new\"]\n"),
            1 => text.push_str("ct_state = [\"established\", \"invalid\"]\n"),
            _ => {}
        }
        match random.below(5) {
            0 => text.push_str("iface = \"lo\"\n"),
            1 => text.push_str(&format!("iface = \"{iface}\"\n")),
            _ => {}
        }
        text.push_str(&format!(
            "action = \"{}\"\n",
            random.pick(&["accept", "drop"])
        ));
    }
    text
}

/// A packet opening a flow (UDP, TCP SYN or ICMP), its frame and its rule key as the
/// module builds it (state NEW; ingress the loopback, where a test run's frame arrives).
fn random_packet(random: &mut Random, serial: u16) -> (Vec<u8>, RuleKey) {
    let six = random.below(6) == 0;
    let (src, dst): (IpAddr, IpAddr) = if six {
        (
            format!("fd00::{:x}", random.below(4)).parse().unwrap(),
            "fd00::ff".parse().unwrap(),
        )
    } else {
        (IpAddr::from(v4(random, 1)), IpAddr::from(v4(random, 2)))
    };
    // A source port of its own for each packet: every flow is new.
    let (src_port, dst_port) = (20_000 + serial, 998 + random.below(14) as u16);
    let icmp = *random.pick(&[0u8, 3, 8, 128, 129]);
    let (mut builder, protocol) = match random.below(3) {
        0 => (
            FrameBuilder::udp(src, dst).ports(src_port, dst_port),
            proto::UDP,
        ),
        1 => (
            FrameBuilder::tcp(src, dst, wire::parse::tcp_flags::SYN).ports(src_port, dst_port),
            proto::TCP,
        ),
        _ => (
            FrameBuilder::udp(src, dst),
            if six { proto::ICMPV6 } else { proto::ICMP },
        ),
    };
    if protocol == proto::ICMP || protocol == proto::ICMPV6 {
        builder.l4 = L4::Icmp {
            kind: icmp,
            code: 0,
        };
    }
    let mut key = RuleKey {
        family: if six { FAMILY_V6 } else { FAMILY_V4 },
        proto: protocol,
        ct_state: ct_state::NEW,
        ifindex: 1,
        ..RuleKey::default()
    };
    let is_error = matches!((protocol, icmp), (proto::ICMP, 3) | (proto::ICMPV6, 1..=4));
    if protocol == proto::TCP || protocol == proto::UDP {
        (key.src_port, key.dst_port) = (src_port, dst_port);
    } else {
        key.dst_port = u16::from(icmp) << 8;
        if is_error {
            // An error quoting nothing tracked (its quote is four zero bytes).
            key.ct_state = ct_state::INVALID;
        }
    }
    for (field, address) in [(&mut key.src, src), (&mut key.dst, dst)] {
        match address {
            IpAddr::V4(address) => field[..4].copy_from_slice(&address.octets()),
            IpAddr::V6(address) => *field = address.octets(),
        }
    }
    (builder.build(), key)
}

#[test]
#[ignore = "needs root: run by `cargo xtask test`"]
fn the_kernel_module_decides_as_the_compiled_tables_say() {
    require_root("the firewall module against its reference");
    let lab = Lab::for_test("fk");
    let (namespace, iface) = (lab.dut.namespace.clone(), lab.dut.iface.clone());
    let (compared, mismatches) = lab::netns::run_in(&namespace, move || {
        let mut random = Random(0x5eed_f00d_1234_5678);
        let mut mismatches = Vec::new();
        let mut compared = 0usize;
        let mut serial = 0u16;
        for round in 0..ROUNDS {
            let text = random_policy(&mut random, &iface);
            let policy = Policy::parse(Path::new("random.toml"), &text).unwrap();
            let Ok(tables) = firewall::compile(&policy, |name| {
                nix::net::if_::if_nametoindex(name).map_err(|error| error.to_string())
            }) else {
                continue; // more masks than the module probes: not this test's subject
            };
            firewall::apply(&iface, &policy, false).unwrap();
            let entry = offload::bpffs::Bpffs::get()
                .fastpath_dir()
                .join(&iface)
                .join("chain/entry");
            let program =
                Xdp::from_pin(&entry, aya_obj::programs::XdpAttachType::Interface).unwrap();
            for _ in 0..PACKETS {
                serial += 1;
                let (frame, key) = random_packet(&mut random, serial);
                let (expected, rule) = tables.classify(&key);
                let expected = if expected == verdict::DROP { XDP_DROP } else { XDP_PASS };
                let got = offload::test_run::run_once(&program, &frame).unwrap().verdict;
                compared += 1;
                if got != expected {
                    mismatches.push(format!(
                        "round {round}: {key:?}: kernel {got}, reference {expected} (rule slot {rule})\n{text}"
                    ));
                }
            }
        }
        firewall::remove(&iface).unwrap();
        (compared, mismatches)
    })
    .expect("the dut's namespace");
    // Rounds whose policy needs more masks than the module probes are skipped; most run.
    assert!(
        compared >= ROUNDS / 2 * PACKETS,
        "only {compared} packets compared"
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches; the first:\n{}",
        mismatches.len(),
        mismatches[0]
    );
}
