//! Slugs: the ids of topologies and nodes.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The longest slug.
pub const MAX_SLUG_LEN: usize = 64;

/// What a slug is, as a regular expression (the OpenAPI document gives it to clients).
pub const SLUG_PATTERN: &str = "^[a-z][a-z0-9]*(-[a-z0-9]+)*$";

/// Why a string is not a slug.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not a valid id: {reason}; use lower-case letters, digits and single hyphens, starting with a letter, at most 64 characters (e.g. \"temp-in\")")]
pub struct SlugError {
    /// The rejected text (cut to 80 characters).
    pub given: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Checks `text` against [`SLUG_PATTERN`], at most [`MAX_SLUG_LEN`] characters.
pub fn validate_slug(text: &str) -> Result<(), SlugError> {
    let fail = |reason| {
        Err(SlugError {
            given: text.chars().take(80).collect(),
            reason,
        })
    };
    if text.is_empty() {
        return fail("it is empty");
    }
    if text.len() > MAX_SLUG_LEN {
        return fail("it is longer than 64 characters");
    }
    let bytes = text.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return fail("it must start with a lower-case letter");
    }
    let mut previous = bytes[0];
    for &byte in &bytes[1..] {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' => {}
            b'-' if previous == b'-' => return fail("it has two hyphens in a row"),
            b'-' => {}
            _ => return fail("it has a character other than a-z, 0-9 and -"),
        }
        previous = byte;
    }
    if previous == b'-' {
        return fail("it ends with a hyphen");
    }
    Ok(())
}

/// A validated slug. Deserializing checks it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// Validates `text`.
    pub fn new(text: impl Into<String>) -> Result<Slug, SlugError> {
        let text = text.into();
        validate_slug(&text)?;
        Ok(Slug(text))
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Slug::new(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slugs of the examples are accepted; each kind of bad slug is refused with its reason.
    #[test]
    fn accepts_slugs_and_names_what_is_wrong() {
        for good in ["a", "temp-in", "too-hot", "n1", "a1-b2-c3", &"a".repeat(64)] {
            assert_eq!(validate_slug(good), Ok(()), "{good}");
        }
        let reason = |text: &str| validate_slug(text).unwrap_err().reason;
        assert_eq!(reason(""), "it is empty");
        assert_eq!(reason(&"a".repeat(65)), "it is longer than 64 characters");
        assert_eq!(reason("1abc"), "it must start with a lower-case letter");
        assert_eq!(reason("-abc"), "it must start with a lower-case letter");
        assert_eq!(reason("Temp"), "it must start with a lower-case letter");
        assert_eq!(reason("temp--in"), "it has two hyphens in a row");
        assert_eq!(reason("temp-"), "it ends with a hyphen");
        for bad in [
            "temp_in",
            "temp in",
            "a:b",
            "a{b}",
            "a*",
            "a/b",
            "caf\u{e9}",
            "a\n",
        ] {
            assert_eq!(
                reason(bad),
                "it has a character other than a-z, 0-9 and -",
                "{bad:?}"
            );
        }
        let message = validate_slug("Bad").unwrap_err().to_string();
        assert!(
            message.starts_with("\"Bad\" is not a valid id: it must start"),
            "{message}"
        );
    }

    /// Deserializing a slug validates it.
    #[test]
    fn deserializing_validates() {
        let slug: Slug = serde_json::from_str("\"temp-in\"").unwrap();
        assert_eq!(slug.as_str(), "temp-in");
        assert!(serde_json::from_str::<Slug>("\"Temp\"").is_err());
        assert_eq!(serde_json::to_string(&slug).unwrap(), "\"temp-in\"");
    }
}
