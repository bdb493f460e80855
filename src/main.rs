//! The `wc-retention` command line: parses flags, loads the config, runs one command and
//! turns its outcome into a documented exit code. Everything else lives in the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use wc_retention::config::{self, LogFormat};
use wc_retention::daemon::{self, DaemonError};
use wc_retention::engine::{self, EngineError, Ran};
use wc_retention::requests::{self, RequestError, Who};
use wc_retention::store::audit;
use wc_retention::store::{migrations, Store, StoreError};
use wc_retention::{check, telemetry};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  unexpected failure (see the message and the log)
  2  bad flags or bad configuration
  3  the store is unreachable, refuses the login, or is not a WooCommerce database the
     service can work on (missing tables or privileges, own tables from a newer version);
     for check, also a [rest] that cannot be reached or shows another shop
  4  apply refused by the safety cap (see safety.* in the config; --force overrides)
  5  audit verify found a broken hash chain
  6  apply found another run in progress on this store (the daemon or another apply)
  7  apply or forget changed the database, but the REST API still shows personal data it
     removed, or the post-run command or the REST check failed (see the log and the run row)
  130 apply stopped by SIGINT/SIGTERM after a whole batch; run it again to finish";

#[derive(Parser)]
#[command(name = "wc-retention", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH, env = "WC_RETENTION_CONFIG")]
    config: PathBuf,
    /// Log format; overrides `log.format` of the config.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter such as `info` or `debug,mysql_async=warn`; overrides `log.level`.
    /// `RUST_LOG`, when set, overrides both.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the database, the WooCommerce install and the configuration.
    Check {
        /// Print the report as JSON (on stdout).
        #[arg(long)]
        json: bool,
    },
    /// Create or upgrade the service's own tables (runs, audit, requests).
    Migrate,
    /// Show what `apply` would do now: counts per rule and action, with sample ids.
    Plan {
        /// Print the plan as JSON (on stdout).
        #[arg(long)]
        json: bool,
        /// Plan as of this time (RFC 3339) instead of now: "what happens next month?"
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        now: Option<DateTime<Utc>>,
    },
    /// Apply the retention policy once: plan, then change the store in batches.
    #[command(alias = "once")]
    Apply {
        /// Only show the plan; change nothing (the same as `plan`).
        #[arg(long)]
        dry_run: bool,
        /// Apply even when the plan exceeds the safety cap.
        #[arg(long, conflicts_with = "dry_run")]
        force: bool,
        /// Print the plan and the outcome as JSON (on stdout).
        #[arg(long)]
        json: bool,
        /// Apply the policy as of this earlier time (RFC 3339), e.g. to repeat a run
        /// exactly; never a later one.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        now: Option<DateTime<Utc>>,
    },
    /// Run as a service: apply the policy on the schedule until SIGTERM (see "Deploying on
    /// a systemd host" in the README). SIGHUP reloads the config; SIGUSR1 runs a cycle now.
    Run,
    /// Forget a person now (an erasure request): their accounts anonymised, their orders
    /// minimised while invoices must be kept and anonymised otherwise; registered and
    /// completed in the request register.
    Forget {
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Answer an access or portability request: everything the store holds about the
    /// person as one JSON document (docs/export-schema.md), mode 0600, into
    /// requests.export_dir or FILE; registered and completed in the request register.
    Export {
        #[command(flatten)]
        who: WhoArgs,
        /// Write here instead (a new file; an existing one is not replaced).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Restrict processing of a person's data: every automatic rule skips them until
    /// `unrestrict`; registered in the request register.
    Restrict {
        #[command(flatten)]
        who: WhoArgs,
    },
    /// Lift a person's restriction.
    Unrestrict {
        #[command(flatten)]
        who: WhoArgs,
    },
    /// The register of data-subject requests.
    Requests {
        #[command(subcommand)]
        command: RequestsCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// The person a request is about: exactly one of the two.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct WhoArgs {
    /// Their email address (account or guest orders).
    #[arg(long, value_name = "EMAIL")]
    email: Option<String>,
    /// Their WordPress user id.
    #[arg(long, value_name = "ID", allow_negative_numbers = true, value_parser = parse_user_id)]
    user_id: Option<u64>,
}

/// `--now`: an RFC 3339 time, named in the message when it is not one.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let t = text.parse::<DateTime<Utc>>().map_err(|e| {
        format!("{text:?} is not a time ({e}): write RFC 3339, like 2026-11-24T03:30:00Z or 2026-11-24T04:30:00+01:00")
    })?;
    if t.timestamp() < 0 {
        return Err(format!("{text:?} is before 1970: no shop data is that old"));
    }
    Ok(t)
}

