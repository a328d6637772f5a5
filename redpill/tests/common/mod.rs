//! Shared by the redpill integration tests.

#![allow(dead_code)]

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

pub fn bodies(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

pub fn texts(deliveries: &[redpill::Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8(d.body.to_vec()).unwrap())
        .collect()
}
