//! Config values that must not reach a log whole: `Debug` masks them.

use std::fmt;

/// A secret such as an API token list. `Debug` prints `***`; there is no `Display`, so the
/// only way to the value is [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL that may carry a password (`scheme://user:password@host/...`). `Debug` and
/// `Display` show it with the password replaced by `***`; [`ConnectionUrl::expose`] gives
/// the whole URL to the client that connects with it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    /// The URL, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password masked.
    pub fn masked(&self) -> String {
        redpill::mask_url(&self.0)
    }
}

impl From<String> for ConnectionUrl {
    fn from(value: String) -> Self {
        ConnectionUrl(value)
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.masked(), f)
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::{ConnectionUrl, Secret};

    /// Neither type lets its secret through `Debug` or `Display`.
    #[test]
    fn debug_and_display_mask_secrets() {
        let secret = Secret::from("topsecret=admin".to_owned());
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
        assert_eq!(secret.expose(), "topsecret=admin");

        let url = ConnectionUrl::from("mongodb://u:hunter2@db:27017/gorgon".to_owned());
        assert_eq!(format!("{url:?}"), "\"mongodb://u:***@db:27017/gorgon\"");
        assert_eq!(url.to_string(), "mongodb://u:***@db:27017/gorgon");
        assert_eq!(url.expose(), "mongodb://u:hunter2@db:27017/gorgon");
    }
}
