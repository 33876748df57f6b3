//! Recovery figures over a store: the report, and the at-risk count (a
//! full read of the accounts in debt, run by the notifier's full sweep).

use chrono::{DateTime, Utc};

use super::{Index, Store, StoreError, NEVER};
use crate::policy::Policy;
use crate::recovery::{AtRisk, Range, Report};

/// Counts every account in debt at `now` and stores the snapshot (and the
/// `pastdue_at_risk_*` gauges). Reads each account in the debt index once.
pub async fn refresh(store: &dyn Store, policy: &Policy, now: DateTime<Utc>) -> Result<AtRisk, StoreError> {
    let mut at_risk = AtRisk { as_of: Some(now), ..AtRisk::default() };
    let mut cursor: Option<String> = None;
    loop {
        let page = store.scan_index(Index::Debt, 0, NEVER, cursor.as_deref(), 500).await?;
        let Some(last) = page.last() else { break };
        cursor = Some(last.cursor());
        for entry in &page {
            if let Some(state) = store.load(&entry.account).await? {
                at_risk.count(policy, &state, now);
            }
        }
    }
    store.put_at_risk(&at_risk).await?;
    crate::metrics::at_risk(&at_risk);
    Ok(at_risk)
}

/// The recovery report of the episodes that started in `range`, for one
/// ladder or all: a sum of per-day counters and one snapshot read, however
/// many accounts there are.
pub async fn report(store: &dyn Store, range: Range, ladder: Option<&str>) -> Result<Report, StoreError> {
    let tally = store.figures(range).await?;
    let at_risk = store.at_risk().await?;
    Ok(Report::build(range, &tally, at_risk.as_ref(), ladder))
}
