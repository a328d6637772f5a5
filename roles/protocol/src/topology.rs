//! The topology document: parsing (JSON, TOML, the Mermaid-style graph), validation, the
//! Mermaid flowchart of a topology, and the plan that turns one set of nodes into another.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::node::{NodeSpec, DEFAULT_MAX_SOURCES};
use crate::slug::{validate_slug, SlugError};

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
}

impl From<RawDoc<Map<String, Value>>> for TopologyDoc {
    fn from(raw: RawDoc<Map<String, Value>>) -> Self {
        TopologyDoc {
            description: raw.description,
            graph: raw.graph,
            node: raw
                .node
                .into_iter()
                .map(|node| NodeSpec {
                    id: node.id,
                    function: node.function,
                    sources: node.sources,
                    attrs: node.attrs,
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
            });
        }
        Ok(TopologyDoc {
            description: raw.description,
            graph: raw.graph,
            node: nodes,
        })
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
                attrs,
            });
        }
        let doc = TomlDoc {
            description: self.description.as_deref(),
            graph: self.graph.as_deref(),
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

    /// The nodes with their full sources: each node's `sources` first, then the `graph` edges
    /// into it in graph order, without repeats. Fails on a `graph` syntax error
    /// ([`TopologyError::InvalidGraph`]) or a graph edge naming a node the document does not
    /// declare ([`TopologyError::UnknownSource`], [`TopologyError::UnknownTarget`]); unknown
    /// names in `sources` lists are left for [`TopologyDoc::validate`] to report.
    pub fn resolved_nodes(&self) -> Result<Vec<NodeSpec>, TopologyError> {
        let Resolved {
            nodes, mut errors, ..
        } = self.resolve()?;
        if errors.is_empty() {
            Ok(nodes)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// A Mermaid `flowchart LR` of the resolved topology; see [`flowchart`].
    pub fn mermaid(&self) -> Result<String, TopologyError> {
        Ok(flowchart(&self.resolved_nodes()?))
    }

    /// Checks the document and returns its resolved nodes (see
    /// [`TopologyDoc::resolved_nodes`]), or the first problem; this is what the API reports.
    /// The topology's own id is the caller's to check. Problems come in a fixed order: the
    /// graph (syntax, then edges naming unknown nodes, in graph order); then each node in
    /// document order (`invalid_slug`, `duplicate_node`, `unknown_function` or
    /// `invalid_attrs`, `unknown_source` for each unknown source, `too_many_sources`); then
    /// one `cycle`.
    ///
    /// `check_function(function, attrs)` is the function registry: `None` when no function
    /// has that name, else whether the attributes the document lists suit it, with one
    /// sentence per problem.
    pub fn validate(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Result<Vec<NodeSpec>, TopologyError> {
        let (nodes, mut errors) = self.check(limits, check_function)?;
        if errors.is_empty() {
            Ok(nodes)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Every problem [`TopologyDoc::validate`] finds, in the same order; empty when the
    /// document is valid. A graph syntax error stops the checks, so it comes alone.
    pub fn validate_all(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Vec<TopologyError> {
        match self.validated_nodes(limits, check_function) {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    /// The resolved nodes of a valid document (see [`TopologyDoc::resolved_nodes`]), or every
    /// problem [`TopologyDoc::validate_all`] finds: both from one pass over the document.
    pub fn validated_nodes(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Result<Vec<NodeSpec>, Vec<TopologyError>> {
        match self.check(limits, check_function) {
            Ok((nodes, errors)) if errors.is_empty() => Ok(nodes),
            Ok((_, errors)) => Err(errors),
            Err(error) => Err(vec![error]),
        }
    }

    /// Resolves the sources and lists the graph edges that name undeclared nodes; fails only
    /// on graph syntax.
    fn resolve(&self) -> Result<Resolved<'_>, TopologyError> {
        let edges = match &self.graph {
            Some(graph) => parse_graph(graph)?,
            None => Vec::new(),
        };
        let mut positions: HashMap<&str, usize> = HashMap::with_capacity(self.node.len());
        let first_of: Vec<usize> = self
            .node
            .iter()
            .enumerate()
            .map(|(index, node)| *positions.entry(node.id.as_str()).or_insert(index))
            .collect();
        let mut errors = Vec::new();
        // The graph's edges into each node, by the position of the first node of its id.
        let mut edges_into: Vec<Vec<&str>> = vec![Vec::new(); self.node.len()];
        for edge in &edges {
            if !positions.contains_key(edge.from.as_str()) {
                errors.push(TopologyError::UnknownSource {
                    node: edge.to.clone(),
                    from: edge.from.clone(),
                    graph_line: Some(edge.line),
                });
            } else if let Some(&to) = positions.get(edge.to.as_str()) {
                edges_into[to].push(&edge.from);
            } else {
                errors.push(TopologyError::UnknownTarget {
                    from: edge.from.clone(),
                    to: edge.to.clone(),
                    graph_line: edge.line,
                });
            }
        }
        let nodes = self
            .node
            .iter()
            .zip(&first_of)
            .map(|(node, &first)| {
                let sources = node
                    .sources
                    .iter()
                    .map(String::as_str)
                    .chain(edges_into[first].iter().copied());
                NodeSpec {
                    id: node.id.clone(),
                    function: node.function.clone(),
                    sources: first_of_each(sources),
                    attrs: node.attrs.clone(),
                }
            })
            .collect();
        Ok(Resolved {
            nodes,
            errors,
            positions,
            first_of,
        })
    }

    /// The resolved nodes and every problem, in the order [`TopologyDoc::validate`] gives.
    /// Linear in the size of the document.
    fn check(
        &self,
        limits: &Limits,
        check_function: &FunctionCheck<'_>,
    ) -> Result<(Vec<NodeSpec>, Vec<TopologyError>), TopologyError> {
        let Resolved {
            nodes,
            mut errors,
            positions,
            first_of,
        } = self.resolve()?;
        // outputs[i]: the nodes that receive from node i (the first of its id), for the cycle
        // search; `added_for[from]` is the last receiver `from` was added for.
        let mut outputs: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut added_for: Vec<usize> = vec![usize::MAX; nodes.len()];
        for (index, node) in nodes.iter().enumerate() {
            if let Err(error) = validate_slug(&node.id) {
                errors.push(TopologyError::InvalidSlug { error });
            }
            let first = first_of[index];
            if first != index {
                errors.push(TopologyError::DuplicateNode {
                    id: node.id.clone(),
                    first: first + 1,
                    second: index + 1,
                });
            }
            // The attributes checked are the ones the document lists, not the resolved ones
            // (they are the same: resolving only adds sources).
            match check_function(&node.function, &node.attrs) {
                None => errors.push(TopologyError::UnknownFunction {
                    node: node.id.clone(),
                    function: node.function.clone(),
                }),
                Some(Err(problems)) => errors.push(TopologyError::InvalidAttrs {
                    node: node.id.clone(),
                    function: node.function.clone(),
                    problems,
                }),
                Some(Ok(())) => {}
            }
            for source in &node.sources {
                match positions.get(source.as_str()) {
                    // A node repeating an id takes no part in the cycle search.
                    Some(&from) if first == index && added_for[from] != index => {
                        added_for[from] = index;
                        outputs[from].push(index);
                    }
                    Some(_) => {}
                    None => errors.push(TopologyError::UnknownSource {
                        node: node.id.clone(),
                        from: source.clone(),
                        graph_line: None,
                    }),
                }
            }
            if node.sources.len() > limits.max_sources {
                errors.push(TopologyError::TooManySources {
                    node: node.id.clone(),
                    count: node.sources.len(),
                    limit: limits.max_sources,
                });
            }
        }
        if let Some(path) = find_cycle(&nodes, &outputs) {
            errors.push(TopologyError::Cycle { path });
        }
        Ok((nodes, errors))
    }
}

/// A document's nodes with their sources resolved; see [`TopologyDoc::resolve`].
struct Resolved<'a> {
    /// The nodes, in document order, with the graph's edges among their sources.
    nodes: Vec<NodeSpec>,
    /// The graph's edges that name undeclared nodes.
    errors: Vec<TopologyError>,
    /// The position of the first node of each id.
    positions: HashMap<&'a str, usize>,
    /// For each node, the position of the first node of its id (its own unless repeated).
    first_of: Vec<usize>,
}

/// The first occurrence of each of `items`, in order. A short list is searched; a long one
/// (a node may list any number of sources before validation refuses it) goes through a set,
/// so the cost stays linear.
fn first_of_each<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    const SEARCHED: usize = 16;
    let mut kept: Vec<&'a str> = Vec::new();
    let mut seen: HashSet<&'a str> = HashSet::new();
    for item in items {
        let new = if kept.len() < SEARCHED {
            !kept.contains(&item)
        } else {
            if seen.is_empty() {
                seen.extend(kept.iter().copied());
            }
            seen.insert(item)
        };
        if new {
            kept.push(item);
        }
    }
    kept.into_iter().map(str::to_owned).collect()
}

/// Whether a function exists and suits the attributes given: `None` when no function is
/// registered under the name, `Some(Err(problems))` with one sentence per problem when the
/// attributes do not suit it. See [`TopologyDoc::validate`].
pub type FunctionCheck<'a> =
    dyn Fn(&str, &Map<String, Value>) -> Option<Result<(), Vec<String>>> + 'a;

/// Limits on a topology, configurable at the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most sources one node may have, counting those from the graph
    /// ([`DEFAULT_MAX_SOURCES`] by default).
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sources: DEFAULT_MAX_SOURCES,
        }
    }
}

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
    /// A node has more sources than [`Limits::max_sources`].
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
    /// The API error code, snake_case.
    pub fn code(&self) -> &'static str {
        match self {
            TopologyError::MalformedDocument { .. } => "malformed_document",
            TopologyError::NotRepresentableInToml { .. } => "not_representable_in_toml",
            TopologyError::InvalidGraph { .. } => "invalid_graph",
            TopologyError::InvalidSlug { .. } => "invalid_slug",
            TopologyError::DuplicateNode { .. } => "duplicate_node",
            TopologyError::UnknownFunction { .. } => "unknown_function",
            TopologyError::InvalidAttrs { .. } => "invalid_attrs",
            TopologyError::UnknownSource { .. } => "unknown_source",
            TopologyError::UnknownTarget { .. } => "unknown_target",
            TopologyError::TooManySources { .. } => "too_many_sources",
            TopologyError::Cycle { .. } => "cycle",
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

/// One edge of a `graph` text: `from --> to` on `line` (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphEdge {
    /// The source node.
    pub from: String,
    /// The node that receives from it.
    pub to: String,
    /// The line of the `graph` text it is on.
    pub line: usize,
}

/// Parses a Mermaid-style `graph`: edges `a --> b` and chains `a --> b --> c`, several
/// statements on a line separated by `;`, an optional trailing `;`, blank lines and `%%`
/// comments, with any spacing. A first statement `flowchart LR` or `graph TD` (any
/// direction, or none) is allowed and ignored, so pasted Mermaid works. Returns the edges in
/// order, repeats included, or [`TopologyError::InvalidGraph`] naming the line.
pub fn parse_graph(text: &str) -> Result<Vec<GraphEdge>, TopologyError> {
    let mut edges = Vec::new();
    let mut seen_statement = false;
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let fail = |reason: String| TopologyError::InvalidGraph {
            line: line_number,
            reason,
        };
        let code = match line.find("%%") {
            Some(at) => &line[..at],
            None => line,
        };
        for statement in code.split(';').map(str::trim) {
            if statement.is_empty() {
                continue;
            }
            let first_statement = !seen_statement;
            seen_statement = true;
            if first_statement && is_mermaid_header(statement) {
                continue;
            }
            let parts: Vec<&str> = statement.split("-->").map(str::trim).collect();
            if parts.len() == 1 {
                let reason = match validate_slug(statement) {
                    Ok(()) => format!(
                        "{statement:?} alone is not an edge; write \"{statement} --> other-node\""
                    ),
                    Err(_) => "expected \"-->\" between node ids".to_owned(),
                };
                return Err(fail(reason));
            }
            for (position, part) in parts.iter().enumerate() {
                if part.is_empty() {
                    let reason = match position {
                        0 => "expected a node id before \"-->\"",
                        _ if position == parts.len() - 1 => "expected a node id after \"-->\"",
                        _ => "expected a node id between two \"-->\"",
                    };
                    return Err(fail(reason.to_owned()));
                }
                if part.contains(|c: char| c.is_whitespace() || c == '>' || c == '|') {
                    return Err(fail("expected \"-->\" between node ids".to_owned()));
                }
                validate_slug(part).map_err(|error| fail(error.to_string()))?;
            }
            for pair in parts.windows(2) {
                edges.push(GraphEdge {
                    from: pair[0].to_owned(),
                    to: pair[1].to_owned(),
                    line: line_number,
                });
            }
        }
    }
    Ok(edges)
}

/// Whether `statement` is a Mermaid diagram header such as `flowchart LR` or `graph`.
fn is_mermaid_header(statement: &str) -> bool {
    let mut words = statement.split_whitespace();
    let keyword = words.next();
    let direction = words.next();
    matches!(keyword, Some("graph" | "flowchart"))
        && matches!(direction, None | Some("TB" | "TD" | "BT" | "RL" | "LR"))
        && words.next().is_none()
}

/// A Mermaid `flowchart LR` of resolved nodes (see [`TopologyDoc::resolved_nodes`]): the
/// line `flowchart LR`, then `    id["id<br/>function"]` for each node in order, then
/// `    source --> node` for each edge, by receiving node in order and then its sources in
/// order. Each line ends in a newline.
///
/// An id that Mermaid reads as a keyword (`end`, `graph`, `style`, ...) is written with a
/// trailing `_` as its Mermaid name (`end_["end<br/>pass"]`); slugs have no `_`, so this
/// cannot clash with another node.
pub fn flowchart(nodes: &[NodeSpec]) -> String {
    let mut chart = String::from("flowchart LR\n");
    for node in nodes {
        let label_id = node.id.replace('"', "#quot;");
        let label_function = node.function.replace('"', "#quot;");
        let _ = writeln!(
            chart,
            "    {}[\"{label_id}<br/>{label_function}\"]",
            mermaid_name(&node.id)
        );
    }
    for node in nodes {
        for source in &node.sources {
            let _ = writeln!(
                chart,
                "    {} --> {}",
                mermaid_name(source),
                mermaid_name(&node.id)
            );
        }
    }
    chart
}

/// The name a node goes by in Mermaid; see [`flowchart`].
fn mermaid_name(id: &str) -> String {
    const KEYWORDS: [&str; 8] = [
        "end",
        "graph",
        "flowchart",
        "subgraph",
        "style",
        "class",
        "click",
        "direction",
    ];
    if KEYWORDS.contains(&id) {
        format!("{id}_")
    } else {
        id.to_owned()
    }
}

/// What applying a topology changes: node ids in document order (`deleted` in the order of
/// the current nodes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Nodes to create.
    pub created: Vec<String>,
    /// Nodes whose function, sources or listed attributes change.
    pub updated: Vec<String>,
    /// Nodes to delete.
    pub deleted: Vec<String>,
}

impl Plan {
    /// Whether applying changes nothing.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }
}

/// The plan that turns the `current` nodes into the `next` ones; both should be resolved
/// (see [`TopologyDoc::resolved_nodes`]). A node is updated when its function differs, its
/// sources differ (order counts: a function may tell its inputs apart by position), or an
/// attribute `next` lists has a different value in `current`. Attributes `next` does not
/// list are the function's running state and are left alone, so they do not count.
pub fn plan(current: &[NodeSpec], next: &[NodeSpec]) -> Plan {
    let current_by_id: HashMap<&str, &NodeSpec> = current
        .iter()
        .map(|node| (node.id.as_str(), node))
        .collect();
    let next_ids: HashSet<&str> = next.iter().map(|node| node.id.as_str()).collect();
    let mut plan = Plan::default();
    for node in next {
        match current_by_id.get(node.id.as_str()) {
            None => plan.created.push(node.id.clone()),
            Some(old) => {
                let changed = old.function != node.function
                    || old.sources != node.sources
                    || node
                        .attrs
                        .iter()
                        .any(|(key, value)| old.attrs.get(key) != Some(value));
                if changed {
                    plan.updated.push(node.id.clone());
                }
            }
        }
    }
    plan.deleted = current
        .iter()
        .filter(|node| !next_ids.contains(node.id.as_str()))
        .map(|node| node.id.clone())
        .collect();
    plan
}

/// For each node, the nodes that list it as a source (where its outputs go), in the order of
/// `nodes`. Every node has an entry, empty when nothing receives from it; sources that are
/// not among `nodes` are ignored.
pub fn targets(nodes: &[NodeSpec]) -> BTreeMap<String, Vec<String>> {
    let mut positions: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
    let first_of: Vec<usize> = nodes
        .iter()
        .enumerate()
        .map(|(index, node)| *positions.entry(node.id.as_str()).or_insert(index))
        .collect();
    // lists[i]: the receivers of the node first at position i, by the position of the first
    // node of their id; `added_for[i]` is the last receiver added there, so a source listed
    // twice costs nothing to skip, however many receivers the node has.
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut added_for: Vec<usize> = vec![usize::MAX; nodes.len()];
    for (index, node) in nodes.iter().enumerate() {
        let receiver = first_of[index];
        for source in &node.sources {
            let Some(&from) = positions.get(source.as_str()) else {
                continue;
            };
            // A receiver whose id repeats comes back after others: search its list.
            let repeated = added_for[from] == receiver
                || (receiver != index && lists[from].contains(&receiver));
            if !repeated {
                added_for[from] = receiver;
                lists[from].push(receiver);
            }
        }
    }
    nodes
        .iter()
        .zip(lists)
        .enumerate()
        .filter(|(index, _)| first_of[*index] == *index)
        .map(|(_, (node, list))| {
            let list = list.into_iter().map(|at| nodes[at].id.clone()).collect();
            (node.id.clone(), list)
        })
        .collect()
}

/// One cycle among `nodes` in the direction data flows, first and last node the same, or
/// `None`; `outputs[i]` lists the nodes that receive from node `i`, without repeats.
/// Deterministic: the shortest cycle through the first node in order that is on one.
///
/// Linear in nodes and edges: the strongly connected components tell which nodes lie on a
/// cycle, and one breadth-first search inside the first one's component finds the path.
fn find_cycle(nodes: &[NodeSpec], outputs: &[Vec<usize>]) -> Option<Vec<String>> {
    let self_loop = |index: usize| outputs[index].contains(&index);
    let component = components(outputs);
    let mut sizes = vec![0_usize; nodes.len()];
    for &id in &component {
        sizes[id] += 1;
    }
    let start = (0..nodes.len()).find(|&index| sizes[component[index]] > 1 || self_loop(index))?;
    // Breadth-first from `start` along outputs, inside its component (no path back to
    // `start` leaves it); the first edge back to `start` closes the shortest cycle through it.
    let mut parent: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut queue = VecDeque::from([start]);
    let mut visited = vec![false; nodes.len()];
    visited[start] = true;
    while let Some(at) = queue.pop_front() {
        for &next in &outputs[at] {
            if component[next] != component[start] {
                continue;
            }
            if next == start {
                let mut backwards = Vec::new();
                let mut step = at;
                while step != start {
                    backwards.push(step);
                    step = parent[step].unwrap_or(start);
                }
                let mut path = vec![nodes[start].id.clone()];
                path.extend(backwards.iter().rev().map(|&index| nodes[index].id.clone()));
                path.push(nodes[start].id.clone());
                return Some(path);
            }
            if !visited[next] {
                visited[next] = true;
                parent[next] = Some(at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The strongly connected component of each node of the graph `outputs` (node → the nodes
/// it has edges to), numbered from 0: Tarjan's algorithm, with an explicit stack so that a
/// chain of 100 000 nodes does not overflow the thread's.
fn components(outputs: &[Vec<usize>]) -> Vec<usize> {
    const UNSEEN: usize = usize::MAX;
    let count = outputs.len();
    let mut order = vec![UNSEEN; count];
    let mut low = vec![0; count];
    let mut on_stack = vec![false; count];
    let mut stack: Vec<usize> = Vec::new();
    let mut component = vec![UNSEEN; count];
    let mut next_order = 0;
    let mut next_component = 0;
    // The search's call stack: a node and the position of its next edge to follow.
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..count {
        if order[root] != UNSEEN {
            continue;
        }
        order[root] = next_order;
        low[root] = next_order;
        next_order += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(frame) = calls.last_mut() {
            let at = frame.0;
            if let Some(&next) = outputs[at].get(frame.1) {
                frame.1 += 1;
                if order[next] == UNSEEN {
                    order[next] = next_order;
                    low[next] = next_order;
                    next_order += 1;
                    stack.push(next);
                    on_stack[next] = true;
                    calls.push((next, 0));
                } else if on_stack[next] {
                    low[at] = low[at].min(order[next]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(caller, _)) = calls.last() {
                low[caller] = low[caller].min(low[at]);
            }
            if low[at] == order[at] {
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component[member] = next_component;
                    if member == at {
                        break;
                    }
                }
                next_component += 1;
            }
        }
    }
    component
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
    use serde_json::json;

    /// The documented example topology (room temperatures), verbatim.
    const ROOM_EXAMPLE: &str = r#"description = "room temperatures"
graph = """
temp-in --> temp-avg --> too-hot
"""

[[node]]
id = "temp-in"
function = "pass"

[[node]]
id = "temp-avg"
function = "average"
attrs = { field = "/celsius" }

[[node]]
id = "too-hot"
function = "threshold"
attrs = { field = "/mean", above = 30.0 }
"#;

    /// The test registry: `pass` takes anything; `average` needs a string `field`;
    /// `threshold` needs a string `field` and a number `above`.
    fn registry(function: &str, attrs: &Map<String, Value>) -> Option<Result<(), Vec<String>>> {
        let mut problems = Vec::new();
        match function {
            "pass" => {}
            "average" | "threshold" => {
                if !attrs.get("field").is_some_and(Value::is_string) {
                    problems.push("\"field\" must be a JSON pointer string".to_owned());
                }
                if function == "threshold" && !attrs.get("above").is_some_and(Value::is_number) {
                    problems.push("\"above\" must be a number".to_owned());
                }
            }
            _ => return None,
        }
        Some(if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        })
    }

    fn node(id: &str, function: &str, sources: &[&str], attrs: Value) -> NodeSpec {
        NodeSpec {
            id: id.to_owned(),
            function: function.to_owned(),
            sources: sources.iter().map(|source| source.to_string()).collect(),
            attrs: match attrs {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }

    fn doc(graph: Option<&str>, nodes: Vec<NodeSpec>) -> TopologyDoc {
        TopologyDoc {
            description: None,
            graph: graph.map(str::to_owned),
            node: nodes,
        }
    }

    fn edges(text: &str) -> Vec<(String, String, usize)> {
        parse_graph(text)
            .unwrap()
            .into_iter()
            .map(|edge| (edge.from, edge.to, edge.line))
            .collect()
    }

    fn edge(from: &str, to: &str, line: usize) -> (String, String, usize) {
        (from.to_owned(), to.to_owned(), line)
    }

    fn graph_error(text: &str) -> String {
        let error = parse_graph(text).unwrap_err();
        assert_eq!(error.code(), "invalid_graph");
        error.message()
    }

    fn first_error(doc: &TopologyDoc) -> TopologyError {
        doc.validate(&Limits::default(), &registry).unwrap_err()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|id| id.to_string()).collect()
    }

    /// The room-temperatures example parses to its three nodes, and the graph chain becomes their sources.
    #[test]
    fn spec_example_parses_with_sources_from_the_graph() {
        let parsed = TopologyDoc::from_toml(ROOM_EXAMPLE).unwrap();
        assert_eq!(parsed.description.as_deref(), Some("room temperatures"));
        assert_eq!(
            parsed.graph.as_deref(),
            Some("temp-in --> temp-avg --> too-hot\n")
        );
        let declared = vec![
            node("temp-in", "pass", &[], json!({})),
            node("temp-avg", "average", &[], json!({"field": "/celsius"})),
            node(
                "too-hot",
                "threshold",
                &[],
                json!({"field": "/mean", "above": 30.0}),
            ),
        ];
        assert_eq!(parsed.node, declared);
        let resolved = vec![
            node("temp-in", "pass", &[], json!({})),
            node(
                "temp-avg",
                "average",
                &["temp-in"],
                json!({"field": "/celsius"}),
            ),
            node(
                "too-hot",
                "threshold",
                &["temp-avg"],
                json!({"field": "/mean", "above": 30.0}),
            ),
        ];
        assert_eq!(parsed.resolved_nodes().unwrap(), resolved);
        assert_eq!(
            parsed.validate(&Limits::default(), &registry).unwrap(),
            resolved
        );
        assert!(parsed
            .validate_all(&Limits::default(), &registry)
            .is_empty());
    }

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
        assert_eq!(error.code(), "not_representable_in_toml");
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
            assert_eq!(error.code(), "malformed_document");
            assert!(error.is_malformed());
            error.message()
        };
        assert_eq!(
            message(TopologyDoc::from_toml("descripton = \"x\"\n")),
            "the TOML document is malformed at line 1, column 1: unknown field `descripton`, expected one of `description`, `graph`, `node`"
        );
        assert_eq!(
            message(TopologyDoc::from_toml(
                "[[node]]\nid = \"a\"\nfunction = \"pass\"\nsorces = [\"b\"]\n"
            )),
            "the TOML document is malformed at line 4, column 1: unknown field `sorces`, expected one of `id`, `function`, `sources`, `attrs`"
        );
        assert_eq!(
            message(TopologyDoc::from_toml("[[node]]\nid = \"a\"\n")),
            "the TOML document is malformed at line 1, column 1: missing field `function`"
        );
        assert_eq!(
            message(TopologyDoc::from_json(
                "{\"node\": [{\"id\": \"a\", \"function\": \"pass\", \"sorces\": []}]}"
            )),
            "the JSON document is malformed at line 1, column 50: unknown field `sorces`, expected one of `id`, `function`, `sources`, `attrs`"
        );
        assert_eq!(
            message(TopologyDoc::from_json("{\"grpah\": \"a --> b\"}")),
            "the JSON document is malformed at line 1, column 8: unknown field `grpah`, expected one of `description`, `graph`, `node`"
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

    /// Chains, `;`, several statements on a line, blank lines, `%%` comments, CRLF, odd
    /// spacing and a Mermaid header all parse to the same kind of edge list, with line numbers.
    #[test]
    fn graph_syntax_variants() {
        assert_eq!(edges("a --> b"), vec![edge("a", "b", 1)]);
        assert_eq!(
            edges("a-->b-->c"),
            vec![edge("a", "b", 1), edge("b", "c", 1)]
        );
        assert_eq!(
            edges("  a   -->\tb ;  \n\n%% a comment --> ignored\nb --> c; c --> d;\r\nd --> e %% why\n"),
            vec![
                edge("a", "b", 1),
                edge("b", "c", 4),
                edge("c", "d", 4),
                edge("d", "e", 5),
            ]
        );
        assert_eq!(
            edges("flowchart LR\n  temp-in --> temp-avg --> too-hot\n"),
            vec![
                edge("temp-in", "temp-avg", 2),
                edge("temp-avg", "too-hot", 2)
            ]
        );
        assert_eq!(edges("graph; a --> b"), vec![edge("a", "b", 1)]);
        assert_eq!(
            edges("a --> a\na --> a"),
            vec![edge("a", "a", 1), edge("a", "a", 2)]
        );
        assert_eq!(edges("graph --> end"), vec![edge("graph", "end", 1)]);
        assert_eq!(edges(""), vec![]);
        assert_eq!(edges("\n%% nothing\n;;\n"), vec![]);
    }

    /// Each kind of graph mistake is reported with its line and what is wrong.
    #[test]
    fn graph_errors_name_the_line() {
        assert_eq!(
            graph_error("a --> b\na -> b"),
            "graph line 2: expected \"-->\" between node ids"
        );
        assert_eq!(
            graph_error("a b --> c"),
            "graph line 1: expected \"-->\" between node ids"
        );
        assert_eq!(
            graph_error("\n\na -->|label| b"),
            "graph line 3: expected \"-->\" between node ids"
        );
        assert_eq!(
            graph_error("a --> b\n\nc"),
            "graph line 3: \"c\" alone is not an edge; write \"c --> other-node\""
        );
        assert_eq!(
            graph_error("--> b"),
            "graph line 1: expected a node id before \"-->\""
        );
        assert_eq!(
            graph_error("a -->"),
            "graph line 1: expected a node id after \"-->\""
        );
        assert_eq!(
            graph_error("a --> --> b"),
            "graph line 1: expected a node id between two \"-->\""
        );
        assert_eq!(
            graph_error("a --> B"),
            "graph line 1: \"B\" is not a valid id: it must start with a lower-case letter; use lower-case letters, digits and single hyphens, starting with a letter, at most 64 characters (e.g. \"temp-in\")"
        );
        assert_eq!(
            graph_error("a --> b\nflowchart LR"),
            "graph line 2: expected \"-->\" between node ids"
        );
        assert_eq!(
            graph_error("a[Label] --> b"),
            "graph line 1: \"a[Label]\" is not a valid id: it has a character other than a-z, 0-9 and -; use lower-case letters, digits and single hyphens, starting with a letter, at most 64 characters (e.g. \"temp-in\")"
        );
        let error = doc(Some("a --> b\n  b --> c ->"), vec![])
            .resolved_nodes()
            .unwrap_err();
        assert_eq!(
            error,
            TopologyError::InvalidGraph {
                line: 2,
                reason: "expected \"-->\" between node ids".to_owned(),
            }
        );
    }

    /// Graph edges join each node's `sources` after them, in graph order, without repeats.
    #[test]
    fn graph_edges_merge_after_sources() {
        let merged = doc(
            Some("c --> d\nb --> d; a --> d --> e\nc --> d"),
            vec![
                node("a", "pass", &[], json!({})),
                node("b", "pass", &[], json!({})),
                node("c", "pass", &[], json!({})),
                node("d", "pass", &["b", "x", "b"], json!({})),
                node("e", "pass", &[], json!({})),
            ],
        );
        let resolved = merged.resolved_nodes().unwrap();
        let sources: Vec<Vec<String>> = resolved.iter().map(|node| node.sources.clone()).collect();
        assert_eq!(
            sources,
            vec![
                ids(&[]),
                ids(&[]),
                ids(&[]),
                ids(&["b", "x", "c", "a"]),
                ids(&["d"]),
            ]
        );
    }

    /// A graph edge naming an undeclared node fails resolution with the graph line.
    #[test]
    fn graph_edges_must_name_declared_nodes() {
        let nodes = vec![node("a", "pass", &[], json!({}))];
        let error = doc(Some("a --> a\nghost --> a"), nodes.clone())
            .resolved_nodes()
            .unwrap_err();
        assert_eq!(error.code(), "unknown_source");
        assert_eq!(
            error.message(),
            "graph line 2: the edge ghost --> a starts at \"ghost\", which is not a node of this topology; declare that node or remove the edge"
        );
        let error = doc(Some("\n\na --> ghost"), nodes)
            .resolved_nodes()
            .unwrap_err();
        assert_eq!(error.code(), "unknown_target");
        assert_eq!(
            error.message(),
            "graph line 3: the edge a --> ghost leads to \"ghost\", which is not a node of this topology; declare that node or remove the edge"
        );
    }

    /// The Mermaid chart of the room-temperatures example, and of nodes without edges and keyword ids.
    #[test]
    fn mermaid_text() {
        let spec = TopologyDoc::from_toml(ROOM_EXAMPLE).unwrap();
        assert_eq!(
            spec.mermaid().unwrap(),
            "flowchart LR\n\
             \x20   temp-in[\"temp-in<br/>pass\"]\n\
             \x20   temp-avg[\"temp-avg<br/>average\"]\n\
             \x20   too-hot[\"too-hot<br/>threshold\"]\n\
             \x20   temp-in --> temp-avg\n\
             \x20   temp-avg --> too-hot\n"
        );
        let other = doc(
            Some("a --> end"),
            vec![
                node("end", "pass", &["lonely"], json!({})),
                node("lonely", "odd\"name", &[], json!({})),
                node("a", "pass", &[], json!({})),
            ],
        );
        assert_eq!(
            other.mermaid().unwrap(),
            "flowchart LR\n\
             \x20   end_[\"end<br/>pass\"]\n\
             \x20   lonely[\"lonely<br/>odd#quot;name\"]\n\
             \x20   a[\"a<br/>pass\"]\n\
             \x20   lonely --> end_\n\
             \x20   a --> end_\n"
        );
        assert_eq!(TopologyDoc::default().mermaid().unwrap(), "flowchart LR\n");
        assert_eq!(
            doc(Some("a ->"), vec![]).mermaid().unwrap_err().code(),
            "invalid_graph"
        );
    }

    /// Each validation error has its code and an exact message.
    #[test]
    fn validation_errors_have_codes_and_messages() {
        let cases: Vec<(TopologyDoc, &str, &str)> = vec![
            (
                doc(None, vec![node("Temp", "pass", &[], json!({}))]),
                "invalid_slug",
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
                "duplicate_node",
                "node \"a\" is declared twice (nodes 1 and 3 of the document); give each node its own id",
            ),
            (
                doc(None, vec![node("a", "nope", &[], json!({}))]),
                "unknown_function",
                "node \"a\" uses function \"nope\", which is not registered; GET /v1/functions lists the functions",
            ),
            (
                doc(None, vec![node("a", "threshold", &[], json!({"field": 3}))]),
                "invalid_attrs",
                "node \"a\" has attributes that do not suit function \"threshold\": \"field\" must be a JSON pointer string; \"above\" must be a number",
            ),
            (
                doc(None, vec![node("a", "pass", &["ghost"], json!({}))]),
                "unknown_source",
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
                "cycle",
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

    /// `too_many_sources` counts the graph's edges too and uses the configured limit; 64 by
    /// default.
    #[test]
    fn too_many_sources_counts_the_graph() {
        assert_eq!(Limits::default().max_sources, 64);
        let mut nodes: Vec<NodeSpec> = (0..3)
            .map(|index| node(&format!("s{index}"), "pass", &[], json!({})))
            .collect();
        nodes.push(node("sink", "pass", &["s0", "s1"], json!({})));
        let topology = doc(Some("s2 --> sink"), nodes);
        let limits = Limits { max_sources: 2 };
        let error = topology.validate(&limits, &registry).unwrap_err();
        assert_eq!(error.code(), "too_many_sources");
        assert_eq!(
            error.message(),
            "node \"sink\" has 3 sources, more than the limit of 2; gather some of them through an intermediate node"
        );
        assert!(topology
            .validate(&Limits { max_sources: 3 }, &registry)
            .is_ok());
    }

    /// `validate` gives the first problem in document order; `validate_all` gives them all in
    /// the same order.
    #[test]
    fn validate_gives_the_first_and_validate_all_every_problem() {
        let topology = doc(
            Some("ghost --> a\nb --> a"),
            vec![
                node("a", "nope", &["b"], json!({})),
                node("b", "average", &["a", "missing"], json!({})),
                node("Bad", "pass", &[], json!({})),
            ],
        );
        let codes: Vec<&str> = topology
            .validate_all(&Limits::default(), &registry)
            .iter()
            .map(TopologyError::code)
            .collect();
        assert_eq!(
            codes,
            vec![
                "unknown_source",
                "unknown_function",
                "invalid_attrs",
                "unknown_source",
                "invalid_slug",
                "cycle",
            ]
        );
        let first = first_error(&topology);
        assert_eq!(
            first,
            TopologyError::UnknownSource {
                node: "a".to_owned(),
                from: "ghost".to_owned(),
                graph_line: Some(1),
            }
        );
        assert_eq!(
            topology.validate_all(&Limits::default(), &registry)[5],
            TopologyError::Cycle {
                path: ids(&["a", "b", "a"]),
            }
        );
        let broken_graph = doc(
            Some("a --> b\nb c"),
            vec![node("Bad", "nope", &[], json!({}))],
        );
        assert_eq!(
            broken_graph.validate_all(&Limits::default(), &registry),
            vec![TopologyError::InvalidGraph {
                line: 2,
                reason: "expected \"-->\" between node ids".to_owned(),
            }]
        );
    }

    /// Cycles are found and printed in the direction data flows: a self-loop, a 2-cycle, a
    /// 50-node ring, and a cycle downstream of and beside acyclic parts.
    #[test]
    fn cycles_are_reported_with_their_path() {
        let cycle_of = |topology: TopologyDoc| match first_error(&topology) {
            TopologyError::Cycle { path } => path,
            other => panic!("expected a cycle, got {other:?}"),
        };
        assert_eq!(
            cycle_of(doc(None, vec![node("a", "pass", &["a"], json!({}))])),
            ids(&["a", "a"])
        );
        assert_eq!(
            cycle_of(doc(
                Some("a --> b"),
                vec![
                    node("a", "pass", &["b"], json!({})),
                    node("b", "pass", &[], json!({})),
                ]
            )),
            ids(&["a", "b", "a"])
        );

        let ring: Vec<NodeSpec> = (0..50)
            .map(|index| {
                let source = format!("n{}", (index + 49) % 50);
                node(&format!("n{index}"), "pass", &[source.as_str()], json!({}))
            })
            .collect();
        let path = cycle_of(doc(None, ring));
        let expected: Vec<String> = (0..=50).map(|index| format!("n{}", index % 50)).collect();
        assert_eq!(path, expected);
        let error = first_error(&doc(
            None,
            vec![
                node("n0", "pass", &["n2"], json!({})),
                node("n1", "pass", &["n0"], json!({})),
                node("n2", "pass", &["n1"], json!({})),
            ],
        ));
        assert_eq!(
            error.message(),
            "the edges form a cycle: n0 -> n1 -> n2 -> n0; remove one of these edges"
        );

        // A feeds a b <-> c loop that feeds d; e -> c is a shortcut; the shortest cycle
        // through the first node on one (b) is b -> c -> b.
        assert_eq!(
            cycle_of(doc(
                Some("a --> b --> c --> b\nc --> d\nd --> e --> c"),
                ["a", "b", "c", "d", "e"]
                    .iter()
                    .map(|id| node(id, "pass", &[], json!({})))
                    .collect()
            )),
            ids(&["b", "c", "b"])
        );
        // Downstream nodes listed first are not on the cycle and are skipped.
        assert_eq!(
            cycle_of(doc(
                Some("y --> z --> y\nz --> x"),
                ["x", "y", "z"]
                    .iter()
                    .map(|id| node(id, "pass", &[], json!({})))
                    .collect()
            )),
            ids(&["y", "z", "y"])
        );
    }

    /// A deterministic LCG: the same sequence on every run, with no dependency.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound
        }
    }

    /// Whether the edges (from, to) among `count` nodes form a cycle, by depth-first search.
    fn has_cycle(count: usize, edge_list: &[(usize, usize)]) -> bool {
        fn visit(at: usize, edge_list: &[(usize, usize)], state: &mut [u8]) -> bool {
            state[at] = 1;
            for &(from, to) in edge_list {
                if from == at && (state[to] == 1 || (state[to] == 0 && visit(to, edge_list, state)))
                {
                    return true;
                }
            }
            state[at] = 2;
            false
        }
        let mut state = vec![0_u8; count];
        (0..count).any(|start| state[start] == 0 && visit(start, edge_list, &mut state))
    }

    /// The length of the shortest cycle through `start` (edges (from, to)), by breadth-first
    /// search; `None` when `start` is on no cycle.
    fn shortest_cycle(start: usize, edge_list: &[(usize, usize)]) -> Option<usize> {
        let mut distance: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let mut queue = VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            for &(from, to) in edge_list {
                if from != at {
                    continue;
                }
                if to == start {
                    return Some(distance[&at] + 1);
                }
                if !distance.contains_key(&to) {
                    distance.insert(to, distance[&at] + 1);
                    queue.push_back(to);
                }
            }
        }
        None
    }

    /// 1 000 random small graphs, edges split between `sources` and `graph`: the acyclic ones
    /// validate, and each cyclic one reports a shortest cycle, made of real edges, through the
    /// first node that is on one.
    #[test]
    fn random_graphs_validate_or_report_a_real_cycle() {
        let mut random = Lcg(42);
        let (mut acyclic_seen, mut cyclic_seen) = (0, 0);
        for _ in 0..1000 {
            let count = 1 + random.below(8) as usize;
            let forward_only = random.below(2) == 0;
            let mut edge_list = Vec::new();
            for from in 0..count {
                for to in 0..count {
                    if (forward_only && from >= to) || random.below(100) >= 25 {
                        continue;
                    }
                    edge_list.push((from, to));
                }
            }
            let mut nodes: Vec<NodeSpec> = (0..count)
                .map(|index| node(&format!("n{index}"), "pass", &[], json!({})))
                .collect();
            let mut graph = String::new();
            for &(from, to) in &edge_list {
                if random.below(2) == 0 {
                    nodes[to].sources.push(format!("n{from}"));
                } else {
                    graph.push_str(&format!("n{from} --> n{to};\n"));
                }
            }
            let topology = doc(Some(&graph), nodes);
            let cyclic = has_cycle(count, &edge_list);
            match topology.validate(&Limits::default(), &registry) {
                Ok(resolved) => {
                    assert!(!cyclic, "{topology:?}");
                    acyclic_seen += 1;
                    let mut resolved_edges: Vec<(usize, usize)> = resolved
                        .iter()
                        .enumerate()
                        .flat_map(|(to, node)| {
                            node.sources
                                .iter()
                                .map(move |source| (source[1..].parse().unwrap(), to))
                        })
                        .collect();
                    resolved_edges.sort_unstable();
                    assert_eq!(resolved_edges, edge_list);
                }
                Err(TopologyError::Cycle { path }) => {
                    assert!(cyclic, "{topology:?}");
                    cyclic_seen += 1;
                    assert!(path.len() >= 2 && path.first() == path.last(), "{path:?}");
                    for pair in path.windows(2) {
                        let from: usize = pair[0][1..].parse().unwrap();
                        let to: usize = pair[1][1..].parse().unwrap();
                        assert!(edge_list.contains(&(from, to)), "{path:?} {edge_list:?}");
                    }
                    // It starts at the first node on a cycle and is a shortest one through it.
                    let start = (0..count)
                        .find(|&index| shortest_cycle(index, &edge_list).is_some())
                        .unwrap();
                    assert_eq!(path[0], format!("n{start}"), "{edge_list:?}");
                    assert_eq!(
                        Some(path.len() - 1),
                        shortest_cycle(start, &edge_list),
                        "{path:?} {edge_list:?}"
                    );
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            acyclic_seen > 300 && cyclic_seen > 300,
            "{acyclic_seen} {cyclic_seen}"
        );
    }

    /// Large documents validate in time linear in their size: a node feeding 50 000 others,
    /// a 100 000-node chain (searched without recursion), and a long chain between two
    /// cycles, where the cycle reported is still the one through the first node on a cycle.
    #[test]
    fn large_graphs_validate() {
        let fan: Vec<NodeSpec> = std::iter::once(node("hub", "pass", &[], json!({})))
            .chain((0..50_000).map(|index| node(&format!("n{index}"), "pass", &["hub"], json!({}))))
            .collect();
        let fan_doc = doc(None, fan);
        let resolved = fan_doc.validate(&Limits::default(), &registry).unwrap();
        let hub_targets = &targets(&resolved)["hub"];
        assert_eq!(hub_targets.len(), 50_000);
        assert_eq!(
            (hub_targets[0].as_str(), hub_targets[49_999].as_str()),
            ("n0", "n49999")
        );

        let chain = |count: usize| -> Vec<NodeSpec> {
            (0..count)
                .map(|index| {
                    let source = format!("n{}", index.saturating_sub(1));
                    let sources: &[&str] = if index == 0 { &[] } else { &[&source] };
                    node(&format!("n{index}"), "pass", sources, json!({}))
                })
                .collect()
        };
        assert!(doc(None, chain(100_000))
            .validate(&Limits::default(), &registry)
            .is_ok());

        // The chain is listed first and lies between the cycles a <-> b (upstream) and
        // y <-> z (downstream): no chain node is on a cycle.
        let mut nodes = chain(50_000);
        nodes[0].sources.push("b".to_owned());
        nodes.push(node("z", "pass", &["y"], json!({})));
        nodes.push(node("y", "pass", &["n49999", "z"], json!({})));
        nodes.push(node("a", "pass", &["b"], json!({})));
        nodes.push(node("b", "pass", &["a"], json!({})));
        assert_eq!(
            first_error(&doc(None, nodes)),
            TopologyError::Cycle {
                path: ids(&["z", "y", "z"]),
            }
        );
    }

    /// The plan lists created, updated and deleted nodes in order; attributes not listed in
    /// the next document are running state and do not make an update.
    #[test]
    fn plan_lists_the_changes() {
        let current = vec![
            node("a", "pass", &[], json!({"count": 5})),
            node("b", "average", &["a"], json!({"field": "/x", "sum": 10})),
            node("gone", "pass", &[], json!({})),
            node("c", "pass", &["a"], json!({})),
            node("d", "pass", &["a", "b"], json!({})),
            node("e", "threshold", &[], json!({"above": 30})),
            node("f", "pass", &[], json!({})),
            node("also-gone", "pass", &[], json!({})),
        ];
        let next = vec![
            node("new", "pass", &[], json!({})),
            node("f", "average", &[], json!({})),
            node("e", "threshold", &[], json!({"above": 30.0})),
            node("d", "pass", &["b", "a"], json!({})),
            node("c", "pass", &["a"], json!({})),
            node("b", "average", &["a"], json!({"field": "/x"})),
            node("a", "pass", &[], json!({"count": 5})),
            node("newer", "pass", &[], json!({})),
        ];
        assert_eq!(
            plan(&current, &next),
            Plan {
                created: ids(&["new", "newer"]),
                updated: ids(&["f", "e", "d"]),
                deleted: ids(&["gone", "also-gone"]),
            }
        );
        assert!(plan(&current, &current).is_empty());
        assert_eq!(
            plan(&[], &current[..2]),
            Plan {
                created: ids(&["a", "b"]),
                ..Plan::default()
            }
        );
        assert_eq!(
            serde_json::to_value(plan(&current[..1], &[])).unwrap(),
            json!({"created": [], "updated": [], "deleted": ["a"]})
        );
        let changed_attr = [node("b", "average", &["a"], json!({"field": "/y"}))];
        assert_eq!(plan(&current[1..2], &changed_attr).updated, ids(&["b"]));
    }

    /// Targets: for each node, the nodes that receive from it, in document order.
    #[test]
    fn targets_list_receivers_in_order() {
        let nodes = TopologyDoc::from_toml(ROOM_EXAMPLE)
            .unwrap()
            .resolved_nodes()
            .unwrap();
        let expected: BTreeMap<String, Vec<String>> = [
            ("temp-in", ids(&["temp-avg"])),
            ("temp-avg", ids(&["too-hot"])),
            ("too-hot", ids(&[])),
        ]
        .into_iter()
        .map(|(id, list)| (id.to_owned(), list))
        .collect();
        assert_eq!(targets(&nodes), expected);

        let fan = [
            node("c", "pass", &["a", "ghost"], json!({})),
            node("a", "pass", &[], json!({})),
            node("b", "pass", &["a", "a"], json!({})),
            node("d", "pass", &["b", "a"], json!({})),
        ];
        let expected: BTreeMap<String, Vec<String>> = [
            ("a", ids(&["c", "b", "d"])),
            ("b", ids(&["d"])),
            ("c", ids(&[])),
            ("d", ids(&[])),
        ]
        .into_iter()
        .map(|(id, list)| (id.to_owned(), list))
        .collect();
        assert_eq!(targets(&fan), expected);
    }
}
