//! The REST calls the simulator makes, the way any client of web_face would.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use protocol::{OutputEvent, TopologyDoc};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::Value;

/// How long a topology PUT may take: a document of ten thousand nodes is checked and written
/// by the store in one go.
const PUT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long any other request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a throttled inject is retried before the run gives up on it.
const MAX_RETRIES: u32 = 600;
/// How often an inject whose request or reply was cut off is sent again (100 ms apart) before
/// the run gives up on it: a minute of an API that cannot be reached.
const MAX_RESENDS: u32 = 600;

/// A client of one topology on one web_face.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    topology: String,
    token: Option<String>,
}

/// What an inject request did.
#[derive(Debug, Default)]
pub struct Injected {
    /// The ids of the messages, in the order sent.
    pub ids: Vec<u128>,
    /// How many times it was answered 429 or 503 and sent again after `Retry-After`.
    pub throttled: u32,
    /// How many times it was sent again after its request or reply was cut off.
    pub resent: u32,
}

#[derive(Deserialize)]
struct InjectReply {
    #[serde(default)]
    msg_id: Option<String>,
    #[serde(default)]
    msg_ids: Vec<String>,
}

#[derive(Deserialize)]
struct HistoryView {
    items: Vec<OutputEvent>,
    next: Option<String>,
}

/// The `input_id` (or `msg_id`) of an output event as a number: 32 hex digits.
pub fn parse_id(text: &str) -> Option<u128> {
    u128::from_str_radix(text, 16).ok()
}

