//! Reading request bodies within the limits: size, content type, JSON nesting depth, and
//! ndjson line count.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use protocol::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiResult, Failure};

/// The body formats the API reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `application/x-ndjson`: one JSON value per line.
    Ndjson,
    /// `application/toml`.
    Toml,
}

impl Format {
    /// The media type, as in `Content-Type`.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Toml => "application/toml",
        }
    }
}

/// Body limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes.
    pub body: usize,
    /// Nesting of arrays and objects.
    pub depth: usize,
    /// ndjson lines.
    pub lines: usize,
}

/// The body's format, which must be one of `accepted` (415 otherwise). A missing
/// `Content-Type` counts as JSON when JSON is accepted.
pub fn format_of(headers: &HeaderMap, accepted: &[Format]) -> ApiResult<Format> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("?"));
    let essence = given
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/json".to_owned());
    accepted
        .iter()
        .copied()
        .find(|format| essence == format.media_type())
        .ok_or_else(|| {
            let names: Vec<&str> = accepted.iter().map(|format| format.media_type()).collect();
            // curl -d sends a form unless told otherwise; forms are refused on purpose (a
            // page on any site can post one to an open API on localhost without asking).
            let hint = if essence == "application/x-www-form-urlencoded" {
                format!(
                    " (with curl: -H 'Content-Type: {}'); forms are not accepted, as any web \
                     page could send one",
                    names[0]
                )
            } else {
                String::new()
            };
            Failure::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type {} is not accepted here; send {}{hint}",
                    given.map_or("(none)".to_owned(), |value| format!("{value:?}")),
                    names.join(" or ")
                ),
            )
        })
}

/// The whole body, or 413 when it is larger than the limit.
pub async fn read(body: Body, limits: &Limits) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limits.body).await.map_err(|_| {
        Failure::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the body is larger than the {} bytes accepted (GORGON_BODY_LIMIT)",
                limits.body
            ),
        )
    })
}

/// `bytes` as JSON of type `T`: 400 `too_deep` past the nesting limit, 400 `malformed_json`
/// for anything that is not JSON of that shape. `what` names the body in messages.
pub fn json<T: DeserializeOwned>(bytes: &[u8], limits: &Limits, what: &str) -> ApiResult<T> {
    check_depth(bytes, limits.depth, what)?;
    serde_json::from_slice(bytes).map_err(|error| {
        Failure::new(
            ErrorCode::MalformedJson,
            format!("{what} is not valid: {error}"),
        )
    })
}

/// Like [`json`], for a body that must be a JSON object: serde would also read a struct
/// from an array, by position, which the API does not take.
pub fn json_object<T: DeserializeOwned>(bytes: &[u8], limits: &Limits, what: &str) -> ApiResult<T> {
    let value: Value = json(bytes, limits, what)?;
    if !value.is_object() {
        return Err(Failure::new(
            ErrorCode::MalformedJson,
            format!("{what} must be a JSON object"),
        ));
    }
    serde_json::from_value(value).map_err(|error| {
        Failure::new(
            ErrorCode::MalformedJson,
            format!("{what} is not valid: {error}"),
        )
    })
}

/// The ndjson lines of `bytes` as JSON values, all or none: blank lines are skipped, and the
/// first bad line fails the whole body, naming the line (1-based). 413 past the line limit.
pub fn ndjson(bytes: &[u8], limits: &Limits) -> ApiResult<Vec<Value>> {
    let mut values = Vec::new();
    for (index, line) in bytes.split(|&byte| byte == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if values.len() == limits.lines {
            return Err(Failure::new(
                ErrorCode::TooManyLines,
                format!(
                    "the body has more than the {} lines one inject accepts \
                     (GORGON_NDJSON_LINES); split it",
                    limits.lines
                ),
            ));
        }
        values.push(json(line, limits, &format!("line {}", index + 1))?);
    }
    if values.is_empty() {
        return Err(Failure::new(
            ErrorCode::MalformedJson,
            "the body holds no message; send one JSON value per line",
        ));
    }
    Ok(values)
}

/// 400 `too_deep` when arrays and objects nest deeper than `limit` in `bytes` (strings are
/// skipped; the text need not be valid JSON, the parser judges that afterwards).
fn check_depth(bytes: &[u8], limit: usize, what: &str) -> ApiResult<()> {
    if protocol::json_text_depth(bytes) > limit {
        return Err(Failure::new(
            ErrorCode::TooDeep,
            format!(
                "{what} nests arrays and objects deeper than the {limit} levels accepted \
                 (GORGON_JSON_DEPTH)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    const LIMITS: Limits = Limits {
        body: 1024,
        depth: 3,
        lines: 2,
    };

    /// Nesting is counted outside strings only, and the limit itself is accepted.
    #[test]
    fn depth_limit() {
        assert!(json::<Value>(br#"[[{"a": "[[[[["}]]"#, &LIMITS, "the body").is_ok());
        let error = json::<Value>(b"[[[[1]]]]", &LIMITS, "the body").unwrap_err();
        assert_eq!(error.error.code, ErrorCode::TooDeep);
        let error = json::<Value>(b"{\"a\":", &LIMITS, "the body").unwrap_err();
        assert_eq!(error.error.code, ErrorCode::MalformedJson);
    }

    /// A body that must be an object refuses an array, which serde would read by position.
    #[test]
    fn object_bodies_refuse_arrays() {
        #[derive(serde::Deserialize, Debug)]
        struct Patch {
            #[serde(default)]
            #[allow(dead_code)]
            function: Option<String>,
        }
        assert!(json::<Patch>(b"[]", &LIMITS, "the change").is_ok());
        let error = json_object::<Patch>(b"[]", &LIMITS, "the change").unwrap_err();
        assert_eq!(error.error.code, ErrorCode::MalformedJson);
        assert_eq!(error.error.message, "the change must be a JSON object");
        assert!(json_object::<Patch>(br#"{"function":"pass"}"#, &LIMITS, "the change").is_ok());
        let error = json_object::<Patch>(b"[[[[1]]]]", &LIMITS, "the change").unwrap_err();
        assert_eq!(error.error.code, ErrorCode::TooDeep);
    }

    /// A form (curl's default for -d) is refused with the header to send instead; no
    /// Content-Type counts as JSON.
    #[test]
    fn forms_are_refused_with_the_header_to_send() {
        let mut headers = HeaderMap::new();
        let accepted = [Format::Json, Format::Ndjson];
        assert_eq!(format_of(&headers, &accepted).unwrap(), Format::Json);
        headers.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let error = format_of(&headers, &accepted).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            error.error.message,
            "Content-Type \"application/x-www-form-urlencoded\" is not accepted here; send \
             application/json or application/x-ndjson (with curl: -H 'Content-Type: \
             application/json'); forms are not accepted, as any web page could send one"
        );
    }

    /// ndjson: blank lines skipped, a bad line named, the line limit applied.
    #[test]
    fn ndjson_lines() {
        assert_eq!(ndjson(b"1\n\n{\"a\":2}\r\n", &LIMITS).unwrap().len(), 2);
        let error = ndjson(b"1\n\nnope\n", &LIMITS).unwrap_err();
        assert!(
            error.error.message.starts_with("line 3 "),
            "{}",
            error.error.message
        );
        let error = ndjson(b"1\n2\n3\n", &LIMITS).unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            ndjson(b"\n \n", &LIMITS).unwrap_err().error.code,
            ErrorCode::MalformedJson
        );
    }
}
