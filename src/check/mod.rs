//! Forward auth: the gate's decision for a request a reverse proxy
//! describes, so apps in any language get the whole product.
//!
//! nginx (`auth_request`), Caddy (`forward_auth`), Traefik (ForwardAuth)
//! and Envoy (`ext_authz`) ask `GET /check` whether the request they hold
//! may pass, describing it in headers: the method in `X-Original-Method`
//! or `X-Forwarded-Method`, the path and query in `X-Original-URI` or
//! `X-Forwarded-Uri`, plus `Accept` and `Accept-Language`. The account is
//! what the proxy's own authentication put in `check.account_header`, or
//! the claim of a verified JWT ([`jwt`]). The answer is the gate's own
//! decision — the same cache, ladder, `read_only` rule and page as the
//! tower layer, because it *is* the layer, run over a request rebuilt from
//! those headers, with `check.exempt` (the app's billing pages) as its
//! exempt paths:
//!
//! - pass → `200`, empty, with `Billing-Stage` (and `Billing-Banner`, the
//!   reminder's text percent-encoded, for `notice`/`warn` stages) for the
//!   proxy to copy to the upstream;
//! - blocked → the layer's `402` (HTML page or problem+json), or `403` with
//!   `check.deny_status = 403` for nginx, whose `error_page` then fetches
//!   `GET /page`: the same decision, answering the `402` itself (or a `303`
//!   back to the original URI when the request may pass by now).
//!
//! # One truth for the original request
//!
//! A proxy sets one family of headers and forwards the client's own, so a
//! client can add the other. A request is refused (`400`, counted in
//! `pastdue_checks_refused_total`) when it describes no original URI, when
//! the two families (or two copies of one header) disagree, and when the
//! URI has dot segments (`/billing/../api`, also `%2e%2e`): browsers never
//! send them, and an upstream that resolves them would serve another path
//! than the one checked. A proxy that forgot a header fails loudly; it
//! never opens the gate.
//!
//! `[check]` is [`CheckConfig`]; the endpoints need the `server` feature.

mod settings;
#[cfg(feature = "server")]
mod forward;
#[cfg(feature = "server")]
pub mod jwt;

pub use self::settings::CheckConfig;
#[cfg(feature = "server")]
pub use self::forward::{router, BILLING_BANNER};
