//! Validation of a topology document: ids, functions and their attributes, sources, limits
//! and cycles.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use super::graph::Resolved;
use super::{TopologyDoc, TopologyError};
use crate::node::{NodeSpec, DEFAULT_MAX_SOURCES};
use crate::slug::validate_slug;

impl TopologyDoc {
    /// Checks the document and returns its resolved nodes (see
    /// [`TopologyDoc::resolved_nodes`]), or the first problem; this is what the API reports.
    /// The topology's own id is the caller's to check. Problems come in a fixed order: the
    /// graph (syntax, then edges naming unknown nodes, in graph order); then each node in
    /// document order (`invalid_slug`, `duplicate_node`, `unknown_function` or
    /// `invalid_attrs`, `unknown_source` for each unknown source, `too_many_sources`); then
    /// one `cycle`.
    ///
    /// `check_function(function, attrs)` is the function registry: `None` when no function
    /// has that name, else whether the attributes the document lists suit it, with one
    /// sentence per problem.
    pub fn validate(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Result<Vec<NodeSpec>, TopologyError> {
        let (nodes, mut errors) = self.check(limits, check_function)?;
        if errors.is_empty() {
            Ok(nodes)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Every problem [`TopologyDoc::validate`] finds, in the same order; empty when the
    /// document is valid. A graph syntax error stops the checks, so it comes alone.
    pub fn validate_all(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Vec<TopologyError> {
        match self.validated_nodes(limits, check_function) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    /// The resolved nodes of a valid document (see [`TopologyDoc::resolved_nodes`]), or every
    /// problem [`TopologyDoc::validate_all`] finds: both from one pass over the document.
    pub fn validated_nodes(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Result<Vec<NodeSpec>, Vec<TopologyError>> {
        match self.check(limits, check_function) {
            Ok((nodes, errors)) if errors.is_empty() => Ok(nodes),
            Ok((_, errors)) => Err(errors),
            Err(error) => Err(vec![error]),
        }
    }

    /// The resolved nodes and every problem, in the order [`TopologyDoc::validate`] gives.
    /// Linear in the size of the document.
    fn check(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Result<(Vec<NodeSpec>, Vec<TopologyError>), TopologyError> {
        let Resolved {
            nodes,
            mut errors,
            positions,
            first_of,
        } = self.resolve()?;
        // outputs[i]: the nodes that receive from node i (the first of its id), for the cycle
        // search; `added_for[from]` is the last receiver `from` was added for.
        let mut outputs: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut added_for: Vec<usize> = vec![usize::MAX; nodes.len()];
        for (index, node) in nodes.iter().enumerate() {
            if let Err(error) = validate_slug(&node.id) {
                errors.push(TopologyError::InvalidSlug { error });
            }
            let first = first_of[index];
            if first != index {
                errors.push(TopologyError::DuplicateNode {
                    id: node.id.clone(),
                    first: first + 1,
                    second: index + 1,
                });
            }
            // The attributes checked are the ones the document lists, not the resolved ones
            // (they are the same: resolving only adds sources).
            match check_function(&node.function, &node.attrs) {
                None => errors.push(TopologyError::UnknownFunction {
                    node: node.id.clone(),
                    function: node.function.clone(),
                }),
                Some(Err(problems)) => errors.push(TopologyError::InvalidAttrs {
                    node: node.id.clone(),
                    function: node.function.clone(),
                    problems,
                }),
                Some(Ok(())) => {}
            }
            for source in &node.sources {
                match positions.get(source.as_str()) {
                    // A node repeating an id takes no part in the cycle search.
                    Some(&from) if first == index && added_for[from] != index => {
                        added_for[from] = index;
                        outputs[from].push(index);
                    }
                    Some(_) => {}
                    None => errors.push(TopologyError::UnknownSource {
                        node: node.id.clone(),
                        from: source.clone(),
                        graph_line: None,
                    }),
                }
            }
            if node.sources.len() > limits.max_sources {
                errors.push(TopologyError::TooManySources {
                    node: node.id.clone(),
                    count: node.sources.len(),
                    limit: limits.max_sources,
                });
            }
        }
        if let Some(path) = find_cycle(&nodes, &outputs) {
            errors.push(TopologyError::Cycle { path });
        }
        Ok((nodes, errors))
    }
}

/// Whether a function exists and suits the attributes given: `None` when no function is
/// registered under the name, `Some(Err(problems))` with one sentence per problem when the
/// attributes do not suit it. See [`TopologyDoc::validate`].
pub type FunctionCheck<'a> =
    dyn Fn(&str, &Map<String, Value>) -> Option<Result<(), Vec<String>>> + 'a;

/// Limits on a topology, configurable at the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most sources one node may have, counting those from the graph
    /// ([`DEFAULT_MAX_SOURCES`] by default).
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sources: DEFAULT_MAX_SOURCES,
        }
    }
}

/// One cycle among `nodes` in the direction data flows, first and last node the same, or
/// `None`; `outputs[i]` lists the nodes that receive from node `i`, without repeats.
/// Deterministic: the shortest cycle through the first node in order that is on one.
///
/// Linear in nodes and edges: the strongly connected components tell which nodes lie on a
/// cycle, and one breadth-first search inside the first one's component finds the path.
fn find_cycle(nodes: &[NodeSpec], outputs: &[Vec<usize>]) -> Option<Vec<String>> {
    let self_loop = |index: usize| outputs[index].contains(&index);
    let component = components(outputs);
    let mut sizes = vec![0_usize; nodes.len()];
    for &id in &component {
        sizes[id] += 1;
    }
    let start = (0..nodes.len()).find(|&index| sizes[component[index]] > 1 || self_loop(index))?;
    // Breadth-first from `start` along outputs, inside its component (no path back to
    // `start` leaves it); the first edge back to `start` closes the shortest cycle through it.
    let mut parent: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut queue = VecDeque::from([start]);
    let mut visited = vec![false; nodes.len()];
    visited[start] = true;
    while let Some(at) = queue.pop_front() {
        for &next in &outputs[at] {
            if component[next] != component[start] {
                continue;
            }
            if next == start {
                let mut backwards = Vec::new();
                let mut step = at;
                while step != start {
                    backwards.push(step);
                    step = parent[step].unwrap_or(start);
                }
                let mut path = vec![nodes[start].id.clone()];
                path.extend(backwards.iter().rev().map(|&index| nodes[index].id.clone()));
                path.push(nodes[start].id.clone());
                return Some(path);
            }
            if !visited[next] {
                visited[next] = true;
                parent[next] = Some(at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The strongly connected component of each node of the graph `outputs` (node → the nodes
/// it has edges to), numbered from 0: Tarjan's algorithm, with an explicit stack so that a
/// chain of 100 000 nodes does not overflow the thread's.
fn components(outputs: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let count = outputs.len();
    let mut order = vec![UNSEEN; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack: Vec<usize> = Vec::new();
    let mut component = vec![UNSEEN; count];
    let mut next_order = 0;
    let mut next_component = 0;
    // The search's call stack: a node and the position of its next edge to follow.
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..count {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(frame) = calls.last_mut() {
            let at = frame.0;
            if let Some(&next) = outputs[at].get(frame.1) {
                frame.1 += 1;
                if order[next] == UNSEEN {
                    order[next] = next_order;
                    low[next] = next_order;
                    next_order += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    calls.push((next, 0));
                } else if on_stack[next] {
                    low[at] = low[at].min(order[next]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(caller, _)) = calls.last() {
                low[caller] = low[caller].min(low[at]);
            }
            if low[at] == order[at] {
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component[member] = next_component;
                    if member == at {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fixtures::{doc, first_error, ids, node, registry};
    use crate::topology::targets;
    use crate::ErrorCode;
    use serde_json::json;
    use std::collections::HashMap;

    /// `too_many_sources` counts the graph's edges too and uses the configured limit; 64 by
    /// default.
    #[test]
    fn too_many_sources_counts_the_graph() {
        assert_eq!(Limits::default().max_sources, 64);
        let mut nodes: Vec<NodeSpec> = (0..3)
            .map(|index| node(&format!("s{index}"), "pass", &[], json!({})))
            .collect();
        nodes.push(node("sink", "pass", &["s0", "s1"], json!({})));
        let topology = doc(Some("s2 --> sink"), nodes);
        let limits = Limits { max_sources: 2 };
        let error = topology.validate(&limits, &registry).unwrap_err();
        assert_eq!(error.code(), ErrorCode::TooManySources);
        assert_eq!(
            error.message(),
            "node \"sink\" has 3 sources, more than the limit of 2; gather some of them through an intermediate node"
        );
        assert!(topology
            .validate(&Limits { max_sources: 3 }, &registry)
            .is_ok());
    }

    /// `validate` gives the first problem in document order; `validate_all` gives them all in
    /// the same order.
    #[test]
    fn validate_gives_the_first_and_validate_all_every_problem() {
        let topology = doc(
            Some("ghost --> a\nb --> a"),
            vec![
                node("a", "nope", &["b"], json!({})),
                node("b", "average", &["a", "missing"], json!({})),
                node("Bad", "pass", &[], json!({})),
            ],
        );
        let codes: Vec<ErrorCode> = topology
            .validate_all(&Limits::default(), &registry)
            .iter()
            .map(TopologyError::code)
            .collect();
        assert_eq!(
            codes,
            vec![
                ErrorCode::UnknownSource,
                ErrorCode::UnknownFunction,
                ErrorCode::InvalidAttrs,
                ErrorCode::UnknownSource,
                ErrorCode::InvalidSlug,
                ErrorCode::Cycle,
            ]
        );
        let first = first_error(&topology);
        assert_eq!(
            first,
            TopologyError::UnknownSource {
                node: "a".to_owned(),
                from: "ghost".to_owned(),
                graph_line: Some(1),
            }
        );
        assert_eq!(
            topology.validate_all(&Limits::default(), &registry)[5],
            TopologyError::Cycle {
                path: ids(&["a", "b", "a"]),
            }
        );
        let broken_graph = doc(
            Some("a --> b\nb c"),
            vec![node("Bad", "nope", &[], json!({}))],
        );
        assert_eq!(
            broken_graph.validate_all(&Limits::default(), &registry),
            vec![TopologyError::InvalidGraph {
                line: 2,
                reason: "expected \"-->\" between node ids".to_owned(),
            }]
        );
    }

    /// Cycles are found and printed in the direction data flows: a self-loop, a 2-cycle, a
    /// 50-node ring, and a cycle downstream of and beside acyclic parts.
    #[test]
    fn cycles_are_reported_with_their_path() {
        let cycle_of = |topology: TopologyDoc| match first_error(&topology) {
            TopologyError::Cycle { path } => path,
            other => panic!("expected a cycle, got {other:?}"),
        };
        assert_eq!(
            cycle_of(doc(None, vec![node("a", "pass", &["a"], json!({}))])),
            ids(&["a", "a"])
        );
        assert_eq!(
            cycle_of(doc(
                Some("a --> b"),
                vec![
                    node("a", "pass", &["b"], json!({})),
                    node("b", "pass", &[], json!({})),
                ]
            )),
            ids(&["a", "b", "a"])
        );

        let ring: Vec<NodeSpec> = (0..50)
            .map(|index| {
                let source = format!("n{}", (index + 49) % 50);
                node(&format!("n{index}"), "pass", &[source.as_str()], json!({}))
            })
            .collect();
        let path = cycle_of(doc(None, ring));
        let expected: Vec<String> = (0..=50).map(|index| format!("n{}", index % 50)).collect();
        assert_eq!(path, expected);
        let error = first_error(&doc(
            None,
            vec![
                node("n0", "pass", &["n2"], json!({})),
                node("n1", "pass", &["n0"], json!({})),
                node("n2", "pass", &["n1"], json!({})),
            ],
        ));
        assert_eq!(
            error.message(),
            "the edges form a cycle: n0 -> n1 -> n2 -> n0; remove one of these edges"
        );

        // A feeds a b <-> c loop that feeds d; e -> c is a shortcut; the shortest cycle
        // through the first node on one (b) is b -> c -> b.
        assert_eq!(
            cycle_of(doc(
                Some("a --> b --> c --> b\nc --> d\nd --> e --> c"),
                ["a", "b", "c", "d", "e"]
                    .iter()
                    .map(|id| node(id, "pass", &[], json!({})))
                    .collect()
            )),
            ids(&["b", "c", "b"])
        );
        // Downstream nodes listed first are not on the cycle and are skipped.
        assert_eq!(
            cycle_of(doc(
                Some("y --> z --> y\nz --> x"),
                ["x", "y", "z"]
                    .iter()
                    .map(|id| node(id, "pass", &[], json!({})))
                    .collect()
            )),
            ids(&["y", "z", "y"])
        );
    }

    /// A deterministic LCG: the same sequence on every run, with no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    /// Whether the edges (from, to) among `count` nodes form a cycle, by depth-first search.
    fn has_cycle(count: usize, edge_list: &[(usize, usize)]) -> bool {
        fn visit(at: usize, edge_list: &[(usize, usize)], state: &mut [u8]) -> bool {
            state[at] = 1;
            for &(from, to) in edge_list {
                if from == at && (state[to] == 1 || (state[to] == 0 && visit(to, edge_list, state)))
                {
                    return true;
                }
            }
            state[at] = 2;
            false
        }
        let mut state = vec![0_u8; count];
        (0..count).any(|start| state[start] == 0 && visit(start, edge_list, &mut state))
    }

    /// The length of the shortest cycle through `start` (edges (from, to)), by breadth-first
    /// search; `None` when `start` is on no cycle.
    fn shortest_cycle(start: usize, edge_list: &[(usize, usize)]) -> Option<usize> {
        let mut distance: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut queue = VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            for &(from, to) in edge_list {
                if from != at {
                    continue;
                }
                if to == start {
                    return Some(distance[&at] + 1);
                }
                if !distance.contains_key(&to) {
                    distance.insert(to, distance[&at] + 1);
                    queue.push_back(to);
                }
            }
        }
        None
    }

    /// 1 000 random small graphs, edges split between `sources` and `graph`: the acyclic ones
    /// validate, and each cyclic one reports a shortest cycle, made of real edges, through the
    /// first node that is on one.
    #[test]
    fn random_graphs_validate_or_report_a_real_cycle() {
        let mut random = Lcg(42);
        let (mut acyclic_seen, mut cyclic_seen) = (0, 0);
        for _ in 0..1000 {
            let count = 1 + random.below(8) as usize;
            let forward_only = random.below(2) == 0;
            let mut edge_list = Vec::new();
            for from in 0..count {
                for to in 0..count {
                    if (forward_only && from >= to) || random.below(100) >= 25 {
                        continue;
                    }
                    edge_list.push((from, to));
                }
            }
            let mut nodes: Vec<NodeSpec> = (0..count)
                .map(|index| node(&format!("n{index}"), "pass", &[], json!({})))
                .collect();
            let mut graph = String::new();
            for &(from, to) in &edge_list {
                if random.below(2) == 0 {
                    nodes[to].sources.push(format!("n{from}"));
                } else {
                    graph.push_str(&format!("n{from} --> n{to};\n"));
                }
            }
            let topology = doc(Some(&graph), nodes);
            let cyclic = has_cycle(count, &edge_list);
            match topology.validate(&Limits::default(), &registry) {
                Ok(resolved) => {
                    assert!(!cyclic, "{topology:?}");
                    acyclic_seen += 1;
                    let mut resolved_edges: Vec<(usize, usize)> = resolved
                        .iter()
                        .enumerate()
                        .flat_map(|(to, node)| {
                            node.sources
                                .iter()
                                .map(move |source| (source[1..].parse().unwrap(), to))
                        })
                        .collect();
                    resolved_edges.sort_unstable();
                    assert_eq!(resolved_edges, edge_list);
                }
                Err(TopologyError::Cycle { path }) => {
                    assert!(cyclic, "{topology:?}");
                    cyclic_seen += 1;
                    assert!(path.len() >= 2 && path.first() == path.last(), "{path:?}");
                    for pair in path.windows(2) {
                        let from: usize = pair[0][1..].parse().unwrap();
                        let to: usize = pair[1][1..].parse().unwrap();
                        assert!(edge_list.contains(&(from, to)), "{path:?} {edge_list:?}");
                    }
                    // It starts at the first node on a cycle and is a shortest one through it.
                    let start = (0..count)
                        .find(|&index| shortest_cycle(index, &edge_list).is_some())
                        .unwrap();
                    assert_eq!(path[0], format!("n{start}"), "{edge_list:?}");
                    assert_eq!(
                        Some(path.len() - 1),
                        shortest_cycle(start, &edge_list),
                        "{path:?} {edge_list:?}"
                    );
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            acyclic_seen > 300 && cyclic_seen > 300,
            "{acyclic_seen} {cyclic_seen}"
        );
    }

    /// Large documents validate in time linear in their size: a node feeding 50 000 others,
    /// a 100 000-node chain (searched without recursion), and a long chain between two
    /// cycles, where the cycle reported is still the one through the first node on a cycle.
    #[test]
    fn large_graphs_validate() {
        let fan: Vec<NodeSpec> = std::iter::once(node("hub", "pass", &[], json!({})))
            .chain((0..50_000).map(|index| node(&format!("n{index}"), "pass", &["hub"], json!({}))))
            .collect();
        let fan_doc = doc(None, fan);
        let resolved = fan_doc.validate(&Limits::default(), &registry).unwrap();
        let hub_targets = &targets(&resolved)["hub"];
        assert_eq!(hub_targets.len(), 50_000);
        assert_eq!(
            (hub_targets[0].as_str(), hub_targets[49_999].as_str()),
            ("n0", "n49999")
        );

        let chain = |count: usize| -> Vec<NodeSpec> {
            (0..count)
                .map(|index| {
                    let source = format!("n{}", index.saturating_sub(1));
                    let sources: &[&str] = if index == 0 { &[] } else { &[&source] };
                    node(&format!("n{index}"), "pass", sources, json!({}))
                })
                .collect()
        };
        assert!(doc(None, chain(100_000))
            .validate(&Limits::default(), &registry)
            .is_ok());

        // The chain is listed first and lies between the cycles a <-> b (upstream) and
        // y <-> z (downstream): no chain node is on a cycle.
        let mut nodes = chain(50_000);
        nodes[0].sources.push("b".to_owned());
        nodes.push(node("z", "pass", &["y"], json!({})));
        nodes.push(node("y", "pass", &["n49999", "z"], json!({})));
        nodes.push(node("a", "pass", &["b"], json!({})));
        nodes.push(node("b", "pass", &["a"], json!({})));
        assert_eq!(
            first_error(&doc(None, nodes)),
            TopologyError::Cycle {
                path: ids(&["z", "y", "z"]),
            }
        );
    }
}
