//! The envelope: what travels in a partition's input queue.
//!
//! Compact JSON with short keys, a version number, and tolerance of unknown keys, so that
//! roles of the next version can run beside this one: a reader ignores keys it does not know
//! and a writer only adds keys, never changes the meaning of one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::node::NodeSpec;

/// The envelope version this code writes.
pub const ENVELOPE_VERSION: u32 = 1;

/// One item of a partition's input queue, addressed to one node.
///
/// Read through [`Wire`], one flat pass over the JSON: the derived reading of a flattened,
/// internally tagged body buffers every key twice, and was a tenth of a processor's CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Wire")]
pub struct Envelope {
    /// The envelope version it was written with.
    #[serde(rename = "v")]
    pub version: u32,
    /// The topology.
    #[serde(rename = "t")]
    pub topology: String,
    /// The node it is for.
    #[serde(rename = "n")]
    pub node: String,
    /// What it carries.
    #[serde(flatten)]
    pub body: Body,
}

/// What an envelope carries: a message for the node's function, or a change to the node.
/// Changes travel through the same queue as messages so that they take effect exactly
/// between the messages before and after them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "k")]
pub enum Body {
    /// A message: injected, or forwarded from a source node.
    #[serde(rename = "m")]
    Message(Message),
    /// Create the node, or replace its function, sources, targets and the attributes listed.
    #[serde(rename = "put")]
    Upsert {
        /// The node as it should be.
        spec: NodeSpec,
        /// The nodes that list this one among their sources: where its outputs go. The store
        /// keeps it and sends a new `Upsert` whenever it changes.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        targets: Vec<String>,
        /// Drop the function's running state (attributes not in `spec`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reset_state: bool,
    },
    /// A JSON merge patch of the node's attributes (null deletes a key).
    #[serde(rename = "attrs")]
    PatchAttrs {
        /// The patch.
        patch: Map<String, Value>,
    },
    /// Delete the node, its state and its latched output.
    #[serde(rename = "del")]
    Delete,
}

/// A message for a node's function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The id the inject answered with; kept through the whole graph.
    #[serde(rename = "i")]
    pub input_id: String,
    /// When the inject was accepted, Unix ms.
    #[serde(rename = "at")]
    pub injected_at_ms: i64,
    /// Set when forwarded from a source node: which node and which of its outputs.
    #[serde(rename = "f", default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Edge>,
    /// The message itself.
    #[serde(rename = "d")]
    pub data: Value,
}

/// Where a forwarded message comes from. A target node applies each output of a source at
/// most once: a forward whose `seq` is not above the last one applied from that source is a
/// repeat (a forward retried after a crash) and is dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// The source node.
    #[serde(rename = "n")]
    pub node: String,
    /// The source node's output seq.
    #[serde(rename = "s")]
    pub seq: u64,
}

/// An envelope as it is read: every key of every kind, each optional, in one flat object, so
/// serde reads it in one pass. Keys it does not know are ignored.
#[derive(Deserialize)]
struct Wire {
    v: u32,
    t: String,
    n: String,
    k: Kind,
    i: Option<String>,
    at: Option<i64>,
    f: Option<Edge>,
    /// Present (`null` included) or missing.
    #[serde(default, deserialize_with = "present")]
    d: Option<Value>,
    spec: Option<NodeSpec>,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    reset_state: bool,
    patch: Option<Map<String, Value>>,
}

/// The body's tag, `k`.
#[derive(Deserialize)]
enum Kind {
    #[serde(rename = "m")]
    Message,
    #[serde(rename = "put")]
    Upsert,
    #[serde(rename = "attrs")]
    PatchAttrs,
    #[serde(rename = "del")]
    Delete,
}

/// A key that is present, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(value).map(Some)
}

impl TryFrom<Wire> for Envelope {
    type Error = String;

    fn try_from(wire: Wire) -> Result<Envelope, String> {
        fn needs<T>(value: Option<T>, key: &str, kind: &str) -> Result<T, String> {
            value.ok_or_else(|| format!("missing field `{key}` of a {kind:?} envelope"))
        }
        let body = match wire.k {
            Kind::Message => Body::Message(Message {
                input_id: needs(wire.i, "i", "m")?,
                injected_at_ms: needs(wire.at, "at", "m")?,
                from: wire.f,
                data: needs(wire.d, "d", "m")?,
            }),
            Kind::Upsert => Body::Upsert {
                spec: needs(wire.spec, "spec", "put")?,
                targets: wire.targets,
                reset_state: wire.reset_state,
            },
            Kind::PatchAttrs => Body::PatchAttrs {
                patch: needs(wire.patch, "patch", "attrs")?,
            },
            Kind::Delete => Body::Delete,
        };
        Ok(Envelope {
            version: wire.v,
            topology: wire.t,
            node: wire.n,
            body,
        })
    }
}

