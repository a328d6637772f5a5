//! Applying topology changes, without I/O: a [`Change`] and the topology as stored give the
//! new document, the reply, and the node changes to send to the nodes' partitions.
//!
//! Every change is checked against the whole topology as it would be afterwards, so a node
//! change cannot create a cycle or leave a source dangling any more than a whole document can.
//!
//! The costly part of a whole document, its validation, does not depend on the stored
//! topology: [`prepare`] does it before the topology's lease is taken, and
//! [`apply_prepared`] does the rest under the lease. Everything here is linear (or
//! `n log n`) in the size of the topology.

use std::collections::{HashMap, HashSet};

use protocol::store::{ApiError, Applied, Change};
use protocol::{
    merge_patch, plan, targets, Body, ErrorCode, FunctionDescription, Limits, NodeSpec, Plan,
    TopologyDoc,
};
use serde_json::{Map, Value};

/// The functions processors have published, by name.
#[derive(Clone, Debug, Default)]
pub struct Functions(HashMap<String, FunctionDescription>);

impl Functions {
    /// The registry made of `descriptions`.
    pub fn new(descriptions: impl IntoIterator<Item = FunctionDescription>) -> Functions {
        Functions(
            descriptions
                .into_iter()
                .map(|description| (description.name.clone(), description))
                .collect(),
        )
    }

    /// Whether `function` exists and `attrs` suit it; see `protocol::FunctionCheck`.
    pub fn check(
        &self,
        function: &str,
        attrs: &Map<String, Value>,
    ) -> Option<Result<(), Vec<String>>> {
        self.0
            .get(function)
            .map(|description| description.validate(attrs))
    }
}

/// A topology as the store holds it while it applies a batch of changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Current {
    /// The document; `None` when the topology does not exist.
    pub doc: Option<TopologyDoc>,
    /// The rev (kept when the topology is deleted).
    pub rev: u64,
}

/// What one applied change produced.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The reply.
    pub applied: Applied,
    /// The node changes to send, in order: `(node, body)`.
    pub sends: Vec<(String, Body)>,
}

/// A change with the work done that does not depend on the stored topology: a whole
/// document validated and resolved. See [`prepare`].
#[derive(Debug)]
pub struct Prepared {
    change: Change,
    /// For a `Put`: the document's resolved nodes, or why it is refused.
    next: Option<Result<Vec<NodeSpec>, ApiError>>,
}

impl Prepared {
    /// The change.
    pub fn change(&self) -> &Change {
        &self.change
    }
}

/// Does the part of `change` that needs no lease: validates a whole document against the
/// functions and limits and resolves its nodes. A refusal is kept for
/// [`apply_prepared`] to give, after the `If-Match` check, as [`apply`] would.
pub fn prepare(change: Change, functions: &Functions, limits: &Limits) -> Prepared {
    let next = match &change {
        Change::Put { doc, .. } => {
            let check =
                |function: &str, attrs: &Map<String, Value>| functions.check(function, attrs);
            Some(validated(doc, limits, &check))
        }
        _ => None,
    };
    Prepared { change, next }
}

/// Applies `change` to `current` (left unchanged on error or dry run). `topology` is the
/// topology's id, used in messages.
pub fn apply(
    topology: &str,
    current: &mut Current,
    if_match: Option<u64>,
    change: Change,
    functions: &Functions,
    limits: &Limits,
) -> Result<Outcome, ApiError> {
    let prepared = prepare(change, functions, limits);
    apply_prepared(topology, current, if_match, prepared, functions, limits)
}

