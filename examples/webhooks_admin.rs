//! One idea: Stripe webhooks and the admin API, without the gate.
//!
//! ```text
//! PASTDUE_STRIPE__WEBHOOK_SECRET=whsec_example PASTDUE_ADMIN__TOKEN=an-admin-token-of-16+-bytes \
//!   cargo run --example webhooks_admin
//! stripe listen --forward-to localhost:3002/webhooks/stripe     # or any signed POST
//! curl -s localhost:3002/admin/accounts/acme -H 'Authorization: Bearer an-admin-token-of-16+-bytes'
//! ```
//!
//! The webhook keeps each account's billing state current (verified,
//! exactly once, in any order); the admin API reads and overrides it. An
//! app that gates requests elsewhere (another process, a proxy) shares the
//! state through Redis: set `PASTDUE_STORE__URL=redis://…`.

use axum::Router;
use pastdue::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::load()?;
    config.server.listen = std::env::var("PASTDUE_SERVER__LISTEN").unwrap_or_else(|_| "127.0.0.1:3002".into());
    let store = pastdue::store::connect(&config.store).await?;
    // Both refuse to start without their secret: an endpoint that cannot
    // verify, or an admin API anyone can call, is worse than none.
    let app = Router::new()
        .merge(pastdue::stripe::router(&config.stripe, store.clone())?)
        .merge(pastdue::admin::router(&config.admin, config.ladder()?, pastdue::stripe::Mapper::new(&config.stripe, store)?)?);
    let listener = tokio::net::TcpListener::bind(&config.server.listen).await?;
    println!("webhooks and admin API on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
