//! One interface's chain: its pins, its shared maps, and the revision switch.
//!
//! Pins live in `/sys/fs/bpf/fastpath/<iface>/chain/`: `link` (the entry's XDP link),
//! `entry` (the entry program), `maps/<FP_*>` (the shared maps) and
//! `modules/<name>/<generation>/<MAP>` (each module's own maps, one directory per loaded
//! version, so a swap builds the new version's set beside the running one).
//!
//! Every fact about the chain lives in those maps (bpffs holds no plain files): the running
//! revision in `FP_STATE`, the modules of each revision in `FP_CHAIN` and
//! `FP_SLOT_INSTANCE`, the modules' names and versions in `FP_MODULES`. A change builds
//! the new revision in the bank the running one does not use, then switches with one
//! update of `FP_STATE`; [`Chain::reconcile`] removes whatever a command that died left.

use std::{
    ffi::c_void,
    fs,
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use aya::maps::{Array, Map, MapData, PerCpuArray, PerCpuValues};
use offload_common::module::{
    CHAIN_SLOTS, ChainState, MAX_MODULES, ModuleRecord, ModuleRuntime, RECORD_IN_USE,
    REVISION_BANKS, maps, verdict,
};

use super::{ChainAt, Hook, ModuleError};
use crate::{bpffs::Bpffs, sys};

/// How long a replaced revision's slots stay filled after the switch: packets that read
/// the old revision finish their chain within one program run (microseconds), so this is
/// far beyond what any of them needs.
pub(crate) const GRACE: Duration = Duration::from_millis(20);

/// Where one interface's chain is pinned.
#[derive(Clone, Debug)]
pub(crate) struct ChainPins {
    pub dir: PathBuf,
}

impl ChainPins {
    pub fn for_chain(at: ChainAt<'_>) -> ChainPins {
        ChainPins {
            dir: Bpffs::get()
                .fastpath_dir()
                .join(crate::netns::pin_name(at.iface))
                .join(at.hook.dir_name()),
        }
    }
    pub fn link(&self) -> PathBuf {
        self.dir.join("link")
    }
    pub fn entry(&self) -> PathBuf {
        self.dir.join("entry")
    }
    pub fn maps_dir(&self) -> PathBuf {
        self.dir.join("maps")
    }
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }
    pub fn modules_dir(&self) -> PathBuf {
        self.dir.join("modules")
    }
    pub fn module_dir(&self, name: &str) -> PathBuf {
        self.modules_dir().join(name)
    }
    pub fn generation_dir(&self, name: &str, generation: u32) -> PathBuf {
        self.module_dir(name).join(generation.to_string())
    }
    pub fn shown(&self) -> String {
        Bpffs::get().show(&self.dir)
    }
}

/// A module in a revision: its instance (row of `FP_MODULES` and of the verdict counters)
/// and its program.
pub(crate) struct Member {
    pub instance: u32,
    pub program: OwnedFd,
    /// The module's `FP_NEXT` (its link to the module after it), when it declares one.
    pub next: Option<OwnedFd>,
}

/// The opened shared maps of one chain.
pub(crate) struct Chain {
    pub iface: String,
    pub hook: Hook,
    pub pins: ChainPins,
    programs: OwnedFd,
    state: Array<MapData, ChainState>,
    slots: Array<MapData, u32>,
    records: Array<MapData, ModuleRecord>,
    verdicts: PerCpuArray<MapData, u64>,
    counters: PerCpuArray<MapData, u64>,
    runtime: PerCpuArray<MapData, ModuleRuntime>,
}

fn open_map(pins: &ChainPins, name: &str) -> Result<Map, ModuleError> {
    let path = pins.map(name);
    let data =
        MapData::from_pin(&path).map_err(ModuleError::map("open", path.display().to_string()))?;
    Map::from_map_data(data).map_err(ModuleError::map("open", name))
}

