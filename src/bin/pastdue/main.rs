//! `pastdue`: the server (`pastdue serve`) and the operator's command line.
//!
//! Every command reads the same configuration as the library
//! (`config/default.toml`, the file named by `PASTDUE_CONFIG`, then
//! `PASTDUE_<SECTION>__<KEY>`); the operator commands talk to the store
//! directly.
//!
//! Exit codes: `0` done; `1` a runtime failure (store or Stripe
//! unreachable); `2` bad usage or configuration (the message names the
//! key); `3` `status`/`explain` of an account the store has never heard of
//! (the output still says what the gate does with it).

mod contacts;
mod explain;
mod report;

use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use pastdue::admin::AccountView;
use pastdue::state::{Change, Override, OverrideMode};
use pastdue::store::{AuditDraft, Store};
use pastdue::{AccountId, BillingState, Config};

/// Gate a SaaS app on each account's payment standing, in any language.
#[derive(Parser)]
#[command(
    name = "pastdue",
    version,
    about,
    long_about = None,
    after_help = "Configuration, later sources winning key by key: the built-in defaults \
(config/default.toml, compiled in); the file given by --config or PASTDUE_CONFIG (it replaces \
the defaults it names); then PASTDUE_<SECTION>__<KEY> environment variables \
(PASTDUE_STORE__URL=redis://127.0.0.1:6379). A config/default.toml in the working directory \
is not read. Logs go to standard error; RUST_LOG=pastdue=debug says more."
)]
struct Cli {
    /// A configuration file (TOML) laid over the built-in defaults; the
    /// same as PASTDUE_CONFIG=FILE.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the check endpoint for reverse proxies, the Stripe webhook,
    /// the admin API, pay links, notices and sync, on `server.listen`.
    Serve,
    /// An account's standing: stage, why, amount, since, next stage,
    /// override, contacts, notices sent.
    Status {
        /// The account id.
        account: String,
        /// Print the admin API's account view (JSON).
        #[arg(long)]
        json: bool,
    },
    /// An account's timeline: every fact with its time and source, and the
    /// stage changes they caused.
    Explain {
        /// The account id.
        account: String,
        /// Print the timeline as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Allow or block an account regardless of billing (audited, as "cli").
    Override {
        /// The account id.
        account: String,
        /// `allow`, `block`, or `clear` to remove the override.
        mode: Mode,
        /// When it ends: RFC 3339 (`2026-12-01T00:00:00Z`) or a duration
        /// from now (`7d`, `12h`); none = until cleared.
        #[arg(long)]
        until: Option<String>,
        /// Why (required; shown in the audit log).
        #[arg(long)]
        reason: String,
        /// Print the account view (JSON) afterwards.
        #[arg(long)]
        json: bool,
    },
    /// Set how to reach an account: its accountant, account manager, time
    /// zone (its messages keep to the send window there) and billing phone
    /// (text messages); `none` removes one (audited, as "cli").
    Contacts {
        /// The account id.
        account: String,
        /// The accountant's e-mail address.
        #[arg(long)]
        accountant: Option<String>,
        /// Your staff member's e-mail address.
        #[arg(long)]
        account_manager: Option<String>,
        /// An IANA time zone (`Europe/Riga`).
        #[arg(long)]
        timezone: Option<String>,
        /// An E.164 number (`+37120000000`).
        #[arg(long)]
        billing_phone: Option<String>,
        /// Print the account view (JSON) afterwards.
        #[arg(long)]
        json: bool,
    },
    /// Read subscriptions and invoices from the Stripe API and repair the
    /// store (needs stripe.api_key).
    Sync {
        /// Only this account's changes are applied.
        #[arg(long)]
        account: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The recovery figures: episodes that started in a range of days, how
    /// many were paid, at which stage, how fast, what is at risk now.
    Report {
        /// First day counted (`2026-10-01` or RFC 3339; default 90 days
        /// before --to).
        #[arg(long)]
        from: Option<String>,
        /// Day after the last counted (default: the end of today).
        #[arg(long)]
        to: Option<String>,
        /// Only episodes that started on this ladder.
        #[arg(long)]
        ladder: Option<String>,
        /// Print the admin API's report (JSON).
        #[arg(long)]
        json: bool,
    },
    /// The effective ladder, as a table.
    Ladder {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load and validate the configuration (and build everything it
    /// describes, without serving or connecting); non-zero with the key
    /// named when it is wrong.
    CheckConfig,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Allow,
    Block,
    Clear,
}

/// A failure and its exit code.
struct Failed(u8, String);

impl<E: std::fmt::Display> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed(1, e.to_string())
    }
}

fn config_error(e: impl std::fmt::Display) -> Failed {
    Failed(2, format!("configuration: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pastdue: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command, cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed(code, message)) => {
            eprintln!("pastdue: {message}");
            ExitCode::from(code)
        }
    }
}

/// The configuration: `--config FILE` (else `PASTDUE_CONFIG`) over the
/// built-in defaults, then `PASTDUE_*` variables.
fn load_config(file: Option<&std::path::Path>) -> Result<Config, Failed> {
    match file {
        Some(path) => Config::load_from(Some(path), std::env::vars()),
        None => Config::load(),
    }
    .map_err(config_error)
}

async fn run(command: Command, file: Option<std::path::PathBuf>) -> Result<(), Failed> {
    if matches!(command, Command::Serve) {
        return serve(file.as_deref()).await;
    }
    let config = load_config(file.as_deref())?;
    let policy = config.policy().map_err(config_error)?;
    match command {
        Command::Serve => unreachable!("handled above"),
        Command::CheckConfig => check_config(&config),
        Command::Ladder { json } => {
            print_ladders(&policy, json);
            Ok(())
        }
        Command::Report { from, to, ladder, json } => {
            let range = pastdue::recovery::Range::parse(from.as_deref(), to.as_deref(), Utc::now())
                .map_err(|e| Failed(2, format!("--{e}")))?;
            if let Some(l) = ladder.as_deref().filter(|l| policy.ladder(l).is_none()) {
                let names: Vec<&str> = policy.names().collect();
                return Err(Failed(2, format!("--ladder: {l:?} is not configured; use one of {}", names.join(", "))));
            }
            let store = connect(&config).await?;
            let report = pastdue::store::report(store.as_ref(), range, ladder.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", explain::terminal_safe(&report::text(&report, &policy)));
            }
            Ok(())
        }
        Command::Status { account, json } => {
            let (account, state) = load(&config, &account).await?;
            let now = Utc::now();
            let view =
                serde_json::to_value(AccountView::of(&account, state.as_ref(), &policy, now))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", explain::terminal_safe(&explain::status_text(&view, state.as_ref())));
            }
            known(state.as_ref())
        }
        Command::Explain { account, json } => {
            let (account, state) = load(&config, &account).await?;
            let store = connect(&config).await?;
            let audit = store.audit_log(Some(&account), None, 100).await?;
            let now = Utc::now();
            let timeline = pastdue::timeline::timeline(state.as_ref(), &audit, policy.ladder_for(state.as_ref(), now), now);
            if json {
                println!("{}", serde_json::to_string_pretty(&timeline)?);
            } else {
                print!("{}", explain::terminal_safe(&explain::timeline_text(&account, &timeline)));
            }
            known(state.as_ref())
        }
        Command::Override {
            account,
            mode,
            until,
            reason,
            json,
        } => {
            let account = parse_account(&account)?;
            let store = connect(&config).await?;
            let state =
                set_override(store.as_ref(), &account, mode, until.as_deref(), &reason).await?;
            let view =
                serde_json::to_value(AccountView::of(&account, Some(&state), &policy, Utc::now()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", explain::terminal_safe(&explain::status_text(&view, Some(&state))));
            }
            Ok(())
        }
        Command::Contacts { account, accountant, account_manager, timezone, billing_phone, json } => {
            let account = parse_account(&account)?;
            let changes = contacts::changes(accountant, account_manager, timezone, billing_phone)?;
            let store = connect(&config).await?;
            let state = contacts::apply(store.as_ref(), &account, &changes).await?;
            let view = serde_json::to_value(AccountView::of(&account, Some(&state), &policy, Utc::now()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", explain::terminal_safe(&explain::status_text(&view, Some(&state))));
            }
            Ok(())
        }
        Command::Sync { account, json } => {
            let only = account.as_deref().map(parse_account).transpose()?;
            let (stripe, paddle) = (config.stripe.api_key().is_some(), config.paddle.api_key().is_some());
            if !stripe && !paddle {
                return Err(Failed(
                    2,
                    "configuration: stripe.api_key: sync needs the Stripe API key (or paddle.api_key, Paddle's)".into(),
                ));
            }
            let store = connect(&config).await?;
            // Stripe's report as before; Paddle's under "paddle" when it is on.
            let mut out = serde_json::Map::new();
            if stripe {
                let mapper =
                    pastdue::stripe::Mapper::new(&config.stripe, store.clone()).map_err(config_error)?;
                let report = pastdue::stripe::sync_only(&mapper, only.as_ref()).await?;
                if !json {
                    println!(
                        "read {} subscriptions and {} invoices; {} accounts changed; {} objects map to no account",
                        report.subscriptions, report.invoices, report.accounts_changed, report.unmapped
                    );
                }
                if let serde_json::Value::Object(fields) = serde_json::to_value(&report)? {
                    out.extend(fields);
                }
            }
            if paddle {
                let report = pastdue::paddle::sync(&config.paddle, store, only.as_ref())
                    .await
                    .map_err(|e| Failed(1, format!("paddle sync: {e}")))?;
                if !json {
                    println!(
                        "paddle: read {} past-due transactions and {} past-due subscriptions; {} accounts changed; {} map to no account",
                        report.transactions, report.subscriptions, report.accounts_changed, report.unmapped
                    );
                }
                out.insert("paddle".into(), serde_json::to_value(&report)?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(())
        }
    }
}

fn known(state: Option<&BillingState>) -> Result<(), Failed> {
    match state {
        Some(_) => Ok(()),
        None => Err(Failed(
            3,
            "the store has never heard of this account".into(),
        )),
    }
}

fn parse_account(raw: &str) -> Result<AccountId, Failed> {
    AccountId::new(raw).map_err(|e| Failed(2, format!("account {raw:?}: {e}")))
}

/// The store every command that reads or changes state talks to. Never
/// `memory://`: that would be a private, empty store of this one process,
/// shared with no server — every answer "never heard of", every change
/// lost on exit — so it is refused, not reported as a success.
async fn connect(config: &Config) -> Result<Arc<dyn Store>, Failed> {
    if config.store.url.starts_with("memory:") {
        return Err(Failed(
            2,
            "configuration: store.url is memory://, a private empty store of this command alone: \
             nothing the server knows is there and nothing done here would last. Point the CLI at the \
             server's store (PASTDUE_STORE__URL=redis://…, or --config FILE)"
                .into(),
        ));
    }
    let store = pastdue::store::connect(&config.store)
        .await
        .map_err(|e| Failed(1, format!("store {}: {e}", redacted(&config.store.url))))?;
    // Changes made here are counted in the recovery figures like the server's.
    store.keep_figures(pastdue::recovery::Recorder::new(config.policy().map_err(config_error)?));
    Ok(store)
}

async fn load(config: &Config, account: &str) -> Result<(AccountId, Option<BillingState>), Failed> {
    let account = parse_account(account)?;
    let store = connect(config).await?;
    let state = store.load(&account).await?;
    Ok((account, state))
}

/// A store URL without its password.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or_default())
        }
        None => url.to_owned(),
    }
}

async fn set_override(
    store: &dyn Store,
    account: &AccountId,
    mode: Mode,
    until: Option<&str>,
    reason: &str,
) -> Result<BillingState, Failed> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Failed(2, "--reason must say why".into()));
    }
    let now = Utc::now();
    let (change, action) = match mode {
        Mode::Clear => (Change::ClearOverride, "override.removed"),
        Mode::Allow | Mode::Block => {
            let until = until.map(|u| parse_until(u, now)).transpose()?;
            let mode = if matches!(mode, Mode::Allow) {
                OverrideMode::Allow
            } else {
                OverrideMode::Block
            };
            let o = Override {
                mode,
                until,
                reason: reason.to_owned(),
                by: "cli".into(),
                at: now,
            };
            (Change::SetOverride(o), "override.set")
        }
    };
    let draft = AuditDraft {
        who: "cli",
        action,
        reason: Some(reason),
        pick: |s| serde_json::to_value(s.override_()).unwrap_or_default(),
        extra: None,
    };
    let (applied, _) = store.apply_audited(account, &[change], &draft).await?;
    Ok(applied.state().cloned().unwrap_or_default())
}

