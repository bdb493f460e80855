//! Carrying out a plan: one transaction per batch holding the changes and their audit rows.
//! Customer-side statements work on a chunk of user ids, order-side statements on a chunk of
//! order ids (DESIGN §7). Every order is written in every storage where its rows exist
//! (DESIGN §3): the HPOS tables and posts/postmeta alike, with the same modification time,
//! only fields that hold a value, and the address indexes rebuilt, so WooCommerce's sync
//! never copies old data back.
//!
//! This module decides nothing: which entity gets which action is the plan's.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, IsolationLevel, Transaction, TxOpts, Value};

use super::read::{ORDER_MARKER, USER_MARKER};
use super::values::{id_list, id_text_list, u64_of};
use super::{audit, timed, Layout, Store, StoreError};
use crate::anonymise::{self, address_field_sql, address_fields, email_sql, ip_sql, phone_sql, text_sql};
use crate::localtime::ShopZone;
use crate::plan::{Action, Step};

/// What the writer needs to know beyond the plan.
pub struct Writer<'a> {
    pub store: &'a Store,
    pub layout: Layout,
    pub zone: ShopZone,
    /// Keep the shipping address of minimised invoices.
    pub keep_shipping: bool,
    pub extra_order_meta: &'a [String],
    pub extra_user_meta: &'a [String],
    /// Held from reading the audit chain's end to the commit, so that batches committed
    /// side by side chain their audit rows one after the other.
    pub audit_turn: tokio::sync::Mutex<()>,
}

/// One open transaction and the store it belongs to.
struct Tx<'c> {
    tx: Transaction<'c>,
    store: Store,
}

impl Tx<'_> {
    async fn run(&mut self, what: &str, sql: String, params: Vec<Value>) -> Result<u64, StoreError> {
        let started = Instant::now();
        self.tx
            .exec_drop(sql, params)
            .await
            .map_err(StoreError::sql(what.to_owned(), &self.store))?;
        let rows = self.tx.affected_rows();
        timed(what, rows, started);
        Ok(rows)
    }

    async fn ids(&mut self, what: &str, sql: String, params: Vec<Value>) -> Result<Vec<u64>, StoreError> {
        let values = self.column(what, sql, params).await?;
        Ok(values.iter().filter_map(u64_of).collect())
    }

    /// The first column of every row, as stored.
    async fn column(&mut self, what: &str, sql: String, params: Vec<Value>) -> Result<Vec<Value>, StoreError> {
        let started = Instant::now();
        let rows: Vec<Value> = self
            .tx
            .exec(sql, params)
            .await
            .map_err(StoreError::sql(what.to_owned(), &self.store))?;
        timed(what, rows.len() as u64, started);
        Ok(rows)
    }

    fn t(&self, name: &str) -> String {
        self.store.table(name)
    }
}

/// What the customer batches need to know about the whole plan, read once before them
/// by [`Writer::reviews_of`]: comment ids per customer, and whose email is not theirs alone.
#[derive(Default)]
pub struct Reviews {
    by_user: std::collections::HashMap<u64, Vec<u64>>,
    /// The highest comment id when they were read.
    watermark: u64,
    /// The plan's customers whose email an account outside the plan uses too (WordPress
    /// does not enforce unique emails in the database): what is found by that email only
    /// (reviews written logged out, privacy requests, guest analytics rows) may be the
    /// other account's, and stays. Decided once for the whole plan, so batches committed
    /// side by side cannot each wait for the other to take the email away.
    shared_email: HashSet<u64>,
}

