//! `gorgon`: the command line of a Gorgon mesh, on the `gorgon_client` crate. Applies and
//! reads topologies, reads and changes nodes, injects, follows outputs live, reads history
//! and dead letters, shows the mesh's status, and generates a custom-processor crate.
//!
//! Where: `--url`/`GORGON_URL` (web_face, default `http://127.0.0.1:8080`), the notifier and
//! the stats role on the same host at 8081 and 8082 unless `GORGON_NOTIFIER_URL` and
//! `GORGON_STATS_URL` say otherwise; `--token`/`GORGON_TOKEN`. `--output table|json`.
//! Exit codes: see [`exit_code`] and `docs/cli.md`.

mod new_function;
mod render;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use futures_util::StreamExt as _;
use gorgon_client::protocol::api::{HistoryParams, HistoryView, ListQuery, NodePatch, NodeView};
use gorgon_client::protocol::{ErrorCode, OutputEvent, TopologyDoc};
use gorgon_client::{ApplyOptions, Client, Document, Error, StartAt};
use render::{compact, list, pairs, Table};
use serde::Serialize;
use serde_json::{Map, Value};

/// Manage a running Gorgon mesh.
#[derive(Parser)]
#[command(name = "gorgon", version, about, long_about = None)]
struct Cli {
    /// web_face's URL.
    #[arg(
        long,
        env = "GORGON_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// The notifier's URL (default: the API's host, port 8081).
    #[arg(long, env = "GORGON_NOTIFIER_URL", global = true)]
    notifier_url: Option<String>,
    /// The stats role's URL (default: the API's host, port 8082).
    #[arg(long, env = "GORGON_STATS_URL", global = true)]
    stats_url: Option<String>,
    /// The API token (`Authorization: Bearer`), when the mesh has GORGON_API_TOKENS.
    #[arg(long, env = "GORGON_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// How to print answers: aligned tables for people, or JSON for programs.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Apply a topology document (TOML or JSON): create, update and delete nodes to match.
    Apply {
        /// The document; TOML when its name ends in .toml, JSON otherwise.
        file: PathBuf,
        /// The topology's id (default: the file's name without its extension).
        #[arg(long, short)]
        topology: Option<String>,
        /// Print the plan as a diff and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Reset the state attributes of updated nodes to the document's values.
        #[arg(long)]
        reset_state: bool,
        /// Apply only if the topology is at this rev.
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// List the topologies, or print one's document (TOML; JSON with --output json).
    Get {
        /// The topology; none lists them all.
        topology: Option<String>,
    },
    /// Print a topology's document as TOML, or write it to a file.
    Export {
        /// The topology.
        topology: String,
        /// Write here instead of printing.
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Print a topology as a Mermaid flowchart.
    Graph {
        /// The topology.
        topology: String,
    },
    /// Delete a topology (its nodes, state and latched outputs; history stays), or one node.
    Delete {
        /// The topology.
        topology: String,
        /// Only this node.
        node: Option<String>,
        /// Delete the node even if others receive from it (removing those edges).
        #[arg(long, requires = "node")]
        force: bool,
        /// Delete the topology only if it is at this rev.
        #[arg(long, conflicts_with = "node")]
        if_match: Option<u64>,
    },
    /// List a topology's nodes with their latest seq and status.
    Nodes {
        /// The topology.
        topology: String,
        /// Only these nodes (comma-separated).
        #[arg(long)]
        ids: Option<String>,
    },
    /// Show one node: function, sources, attributes, latched output, status.
    Node {
        /// The topology.
        topology: String,
        /// The node.
        node: String,
    },
    /// Change a node's function, sources or archiving, or merge-patch its attributes.
    Patch {
        /// The topology.
        topology: String,
        /// The node.
        node: String,
        /// The new function.
        #[arg(long)]
        function: Option<String>,
        /// The new sources, comma-separated ("" for none).
        #[arg(long)]
        sources: Option<String>,
        /// Whether its outputs go to the archive.
        #[arg(long)]
        archive: Option<bool>,
        /// A JSON merge patch of its attributes (null deletes a key).
        #[arg(long)]
        attrs: Option<String>,
    },
    /// Inject one JSON message, or ndjson from stdin (one message a line).
    Inject {
        /// The topology.
        topology: String,
        /// The node.
        node: String,
        /// The message, as JSON; without it, ndjson is read from stdin.
        message: Option<String>,
        /// The Idempotency-Key of a single message (default: a new one per request).
        #[arg(long)]
        key: Option<String>,
        /// Lines per request when reading stdin.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
    },
    /// Follow outputs live, resuming by itself after dropped connections.
    Tail {
        /// The topology.
        topology: String,
        /// Only this node.
        node: Option<String>,
        /// Start after this seq (every node); default: from now.
        #[arg(long)]
        after_seq: Option<u64>,
        /// Stop after this many outputs.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Read a node's past outputs, newest first unless --order asc.
    History {
        /// The topology.
        topology: String,
        /// The node.
        node: String,
        /// Only outputs with a greater seq.
        #[arg(long)]
        after_seq: Option<u64>,
        /// Only outputs with a smaller seq.
        #[arg(long)]
        before_seq: Option<u64>,
        /// Only outputs at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Only outputs before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// At most this many a page (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// desc (newest first) or asc.
        #[arg(long, default_value = "desc")]
        order: String,
        /// Follow `next` to the last page.
        #[arg(long)]
        all: bool,
    },
    /// List a topology's dead-lettered messages, or put them back on their queues.
    DeadLetters {
        /// The topology.
        topology: String,
        /// Only this node's.
        #[arg(long)]
        node: Option<String>,
        /// Replay them instead of listing them.
        #[arg(long)]
        replay: bool,
    },
    /// The mesh's roles, partitions and backlogs, from the stats role.
    Status,
    /// Generate code.
    New {
        #[command(subcommand)]
        what: New,
    },
    /// Print a shell completion script (e.g. `gorgon completions bash > /etc/bash_completion.d/gorgon`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum New {
    /// A custom-processor crate with one function, its test and a Procfile line.
    Function {
        /// The function's name (a slug such as `to-celsius`).
        name: String,
        /// Where to make the crate's directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The Gorgon source checkout the crate depends on (default: the one this command was
        /// built from).
        #[arg(long, env = "GORGON_SOURCE")]
        gorgon_path: Option<PathBuf>,
    },
}

/// What went wrong, and how the process ends.
enum Failure {
    /// A call failed.
    Call(Error),
    /// Anything else: a file, stdin, an argument; exit code with it.
    Other(String, u8),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Call(error)
    }
}

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Call(error)) => {
            eprintln!("error: {error}");
            if let Some(hint) = hint(&error) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(exit_code(&error))
        }
        Err(Failure::Other(message, code)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The exit code of a failed call, so scripts can tell failures apart:
/// 3 not found, 4 refused as invalid (400, 413, 415, 422), 5 conflict (409, 412),
/// 6 not allowed (401, 403), 7 unavailable — try again (unreachable, 429, 503),
/// 1 anything else. (2 is a command line clap could not read.)
fn exit_code(error: &Error) -> u8 {
    match error {
        Error::Api { status, .. } => match status {
            404 => 3,
            400 | 413 | 415 | 422 => 4,
            409 | 412 => 5,
            401 | 403 => 6,
            429 | 503 => 7,
            _ => 1,
        },
        Error::Invalid(_) => 4,
        Error::Transport { .. } => 7,
        Error::Unexpected { .. } | Error::Gap { .. } => 1,
    }
}

/// What to do about an error, when there is something to say beyond its message.
fn hint(error: &Error) -> Option<&'static str> {
    match error.code() {
        Some(ErrorCode::Unauthorized) => {
            Some("set GORGON_TOKEN (or pass --token) to a token of GORGON_API_TOKENS")
        }
        Some(ErrorCode::Forbidden) => {
            Some("this token may only read here: use a token with rw or admin scope")
        }
        Some(ErrorCode::RevMismatch) => {
            Some("the topology changed since that rev: `gorgon get TOPOLOGY` shows it as it is now")
        }
        Some(ErrorCode::HasDependents) => {
            Some("other nodes receive from it: --force deletes it and removes those edges")
        }
        Some(ErrorCode::NotFound) => Some("`gorgon get` lists the topologies this token can see"),
        _ => match error {
            Error::Transport { .. } => Some(
                "set GORGON_URL (or --url) to web_face's address; `gorgon status` checks the roles",
            ),
            _ => None,
        },
    }
}

async fn run(cli: Cli) -> Outcome {
    if let Command::Completions { shell } = cli.command {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "gorgon", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::New {
        what: New::Function {
            name,
            dir,
            gorgon_path,
        },
    } = cli.command
    {
        return new_function(&name, &dir, gorgon_path);
    }
    let mut builder = Client::builder(&cli.url);
    if let Some(token) = &cli.token {
        builder = builder.token(token);
    }
    if let Some(url) = &cli.notifier_url {
        builder = builder.notifier_url(url);
    }
    if let Some(url) = &cli.stats_url {
        builder = builder.stats_url(url);
    }
    let client = builder.build()?;
    let json = cli.output == Output::Json;
    match cli.command {
        Command::Apply {
            file,
            topology,
            dry_run,
            reset_state,
            if_match,
        } => {
            let options = ApplyOptions {
                dry_run,
                reset_state,
                if_match,
            };
            apply(&client, &file, topology, options, json).await
        }
        Command::Get { topology: None } => {
            let list = client.topologies().await?;
            if json {
                return print_json(&list);
            }
            let mut table = Table::new(&["ID", "NODES", "REV"]);
            for topology in list.topologies {
                table.row(vec![
                    topology.id,
                    topology.nodes.to_string(),
                    topology.rev.to_string(),
                ]);
            }
            print(&table.render())
        }
        Command::Get {
            topology: Some(topology),
        } => {
            if json {
                return print_json(&client.topology(&topology).await?.doc);
            }
            print(&client.topology_toml(&topology).await?)
        }
        Command::Export { topology, file } => {
            let text = client.topology_toml(&topology).await?;
            match file {
                None => print(&text),
                Some(file) => {
                    std::fs::write(&file, &text).map_err(|error| {
                        Failure::Other(format!("cannot write {}: {error}", file.display()), 1)
                    })?;
                    eprintln!("wrote {}", file.display());
                    Ok(())
                }
            }
        }
        Command::Graph { topology } => print(&client.graph(&topology).await?),
        Command::Delete {
            topology,
            node: None,
            if_match,
            ..
        } => {
            client.delete_topology(&topology, if_match).await?;
            done(
                json,
                &format!("deleted topology {topology}"),
                || serde_json::json!({"deleted": {"topology": topology}}),
            )
        }
        Command::Delete {
            topology,
            node: Some(node),
            force,
            ..
        } => {
            client.delete_node(&topology, &node, force).await?;
            done(
                json,
                &format!("deleted node {node} of {topology}"),
                || serde_json::json!({"deleted": {"topology": topology, "node": node}}),
            )
        }
        Command::Nodes { topology, ids } => {
            let nodes = client
                .nodes(
                    &topology,
                    &ListQuery {
                        ids,
                        ..ListQuery::default()
                    },
                )
                .await?;
            if json {
                return print_json(&nodes);
            }
            let mut table = Table::new(&["ID", "FUNCTION", "SOURCES", "SEQ", "STATE", "DEAD"]);
            for node in &nodes.nodes {
                table.row(vec![
                    node.id.clone(),
                    node.function.clone(),
                    list(&node.sources),
                    latest_seq(node),
                    state_of(node),
                    node.status.dead_letters.to_string(),
                ]);
            }
            let mut text = table.render();
            if let Some(missing) = nodes.missing.filter(|missing| !missing.is_empty()) {
                text.push_str(&format!("not in {topology}: {}\n", missing.join(", ")));
            }
            print(&text)
        }
        Command::Node { topology, node } => {
            let view = client.node(&topology, &node).await?;
            show_node(&view, json)
        }
        Command::Patch {
            topology,
            node,
            function,
            sources,
            archive,
            attrs,
        } => {
            patch(
                &client, &topology, &node, function, sources, archive, attrs, json,
            )
            .await
        }
        Command::Inject {
            topology,
            node,
            message: Some(message),
            key,
            ..
        } => {
            let message: Value = serde_json::from_str(&message).map_err(|error| {
                Failure::Other(
                    format!("the message is not JSON ({error}); quote it for the shell, e.g. '{{\"v\": 1}}'"),
                    4,
                )
            })?;
            let injected = match key {
                Some(key) => {
                    client
                        .inject_with_key(&topology, &node, &message, &key)
                        .await?
                }
                None => client.inject(&topology, &node, &message).await?,
            };
            if json {
                return print_json(&injected);
            }
            print(&format!("{}\n", injected.msg_id))
        }
        Command::Inject {
            topology,
            node,
            message: None,
            batch,
            ..
        } => inject_stdin(&client, &topology, &node, batch as usize, json).await,
        Command::Tail {
            topology,
            node,
            after_seq,
            count,
        } => {
            let start = after_seq.map_or(StartAt::Now, StartAt::AfterSeq);
            tail(&client, &topology, node.as_deref(), start, count, json).await
        }
        Command::History {
            topology,
            node,
            after_seq,
            before_seq,
            from,
            to,
            limit,
            order,
            all,
        } => {
            let query = HistoryParams {
                after_seq,
                before_seq,
                from,
                to,
                limit: Some(limit),
                order: Some(order),
            };
            let mut page = client.history(&topology, &node, &query).await?;
            let mut items = std::mem::take(&mut page.items);
            if all {
                while let Some(next) = page.next.take() {
                    page = client.next_page(&next).await?;
                    items.append(&mut page.items);
                }
            }
            let view = HistoryView {
                items,
                next: page.next,
            };
            if json {
                return print_json(&view);
            }
            print(&outputs_table(&view.items, view.next.as_deref()))
        }
        Command::DeadLetters {
            topology,
            node,
            replay: false,
        } => {
            let letters = client.dead_letters(&topology, node.as_deref()).await?;
            if json {
                return print_json(&letters);
            }
            let mut table = Table::new(&["ID", "NODE", "ATTEMPTS", "AT", "ERROR"]);
            for letter in letters.items {
                table.row(vec![
                    letter.id,
                    letter.node,
                    letter.attempts.to_string(),
                    letter.at,
                    letter.error,
                ]);
            }
            print(&table.render())
        }
        Command::DeadLetters {
            topology,
            node,
            replay: true,
        } => {
            let replayed = client
                .replay_dead_letters(&topology, node.as_deref())
                .await?;
            if json {
                return print_json(&replayed);
            }
            let mut text = format!("replayed {} messages\n", replayed.replayed.len());
            for id in &replayed.replayed {
                text.push_str(id);
                text.push('\n');
            }
            print(&text)
        }
        Command::Status => status(&client, json).await,
        Command::New { .. } | Command::Completions { .. } => Ok(()),
    }
}

fn new_function(name: &str, dir: &Path, gorgon_path: Option<PathBuf>) -> Outcome {
    // A name it cannot take is refused as invalid (4); anything else that keeps the crate
    // from being written (not a checkout, a directory that exists, I/O) is 1.
    new_function::validate_name(name).map_err(|error| Failure::Other(format!("{error:#}"), 4))?;
    let gorgon = gorgon_path.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    let made = new_function::generate(name, dir, &gorgon)
        .map_err(|error| Failure::Other(format!("{error:#}"), 1))?;
    print(&format!(
        "made {}\nnext: cd {} && cargo test, then put its Procfile line in place of `processor`\n",
        made.display(),
        made.display()
    ))
}

async fn apply(
    client: &Client,
    file: &Path,
    topology: Option<String>,
    options: ApplyOptions,
    json: bool,
) -> Outcome {
    let doc = Document::read(file)
        .map_err(|error| Failure::Other(format!("cannot read {}: {error}", file.display()), 1))?;
    let topology = match topology {
        Some(topology) => topology,
        None => file
            .file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::Other(
                    format!("{} names no topology: pass --topology", file.display()),
                    4,
                )
            })?,
    };
    // The nodes as they are, for the diff of a dry run (none when the topology is new).
    let current = if options.dry_run && !json {
        match client.topology(&topology).await {
            Ok(existing) => resolved(&existing.doc),
            Err(Error::Api {
                code: ErrorCode::NotFound,
                ..
            }) => Vec::new(),
            Err(error) => return Err(error.into()),
        }
    } else {
        Vec::new()
    };
    let dry_run = options.dry_run;
    let applied = client.apply(&topology, &doc, options).await?;
    if json {
        return print_json(&applied);
    }
    let changes = applied.changes();
    let mut text = if dry_run {
        format!(
            "plan for {topology} at rev {} (dry run, nothing changed): {changes} change{}\n",
            applied.rev,
            plural(changes)
        )
    } else {
        format!(
            "applied {topology}: rev {}, {changes} change{}\n",
            applied.rev,
            plural(changes)
        )
    };
    let next = parse_local(&doc)
        .map(|doc| resolved(&doc))
        .unwrap_or_default();
    text.push_str(&render::plan_diff(
        &current,
        &next,
        &applied.created,
        &applied.updated,
        &applied.deleted,
    ));
    print(&text)
}

