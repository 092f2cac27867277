//! `fastpath firewall rule del`: one rule removed from the running policy in place, in its
//! running bank (no new bank, no grace delay), and the record of each bank's rules that
//! makes it possible.
//!
//! A rule's hash entries may hide identical matches of later rules (`compile` keeps the
//! first rule of each match): removing the entries alone would drop those. So each bank
//! keeps a record of its rules (`bank-N.rules`, one TOML inline table a line, its place
//! first as `priority`, then its shape), written by `apply` and `rule add`, and an index
//! of it (`bank-N.index`, 16 bytes a rule in place order: its line's offset and length and
//! a hash of its shape). `rule del` reads the deleted rule's index slot, scans the index
//! for the rules that could share a match with it (the same shape: networks, protocol,
//! flags, ICMP type and interface; every entry of a rule carries those), reads only their
//! lines, compiles them, and writes, for each of the deleted rule's entries, what the
//! policy without it has there: the next rule's entry, or none. At 64,000 rules, reading
//! and scanning the whole 7 MB record took 10 ms; the index is 1 MB and holds no text.
//!
//! Why no packet sees half a change: a rule's entries are disjoint (port blocks do not
//! overlap, one entry per ct state), so a packet meets at most one of them, and each is
//! changed by one atomic map update: before it, the packet is decided as by the old
//! policy, after it as by the new. The other rules keep their priorities, counters and
//! entries; the deleted rule's counter slot stays unused (a later `rule add` takes the next
//! one), its name becomes an empty line in the bank's names (not shown by `status`), its
//! index slot's length becomes 0 and its record line a `#` comment (both written in place,
//! so the 7 MB record is not rewritten), and masks it alone used stay probed (a probe that
//! finds nothing) until the next `apply`.

use std::{
    collections::HashMap,
    fs,
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use aya::maps::Array;
use offload_common::firewall::{
    MAX_MASKS, NO_PRIORITY, RuleKey, RuleValue, ct_state, maps, verdict,
};
use serde::Serialize;

use crate::{
    FirewallError, Policy, Rule,
    tables::{RunningPolicy, map_pin, names_dir, open_map, rules_map, running_policy},
};

/// What `del_rule` did.
#[derive(Clone, Debug, Serialize)]
pub struct RuleDeleted {
    /// The interface.
    pub iface: String,
    /// The rule's name.
    pub name: String,
    /// Its place among the running policy's rules (from 1, as `status` counts them with
    /// deleted ones).
    pub position: usize,
    /// Hash entries handed to the next rule with the same match.
    pub entries_replaced: usize,
    /// Hash entries removed (no other rule has their match).
    pub entries_removed: usize,
    /// Wall time of the change, in microseconds (from the lock to the last update: reading
    /// the bank's names, its record's index and the candidates' lines, and compiling them,
    /// included).
    pub micros: u64,
    /// Of which the map updates (from the first to the last), in microseconds.
    pub update_micros: u64,
}

/// The file recording the rules of `bank` of the firewall whose run files are in `run`.
fn record_path(run: &Path, bank: u32) -> PathBuf {
    run.join(format!("bank-{bank}.rules"))
}

/// The file indexing the record of `bank` (see [`Indexed`]), beside [`record_path`].
fn index_path(run: &Path, bank: u32) -> PathBuf {
    run.join(format!("bank-{bank}.index"))
}

/// One rule's slot in a bank's index: where its record line is and a hash of its shape,
/// so that `rule del` finds the rule and those of its shape without reading the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Indexed {
    /// The line's offset in the record.
    offset: u64,
    /// The line's length, its newline included; 0: the rule was deleted.
    len: u32,
    /// [`shape_hash`] of the rule.
    shape: u32,
}

/// The bytes of one [`Indexed`] slot: offset, length and shape, little-endian.
const INDEXED_BYTES: usize = 16;
/// Where a slot's length is, within it (what a delete zeroes).
const LEN_AT: usize = 8;

impl Indexed {
    fn to_bytes(self) -> [u8; INDEXED_BYTES] {
        let mut bytes = [0; INDEXED_BYTES];
        bytes[..LEN_AT].copy_from_slice(&self.offset.to_le_bytes());
        bytes[LEN_AT..12].copy_from_slice(&self.len.to_le_bytes());
        bytes[12..].copy_from_slice(&self.shape.to_le_bytes());
        bytes
    }

