//! The verification: from what was injected, what each node latched, and what one socket.io
//! client received, how many outputs were lost, duplicated or out of order.
//!
//! Nodes whose output is certain (`pass`, `average`: one output per message that reaches
//! them) are checked message by message: each injected message must arrive at each such node
//! downstream of its entry exactly once, and the messages of one entry in the order they were
//! injected. The other nodes (`threshold`, `merge` in the scenarios) output when their input
//! says so, and are checked by `seq`: every seq up to the latched one exactly once, in order.
//! On top, the latched seq of a certain node must equal the number of messages that reached
//! it: the effect of each message happened exactly once.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::scenario::Plan;

/// One output a client received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The node's index in the plan.
    pub node: u32,
    /// The output's seq.
    pub seq: u64,
    /// The id of the inject that caused it.
    pub input: u128,
    /// Read from history after a `resync` rather than received live (not order-checked).
    pub recovered: bool,
}

/// The figures of one client's verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Outputs that should have arrived.
    pub expected: u64,
    /// Outputs that arrived (duplicates included).
    pub received: u64,
    /// Expected outputs that never arrived.
    pub lost: u64,
    /// Outputs that arrived more than once.
    pub duplicated: u64,
    /// Outputs that arrived before one they should follow.
    pub out_of_order: u64,
    /// Outputs of a certain node caused by a message that should not reach it (or was never
    /// injected), or with a seq above the latched one.
    pub unexpected: u64,
    /// Certain nodes whose latched seq differs from the number of messages that reached them.
    pub effect_mismatches: u64,
}

impl Verdict {
    /// Whether nothing went wrong.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.effect_mismatches == 0
    }

    /// Adds `other`'s figures to these.
    pub fn add(&mut self, other: &Verdict) {
        self.expected += other.expected;
        self.received += other.received;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.unexpected += other.unexpected;
        self.effect_mismatches += other.effect_mismatches;
    }
}

/// Where each injected message entered: its entry (index into `plan.entries`) and its
/// position among that entry's messages.
pub struct Inputs {
    by_id: HashMap<u128, (u32, u32)>,
    /// Per node, how many injected messages reach it (certain nodes only; 0 for the others).
    pub reaching: Vec<u64>,
}

impl Inputs {
    /// From the ids injected into each entry, in order.
    pub fn new(plan: &Plan, per_entry: &[Vec<u128>]) -> Inputs {
        let mut by_id = HashMap::with_capacity(per_entry.iter().map(Vec::len).sum());
        let mut reaching = vec![0u64; plan.len()];
        for (entry, ids) in per_entry.iter().enumerate() {
            for (position, id) in ids.iter().enumerate() {
                by_id.insert(*id, (entry as u32, position as u32));
            }
            for &node in &plan.certain[entry] {
                reaching[node as usize] += ids.len() as u64;
            }
        }
        Inputs { by_id, reaching }
    }

    /// Outputs a client should receive, given what each node latched.
    pub fn expected(&self, plan: &Plan, latched: &[u64]) -> u64 {
        (0..plan.len())
            .map(|node| {
                if plan.is_certain[node] {
                    self.reaching[node]
                } else {
                    latched[node]
                }
            })
            .sum()
    }
}