/// [`apply`] of a change [`prepare`]d beforehand, with the same `functions` and `limits`.
pub fn apply_prepared(
    topology: &str,
    current: &mut Current,
    if_match: Option<u64>,
    prepared: Prepared,
    functions: &Functions,
    limits: &Limits,
) -> Result<Outcome, ApiError> {
    let Prepared { change, next } = prepared;
    if let Some(expected) = if_match {
        if expected != current.rev || current.doc.is_none() && !matches!(change, Change::Put { .. })
        {
            return Err(rev_mismatch(topology, expected, current));
        }
    }
    let check = |function: &str, attrs: &Map<String, Value>| functions.check(function, attrs);
    match change {
        Change::Put {
            doc,
            dry_run,
            reset_state,
        } => {
            let next = match next {
                Some(next) => next?,
                None => validated(&doc, limits, &check)?,
            };
            let old = resolved(current)?;
            let plan = plan(&old, &next);
            let created_topology = current.doc.is_none();
            let changed = current.doc.as_ref() != Some(&doc) || reset_state;
            if dry_run {
                return Ok(Outcome {
                    applied: Applied {
                        rev: current.rev,
                        created_topology,
                        plan,
                        ..Applied::default()
                    },
                    sends: Vec::new(),
                });
            }
            let sends = node_changes(&old, next, &plan, reset_state);
            if changed {
                current.rev += 1;
                current.doc = Some(doc);
            }
            Ok(Outcome {
                applied: Applied {
                    rev: current.rev,
                    created_topology,
                    plan,
                    ..Applied::default()
                },
                sends,
            })
        }
        Change::Delete => {
            let old = resolved(current)?;
            if current.doc.is_none() {
                return Err(topology_not_found(topology));
            }
            current.doc = None;
            current.rev += 1;
            Ok(Outcome {
                applied: Applied {
                    rev: current.rev,
                    plan: Plan {
                        deleted: old.iter().map(|node| node.id.clone()).collect(),
                        ..Plan::default()
                    },
                    ..Applied::default()
                },
                sends: old
                    .into_iter()
                    .map(|node| (node.id, Body::Delete))
                    .collect(),
            })
        }
        Change::CreateNode { node } => {
            let doc = existing(topology, current)?;
            if doc.node.iter().any(|known| known.id == node.id) {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!(
                        "topology {topology:?} already has a node {:?}; change it with PATCH \
                         or pick another id",
                        node.id
                    ),
                ));
            }
            let mut next_doc = doc.clone();
            next_doc.node.push(node.clone());
            commit_doc(current, next_doc, limits, &check, Some(node.id.as_str()))
        }
        Change::PatchNode {
            node,
            function,
            sources,
            archive,
        } => {
            let doc = existing(topology, current)?;
            let mut next_doc = if sources.is_some() {
                normalized(doc)?
            } else {
                doc.clone()
            };
            let spec = node_mut(topology, &mut next_doc, &node)?;
            if let Some(function) = function {
                spec.function = function;
            }
            if let Some(sources) = sources {
                spec.sources = sources;
            }
            if archive.is_some() {
                spec.archive = archive;
            }
            commit_doc(current, next_doc, limits, &check, Some(node.as_str()))
        }
        Change::PatchAttrs { node, patch } => {
            let doc = existing(topology, current)?;
            let mut next_doc = doc.clone();
            let spec = node_mut(topology, &mut next_doc, &node)?;
            merge_patch(&mut spec.attrs, &patch);
            match functions.check(&spec.function, &spec.attrs) {
                None => {
                    return Err(ApiError::from_problems(vec![
                        protocol::TopologyError::UnknownFunction {
                            node: node.clone(),
                            function: spec.function.clone(),
                        },
                    ]))
                }
                Some(Err(problems)) => {
                    return Err(ApiError::from_problems(vec![
                        protocol::TopologyError::InvalidAttrs {
                            node: node.clone(),
                            function: spec.function.clone(),
                            problems,
                        },
                    ]))
                }
                Some(Ok(())) => {}
            }
            let attrs = spec.attrs.clone();
            let spec = spec.clone();
            let changed = current.doc.as_ref() != Some(&next_doc);
            if changed {
                current.doc = Some(next_doc);
                current.rev += 1;
            }
            Ok(Outcome {
                applied: Applied {
                    rev: current.rev,
                    plan: Plan {
                        updated: if changed {
                            vec![node.clone()]
                        } else {
                            Vec::new()
                        },
                        ..Plan::default()
                    },
                    node: Some(spec),
                    attrs: Some(attrs),
                    ..Applied::default()
                },
                sends: if changed {
                    vec![(node, Body::PatchAttrs { patch })]
                } else {
                    Vec::new()
                },
            })
        }
        Change::DeleteNode { node, force } => {
            let doc = existing(topology, current)?;
            let nodes = resolved_doc(doc)?;
            if !nodes.iter().any(|known| known.id == node) {
                return Err(node_not_found(topology, &node));
            }
            let dependents: Vec<&str> = nodes
                .iter()
                .filter(|other| other.sources.contains(&node))
                .map(|other| other.id.as_str())
                .collect();
            if !dependents.is_empty() && !force {
                return Err(ApiError::new(
                    ErrorCode::HasDependents,
                    format!(
                        "node {node:?} is a source of {}; remove it from their sources first, \
                         or delete with ?force=true to remove those edges too",
                        dependents.join(", ")
                    ),
                ));
            }
            let mut next_doc = normalized(doc)?;
            next_doc.node.retain(|known| known.id != node);
            for other in &mut next_doc.node {
                other.sources.retain(|source| *source != node);
            }
            commit_doc(current, next_doc, limits, &check, None)
        }
    }
}

