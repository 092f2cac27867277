//! An ordered list of network functions (fw -> lb -> ...) with per-function stats.

use crate::{
    nf::{NetworkFunction, Packet, Verdict},
    stats::NfStats,
};

pub struct Chain {
    functions: Vec<Box<dyn NetworkFunction>>,
    stats: Vec<NfStats>,
    /// Which packets were still undecided before the current function (reused per batch).
    undecided: Vec<bool>,
}

impl Chain {
    pub fn new(functions: Vec<Box<dyn NetworkFunction>>) -> Chain {
        let stats = functions
            .iter()
            .map(|function| NfStats::new(function.name()))
            .collect();
        Chain {
            functions,
            stats,
            undecided: Vec::new(),
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.functions.iter().map(|f| f.name()).collect()
    }

    pub fn stats(&self) -> &[NfStats] {
        &self.stats
    }

    /// Runs every function over the packets still undecided (`Verdict::Next`), in order.
    pub fn run(&mut self, packets: &mut [Packet<'_>], verdicts: &mut [Verdict]) {
        for (function, stats) in self.functions.iter_mut().zip(&mut self.stats) {
            self.undecided.clear();
            self.undecided
                .extend(verdicts.iter().map(|verdict| *verdict == Verdict::Next));
            function.process_batch(packets, verdicts);
            let decided_here = packets.iter().zip(verdicts.iter()).zip(&self.undecided);
            for ((packet, verdict), &seen) in decided_here {
                if seen {
                    stats.count(packet.len(), *verdict);
                }
            }
        }
    }

    /// Hot swap: each new function adopts the state of the old one of the same name.
    /// The old chain's stats carry over, so counters do not restart.
    pub fn adopt(&mut self, previous: &mut Chain) {
        for (function, stats) in self.functions.iter_mut().zip(&mut self.stats) {
            let old = previous
                .functions
                .iter_mut()
                .zip(&previous.stats)
                .find(|(old, _)| old.name() == function.name());
            if let Some((old, old_stats)) = old {
                function.adopt(old.as_mut());
                *stats = old_stats.clone();
            }
        }
    }
}
