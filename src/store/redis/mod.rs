//! The shared store: Redis, single node or Cluster.
//!
//! Keys of one account share a hash tag, so every script touches one slot:
//!
//! - `{prefix}:{<account>}:state`: a hash `{v: version, doc: JSON state}`
//! - `{prefix}:{<account>}:evt:<event id>`: processed-event marker, with TTL
//! - `{prefix}:customer:{<cus_…>}`: the account a Stripe customer belongs to
//! - `{prefix}:{<account>}:audit` and `{prefix}:audit`: audit streams
//! - `{prefix}:lookup:accounts|emails`: sorted sets (score 0) of account ids
//!   and `"<email>\n<account>"`, for finding accounts by prefix; kept like
//!   the indexes
//! - `{prefix}:index:debt|ended|override`: sorted sets of `"<score>:<account>"`
//!   members (all scored 0, ordered and paged lexicographically), kept after
//!   each commit. They live outside the account's slot, so they are updated
//!   right after the atomic commit rather than inside it; listings verify
//!   every entry against the account's state, and the next write of an
//!   account repairs its entries.
//! - the state hash's `fig` and `figv` fields: the account's episode records
//!   as last counted, and the version that wrote them
//! - `{prefix}:{figures}:day:<YYYY-MM-DD>`: recovery counters of the
//!   episodes that started that day (fields `<ladder>|<metric>`), changed in
//!   the commit itself on a single node; on a Cluster (another slot) posted
//!   right after it, exactly once, through `{prefix}:{figures}:posted` (the
//!   records each account's counters reflect) and `{prefix}:{figures}:dirty`
//!   (accounts committed but maybe not yet posted: repaired before every
//!   read); `{prefix}:{figures}:at_risk`: the latest at-risk count
//!
//! A write reads the state, folds the changes in with the same Rust code the
//! memory store uses, and commits with a Lua compare-and-set that also checks
//! and records the event id and publishes the account on
//! `{prefix}:invalidate`. A lost race re-reads and retries; a duplicate event
//! is detected inside the same atomic step, so two instances receiving one
//! event at once apply it once.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::{count_ended, fold, record, Lookup, Applied, AuditDraft, AuditEntry, LinkSource, Linked, Index, IndexEntry, Invalidation, RedisOptions, Store, StoreError, StoreUrl};
use crate::account::AccountId;
use crate::state::{BillingState, Change};

mod figures;
mod index;
mod listener;
mod scripts;

use self::listener::listen;
use self::scripts::{COMMIT, LINK, POST, RENEW};

/// Most compare-and-set rounds one write tries before giving up.
const MAX_ROUNDS: u32 = 256;

/// A [`Store`] on Redis (`redis://`, `rediss://`, `redis+cluster://`).
///
/// Reconnects by itself; every call is bounded by a timeout, so a dead or
/// hung Redis turns into a quick [`StoreError`], never a stuck request.
pub struct RedisStore {
    conn: Conn,
    opts: RedisOptions,
    channel: String,
    commit: Script,
    renew: Script,
    link: Script,
    post: Script,
    recorder: std::sync::RwLock<std::sync::Arc<crate::recovery::Recorder>>,
    invalidations: broadcast::Sender<Invalidation>,
    listening: watch::Receiver<bool>,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.opts.prefix).finish_non_exhaustive()
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

