//! The rule and counter maps of an attachment, opened from their pins. Any process can open
//! them; changes take effect at once, with no reload.

use std::{collections::HashMap, fs::File, hash::Hash, net::IpAddr};

use aya::maps::{
    Array, HashMap as BpfHashMap, LpmTrie, Map, MapData, PerCpuArray, XskMap, lpm_trie::Key,
};
use nix::fcntl::Flock;
use offload_common::{
    Counter, ExactKeyV4, PrefixKeyV4, PrefixKeyV6, PrefixLengths, RuleChain, RuleDef, Settings,
    counter, exact_table, prefix_lengths,
};
use serde::Serialize;

use crate::{
    OffloadError, Pins,
    error::MapAction,
    rules::{
        self, Action, CompiledRules, Rule, RuleError, RuleSpec,
        exact_table::{Table, layout_v4, layout_v6},
        tuple_space::{self, FamilyLookup, PrefixLookup},
    },
};

/// The name prefix of the prefilter maps bound to the NIC in a split plan, pinned beside the
/// attachment's own maps.
pub const HW_PREFILTER: &str = "HW_";

/// Packets per action, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ActionCounters {
    /// Passed to the kernel (XDP_PASS), `xsk_fallback` and `non_ip` included.
    pub pass: u64,
    /// Dropped (XDP_DROP): by a rule, the default action or the merged prefilter.
    pub drop: u64,
    /// Redirected to an AF_XDP socket.
    pub xsk: u64,
    /// Sent back out of their interface (XDP_TX).
    pub tx: u64,
    /// Refused by the parser (the policy of `wire::parse`), or `tx` frames too short to
    /// swap MAC addresses; all passed to the kernel, but counted here and not in `pass`.
    pub malformed: u64,
    /// `xsk` verdicts passed to the kernel because no socket was bound (also in `pass`).
    pub xsk_fallback: u64,
    /// Non-IP frames passed to the kernel (also in `pass`).
    pub non_ip: u64,
    /// Dropped by the prefilter merged into this program (also in `drop`).
    pub prefilter: u64,
}

impl ActionCounters {
    /// Every packet the program saw: each lands in exactly one of these.
    pub fn total(&self) -> u64 {
        self.pass + self.drop + self.xsk + self.tx + self.malformed
    }
}

/// A rule with its counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleStats {
    /// The rule.
    #[serde(flatten)]
    pub rule: Rule,
    /// Packets it matched, summed over CPUs.
    pub packets: u64,
    /// Their bytes, summed over CPUs: each packet's first buffer, without the FCS.
    pub bytes: u64,
}

/// The rules, prefilter, AF_XDP socket map and counters of one attachment, reached through
/// its pinned maps. Holds no map open: each call opens the maps it needs from their pins, so
/// it follows a [`replace`](crate::replace) and fails once the attachment is detached.
pub struct Steering {
    iface: String,
    pins: Pins,
}

impl Steering {
    /// Opens the maps of the attachment on `iface`. Each change to the rules or the
    /// prefilter takes a lock for its duration, so that two processes changing them at once
    /// do not interleave; reading takes none, so a long-lived owner (the load balancer)
    /// does not block `fastpath xdp status` or a benchmark reading the counters.
    pub fn open(iface: &str) -> Result<Steering, OffloadError> {
        Steering::at(Pins::for_iface(iface), iface)
    }

    /// Opens the maps pinned under `pins`, named `name` in messages.
    pub fn at(pins: Pins, name: &str) -> Result<Steering, OffloadError> {
        if !pins.map("RULE_DEFS").exists() {
            return Err(OffloadError::NotAttached(name.to_string(), pins.shown()));
        }
        Ok(Steering {
            iface: name.to_string(),
            pins,
        })
    }

    fn map(&self, name: &str) -> Result<Map, OffloadError> {
        Map::from_map_data(self.map_data(name)?).map_err(OffloadError::map(MapAction::Open, name))
    }

    fn map_data(&self, name: &str) -> Result<MapData, OffloadError> {
        let path = self.pins.map(name);
        MapData::from_pin(&path).map_err(|source| OffloadError::Map {
            action: MapAction::Open,
            map: path.display().to_string(),
            source: Box::new(source),
        })
    }

