//! The one connection every channel uses, to a single Redis or to a Redis Cluster, and the
//! one way to send work on many keys: grouped by slot.
//!
//! What a client talks to is found out on first use, from the one address it was given: a
//! server that answers `INFO cluster` with `cluster_enabled:1` is a cluster node, and the
//! client then finds the other nodes from it (redis-rs's `cluster-async`, which follows
//! MOVED and ASK, retries TRYAGAIN and CLUSTERDOWN, and reconnects to nodes that went away).
//!
//! A cluster connection that has lost every node (the whole cluster restarted, or this host's
//! network is gone) is dropped and made again from every node the client has seen, rather than
//! left to redis-rs: its recovery then retries without pause, a core's worth of CPU and a
//! flood of log lines for as long as the cluster is away.
//!
//! On a cluster, a pipeline must stay in one slot. [`Routed`] takes commands with the key
//! that routes each, sends one pipeline per slot, all at once (the connection to each node
//! carries them back to back), and hands the replies back in the order the commands were
//! added. On a single Redis it is one pipeline, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::try_join_all;
use futures_util::FutureExt as _;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, Pipeline, RedisError,
    RedisFuture, RedisResult, Value,
};
use tokio::sync::OnceCell;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::slot;

/// A connection to a single Redis or to every node of a Redis Cluster. Clones share it.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    /// The cluster connection, and whether a call found it without any node.
    Cluster(ClusterConnection, Arc<AtomicBool>),
}

/// True when `err` says a cluster connection has no node left at all: redis-rs's recovery of
/// such a connection retries without pause until a node answers, so it is made again instead.
pub(crate) fn lost_every_node(err: &RedisError) -> bool {
    err.kind() == ErrorKind::ClusterConnectionNotFound
        && err.to_string().starts_with("No connections found")
}

impl Conn {
    /// False once a call on this cluster connection found it without any node.
    fn is_usable(&self) -> bool {
        match self {
            Conn::Single(_) => true,
            Conn::Cluster(_, lost) => !lost.load(Ordering::Relaxed),
        }
    }

    /// True on a Redis Cluster: pub/sub is sharded, pipelines are split by slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(..))
    }

    /// The publish command of this deployment: `SPUBLISH` on a cluster, so that a wake-up or
    /// a live message goes to the one shard that owns its channel, `PUBLISH` on one Redis.
    pub(crate) fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

/// `call`'s reply, having marked the connection lost when it says there is no node left.
fn noting_loss<'a, T: Send + 'a>(
    lost: &Arc<AtomicBool>,
    call: RedisFuture<'a, T>,
) -> RedisFuture<'a, T> {
    let lost = Arc::clone(lost);
    call.inspect(move |reply| {
        if reply.as_ref().is_err_and(lost_every_node) {
            lost.store(true, Ordering::Relaxed);
        }
    })
    .boxed()
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn, lost) => noting_loss(lost, conn.req_packed_command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn, lost) => {
                noting_loss(lost, conn.req_packed_commands(pipeline, offset, count))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn, _) => conn.get_db(),
        }
    }
}

/// What a client was given, and the connection made from it on first use.
pub(crate) struct Connector {
    masked_url: String,
    /// Every server the URL lists: one, but for a seed list of a cluster's nodes.
    seeds: Vec<redis::Client>,
    connect_timeout: Duration,
    response_timeout: Duration,
    max_delay: Duration,
    /// Whether the server at the URL is a cluster node, found out on first use.
    cluster: OnceCell<bool>,
    /// The connection in use; on a cluster, made again once it has lost every node.
    current: Mutex<Option<Conn>>,
    /// Held while a connection is made, so that callers make one at a time.
    making: tokio::sync::Mutex<()>,
    /// The cluster's nodes as last seen (the URL's first), to make a connection from.
    nodes: Mutex<Vec<ConnectionInfo>>,
    /// Counts the cluster connections dropped for having lost every node, so that the
    /// sharded subscriber (a connection of its own) makes its connection again too.
    losses: tokio::sync::watch::Sender<u64>,
}

/// Attempts of one command on a cluster while its slot has no reachable master (a failover)
/// or is moving (TRYAGAIN), waiting 20, 40, 80 … ms between them: about 1.3 s in all before
/// the caller gets a retryable error.
const CLUSTER_RETRIES: u32 = 6;