    /// The slot at `position` of `index`, if the index has one.
    fn at(index: &[u8], position: u32) -> Option<Self> {
        let start = (position as usize).checked_mul(INDEXED_BYTES)?;
        let bytes = index.get(start..start.checked_add(INDEXED_BYTES)?)?;
        Some(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let word = |range: std::ops::Range<usize>| -> u32 {
            u32::from_le_bytes(bytes[range].try_into().expect("4 bytes"))
        };
        Self {
            offset: u64::from_le_bytes(bytes[..LEN_AT].try_into().expect("8 bytes")),
            len: word(LEN_AT..12),
            shape: word(12..INDEXED_BYTES),
        }
    }
}

/// A hash of a rule's [`shape_text`] (FNV-1a): equal shapes hash equal, so the rules that
/// may share a match with another are among those of its hash (a collision only adds a
/// candidate, which `plan` leaves out by [`same_shape`]).
fn shape_hash(shape: &str) -> u32 {
    shape.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The record of `rules` (each with its place as priority) and its index.
fn record_of(rules: &[Rule]) -> (String, Vec<u8>) {
    let mut text = String::new();
    let mut index = Vec::with_capacity(rules.len() * INDEXED_BYTES);
    for (position, rule) in rules.iter().enumerate() {
        let (line, shape) = rule_line(rule, position);
        index.extend_from_slice(
            &Indexed {
                offset: text.len() as u64,
                len: line.len() as u32,
                shape,
            }
            .to_bytes(),
        );
        text.push_str(&line);
    }
    (text, index)
}

/// Writes the record of `policy`'s rules for `bank` (each with its place as priority) and
/// its index.
pub(crate) fn record_rules(run: &Path, bank: u32, policy: &Policy) -> Result<(), FirewallError> {
    let (text, index) = record_of(&policy.rules);
    let path = record_path(run, bank);
    fs::write(&path, text).map_err(FirewallError::pin("write", &path))?;
    let path = index_path(run, bank);
    fs::write(&path, index).map_err(FirewallError::pin("write", &path))
}

/// How many rules the record of `bank` holds, deleted ones included (the place of the
/// next rule added): its index's length, without reading it.
pub(crate) fn recorded_rules(iface: &str, bank: u32) -> Result<u32, FirewallError> {
    let path = index_path(&names_dir(iface), bank);
    let bytes = fs::metadata(&path)
        .map_err(FirewallError::pin("read the length of", &path))?
        .len();
    Ok((bytes / INDEXED_BYTES as u64) as u32)
}

/// Appends `rule`, at `position` (the record's [`recorded_rules`]), to the record of
/// `bank` and to its index.
pub(crate) fn record_added(
    iface: &str,
    bank: u32,
    rule: &Rule,
    position: usize,
) -> Result<(), FirewallError> {
    let append = |path: &Path| fs::OpenOptions::new().append(true).create(true).open(path);
    let path = record_path(&names_dir(iface), bank);
    let (line, shape) = rule_line(rule, position);
    let offset = append(&path)
        .and_then(|mut file| {
            let offset = file.metadata()?.len();
            file.write_all(line.as_bytes())?;
            Ok(offset)
        })
        .map_err(FirewallError::pin("append to", &path))?;
    let slot = Indexed {
        offset,
        len: line.len() as u32,
        shape,
    };
    let path = index_path(&names_dir(iface), bank);
    append(&path)
        .and_then(|mut file| file.write_all(&slot.to_bytes()))
        .map_err(FirewallError::pin("append to", &path))
}

/// The fields every entry of `rule` carries (its shape: see [`same_shape`]) as the start
/// of a TOML inline table's fields, each followed by `, `.
fn shape_text(rule: &Rule) -> String {
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    let mut text = String::new();
    for (field, net) in [("src", rule.src), ("dst", rule.dst)] {
        if let Some(net) = net {
            text.push_str(&format!("{field} = \"{net}\", "));
        }
    }
    if let Some(protocol) = rule.proto {
        text.push_str(&format!("proto = \"{protocol}\", "));
    }
    if let Some(flags) = rule.tcp_flags {
        text.push_str(&format!("tcp_flags = \"{flags}\", "));
    }
    if let Some(kind) = rule.icmp_type {
        text.push_str(&format!("icmp_type = {kind}, "));
    }
    if let Some(code) = rule.icmp_code {
        text.push_str(&format!("icmp_code = {code}, "));
    }
    if let Some(iface) = &rule.iface {
        text.push_str(&format!("iface = {}, ", quoted(iface)));
    }
    text
}

/// `rule` as one line of the record: a TOML inline table, its place first as `priority`,
/// then its shape, then the rest (`{ priority = P, SHAPE name = ..., ... }`), read alone
/// (a 64,000-rule record took 250 ms to parse whole); and its [`shape_hash`].
fn rule_line(rule: &Rule, position: usize) -> (String, u32) {
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    let shape = shape_text(rule);
    let mut text = format!(
        "{{ priority = {position}, {shape}name = {}, ",
        quoted(&rule.name)
    );
    for (field, ports) in [("src_port", &rule.src_ports), ("dst_port", &rule.dst_ports)] {
        if let Some(ports) = ports {
            text.push_str(&format!(
                "{field} = \"{}-{}\", ",
                ports.start(),
                ports.end()
            ));
        }
    }
    if rule.ct_states != 0 {
        let names: Vec<String> = ct_state::NAMES
            .into_iter()
            .filter(|(bit, _)| rule.ct_states & bit != 0)
            .map(|(_, name)| quoted(name))
            .collect();
        text.push_str(&format!("ct_state = [{}], ", names.join(", ")));
    }
    let action = match rule.verdict {
        verdict::ACCEPT => "accept",
        verdict::REJECT => "reject",
        verdict::LOG => "log",
        _ => "drop",
    };
    text.push_str(&format!("action = \"{action}\""));
    if let Some(rate) = rule.log_rate {
        text.push_str(&format!(", log_rate = {rate}"));
    }
    text.push_str(" }\n");
    (text, shape_hash(&shape))
}

/// The rule at `position` and those of its shape hash, as a policy (the rules in their
/// place order), from the `index` of the record at `path` and its lines as `read_line`
/// reads them (each without the others).
fn read_candidates(
    path: &Path,
    index: &[u8],
    position: u32,
    mut read_line: impl FnMut(Indexed) -> Result<Vec<u8>, FirewallError>,
) -> Result<Policy, FirewallError> {
    let Some(deleted) = Indexed::at(index, position).filter(|slot| slot.len > 0) else {
        return Err(FirewallError::Rules {
            file: path.to_path_buf(),
            line: 1,
            message: format!("no rule at place {} in the record", position + 1),
        });
    };
    let mut text = String::from("rule = [\n");
    for slot in index.chunks_exact(INDEXED_BYTES).map(Indexed::from_bytes) {
        if slot.len == 0 || slot.shape != deleted.shape {
            continue;
        }
        let line = read_line(slot)?;
        let line = std::str::from_utf8(&line).map_err(|error| FirewallError::Rules {
            file: path.to_path_buf(),
            line: 1,
            message: format!("the line at byte {} is not UTF-8: {error}", slot.offset),
        })?;
        text.push_str(line.trim_end_matches('\n'));
        text.push_str(",\n");
    }
    text.push_str("]\n");
    Policy::parse(path, &text)
}

/// One change `del_rule` makes: the entry under `key` (its `mask` field 0) and `mask`
/// becomes `value`, or goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EntryChange {
    pub(crate) key: RuleKey,
    pub(crate) mask: RuleKey,
    pub(crate) value: Option<RuleValue>,
}

/// Whether two rules' entries can share a key: every entry of a rule carries its
/// networks, protocol, TCP flags, ICMP type and code and interface; only ports and ct
/// states vary between them.
fn same_shape(a: &Rule, b: &Rule) -> bool {
    a.src == b.src
        && a.dst == b.dst
        && a.proto == b.proto
        && a.tcp_flags == b.tcp_flags
        && a.icmp_type == b.icmp_type
        && a.icmp_code == b.icmp_code
        && a.iface == b.iface
}

/// The changes that delete the rule at `position` from the rules `record` holds (their
/// priorities their places): for each of its entries, what the policy without it holds
/// there.
pub(crate) fn plan(
    record: &Policy,
    position: u32,
    ifindex_of: impl Fn(&str) -> Result<u32, String> + Copy,
) -> Result<Vec<EntryChange>, FirewallError> {
    let Some(deleted) = record.rules.iter().find(|rule| rule.priority == position) else {
        return Err(FirewallError::Rules {
            file: record.file.clone(),
            line: 1,
            message: format!("no rule at place {} in the record", position + 1),
        });
    };
    let alone = Policy {
        rules: vec![deleted.clone()],
        ..record.clone()
    };
    let mine = crate::compile(&alone, ifindex_of)?;
    // The rules that may share its matches, in priority order (the record's order).
    let candidates: Vec<Rule> = record
        .rules
        .iter()
        .filter(|rule| rule.priority != position && same_shape(rule, deleted))
        .cloned()
        .collect();
    let places: Vec<u32> = candidates.iter().map(|rule| rule.priority).collect();
    let others = crate::compile(
        &Policy {
            rules: candidates,
            ..record.clone()
        },
        ifindex_of,
    )?;
    let mut theirs: HashMap<(RuleKey, RuleKey), RuleValue> = HashMap::new();
    for (key, value) in &others.entries {
        let mask = others.masks[usize::from(key.mask)];
        theirs.insert((RuleKey { mask: 0, ..*key }, mask), *value);
    }
    // The candidates' places back to the running policy's.
    let place = |index: u32| places[index as usize];
    Ok(mine
        .entries
        .iter()
        .map(|(key, _)| {
            let (key, mask) = (
                RuleKey { mask: 0, ..*key },
                mine.masks[usize::from(key.mask)],
            );
            let value = theirs.get(&(key, mask)).map(|value| {
                let mut value = *value;
                if value.priority != NO_PRIORITY {
                    value.priority = place(value.priority);
                    value.counter = value.priority + 1;
                }
                if value.log_priority != NO_PRIORITY {
                    value.log_priority = place(value.log_priority);
                    value.log_counter = value.log_priority + 1;
                }
                value
            });
            EntryChange { key, mask, value }
        })
        .collect())
}

/// Removes the rule `which` (its name, or its number as `status` lists it, from 1) from the
/// running policy of `iface`, in its running bank.
pub fn del_rule(iface: &str, which: &str) -> Result<RuleDeleted, FirewallError> {
    let RunningPolicy {
        _lock,
        started,
        path: policy_path,
        mut states,
        state,
    } = running_policy(iface)?;
    let bank = state.bank & 1;
    let names_file = names_dir(iface).join(format!("bank-{bank}.names"));
    let names = fs::read(&names_file).unwrap_or_default();
    let found = find_rule(iface, &names, which)?;
    let position = found.position;
    let name = String::from_utf8_lossy(&names[found.name.clone()]).into_owned();

    // The rule and those of its shape: their index slots, then their lines alone.
    let index_file = index_path(&names_dir(iface), bank);
    let mut index = fs::read(&index_file).map_err(FirewallError::pin("read", &index_file))?;
    let path = record_path(&names_dir(iface), bank);
    let record = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(FirewallError::pin("open", &path))?;
    let candidates = read_candidates(&path, &index, position as u32, |slot| {
        let mut line = vec![0; slot.len as usize];
        record
            .read_exact_at(&mut line, slot.offset)
            .map_err(FirewallError::pin("read", &path))?;
        Ok(line)
    })?;
    let changes = plan(&candidates, position as u32, |name| {
        nix::net::if_::if_nametoindex(name)
            .map_err(|errno| format!("no interface `{name}` in this network namespace ({errno})"))
    })?;

    // The bank's masks, to find each entry's mask index.
    let masks_path = map_pin(iface, maps::MASKS);
    let masks: Array<_, RuleKey> = Array::try_from(open_map(&masks_path, maps::MASKS)?)
        .map_err(FirewallError::map("open", maps::MASKS, &masks_path))?;
    let mut bank_masks = Vec::new();
    for index in 0..state.banks[bank as usize].masks {
        bank_masks.push(
            masks
                .get(&(bank * MAX_MASKS + index), 0)
                .map_err(FirewallError::map("read", maps::MASKS, &masks_path))?,
        );
    }
    let rules_path = map_pin(iface, maps::RULES);
    let mut rules = rules_map(iface)?;
    let updates_started = std::time::Instant::now();
    // The kernel accepts established packets on rule 1 without probing when the bank says
    // rule 1 takes them (`first_rule_accepts`): that goes before rule 1's entries do (one
    // update; from then on the probes, which still find rule 1, decide).
    if position == 0 && state.banks[bank as usize].first_rule_accepts != 0 {
        let mut without = state;
        without.banks[bank as usize].first_rule_accepts = 0;
        states.set(0, without, 0).map_err(FirewallError::map(
            "write",
            maps::POLICY,
            &policy_path,
        ))?;
    }
    let (mut replaced, mut removed) = (0, 0);
    for change in changes {
        let Some(index) = bank_masks.iter().position(|mask| *mask == change.mask) else {
            continue; // a mask the bank never had: the rule has no entry under it
        };
        let key = RuleKey {
            bank: bank as u8,
            mask: index as u8,
            ..change.key
        };
        // Only entries the rule holds (an earlier rule may hold the match).
        let holds = rules.get(&key, 0).is_ok_and(|value| {
            value.priority == position as u32 || value.log_priority == position as u32
        });
        if !holds {
            continue;
        }
        match change.value {
            Some(value) => {
                rules.insert(key, value, 0).map_err(FirewallError::map(
                    "write",
                    maps::RULES,
                    &rules_path,
                ))?;
                replaced += 1;
            }
            None => {
                rules.remove(&key).map_err(FirewallError::map(
                    "delete from",
                    maps::RULES,
                    &rules_path,
                ))?;
                removed += 1;
            }
        }
    }
    let update_micros = updates_started.elapsed().as_micros() as u64;
    let micros = started.elapsed().as_micros() as u64;

    // The bookkeeping, in place: its name becomes an empty line (the names after it move
    // up by its length), its index slot's length 0, its record line a comment.
    let names_out = fs::OpenOptions::new()
        .write(true)
        .open(&names_file)
        .and_then(|file| {
            file.write_all_at(&names[found.name.end..], found.name.start as u64)?;
            file.set_len((names.len() - found.name.len()) as u64)
        });
    names_out.map_err(FirewallError::pin("write", &names_file))?;
    let slot = Indexed::at(&index, position as u32).expect("read_candidates found it");
    let forgotten = forget(&mut index, position);
    fs::OpenOptions::new()
        .write(true)
        .open(&index_file)
        .and_then(|file| file.write_all_at(&index[forgotten.clone()], forgotten.start as u64))
        .map_err(FirewallError::pin("write", &index_file))?;
    record
        .write_all_at(b"#", slot.offset)
        .map_err(FirewallError::pin("write", &path))?;
    Ok(RuleDeleted {
        iface: iface.to_string(),
        name,
        position: position + 1,
        entries_replaced: replaced,
        entries_removed: removed,
        micros,
        update_micros,
    })
}

/// Marks the rule at `position` deleted in `index` (its length 0); the bytes changed.
fn forget(index: &mut [u8], position: usize) -> std::ops::Range<usize> {
    let at = position * INDEXED_BYTES + LEN_AT;
    index[at..at + 4].fill(0);
    at..at + 4
}

/// The offset of the `nth` newline (from 0) in `bytes`. Whole blocks are skipped by
/// counting their newlines (a vectorized count; stepping from newline to newline cost
/// 350 µs over 64,000 names), then the block holding it is stepped through.
fn nth_newline(bytes: &[u8], mut nth: usize) -> Option<usize> {
    const BLOCK: usize = 4096;
    for (block, chunk) in bytes.chunks(BLOCK).enumerate() {
        let newlines = memchr::memchr_iter(b'\n', chunk).count();
        if nth < newlines {
            let at = memchr::memchr_iter(b'\n', chunk).nth(nth)?;
            return Some(block * BLOCK + at);
        }
        nth -= newlines;
    }
    None
}

/// Where a rule's name is among a bank's names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FoundRule {
    /// Its place, from 0.
    position: usize,
    /// Its name's bytes in the names.
    name: std::ops::Range<usize>,
}

