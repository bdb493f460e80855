//! `wc-retention run`: the service a shop's host runs forever.
//!
//! The loop owns time and signals; each cycle is [`run_once`], the same locked
//! plan-and-apply the `apply` command does. Start: check the store (waiting for an
//! unreachable database), tell systemd it is ready, catch up on a run missed while the host
//! was down. Then sleep until the next scheduled time, a retry of a failed cycle, or a
//! signal: SIGTERM/SIGINT stop after the batch in progress, SIGHUP reloads the config,
//! SIGUSR1 runs a cycle now. No error in a cycle ends the daemon; it is logged and retried.

pub mod notify;
pub mod timing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::audit::RunHistory;
use crate::config::{self, Config};
use crate::engine::{self, Control, EngineError, Progress, Ran, Request};
use crate::store::{audit, discover, migrations, Discovery, Store};
use crate::{preflight, requests};
use notify::Heartbeat;

/// The longest sleep between looks at the clock: a wall-clock jump or a suspended host
/// delays a scheduled run by at most this much, and the watchdog's heartbeat stays fresh.
pub const NAP: Duration = Duration::from_secs(30);

/// Why the daemon could not start. Everything after start is retried instead.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen for signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Start(#[from] EngineError),
}

/// One cycle: the work the schedule, a catch-up, a retry or SIGUSR1 asks for.
pub async fn run_once(store: &Store, config: &Config, due: &Due, control: &Control<'_>) -> Result<Ran, EngineError> {
    // Requests first: a confirmed erasure is owed now. A failure here (no pepper, a run of
    // another daemon holding the lock) must not cost the retention run; it is retried
    // next cycle.
    match requests::sync(store, config, 0, control).await {
        Ok(s) if s.registered + s.erased + s.exported > 0 => tracing::info!(
            registered = s.registered,
            erased = s.erased,
            exported = s.exported,
            unconfirmed = s.unconfirmed,
            "WordPress privacy requests picked up"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "WordPress privacy requests not picked up"),
    }
    if let Err(e) = requests::warn_due(store, Utc::now()).await {
        tracing::warn!(error = %e, "could not read the request register for due requests");
    }
    let request = Request {
        trigger: due.trigger,
        now: Utc::now(),
        force: false,
        done_if_completed_since: Some(due.since),
        lock_wait_secs: 0,
        erasure: None,
    };
    engine::run(store, config, &request, control).await
}

/// A cycle that is owed, and when.
#[derive(Clone, Debug)]
pub struct Due {
    /// Recorded in the run row: `schedule`, `catch-up`, `signal`.
    pub trigger: &'static str,
    /// A run completed since this time makes this one unnecessary (another daemon did it).
    pub since: DateTime<Utc>,
    /// When to start it.
    pub at: DateTime<Utc>,
}

enum Event {
    Reload,
    RunNow,
}

enum Wake {
    Due,
    Stop,
    Reload,
    RunNow,
}

/// How a cycle ended, for the loop's next decision.
enum CycleEnd {
    /// Done, skipped, or refused by the safety cap: wait for the schedule.
    Settled,
    /// Retry with backoff.
    Failed,
    Stopped,
}

/// Runs until SIGTERM or SIGINT. `Err` only when the daemon cannot start.
pub async fn run(path: PathBuf, config: Config) -> Result<(), DaemonError> {
    let (stop_tx, stop) = watch::channel(false);
    let (events_tx, events) = mpsc::unbounded_channel();
    let signals = Signals::install().map_err(DaemonError::Signals)?;
    let forwarder = tokio::spawn(signals.forward(stop_tx, events_tx.clone()));
    let heartbeat = Heartbeat::new();
    let watchdog = notify::spawn_watchdog(heartbeat.clone());
    let store = Store::open(&config.database).map_err(EngineError::from)?;
    let mut daemon = Daemon {
        path,
        config,
        store,
        stop,
        events,
        _events_tx: events_tx,
        heartbeat,
    };
    let result = daemon.serve().await;
    if let Err(e) = &result {
        tracing::error!(error = %e, "the daemon cannot start");
    }
    notify::stopping();
    tracing::info!("daemon stopped");
    forwarder.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    daemon.store.close().await;
    result
}

struct Daemon {
    path: PathBuf,
    config: Config,
    store: Store,
    stop: watch::Receiver<bool>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Keeps the event channel open, so that `recv` never returns `None`.
    _events_tx: mpsc::UnboundedSender<Event>,
    heartbeat: Arc<Heartbeat>,
}

