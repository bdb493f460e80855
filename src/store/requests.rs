//! The register of data-subject requests (`wp_wc_retention_requests`) and finding the
//! accounts a request names. The register holds the subject only as a keyed hash; for an
//! erasure nothing else about the person is ever written.

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};
use serde::Serialize;

use super::values::{email_of, row_values, text_of, time_of, u64_of};
use super::{Store, StoreError};

/// One row of the register, as `requests list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub id: u64,
    pub kind: String,
    pub status: String,
    /// The first 12 characters of the subject hash: enough to tell entries apart.
    pub subject: String,
    pub received: Option<DateTime<Utc>>,
    pub deadline: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub wp_request_id: Option<u64>,
    /// Why the deadline was extended (`complexity`, `number`), if it was.
    pub extension: Option<String>,
}

const COLUMNS: &str =
    "id, kind, status, subject_hash, received_at, deadline_at, completed_at, wp_request_id, extension_reason";

fn entry(row: Row) -> Option<Entry> {
    let v = row_values(row);
    Some(Entry {
        id: u64_of(&v[0])?,
        kind: text_of(&v[1]),
        status: text_of(&v[2]),
        subject: text_of(&v[3]).chars().take(12).collect(),
        received: time_of(&v[4]),
        deadline: time_of(&v[5]),
        completed: time_of(&v[6]),
        wp_request_id: u64_of(&v[7]),
        extension: Some(text_of(&v[8])).filter(|r| !r.is_empty()),
    })
}

fn datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The accounts with this email (lowercased), in id order.
pub async fn accounts_with_email(store: &Store, email: &str) -> Result<Vec<u64>, StoreError> {
    let mut conn = store.conn().await?;
    let rows: Vec<Row> = conn
        .exec(
            format!(
                "SELECT ID FROM {} WHERE LOWER(user_email) = ? ORDER BY ID",
                store.table("users")
            ),
            (email,),
        )
        .await
        .map_err(StoreError::sql("looking up accounts by email", store))?;
    Ok(rows.into_iter().filter_map(|r| r.as_ref(0).and_then(u64_of)).collect())
}

/// The email of account `user_id`, lowercased; `None` when there is no such user.
pub async fn account_email(store: &Store, user_id: u64) -> Result<Option<String>, StoreError> {
    let mut conn = store.conn().await?;
    let row: Option<Row> = conn
        .exec_first(
            format!("SELECT user_email FROM {} WHERE ID = ?", store.table("users")),
            (user_id,),
        )
        .await
        .map_err(StoreError::sql("looking up an account", store))?;
    Ok(row.map(|r| r.as_ref(0).map(email_of).unwrap_or_default()))
}

/// Which of a subject's entries [`find`] looks for.
pub enum Find {
    /// Not answered yet: a repeated request continues it, keeping its received date and
    /// deadline.
    Open,
    /// A restriction in force.
    Active,
}

/// The subject's oldest entry of this kind in that state.
pub async fn find(store: &Store, kind: &str, hash: &str, state: Find) -> Result<Option<Entry>, StoreError> {
    let condition = match state {
        Find::Open => "completed_at IS NULL",
        Find::Active => "status = 'active'",
    };
    first(
        store,
        &format!("kind = ? AND subject_hash = ? AND {condition}"),
        vec![kind.into(), hash.into()],
    )
    .await
}

/// The oldest entry matching `condition`.
async fn first(store: &Store, condition: &str, params: Vec<Value>) -> Result<Option<Entry>, StoreError> {
    let mut conn = store.conn().await?;
    let row: Option<Row> = conn
        .exec_first(
            format!(
                "SELECT {COLUMNS} FROM {} WHERE {condition} ORDER BY id LIMIT 1",
                store.table("wc_retention_requests")
            ),
            params,
        )
        .await
        .map_err(StoreError::sql("reading the request register", store))?;
    Ok(row.and_then(entry))
}

