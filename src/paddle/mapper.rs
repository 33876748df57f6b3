//! Which account a Paddle customer's facts belong to.

use std::sync::Arc;

use chrono::Utc;

use super::api::PaddleApi;
use super::{event, PaddleConfig};
use crate::account::AccountId;
use crate::provider::Refused;
use crate::settings::ConfigError;
use crate::store::Store;

/// Maps Paddle customers to accounts (see [`Mapper::account`]).
pub(crate) struct Mapper {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) api: Option<PaddleApi>,
    pub(crate) metadata_key: String,
}

impl Mapper {
    pub(crate) fn new(config: &PaddleConfig, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        Ok(Self { store, api: super::api(config)?, metadata_key: config.metadata_key.clone() })
    }
}

fn valid(id: &str, source: &str) -> Option<AccountId> {
    AccountId::new(id).map_err(|e| tracing::warn!(%source, error = %e, "ignoring an invalid account id from Paddle")).ok()
}

impl Mapper {
    /// The account, in this order:
    ///
    /// 1. `custom_data.<metadata_key>` on a *customer* (only your server
    ///    sets it, through Paddle's API): the customer is linked there, as
    ///    Stripe's metadata links (an admin link still wins);
    /// 2. `custom_data` on a transaction or subscription, which a buyer can
    ///    set in the browser (Paddle.js `customData`): it links the customer
    ///    only when the customer has no link yet and the account has no
    ///    other Paddle customer, so a stranger cannot move an account's
    ///    debts or contacts by naming it at checkout; otherwise the
    ///    customer's link stands and the claim is kept for the admin view;
    /// 3. the customer's stored link;
    /// 4. the customer's `custom_data` from Paddle's API (with an API key);
    /// 5. the customer id.
    pub(crate) async fn account(&self, customer: Option<&str>, hint: Option<&str>, trusted: bool) -> Result<Option<AccountId>, Refused> {
        if let Some(account) = hint.and_then(|h| valid(h, "custom_data")) {
            return match customer {
                Some(c) if trusted => Ok(Some(crate::provider::learn(&*self.store, "Paddle", c, account).await?)),
                Some(c) => self.claim(c, account).await.map(Some),
                None => Ok(Some(account)),
            };
        }
        let Some(customer) = customer else { return Ok(None) };
        if let Some(account) = self.store.customer_account(customer).await? {
            return Ok(Some(account));
        }
        self.by_customer(customer).await
    }

    /// A buyer-set `custom_data` naming `account` for `customer`.
    async fn claim(&self, customer: &str, account: AccountId) -> Result<AccountId, Refused> {
        let linked = self.store.customer_account(customer).await?;
        if linked.as_ref() == Some(&account) {
            return Ok(account);
        }
        let taken = match &linked {
            Some(_) => true,
            None => self.store.load(&account).await?.is_some_and(|s| s.customers().iter().any(|c| c.starts_with("ctm_") && c != customer)),
        };
        if !taken {
            return Ok(crate::provider::learn(&*self.store, "Paddle", customer, account).await?);
        }
        tracing::warn!(customer, claimed = %account, "Paddle custom_data names an account that belongs to another customer; not linking");
        metrics::counter!(crate::metrics::LINK_CONFLICTS).increment(1);
        let conflict = crate::state::LinkConflict { customer: customer.to_owned(), claimed_by: account.to_string(), at: Utc::now() };
        self.store.apply(&account, None, &[crate::state::Change::LinkConflict(conflict)]).await?;
        match linked {
            Some(linked) => Ok(linked),
            None => self.by_customer(customer).await?.ok_or_else(|| Refused::Ignored("the customer id is no valid account id".into())),
        }
    }

    /// An unlinked customer: its `custom_data` from Paddle's API, else its id.
    async fn by_customer(&self, customer: &str) -> Result<Option<AccountId>, Refused> {
        if let Some(api) = &self.api {
            // A customer Paddle does not know names nothing (a retry cannot
            // help); any other failure is worth Paddle's retry.
            let fetched = match api.get(&format!("/customers/{customer}")).await {
                Ok(fetched) => fetched,
                Err(super::ApiError::Status { status: 404, .. }) => serde_json::Value::Null,
                Err(e) => return Err(Refused::Unavailable(e.to_string())),
            };
            let named = fetched.as_object().and_then(|c| event::hint(c, &self.metadata_key)).and_then(|a| valid(&a, "customer custom_data"));
            if let Some(account) = named {
                return Ok(Some(crate::provider::learn(&*self.store, "Paddle", customer, account).await?));
            }
        }
        Ok(valid(customer, "customer id"))
    }
}