    /// The rules, from their records in `RULE_DEFS`, sorted by id.
    pub fn rules(&self) -> Result<Vec<Rule>, OffloadError> {
        let defs: BpfHashMap<_, u32, RuleDef> = typed(self.map("RULE_DEFS")?, "RULE_DEFS")?;
        let mut rules = Vec::new();
        for entry in defs.iter() {
            let (_, def) = entry.map_err(OffloadError::map(MapAction::Read, "RULE_DEFS"))?;
            match rules::from_def(&def) {
                Some(rule) => rules.push(rule),
                None => {
                    return Err(OffloadError::UnreadableRule {
                        map: "RULE_DEFS",
                        rule: def.id,
                    });
                }
            }
        }
        rules.sort_by_key(|rule| rule.id);
        Ok(rules)
    }

    /// Adds rules in one step; returns their ids. Nothing changes if any of them is invalid.
    pub fn add_rules(&mut self, specs: &[RuleSpec]) -> Result<Vec<u32>, OffloadError> {
        let mut lock = self.lock_rules()?;
        let old = self.rules()?;
        let mut new = old.clone();
        let ids = rules::allocate_ids(&old, specs.len())?;
        for (spec, id) in specs.iter().zip(&ids) {
            rules::check_new(&new, spec)?;
            new.push(Rule {
                id: *id,
                spec: spec.clone(),
            });
        }
        let compiled = rules::compile(&new)?;
        lock.writing()?;
        // Fresh counters and the record first, then the match entries that point at them.
        let mut stats: PerCpuArray<_, Counter> = typed(self.map("RULE_STATS")?, "RULE_STATS")?;
        let mut defs: BpfHashMap<_, u32, RuleDef> = typed(self.map("RULE_DEFS")?, "RULE_DEFS")?;
        let cpus = aya::util::nr_cpus()
            .map_err(|(_, error)| OffloadError::syscall("read possible CPUs", error))?;
        for rule in &new[old.len()..] {
            let zero = aya::maps::PerCpuValues::try_from(vec![Counter::default(); cpus])
                .map_err(|error| OffloadError::syscall("size per-CPU values", error))?;
            stats
                .set(rule.id, zero, 0)
                .map_err(OffloadError::map(MapAction::Write, "RULE_STATS"))?;
            defs.insert(rule.id, rules::to_def(rule), 0)
                .map_err(OffloadError::map(MapAction::Write, "RULE_DEFS"))?;
        }
        crate::kill_point::reached("rules:defs-written");
        self.apply(&rules::compile(&old)?, &compiled)?;
        lock.done()?;
        Ok(ids)
    }

    /// Adds one rule; returns its id (the lowest free one). See [`Steering::add_rules`].
    pub fn add_rule(&mut self, spec: &RuleSpec) -> Result<u32, OffloadError> {
        Ok(self.add_rules(std::slice::from_ref(spec))?[0])
    }

    /// Deletes the rule `id`: its match entries first, then its record, so the data path
    /// never points at a rule that is gone. [`RuleError::UnknownId`] when there is none.
    pub fn delete_rule(&mut self, id: u32) -> Result<(), OffloadError> {
        let mut lock = self.lock_rules()?;
        let old = self.rules()?;
        if !old.iter().any(|rule| rule.id == id) {
            return Err(RuleError::UnknownId(id).into());
        }
        let new: Vec<Rule> = old.iter().filter(|rule| rule.id != id).cloned().collect();
        lock.writing()?;
        self.apply(&rules::compile(&old)?, &rules::compile(&new)?)?;
        let mut defs: BpfHashMap<_, u32, RuleDef> = typed(self.map("RULE_DEFS")?, "RULE_DEFS")?;
        defs.remove(&id)
            .map_err(OffloadError::map(MapAction::Delete, "RULE_DEFS"))?;
        lock.done()
    }

