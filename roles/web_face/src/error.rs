//! The API's errors: `{"error": {"code", "message"}}` with the status each code stands for,
//! and `Retry-After` on 429 and 503.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::store::ApiError;

/// An error response.
#[derive(Debug)]
pub struct Failure {
    /// The status.
    pub status: StatusCode,
    /// The body's error.
    pub error: ApiError,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u32>,
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, Failure>;

impl Failure {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            error: ApiError::new(code, message),
            retry_after: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 404 for a topology that does not exist or that the caller may not see: the same
    /// answer, so that tokens cannot probe for others' topologies.
    pub fn no_topology(topology: &str) -> Failure {
        Failure::not_found(format!("there is no topology {topology:?}"))
    }

    /// 503 while Redis (or the store) cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Failure {
        Failure {
            retry_after: Some(1),
            ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    /// An error the store answered with, with the status its code stands for.
    pub fn from_store(error: ApiError) -> Failure {
        let status = status_of(&error.code);
        Failure {
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
            status,
            error,
        }
    }
}

/// The status each error code answers with.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "not_found" | "no_output" => StatusCode::NOT_FOUND,
        "already_exists" | "has_dependents" => StatusCode::CONFLICT,
        "rev_mismatch" => StatusCode::PRECONDITION_FAILED,
        "malformed_document" | "malformed_json" | "too_deep" | "invalid_query" => {
            StatusCode::BAD_REQUEST
        }
        "not_representable_in_toml" => StatusCode::NOT_ACCEPTABLE,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "invalid_slug" | "duplicate_node" | "unknown_function" | "invalid_attrs"
        | "unknown_source" | "unknown_target" | "too_many_sources" | "cycle" | "invalid_graph"
        | "invalid_node" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<redpill::Error> for Failure {
    fn from(error: redpill::Error) -> Failure {
        if error.is_unavailable() || error.is_retryable() {
            tracing::warn!(%error, "Redis is unavailable");
            Failure::unavailable("Redis is unreachable right now; retry shortly")
        } else {
            tracing::error!(%error, "Redis answered with an error");
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request failed inside the server; the log has the details under this \
                 request's x-request-id",
            )
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Error codes answer with the statuses the API documents.
    #[test]
    fn codes_map_to_statuses() {
        assert_eq!(status_of("cycle"), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status_of("rev_mismatch"), StatusCode::PRECONDITION_FAILED);
        assert_eq!(status_of("has_dependents"), StatusCode::CONFLICT);
        assert_eq!(status_of("malformed_document"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("not_found"), StatusCode::NOT_FOUND);
    }
}
