//! A node's record: its state as the owner of its partition stores it in Redis.
//!
//! Each node of partition `p` is one hash, `P:{p<p>}:` + [`names::node_record`], and the set
//! `P:{p<p>}:` + [`names::NODE_INDEX`] lists the partition's nodes as `<topology>/<node>`.
//! Fields:
//!
//! | field | content |
//! |---|---|
//! | `function` | the function's registry name |
//! | `sources` | JSON array of source node ids |
//! | `targets` | JSON array of the nodes that list this one as a source |
//! | `attrs` | JSON object: settings and the function's running state |
//! | `seq` | the last output's seq (0 before the first output) |
//! | `output` | the latched output event, JSON (absent before the first output) |
//! | `status` | JSON `{"state","last_error","dead_letters"}` |
//! | `hwm` | JSON object: source node → the last of its output seqs applied here |
//!
//! Only the partition's owner writes these, inside its fenced batch commits.
//!
//! [`names::node_record`]: crate::names::node_record
//! [`names::NODE_INDEX`]: crate::names::NODE_INDEX

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::node::{NodeSpec, NodeState as Health, NodeStatus};

/// One node's stored state: what its partition's owner caches and writes, and what readers
/// (the API) read back.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    /// The function's registry name.
    pub function: String,
    /// Source node ids.
    pub sources: Vec<String>,
    /// Downstream node ids.
    pub targets: Vec<String>,
    /// Settings and running state.
    pub attrs: Map<String, Value>,
    /// The last output's seq.
    pub seq: u64,
    /// The latched output event as JSON text.
    pub output: Option<String>,
    /// Health.
    pub status: NodeStatus,
    /// Per source: the last output seq applied here.
    pub hwm: HashMap<String, u64>,
}

impl NodeRecord {
    /// A new node from its spec.
    pub fn new(spec: NodeSpec, targets: Vec<String>) -> NodeRecord {
        NodeRecord {
            function: spec.function,
            sources: spec.sources,
            targets,
            attrs: spec.attrs,
            seq: 0,
            output: None,
            status: NodeStatus {
                state: Health::Ok,
                last_error: None,
                dead_letters: 0,
            },
            hwm: HashMap::new(),
        }
    }

    /// Applies an update: function, sources and targets replaced; the attributes listed set,
    /// the others kept (or dropped with `reset_state`). Sources no longer listed lose their
    /// high-water mark.
    pub fn update(&mut self, spec: NodeSpec, targets: Vec<String>, reset_state: bool) {
        self.function = spec.function;
        self.hwm.retain(|source, _| spec.sources.contains(source));
        self.sources = spec.sources;
        self.targets = targets;
        if reset_state {
            self.attrs = spec.attrs;
        } else {
            for (name, value) in spec.attrs {
                self.attrs.insert(name, value);
            }
        }
    }

    /// The hash fields to write, in the order of the module docs.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("function", self.function.clone()),
            ("sources", json(&self.sources)),
            ("targets", json(&self.targets)),
            ("attrs", json(&self.attrs)),
            ("seq", self.seq.to_string()),
            ("status", json(&self.status)),
            ("hwm", json(&self.hwm)),
        ];
        if let Some(output) = &self.output {
            fields.push(("output", output.clone()));
        }
        fields
    }

    /// The hash fields that differ from `before` (all of them for a new node): attributes,
    /// seq and output are written whenever the node ran; the rest only when they changed.
    pub fn changed_fields(&self, before: Option<&NodeRecord>) -> Vec<(&'static str, String)> {
        let Some(before) = before else {
            return self.to_fields();
        };
        let mut fields = Vec::with_capacity(4);
        if self.function != before.function {
            fields.push(("function", self.function.clone()));
        }
        if self.sources != before.sources {
            fields.push(("sources", json(&self.sources)));
        }
        if self.targets != before.targets {
            fields.push(("targets", json(&self.targets)));
        }
        if self.attrs != before.attrs {
            fields.push(("attrs", json(&self.attrs)));
        }
        if self.seq != before.seq {
            fields.push(("seq", self.seq.to_string()));
        }
        if self.status != before.status {
            fields.push(("status", json(&self.status)));
        }
        if self.hwm != before.hwm {
            fields.push(("hwm", json(&self.hwm)));
        }
        if self.output != before.output {
            if let Some(output) = &self.output {
                fields.push(("output", output.clone()));
            }
        }
        fields
    }

    /// Reads the hash fields back; `None` when a field is missing or unreadable.
    pub fn from_fields(fields: &HashMap<String, String>) -> Option<NodeRecord> {
        Some(NodeRecord {
            function: fields.get("function")?.clone(),
            sources: serde_json::from_str(fields.get("sources")?).ok()?,
            targets: serde_json::from_str(fields.get("targets")?).ok()?,
            attrs: serde_json::from_str(fields.get("attrs")?).ok()?,
            seq: fields.get("seq")?.parse().ok()?,
            output: fields.get("output").cloned(),
            status: serde_json::from_str(fields.get("status")?).ok()?,
            hwm: serde_json::from_str(fields.get("hwm")?).ok()?,
        })
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("node state serializes")
}

