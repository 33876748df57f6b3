//! Bad input, systematically: every parser that faces the outside world
//! takes arbitrary input without panicking, and answers as documented.
//! (Coverage-guided fuzz targets for the same parsers live in `fuzz/`.)

use chrono::{TimeZone, Utc};
use pastdue::gate::prefers_html;
use pastdue::__internals::{facts, Event};
use pastdue::signature::{sign, verify, SignatureHeader};
use pastdue::{AccountId, Config};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_.]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["in_1", "cus_1", "eur", "past_due", "account_id", "open", ""]).prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "id", "customer", "amount_due", "amount_remaining", "currency", "hosted_invoice_url", "number",
                    "customer_email", "due_date", "status", "parent", "subscription_details", "subscription", "metadata",
                    "account_id", "email", "x",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const TYPES: [&str; 8] = [
    "invoice.payment_failed",
    "invoice.overdue",
    "invoice.paid",
    "invoice.marked_uncollectible",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.updated",
    "charge.succeeded",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn signature_headers_never_panic(header in ".{0,200}", body in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = SignatureHeader::parse(&header);
        let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let r = verify(Some(&header), &body, &["whsec_x".into()], std::time::Duration::from_secs(300), now);
        // A random header is never a valid signature.
        prop_assert!(r.is_err());
    }

    #[test]
    fn only_the_right_signature_verifies(body in prop::collection::vec(any::<u8>(), 0..256), t in 1_600_000_000i64..1_900_000_000, flip in any::<prop::sample::Index>()) {
        let now = Utc.timestamp_opt(t, 0).unwrap();
        let secrets = ["whsec_a".to_owned()];
        let good = sign("whsec_a", t, &body);
        prop_assert!(verify(Some(&good), &body, &secrets, std::time::Duration::from_secs(300), now).is_ok());
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 1;
            prop_assert!(verify(Some(&good), &tampered, &secrets, std::time::Duration::from_secs(300), now).is_err());
        }
    }

    #[test]
    fn event_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(event) = Event::parse(&bytes) {
            let _ = facts(&event, "account_id");
        }
    }

    #[test]
    fn paddle_notifications_of_any_shape_never_panic(
        data in arb_json(),
        kind in prop::sample::select(vec!["transaction.payment_failed", "transaction.past_due", "transaction.completed", "transaction.canceled", "subscription.updated", "customer.updated", "address.updated"]),
        occurred in "[0-9T:.Z+-]{0,32}",
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        use pastdue::paddle::event::{facts, Notification};
        let _ = Notification::parse(&bytes);
        let mut data = data;
        if let Some(obj) = data.as_object_mut() {
            obj.insert("id".into(), json!("txn_1"));
        }
        for at in [occurred.as_str(), "2026-11-02T10:00:00.123456Z"] {
            let body = serde_json::to_vec(&json!({ "event_id": "evt_1", "event_type": kind, "occurred_at": at, "data": data })).unwrap();
            if let Ok(n) = Notification::parse(&body) {
                if let Ok(Some(f)) = facts(&n, "account_id") {
                    for change in &f.changes {
                        if let pastdue::Change::InvoiceUnpaid { invoice, .. } = change {
                            prop_assert!((0..=pastdue::paddle::event::MAX_AMOUNT).contains(&invoice.amount_due));
                            prop_assert!(invoice.hosted_url.as_deref().is_none_or(pastdue::__internals::is_safe));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn in_house_event_bodies_of_any_shape_never_panic(
        data in arb_json(),
        kind in prop::sample::select(pastdue::events::TYPES.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let _ = pastdue::events::read(&bytes);
        let body = serde_json::to_vec(&json!({ "type": kind, "timestamp": "2026-11-02T10:00:00Z", "data": data })).unwrap();
        if let Ok(f) = pastdue::events::read(&body) {
            for change in &f.changes {
                if let pastdue::Change::InvoiceUnpaid { invoice, .. } = change {
                    prop_assert!((0..=pastdue::events::MAX_AMOUNT).contains(&invoice.amount_due));
                }
            }
        }
    }

    #[test]
    fn event_objects_of_any_shape_never_panic(object in arb_json(), kind in prop::sample::select(TYPES.to_vec()), created in any::<i64>()) {
        let body = serde_json::to_vec(&json!({ "id": "evt_1", "type": kind, "created": created, "data": { "object": object } })).unwrap();
        if let Ok(event) = Event::parse(&body) {
            if let Some(f) = facts(&event, "account_id") {
                // Whatever the shape, a fact never invents money from nothing.
                for change in &f.changes {
                    if let pastdue::Change::InvoiceUnpaid { invoice, .. } = change {
                        prop_assert!(invoice.amount_due > 0);
                    }
                }
            }
        }
    }

    #[test]
    fn config_text_never_panics(text in "(\\[[a-z_.]{0,10}\\]\n|[a-z_]{1,12} = (\"[a-z0-9:/.]{0,12}\"|[0-9]{1,5}|true|\\[\\])\n){0,8}") {
        let _ = Config::from_toml(&text);
    }

    #[test]
    fn env_overrides_never_panic(key in "PASTDUE_[A-Z_]{0,20}", value in ".{0,30}") {
        let _ = Config::load_from(None, vec![(key, value)]);
    }

    #[test]
    fn account_ids_follow_the_documented_alphabet(id in ".{0,140}") {
        let expected = !id.is_empty() && id.len() <= 128
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:@".contains(&b));
        prop_assert_eq!(AccountId::new(&id).is_ok(), expected);
    }

    #[test]
    fn accept_headers_never_panic(accept in ".{0,200}") {
        let _ = prefers_html(Some(&accept));
    }

    #[test]
    fn accept_headers_from_parts(parts in prop::collection::vec(("(text|application|image|\\*)/(html|json|problem\\+json|\\*|xml)", prop::option::of("q=(0(\\.[0-9]{0,3})?|1(\\.0{0,3})?)")), 0..6)) {
        let header = parts.iter().map(|(m, q)| match q { Some(q) => format!("{m};{q}"), None => m.clone() }).collect::<Vec<_>>().join(", ");
        let html = prefers_html(Some(&header));
        // Naming only JSON types never yields HTML.
        if parts.iter().all(|(m, _)| m.starts_with("application/")) {
            prop_assert!(!html, "{}", header);
        }
    }
}

/// Any representable time, from arbitrary `i64` seconds: chrono's range
/// is narrower than `i64`, so out-of-range values clamp to its ends.
fn any_time(secs: i64) -> chrono::DateTime<Utc> {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        chrono::DateTime::<Utc>::MIN_UTC
    } else {
        chrono::DateTime::<Utc>::MAX_UTC
    })
}

fn arb_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(8_210_266_876_799),  // chrono's last second
        Just(-8_334_601_228_800), // chrono's first second
        0i64..4_102_444_800,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Nothing stored can panic the gate: for a state with arbitrary times
    /// and amounts and any `now`, evaluating the ladder and rendering the
    /// 402 (page, problem+json, banner) never panics.
    #[test]
    fn evaluating_and_rendering_any_stored_state_never_panics(
        invoices in prop::collection::vec((arb_time(), arb_time(), any::<i64>()), 0..4),
        sub in proptest::option::of((arb_time(), prop::sample::select(vec!["active", "past_due", "canceled", "paused", "unpaid"]))),
        override_until in proptest::option::of(arb_time()),
        now in arb_time(),
    ) {
        use pastdue::state::{Change, Currency, Override, OverrideMode, SubscriptionFact, SubscriptionStatus, UnpaidInvoice};
        let mut state = pastdue::BillingState::default();
        for (i, (since, observed, amount)) in invoices.iter().enumerate() {
            state.apply(&Change::InvoiceUnpaid {
                id: format!("in_{i}"),
                invoice: UnpaidInvoice {
                    amount_due: *amount,
                    currency: Currency::new(if i % 2 == 0 { "eur" } else { "jpy" }).unwrap(),
                    hosted_url: Some("https://invoice.stripe.com/i/x".into()),
                    number: Some("N-1".into()),
                    since: any_time(*since),
                    observed: any_time(*observed),
                    uncollectible: false,
                    next_attempt: None,
                },
            });
        }
        if let Some((at, status)) = sub {
            state.apply(&Change::Subscription { id: "sub_1".into(), fact: SubscriptionFact::new(SubscriptionStatus::from_stripe(status), any_time(at)) });
        }
        if let Some(until) = override_until {
            state.apply(&Change::SetOverride(Override { mode: OverrideMode::Block, until: Some(any_time(until)), reason: "r".into(), by: "t".into(), at: any_time(until) }));
        }
        let page = pastdue::gate::PaymentPage::default();
        for ladder in [pastdue::Ladder::standard(), pastdue::Ladder::new([("late", std::time::Duration::from_secs(u64::MAX / 2), pastdue::Action::Block)]).unwrap()] {
            let standing = pastdue::Standing::evaluate(Some(&state), &ladder, any_time(now));
            let _ = page.render("acct", &standing, Some(&state), Some("de"));
            let _ = page.problem("acct", &standing);
            let _ = page.banner("acct", &standing, Some(&state), None);
            let _ = serde_json::to_string(&page.problem("acct", &standing)).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Link tokens from anywhere: verification never panics, and nothing
    /// but a token this signer made (for this purpose) is accepted.
    #[test]
    fn any_link_token_is_refused_without_panicking(token in ".{0,200}", b64 in "[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}") {
        let signer = pastdue::__internals::LinkSigner::new(&[9u8; 32], std::time::Duration::from_secs(60)).unwrap();
        for t in [token.as_str(), b64.as_str()] {
            prop_assert!(signer.verify(t, pastdue::__internals::Purpose::Pay, Utc::now()).is_err());
        }
    }

    /// Any string: the URL check never panics, and whatever it accepts is
    /// https, loopback http, or a path on this origin.
    #[test]
    fn the_url_check_accepts_only_safe_schemes(raw in ".{0,120}", tail in "[a-zA-Z0-9:/._%?#@-]{0,40}") {
        for url in [raw.clone(), format!("javascript:{tail}"), format!("https://{tail}"), format!("http://{tail}"), format!("/{tail}")] {
            if pastdue::__internals::is_safe(&url) {
                let lower = url.to_ascii_lowercase();
                prop_assert!(lower.starts_with("https://") || lower.starts_with("http://") || (url.starts_with('/') && !url.starts_with("//")), "{}", url);
                if lower.starts_with("http://") {
                    let host = url::Url::parse(&url).unwrap().host_str().unwrap().to_owned();
                    prop_assert!(host == "localhost" || host.starts_with("127.") || host == "[::1]", "{}", url);
                }
            }
        }
    }
}
