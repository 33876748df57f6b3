//! The `pastdue` binary as a process against a private Redis: `serve` and
//! its check endpoint, and the operator CLI (`status`, `explain`,
//! `override`, `ladder`, `check-config`), exit codes included.

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use pastdue::store::Store;
use pastdue::{AccountId, Config};

const BIN: &str = env!("CARGO_BIN_EXE_pastdue");

/// A ladder with a read-only stage, so `/check` can show method rules.
const CONFIG: &str = READ_ONLY_LADDER;

/// A private Redis and a config file (removed on drop).
struct Env {
    redis: RedisServer,
    config: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

impl Env {
    fn new(extra: &str) -> Self {
        let redis = RedisServer::start();
        let path = std::env::temp_dir().join(format!("pastdue-server-test-{}-{}.toml", std::process::id(), free_port()));
        std::fs::write(&path, format!("{CONFIG}\n{extra}")).unwrap();
        Self { redis, config: path }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("PASTDUE_CONFIG", &self.config)
            .env("PASTDUE_STORE__URL", self.redis.url())
            .env_remove("PASTDUE_ADMIN__TOKEN")
            .env_remove("PASTDUE_STRIPE__API_KEY");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    async fn store(&self) -> std::sync::Arc<dyn Store> {
        store_with(&self.redis.url(), relaxed()).await
    }
}

/// `pastdue serve`, stopped with SIGTERM on drop.
struct Served {
    child: Child,
    url: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Served {
    fn start(env: &Env, vars: &[(&str, &str)]) -> Self {
        let mut cmd = env.command(&["serve"]);
        cmd.env("PASTDUE_SERVER__LISTEN", "127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(20)).expect("serve says where it listens");
        let url = first.split("serving on ").nth(1).expect("a URL on the first line").trim().to_owned();
        Self { child, url, lines }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn acct(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

async fn debt(store: &std::sync::Arc<dyn Store>, account: &str, days_ago: i64) {
    store.apply(&acct(account), None, &[unpaid("in_1", 4_900, Utc::now() - TimeDelta::days(days_ago))]).await.unwrap();
}

async fn check(http: &reqwest::Client, url: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http.get(format!("{url}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// `serve` with only a store and a ladder: says what it serves, answers
/// `/check` with the layer's decision for the described request, `/page`
/// for nginx, health and metrics; stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_checks_the_way_the_layer_decides() {
    let env = Env::new("");
    let store = env.store().await;
    debt(&store, "late", 1).await;
    debt(&store, "readonly", 12).await;
    debt(&store, "gone", 25).await;
    let mut served = Served::start(&env, &[]);
    let said: Vec<String> = std::iter::from_fn(|| served.lines.recv_timeout(Duration::from_secs(5)).ok()).take_while(|l| !l.contains("metrics")).collect();
    let said = said.join("\n");
    assert!(said.contains("check: GET /check") && said.contains("admin API: off"), "{said}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = served.url.clone();
    let describe = |method: &'static str, uri: &'static str, account: &'static str| vec![("x-forwarded-method", method), ("x-forwarded-uri", uri), ("x-account-id", account)];

    // Good standing and unknown accounts pass untouched.
    let res = check(&http, &url, "/check", &describe("GET", "/api/x", "never-seen")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("billing-stage").is_none());
    // Cached now: answered from the proxy's headers as they are (#31), the same way.
    let res = check(&http, &url, "/check", &describe("GET", "/api/x", "never-seen")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("billing-stage").is_none());
    // A notice passes with its stage and the banner's text for the app.
    let res = check(&http, &url, "/check", &[("x-original-method", "POST"), ("x-original-uri", "/api/x"), ("x-account-id", "late"), ("accept-language", "de")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["billing-stage"], "notice");
    let banner = res.headers()["billing-banner"].to_str().unwrap().to_owned();
    let banner: String = form_urlencoded::parse(format!("b={banner}").as_bytes()).map(|(_, v)| v.into_owned()).collect();
    assert!(banner.contains("49,00") && banner.contains("€"), "German, with the amount: {banner}");
    // read_only: the original method decides.
    assert_eq!(check(&http, &url, "/check", &describe("GET", "/api/x", "readonly")).await.status(), 200);
    let res = check(&http, &url, "/check", &describe("POST", "/api/x", "readonly")).await;
    assert_eq!((res.status().as_u16(), res.headers()["billing-stage"].to_str().unwrap()), (402, "read_only"));
    // Suspended: the page for a browser, problem+json for an API client.
    let mut browser = describe("GET", "/dashboard", "gone");
    browser.push(("accept", "text/html"));
    let res = check(&http, &url, "/check", &browser).await;
    assert_eq!(res.status(), 402);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(res.text().await.unwrap().contains("49.00"));
    let mut api = describe("GET", "/api/x", "gone");
    api.push(("accept", "application/json"));
    let res = check(&http, &url, "/check", &api).await;
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // The app's billing pages (check.exempt) pass whatever the account
    // owes; the app's own /admin or /webhooks do not (gate.exempt describes
    // pastdue's routes, not the proxied app's).
    assert!(said.contains("check exempt (the proxied app's paths that always pass): /billing, /billing/**"), "{said}");
    assert_eq!(check(&http, &url, "/check", &describe("GET", "/billing/invoices", "gone")).await.status(), 200);
    for gated in ["/admin/users", "/webhooks/x", "/healthz", "/metrics", "/static/app.js"] {
        assert_eq!(check(&http, &url, "/check", &describe("GET", gated, "gone")).await.status(), 402, "{gated}");
    }
    // #25: the client's X-Forwarded-* never wins over the proxy's
    // X-Original-*: two families that disagree are refused, counted.
    for attack in [
        [("x-original-method", "GET"), ("x-original-uri", "/api/x"), ("x-forwarded-uri", "/billing/x"), ("x-account-id", "gone")],
        [("x-original-method", "POST"), ("x-original-uri", "/api/x"), ("x-forwarded-method", "GET"), ("x-account-id", "readonly")],
    ] {
        assert_eq!(check(&http, &url, "/check", &attack).await.status(), 400, "{attack:?}");
        assert_eq!(check(&http, &url, "/page", &attack).await.status(), 400, "{attack:?}");
    }
    // Dot segments never reach an exempt glob.
    for dots in ["/billing/../api/projects", "/billing/%2e%2e/api/projects", "/billing/%2E%2E%2Fapi"] {
        assert_eq!(check(&http, &url, "/check", &describe("GET", dots, "gone")).await.status(), 400, "{dots}");
    }
    // The header the check uses internally cannot be sent from outside.
    assert_eq!(check(&http, &url, "/check", &[("x-forwarded-uri", "/x"), ("x-pastdue-check-account", "gone")]).await.status(), 200);
    // Two account headers are ambiguous, as in the layer.
    assert_eq!(check(&http, &url, "/check", &[("x-forwarded-uri", "/x"), ("x-account-id", "late"), ("x-account-id", "gone")]).await.status(), 400);
    // A proxy that does not describe the request is refused, never passed.
    assert_eq!(check(&http, &url, "/check", &[("x-account-id", "gone")]).await.status(), 400);
    assert_eq!(check(&http, &url, "/check", &describe("GET", "http://evil.test/", "gone")).await.status(), 400);
    // /page answers the 402 itself; a request that may pass goes back.
    assert_eq!(check(&http, &url, "/page", &browser).await.status(), 402);
    let back = check(&http, &url, "/page", &describe("GET", "/api/x?tab=2", "late")).await;
    assert_eq!((back.status().as_u16(), back.headers()["location"].to_str().unwrap()), (303, "/api/x?tab=2"));
    let back = check(&http, &url, "/page", &describe("GET", "//evil.test/x", "late")).await;
    assert_eq!(back.headers()["location"], "/", "never an open redirect");
    let back = check(&http, &url, "/page", &describe("GET", "/\\evil.test/", "late")).await;
    assert_eq!(back.headers()["location"], "/", "browsers read /\\host as //host");

    // A debt written after an account in good standing was cached is
    // heard: its checks block from then on, never served from the old entry.
    debt(&store, "never-seen", 25).await;
    let blocked = until(Duration::from_secs(10), || async { check(&http, &url, "/check", &describe("GET", "/api/x", "never-seen")).await.status() == 402 }).await;
    assert!(blocked, "the write never reached the sidecar's cache");
    assert_eq!(check(&http, &url, "/page", &describe("GET", "/api/x", "never-seen")).await.status(), 402);

    assert_eq!(check(&http, &url, "/readyz", &[]).await.status(), 200);
    let metrics = check(&http, &url, "/metrics", &[]).await.text().await.unwrap();
    assert!(metrics.contains("pastdue_decisions_total"), "{metrics}");
    assert!(metrics.contains("pastdue_checks_refused_total{reason=\"conflicting\"} 4"), "{metrics}");
    assert!(metrics.contains("pastdue_checks_refused_total{reason=\"dot_segments\"} 3"), "{metrics}");

    let status = served.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status:?}");
}

/// `check.deny_status = 403` for nginx's auth_request: blocked checks say
/// 403 (401 stays 401); `/page` still answers 402.
/// With `banner.before_due`, a check for an account in good standing with
/// an invoice due soon passes with the reminder in `Billing-Banner` (and no
/// `Billing-Stage`: it never gates); a renewal Stripe charges itself has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_carry_the_before_due_reminder() {
    let env = Env::new("[banner]\nbefore_due = \"3d\"");
    let store = env.store().await;
    let now = Utc::now();
    store.apply(&acct("soon"), None, &[upcoming("in_soon", 4_900, now + TimeDelta::days(2), now)]).await.unwrap();
    store.apply(&acct("renewing"), None, &[upcoming("upcoming:sub_1", 4_900, now + TimeDelta::days(1), now)]).await.unwrap();
    let served = Served::start(&env, &[]);
    let http = reqwest::Client::new();
    let describe = |account: &'static str| [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api/x"), ("x-account-id", account), ("accept-language", "fr")];
    let res = check(&http, &served.url, "/check", &describe("soon")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("billing-stage").is_none(), "a reminder never gates");
    let banner = res.headers()["billing-banner"].to_str().unwrap().to_owned();
    let banner: String = form_urlencoded::parse(format!("b={banner}").as_bytes()).map(|(_, v)| v.into_owned()).collect();
    assert!(banner.starts_with("Votre facture de 49,00") && banner.contains("arrive à échéance le"), "French: {banner}");
    let res = check(&http, &served.url, "/check", &describe("renewing")).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("billing-banner").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_status_403_for_nginx() {
    let env = Env::new("");
    debt(&env.store().await, "gone", 25).await;
    let served = Served::start(&env, &[("PASTDUE_CHECK__DENY_STATUS", "403")]);
    let http = reqwest::Client::new();
    let described = [("x-original-uri", "/x"), ("x-account-id", "gone")];
    assert_eq!(check(&http, &served.url, "/check", &described).await.status(), 403);
    assert_eq!(check(&http, &served.url, "/page", &described).await.status(), 402);
    // A refused description is a 403 for auth_request too (any other status
    // is nginx's own 500); /page then answers the 400 that says why.
    let dots = [("x-original-uri", "/billing/../x"), ("x-account-id", "gone")];
    assert_eq!(check(&http, &served.url, "/check", &dots).await.status(), 403);
    assert_eq!(check(&http, &served.url, "/page", &dots).await.status(), 400);
}

/// The operator CLI against the same store: status (text and the admin
/// API's JSON), override with its audit entry, explain's timeline, the
/// ladder, check-config; exit codes as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_answers_support_questions() {
    let env = Env::new("");
    let store = env.store().await;
    debt(&store, "acme", 12).await;

    let out = env.run(&["status", "acme"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("read_only") && text.contains("49.00 EUR") && text.contains("suspended on"), "{text}");

    let out = env.run(&["status", "acme", "--json"]);
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((view["stage"].as_str(), view["amount_due"].as_i64(), view["next_stage"].as_str()), (Some("read_only"), Some(4900), Some("suspended")));

    let out = env.run(&["status", "nobody"]);
    assert_eq!(out.status.code(), Some(3), "unknown account: exit 3");
    assert!(String::from_utf8_lossy(&out.stdout).contains("never heard of"));

    let out = env.run(&["override", "acme", "allow", "--until", "7d", "--reason", "CFO promised payment"]);
    assert!(out.status.success(), "{out:?}");
    let state = store.load(&acct("acme")).await.unwrap().unwrap();
    assert_eq!(state.override_().map(|o| (o.by.as_str(), o.reason.as_str())), Some(("cli", "CFO promised payment")));
    let audit = store.audit_log(Some(&acct("acme")), None, 10).await.unwrap();
    assert!(audit.iter().any(|e| e.who == "cli" && e.action == "override.set"), "{audit:?}");
    assert_eq!(env.run(&["override", "acme", "block", "--reason", " "]).status.code(), Some(2), "a reason is required");
    assert_eq!(env.run(&["override", "acme", "block", "--until", "yesterday", "--reason", "x"]).status.code(), Some(2));

    let out = env.run(&["explain", "acme"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("invoice in_1 unpaid") && text.contains("stage read_only") && text.contains("override.set — CFO promised payment [cli]"), "{text}");
    let out = env.run(&["explain", "acme", "--json"]);
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(events.as_array().unwrap().iter().any(|e| e["source"] == "ladder" && e["ahead"] == true), "the suspension still ahead: {events}");

    let out = env.run(&["override", "acme", "clear", "--reason", "paid"]);
    assert!(out.status.success());
    assert!(store.load(&acct("acme")).await.unwrap().unwrap().override_().is_none());

    // How to reach the account: validated, audited as the CLI, shown by status.
    let out = env.run(&["contacts", "acme", "--timezone", "Asia/Kathmandu", "--billing-phone", "+37120000000", "--accountant", "acc@acme.example"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("time zone Asia/Kathmandu, billing phone +37120000000") && text.contains("accountant acc@acme.example"), "{text}");
    let audit = store.audit_log(Some(&acct("acme")), None, 10).await.unwrap();
    assert!(audit.iter().any(|e| e.who == "cli" && e.action == "contacts.set"), "{audit:?}");
    for (flag, value) in [("--timezone", "Mars/Olympus"), ("--billing-phone", "0123"), ("--accountant", "nope")] {
        let out = env.run(&["contacts", "acme", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(flag), "names the flag: {out:?}");
    }
    let out = env.run(&["contacts", "acme", "--billing-phone", "none"]);
    assert!(out.status.success());
    assert!(store.load(&acct("acme")).await.unwrap().unwrap().billing_phone().is_none(), "none removes it");

    // A promise to pay: status shows it (and which ladder, why), explain
    // puts it on the timeline with what becomes of it.
    let now = chrono::Utc::now();
    let promise = pastdue::state::Promise { at: now, until: now + TimeDelta::days(3), reason: "paying Friday".into(), by: "support".into() };
    store.apply(&acct("acme"), None, &[pastdue::Change::Promise(promise)]).await.unwrap();
    let text = String::from_utf8(env.run(&["status", "acme"]).stdout).unwrap();
    assert!(text.contains("because promised") && text.contains("— pending (paying Friday)") && text.contains("ladder      default (default:"), "{text}");
    let text = String::from_utf8(env.run(&["explain", "acme"]).stdout).unwrap();
    assert!(text.contains("promise to pay by") && text.contains("promise falls due"), "{text}");

    // #26: a settled invoice keeps its whole story — owed since when, how
    // much, and whether it was paid or voided.
    store.apply(&acct("acme"), None, &[pastdue::Change::InvoiceSettled { id: "in_1".into(), at: chrono::Utc::now() }]).await.unwrap();
    debt(&store, "written-off", 20).await;
    store.apply(&acct("written-off"), None, &[pastdue::Change::InvoiceVoided { id: "in_1".into(), at: chrono::Utc::now() }]).await.unwrap();
    let text = String::from_utf8(env.run(&["explain", "acme"]).stdout).unwrap();
    assert!(text.contains("invoice in_1 unpaid: 49.00 EUR") && text.contains("invoice in_1 paid: 49.00 EUR") && !text.contains("paid or voided"), "{text}");
    let text = String::from_utf8(env.run(&["explain", "written-off"]).stdout).unwrap();
    assert!(text.contains("invoice in_1 voided: 49.00 EUR"), "{text}");

    let out = env.run(&["ladder"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("read_only") && text.contains("10 days"), "{text}");

    assert!(env.run(&["check-config"]).status.success());
    // It says which billing providers are on, and what each does.
    let out = env
        .command(&["check-config"])
        .env("PASTDUE_PADDLE__WEBHOOK_SECRET", "pdl_ntfset_01hcheckconfig")
        .env("PASTDUE_EVENTS__WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("paddle (webhook)") && text.contains("events (webhook)"), "{text}");
    let out = env.command(&["check-config"]).env("PASTDUE_PADDLE__WEBHOOK_SECRET", "short").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("paddle.webhook_secret"), "names the key: {out:?}");
    let out = env.command(&["check-config"]).env("PASTDUE_CHECK__JWT_ALGORITHM", "HS256").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("check.jwt_issuer"), "names the key: {out:?}");
    let out = env.command(&["status", "acme"]).env("PASTDUE_GATE__UNKNOWN", "maybe").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "bad configuration: exit 2");
    let out = env.command(&["status", "acme"]).env("PASTDUE_STORE__URL", format!("redis://127.0.0.1:{}", free_port())).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "store unreachable: exit 1");
    for command in ["serve", "status", "explain", "override", "contacts", "sync", "ladder", "check-config"] {
        let out = Command::new(BIN).args([command, "--help"]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{command} --help");
    }
    // #26: --help names every configuration source; --config FILE is
    // PASTDUE_CONFIG.
    let help = String::from_utf8(Command::new(BIN).arg("--help").output().unwrap().stdout).unwrap();
    assert!(help.contains("--config") && help.contains("PASTDUE_CONFIG") && help.contains("PASTDUE_<SECTION>__<KEY>") && help.contains("is not read"), "{help}");
    let out = env.command(&["ladder", "--config"]).arg(&env.config).env_remove("PASTDUE_CONFIG").output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("read_only"), "the file's ladder: {out:?}");
    let out = env.command(&["ladder"]).env_remove("PASTDUE_CONFIG").output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("read_only"), "without it, the built-in ladder");
    // A command that reads or changes state refuses memory:// (a private,
    // empty store of its own) instead of reporting a success nobody sees.
    for args in [&["status", "acme"][..], &["explain", "acme"], &["override", "acme", "block", "--reason", "x"]] {
        let out = env.command(args).env("PASTDUE_STORE__URL", "memory://").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("memory://"), "{out:?}");
    }
}

/// JWTs are verified, never trusted: signature, algorithm, `exp`, `iss`,
/// `aud` and the claim, for HS256 (secret), RS256 (PEM file) and ES256
/// (JWKS file, by kid); a bad key configuration names its key.
#[test]
fn jwts_are_verified_never_trusted() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use pastdue::check::jwt::JwtVerifier;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
    let secret = "a-jwt-secret-of-at-least-32-bytes!";
    let base = |alg: &str, key: &str, jwks: &str| {
        let mut c = Config::default().check;
        c.jwt_algorithm = alg.into();
        c.jwt_key = key.into();
        c.jwt_jwks = jwks.into();
        c.jwt_issuer = "https://auth.test".into();
        c.jwt_audience = "app".into();
        c.jwt_cookie = "session".into();
        c
    };
    let claims = |sub: &str, iss: &str, aud: &str, exp: i64| serde_json::json!({ "sub": sub, "iss": iss, "aud": aud, "exp": Utc::now().timestamp() + exp });
    let good = claims("acme", "https://auth.test", "app", 600);
    let bearer = |token: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    };
    let hs = |claims: &serde_json::Value, key: &str| encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(key.as_bytes())).unwrap();

    let v = JwtVerifier::new(&base("HS256", secret, "")).unwrap().unwrap();
    assert_eq!(v.account(&bearer(&hs(&good, secret))).unwrap().as_deref(), Some("acme"));
    assert_eq!(v.account(&http::HeaderMap::new()).unwrap(), None, "no token: no account");
    let mut cookie = http::HeaderMap::new();
    cookie.insert("cookie", format!("theme=dark; session={}", hs(&good, secret)).parse().unwrap());
    assert_eq!(v.account(&cookie).unwrap().as_deref(), Some("acme"), "the token from its cookie");
    let refused = [
        hs(&good, "another-secret-of-at-least-32-bytes"),
        hs(&claims("acme", "https://auth.test", "app", -3600), secret),
        hs(&claims("acme", "https://evil.test", "app", 600), secret),
        hs(&claims("acme", "https://auth.test", "other-app", 600), secret),
        hs(&serde_json::json!({ "sub": "acme", "iss": "https://auth.test", "aud": "app" }), secret),
        hs(&serde_json::json!({ "iss": "https://auth.test", "aud": "app", "exp": Utc::now().timestamp() + 600 }), secret),
        // alg none: unsigned.
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", base64_url(&good.to_string())),
        "garbage".into(),
    ];
    for token in &refused {
        assert!(v.account(&bearer(token)).is_err(), "refused: {token}");
    }
    let mut two = bearer(&hs(&good, secret));
    two.append("authorization", "Bearer x".parse().unwrap());
    assert!(v.account(&two).is_err(), "two Authorization headers");
    let mut basic = http::HeaderMap::new();
    basic.insert("authorization", "Basic YWNtZTpwdw==".parse().unwrap());
    assert!(v.account(&basic).is_err(), "not a bearer token: refused, not ignored");

    // #25: the cookie is read the way Flask reads it — a blank before `=`
    // or a Latin-1 byte in another cookie never hides the token.
    let good_token = hs(&good, secret);
    let cookies = |value: Vec<u8>| {
        let mut h = http::HeaderMap::new();
        h.insert("cookie", http::HeaderValue::from_bytes(&value).unwrap());
        h
    };
    for header in [format!("session ={good_token}").into_bytes(), [&b"lang=\xe9; session="[..], good_token.as_bytes()].concat()] {
        assert_eq!(v.account(&cookies(header.clone())).unwrap().as_deref(), Some("acme"), "{}", String::from_utf8_lossy(&header));
    }
    // A token cookie pastdue cannot read is refused, never "no account".
    assert!(v.account(&cookies(b"session=\xe9x".to_vec())).is_err());
    assert!(v.account(&cookies(format!("session={good_token}; session =x").into_bytes())).is_err());
    // Bearer and cookie naming different accounts: 401; the same: fine.
    let other = hs(&claims("paying", "https://auth.test", "app", 600), secret);
    let mut both = bearer(&other);
    both.insert("cookie", format!("session={good_token}").parse().unwrap());
    assert!(v.account(&both).is_err(), "bearer and cookie disagree");
    let mut same = bearer(&good_token);
    same.insert("cookie", format!("session={good_token}").parse().unwrap());
    assert_eq!(v.account(&same).unwrap().as_deref(), Some("acme"));
    // nbf: a token not valid until 2096 is refused; one valid since a minute ago is fine.
    let mut later = good.clone();
    later["nbf"] = serde_json::json!(3_976_300_800_i64);
    assert!(v.account(&bearer(&hs(&later, secret))).is_err(), "nbf in the future");
    let mut earlier = good.clone();
    earlier["nbf"] = serde_json::json!(Utc::now().timestamp() - 60);
    assert_eq!(v.account(&bearer(&hs(&earlier, secret))).unwrap().as_deref(), Some("acme"));

    // RS256 with a PEM public key; an HS256 token signed with that public
    // key as its secret (algorithm confusion) is refused.
    let rs = JwtVerifier::new(&base("RS256", &format!("{fixtures}/rs256.pub"), "")).unwrap().unwrap();
    let private = std::fs::read(format!("{fixtures}/rs256.key")).unwrap();
    let token = encode(&Header::new(Algorithm::RS256), &good, &EncodingKey::from_rsa_pem(&private).unwrap()).unwrap();
    assert_eq!(rs.account(&bearer(&token)).unwrap().as_deref(), Some("acme"));
    let public = std::fs::read_to_string(format!("{fixtures}/rs256.pub")).unwrap();
    assert!(rs.account(&bearer(&hs(&good, &public))).is_err(), "algorithm confusion");

    // ES256 from a JWKS file, by kid.
    let es = JwtVerifier::new(&base("ES256", "", &format!("{fixtures}/es256.jwks.json"))).unwrap().unwrap();
    let private = std::fs::read(format!("{fixtures}/es256.key")).unwrap();
    let key = EncodingKey::from_ec_pem(&private).unwrap();
    let with_kid = |kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        encode(&h, &good, &key).unwrap()
    };
    assert_eq!(es.account(&bearer(&with_kid("es-1"))).unwrap().as_deref(), Some("acme"));
    assert!(es.account(&bearer(&with_kid("es-2"))).is_err(), "an unknown kid");

    // Bad configurations name their key.
    let named = |c: pastdue::config::CheckConfig| match JwtVerifier::new(&c) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    assert!(named(base("HS256", "short", "")).contains("check.jwt_key"));
    assert!(named(base("RS256", "/nonexistent.pem", "")).contains("check.jwt_key"));
    assert!(named(base("ES256", "", "/nonexistent.json")).contains("check.jwt_jwks"));
    assert!(named(base("HS512", secret, "")).contains("check.jwt_algorithm"));
    assert!(named(base("ES256", &format!("{fixtures}/rs256.pub"), "")).contains("check.jwt_key"), "an RSA key for ES256");
    let mut no_aud = base("HS256", secret, "");
    no_aud.jwt_audience.clear();
    assert!(named(no_aud).contains("check.jwt_audience"));
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