fn backend(e: redis::RedisError) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedisStore {
    /// Connects to `url` (a [`StoreUrl::Redis`] or [`StoreUrl::Cluster`]) and
    /// starts listening for invalidations; returns once the listener is
    /// subscribed, so no write after this call goes unnoticed.
    pub async fn connect(url: StoreUrl, opts: RedisOptions) -> Result<Self, StoreError> {
        let connect_timeout = opts.write_timeout.max(Duration::from_secs(1));
        let (conn, nodes) = match url {
            StoreUrl::Redis(url) => {
                let client = redis::Client::open(url.as_str()).map_err(backend)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(opts.write_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = tokio::time::timeout(
                    connect_timeout * 2,
                    client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| StoreError::Timeout(connect_timeout * 2))?
                .map_err(backend)?;
                (Conn::Single(manager), vec![url])
            }
            #[cfg(feature = "cluster")]
            StoreUrl::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .response_timeout(opts.write_timeout)
                    .retries(2)
                    .build()
                    .map_err(backend)?;
                let conn = tokio::time::timeout(connect_timeout * 2, client.get_async_connection())
                    .await
                    .map_err(|_| StoreError::Timeout(connect_timeout * 2))?
                    .map_err(backend)?;
                (Conn::Cluster(conn), nodes)
            }
            #[cfg(not(feature = "cluster"))]
            StoreUrl::Cluster(_) => {
                return Err(StoreError::InvalidInput("redis+cluster:// needs pastdue's `cluster` feature".into()))
            }
            StoreUrl::Memory => {
                return Err(StoreError::InvalidInput("memory:// is not a Redis URL".into()))
            }
        };
        let channel = format!("{}:invalidate", opts.prefix);
        let (invalidations, _) = broadcast::channel(4096);
        let (listening_tx, mut listening) = watch::channel(false);
        let listener = tokio::spawn(listen(nodes, channel.clone(), invalidations.clone(), listening_tx));
        let subscribed =
            tokio::time::timeout(connect_timeout * 2, listening.wait_for(|up| *up)).await.is_ok_and(|r| r.is_ok());
        if !subscribed {
            listener.abort();
            return Err(StoreError::Backend(format!(
                "could not subscribe to the invalidation channel {channel}"
            )));
        }
        Ok(Self {
            conn,
            opts,
            channel,
            commit: Script::new(COMMIT),
            renew: Script::new(RENEW),
            link: Script::new(LINK),
            post: Script::new(POST),
            recorder: std::sync::RwLock::default(),
            invalidations,
            listening,
            listener,
        })
    }

    /// Whether the invalidation listener is subscribed right now.
    pub fn is_listening(&self) -> bool {
        *self.listening.borrow()
    }

    fn state_key(&self, account: &AccountId) -> String {
        format!("{}:{{{}}}:state", self.opts.prefix, account)
    }

    fn event_key(&self, account: &AccountId, event_id: &str) -> String {
        format!("{}:{{{}}}:evt:{}", self.opts.prefix, account, event_id)
    }

    async fn bounded<T>(
        &self,
        limit: Duration,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| StoreError::Timeout(limit))?
            .map_err(backend)
    }

    fn audit_key(&self, account: Option<&AccountId>) -> String {
        match account {
            Some(a) => format!("{}:{{{}}}:audit", self.opts.prefix, a),
            None => format!("{}:audit", self.opts.prefix),
        }
    }

    fn decode(account: &AccountId, doc: Option<String>) -> Result<Option<BillingState>, StoreError> {
        doc.map(|d| {
            serde_json::from_str(&d).map_err(|e| StoreError::Decode {
                account: account.to_string(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// One compare-and-set write, with an optional audit entry appended to
    /// the account's audit stream in the same atomic step.
    async fn commit(
        &self,
        account: &AccountId,
        event_id: Option<&str>,
        changes: &[Change],
        draft: Option<&AuditDraft<'_>>,
    ) -> Result<(Applied, Option<AuditEntry>), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.state_key(account);
        // Without an event id the marker key is unused, but it still must
        // share the account's slot (a Cluster refuses cross-slot scripts).
        let event_key = event_id.map_or_else(|| key.clone(), |id| self.event_key(account, id));
        let audit_key = self.audit_key(Some(account));
        let ttl = self.opts.dedupe_ttl.as_secs().max(1);
        for _ in 0..MAX_ROUNDS {
            let (version, doc, fig, figv): (Option<u64>, Option<String>, Option<String>, Option<u64>) = self
                .bounded(
                    self.opts.write_timeout,
                    redis::cmd("HMGET").arg(&key).arg("v").arg("doc").arg("fig").arg("figv").query_async(&mut conn),
                )
                .await?;
            let current = Self::decode(account, doc)?;
            let (next, changed) = fold(current.as_ref(), changes);
            // Records that cannot be read are left alone (and the counters
            // with them): counting them again would count them twice.
            let stored = match figures::decode_records(fig.as_deref()) {
                Ok(stored) => Some(stored),
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "stored episode records are unreadable; this account's recovery counters are not updated");
                    None
                }
            };
            let recorded = match &stored {
                Some(stored) if changed => record(&self.recorder(), stored, &next),
                _ => None,
            };
            let records_json = match &recorded {
                Some((records, _)) => figures::encode_records(records)?,
                None => "-".to_owned(),
            };
            // On a Cluster the counters live in another slot: mark the
            // account first, so a crash before they are posted is repaired.
            let dirty = match &recorded {
                Some(_) if self.is_cluster() => Some(self.mark_dirty(account).await?),
                _ => None,
            };
            let new_doc = if changed {
                serde_json::to_string(&next).map_err(|e| StoreError::Backend(e.to_string()))?
            } else {
                String::new()
            };
            // `before` is the state this round read: the script commits only
            // if it is still the current one.
            let entry = draft.map(|d| d.entry(account, current.as_ref(), &next, chrono::Utc::now()));
            let entry_json = match &entry {
                Some(e) => serde_json::to_string(e).map_err(|e| StoreError::Backend(e.to_string()))?,
                None => String::new(),
            };
            let mut invocation = self.commit.key(&key);
            invocation
                .key(&event_key)
                .key(&audit_key)
                .arg(version.unwrap_or(0))
                .arg(&new_doc)
                .arg(event_id.unwrap_or(""))
                .arg(ttl)
                .arg(&self.channel)
                .arg(account.as_str())
                .arg(&entry_json)
                .arg(self.opts.audit_max_len)
                .arg(&records_json);
            if let (Some((_, delta)), false) = (&recorded, self.is_cluster()) {
                for (cell, n) in delta.cells() {
                    invocation.key(self.day_key(cell.day)).arg(cell.field()).arg(n);
                }
            }
            let (outcome, id): (i64, String) =
                self.bounded(self.opts.write_timeout, invocation.invoke_async(&mut conn)).await?;
            let entry = entry.map(|e| AuditEntry { id, ..e });
            match outcome {
                0 if changed => {
                    if let Some((records, delta)) = &recorded {
                        count_ended(stored.as_deref().unwrap_or_default(), records);
                        if let Some(dirty) = dirty {
                            let expected = figures::posted_value(figv, fig.as_deref().unwrap_or(""));
                            let posted = figures::posted_value(Some(version.unwrap_or(0) + 1), &records_json);
                            self.post(account, &expected, &posted, &dirty, delta).await;
                        }
                    }
                    self.update_indexes(account, current.as_ref(), &next).await;
                    return Ok((Applied::Changed(next), entry));
                }
                0 => {
                    // Nothing changed, but a previous write may have died
                    // before its index update: make sure the entries exist.
                    self.update_indexes(account, None, &next).await;
                    return Ok((Applied::Unchanged(next), entry));
                }
                1 => return Ok((Applied::Duplicate, None)),
                _ => tokio::task::yield_now().await,
            }
        }
        Err(StoreError::Contended(MAX_ROUNDS))
    }

    async fn xadd(&self, key: &str, entry: &AuditEntry) -> Result<String, StoreError> {
        let json = serde_json::to_string(entry).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn.clone();
        self.bounded(
            self.opts.write_timeout,
            redis::cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.opts.audit_max_len)
                .arg("*")
                .arg("e")
                .arg(&json)
                .query_async(&mut conn),
        )
        .await
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn load(&self, account: &AccountId) -> Result<Option<BillingState>, StoreError> {
        let mut conn = self.conn.clone();
        let doc: Option<String> = self
            .bounded(
                self.opts.read_timeout,
                redis::cmd("HGET").arg(self.state_key(account)).arg("doc").query_async(&mut conn),
            )
            .await?;
        Self::decode(account, doc)
    }

    async fn apply(
        &self,
        account: &AccountId,
        event_id: Option<&str>,
        changes: &[Change],
    ) -> Result<Applied, StoreError> {
        self.commit(account, event_id, changes, None).await.map(|(applied, _)| applied)
    }

    async fn apply_audited(
        &self,
        account: &AccountId,
        changes: &[Change],
        draft: &AuditDraft<'_>,
    ) -> Result<(Applied, AuditEntry), StoreError> {
        let (applied, entry) = self.commit(account, None, changes, Some(draft)).await?;
        let entry = entry.ok_or_else(|| StoreError::Backend("the audit entry was not written".into()))?;
        // The global log's copy: another slot on a Cluster, so not inside
        // the script; a failure here is logged, the account's log has it.
        if let Err(e) = self.xadd(&self.audit_key(None), &entry).await {
            tracing::warn!(account = %account, error = %e, "audit entry not copied to the global log");
        }
        Ok((applied, entry))
    }

    async fn link_customer(&self, customer: &str, account: &AccountId, source: LinkSource) -> Result<Linked, StoreError> {
        super::check_customer(customer)?;
        let mut conn = self.conn.clone();
        let key = format!("{}:customer:{{{customer}}}", self.opts.prefix);
        let mut invocation = self.link.key(key);
        invocation
            .arg(super::encode_link(account, source))
            .arg(account.as_str())
            .arg(if source == LinkSource::Admin { "1" } else { "0" });
        let previous: String = self.bounded(self.opts.write_timeout, invocation.invoke_async(&mut conn)).await?;
        let current = Some(previous.as_str()).filter(|p| !p.is_empty()).and_then(super::decode_link);
        Ok(super::decide_link(current, account, source).0)
    }

    async fn customer_account(&self, customer: &str) -> Result<Option<AccountId>, StoreError> {
        super::check_customer(customer)?;
        let mut conn = self.conn.clone();
        let key = format!("{}:customer:{{{customer}}}", self.opts.prefix);
        let found: Option<String> =
            self.bounded(self.opts.write_timeout, redis::cmd("GET").arg(key).query_async(&mut conn)).await?;
        Ok(found.as_deref().and_then(super::decode_link).map(|(a, _)| a))
    }

    async fn scan_index(&self, index: Index, min: i64, max: i64, cursor: Option<&str>, limit: usize) -> Result<Vec<IndexEntry>, StoreError> {
        self.read_index(index, min, max, cursor, limit).await
    }

    async fn lookup(&self, by: Lookup, prefix: &str, limit: usize) -> Result<Vec<(String, AccountId)>, StoreError> {
        self.read_lookup(by, prefix, limit).await
    }

    async fn claim(&self, account: &AccountId, what: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let key = format!("{}:{{{}}}:claim:{}", self.opts.prefix, account, what);
        let mut conn = self.conn.clone();
        let set: Option<String> = self
            .bounded(
                self.opts.write_timeout,
                redis::cmd("SET").arg(key).arg(holder).arg("NX").arg("PX").arg(lease.as_millis().max(1) as u64).query_async(&mut conn),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn renew_claim(&self, account: &AccountId, what: &str, holder: &str, lease: Duration) -> Result<bool, StoreError> {
        let key = format!("{}:{{{}}}:claim:{}", self.opts.prefix, account, what);
        let mut conn = self.conn.clone();
        let mut invocation = self.renew.key(key);
        invocation.arg(holder).arg(lease.as_millis().max(1) as u64);
        let renewed: i64 = self.bounded(self.opts.write_timeout, invocation.invoke_async(&mut conn)).await?;
        Ok(renewed == 1)
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<String, StoreError> {
        let account = entry.account.as_deref().and_then(|a| AccountId::new(a).ok());
        let id = match &account {
            Some(a) => Some(self.xadd(&self.audit_key(Some(a)), entry).await?),
            None => None,
        };
        let global = self.xadd(&self.audit_key(None), entry).await?;
        Ok(id.unwrap_or(global))
    }

    async fn audit_log(
        &self,
        account: Option<&AccountId>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let end = match before {
            Some(id) if id.bytes().all(|b| b.is_ascii_digit() || b == b'-') => format!("({id}"),
            Some(_) => return Err(StoreError::InvalidInput("bad audit cursor".into())),
            None => "+".to_owned(),
        };
        let mut conn = self.conn.clone();
        let rows: Vec<(String, Vec<(String, String)>)> = self
            .bounded(
                self.opts.write_timeout,
                redis::cmd("XREVRANGE").arg(self.audit_key(account)).arg(end).arg("-").arg("COUNT").arg(limit).query_async(&mut conn),
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, fields)| {
                let json = fields.into_iter().find(|(k, _)| k == "e")?.1;
                let entry: AuditEntry = serde_json::from_str(&json).ok()?;
                Some(AuditEntry { id, ..entry })
            })
            .collect())
    }

    fn keep_figures(&self, recorder: crate::recovery::Recorder) {
        *self.recorder.write().unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(recorder);
    }

    async fn figures(&self, range: crate::recovery::Range) -> Result<crate::recovery::Tally, StoreError> {
        self.read_figures(range).await
    }

    async fn put_at_risk(&self, at_risk: &crate::recovery::AtRisk) -> Result<(), StoreError> {
        self.write_at_risk(at_risk).await
    }

    async fn at_risk(&self) -> Result<Option<crate::recovery::AtRisk>, StoreError> {
        self.read_at_risk().await
    }

    fn invalidations(&self) -> broadcast::Receiver<Invalidation> {
        self.invalidations.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String =
            self.bounded(self.opts.read_timeout.max(Duration::from_millis(200)), redis::cmd("PING").query_async(&mut conn)).await?;
        Ok(())
    }
}
