//! The client-app binary against a real mesh and notifier: its exact output, run twice.

use std::time::Duration;

use mesh_tests::mesh::Mesh;
use mesh_tests::socketio::Notifier;
use serde_json::json;

/// The readings each run injects.
const READINGS: u32 = 20;

/// A first run creates the topology and prints one line per average its readings make; a
/// second run applies no change and the average, and its seqs, go on from the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greenhouse_twice() {
    let mesh = Mesh::start(1, &[]).await;
    let notifier = Notifier::start(&mesh, &[]).await;
    let mut average = Average::default();

    let first = run(&mesh.base, &notifier.url).await;
    assert_eq!(
        first,
        average.expected_run(
            "applied greenhouse (rev 1): created temperature, average; updated none; deleted none"
        )
    );

    let second = run(&mesh.base, &notifier.url).await;
    assert_eq!(
        second,
        average.expected_run("applied greenhouse (rev 1): no change")
    );
}

/// Runs client-app against the mesh at `api` and the notifier at `notifier`; its stdout.
async fn run(api: &str, notifier: &str) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_client-app"))
        .env_clear()
        .env("GORGON_URL", api)
        .env("GORGON_NOTIFIER_URL", notifier)
        .args(["--readings", &READINGS.to_string()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("client-app ends within 60 s")
        .expect("client-app starts");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "client-app failed ({}); stdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The `average` node as the test expects it: how many readings it has averaged.
#[derive(Default)]
struct Average {
    count: u64,
}

impl Average {
    /// The whole stdout of the next run, which starts with `plan`.
    fn expected_run(&mut self, plan: &str) -> String {
        let mut lines = vec![
            plan.to_owned(),
            format!("following greenhouse/average after seq {}", self.count),
            format!("injected {READINGS} readings into greenhouse/temperature"),
        ];
        let mut mean = 0.0;
        for _ in 0..READINGS {
            self.count += 1;
            // Readings 20 + k/8 for k = 0, 1, ...: the mean of the first n is 20 + (n-1)/16.
            mean = 20.0 + (self.count - 1) as f64 / 16.0;
            let data = json!({"mean": mean, "count": self.count});
            lines.push(format!("average #{}: {data}", self.count));
        }
        lines.push(format!(
            "final average: {} °C over {} readings (average #{})",
            json!(mean),
            self.count,
            self.count
        ));
        lines.join("\n") + "\n"
    }
}
