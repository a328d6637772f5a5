//! The error codes the mesh answers clients with, and the HTTP status each stands for.
//!
//! One table, [`ErrorCode`], names every code made anywhere: web_face's REST answers, the
//! store's replies that web_face passes on, the notifier's refusals and the stats monitor's.
//! The table gives each code its snake_case wire form and its status together, so a code
//! cannot be added without a status; `docs/api.md` lists the same table, and a test holds the
//! two together.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares [`ErrorCode`] from rows `Variant => "wire_form", status;`: the enum, its
/// [`as_str`](ErrorCode::as_str), its [`status`](ErrorCode::status) (an exhaustive match: a
/// row without a status does not compile), [`ErrorCode::KNOWN`] and the reading of the wire
/// form.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])+ $variant:ident => $code:literal, $status:literal;)+) => {
        /// A code of an error answer: `{"error": {"code", "message"}}`, and the `code` of each
        /// of its `problems`. It travels as its snake_case string ([`ErrorCode::as_str`]);
        /// [`ErrorCode::status`] is the HTTP status an answer with it carries.
        ///
        /// A code this build does not know, read from a peer of another version (a newer
        /// store answering an older web_face), does not fail the reply it came in: it reads
        /// as [`ErrorCode::Unknown`], keeps its string, so the client still sees it, and
        /// stands for 500. Only reading makes one; every code the mesh makes is one of the
        /// named variants.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])+ $variant,)+
            /// A code this build does not know; see [`ErrorCode`].
            Unknown(UnknownCode),
        }

        impl ErrorCode {
            /// Every code this build knows, in the order of the table.
            pub const KNOWN: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The wire form, snake_case.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                    ErrorCode::Unknown(code) => &code.0,
                }
            }

            /// The HTTP status of an answer with this code; 500 for an unknown code. The
            /// notifier's socket.io acknowledgements carry no status: theirs is the status of
            /// the same kind of refusal.
            pub fn status(&self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)+
                    ErrorCode::Unknown(_) => 500,
                }
            }

            /// The code whose wire form is `code`, known or not.
            fn read(code: String) -> ErrorCode {
                match code.as_str() {
                    $($code => ErrorCode::$variant,)+
                    _ => ErrorCode::Unknown(UnknownCode(code)),
                }
            }
        }
    };
}

error_codes! {
    /// The body is not valid JSON, or not of the shape the route takes.
    MalformedJson => "malformed_json", 400;
    /// The topology document cannot be read (JSON or TOML), unknown keys included.
    MalformedDocument => "malformed_document", 400;
    /// The body nests deeper than `GORGON_JSON_DEPTH`.
    TooDeep => "too_deep", 400;
    /// `If-Match` is not a topology rev.
    InvalidIfMatch => "invalid_if_match", 400;
    /// A path id cannot be read (e.g. a percent-encoding that is not UTF-8).
    InvalidPath => "invalid_path", 400;
    /// The query string is not one the route takes.
    InvalidQuery => "invalid_query", 400;
    /// `Idempotency-Key` is not usable.
    InvalidIdempotencyKey => "invalid_idempotency_key", 400;
    /// A notifier subscription, or a stats monitor query, is not of the shape it takes.
    InvalidRequest => "invalid_request", 400;
    /// No token, or one that is not configured.
    Unauthorized => "unauthorized", 401;
    /// The token may read the topology but not change it, or the stats monitor needs an
    /// admin token.
    Forbidden => "forbidden", 403;
    /// The notifier refuses a request whose `Origin` is not in `GORGON_ALLOWED_ORIGINS`.
    OriginNotAllowed => "origin_not_allowed", 403;
    /// No such topology, node or route, or a topology the token may not read.
    NotFound => "not_found", 404;
    /// The node has not output anything yet.
    NoOutput => "no_output", 404;
    /// The route does not take this method.
    MethodNotAllowed => "method_not_allowed", 405;
    /// The document cannot be written as TOML (a `null` attribute).
    NotRepresentableInToml => "not_representable_in_toml", 406;
    /// The node to create exists already.
    AlreadyExists => "already_exists", 409;
    /// The node to delete is a source of others.
    HasDependents => "has_dependents", 409;
    /// `If-Match` names another rev than the topology's.
    RevMismatch => "rev_mismatch", 412;
    /// The body is larger than `GORGON_BODY_LIMIT`.
    BodyTooLarge => "body_too_large", 413;
    /// An ndjson inject has more lines than `GORGON_NDJSON_LINES`.
    TooManyLines => "too_many_lines", 413;
    /// The body's `Content-Type` is not one the route takes.
    UnsupportedMediaType => "unsupported_media_type", 415;
    /// An `Idempotency-Key` used again for another request.
    IdempotencyKeyReused => "idempotency_key_reused", 422;
    /// An id is not a slug.
    InvalidSlug => "invalid_slug", 422;
    /// Two nodes have the same id.
    DuplicateNode => "duplicate_node", 422;
    /// A node names a function no processor registered.
    UnknownFunction => "unknown_function", 422;
    /// A node's attributes do not suit its function.
    InvalidAttrs => "invalid_attrs", 422;
    /// A node receives from a node the topology does not declare.
    UnknownSource => "unknown_source", 422;
    /// A `graph` edge leads to a node the topology does not declare.
    UnknownTarget => "unknown_target", 422;
    /// A node has more sources than `GORGON_MAX_SOURCES`.
    TooManySources => "too_many_sources", 422;
    /// Outputs would flow in a circle.
    Cycle => "cycle", 422;
    /// The `graph` text is not a list of `a --> b` edges.
    InvalidGraph => "invalid_graph", 422;
    /// The client makes more requests a second than `GORGON_RATE_LIMIT`.
    RateLimited => "rate_limited", 429;
    /// The node's partition queue is at `GORGON_QUEUE_HIGH_WATER`.
    Backlog => "backlog", 429;
    /// A notifier socket holds `GORGON_NOTIFIER_MAX_SUBSCRIPTIONS` subscriptions already.
    TooManySubscriptions => "too_many_subscriptions", 429;
    /// A notifier socket has too many requests waiting for their answers.
    Busy => "busy", 429;
    /// A fault inside the server; the answer carries no details, the log has them.
    Internal => "internal", 500;
    /// Redis cannot be reached, or no store answered in time.
    Unavailable => "unavailable", 503;
    /// A notifier serves `GORGON_NOTIFIER_MAX_CONNECTIONS` connections (sockets and streams) already.
    TooManyConnections => "too_many_connections", 503;
}

