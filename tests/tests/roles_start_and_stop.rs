//! Each role binary starts against a real Redis, logs its configuration with secrets masked,
//! and stops cleanly on SIGTERM or SIGINT, also when Redis never became reachable.

use std::time::Duration;

use mesh_tests::RoleProcess;
use protocol::roles::{NOTIFIER, PROCESSOR, STATS, STORE, WEB_FACE};
use redpill::testing::{free_port, TestRedis};

/// How long a role may take to start, or to stop after a signal.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a role may take to find Redis unreachable: redpill's client retries a refused
/// connection for a few seconds before it reports the failure.
const UNREACHABLE_DEADLINE: Duration = Duration::from_secs(30);

/// Starting an HTTP role with an API token: the token must not appear in its log.
const API_TOKENS: &str = "topsecret=admin";
/// Starting the store with a MongoDB password: the password must not appear in its log.
const MONGODB_URI: &str = "mongodb://u:hunter2@127.0.0.1:1/gorgon";

/// web_face starts, logs its config without the API token, and stops on SIGTERM.
#[tokio::test]
async fn web_face_starts_and_stops() {
    http_role_starts_and_stops(WEB_FACE).await;
}

/// notifier starts, logs its config without the API token, and stops on SIGTERM.
#[tokio::test]
async fn notifier_starts_and_stops() {
    http_role_starts_and_stops(NOTIFIER).await;
}

/// stats starts, logs its config without the API token, and stops on SIGTERM.
#[tokio::test]
async fn stats_starts_and_stops() {
    http_role_starts_and_stops(STATS).await;
}

/// store starts, logs its config without the MongoDB password, and stops on SIGTERM.
#[tokio::test]
async fn store_starts_and_stops() {
    let redis = TestRedis::start();
    let role = RoleProcess::spawn(
        STORE,
        &[("REDIS_URL", &redis.url()), ("MONGODB_URI", MONGODB_URI)],
    );
    let output = role.starts_and_stops_on("TERM").await;
    assert!(
        !output.contains("hunter2"),
        "the MongoDB password leaked:\n{output}"
    );
    assert!(
        output.contains("mongodb://u:***@127.0.0.1:1/gorgon"),
        "{output}"
    );
}

/// processor starts against a Redis that wants a password, logs its config without that
/// password, and stops on SIGTERM.
#[tokio::test]
async fn processor_starts_and_stops() {
    let redis = TestRedis::start();
    let reply = redis.command(&["CONFIG", "SET", "requirepass", "hunter3"]);
    assert!(reply.starts_with("+OK"), "{reply}");
    let url = format!("redis://:hunter3@127.0.0.1:{}", redis.port());
    let role = RoleProcess::spawn(PROCESSOR, &[("REDIS_URL", &url)]);
    let output = role.starts_and_stops_on("TERM").await;
    assert!(
        !output.contains("hunter3"),
        "the Redis password leaked:\n{output}"
    );
    assert!(output.contains("lease_ms: 5000"), "{output}");
}

/// A role started while Redis is down says so, keeps retrying, and still stops cleanly.
#[tokio::test]
async fn role_waiting_for_redis_stops_on_sigterm() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let mut role = RoleProcess::spawn(STORE, &[("REDIS_URL", &url)]);
    let warning = format!("Redis at {url} is unreachable");
    role.wait_for_output(&warning, UNREACHABLE_DEADLINE).await;
    role.signal("TERM");
    let (status, output) = role.wait_for_exit(DEADLINE).await;
    assert!(status.success(), "exited with {status}:\n{output}");
    assert!(
        output.contains("stopped before connecting to Redis"),
        "{output}"
    );
    assert!(!output.contains("starting"), "{output}");
}

/// Ctrl-C (SIGINT) stops a running role as cleanly as SIGTERM.
#[tokio::test]
async fn role_stops_on_sigint() {
    let redis = TestRedis::start();
    let role = RoleProcess::spawn(NOTIFIER, &[("REDIS_URL", &redis.url())]);
    let output = role.starts_and_stops_on("INT").await;
    assert!(output.contains("SIGINT"), "{output}");
}

/// Every role's `--help` lists the log settings as flags with their environment variables,
/// and the processor's and the store's hide their test-only failpoint.
#[test]
fn every_role_lists_its_log_flags() {
    for role in [WEB_FACE, STORE, PROCESSOR, NOTIFIER, STATS] {
        let output = std::process::Command::new(mesh_tests::role_binary(role))
            .arg("--help")
            .env_clear()
            .output()
            .unwrap_or_else(|err| panic!("cannot start the {role} binary: {err}"));
        assert!(output.status.success(), "{role} --help: {output:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        for expected in [
            "--log <FILTER>",
            "[env: RUST_LOG=]",
            "--log-format <FORMAT>",
            "[env: GORGON_LOG_FORMAT=] [default: text]",
        ] {
            assert!(
                help.contains(expected),
                "{role} --help lacks {expected:?}:\n{help}"
            );
        }
        assert!(!help.contains("failpoint"), "{role} --help:\n{help}");
        assert!(!help.contains("GORGON_FAILPOINT"), "{role} --help:\n{help}");
    }
}

/// `--log` and `--log-format` win over `RUST_LOG` and `GORGON_LOG_FORMAT`: with `--log warn
/// --log-format json`, every line is a JSON object of a warning, and the INFO line a role
/// writes when it stops is filtered out.
#[tokio::test]
async fn log_flags_win_over_the_environment() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let mut role = RoleProcess::spawn_with_args(
        STORE,
        &["--log", "warn", "--log-format", "json"],
        &[
            ("REDIS_URL", &url),
            ("RUST_LOG", "info"),
            ("GORGON_LOG_FORMAT", "text"),
        ],
    );
    role.wait_for_output("is unreachable", UNREACHABLE_DEADLINE)
        .await;
    role.signal("TERM");
    let (status, output) = role.wait_for_exit(DEADLINE).await;
    assert!(status.success(), "exited with {status}:\n{output}");
    assert!(!output.contains("stopped before connecting"), "{output}");
    for line in output.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}\n{output}"));
        assert_eq!(event["level"], "WARN", "{line}");
        assert_eq!(event["span"]["service"], "store", "{line}");
    }
}

/// Starts `role` with an API token, checks it is masked, and stops it with SIGTERM.
async fn http_role_starts_and_stops(role: &str) {
    let redis = TestRedis::start();
    let port = redpill::testing::free_port().to_string();
    let process = RoleProcess::spawn(
        role,
        &[
            ("REDIS_URL", &redis.url()),
            ("GORGON_API_TOKENS", API_TOKENS),
            ("GORGON_WEB_PORT", &port),
            ("GORGON_NOTIFIER_PORT", &port),
            ("GORGON_STATS_PORT", &port),
        ],
    );
    let output = process.starts_and_stops_on("TERM").await;
    assert!(
        !output.contains("topsecret"),
        "the API token leaked:\n{output}"
    );
    assert!(output.contains("api_tokens: Some(***)"), "{output}");
}

/// Waits for `starting`, sends `SIG<signal>`, and checks the role exits 0 after `stopped`;
/// returns the output.
trait StartsAndStops {
    async fn starts_and_stops_on(self, signal: &str) -> String;
}

impl StartsAndStops for RoleProcess {
    async fn starts_and_stops_on(mut self, signal: &str) -> String {
        self.wait_for_output("starting", DEADLINE).await;
        self.signal(signal);
        let (status, output) = self.wait_for_exit(DEADLINE).await;
        assert!(status.success(), "exited with {status}:\n{output}");
        assert!(output.contains("stopped"), "{output}");
        output
    }
}