/// A new register row; returns its id.
pub async fn insert(
    store: &Store,
    kind: &str,
    hash: &str,
    received: DateTime<Utc>,
    deadline: DateTime<Utc>,
    status: &str,
) -> Result<u64, StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "INSERT INTO {} (kind, subject_hash, received_at, deadline_at, status) VALUES (?, ?, ?, ?, ?)",
            store.table("wc_retention_requests")
        ),
        (kind, hash, datetime(received), datetime(deadline), status),
    )
    .await
    .map_err(StoreError::sql("registering the request", store))?;
    Ok(conn.last_insert_id().unwrap_or(0))
}

/// Records that request `id` was answered, with its final status.
pub async fn complete(store: &Store, id: u64, status: &str) -> Result<(), StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "UPDATE {} SET status = ?, completed_at = UTC_TIMESTAMP() WHERE id = ?",
            store.table("wc_retention_requests")
        ),
        (status, id),
    )
    .await
    .map_err(StoreError::sql("recording the request's completion", store))
}

/// Ends the subject's restrictions in force; returns how many there were.
pub async fn lift_restrictions(store: &Store, hash: &str) -> Result<u64, StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "UPDATE {} SET status = 'lifted' WHERE kind = 'restrict' AND status = 'active' AND subject_hash = ?",
            store.table("wc_retention_requests")
        ),
        (hash,),
    )
    .await
    .map_err(StoreError::sql("lifting the restriction", store))?;
    Ok(conn.affected_rows())
}

/// The register, newest first: all, only unanswered ones, or only unanswered ones whose
/// deadline is before `overdue_at`.
pub async fn list(store: &Store, open: bool, overdue_at: Option<DateTime<Utc>>) -> Result<Vec<Entry>, StoreError> {
    let mut conn = store.conn().await?;
    let mut sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE 1 = 1",
        store.table("wc_retention_requests")
    );
    let mut params: Vec<Value> = Vec::new();
    if open || overdue_at.is_some() {
        sql.push_str(" AND completed_at IS NULL");
    }
    if let Some(t) = overdue_at {
        sql.push_str(" AND deadline_at < ?");
        params.push(datetime(t).into());
    }
    sql.push_str(" ORDER BY id DESC");
    let rows: Vec<Row> = match conn.exec(sql, params).await {
        Ok(rows) => rows,
        // Before the first `migrate` the register is empty.
        Err(mysql_async::Error::Server(e)) if e.code == 1146 => Vec::new(),
        Err(e) => return Err(StoreError::sql("reading the request register", store)(e)),
    };
    Ok(rows.into_iter().filter_map(entry).collect())
}

/// A WordPress privacy request (`user_request` post) that is not finished yet.
pub struct WpRequest {
    pub id: u64,
    /// `erase` or `export`.
    pub kind: &'static str,
    pub confirmed: bool,
    /// The requester's email, lowercased: kept in memory to find their data, never logged.
    pub email: String,
    pub received: Option<DateTime<Utc>>,
}

/// The shop's pending and confirmed erasure and export requests, oldest first. Requests
/// of people already forgotten (their email replaced in the post) have nothing left to do.
pub async fn wp_requests(store: &Store) -> Result<Vec<WpRequest>, StoreError> {
    let mut conn = store.conn().await?;
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT ID, post_name, post_status, post_title, post_date_gmt FROM {} \
             WHERE post_type = 'user_request' AND post_name IN ('remove_personal_data', 'export_personal_data') \
             AND post_status IN ('request-pending', 'request-confirmed') AND post_title <> '{}' ORDER BY ID",
            store.table("posts"),
            crate::anonymise::EMAIL
        ))
        .await
        .map_err(StoreError::sql("reading WordPress privacy requests", store))?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let v = row_values(row);
            Some(WpRequest {
                id: u64_of(&v[0])?,
                kind: if text_of(&v[1]) == "remove_personal_data" {
                    "erase"
                } else {
                    "export"
                },
                confirmed: text_of(&v[2]) == "request-confirmed",
                email: email_of(&v[3]),
                received: time_of(&v[4]),
            })
        })
        .collect())
}

/// Entry `id`, if it exists.
pub async fn get(store: &Store, id: u64) -> Result<Option<Entry>, StoreError> {
    first(store, "id = ?", vec![id.into()]).await
}

