//! The output event: the one shape used by the latch, socket.io, history and the archive.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::time::Timestamp;

/// One output of one node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputEvent {
    /// The topology.
    pub topology: String,
    /// The node that output it.
    pub node: String,
    /// The node's output counter: 1, 2, 3, … with no gaps or repeats.
    pub seq: u64,
    /// Unique per output (a UUIDv7 made when the output is committed; a batch that never
    /// committed leaves no id behind, so each id belongs to exactly one committed output).
    pub msg_id: String,
    /// The id the inject that caused it answered with; the same through the whole graph.
    pub input_id: String,
    /// When that inject was accepted.
    pub injected_at: Timestamp,
    /// When this output was produced.
    pub ts: Timestamp,
    /// The output itself.
    pub data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event serializes with exactly the keys of the API, in order.
    #[test]
    fn serializes_to_the_api_shape() {
        let event = OutputEvent {
            topology: "sensors".into(),
            node: "temp-avg".into(),
            seq: 3,
            msg_id: "019ab0c4d2e37f00a1b2c3d4e5f60718".into(),
            input_id: "0190f0a1".into(),
            injected_at: Timestamp::from_unix_ms(1_795_400_706_789),
            ts: Timestamp::from_unix_ms(1_795_400_706_790),
            data: serde_json::json!({"mean": 21.5, "count": 3}),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            text,
            r#"{"topology":"sensors","node":"temp-avg","seq":3,"msg_id":"019ab0c4d2e37f00a1b2c3d4e5f60718","input_id":"0190f0a1","injected_at":"2026-11-23T02:25:06.789Z","ts":"2026-11-23T02:25:06.790Z","data":{"mean":21.5,"count":3}}"#
        );
        assert_eq!(serde_json::from_str::<OutputEvent>(&text).unwrap(), event);
    }
}