impl Api {
    /// A client of `topology` at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, topology: &str, token: Option<String>) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .build()
            .context("make the HTTP client")?;
        Ok(Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
            topology: topology.to_owned(),
            token,
        })
    }

    /// A request of `tail` under the topology's path, with the token.
    fn request(&self, method: Method, tail: &str) -> RequestBuilder {
        self.authorized(
            method,
            &format!("{}/v1/topologies/{}{tail}", self.base, self.topology),
        )
    }

    /// A request of `url`, with the token.
    fn authorized(&self, method: Method, url: &str) -> RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Deletes the topology; one that does not exist is fine.
    pub async fn delete_topology(&self) -> anyhow::Result<()> {
        let response = self
            .request(Method::DELETE, "")
            .send()
            .await
            .with_context(|| format!("could not reach the API at {}", self.base))?;
        match response.status() {
            status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
            status => bail!(
                "DELETE topology {}: {}",
                self.topology,
                body_of(status, response).await
            ),
        }
    }

    /// Creates the topology from `doc`.
    pub async fn put_topology(&self, doc: &TopologyDoc) -> anyhow::Result<()> {
        let response = self
            .request(Method::PUT, "")
            .timeout(PUT_TIMEOUT)
            .json(doc)
            .send()
            .await
            .with_context(|| format!("could not reach the API at {}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = body_of(status, response).await;
        if text.contains(protocol::ErrorCode::TooManySources.as_str()) {
            bail!(
                "PUT topology {}: {text}\nthe store allows fewer sources per node than the \
                 scenario needs: restart the store with a larger GORGON_MAX_SOURCES, or pass \
                 more --rooms / --zones",
                self.topology
            );
        }
        bail!("PUT topology {}: {text}", self.topology)
    }

    /// Injects `messages` into `node`: one JSON message, or ndjson for more, under an
    /// `Idempotency-Key` of its own. A 429 or 503 is waited out (`Retry-After`) and sent again;
    /// a request or reply cut off (the API or its Redis went away) is sent again with the same
    /// key, so it is queued once whether or not the first one got in; anything else not 202 is
    /// an error.
    pub async fn inject(&self, node: &str, messages: &[Value]) -> anyhow::Result<Injected> {
        let (content_type, body) = match messages {
            [one] => ("application/json", serde_json::to_vec(one)?),
            many => {
                let mut body = Vec::with_capacity(many.len() * 64);
                for message in many {
                    serde_json::to_writer(&mut body, message)?;
                    body.push(b'\n');
                }
                ("application/x-ndjson", body)
            }
        };
        let tail = format!("/nodes/{node}/messages");
        let key = format!("{:032x}", rand::random::<u128>());
        let (mut throttled, mut resent) = (0, 0);
        loop {
            let sent = self
                .request(Method::POST, &tail)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header("idempotency-key", &key)
                .body(body.clone())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(_) if resent < MAX_RESENDS => {
                    resent += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(error) => return Err(error).with_context(|| format!("inject into {node}")),
            };
            let status = response.status();
            if status == StatusCode::ACCEPTED {
                let reply: InjectReply = match response.json().await {
                    Ok(reply) => reply,
                    Err(_) if resent < MAX_RESENDS => {
                        resent += 1;
                        continue;
                    }
                    Err(error) => return Err(error).context("read the inject reply"),
                };
                let texts = match reply.msg_id {
                    Some(id) => vec![id],
                    None => reply.msg_ids,
                };
                let ids = texts
                    .iter()
                    .map(|text| parse_id(text).ok_or_else(|| anyhow!("msg_id {text:?} is not hex")))
                    .collect::<anyhow::Result<Vec<u128>>>()?;
                if ids.len() != messages.len() {
                    bail!(
                        "inject into {node}: {} ids for {} messages",
                        ids.len(),
                        messages.len()
                    );
                }
                return Ok(Injected {
                    ids,
                    throttled,
                    resent,
                });
            }
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) && throttled < MAX_RETRIES
            {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|text| text.parse::<f64>().ok())
                    .map_or(Duration::from_millis(100), |s| {
                        Duration::from_secs_f64(s.clamp(0.01, 10.0))
                    });
                throttled += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            bail!("inject into {node}: {}", body_of(status, response).await);
        }
    }

    /// The seqs of `nodes`' latched outputs, in that order: 0 for a node without output (or
    /// one the topology no longer has). One bulk read (`GET .../nodes?ids=`) per
    /// [`protocol::MAX_NODE_IDS`] nodes.
    pub async fn latched_seqs(&self, nodes: &[&str]) -> anyhow::Result<Vec<u64>> {
        #[derive(Deserialize)]
        struct Listed {
            nodes: Vec<Node>,
        }
        #[derive(Deserialize)]
        struct Node {
            id: String,
            output: Option<Latched>,
        }
        #[derive(Deserialize)]
        struct Latched {
            seq: u64,
        }
        let mut seqs = Vec::with_capacity(nodes.len());
        for chunk in nodes.chunks(protocol::MAX_NODE_IDS) {
            let ids = chunk.join(",");
            let response = self
                .request(Method::GET, &format!("/nodes?ids={ids}"))
                .send()
                .await
                .context("read the latched outputs")?;
            let status = response.status();
            if status != StatusCode::OK {
                bail!("GET nodes by id: {}", body_of(status, response).await);
            }
            let listed: Listed = response.json().await.context("read a node list")?;
            let by_id: HashMap<&str, u64> = listed
                .nodes
                .iter()
                .map(|node| (node.id.as_str(), node.output.as_ref().map_or(0, |o| o.seq)))
                .collect();
            seqs.extend(chunk.iter().map(|id| by_id.get(id).copied().unwrap_or(0)));
        }
        Ok(seqs)
    }

    /// web_face's `gorgon_archive_backlog_entries` (output topic entries the archive has not
    /// written yet), from its `/metrics`; `None` when it does not say.
    pub async fn archive_backlog(&self) -> anyhow::Result<Option<u64>> {
        let response = self
            .authorized(Method::GET, &format!("{}/metrics", self.base))
            .send()
            .await
            .context("read web_face's /metrics")?;
        let text = response.text().await.context("read web_face's /metrics")?;
        Ok(text.lines().find_map(|line| {
            let value = line.strip_prefix("gorgon_archive_backlog_entries ")?;
            value
                .trim()
                .parse::<f64>()
                .ok()
                .map(|entries| entries as u64)
        }))
    }

    /// One page of `node`'s history with `query` (e.g. `limit=10`): the status and, on 200,
    /// the items and the path of the next page.
    pub async fn history_page(
        &self,
        node: &str,
        query: &str,
    ) -> anyhow::Result<(StatusCode, Vec<OutputEvent>, Option<String>)> {
        self.history_at(self.request(Method::GET, &format!("/nodes/{node}/history?{query}")))
            .await
    }

    async fn history_at(
        &self,
        request: RequestBuilder,
    ) -> anyhow::Result<(StatusCode, Vec<OutputEvent>, Option<String>)> {
        let response = request.send().await.context("read history")?;
        let status = response.status();
        if status != StatusCode::OK {
            return Ok((status, Vec::new(), None));
        }
        let view: HistoryView = response.json().await.context("read a history page")?;
        Ok((status, view.items, view.next))
    }

    /// Every archived output of `node` with `after < seq < before`, oldest first, following
    /// the pages.
    pub async fn history_range(
        &self,
        node: &str,
        after: u64,
        before: u64,
    ) -> anyhow::Result<Vec<OutputEvent>> {
        let mut items = Vec::new();
        let (mut status, mut page, mut next) = self
            .history_page(
                node,
                &format!("after_seq={after}&before_seq={before}&order=asc&limit=1000"),
            )
            .await?;
        loop {
            if status != StatusCode::OK {
                bail!("GET history of {node}: status {status}");
            }
            items.append(&mut page);
            let Some(path) = next.take() else {
                return Ok(items);
            };
            let request = self.authorized(Method::GET, &format!("{}{path}", self.base));
            (status, page, next) = self.history_at(request).await?;
        }
    }
}

/// The status and the body of a refused request, for an error message.
async fn body_of(status: StatusCode, response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    format!("status {status}: {}", text.trim())
}
