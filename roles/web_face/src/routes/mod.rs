//! The router: every route, the auth and rate-limit middleware, request ids, tracing,
//! metrics, panic catching, and the OpenAPI document generated from the handlers.

pub mod messages;
pub mod nodes;
pub mod ops;
pub mod outputs;
pub mod topologies;

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Caller, Refusal};
use crate::error::{ApiResult, Failure};
use crate::state::AppState;

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gorgon REST API",
        description = "Topologies, nodes, injects and outputs of a Gorgon mesh."
    ),
    paths(
        ops::functions,
        topologies::list,
        topologies::put,
        topologies::get,
        topologies::delete,
        topologies::graph,
        nodes::create,
        nodes::list,
        nodes::get,
        nodes::patch,
        nodes::patch_attrs,
        nodes::delete,
        nodes::output,
        nodes::history,
        outputs::caused,
        messages::inject,
        messages::dead_letters,
        messages::replay,
        ops::healthz,
        ops::readyz,
        ops::metrics,
        ops::openapi
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&CommonToEveryRoute)
)]
pub struct ApiDoc;

/// What every `/v1` route has in common, added to the OpenAPI document in one place rather
/// than on each handler: the bearer token, the slug pattern of the `{t}` and `{n}` ids, and
/// the refusals that any route may answer (401, 403 for changes, 404 for a topology or node
/// the token cannot see or that does not exist, 429, 503).
struct CommonToEveryRoute;

impl utoipa::Modify for CommonToEveryRoute {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type};

        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of GORGON_API_TOKENS (admin, rw:<topology> or \
                         ro:<topology>); not needed while none are configured",
                    ))
                    .build(),
            ),
        );
        let slug = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(protocol::SLUG_PATTERN))
            .max_length(Some(protocol::MAX_SLUG_LEN))
            .build();
        let refusal = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (operation, changes) in operations {
                let Some(operation) = operation else { continue };
                operation.security = Some(vec![SecurityRequirement::new(
                    "token",
                    Vec::<String>::new(),
                )]);
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name == "t" || parameter.name == "n" {
                        parameter.schema = Some(RefOr::T(slug.clone().into()));
                    }
                }
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses
                        .entry(status.to_owned())
                        .or_insert_with(|| refusal(description));
                };
                add(
                    "401",
                    "unauthorized: no token, or one this API does not know",
                );
                if changes && path.contains("{t}") {
                    add(
                        "403",
                        "forbidden: the token may read this topology but not change it",
                    );
                }
                if path.contains("{t}") {
                    add(
                        "404",
                        "not_found: no such topology or node, or the token may not see it",
                    );
                }
                add("429", "rate_limited (GORGON_RATE_LIMIT), with Retry-After");
                add(
                    "503",
                    "Redis (or, for history, the archive) is unreachable, with Retry-After",
                );
            }
        }
    }
}

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code.
    code: String,
    /// A sentence a person can act on.
    message: String,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/functions", get(ops::functions))
        .route("/v1/topologies", get(topologies::list))
        .route(
            "/v1/topologies/{t}",
            get(topologies::get)
                .put(topologies::put)
                .delete(topologies::delete),
        )
        .route("/v1/topologies/{t}/graph.mmd", get(topologies::graph))
        .route(
            "/v1/topologies/{t}/nodes",
            get(nodes::list).post(nodes::create),
        )
        .route(
            "/v1/topologies/{t}/nodes/{n}",
            get(nodes::get).patch(nodes::patch).delete(nodes::delete),
        )
        .route(
            "/v1/topologies/{t}/nodes/{n}/attrs",
            axum::routing::patch(nodes::patch_attrs),
        )
        .route("/v1/topologies/{t}/nodes/{n}/output", get(nodes::output))
        .route("/v1/topologies/{t}/nodes/{n}/history", get(nodes::history))
        .route("/v1/topologies/{t}/outputs", get(outputs::caused))
        .route(
            "/v1/topologies/{t}/nodes/{n}/messages",
            post(messages::inject),
        )
        .route(
            "/v1/topologies/{t}/dead-letters",
            get(messages::dead_letters),
        )
        .route(
            "/v1/topologies/{t}/dead-letters/replay",
            post(messages::replay),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .method_not_allowed_fallback(method_not_allowed)
        .merge(v1)
        .fallback(not_found)
        .layer(middleware::from_fn(measure))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn(close_after_refusal))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|id| id.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Lets a request in (its [`Caller`] in the extensions) or answers 401, and applies the
