//! Membership: which clients of a named group are alive, by their heartbeat keys.

use crate::client::Client;
use crate::error::Result;

/// A named group of clients (e.g. the processors of a deployment).
#[derive(Clone)]
pub struct Members {
    client: Client,
    key: String,
}

impl Members {
    /// Group `name`.
    pub fn new(client: &Client, name: &str) -> Members {
        Members {
            client: client.clone(),
            key: client.keys().members(name),
        }
    }

    /// Adds this client (its consumer id) to the group. The heartbeat key is written first:
    /// the heartbeat task may not have beaten yet, and a member without one would be taken
    /// for dead and removed by the next [`Members::alive`].
    pub async fn join(&self) -> Result<()> {
        let mut conn = self.client.conn().await?;
        // Two round trips, in this order: the two keys are in different slots of a cluster.
        let _: () = self.client.heartbeat().query_async(&mut conn).await?;
        let _: i64 = redis::cmd("SADD")
            .arg(&self.key)
            .arg(self.client.consumer_id())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Removes this client from the group.
    pub async fn leave(&self) -> Result<()> {
        let mut conn = self.client.conn().await?;
        let _: i64 = redis::cmd("SREM")
            .arg(&self.key)
            .arg(self.client.consumer_id())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The members whose heartbeat key exists, sorted; members found dead are removed.
    pub async fn alive(&self) -> Result<Vec<String>> {
        let members = self.client.read_set(&self.key).await?;
        let alive = self.client.consumers_alive(&members).await?;
        let (live, dead): (Vec<_>, Vec<_>) = members
            .into_iter()
            .zip(alive)
            .partition(|(_, alive)| *alive);
        if !dead.is_empty() {
            let dead: Vec<String> = dead.into_iter().map(|(member, _)| member).collect();
            let mut conn = self.client.conn().await?;
            let _: i64 = redis::cmd("SREM")
                .arg(&self.key)
                .arg(&dead)
                .query_async(&mut conn)
                .await?;
        }
        Ok(live.into_iter().map(|(member, _)| member).collect())
    }
}
