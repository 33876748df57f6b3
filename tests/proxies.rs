//! Real reverse proxies in front of a tiny upstream, asking a pastdue
//! server: nginx (`auth_request`) and Caddy (`forward_auth`), each run
//! with the configuration documented in `docs/proxies/` (only the
//! addresses substituted), so the documentation cannot rot. The account
//! comes from a JWT pastdue verifies.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::Router;
use chrono::{TimeDelta, Utc};
use common::*;
use jsonwebtoken::{EncodingKey, Header};
use pastdue::store::Store;
use pastdue::{AccountId, Config, MemoryStore};

const SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://auth.example.test";
const AUDIENCE: &str = "app";
const WEBHOOK_SECRET: &str = "whsec_through_the_proxy";

/// What reached the upstream: method, path, Billing-Stage, Billing-Banner.
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Option<String>)>>>;

async fn upstream() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    async fn record(State(seen): State<Seen>, req: Request) -> &'static str {
        let h = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap_or("?").to_owned());
        seen.lock().unwrap().push((req.method().to_string(), req.uri().path().to_owned(), h("billing-stage"), h("billing-banner")));
        "from the upstream"
    }
    let app = Router::new().fallback(record).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

/// A pastdue server (in process) on a memory store, verifying HS256 JWTs.
async fn sidecar(deny_status: u16) -> (SocketAddr, Arc<dyn Store>) {
    let mut config = Config::from_toml(READ_ONLY_LADDER).unwrap();
    config.check.deny_status = deny_status;
    config.check.jwt_algorithm = "HS256".into();
    config.check.jwt_key = SECRET.into();
    config.check.jwt_issuer = ISSUER.into();
    config.check.jwt_audience = AUDIENCE.into();
    config.check.jwt_cookie = "jwt".into();
    config.stripe.webhook_secret = WEBHOOK_SECRET.into();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for (account, days_ago) in [("late", 1), ("readonly", 12), ("gone", 25)] {
        let account = AccountId::new(account).unwrap();
        store.apply(&account, None, &[unpaid("in_1", 4_900, Utc::now() - TimeDelta::days(days_ago))]).await.unwrap();
    }
    let server = pastdue::server::build(&config, store.clone(), pastdue::clock::system(), None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(pastdue::server::serve(server, listener, std::future::pending()));
    (addr, store)
}

fn token(account: &str, expires_in: i64, secret: &str) -> String {
    let claims = serde_json::json!({ "sub": account, "iss": ISSUER, "aud": AUDIENCE, "exp": Utc::now().timestamp() + expires_in });
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A proxy process, killed on drop, with its scratch directory.
struct Proxy {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The documented configuration, with its placeholder addresses replaced.
fn documented(file: &str, pastdue: SocketAddr, app: SocketAddr, listen: (&str, &str)) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/proxies").join(file)).unwrap();
    assert!(text.contains("127.0.0.1:3000") && text.contains("127.0.0.1:8080") && text.contains(listen.0), "{file} has its placeholders");
    text.replace("127.0.0.1:3000", &pastdue.to_string()).replace("127.0.0.1:8080", &app.to_string()).replace(listen.0, listen.1)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pastdue-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let up = eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;
    if !up {
        let _ = child.kill();
        let out = child.wait_with_output_lossy();
        panic!("{what} did not start: {out}");
    }
}

trait Lossy {
    fn wait_with_output_lossy(&mut self) -> String;
}

impl Lossy for Child {
    fn wait_with_output_lossy(&mut self) -> String {
        let _ = self.wait();
        let mut out = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut out);
        }
        out
    }
}