/// Validates `next_doc` as the topology's new document and makes it current; the reply
/// names `node` when the change was to one node.
fn commit_doc(
    current: &mut Current,
    next_doc: TopologyDoc,
    limits: &Limits,
    check: &protocol::FunctionCheck<'_>,
    node: Option<&str>,
) -> Result<Outcome, ApiError> {
    let next = validated(&next_doc, limits, check)?;
    let old = resolved(current)?;
    let plan = plan(&old, &next);
    let sends = node_changes(&old, next, &plan, false);
    let spec = node.and_then(|id| {
        let mut spec = next_doc.node.iter().find(|spec| spec.id == id).cloned()?;
        spec.archive = next_doc.archive_of(&spec);
        Some(spec)
    });
    // A change that changes nothing keeps the rev and sends nothing.
    if current.doc.as_ref() != Some(&next_doc) {
        current.doc = Some(next_doc);
        current.rev += 1;
    }
    Ok(Outcome {
        applied: Applied {
            rev: current.rev,
            plan,
            node: spec,
            ..Applied::default()
        },
        sends,
    })
}

/// The node changes that turn `old` into `next` (both resolved): a `put` for each node
/// created or updated, and for each node whose targets change (carrying no attributes, so
/// its state is left alone), then a `del` for each node deleted. With `reset_state`, every
/// node of `next` gets a `put` that drops its running state.
fn node_changes(
    old: &[NodeSpec],
    next: Vec<NodeSpec>,
    plan: &Plan,
    reset_state: bool,
) -> Vec<(String, Body)> {
    let old_targets = targets(old);
    let mut next_targets = targets(&next);
    let spec_changes: HashSet<&str> = plan
        .created
        .iter()
        .chain(&plan.updated)
        .map(String::as_str)
        .collect();
    let mut sends = Vec::new();
    for node in next {
        // Ids are unique in a valid document, so each node's list is taken once.
        let node_targets = next_targets.remove(&node.id).unwrap_or_default();
        let spec_changed = spec_changes.contains(node.id.as_str());
        let targets_changed = old_targets.get(&node.id) != Some(&node_targets);
        if reset_state || spec_changed || targets_changed {
            let mut spec = node;
            if !(reset_state || spec_changed) {
                spec.attrs = Map::new();
            }
            sends.push((
                spec.id.clone(),
                Body::Upsert {
                    spec,
                    targets: node_targets,
                    reset_state,
                },
            ));
        }
    }
    for deleted in &plan.deleted {
        sends.push((deleted.clone(), Body::Delete));
    }
    sends
}

