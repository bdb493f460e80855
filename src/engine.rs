//! One retention run, from facts to committed batches: discover the store, read the facts
//! pass by pass into the pure [`Planner`], and apply the resulting [`Plan`] in batches.
//! The daemon's cycle and the `plan` and `apply` commands are built from these two steps.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use mysql_async::Conn;
use tokio::sync::watch;

use crate::config::Config;
use crate::localtime::ShopZone;
use crate::plan::{Plan, Step};
use crate::policy::{Erasure, Planner, PolicyError, Restrictions, Rules};
use crate::store::apply::{Reviews, Writer};
use crate::store::lock::RunLock;
use crate::store::read::{self, Reader};
use crate::store::{audit, discover, migrations, Layout, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store is not ready: {}", .0.join("; "))]
    Unworkable(Vec<String>),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(
        "refused by the safety cap: {0}; check the periods in the config, then rerun with --force if this is intended"
    )]
    Cap(String),
}

/// A plan and what is needed to apply it.
pub struct Planned {
    pub plan: Plan,
    layout: Layout,
    zone: ShopZone,
    /// The own tables' version as discovery found it.
    own_schema: Option<u32>,
}

/// Reads the store and decides. Changes nothing.
pub async fn plan(store: &Store, config: &Config, now: DateTime<Utc>) -> Result<Planned, EngineError> {
    let mut conn = store.conn().await?;
    plan_for(store, config, now, None, &mut conn, &|_| {}).await
}

/// The read passes of a plan, in order, as [`Progress`] names them.
const PASSES: [&str; 5] = ["customers", "guests", "orders", "sessions", "downloads"];

/// A plan read on `conn` and on one more connection of the pool: a run reads on the
/// connection that holds its lock, so that it needs no more connections than it writes with.
/// `progress` hears of each pass and of every [`read::CHUNK`] entities: planning a very
/// large store reads for minutes, and the daemon's watchdog waits for signs of life.
async fn plan_for(
    store: &Store,
    config: &Config,
    now: DateTime<Utc>,
    erasure: Option<Erasure>,
    conn: &mut Conn,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Planned, EngineError> {
    let started = Instant::now();
    let d = discover(store).await?;
    let problems = d.problems();
    if !problems.is_empty() {
        return Err(EngineError::Unworkable(problems));
    }
    let layout = Layout::of(d.order_storage);
    let zone = d.zone();
    let mut reader = Reader { store, layout, conn };
    // Before the first `migrate` there is no register, so nothing is restricted yet.
    let hashes = if d.own_schema_version.is_some() {
        reader.restricted().await?
    } else {
        Default::default()
    };
    let pepper = config.requests.pepper.as_ref().map(|p| p.expose());
    let mut rules = Rules::new(config, zone, now, Restrictions::new(pepper, hashes)?)?;
    rules.erasure = erasure;
    let mut planner = Planner::new(&rules);
    // Each pass's time goes into the log: where a slow plan spends it.
    let mut lap = Instant::now();
    let mut passes_ms = [0u64; PASSES.len()];
    let seen = Cell::new(0usize);
    let beat = |pass: usize| {
        progress(Progress {
            phase: "plan",
            batch: pass + 1,
            batches: PASSES.len(),
        })
    };
    let tick = |pass: usize| {
        seen.set(seen.get() + 1);
        if seen.get() % read::CHUNK == 0 {
            beat(pass);
        }
    };
    let mut done = |pass: usize| {
        passes_ms[pass] = lap.elapsed().as_millis() as u64;
        lap = Instant::now();
        seen.set(0);
        if pass + 1 < PASSES.len() {
            beat(pass + 1);
        }
    };
    beat(0);
    let mut side = store.conn().await?;
    let accounts = reader
        .customers(&mut side, |f| {
            planner.customer(f);
            tick(0);
        })
        .await?;
    drop(side);
    done(0);
    reader
        .guests(|f| {
            planner.guest(f);
            tick(1);
        })
        .await?;
    done(1);
    reader
        .orders(&accounts, |f| {
            planner.order(f);
            tick(2);
        })
        .await?;
    done(2);
    reader
        .sessions(|f| {
            planner.session(f);
            tick(3);
        })
        .await?;
    done(3);
    reader
        .downloads(|f| {
            planner.download(f);
            tick(4);
        })
        .await?;
    done(4);
    let plan = planner.finish();
    for w in &plan.warnings {
        tracing::warn!(warning = %w, "entity skipped or judged with missing data");
    }
    tracing::info!(
        customers = plan.customers.len(),
        orders = plan.orders.len(),
        sessions = plan.sessions.len(),
        downloads = plan.downloads.len(),
        subjects_forgotten = plan.subjects_forgotten,
        subjects_total = plan.subjects_total,
        restricted_skipped = plan.restricted_skipped,
        elapsed_ms = started.elapsed().as_millis() as u64,
        customers_ms = passes_ms[0],
        guests_ms = passes_ms[1],
        orders_ms = passes_ms[2],
        sessions_ms = passes_ms[3],
        downloads_ms = passes_ms[4],
        "plan made"
    );
    Ok(Planned {
        plan,
        layout,
        zone,
        own_schema: d.own_schema_version,
    })
}

/// What a caller asks of [`run`].
pub struct Request<'a> {
    /// What started the run, recorded in the run row: `cli`, `schedule`, `catch-up`, `signal`.
    pub trigger: &'a str,
    /// The policy's "now".
    pub now: DateTime<Utc>,
    /// Apply beyond the safety cap.
    pub force: bool,
    /// The run is not needed when a run that started at or after this time completed:
    /// another runner did the work while this one waited for the lock.
    pub done_if_completed_since: Option<DateTime<Utc>>,
    /// How long to wait for another runner's lock; 0 gives up at once.
    pub lock_wait_secs: u32,
    /// Plan for this one person only, whatever their activity (`forget`).
    pub erasure: Option<Erasure>,
}