/// rate limit (429 with `Retry-After`).
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_default();
    let caller = match state.0.tokens.caller(authorization, &peer) {
        Ok(caller) => caller,
        Err(refusal) => {
            let message = match refusal {
                Refusal::Missing => "send a token in an Authorization: Bearer <token> header",
                Refusal::Unknown => "the token is not one this API knows; check it",
            };
            let mut response =
                Failure::new(protocol::ErrorCode::Unauthorized, message).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    };
    if let Err(seconds) = state.rate_check(&caller.key) {
        metrics::counter!("gorgon_http_rate_limited_total").increment(1);
        return Failure {
            retry_after: Some(seconds),
            ..Failure::new(
                protocol::ErrorCode::RateLimited,
                format!(
                    "this client made more than {} requests a second (GORGON_RATE_LIMIT); \
                     retry after the Retry-After seconds",
                    state.0.settings.rate_limit
                ),
            )
        }
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Adds `Connection: close` to an error answer to a request that carried a body. The body
/// may be unread (refused before reading it, or over the limit), and the server then closes
/// the connection after the answer anyway; without the header a client would reuse the
/// connection and see its next request fail.
async fn close_after_refusal(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Counts requests by route and status, and times them.
async fn measure(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(protocol::stats::HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(protocol::stats::HTTP_REQUEST, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> Failure {
    Failure::not_found("no such route; GET /openapi.json lists them")
}

/// 405 for a route that exists without this method (axum adds the `Allow` header).
async fn method_not_allowed() -> Failure {
    Failure::new(
        protocol::ErrorCode::MethodNotAllowed,
        "this route does not take this method; GET /openapi.json lists the methods of each",
    )
}

/// The ids of a route's path, like `axum::extract::Path`, refused in the API's error body
/// (400 `invalid_path`, e.g. for a percent-encoding that is not UTF-8).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            // A route whose ids do not fit its own path is a fault of the server.
            Err(rejection) if rejection.status().is_server_error() => {
                tracing::error!(error = %rejection.body_text(), "a route's path ids could not be read");
                Err(Failure::new(
                    protocol::ErrorCode::Internal,
                    "the request failed inside the server; the log has the details under this \
                     request's x-request-id",
                ))
            }
            Err(rejection) => Err(Failure::new(
                protocol::ErrorCode::InvalidPath,
                rejection.body_text(),
            )),
        }
    }
}

/// The query string, like `axum::extract::Query`, refused in the API's error body
/// (400 `invalid_query`).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(Failure::new(
                protocol::ErrorCode::InvalidQuery,
                rejection.body_text(),
            )),
        }
    }
}

/// A panic in a handler: 500 without internals (the panic is in the log).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Failure::new(
        protocol::ErrorCode::Internal,
        "the request failed inside the server; the log has the details under this request's \
         x-request-id",
    )
    .into_response()
}

/// 404 when `caller` may not see `topology` (or it is no slug, so no topology has it), 403
/// when it may see but not change it.
pub fn write_access(caller: &Caller, topology: &str) -> ApiResult<()> {
    if protocol::validate_slug(topology).is_err() || !caller.grants.reads(topology) {
        return Err(Failure::no_topology(topology));
    }
    if !caller.grants.writes(topology) {
        return Err(Failure::new(
            protocol::ErrorCode::Forbidden,
            format!(
                "this token may read topology {topology:?} but not change it or inject into it"
            ),
        ));
    }
    Ok(())
}

/// 422 `invalid_slug` when `id` is not a slug.
pub fn require_slug(id: &str, what: &str) -> ApiResult<()> {
    protocol::validate_slug(id).map_err(|error| {
        Failure::new(
            protocol::ErrorCode::InvalidSlug,
            format!("the {what} id is not usable: {error}"),
        )
    })
}

/// The rev of an `If-Match` header (`3` or `"3"`), or 400.
pub fn if_match(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|text| text.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|text| text.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            Failure::new(
                protocol::ErrorCode::InvalidIfMatch,
                "If-Match must be a topology rev, such as 3 or \"3\", as ETag gives it",
            )
        })
}

/// `ETag: "<rev>"`.
pub fn etag(rev: u64) -> [(HeaderName, String); 1] {
    [(header::ETAG, format!("\"{rev}\""))]
}