/// The resolved nodes of `doc` after validation, or the API error listing every problem.
fn validated(
    doc: &TopologyDoc,
    limits: &Limits,
    check: &protocol::FunctionCheck<'_>,
) -> Result<Vec<NodeSpec>, ApiError> {
    doc.validated_nodes(limits, check)
        .map_err(ApiError::from_problems)
}

/// The current resolved nodes (none when the topology does not exist).
fn resolved(current: &Current) -> Result<Vec<NodeSpec>, ApiError> {
    match &current.doc {
        Some(doc) => resolved_doc(doc),
        None => Ok(Vec::new()),
    }
}

fn resolved_doc(doc: &TopologyDoc) -> Result<Vec<NodeSpec>, ApiError> {
    doc.resolved_nodes()
        .map_err(|error| ApiError::from_problems(vec![error]))
}

/// `doc` with its graph's edges moved into the nodes' `sources` and no `graph`: the form a
/// change to one node's edges is made in.
fn normalized(doc: &TopologyDoc) -> Result<TopologyDoc, ApiError> {
    if doc.graph.is_none() {
        return Ok(doc.clone());
    }
    // Resolved nodes say whether each is archived; the document says it as written.
    let mut nodes = resolved_doc(doc)?;
    for (node, written) in nodes.iter_mut().zip(&doc.node) {
        node.archive = written.archive;
    }
    Ok(TopologyDoc {
        description: doc.description.clone(),
        graph: None,
        archive: doc.archive,
        node: nodes,
    })
}

fn existing<'a>(topology: &str, current: &'a Current) -> Result<&'a TopologyDoc, ApiError> {
    current
        .doc
        .as_ref()
        .ok_or_else(|| topology_not_found(topology))
}

fn node_mut<'a>(
    topology: &str,
    doc: &'a mut TopologyDoc,
    node: &str,
) -> Result<&'a mut NodeSpec, ApiError> {
    doc.node
        .iter_mut()
        .find(|spec| spec.id == node)
        .ok_or_else(|| node_not_found(topology, node))
}

/// 404 for a topology.
pub fn topology_not_found(topology: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("there is no topology {topology:?}; create it with PUT /v1/topologies/{topology}"),
    )
}

/// 404 for a node.
pub fn node_not_found(topology: &str, node: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("topology {topology:?} has no node {node:?}"),
    )
}