/// How [`run`] ended without an error.
pub enum Ran {
    /// Another runner holds the store's lock.
    Busy,
    /// A run that started at this time already completed the work.
    AlreadyDone(DateTime<Utc>),
    /// A stop was requested while planning; nothing was changed.
    Stopped,
    Applied {
        planned: Box<Planned>,
        outcome: Outcome,
    },
}

/// One run: take the store's lock, plan under it, apply, release.
pub async fn run(
    store: &Store,
    config: &Config,
    request: &Request<'_>,
    control: &Control<'_>,
) -> Result<Ran, EngineError> {
    let Some(mut lock) = RunLock::acquire(store, request.lock_wait_secs).await? else {
        return Ok(Ran::Busy);
    };
    let result = run_locked(store, config, request, control, &mut lock).await;
    lock.release().await;
    result
}

async fn run_locked(
    store: &Store,
    config: &Config,
    request: &Request<'_>,
    control: &Control<'_>,
    lock: &mut RunLock,
) -> Result<Ran, EngineError> {
    if let Some(since) = request.done_if_completed_since {
        if let Some(last) = audit::history(store).await?.last_completed.filter(|t| *t >= since) {
            return Ok(Ran::AlreadyDone(last));
        }
    }
    // Planning only reads, so a stop cuts it short rather than waiting for it.
    let Some(planned) = unless_stopped(
        control.stop,
        plan_for(
            store,
            config,
            request.now,
            request.erasure.clone(),
            lock.conn(),
            control.progress,
        ),
    )
    .await
    else {
        return Ok(Ran::Stopped);
    };
    let planned = planned?;
    let mut outcome = apply(store, config, &planned, lock, request, control).await?;
    // Under the lock still, so no other run writes while the cache is flushed and read.
    let beat = || {
        (control.progress)(Progress {
            phase: "verify",
            batch: 1,
            batches: 1,
        })
    };
    let watch = crate::verify::Watch {
        stop: control.stop,
        beat: &beat,
    };
    outcome.verification = crate::verify::after_run(config, store, &planned.plan, &outcome, &watch).await;
    Ok(Ran::Applied {
        planned: Box::new(planned),
        outcome,
    })
}

/// `work`'s result, or `None` when the stop flag turns true first (or already is): for
/// work that only reads or waits, which a stop may drop half done.
pub async fn unless_stopped<F: std::future::Future>(stop: &watch::Receiver<bool>, work: F) -> Option<F::Output> {
    let mut stop = stop.clone();
    tokio::select! {
        done = work => Some(done),
        _ = stop.wait_for(|stop| *stop) => None,
    }
}

/// What the caller lets a run do, and hears from it, while it runs.
pub struct Control<'a> {
    /// Turns true on a signal: the run ends after the batch in progress.
    pub stop: &'a watch::Receiver<bool>,
    /// Told before each batch starts, for status lines and the watchdog.
    pub progress: &'a (dyn Fn(Progress) + Sync),
}

/// Where a run is.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// `plan`, then the apply's phases (`customers`, `orders`, ...), then `verify`.
    pub phase: &'static str,
    /// 1-based, within the phase; for `plan`, the read pass (see [`Progress::pass`]).
    pub batch: usize,
    pub batches: usize,
}

