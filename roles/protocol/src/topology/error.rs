//! Why a topology document was refused: the error, its API code and its message.

use crate::error::ErrorCode;
use crate::slug::SlugError;

/// Why a topology document was refused. [`TopologyError::code`] is the API's error code and
/// the `Display` text is [`TopologyError::message`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TopologyError {
    /// The text is not a JSON or TOML document of the expected shape, unknown keys included.
    #[error("{}", self.message())]
    MalformedDocument {
        /// `JSON` or `TOML`.
        format: &'static str,
        /// Where in the text, when known (1-based).
        line: Option<usize>,
        /// Where in the line, when known (1-based, in characters for TOML and bytes for JSON).
        column: Option<usize>,
        /// What the parser found wrong.
        reason: String,
    },
    /// An attribute has no TOML form, so the document cannot be written as TOML.
    #[error("{}", self.message())]
    NotRepresentableInToml {
        /// The node whose attribute it is.
        node: String,
        /// The attribute's path, e.g. `limits.max` or `points[2]`.
        attribute: String,
        /// What the value is, e.g. `null`.
        reason: String,
    },
    /// The `graph` text is not a list of `a --> b` edges.
    #[error("{}", self.message())]
    InvalidGraph {
        /// The line of the `graph` text (1-based).
        line: usize,
        /// What is wrong there.
        reason: String,
    },
    /// A node id is not a slug.
    #[error("{}", self.message())]
    InvalidSlug {
        /// What is wrong with it.
        error: SlugError,
    },
    /// Two nodes have the same id.
    #[error("{}", self.message())]
    DuplicateNode {
        /// The id.
        id: String,
        /// The position of the first node with it (1-based).
        first: usize,
        /// The position of the next one (1-based).
        second: usize,
    },
    /// A node names a function that is not registered.
    #[error("{}", self.message())]
    UnknownFunction {
        /// The node.
        node: String,
        /// The function it names.
        function: String,
    },
    /// A node's attributes do not suit its function.
    #[error("{}", self.message())]
    InvalidAttrs {
        /// The node.
        node: String,
        /// Its function.
        function: String,
        /// One sentence per problem, from the function registry.
        problems: Vec<String>,
    },
    /// A node receives from a node the document does not declare.
    #[error("{}", self.message())]
    UnknownSource {
        /// The receiving node.
        node: String,
        /// The undeclared source.
        from: String,
        /// The `graph` line of the edge, or `None` when the node's `sources` list it.
        graph_line: Option<usize>,
    },
    /// A `graph` edge leads to a node the document does not declare.
    #[error("{}", self.message())]
    UnknownTarget {
        /// The node the edge leaves.
        from: String,
        /// The undeclared node it leads to.
        to: String,
        /// The `graph` line of the edge.
        graph_line: usize,
    },
    /// A node has more sources than [`Limits::max_sources`](super::Limits::max_sources).
    #[error("{}", self.message())]
    TooManySources {
        /// The node.
        node: String,
        /// How many sources it has, the graph's included.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Outputs would flow in a circle.
    #[error("{}", self.message())]
    Cycle {
        /// The cycle in the direction data flows, starting and ending at the same node:
        /// `[a, b, a]` when `a` feeds `b` and `b` feeds `a`.
        path: Vec<String>,
    },
}

