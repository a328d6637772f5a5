//! The custom processor binary runs its own function on a real Redis.

use std::time::Duration;

use mesh_tests::eventually;
use mesh_tests::graph::Graph;
use redpill::testing::TestRedis;
use serde_json::json;

/// A node using `fahrenheit` outputs the conversion of what is injected into it, and feeds a
/// built-in node downstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_function_runs_in_the_custom_processor() {
    let redis = TestRedis::start();
    let mut processor = tokio::process::Command::new(env!("CARGO_BIN_EXE_custom-processor"))
        .env_clear()
        .env("REDIS_URL", redis.url())
        .env("GORGON_PARTITIONS", "4")
        .env("GORGON_LEASE_MS", "1000")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = redpill::Client::connect(redis.config().set_prefix("gorgon"))
        .await
        .unwrap();
    let graph = Graph::new(&client, "weather", 4);
    graph
        .create(&[
            ("temp-f", "fahrenheit", &[], json!({"field": "/celsius"})),
            (
                "hottest",
                "max",
                &["temp-f"],
                json!({"field": "/fahrenheit"}),
            ),
        ])
        .await;
    graph
        .inject(&[
            ("temp-f", json!({"celsius": 20})),
            ("temp-f", json!({"celsius": 100})),
            ("temp-f", json!({"celsius": -40})),
        ])
        .await;
    let hottest = eventually(
        Duration::from_secs(20),
        "three readings through both nodes",
        || async {
            let state = graph.node("hottest").await?;
            (state.seq == 3).then_some(state)
        },
    )
    .await;
    assert_eq!(hottest.attrs["max"], json!(212.0));
    let converted = graph.node("temp-f").await.unwrap();
    let latched: serde_json::Value =
        serde_json::from_str(converted.output.as_deref().unwrap()).unwrap();
    assert_eq!(latched["data"], json!({"fahrenheit": -40.0}));
    assert_eq!(latched["seq"], json!(3));
    processor.kill().await.unwrap();
}