/// Checks what one client received, `seen` in arrival order, against `inputs` and the
/// `latched` seq of every node.
pub fn verify(plan: &Plan, inputs: &Inputs, latched: &[u64], seen: &[Seen]) -> Verdict {
    let mut verdict = Verdict {
        expected: inputs.expected(plan, latched),
        received: seen.len() as u64,
        ..Verdict::default()
    };
    let mut by_input: HashSet<(u32, u128)> = HashSet::with_capacity(seen.len());
    let mut by_seq: HashSet<(u32, u64)> = HashSet::new();
    let mut last_position: HashMap<(u32, u32), u32> = HashMap::new();
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    let mut distinct = vec![0u64; plan.len()];
    for event in seen {
        let node = event.node as usize;
        if plan.is_certain[node] {
            let Some(&(entry, position)) = inputs.by_id.get(&event.input) else {
                verdict.unexpected += 1;
                continue;
            };
            if plan.certain[entry as usize]
                .binary_search(&event.node)
                .is_err()
            {
                verdict.unexpected += 1;
                continue;
            }
            if !by_input.insert((event.node, event.input)) {
                verdict.duplicated += 1;
                continue;
            }
            distinct[node] += 1;
            if !event.recovered {
                let last = last_position.entry((event.node, entry)).or_insert(position);
                if position < *last {
                    verdict.out_of_order += 1;
                }
                *last = (*last).max(position);
            }
        } else {
            if event.seq == 0 || event.seq > latched[node] {
                verdict.unexpected += 1;
                continue;
            }
            if !by_seq.insert((event.node, event.seq)) {
                verdict.duplicated += 1;
                continue;
            }
            distinct[node] += 1;
            if !event.recovered {
                let last = last_seq.entry(event.node).or_insert(event.seq);
                if event.seq < *last {
                    verdict.out_of_order += 1;
                }
                *last = (*last).max(event.seq);
            }
        }
    }
    for node in 0..plan.len() {
        let wanted = if plan.is_certain[node] {
            if latched[node] != inputs.reaching[node] {
                verdict.effect_mismatches += 1;
            }
            inputs.reaching[node]
        } else {
            latched[node]
        };
        verdict.lost += wanted.saturating_sub(distinct[node]);
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scenario;

    fn seen(node: u32, seq: u64, input: u128) -> Seen {
        Seen {
            node,
            seq,
            input,
            recovered: false,
        }
    }

    /// A chain of 3 with 2 messages: every figure is exact for a clean run, a lost output, a
    /// duplicate, a swap, an output of a message never injected, and a wrong latched seq.
    #[test]
    fn chain_figures() {
        let plan = Plan::new(&Scenario::Chain { length: 3 });
        let inputs = Inputs::new(&plan, &[vec![10, 11]]);
        let latched = [2, 2, 2];
        let clean: Vec<Seen> = (0..3)
            .flat_map(|node| [seen(node, 1, 10), seen(node, 2, 11)])
            .collect();
        let verdict = verify(&plan, &inputs, &latched, &clean);
        assert_eq!(
            verdict,
            Verdict {
                expected: 6,
                received: 6,
                ..Verdict::default()
            }
        );
        assert!(verdict.passed());

        let mut faulty = clean.clone();
        faulty.remove(5); // node 2, input 11: lost
        faulty.push(seen(0, 1, 10)); // a duplicate
        faulty.swap(2, 3); // node 1 gets 11 before 10
        faulty.push(seen(1, 3, 99)); // never injected
        let verdict = verify(&plan, &inputs, &[2, 2, 1], &faulty);
        assert_eq!(
            verdict,
            Verdict {
                expected: 6,
                received: 7,
                lost: 1,
                duplicated: 1,
                out_of_order: 1,
                unexpected: 1,
                effect_mismatches: 1,
            }
        );
        assert!(!verdict.passed());
    }

    /// Sensors: order is per entry (two sensors' messages may interleave at their room), and
    /// the threshold and merge nodes are checked by seq against what they latched.
    #[test]
    fn sensors_figures() {
        let plan = Plan::new(&Scenario::Sensors {
            sensors: 2,
            rooms: 1,
            zones: 1,
        });
        // nodes: sensor-0 (0), sensor-1 (1), room-0 (2), zone-0 (3), site (4)
        let inputs = Inputs::new(&plan, &[vec![1, 2], vec![3]]);
        assert_eq!(inputs.reaching, vec![2, 1, 3, 0, 0]);
        let latched = [2, 1, 3, 2, 2];
        let events = vec![
            seen(0, 1, 1),
            seen(1, 1, 3),
            seen(2, 1, 3),
            seen(2, 2, 1),
            seen(0, 2, 2),
            seen(2, 3, 2),
            seen(3, 1, 3),
            seen(4, 1, 3),
            seen(3, 2, 2),
            seen(4, 2, 2),
        ];
        let verdict = verify(&plan, &inputs, &latched, &events);
        assert_eq!(
            verdict,
            Verdict {
                expected: 10,
                received: 10,
                ..Verdict::default()
            }
        );
        let mut faulty = events.clone();
        faulty.swap(6, 8); // zone-0 seq 2 before seq 1
        faulty.remove(9); // site seq 2 lost
        faulty.push(seen(3, 3, 2)); // above the latched seq
        let verdict = verify(&plan, &inputs, &latched, &faulty);
        assert_eq!(
            (verdict.lost, verdict.out_of_order, verdict.unexpected),
            (1, 1, 1)
        );
        // A recovered output (read from history after a resync) is counted but not
        // order-checked.
        let mut recovered = events.clone();
        let late = recovered.remove(0);
        recovered.push(Seen {
            recovered: true,
            ..late
        });
        assert!(verify(&plan, &inputs, &latched, &recovered).passed());
    }
}
