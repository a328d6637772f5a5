//! `/readyz`, the same on every HTTP role: ready while Redis answers.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// The answer to `GET /readyz`: 200 `{"status": "ready"}` when `client`'s Redis answers a
/// ping; else 503 with `Retry-After: 1` and `{"status": "unavailable", "reason": "Redis: …"}`.
pub async fn readyz(client: &redpill::Client) -> Response {
    match client.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"status": "unavailable", "reason": format!("Redis: {error}")})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use serde_json::{json, Value};

    use super::readyz;

    async fn body(response: axum::response::Response) -> (StatusCode, String, Value) {
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry_after, serde_json::from_slice(&bytes).unwrap())
    }

    /// Ready while Redis answers; 503 with `Retry-After: 1` and the reason once it is gone.
    #[tokio::test]
    async fn ready_while_redis_answers() {
        let mut redis = redpill::testing::TestRedis::start();
        let config = redis
            .config()
            .set_connect_timeout(Duration::from_millis(200));
        let client = redpill::Client::connect(config).await.unwrap();
        assert_eq!(
            body(readyz(&client).await).await,
            (StatusCode::OK, String::new(), json!({"status": "ready"}))
        );
        redis.kill();
        let (status, retry_after, answer) = body(readyz(&client).await).await;
        assert_eq!(
            (status, retry_after.as_str(), &answer["status"]),
            (StatusCode::SERVICE_UNAVAILABLE, "1", &json!("unavailable"))
        );
        let reason = answer["reason"].as_str().unwrap();
        assert!(reason.starts_with("Redis: "), "{reason}");
        assert_eq!(answer.as_object().unwrap().len(), 2, "{answer}");
    }
}
