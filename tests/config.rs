//! Loading configuration: defaults, a replacing file, env overrides, and
//! clear refusals.

use std::time::Duration;

use pastdue::config::{parse_duration, Config, ConfigError, Fallback};
use pastdue::Action;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir().join(format!("pastdue-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{:x}.toml", rand_suffix()));
    if let Some(text) = file {
        std::fs::write(&path, text).unwrap();
    }
    let r = Config::load_from(file.map(|_| path.as_path()), env(vars));
    let _ = std::fs::remove_file(&path);
    r
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn key_error(r: Result<Config, ConfigError>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("config was accepted"),
    }
}

#[test]
fn defaults_match_the_design() {
    let c = Config::default();
    assert_eq!(c.store.url, "memory://");
    assert_eq!(c.gate.unknown, Fallback::Allow);
    assert_eq!(c.gate.on_store_error, Fallback::Allow);
    assert_eq!(c.gate.account_header, "X-Account-Id");
    let ladder = c.ladder().unwrap();
    let stages: Vec<_> = ladder.stages().iter().map(|s| (s.name().to_owned(), s.after(), s.action())).collect();
    assert_eq!(
        stages,
        [
            ("notice".to_owned(), Duration::ZERO, Action::Notice),
            ("warning".to_owned(), Duration::from_secs(14 * 86_400), Action::Warn),
            ("suspended".to_owned(), Duration::from_secs(17 * 86_400), Action::Block),
        ]
    );
    assert_eq!(ladder.canceled().action(), Action::Block);
    assert!(c.store.read_timeout <= Duration::from_millis(50));
}

