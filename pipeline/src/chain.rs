//! An ordered list of network functions (fw -> lb -> ...) with per-function stats.

use crate::{
    nf::{NetworkFunction, Packet, Verdict},
    stats::NfStats,
};

/// Network functions run in order over each batch, each with its stats.
pub struct Chain {
    functions: Vec<Box<dyn NetworkFunction>>,
    stats: Vec<NfStats>,
    /// Which packets were still undecided before the current function (reused per batch).
    undecided: Vec<bool>,
}

impl Chain {
    /// A chain of `functions`, in the order given.
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

    /// Per function, in chain order.
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

#[cfg(test)]
mod tests {
    use std::any::Any;

    use afxdp::{Umem, UmemConfig};

    use super::*;
    use crate::drop_reason::DropReason;

    /// What `MinLength` drops for.
    const TOO_SHORT: DropReason = DropReason::Malformed(wire::Malformed::ShortEthernetHeader);

    /// Drops packets shorter than `min`, counts what it saw (state for hot swap to carry).
    struct MinLength {
        min: usize,
        seen: u64,
    }

    impl NetworkFunction for MinLength {
        fn name(&self) -> &'static str {
            "min-length"
        }
        fn process(&mut self, packet: &mut Packet<'_>) -> Verdict {
            self.seen += 1;
            if packet.len() < self.min {
                Verdict::Drop(TOO_SHORT)
            } else {
                Verdict::Next
            }
        }
        fn adopt(&mut self, previous: &mut dyn NetworkFunction) {
            if let Some(old) = previous.as_any_mut().downcast_mut::<MinLength>() {
                self.seen = old.seen;
            }
        }
        fn as_any_mut(&mut self) -> &mut dyn Any {
            self
        }
    }

    fn run(chain: &mut Chain, lengths: &[usize]) -> Vec<Verdict> {
        let (umem, mut pool) = Umem::new(UmemConfig::default()).unwrap();
        let mut frames: Vec<_> = lengths
            .iter()
            .map(|&len| {
                let mut frame = pool.take().unwrap();
                umem.write(&mut frame, &vec![0; len]).unwrap();
                frame
            })
            .collect();
        let mut packets: Vec<Packet<'_>> = frames
            .iter_mut()
            .map(|f| Packet::new(&umem, f, 0))
            .collect();
        let mut verdicts = vec![Verdict::Next; lengths.len()];
        chain.run(&mut packets, &mut verdicts);
        verdicts
    }

    #[test]
    fn functions_see_only_undecided_packets_and_count_drops_by_reason() {
        let mut chain = Chain::new(vec![
            Box::new(MinLength { min: 60, seen: 0 }),
            Box::new(MinLength { min: 100, seen: 0 }),
        ]);
        let verdicts = run(&mut chain, &[40, 80, 120]);
        assert_eq!(
            verdicts,
            [
                Verdict::Drop(TOO_SHORT),
                Verdict::Drop(TOO_SHORT),
                Verdict::Next
            ]
        );
        let stats = chain.stats();
        assert_eq!((stats[0].packets, stats[1].packets), (3, 2));
        assert_eq!(stats[0].drops[TOO_SHORT], 1);
        assert_eq!(stats[1].drops[TOO_SHORT], 1);
        assert_eq!(stats[1].bytes, 200);
    }

    #[test]
    fn a_swapped_in_chain_adopts_state_and_stats() {
        let mut old = Chain::new(vec![Box::new(MinLength { min: 60, seen: 0 })]);
        run(&mut old, &[40, 80]);
        let mut new = Chain::new(vec![Box::new(MinLength { min: 100, seen: 0 })]);
        new.adopt(&mut old);
        let verdicts = run(&mut new, &[80]);
        assert_eq!(
            verdicts,
            [Verdict::Drop(TOO_SHORT)],
            "the new config applies"
        );
        assert_eq!(new.stats()[0].packets, 3, "counters carry over");
        let function = new.functions[0]
            .as_any_mut()
            .downcast_mut::<MinLength>()
            .unwrap();
        assert_eq!(function.seen, 3, "state carries over");
    }
}