/// How much of an order a scrub removes.
#[derive(Clone, Copy)]
struct Scrub {
    /// Billing email and phone, customer note, account link, notes, refund reasons, the
    /// extra meta keys, download permissions.
    contact: bool,
    /// The rest of the billing address (name, company, street, city, postcode, country).
    billing: bool,
    shipping: bool,
    /// The marker meta written on the order.
    marker: Option<(&'static str, Marker)>,
}

#[derive(Clone, Copy)]
enum Marker {
    Yes,
    Now,
}

// Statements that select rows by an entity id and a meta key name the entity-id index:
// on a small table the optimizer may prefer the key's index, which reads (and, under
// read committed too, waits for) the rows of other entities that a batch committed side
// by side is changing. These are WordPress's and WooCommerce's own index names.
/// `wc_orders_meta`'s index on (order_id, meta_key, meta_value).
const HPOS_META_INDEX: &str = "order_id_meta_key_meta_value";

/// The order actions in the order a batch carries them out.
const ORDER_ACTIONS: [Action; 5] = [
    Action::DeleteOrder,
    Action::AnonymiseOrder,
    Action::MinimiseOrder,
    Action::TrashOrder,
    Action::StripOrderIp,
];

impl Writer<'_> {
    async fn begin<'c>(&self, conn: &'c mut Conn) -> Result<Tx<'c>, StoreError> {
        // Read committed: no gap locks, so batches committed side by side do not deadlock
        // on the index gaps between their neighbouring id ranges.
        let mut opts = TxOpts::default();
        opts.with_isolation_level(IsolationLevel::ReadCommitted);
        let tx = conn
            .start_transaction(opts)
            .await
            .map_err(StoreError::sql("starting a transaction", self.store))?;
        Ok(Tx {
            tx,
            store: self.store.clone(),
        })
    }

    /// `now` as WordPress writes it: the GMT column's value and the shop's wall clock.
    fn times(&self, now: DateTime<Utc>) -> (NaiveDateTime, NaiveDateTime) {
        let utc = now.naive_utc();
        (utc, self.zone.wall_clock(now).unwrap_or(utc))
    }

    async fn commit(&self, mut tx: Tx<'_>, run_id: u64, steps: &[Step], now: DateTime<Utc>) -> Result<(), StoreError> {
        let _turn = self.audit_turn.lock().await;
        let started = Instant::now();
        audit::append(&mut tx.tx, self.store, run_id, steps, now).await?;
        timed("appending the audit rows", steps.len() as u64, started);
        let started = Instant::now();
        tx.tx
            .commit()
            .await
            .map_err(StoreError::sql("committing a batch", self.store))?;
        timed("committing a batch", 0, started);
        Ok(())
    }

    /// The reviews (and other comments) the plan's customers wrote while logged in, read
    /// once before the customer batches. WordPress has no index on `comments.user_id`, so
    /// finding them per batch would read every review in the shop once per batch.
    pub async fn reviews_of(&self, conn: &mut Conn, customers: &[Step]) -> Result<Reviews, StoreError> {
        let comments = self.store.table("comments");
        let mut reviews = Reviews::default();
        if customers.is_empty() {
            return Ok(reviews);
        }
        let what = "finding the customers' reviews";
        // The watermark first: a comment written during the scan or later is above it,
        // and the batches look at everything above it.
        let watermark: Option<Value> = conn
            .query_first(format!("SELECT MAX(comment_ID) FROM {comments}"))
            .await
            .map_err(StoreError::sql(what, self.store))?;
        reviews.watermark = watermark.as_ref().and_then(u64_of).unwrap_or(0);
        let wanted: std::collections::HashSet<u64> = customers.iter().map(|s| s.id).collect();
        let started = Instant::now();
        let rows: Vec<(Value, Value)> = conn
            .exec(
                format!(
                    "SELECT comment_ID, user_id FROM {comments} WHERE comment_type <> 'order_note' AND user_id <> 0 \
                     AND comment_ID <= ?"
                ),
                (reviews.watermark,),
            )
            .await
            .map_err(StoreError::sql(what, self.store))?;
        timed(what, rows.len() as u64, started);
        for (comment, user) in rows {
            if let (Some(comment), Some(user)) = (u64_of(&comment), u64_of(&user)) {
                if wanted.contains(&user) {
                    reviews.by_user.entry(user).or_default().push(comment);
                }
            }
        }
        reviews.shared_email = self.shared_emails(conn, &wanted).await?;
        Ok(reviews)
    }

    /// Which of `wanted` share their email with an account that is not in `wanted`. The
    /// accounts sharing one email are grouped by the database's own comparison (letter
    /// case and all), named by the group's lowest id: no email leaves the server.
    async fn shared_emails(&self, conn: &mut Conn, wanted: &HashSet<u64>) -> Result<HashSet<u64>, StoreError> {
        let users = self.store.table("users");
        let what = "finding accounts that share an email";
        let started = Instant::now();
        let rows: Vec<(Value, Value)> = conn
            .query(format!(
                "SELECT u.ID, d.first FROM {users} u JOIN (SELECT user_email, MIN(ID) AS first FROM {users} \
                 WHERE user_email <> '' GROUP BY user_email HAVING COUNT(*) > 1) d ON d.user_email = u.user_email"
            ))
            .await
            .map_err(StoreError::sql(what, self.store))?;
        timed(what, rows.len() as u64, started);
        let mut groups: HashMap<u64, Vec<u64>> = HashMap::new();
        for (id, first) in rows {
            if let (Some(id), Some(first)) = (u64_of(&id), u64_of(&first)) {
                groups.entry(first).or_default().push(id);
            }
        }
        Ok(groups
            .into_values()
            .filter(|ids| ids.iter().any(|id| !wanted.contains(id)))
            .flatten()
            .filter(|id| wanted.contains(id))
            .collect())
    }

    /// One batch of customer steps (user ids ascending), atomically with its audit rows.
    pub async fn customers(
        &self,
        conn: &mut Conn,
        run_id: u64,
        steps: &[Step],
        reviews: &Reviews,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(conn).await?;
        let own: Vec<u64> = steps
            .iter()
            .map(|s| s.id)
            .filter(|id| !reviews.shared_email.contains(id))
            .collect();
        let emails = self.account_emails(&mut tx, &own).await?;
        self.forget_emails(&mut tx, &emails).await?;
        for delete in [false, true] {
            let wanted = if delete {
                Action::DeleteCustomer
            } else {
                Action::AnonymiseCustomer
            };
            let ids: Vec<u64> = steps.iter().filter(|s| s.action == wanted).map(|s| s.id).collect();
            if !ids.is_empty() {
                self.forget_customers(&mut tx, &ids, delete, reviews, now).await?;
            }
        }
        self.commit(tx, run_id, steps, now).await
    }

    async fn forget_customers(
        &self,
        tx: &mut Tx<'_>,
        ids: &[u64],
        delete: bool,
        reviews: &Reviews,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let list = id_list(ids.iter().copied());
        let (users, usermeta, comments) = (tx.t("users"), tx.t("usermeta"), tx.t("comments"));
        let review = review_sets("c");
        // Primary-key ranges only: the known reviews and whatever came after the scan.
        let known = id_list(ids.iter().flat_map(|id| reviews.by_user.get(id)).flatten().copied());
        let known = if known.is_empty() {
            String::new()
        } else {
            format!("c.comment_ID IN ({known}) OR ")
        };
        tx.run(
            "anonymising the customers' reviews",
            format!(
                "UPDATE {comments} c SET {review} WHERE ({known}c.comment_ID > {watermark}) \
                 AND c.user_id IN ({list}) AND c.comment_type <> 'order_note'",
                watermark = reviews.watermark
            ),
            vec![],
        )
        .await?;
        let unlink = if delete { ", user_id = NULL" } else { "" };
        tx.run(
            "anonymising the customers' analytics rows",
            format!(
                "UPDATE {} SET username = CONCAT('{login}', user_id), first_name = {}, last_name = {}, email = {}, \
                 postcode = {}, city = {}, state = '', country = ''{unlink} WHERE user_id IN ({list})",
                tx.t("wc_customer_lookup"),
                text_sql("first_name"),
                text_sql("last_name"),
                email_sql("email"),
                text_sql("postcode"),
                text_sql("city"),
                login = anonymise::LOGIN_PREFIX,
            ),
            vec![],
        )
        .await?;
        tx.run(
            "deleting the customers' sessions",
            format!(
                "DELETE FROM {} WHERE session_key IN ({})",
                tx.t("woocommerce_sessions"),
                id_text_list(ids.iter().copied())
            ),
            vec![],
        )
        .await?;
        let tokens = tx.t("woocommerce_payment_tokens");
        tx.run(
            "deleting the customers' payment token details",
            format!(
                "DELETE m FROM {} m JOIN {tokens} t ON t.token_id = m.payment_token_id WHERE t.user_id IN ({list})",
                tx.t("woocommerce_payment_tokenmeta")
            ),
            vec![],
        )
        .await?;
        tx.run(
            "deleting the customers' payment tokens",
            format!("DELETE FROM {tokens} WHERE user_id IN ({list})"),
            vec![],
        )
        .await?;
        if delete {
            tx.run(
                "deleting the customers' profile meta",
                format!("DELETE FROM {usermeta} WHERE user_id IN ({list})"),
                vec![],
            )
            .await?;
            tx.run(
                "deleting the customers",
                format!("DELETE FROM {users} WHERE ID IN ({list})"),
                vec![],
            )
            .await?;
            return Ok(());
        }
        let extra = placeholders(self.extra_user_meta.len());
        let extra_clause = if extra.is_empty() {
            String::new()
        } else {
            format!(" OR meta_key IN ({extra})")
        };
        tx.run(
            "deleting the customers' personal meta",
            format!(
                "DELETE m FROM {usermeta} m FORCE INDEX (user_id) WHERE user_id IN ({list}) AND (meta_key IN ('session_tokens', \
                 'community-events-location', '_woocommerce_tracks_anon_id', 'wc_last_active') \
                 OR meta_key LIKE 'billing\\_%' OR meta_key LIKE 'shipping\\_%' \
                 OR meta_key LIKE '\\_woocommerce\\_persistent\\_cart%'{extra_clause})"
            ),
            self.extra_user_meta.iter().map(|k| Value::from(k.as_str())).collect(),
        )
        .await?;
        tx.run(
            "emptying the customers' names",
            format!(
                "UPDATE {usermeta} FORCE INDEX (user_id) SET meta_value = CASE meta_key WHEN 'nickname' THEN CONCAT('{login}', user_id) \
                 ELSE '' END WHERE user_id IN ({list}) AND meta_key IN ('first_name', 'last_name', 'nickname', 'description')",
                login = anonymise::LOGIN_PREFIX
            ),
            vec![],
        )
        .await?;
        tx.run(
            "marking the customers anonymised",
            format!(
                "INSERT INTO {usermeta} (user_id, meta_key, meta_value) SELECT u.ID, '{USER_MARKER}', ? FROM {users} u \
                 WHERE u.ID IN ({list}) AND NOT EXISTS (SELECT 1 FROM {usermeta} m WHERE m.user_id = u.ID AND m.meta_key = '{USER_MARKER}')"
            ),
            vec![now.timestamp().to_string().into()],
        )
        .await?;
        tx.run(
            "anonymising the customers' accounts",
            format!(
                "UPDATE {users} SET user_login = CONCAT('{login}', ID), user_nicename = CONCAT('{login}', ID), \
                 user_email = CONCAT('{login}', ID, '{domain}'), user_url = '', display_name = '{text}', \
                 user_pass = SHA2(CONCAT(?, ID), 256), user_activation_key = '' WHERE ID IN ({list})",
                login = anonymise::LOGIN_PREFIX,
                domain = anonymise::LOGIN_DOMAIN,
                text = anonymise::TEXT,
            ),
            vec![anonymise::random_token().into()],
        )
        .await?;
        Ok(())
    }

    /// One batch of order steps (order ids ascending), atomically with its audit rows.
    pub async fn orders(
        &self,
        conn: &mut Conn,
        run_id: u64,
        steps: &[Step],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(conn).await?;
        // Forgetting a person also reaches what their emails name outside the orders;
        // the emails are read before the orders lose them.
        let forgotten: Vec<u64> = steps
            .iter()
            .filter(|s| s.rule.forgets_subject() && matches!(s.action, Action::AnonymiseOrder | Action::MinimiseOrder))
            .map(|s| s.id)
            .collect();
        let emails = self.order_emails(&mut tx, &forgotten).await?;
        let emails = self.without_accounts(&mut tx, emails).await?;
        self.forget_emails(&mut tx, &emails).await?;
        for action in ORDER_ACTIONS {
            let ids: Vec<u64> = steps.iter().filter(|s| s.action == action).map(|s| s.id).collect();
            if ids.is_empty() {
                continue;
            }
            let scrub = |contact, billing, shipping, marker| Scrub {
                contact,
                billing,
                shipping,
                marker,
            };
            match action {
                Action::DeleteOrder => self.delete_orders(&mut tx, &ids).await?,
                Action::TrashOrder => self.trash_orders(&mut tx, &ids, now).await?,
                Action::AnonymiseOrder => {
                    let s = scrub(true, true, true, Some(("_anonymized", Marker::Yes)));
                    self.scrub_orders(&mut tx, &ids, s, now).await?
                }
                Action::MinimiseOrder => {
                    let s = scrub(true, false, !self.keep_shipping, Some((ORDER_MARKER, Marker::Now)));
                    self.scrub_orders(&mut tx, &ids, s, now).await?
                }
                Action::StripOrderIp => {
                    self.scrub_orders(&mut tx, &ids, scrub(false, false, false, None), now)
                        .await?
                }
                _ => {}
            }
        }
        self.commit(tx, run_id, steps, now).await
    }

    /// The orders and their refunds, which follow their parent.
    async fn with_refunds(&self, tx: &mut Tx<'_>, ids: &[u64]) -> Result<Vec<u64>, StoreError> {
        let list = id_list(ids.iter().copied());
        let mut all: BTreeSet<u64> = ids.iter().copied().collect();
        if self.layout.hpos {
            let sql = format!(
                "SELECT id FROM {} WHERE parent_order_id IN ({list}) AND type = 'shop_order_refund'",
                tx.t("wc_orders")
            );
            all.extend(tx.ids("finding refunds", sql, vec![]).await?);
        }
        let sql = format!(
            "SELECT ID FROM {} WHERE post_parent IN ({list}) AND post_type = 'shop_order_refund'",
            tx.t("posts")
        );
        all.extend(tx.ids("finding refunds", sql, vec![]).await?);
        Ok(all.into_iter().collect())
    }

    async fn scrub_orders(&self, tx: &mut Tx<'_>, ids: &[u64], s: Scrub, now: DateTime<Utc>) -> Result<(), StoreError> {
        let all = self.with_refunds(tx, ids).await?;
        let parents = id_list(ids.iter().copied());
        let list = id_list(all.iter().copied());
        let (utc, local) = self.times(now);
        if s.contact {
            self.replace_notes(tx, ids, &list, now).await?;
            let permissions = tx.t("woocommerce_downloadable_product_permissions");
            tx.run(
                "anonymising download logs",
                format!(
                    "UPDATE {} l JOIN {permissions} p ON p.permission_id = l.permission_id \
                     SET l.user_ip_address = {}, l.user_id = 0 WHERE p.order_id IN ({list})",
                    tx.t("wc_download_log"),
                    ip_sql("l.user_ip_address")
                ),
                vec![],
            )
            .await?;
            tx.run(
                "anonymising download permissions",
                format!(
                    "UPDATE {permissions} SET user_email = {}, user_id = 0 WHERE order_id IN ({list})",
                    email_sql("user_email")
                ),
                vec![],
            )
            .await?;
        }
        let meta_keys = self.order_meta_keys(s);
        let address_changes = self.address_changes(s);

        if self.layout.hpos {
            let mut sets = vec![
                format!("ip_address = {}", ip_sql("ip_address")),
                format!("user_agent = {}", text_sql("user_agent")),
                "date_updated_gmt = ?".to_owned(),
            ];
            if s.contact {
                sets.push(format!("billing_email = {}", email_sql("billing_email")));
                sets.push(format!("customer_note = {}", text_sql("customer_note")));
                sets.push("customer_id = 0".to_owned());
            }
            tx.run(
                "anonymising orders (HPOS)",
                format!(
                    "UPDATE {} SET {} WHERE id IN ({list})",
                    tx.t("wc_orders"),
                    sets.join(", ")
                ),
                vec![utc.into()],
            )
            .await?;
            if !address_changes.is_empty() {
                tx.run(
                    "anonymising order addresses (HPOS)",
                    format!(
                        "UPDATE {} SET {} WHERE order_id IN ({list}) AND address_type IN ({})",
                        tx.t("wc_order_addresses"),
                        address_sets(&address_changes),
                        kinds_sql(&address_changes, |kind| kind.to_owned())
                    ),
                    vec![],
                )
                .await?;
            }
            tx.run(
                "anonymising order meta (HPOS)",
                format!(
                    "UPDATE {} FORCE INDEX ({HPOS_META_INDEX}) SET meta_value = {} WHERE order_id IN ({list}) AND meta_key IN ({}) \
                     AND meta_value IS NOT NULL AND meta_value <> ''",
                    tx.t("wc_orders_meta"),
                    meta_value_sql(),
                    placeholders(meta_keys.len())
                ),
                meta_keys.iter().map(|k| Value::from(k.as_str())).collect(),
            )
            .await?;
            if !address_changes.is_empty() {
                // One statement for both kinds: the index row names its address row. An
                // order without an address row of a kind gets that kind's empty index, as
                // WooCommerce writes it: whatever the old index held goes.
                let index = |kind: &str| {
                    let joined: Vec<String> = address_fields(kind).map(|f| format!("COALESCE(a.{f}, '')")).collect();
                    format!("CONCAT_WS(' ', {})", joined.join(", "))
                };
                tx.run(
                    "rebuilding address indexes (HPOS)",
                    format!(
                        "UPDATE {} m FORCE INDEX ({HPOS_META_INDEX}) LEFT JOIN {} a ON a.order_id = m.order_id \
                         AND a.address_type = IF(m.meta_key = '_billing_address_index', 'billing', 'shipping') \
                         SET m.meta_value = IF(m.meta_key = '_billing_address_index', {}, {}) \
                         WHERE m.order_id IN ({parents}) AND m.meta_key IN ({})",
                        tx.t("wc_orders_meta"),
                        tx.t("wc_order_addresses"),
                        index("billing"),
                        index("shipping"),
                        kinds_sql(&address_changes, |kind| format!("_{kind}_address_index"))
                    ),
                    vec![],
                )
                .await?;
            }
            if let Some((key, value)) = s.marker {
                let meta = tx.t("wc_orders_meta");
                tx.run(
                    "marking orders (HPOS)",
                    format!(
                        "INSERT INTO {meta} (order_id, meta_key, meta_value) SELECT o.id, ?, ? FROM {} o \
                         WHERE o.id IN ({parents}) AND NOT EXISTS (SELECT 1 FROM {meta} m WHERE m.order_id = o.id AND m.meta_key = ?)",
                        tx.t("wc_orders")
                    ),
                    vec![key.into(), marker_value(value, now).into(), key.into()],
                )
                .await?;
            }
        }

        // Posts storage: the order posts and their meta. Placeholders hold no data.
        let posts = tx.t("posts");
        let postmeta = tx.t("postmeta");
        let excerpt = if s.contact {
            format!(", post_excerpt = {}", text_sql("post_excerpt"))
        } else {
            String::new()
        };
        tx.run(
            "anonymising orders (posts)",
            format!(
                "UPDATE {posts} SET post_modified = ?, post_modified_gmt = ?{excerpt} \
                 WHERE ID IN ({list}) AND post_type IN ('shop_order', 'shop_order_refund')"
            ),
            vec![local.into(), utc.into()],
        )
        .await?;
        let mut keys: Vec<String> = meta_keys.clone();
        let mut emptied: Vec<String> = Vec::new();
        for (kind, fields) in &address_changes {
            for f in fields {
                let key = format!("_{kind}_{f}");
                if matches!(*f, "state" | "country") {
                    // WooCommerce keeps no postmeta row for an empty field.
                    emptied.push(key);
                } else {
                    keys.push(key);
                }
            }
        }
        if s.contact {
            keys.push("_customer_user".to_owned());
        }
        let value = meta_value_sql();
        tx.run(
            "anonymising order meta (posts)",
            format!(
                "UPDATE {postmeta} FORCE INDEX (post_id) SET meta_value = {value} WHERE post_id IN ({list}) AND meta_key IN ({}) \
                 AND meta_value IS NOT NULL AND meta_value <> ''",
                placeholders(keys.len())
            ),
            keys.iter().map(|k| Value::from(k.as_str())).collect(),
        )
        .await?;
        if !emptied.is_empty() {
            tx.run(
                "emptying order countries and states (posts)",
                format!(
                    "DELETE m FROM {postmeta} m FORCE INDEX (post_id) WHERE post_id IN ({list}) AND meta_key IN ({})",
                    placeholders(emptied.len())
                ),
                emptied.iter().map(|k| Value::from(k.as_str())).collect(),
            )
            .await?;
        }
        if !address_changes.is_empty() {
            // One pass over the orders' meta builds both indexes; an order without any
            // field of a kind (WooCommerce stores no row for an empty one) gets that kind's
            // empty index, as in the HPOS table above.
            let mut columns = Vec::new();
            let mut sources = Vec::new();
            let mut cases = Vec::new();
            for (kind, _) in &address_changes {
                let keys: Vec<String> = address_fields(kind).map(|f| format!("'_{kind}_{f}'")).collect();
                let joined: Vec<String> = address_fields(kind)
                    .map(|f| format!("MAX(IF(meta_key = '_{kind}_{f}', meta_value, ''))"))
                    .collect();
                columns.push(format!("CONCAT_WS(' ', {}) AS {kind}", joined.join(", ")));
                let empty = " ".repeat(keys.len() - 1);
                cases.push(format!(
                    "WHEN idx.meta_key = '_{kind}_address_index' THEN COALESCE(src.{kind}, '{empty}')"
                ));
                sources.extend(keys);
            }
            tx.run(
                "rebuilding address indexes (posts)",
                format!(
                    "UPDATE {postmeta} idx FORCE INDEX (post_id) LEFT JOIN (SELECT post_id, {} FROM {postmeta} FORCE INDEX (post_id) \
                     WHERE post_id IN ({parents}) AND meta_key IN ({}) GROUP BY post_id) src ON src.post_id = idx.post_id \
                     SET idx.meta_value = CASE {} ELSE idx.meta_value END \
                     WHERE idx.post_id IN ({parents}) AND idx.meta_key IN ({})",
                    columns.join(", "),
                    sources.join(", "),
                    cases.join(" "),
                    kinds_sql(&address_changes, |kind| format!("_{kind}_address_index"))
                ),
                vec![],
            )
            .await?;
        }
        if let Some((key, value)) = s.marker {
            tx.run(
                "marking orders (posts)",
                format!(
                    "INSERT INTO {postmeta} (post_id, meta_key, meta_value) SELECT p.ID, ?, ? FROM {posts} p \
                     WHERE p.ID IN ({parents}) AND p.post_type = 'shop_order' \
                     AND NOT EXISTS (SELECT 1 FROM {postmeta} m WHERE m.post_id = p.ID AND m.meta_key = ?)"
                ),
                vec![key.into(), marker_value(value, now).into(), key.into()],
            )
            .await?;
        }
        Ok(())
    }

    /// Meta keys whose values a scrub replaces with `[deleted]` (or the IP/email value).
    fn order_meta_keys(&self, s: Scrub) -> Vec<String> {
        let mut keys: Vec<String> = [
            "_customer_ip_address",
            "_customer_user_agent",
            "_wc_order_attribution_user_agent",
        ]
        .map(String::from)
        .to_vec();
        if s.contact {
            keys.push("_refund_reason".to_owned());
            keys.extend(self.extra_order_meta.iter().cloned());
        }
        keys
    }

    /// Address fields a scrub changes, per address kind.
    fn address_changes(&self, s: Scrub) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut changes = Vec::new();
        if s.contact || s.billing {
            let fields = address_fields("billing")
                .filter(|f| s.billing || !anonymise::kept_on_invoice(f))
                .collect();
            changes.push(("billing", fields));
        }
        if s.shipping {
            changes.push(("shipping", address_fields("shipping").collect()));
        }
        changes
    }

    /// The accounts' emails, read before the accounts lose them.
    async fn account_emails(&self, tx: &mut Tx<'_>, ids: &[u64]) -> Result<Vec<Value>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT user_email FROM {} WHERE ID IN ({}) AND user_email <> ''",
            tx.t("users"),
            id_list(ids.iter().copied())
        );
        tx.column("reading the accounts' emails", sql, vec![]).await
    }

    /// The distinct billing emails of these orders, from the authoritative storage, as
    /// stored: they go back to the server as they came, whatever their bytes.
    async fn order_emails(&self, tx: &mut Tx<'_>, ids: &[u64]) -> Result<Vec<Value>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = id_list(ids.iter().copied());
        let skip = format!("NOT IN ('', '{}')", anonymise::EMAIL);
        let sql = if self.layout.read_hpos {
            format!(
                "SELECT DISTINCT billing_email FROM {} WHERE id IN ({list}) AND billing_email {skip}",
                tx.t("wc_orders")
            )
        } else {
            format!(
                "SELECT DISTINCT meta_value FROM {} WHERE post_id IN ({list}) \
                 AND meta_key = '_billing_email' AND meta_value {skip}",
                tx.t("postmeta")
            )
        };
        tx.column("reading the orders' emails", sql, vec![]).await
    }

    /// The emails no account uses. Order batches run after the plan's accounts were
    /// anonymised, so an account that still has an order's email is one the plan keeps
    /// (another person with that email, or the same person's new account after the old
    /// one was deleted): what is found by that email only is theirs too, and stays.
    /// Emails go to the server as parameters, compared in the users table's collation.
    async fn without_accounts(&self, tx: &mut Tx<'_>, emails: Vec<Value>) -> Result<Vec<Value>, StoreError> {
        if emails.is_empty() {
            return Ok(emails);
        }
        let users = tx.t("users");
        let what = "looking for accounts with the orders' emails";
        let taken = tx
            .column(
                what,
                format!(
                    "SELECT 1 FROM {users} FORCE INDEX (user_email) WHERE user_email IN ({}) LIMIT 1",
                    placeholders(emails.len())
                ),
                emails.clone(),
            )
            .await?;
        if taken.is_empty() {
            return Ok(emails);
        }
        // Rare: one by one, so the server's comparison decides which.
        let mut free = Vec::with_capacity(emails.len());
        for email in emails {
            let sql = format!("SELECT 1 FROM {users} FORCE INDEX (user_email) WHERE user_email = ? LIMIT 1");
            if tx.column(what, sql, vec![email.clone()]).await?.is_empty() {
                free.push(email);
            }
        }
        Ok(free)
    }

    /// Reviews, privacy requests and guest analytics rows under the emails of forgotten
    /// accounts and of forgotten people's orders. Each is found by a plain read first and
    /// changed by primary key: two batches side by side often share a person, and a
    /// locking scan of an email index would also wait for rows of other people whose
    /// emails begin alike (the index holds a prefix) until the other batch commits.
    async fn forget_emails(&self, tx: &mut Tx<'_>, emails: &[Value]) -> Result<(), StoreError> {
        if emails.is_empty() {
            return Ok(());
        }
        let marks = placeholders(emails.len());
        let changes = [
            (
                "anonymising reviews under the emails",
                format!(
                    "SELECT comment_ID FROM {} FORCE INDEX (comment_author_email) \
                     WHERE comment_author_email IN ({marks}) AND comment_type <> 'order_note'",
                    tx.t("comments")
                ),
                format!(
                    "UPDATE {} c SET {} WHERE c.comment_ID IN",
                    tx.t("comments"),
                    review_sets("c")
                ),
            ),
            (
                "removing the emails from privacy requests",
                format!(
                    "SELECT ID FROM {} WHERE post_type = 'user_request' AND post_title IN ({marks})",
                    tx.t("posts")
                ),
                format!(
                    "UPDATE {} SET post_title = '{}' WHERE ID IN",
                    tx.t("posts"),
                    anonymise::EMAIL
                ),
            ),
            (
                // Guests' rows, and rows of accounts deleted without WooCommerce (the
                // row still names a user that no longer exists).
                "anonymising guest analytics rows under the emails",
                format!(
                    "SELECT l.customer_id FROM {} l FORCE INDEX (email) WHERE l.email IN ({marks}) \
                     AND (l.user_id IS NULL OR NOT EXISTS (SELECT 1 FROM {} u WHERE u.ID = l.user_id))",
                    tx.t("wc_customer_lookup"),
                    tx.t("users")
                ),
                format!(
                    "UPDATE {} SET username = '', first_name = {}, last_name = {}, email = '{}', postcode = {}, \
                     city = {}, state = '', country = '' WHERE customer_id IN",
                    tx.t("wc_customer_lookup"),
                    text_sql("first_name"),
                    text_sql("last_name"),
                    anonymise::EMAIL,
                    text_sql("postcode"),
                    text_sql("city"),
                ),
            ),
        ];
        for (what, find, change) in changes {
            let ids = tx.ids(what, find, emails.to_vec()).await?;
            if !ids.is_empty() {
                tx.run(what, format!("{change} ({})", id_list(ids)), vec![]).await?;
            }
        }
        Ok(())
    }

    /// Order notes quote names, emails and phones: all go, and one note without personal
    /// data says why, as WooCommerce's own eraser does.
    async fn replace_notes(
        &self,
        tx: &mut Tx<'_>,
        parents: &[u64],
        all: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let comments = tx.t("comments");
        self.delete_notes(tx, all).await?;
        let (utc, local) = self.times(now);
        let rows =
            vec!["(?, 'WooCommerce', '', '', '', ?, ?, ?, 0, '1', 'wc-retention', 'order_note', 0, 0)"; parents.len()];
        let params: Vec<Value> = parents
            .iter()
            .flat_map(|id| {
                [
                    Value::from(*id),
                    local.into(),
                    utc.into(),
                    Value::from(anonymise::ORDER_NOTE),
                ]
            })
            .collect();
        tx.run(
            "adding the \"Personal data removed.\" notes",
            format!(
                "INSERT INTO {comments} (comment_post_ID, comment_author, comment_author_email, comment_author_url, \
                 comment_author_IP, comment_date, comment_date_gmt, comment_content, comment_karma, comment_approved, \
                 comment_agent, comment_type, comment_parent, user_id) VALUES {}",
                rows.join(", ")
            ),
            params,
        )
        .await?;
        Ok(())
    }

    async fn delete_notes(&self, tx: &mut Tx<'_>, all: &str) -> Result<(), StoreError> {
        let comments = tx.t("comments");
        tx.run(
            "deleting order note meta",
            format!(
                "DELETE cm FROM {} cm JOIN {comments} c FORCE INDEX (comment_post_ID) ON c.comment_ID = cm.comment_id \
                 WHERE c.comment_post_ID IN ({all}) AND c.comment_type = 'order_note'",
                tx.t("commentmeta")
            ),
            vec![],
        )
        .await?;
        tx.run(
            "deleting order notes",
            format!("DELETE c FROM {comments} c FORCE INDEX (comment_post_ID) WHERE comment_post_ID IN ({all}) AND comment_type = 'order_note'"),
            vec![],
        )
        .await?;
        Ok(())
    }

    async fn trash_orders(&self, tx: &mut Tx<'_>, ids: &[u64], now: DateTime<Utc>) -> Result<(), StoreError> {
        let list = id_list(ids.iter().copied());
        let (utc, local) = self.times(now);
        let ts = now.timestamp().to_string();
        if self.layout.hpos {
            let (orders, meta) = (tx.t("wc_orders"), tx.t("wc_orders_meta"));
            tx.run(
                "remembering the statuses of trashed orders (HPOS)",
                format!(
                    "INSERT INTO {meta} (order_id, meta_key, meta_value) SELECT id, '_wp_trash_meta_status', status \
                     FROM {orders} WHERE id IN ({list}) AND status <> 'trash' \
                     UNION ALL SELECT id, '_wp_trash_meta_time', ? FROM {orders} WHERE id IN ({list}) AND status <> 'trash'"
                ),
                vec![ts.as_str().into()],
            )
            .await?;
            tx.run(
                "trashing orders (HPOS)",
                format!("UPDATE {orders} SET status = 'trash', date_updated_gmt = ? WHERE id IN ({list})"),
                vec![utc.into()],
            )
            .await?;
        }
        let (posts, postmeta) = (tx.t("posts"), tx.t("postmeta"));
        tx.run(
            "remembering the statuses of trashed orders (posts)",
            format!(
                "INSERT INTO {postmeta} (post_id, meta_key, meta_value) SELECT ID, '_wp_trash_meta_status', post_status \
                 FROM {posts} WHERE ID IN ({list}) AND post_type = 'shop_order' AND post_status <> 'trash' \
                 UNION ALL SELECT ID, '_wp_trash_meta_time', ? FROM {posts} WHERE ID IN ({list}) \
                 AND post_type = 'shop_order' AND post_status <> 'trash'"
            ),
            vec![ts.as_str().into()],
        )
        .await?;
        tx.run(
            "trashing orders (posts)",
            format!(
                "UPDATE {posts} SET post_status = 'trash', post_modified = ?, post_modified_gmt = ? \
                 WHERE ID IN ({list}) AND post_type = 'shop_order'"
            ),
            vec![local.into(), utc.into()],
        )
        .await?;
        Ok(())
    }

    async fn delete_orders(&self, tx: &mut Tx<'_>, ids: &[u64]) -> Result<(), StoreError> {
        let all = self.with_refunds(tx, ids).await?;
        let list = id_list(all.iter().copied());
        self.delete_notes(tx, &list).await?;
        let items = tx.t("woocommerce_order_items");
        let permissions = tx.t("woocommerce_downloadable_product_permissions");
        let mut statements = vec![
            (
                "deleting order item meta",
                format!(
                    "DELETE im FROM {} im JOIN {items} i ON i.order_item_id = im.order_item_id WHERE i.order_id IN ({list})",
                    tx.t("woocommerce_order_itemmeta")
                ),
            ),
            ("deleting order items", format!("DELETE FROM {items} WHERE order_id IN ({list})")),
            (
                "deleting download logs",
                format!(
                    "DELETE l FROM {} l JOIN {permissions} p ON p.permission_id = l.permission_id WHERE p.order_id IN ({list})",
                    tx.t("wc_download_log")
                ),
            ),
            (
                "deleting download permissions",
                format!("DELETE FROM {permissions} WHERE order_id IN ({list})"),
            ),
            (
                "deleting order analytics",
                format!("DELETE FROM {} WHERE order_id IN ({list})", tx.t("wc_order_stats")),
            ),
            (
                "deleting order product analytics",
                format!("DELETE FROM {} WHERE order_id IN ({list})", tx.t("wc_order_product_lookup")),
            ),
        ];
        if self.layout.hpos {
            for table in ["wc_orders_meta", "wc_order_addresses", "wc_order_operational_data"] {
                statements.push((
                    "deleting orders (HPOS)",
                    format!("DELETE FROM {} WHERE order_id IN ({list})", tx.t(table)),
                ));
            }
            statements.push((
                "deleting orders (HPOS)",
                format!("DELETE FROM {} WHERE id IN ({list})", tx.t("wc_orders")),
            ));
        }
        statements.push((
            "deleting orders (posts)",
            format!("DELETE FROM {} WHERE post_id IN ({list})", tx.t("postmeta")),
        ));
        statements.push((
            "deleting orders (posts)",
            format!(
                "DELETE FROM {} WHERE ID IN ({list}) AND post_type IN ('shop_order', 'shop_order_refund', 'shop_order_placehold')",
                tx.t("posts")
            ),
        ));
        for (what, sql) in statements {
            tx.run(what, sql, vec![]).await?;
        }
        Ok(())
    }

    /// One batch of expired sessions.
    pub async fn sessions(
        &self,
        conn: &mut Conn,
        run_id: u64,
        steps: &[Step],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE session_id IN ({}) AND session_expiry < ?",
            self.store.table("woocommerce_sessions"),
            id_list(steps.iter().map(|s| s.id))
        );
        let what = "deleting expired sessions";
        self.one_statement(conn, run_id, steps, now, what, sql, vec![now.timestamp().into()])
            .await
    }

    /// One batch of download log entries.
    pub async fn downloads(
        &self,
        conn: &mut Conn,
        run_id: u64,
        steps: &[Step],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {} SET user_ip_address = {} WHERE download_log_id IN ({})",
            self.store.table("wc_download_log"),
            ip_sql("user_ip_address"),
            id_list(steps.iter().map(|s| s.id))
        );
        let what = "removing download log IP addresses";
        self.one_statement(conn, run_id, steps, now, what, sql, vec![]).await
    }

    /// A batch that is one statement, with its audit rows.
    #[allow(clippy::too_many_arguments)]
    async fn one_statement(
        &self,
        conn: &mut Conn,
        run_id: u64,
        steps: &[Step],
        now: DateTime<Utc>,
        what: &str,
        sql: String,
        params: Vec<Value>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(conn).await?;
        tx.run(what, sql, params).await?;
        self.commit(tx, run_id, steps, now).await
    }
}

