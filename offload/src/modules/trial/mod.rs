//! A trial of a candidate chain: its modules run on given packets through
//! `BPF_PROG_TEST_RUN`, on a scratch chain that touches no interface. `fastpath module
//! test` runs a pcap file through it, `chain apply --check` the built-in
//! [`sample_packets`].
//!
//! The scratch chain is the real thing, built by the same code as an interface's chain: the
//! chain's entry ([`CHAIN_OBJECT`](super::CHAIN_OBJECT), the frags flavour when the modules
//! are) loaded but not attached, its shared maps and the modules' own maps pinned in a
//! transient folder of this process ([`Transient`]: removed on drop, pruned by the next
//! command if the process is killed), each module loaded by `load_version` and the
//! revision installed by `Chain::switch`. Each packet then runs through the entry, whose
//! tail calls run the modules as on an interface.
//!
//! Who decided: the verdict counters (`FP_VERDICTS`, and `FP_CHAIN_COUNTERS` for packets
//! the chain ended) are read before and after each packet. They are per-CPU and the run is
//! on the calling CPU, but nothing else runs this chain's programs, so the change of the
//! sums over the CPUs is exactly this packet's.
//!
//! What a trial cannot show: the interface a `redirect` goes to (the kernel keeps it in
//! per-CPU state `BPF_PROG_TEST_RUN` does not report), and `xsk` and `forward`, which need
//! a bound AF_XDP socket or a connected port: with none, as on a chain with none, the
//! SDK passes the packet and counts `pass`.

mod capture;
mod changes;
pub mod expect;
mod samples;

use aya::programs::{ProgramError, Xdp};
use offload_common::module::{
    CHAIN_SLOTS, ModuleRecord, RECORD_FRAGS, RECORD_IN_USE, chain_counter, verdict,
};
use serde::Serialize;

pub use capture::{CaptureError, packets_from_pcap};
pub use changes::{ByteChanges, ChangedBytes, FrameEnd};
pub use samples::sample_packets;

use super::{
    ModuleError, ModuleObject,
    chain::{self, Chain, ChainPins, Member},
    entry::load_entry,
    ops::check_name,
    version::load_version,
};
use crate::{Transient, test_run::run_once};

/// How the scratch chain is named in errors, where an interface's chain names its interface.
const LABEL: &str = "(trial)";

/// The shortest frame `BPF_PROG_TEST_RUN` runs: an Ethernet header.
const MIN_FRAME: usize = 14;

/// A packet to run through a candidate chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// What to call it in reports: a sample's name, or "packet N" of a capture.
    pub name: String,
    /// The frame, from its Ethernet header (no FCS).
    pub data: Vec<u8>,
}

/// What a candidate chain did with each packet.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    /// Whether the chain ran in its frags flavour (its modules' flag).
    pub frags: bool,
    /// The modules, in chain order.
    pub modules: Vec<TrialModule>,
    /// One result per packet, in the order given.
    pub packets: Vec<PacketOutcome>,
}

/// A module of a trial's chain.
#[derive(Clone, Debug, Serialize)]
pub struct TrialModule {
    /// Its name in the chain.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The file it was read from.
    pub file: std::path::PathBuf,
}

/// The terminal verdict of one packet: which module's verdict counter (or which of the
/// chain's own counters) it moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A module dropped it.
    Drop,
    /// A module passed it to the kernel.
    Pass,
    /// A module sent it back out (`XDP_TX`).
    Tx,
    /// A module redirected it to an interface.
    Redirect,
    /// A module sent it to the AF_XDP socket of its queue.
    Xsk,
    /// A module forwarded it to a port.
    Forward,
    /// A module aborted.
    Aborted,
    /// The last module continued: the chain passed it.
    ChainEnd,
    /// The chain has no module: it passed it.
    ChainEmpty,
    /// The entry found no context slot (a broken chain): it passed it.
    NoContext,
    /// No counter moved: a module returned without one of the SDK's verdicts.
    Uncounted,
}

impl Verdict {
    /// Every verdict, for messages.
    pub const ALL: [Verdict; 11] = [
        Verdict::Drop,
        Verdict::Pass,
        Verdict::Tx,
        Verdict::Redirect,
        Verdict::Xsk,
        Verdict::Forward,
        Verdict::Aborted,
        Verdict::ChainEnd,
        Verdict::ChainEmpty,
        Verdict::NoContext,
        Verdict::Uncounted,
    ];