impl Chain {
    pub fn open(at: ChainAt<'_>, pins: ChainPins) -> Result<Chain, ModuleError> {
        let programs = sys::obj_get(&pins.map(maps::CHAIN))
            .map_err(ModuleError::syscall("BPF_OBJ_GET of FP_CHAIN"))?;
        let typed = |name: &'static str| {
            let map = open_map(&pins, name)?;
            Ok::<_, ModuleError>((name, map))
        };
        let (name, map) = typed(maps::STATE)?;
        let state = Array::try_from(map).map_err(ModuleError::map("open", name))?;
        let (name, map) = typed(maps::SLOT_INSTANCE)?;
        let slots = Array::try_from(map).map_err(ModuleError::map("open", name))?;
        let (name, map) = typed(maps::MODULES)?;
        let records = Array::try_from(map).map_err(ModuleError::map("open", name))?;
        let (name, map) = typed(maps::VERDICTS)?;
        let verdicts = PerCpuArray::try_from(map).map_err(ModuleError::map("open", name))?;
        let (name, map) = typed(maps::CHAIN_COUNTERS)?;
        let counters = PerCpuArray::try_from(map).map_err(ModuleError::map("open", name))?;
        let (name, map) = typed(maps::RUNTIME)?;
        let runtime = PerCpuArray::try_from(map).map_err(ModuleError::map("open", name))?;
        Ok(Chain {
            iface: at.iface.to_string(),
            hook: at.hook,
            pins,
            programs,
            state,
            slots,
            records,
            verdicts,
            counters,
            runtime,
        })
    }

    /// Which chain this is.
    pub fn at(&self) -> ChainAt<'_> {
        ChainAt::new(&self.iface, self.hook)
    }

    /// The chain as errors name it: the interface, and the hook when it is not XDP.
    pub fn name(&self) -> String {
        self.at().to_string()
    }

    pub fn state(&self) -> Result<ChainState, ModuleError> {
        self.state
            .get(&0, 0)
            .map_err(ModuleError::map("read", maps::STATE))
    }

    pub fn record(&self, instance: u32) -> Result<ModuleRecord, ModuleError> {
        self.records
            .get(&instance, 0)
            .map_err(ModuleError::map("read", maps::MODULES))
    }

    pub fn set_record(&mut self, instance: u32, record: &ModuleRecord) -> Result<(), ModuleError> {
        self.records
            .set(instance, record, 0)
            .map_err(ModuleError::map("write", maps::MODULES))
    }

    /// The running revision's members in order: (slot, instance, program id).
    pub fn running(&self) -> Result<Vec<(u32, u32, u32)>, ModuleError> {
        let state = self.state()?;
        let mut members = Vec::new();
        for slot in state.first_slot..state.first_slot + state.modules {
            let instance = self
                .slots
                .get(&slot, 0)
                .map_err(ModuleError::map("read", maps::SLOT_INSTANCE))?;
            let program_id = self.program_at(slot)?.unwrap_or(0);
            if instance != 0 {
                members.push((slot, instance - 1, program_id));
            }
        }
        Ok(members)
    }

    /// The running revision's members, with their programs, for building the next one.
    pub fn running_members(&self) -> Result<Vec<Member>, ModuleError> {
        self.running()?
            .into_iter()
            .map(|(_, instance, program_id)| {
                // SAFETY: plain FFI call; a fresh fd on success.
                let fd = sys::owned_fd(unsafe { libbpf_sys::bpf_prog_get_fd_by_id(program_id) })
                    .map_err(ModuleError::syscall(
                        "BPF_PROG_GET_FD_BY_ID of a running module",
                    ))?;
                let record = self.record(instance)?;
                let generation = running_generation_of(&record, program_id);
                Ok(Member {
                    instance,
                    program: fd,
                    next: self.next_map(&super::object::c_string(&record.name), generation),
                })
            })
            .collect()
    }

    /// The `FP_NEXT` of version `generation` of module `name`, when it has one.
    pub fn next_map(&self, name: &str, generation: u32) -> Option<OwnedFd> {
        sys::obj_get(&self.pins.generation_dir(name, generation).join(maps::NEXT)).ok()
    }

    /// The id of the program in `slot` of `FP_CHAIN`, None when empty.
    pub fn program_at(&self, slot: u32) -> Result<Option<u32>, ModuleError> {
        let mut id = 0u32;
        // SAFETY: key and value point to live u32s, the sizes of FP_CHAIN's key and value.
        let result = unsafe {
            libbpf_sys::bpf_map_lookup_elem(
                self.programs.as_raw_fd(),
                (&slot as *const u32).cast::<c_void>(),
                (&mut id as *mut u32).cast::<c_void>(),
            )
        };
        match sys::check(result) {
            Ok(_) => Ok(Some(id)),
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(error) => Err(ModuleError::Syscall {
                call: "BPF_MAP_LOOKUP_ELEM on FP_CHAIN",
                source: error,
            }),
        }
    }

    fn put_program(&self, slot: u32, program: BorrowedFd<'_>) -> Result<(), ModuleError> {
        set_program(self.programs.as_fd(), slot, program)
            .map_err(ModuleError::syscall("BPF_MAP_UPDATE_ELEM on FP_CHAIN"))
    }

    fn clear_slot(&mut self, slot: u32) -> Result<(), ModuleError> {
        clear_program(self.programs.as_fd(), slot)
            .map_err(ModuleError::syscall("BPF_MAP_DELETE_ELEM on FP_CHAIN"))?;
        self.slots
            .set(slot, 0, 0)
            .map_err(ModuleError::map("write", maps::SLOT_INSTANCE))
    }

    fn clear_bank(&mut self, bank: u32) -> Result<(), ModuleError> {
        for slot in bank * CHAIN_SLOTS..(bank + 1) * CHAIN_SLOTS {
            self.clear_slot(slot)?;
        }
        Ok(())
    }

    /// Builds the next revision from `members` in the bank the running one does not use,
    /// then switches to it with one update of `FP_STATE`: every packet runs wholly on the
    /// old revision or wholly on the new. The old bank is cleared after [`GRACE`]. Returns
    /// the new revision number.
    pub fn switch(&mut self, members: &[Member]) -> Result<u32, ModuleError> {
        let old = self.state()?;
        let revision = old.revision + 1;
        let bank = revision % REVISION_BANKS;
        let first_slot = bank * CHAIN_SLOTS;
        // Left by nothing after reconcile, but a bank is always filled from empty.
        self.clear_bank(bank)?;
        for (offset, member) in members.iter().enumerate() {
            let slot = first_slot + offset as u32;
            self.put_program(slot, member.program.as_fd())?;
            self.slots
                .set(slot, member.instance + 1, 0)
                .map_err(ModuleError::map("write", maps::SLOT_INSTANCE))?;
            // Each module's link to the next one in this bank; nothing runs in the bank yet.
            if let Some(next) = &member.next {
                match members.get(offset + 1) {
                    Some(after) => set_program(next.as_fd(), bank, after.program.as_fd()),
                    None => clear_program(next.as_fd(), bank),
                }
                .map_err(ModuleError::syscall(
                    "BPF_MAP_UPDATE_ELEM on a module's FP_NEXT",
                ))?;
            }
        }
        crate::kill_point::reached("module:revision-built");
        let new = ChainState {
            revision,
            first_slot,
            modules: members.len() as u32,
            applied_at: now(),
            ..old
        };
        self.state
            .set(0, new, 0)
            .map_err(ModuleError::map("write", maps::STATE))?;
        crate::kill_point::reached("module:switched");
        Ok(revision)
    }

    /// After a switch: waits out the grace delay, then empties the old revision's bank.
    pub fn retire_old_bank(&mut self) -> Result<(), ModuleError> {
        std::thread::sleep(GRACE);
        self.clear_idle_banks()
    }

    /// Removes what a command that died left: slots outside the running revision, staged
    /// versions never switched to (or promotes them when they were), records and pin
    /// directories of instances the running revision does not hold, and history records
    /// of revisions never switched to.
    pub fn reconcile(&mut self) -> Result<(), ModuleError> {
        self.clear_idle_banks()?;
        let running = self.running()?;
        for instance in 0..MAX_MODULES {
            let mut record = self.record(instance)?;
            if record.flags & RECORD_IN_USE == 0 {
                continue;
            }
            let name = super::object::c_string(&record.name);
            match running.iter().find(|(_, member, _)| *member == instance) {
                Some((_, _, program_id)) => {
                    if record.next_program_id == 0 {
                        // A swap killed before staging leaves a generation no record names.
                        self.prune_generations(&name, record.generation);
                        continue;
                    }
                    if record.next_program_id == *program_id {
                        promote(&mut record);
                    } else {
                        let staged = self.pins.generation_dir(&name, record.next_generation);
                        remove_dir(&staged);
                        clear_staged(&mut record);
                    }
                    self.set_record(instance, &record)?;
                    self.prune_generations(&name, record.generation);
                }
                None => {
                    self.set_record(instance, &ModuleRecord::default())?;
                    remove_dir(&self.pins.module_dir(&name));
                }
            }
        }
        // Directories of modules no record names (a load killed before writing its record).
        let named: Vec<String> = (0..MAX_MODULES)
            .filter_map(|instance| self.record(instance).ok())
            .filter(|record| record.flags & RECORD_IN_USE != 0)
            .map(|record| super::object::c_string(&record.name))
            .collect();
        if let Ok(entries) = fs::read_dir(self.pins.modules_dir()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !named.contains(&name) {
                    remove_dir(&entry.path());
                }
            }
        }
        // Records of revisions never switched to.
        super::history::History::for_chain(self.at()).prune(self.state()?.revision);
        Ok(())
    }

    /// Empties every bank but the running revision's.
    fn clear_idle_banks(&mut self) -> Result<(), ModuleError> {
        // A command killed (or failed) right after its switch leaves the old bank filled and
        // perhaps still run by packets in flight: wait out the grace before clearing it,
        // as the switch itself does.
        std::thread::sleep(GRACE);
        let state = self.state()?;
        let running = state.first_slot / CHAIN_SLOTS;
        for bank in 0..REVISION_BANKS {
            if bank != running {
                self.clear_bank(bank)?;
                self.clear_next_links(bank)?;
            }
        }
        Ok(())
    }

    /// Empties entry `bank` of every module version's `FP_NEXT`, so an idle bank holds no
    /// program alive (removed modules' links go with their pins).
    fn clear_next_links(&self, bank: u32) -> Result<(), ModuleError> {
        for instance in 0..MAX_MODULES {
            let record = self.record(instance)?;
            if record.flags & RECORD_IN_USE == 0 {
                continue;
            }
            let name = super::object::c_string(&record.name);
            for generation in [record.generation, record.next_generation] {
                if let Some(next) = self.next_map(&name, generation) {
                    clear_program(next.as_fd(), bank).map_err(ModuleError::syscall(
                        "BPF_MAP_DELETE_ELEM on a module's FP_NEXT",
                    ))?;
                }
            }
        }
        Ok(())
    }

    /// Removes every generation directory of `name` but `keep`.
    pub fn prune_generations(&self, name: &str, keep: u32) {
        if let Ok(entries) = fs::read_dir(self.pins.module_dir(name)) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy() != keep.to_string() {
                    remove_dir(&entry.path());
                }
            }
        }
    }

    /// A free row of `FP_MODULES`, its verdict counters zeroed.
    pub fn free_instance(&mut self) -> Result<Option<u32>, ModuleError> {
        for instance in 0..MAX_MODULES {
            if self.record(instance)?.flags & RECORD_IN_USE == 0 {
                let cpus = aya::util::nr_cpus().map_err(|(_, error)| ModuleError::Syscall {
                    call: "read the possible CPUs",
                    source: error,
                })?;
                for verdict in 0..verdict::COUNT {
                    self.verdicts
                        .set(instance * verdict::COUNT + verdict, zeros(cpus)?, 0)
                        .map_err(ModuleError::map("write", maps::VERDICTS))?;
                }
                self.runtime
                    .set(instance, zeros(cpus)?, 0)
                    .map_err(ModuleError::map("write", maps::RUNTIME))?;
                return Ok(Some(instance));
            }
        }
        Ok(None)
    }

    /// Packets per verdict of `instance`, summed over the CPUs.
    pub fn verdicts(&self, instance: u32) -> Result<[u64; verdict::COUNT as usize], ModuleError> {
        let mut packets = [0u64; verdict::COUNT as usize];
        for (verdict, total) in packets.iter_mut().enumerate() {
            let values = self
                .verdicts
                .get(&(instance * verdict::COUNT + verdict as u32), 0)
                .map_err(ModuleError::map("read", maps::VERDICTS))?;
            *total = values.iter().sum();
        }
        Ok(packets)
    }

    /// The time `instance` ran while the chain was profiled, summed over the CPUs.
    pub fn runtime(&self, instance: u32) -> Result<ModuleRuntime, ModuleError> {
        let values = self
            .runtime
            .get(&instance, 0)
            .map_err(ModuleError::map("read", maps::RUNTIME))?;
        Ok(values
            .iter()
            .fold(ModuleRuntime::default(), |sum, cpu| ModuleRuntime {
                ns: sum.ns + cpu.ns,
                packets: sum.packets + cpu.packets,
            }))
    }

    /// Turns profiling on or off: one update of `FP_STATE`, the revision unchanged.
    pub fn set_profile(&mut self, on: bool) -> Result<(), ModuleError> {
        let state = ChainState {
            profile: on as u32,
            ..self.state()?
        };
        self.state
            .set(0, state, 0)
            .map_err(ModuleError::map("write", maps::STATE))
    }

    /// Packets the chain ended itself, summed over the CPUs, by `chain_counter` slot.
    pub fn chain_counters(&self) -> Result<Vec<u64>, ModuleError> {
        (0..offload_common::module::chain_counter::COUNT)
            .map(|slot| {
                self.counters
                    .get(&slot, 0)
                    .map(|values| values.iter().sum())
                    .map_err(ModuleError::map("read", maps::CHAIN_COUNTERS))
            })
            .collect()
    }
}

