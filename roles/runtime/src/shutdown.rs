//! Turning SIGTERM and Ctrl-C into a cancellation token, and a second signal into an exit.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The exit status after a second signal: 128 + SIGINT, what a shell reports for Ctrl-C.
const FORCED_EXIT_STATUS: i32 = 130;

/// A token cancelled on the first SIGTERM or SIGINT (Ctrl-C). A second one of either exits
/// the process at once with status 130, for when a graceful stop hangs.
///
/// The handlers are installed before this returns, so no signal is missed; the task that
/// waits on them lives as long as the process.
///
/// # Panics
///
/// Outside a tokio runtime, or if the signal handlers cannot be installed.
pub fn shutdown_token() -> CancellationToken {
    let mut terminate = signal(SignalKind::terminate()).expect("install the SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install the SIGINT handler");
    let token = CancellationToken::new();
    let cancel = token.clone();
    let watch_signals = async move {
        let first = next_signal(&mut terminate, &mut interrupt).await;
        tracing::info!(
            signal = first,
            "shutting down; send another SIGTERM or SIGINT to exit at once"
        );
        cancel.cancel();
        let second = next_signal(&mut terminate, &mut interrupt).await;
        tracing::warn!(
            signal = second,
            "forced exit requested by a second signal; exiting with status {FORCED_EXIT_STATUS}"
        );
        std::process::exit(FORCED_EXIT_STATUS);
    };
    tokio::spawn(watch_signals.in_current_span());
    token
}

/// Waits for the next SIGTERM or SIGINT and names it.
async fn next_signal(terminate: &mut Signal, interrupt: &mut Signal) -> &'static str {
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