/// `--user-id`: a WordPress user id, which starts at 1.
fn parse_user_id(text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("{text:?} is not a WordPress user id: write a whole number from 1, like 42"))
}

impl WhoArgs {
    fn who(&self) -> Who {
        match (&self.email, self.user_id) {
            (Some(e), _) => Who::Email(e.clone()),
            (None, Some(id)) => Who::UserId(id),
            (None, None) => unreachable!("clap requires one of --email and --user-id"),
        }
    }
}

#[derive(Subcommand)]
enum RequestsCommand {
    /// List the register, newest first: kind, status, received, deadline, completed.
    List {
        /// Only requests not answered yet.
        #[arg(long)]
        open: bool,
        /// Only unanswered requests past their deadline.
        #[arg(long)]
        overdue: bool,
        /// Print JSON (on stdout).
        #[arg(long)]
        json: bool,
    },
    /// Extend an unanswered request's deadline (at most two months, once), for a complex
    /// request or many requests; tell the person within the first deadline.
    Extend {
        /// The register id (`requests list`).
        id: u64,
        /// How much longer, e.g. "2 months" or "30 days".
        #[arg(long, value_name = "PERIOD")]
        by: wc_retention::period::Period,
        /// Why.
        #[arg(long, value_enum)]
        reason: requests::ExtensionReason,
    },
    /// Pick up the shop's WordPress privacy requests now (the daemon does it each cycle):
    /// register them, carry out confirmed erasures, mark them completed in WordPress.
    Sync,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit rows' hash chain and report the first broken row.
    Verify,
}

/// An exit code and the message explaining it.
struct Failure(u8, String);

/// `println!` for reports, without its panic when stdout is closed (`wc-retention plan |
/// head`): the command ends with exit 1 and a message instead.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(stdout_failed)?
    }};
}

/// `print!` for reports, as [`out!`].
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*).map_err(stdout_failed)?
    }};
}

