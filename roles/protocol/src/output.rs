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

/// The deepest nesting of arrays and objects that a node's output, or its attributes, may
/// have. Every reader of the mesh parses JSON with serde_json's limit of 128 levels, and an
/// output travels wrapped a few levels deeper (the event, a topic entry's list, a history
/// page, a reply), so the processor refuses a function result past this depth: the message is
/// dead-lettered with `output_too_deep` instead of making an output nobody could read.
pub const MAX_DATA_DEPTH: usize = 100;

/// Whether `value` nests arrays and objects more than `limit` levels deep (`1` is level 0,
/// `[1]` level 1, `{"a": [1]}` level 2). It walks without recursion, so any depth is safe.
pub fn deeper_than(value: &Value, limit: usize) -> bool {
    if !(value.is_array() || value.is_object()) {
        return false;
    }
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let within = depth + 1;
        match value {
            Value::Array(_) | Value::Object(_) if within > limit => return true,
            Value::Array(items) => stack.extend(items.iter().map(|child| (child, within))),
            Value::Object(map) => stack.extend(map.values().map(|child| (child, within))),
            _ => {}
        }
    }
    false
}

/// How deeply the JSON text `bytes` nests arrays and objects: 0 for a scalar, 1 for `[]` or
/// `{"a": 1}`, and so on. A scan of the bytes that skips strings, so any depth is measured
/// without parsing or recursion; the text need not be valid JSON (a parser judges that).
pub fn json_text_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0_usize, 0_usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text scan counts objects and arrays, not brackets inside strings, and agrees with
    /// the walk over values.
    #[test]
    fn depth_of_json_text() {
        assert_eq!(json_text_depth(b"1"), 0);
        assert_eq!(json_text_depth(b"\"[{\""), 0);
        assert_eq!(json_text_depth(b"[]"), 1);
        assert_eq!(
            json_text_depth(br#"{"a": [1, {"b": "]]\"["}], "c": {}}"#),
            3
        );
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(json_text_depth(deep.as_bytes()), 10_000);
    }

    /// Depth counts containers only, and the limit itself is allowed.
    #[test]
    fn depth_of_nested_values() {
        use serde_json::json;
        assert!(!deeper_than(&json!(1), 0));
        assert!(deeper_than(&json!([]), 0));
        assert!(!deeper_than(&json!({"a": [1, {"b": "[[[["}]}), 3));
        assert!(deeper_than(&json!({"a": [1, {"b": []}]}), 3));
        let mut deep = json!(1);
        for _ in 0..MAX_DATA_DEPTH {
            deep = json!([deep]);
        }
        assert!(!deeper_than(&deep, MAX_DATA_DEPTH));
        assert!(deeper_than(&json!({ "x": deep }), MAX_DATA_DEPTH));
    }

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
