//! The service's own tables (DESIGN §5), versioned.
//!
//! MySQL commits DDL implicitly, so a migration cannot be rolled back as a unit; instead
//! every statement is idempotent (`IF NOT EXISTS`) and the version row is written last. A
//! migration cut short is simply run again. A named lock keeps two `migrate`s apart.

use mysql_async::prelude::Queryable;

use super::{Store, StoreError};

struct Migration {
    version: u32,
    description: &'static str,
    /// Statements with `{p}` standing for the table prefix.
    statements: &'static [&'static str],
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "runs, audit and requests tables",
        statements: &[
            // One row per cycle or command that changes the store.
            "CREATE TABLE IF NOT EXISTS `{p}wc_retention_runs` (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            trigger_kind VARCHAR(20) NOT NULL,
            started_at DATETIME(6) NOT NULL,
            finished_at DATETIME(6) NULL,
            status VARCHAR(20) NOT NULL,
            counts TEXT NULL,
            error TEXT NULL,
            PRIMARY KEY (id),
            KEY status_started (status, started_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            // One row per action; field names only, never values; hash-chained.
            "CREATE TABLE IF NOT EXISTS `{p}wc_retention_audit` (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            run_id BIGINT UNSIGNED NOT NULL,
            created_at DATETIME(6) NOT NULL,
            rule VARCHAR(64) NOT NULL,
            action VARCHAR(64) NOT NULL,
            entity_type VARCHAR(32) NOT NULL,
            entity_id BIGINT UNSIGNED NOT NULL,
            field_names TEXT NOT NULL,
            prev_hash CHAR(64) NOT NULL,
            hash CHAR(64) NOT NULL,
            PRIMARY KEY (id),
            KEY run (run_id),
            KEY entity (entity_type, entity_id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            // The register of data-subject requests: the subject only as HMAC(pepper, email).
            "CREATE TABLE IF NOT EXISTS `{p}wc_retention_requests` (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
            kind VARCHAR(20) NOT NULL,
            subject_hash CHAR(64) NOT NULL,
            received_at DATETIME NOT NULL,
            deadline_at DATETIME NOT NULL,
            completed_at DATETIME NULL,
            status VARCHAR(20) NOT NULL,
            wp_request_id BIGINT UNSIGNED NULL,
            PRIMARY KEY (id),
            UNIQUE KEY wp_request (wp_request_id),
            KEY subject (subject_hash),
            KEY status_deadline (status, deadline_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        ],
    },
    Migration {
        version: 2,
        description: "a request's deadline extension and its reason",
        // A reason code (complexity, number), never free text: erasure entries must hold
        // nothing about the person.
        statements: &["ALTER TABLE `{p}wc_retention_requests` ADD COLUMN extension_reason VARCHAR(20) NULL"],
    },
    Migration {
        version: 3,
        description: "what reading a run's changes back through the REST API found",
        // JSON: entities checked, mismatches by id and field name (never values), errors.
        statements: &["ALTER TABLE `{p}wc_retention_runs` ADD COLUMN verification TEXT NULL"],
    },
];

/// The schema version this build creates.
pub const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The own tables of DESIGN §5 (unprefixed), for `check` and the grants.
pub const OWN_TABLES: [&str; 4] = [
    "wc_retention_schema",
    "wc_retention_runs",
    "wc_retention_audit",
    "wc_retention_requests",
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS `{p}wc_retention_schema` (
    version INT UNSIGNED NOT NULL,
    description VARCHAR(200) NOT NULL,
    applied_at DATETIME NOT NULL,
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// What `migrate` did.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub from: Option<u32>,
    pub to: u32,
}

/// The version of the own tables, `None` if they were never created.
pub async fn current_version(conn: &mut mysql_async::Conn, store: &Store) -> Result<Option<u32>, StoreError> {
    let sql = format!("SELECT MAX(version) FROM {}", store.table("wc_retention_schema"));
    match conn.query_first::<Option<u32>, _>(sql).await {
        Ok(v) => Ok(v.flatten()),
        // Absent, or not granted: either way `migrate` is what creates and reports it.
        Err(mysql_async::Error::Server(e)) if e.code == 1146 || e.code == 1142 => Ok(None),
        Err(e) => Err(StoreError::sql("reading the own schema version", store)(e)),
    }
}

/// Brings the own tables to [`LATEST`]. Safe to run twice and concurrently; refuses a
/// database whose own tables are newer than this build.
pub async fn migrate(store: &Store) -> Result<Outcome, StoreError> {
    let mut conn = store.conn().await?;
    // Lock names are server-wide and at most 64 characters long.
    let lock: String = format!("wc-retention-migrate:{}", store.database())
        .chars()
        .take(64)
        .collect();
    let got: Option<Option<i64>> = conn
        .exec_first("SELECT GET_LOCK(?, 60)", (&lock,))
        .await
        .map_err(StoreError::sql("taking the migration lock", store))?;
    if got.flatten() != Some(1) {
        return Err(StoreError::Sql {
            context: "taking the migration lock".into(),
            source: mysql_async::Error::Other("another migrate held the lock for 60 s".into()),
        });
    }
    let result = apply_pending(&mut conn, store).await;
    // The lock also dies with the connection; releasing it is for the pool's next user.
    let _ = conn.exec_drop("DO RELEASE_LOCK(?)", (&lock,)).await;
    result
}

async fn apply_pending(conn: &mut mysql_async::Conn, store: &Store) -> Result<Outcome, StoreError> {
    let from = current_version(conn, store).await?;
    if let Some(found) = from.filter(|v| *v > LATEST) {
        return Err(StoreError::SchemaTooNew { found, known: LATEST });
    }
    let prefixed = |sql: &str| sql.replace("{p}", store.prefix());
    conn.query_drop(prefixed(VERSION_TABLE))
        .await
        .map_err(StoreError::sql("creating the schema version table", store))?;
    for m in MIGRATIONS.iter().filter(|m| from.is_none_or(|v| m.version > v)) {
        for sql in m.statements {
            match conn.query_drop(prefixed(sql)).await {
                // A column added by a run cut short before its version row: MySQL has no
                // ADD COLUMN IF NOT EXISTS, so "duplicate column" counts as done.
                Err(mysql_async::Error::Server(e)) if e.code == 1060 => {}
                other => other.map_err(StoreError::sql(
                    format!("applying own schema version {}", m.version),
                    store,
                ))?,
            }
        }
        conn.exec_drop(
            format!(
                "INSERT IGNORE INTO {} (version, description, applied_at) VALUES (?, ?, UTC_TIMESTAMP())",
                store.table("wc_retention_schema")
            ),
            (m.version, m.description),
        )
        .await
        .map_err(StoreError::sql(
            format!("recording own schema version {}", m.version),
            store,
        ))?;
        tracing::info!(version = m.version, description = m.description, "own schema migrated");
    }
    Ok(Outcome { from, to: LATEST })
}