impl Progress {
    /// The name of the plan's read pass.
    pub fn pass(&self) -> &'static str {
        PASSES.get(self.batch.wrapping_sub(1)).copied().unwrap_or("")
    }
}

/// How an apply ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub run_id: u64,
    /// Steps committed.
    pub applied: u64,
    /// A stop was requested (SIGTERM/SIGINT): the run ended after a whole batch.
    pub interrupted: bool,
    /// The post-run command and the REST check, when there was something to do.
    pub verification: Option<crate::verify::Verification>,
}

/// Applies a plan in batches, on the connection that holds the run lock. The safety cap
/// guards policy runs (an erasure is one person, asked for); `force` overrides it, and a
/// refusal is recorded as a run with status `refused`. The stop flag is checked between
/// batches, so a stop never leaves a batch half done.
async fn apply(
    store: &Store,
    config: &Config,
    planned: &Planned,
    lock: &mut RunLock,
    request: &Request<'_>,
    control: &Control<'_>,
) -> Result<Outcome, EngineError> {
    let (trigger, force) = (request.trigger, request.force);
    let plan = &planned.plan;
    // Discovery has just read the version; migrate (which also refuses newer tables)
    // only when it is not this build's.
    if planned.own_schema != Some(migrations::LATEST) {
        migrations::migrate(store).await?;
    }
    let abandoned = audit::abandon_stale_runs(lock.conn(), store).await?;
    if abandoned > 0 {
        tracing::warn!(
            runs = abandoned,
            "earlier runs ended without an outcome (killed or crashed); marked abandoned, this run finishes their work"
        );
    }
    let counts = serde_json::to_value(plan.counts()).unwrap_or_default();
    let capped = request.erasure.is_none();
    if let Err(reason) = plan
        .check_cap(config.safety.max_customers_per_run, config.safety.max_share)
        .or_else(|reason| if capped { Err(reason) } else { Ok(()) })
    {
        if !force {
            let run_id = audit::start_run(store, trigger).await?;
            audit::finish_run(store, run_id, "refused", &counts, Some(&reason)).await?;
            tracing::error!(run_id, reason = %reason, "run refused by the safety cap; nothing changed");
            return Err(EngineError::Cap(reason));
        }
        tracing::warn!(reason = %reason, "safety cap overridden with --force");
    }
    let run_id = audit::start_run(store, trigger).await?;
    let started = Instant::now();
    tracing::info!(run_id, trigger, steps = plan.steps().count(), "run started");
    let result = apply_batches(store, config, planned, lock, run_id, control).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok((applied, interrupted)) => {
            let status = if interrupted { "interrupted" } else { "completed" };
            audit::finish_run(store, run_id, status, &counts, None).await?;
            tracing::info!(run_id, status, applied, elapsed_ms, counts = %counts, "run finished");
            Ok(Outcome {
                run_id,
                applied,
                interrupted,
                verification: None,
            })
        }
        Err(e) => {
            let message = e.to_string();
            // The run row is best effort here: the database may be what failed.
            if let Err(record) =
                audit::finish_run(store, run_id, "failed", &serde_json::Value::Null, Some(&message)).await
            {
                tracing::warn!(run_id, error = %record, "could not record the failed run");
            }
            tracing::error!(run_id, error = %message, elapsed_ms, "run failed");
            Err(e.into())
        }
    }
}

async fn apply_batches(
    store: &Store,
    config: &Config,
    planned: &Planned,
    lock: &mut RunLock,
    run_id: u64,
    control: &Control<'_>,
) -> Result<(u64, bool), StoreError> {
    let plan = &planned.plan;
    let writer = Writer {
        store,
        layout: planned.layout,
        zone: planned.zone,
        keep_shipping: config.invoices.keep_shipping_address,
        extra_order_meta: &config.personal_data.extra_order_meta_keys,
        extra_user_meta: &config.personal_data.extra_user_meta_keys,
        audit_turn: Default::default(),
    };
    let reviews = writer.reviews_of(lock.conn(), &plan.customers).await?;
    let (customer_batch, order_batch) = (config.apply.customer_batch, config.apply.order_batch);
    let phases = [
        (Phase::Customers, &plan.customers, customer_batch),
        (Phase::Orders, &plan.orders, order_batch),
        (Phase::Sessions, &plan.sessions, order_batch),
        (Phase::Downloads, &plan.downloads, order_batch),
    ];
    let most_batches = phases.iter().map(|(_, steps, size)| steps.len().div_ceil(*size)).max();
    let mut extra = Vec::new();
    for _ in 1..config.apply.workers.min(most_batches.unwrap_or(0)) {
        extra.push(store.conn().await?);
    }
    let mut conns: Vec<&mut Conn> = std::iter::once(lock.conn()).chain(extra.iter_mut()).collect();
    let mut applied = 0u64;
    for (phase, steps, size) in phases {
        let work = Work {
            run_id,
            phase,
            batches: steps.chunks(size).collect(),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            writer: &writer,
            reviews: &reviews,
            control,
        };
        let results = join_all(conns.iter_mut().map(|conn| work.worker(conn))).await;
        for result in results {
            applied += result?;
        }
        let (done, batches) = (work.done.into_inner(), work.batches.len());
        if done < batches {
            tracing::warn!(
                run_id,
                phase = phase.as_str(),
                batches_done = done,
                batches,
                "stop requested: ended after whole batches"
            );
            return Ok((applied, true));
        }
    }
    Ok((applied, false))
}

