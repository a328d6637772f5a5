//! How the command shows things: aligned tables, the plan of a change as a diff, short values.

use std::collections::BTreeSet;

use protocol::NodeSpec;
use serde_json::Value;

/// A table printed with its columns aligned, headers in capitals.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line a row, columns two spaces apart, no trailing blanks.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|header| header.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.trim_end().to_owned()
        };
        let mut out = line(self.headers.clone());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }
}

/// Key and value lines, keys aligned.
pub fn pairs(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(key, value)| format!("{key:width$}  {value}\n"))
        .collect()
}

/// A JSON value on one line.
pub fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A list as `a, b`, or `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// The plan of a change as a diff of nodes: `+ id` created, `- id` deleted, `~ id` updated
/// with each field that changes, from the document now (`current`) and the one applied
/// (`next`); the server's plan decides which nodes are listed.
pub fn plan_diff(
    current: &[NodeSpec],
    next: &[NodeSpec],
    created: &[String],
    updated: &[String],
    deleted: &[String],
) -> String {
    let find = |nodes: &[NodeSpec], id: &str| nodes.iter().find(|node| node.id == id).cloned();
    let mut out = String::new();
    for id in created {
        match find(next, id) {
            Some(node) => {
                out.push_str(&format!("+ {id}  function {}", node.function));
                if !node.sources.is_empty() {
                    out.push_str(&format!(", sources {}", node.sources.join(", ")));
                }
                out.push('\n');
            }
            None => out.push_str(&format!("+ {id}\n")),
        }
    }
    for id in updated {
        out.push_str(&format!("~ {id}\n"));
        if let (Some(old), Some(new)) = (find(current, id), find(next, id)) {
            for change in node_changes(&old, &new) {
                out.push_str(&format!("    {change}\n"));
            }
        }
    }
    for id in deleted {
        out.push_str(&format!("- {id}\n"));
    }
    out
}

/// What differs between two versions of a node, a line each.
fn node_changes(old: &NodeSpec, new: &NodeSpec) -> Vec<String> {
    let mut changes = Vec::new();
    if old.function != new.function {
        changes.push(format!("function: {} → {}", old.function, new.function));
    }
    if old.sources != new.sources {
        changes.push(format!(
            "sources: {} → {}",
            list(&old.sources),
            list(&new.sources)
        ));
    }
    if old.archive != new.archive {
        let show = |archive: Option<bool>| if archive == Some(false) { "off" } else { "on" };
        changes.push(format!(
            "archive: {} → {}",
            show(old.archive),
            show(new.archive)
        ));
    }
    let keys: BTreeSet<&String> = old.attrs.keys().chain(new.attrs.keys()).collect();
    for key in keys {
        match (old.attrs.get(key), new.attrs.get(key)) {
            (Some(before), Some(after)) if before != after => changes.push(format!(
                "attrs.{key}: {} → {}",
                compact(before),
                compact(after)
            )),
            (Some(before), None) => {
                changes.push(format!("attrs.{key}: {} → (removed)", compact(before)));
            }
            (None, Some(after)) => changes.push(format!("attrs.{key}: (new) {}", compact(after))),
            _ => {}
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(id: &str, function: &str, sources: &[&str], attrs: Value) -> NodeSpec {
        NodeSpec {
            id: id.into(),
            function: function.into(),
            sources: sources.iter().map(|source| (*source).to_owned()).collect(),
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            archive: None,
        }
    }

    /// Columns align on the widest cell; the last column is not padded.
    #[test]
    fn tables_align() {
        let mut table = Table::new(&["ID", "NODES"]);
        table.row(vec!["sensors".into(), "3".into()]);
        table.row(vec!["a".into(), "12".into()]);
        assert_eq!(table.render(), "ID       NODES\nsensors  3\na        12\n");
    }

    /// Created, updated (field by field) and deleted nodes, in that order.
    #[test]
    fn plans_read_as_diffs() {
        let current = vec![
            node("a", "pass", &[], json!({})),
            node("b", "count", &["a"], json!({"count": 3, "step": 1})),
            node("c", "pass", &["a"], json!({})),
        ];
        let next = vec![
            node("a", "pass", &[], json!({})),
            node("b", "sum", &["a", "d"], json!({"count": 3, "field": "/v"})),
            node("d", "pass", &[], json!({})),
        ];
        let text = plan_diff(&current, &next, &["d".into()], &["b".into()], &["c".into()]);
        assert_eq!(
            text,
            "+ d  function pass\n\
             ~ b\n    function: count → sum\n    sources: a → a, d\n    \
             attrs.field: (new) \"/v\"\n    attrs.step: 1 → (removed)\n\
             - c\n"
        );
    }
}