/// The wire form of a code this build does not know; see [`ErrorCode::Unknown`]. Only
/// reading a code makes one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UnknownCode(String);

impl fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ErrorCode, D::Error> {
        String::deserialize(deserializer).map(ErrorCode::read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every known code travels as its snake_case string and reads back as itself; no two
    /// codes share a string.
    #[test]
    fn known_codes_round_trip_as_their_strings() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::KNOWN {
            let text = code.as_str();
            assert!(
                !text.is_empty() && text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text}"
            );
            assert!(seen.insert(text), "{text} twice");
            assert_eq!(serde_json::to_value(code).unwrap(), json!(text));
            assert_eq!(
                serde_json::from_value::<ErrorCode>(json!(text)).unwrap(),
                *code
            );
            assert_eq!(code.to_string(), text);
        }
    }

    /// The statuses of a few codes, as the API documents them.
    #[test]
    fn codes_have_their_statuses() {
        let statuses: Vec<(ErrorCode, u16)> = [
            ErrorCode::MalformedDocument,
            ErrorCode::NotFound,
            ErrorCode::NotRepresentableInToml,
            ErrorCode::HasDependents,
            ErrorCode::RevMismatch,
            ErrorCode::Cycle,
            ErrorCode::Internal,
            ErrorCode::Unavailable,
        ]
        .into_iter()
        .map(|code| {
            let status = code.status();
            (code, status)
        })
        .collect();
        assert_eq!(
            statuses,
            vec![
                (ErrorCode::MalformedDocument, 400),
                (ErrorCode::NotFound, 404),
                (ErrorCode::NotRepresentableInToml, 406),
                (ErrorCode::HasDependents, 409),
                (ErrorCode::RevMismatch, 412),
                (ErrorCode::Cycle, 422),
                (ErrorCode::Internal, 500),
                (ErrorCode::Unavailable, 503),
            ]
        );
    }

    /// A code this build does not know reads without failing, keeps its string on the way
    /// back out, and stands for 500; a code that is not a string is still refused.
    #[test]
    fn unknown_codes_read_as_unknown() {
        let code: ErrorCode = serde_json::from_value(json!("quota_exceeded")).unwrap();
        assert_eq!(
            code,
            ErrorCode::Unknown(UnknownCode("quota_exceeded".to_owned()))
        );
        assert_eq!((code.as_str(), code.status()), ("quota_exceeded", 500));
        assert_eq!(
            serde_json::to_value(&code).unwrap(),
            json!("quota_exceeded")
        );
        assert!(serde_json::from_value::<ErrorCode>(json!(3)).is_err());
    }

    /// The codes and statuses of the tables headed `| status | codes |` in `docs/api.md`. A
    /// row's codes are its backticked snake_case names before the first colon outside
    /// backticks (what follows explains them).
    fn documented_codes() -> Vec<(String, u16)> {
        let text = include_str!("../../../docs/api.md");
        let mut codes = Vec::new();
        let mut in_table = false;
        for line in text.lines() {
            if line.trim() == "| status | codes |" {
                in_table = true;
                continue;
            }
            if !line.starts_with('|') {
                in_table = false;
            }
            if !in_table || line.starts_with("|---") {
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').splitn(2, '|').collect();
            let status: u16 = cells[0].trim().parse().expect(line);
            let (mut quoted, mut name) = (false, String::new());
            for c in cells[1].chars() {
                match c {
                    '`' if quoted => {
                        let snake = name.starts_with(|c: char| c.is_ascii_lowercase())
                            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                        if snake {
                            codes.push((name.clone(), status));
                        }
                        name.clear();
                        quoted = false;
                    }
                    '`' => quoted = true,
                    ':' if !quoted => break,
                    c if quoted => name.push(c),
                    _ => {}
                }
            }
        }
        codes
    }

    /// `docs/api.md` lists every code once, with the status the code has, and no code that
    /// is not one.
    #[test]
    fn the_api_docs_list_every_code_with_its_status() {
        let documented = documented_codes();
        let mut names: Vec<&str> = documented.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        let listed = names.len();
        names.dedup();
        assert_eq!(
            names.len(),
            listed,
            "a code is listed twice: {documented:?}"
        );
        for (name, status) in &documented {
            let code: ErrorCode = serde_json::from_value(json!(name)).unwrap();
            assert!(
                !matches!(code, ErrorCode::Unknown(_)),
                "docs/api.md lists {name}, which is no code"
            );
            assert_eq!(code.status(), *status, "{name}");
        }
        for code in ErrorCode::KNOWN {
            assert!(
                names.contains(&code.as_str()),
                "docs/api.md does not list {code} ({})",
                code.status()
            );
        }
    }
}