impl Connector {
    /// Fails only when the URL (or a URL of a seed list) cannot be parsed.
    pub(crate) fn new(config: &Config) -> Result<Connector> {
        let seeds = config
            .url
            .split(',')
            .map(|url| {
                redis::Client::open(url.trim()).map_err(|err| {
                    Error::Invalid(format!(
                        "REDIS_URL {}: {err}",
                        crate::config::mask_url(url.trim())
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let nodes = seeds
            .iter()
            .map(|seed| seed.get_connection_info().clone())
            .collect();
        Ok(Connector {
            masked_url: config.masked_url(),
            seeds,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            max_delay: config.reconnect_max_delay,
            cluster: OnceCell::new(),
            current: Mutex::new(None),
            making: tokio::sync::Mutex::new(()),
            nodes: Mutex::new(nodes),
            losses: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The single-server client (the URL's first server), for the subscriber connection of a
    /// single Redis.
    pub(crate) fn single_client(&self) -> &redis::Client {
        &self.seeds[0]
    }

    /// The connection, found out and made on first use. While the server is unreachable this
    /// fails with a retryable error and the next call tries again. A cluster connection found
    /// without any node is dropped here and made again from every node seen; while none
    /// answers, there is none.
    pub(crate) async fn conn(&self) -> Result<Conn> {
        if let Some(conn) = self.usable() {
            return Ok(conn);
        }
        let _making = self.making.lock().await;
        if let Some(conn) = self.usable() {
            return Ok(conn);
        }
        // Dropped before a new one is made: its own recovery would go on without pause.
        let was = self.current.lock().expect("connection lock").take();
        if was.is_some() {
            tracing::warn!(url = %self.masked_url, "the Redis Cluster connection lost every node; connecting again");
            self.losses.send_modify(|losses| *losses += 1);
        }
        drop(was);
        let conn = self.connect().await?;
        *self.current.lock().expect("connection lock") = Some(conn.clone());
        Ok(conn)
    }

    /// Changes each time a cluster connection is dropped for having lost every node.
    pub(crate) fn losses(&self) -> tokio::sync::watch::Receiver<u64> {
        self.losses.subscribe()
    }

    fn usable(&self) -> Option<Conn> {
        let current = self.current.lock().expect("connection lock");
        current.as_ref().filter(|conn| conn.is_usable()).cloned()
    }

    async fn connect(&self) -> Result<Conn> {
        let cluster = *self
            .cluster
            .get_or_try_init(|| async {
                let cluster = self.is_cluster().await?;
                if cluster {
                    tracing::info!(url = %self.masked_url, "Redis Cluster found; routing by slot");
                }
                Ok::<_, Error>(cluster)
            })
            .await?;
        if !cluster {
            return Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
                self.single_client().clone(),
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(self.response_timeout))
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(self.max_delay)
                    // Few retries per reconnect: while Redis is down, calls fail fast (a 503
                    // at the API) and the next call starts another reconnect.
                    .set_number_of_retries(2),
            )?));
        }
        let mut conn = self
            .cluster_builder()
            .build()?
            .get_async_connection()
            .await?;
        self.learn_nodes(&mut conn).await;
        Ok(Conn::Cluster(conn, Arc::new(AtomicBool::new(false))))
    }

    /// Keeps the address of every node `conn` sees, so that a connection made again does not
    /// depend on the URL's nodes alone; those stay first. Best effort: on failure the nodes
    /// seen before stay.
    async fn learn_nodes(&self, conn: &mut ClusterConnection) {
        let Ok(nodes) = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async::<String>(conn)
            .await
        else {
            return;
        };
        let mut known: Vec<ConnectionInfo> = self
            .seeds
            .iter()
            .map(|seed| seed.get_connection_info().clone())
            .collect();
        for (host, port) in node_addresses(&nodes) {
            let addr = ConnectionAddr::Tcp(host, port);
            if known.iter().all(|node| *node.addr() != addr) {
                // The URL's credentials and settings, at the node's address.
                known.push(
                    self.single_client()
                        .get_connection_info()
                        .clone()
                        .set_addr(addr),
                );
            }
        }
        *self.nodes.lock().expect("nodes lock") = known;
    }

    /// The cluster client's settings, starting from every node seen; the subscriber
    /// connection adds RESP3 and its pushes.
    pub(crate) fn cluster_builder(&self) -> ClusterClientBuilder {
        let nodes = self.nodes.lock().expect("nodes lock").clone();
        ClusterClientBuilder::new(nodes)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(20)
            .max_retry_wait(self.max_delay.as_millis() as u64)
            .retry_wait_formula(10, 2)
    }

    /// Asks the servers of the URL, in turn, whether they are cluster nodes; the first that
    /// answers decides. Several servers must be a cluster's nodes.
    async fn is_cluster(&self) -> Result<bool> {
        let mut last = None;
        for seed in &self.seeds {
            match self.ask_cluster_enabled(seed).await {
                Ok(false) if self.seeds.len() > 1 => {
                    return Err(Error::Invalid(format!(
                        "REDIS_URL {} lists several servers, but {} is not a Redis Cluster node: give a single Redis one address",
                        self.masked_url,
                        seed.get_connection_info().addr()
                    )));
                }
                Ok(cluster) => return Ok(cluster),
                Err(err) => last = Some(err),
            }
        }
        Err(last.expect("a URL names at least one server"))
    }

    async fn ask_cluster_enabled(&self, server: &redis::Client) -> Result<bool> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let mut probe = server
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut probe)
            .await?;
        Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
    }
}

/// The addresses of the nodes a `CLUSTER NODES` reply lists, but those marked failed or
/// without an address: `<id> <ip:port@cport[,hostname]> <flags> ...` a line.
fn node_addresses(reply: &str) -> Vec<(String, u16)> {
    reply
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            if flags.contains("fail") || flags.contains("noaddr") || flags.contains("handshake") {
                return None;
            }
            let (host, port) = address.split(['@', ',']).next()?.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .filter(|(host, _)| !host.is_empty())
        .collect()
}

/// Commands on keys of any slots, sent as one pipeline per slot (one pipeline in all on a
/// single Redis), replies in the order the commands were added.
pub(crate) struct Routed {
    cluster: bool,
    /// Per slot (one group under slot 0 on a single Redis): the pipeline and the position
    /// of each of its replies in the answer.
    groups: HashMap<u16, (Pipeline, Vec<usize>)>,
    count: usize,
}

impl Routed {
    /// An empty batch for `conn`.
    pub(crate) fn new(conn: &Conn) -> Routed {
        Routed {
            cluster: conn.is_cluster(),
            groups: HashMap::new(),
            count: 0,
        }
    }

    /// Adds `cmd`, whose keys are all in the slot of `key`.
    pub(crate) fn add(&mut self, key: &str, cmd: Cmd) -> &mut Self {
        self.group(key).add_command(cmd);
        self
    }

    fn group(&mut self, key: &str) -> &mut Pipeline {
        let slot = if self.cluster {
            slot(key.as_bytes())
        } else {
            0
        };
        let (pipe, positions) = self.groups.entry(slot).or_default();
        positions.push(self.count);
        self.count += 1;
        pipe
    }

    /// How many commands were added.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Sends every group at once; the replies in the order the commands were added. The
    /// first error of any group is the error of the whole.
    pub(crate) async fn query<T: FromRedisValue>(self, conn: &Conn) -> RedisResult<Vec<T>> {
        let replies = self
            .query_each(conn, |mut conn, pipe| async move {
                pipe.query_async::<Vec<Value>>(&mut conn).await
            })
            .await?;
        replies
            .into_iter()
            .map(|reply| T::from_redis_value(reply).map_err(Into::into))
            .collect()
    }

    /// Sends each group with `send` (given a clone of `conn`), all at once, and puts the
    /// replies back in the order the commands were added.
    pub(crate) async fn query_each<F, Fut, E>(
        self,
        conn: &Conn,
        send: F,
    ) -> std::result::Result<Vec<Value>, E>
    where
        F: Fn(Conn, Pipeline) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<Vec<Value>, E>>,
    {
        let count = self.count;
        let (pipes, positions): (Vec<Pipeline>, Vec<Vec<usize>>) =
            self.groups.into_values().unzip();
        let answers = try_join_all(pipes.into_iter().map(|pipe| send(conn.clone(), pipe))).await?;
        let mut replies = vec![Value::Nil; count];
        for (answer, positions) in answers.into_iter().zip(positions) {
            for (reply, position) in answer.into_iter().zip(positions) {
                replies[position] = reply;
            }
        }
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::node_addresses;

    #[test]
    fn node_addresses_skip_failed_and_addressless_nodes() {
        let reply = "\
07c3 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
67ed 10.0.0.2:7001@17001,node-b.example master - 0 1 2 connected 5461-10922
292f 10.0.0.3:7002@17002 master,fail - 0 1 3 disconnected 10923-16383
6ec2 10.0.0.4:7003@17003 slave 07c3 0 1 1 connected
e7d1 :0@0 master,noaddr - 0 1 4 disconnected
a1b2 10.0.0.5:7005@17005 handshake - 0 0 0 connected
";
        assert_eq!(
            node_addresses(reply),
            vec![
                ("10.0.0.1".to_owned(), 7000),
                ("10.0.0.2".to_owned(), 7001),
                ("10.0.0.4".to_owned(), 7003),
            ]
        );
    }
}
