//! Shared by the redpill integration tests.

#![allow(dead_code)]

use redpill::testing::{TestBackend, TestRedis};
use redpill::{Client, Config};

/// What a test client can be made for: one server, or whichever backend the run chose.
pub trait Backend {
    fn config(&self) -> Config;
}

impl Backend for TestRedis {
    fn config(&self) -> Config {
        TestRedis::config(self)
    }
}

impl Backend for TestBackend {
    fn config(&self) -> Config {
        TestBackend::config(self)
    }
}

/// A client of `redis` with the test timings and its own key prefix.
pub async fn client(redis: &impl Backend) -> Client {
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
