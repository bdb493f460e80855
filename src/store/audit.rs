//! The service's own records: the hash-chained audit rows written in each batch's
//! transaction, the run rows, and reading the chain back for `audit verify`.

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Transaction, Value};

use super::values::{row_values, text_of, time_of, u64_of};
use super::{Store, StoreError};
use crate::audit::{chain_hash, Record, RunHistory, Verification, GENESIS};
use crate::plan::Step;

/// Audit rows per INSERT statement.
const ROWS_PER_INSERT: usize = 500;

/// Appends one audit row per step to the chain, inside the batch's transaction. Locking
/// the chain's last row orders concurrent writers, so the chain never forks.
pub async fn append(
    tx: &mut Transaction<'_>,
    store: &Store,
    run_id: u64,
    steps: &[Step],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let table = store.table("wc_retention_audit");
    let last: Option<String> = tx
        .query_first(format!("SELECT hash FROM {table} ORDER BY id DESC LIMIT 1 FOR UPDATE"))
        .await
        .map_err(StoreError::sql("reading the audit chain's end", store))?;
    let mut prev = last.unwrap_or_else(|| GENESIS.to_owned());
    let created_at = now.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    for chunk in steps.chunks(ROWS_PER_INSERT) {
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 10);
        for s in chunk {
            let record = Record {
                run_id,
                created_at: &created_at,
                rule: s.rule.as_str(),
                action: s.action.as_str(),
                entity_type: s.action.entity().as_str(),
                entity_id: s.id,
                field_names: s.action.field_names(),
            };
            let hash = chain_hash(&prev, &record);
            params.extend([
                run_id.into(),
                created_at.as_str().into(),
                record.rule.into(),
                record.action.into(),
                record.entity_type.into(),
                s.id.into(),
                record.field_names.into(),
                prev.as_str().into(),
                hash.as_str().into(),
            ]);
            prev = hash;
        }
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        tx.exec_drop(
            format!(
                "INSERT INTO {table} (run_id, created_at, rule, action, entity_type, entity_id, field_names, prev_hash, hash) \
                 VALUES {rows}"
            ),
            params,
        )
        .await
        .map_err(StoreError::sql("writing audit rows", store))?;
    }
    Ok(())
}

/// Walks the whole chain in id order and reports the first row that does not verify.
pub async fn verify(store: &Store) -> Result<Verification, StoreError> {
    let mut conn = store.conn().await?;
    let table = store.table("wc_retention_audit");
    let mut prev = GENESIS.to_owned();
    let mut after = 0u64;
    let mut rows = 0u64;
    loop {
        let chunk: Vec<Row> = conn
            .exec(
                format!(
                    "SELECT id, run_id, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s.%f'), rule, action, entity_type, \
                     entity_id, field_names, prev_hash, hash FROM {table} WHERE id > ? ORDER BY id LIMIT 5000"
                ),
                (after,),
            )
            .await
            .map_err(StoreError::sql("reading the audit chain", store))?;
        if chunk.is_empty() {
            return Ok(Verification {
                rows,
                first_broken: None,
            });
        }
        for row in chunk {
            let v = row_values(row);
            let id = u64_of(&v[0]).unwrap_or(0);
            after = id;
            rows += 1;
            let texts: Vec<String> = v.iter().map(text_of).collect();
            let record = Record {
                run_id: u64_of(&v[1]).unwrap_or(0),
                created_at: &texts[2],
                rule: &texts[3],
                action: &texts[4],
                entity_type: &texts[5],
                entity_id: u64_of(&v[6]).unwrap_or(0),
                field_names: &texts[7],
            };
            if texts[8] != prev {
                return Ok(broken(
                    rows,
                    id,
                    "its prev_hash is not the previous row's hash (a row was removed or reordered)",
                ));
            }
            if chain_hash(&prev, &record) != texts[9] {
                return Ok(broken(
                    rows,
                    id,
                    "its hash does not match its contents (the row was edited)",
                ));
            }
            prev = texts[9].clone();
        }
    }
}

fn broken(rows: u64, id: u64, why: &str) -> Verification {
    Verification {
        rows,
        first_broken: Some((id, why.to_owned())),
    }
}

/// Closes the run rows a process left at `running` when it died mid-run (SIGKILL, power
/// cut); returns how many. Called only under the run lock, so no live run is among them.
pub async fn abandon_stale_runs(conn: &mut Conn, store: &Store) -> Result<u64, StoreError> {
    conn.query_drop(format!(
        "UPDATE {} SET finished_at = UTC_TIMESTAMP(6), status = 'abandoned', \
         error = 'the process ended without recording an outcome' WHERE status = 'running'",
        store.table("wc_retention_runs")
    ))
    .await
    .map_err(StoreError::sql("closing abandoned run rows", store))?;
    Ok(conn.affected_rows())
}

/// The latest completed policy run and, if the latest policy run did not complete, its
/// start. Empty
/// when the own tables do not exist yet.
pub async fn history(store: &Store) -> Result<RunHistory, StoreError> {
    let mut conn = store.conn().await?;
    let runs = store.table("wc_retention_runs");
    // Erasure runs cover one person: they neither stand for nor owe a policy run.
    let policy = "trigger_kind NOT IN ('request', 'wordpress')";
    let sql = format!(
        "SELECT (SELECT MAX(started_at) FROM {runs} WHERE status = 'completed' AND {policy}), \
                (SELECT started_at FROM {runs} WHERE status <> 'completed' \
                 AND id = (SELECT MAX(id) FROM {runs} WHERE {policy}))"
    );
    match conn.query_first::<Row, _>(sql).await {
        Ok(row) => {
            let at = |i: usize| row.as_ref().and_then(|r| r.as_ref(i)).and_then(time_of);
            Ok(RunHistory {
                last_completed: at(0),
                unfinished: at(1),
            })
        }
        Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(RunHistory::default()),
        Err(e) => Err(StoreError::sql("reading the runs table", store)(e)),
    }
}

/// Opens a run row; returns its id.
pub async fn start_run(store: &Store, trigger: &str) -> Result<u64, StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "INSERT INTO {} (trigger_kind, started_at, status) VALUES (?, UTC_TIMESTAMP(6), 'running')",
            store.table("wc_retention_runs")
        ),
        (trigger,),
    )
    .await
    .map_err(StoreError::sql("recording the run", store))?;
    Ok(conn.last_insert_id().unwrap_or(0))
}

/// Closes a run row with its outcome and counts per action.
pub async fn finish_run(
    store: &Store,
    run_id: u64,
    status: &str,
    counts: &serde_json::Value,
    error: Option<&str>,
) -> Result<(), StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "UPDATE {} SET finished_at = UTC_TIMESTAMP(6), status = ?, counts = ?, error = ? WHERE id = ?",
            store.table("wc_retention_runs")
        ),
        (status, counts.to_string(), error, run_id),
    )
    .await
    .map_err(StoreError::sql("recording the run's outcome", store))
}

/// Records what reading the run's changes back through the REST API found (`verify`).
pub async fn record_verification(
    store: &Store,
    run_id: u64,
    verification: &serde_json::Value,
) -> Result<(), StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "UPDATE {} SET verification = ? WHERE id = ?",
            store.table("wc_retention_runs")
        ),
        (verification.to_string(), run_id),
    )
    .await
    .map_err(StoreError::sql("recording the run's verification", store))
}