fn parse_local(doc: &Document) -> Option<TopologyDoc> {
    if doc.is_toml() {
        TopologyDoc::from_toml(doc.text()).ok()
    } else {
        TopologyDoc::from_json(doc.text()).ok()
    }
}

fn resolved(doc: &TopologyDoc) -> Vec<gorgon_client::protocol::NodeSpec> {
    doc.resolved_nodes().unwrap_or_default()
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

#[allow(clippy::too_many_arguments)]
async fn patch(
    client: &Client,
    topology: &str,
    node: &str,
    function: Option<String>,
    sources: Option<String>,
    archive: Option<bool>,
    attrs: Option<String>,
    json: bool,
) -> Outcome {
    let attrs: Option<Map<String, Value>> = attrs
        .map(|text| {
            serde_json::from_str(&text).map_err(|error| {
                Failure::Other(
                    format!("--attrs must be a JSON object such as '{{\"step\": 2}}' ({error})"),
                    4,
                )
            })
        })
        .transpose()?;
    let sources = sources.map(|text| {
        text.split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    if function.is_none() && sources.is_none() && archive.is_none() && attrs.is_none() {
        return Err(Failure::Other(
            "nothing to change: give --function, --sources, --archive or --attrs".to_owned(),
            2,
        ));
    }
    if function.is_some() || sources.is_some() || archive.is_some() {
        let patch = NodePatch {
            function,
            sources,
            archive,
        };
        client.patch_node(topology, node, &patch).await?;
    }
    if let Some(attrs) = attrs {
        client.patch_attrs(topology, node, &attrs).await?;
    }
    show_node(&client.node(topology, node).await?, json)
}

fn show_node(view: &NodeView, json: bool) -> Outcome {
    if json {
        return print_json(view);
    }
    let output = match view.output_event() {
        None => "-".to_owned(),
        Some(Ok(event)) => format!("#{} at {}: {}", event.seq, event.ts, compact(&event.data)),
        Some(Err(_)) => view
            .output
            .as_ref()
            .map(|raw| raw.get().to_owned())
            .unwrap_or_default(),
    };
    let mut rows = vec![
        ("id", view.id.clone()),
        ("function", view.function.clone()),
        ("sources", list(&view.sources)),
        ("state", state_of(view)),
        ("dead letters", view.status.dead_letters.to_string()),
        ("attrs", compact(&Value::Object(view.attrs.clone()))),
        ("output", output),
    ];
    if view.archive == Some(false) {
        rows.insert(3, ("archive", "off".to_owned()));
    }
    if let Some(error) = &view.status.last_error {
        rows.push(("last error", error.clone()));
    }
    print(&pairs(&rows))
}

fn latest_seq(view: &NodeView) -> String {
    match view.output_event() {
        Some(Ok(event)) => event.seq.to_string(),
        _ => "-".to_owned(),
    }
}

fn state_of(view: &NodeView) -> String {
    serde_json::to_value(view.status.state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn outputs_table(items: &[OutputEvent], next: Option<&str>) -> String {
    let mut table = Table::new(&["SEQ", "TS", "NODE", "INPUT", "DATA"]);
    for event in items {
        table.row(vec![
            event.seq.to_string(),
            event.ts.to_string(),
            event.node.clone(),
            event.input_id.clone(),
            compact(&event.data),
        ]);
    }
    let mut text = table.render();
    if let Some(next) = next {
        text.push_str(&format!("more: {next} (--all reads every page)\n"));
    }
    text
}

/// Injects stdin's ndjson in requests of `batch` lines (each at most 512 KiB), every request
/// with its own Idempotency-Key so retries queue nothing twice; prints the ids, one a line,
/// and on a terminal shows its progress on stderr.
async fn inject_stdin(
    client: &Client,
    topology: &str,
    node: &str,
    batch: usize,
    json: bool,
) -> Outcome {
    const MAX_REQUEST_BYTES: usize = 512 * 1024;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let progress = std::io::stderr().is_terminal();
    // A file on stdin has a size: the progress is then a bar.
    let total_bytes = stdin_file_size();
    let mut read_bytes = 0u64;
    let started = Instant::now();
    let mut last_shown = Instant::now();
    let mut sent = 0u64;
    let mut requests = 0u64;
    // The request being filled: its lines, how many, the number of its first line.
    let mut body = String::new();
    let mut lines = 0usize;
    let mut first = 1usize;
    let mut number = 0usize;
    let mut reader = std::io::stdin().lock();
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|error| Failure::Other(format!("cannot read stdin: {error}"), 1))?;
        read_bytes += read as u64;
        let end = read == 0;
        if !end {
            number += 1;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
                return Err(Failure::Other(
                    format!(
                        "line {number} of stdin is not JSON ({error}); {sent} message{} before \
                         line {first} were injected",
                        plural(sent as usize)
                    ),
                    4,
                ));
            }
            if lines == 0 {
                first = number;
            }
            body.push_str(text);
            body.push('\n');
            lines += 1;
            if lines < batch && body.len() < MAX_REQUEST_BYTES {
                continue;
            }
        }
        if lines > 0 {
            let key = format!("{run}-{requests}");
            let last = first + lines - 1;
            let injected = client
                .inject_ndjson(topology, node, std::mem::take(&mut body), &key)
                .await
                .map_err(|error| match error {
                    Error::Api {
                        status,
                        code,
                        message,
                        problems,
                        retry_after,
                    } => Error::Api {
                        status,
                        code,
                        message: format!(
                            "lines {first}..{last} of stdin: {message}; the {sent} message{} \
                             before them were injected",
                            plural(sent as usize)
                        ),
                        problems,
                        retry_after,
                    },
                    other => other,
                })?;
            lines = 0;
            requests += 1;
            sent += injected.msg_ids.len() as u64;
            let mut ids = String::new();
            for id in &injected.msg_ids {
                if json {
                    ids.push_str(&serde_json::json!({ "msg_id": id }).to_string());
                } else {
                    ids.push_str(id);
                }
                ids.push('\n');
            }
            print(&ids)?;
            if progress && last_shown.elapsed() >= Duration::from_millis(200) {
                last_shown = Instant::now();
                show_progress(total_bytes, read_bytes, sent, started);
            }
        }
        if end {
            break;
        }
    }
    if progress {
        show_progress(total_bytes, read_bytes, sent, started);
        eprintln!();
    }
    eprintln!(
        "injected {sent} message{} into {topology}/{node} in {requests} request{} ({:.1} s)",
        plural(sent as usize),
        plural(requests as usize),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The progress line of an inject from stdin: a bar when the input's size is known.
fn show_progress(total_bytes: Option<u64>, read_bytes: u64, sent: u64, started: Instant) {
    let rate = sent as f64 / started.elapsed().as_secs_f64().max(0.001);
    match total_bytes {
        Some(total) => {
            let done = (read_bytes as f64 / total as f64).min(1.0);
            let filled = (done * 30.0).round() as usize;
            eprint!(
                "\r[{}{}] {:>3.0}%  {sent} messages  {rate:.0}/s   ",
                "#".repeat(filled),
                "-".repeat(30 - filled),
                done * 100.0
            );
        }
        None => eprint!("\rinjected {sent} messages ({rate:.0}/s)   "),
    }
}

/// The size of stdin when it is a regular file (`gorgon inject t n < file`), for the bar.
fn stdin_file_size() -> Option<u64> {
    use std::os::fd::AsFd as _;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd().try_clone_to_owned().ok()?;
    let metadata = std::fs::File::from(fd).metadata().ok()?;
    (metadata.is_file() && metadata.len() > 0).then_some(metadata.len())
}

async fn tail(
    client: &Client,
    topology: &str,
    node: Option<&str>,
    start: StartAt,
    count: Option<u64>,
    json: bool,
) -> Outcome {
    let mut outputs = client.subscribe(topology, node, start).await?;
    let mut seen = 0u64;
    let mut out = std::io::stdout();
    while count.is_none_or(|count| seen < count) {
        let Some(item) = outputs.next().await else {
            break;
        };
        match item {
            Ok(event) => {
                let line = if json {
                    serde_json::to_string(&event).unwrap_or_default()
                } else {
                    format!(
                        "{}  {}  #{}  {}",
                        event.ts,
                        event.node,
                        event.seq,
                        compact(&event.data)
                    )
                };
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    // The reader went away (a closed pipe): done.
                    return Ok(());
                }
                seen += 1;
            }
            // A gap that history could not fill: said, and the stream goes on.
            Err(error @ Error::Gap { .. }) => eprintln!("warning: {error}"),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

async fn status(client: &Client, json: bool) -> Outcome {
    let snapshot = client.stats_snapshot(60).await?;
    if json {
        return print_json(&snapshot);
    }
    let text_of = |value: &Value| match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut text = String::new();
    let mut roles = Table::new(&["ROLE", "INSTANCE", "HOST", "STATE", "UPTIME"]);
    for instance in snapshot["instances"].as_array().into_iter().flatten() {
        roles.row(vec![
            text_of(&instance["role"]),
            text_of(&instance["instance"]),
            text_of(&instance["host"]),
            text_of(&instance["state"]),
            duration(instance["uptime_s"].as_f64().unwrap_or(0.0)),
        ]);
    }
    text.push_str(&roles.render());
    text.push('\n');
    // Partitions by owner (a mesh has 64 by default): how many each holds and their backlogs.
    #[derive(Default)]
    struct Held {
        partitions: u64,
        waiting: u64,
        in_flight: u64,
        delayed: u64,
        dead: u64,
        oldest_ms: Option<u64>,
    }
    let mut owners: std::collections::BTreeMap<String, Held> = Default::default();
    for partition in snapshot["partitions"].as_array().into_iter().flatten() {
        let owner = partition["owner"]
            .as_str()
            .unwrap_or("(none: no processor holds it)")
            .to_owned();
        let held = owners.entry(owner).or_default();
        let count = |field: &str| partition[field].as_u64().unwrap_or(0);
        held.partitions += 1;
        held.waiting += count("waiting");
        held.in_flight += count("in_flight");
        held.delayed += count("delayed");
        held.dead += count("dead");
        held.oldest_ms = held.oldest_ms.max(partition["oldest_age_ms"].as_u64());
    }
    let mut partitions = Table::new(&[
        "OWNER",
        "PARTITIONS",
        "WAITING",
        "IN FLIGHT",
        "DELAYED",
        "DEAD",
        "OLDEST",
    ]);
    for (owner, held) in owners {
        partitions.row(vec![
            owner,
            held.partitions.to_string(),
            held.waiting.to_string(),
            held.in_flight.to_string(),
            held.delayed.to_string(),
            held.dead.to_string(),
            held.oldest_ms
                .map_or("-".to_owned(), |ms| duration(ms as f64 / 1000.0)),
        ]);
    }
    text.push_str(&partitions.render());
    text.push('\n');
    let archive = &snapshot["archive"];
    if archive.is_object() {
        let drain = archive["drain_s"]
            .as_f64()
            .map_or("not shrinking".to_owned(), |seconds| {
                format!("drains in {}", duration(seconds))
            });
        text.push_str(&format!(
            "archive: {} entries behind, {drain}\n",
            text_of(&archive["backlog"])
        ));
    }
    text.push_str(&format!(
        "dead letters: {}\n",
        text_of(&snapshot["dead_letters"])
    ));
    if let Some(error) = snapshot["redis_error"].as_str() {
        text.push_str(&format!("redis: {error}\n"));
    }
    print(&text)
}

/// `95` → `1m35s`.
fn duration(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    match total {
        0..60 => format!("{total}s"),
        60..3600 => format!("{}m{}s", total / 60, total % 60),
        3600..86_400 => format!("{}h{}m", total / 3600, total % 3600 / 60),
        _ => format!("{}d{}h", total / 86_400, total % 86_400 / 3600),
    }
}

fn done(json: bool, text: &str, value: impl FnOnce() -> Value) -> Outcome {
    if json {
        return print_json(&value());
    }
    print(&format!("{text}\n"))
}

fn print_json(value: &impl Serialize) -> Outcome {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    print(&format!("{text}\n"))
}

fn print(text: &str) -> Outcome {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`gorgon nodes t | head -1`) is not a failure of the command.
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    Ok(())
}
