//! One idea: your own please-pay page.
//!
//! ```text
//! cargo run --example custom_page
//! curl -si localhost:3002/api/ping -H 'X-Account-Id: acme' -H 'Accept: text/html'   # 402, your page
//! curl -si localhost:3002/api/ping -H 'X-Account-Id: acme' -H 'Accept-Language: de' -H 'Accept: text/html'
//! ```
//!
//! `page.template` names a minijinja file (here `examples/custom_page.html`)
//! that replaces the built-in page. It sees the same variables: `amount`,
//! `pay_url`, `notices`, and every message of the visitor's language as
//! `text.*`, so a custom page is translated like the built-in one. It is
//! rendered against a sample debt in every language when the gate is
//! built, so a broken template stops the start, not a customer. (The
//! `X-Account-Id` header is for trying it out; behind real users, see the
//! `behind_auth` example.)

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use pastdue::gate::GateLayer;
use pastdue::state::{Change, Currency, UnpaidInvoice};
use pastdue::{AccountId, Config, MemoryStore, Store};

/// The example's template, next to this file.
pub const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/custom_page.html");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default();
    config.page.template = TEMPLATE.into();
    config.page.product_name = "Acme Cloud".into();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // acme's payment failed 20 days ago: past the 17-day suspension.
    let since = Utc::now() - TimeDelta::days(20);
    let invoice = UnpaidInvoice {
        amount_due: 4_900,
        currency: Currency::new("eur").expect("a currency"),
        hosted_url: Some("https://invoice.stripe.com/i/example".into()),
        number: Some("ACME-0001".into()),
        since,
        observed: since,
        uncollectible: false,
        next_attempt: None,
    };
    store.apply(&AccountId::new("acme")?, None, &[Change::InvoiceUnpaid { id: "in_1".into(), invoice }]).await?;

    // The template is read and checked here; an error names `page.template`.
    let gate = GateLayer::from_config(&config, store)?;
    let app = Router::new().route("/api/ping", get(|| async { "pong\n" })).layer(gate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("custom_page listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