    /// Its name in reports and expectation files.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Drop => "drop",
            Verdict::Pass => "pass",
            Verdict::Tx => "tx",
            Verdict::Redirect => "redirect",
            Verdict::Xsk => "xsk",
            Verdict::Forward => "forward",
            Verdict::Aborted => "aborted",
            Verdict::ChainEnd => "chain-end",
            Verdict::ChainEmpty => "chain-empty",
            Verdict::NoContext => "no-context",
            Verdict::Uncounted => "uncounted",
        }
    }

    /// The verdict a name stands for (`port` is `forward`, as the ABI calls the port map).
    pub fn from_name(name: &str) -> Option<Verdict> {
        if name == "port" {
            return Some(Verdict::Forward);
        }
        Verdict::ALL
            .into_iter()
            .find(|verdict| verdict.name() == name)
    }

    fn of_module(counter: u32) -> Verdict {
        match counter {
            verdict::DROP => Verdict::Drop,
            verdict::PASS => Verdict::Pass,
            verdict::TX => Verdict::Tx,
            verdict::REDIRECT => Verdict::Redirect,
            verdict::XSK => Verdict::Xsk,
            verdict::FORWARD => Verdict::Forward,
            _ => Verdict::Aborted,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the chain did with one packet.
#[derive(Clone, Debug, Serialize)]
pub struct PacketOutcome {
    /// Its number, from 1 (a capture's frame number).
    pub packet: usize,
    /// Its name.
    pub name: String,
    /// Its length going in.
    pub length: usize,
    /// The XDP action the entry returned ("drop", "pass", "tx", "redirect", "aborted").
    pub action: String,
    /// The terminal verdict.
    pub verdict: Verdict,
    /// The module that gave it; none when the chain ended the packet itself.
    pub module: Option<String>,
    /// The modules that continued it on the way, in order.
    pub continued_by: Vec<String>,
    /// What changed in the frame.
    pub changes: ByteChanges,
    /// The frame as it left, as space-separated hex; only when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The frame as it left, for comparisons.
    #[serde(skip)]
    pub output_bytes: Vec<u8>,
}

/// The name of an XDP action (`enum xdp_action`, include/uapi/linux/bpf.h).
pub fn action_name(action: u32) -> String {
    match action {
        0 => "aborted".into(),
        1 => "drop".into(),
        2 => "pass".into(),
        3 => "tx".into(),
        4 => "redirect".into(),
        other => format!("unknown ({other})"),
    }
}

/// Runs `packets` through a scratch chain of `objects` (in order; each named by its
/// `name`, which must be unique) and reports, per packet, the XDP action, the terminal
/// verdict and the module that gave it, and the changed bytes. Nothing is attached and
/// nothing outlives the call; all modules must agree on frags, as on an interface.
pub fn trial(objects: &[ModuleObject], packets: &[Packet]) -> Result<Trial, ModuleError> {
    let mut candidate = Candidate::build(objects)?;
    crate::kill_point::reached("trial:built");
    let mut outcomes = Vec::with_capacity(packets.len());
    for (index, packet) in packets.iter().enumerate() {
        outcomes.push(candidate.run(index + 1, packet)?);
    }
    Ok(Trial {
        frags: candidate.frags,
        modules: objects
            .iter()
            .map(|object| TrialModule {
                name: object.name.clone(),
                version: object.version.clone(),
                file: object.path.clone(),
            })
            .collect(),
        packets: outcomes,
    })
}

/// Each module's verdict counters (summed over the CPUs), in chain order, then the
/// chain's own.
struct Counts {
    modules: Vec<[u64; verdict::COUNT as usize]>,
    chain: Vec<u64>,
}

/// The scratch chain of one trial.
struct Candidate {
    frags: bool,
    // Dropped before `_pins`: programs and maps go before their folder.
    entry: aya::Ebpf,
    entry_name: &'static str,
    chain: Chain,
    /// (instance, name) of each module, in chain order.
    members: Vec<(u32, String)>,
    counts: Counts,
    _pins: Transient,
}

impl Candidate {
    fn build(objects: &[ModuleObject]) -> Result<Candidate, ModuleError> {
        check_members(objects)?;
        let frags = objects.first().is_none_or(|object| object.frags);
        crate::pins::prune_stale();
        let transient = Transient::create()?;
        let pins = ChainPins {
            dir: transient.pins().dir.clone(),
        };
        let (entry, entry_name) = load_entry(LABEL, &pins, super::Hook::Xdp, frags)?;
        let mut chain = Chain::open(super::ChainAt::new(LABEL, super::Hook::Xdp), pins)?;
        let mut members = Vec::with_capacity(objects.len());
        for object in objects {
            let instance = chain.free_instance()?.ok_or(ModuleError::ChainFull {
                iface: LABEL.to_string(),
                max: CHAIN_SLOTS,
            })?;
            let generation = 1;
            let (program, program_id) =
                load_version(&chain, object, &object.name, generation, &[])?;
            let mut record = ModuleRecord {
                flags: RECORD_IN_USE | if object.frags { RECORD_FRAGS } else { 0 },
                next_program_id: program_id,
                next_generation: generation,
                name: super::revision::fixed(&object.name),
                next_version: super::revision::fixed(&object.version),
                ..ModuleRecord::default()
            };
            chain::promote(&mut record);
            chain.set_record(instance, &record)?;
            members.push(Member {
                instance,
                program,
                next: chain.next_map(&object.name, generation),
            });
        }
        chain.switch(&members)?;
        let members = members
            .iter()
            .zip(objects)
            .map(|(member, object)| (member.instance, object.name.clone()))
            .collect();
        let mut candidate = Candidate {
            frags,
            entry,
            entry_name,
            chain,
            members,
            counts: Counts {
                modules: vec![],
                chain: vec![],
            },
            _pins: transient,
        };
        candidate.counts = candidate.read_counts()?;
        Ok(candidate)
    }

    fn read_counts(&self) -> Result<Counts, ModuleError> {
        Ok(Counts {
            modules: self
                .members
                .iter()
                .map(|(instance, _)| self.chain.verdicts(*instance))
                .collect::<Result<_, _>>()?,
            chain: self.chain.chain_counters()?,
        })
    }

    fn run(&mut self, number: usize, packet: &Packet) -> Result<PacketOutcome, ModuleError> {
        let run_error = |reason: String, source: Option<ProgramError>| ModuleError::TrialRun {
            packet: number,
            name: packet.name.clone(),
            length: packet.data.len(),
            reason,
            source: source.map(Box::new),
        };
        if packet.data.len() < MIN_FRAME {
            return Err(run_error(
                format!(
                    "shorter than an Ethernet header ({MIN_FRAME} bytes), which BPF_PROG_TEST_RUN needs"
                ),
                None,
            ));
        }
        let program: &Xdp = self
            .entry
            .program(self.entry_name)
            .and_then(|program| program.try_into().ok())
            .ok_or_else(|| run_error(format!("the entry {} is gone", self.entry_name), None))?;
        let result = run_once(program, &packet.data).map_err(|error| {
            let limit = if self.frags {
                ""
            } else {
                " (without frags a frame must fit one page: about 3.5 KB)"
            };
            run_error(format!("BPF_PROG_TEST_RUN failed{limit}"), Some(error))
        })?;
        let counts = self.read_counts()?;
        let (verdict, module, continued_by) = self.attribute(&counts);
        self.counts = counts;
        let changes = ByteChanges::between(&packet.data, &result.packet);
        Ok(PacketOutcome {
            packet: number,
            name: packet.name.clone(),
            length: packet.data.len(),
            action: action_name(result.verdict),
            verdict,
            module,
            continued_by,
            output: (!changes.is_empty()).then(|| super::map::format_bytes(&result.packet)),
            changes,
            output_bytes: result.packet,
        })
    }

    /// The terminal verdict, its module, and the modules that continued, from the counters'
    /// change since the last packet.
    fn attribute(&self, after: &Counts) -> (Verdict, Option<String>, Vec<String>) {
        let mut continued_by = Vec::new();
        let mut terminal = None;
        for (index, (now, before)) in after.modules.iter().zip(&self.counts.modules).enumerate() {
            for counter in 0..verdict::COUNT {
                if now[counter as usize] == before[counter as usize] {
                    continue;
                }
                let name = self.members[index].1.clone();
                if counter == verdict::CONTINUE {
                    continued_by.push(name);
                } else if terminal.is_none() {
                    terminal = Some((Verdict::of_module(counter), Some(name)));
                }
            }
        }
        let moved = |slot: u32| after.chain[slot as usize] != self.counts.chain[slot as usize];
        let (verdict, module) = terminal.unwrap_or_else(|| {
            if moved(chain_counter::END) {
                (Verdict::ChainEnd, None)
            } else if moved(chain_counter::EMPTY) {
                (Verdict::ChainEmpty, None)
            } else if moved(chain_counter::NO_CONTEXT) {
                (Verdict::NoContext, None)
            } else {
                (Verdict::Uncounted, None)
            }
        });
        (verdict, module, continued_by)
    }
}

/// What a chain refuses, checked before anything is loaded: bad or duplicate names, a
/// frags mix (against the first module, whose flag chooses the entry), too many modules.
fn check_members(objects: &[ModuleObject]) -> Result<(), ModuleError> {
    if objects.len() > CHAIN_SLOTS as usize {
        return Err(ModuleError::ChainFull {
            iface: LABEL.to_string(),
            max: CHAIN_SLOTS,
        });
    }
    for (index, object) in objects.iter().enumerate() {
        check_name(&object.name)?;
        if let Some(first) = objects[..index].iter().find(|o| o.name == object.name) {
            return Err(ModuleError::TrialDuplicate {
                module: object.name.clone(),
                first: first.path.clone(),
                second: object.path.clone(),
            });
        }
        let chain_frags = objects[0].frags;
        if object.frags != chain_frags {
            return Err(ModuleError::FragsMismatch {
                module: object.name.clone(),
                iface: LABEL.to_string(),
                module_frags: object.frags,
                chain_frags,
            });
        }
    }
    Ok(())
}