/// The SET list that anonymises a comment's author (reviews and other comments; the text
/// itself is the author's content and stays).
fn review_sets(c: &str) -> String {
    format!(
        "{c}.comment_author = '{text}', {c}.comment_author_email = {email}, {c}.comment_author_url = '', \
         {c}.comment_author_IP = {ip}, {c}.comment_agent = {agent}, {c}.user_id = 0",
        text = anonymise::TEXT,
        email = email_sql(&format!("{c}.comment_author_email")),
        ip = ip_sql(&format!("{c}.comment_author_IP")),
        agent = text_sql(&format!("{c}.comment_agent")),
    )
}

/// The anonymised value of an order meta row, the same in both meta tables: emails and
/// phones keep their kind (a shop's own `delivery_contact_phone` too), the rest is text.
fn meta_value_sql() -> String {
    format!(
        "CASE WHEN meta_key LIKE '%\\_email' THEN '{email}' WHEN meta_key LIKE '%\\_phone' THEN {phone} \
         WHEN meta_key = '_customer_ip_address' THEN '{ip}' WHEN meta_key = '_customer_user' THEN '0' ELSE '{text}' END",
        email = anonymise::EMAIL,
        phone = phone_sql("meta_value"),
        ip = anonymise::IP,
        text = anonymise::TEXT,
    )
}

/// An SQL list with one quoted name per address kind of a scrub: `name("billing")`, ….
fn kinds_sql(changes: &[(&str, Vec<&str>)], name: impl Fn(&str) -> String) -> String {
    let quoted: Vec<String> = changes.iter().map(|(kind, _)| format!("'{}'", name(kind))).collect();
    quoted.join(", ")
}

/// The SET list that anonymises the changed fields of both address kinds in one
/// statement over `wc_order_addresses`; a field one kind keeps stays as it is there.
fn address_sets(changes: &[(&str, Vec<&str>)]) -> String {
    anonymise::ADDRESS_FIELDS
        .iter()
        .filter(|f| changes.iter().any(|(_, fields)| fields.contains(f)))
        .map(|f| {
            let whens: Vec<String> = changes
                .iter()
                .filter(|(_, fields)| fields.contains(f))
                .map(|(kind, _)| format!("WHEN '{kind}' THEN {}", address_field_sql(f, f)))
                .collect();
            format!("{f} = CASE address_type {} ELSE {f} END", whens.join(" "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn marker_value(m: Marker, now: DateTime<Utc>) -> String {
    match m {
        Marker::Yes => "yes".to_owned(),
        Marker::Now => now.timestamp().to_string(),
    }
}
