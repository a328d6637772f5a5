//! Shared by the redpill integration tests.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use redpill::testing::TestRedis;
use redpill::{Client, Config};

/// A client of `redis` with the test timings and its own key prefix.
pub async fn client(redis: &TestRedis) -> Client {
    client_with(redis.config()).await
}

pub async fn client_with(config: Config) -> Client {
    Client::connect(config.set_prefix("t"))
        .await
        .expect("connect to the test redis-server")
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn bodies(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

pub fn texts(deliveries: &[redpill::Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.body.to_vec()).unwrap())
        .collect()
}
