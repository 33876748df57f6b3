//! One idea: the gate behind your own authentication.
//!
//! ```text
//! cargo run --example behind_auth
//! curl -si localhost:3001/api/ping -H 'Authorization: Bearer token-of-acme'    # 402: acme is suspended
//! curl -si localhost:3001/api/ping -H 'Authorization: Bearer token-of-globex'  # 200
//! curl -si localhost:3001/api/ping -H 'X-Account-Id: globex'                   # 401: no session, no account
//! ```
//!
//! Your auth layer decides whose request it is and puts an `AccountId` into
//! the request extensions; the gate reads it there (`ExtensionResolver`),
//! so nothing a client sends can name an account. The auth layer is added
//! after the gate, so it runs first.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{TimeDelta, Utc};
use pastdue::config::MissingAccount;
use pastdue::gate::{ExtensionResolver, GateLayer};
use pastdue::state::{Change, Currency, UnpaidInvoice};
use pastdue::{AccountId, MemoryStore, Store};

/// Stands in for your session store: a bearer token names an account.
async fn auth(mut req: Request, next: Next) -> Response {
    let token = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let account = match token {
        Some("token-of-acme") => "acme",
        Some("token-of-globex") => "globex",
        _ => return (StatusCode::UNAUTHORIZED, "sign in first\n").into_response(),
    };
    req.extensions_mut().insert(AccountId::new(account).expect("a valid id"));
    next.run(req).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    let gate = GateLayer::new(store)
        .with_resolver(ExtensionResolver)
        // Every gated route here needs an account: refuse rather than pass.
        .with_missing_account(MissingAccount::Deny);
    let app = Router::new()
        .route("/api/ping", get(|| async { "pong\n" }))
        .layer(gate)
        .layer(middleware::from_fn(auth)); // outside the gate: runs first
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("behind_auth listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
