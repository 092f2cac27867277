//! `fastpath firewall rule add`: one rule appended to the running policy in place, without
//! building a new bank (no grace delay): a change of a few map updates.
//!
//! Why no packet sees half a policy: the rule is appended last (after every rule, before
//! the default), so it can only decide packets no earlier rule decides, which the default
//! decided until now. Its hash entries are disjoint (port blocks do not overlap, one entry
//! per ct state), so a packet matches at most one of them: each entry written is one
//! atomic map update, and a packet sees the whole rule or none of it. Entries under a mask
//! the bank did not have are written before the bank's mask count is raised (one update
//! of `FW_POLICY`), so none is probed half-written; its counter is zeroed before any entry
//! can count on it. An entry whose match an earlier rule already has is left to that rule
//! (it decides first), as `compile` does; one an earlier `log` rule alone has gets its
//! deciding half (one update of that entry).

use std::{fs, io::Write};

use aya::maps::{Array, PerCpuArray, PerCpuValues};
use offload_common::{
    Counter,
    firewall::{COUNTERS_PER_BANK, LogRate, MAX_MASKS, NO_PRIORITY, RuleKey, RuleValue, maps},
};
use serde::Serialize;

use crate::{
    FirewallError, Policy,
    tables::{RunningPolicy, map_pin, names_dir, open_map, rules_map, running_policy},
};

/// What `add_rule` did.
#[derive(Clone, Debug, Serialize)]
pub struct RuleAdded {
    /// The interface.
    pub iface: String,
    /// The rule's name.
    pub name: String,
    /// Its place among the running policy's rules (from 1; the last).
    pub position: usize,
    /// Hash entries written.
    pub entries: usize,
    /// Masks the bank gained.
    pub new_masks: usize,
    /// Wall time of the change, in microseconds (from the lock to the last update).
    pub micros: u64,
}

