//! Data-subject requests (DESIGN §1, §5): who asked, resolved to their accounts and email;
//! the register entry with its legal deadline; and carrying the request out. The register
//! names the person only as HMAC(pepper, email); for an erasure that hash, the dates and
//! the status are all that remain.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::engine::{self, Control, EngineError, Outcome, Ran, Request};
use crate::export;
use crate::policy::Erasure;
use crate::store::requests::{self as register, Entry, Find};
use crate::store::{discover, migrations, Store, StoreError};
use crate::subject;

/// How long `forget` waits for a run in progress (the daemon's) before giving up.
const LOCK_WAIT_SECS: u32 = 300;

/// Requests due within this many days are warned about in each cycle.
const DUE_SOON_DAYS: i64 = 7;

/// The person as the operator names them.
#[derive(Debug, Clone)]
pub enum Who {
    Email(String),
    UserId(u64),
}

/// The person a request is about: their accounts, their email, their register hash.
#[derive(Clone)]
pub struct Subject {
    pub user_ids: Vec<u64>,
    /// Lowercased; never logged.
    pub email: String,
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("data-subject requests need requests.pepper_file: the register names people only by a keyed hash of their email")]
    NoPepper,
    #[error("--email: the value is not an email address")]
    NotAnEmail,
    #[error("--user-id {0}: no such user in this store")]
    NoSuchUser(u64),
    #[error("--user-id {0}: the account has no email address to find the person's guest orders by")]
    NoEmail(u64),
    #[error("request {0} is registered, but another run holds the store's lock (waited {LOCK_WAIT_SECS} s); run the same command again to finish it")]
    Busy(u64),
    #[error("request {0} is registered, but a stop was requested before anything changed; run the same command again")]
    Stopped(u64),
    #[error("request {0}: no such request in the register")]
    NoSuchRequest(u64),
    #[error("request {0}: {1}")]
    NotExtendable(u64, &'static str),
    #[error("cannot write the export to {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `forget` did.
pub struct Forgotten {
    pub request_id: u64,
    pub outcome: Outcome,
    /// Warnings of the plan (an order kept because it is being fulfilled, a staff account).
    pub warnings: Vec<String>,
}

fn pepper(config: &Config) -> Result<&str, RequestError> {
    config
        .requests
        .pepper
        .as_ref()
        .map(|p| p.expose())
        .ok_or(RequestError::NoPepper)
}

/// Finds the person's accounts and email.
pub async fn resolve(store: &Store, config: &Config, who: &Who) -> Result<Subject, RequestError> {
    let pepper = pepper(config)?;
    let (user_ids, email) = match who {
        Who::Email(e) => {
            let email = e.trim().to_lowercase();
            if !email.contains('@') || email.len() < 3 {
                return Err(RequestError::NotAnEmail);
            }
            (register::accounts_with_email(store, &email).await?, email)
        }
        Who::UserId(id) => {
            let email = register::account_email(store, *id)
                .await?
                .ok_or(RequestError::NoSuchUser(*id))?;
            if email.is_empty() {
                return Err(RequestError::NoEmail(*id));
            }
            (vec![*id], email)
        }
    };
    let hash = subject::hash(pepper, &email);
    Ok(Subject { user_ids, email, hash })
}

/// When a request received at `received` must be answered.
pub fn deadline(config: &Config, received: DateTime<Utc>) -> DateTime<Utc> {
    config.requests.deadline.after(&received).unwrap_or(received)
}

/// The subject's unanswered entry of this kind, or a new one received now: a repeated
/// request continues the first, keeping its received date and deadline.
async fn open_entry(store: &Store, config: &Config, kind: &str, subject: &Subject) -> Result<u64, StoreError> {
    if let Some(open) = register::find(store, kind, &subject.hash, Find::Open).await? {
        return Ok(open.id);
    }
    let now = Utc::now();
    register::insert(store, kind, &subject.hash, now, deadline(config, now), "open").await
}

/// The register exists from the first `migrate`; requests may come before any run.
async fn ensure_register(store: &Store) -> Result<(), StoreError> {
    migrations::migrate(store).await.map(|_| ())
}

/// Erases the person now: their accounts anonymised (or deleted), their orders minimised
/// while invoices must be kept and anonymised otherwise, in one audited run under the
/// store's lock. The register entry is completed afterwards; a repeated request after a
/// failure continues the same entry, keeping its received date and deadline.
pub async fn forget(
    store: &Store,
    config: &Config,
    subject: &Subject,
    trigger: &str,
    control: &Control<'_>,
) -> Result<Forgotten, RequestError> {
    ensure_register(store).await?;
    let request_id = open_entry(store, config, "erase", subject).await?;
    tracing::info!(
        request_id,
        accounts = subject.user_ids.len(),
        "erasure request registered"
    );
    erase(store, config, subject, request_id, trigger, LOCK_WAIT_SECS, control).await
}

/// Carries out the registered erasure `request_id` and completes its entry.
async fn erase(
    store: &Store,
    config: &Config,
    subject: &Subject,
    request_id: u64,
    trigger: &str,
    lock_wait_secs: u32,
    control: &Control<'_>,
) -> Result<Forgotten, RequestError> {
    let request = Request {
        trigger,
        now: Utc::now(),
        force: false,
        done_if_completed_since: None,
        lock_wait_secs,
        erasure: Some(Erasure {
            user_ids: subject.user_ids.iter().copied().collect(),
            email: subject.email.clone(),
        }),
    };
    let (planned, outcome) = match engine::run(store, config, &request, control).await? {
        Ran::Applied { planned, outcome } if !outcome.interrupted => (planned, outcome),
        Ran::Applied { .. } | Ran::Stopped => return Err(RequestError::Stopped(request_id)),
        Ran::Busy | Ran::AlreadyDone(_) => return Err(RequestError::Busy(request_id)),
    };
    register::complete(store, request_id, "completed").await?;
    tracing::info!(
        request_id,
        run_id = outcome.run_id,
        steps = outcome.applied,
        "erasure request completed"
    );
    for p in config.processors.iter().filter(|p| !p.categories.is_empty()) {
        tracing::warn!(
            request_id,
            processor = %p.name,
            categories = %p.categories.join(","),
            "follow-up: ask this processor to erase the person's data too"
        );
    }
    Ok(Forgotten {
        request_id,
        outcome,
        warnings: planned.plan.warnings.clone(),
    })
}

/// Answers an access (or portability) request: everything the store holds about the
/// person as one JSON document (docs/export-schema.md), written with mode 0600 to `out`
/// or into `requests.export_dir`; returns the register id and the file.
pub async fn export(
    store: &Store,
    config: &Config,
    subject: &Subject,
    out: Option<&Path>,
) -> Result<(u64, PathBuf), RequestError> {
    ensure_register(store).await?;
    let request_id = open_entry(store, config, "export", subject).await?;
    let path = write_export(store, config, subject, request_id, out).await?;
    register::complete(store, request_id, "completed").await?;
    tracing::info!(request_id, "export request completed");
    Ok((request_id, path))
}

async fn write_export(
    store: &Store,
    config: &Config,
    subject: &Subject,
    request_id: u64,
    out: Option<&Path>,
) -> Result<PathBuf, RequestError> {
    let d = discover(store).await?;
    let problems = d.problems();
    if !problems.is_empty() {
        return Err(EngineError::Unworkable(problems).into());
    }
    let restricted = register::find(store, "restrict", &subject.hash, Find::Active)
        .await?
        .is_some();
    let ctx = crate::store::export::Context::new(config, &d, Utc::now(), restricted);
    let who = export::Who::new(subject.user_ids.first().copied(), &subject.email);
    let doc = crate::store::export::collect(store, &ctx, &who).await?;
    let written = match out {
        Some(path) => export::write_to(&doc, path).map(|()| path.to_owned()),
        None => export::write(&doc, &config.requests.export_dir, Some(request_id)),
    };
    written.map_err(|source| RequestError::Write {
        path: out.map_or_else(|| config.requests.export_dir.clone(), Path::to_owned),
        source,
    })
}

/// What a pickup of WordPress privacy requests did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Synced {
    /// Requests seen for the first time, now in the register.
    pub registered: u64,
    /// Confirmed erasure requests carried out and marked completed in WordPress.
    pub erased: u64,
    /// Unconfirmed requests: registered with their deadline, not carried out.
    pub unconfirmed: u64,
    /// Confirmed export requests answered: a file in `requests.export_dir` each, and the
    /// request marked completed in WordPress.
    pub exported: u64,
}

