//! `BPF_PROG_TEST_RUN` on the steering program, without attaching it anywhere: the BPF
//! fixtures and the benchmark use it; [`run_once`] runs any loaded XDP program (the module
//! chain's trial does). Maps are pinned in a transient directory of the load's
//! own, so the ordinary [`Steering`] API installs the rules.

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};

use offload_common::ParseReport;

use crate::{OffloadError, STEER_OBJECT, Steering, Transient, error::ProgramAction, rules::Action};

/// The program's verdict and the packet as it left the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// XDP_ABORTED = 0, XDP_DROP = 1, XDP_PASS = 2, XDP_TX = 3, XDP_REDIRECT = 4.
    pub verdict: u32,
    /// The packet's bytes after the program ran (it may rewrite them, or move their start
    /// and end).
    pub packet: Vec<u8>,
}

/// A loaded, unattached copy of the steering object.
pub struct TestBench {
    label: String,
    // Declared before `pins`: the program and maps go before their directory.
    ebpf: Ebpf,
    pins: Transient,
}

impl TestBench {
    /// Loads the programs (`steer`, `bare_pass`, `parse_probe`) with maps pinned in a
    /// directory of this load's own under `/sys/fs/bpf/fastpath/transient-objects/`, removed
    /// on drop, so concurrent benches never share maps, whatever their `label` (used in
    /// messages).
    pub fn load(label: &str, default_action: Action) -> Result<TestBench, OffloadError> {
        let pins = Transient::create()?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.pins().maps_dir())
            .load(STEER_OBJECT)
            .map_err(|source| OffloadError::LoadObject {
                object: "steering",
                source: Box::new(source),
            })?;
        for name in ["steer", "bare_pass", "parse_probe"] {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or_else(|| missing_program(name))?
                .try_into()
                .map_err(OffloadError::program(ProgramAction::Open, name))?;
            program
                .load()
                .map_err(OffloadError::program(ProgramAction::Verify, name))?;
            // The pinned program marks the directory as a live attachment for Steering.
            if name == "steer" {
                let path = pins.pins().program();
                program
                    .pin(&path)
                    .map_err(|source| OffloadError::Pin { path, source })?;
            }
        }
        crate::steering::write_default_action(&mut ebpf, default_action)?;
        Ok(TestBench {
            label: label.to_string(),
            pins,
            ebpf,
        })
    }

    /// The rules, prefilter and counters of this bench's maps, through the same API as an
    /// attachment's.
    pub fn steering(&self) -> Result<Steering, OffloadError> {
        Steering::at(self.pins.pins().clone(), &self.label)
    }

    fn program(&self, name: &str) -> Result<&Xdp, OffloadError> {
        self.ebpf
            .program(name)
            .ok_or_else(|| missing_program(name))?
            .try_into()
            .map_err(OffloadError::program(ProgramAction::Open, name))
    }

    /// Runs `steer` once on `packet`.
    pub fn run(&self, packet: &[u8]) -> Result<RunResult, OffloadError> {
        self.run_program("steer", packet)
    }

    /// What the kernel's parser makes of `packet` (the `parse_probe` program), for the
    /// differential test against `wire::parse`.
    pub fn parse_report(&self, packet: &[u8]) -> Result<ParseReport, OffloadError> {
        let result = self.run_program("parse_probe", packet)?;
        let size = std::mem::size_of::<ParseReport>();
        if result.verdict != 2 || result.packet.len() < size {
            return Err(OffloadError::ParseProbe {
                verdict: result.verdict,
                bytes: result.packet.len(),
            });
        }
        // SAFETY: ParseReport is plain old data and `size` bytes are there.
        Ok(unsafe {
            result
                .packet
                .as_ptr()
                .cast::<ParseReport>()
                .read_unaligned()
        })
    }

    fn run_program(&self, name: &str, packet: &[u8]) -> Result<RunResult, OffloadError> {
        run_once(self.program(name)?, packet)
            .map_err(OffloadError::program(ProgramAction::TestRun, name))
    }

    /// Mean time per run of `program` ("steer" or "bare_pass") over `repeat` runs in the
    /// kernel.
    pub fn time(
        &self,
        program: &str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<Duration, OffloadError> {
        let result = self
            .program(program)?
            .test_run(TestRunOptions {
                data_in: Some(packet),
                repeat,
                ..TestRunOptions::new()
            })
            .map_err(OffloadError::program(ProgramAction::TestRun, program))?;
        Ok(result.duration)
    }
}

/// Runs a loaded XDP `program` once on `packet` (`BPF_PROG_TEST_RUN`, on the calling CPU):
/// its return value and the packet as it left. The program's tail calls run too, so this
/// runs a whole module chain from its entry.
pub fn run_once(program: &Xdp, packet: &[u8]) -> Result<RunResult, ProgramError> {
    // Room for a program that grows the frame: 256 bytes of headroom (XDP_PACKET_HEADROOM)
    // and the rest of the page at the tail.
    let mut out = vec![0u8; packet.len() + 4096];
    let result = program.test_run(TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        ..TestRunOptions::new()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok(RunResult {
        verdict: result.return_value,
        packet: out,
    })
}

fn missing_program(name: &str) -> OffloadError {
    OffloadError::MissingFromObject {
        object: "steering",
        part: "program",
        name: name.to_string(),
    }
}