async fn nginx(pastdue: SocketAddr, app: SocketAddr) -> Proxy {
    let dir = scratch("nginx");
    let port = free_port();
    let site = documented("nginx.conf", pastdue, app, ("listen 8000;", &format!("listen 127.0.0.1:{port};")));
    std::fs::write(dir.join("site.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let bin = if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
    let mut child = Command::new(bin)
        .args(["-p", &dir.display().to_string(), "-c", &dir.join("nginx.conf").display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx (scripts/test.sh installs it)");
    wait_listening(port, &mut child, "nginx").await;
    Proxy { child, dir, url: format!("http://127.0.0.1:{port}") }
}

async fn caddy(pastdue: SocketAddr, app: SocketAddr) -> Proxy {
    let dir = scratch("caddy");
    let port = free_port();
    let config = documented("Caddyfile", pastdue, app, (":8000 {", &format!("http://127.0.0.1:{port} {{")));
    std::fs::write(dir.join("Caddyfile"), config).unwrap();
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config", &dir.join("Caddyfile").display().to_string()])
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("caddy (scripts/test.sh installs it)");
    wait_listening(port, &mut child, "caddy").await;
    Proxy { child, dir, url: format!("http://127.0.0.1:{port}") }
}

/// The same cases through any proxy.
async fn through(proxy: &Proxy, seen: &Seen, store: &Arc<dyn Store>) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: &str, account: Option<&str>, accept: &str| {
        let mut req = http.get(format!("{}{path}", proxy.url)).header("accept", accept);
        if let Some(a) = account {
            req = req.bearer_auth(token(a, 600, SECRET));
        }
        req
    };
    let reached = |path: &str| seen.lock().unwrap().iter().filter(|(_, p, ..)| p == path).cloned().collect::<Vec<_>>();

    // Good standing: passes untouched; a client's own Billing-Stage never
    // reaches the app.
    let res = get("/a/paying", Some("paying"), "text/html").header("billing-stage", "forged").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "from the upstream");
    assert_eq!(reached("/a/paying")[0].2, None, "no stage header for good standing, not the client's");

    // notice: passes, the app gets the stage and the banner.
    let res = get("/a/late", Some("late"), "text/html").header("billing-stage", "active").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (_, _, stage, banner) = reached("/a/late")[0].clone();
    assert_eq!(stage.as_deref(), Some("notice"));
    assert!(banner.is_some_and(|b| b.contains("49.00")), "the banner's text, percent-encoded");

    // Suspended: the page for a browser, problem+json for an API client;
    // the upstream never sees either.
    let res = get("/a/gone", Some("gone"), "text/html").send().await.unwrap();
    assert_eq!(res.status(), 402);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(res.text().await.unwrap().contains("49.00"), "the page says how much");
    let res = get("/a/gone", Some("gone"), "application/json").send().await.unwrap();
    assert_eq!(res.status(), 402);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(reached("/a/gone").is_empty(), "a blocked request never reaches the app");

    // read_only: a GET passes, a POST is blocked.
    assert_eq!(get("/a/readonly", Some("readonly"), "application/json").send().await.unwrap().status(), 200);
    let res = http.post(format!("{}/a/readonly", proxy.url)).bearer_auth(token("readonly", 600, SECRET)).header("accept", "application/json").body("x").send().await.unwrap();
    assert_eq!(res.status(), 402);
    assert_eq!(reached("/a/readonly").iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["GET"]);

    // The app's billing pages (check.exempt) pass whatever the account
    // owes; the app's own /admin does not (gate.exempt is pastdue's).
    assert_eq!(get("/billing/invoices", Some("gone"), "text/html").send().await.unwrap().status(), 200);
    assert_eq!(reached("/billing/invoices").len(), 1);
    for gated in ["/admin/users", "/webhooks/other", "/healthz"] {
        assert_eq!(get(gated, Some("gone"), "application/json").send().await.unwrap().status(), 402, "{gated}");
        assert!(reached(gated).is_empty(), "{gated}");
    }

    // Forged or expired tokens are refused, never taken as "no account".
    for bad in [token("gone", 600, "another-secret-of-at-least-32-bytes"), token("gone", -3600, SECRET), "not.a.jwt".into()] {
        let res = http.get(format!("{}/a/forged", proxy.url)).bearer_auth(bad).send().await.unwrap();
        assert_eq!(res.status(), 401);
    }
    assert!(reached("/a/forged").is_empty());
    // With a token, an account header the client adds names nobody: a
    // paying customer cannot read (or pay) a suspended one's page.
    let res = get("/a/own", Some("paying"), "text/html").header("x-account-id", "gone").send().await.unwrap();
    assert_eq!(res.status(), 200, "the token's account decides, not the header");
    // No token at all: no account, the request passes like the layer's.
    assert_eq!(get("/a/anonymous", None, "text/html").send().await.unwrap().status(), 200);

    attacks(proxy, seen).await;
    a_signed_webhook_arrives(proxy, store).await;
}

/// #25, through the proxy as an attacker would try it: a suspended
/// customer's own `X-Forwarded-*`/`X-Original-*` headers, dot segments,
/// and cookies spelled the way only the app reads them. Each is blocked
/// (or refused) and never reaches the app.
async fn attacks(proxy: &Proxy, seen: &Seen) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let reached = |path: &str| seen.lock().unwrap().iter().filter(|(_, p, ..)| p == path).count();
    let gone = token("gone", 600, SECRET);

    // The client's own description of the request never wins.
    for (name, value) in [
        ("x-forwarded-uri", "/billing/x"),
        ("x-original-uri", "/billing/x"),
        ("x-forwarded-uri", "/healthz"),
        ("x-original-uri", "/billing"),
    ] {
        let res = http.get(format!("{}/a/forwarded", proxy.url)).bearer_auth(&gone).header(name, value).header("accept", "application/json").send().await.unwrap();
        assert_eq!(res.status(), 402, "{name}: {value}");
    }
    assert_eq!(reached("/a/forwarded"), 0);
    // A write under read_only cannot pass as a GET.
    let readonly = token("readonly", 600, SECRET);
    for name in ["x-forwarded-method", "x-original-method"] {
        let res = http.post(format!("{}/a/method", proxy.url)).bearer_auth(&readonly).header(name, "GET").header("accept", "application/json").body("x").send().await.unwrap();
        assert_eq!(res.status(), 402, "{name}");
    }
    assert_eq!(reached("/a/method"), 0);

    // Dot segments (sent raw: an HTTP client library would resolve them).
    for path in ["/billing/../a/dots", "/billing/%2e%2e/a/dots", "/billing/..%2Fa/dots", "/billing/..;/a/dots", "/billing/%252e%252e/a/dots"] {
        let status = raw_get(&proxy.url, path, &[("authorization", format!("Bearer {gone}").as_str())]).await;
        assert!(status == 400 || status == 402, "{path}: {status}");
    }
    assert!(seen.lock().unwrap().iter().all(|(_, p, ..)| !p.contains("dots")), "a dot-segment path never reached the app");

    // The token cookie the way Flask reads it: a blank before `=`, a
    // Latin-1 byte in another cookie. Both name the suspended account.
    for cookie in [format!("jwt ={gone}").into_bytes(), [&b"lang=\xe9; jwt="[..], gone.as_bytes()].concat()] {
        let res = http
            .get(format!("{}/a/cookie", proxy.url))
            .header("cookie", http::HeaderValue::from_bytes(&cookie).unwrap())
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 402, "{}", String::from_utf8_lossy(&cookie));
    }
    // A cookie Python frameworks read as `jwt` (they strip U+00A0) beside
    // a paying account's plain one: refused, never the paying one's pass.
    let paying = token("paying", 600, SECRET);
    let disguised = [&b"jwt\xc2\xa0="[..], gone.as_bytes(), b"; jwt=", paying.as_bytes()].concat();
    let res = http.get(format!("{}/a/cookie", proxy.url)).header("cookie", http::HeaderValue::from_bytes(&disguised).unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 401);
    // A paying customer's bearer with the suspended one's cookie: refused.
    let res = http.get(format!("{}/a/cookie", proxy.url)).bearer_auth(token("paying", 600, SECRET)).header("cookie", format!("jwt={gone}")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(reached("/a/cookie"), 0);
    // A verified token naming no usable account is refused on every path,
    // the app's always-open billing pages too (#31: never a plain pass).
    let unusable = token("a\u{1}b", 600, SECRET);
    let res = http.get(format!("{}/billing/unusable", proxy.url)).bearer_auth(&unusable).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(reached("/billing/unusable"), 0);
}

/// A Stripe webhook signed the way Stripe signs reaches pastdue through
/// the proxy at `stripe.webhook_path` (never the app) and is applied.
async fn a_signed_webhook_arrives(proxy: &Proxy, store: &Arc<dyn Store>) {
    let account = format!("hooked-{}", free_port());
    let body = serde_json::to_vec(&serde_json::json!({
        "id": format!("evt_{account}"), "type": "invoice.payment_failed", "created": Utc::now().timestamp(),
        "data": { "object": { "id": "in_hook", "object": "invoice", "customer": "cus_hook", "amount_due": 4_900, "currency": "eur",
            "subscription_details": { "metadata": { "account_id": account } } } }
    }))
    .unwrap();
    let signature = pastdue::signature::sign(WEBHOOK_SECRET, Utc::now().timestamp(), &body);
    let res = reqwest::Client::new()
        .post(format!("{}/webhooks/stripe", proxy.url))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    let state = store.load(&AccountId::new(&account).unwrap()).await.unwrap().expect("applied");
    assert!(state.unpaid().contains_key("in_hook"));
    let res = reqwest::Client::new().post(format!("{}/webhooks/stripe", proxy.url)).header("stripe-signature", "t=1,v1=00").body("{}").send().await.unwrap();
    assert_eq!(res.status(), 400, "a bad signature is pastdue's 400, not the app's");
}

/// A GET sent byte for byte (no client-side path normalisation); the
/// response's status code.
async fn raw_get(base: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_with_the_documented_config() {
    let (app, seen) = upstream().await;
    let (pastdue, store) = sidecar(403).await;
    let proxy = nginx(pastdue, app).await;
    through(&proxy, &seen, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_with_the_documented_config() {
    let (app, seen) = upstream().await;
    let (pastdue, store) = sidecar(402).await;
    let proxy = caddy(pastdue, app).await;
    through(&proxy, &seen, &store).await;
}