fn rev_mismatch(topology: &str, expected: u64, current: &Current) -> ApiError {
    let message = match current.doc {
        Some(_) => format!(
            "topology {topology:?} is at rev {}, not {expected}; read it again and retry with \
             If-Match: {}",
            current.rev, current.rev
        ),
        None => format!(
            "topology {topology:?} does not exist, so it is not at rev {expected}; create it \
             without If-Match"
        ),
    };
    ApiError::new(ErrorCode::RevMismatch, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Param, ParamKind};
    use serde_json::json;

    fn functions() -> Functions {
        let describe = |name: &str, params: Vec<Param>| FunctionDescription {
            name: name.to_owned(),
            description: String::new(),
            params,
        };
        Functions::new([
            describe("pass", vec![]),
            describe(
                "count",
                vec![Param::state("count", ParamKind::Integer, "seen")],
            ),
            describe(
                "threshold",
                vec![Param::setting("above", ParamKind::Number, "limit")],
            ),
        ])
    }

    fn doc(value: Value) -> TopologyDoc {
        TopologyDoc::from_json(&value.to_string()).unwrap()
    }

    fn run(current: &mut Current, change: Change) -> Result<Outcome, ApiError> {
        apply("t", current, None, change, &functions(), &Limits::default())
    }

    fn put(value: Value) -> Change {
        Change::Put {
            doc: doc(value),
            dry_run: false,
            reset_state: false,
        }
    }

    /// A new source gets a `put` that carries its new targets and no attributes, so the
    /// running state of a node whose own spec did not change is left alone.
    #[test]
    fn target_changes_send_puts_without_attributes() {
        let mut current = Current::default();
        run(
            &mut current,
            put(json!({"node": [{"id": "a", "function": "count", "attrs": {"count": 5}}]})),
        )
        .unwrap();
        assert_eq!(current.rev, 1);
        let outcome = run(
            &mut current,
            put(
                json!({"node": [{"id": "a", "function": "count", "attrs": {"count": 5}},
                                {"id": "b", "function": "pass", "sources": ["a"]}]}),
            ),
        )
        .unwrap();
        assert_eq!(outcome.applied.plan.created, ["b"]);
        assert_eq!(outcome.applied.plan.updated, Vec::<String>::new());
        let Body::Upsert {
            spec,
            targets,
            reset_state,
        } = &outcome.sends[0].1
        else {
            panic!("{:?}", outcome.sends);
        };
        assert_eq!(
            (outcome.sends[0].0.as_str(), targets.as_slice()),
            ("a", ["b".to_owned()].as_slice())
        );
        assert!(spec.attrs.is_empty() && !reset_state);
        assert_eq!(outcome.sends[1].0, "b");
        assert_eq!(current.rev, 2);
    }

    /// `reset_state` sends every node a `put` that drops its running state.
    #[test]
    fn reset_state_reaches_every_node() {
        let mut current = Current::default();
        let nodes =
            json!({"node": [{"id": "a", "function": "pass"}, {"id": "b", "function": "count"}]});
        run(&mut current, put(nodes.clone())).unwrap();
        let outcome = run(
            &mut current,
            Change::Put {
                doc: doc(nodes),
                dry_run: false,
                reset_state: true,
            },
        )
        .unwrap();
        assert_eq!(outcome.sends.len(), 2);
        assert!(outcome.sends.iter().all(|(_, body)| matches!(
            body,
            Body::Upsert {
                reset_state: true,
                ..
            }
        )));
    }

    /// A refused change leaves the topology as it was; a dry run too, and sends nothing.
    #[test]
    fn refusals_and_dry_runs_change_nothing() {
        let mut current = Current::default();
        run(
            &mut current,
            put(json!({"node": [{"id": "a", "function": "pass"}]})),
        )
        .unwrap();
        let before = current.clone();
        let error = run(
            &mut current,
            Change::CreateNode {
                node: NodeSpec {
                    id: "b".into(),
                    function: "threshold".into(),
                    sources: vec!["a".into()],
                    attrs: json!({"above": "x"}).as_object().unwrap().clone(),
                    archive: None,
                },
            },
        )
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidAttrs);
        assert_eq!(current, before);
        for unchanged in [
            Change::PatchAttrs {
                node: "a".into(),
                patch: Map::new(),
            },
            Change::PatchNode {
                node: "a".into(),
                function: None,
                sources: None,
                archive: None,
            },
        ] {
            let outcome = run(&mut current, unchanged).unwrap();
            assert!(outcome.sends.is_empty());
            assert_eq!(
                current, before,
                "a change that changes nothing keeps the rev"
            );
        }
        let dry = run(
            &mut current,
            Change::Put {
                doc: doc(json!({"node": []})),
                dry_run: true,
                reset_state: false,
            },
        )
        .unwrap();
        assert_eq!(dry.applied.plan.deleted, ["a"]);
        assert!(dry.sends.is_empty());
        assert_eq!(current, before);
        let stale = apply(
            "t",
            &mut current,
            Some(9),
            Change::Delete,
            &functions(),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(stale.code, ErrorCode::RevMismatch);
    }

    /// A document prepared ahead (outside the lease) applies as it would directly, and its
    /// refusal still comes after the `If-Match` check.
    #[test]
    fn prepared_changes_apply_like_direct_ones() {
        let valid = put(json!({"graph": "a --> b",
                               "node": [{"id": "a", "function": "pass"},
                                        {"id": "b", "function": "count"}]}));
        let (mut direct, mut ahead) = (Current::default(), Current::default());
        let expected = run(&mut direct, valid.clone()).unwrap();
        let prepared = prepare(valid, &functions(), &Limits::default());
        let outcome = apply_prepared(
            "t",
            &mut ahead,
            None,
            prepared,
            &functions(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((outcome, ahead), (expected, direct));

        let invalid = put(json!({"node": [{"id": "a", "function": "nope"}]}));
        let apply_with = |if_match| {
            let prepared = prepare(invalid.clone(), &functions(), &Limits::default());
            let mut current = Current::default();
            apply_prepared(
                "t",
                &mut current,
                if_match,
                prepared,
                &functions(),
                &Limits::default(),
            )
            .unwrap_err()
            .code
        };
        assert_eq!(apply_with(None), ErrorCode::UnknownFunction);
        assert_eq!(apply_with(Some(3)), ErrorCode::RevMismatch);
    }

    /// A document of 100 000 nodes, a node feeding 20 000 others among them, applies with
    /// one `put` per node carrying its targets; the same document again sends nothing.
    #[test]
    fn large_documents_apply() {
        let mut nodes = vec![json!({"id": "hub", "function": "pass"})];
        nodes.extend((0..20_000).map(
            |index| json!({"id": format!("fan{index}"), "function": "pass", "sources": ["hub"]}),
        ));
        let mut graph = String::new();
        for index in 0..79_999 {
            nodes.push(json!({"id": format!("chain{index}"), "function": "count"}));
            if index > 0 {
                graph.push_str(&format!("chain{} --> chain{index}\n", index - 1));
            }
        }
        let document = json!({"graph": graph, "node": nodes});
        let mut current = Current::default();
        let outcome = run(&mut current, put(document.clone())).unwrap();
        assert_eq!(outcome.applied.plan.created.len(), 100_000);
        assert_eq!(outcome.sends.len(), 100_000);
        let Body::Upsert { targets, .. } = &outcome.sends[0].1 else {
            panic!("{:?}", outcome.sends[0]);
        };
        assert_eq!(targets.len(), 20_000);
        assert_eq!(
            outcome.sends[20_001].1,
            Body::Upsert {
                spec: NodeSpec {
                    id: "chain0".into(),
                    function: "count".into(),
                    sources: vec![],
                    attrs: Map::new(),
                    archive: None,
                },
                targets: vec!["chain1".into()],
                reset_state: false,
            }
        );
        let again = run(&mut current, put(document)).unwrap();
        assert!(again.sends.is_empty() && again.applied.plan.is_empty());
        assert_eq!(current.rev, 1);
    }

    /// Deleting a node others source from needs `force`, which also removes the edges and
    /// moves the graph's edges into `sources`.
    #[test]
    fn delete_with_dependents() {
        let mut current = Current::default();
        run(
            &mut current,
            put(json!({"graph": "a --> b --> c",
                       "node": [{"id": "a", "function": "pass"}, {"id": "b", "function": "pass"},
                                {"id": "c", "function": "pass"}]})),
        )
        .unwrap();
        let refused = run(
            &mut current,
            Change::DeleteNode {
                node: "b".into(),
                force: false,
            },
        )
        .unwrap_err();
        assert_eq!(refused.code, ErrorCode::HasDependents);
        assert!(
            refused.message.contains("source of c"),
            "{}",
            refused.message
        );
        let outcome = run(
            &mut current,
            Change::DeleteNode {
                node: "b".into(),
                force: true,
            },
        )
        .unwrap();
        assert_eq!(outcome.applied.plan.deleted, ["b"]);
        assert_eq!(outcome.applied.plan.updated, ["c"]);
        let doc = current.doc.unwrap();
        assert_eq!(doc.graph, None);
        assert!(doc.node.iter().all(|node| node.sources.is_empty()));
    }
}