impl Envelope {
    /// An injected message for `topology`/`node`.
    pub fn inject(
        topology: &str,
        node: &str,
        input_id: &str,
        injected_at_ms: i64,
        data: Value,
    ) -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            topology: topology.to_owned(),
            node: node.to_owned(),
            body: Body::Message(Message {
                input_id: input_id.to_owned(),
                injected_at_ms,
                from: None,
                data,
            }),
        }
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    /// Whether the envelope in `bytes` may be an [`Body::Upsert`], without parsing it: false
    /// only when it is not one (its tag, `"k":"put"` as [`Envelope::to_bytes`] writes it, is
    /// nowhere in the bytes); true when it is, or when a message's data happens to hold those
    /// bytes. For a quick, safe decision over many messages, not for reading one.
    pub fn may_be_upsert(bytes: &[u8]) -> bool {
        memchr::memmem::find(bytes, br#""k":"put""#).is_some()
    }

    /// Parses JSON bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An injected message is short JSON with one-letter keys.
    #[test]
    fn inject_is_compact() {
        let envelope = Envelope::inject("s", "temp-in", "abc", 1_700_000_000_000, json!({"c": 21}));
        assert_eq!(
            String::from_utf8(envelope.to_bytes()).unwrap(),
            r#"{"v":1,"t":"s","n":"temp-in","k":"m","i":"abc","at":1700000000000,"d":{"c":21}}"#
        );
        assert_eq!(
            Envelope::from_bytes(&envelope.to_bytes()).unwrap(),
            envelope
        );
    }

    /// An upsert is always seen as one; a message only when its data holds the tag's bytes.
    #[test]
    fn upserts_are_told_apart_without_parsing() {
        let message = Envelope::inject("s", "a", "i", 5, json!({"c": 21}));
        assert!(!Envelope::may_be_upsert(&message.to_bytes()));
        let upsert = Envelope {
            version: ENVELOPE_VERSION,
            topology: "s".into(),
            node: "a".into(),
            body: Body::Upsert {
                spec: NodeSpec {
                    id: "a".into(),
                    function: "count".into(),
                    sources: Vec::new(),
                    attrs: Map::new(),
                    archive: None,
                },
                targets: Vec::new(),
                reset_state: false,
            },
        };
        assert!(Envelope::may_be_upsert(&upsert.to_bytes()));
        let lookalike = Envelope::inject("s", "a", "i", 5, json!({"k": "put"}));
        assert!(Envelope::may_be_upsert(&lookalike.to_bytes()));
    }

    /// Every kind round-trips, and keys a later version adds are ignored.
    #[test]
    fn round_trips_and_tolerates_unknown_keys() {
        let bodies = [
            Body::Message(Message {
                input_id: "i1".into(),
                injected_at_ms: 5,
                from: Some(Edge {
                    node: "a".into(),
                    seq: 7,
                }),
                data: json!([1, 2]),
            }),
            Body::Upsert {
                spec: NodeSpec {
                    id: "b".into(),
                    function: "count".into(),
                    sources: vec!["a".into()],
                    attrs: Map::new(),
                    archive: None,
                },
                targets: vec!["c".into()],
                reset_state: true,
            },
            Body::PatchAttrs {
                patch: json!({"above": 30, "old": null})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            Body::Delete,
        ];
        for body in bodies {
            let envelope = Envelope {
                version: ENVELOPE_VERSION,
                topology: "t".into(),
                node: "b".into(),
                body,
            };
            assert_eq!(
                Envelope::from_bytes(&envelope.to_bytes()).unwrap(),
                envelope
            );
        }
        let newer = br#"{"v":2,"t":"t","n":"b","k":"m","i":"i","at":1,"d":null,"priority":9}"#;
        let envelope = Envelope::from_bytes(newer).unwrap();
        assert_eq!(envelope.version, 2);
        assert!(
            matches!(envelope.body, Body::Message(Message { ref input_id, .. }) if input_id == "i")
        );
        assert!(Envelope::from_bytes(br#"{"v":1,"t":"t","n":"b","k":"zap"}"#).is_err());
        // Each kind's own keys are required; `null` data is data.
        for missing in [
            r#"{"v":1,"t":"t","n":"b","k":"m","i":"i","at":1}"#,
            r#"{"v":1,"t":"t","n":"b","k":"m","at":1,"d":1}"#,
            r#"{"v":1,"t":"t","n":"b","k":"put"}"#,
            r#"{"v":1,"t":"t","n":"b","k":"attrs"}"#,
            r#"{"v":1,"t":"t","n":"b","d":1}"#,
        ] {
            let err = Envelope::from_bytes(missing.as_bytes()).unwrap_err();
            assert!(
                err.to_string().contains("missing field"),
                "{missing}: {err}"
            );
        }
        let null =
            Envelope::from_bytes(br#"{"v":1,"t":"t","n":"b","k":"m","i":"i","at":1,"d":null}"#);
        assert!(matches!(
            null.unwrap().body,
            Body::Message(Message {
                data: Value::Null,
                ..
            })
        ));
    }
}
