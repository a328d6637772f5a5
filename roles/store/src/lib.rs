//! store: the topology store and the MongoDB archive of Gorgon.
//!
//! It owns topology changes: web_face sends each one as a request (redpill request/reply,
//! [`protocol::store`]); the store validates it against the whole topology and the functions
//! processors published, keeps the document and its `rev` in Redis, and sends the node
//! changes to the nodes' partitions, where they serialize with the messages. It is not on
//! the message path: injects and reads go from web_face to Redis directly.
//!
//! It archives every output event to MongoDB (`archive.rs`): a member of the output topic's
//! `archive` group, writing idempotently and acknowledging the topic only after MongoDB
//! acknowledged. It answers history queries from MongoDB (`history.rs`). It is the only role
//! that speaks MongoDB. Topology changes go on while MongoDB is down; outputs wait in Redis.
//!
//! Layout: `config.rs` (flags and environment), `changes.rs` (applying a change to a
//! document, without I/O), `service.rs` (the request loop, leases, commits and outboxes),
//! `archive.rs` (the archive and its document schema), `history.rs` (history queries),
//! `lib.rs` ([`run`]).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

pub mod archive;
pub mod changes;
pub mod config;
mod history;
mod service;

use std::time::Duration;

use anyhow::Context as _;
use protocol::roles::STORE;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// The archive collection of `MONGODB_URI` (database from the URI, `gorgon` when it names
/// none). The driver connects lazily, so an unreachable MongoDB does not stop the store.
async fn connect_mongodb(
    config: &Config,
) -> anyhow::Result<mongodb::Collection<mongodb::bson::Document>> {
    let mut options = mongodb::options::ClientOptions::parse(config.mongodb_uri.expose())
        .await
        .with_context(|| {
            format!(
                "MONGODB_URI ({}) is not a MongoDB connection string; it reads \
                 mongodb://[user:password@]host:port/database",
                config.mongodb_uri.masked()
            )
        })?;
    options.app_name = Some("gorgon-store".to_owned());
    options.server_selection_timeout = Some(Duration::from_millis(config.mongodb_timeout_ms));
    let database = options
        .default_database
        .clone()
        .unwrap_or_else(|| "gorgon".to_owned());
    let mongo =
        mongodb::Client::with_options(options).context("could not set up the MongoDB client")?;
    Ok(mongo.database(&database).collection(archive::COLLECTION))
}

/// Runs store until `token` is cancelled: connects to Redis (waiting for it while it is
/// unreachable), checks the partition count, publishes the built-in functions' descriptions
/// (so topologies can be validated before any processor ran), then serves topology changes,
/// archives outputs to MongoDB and answers history queries, side by side; MongoDB being
/// away holds up only the last two.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let redpill_config = config.redis.redpill_config(STORE);
    let Some(started) = runtime::start(STORE, &config.redis, redpill_config, false, &token).await?
    else {
        return Ok(());
    };
    let client = started.client.clone();
    layout::publish_functions(&client, &functions::Registry::builtins().describe())
        .await
        .context("could not publish the built-in functions to Redis")?;
    tracing::info!(config = ?config, "starting");
    let settings = service::Settings {
        partitions: config.redis.partitions,
        limits: protocol::Limits {
            max_sources: config.max_sources,
        },
        lease_time: Duration::from_millis(config.store_lease_ms),
        sweep_interval: Duration::from_millis(config.store_sweep_ms),
    };
    let outputs = connect_mongodb(&config).await?;
    let archive_settings = archive::Settings {
        partitions: config.redis.partitions,
        batch: config.archive_batch as usize,
        write_concern: archive::write_concern(&config.archive_write_concern)
            .map_err(|error| anyhow::anyhow!(error))?,
        retention_days: config.archive_retention_days,
        linger: Duration::from_millis(config.archive_linger_ms),
        abort_after_write: config.failpoint.as_deref() == Some("archive_after_write"),
    };
    let archiver = {
        let (client, outputs, token) = (client.clone(), outputs.clone(), token.clone());
        tokio::spawn(async move {
            let outcome = async {
                archive::ensure_indexes(&outputs, archive_settings.retention_days, &token).await?;
                archive::run(client, outputs, archive_settings, token.clone()).await
            }
            .await;
            if let Err(error) = &outcome {
                // Without the archive, outputs would pile up: stop the whole store, loudly.
                tracing::error!(
                    error = format!("{error:#}"),
                    "the archive stopped; stopping the store"
                );
                token.cancel();
            }
            outcome
        })
    };
    let history = tokio::spawn(history::serve(client.clone(), outputs, token.clone()));
    let outcome = service::serve(client.clone(), settings, token.clone()).await;
    token.cancel();
    let archived = archiver.await;
    let _ = history.await;
    started.finish().await;
    let outcome = outcome.and(match archived {
        Ok(result) => result.context("the archive failed"),
        Err(error) => Err(anyhow::anyhow!("the archive task failed: {error}")),
    });
    outcome
}