/// `--until`: RFC 3339, or a duration from `now`; must lie ahead (the
/// admin API reads its `until` the same way).
fn parse_until(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failed> {
    pastdue::clock::parse_until(raw, now).map_err(|e| Failed(2, format!("--until: {e}")))
}

fn print_ladders(policy: &pastdue::Policy, json: bool) {
    let mut rows: Vec<(&str, String, String, String, String)> = Vec::new();
    for (name, ladder) in policy.ladders() {
        for s in ladder.stages() {
            let closes = s.closed_features().collect::<Vec<_>>().join(", ");
            rows.push((name, s.name().to_owned(), pastdue::timeline::days(s.after()), s.action().as_str().to_owned(), closes));
        }
        if name == pastdue::policy::DEFAULT_LADDER {
            for (stage, when) in [(ladder.canceled(), "subscription ended"), (ladder.unknown(), "never heard of")] {
                rows.push((name, stage.name().to_owned(), when.into(), stage.action().as_str().to_owned(), String::new()));
            }
        }
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(l, n, a, act, closes)| {
                let closes: Vec<&str> = closes.split(", ").filter(|c| !c.is_empty()).collect();
                serde_json::json!({ "ladder": l, "stage": n, "after": a, "action": act, "closes": closes })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    let mut current = "";
    for (ladder, name, after, action, closes) in rows {
        if ladder != current {
            if !current.is_empty() {
                println!();
            }
            println!("ladder {ladder}");
            println!("{:<14} {:<22} {:<10} CLOSES", "STAGE", "AFTER THE DEBT STARTS", "ACTION");
            current = ladder;
        }
        println!("{name:<14} {after:<22} {action:<10} {closes}");
    }
}

/// Loads and builds everything the configuration describes, on a memory
/// store, without serving or connecting.
fn check_config(config: &Config) -> Result<(), Failed> {
    let runtime_store: Arc<dyn Store> = Arc::new(pastdue::MemoryStore::new());
    pastdue::server::build(config, runtime_store, pastdue::clock::system(), None)
        .map_err(config_error)?;
    pastdue::store::StoreUrl::parse(&config.store.url).map_err(config_error)?;
    println!(
        "configuration ok: store {}, providers {}, ladder {}",
        redacted(&config.store.url),
        pastdue::server::providers(config),
        config
            .ladder
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    Ok(())
}

async fn serve(file: Option<&std::path::Path>) -> Result<(), Failed> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,pastdue=info".into()),
        )
        .init();
    // Before anything is built: components register their counters with it.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Failed(1, format!("metrics: {e}")))?;
    let config = load_config(file)?;
    let store = pastdue::store::connect(&config.store)
        .await
        .map_err(|e| Failed(1, format!("store {}: {e}", redacted(&config.store.url))))?;
    let server = pastdue::server::build(&config, store, pastdue::clock::system(), Some(metrics))
        .map_err(config_error)?;
    let listener = tokio::net::TcpListener::bind(&config.server.listen)
        .await
        .map_err(|e| Failed(1, format!("server.listen {}: {e}", config.server.listen)))?;
    let addr = listener.local_addr()?;
    println!(
        "pastdue {} serving on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    for line in &server.summary {
        println!("  {line}");
    }
    pastdue::server::serve(server, listener, shutdown_signal()).await?;
    println!("pastdue stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
