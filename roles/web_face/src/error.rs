//! The API's errors: `{"error": {"code", "message"}}` with the status each code stands for,
//! and `Retry-After` on 429 and 503.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::store::ApiError;
use protocol::ErrorCode;

/// An error response: its status is its code's ([`ErrorCode::status`]).
#[derive(Debug)]
pub struct Failure {
    /// The body's error.
    pub error: ApiError,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u32>,
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, Failure>;

impl Failure {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure {
            error: ApiError::new(code, message),
            retry_after: None,
        }
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(ErrorCode::NotFound, message)
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
            ..Failure::new(ErrorCode::Unavailable, message)
        }
    }

    /// An error the store answered with. A code this web_face does not know (the store is
    /// of a newer version) is passed on as it is, with 500, and logged.
    pub fn from_store(error: ApiError) -> Failure {
        if let ErrorCode::Unknown(_) = error.code {
            tracing::warn!(code = %error.code, message = %error.message,
                "the store answered with an error code this web_face does not know; answering 500");
        }
        Failure {
            retry_after: (error.code.status() == 503).then_some(1),
            error,
        }
    }

    /// The status: the code's.
    pub fn status(&self) -> StatusCode {
        status(&self.error.code)
    }
}

/// The status `code` answers with.
pub fn status(code: &ErrorCode) -> StatusCode {
    // Every status in the table is a valid one; an invalid one would be a 500 anyway.
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<redpill::Error> for Failure {
    fn from(error: redpill::Error) -> Failure {
        if let redpill::Error::Unreplicated { wanted, got, .. } = error {
            tracing::warn!(%error, "a write lacks its replica acknowledgements");
            return Failure::unavailable(format!(
                "the write reached {got} of the {wanted} Redis replicas required                  (GORGON_REPLICA_ACKS) in time; it may still take effect: retry with the same                  Idempotency-Key to have it exactly once"
            ));
        }
        if error.is_unavailable() || error.is_retryable() {
            tracing::warn!(%error, "Redis is unavailable");
            Failure::unavailable("Redis is unreachable right now; retry shortly")
        } else {
            tracing::error!(%error, "Redis answered with an error");
            Failure::new(
                ErrorCode::Internal,
                "the request failed inside the server; the log has the details under this \
                 request's x-request-id",
            )
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error });
        let mut response = (self.status(), axum::Json(body)).into_response();
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

    /// Every code's status is a valid HTTP status, and answers carry it.
    #[test]
    fn codes_answer_with_their_statuses() {
        for code in ErrorCode::KNOWN {
            assert_eq!(status(code).as_u16(), code.status(), "{code}");
        }
        let answer = Failure::new(ErrorCode::Cycle, "a cycle").into_response();
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let answer = Failure::new(ErrorCode::RevMismatch, "stale").into_response();
        assert_eq!(answer.status(), StatusCode::PRECONDITION_FAILED);
    }

    /// A store's error keeps its code and message; one with a code this web_face does not
    /// know reads, answers 500 and keeps the code; `unavailable` carries `Retry-After`.
    #[tokio::test]
    async fn store_errors_answer_with_their_codes() {
        let reply = r#"{"Err": {"code": "quota_exceeded", "message": "too much"}}"#;
        let reply: Result<(), ApiError> = serde_json::from_str(reply).unwrap();
        let answer = Failure::from_store(reply.unwrap_err()).into_response();
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(answer.headers().get(header::RETRY_AFTER).is_none());
        let body = body_json(answer).await;
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "quota_exceeded", "message": "too much"}})
        );

        let answer = Failure::from_store(ApiError::new(ErrorCode::HasDependents, "used"));
        let answer = answer.into_response();
        assert_eq!(answer.status(), StatusCode::CONFLICT);
        assert_eq!(
            body_json(answer).await,
            serde_json::json!({"error": {"code": "has_dependents", "message": "used"}})
        );

        let answer = Failure::from_store(ApiError::new(ErrorCode::Unavailable, "later"));
        let answer = answer.into_response();
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
    }

    async fn body_json(answer: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX).await;
        serde_json::from_slice(&bytes.unwrap()).unwrap()
    }
}