    /// Takes the rule lock. If the last change was interrupted (its process killed part
    /// way), first makes the match maps hold exactly what the rule records say, so the data
    /// path follows the rules listed again.
    fn lock_rules(&self) -> Result<RuleLock, OffloadError> {
        let mut lock = lock(&self.iface)?;
        if lock.interrupted() {
            let actual = self.read_match_maps()?;
            self.apply(&actual, &rules::compile(&self.rules()?)?)?;
            lock.done()?;
        }
        Ok(lock)
    }

    /// Before a build replaces the running one: makes every match map hold what the rules
    /// say, so maps the running build lacks (pinned by then, empty) are filled before the
    /// new build reads them: `EXACT_V4` gets every IPv4 exact rule (leaving `EXACT_RULES`
    /// as it is, so both programs find every rule while the swap happens), and the prefix
    /// hashes and their lengths. Writes nothing when the maps already agree.
    pub(crate) fn fill_match_maps(&self) -> Result<(), OffloadError> {
        let mut lock = self.lock_rules()?;
        let wanted = rules::compile(&self.rules()?)?;
        let actual = self.read_match_maps()?;
        lock.writing()?;
        self.apply(&actual, &wanted)?;
        lock.done()
    }

    /// After the swap to a build with `EXACT_V4`: removes the IPv4 keys an earlier build
    /// left in `EXACT_RULES`, which the program no longer reads.
    pub(crate) fn drop_wide_v4_keys(&self) -> Result<(), OffloadError> {
        let _lock = self.lock_rules()?;
        let mut exact: BpfHashMap<_, offload_common::ExactKey, offload_common::RuleRef> =
            typed(self.map("EXACT_RULES")?, "EXACT_RULES")?;
        let wide: Vec<offload_common::ExactKey> = exact
            .keys()
            .filter_map(Result::ok)
            .filter(|key| ExactKeyV4::of(key).is_some())
            .collect();
        for key in wide {
            exact
                .remove(&key)
                .map_err(OffloadError::map(MapAction::Delete, "EXACT_RULES"))?;
        }
        Ok(())
    }

    /// What the match maps hold now, whatever the records say.
    fn read_match_maps(&self) -> Result<CompiledRules, OffloadError> {
        let error = |source| OffloadError::map(MapAction::Read, "the rule maps")(source);
        let mut actual = CompiledRules::default();
        // An IPv4 key is read from EXACT_V4 only, the one the program looks in: one left in
        // EXACT_RULES by a build before EXACT_V4 existed is not seen by the program, and
        // `drop_wide_v4_keys` removes it.
        let exact: BpfHashMap<_, offload_common::ExactKey, offload_common::RuleRef> =
            typed(self.map("EXACT_RULES")?, "EXACT_RULES")?;
        for entry in exact.iter() {
            let (key, value) = entry.map_err(error)?;
            if ExactKeyV4::of(&key).is_none() {
                actual.exact.insert(key, value);
            }
        }
        let exact_v4: BpfHashMap<_, ExactKeyV4, offload_common::RuleRef> =
            typed(self.map("EXACT_V4")?, "EXACT_V4")?;
        for entry in exact_v4.iter() {
            let (key, value) = entry.map_err(error)?;
            actual.exact.insert(key.widen(), value);
        }
        let v4: LpmTrie<_, [u8; 4], offload_common::RuleChain> =
            typed(self.map("PREFIX_V4")?, "PREFIX_V4")?;
        for entry in v4.iter() {
            let (key, value) = entry.map_err(error)?;
            actual
                .prefixes_v4
                .insert((key.prefix_len(), key.data()), value);
        }
        let v6: LpmTrie<_, [u8; 16], offload_common::RuleChain> =
            typed(self.map("PREFIX_V6")?, "PREFIX_V6")?;
        for entry in v6.iter() {
            let (key, value) = entry.map_err(error)?;
            actual
                .prefixes_v6
                .insert((key.prefix_len(), key.data()), value);
        }
        let hashed_v4: BpfHashMap<_, PrefixKeyV4, RuleChain> =
            typed(self.map("PREFIX_HASH_V4")?, "PREFIX_HASH_V4")?;
        for entry in hashed_v4.iter() {
            let (key, value) = entry.map_err(error)?;
            actual.hashed_v4.insert(key, value);
        }
        let hashed_v6: BpfHashMap<_, PrefixKeyV6, RuleChain> =
            typed(self.map("PREFIX_HASH_V6")?, "PREFIX_HASH_V6")?;
        for entry in hashed_v6.iter() {
            let (key, value) = entry.map_err(error)?;
            actual.hashed_v6.insert(key, value);
        }
        Ok(actual)
    }

