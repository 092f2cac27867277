//! What can go wrong with a module or a chain; every variant names the file, module, map or
//! interface concerned, and keeps the cause as its source.

use std::{io, path::PathBuf};

use aya::{EbpfError, maps::MapError, pin::PinError, programs::ProgramError};

use crate::OffloadError;

/// An IO module command failed; the running chain is as it was before the command.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The module file could not be read.
    #[error("read {}", file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file of a scaffolded project could not be written.
    #[error("write {}", file.display())]
    WriteFile {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `module new` does not write over an existing directory.
    #[error("{} already exists; pick another name or --dir", dir.display())]
    ProjectExists {
        /// The directory.
        dir: PathBuf,
    },
    /// The path is not a regular file, or one too large to be a module.
    #[error("{}: {reason}", file.display())]
    NotAModuleFile {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A map name that cannot be a pin's file name (empty, `.`, `..`, a `/`, too long).
    #[error("{}: map name {map:?} cannot be pinned (it must be a plain file name)", file.display())]
    BadMapName {
        /// The file.
        file: PathBuf,
        /// The name.
        map: String,
    },
    /// The file is not an ELF object.
    #[error("{} is not an ELF object (build the module with clang -target bpf or cargo)", file.display())]
    NotElf {
        /// The file.
        file: PathBuf,
    },
    /// The ELF object is damaged.
    #[error("{} is not a readable ELF object", file.display())]
    BadElf {
        /// The file.
        file: PathBuf,
        /// What the ELF reader said.
        #[source]
        source: object::Error,
    },
    /// The object has no `.fastpath.module` section.
    #[error(
        "{} has no fastpath module metadata (section .fastpath.module); declare it with FASTPATH_MODULE (C) or fastpath_module! (Rust)",
        file.display()
    )]
    NoMetadata {
        /// The file.
        file: PathBuf,
    },
    /// The metadata section is there but unusable.
    #[error("{}: bad module metadata: {reason}", file.display())]
    BadMetadata {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The module was built for another ABI version.
    #[error(
        "{}: built for ABI {built_for}; this fastpath speaks {}; rebuild it against this fastpath's SDK (`fastpath module sdk`)",
        file.display(),
        offload_common::module::ABI_VERSION
    )]
    AbiMismatch {
        /// The file.
        file: PathBuf,
        /// The ABI version in its metadata.
        built_for: u32,
    },
    /// aya could not parse the object.
    #[error("{}: cannot parse the BPF object", file.display())]
    ParseObject {
        /// The file.
        file: PathBuf,
        /// aya's parse error.
        #[source]
        source: Box<aya_obj::ParseError>,
    },
    /// aya's parser gave up on the object by panicking (malformed BTF).
    #[error("{}: malformed BPF object (its BTF could not be parsed)", file.display())]
    ParserPanicked {
        /// The file.
        file: PathBuf,
    },
    /// The object holds no program.
    #[error("{}: the object holds no program", file.display())]
    NoProgram {
        /// The file.
        file: PathBuf,
    },
    /// A module is one program.
    #[error("{}: a module holds one XDP program, this object holds {programs}", file.display())]
    SeveralPrograms {
        /// The file.
        file: PathBuf,
        /// The programs' names.
        programs: String,
    },
    /// The program is neither an XDP program nor a TC classifier.
    #[error(
        "{}: program `{program}` is {section}, not an XDP program (SEC(\"xdp\")) nor a TC classifier (SEC(\"classifier\"))",
        file.display()
    )]
    NotXdp {
        /// The file.
        file: PathBuf,
        /// The program.
        program: String,
        /// Its section kind.
        section: String,
    },
    /// The metadata's frags flag and the program's section disagree.
    #[error(
        "{}: the metadata says frags={metadata} but program `{program}` is in section {}",
        file.display(),
        if *section { "xdp.frags" } else { "xdp" }
    )]
    FragsDisagree {
        /// The file.
        file: PathBuf,
        /// The program.
        program: String,
        /// The metadata's flag.
        metadata: bool,
        /// Whether the section is `xdp.frags`.
        section: bool,
    },
    /// Every program of a chain must agree on `xdp.frags` (the kernel enforces it).
    #[error(
        "module {module}: frags={module_frags}, but the chain on {iface} runs frags={chain_frags}; every program of a chain must agree on xdp.frags"
    )]
    FragsMismatch {
        /// The module.
        module: String,
        /// The interface.
        iface: String,
        /// The module's frags.
        module_frags: bool,
        /// The chain's frags.
        chain_frags: bool,
    },
    /// The kernel refused the module's program.
    #[error("module {module} ({}): the verifier rejected program `{program}`: {errno}\nverifier log:\n{log}", file.display())]
    Verifier {
        /// The module.
        module: String,
        /// Its file.
        file: PathBuf,
        /// Its program.
        program: String,
        /// The syscall's error.
        errno: io::Error,
        /// The verifier's log (with source lines where the object has BTF line info).
        log: String,
    },
    /// Loading the object (creating or binding its maps) failed.
    #[error("module {module} ({}): load the object", file.display())]
    LoadObject {
        /// The module.
        module: String,
        /// Its file.
        file: PathBuf,
        /// aya's error.
        #[source]
        source: Box<EbpfError>,
    },
    /// Another step on a module's program failed.
    #[error("module {module}: {step} program `{program}`")]
    Program {
        /// The module.
        module: String,
        /// What was being done.
        step: &'static str,
        /// The program.
        program: String,
        /// aya's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// A map of the chain or of a module could not be used.
    #[error("{step} map {map}")]
    Map {
        /// What was being done.
        step: &'static str,
        /// The map (its pin path or name).
        map: String,
        /// aya's error.
        #[source]
        source: Box<MapError>,
    },
    /// A pin could not be made.
    #[error("pin {}", path.display())]
    Pin {
        /// The pin's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: PinError,
    },
    /// The chain already has a module of that name.
    #[error(
        "the chain on {iface} already has a module named {module}; pick another with --name or swap it"
    )]
    DuplicateName {
        /// The interface.
        iface: String,
        /// The name.
        module: String,
    },
    /// No module of that name in the chain.
    #[error("the chain on {iface} has no module named {module} (modules: {known})")]
    UnknownModule {
        /// The interface.
        iface: String,
        /// The name asked for.
        module: String,
        /// The names there are.
        known: String,
    },
    /// A name that does not fit the records or the pin directory.
    #[error("module name {module:?}: {reason}")]
    BadName {
        /// The name.
        module: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The chain is full.
    #[error("the chain on {iface} holds at most {max} modules")]
    ChainFull {
        /// The interface.
        iface: String,
        /// Its capacity.
        max: u32,
    },
    /// No chain on the interface.
    #[error("no module chain on {iface} (nothing pinned in {dir}); load a module first")]
    NoChain {
        /// The interface.
        iface: String,
        /// Where its pins would be.
        dir: String,
    },
    /// Another XDP program holds the interface.
    #[error(
        "{iface} already runs XDP program id {program_id}, not a fastpath module chain; detach it with the tool that attached it (or `ip link set dev {iface} xdp off`)"
    )]
    InterfaceBusy {
        /// The interface.
        iface: String,
        /// The program there.
        program_id: u32,
    },
    /// The chain's entry could not be attached in any mode.
    #[error("attach the chain entry to {iface}: {reasons}")]
    Attach {
        /// The interface.
        iface: String,
        /// Each mode tried and why it failed.
        reasons: String,
    },
    /// The chain's own object could not be loaded.
    #[error("load the chain entry object")]
    LoadChain(#[source] Box<EbpfError>),
    /// A module declares one of the chain's shared maps with another shape than the chain
    /// gives it: it was built against another SDK.
    #[error(
        "{}: chain map {map} is declared as {found}; the chain's is {expected}; rebuild the module against this fastpath's SDK (`fastpath module sdk`)",
        file.display()
    )]
    SharedMapShape {
        /// The file.
        file: PathBuf,
        /// The map.
        map: String,
        /// The chain's shape.
        expected: String,
        /// The module's.
        found: String,
    },
    /// The module's program type does not fit the chain's hook.
    #[error(
        "module {module} ({}) is {kind}; the chain on {chain} takes {wanted}: load it with {hint}",
        file.display()
    )]
    WrongHook {
        /// The module.
        module: String,
        /// Its file.
        file: PathBuf,
        /// What it is ("an XDP program", "a TC classifier").
        kind: &'static str,
        /// The chain (interface and hook).
        chain: String,
        /// What the chain takes.
        wanted: &'static str,
        /// The option that fits the module.
        hint: &'static str,
    },
    /// A chain file (or a rollback) leaves out a built-in module the chain runs.
    #[error(
        "the chain on {chain} runs the built-in module {module} (`fastpath xdp attach`, the load balancer); a chain file keeps it with `[[module]] builtin = \"{module}\"` where it goes, or `fastpath xdp detach` removes it first"
    )]
    BuiltinOmitted {
        /// The chain.
        chain: String,
        /// The module.
        module: String,
    },
    /// A chain file (or a rollback) names a built-in module the chain does not run.
    #[error(
        "the built-in module {module} does not run on {chain}: `fastpath xdp attach` loads it (a chain file can keep and move it, not add it)"
    )]
    BuiltinNotRunning {
        /// The chain.
        chain: String,
        /// The module.
        module: String,
    },
    /// A chain file is not valid.
    #[error("{}{}: {reason}", file.display(), line.map(|line| format!(" line {line}")).unwrap_or_default())]
    ChainFile {
        /// The file.
        file: PathBuf,
        /// The line at fault, when known.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// A module named by a chain file could not be used.
    #[error("{} line {line}", file.display())]
    InChainFile {
        /// The chain file.
        file: PathBuf,
        /// The line naming the module.
        line: usize,
        /// Why.
        #[source]
        source: Box<ModuleError>,
    },
    /// The chain's history does not hold the revision asked for.
    #[error("the chain on {iface} has no revision {revision} in its history (kept: {kept})")]
    NoRevision {
        /// The interface.
        iface: String,
        /// The revision asked for.
        revision: u32,
        /// The revisions the history holds.
        kept: String,
    },
    /// A revision of the history lacks the object of one of its modules.
    #[error("revision {revision} of the chain on {iface}: the object of module {module} was not kept ({})", file.display())]
    HistoryObjectMissing {
        /// The interface.
        iface: String,
        /// The revision.
        revision: u32,
        /// The module.
        module: String,
        /// Where the object should be.
        file: PathBuf,
    },
    /// The chain's history could not be written or read.
    #[error("{action} {}", path.display())]
    History {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{call} failed")]
    Syscall {
        /// The call.
        call: &'static str,
        /// Its error.
        #[source]
        source: io::Error,
    },
    /// Two modules of a trial's chain have one name (a chain's names are unique).
    #[error(
        "{} and {}: two modules named {module} in one chain; a chain's module names are unique",
        first.display(),
        second.display()
    )]
    TrialDuplicate {
        /// The name.
        module: String,
        /// The first file with it.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
    /// A packet of a trial could not be run.
    #[error("packet {packet} ({name}, {length} bytes): {reason}")]
    TrialRun {
        /// Its number, from 1.
        packet: usize,
        /// Its name.
        name: String,
        /// Its length.
        length: usize,
        /// Why.
        reason: String,
        /// The kernel's refusal, when it was one.
        #[source]
        source: Option<Box<ProgramError>>,
    },
    /// A swap would change the shape of a map that lives outside the chain (the built-in
    /// `steer` module's rules and counters): other readers would lose it.
    #[error(
        "{}: map {map} of module {module} differs in type, key, value or size from the running one, which other readers share; a replacement must keep it",
        file.display()
    )]
    BoundMapChanged {
        /// The module.
        module: String,
        /// The replacement object.
        file: PathBuf,
        /// The map.
        map: String,
    },
    /// The steering layer (interfaces, bpffs) failed.
    #[error(transparent)]
    Offload(#[from] OffloadError),
}

impl ModuleError {
    pub(crate) fn syscall(call: &'static str) -> impl FnOnce(io::Error) -> ModuleError {
        move |source| ModuleError::Syscall { call, source }
    }

    pub(crate) fn program(
        module: &str,
        program: &str,
        step: &'static str,
    ) -> impl FnOnce(ProgramError) -> ModuleError {
        let (module, program) = (module.to_string(), program.to_string());
        move |source| ModuleError::Program {
            module,
            step,
            program,
            source: Box::new(source),
        }
    }

    pub(crate) fn map(
        step: &'static str,
        map: impl Into<String>,
    ) -> impl FnOnce(MapError) -> ModuleError {
        move |source| ModuleError::Map {
            step,
            map: map.into(),
            source: Box::new(source),
        }
    }
}
