//! The Mermaid-style `graph` of a document: its edges, merged into the nodes' sources; the
//! Mermaid flowchart of a topology; and where each node's outputs go.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use super::{TopologyDoc, TopologyError};
use crate::node::NodeSpec;
use crate::slug::validate_slug;

impl TopologyDoc {
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

    /// Resolves the sources and lists the graph edges that name undeclared nodes; fails only
    /// on graph syntax.
    pub(super) fn resolve(&self) -> Result<Resolved<'_>, TopologyError> {
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
                    archive: self.archive_of(node),
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
}

/// A document's nodes with their sources resolved; see [`TopologyDoc::resolve`].
pub(super) struct Resolved<'a> {
    /// The nodes, in document order, with the graph's edges among their sources.
    pub(super) nodes: Vec<NodeSpec>,
    /// The graph's edges that name undeclared nodes.
    pub(super) errors: Vec<TopologyError>,
    /// The position of the first node of each id.
    pub(super) positions: HashMap<&'a str, usize>,
    /// For each node, the position of the first node of its id (its own unless repeated).
    pub(super) first_of: Vec<usize>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::fixtures::{doc, ids, node, ROOM_EXAMPLE};
    use crate::ErrorCode;
    use serde_json::json;

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
        assert_eq!(error.code(), ErrorCode::InvalidGraph);
        error.message()
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
        assert_eq!(error.code(), ErrorCode::UnknownSource);
        assert_eq!(
            error.message(),
            "graph line 2: the edge ghost --> a starts at \"ghost\", which is not a node of this topology; declare that node or remove the edge"
        );
        let error = doc(Some("\n\na --> ghost"), nodes)
            .resolved_nodes()
            .unwrap_err();
        assert_eq!(error.code(), ErrorCode::UnknownTarget);
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
            ErrorCode::InvalidGraph
        );
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