/// Moves an unanswered entry's deadline, recording why.
pub async fn extend(store: &Store, id: u64, deadline: DateTime<Utc>, reason: &str) -> Result<(), StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "UPDATE {} SET deadline_at = ?, extension_reason = ? WHERE id = ? AND completed_at IS NULL",
            store.table("wc_retention_requests")
        ),
        (datetime(deadline), reason, id),
    )
    .await
    .map_err(StoreError::sql("extending the request's deadline", store))
}

/// The register entry of a WordPress request, if it was registered before.
pub async fn find_wp(store: &Store, wp_id: u64) -> Result<Option<Entry>, StoreError> {
    first(store, "wp_request_id = ?", vec![wp_id.into()]).await
}

/// Registers a WordPress request under its post id.
pub async fn insert_wp(
    store: &Store,
    kind: &str,
    hash: &str,
    received: DateTime<Utc>,
    deadline: DateTime<Utc>,
    status: &str,
    wp_id: u64,
) -> Result<u64, StoreError> {
    let id = insert(store, kind, hash, received, deadline, status).await?;
    set(store, id, "wp_request_id = ?", wp_id).await?;
    Ok(id)
}

/// Moves an unanswered entry to `status` (a WordPress request that got confirmed).
pub async fn set_status(store: &Store, id: u64, status: &str) -> Result<(), StoreError> {
    set(store, id, "status = ?", status).await
}

async fn set(store: &Store, id: u64, assignment: &str, value: impl Into<Value>) -> Result<(), StoreError> {
    let mut conn = store.conn().await?;
    conn.exec_drop(
        format!(
            "UPDATE {} SET {assignment} WHERE id = ?",
            store.table("wc_retention_requests")
        ),
        (value.into(), id),
    )
    .await
    .map_err(StoreError::sql("updating the request register", store))
}

/// Marks a WordPress request completed the way WordPress does (status
/// `request-completed`, the completion timestamp meta, a new modification time), so the
/// shop's Tools › Erase/Export Personal Data screens show it done. An erasure's post also
/// loses the requester's email, the last copy of it in the store.
pub async fn complete_wp(
    store: &Store,
    wp_id: u64,
    erased: bool,
    now: DateTime<Utc>,
    local_now: chrono::NaiveDateTime,
) -> Result<(), StoreError> {
    let sql_err = |what: &'static str| StoreError::sql(what, store);
    let mut conn = store.conn().await?;
    let mut tx = conn
        .start_transaction(mysql_async::TxOpts::default())
        .await
        .map_err(sql_err("completing a WordPress privacy request"))?;
    let title = if erased { ", post_title = ?" } else { "" };
    let mut params: Vec<Value> = vec![
        local_now.format("%Y-%m-%d %H:%M:%S").to_string().into(),
        now.format("%Y-%m-%d %H:%M:%S").to_string().into(),
    ];
    if erased {
        params.push(crate::anonymise::EMAIL.into());
    }
    params.push(wp_id.into());
    tx.exec_drop(
        format!(
            "UPDATE {} SET post_status = 'request-completed', post_modified = ?, post_modified_gmt = ?{title} \
             WHERE ID = ? AND post_type = 'user_request'",
            store.table("posts")
        ),
        params,
    )
    .await
    .map_err(sql_err("completing a WordPress privacy request"))?;
    let meta = store.table("postmeta");
    tx.exec_drop(
        format!("DELETE FROM {meta} WHERE post_id = ? AND meta_key = '_wp_user_request_completed_timestamp'"),
        (wp_id,),
    )
    .await
    .map_err(sql_err("completing a WordPress privacy request"))?;
    tx.exec_drop(
        format!(
            "INSERT INTO {meta} (post_id, meta_key, meta_value) VALUES (?, '_wp_user_request_completed_timestamp', ?)"
        ),
        (wp_id, now.timestamp().to_string()),
    )
    .await
    .map_err(sql_err("completing a WordPress privacy request"))?;
    tx.commit()
        .await
        .map_err(sql_err("completing a WordPress privacy request"))
}