#[test]
fn a_file_replaces_defaults_and_env_overrides_single_keys() {
    let file = r#"
        [store]
        url = "redis://127.0.0.1:7777"
        [ladder]
        [[ladder.stages]]
        name = "heads-up"
        after = "0s"
        action = "notice"
        [[ladder.stages]]
        name = "locked"
        after = "6s"
        action = "read_only"
    "#;
    let c = load(
        Some(file),
        &[
            ("PASTDUE_STORE__URL", "redis://127.0.0.1:6390"),
            ("PASTDUE_GATE__ON_STORE_ERROR", "block"),
            ("PASTDUE_CACHE__CAPACITY", "1234"),
            ("PASTDUE_SERVER__LISTEN", "127.0.0.1:3999"),
            ("PASTDUE_PAGE__PRODUCT_NAME", "0123"),
            ("PASTDUE_CONFIG", "ignored-here"),
            ("HOME", "/root"),
        ],
    )
    .unwrap();
    assert_eq!(c.store.url, "redis://127.0.0.1:6390", "env beats the file");
    assert_eq!(c.gate.on_store_error, Fallback::Block);
    assert_eq!(c.cache.capacity, 1234);
    assert_eq!(c.server.listen, "127.0.0.1:3999");
    assert_eq!(c.page.product_name, "0123", "a string key stays a string");
    assert_eq!(c.store.prefix, "pastdue", "keys the file leaves out keep their default");
    let names: Vec<_> = c.ladder().unwrap().stages().iter().map(|s| s.name().to_owned()).collect();
    assert_eq!(names, ["heads-up", "locked"]);

    let arr = load(None, &[("PASTDUE_GATE__EXEMPT", r#"["/open/**"]"#)]).unwrap();
    assert_eq!(arr.gate.exempt, ["/open/**"]);
    // #26: a list also reads as comma-separated strings, as an operator
    // would write it; a bad TOML array says how to write one.
    let arr = load(None, &[("PASTDUE_GATE__EXEMPT", "/x/**")]).unwrap();
    assert_eq!(arr.gate.exempt, ["/x/**"]);
    let arr = load(None, &[("PASTDUE_CHECK__EXEMPT", "/billing/**, /help")]).unwrap();
    assert_eq!(arr.check.exempt, ["/billing/**", "/help"]);
    let msg = key_error(load(None, &[("PASTDUE_GATE__EXEMPT", "[/x/**")]));
    assert!(msg.contains("takes a list") && msg.contains("PASTDUE_GATE__EXEMPT=/billing/**,/healthz"), "{msg}");
}

#[test]
fn typos_and_bad_values_are_refused_naming_the_key() {
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (Some("[store]\nurll = \"redis://x\""), &[], "store"),
        (Some("[store]\nurll = \"redis://x\""), &[], "urll"),
        (Some("[stroe]\nurl = \"redis://x\""), &[], "stroe"),
        (None, &[("PASTDUE_STORE__URLL", "redis://x")], "urll"),
        (None, &[("PASTDUE_GATE__UNKNOWN", "maybe")], "gate.unknown"),
        (None, &[("PASTDUE_STORE__URL", "postgres://x")], "store.url"),
        (None, &[("PASTDUE_STORE__READ_TIMEOUT", "fast")], "store.read_timeout"),
        (None, &[("PASTDUE_CACHE__CAPACITY", "lots")], "PASTDUE_CACHE__CAPACITY"),
        (None, &[("PASTDUE_CACHE__TTL", "10ms")], "cache.ttl"),
        (None, &[("PASTDUE_NOSECTION", "1")], "PASTDUE_NOSECTION"),
        (None, &[("PASTDUE_STORE_URL", "redis://x")], "PASTDUE_STORE_URL"), // one underscore: a typo, not ignored
        (None, &[("PASTDUE_GATE__EXEMPT", r#"["/a/[b"]"#)], "gate.exempt"),
        (None, &[("PASTDUE_GATE__ACCOUNT_HEADER", "bad header")], "gate.account_header"),
        (Some("[page]\nproduct_name = 'x' = 'y'"), &[], "not valid TOML"),
    ];
    for (file, vars, needle) in cases {
        let msg = key_error(load(*file, vars));
        assert!(msg.contains(needle), "{file:?} {vars:?}: {msg}");
    }
    let missing = Config::load_from(Some(std::path::Path::new("/nonexistent/pastdue.toml")), env(&[]));
    assert!(key_error(missing).contains("/nonexistent/pastdue.toml"));
}

#[test]
fn invalid_ladders_are_refused_naming_the_stage() {
    let ladder = |stages: &str| format!("[ladder]\n{stages}");
    let stage = |name: &str, after: &str, action: &str| {
        format!("[[ladder.stages]]\nname = \"{name}\"\nafter = \"{after}\"\naction = \"{action}\"\n")
    };
    let cases = [
        (stage("a", "0s", "notice") + &stage("b", "0s", "warn"), "ladder.stages[1].after"),
        (stage("a", "5d", "notice") + &stage("b", "1d", "warn"), "ladder.stages[1].after"),
        (stage("a", "0s", "notice") + &stage("a", "1d", "warn"), "ladder.stages[1].name"),
        (stage("a", "0s", "shout"), "ladder.stages[0].action"),
        (stage("a", "-1d", "notice"), "ladder.stages[0].after"),
        (stage("a", "1 fortnight", "notice"), "ladder.stages[0].after"),
        (stage("active", "0s", "notice"), "reserved"),
        (stage("Has Space", "0s", "notice"), "ladder.stages[0].name"),
        (stage("a", "0s", "allow"), "ladder.stages[0].action"),
        ("stages = []".to_owned(), "ladder.stages"),
    ];
    for (text, needle) in cases {
        let msg = key_error(Config::from_toml(&ladder(&text)));
        assert!(msg.contains(needle), "{text}\n=> {msg}");
    }
    // #26: the message names actions that exist.
    let msg = key_error(Config::from_toml(&ladder(&stage("a", "0s", "allow"))));
    assert!(msg.contains("read_only") && !msg.contains("restrict"), "{msg}");
}

#[test]
fn durations_parse_with_units_only() {
    assert_eq!(parse_duration("50ms"), Ok(Duration::from_millis(50)));
    assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
    assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
    for bad in ["", "14", "d", "-1s", "1.5h", "99999999999999999999d", "1 d"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_shipped_default_file_is_the_built_in_one() {
    let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")).unwrap();
    assert_eq!(on_disk, pastdue::config::DEFAULT_TOML);
}

#[test]
fn debug_output_hides_secrets() {
    let mut c = Config::default();
    c.stripe.webhook_secret = "whsec_SECRET1".into();
    c.stripe.api_key = "sk_live_SECRET2".into();
    c.admin.token = "SECRET3".into();
    c.admin.tokens = vec![pastdue::config::NamedToken::new("alice", "SECRET4")];
    c.links.secret = "SECRET5-links-0123456789abcdef0123".into();
    c.notify.webhook_secret = "SECRET6".into();
    c.notify.smtp_url = "smtp://user:SECRET7@mail.test:25".into();
    let shown = format!("{c:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("alice"));
}

#[tokio::test]
async fn links_and_notify_settings_are_checked() {
    let c = pastdue::Config::default();
    assert_eq!((c.links.secret.expose(), c.links.ttl), ("", std::time::Duration::from_secs(7 * 86_400)));
    assert_eq!(c.notify.timeout, std::time::Duration::from_secs(10));
    let env = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    let err = pastdue::Config::load_from(None, env("PASTDUE_LINKS__SECRET", "too-short")).unwrap_err().to_string();
    assert!(err.contains("links.secret") && err.contains("32 bytes"), "{err}");
    let err = pastdue::Config::load_from(None, env("PASTDUE_LINKS__TTL", "0s")).unwrap_err().to_string();
    assert!(err.contains("links.ttl"), "{err}");
    let ok = pastdue::Config::load_from(None, env("PASTDUE_LINKS__SECRET", &"k".repeat(32))).unwrap();
    assert!(!format!("{ok:?}").contains(&"k".repeat(32)), "Debug hides the links secret");
    // A portal without a links secret cannot be wired: pages would carry no
    // signed link, so the app refuses to start rather than expose accounts.
    let mut c = pastdue::Config::default();
    c.stripe.portal_return_url = "https://app.test/back".into();
    c.stripe.api_key = "sk_test_x".into();
    let gate = pastdue::gate::GateLayer::new(std::sync::Arc::new(pastdue::MemoryStore::new()));
    let err = pastdue::stripe::with_pay_links(gate, &c.stripe, &c.links, std::sync::Arc::new(pastdue::MemoryStore::new())).unwrap_err().to_string();
    assert!(err.contains("links.secret"), "{err}");
}

#[test]
fn the_before_due_banner_is_off_by_default_and_takes_a_switch_or_a_window() {
    let day = Duration::from_secs(86_400);
    assert_eq!(Config::default().banner.before_due, None);
    for (value, expected) in [("true", Some(3 * day)), ("false", None), ("\"7d\"", Some(7 * day)), ("\"0s\"", None)] {
        let c = Config::from_toml(&format!("[banner]\nbefore_due = {value}")).unwrap();
        assert_eq!(c.banner.before_due, expected, "before_due = {value}");
    }
    assert_eq!(load(None, &[("PASTDUE_BANNER__BEFORE_DUE", "7d")]).unwrap().banner.before_due, Some(7 * day));
    assert_eq!(load(None, &[("PASTDUE_BANNER__BEFORE_DUE", "true")]).unwrap().banner.before_due, Some(3 * day));
    for bad in ["\"soon\"", "3"] {
        let msg = key_error(Config::from_toml(&format!("[banner]\nbefore_due = {bad}")));
        assert!(msg.contains("before_due"), "{bad}: {msg}");
    }
}

/// #26: every component's `Default` is a plain struct literal; the
/// documented `config/default.toml` must say exactly the same.
#[test]
fn the_code_defaults_are_the_documented_ones() {
    let documented = Config::from_toml("").unwrap();
    assert_eq!(format!("{documented:#?}"), format!("{:#?}", Config::default()));
    // And each component's own default is the section's.
    assert_eq!(format!("{:?}", documented.gate), format!("{:?}", pastdue::gate::GateConfig::default()));
    assert_eq!(format!("{:?}", documented.stripe), format!("{:?}", pastdue::stripe::StripeConfig::default()));
}

/// #26: a refusal keeps its cause: the component's own error is the
/// `source()` of the config error that names the key.
#[test]
fn refusals_keep_their_cause() {
    use std::error::Error;
    let err = load(None, &[("PASTDUE_GATE__EXEMPT", r#"["/a/[b"]"#)]).unwrap_err();
    assert!(err.to_string().contains("gate.exempt"), "{err}");
    let source = err.source().expect("the glob's own error");
    assert!(!source.to_string().is_empty());
    let err = Config::from_toml("[[ladder.stages]]\nname = \"notice\"\nafter = \"0s\"\naction = \"allow\"\n").unwrap_err();
    assert!(err.to_string().contains("ladder.stages[0].action") && err.source().is_some(), "{err}");
}
