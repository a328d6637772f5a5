//! What socket.io clients and the notifier send each other (the default namespace).
//!
//! - client → server `subscribe` and `unsubscribe`, each a [`Subscription`], answered with an
//!   [`Ack`];
//! - server → client `output`: one [`OutputEvent`](crate::OutputEvent), per node in `seq`
//!   order, each at most once per socket;
//! - server → client `resync`: a [`Resync`], when outputs a client asked for are no longer
//!   kept for replay.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ErrorCode;
use crate::store::ApiError;

/// The server event carrying one output event.
pub const OUTPUT_EVENT: &str = "output";
/// The server event saying some outputs will not come; see [`Resync`].
pub const RESYNC_EVENT: &str = "resync";
/// The first event of a Server-Sent Events stream: per node, the seq after which its outputs
/// start (what a socket.io subscribe's acknowledgement gives as `positions`).
pub const POSITIONS_EVENT: &str = "positions";

/// The id of a stream's output event, and what `Last-Event-ID` names to resume one node:
/// `node:seq` (several joined by commas resume several nodes).
pub fn event_id(node: &str, seq: u64) -> String {
    format!("{node}:{seq}")
}

/// The client event starting a subscription.
pub const SUBSCRIBE_EVENT: &str = "subscribe";
/// The client event ending one.
pub const UNSUBSCRIBE_EVENT: &str = "unsubscribe";

/// `{"topology", "node"?, "after_seq"?}`: one node's outputs, or every node's of the topology
/// when `node` is absent. Read from a JSON object only, with no other keys (see the
/// `Deserialize` impl).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subscription {
    /// The topology.
    pub topology: String,
    /// The node; `None` for every node of the topology, including nodes added later.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Where to resume: the outputs after this seq are sent first, in order, then the live
    /// ones. Absent: live outputs only, from the positions the [`Ack`] gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_seq: Option<AfterSeq>,
}

impl<'de> Deserialize<'de> for Subscription {
    /// Takes an object only: serde's derived impl would also take a positional array
    /// (`["t", "n"]`), which is no documented form.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            topology: String,
            #[serde(default)]
            node: Option<String>,
            #[serde(default)]
            after_seq: Option<AfterSeq>,
        }

        struct ObjectOnly;

        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = Fields;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(r#"an object {"topology", "node"?, "after_seq"?}"#)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Fields, A::Error> {
                Fields::deserialize(MapAccessDeserializer::new(map))
            }
        }

        let fields = deserializer.deserialize_map(ObjectOnly)?;
        Ok(Subscription {
            topology: fields.topology,
            node: fields.node,
            after_seq: fields.after_seq,
        })
    }
}

/// A resume position: one seq, or one per node for a topology subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AfterSeq {
    /// The same seq for every node subscribed (`0`: everything still kept).
    All(u64),
    /// Per node id; a node not listed starts from its current position (live only).
    PerNode(BTreeMap<String, u64>),
}

impl AfterSeq {
    /// Where `node` resumes, if this says.
    pub fn for_node(&self, node: &str) -> Option<u64> {
        match self {
            AfterSeq::All(seq) => Some(*seq),
            AfterSeq::PerNode(seqs) => seqs.get(node).copied(),
        }
    }
}

/// The acknowledgement of a `subscribe` or `unsubscribe`:
/// `{"ok": true, "positions": {...}}` or `{"ok": false, "error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Whether it was done.
    pub ok: bool,
    /// For a subscribe: per node, the seq after which this socket's outputs start (the
    /// `after_seq` asked for, or the node's latest seq). A client that keeps, per node, the
    /// last seq it received (these positions where it received none) can resume exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<BTreeMap<String, u64>>,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl Ack {
    /// Done, with `positions` for a subscribe.
    pub fn done(positions: Option<BTreeMap<String, u64>>) -> Ack {
        Ack {
            ok: true,
            positions,
            error: None,
        }
    }

    /// Refused, with `code` and `message`.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Ack {
        Ack {
            ok: false,
            positions: None,
            error: Some(ApiError::new(code, message)),
        }
    }
}

/// `{"topology", "node", "after_seq", "next_seq"}`: the outputs of `node` after `after_seq`
/// and before `next_seq` will not come over socket.io (they are no longer kept for replay);
/// the next `output` of the node has seq `next_seq`. Read the missing ones from the
/// history API (`?after_seq=<after_seq>&before_seq=<next_seq>&order=asc`). A `next_seq` not
/// above `after_seq` means the node counts from 1 again (it was deleted and made anew).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resync {
    /// The topology.
    pub topology: String,
    /// The node.
    pub node: String,
    /// The last seq the client had, or asked to resume after.
    pub after_seq: u64,
    /// The seq of the next output the server sends for this node.
    pub next_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Subscriptions read from the three documented shapes, and unknown keys are refused.
    #[test]
    fn subscriptions_parse() {
        let node: Subscription =
            serde_json::from_value(json!({"topology": "t", "node": "a", "after_seq": 5})).unwrap();
        assert_eq!(node.node.as_deref(), Some("a"));
        assert_eq!(node.after_seq.unwrap().for_node("a"), Some(5));
        let all: Subscription =
            serde_json::from_value(json!({"topology": "t", "after_seq": {"a": 3}})).unwrap();
        let after = all.after_seq.unwrap();
        assert_eq!((after.for_node("a"), after.for_node("b")), (Some(3), None));
        let live: Subscription = serde_json::from_value(json!({"topology": "t"})).unwrap();
        assert_eq!((live.node, live.after_seq), (None, None));
        assert!(serde_json::from_value::<Subscription>(json!({"topology": "t", "x": 1})).is_err());
        assert!(
            serde_json::from_value::<Subscription>(json!({"topology": "t", "after_seq": -1}))
                .is_err()
        );
    }

    /// A positional array, or anything else but an object, is no subscription, and a
    /// subscription reads back what it writes.
    #[test]
    fn subscriptions_are_objects_only() {
        for positional in [json!(["t", "n"]), json!(["t"]), json!(["t", "n", 3])] {
            let error = serde_json::from_value::<Subscription>(positional.clone()).unwrap_err();
            assert!(
                error.to_string().contains("expected an object"),
                "{positional}: {error}"
            );
        }
        assert!(serde_json::from_str::<Subscription>(r#"["t","n"]"#).is_err());
        for other in [json!("t"), json!(1), json!(null), json!({})] {
            assert!(serde_json::from_value::<Subscription>(other).is_err());
        }
        let subscription = Subscription {
            topology: "t".to_owned(),
            node: Some("n".to_owned()),
            after_seq: Some(AfterSeq::PerNode(BTreeMap::from([("n".to_owned(), 4)]))),
        };
        let text = serde_json::to_string(&subscription).unwrap();
        assert_eq!(text, r#"{"topology":"t","node":"n","after_seq":{"n":4}}"#);
        assert_eq!(
            serde_json::from_str::<Subscription>(&text).unwrap(),
            subscription
        );
    }

    /// Acks serialize with only the keys that apply.
    #[test]
    fn acks_serialize() {
        let positions = BTreeMap::from([("a".to_owned(), 7)]);
        assert_eq!(
            serde_json::to_value(Ack::done(Some(positions))).unwrap(),
            json!({"ok": true, "positions": {"a": 7}})
        );
        assert_eq!(
            serde_json::to_value(Ack::refused(ErrorCode::NotFound, "no topology t")).unwrap(),
            json!({"ok": false, "error": {"code": "not_found", "message": "no topology t"}})
        );
    }
}