/// Picks up the shop's WordPress privacy requests (Tools › Erase/Export Personal Data):
/// registers each with its deadline, carries out confirmed erasures and marks them
/// completed the way WordPress does. `lock_wait_secs` is how long each erasure may wait
/// for a run in progress.
pub async fn sync(
    store: &Store,
    config: &Config,
    lock_wait_secs: u32,
    control: &Control<'_>,
) -> Result<Synced, RequestError> {
    let mut done = Synced::default();
    let wp = register::wp_requests(store).await?;
    if wp.is_empty() {
        return Ok(done);
    }
    let pepper = pepper(config)?;
    ensure_register(store).await?;
    let zone = discover(store).await?.zone();
    for r in wp {
        let hash = subject::hash(pepper, &r.email);
        let entry = match register::find_wp(store, r.id).await? {
            Some(e) => {
                if r.confirmed && e.status == "pending" {
                    register::set_status(store, e.id, "open").await?;
                }
                e.id
            }
            None => {
                let received = r.received.unwrap_or_else(Utc::now);
                let status = if r.confirmed { "open" } else { "pending" };
                let id = register::insert_wp(store, r.kind, &hash, received, deadline(config, received), status, r.id)
                    .await?;
                tracing::info!(
                    request_id = id,
                    wp_request_id = r.id,
                    kind = r.kind,
                    status,
                    "WordPress request registered"
                );
                done.registered += 1;
                id
            }
        };
        if !r.confirmed {
            done.unconfirmed += 1;
            continue;
        }
        let erasure = r.kind == "erase";
        if register::find_wp(store, r.id)
            .await?
            .is_some_and(|e| e.completed.is_none())
        {
            let subject = Subject {
                user_ids: register::accounts_with_email(store, &r.email).await?,
                email: r.email.clone(),
                hash,
            };
            if erasure {
                erase(store, config, &subject, entry, "wordpress", lock_wait_secs, control).await?;
            } else {
                let path = write_export(store, config, &subject, entry, None).await?;
                register::complete(store, entry, "completed").await?;
                tracing::info!(request_id = entry, file = %path.display(), "export written for a WordPress request");
            }
        }
        let now = Utc::now();
        register::complete_wp(
            store,
            r.id,
            erasure,
            now,
            zone.wall_clock(now).unwrap_or(now.naive_utc()),
        )
        .await?;
        tracing::info!(
            request_id = entry,
            wp_request_id = r.id,
            kind = r.kind,
            "WordPress request marked completed"
        );
        if erasure {
            done.erased += 1;
        } else {
            done.exported += 1;
        }
    }
    Ok(done)
}