    /// Writes what changed between two compiled rule sets: new and changed entries first,
    /// then removals. Each entry update is atomic for the program (the kernel swaps whole
    /// elements under RCU).
    fn apply(&self, old: &CompiledRules, new: &CompiledRules) -> Result<(), OffloadError> {
        let (old_v4, old_v6) = split_exact(&old.exact);
        let (new_v4, new_v6) = split_exact(&new.exact);
        let mut exact_v4: BpfHashMap<_, ExactKeyV4, offload_common::RuleRef> =
            typed(self.map("EXACT_V4")?, "EXACT_V4")?;
        sync(&old_v4, &new_v4, |key, value| match value {
            Some(value) => exact_v4.insert(key, value, 0),
            None => exact_v4.remove(key),
        })?;
        let mut exact: BpfHashMap<_, offload_common::ExactKey, offload_common::RuleRef> =
            typed(self.map("EXACT_RULES")?, "EXACT_RULES")?;
        sync(&old_v6, &new_v6, |key, value| match value {
            Some(value) => exact.insert(key, value, 0),
            None => exact.remove(key),
        })?;
        let mut v4: LpmTrie<_, [u8; 4], offload_common::RuleChain> =
            typed(self.map("PREFIX_V4")?, "PREFIX_V4")?;
        sync(&old.prefixes_v4, &new.prefixes_v4, |(len, addr), value| {
            let key = Key::new(*len, *addr);
            match value {
                Some(value) => v4.insert(&key, value, 0),
                None => v4.remove(&key),
            }
        })?;
        let mut v6: LpmTrie<_, [u8; 16], offload_common::RuleChain> =
            typed(self.map("PREFIX_V6")?, "PREFIX_V6")?;
        sync(&old.prefixes_v6, &new.prefixes_v6, |(len, addr), value| {
            let key = Key::new(*len, *addr);
            match value {
                Some(value) => v6.insert(&key, value, 0),
                None => v6.remove(&key),
            }
        })?;
        self.apply_prefix_hashes(old, new)?;
        let (v4, v6) = (layout_v4(&new.exact), layout_v6(&new.exact));
        self.apply_exact_table(exact_table::family::V4, "EXACT_TABLE_V4", v4)?;
        self.apply_exact_table(exact_table::family::V6, "EXACT_TABLE_V6", v6)?;
        // The counts gate the program's lookups: raised after entries exist, lowered after
        // they are gone.
        let mut settings: Array<_, Settings> = typed(self.map("SETTINGS")?, "SETTINGS")?;
        let mut value = settings
            .get(&0, 0)
            .map_err(OffloadError::map(MapAction::Read, "SETTINGS"))?;
        value.exact_rules = new.exact.len() as u32;
        value.prefixes_v4 = new.prefixes_v4.len() as u32;
        value.prefixes_v6 = new.prefixes_v6.len() as u32;
        settings
            .set(0, value, 0)
            .map_err(OffloadError::map(MapAction::Write, "SETTINGS"))
    }

