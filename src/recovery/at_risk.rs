//! Accounts owing now, by the stage they are in: a snapshot a full sweep
//! of the accounts in debt refreshes, so reading it costs one key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Amounts;
use crate::policy::Policy;
use crate::standing::Standing;
use crate::state::BillingState;

/// Accounts owing, by ladder and current stage, as of one sweep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtRisk {
    /// When the sweep that counted them ran.
    pub as_of: Option<DateTime<Utc>>,
    /// Ladder → stage → accounts and amounts.
    pub ladders: BTreeMap<String, BTreeMap<String, StageRisk>>,
}

/// Accounts in one stage and what they owe.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "admin", derive(utoipa::ToSchema))]
pub struct StageRisk {
    /// How many accounts.
    pub accounts: u64,
    /// What they owe, by currency (minor units).
    #[cfg_attr(feature = "admin", schema(value_type = BTreeMap<String, i64>))]
    pub amount: Amounts,
}

impl StageRisk {
    pub(super) fn merge(&mut self, other: &StageRisk) {
        self.accounts += other.accounts;
        for (c, a) in &other.amount {
            let sum = self.amount.entry(*c).or_default();
            *sum = sum.saturating_add(*a);
        }
    }
}

impl AtRisk {
    /// Counts one account at `now`, if it owes.
    pub fn count(&mut self, policy: &Policy, state: &BillingState, now: DateTime<Utc>) {
        if state.past_due_since().is_none() {
            return;
        }
        let (ladder_name, ladder) = policy.ladder_named_for(state, now);
        let standing = Standing::evaluate(Some(state), ladder, now);
        let stage = standing.stage();
        let risk = self.ladders.entry(ladder_name.to_owned()).or_default().entry(stage.name().to_owned()).or_default();
        risk.accounts += 1;
        for i in state.unpaid().values() {
            let sum = risk.amount.entry(i.currency).or_default();
            *sum = sum.saturating_add(i.amount_due);
        }
    }

    /// Stage → accounts and amounts, of one ladder or of all of them.
    pub fn by_stage(&self, ladder: Option<&str>) -> BTreeMap<String, StageRisk> {
        let mut out: BTreeMap<String, StageRisk> = BTreeMap::new();
        for (_, stages) in self.ladders.iter().filter(|(l, _)| ladder.is_none_or(|f| f == l.as_str())) {
            for (stage, risk) in stages {
                out.entry(stage.clone()).or_default().merge(risk);
            }
        }
        out
    }
}
