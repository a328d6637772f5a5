//! Connection and behaviour settings for a redpill [`Client`](crate::Client).

use std::fmt;
use std::time::Duration;

/// What redpill does when the server's persistence settings can lose acknowledged data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurabilityPolicy {
    /// Log a warning naming each unsafe setting and carry on.
    Warn,
    /// Refuse to connect ([`Error::UnsafeServer`](crate::Error::UnsafeServer)).
    Refuse,
}

/// Settings for a [`Client`](crate::Client).
///
/// Every default is here, in [`Config::default`]; change them with the `set_*` builders.
#[derive(Clone)]
pub struct Config {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) consumer_ttl: Duration,
    pub(crate) reap_interval: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) durability: DurabilityPolicy,
    pub(crate) name: String,
    pub(crate) replica_acks: u32,
    pub(crate) replica_ack_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            prefix: "gorgon".to_owned(),
            consumer_ttl: Duration::from_secs(5),
            reap_interval: Duration::from_secs(1),
            poll_interval: Duration::from_millis(250),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(10),
            response_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(2),
            durability: DurabilityPolicy::Warn,
            name: "redpill".to_owned(),
            replica_acks: 0,
            replica_ack_timeout: Duration::from_secs(2),
        }
    }
}

impl Config {
    /// The Redis URL, `redis://[user:password@]host:port[/db]`. Default `redis://127.0.0.1:6379`.
    /// For a Redis Cluster, several nodes' URLs separated by commas: the client starts from
    /// the first that answers.
    pub fn set_url(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The prefix of every key and channel redpill uses. Default `gorgon`.
    pub fn set_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a consumer's heartbeat key lives without renewal; once it expires the
    /// consumer counts as dead and its in-flight messages are re-queued. Default 5 s.
    /// It is renewed every third of this.
    pub fn set_consumer_ttl(mut self, ttl: Duration) -> Self {
        self.consumer_ttl = ttl;
        self
    }

    /// How often a puller looks for dead consumers of the queues and topics it reads. Default 1 s.
    pub fn set_reap_interval(mut self, interval: Duration) -> Self {
        self.reap_interval = interval;
        self
    }

    /// The longest a waiting puller sleeps before it polls again when no wake-up arrives.
    /// Wake-ups are PUBLISH hints and may be lost; this bounds the delay that causes. Default 250 ms.
    pub fn set_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Deliveries a message gets before it is dead-lettered (nacks and dead pullers both count).
    /// Default 3.
    pub fn set_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The first retry delay after a nack; it doubles per attempt up to the maximum.
    /// Defaults 100 ms and 10 s.
    pub fn set_retry_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.retry_backoff = first;
        self.retry_backoff_max = max.max(first);
        self
    }

    /// How long one command may wait for its reply before it fails as retryable. Default 5 s.
    pub fn set_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long one connection attempt may take. Default 2 s.
    pub fn set_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest pause between two reconnection attempts (the backoff starts at 50 ms). Default 2 s.
    pub fn set_reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.reconnect_max_delay = delay;
        self
    }

    /// What to do when the server may lose acknowledged writes. Default [`DurabilityPolicy::Warn`].
    pub fn set_durability(mut self, policy: DurabilityPolicy) -> Self {
        self.durability = policy;
        self
    }

    /// How many replicas must have every acknowledged write (a push, a fenced commit)
    /// before the call returns: `WAIT <acks> <timeout>` in the same round trip, on the
    /// master that took the write. Fewer within `timeout` fails the call with
    /// [`Error::Unreplicated`](crate::Error::Unreplicated) (retryable; the write is on the
    /// master and may still reach its replicas). Default 0: no wait, so a master that fails
    /// right after acknowledging can lose what its replicas had not received yet.
    pub fn set_replica_acks(mut self, acks: u32, timeout: Duration) -> Self {
        self.replica_acks = acks;
        self.replica_ack_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// A name for this process's consumers (a role name); a unique suffix is added. Default `redpill`.
    pub fn set_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn masked_url(&self) -> String {
        mask_url(&self.url)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.masked_url())
            .field("prefix", &self.prefix)
            .field("consumer_ttl", &self.consumer_ttl)
            .field("reap_interval", &self.reap_interval)
            .field("poll_interval", &self.poll_interval)
            .field("max_attempts", &self.max_attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("retry_backoff_max", &self.retry_backoff_max)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("durability", &self.durability)
            .field("name", &self.name)
            .finish()
    }
}

/// Replaces the password of a `scheme://user:password@host` URL with `***`.
pub fn mask_url(url: &str) -> String {
    // A cluster's seed list: every address masked.
    if url.contains(',') {
        return url.split(',').map(mask_url).collect::<Vec<_>>().join(",");
    }
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => "***".to_owned(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], masked, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::mask_url;

    #[test]
    fn masks_every_password_of_a_seed_list() {
        assert_eq!(
            mask_url("redis://:s3cret@a:7000,redis://app:s3cret@b:7001"),
            "redis://:***@a:7000,redis://app:***@b:7001"
        );
    }

    #[test]
    fn masks_password_but_keeps_user_and_host() {
        assert_eq!(
            mask_url("redis://app:s3cret@db:6379/0"),
            "redis://app:***@db:6379/0"
        );
        assert_eq!(mask_url("redis://:s3cret@db"), "redis://:***@db");
        assert_eq!(mask_url("redis://token@db"), "redis://***@db");
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
