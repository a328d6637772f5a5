//! The topology document as users write it, and its JSON and TOML forms.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TopologyError;
use crate::node::NodeSpec;

/// A topology as users write it: a description, an optional Mermaid-style `graph`
/// of edges, and the nodes (`[[node]]` in TOML, `"node": [...]` in JSON).
///
/// Unknown keys are rejected, in the document and in each node: a typo such as `sorces`
/// would otherwise drop edges without a word. Parsing checks only the shape; ids, functions,
/// attributes, edges and cycles are checked by [`TopologyDoc::validate`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawDoc<Map<String, Value>>")]
pub struct TopologyDoc {
    /// What the topology is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Edges in Mermaid style (`a --> b`), merged with each node's `sources`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph: Option<String>,
    /// Whether the nodes' outputs go to the archive, for nodes that do not say (`None`:
    /// they do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<bool>,
    /// The nodes, in document order.
    pub node: Vec<NodeSpec>,
}

/// The document as it is read, before its attributes are converted to JSON values; `A` is
/// the attribute table of the format read.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    bound(deserialize = "A: Deserialize<'de> + Default")
)]
struct RawDoc<A> {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    graph: Option<String>,
    #[serde(default)]
    archive: Option<bool>,
    #[serde(default = "Vec::new")]
    node: Vec<RawNode<A>>,
}

/// A node as it is read; see [`RawDoc`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode<A> {
    id: String,
    function: String,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    attrs: A,
    #[serde(default)]
    archive: Option<bool>,
}

impl From<RawDoc<Map<String, Value>>> for TopologyDoc {
    fn from(raw: RawDoc<Map<String, Value>>) -> Self {
        TopologyDoc {
            description: raw.description,
            graph: raw.graph,
            archive: raw.archive,
            node: raw
                .node
                .into_iter()
                .map(|node| NodeSpec {
                    id: node.id,
                    function: node.function,
                    sources: node.sources,
                    attrs: node.attrs,
                    archive: node.archive,
                })
                .collect(),
        }
    }
}

/// The document as TOML writes it: empty `sources` and `attrs` are left out.
#[derive(Serialize)]
struct TomlDoc<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    graph: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    archive: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    node: Vec<TomlNode<'a>>,
}

/// A node as TOML writes it; see [`TomlDoc`].
#[derive(Serialize)]
struct TomlNode<'a> {
    id: &'a str,
    function: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    sources: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    archive: Option<bool>,
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    attrs: toml::Table,
}

impl TopologyDoc {
    /// Parses the JSON form. Fails with [`TopologyError::MalformedDocument`].
    pub fn from_json(text: &str) -> Result<TopologyDoc, TopologyError> {
        serde_json::from_str(text).map_err(|error| {
            let position = format!(" at line {} column {}", error.line(), error.column());
            let full = error.to_string();
            let reason = full.strip_suffix(&position).unwrap_or(&full).to_owned();
            TopologyError::MalformedDocument {
                format: "JSON",
                line: Some(error.line()),
                column: Some(error.column()),
                reason,
            }
        })
    }

    /// Parses the TOML form. TOML dates and times become RFC 3339 strings, since attributes
    /// are JSON values; a TOML `nan` or `inf` has no JSON form and is refused. Fails with
    /// [`TopologyError::MalformedDocument`].
    pub fn from_toml(text: &str) -> Result<TopologyDoc, TopologyError> {
        let raw: RawDoc<toml::Table> = toml::from_str(text).map_err(|error| {
            let (line, column) = match error.span() {
                Some(span) => {
                    // The span is in bytes; `get` keeps a span that is not on a character
                    // boundary from panicking.
                    let before = text.get(..span.start).unwrap_or(text);
                    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
                    let line = before.matches('\n').count() + 1;
                    let column = before[line_start..].chars().count() + 1;
                    (Some(line), Some(column))
                }
                None => (None, None),
            };
            TopologyError::MalformedDocument {
                format: "TOML",
                line,
                column,
                reason: error.message().trim_end().to_owned(),
            }
        })?;
        let mut nodes = Vec::with_capacity(raw.node.len());
        for node in raw.node {
            let mut attrs = Map::new();
            for (key, value) in node.attrs {
                let value = toml_to_json(value).map_err(|what| TopologyError::MalformedDocument {
                    format: "TOML",
                    line: None,
                    column: None,
                    reason: format!(
                        "attribute {key:?} of node {:?} is {what}, which JSON cannot hold; use a finite number",
                        node.id
                    ),
                })?;
                attrs.insert(key, value);
            }
            nodes.push(NodeSpec {
                id: node.id,
                function: node.function,
                sources: node.sources,
                attrs,
                archive: node.archive,
            });
        }
        Ok(TopologyDoc {
            description: raw.description,
            graph: raw.graph,
            archive: raw.archive,
            node: nodes,
        })
    }