impl TopologyError {
    /// The API error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            TopologyError::MalformedDocument { .. } => ErrorCode::MalformedDocument,
            TopologyError::NotRepresentableInToml { .. } => ErrorCode::NotRepresentableInToml,
            TopologyError::InvalidGraph { .. } => ErrorCode::InvalidGraph,
            TopologyError::InvalidSlug { .. } => ErrorCode::InvalidSlug,
            TopologyError::DuplicateNode { .. } => ErrorCode::DuplicateNode,
            TopologyError::UnknownFunction { .. } => ErrorCode::UnknownFunction,
            TopologyError::InvalidAttrs { .. } => ErrorCode::InvalidAttrs,
            TopologyError::UnknownSource { .. } => ErrorCode::UnknownSource,
            TopologyError::UnknownTarget { .. } => ErrorCode::UnknownTarget,
            TopologyError::TooManySources { .. } => ErrorCode::TooManySources,
            TopologyError::Cycle { .. } => ErrorCode::Cycle,
        }
    }

    /// Whether the text could not be read as a document at all (the API's 400), rather than
    /// being a document that fails validation (422) or cannot be written as TOML.
    pub fn is_malformed(&self) -> bool {
        matches!(self, TopologyError::MalformedDocument { .. })
    }

    /// A sentence a person can act on.
    pub fn message(&self) -> String {
        match self {
            TopologyError::MalformedDocument {
                format,
                line: Some(line),
                column: Some(column),
                reason,
            } => format!(
                "the {format} document is malformed at line {line}, column {column}: {reason}"
            ),
            TopologyError::MalformedDocument { format, reason, .. } => {
                format!("the {format} document is malformed: {reason}")
            }
            TopologyError::NotRepresentableInToml { node, reason, .. } if node.is_empty() => {
                format!("the document cannot be written as TOML: {reason}; ask for JSON")
            }
            TopologyError::NotRepresentableInToml {
                node,
                attribute,
                reason,
            } => format!(
                "attribute {attribute:?} of node {node:?} is {reason}, which TOML cannot express; ask for JSON, or change the attribute"
            ),
            TopologyError::InvalidGraph { line, reason } => format!("graph line {line}: {reason}"),
            TopologyError::InvalidSlug { error } => format!("node {error}"),
            TopologyError::DuplicateNode { id, first, second } => format!(
                "node {id:?} is declared twice (nodes {first} and {second} of the document); give each node its own id"
            ),
            TopologyError::UnknownFunction { node, function } => format!(
                "node {node:?} uses function {function:?}, which is not registered; GET /v1/functions lists the functions"
            ),
            TopologyError::InvalidAttrs {
                node,
                function,
                problems,
            } => format!(
                "node {node:?} has attributes that do not suit function {function:?}: {}",
                problems.join("; ")
            ),
            TopologyError::UnknownSource {
                node,
                from,
                graph_line: None,
            } => format!(
                "node {node:?} lists source {from:?}, which is not a node of this topology; declare that node or remove the source"
            ),
            TopologyError::UnknownSource {
                node,
                from,
                graph_line: Some(line),
            } => format!(
                "graph line {line}: the edge {from} --> {node} starts at {from:?}, which is not a node of this topology; declare that node or remove the edge"
            ),
            TopologyError::UnknownTarget {
                from,
                to,
                graph_line,
            } => format!(
                "graph line {graph_line}: the edge {from} --> {to} leads to {to:?}, which is not a node of this topology; declare that node or remove the edge"
            ),
            TopologyError::TooManySources { node, count, limit } => format!(
                "node {node:?} has {count} sources, more than the limit of {limit}; gather some of them through an intermediate node"
            ),
            TopologyError::Cycle { path } => format!(
                "the edges form a cycle: {}; remove one of these edges",
                path.join(" -> ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::topology::fixtures::{doc, first_error, node};
    use crate::topology::TopologyDoc;
    use crate::ErrorCode;
    use serde_json::json;

    /// Each validation error has its code and an exact message.
    #[test]
    fn validation_errors_have_codes_and_messages() {
        let cases: Vec<(TopologyDoc, ErrorCode, &str)> = vec![
            (
                doc(None, vec![node("Temp", "pass", &[], json!({}))]),
                ErrorCode::InvalidSlug,
                "node \"Temp\" is not a valid id: it must start with a lower-case letter; use lower-case letters, digits and single hyphens, starting with a letter, at most 64 characters (e.g. \"temp-in\")",
            ),
            (
                doc(
                    None,
                    vec![
                        node("a", "pass", &[], json!({})),
                        node("b", "pass", &[], json!({})),
                        node("a", "pass", &[], json!({})),
                    ],
                ),
                ErrorCode::DuplicateNode,
                "node \"a\" is declared twice (nodes 1 and 3 of the document); give each node its own id",
            ),
            (
                doc(None, vec![node("a", "nope", &[], json!({}))]),
                ErrorCode::UnknownFunction,
                "node \"a\" uses function \"nope\", which is not registered; GET /v1/functions lists the functions",
            ),
            (
                doc(None, vec![node("a", "threshold", &[], json!({"field": 3}))]),
                ErrorCode::InvalidAttrs,
                "node \"a\" has attributes that do not suit function \"threshold\": \"field\" must be a JSON pointer string; \"above\" must be a number",
            ),
            (
                doc(None, vec![node("a", "pass", &["ghost"], json!({}))]),
                ErrorCode::UnknownSource,
                "node \"a\" lists source \"ghost\", which is not a node of this topology; declare that node or remove the source",
            ),
            (
                doc(
                    Some("a --> b"),
                    vec![
                        node("a", "pass", &[], json!({})),
                        node("b", "pass", &["b"], json!({})),
                    ],
                ),
                ErrorCode::Cycle,
                "the edges form a cycle: b -> b; remove one of these edges",
            ),
        ];
        for (case, code, message) in cases {
            let error = first_error(&case);
            assert_eq!((error.code(), error.message().as_str()), (code, message));
            assert_eq!(error.to_string(), message);
            assert!(!error.is_malformed());
        }
    }
}
