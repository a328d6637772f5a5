//! An HTTP client for the REST API at one base URL, and the answers it reads; what
//! [`crate::mesh::Mesh`] and [`crate::api::Api`] both hand a test.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// The REST API at `base`.
pub struct Http {
    /// The API's base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    client: reqwest::Client,
}

/// A response: status, headers and the body as JSON (`Value::Null` when it is not JSON;
/// the text is in `text`).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body, as JSON.
    pub json: Value,
    /// The body, as text.
    pub text: String,
}

impl Answer {
    /// The error code of an error body, or "".
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }

    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
    }
}

impl Http {
    /// A client of the API at `base`, whose requests give up after 30 s.
    pub fn new(base: String) -> Http {
        Http::authorized(base, None)
    }

    /// The same, sending `Authorization: Bearer <token>` with every request when given one.
    pub fn authorized(base: String, token: Option<&str>) -> Http {
        Http {
            base,
            client: client(std::time::Duration::from_secs(30), token),
        }
    }

    /// The underlying client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request to `path` (under the base URL).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    /// Sends `request` and reads the answer.
    pub async fn send(&self, request: RequestBuilder) -> Answer {
        let response = request.send().await.expect("the API answered");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            json,
            text,
        }
    }

    /// `method path` with a JSON body (none for `Value::Null`).
    pub async fn call(&self, method: Method, path: &str, body: &Value) -> Answer {
        let mut request = self.request(method, path);
        if !body.is_null() {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_until_ready(&self) {
        crate::eventually(
            std::time::Duration::from_secs(30),
            "the API to answer",
            || async {
                let ready = self.request(Method::GET, "/readyz").send().await.ok()?;
                ready.status().is_success().then_some(())
            },
        )
        .await;
    }
}

/// An HTTP client whose requests give up after `timeout` and carry `token` as a bearer token,
/// if given.
pub fn client(timeout: std::time::Duration, token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("a token is a valid header value");
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .expect("an HTTP client")
}