/// Appends the one rule of `policy` (a rules file holding exactly one `[[rule]]`) to the
/// running policy of `iface`, in its running bank.
pub fn add_rule(iface: &str, policy: &Policy) -> Result<RuleAdded, FirewallError> {
    let rule_error = |line: usize, message: String| FirewallError::Rules {
        file: policy.file.clone(),
        line,
        message,
    };
    let [rule] = policy.rules.as_slice() else {
        return Err(rule_error(
            1,
            format!(
                "`rule add` takes a file with exactly one [[rule]]; it has {}",
                policy.rules.len()
            ),
        ));
    };
    let one = crate::compile(policy, |name| {
        nix::net::if_::if_nametoindex(name)
            .map_err(|errno| format!("no interface `{name}` in this network namespace ({errno})"))
    })?;
    let RunningPolicy {
        _lock,
        started,
        path: policy_path,
        mut states,
        mut state,
    } = running_policy(iface)?;
    let bank = state.bank & 1;
    // The bank's rules, deleted ones included, from its record's index length (not by
    // reading the names: 440 kB at 64,000 rules): their count is the new rule's place.
    let names_file = names_dir(iface).join(format!("bank-{bank}.names"));
    let position = crate::del_rule::recorded_rules(iface, bank)?;
    if position + 1 >= COUNTERS_PER_BANK {
        return Err(rule_error(
            rule.line,
            format!("the running policy holds {position} rules: no room for another"),
        ));
    }

    // The rule's masks among the bank's: found, or appended after them.
    let masks_path = map_pin(iface, maps::MASKS);
    let mut masks: Array<_, RuleKey> = Array::try_from(open_map(&masks_path, maps::MASKS)?)
        .map_err(FirewallError::map("open", maps::MASKS, &masks_path))?;
    let running_masks = state.banks[bank as usize].masks;
    let mut bank_masks = Vec::with_capacity(running_masks as usize);
    for index in 0..running_masks {
        bank_masks.push(
            masks
                .get(&(bank * MAX_MASKS + index), 0)
                .map_err(FirewallError::map("read", maps::MASKS, &masks_path))?,
        );
    }
    let mut index_of = Vec::with_capacity(one.masks.len());
    let mut new_masks = Vec::new();
    for mask in &one.masks {
        let index = match bank_masks.iter().position(|known| known == mask) {
            Some(index) => index,
            None => {
                bank_masks.push(*mask);
                new_masks.push(*mask);
                bank_masks.len() - 1
            }
        };
        if index >= MAX_MASKS as usize {
            return Err(rule_error(
                rule.line,
                format!(
                    "rule `{}`: the running policy would need more than {MAX_MASKS} masks; \
                     apply the whole file instead",
                    rule.name
                ),
            ));
        }
        index_of.push(index as u8);
    }
    for (offset, mask) in new_masks.iter().enumerate() {
        let index = running_masks + offset as u32;
        masks
            .set(bank * MAX_MASKS + index, mask, 0)
            .map_err(FirewallError::map("write", maps::MASKS, &masks_path))?;
    }

    // Its counter (and log rate) before any entry can count on it.
    let slot = position + 1;
    let counters_path = map_pin(iface, maps::COUNTERS);
    let mut counters: PerCpuArray<_, Counter> =
        PerCpuArray::try_from(open_map(&counters_path, maps::COUNTERS)?)
            .map_err(FirewallError::map("open", maps::COUNTERS, &counters_path))?;
    let cpus = aya::util::nr_cpus().map_err(|(_, error)| FirewallError::Pin {
        action: "count the CPUs in",
        path: "/sys/devices/system/cpu/possible".into(),
        source: error,
    })?;
    let zero = PerCpuValues::try_from(vec![Counter::default(); cpus])
        .map_err(FirewallError::map("zero", maps::COUNTERS, &counters_path))?;
    counters
        .set(bank * COUNTERS_PER_BANK + slot, zero, 0)
        .map_err(FirewallError::map("zero", maps::COUNTERS, &counters_path))?;
    if let Some(&(_, per_second)) = one.log_rates.first() {
        let rates_path = map_pin(iface, maps::LOG_RATES);
        let mut rates: Array<_, LogRate> = Array::try_from(open_map(&rates_path, maps::LOG_RATES)?)
            .map_err(FirewallError::map("open", maps::LOG_RATES, &rates_path))?;
        let rate = LogRate {
            per_second,
            ..LogRate::default()
        };
        rates
            .set(bank * COUNTERS_PER_BANK + slot, rate, 0)
            .map_err(FirewallError::map("write", maps::LOG_RATES, &rates_path))?;
    }

    // The entries, each one atomic update.
    let rules_path = map_pin(iface, maps::RULES);
    let mut rules = rules_map(iface)?;
    let mut written = 0;
    for (key, value) in &one.entries {
        let mut key = *key;
        key.bank = bank as u8;
        key.mask = index_of[usize::from(key.mask)];
        let mut value = *value;
        if value.priority != NO_PRIORITY {
            (value.priority, value.counter) = (position, slot);
        }
        if value.log_priority != NO_PRIORITY {
            (value.log_priority, value.log_counter) = (position, slot);
        }
        let value = match rules.get(&key, 0) {
            // An earlier rule decides this match, or an earlier `log` rule has it and this
            // one is a `log` rule too: the earlier one keeps it.
            Ok(existing) if existing.priority != NO_PRIORITY || value.priority == NO_PRIORITY => {
                continue;
            }
            // An earlier `log` rule alone: this rule becomes its deciding half.
            Ok(existing) => RuleValue {
                priority: value.priority,
                counter: value.counter,
                verdict: value.verdict,
                ..existing
            },
            Err(_) => value,
        };
        rules.insert(key, value, 0).map_err(FirewallError::map(
            "write",
            maps::RULES,
            &rules_path,
        ))?;
        written += 1;
    }

    // New masks become probed in one update.
    if !new_masks.is_empty() {
        state.banks[bank as usize].masks = bank_masks.len() as u32;
        states
            .set(0, state, 0)
            .map_err(FirewallError::map("write", maps::POLICY, &policy_path))?;
    }
    // The bank's names, one a line: the new one after a newline unless it is the first.
    let mut line = if position == 0 { "" } else { "\n" }.to_string();
    line.push_str(&rule.name);
    fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&names_file)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .map_err(FirewallError::pin("append to", &names_file))?;
    crate::del_rule::record_added(iface, bank, rule, position as usize)?;
    let micros = started.elapsed().as_micros() as u64;
    Ok(RuleAdded {
        iface: iface.to_string(),
        name: rule.name.clone(),
        position: position as usize + 1,
        entries: written,
        new_masks: new_masks.len(),
        micros,
    })
}