/// A JSON merge patch (RFC 7386) of `target` by `patch`: null deletes a key, objects merge.
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (name, value) in patch {
        match value {
            Value::Null => {
                target.remove(name);
            }
            Value::Object(inner) => {
                let entry = target
                    .entry(name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(existing) = entry {
                    merge_patch(existing, inner);
                }
            }
            other => {
                target.insert(name.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(attrs: Value) -> NodeSpec {
        NodeSpec {
            id: "b".into(),
            function: "count".into(),
            sources: vec!["a".into()],
            attrs: attrs.as_object().unwrap().clone(),
        }
    }

    /// The stored fields read back into the same state.
    #[test]
    fn fields_round_trip() {
        let mut state = NodeRecord::new(spec(json!({"count": 2})), vec!["c".into()]);
        state.seq = 2;
        state.output = Some("{\"seq\":2}".into());
        state.hwm.insert("a".into(), 9);
        let fields: HashMap<String, String> = state
            .to_fields()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        assert_eq!(fields["attrs"], r#"{"count":2}"#);
        assert_eq!(
            fields["status"],
            r#"{"state":"ok","last_error":null,"dead_letters":0}"#
        );
        assert_eq!(NodeRecord::from_fields(&fields).unwrap(), state);
    }

    /// Only what changed is written again; a new node writes everything.
    #[test]
    fn changed_fields_are_only_what_changed() {
        let before = NodeRecord::new(spec(json!({"count": 1})), Vec::new());
        assert_eq!(before.changed_fields(None).len(), 7);
        let mut after = before.clone();
        after.attrs.insert("count".into(), json!(2));
        after.seq = 1;
        after.output = Some("{}".into());
        let names: Vec<&str> = after
            .changed_fields(Some(&before))
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(names, ["attrs", "seq", "output"]);
        assert!(before.changed_fields(Some(&before)).is_empty());
    }

    /// An update keeps running state unless asked to reset it, and forgets dropped sources.
    #[test]
    fn update_keeps_state_unless_reset() {
        let mut state = NodeRecord::new(spec(json!({"count": 5, "limit": 1})), Vec::new());
        state.hwm.insert("a".into(), 3);
        let mut next = spec(json!({"limit": 2}));
        next.sources = vec!["x".into()];
        state.update(next.clone(), vec!["t".into()], false);
        assert_eq!(
            Value::Object(state.attrs.clone()),
            json!({"count": 5, "limit": 2})
        );
        assert!(state.hwm.is_empty());
        assert_eq!(state.targets, ["t"]);
        state.update(next, Vec::new(), true);
        assert_eq!(Value::Object(state.attrs), json!({"limit": 2}));
    }

    /// Merge patch per RFC 7386: null deletes, objects merge, anything else replaces.
    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut attrs = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": 3})
            .as_object()
            .unwrap()
            .clone();
        merge_patch(
            &mut attrs,
            json!({"a": null, "b": {"y": null, "z": 3}, "c": [1], "d": "new"})
                .as_object()
                .unwrap(),
        );
        assert_eq!(
            Value::Object(attrs),
            json!({"b": {"x": 1, "z": 3}, "c": [1], "d": "new"})
        );
    }
}
