//! The process's tracing subscriber, its flags, and the span that names the role on every line.

use std::io::IsTerminal;

use tracing::span::EnteredSpan;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// What the process logs and how; flattened into every role's `Config`.
#[derive(clap::Args, Clone, Debug)]
pub struct LogArgs {
    /// Which events are logged: a tracing filter, e.g. `info,redpill=debug` or `warn`.
    /// Unset: `info`.
    #[arg(long = "log", env = "RUST_LOG", value_name = "FILTER")]
    pub filter: Option<String>,

    /// How lines are written: `text` (human-readable, coloured only when stdout is a
    /// terminal) or `json` (one JSON object per line). Another value writes text, with a warning.
    #[arg(
        long = "log-format",
        env = "GORGON_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub format: String,
}

/// Installs the process's tracing subscriber, writing to stdout as `log` says, and enters the
/// role span.
///
/// - The filter is `log.filter` (`--log`, `RUST_LOG`); when it is unset, `info`. Directives it
///   cannot parse are skipped, as `RUST_LOG` always was.
/// - The format is `log.format` (`--log-format`, `GORGON_LOG_FORMAT`): `json` writes one JSON
///   object per line; `text` writes human-readable lines, coloured only when stdout is a terminal.
/// - The returned guard keeps a `role{service=<role>}` span entered on the calling thread,
///   so every event logged from `main` and from the `run` future it awaits names the role.
///   A task started with `tokio::spawn` runs on another thread and names the role only when
///   spawned with `.in_current_span()`. Hold the guard for the life of `main`.
///
/// # Panics
///
/// If a global subscriber is already installed: call it once, in `main`, right after the
/// configuration is parsed.
#[must_use = "the role span is left when this guard is dropped; hold it for the life of main"]
pub fn init_tracing(role: &str, log: &LogArgs) -> EnteredSpan {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(log.filter.as_deref().unwrap_or_default());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let format = log.format.as_str();
    match format {
        "json" => builder.json().init(),
        _ => builder.with_ansi(std::io::stdout().is_terminal()).init(),
    }
    // ERROR level, so that no filter that lets any event of this process through can turn
    // the span off and strip the role from the lines.
    let span = tracing::error_span!("role", service = role).entered();
    if !matches!(format, "" | "text" | "json") {
        tracing::warn!(
            log_format = %format,
            "unknown log format (--log-format, GORGON_LOG_FORMAT); writing text (the formats are text and json)"
        );
    }
    span
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::LogArgs;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        log: LogArgs,
    }

    /// `--log` and `--log-format` set the filter and the format, whatever the environment says.
    #[test]
    fn flags_set_filter_and_format() {
        let flags = Flags::parse_from([
            "role",
            "--log",
            "warn,redpill=debug",
            "--log-format",
            "json",
        ]);
        assert_eq!(flags.log.filter.as_deref(), Some("warn,redpill=debug"));
        assert_eq!(flags.log.format, "json");
    }
}
