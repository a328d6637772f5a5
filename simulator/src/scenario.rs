//! Scenario topologies and what each message injected must cause.

use protocol::{NodeSpec, TopologyDoc};
use serde_json::{json, Map, Value};

use crate::config::Scenario;

/// A scenario made concrete: the topology document, its entry nodes, and the nodes whose
/// output is certain (one per message that reaches them), which the verification checks
/// message by message.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The topology document to PUT.
    pub doc: TopologyDoc,
    /// Every node id; a node's index in this list is how the verification names it.
    pub nodes: Vec<String>,
    /// The indices of the nodes messages are injected into.
    pub entries: Vec<u32>,
    /// Per entry (in the order of `entries`), the nodes that output exactly once for each
    /// message injected into it: `pass` and `average` nodes downstream of it.
    pub certain: Vec<Vec<u32>>,
    /// Per node, whether it is certain (its outputs are checked message by message); the
    /// others (`threshold`, `merge`) output when their input says so and are checked by seq.
    pub is_certain: Vec<bool>,
    /// Per node, the indices of its sources.
    pub sources: Vec<Vec<u32>>,
    /// Nodes no other node sources from: where a message's trip ends.
    pub terminal: Vec<bool>,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sensors,
    Chain,
    Notes,
}

impl Plan {
    /// The plan of `scenario`.
    pub fn new(scenario: &Scenario) -> Plan {
        match *scenario {
            Scenario::Sensors {
                sensors,
                rooms,
                zones,
            } => sensors_plan(sensors, rooms, zones),
            Scenario::Chain { length } => chain_plan(length),
            Scenario::Notes { users } => notes_plan(users),
        }
    }

    /// One message for entry `entry` (an index into `entries`), the `k`-th sent to it.
    pub fn message(&self, rng: &mut impl rand::Rng, entry: usize, k: u64) -> Value {
        match self.kind {
            Kind::Sensors => json!({
                "celsius": (rng.random_range(150..350) as f64) / 10.0,
                "k": k,
            }),
            Kind::Chain => json!({ "k": k }),
            Kind::Notes => json!({
                "user": entry,
                "k": k,
                "text": note_text(rng),
            }),
        }
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the plan has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn build(kind: Kind, specs: Vec<NodeSpec>, entries: Vec<u32>, description: &str) -> Plan {
        let nodes: Vec<String> = specs.iter().map(|spec| spec.id.clone()).collect();
        let index: std::collections::HashMap<&str, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i as u32))
            .collect();
        let sources: Vec<Vec<u32>> = specs
            .iter()
            .map(|spec| spec.sources.iter().map(|s| index[s.as_str()]).collect())
            .collect();
        let is_certain: Vec<bool> = specs
            .iter()
            .map(|spec| matches!(spec.function.as_str(), "pass" | "average"))
            .collect();
        let mut terminal = vec![true; nodes.len()];
        let mut downstream: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
        for (node, srcs) in sources.iter().enumerate() {
            for &src in srcs {
                terminal[src as usize] = false;
                downstream[src as usize].push(node as u32);
            }
        }
        // A message reaches a certain node once per path through certain nodes only; the
        // scenarios are trees, so once.
        let certain = entries
            .iter()
            .map(|&entry| {
                let mut reached = Vec::new();
                let mut stack = vec![entry];
                while let Some(node) = stack.pop() {
                    if !is_certain[node as usize] {
                        continue;
                    }
                    reached.push(node);
                    stack.extend(downstream[node as usize].iter().copied());
                }
                reached.sort_unstable();
                reached
            })
            .collect();
        Plan {
            doc: TopologyDoc {
                description: Some(description.to_owned()),
                graph: None,
                archive: None,
                node: specs,
            },
            nodes,
            entries,
            certain,
            is_certain,
            sources,
            terminal,
            kind,
        }
    }
}