/// Puts `program` at `key` of the program array `map`.
fn set_program(map: BorrowedFd<'_>, key: u32, program: BorrowedFd<'_>) -> std::io::Result<()> {
    let fd = program.as_raw_fd() as u32;
    // SAFETY: key and value point to live u32s, the sizes of a program array's key and
    // value; the kernel takes its own reference on the program.
    let result = unsafe {
        libbpf_sys::bpf_map_update_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast::<c_void>(),
            (&fd as *const u32).cast::<c_void>(),
            0,
        )
    };
    sys::check(result).map(drop)
}

/// Empties `key` of the program array `map` (already empty is fine).
fn clear_program(map: BorrowedFd<'_>, key: u32) -> std::io::Result<()> {
    // SAFETY: as in set_program.
    let result = unsafe {
        libbpf_sys::bpf_map_delete_elem(map.as_raw_fd(), (&key as *const u32).cast::<c_void>())
    };
    match sys::check(result) {
        Err(error) if error.raw_os_error() != Some(libc::ENOENT) => Err(error),
        _ => Ok(()),
    }
}

/// Zeroed per-CPU values for `cpus` CPUs.
fn zeros<T: Default + Clone + aya::Pod>(cpus: usize) -> Result<PerCpuValues<T>, ModuleError> {
    PerCpuValues::try_from(vec![T::default(); cpus]).map_err(|error| ModuleError::Syscall {
        call: "size per-CPU values",
        source: error,
    })
}

/// The staged version becomes the running one.
pub(crate) fn promote(record: &mut ModuleRecord) {
    record.program_id = record.next_program_id;
    record.generation = record.next_generation;
    record.version = record.next_version;
    record.digest = record.next_digest;
    record.loaded_at = now();
    clear_staged(record);
}

fn clear_staged(record: &mut ModuleRecord) {
    record.next_program_id = 0;
    record.next_generation = 0;
    record.next_version = [0; offload_common::module::NAME_LEN];
    record.next_digest = [0; offload_common::module::DIGEST_LEN];
}

pub(crate) fn remove_dir(path: &Path) {
    let _ = fs::remove_dir_all(path);
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The generation of the version `program_id` (a running program of `record`'s module) is:
/// the staged one when a change was killed after its switch and before its promotion.
pub(crate) fn running_generation_of(record: &ModuleRecord, program_id: u32) -> u32 {
    if program_id != 0 && record.next_program_id == program_id {
        record.next_generation
    } else {
        record.generation
    }
}
