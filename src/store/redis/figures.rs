//! Recovery counters on Redis: where they live, how a Cluster posts them,
//! how they are read.

use std::time::Duration;

use chrono::NaiveDate;

use super::{Conn, RedisStore};
use crate::account::AccountId;
use crate::recovery::{AtRisk, EpisodeRecord, Range, Recorder, Tally};
use crate::store::StoreError;

/// A dirty mark older than this is repaired by the next read: its writer
/// has had ample time to post it (a write's whole budget, twice).
const REPAIR_AFTER: Duration = Duration::from_secs(10);

/// The stored form of an account's episode records ("" = none).
pub(super) fn encode_records(records: &[EpisodeRecord]) -> Result<String, StoreError> {
    if records.is_empty() {
        return Ok(String::new());
    }
    serde_json::to_string(records).map_err(|e| StoreError::Backend(e.to_string()))
}

/// Reads [`encode_records`]' form; unreadable records count as none (the
/// next write re-derives them from the state).
pub(super) fn decode_records(raw: Option<&str>) -> Result<Vec<EpisodeRecord>, serde_json::Error> {
    match raw.filter(|r| !r.is_empty()) {
        None => Ok(Vec::new()),
        Some(r) => serde_json::from_str(r),
    }
}

/// The posted form: `"<version>|<records JSON>"` (records `""` when
/// none), `""` only before an account's records were ever written. It
/// always carries the version, so a value never comes back (no ABA) and
/// an older post never replaces a newer one.
pub(super) fn posted_value(version: Option<u64>, records: &str) -> String {
    match version {
        None => String::new(),
        Some(v) => format!("{v}|{records}"),
    }
}

impl RedisStore {
    /// The recorder, shared: a write costs an `Arc` clone, not a policy's.
    pub(super) fn recorder(&self) -> std::sync::Arc<Recorder> {
        self.recorder.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(super) fn is_cluster(&self) -> bool {
        !matches!(self.conn, Conn::Single(_))
    }

    pub(super) fn day_key(&self, day: NaiveDate) -> String {
        format!("{}:{{figures}}:day:{day}", self.opts.prefix)
    }

    fn figures_key(&self, name: &str) -> String {
        format!("{}:{{figures}}:{name}", self.opts.prefix)
    }

    /// Marks `account` as committed-but-not-posted; returns the mark's
    /// score, unique to this writer.
    pub(super) async fn mark_dirty(&self, account: &AccountId) -> Result<String, StoreError> {
        // Milliseconds and three random digits (per process and call): two
        // writers of one account in one millisecond are told apart.
        let salt = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(crate::store::holder_id().as_bytes());
            (h.finish() % 1000) as i64
        };
        let score = chrono::Utc::now().timestamp_millis() * 1000 + salt;
        let mut conn = self.conn.clone();
        self.bounded(
            self.opts.write_timeout,
            redis::cmd("ZADD").arg(self.figures_key("dirty")).arg(score).arg(account.as_str()).query_async::<()>(&mut conn),
        )
        .await?;
        Ok(score.to_string())
    }

    /// Posts a committed write's counters; on a conflict (a write in
    /// between, or an earlier post lost) re-derives them from what is
    /// stored. Failures are logged: the dirty mark stays, and the next read
    /// repairs it.
    pub(super) async fn post(&self, account: &AccountId, expected: &str, posted: &str, dirty: &str, delta: &Tally) {
        let result = match self.try_post(account, expected, posted, dirty, delta).await {
            Ok(true) => Ok(()),
            Ok(false) => self.repair(account, Some(dirty)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(account = %account, error = %e, "recovery counters not posted; the next report repairs them");
        }
    }

    async fn try_post(&self, account: &AccountId, expected: &str, posted: &str, dirty: &str, delta: &Tally) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.post.key(self.figures_key("posted"));
        invocation.key(self.figures_key("dirty")).arg(account.as_str()).arg(expected).arg(posted).arg(dirty);
        for (cell, n) in delta.cells() {
            invocation.key(self.day_key(cell.day)).arg(cell.field()).arg(n);
        }
        let outcome: i64 = self.bounded(self.opts.write_timeout, invocation.invoke_async(&mut conn)).await?;
        Ok(outcome == 0)
    }