    /// Whether `node`'s outputs are archived, as a resolved node says it: `Some(false)` when
    /// the node, or the topology for a node that does not say, says `false`; else `None`.
    pub fn archive_of(&self, node: &NodeSpec) -> Option<bool> {
        (node.archive.or(self.archive) == Some(false)).then_some(false)
    }

    /// The JSON form, indented. Every key is written, `sources` and `attrs` even when empty.
    pub fn to_json_pretty(&self) -> String {
        // Serializing strings, vectors and JSON values with string keys cannot fail.
        serde_json::to_string_pretty(self).expect("a topology document serializes to JSON")
    }

    /// The TOML form; [`TopologyDoc::from_toml`] reads it back to an equal document. Empty
    /// `sources` and `attrs` are left out. Fails with [`TopologyError::NotRepresentableInToml`]
    /// when an attribute holds a JSON `null` or an integer above `i64::MAX`, which TOML has
    /// no form for.
    pub fn to_toml(&self) -> Result<String, TopologyError> {
        let mut nodes = Vec::with_capacity(self.node.len());
        for node in &self.node {
            let mut attrs = toml::Table::new();
            for (key, value) in &node.attrs {
                let mut path = key.clone();
                let value = json_to_toml(value, &mut path).map_err(|reason| {
                    TopologyError::NotRepresentableInToml {
                        node: node.id.clone(),
                        attribute: path,
                        reason,
                    }
                })?;
                attrs.insert(key.clone(), value);
            }
            nodes.push(TomlNode {
                id: &node.id,
                function: &node.function,
                sources: &node.sources,
                archive: node.archive,
                attrs,
            });
        }
        let doc = TomlDoc {
            description: self.description.as_deref(),
            graph: self.graph.as_deref(),
            archive: self.archive,
            node: nodes,
        };
        // Every value was converted above and every key is a string, so this should not fail;
        // if the writer still refuses, say so without naming a node.
        toml::to_string_pretty(&doc).map_err(|error| TopologyError::NotRepresentableInToml {
            node: String::new(),
            attribute: String::new(),
            reason: error.to_string(),
        })
    }
}

/// A TOML value as JSON; `Err` names a float JSON cannot hold.
fn toml_to_json(value: toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(text) => Value::String(text),
        toml::Value::Integer(number) => Value::from(number),
        toml::Value::Float(number) => match serde_json::Number::from_f64(number) {
            Some(number) => Value::Number(number),
            None => return Err(number.to_string()),
        },
        toml::Value::Boolean(flag) => Value::Bool(flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(toml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => {
            let mut object = Map::new();
            for (key, value) in table {
                object.insert(key, toml_to_json(value)?);
            }
            Value::Object(object)
        }
    })
}