    /// Writes the per-length prefix hashes and their lengths tables after the tries. A
    /// family leaving the hashes goes back to the trie (lengths count 0) before its
    /// entries are removed; one entering them gets its entries before its lengths.
    fn apply_prefix_hashes(
        &self,
        old: &CompiledRules,
        new: &CompiledRules,
    ) -> Result<(), OffloadError> {
        let mut tables: Array<_, PrefixLengths> =
            typed(self.map("PREFIX_LENGTHS")?, "PREFIX_LENGTHS")?;
        let mut set_lengths = |slot: u32, table: PrefixLengths| {
            tables
                .set(slot, table, 0)
                .map_err(OffloadError::map(MapAction::Write, "PREFIX_LENGTHS"))
        };
        let mut v4: BpfHashMap<_, PrefixKeyV4, RuleChain> =
            typed(self.map("PREFIX_HASH_V4")?, "PREFIX_HASH_V4")?;
        if new.hashed_v4.is_empty() {
            set_lengths(prefix_lengths::V4, PrefixLengths::default())?;
        }
        sync(&old.hashed_v4, &new.hashed_v4, |key, value| match value {
            Some(value) => v4.insert(key, value, 0),
            None => v4.remove(key),
        })?;
        if !new.hashed_v4.is_empty() {
            set_lengths(prefix_lengths::V4, tuple_space::table(&new.prefixes_v4))?;
        }
        let mut v6: BpfHashMap<_, PrefixKeyV6, RuleChain> =
            typed(self.map("PREFIX_HASH_V6")?, "PREFIX_HASH_V6")?;
        if new.hashed_v6.is_empty() {
            set_lengths(prefix_lengths::V6, PrefixLengths::default())?;
        }
        sync(&old.hashed_v6, &new.hashed_v6, |key, value| match value {
            Some(value) => v6.insert(key, value, 0),
            None => v6.remove(key),
        })?;
        if !new.hashed_v6.is_empty() {
            set_lengths(prefix_lengths::V6, tuple_space::table(&new.prefixes_v6))?;
        }
        Ok(())
    }

    /// Writes a family's exact table (`offload_common::exact_table`) when its rules changed,
    /// or when a change was interrupted before its switch: whole, into the bank the program
    /// does not read, and then switches the program to it. Called after the kernel hashes
    /// are written, so a spilled bucket's keys are there before the table that sends the
    /// program to them.
    fn apply_exact_table<B: aya::Pod>(
        &self,
        family: u32,
        name: &'static str,
        table: Table<B>,
    ) -> Result<(), OffloadError> {
        let mut shapes: Array<_, exact_table::Shape> =
            typed(self.map("EXACT_TABLES")?, "EXACT_TABLES")?;
        let shape = shapes
            .get(&family, 0)
            .map_err(OffloadError::map(MapAction::Read, "EXACT_TABLES"))?;
        if shape.bank().is_some() && shape.fingerprint == table.fingerprint {
            return Ok(());
        }
        let bank = shape.bank().map_or(0, |bank| 1 - bank);
        // The idle bank may be the one the program read until the last switch: wait until
        // no program still reads it before writing over it.
        crate::sys::wait_for_running_programs()
            .map_err(|error| OffloadError::syscall("wait for running BPF programs", error))?;
        let data = self.map_data(name)?;
        let first = bank * exact_table::MAX_BUCKETS;
        let indices: Vec<u32> = (first..first + table.buckets.len() as u32).collect();
        crate::batch::update(&data, &indices, &table.buckets).map_err(|error| {
            OffloadError::syscall("write an exact table (BPF_MAP_UPDATE_BATCH)", error)
        })?;
        crate::kill_point::reached("rules:exact-table-written");
        let next = exact_table::Shape::new(bank, table.buckets.len() as u32, table.fingerprint);
        shapes
            .set(family, next, 0)
            .map_err(OffloadError::map(MapAction::Write, "EXACT_TABLES"))
    }

    /// How the program looks up each family's exact rules now: its table, or the kernel
    /// hash alone.
    pub fn exact_lookup(&self) -> Result<rules::exact_table::ExactLookup, OffloadError> {
        let shapes: Array<_, exact_table::Shape> =
            typed(self.map("EXACT_TABLES")?, "EXACT_TABLES")?;
        let shape = |family: u32| {
            shapes
                .get(&family, 0)
                .map_err(OffloadError::map(MapAction::Read, "EXACT_TABLES"))
        };
        let compiled = rules::compile(&self.rules()?)?;
        let (v4, v6) = split_exact(&compiled.exact);
        Ok(rules::exact_table::ExactLookup {
            v4: rules::exact_table::FamilyExactLookup::of(
                v4.len(),
                &layout_v4(&compiled.exact),
                &shape(exact_table::family::V4)?,
            ),
            v6: rules::exact_table::FamilyExactLookup::of(
                v6.len(),
                &layout_v6(&compiled.exact),
                &shape(exact_table::family::V6)?,
            ),
        })
    }

