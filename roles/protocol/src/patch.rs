//! JSON merge patches (RFC 7386), as attribute patches apply them.

use serde_json::{Map, Value};

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