fn spec(id: String, function: &str, sources: Vec<String>, attrs: Value) -> NodeSpec {
    let attrs: Map<String, Value> = match attrs {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    NodeSpec {
        id,
        function: function.to_owned(),
        sources,
        attrs,
        archive: None,
    }
}

/// Zero-padded ids sort in order in listings.
fn id(prefix: &str, i: usize, count: usize) -> String {
    let width = count.saturating_sub(1).max(1).to_string().len();
    format!("{prefix}-{i:0width$}")
}

/// The ids of the `count` nodes named `prefix` that feed group `g` of `groups`: node `m`
/// feeds group `m % groups`.
fn group(prefix: &str, count: usize, g: usize, groups: usize) -> Vec<String> {
    (g..count)
        .step_by(groups)
        .map(|m| id(prefix, m, count))
        .collect()
}

fn sensors_plan(sensors: usize, rooms: usize, zones: usize) -> Plan {
    let sensors = sensors.max(1);
    let rooms = rooms.clamp(1, sensors);
    let zones = zones.clamp(1, rooms);
    let mut specs = Vec::with_capacity(sensors + rooms + zones + 1);
    for s in 0..sensors {
        specs.push(spec(id("sensor", s, sensors), "pass", vec![], json!({})));
    }
    for r in 0..rooms {
        specs.push(spec(
            id("room", r, rooms),
            "average",
            group("sensor", sensors, r, rooms),
            json!({"field": "/celsius"}),
        ));
    }
    for z in 0..zones {
        specs.push(spec(
            id("zone", z, zones),
            "threshold",
            group("room", rooms, z, zones),
            json!({"field": "/mean", "above": 25.0}),
        ));
    }
    specs.push(spec(
        "site".to_owned(),
        "merge",
        (0..zones).map(|z| id("zone", z, zones)).collect(),
        json!({}),
    ));
    Plan::build(
        Kind::Sensors,
        specs,
        (0..sensors as u32).collect(),
        "simulator: sensors → room averages → zone thresholds → site merge",
    )
}

fn chain_plan(length: usize) -> Plan {
    let length = length.max(1);
    let specs = (0..length)
        .map(|i| {
            let sources = if i == 0 {
                vec![]
            } else {
                vec![id("link", i - 1, length)]
            };
            spec(id("link", i, length), "pass", sources, json!({}))
        })
        .collect();
    Plan::build(
        Kind::Chain,
        specs,
        vec![0],
        "simulator: a chain of pass nodes",
    )
}

fn notes_plan(users: usize) -> Plan {
    let users = users.max(1);
    let specs = (0..users)
        .map(|u| spec(id("user", u, users), "pass", vec![], json!({})))
        .collect();
    Plan::build(
        Kind::Notes,
        specs,
        (0..users as u32).collect(),
        "simulator: one node per user, notes inserted and read back",
    )
}

fn note_text(rng: &mut impl rand::Rng) -> String {
    const WORDS: [&str; 16] = [
        "meeting", "call", "invoice", "deadline", "lunch", "review", "draft", "report", "travel",
        "budget", "release", "backup", "ticket", "design", "launch", "notes",
    ];
    (0..12)
        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sensors plan: every sensor feeds its room; a sensor's message is certain at the
    /// sensor and its room only; rooms are split evenly; the site merges every zone.
    #[test]
    fn sensors_plan_shape() {
        let plan = sensors_plan(20, 4, 2);
        assert_eq!(plan.len(), 20 + 4 + 2 + 1);
        assert_eq!(plan.nodes[0], "sensor-00");
        assert_eq!(plan.nodes[20], "room-0");
        assert_eq!(plan.nodes[24], "zone-0");
        assert_eq!(plan.nodes[26], "site");
        assert_eq!(plan.entries.len(), 20);
        // sensor 5 → room 1 (5 % 4).
        assert_eq!(plan.certain[5], vec![5, 21]);
        assert_eq!(plan.sources[21], vec![1, 5, 9, 13, 17]);
        assert_eq!(plan.sources[24], vec![20, 22]);
        assert_eq!(plan.sources[26], vec![24, 25]);
        assert!(!plan.is_certain[24] && !plan.is_certain[26]);
        assert_eq!(
            plan.terminal.iter().filter(|t| **t).count(),
            1,
            "only the site ends a trip"
        );
        let room = &plan.doc.node[21];
        assert_eq!(room.function, "average");
        assert_eq!(room.attrs["field"], "/celsius");
    }

    /// The chain: one entry, and every link is certain for it.
    #[test]
    fn chain_plan_shape() {
        let plan = chain_plan(100);
        assert_eq!(plan.entries, vec![0]);
        assert_eq!(plan.certain[0], (0..100).collect::<Vec<u32>>());
        assert_eq!(plan.nodes[99], "link-99");
        assert_eq!(plan.doc.node[99].sources, vec!["link-98".to_owned()]);
        assert!(plan.terminal[99] && !plan.terminal[98]);
    }

    /// Notes: each user is its own entry and its own certain node.
    #[test]
    fn notes_plan_shape() {
        let plan = notes_plan(10_000);
        assert_eq!(plan.nodes[42], "user-0042");
        assert_eq!(plan.certain[42], vec![42]);
        assert!(plan.terminal.iter().all(|t| *t));
    }
}