    /// How the program looks up each family's destination prefixes now: the per-length
    /// hashes, the trie, or nothing (no prefix rules).
    pub fn prefix_lookup(&self) -> Result<PrefixLookup, OffloadError> {
        let tables: Array<_, PrefixLengths> = typed(self.map("PREFIX_LENGTHS")?, "PREFIX_LENGTHS")?;
        let hashed = |slot: u32| -> Result<bool, OffloadError> {
            let table = tables
                .get(&slot, 0)
                .map_err(OffloadError::map(MapAction::Read, "PREFIX_LENGTHS"))?;
            Ok(table.count != 0)
        };
        let error = |source| OffloadError::map(MapAction::Read, "the prefix tries")(source);
        let v4: LpmTrie<_, [u8; 4], RuleChain> = typed(self.map("PREFIX_V4")?, "PREFIX_V4")?;
        let mut lengths_v4: Vec<u32> = Vec::new();
        for key in v4.keys() {
            lengths_v4.push(key.map_err(error)?.prefix_len());
        }
        let v6: LpmTrie<_, [u8; 16], RuleChain> = typed(self.map("PREFIX_V6")?, "PREFIX_V6")?;
        let mut lengths_v6: Vec<u32> = Vec::new();
        for key in v6.keys() {
            lengths_v6.push(key.map_err(error)?.prefix_len());
        }
        let (prefixes_v4, prefixes_v6) = (lengths_v4.len(), lengths_v6.len());
        for lengths in [&mut lengths_v4, &mut lengths_v6] {
            lengths.sort_unstable_by(|a, b| b.cmp(a));
            lengths.dedup();
        }
        Ok(PrefixLookup {
            v4: FamilyLookup::of(lengths_v4, prefixes_v4, hashed(prefix_lengths::V4)?),
            v6: FamilyLookup::of(lengths_v6, prefixes_v6, hashed(prefix_lengths::V6)?),
        })
    }

    /// Every rule with the packets and bytes it matched, sorted by id.
    pub fn rule_stats(&self) -> Result<Vec<RuleStats>, OffloadError> {
        let stats: PerCpuArray<_, Counter> = typed(self.map("RULE_STATS")?, "RULE_STATS")?;
        self.rules()?
            .into_iter()
            .map(|rule| {
                let per_cpu = stats
                    .get(&rule.id, 0)
                    .map_err(OffloadError::map(MapAction::Read, "RULE_STATS"))?;
                Ok(RuleStats {
                    packets: per_cpu.iter().map(|c| c.packets).sum(),
                    bytes: per_cpu.iter().map(|c| c.bytes).sum(),
                    rule,
                })
            })
            .collect()
    }

    /// Packets per action since the attach, summed over CPUs.
    pub fn counters(&self) -> Result<ActionCounters, OffloadError> {
        let stats: PerCpuArray<_, Counter> = typed(self.map("ACTION_STATS")?, "ACTION_STATS")?;
        let slot = |index: u32| -> Result<u64, OffloadError> {
            let per_cpu = stats
                .get(&index, 0)
                .map_err(OffloadError::map(MapAction::Read, "ACTION_STATS"))?;
            Ok(per_cpu.iter().map(|c| c.packets).sum())
        };
        Ok(ActionCounters {
            pass: slot(counter::PASS)?,
            drop: slot(counter::DROP)?,
            xsk: slot(counter::XSK)?,
            tx: slot(counter::TX)?,
            malformed: slot(counter::MALFORMED)?,
            xsk_fallback: slot(counter::XSK_FALLBACK)?,
            non_ip: slot(counter::NON_IP)?,
            prefilter: slot(counter::PREFILTER)?,
        })
    }