/// The rule `which` names (its name, or its number from 1) among the bank's `names` (one
/// a line; empty: deleted), found with byte scans (64,000 names are 440 kB).
fn find_rule(iface: &str, names: &[u8], which: &str) -> Result<FoundRule, FirewallError> {
    let no_such = |reason: String| FirewallError::NoSuchRule {
        iface: iface.to_string(),
        rule: which.to_string(),
        reason,
    };
    // An empty file holds no rule (not one deleted one).
    let count = || match names {
        [] => 0,
        _ => memchr::memchr_iter(b'\n', names).count() + 1,
    };
    let line_end =
        |start: usize| memchr::memchr(b'\n', &names[start..]).map_or(names.len(), |at| start + at);
    if let Ok(number) = which.parse::<usize>() {
        let start = match number {
            _ if names.is_empty() => None,
            0 => None,
            1 => Some(0),
            _ => nth_newline(names, number - 2).map(|at| at + 1),
        };
        let Some(start) = start else {
            return Err(no_such(format!(
                "the running policy has rules 1 to {}",
                count()
            )));
        };
        let end = line_end(start);
        if start == end {
            return Err(no_such("that rule was deleted".into()));
        }
        return Ok(FoundRule {
            position: number - 1,
            name: start..end,
        });
    }
    // Whole lines equal to `which` (an empty name would match every deleted line).
    let whole_line = |start: usize| {
        let end = start + which.len();
        (start == 0 || names[start - 1] == b'\n') && (end == names.len() || names[end] == b'\n')
    };
    let found: Vec<usize> = match which {
        "" => Vec::new(),
        _ => memchr::memmem::find_iter(names, which.as_bytes())
            .filter(|&start| whole_line(start))
            .collect(),
    };
    match found.as_slice() {
        [start] => Ok(FoundRule {
            position: memchr::memchr_iter(b'\n', &names[..*start]).count(),
            name: *start..*start + which.len(),
        }),
        [] => Err(no_such(
            "no rule of that name (`firewall status` lists them)".into(),
        )),
        _ => Err(no_such(format!(
            "{} rules have that name; give its number instead",
            found.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use offload_common::{FAMILY_V4, proto};

    use super::*;
    use crate::Tables;

    fn eth0(name: &str) -> Result<u32, String> {
        if name == "eth0" {
            Ok(7)
        } else {
            Err(format!("no {name}"))
        }
    }

    const RULES: &str = "default = \"drop\"\n\
        [[rule]]\nname = \"web\"\nproto = \"tcp\"\ndst_port = \"80-81\"\naction = \"accept\"\n\
        [[rule]]\nname = \"web drop\"\nproto = \"tcp\"\ndst_port = 80\naction = \"drop\"\n\
        [[rule]]\nname = \"log dns\"\nproto = \"udp\"\ndst_port = 53\naction = \"log\"\nlog_rate = 3\n\
        [[rule]]\nname = \"dns\"\nproto = \"udp\"\ndst_port = 53\naction = \"reject\"\n\
        [[rule]]\nname = \"x\"\nsrc = \"10.1.0.0/16\"\ndst = \"10.2.0.0/24\"\niface = \"eth0\"\n\
        ct_state = [\"new\", \"invalid\"]\ntcp_flags = \"syn,!ack\"\nproto = \"tcp\"\n\
        action = \"drop\"\n";

    /// `text`'s rules' record and index, and the record read back whole.
    fn record(text: &str) -> (String, Vec<u8>, Policy) {
        let policy = Policy::parse(Path::new("rules.toml"), text).unwrap();
        let (record, index) = record_of(&policy.rules);
        let lines: Vec<&str> = record.lines().collect();
        let whole = format!("rule = [\n{}\n]\n", lines.join(",\n"));
        let read = Policy::parse(Path::new("bank-0.rules"), &whole).unwrap();
        (record, index, read)
    }

    /// Reads lines of `record` as `del_rule` reads them from the file.
    fn lines_of(record: &str) -> impl FnMut(Indexed) -> Result<Vec<u8>, FirewallError> + '_ {
        |slot| Ok(record.as_bytes()[slot.offset as usize..][..slot.len as usize].to_vec())
    }

    #[test]
    fn the_record_reads_back_as_the_rules_it_records() {
        let policy = Policy::parse(Path::new("rules.toml"), RULES).unwrap();
        let (_, _, again) = record(RULES);
        assert_eq!(again.rules.len(), policy.rules.len());
        for (place, (read, written)) in policy.rules.iter().zip(&again.rules).enumerate() {
            let expected = Rule {
                priority: place as u32,
                line: written.line,
                ..read.clone()
            };
            assert_eq!(*written, expected);
        }
    }

    #[test]
    fn deleting_a_rule_hands_its_matches_to_the_next_rule_with_them_or_removes_them() {
        let (_, _, record) = record(RULES);
        // "web" holds 80-81 (one block) and "web drop" 80 alone: another mask, so
        // deleting "web" removes its entry; "web drop"'s is its own.
        let changes = plan(&record, 0, eth0).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].value, None);
        // The log rule and "dns" share one entry: deleting the log rule leaves "dns"
        // deciding alone; deleting "dns" leaves the log half alone.
        let changes = plan(&record, 2, eth0).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        let dns = changes[0].value.expect("dns keeps the match");
        assert_eq!((dns.priority, dns.counter), (3, 4));
        assert_eq!(dns.verdict, verdict::REJECT);
        assert_eq!(dns.log_priority, NO_PRIORITY);
        let changes = plan(&record, 3, eth0).unwrap();
        let log = changes[0].value.expect("the log rule keeps the match");
        assert_eq!((log.log_priority, log.log_counter), (2, 3));
        assert_eq!(log.priority, NO_PRIORITY);
        // One entry per ct state, none shared.
        let changes = plan(&record, 4, eth0).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.iter().all(|change| change.value.is_none()));
        assert!(changes.iter().all(|change| change.key.family == FAMILY_V4));
    }

    #[test]
    fn a_shadowed_identical_rule_takes_over_with_its_own_place_and_counter() {
        let text = "default = \"accept\"\n\
            [[rule]]\nname = \"a\"\nproto = \"tcp\"\ndst_port = 22\naction = \"drop\"\n\
            [[rule]]\nname = \"other\"\nproto = \"udp\"\naction = \"accept\"\n\
            [[rule]]\nname = \"b\"\nproto = \"tcp\"\ndst_port = 22\naction = \"reject\"\n";
        let (_, _, record) = record(text);
        let changes = plan(&record, 0, eth0).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            (changes[0].key.proto, changes[0].key.dst_port),
            (proto::TCP, 22)
        );
        let value = changes[0].value.expect("b had the same match");
        assert_eq!((value.priority, value.counter), (2, 3));
        assert_eq!(value.verdict, verdict::REJECT);
    }

    /// `tables` with `changes` made the way `del_rule` makes them in the kernel.
    fn changed(tables: &Tables, changes: &[EntryChange], position: u32) -> Tables {
        let mut entries: HashMap<RuleKey, RuleValue> = tables.entries.iter().copied().collect();
        for change in changes {
            let Some(index) = tables.masks.iter().position(|mask| *mask == change.mask) else {
                continue;
            };
            let key = RuleKey {
                mask: index as u8,
                ..change.key
            };
            let holds = entries
                .get(&key)
                .is_some_and(|value| value.priority == position || value.log_priority == position);
            match (holds, change.value) {
                (false, _) => {}
                (true, Some(value)) => {
                    entries.insert(key, value);
                }
                (true, None) => {
                    entries.remove(&key);
                }
            }
        }
        Tables {
            entries: entries.into_iter().collect(),
            ..tables.clone()
        }
    }

    #[test]
    fn after_a_delete_every_packet_is_decided_as_by_the_policy_without_the_rule() {
        // Rules drawn from a small set, so that matches repeat and shadow each other.
        let pool = [
            "proto = \"tcp\"\ndst_port = 22\n",
            "proto = \"tcp\"\ndst_port = \"22-23\"\n",
            "proto = \"tcp\"\n",
            "proto = \"udp\"\ndst_port = 53\n",
            "proto = \"udp\"\ndst_port = 53\nct_state = [\"new\"]\n",
            "src = \"10.1.0.0/16\"\n",
            "src = \"10.1.2.0/24\"\nproto = \"tcp\"\n",
            "",
        ];
        let actions = ["accept", "drop", "reject", "log"];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut below = |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for _ in 0..40 {
            let mut text = String::from("default = \"drop\"\n");
            for index in 0..(2 + below(8)) {
                text.push_str(&format!(
                    "[[rule]]\nname = \"r{index}\"\n{}action = \"{}\"\n",
                    pool[below(pool.len())],
                    actions[below(actions.len())]
                ));
            }
            let (lines, index, record) = record(&text);
            let full = crate::compile(&record, eth0).unwrap();
            let deleted = below(record.rules.len()) as u32;
            // As `del_rule` reads them: the rule and those of its shape, by the index.
            let candidates =
                read_candidates(Path::new("r"), &index, deleted, lines_of(&lines)).unwrap();
            let changes = plan(&candidates, deleted, eth0).unwrap();
            let after = changed(&full, &changes, deleted);
            let rest = Policy {
                rules: record
                    .rules
                    .iter()
                    .filter(|rule| rule.priority != deleted)
                    .cloned()
                    .collect(),
                ..record.clone()
            };
            let expected = crate::compile(&rest, eth0).unwrap();
            let name = |rules: &[Rule], counter: u32| {
                (counter > 0).then(|| rules[counter as usize - 1].name.clone())
            };
            for protocol in [proto::TCP, proto::UDP] {
                for port in [21, 22, 23, 53] {
                    for state in [ct_state::NEW, ct_state::ESTABLISHED] {
                        for src in [[10, 1, 2, 3], [10, 1, 9, 9], [192, 0, 2, 1]] {
                            let mut packet = RuleKey {
                                family: FAMILY_V4,
                                proto: protocol,
                                ct_state: state,
                                dst_port: port,
                                src_port: 40000,
                                ifindex: 7,
                                ..RuleKey::default()
                            };
                            packet.src[..4].copy_from_slice(&src);
                            let (got, got_slot) = after.classify(&packet);
                            let (want, want_slot) = expected.classify(&packet);
                            assert_eq!(
                                (got, name(&record.rules, got_slot)),
                                (want, name(&rest.rules, want_slot)),
                                "rule {deleted} deleted from\n{text}\npacket {packet:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_rule_is_found_by_name_or_number_and_a_missing_one_is_a_clear_error() {
        let names = b"a\n\nb\nb";
        let found = find_rule("eth0", names, "a").unwrap();
        assert_eq!((found.position, found.name), (0, 0..1));
        let found = find_rule("eth0", names, "3").unwrap();
        assert_eq!((found.position, found.name), (2, 3..4));
        let found = find_rule("eth0", b"ab\nb\nbb", "b").unwrap();
        assert_eq!((found.position, found.name), (1, 3..4));
        for (names, which, says) in [
            (&names[..], "2", "deleted"),
            (names, "9", "rules 1 to 4"),
            (names, "0", "rules 1 to 4"),
            (names, "c", "no rule of that name"),
            (names, "", "no rule of that name"),
            (names, "b", "2 rules have that name"),
            (b"a\n", "2", "deleted"),
            (b"", "1", "rules 1 to 0"),
        ] {
            let error = find_rule("eth0", names, which).unwrap_err().to_string();
            assert!(error.contains(says), "{which}: {error}");
            assert!(error.contains("eth0"), "{error}");
        }
    }

    #[test]
    fn the_nth_newline_is_found_across_blocks() {
        let names: String = (0..3000).map(|index| format!("r{index}\n")).collect();
        let bytes = names.as_bytes();
        let every: Vec<usize> = memchr::memchr_iter(b'\n', bytes).collect();
        for nth in [0, 1, 700, 1234, 2999] {
            assert_eq!(nth_newline(bytes, nth), Some(every[nth]), "{nth}");
        }
        assert_eq!(nth_newline(bytes, 3000), None);
        let found = find_rule("eth0", bytes, "2500").unwrap();
        assert_eq!(&bytes[found.name], b"r2499");
    }

    #[test]
    fn a_forgotten_rule_is_no_candidate_and_the_index_finds_those_of_its_shape() {
        let (text, mut index, _) = record(RULES);
        assert_eq!(index.len(), 5 * INDEXED_BYTES);
        forget(&mut index, 1);
        let names = |policy: &Policy| -> Vec<String> {
            policy.rules.iter().map(|rule| rule.name.clone()).collect()
        };
        // "log dns" and "dns" share a shape (UDP, nothing else); "x" has its own.
        let found = read_candidates(Path::new("r"), &index, 2, lines_of(&text)).unwrap();
        assert_eq!(names(&found), ["log dns", "dns"]);
        assert_eq!(found.rules[0].priority, 2);
        let found = read_candidates(Path::new("r"), &index, 4, lines_of(&text)).unwrap();
        assert_eq!(names(&found), ["x"]);
        // "web" alone now: its twin was forgotten.
        let found = read_candidates(Path::new("r"), &index, 0, lines_of(&text)).unwrap();
        assert_eq!(names(&found), ["web"]);
        for place in [1, 5] {
            let error = read_candidates(Path::new("r"), &index, place, lines_of(&text))
                .unwrap_err()
                .to_string();
            let says = format!("no rule at place {}", place + 1);
            assert!(error.contains(&says), "{error}");
        }
    }
}