fn stdout_failed(e: std::io::Error) -> Failure {
    Failure(1, format!("cannot write the report to stdout: {e}"))
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Failure {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::Unworkable(_) => Failure(3, e.to_string()),
            EngineError::Policy(_) => Failure(2, e.to_string()),
            EngineError::Cap(_) => Failure(4, e.to_string()),
        }
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Failure {
        match e {
            RequestError::Engine(e) => e.into(),
            RequestError::Store(e) => e.into(),
            RequestError::Busy(_) => Failure(6, e.to_string()),
            RequestError::Write { .. } => Failure(1, e.to_string()),
            RequestError::Stopped(_) => Failure(130, e.to_string()),
            RequestError::NoPepper
            | RequestError::NotAnEmail
            | RequestError::NoSuchUser(_)
            | RequestError::NoEmail(_)
            | RequestError::NoSuchRequest(_)
            | RequestError::NotExtendable(..) => Failure(2, e.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let code = match e {
            StoreError::Sql { .. } if !e.is_denied() => 1,
            _ => 3,
        };
        Failure(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            // Not eprintln!, which panics when stderr is closed.
            let _ = writeln!(std::io::stderr(), "wc-retention: error: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    if let Some(level) = &cli.log_level {
        telemetry::check_filter(level).map_err(|e| Failure(2, format!("--log-level: {e}")))?;
    }
    let loaded = config::load(&cli.config).map_err(|e| Failure(2, e.to_string()))?;
    let cfg = &loaded.config;
    let format = cli.log_format.unwrap_or(cfg.log.format);
    let filter = cli.log_level.as_deref().or(cfg.log.level.as_deref()).unwrap_or("info");
    telemetry::init(format, filter).map_err(|e| Failure(2, e))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(1, format!("cannot start the async runtime: {e}")))?;
    let config::Loaded { config, warnings } = loaded;
    runtime.block_on(async move {
        let cfg = &config;
        match cli.command {
            Command::Check { json } => {
                let report = check::run(cfg, &warnings).await;
                let report = match (report, json) {
                    (Ok(r), _) => r,
                    (Err(e), true) => {
                        out!("{}", serde_json::json!({ "ok": false, "error": e.to_string() }));
                        return Err(e.into());
                    }
                    (Err(e), false) => return Err(e.into()),
                };
                if json {
                    out!(
                        "{}",
                        serde_json::to_string_pretty(&report).map_err(|e| Failure(1, e.to_string()))?
                    );
                } else {
                    out_raw!("{}", report.to_text());
                }
                if report.ok {
                    Ok(())
                } else {
                    Err(Failure(
                        3,
                        format!("the store is not ready: {}", report.problems.join("; ")),
                    ))
                }
            }
            Command::Migrate => {
                let store = Store::open(&cfg.database)?;
                let outcome = migrations::migrate(&store).await;
                store.close().await;
                let outcome = outcome?;
                match outcome.from {
                    Some(v) if v == outcome.to => {
                        out!("own tables already at version {v}; nothing to do")
                    }
                    Some(v) => out!("own tables migrated from version {v} to {}", outcome.to),
                    None => out!("own tables created at version {}", outcome.to),
                }
                Ok(())
            }
            Command::Plan { json, now } => {
                let store = Store::open(&cfg.database)?;
                let planned = engine::plan(&store, cfg, now.unwrap_or_else(Utc::now)).await;
                store.close().await;
                print_plan(&planned?.plan, json)
            }
            Command::Apply {
                dry_run,
                force,
                json,
                now,
            } => {
                let real = Utc::now();
                if now.is_some_and(|t| t > real) {
                    return Err(Failure(
                        2,
                        "--now: apply cannot act as of a future time (plan --now can show it)".to_owned(),
                    ));
                }
                let store = Store::open(&cfg.database)?;
                let result = apply(&store, cfg, dry_run, force, json, now.unwrap_or(real)).await;
                store.close().await;
                result
            }
            Command::Run => daemon::run(cli.config, config).await.map_err(|e| match e {
                DaemonError::Start(e) => e.into(),
                DaemonError::Signals(_) => Failure(1, e.to_string()),
            }),
            Command::Forget { who } => {
                let store = Store::open(&cfg.database)?;
                let result = forget(&store, cfg, &who.who()).await;
                store.close().await;
                result
            }
            Command::Export { who, out } => {
                let store = Store::open(&cfg.database)?;
                let result = async {
                    let subject = requests::resolve(&store, cfg, &who.who()).await?;
                    requests::export(&store, cfg, &subject, out.as_deref()).await
                }
                .await;
                store.close().await;
                let (id, path) = result?;
                out!("request {id}: export written to {}", path.display());
                Ok(())
            }
            Command::Restrict { who } => {
                let store = Store::open(&cfg.database)?;
                let result = async {
                    let subject = requests::resolve(&store, cfg, &who.who()).await?;
                    requests::restrict(&store, cfg, &subject).await
                }
                .await;
                store.close().await;
                match result? {
                    (id, true) => {
                        out!("request {id}: restriction registered; automatic rules skip this person until unrestrict")
                    }
                    (id, false) => out!("already restricted (request {id})"),
                }
                Ok(())
            }
            Command::Unrestrict { who } => {
                let store = Store::open(&cfg.database)?;
                let result = async {
                    let subject = requests::resolve(&store, cfg, &who.who()).await?;
                    requests::unrestrict(&store, &subject).await
                }
                .await;
                store.close().await;
                match result? {
                    0 => out!("no restriction was in force for this person"),
                    n => out!("{n} restriction(s) lifted"),
                }
                Ok(())
            }
            Command::Requests {
                command: RequestsCommand::List { open, overdue, json },
            } => {
                let store = Store::open(&cfg.database)?;
                let entries = requests::list(&store, open, overdue).await;
                store.close().await;
                print_register(&entries?, json)
            }
            Command::Requests {
                command: RequestsCommand::Extend { id, by, reason },
            } => {
                let store = Store::open(&cfg.database)?;
                let extended = requests::extend(&store, id, by, reason).await;
                store.close().await;
                out!("request {id}: deadline extended to {}", extended?.to_rfc3339());
                Ok(())
            }
            Command::Requests {
                command: RequestsCommand::Sync,
            } => {
                let store = Store::open(&cfg.database)?;
                let stop = StopOnSignal::install();
                let synced = requests::sync(&store, cfg, 300, &stop.control()).await;
                store.close().await;
                let s = synced?;
                out!(
                    "WordPress privacy requests: {} newly registered, {} erasures carried out and {} exports \
                     written, marked completed; {} unconfirmed (registered, not carried out)",
                    s.registered,
                    s.erased,
                    s.exported,
                    s.unconfirmed
                );
                Ok(())
            }
            Command::Audit {
                command: AuditCommand::Verify,
            } => {
                let store = Store::open(&cfg.database)?;
                let verification = audit::verify(&store).await;
                store.close().await;
                let v = verification?;
                match v.first_broken {
                    None => {
                        out!("audit chain verified: {} rows", v.rows);
                        Ok(())
                    }
                    Some((id, why)) => Err(Failure(5, format!("audit chain broken at row {id}: {why}"))),
                }
            }
        }
    })
}

async fn forget(store: &Store, cfg: &config::Config, who: &Who) -> Result<(), Failure> {
    let subject = requests::resolve(store, cfg, who).await?;
    let stop = StopOnSignal::install();
    let f = requests::forget(store, cfg, &subject, "request", &stop.control()).await?;
    for w in &f.warnings {
        out!("warning: {w}");
    }
    out!(
        "request {}: erasure completed in run {} ({} steps applied)",
        f.request_id,
        f.outcome.run_id,
        f.outcome.applied
    );
    checked(&f.outcome)
}

/// Exit 7 when the run's post-run command or REST check failed: the database changes
/// stand, but WooCommerce may still show what they removed.
fn checked(outcome: &engine::Outcome) -> Result<(), Failure> {
    match &outcome.verification {
        Some(v) if !v.passed() => Err(Failure(
            7,
            format!("run {} applied, but its check failed: {}", outcome.run_id, v.summary()),
        )),
        _ => Ok(()),
    }
}

fn print_register(entries: &[wc_retention::store::requests::Entry], json: bool) -> Result<(), Failure> {
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(entries).map_err(|e| Failure(1, e.to_string()))?
        );
        return Ok(());
    }
    let day = |t: Option<DateTime<Utc>>| t.map_or("-".to_owned(), |t| t.format("%Y-%m-%d").to_string());
    out!("   id  kind      status     received    deadline    completed   subject       wp request  extended");
    for e in entries {
        out!(
            "{:>5}  {:<8}  {:<9}  {:<10}  {:<10}  {:<10}  {:<12}  {:<10}  {}",
            e.id,
            e.kind,
            e.status,
            day(e.received),
            day(e.deadline),
            day(e.completed),
            e.subject,
            e.wp_request_id.map_or("-".to_owned(), |id| id.to_string()),
            e.extension.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn print_plan(plan: &wc_retention::plan::Plan, json: bool) -> Result<(), Failure> {
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&plan.to_json()).map_err(|e| Failure(1, e.to_string()))?
        );
    } else {
        out_raw!("{}", plan.to_text());
    }
    Ok(())
}

async fn apply(
    store: &Store,
    cfg: &config::Config,
    dry_run: bool,
    force: bool,
    json: bool,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    if dry_run {
        return print_plan(&engine::plan(store, cfg, now).await?.plan, json);
    }
    let stop = StopOnSignal::install();
    let request = engine::Request {
        trigger: "cli",
        now,
        force,
        done_if_completed_since: None,
        lock_wait_secs: 0,
        erasure: None,
    };
    let ran = engine::run(store, cfg, &request, &stop.control()).await;
    let (planned, outcome) = match ran? {
        Ran::Applied { planned, outcome } => (planned, outcome),
        Ran::Busy => return Err(Failure(6, BUSY.to_owned())),
        Ran::Stopped => {
            return Err(Failure(
                130,
                "stopped by a signal while planning; nothing was changed".to_owned(),
            ))
        }
        Ran::AlreadyDone(_) => unreachable!("no completed run is asked about"),
    };
    if json {
        let doc = serde_json::json!({ "plan": planned.plan.to_json(), "outcome": outcome });
        out!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| Failure(1, e.to_string()))?
        );
    } else {
        out_raw!("{}", planned.plan.to_text());
        out!("run {}: {} steps applied", outcome.run_id, outcome.applied);
    }
    if outcome.interrupted {
        return Err(Failure(
            130,
            format!(
                "stopped by a signal after {} steps; run apply again to finish",
                outcome.applied
            ),
        ));
    }
    checked(&outcome)
}

const BUSY: &str = "another run holds this store's lock (the daemon, or another apply); nothing was changed: try again when it has finished";

/// While a command changes the store, SIGINT or SIGTERM ask it to stop after the batch
/// in progress.
struct StopOnSignal {
    stop: watch::Receiver<bool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl StopOnSignal {
    fn install() -> StopOnSignal {
        let (tx, stop) = watch::channel(false);
        StopOnSignal {
            stop,
            watcher: tokio::spawn(stop_on_signal(tx)),
        }
    }

    fn control(&self) -> engine::Control<'_> {
        engine::Control {
            stop: &self.stop,
            progress: &|_| {},
        }
    }
}

impl Drop for StopOnSignal {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

async fn stop_on_signal(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("stop requested: finishing the current batch");
    let _ = stop.send(true);
}
