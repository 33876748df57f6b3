//! The indexes and lookups on Redis: sorted sets kept right after each
//! commit (they live outside the account's slot), read by range.

use std::time::Duration;

use redis::Cmd;

use super::RedisStore;
use crate::account::AccountId;
use crate::state::BillingState;
use crate::store::{index_moves, lookup_moves, Index, IndexEntry, Lookup, StoreError};

impl RedisStore {
    pub(super) fn index_key(&self, index: Index) -> String {
        format!("{}:index:{}", self.opts.prefix, index.name())
    }

    /// Moves the account's index entries from `before` to `after`. Failures
    /// are logged, not returned: the state itself is committed, and the
    /// account's next write repairs its entries.
    pub(super) async fn update_indexes(&self, account: &AccountId, before: Option<&BillingState>, after: &BillingState) {
        let moves = index_moves(before, after, account);
        let lookups = lookup_moves(before, after, account);
        if moves.is_empty() && lookups.is_empty() {
            return;
        }
        // One command per key: on a Cluster each key has its own slot, and
        // a pipeline must not span slots.
        let mut cmds: Vec<Cmd> = Vec::new();
        for (lookup, gone, added) in &lookups {
            if !gone.is_empty() {
                cmds.push(redis::cmd("ZREM").arg(self.lookup_key(*lookup)).arg(gone).clone());
            }
            if !added.is_empty() {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(self.lookup_key(*lookup));
                for m in added {
                    zadd.arg(0).arg(m);
                }
                cmds.push(zadd);
            }
        }
        for (index, old, new) in &moves {
            if let Some(old) = old {
                cmds.push(redis::cmd("ZREM").arg(self.index_key(*index)).arg(old).clone());
            }
            if let Some(new) = new {
                cmds.push(redis::cmd("ZADD").arg(self.index_key(*index)).arg(0).arg(new).clone());
            }
        }
        let result = if self.is_cluster() {
            let sent = cmds.iter().map(|cmd| {
                let mut conn = self.conn.clone();
                async move { cmd.query_async::<()>(&mut conn).await }
            });
            self.bounded(self.opts.write_timeout, async { futures_util::future::join_all(sent).await.into_iter().collect::<redis::RedisResult<Vec<()>>>() }).await.map(drop)
        } else {
            let mut pipe = redis::pipe();
            for cmd in &cmds {
                pipe.add_command(cmd.clone()).ignore();
            }
            let mut conn = self.conn.clone();
            self.bounded(self.opts.write_timeout, pipe.query_async::<()>(&mut conn)).await
        };
        if let Err(e) = result {
            tracing::warn!(account = %account, error = %e, "index update failed; the account's next write repairs it");
        }
    }

    pub(super) fn lookup_key(&self, lookup: Lookup) -> String {
        format!("{}:lookup:{}", self.opts.prefix, lookup.name())
    }

    pub(super) async fn read_index(
        &self,
        index: Index,
        min: i64,
        max: i64,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        if min > max {
            return Ok(Vec::new());
        }
        let lo = format!("[{:012}:", min.clamp(0, crate::store::NEVER));
        let start = match cursor {
            Some(c) if format!("[{c}") > lo => format!("({c}"),
            _ => lo,
        };
        // Every member with a score <= max sorts before "<max + 1>:".
        let end = format!("({:012}:", max.clamp(-1, crate::store::NEVER) + 1);
        let mut conn = self.conn.clone();
        let members: Vec<String> = self
            .bounded(
                self.opts.write_timeout,
                redis::cmd("ZRANGE")
                    .arg(self.index_key(index))
                    .arg(start)
                    .arg(end)
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(members.iter().filter_map(|m| IndexEntry::parse(m)).collect())
    }

    pub(super) async fn read_lookup(&self, by: Lookup, prefix: &str, limit: usize) -> Result<Vec<(String, AccountId)>, StoreError> {
        let mut end = format!("[{prefix}").into_bytes();
        // Every member that starts with the prefix sorts before prefix + 0xff.
        end.push(0xff);
        let mut conn = self.conn.clone();
        let members: Vec<String> = self
            .bounded(
                self.opts.read_timeout.max(Duration::from_millis(500)),
                redis::cmd("ZRANGE").arg(self.lookup_key(by)).arg(format!("[{prefix}")).arg(end).arg("BYLEX").arg("LIMIT").arg(0).arg(limit).query_async(&mut conn),
            )
            .await?;
        Ok(members.into_iter().filter_map(|m| { let a = by.account_of(&m)?; Some((m, a)) }).collect())
    }
}
