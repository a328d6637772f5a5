//! Timestamps: Unix milliseconds inside the mesh, RFC 3339 UTC with milliseconds on the wire.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with millisecond precision. Serializes as RFC 3339 UTC with milliseconds,
/// `2026-11-23T04:05:06.789Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From Unix milliseconds.
    pub fn from_unix_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp(Utc::now().timestamp_millis())
    }

    /// Unix milliseconds.
    pub fn unix_ms(self) -> i64 {
        self.0
    }

    /// Parses RFC 3339 (any offset; the result is UTC).
    pub fn parse(text: &str) -> Option<Timestamp> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|time| Timestamp(time.timestamp_millis()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::<Utc>::from_timestamp_millis(self.0) {
            Some(time) => f.write_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true)),
            None => write!(f, "@{}ms", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3339 UTC with exactly three fraction digits, both ways.
    #[test]
    fn rfc3339_with_milliseconds() {
        let time = Timestamp::from_unix_ms(1_795_400_706_789);
        assert_eq!(time.to_string(), "2026-11-23T02:25:06.789Z");
        assert_eq!(
            Timestamp::from_unix_ms(0).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            serde_json::to_string(&time).unwrap(),
            "\"2026-11-23T02:25:06.789Z\""
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>("\"2026-11-23T03:25:06.789+01:00\"").unwrap(),
            time
        );
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }
}
