//! Running one batch of a partition's queue through the node functions: pure computation,
//! no I/O. The result is a [`Plan`]: everything the batch's single fenced commit must write —
//! node records, replay buffers ([`Plan::node_writes`], with their trim and re-create rules),
//! output events, forwards, dead letters, retries and acks. The partition only turns it into
//! one fenced write (`partition.rs`), through `layout` for where each thing is kept.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use protocol::{
    deeper_than, partition_of, Body, Edge, Envelope, Message, NodeState as Health, OutputEvent,
    Timestamp, ENVELOPE_VERSION, MAX_DATA_DEPTH,
};
use redpill::Delivery;

use crate::function::{Input, NodeContext};
use crate::registry::Registry;
use layout::{NodeRecord, NodeWrite};
use protocol::merge_patch;

/// What a batch changes, ready to commit.
#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes changed by the batch, by `topology/node`: the new state, or `None` if deleted.
    pub dirty: HashMap<String, Option<NodeRecord>>,
    /// Nodes deleted and made again within the batch, by `topology/node`: nothing of their
    /// former selves may remain.
    pub remade: HashSet<String>,
    /// Input ids to acknowledge in the commit (processed, dropped as repeats, or dead-lettered).
    pub acks: Vec<String>,
    /// Inputs whose function failed and will be tried again after the queue's backoff, given
    /// back in the commit: id and error (shown on the node; the queue keeps no error).
    pub retries: Vec<(String, String)>,
    /// Inputs that go to the dead-letter list.
    pub dead: Vec<DeadInput>,
    /// Output events, in order.
    pub outputs: Vec<PlannedOutput>,
    /// Forwards to nodes of this same partition: id and envelope.
    pub local: Vec<(String, Vec<u8>)>,
    /// Forwards to other partitions: partition, id and envelope, in order.
    pub remote: Vec<(u32, String, Vec<u8>)>,
    /// Forwards dropped because their edge had already delivered that output.
    pub repeats: u64,
    /// Function calls that failed (to be retried or dead-lettered).
    pub function_errors: u64,
}

/// One output event of the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOutput {
    /// Its topology.
    pub topology: String,
    /// Its node, as `topology/node`.
    pub key: String,
    /// Its seq.
    pub seq: u64,
    /// The event as JSON.
    pub text: String,
    /// When the inject that caused it was accepted, Unix ms.
    pub injected_at_ms: i64,
    /// Whether it goes to the archive (the output topic).
    pub archive: bool,
}

/// An input that goes to the dead-letter list.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadInput {
    /// The message id.
    pub id: String,
    /// The envelope as queued.
    pub body: Vec<u8>,
    /// Failed attempts, this one included.
    pub attempts: u32,
    /// Why, starting with a reason code (`node_deleted: …`).
    pub error: String,
}

/// What the batch runs with.
pub struct Context {
    /// This partition.
    pub partition: u32,
    /// The deployment's partition count.
    pub partitions: u32,
    /// Deliveries before a failing message is dead-lettered.
    pub max_attempts: u32,
    /// The functions.
    pub registry: Arc<Registry>,
    /// The time, Unix ms, for every function call and output of the batch.
    pub now_ms: i64,
}

/// Runs `batch` in order against `nodes` (not changed: changes go to the plan) and returns
/// what to commit. Messages for one node are applied one after the other, in queue order.
pub fn run(nodes: &HashMap<String, NodeRecord>, batch: &[Delivery], context: &Context) -> Plan {
    let mut plan = Plan::default();
    for delivery in batch {
        let envelope = match Envelope::from_bytes(&delivery.body) {
            Ok(envelope) => envelope,
            Err(err) => {
                plan.dead_letter(
                    delivery,
                    format!("undecodable: the queued message is not a Gorgon envelope ({err})"),
                );
                continue;
            }
        };
        let key = format!("{}/{}", envelope.topology, envelope.node);
        match envelope.body {
            Body::Upsert {
                spec,
                targets,
                reset_state,
            } => {
                let state = match plan.take_current(nodes, &key) {
                    Some(mut state) => {
                        state.update(spec, targets, reset_state);
                        state
                    }
                    None => {
                        if nodes.contains_key(&key) {
                            // Deleted earlier in this batch and made again.
                            plan.remade.insert(key.clone());
                        }
                        NodeRecord::new(spec, targets)
                    }
                };
                plan.dirty.insert(key, Some(state));
                plan.acks.push(delivery.id.clone());
            }
            Body::PatchAttrs { patch } => match plan.take_current(nodes, &key) {
                Some(mut state) => {
                    merge_patch(&mut state.attrs, &patch);
                    plan.dirty.insert(key, Some(state));
                    plan.acks.push(delivery.id.clone());
                }
                None => plan.dead_letter(delivery, node_missing(&key)),
            },
            Body::Delete => {
                plan.dirty.insert(key, None);
                plan.acks.push(delivery.id.clone());
            }
            Body::Message(message) => {
                plan.message(
                    nodes,
                    delivery,
                    &envelope.topology,
                    &envelope.node,
                    key,
                    message,
                    context,
                );
            }
        }
    }
    plan
}