/// One phase's batches, shared by the workers: each takes the next batch until none is
/// left, a stop is requested or another worker failed.
struct Work<'a> {
    run_id: u64,
    phase: Phase,
    batches: Vec<&'a [Step]>,
    next: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicBool,
    writer: &'a Writer<'a>,
    reviews: &'a Reviews,
    control: &'a Control<'a>,
}

/// Tries of a batch that the server chose as a deadlock's victim: two workers' batches
/// can meet on shared rows (a person's reviews, the analytics row of an email).
const DEADLOCK_TRIES: u32 = 3;

impl Work<'_> {
    /// Steps committed by this worker.
    async fn worker(&self, conn: &mut Conn) -> Result<u64, StoreError> {
        let mut applied = 0u64;
        loop {
            if *self.control.stop.borrow() || self.failed.load(Ordering::SeqCst) {
                return Ok(applied);
            }
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            let Some(batch) = self.batches.get(i) else {
                return Ok(applied);
            };
            (self.control.progress)(Progress {
                phase: self.phase.as_str(),
                batch: i + 1,
                batches: self.batches.len(),
            });
            let started = Instant::now();
            let mut attempt = 1;
            loop {
                match self.batch(conn, batch).await {
                    Ok(()) => break,
                    Err(e) if e.is_deadlock() && attempt < DEADLOCK_TRIES => {
                        tracing::warn!(
                            run_id = self.run_id,
                            phase = self.phase.as_str(),
                            batch = i + 1,
                            attempt,
                            "batch rolled back in a deadlock with another batch; trying it again"
                        );
                        attempt += 1;
                    }
                    Err(e) => {
                        // Which entities the failure left alone: the whole batch, since its
                        // transaction is never committed.
                        tracing::warn!(
                            run_id = self.run_id,
                            phase = self.phase.as_str(),
                            batch = i + 1,
                            batches = self.batches.len(),
                            first_id = batch.first().map_or(0, |s| s.id),
                            last_id = batch.last().map_or(0, |s| s.id),
                            error = %e,
                            "batch failed: rolled back whole, none of its entities changed"
                        );
                        self.failed.store(true, Ordering::SeqCst);
                        return Err(e);
                    }
                }
            }
            applied += batch.len() as u64;
            self.done.fetch_add(1, Ordering::SeqCst);
            tracing::info!(
                run_id = self.run_id,
                phase = self.phase.as_str(),
                batch = i + 1,
                batches = self.batches.len(),
                entities = batch.len(),
                first_id = batch.first().map_or(0, |s| s.id),
                last_id = batch.last().map_or(0, |s| s.id),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "batch applied"
            );
        }
    }

    async fn batch(&self, conn: &mut Conn, batch: &[Step]) -> Result<(), StoreError> {
        let (w, run_id, now) = (self.writer, self.run_id, Utc::now());
        match self.phase {
            Phase::Customers => w.customers(conn, run_id, batch, self.reviews, now).await,
            Phase::Orders => w.orders(conn, run_id, batch, now).await,
            Phase::Sessions => w.sessions(conn, run_id, batch, now).await,
            Phase::Downloads => w.downloads(conn, run_id, batch, now).await,
        }
    }
}

/// The parts of a plan, applied in this order.
#[derive(Clone, Copy)]
enum Phase {
    Customers,
    Orders,
    Sessions,
    Downloads,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Customers => "customers",
            Phase::Orders => "orders",
            Phase::Sessions => "sessions",
            Phase::Downloads => "downloads",
        }
    }
}
