//! Every error code with its status, as a table of (request, status, code) rows run by one
//! loop, and nothing enqueued or changed by a refused request.

use mesh_tests::api::{Api, Setup};
use mesh_tests::http::{Answer, Http};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A request's body.
enum Body {
    /// None.
    Empty,
    /// JSON, sent as `application/json`.
    Json(Value),
    /// Bytes with this content type.
    Raw(&'static str, String),
}

/// What the error message must say, beyond not being empty.
enum Message {
    Any,
    Contains(&'static str),
    StartsWith(&'static str),
}

/// One request that must be refused with `status` and `code`.
struct Row {
    method: Method,
    path: &'static str,
    if_match: Option<&'static str>,
    body: Body,
    status: StatusCode,
    code: &'static str,
    message: Message,
}

fn row(
    method: Method,
    path: &'static str,
    body: Body,
    status: StatusCode,
    code: &'static str,
) -> Row {
    Row {
        method,
        path,
        if_match: None,
        body,
        status,
        code,
        message: Message::Any,
    }
}

impl Row {
    fn if_match(self, rev: &'static str) -> Row {
        Row {
            if_match: Some(rev),
            ..self
        }
    }

    fn message(self, message: Message) -> Row {
        Row { message, ..self }
    }

    async fn send(&self, api: &Http) -> Answer {
        let mut request = api.request(self.method.clone(), self.path);
        if let Some(rev) = self.if_match {
            request = request.header("if-match", rev);
        }
        request = match &self.body {
            Body::Empty => request,
            Body::Json(value) => request.json(value),
            Body::Raw(content_type, text) => request
                .header("content-type", *content_type)
                .body(text.clone()),
        };
        api.send(request).await
    }
}

/// A PUT of topology `t` with `doc`.
fn put(doc: Value, status: StatusCode, code: &'static str) -> Row {
    row(
        Method::PUT,
        "/v1/topologies/t",
        Body::Json(doc),
        status,
        code,
    )
}

/// The rows, in the order they are sent; topology `t` is `a` → `b` (a `count`) at rev 1.
fn rows(doc: &Value) -> Vec<Row> {
    use StatusCode as S;
    let ndjson = |text: &str| Body::Raw("application/x-ndjson", text.to_owned());
    let json_text = |text: String| Body::Raw("application/json", text);
    vec![
        put(
            json!({"node": [{"id": "a", "function": "pass", "sources": ["b"]},
                            {"id": "b", "function": "pass", "sources": ["a"]}]}),
            S::UNPROCESSABLE_ENTITY,
            "cycle",
        )
        // The cycle names its path.
        .message(Message::Contains("a -> b -> a")),
        put(
            json!({"node": [{"id": "A_1", "function": "pass"}]}),
            S::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        put(
            json!({"node": [{"id": "a", "function": "nope"}]}),
            S::UNPROCESSABLE_ENTITY,
            "unknown_function",
        ),
        put(
            json!({"node": [{"id": "a", "function": "pass", "sources": ["x"]}]}),
            S::UNPROCESSABLE_ENTITY,
            "unknown_source",
        ),
        put(
            json!({"node": [{"id": "a", "function": "threshold", "attrs": {"above": "hot"}}]}),
            S::UNPROCESSABLE_ENTITY,
            "invalid_attrs",
        ),
        put(
            json!({"node": [{"id": "a", "function": "pass", "sorces": []}]}),
            S::BAD_REQUEST,
            "malformed_document",
        ),
        row(
            Method::PUT,
            "/v1/topologies/t",
            json_text("{\"node\": [".to_owned()),
            S::BAD_REQUEST,
            "malformed_json",
        ),
        row(
            Method::PUT,
            "/v1/topologies/t",
            Body::Raw("text/plain", "{}".to_owned()),
            S::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        put(doc.clone(), S::PRECONDITION_FAILED, "rev_mismatch").if_match("\"7\""),
        row(
            Method::DELETE,
            "/v1/topologies/t/nodes/a",
            Body::Empty,
            S::CONFLICT,
            "has_dependents",
        ),
        row(
            Method::POST,
            "/v1/topologies/t/nodes",
            Body::Json(json!({"id": "b", "function": "pass"})),
            S::CONFLICT,
            "already_exists",
        ),
        row(
            Method::GET,
            "/v1/topologies/t/nodes/b/output",
            Body::Empty,
            S::NOT_FOUND,
            "no_output",
        ),
        row(
            Method::GET,
            "/v1/topologies/none",
            Body::Empty,
            S::NOT_FOUND,
            "not_found",
        ),
        row(
            Method::POST,
            "/v1/topologies/t/nodes/zz/messages",
            Body::Json(json!(1)),
            S::NOT_FOUND,
            "not_found",
        ),
        row(
            Method::POST,
            "/v1/topologies/t/nodes/a/messages",
            json_text(format!("{{\"big\": \"{}\"}}", "x".repeat(5000))),
            S::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        row(
            Method::POST,
            "/v1/topologies/t/nodes/a/messages",
            ndjson("1\n2\n3\n4\n"),
            S::PAYLOAD_TOO_LARGE,
            "too_many_lines",
        ),
        row(
            Method::POST,
            "/v1/topologies/t/nodes/a/messages",
            ndjson("1\n{oops\n3\n"),
            S::BAD_REQUEST,
            "malformed_json",
        )
        // The ndjson error names the line.
        .message(Message::StartsWith("line 2 ")),
        row(
            Method::POST,
            "/v1/topologies/t/nodes/a/messages",
            json_text(format!("{}1{}", "[".repeat(65), "]".repeat(65))),
            S::BAD_REQUEST,
            "too_deep",
        ),
        row(
            Method::PATCH,
            "/v1/topologies/t/nodes/b",
            Body::Json(json!({"sources": ["b"]})),
            S::UNPROCESSABLE_ENTITY,
            "cycle",
        ),
    ]
}

/// Every error code with its status, and nothing enqueued by a refused request.
#[tokio::test]
async fn errors_have_their_codes_and_enqueue_nothing() {
    let api = Api::start(Setup {
        store: true,
        web: &["--body-limit", "4096", "--ndjson-lines", "3"],
        ..Setup::default()
    })
    .await;
    let doc = json!({"node": [{"id": "a", "function": "pass"},
                              {"id": "b", "function": "count", "sources": ["a"]}]});
    let created = api.call(Method::PUT, "/v1/topologies/t", &doc).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let before = api.queue_lengths().await;

    let rows = rows(&doc);
    assert_eq!(rows.len(), 19);
    for row in &rows {
        let answer = row.send(&api).await;
        let context = format!("{} {}: {}", row.method, row.path, answer.text);
        assert_eq!(
            (answer.status, answer.code()),
            (row.status, row.code),
            "{context}"
        );
        let message = answer.json["error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{context}");
        match row.message {
            Message::Any => {}
            Message::Contains(part) => assert!(message.contains(part), "{context}"),
            Message::StartsWith(start) => assert!(message.starts_with(start), "{context}"),
        }
    }

    // Nothing was enqueued, and the document is as created.
    assert_eq!(api.queue_lengths().await, before);
    let doc_now = api
        .call(Method::GET, "/v1/topologies/t", &Value::Null)
        .await;
    assert_eq!(doc_now.header("etag"), "\"1\"");

    // A dry run plans and changes nothing.
    let plan = api
        .call(
            Method::PUT,
            "/v1/topologies/t?dry_run=true",
            &json!({"node": [{"id": "a", "function": "pass"}, {"id": "c", "function": "count"}]}),
        )
        .await;
    assert_eq!(plan.status, StatusCode::OK);
    assert_eq!(
        plan.json,
        json!({"id": "t", "rev": 1, "created": ["c"], "updated": [], "deleted": ["b"]})
    );
    assert_eq!(api.queue_lengths().await, before);

    // A matching If-Match applies; force deletes a node with dependents and its edges.
    let forced = api
        .send(
            api.request(Method::DELETE, "/v1/topologies/t/nodes/a?force=true")
                .header("if-match", "1"),
        )
        .await;
    assert_eq!(forced.status, StatusCode::NO_CONTENT, "{}", forced.text);
    let doc_now = api
        .call(Method::GET, "/v1/topologies/t", &Value::Null)
        .await;
    assert_eq!(
        doc_now.json,
        json!({"node": [{"id": "b", "function": "count", "sources": [], "attrs": {}}]})
    );
}