/// Why a function's result cannot be kept, when its outputs or the attributes it left nest
/// deeper than [`MAX_DATA_DEPTH`]: nothing in the mesh could read them back.
fn too_deep(
    outputs: &[serde_json::Value],
    attrs: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    if let Some(index) = outputs
        .iter()
        .position(|output| deeper_than(output, MAX_DATA_DEPTH))
    {
        return Some(format!(
            "output_too_deep: output {} of this message nests arrays and objects deeper than \
             the {MAX_DATA_DEPTH} levels an output may have; nothing was output and the \
             node's attributes were left as they were",
            index + 1
        ));
    }
    attrs
        .values()
        .any(|value| deeper_than(value, MAX_DATA_DEPTH - 1))
        .then(|| {
            format!(
                "output_too_deep: the function left attributes nesting arrays and objects \
                 deeper than the {MAX_DATA_DEPTH} levels they may have; they were left as they \
                 were"
            )
        })
}

fn node_missing(key: &str) -> String {
    format!("node_deleted: node {key} does not exist (deleted, or never created)")
}

impl Plan {
    /// What the batch writes to its nodes' keys, given the nodes as they were before it
    /// (`before`) and the replay buffer length to keep (`replay_buffer`; 0 keeps none):
    ///
    /// - a changed node's record, only the fields that changed (every field of a new node);
    /// - a deleted node's record, buffer and index entry removed;
    /// - each node's replay buffer: one append of the batch's outputs, and a trim back to
    ///   `replay_buffer` only when the node's seq crosses a multiple of a quarter of it, so a
    ///   buffer holds at least that many (when there are) and at most a quarter more, plus one
    ///   batch;
    /// - a node deleted and made again within the batch is deleted, then written whole: no
    ///   field (a latched output) and no replay buffer of its former self remains, and it
    ///   counts its seqs from 1 again.
    pub fn node_writes<'a>(
        &'a self,
        before: &HashMap<String, NodeRecord>,
        replay_buffer: usize,
    ) -> Vec<NodeWrite<'a>> {
        // With a replay buffer, its newest event is the latched output, not stored again in
        // the record (`layout`'s node docs).
        let buffered = replay_buffer > 0;
        let mut writes = Vec::with_capacity(self.dirty.len() * 2);
        // A deleted node's floor: the highest seq it reached, in the batch or before (when
        // made again in the batch, its new life's outputs count too: a floor too high only
        // sends more history reads to the archive).
        let last_seq = |member: &str| {
            let batch = self.outputs.iter().filter(|output| output.key == member);
            batch
                .map(|output| output.seq)
                .chain(before.get(member).map(|record| record.seq))
                .max()
                .unwrap_or(0)
        };
        for (member, state) in &self.dirty {
            let Some(state) = state else {
                writes.push(NodeWrite::Delete {
                    member,
                    last_seq: last_seq(member),
                });
                continue;
            };
            let was = match self.remade.contains(member) {
                true => {
                    writes.push(NodeWrite::Delete {
                        member,
                        last_seq: last_seq(member),
                    });
                    None
                }
                false => before.get(member),
            };
            let fields = state.changed_fields(was, buffered);
            let dropped = state.dropped_fields(was, buffered);
            if !fields.is_empty() || !dropped.is_empty() {
                writes.push(NodeWrite::Record {
                    member,
                    fields,
                    dropped,
                    created: was.is_none(),
                });
            }
        }
        if replay_buffer == 0 {
            return writes;
        }
        let bound = replay_buffer as u64;
        let slack = (bound / 4).max(1);
        let mut by_node: HashMap<&str, Vec<&str>> = HashMap::new();
        for output in &self.outputs {
            by_node.entry(&output.key).or_default().push(&output.text);
        }
        for (member, mut events) in by_node {
            let Some(Some(state)) = self.dirty.get(member) else {
                continue; // Deleted later in the batch.
            };
            if self.remade.contains(member) {
                // Only the new life's outputs, its last `seq` of the batch: the former life's
                // stay out of the buffer it starts.
                events.drain(..events.len().saturating_sub(state.seq as usize));
            }
            let before = state.seq.saturating_sub(events.len() as u64);
            let trim = state.seq > bound && before / slack != state.seq / slack;
            writes.push(NodeWrite::Replay {
                member,
                events,
                keep: trim.then_some(bound),
            });
        }
        writes
    }

    /// The node's state as the batch has left it so far, for changing and putting back into
    /// `dirty`: taken out of the plan when the batch changed it already (a node's second and
    /// later messages of a batch cost no copy), else cloned from `nodes`. `None` when the node
    /// does not exist (a deletion earlier in the batch stays in the plan).
    fn take_current(
        &mut self,
        nodes: &HashMap<String, NodeRecord>,
        key: &str,
    ) -> Option<NodeRecord> {
        match self.dirty.remove(key) {
            Some(Some(state)) => Some(state),
            Some(None) => {
                self.dirty.insert(key.to_owned(), None);
                None
            }
            None => nodes.get(key).cloned(),
        }
    }

    fn dead_letter(&mut self, delivery: &Delivery, error: String) {
        self.dead.push(DeadInput {
            id: delivery.id.clone(),
            body: delivery.body.to_vec(),
            attempts: delivery.attempts + 1,
            error,
        });
        self.acks.push(delivery.id.clone());
    }

    #[allow(clippy::too_many_arguments)] // One call site; the parts are the message's.
    fn message(
        &mut self,
        nodes: &HashMap<String, NodeRecord>,
        delivery: &Delivery,
        topology: &str,
        node: &str,
        key: String,
        message: Message,
        context: &Context,
    ) {
        let Some(mut state) = self.take_current(nodes, &key) else {
            self.dead_letter(delivery, node_missing(&key));
            return;
        };
        if let Some(edge) = &message.from {
            if edge.seq <= state.hwm.get(&edge.node).copied().unwrap_or(0) {
                // A forward repeated after a crash: this output was applied already. The
                // state goes back unchanged (for a node the batch had not changed, a record
                // with nothing to write).
                self.dirty.insert(key, Some(state));
                self.repeats += 1;
                self.acks.push(delivery.id.clone());
                return;
            }
        }
        let Some(function) = context.registry.get(&state.function) else {
            let error = format!(
                "unknown_function: this processor has no function {:?}; run a processor binary that registers it",
                state.function
            );
            self.fail(delivery, state, key, &message, error, context, true);
            return;
        };
        let mut attrs = state.attrs.clone();
        let input = Input {
            data: &message.data,
            source: message.from.as_ref().map(|edge| edge.node.as_str()),
            msg_id: &delivery.id,
            input_id: &message.input_id,
        };
        let called = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = NodeContext {
                topology,
                node,
                sources: &state.sources,
                attrs: &mut attrs,
                now_ms: context.now_ms,
            };
            function.call(&input, &mut ctx)
        }));
        let outputs = match called {
            Ok(Ok(outputs)) => outputs,
            Ok(Err(err)) => {
                self.fail(
                    delivery,
                    state,
                    key,
                    &message,
                    format!("function_error: {err}"),
                    context,
                    true,
                );
                return;
            }
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                self.fail(
                    delivery,
                    state,
                    key,
                    &message,
                    format!("function_panic: {detail}"),
                    context,
                    true,
                );
                return;
            }
        };
        if let Some(error) = too_deep(&outputs, &attrs) {
            // The same call would make the same result: dead-letter it now.
            self.fail(delivery, state, key, &message, error, context, false);
            return;
        }
        state.attrs = attrs;
        if let Some(edge) = &message.from {
            state.hwm.insert(edge.node.clone(), edge.seq);
        }
        if state.status.state == Health::Error {
            state.status.state = Health::Ok;
        }
        for data in outputs {
            state.seq += 1;
            let event = OutputEvent {
                topology: topology.to_owned(),
                node: node.to_owned(),
                seq: state.seq,
                msg_id: redpill::new_id(),
                input_id: message.input_id.clone(),
                injected_at: Timestamp::from_unix_ms(message.injected_at_ms),
                ts: Timestamp::from_unix_ms(context.now_ms),
                data,
            };
            for target in &state.targets {
                let forward = Envelope {
                    version: ENVELOPE_VERSION,
                    topology: topology.to_owned(),
                    node: target.clone(),
                    body: Body::Message(Message {
                        input_id: message.input_id.clone(),
                        injected_at_ms: message.injected_at_ms,
                        from: Some(Edge {
                            node: node.to_owned(),
                            seq: state.seq,
                        }),
                        data: event.data.clone(),
                    }),
                };
                let id = format!("{}.{target}", event.msg_id);
                let partition = partition_of(topology, target, context.partitions);
                if partition == context.partition {
                    self.local.push((id, forward.to_bytes()));
                } else {
                    self.remote.push((partition, id, forward.to_bytes()));
                }
            }
            let text = serde_json::to_string(&event).expect("an output event serializes");
            state.output = Some(text.clone());
            self.outputs.push(PlannedOutput {
                topology: topology.to_owned(),
                key: key.clone(),
                seq: state.seq,
                text,
                injected_at_ms: message.injected_at_ms,
                archive: state.archive,
            });
        }
        self.dirty.insert(key, Some(state));
        self.acks.push(delivery.id.clone());
    }

    /// A failed call: try again later (when `retry` and attempts are left), or dead-letter it.
    /// Either way the node shows the error.
    #[allow(clippy::too_many_arguments)] // Private; the parts are the failed call's.
    fn fail(
        &mut self,
        delivery: &Delivery,
        mut state: NodeRecord,
        key: String,
        message: &Message,
        error: String,
        context: &Context,
        retry: bool,
    ) {
        self.function_errors += 1;
        state.status.state = Health::Error;
        state.status.last_error = Some(error.clone());
        if !retry || delivery.attempts + 1 >= context.max_attempts {
            state.status.dead_letters += 1;
            if let Some(edge) = &message.from {
                // Consumed, if by the dead-letter list: a repeat of it is still a repeat.
                state.hwm.insert(edge.node.clone(), edge.seq);
            }
            self.dirty.insert(key, Some(state));
            self.dead_letter(delivery, error);
        } else {
            self.dirty.insert(key, Some(state));
            self.retries.push((delivery.id.clone(), error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use protocol::NodeSpec;
    use serde_json::{json, Value};

    fn upsert(node: &str, function: &str, targets: &[&str], attrs: Value) -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            topology: "t".into(),
            node: node.into(),
            body: Body::Upsert {
                spec: NodeSpec {
                    id: node.into(),
                    function: function.into(),
                    sources: Vec::new(),
                    attrs: attrs.as_object().cloned().unwrap_or_default(),
                    archive: None,
                },
                targets: targets.iter().map(|t| (*t).to_owned()).collect(),
                reset_state: false,
            },
        }
    }

    fn delivery(id: &str, envelope: &Envelope, attempts: u32) -> Delivery {
        Delivery {
            id: id.into(),
            body: Bytes::from(envelope.to_bytes()),
            attempts,
        }
    }

    fn context(registry: &Registry) -> Context {
        Context {
            partition: protocol::partition_of("t", "a", 8),
            partitions: 8,
            max_attempts: 3,
            registry: Arc::new(registry.clone()),
            now_ms: 1_700_000_000_000,
        }
    }

    fn apply(nodes: &mut HashMap<String, NodeRecord>, plan: Plan) {
        for (key, state) in plan.dirty {
            match state {
                Some(state) => nodes.insert(key, state),
                None => nodes.remove(&key),
            };
        }
    }

    /// Messages run in order through the node's function; each output gets the next seq, is
    /// latched, and is forwarded to every target, locally or through the outbox.
    #[test]
    fn runs_messages_in_order_and_forwards_outputs() {
        let registry = Registry::builtins();
        let context = context(&registry);
        let mut nodes = HashMap::new();
        let local_target = (0..100)
            .map(|i| format!("n{i}"))
            .find(|n| partition_of("t", n, 8) == context.partition)
            .unwrap();
        let remote_target = (0..100)
            .map(|i| format!("n{i}"))
            .find(|n| partition_of("t", n, 8) != context.partition)
            .unwrap();
        let plan = run(
            &nodes,
            &[delivery(
                "u1",
                &upsert("a", "count", &[&local_target, &remote_target], json!({})),
                0,
            )],
            &context,
        );
        assert_eq!(plan.acks, ["u1"]);
        apply(&mut nodes, plan);

        let batch: Vec<Delivery> = (0..3)
            .map(|i| {
                delivery(
                    &format!("m{i}"),
                    &Envelope::inject("t", "a", &format!("in{i}"), 5, json!({"x": i})),
                    0,
                )
            })
            .collect();
        let plan = run(&nodes, &batch, &context);
        assert_eq!(plan.acks, ["m0", "m1", "m2"]);
        assert_eq!(plan.outputs.len(), 3);
        let events: Vec<OutputEvent> = plan
            .outputs
            .iter()
            .map(|output| serde_json::from_str(&output.text).unwrap())
            .collect();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            events.iter().map(|e| e.data.clone()).collect::<Vec<_>>(),
            [
                json!({"count": 1}),
                json!({"count": 2}),
                json!({"count": 3})
            ]
        );
        assert_eq!(events[2].input_id, "in2");
        assert_eq!(events[0].injected_at.unix_ms(), 5);
        assert_eq!(plan.local.len(), 3);
        assert_eq!(plan.remote.len(), 3);
        let forward = Envelope::from_bytes(&plan.remote[1].2).unwrap();
        assert_eq!(forward.node, remote_target);
        let Body::Message(message) = forward.body else {
            panic!("a message")
        };
        assert_eq!(
            message.from,
            Some(Edge {
                node: "a".into(),
                seq: 2
            })
        );
        assert_eq!(message.input_id, "in1");
        assert_eq!(
            plan.remote[1].1,
            format!("{}.{remote_target}", events[1].msg_id)
        );
        let state = plan.dirty["t/a"].clone().unwrap();
        assert_eq!(state.seq, 3);
        assert_eq!(state.attrs["count"], json!(3));
        assert_eq!(state.output.as_deref(), Some(plan.outputs[2].text.as_str()));
        assert!(
            nodes["t/a"].attrs.get("count").is_none(),
            "the cache is untouched until commit"
        );
    }

    /// A forward whose seq is not above the edge's high-water mark is a repeat: acked, not run.
    #[test]
    fn repeated_forwards_are_dropped() {
        let registry = Registry::builtins();
        let context = context(&registry);
        let mut nodes = HashMap::new();
        let plan = run(
            &nodes,
            &[delivery("u", &upsert("b", "count", &[], json!({})), 0)],
            &context,
        );
        apply(&mut nodes, plan);
        let forward = |seq| Envelope {
            version: ENVELOPE_VERSION,
            topology: "t".into(),
            node: "b".into(),
            body: Body::Message(Message {
                input_id: "i".into(),
                injected_at_ms: 1,
                from: Some(Edge {
                    node: "a".into(),
                    seq,
                }),
                data: json!(1),
            }),
        };
        let plan = run(
            &nodes,
            &[
                delivery("f1", &forward(1), 0),
                delivery("f2", &forward(2), 0),
                delivery("f1again", &forward(1), 0),
                delivery("f2again", &forward(2), 0),
            ],
            &context,
        );
        assert_eq!(plan.repeats, 2);
        assert_eq!(plan.acks, ["f1", "f2", "f1again", "f2again"]);
        let state = plan.dirty["t/b"].clone().unwrap();
        assert_eq!(state.attrs["count"], json!(2));
        assert_eq!(state.hwm["a"], 2);
        // A batch of nothing but a repeat writes nothing to the node.
        apply(&mut nodes, plan);
        let plan = run(&nodes, &[delivery("f2late", &forward(2), 0)], &context);
        assert_eq!((plan.repeats, plan.acks.len()), (1, 1));
        assert!(plan.node_writes(&nodes, 100).is_empty());
        assert!(plan.node_writes(&nodes, 0).is_empty());
    }

    /// A failing function leaves the node's attributes alone: the message is retried until its
    /// last attempt, then dead-lettered with the error, and the node shows it.
    #[test]
    fn failures_retry_then_dead_letter() {
        let registry = Registry::builtins();
        let context = context(&registry);
        let mut nodes = HashMap::new();
        let plan = run(
            &nodes,
            &[delivery(
                "u",
                &upsert("s", "sum", &[], json!({"field": "/v"})),
                0,
            )],
            &context,
        );
        apply(&mut nodes, plan);
        let bad = Envelope::inject("t", "s", "i", 1, json!({"v": "text"}));
        let good = Envelope::inject("t", "s", "i", 1, json!({"v": 2}));
        let plan = run(
            &nodes,
            &[delivery("bad", &bad, 0), delivery("good", &good, 0)],
            &context,
        );
        assert_eq!(plan.retries.len(), 1);
        assert_eq!(plan.retries[0].0, "bad");
        assert!(
            plan.retries[0].1.starts_with("function_error: "),
            "{}",
            plan.retries[0].1
        );
        assert_eq!(plan.acks, ["good"]);
        let state = plan.dirty["t/s"].clone().unwrap();
        assert_eq!(state.attrs["sum"], json!(2));
        assert_eq!(
            state.status.last_error.as_deref(),
            Some(plan.retries[0].1.as_str())
        );
        assert_eq!(
            state.status.state,
            Health::Ok,
            "a later success clears the state, not the last error"
        );
        apply(&mut nodes, plan);

        let plan = run(&nodes, &[delivery("bad", &bad, 2)], &context);
        assert!(plan.retries.is_empty());
        assert_eq!(plan.acks, ["bad"]);
        assert_eq!(plan.dead.len(), 1);
        assert_eq!(plan.dead[0].attempts, 3);
        let state = plan.dirty["t/s"].clone().unwrap();
        assert_eq!(state.status.state, Health::Error);
        assert_eq!(state.status.dead_letters, 1);
        assert_eq!(state.attrs["sum"], json!(2));
    }

    /// Messages for a node that does not exist, or was deleted earlier in the batch, are
    /// dead-lettered as node_deleted; so is anything that is not an envelope.
    #[test]
    fn missing_nodes_and_garbage_are_dead_lettered() {
        let registry = Registry::builtins();
        let context = context(&registry);
        let mut nodes = HashMap::new();
        let plan = run(
            &nodes,
            &[delivery("u", &upsert("a", "pass", &[], json!({})), 0)],
            &context,
        );
        apply(&mut nodes, plan);
        let delete = Envelope {
            version: ENVELOPE_VERSION,
            topology: "t".into(),
            node: "a".into(),
            body: Body::Delete,
        };
        let message = Envelope::inject("t", "a", "i", 1, json!(1));
        let plan = run(
            &nodes,
            &[
                delivery("before", &message, 0),
                delivery("del", &delete, 0),
                delivery("after", &message, 0),
                Delivery {
                    id: "junk".into(),
                    body: Bytes::from_static(b"not json"),
                    attempts: 0,
                },
            ],
            &context,
        );
        assert_eq!(plan.outputs.len(), 1);
        assert_eq!(plan.acks, ["before", "del", "after", "junk"]);
        assert_eq!(
            plan.dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["after", "junk"]
        );
        assert!(plan.dead[0].error.starts_with("node_deleted: "));
        assert!(plan.dead[1].error.starts_with("undecodable: "));
        assert_eq!(plan.dirty["t/a"], None);
    }

    /// A panicking function is caught and treated as a failure of that message only.
    #[test]
    fn panics_are_failures() {
        struct Boom;
        impl crate::function::Function for Boom {
            fn name(&self) -> &str {
                "boom"
            }
            fn description(&self) -> &str {
                "panics"
            }
            fn params(&self) -> Vec<crate::function::Param> {
                Vec::new()
            }
            fn call(
                &self,
                _: &Input<'_>,
                _: &mut NodeContext<'_>,
            ) -> Result<Vec<Value>, crate::function::FunctionError> {
                panic!("kaboom")
            }
        }
        let mut registry = Registry::builtins();
        registry.register(Boom).unwrap();
        let context = context(&registry);
        let mut nodes = HashMap::new();
        let plan = run(
            &nodes,
            &[delivery("u", &upsert("b", "boom", &[], json!({})), 0)],
            &context,
        );
        apply(&mut nodes, plan);
        let plan = run(
            &nodes,
            &[delivery(
                "m",
                &Envelope::inject("t", "b", "i", 1, json!(1)),
                0,
            )],
            &context,
        );
        assert_eq!(
            plan.retries,
            [("m".to_owned(), "function_panic: kaboom".to_owned())]
        );
    }

    /// A result nobody could read back (an output, or the attributes, nested past
    /// MAX_DATA_DEPTH) is dead-lettered at the first attempt as output_too_deep: no output,
    /// no seq, the attributes as they were, the node in error. One level less goes through.
    #[test]
    fn results_too_deep_are_dead_lettered() {
        let registry = Registry::builtins();
        let context = context(&registry);
        let mut nodes = HashMap::new();
        let plan = run(
            &nodes,
            &[delivery(
                "u",
                &upsert("w", "window", &["x"], json!({"size": 1})),
                0,
            )],
            &context,
        );
        apply(&mut nodes, plan);
        let nested = |levels: usize| (0..levels).fold(json!(1), |inner, _| json!([inner]));
        // `window` outputs [message]: one level deeper than its input.
        let plan = run(
            &nodes,
            &[delivery(
                "ok",
                &Envelope::inject("t", "w", "i1", 1, nested(MAX_DATA_DEPTH - 2)),
                0,
            )],
            &context,
        );
        assert_eq!(plan.outputs.len(), 1);
        assert!(plan.dead.is_empty());
        apply(&mut nodes, plan);
        let before = nodes["t/w"].clone();
        let plan = run(
            &nodes,
            &[delivery(
                "deep",
                &Envelope::inject("t", "w", "i2", 1, nested(MAX_DATA_DEPTH)),
                0,
            )],
            &context,
        );
        assert!(plan.outputs.is_empty() && plan.local.is_empty() && plan.remote.is_empty());
        assert!(plan.retries.is_empty());
        assert_eq!(plan.acks, ["deep"]);
        assert_eq!(plan.dead.len(), 1);
        assert_eq!(plan.dead[0].attempts, 1);
        assert!(
            plan.dead[0].error.starts_with("output_too_deep: output 1 "),
            "{}",
            plan.dead[0].error
        );
        let state = plan.dirty["t/w"].clone().unwrap();
        assert_eq!(state.seq, before.seq);
        assert_eq!(state.attrs, before.attrs);
        assert_eq!(state.output, before.output);
        assert_eq!(state.status.state, Health::Error);
        assert_eq!(state.status.dead_letters, 1);
    }

    fn record(seq: u64) -> NodeRecord {
        let mut record = NodeRecord::new(
            NodeSpec {
                id: "a".into(),
                function: "pass".into(),
                sources: Vec::new(),
                attrs: serde_json::Map::new(),
                archive: None,
            },
            Vec::new(),
        );
        record.seq = seq;
        record
    }

    fn output(member: &str, seq: u64) -> PlannedOutput {
        PlannedOutput {
            topology: "t".into(),
            key: member.into(),
            seq,
            text: format!("{{\"seq\":{seq}}}"),
            injected_at_ms: 0,
            archive: true,
        }
    }

    /// A node's state with its latched output (the record's field, as the cache holds it).
    fn latched(seq: u64) -> NodeRecord {
        let mut state = record(seq);
        state.output = Some(output("", seq).text);
        state
    }

    /// The writes of `plan`, each in one line, in a stable order.
    fn summary(plan: &Plan, before: &HashMap<String, NodeRecord>, buffer: usize) -> Vec<String> {
        let mut writes = plan.node_writes(before, buffer);
        writes.sort_by_key(|write| format!("{write:?}"));
        writes
            .iter()
            .map(|write| match write {
                NodeWrite::Record {
                    member,
                    fields,
                    dropped,
                    created,
                } => format!(
                    "record {member} {:?} dropped={dropped:?} created={created}",
                    fields.iter().map(|(name, _)| *name).collect::<Vec<_>>()
                ),
                NodeWrite::Delete { member, last_seq } => format!("delete {member} ({last_seq})"),
                NodeWrite::Replay {
                    member,
                    events,
                    keep,
                } => format!("replay {member} {events:?} keep={keep:?}"),
            })
            .collect()
    }

    /// What a batch writes to its nodes: changed fields only, the index entry of a new node,
    /// the removal of a deleted one, and replay appends trimmed back to the bound only when
    /// the seq crosses a multiple of a quarter of it. With a buffer the latched output is its
    /// newest event: not written to the record, and a record's former `output` field removed
    /// when a new output replaces it; without one it is the record's `output` field.
    #[test]
    fn node_writes_follow_the_replay_rules() {
        let mut before = HashMap::new();
        before.insert("t/old".to_owned(), record(7));
        before.insert("t/gone".to_owned(), record(3));
        // t/field: written while there was no buffer, its output in the record.
        before.insert("t/field".to_owned(), latched(4));
        let mut plan = Plan::default();
        // t/old: 7 -> 9 with a bound of 8 (a quarter: 2): 7/2 = 3, 9/2 = 4, trimmed.
        plan.dirty.insert("t/old".into(), Some(latched(9)));
        plan.outputs.push(output("t/old", 8));
        plan.outputs.push(output("t/old", 9));
        // t/new: made in this batch, one output.
        plan.dirty.insert("t/new".into(), Some(latched(1)));
        plan.outputs.push(output("t/new", 1));
        plan.dirty.insert("t/gone".into(), None);
        plan.dirty.insert("t/field".into(), Some(latched(5)));
        plan.outputs.push(output("t/field", 5));
        let all = r#"["function", "sources", "targets", "attrs", "seq", "status", "hwm""#;
        assert_eq!(
            summary(&plan, &before, 8),
            [
                "delete t/gone (3)".to_owned(),
                r#"record t/field ["seq"] dropped=["output"] created=false"#.to_owned(),
                format!("record t/new {all}] dropped=[] created=true"),
                r#"record t/old ["seq"] dropped=[] created=false"#.to_owned(),
                r#"replay t/field ["{\"seq\":5}"] keep=None"#.to_owned(),
                r#"replay t/new ["{\"seq\":1}"] keep=None"#.to_owned(),
                r#"replay t/old ["{\"seq\":8}", "{\"seq\":9}"] keep=Some(8)"#.to_owned(),
            ]
        );
        // Without a buffer there are no replay writes, and the output is the record's.
        assert_eq!(
            summary(&plan, &before, 0),
            [
                "delete t/gone (3)".to_owned(),
                r#"record t/field ["seq", "output"] dropped=[] created=false"#.to_owned(),
                format!(r#"record t/new {all}, "output"] dropped=[] created=true"#),
                r#"record t/old ["seq", "output"] dropped=[] created=false"#.to_owned(),
            ]
        );
        // The owner's cache keeps the output only where the record holds it.
        assert_eq!(latched(5).as_written(Some(&latched(4)), true).output, None);
        assert_eq!(latched(5).as_written(Some(&latched(4)), false), latched(5));
        // 8 -> 9 crosses no multiple of 2 (8/2 = 9/2 = 4): appended, not trimmed.
        let mut small = Plan::default();
        let mut eight = HashMap::new();
        eight.insert("t/a".to_owned(), record(8));
        small.dirty.insert("t/a".into(), Some(record(9)));
        small.outputs.push(output("t/a", 9));
        assert!(small.node_writes(&eight, 8).contains(&NodeWrite::Replay {
            member: "t/a",
            events: vec![r#"{"seq":9}"#],
            keep: None,
        }));
    }

    /// A node deleted and made again within a batch is deleted, then written whole, before
    /// its new outputs go into its replay buffer: its former latched output and buffer are
    /// gone, its former life's outputs of the batch stay out of the new buffer, its floor is
    /// the highest seq it reached, and it counts from 1 again. Outputs of a node deleted later
    /// in the batch are not kept.
    #[test]
    fn a_node_made_again_keeps_nothing_of_its_former_self() {
        let registry = Registry::builtins();
        let context = context(&registry);
        let mut nodes = HashMap::new();
        let mut former = record(40);
        former.output = Some(r#"{"seq":40}"#.into());
        nodes.insert("t/a".to_owned(), former);
        nodes.insert("t/b".to_owned(), record(5));
        let delete = |node: &str| Envelope {
            version: ENVELOPE_VERSION,
            topology: "t".into(),
            node: node.into(),
            body: Body::Delete,
        };
        let batch = [
            delivery("0", &Envelope::inject("t", "a", "in-0", 0, json!(0)), 0),
            delivery("1", &delete("a"), 0),
            delivery("2", &upsert("a", "pass", &[], json!({})), 0),
            delivery("3", &Envelope::inject("t", "a", "in-1", 0, json!(1)), 0),
            delivery("4", &delete("b"), 0),
        ];
        let plan = run(&nodes, &batch, &context);
        let writes = plan.node_writes(&nodes, 100);
        let summary: Vec<(&str, &str)> = writes
            .iter()
            .map(|write| match write {
                NodeWrite::Record { member, .. } => ("record", *member),
                NodeWrite::Delete { member, .. } => ("delete", *member),
                NodeWrite::Replay { member, .. } => ("replay", *member),
            })
            .collect();
        let position = |entry: (&str, &str)| {
            summary
                .iter()
                .position(|found| *found == entry)
                .unwrap_or_else(|| panic!("no {entry:?} in {summary:?}"))
        };
        assert!(position(("delete", "t/a")) < position(("record", "t/a")));
        assert!(position(("record", "t/a")) < position(("replay", "t/a")));
        assert!(summary.contains(&("delete", "t/b")));
        assert_eq!(summary.len(), 4, "{summary:?}");
        let Some(NodeWrite::Record {
            fields, created, ..
        }) = writes.get(position(("record", "t/a")))
        else {
            unreachable!()
        };
        assert!(*created);
        let seq = fields.iter().find(|(name, _)| *name == "seq").unwrap();
        assert_eq!(seq.1, "1");
        // The latched output is the new buffer's newest event, not a record field.
        assert!(fields.iter().all(|(name, _)| *name != "output"));
        let Some(NodeWrite::Replay { events, .. }) = writes.get(position(("replay", "t/a"))) else {
            unreachable!()
        };
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].contains(r#""seq":1,"#), "{events:?}");
        let floors: Vec<(&str, u64)> = writes
            .iter()
            .filter_map(|write| match write {
                NodeWrite::Delete { member, last_seq } => Some((*member, *last_seq)),
                _ => None,
            })
            .collect();
        assert!(floors.contains(&("t/a", 41)), "{floors:?}");
        assert!(floors.contains(&("t/b", 5)), "{floors:?}");
    }
}