impl Daemon {
    async fn serve(&mut self) -> Result<(), DaemonError> {
        let Some(history) = self.start().await? else {
            return Ok(());
        };
        let mut owed = timing::catch_up(&self.config.schedule, history, Utc::now()).map(|since| Due {
            trigger: "catch-up",
            since,
            at: Utc::now(),
        });
        if owed.is_some() {
            tracing::info!("the last run did not complete, or a scheduled run was missed: running once now");
        } else if history.last_completed.is_none() {
            tracing::info!("no run has completed on this store yet: the first one is at the next scheduled time");
        }
        let mut failures = 0u32;
        loop {
            let next = timing::next_run(&self.config.schedule, Utc::now());
            let due = match (&owed, next) {
                (Some(o), Some(n)) if o.at >= n => None,
                (Some(o), _) => Some(o.clone()),
                (None, _) => None,
            }
            .or_else(|| {
                next.map(|at| Due {
                    trigger: "schedule",
                    since: at,
                    at,
                })
            });
            self.show_idle(due.as_ref(), failures);
            match self.wait(due.as_ref().map(|d| d.at)).await {
                Wake::Stop => return Ok(()),
                Wake::Reload => {
                    self.reload().await;
                    continue;
                }
                Wake::RunNow => {
                    let now = Utc::now();
                    tracing::info!("SIGUSR1: running a cycle now");
                    owed = Some(Due {
                        trigger: "signal",
                        since: now,
                        at: now,
                    });
                    continue;
                }
                Wake::Due => {}
            }
            let Some(due) = due else { continue };
            owed = None;
            match self.cycle(&due).await {
                CycleEnd::Stopped => return Ok(()),
                CycleEnd::Settled => failures = 0,
                CycleEnd::Failed => {
                    failures += 1;
                    let now = Utc::now();
                    let next = timing::next_run(&self.config.schedule, now);
                    owed = timing::retry_at(now, failures, &self.config.schedule, next).map(|at| Due { at, ..due });
                    match &owed {
                        Some(retry) => tracing::warn!(
                            failures,
                            retry_at = %retry.at.to_rfc3339(),
                            "cycle failed: retrying with backoff"
                        ),
                        None => tracing::warn!(failures, "cycle failed: the next scheduled run will try again"),
                    }
                }
            }
        }
    }