/// A JSON value as TOML. `path` is the attribute path so far; on `Err` it is the path of the
/// value that has no TOML form, and the error says what that value is.
fn json_to_toml(value: &Value, path: &mut String) -> Result<toml::Value, String> {
    Ok(match value {
        Value::Null => return Err("null".to_owned()),
        Value::Bool(flag) => toml::Value::Boolean(*flag),
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => toml::Value::Integer(integer),
            (None, _) if number.is_u64() => {
                return Err(format!("{number}, above the largest TOML integer"))
            }
            (None, Some(float)) => toml::Value::Float(float),
            (None, None) => return Err(number.to_string()),
        },
        Value::String(text) => toml::Value::String(text.clone()),
        Value::Array(items) => {
            let mut array = toml::value::Array::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let length = path.len();
                let _ = write!(path, "[{index}]");
                array.push(json_to_toml(item, path)?);
                path.truncate(length);
            }
            toml::Value::Array(array)
        }
        Value::Object(object) => {
            let mut table = toml::Table::new();
            for (key, item) in object {
                let length = path.len();
                let _ = write!(path, ".{key}");
                table.insert(key.clone(), json_to_toml(item, path)?);
                path.truncate(length);
            }
            toml::Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fixtures::{doc, node, ROOM_EXAMPLE};
    use crate::ErrorCode;
    use serde_json::json;

    /// JSON → TOML → JSON keeps the document equal, attributes of every kind included, and
    /// the room-temperatures example survives TOML → JSON → TOML.
    #[test]
    fn json_and_toml_round_trip() {
        let original = TopologyDoc {
            description: Some("every kind of attribute\nover two lines".to_owned()),
            graph: Some("%% edges\na --> b; b --> c\n\n".to_owned()),
            node: vec![
                node(
                    "a",
                    "pass",
                    &[],
                    json!({
                        "float": 30.5,
                        "whole-float": 30.0,
                        "int": -7,
                        "big": 9_007_199_254_740_993_i64,
                        "flag": false,
                        "text": "quote \" and \\ and é",
                        "empty": {},
                        "list": [],
                        "mixed": [1, "two", 3.5, true, {"four": 4}],
                        "nested": {"deep": {"deeper": [[1, 2], [3]]}, "after": "x"},
                        "tables": [{"p": 1}, {"p": 2, "q": {"r": "s"}}],
                    }),
                ),
                node("b", "average", &["a"], json!({"field": "/x"})),
                node("c", "threshold", &[], json!({})),
            ],
            archive: None,
        };
        let toml_text = original.to_toml().unwrap();
        assert_eq!(TopologyDoc::from_toml(&toml_text).unwrap(), original);
        let json_text = original.to_json_pretty();
        assert_eq!(TopologyDoc::from_json(&json_text).unwrap(), original);
        let from_toml_json =
            TopologyDoc::from_json(&TopologyDoc::from_toml(&toml_text).unwrap().to_json_pretty());
        assert_eq!(from_toml_json.unwrap(), original);

        let spec = TopologyDoc::from_toml(ROOM_EXAMPLE).unwrap();
        let through_json = TopologyDoc::from_json(&spec.to_json_pretty()).unwrap();
        assert_eq!(through_json, spec);
        assert_eq!(
            TopologyDoc::from_toml(&through_json.to_toml().unwrap()).unwrap(),
            spec
        );
    }

    /// `archive = false` on the topology holds for the nodes that do not say; a node's own
    /// setting wins; both survive TOML and JSON; a node whose archiving changes is updated.
    #[test]
    fn archive_settings_resolve_and_round_trip() {
        let text = "archive = false\n\n[[node]]\nid = \"a\"\nfunction = \"pass\"\n\n\
                    [[node]]\nid = \"b\"\nfunction = \"pass\"\nsources = [\"a\"]\narchive = true\n";
        let parsed = TopologyDoc::from_toml(text).unwrap();
        assert_eq!(parsed.archive, Some(false));
        assert_eq!(
            (parsed.node[0].archive, parsed.node[1].archive),
            (None, Some(true))
        );
        let resolved = parsed.resolved_nodes().unwrap();
        let archived: Vec<bool> = resolved.iter().map(NodeSpec::archived).collect();
        assert_eq!(archived, [false, true]);
        assert_eq!(resolved[0].archive, Some(false));
        assert_eq!(resolved[1].archive, None);
        assert_eq!(
            TopologyDoc::from_toml(&parsed.to_toml().unwrap()).unwrap(),
            parsed
        );
        assert_eq!(
            TopologyDoc::from_json(&parsed.to_json_pretty()).unwrap(),
            parsed
        );
        let mut everything = parsed.clone();
        everything.archive = None;
        let plan = crate::plan(&resolved, &everything.resolved_nodes().unwrap());
        assert_eq!(plan.updated, ["a"]);
        assert!(plan.created.is_empty() && plan.deleted.is_empty());
    }

    /// The TOML form leaves out empty sources and attributes; the JSON form writes them.
    #[test]
    fn toml_and_json_output_text() {
        let written = doc(
            Some("a --> b\n"),
            vec![
                node("a", "pass", &[], json!({})),
                node("b", "average", &["a"], json!({"field": "/x"})),
            ],
        );
        assert_eq!(
            written.to_toml().unwrap(),
            "graph = \"\"\"\na --> b\n\"\"\"\n\n[[node]]\nid = \"a\"\nfunction = \"pass\"\n\n\
             [[node]]\nid = \"b\"\nfunction = \"average\"\nsources = [\"a\"]\n\n\
             [node.attrs]\nfield = \"/x\"\n"
        );
        assert_eq!(
            TopologyDoc::default().to_json_pretty(),
            "{\n  \"node\": []\n}"
        );
        assert_eq!(
            serde_json::to_value(&written).unwrap(),
            json!({"graph": "a --> b\n", "node": [
                {"id": "a", "function": "pass", "sources": [], "attrs": {}},
                {"id": "b", "function": "average", "sources": ["a"], "attrs": {"field": "/x"}},
            ]})
        );
    }

    /// A JSON null or an integer above i64::MAX has no TOML form: `to_toml` names the node and
    /// the attribute's path.
    #[test]
    fn to_toml_names_an_attribute_it_cannot_write() {
        let with = |attrs: Value| doc(None, vec![node("a", "pass", &[], attrs)]);
        let error = with(json!({"limit": null})).to_toml().unwrap_err();
        assert_eq!(error.code(), ErrorCode::NotRepresentableInToml);
        assert!(!error.is_malformed());
        assert_eq!(
            error.message(),
            "attribute \"limit\" of node \"a\" is null, which TOML cannot express; ask for JSON, or change the attribute"
        );
        let error = with(json!({"ok": 1, "limits": {"max": null}}))
            .to_toml()
            .unwrap_err();
        assert_eq!(
            error,
            TopologyError::NotRepresentableInToml {
                node: "a".to_owned(),
                attribute: "limits.max".to_owned(),
                reason: "null".to_owned(),
            }
        );
        let error = with(json!({"points": [1, [2, null]]}))
            .to_toml()
            .unwrap_err();
        assert_eq!(
            error.message(),
            "attribute \"points[1][1]\" of node \"a\" is null, which TOML cannot express; ask for JSON, or change the attribute"
        );
        let error = with(json!({"huge": u64::MAX})).to_toml().unwrap_err();
        assert_eq!(
            error.message(),
            "attribute \"huge\" of node \"a\" is 18446744073709551615, above the largest TOML integer, which TOML cannot express; ask for JSON, or change the attribute"
        );
    }

    /// Unknown keys are refused in the document and in nodes, in both formats, naming the key
    /// and where it is; a missing `node` list is an empty topology.
    #[test]
    fn unknown_keys_and_bad_shapes_are_refused() {
        let message = |result: Result<TopologyDoc, TopologyError>| {
            let error = result.unwrap_err();
            assert_eq!(error.code(), ErrorCode::MalformedDocument);
            assert!(error.is_malformed());
            error.message()
        };
        assert_eq!(
            message(TopologyDoc::from_toml("descripton = \"x\"\n")),
            "the TOML document is malformed at line 1, column 1: unknown field `descripton`, expected one of `description`, `graph`, `archive`, `node`"
        );
        assert_eq!(
            message(TopologyDoc::from_toml(
                "[[node]]\nid = \"a\"\nfunction = \"pass\"\nsorces = [\"b\"]\n"
            )),
            "the TOML document is malformed at line 4, column 1: unknown field `sorces`, expected one of `id`, `function`, `sources`, `attrs`, `archive`"
        );
        assert_eq!(
            message(TopologyDoc::from_toml("[[node]]\nid = \"a\"\n")),
            "the TOML document is malformed at line 1, column 1: missing field `function`"
        );
        assert_eq!(
            message(TopologyDoc::from_json(
                "{\"node\": [{\"id\": \"a\", \"function\": \"pass\", \"sorces\": []}]}"
            )),
            "the JSON document is malformed at line 1, column 50: unknown field `sorces`, expected one of `id`, `function`, `sources`, `attrs`, `archive`"
        );
        assert_eq!(
            message(TopologyDoc::from_json("{\"grpah\": \"a --> b\"}")),
            "the JSON document is malformed at line 1, column 8: unknown field `grpah`, expected one of `description`, `graph`, `archive`, `node`"
        );
        assert_eq!(
            message(TopologyDoc::from_json("{\"node\": [}")),
            "the JSON document is malformed at line 1, column 11: expected value"
        );
        assert_eq!(TopologyDoc::from_toml("").unwrap(), TopologyDoc::default());
        assert_eq!(
            TopologyDoc::from_json("{}").unwrap(),
            TopologyDoc::default()
        );
    }

    /// TOML dates become RFC 3339 strings; a TOML `inf` or `nan` is refused, naming the node
    /// and attribute.
    #[test]
    fn toml_only_values_are_converted_or_refused() {
        let parsed = TopologyDoc::from_toml(
            "[[node]]\nid = \"a\"\nfunction = \"pass\"\nattrs = { since = 2024-05-01T10:00:00Z, day = 2024-05-01 }\n",
        )
        .unwrap();
        assert_eq!(
            Value::Object(parsed.node[0].attrs.clone()),
            json!({"since": "2024-05-01T10:00:00Z", "day": "2024-05-01"})
        );
        let error = TopologyDoc::from_toml(
            "[[node]]\nid = \"a\"\nfunction = \"pass\"\nattrs = { above = inf }\n",
        )
        .unwrap_err();
        assert_eq!(
            error.message(),
            "the TOML document is malformed: attribute \"above\" of node \"a\" is inf, which JSON cannot hold; use a finite number"
        );
    }
}