    /// Replaces the prefilter's source addresses in the maps under `prefix` ("" for the
    /// ones `steer` reads, [`HW_PREFILTER`] for the hardware stage's), then tells `steer`
    /// whether to look them up.
    pub fn set_prefilter(&mut self, prefix: &str, sources: &[IpAddr]) -> Result<(), OffloadError> {
        let _lock = lock(&self.iface)?;
        let mut v4: BpfHashMap<_, [u8; 4], u64> =
            typed(self.map(&format!("{prefix}PREFILTER_V4"))?, "PREFILTER_V4")?;
        let mut v6: BpfHashMap<_, [u8; 16], u64> =
            typed(self.map(&format!("{prefix}PREFILTER_V6"))?, "PREFILTER_V6")?;
        let error = |source| OffloadError::map(MapAction::Write, "PREFILTER")(source);
        // Addresses that stay keep their drop counts: only new ones are inserted (at 0).
        let present_v4: Vec<[u8; 4]> = v4.keys().filter_map(Result::ok).collect();
        let present_v6: Vec<[u8; 16]> = v6.keys().filter_map(Result::ok).collect();
        for source in sources {
            match source {
                IpAddr::V4(addr) if !present_v4.contains(&addr.octets()) => {
                    v4.insert(addr.octets(), 0, 0).map_err(error)?
                }
                IpAddr::V6(addr) if !present_v6.contains(&addr.octets()) => {
                    v6.insert(addr.octets(), 0, 0).map_err(error)?
                }
                _ => {}
            }
        }
        let gone = |key: IpAddr| !sources.contains(&key);
        for key in present_v4.iter().filter(|key| gone(IpAddr::from(**key))) {
            v4.remove(key).map_err(error)?;
        }
        for key in present_v6.iter().filter(|key| gone(IpAddr::from(**key))) {
            v6.remove(key).map_err(error)?;
        }
        if prefix.is_empty() {
            let mut settings: Array<_, Settings> = typed(self.map("SETTINGS")?, "SETTINGS")?;
            let mut value = settings
                .get(&0, 0)
                .map_err(OffloadError::map(MapAction::Read, "SETTINGS"))?;
            value.prefilter = u8::from(!sources.is_empty());
            settings
                .set(0, value, 0)
                .map_err(OffloadError::map(MapAction::Write, "SETTINGS"))?;
        }
        Ok(())
    }

    /// The prefilter's source addresses under `prefix` (see [`Steering::set_prefilter`]) and
    /// the packets dropped from each, sorted by address.
    pub fn prefilter(&self, prefix: &str) -> Result<Vec<(IpAddr, u64)>, OffloadError> {
        let v4: BpfHashMap<_, [u8; 4], u64> =
            typed(self.map(&format!("{prefix}PREFILTER_V4"))?, "PREFILTER_V4")?;
        let v6: BpfHashMap<_, [u8; 16], u64> =
            typed(self.map(&format!("{prefix}PREFILTER_V6"))?, "PREFILTER_V6")?;
        let error = |source| OffloadError::map(MapAction::Read, "PREFILTER")(source);
        let mut entries = Vec::new();
        for entry in v4.iter() {
            let (key, drops) = entry.map_err(error)?;
            entries.push((IpAddr::from(key), drops));
        }
        for entry in v6.iter() {
            let (key, drops) = entry.map_err(error)?;
            entries.push((IpAddr::from(key), drops));
        }
        entries.sort();
        Ok(entries)
    }

    /// The action for IP packets no rule matches, as written when the program was loaded.
    pub fn default_action(&self) -> Result<Action, OffloadError> {
        read_default_action(self.map("SETTINGS")?)
    }

    /// Registers an AF_XDP socket at `queue` in the XSKMAP.
    pub fn register_socket(
        &self,
        queue: u32,
        socket: impl std::os::fd::AsRawFd,
    ) -> Result<(), OffloadError> {
        let mut sockets: XskMap<_> = typed(self.map("XSKS")?, "XSKS")?;
        sockets.set(queue, socket, 0).map_err(OffloadError::map(
            MapAction::Write,
            format!("XSKS[{queue}]"),
        ))
    }

    /// Removes the socket at `queue` from the XSKMAP: `xsk` verdicts on that queue are then
    /// passed to the kernel (counted as `xsk_fallback`).
    pub fn unregister_socket(&self, queue: u32) -> Result<(), OffloadError> {
        let mut sockets: XskMap<_> = typed(self.map("XSKS")?, "XSKS")?;
        sockets.unset(queue).map_err(OffloadError::map(
            MapAction::Delete,
            format!("XSKS[{queue}]"),
        ))
    }
}