    /// Checks the store until it can be worked on, waiting out an unreachable database;
    /// `None` when stopped while waiting. A store that is wrong (not WooCommerce, login
    /// refused, privileges missing) ends the daemon with the reason.
    async fn start(&mut self) -> Result<Option<RunHistory>, DaemonError> {
        let mut failures = 0u32;
        loop {
            self.heartbeat.beat();
            match prepare(&self.store).await {
                Ok((discovery, history)) => {
                    let zone = self.config.schedule.timezone.0;
                    notify::ready("ready");
                    tracing::info!(
                        schedule = %self.config.schedule.cron,
                        timezone = %zone,
                        "daemon ready"
                    );
                    self.preflight(&discovery).await;
                    return Ok(Some(history));
                }
                Err(e) if is_transient(&e) => {
                    failures += 1;
                    let s = &self.config.schedule;
                    let delay = timing::retry_delay(
                        failures,
                        Duration::from_secs(s.retry_initial_secs),
                        Duration::from_secs(s.retry_max_secs),
                    );
                    tracing::warn!(error = %e, retry_in_secs = delay.as_secs(), "cannot check the store yet; waiting");
                    notify::status(&format!("waiting for the database: {e}"));
                    let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    match self.wait(Some(at)).await {
                        Wake::Stop => return Ok(None),
                        Wake::Reload => self.reload().await,
                        Wake::Due | Wake::RunNow => {}
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Compares the REST API's view with the database's and logs what differs. After
    /// READY and cut short by a stop: the REST API is a check, not a need.
    async fn preflight(&self, discovery: &Discovery) {
        if self.config.rest.is_none() {
            tracing::info!("no [rest] section: working on the database alone, without REST verification");
            return;
        }
        let Some(findings) =
            engine::unless_stopped(&self.stop, preflight::run(&self.config, &self.store, discovery)).await
        else {
            return;
        };
        for p in &findings.problems {
            tracing::error!(problem = %p, "REST preflight");
        }
        for w in &findings.warnings {
            tracing::warn!(warning = %w, "REST preflight");
        }
        if let Some(view) = &findings.view {
            tracing::info!(
                woocommerce = %view.woocommerce_version,
                order_storage = %view.order_storage,
                authentication = view.authentication,
                object_cache = view.object_cache,
                problems = findings.problems.len(),
                "REST API reached"
            );
        }
    }

    /// Sleeps until `at` (forever when `None`) or a signal.
    async fn wait(&mut self, at: Option<DateTime<Utc>>) -> Wake {
        loop {
            self.heartbeat.beat();
            if *self.stop.borrow() {
                return Wake::Stop;
            }
            let now = Utc::now();
            let nap = match at {
                Some(at) if at <= now => return Wake::Due,
                Some(at) => (at - now).to_std().unwrap_or_default().min(NAP),
                None => NAP,
            };
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = stop.wait_for(|stop| *stop) => return Wake::Stop,
                event = self.events.recv() => match event {
                    Some(Event::Reload) => return Wake::Reload,
                    Some(Event::RunNow) => return Wake::RunNow,
                    None => {}
                },
            }
        }
    }

    async fn cycle(&mut self, due: &Due) -> CycleEnd {
        let started = Instant::now();
        tracing::info!(trigger = due.trigger, "cycle started");
        notify::status(&format!("starting a {} run", due.trigger));
        let heartbeat = self.heartbeat.clone();
        let progress = move |p: Progress| {
            heartbeat.beat();
            if p.phase == "plan" {
                notify::status(&format!("planning: pass {}/{} ({})", p.batch, p.batches, p.pass()));
            } else if p.phase == "verify" {
                notify::status("reading the run's changes back through the REST API");
            } else {
                notify::status(&format!("applying batch {}/{} ({})", p.batch, p.batches, p.phase));
            }
        };
        let control = Control {
            stop: &self.stop,
            progress: &progress,
        };
        let result = run_once(&self.store, &self.config, due, &control).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(Ran::Applied { outcome, .. }) if outcome.interrupted => CycleEnd::Stopped,
            Ok(Ran::Stopped) => {
                tracing::warn!(elapsed_ms, "stop requested while planning; nothing was changed");
                CycleEnd::Stopped
            }
            Ok(Ran::Applied { outcome, .. }) => {
                tracing::info!(
                    run_id = outcome.run_id,
                    applied = outcome.applied,
                    elapsed_ms,
                    "cycle finished"
                );
                CycleEnd::Settled
            }
            Ok(Ran::Busy) => {
                tracing::info!("another runner holds this store's lock; this run is skipped");
                CycleEnd::Settled
            }
            Ok(Ran::AlreadyDone(at)) => {
                tracing::info!(
                    completed_run_started = %at.to_rfc3339(),
                    "another runner already did this run's work; skipped"
                );
                CycleEnd::Settled
            }
            Err(EngineError::Cap(reason)) => {
                notify::status(&format!("last run refused by the safety cap: {reason}"));
                CycleEnd::Settled
            }
            Err(e) => {
                tracing::error!(error = %e, elapsed_ms, "cycle failed");
                CycleEnd::Failed
            }
        }
    }

    fn show_idle(&self, due: Option<&Due>, failures: u32) {
        let zone = self.config.schedule.timezone.0;
        match due {
            // Due now (a catch-up, SIGUSR1): no idle time to report.
            Some(d) if d.at <= Utc::now() => {}
            Some(d) => {
                let at =
                    d.at.with_timezone(&zone)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
                tracing::info!(next_run = %at, trigger = d.trigger, "idle until the next run");
                let what = if failures > 0 {
                    format!("idle after {failures} failed attempt(s), next attempt {at}")
                } else {
                    format!("idle, next run {at} ({})", d.trigger)
                };
                notify::status(&what);
            }
            None => {
                tracing::warn!(schedule = %self.config.schedule.cron, "the schedule never fires again; idle until a signal");
                notify::status("idle, the schedule never fires again");
            }
        }
    }

    /// SIGHUP: load the config file again; keep the running config when the new one is
    /// invalid. A new database section takes effect with a new connection pool.
    async fn reload(&mut self) {
        notify::reloading("reloading the configuration");
        match config::load(&self.path) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                match Store::open(&loaded.config.database) {
                    Ok(store) => {
                        if format!("{:?}", loaded.config.log) != format!("{:?}", self.config.log) {
                            tracing::warn!("the [log] settings changed: they take effect at the next restart");
                        }
                        let old = std::mem::replace(&mut self.store, store);
                        old.close().await;
                        self.config = loaded.config;
                        tracing::info!(
                            path = %self.path.display(),
                            schedule = %self.config.schedule.cron,
                            "configuration reloaded"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the new configuration's database cannot be used; keeping the running configuration")
                    }
                }
            }
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "the new configuration is invalid; keeping the running configuration"
            ),
        }
        notify::ready("reloaded");
    }
}

/// The start check: a WooCommerce store this build can work on, with its own tables
/// migrated, and what the runs table says about earlier runs.
async fn prepare(store: &Store) -> Result<(Discovery, RunHistory), EngineError> {
    let d = discover(store).await?;
    let problems = d.problems();
    if !problems.is_empty() {
        return Err(EngineError::Unworkable(problems));
    }
    if d.own_schema_version != Some(migrations::LATEST) {
        migrations::migrate(store).await?;
    }
    Ok((d, audit::history(store).await?))
}

/// Errors worth waiting out at start: the server is away, not the configuration wrong.
fn is_transient(e: &EngineError) -> bool {
    match e {
        EngineError::Store(s) => s.is_transient(),
        _ => false,
    }
}

/// The process's signals, turned into the stop flag and loop events.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }

    async fn forward(mut self, stop: watch::Sender<bool>, events: mpsc::UnboundedSender<Event>) {
        loop {
            let event = tokio::select! {
                _ = self.term.recv() => None,
                _ = self.int.recv() => None,
                _ = self.hup.recv() => Some(Event::Reload),
                _ = self.usr1.recv() => Some(Event::RunNow),
            };
            match event {
                None => {
                    if !*stop.borrow() {
                        tracing::info!("stop requested: finishing the batch in progress, then exiting");
                        notify::stopping();
                    }
                    let _ = stop.send(true);
                }
                Some(e) => {
                    let _ = events.send(e);
                }
            }
        }
    }
}