/// Registers a restriction: every automatic rule skips the person until `unrestrict`.
/// Returns the register id and whether it is new (an active one is reused).
pub async fn restrict(store: &Store, config: &Config, subject: &Subject) -> Result<(u64, bool), RequestError> {
    ensure_register(store).await?;
    if let Some(e) = register::find(store, "restrict", &subject.hash, Find::Active).await? {
        return Ok((e.id, false));
    }
    let now = Utc::now();
    let id = register::insert(store, "restrict", &subject.hash, now, deadline(config, now), "active").await?;
    register::complete(store, id, "active").await?;
    tracing::info!(
        request_id = id,
        "restriction registered: automatic rules skip this person"
    );
    Ok((id, true))
}

/// Lifts the person's restrictions; returns how many were in force.
pub async fn unrestrict(store: &Store, subject: &Subject) -> Result<u64, RequestError> {
    ensure_register(store).await?;
    let lifted = register::lift_restrictions(store, &subject.hash).await?;
    tracing::info!(lifted, "restriction lifted");
    Ok(lifted)
}

/// Logs, at warn level, the unanswered requests that are overdue or due within a week:
/// each cycle reminds the operator of what the privacy statement promised.
pub async fn warn_due(store: &Store, now: DateTime<Utc>) -> Result<(), StoreError> {
    let soon = now + chrono::Duration::days(DUE_SOON_DAYS);
    for e in register::list(store, true, Some(soon)).await? {
        let deadline = e.deadline.map(|d| d.to_rfc3339()).unwrap_or_default();
        if e.deadline.is_some_and(|d| d < now) {
            tracing::warn!(request_id = e.id, kind = %e.kind, deadline, "request overdue: answer it now");
        } else {
            tracing::warn!(request_id = e.id, kind = %e.kind, deadline, "request due within 7 days");
        }
    }
    Ok(())
}

/// Why a deadline may be extended (GDPR Art. 12(3)): the request is complex, or the
/// shop has many requests. A code, not free text, so an erasure's entry holds nothing
/// about the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExtensionReason {
    Complexity,
    Number,
}

impl ExtensionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionReason::Complexity => "complexity",
            ExtensionReason::Number => "number",
        }
    }
}

/// The longest extension the law allows: two further months, once.
const MAX_EXTENSION_MONTHS: u32 = 2;

/// Extends an unanswered request's deadline by `by` (at most two months, once); returns
/// the new deadline. The person must be told within the first deadline, with the reason.
pub async fn extend(
    store: &Store,
    id: u64,
    by: crate::period::Period,
    reason: ExtensionReason,
) -> Result<DateTime<Utc>, RequestError> {
    let entry = register::get(store, id).await?.ok_or(RequestError::NoSuchRequest(id))?;
    if entry.completed.is_some() {
        return Err(RequestError::NotExtendable(id, "it is answered already"));
    }
    if entry.extension.is_some() {
        return Err(RequestError::NotExtendable(
            id,
            "its deadline was extended once already",
        ));
    }
    let old = entry
        .deadline
        .ok_or(RequestError::NotExtendable(id, "its deadline cannot be read"))?;
    let longest = crate::period::Period {
        amount: MAX_EXTENSION_MONTHS,
        unit: crate::period::Unit::Months,
    };
    let deadline = by
        .after(&old)
        .filter(|d| longest.after(&old).is_some_and(|max| *d <= max))
        .ok_or(RequestError::NotExtendable(id, "an extension is at most 2 months"))?;
    register::extend(store, id, deadline, reason.as_str()).await?;
    tracing::info!(request_id = id, reason = reason.as_str(), deadline = %deadline.to_rfc3339(), "request deadline extended");
    Ok(deadline)
}

/// The register for `requests list`.
pub async fn list(store: &Store, open: bool, overdue: bool) -> Result<Vec<Entry>, StoreError> {
    register::list(store, open, overdue.then(Utc::now)).await
}