    /// Brings the account's posted counters up to its stored records.
    async fn repair(&self, account: &AccountId, dirty: Option<&str>) -> Result<(), StoreError> {
        let unreadable = |e: serde_json::Error| StoreError::Decode { account: account.to_string(), message: format!("episode records: {e}") };
        for _ in 0..16 {
            let mut conn = self.conn.clone();
            // What was posted first, then the state: the state is at least as
            // new, so a repair never posts an older version over a newer one.
            let posted: Option<String> = self
                .bounded(
                    self.opts.write_timeout,
                    redis::cmd("HGET").arg(self.figures_key("posted")).arg(account.as_str()).query_async(&mut conn),
                )
                .await?;
            let (doc, fig, figv): (Option<String>, Option<String>, Option<u64>) = self
                .bounded(
                    self.opts.write_timeout,
                    redis::cmd("HMGET").arg(self.state_key(account)).arg("doc").arg("fig").arg("figv").query_async(&mut conn),
                )
                .await?;
            let posted = posted.unwrap_or_default();
            let fig = fig.unwrap_or_default();
            let target = posted_value(figv, &fig);
            let state = Self::decode(account, doc)?.unwrap_or_default();
            let delta = if posted == target {
                Tally::default()
            } else {
                let before = decode_records(posted.split_once('|').map(|(_, r)| r)).map_err(unreadable)?;
                crate::recovery::delta(&before, &decode_records(Some(&fig)).map_err(unreadable)?, &state)
            };
            if self.try_post(account, &posted, &target, dirty.unwrap_or(""), &delta).await? {
                return Ok(());
            }
        }
        Err(StoreError::Contended(16))
    }

    /// Repairs accounts whose writers did not post (crashed, timed out).
    async fn repair_dirty(&self) -> Result<(), StoreError> {
        let until = chrono::Utc::now().timestamp_millis().saturating_sub(REPAIR_AFTER.as_millis() as i64) * 1000;
        let mut conn = self.conn.clone();
        let stale: Vec<(String, String)> = self
            .bounded(
                self.opts.read_timeout,
                redis::cmd("ZRANGE")
                    .arg(self.figures_key("dirty"))
                    .arg("-inf")
                    .arg(until)
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(1000)
                    .arg("WITHSCORES")
                    .query_async(&mut conn),
            )
            .await?;
        for (account, score) in stale {
            // One account that cannot be repaired must not stop every report.
            if let Ok(account) = AccountId::new(&account) {
                if let Err(e) = self.repair(&account, Some(&score)).await {
                    tracing::warn!(account = %account, error = %e, "recovery counters of this account could not be repaired");
                }
            }
        }
        Ok(())
    }

    /// The counters of the days in `range`: one pipelined read per day.
    pub(super) async fn read_figures(&self, range: Range) -> Result<Tally, StoreError> {
        if self.is_cluster() {
            self.repair_dirty().await?;
        }
        let days: Vec<NaiveDate> = range.days().collect();
        let mut pipe = redis::pipe();
        for day in &days {
            pipe.cmd("HGETALL").arg(self.day_key(*day));
        }
        let mut conn = self.conn.clone();
        let rows: Vec<Vec<(String, i64)>> = self.bounded(self.opts.read_timeout, pipe.query_async(&mut conn)).await?;
        Ok(days
            .iter()
            .zip(rows)
            .flat_map(|(day, fields)| fields.into_iter().filter_map(move |(f, n)| Some((crate::recovery::Cell::parse(*day, &f)?, n))))
            .collect())
    }

    pub(super) async fn write_at_risk(&self, at_risk: &AtRisk) -> Result<(), StoreError> {
        let json = serde_json::to_string(at_risk).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn.clone();
        self.bounded(self.opts.write_timeout, redis::cmd("SET").arg(self.figures_key("at_risk")).arg(json).query_async::<()>(&mut conn))
            .await
    }

    pub(super) async fn read_at_risk(&self) -> Result<Option<AtRisk>, StoreError> {
        let mut conn = self.conn.clone();
        let json: Option<String> =
            self.bounded(self.opts.read_timeout, redis::cmd("GET").arg(self.figures_key("at_risk")).query_async(&mut conn)).await?;
        // An unreadable snapshot is as good as none: the next sweep rewrites it.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }
}