/// Writes the default action into a freshly loaded steering object's SETTINGS map, before
/// the program is attached.
pub(crate) fn write_default_action(
    ebpf: &mut aya::Ebpf,
    action: Action,
) -> Result<(), OffloadError> {
    let map = ebpf
        .map_mut("SETTINGS")
        .ok_or_else(|| OffloadError::MissingFromObject {
            object: "steering",
            part: "map",
            name: "SETTINGS".into(),
        })?;
    let mut settings: Array<_, Settings> =
        Array::try_from(map).map_err(OffloadError::map(MapAction::Layout, "SETTINGS"))?;
    let mut value = settings
        .get(&0, 0)
        .map_err(OffloadError::map(MapAction::Read, "SETTINGS"))?;
    value.default_action = action.code();
    settings
        .set(0, value, 0)
        .map_err(OffloadError::map(MapAction::Write, "SETTINGS"))
}

fn read_default_action(map: Map) -> Result<Action, OffloadError> {
    let settings: Array<_, Settings> = typed(map, "SETTINGS")?;
    let value = settings
        .get(&0, 0)
        .map_err(OffloadError::map(MapAction::Read, "SETTINGS"))?;
    Action::from_code(value.default_action)
        .ok_or(OffloadError::UnknownDefaultAction(value.default_action))
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
    map: Map,
    name: &str,
) -> Result<T, OffloadError> {
    T::try_from(map).map_err(OffloadError::map(MapAction::Layout, name))
}

/// Calls `write(key, Some(new))` for entries added or changed, then `write(key, None)` for
/// entries removed.
/// The exact entries by the map they go to: IPv4 hosts' (in `EXACT_V4`'s key), IPv6 hosts'.
type SplitExact = (
    HashMap<ExactKeyV4, offload_common::RuleRef>,
    HashMap<offload_common::ExactKey, offload_common::RuleRef>,
);

fn split_exact(exact: &HashMap<offload_common::ExactKey, offload_common::RuleRef>) -> SplitExact {
    let mut split = SplitExact::default();
    for (key, rule) in exact {
        match ExactKeyV4::of(key) {
            Some(narrow) => split.0.insert(narrow, *rule),
            None => split.1.insert(*key, *rule),
        };
    }
    split
}

fn sync<K: Eq + Hash, V: PartialEq>(
    old: &HashMap<K, V>,
    new: &HashMap<K, V>,
    mut write: impl FnMut(&K, Option<&V>) -> Result<(), aya::maps::MapError>,
) -> Result<(), OffloadError> {
    for (key, value) in new {
        if old.get(key) != Some(value) {
            write(key, Some(value)).map_err(OffloadError::map(MapAction::Write, "a rule map"))?;
        }
    }
    for key in old.keys().filter(|key| !new.contains_key(key)) {
        write(key, None).map_err(OffloadError::map(MapAction::Delete, "a rule map"))?;
    }
    Ok(())
}

/// The lock that keeps two processes' rule and prefilter changes from interleaving, and the
/// journal of rule changes: its file holds a line while a change is being written and is
/// empty otherwise, so a change cut short by a kill is seen by the next one.
struct RuleLock(Flock<File>);

impl RuleLock {
    fn interrupted(&self) -> bool {
        self.0.metadata().is_ok_and(|meta| meta.len() > 0)
    }

    fn writing(&mut self) -> Result<(), OffloadError> {
        use std::os::unix::fs::FileExt;
        self.0
            .write_all_at(b"a rule change is being written\n", 0)
            .map_err(|error| OffloadError::syscall("write the rule journal", error))
    }

    fn done(&mut self) -> Result<(), OffloadError> {
        self.0
            .set_len(0)
            .map_err(|error| OffloadError::syscall("clear the rule journal", error))
    }
}

fn lock(iface: &str) -> Result<RuleLock, OffloadError> {
    crate::run_lock::exclusive(&format!("{iface}.lock"))
        .map(RuleLock)
        .map_err(|(call, source)| OffloadError::syscall(call, source))
}

pub(crate) fn lock_path(iface: &str) -> std::path::PathBuf {
    crate::run_lock::path(&format!("{iface}.lock"))
}
