//! The process's tracing subscriber, and the span that names the role on every line.

use std::io::IsTerminal;

use tracing::span::EnteredSpan;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// Installs the process's tracing subscriber, writing to stdout, and enters the role span.
///
/// - The filter is `RUST_LOG` (e.g. `info,redpill=debug`); when it is unset, `info`.
/// - `GORGON_LOG_FORMAT=json` writes one JSON object per line; unset or `text` writes
///   human-readable lines, coloured only when stdout is a terminal.
/// - The returned guard keeps a `role{service=<role>}` span entered on the calling thread,
///   so every event logged from `main` and from the `run` future it awaits names the role.
///   A task started with `tokio::spawn` runs on another thread and names the role only when
///   spawned with `.in_current_span()`. Hold the guard for the life of `main`.
///
/// # Panics
///
/// If a global subscriber is already installed: call it once, first thing in `main`.
#[must_use = "the role span is left when this guard is dropped; hold it for the life of main"]
pub fn init_tracing(role: &str) -> EnteredSpan {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let format = std::env::var("GORGON_LOG_FORMAT").unwrap_or_default();
    match format.as_str() {
        "json" => builder.json().init(),
        _ => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
    // ERROR level, so that no RUST_LOG that lets any event of this process through can turn
    // the span off and strip the role from the lines.
    let span = tracing::error_span!("role", service = role).entered();
    if !matches!(format.as_str(), "" | "text" | "json") {
        tracing::warn!(
            GORGON_LOG_FORMAT = %format,
            "unknown log format; writing text (the formats are text and json)"
        );
    }
    span
}
