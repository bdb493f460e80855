//! Retention scenarios end to end: generate a store in each storage mode (legacy posts,
//! HPOS, HPOS with compatibility sync), run the real `wc-retention` binary against it and
//! check the rows a shop operator would look at: accounts, orders in every storage, notes,
//! analytics rows, sessions, the audit trail and the run record.
//!
//! Which subjects a run must forget is worked out here independently of the service, from
//! the rows themselves (the "last activity" of the README), with a safety margin of two
//! days around every cut-off so the shop's time zone never decides a test.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeZone;
use common::{wc_retention, write_config, Run, TestDb, ADDRESS_FIELDS, SERVICE_PASSWORD};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as Sql};
use serde_json::Value;
use wc_retention::fixture::{self, Mode, Spec};

/// Every plan and apply runs as of the generator's "now".
const NOW: &str = "2026-11-24T00:00:00Z";
const CUSTOMERS: u64 = 60;
const SEED: u64 = 11;

/// The anonymised values (WooCommerce's own eraser's).
const TEXT: &str = "[deleted]";
const EMAIL: &str = "deleted@site.invalid";
const IP: &str = "0.0.0.0";
const NOTE: &str = "Personal data removed.";
const USER_MARKER: &str = "_wc_retention_anonymised";
const ORDER_MARKER: &str = "_wc_retention_minimised";

const PEPPER: &str = "engine-tests-pepper-0123456789abcdef";
const DAY: i64 = 86_400;
/// No subject or order within this distance of a cut-off is used to judge the service.
const MARGIN: i64 = 2 * DAY;

const SAFE_DEFAULTS: &str = "max_share = 1.0\nmax_customers_per_run = 1000000\n";

// ---------------------------------------------------------------------------------------
// The store under test and the binary
// ---------------------------------------------------------------------------------------

/// A generated store, its config file and the spec it was generated from.
struct Shop {
    db: TestDb,
    spec: Spec,
    dir: tempfile::TempDir,
    cfg: String,
    /// The service's account, holding only the privileges of deploy/grants.sql.
    service_url: String,
}

impl Shop {
    async fn new(test: &str, mode: Mode) -> Shop {
        let db = TestDb::new(&format!("engine_{test}_{mode}")).await;
        let spec = Spec::new("wp_", mode, CUSTOMERS, SEED);
        common::generate(&db.pool, &spec).await;
        let dir = tempfile::tempdir().unwrap();
        let mut shop = Shop {
            cfg: String::new(),
            service_url: db.service_url().await,
            db,
            spec,
            dir,
        };
        shop.configure(SAFE_DEFAULTS, "");
        shop
    }

    fn mode(&self) -> Mode {
        self.spec.mode
    }

    /// Writes the config: `safety` is the body of `[safety]`, `extra` more sections.
    fn configure(&mut self, safety: &str, extra: &str) {
        let text = format!(
            "[database]\nurl = \"{}\"\npassword = \"{SERVICE_PASSWORD}\"\n\n[safety]\n{safety}\n\
             [personal_data]\n\
             extra_order_meta_keys = [\"gift_recipient_name\", \"delivery_contact_phone\"]\n\
             extra_user_meta_keys = [\"date_of_birth\"]\n\n{extra}",
            self.service_url
        );
        self.cfg = write_config(&self.dir, &text);
    }

    /// Runs the binary with this shop's config; whatever it prints must not name anyone.
    fn cli(&self, args: &[&str]) -> Run {
        self.cli_with(args, &[])
    }

    /// [`Self::cli`] with settings from the environment.
    fn cli_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = vec!["--config", self.cfg.as_str()];
        all.extend_from_slice(args);
        let run = wc_retention(&all, env);
        assert_no_personal_data(&self.spec, &run, &args.join(" "));
        run
    }

    fn plan(&self, extra: &[&str]) -> Run {
        let mut args = vec!["plan", "--now", NOW];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    fn plan_json(&self) -> Value {
        let run = self.plan(&["--json"]);
        assert_eq!(run.code, 0, "{}: plan failed:\n{}", self.mode(), run.all_output());
        json(&run)
    }

    fn apply(&self, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "--now", NOW];
        args.extend_from_slice(extra);
        self.cli(&args)
    }

    /// `apply --json`, which must succeed; returns the printed document.
    fn apply_json(&self) -> Value {
        let run = self.apply(&["--json"]);
        assert_eq!(run.code, 0, "{}: apply failed:\n{}", self.mode(), run.all_output());
        json(&run)
    }

    /// A connection whose session reads and writes times in UTC, as the service's does.
    async fn conn(&self) -> Conn {
        let mut conn = self.db.pool.get_conn().await.unwrap();
        conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
        conn
    }

    async fn finish(self) {
        self.db.drop().await;
    }
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no JSON on stdout ({e}):\n{}", run.all_output()))
}

/// The logs and output of a run name no generated person: no email, phone, IP address,
/// user agent, name or street of any customer or guest.
fn assert_no_personal_data(spec: &Spec, run: &Run, what: &str) {
    let out = run.all_output();
    for subject in 0..spec.subjects() {
        for value in fixture::identifying_values(&spec.person(subject)) {
            assert!(
                value.is_empty() || !out.contains(&value),
                "`{what}` ({}) printed personal data of subject {subject}: {value:?}\n{out}",
                spec.mode
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading rows
// ---------------------------------------------------------------------------------------

/// A column as text, `None` for NULL.
fn text(v: &Sql) -> Option<String> {
    match v {
        Sql::NULL => None,
        Sql::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

async fn rows(conn: &mut Conn, sql: &str, params: Vec<Sql>) -> Vec<Vec<Sql>> {
    let rows: Vec<Row> = conn.exec(sql, params).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(Row::unwrap).collect()
}

async fn count(conn: &mut Conn, sql: &str, params: Vec<Sql>) -> u64 {
    conn.exec_first::<u64, _, _>(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or(0)
}

/// `CHECKSUM TABLE` of every table the generator writes: equal sums, unchanged store.
async fn checksums(shop: &Shop) -> Vec<(String, Option<u64>)> {
    let tables: Vec<String> = fixture::TABLES.iter().map(|t| format!("wp_{t}")).collect();
    let mut conn = shop.conn().await;
    conn.query(format!("CHECKSUM TABLE {}", tables.join(", ")))
        .await
        .unwrap()
}

/// How many of the service's own tables exist (none before the first apply or migrate).
async fn own_tables(shop: &Shop) -> u64 {
    let mut conn = shop.conn().await;
    count(
        &mut conn,
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME LIKE 'wp\\_wc\\_retention\\_%'",
        vec![],
    )
    .await
}

async fn audit_rows(shop: &Shop) -> u64 {
    let mut conn = shop.conn().await;
    count(&mut conn, "SELECT COUNT(*) FROM wp_wc_retention_audit", vec![]).await
}

/// A user's row and profile meta, exactly as stored.
#[derive(Debug, Clone, PartialEq)]
struct UserView {
    row: Option<Vec<Sql>>,
    meta: Vec<(String, Option<String>)>,
}

impl UserView {
    async fn read(conn: &mut Conn, id: u64) -> UserView {
        let row = rows(conn, "SELECT * FROM wp_users WHERE ID = ?", vec![id.into()])
            .await
            .into_iter()
            .next();
        let meta = rows(
            conn,
            "SELECT meta_key, meta_value FROM wp_usermeta WHERE user_id = ? ORDER BY umeta_id",
            vec![id.into()],
        )
        .await
        .iter()
        .map(|r| (text(&r[0]).unwrap_or_default(), text(&r[1])))
        .collect();
        UserView { row, meta }
    }

    fn column(&self, i: usize) -> Option<String> {
        self.row.as_ref().and_then(|r| text(&r[i]))
    }

    fn meta(&self, key: &str) -> Option<String> {
        self.meta.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.clone())
    }

    fn has_meta(&self, key: &str) -> bool {
        self.meta.iter().any(|(k, _)| k == key)
    }
}

/// A `wc_customer_lookup` row: user_id, username, first_name, last_name, email, postcode,
/// city, state, country.
async fn lookup_row(conn: &mut Conn, lookup_id: u64) -> Option<Vec<Option<String>>> {
    rows(
        conn,
        "SELECT user_id, username, first_name, last_name, email, postcode, city, state, country \
         FROM wp_wc_customer_lookup WHERE customer_id = ?",
        vec![lookup_id.into()],
    )
    .await
    .first()
    .map(|r| r.iter().map(text).collect())
}

/// One storage's copy of an order: the `wc_orders` row with its addresses and meta, or the
/// `shop_order` post with its postmeta.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    storage: &'static str,
    /// The whole `wc_orders` / `wp_posts` row.
    row: Vec<Sql>,
    status: String,
    customer: Option<String>,
    email: Option<String>,
    ip: Option<String>,
    /// The customer's note at checkout (`customer_note` / `post_excerpt`).
    note: Option<String>,
    billing: BTreeMap<&'static str, Option<String>>,
    shipping: BTreeMap<&'static str, Option<String>>,
    meta: Vec<(String, Option<String>)>,
}

impl Stored {
    fn meta(&self, key: &str) -> Option<String> {
        self.meta.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.clone())
    }

    fn has_meta(&self, key: &str) -> bool {
        self.meta.iter().any(|(k, _)| k == key)
    }
}

/// Everything stored about one order (or refund) in every storage, with its notes.
#[derive(Debug, Clone, PartialEq)]
struct OrderView {
    id: u64,
    stored: Vec<Stored>,
    notes: Vec<String>,
}

impl OrderView {
    async fn read(conn: &mut Conn, id: u64) -> OrderView {
        let mut stored = Vec::new();
        let order = rows(conn, "SELECT * FROM wp_wc_orders WHERE id = ?", vec![id.into()]).await;
        if let Some(row) = order.into_iter().next() {
            let r = rows(
                conn,
                "SELECT status, customer_id, billing_email, ip_address, customer_note FROM wp_wc_orders WHERE id = ?",
                vec![id.into()],
            )
            .await
            .remove(0);
            let mut addresses: BTreeMap<String, BTreeMap<&'static str, Option<String>>> = BTreeMap::new();
            let sql = format!(
                "SELECT address_type, {} FROM wp_wc_order_addresses WHERE order_id = ?",
                ADDRESS_FIELDS.join(", ")
            );
            for a in rows(conn, &sql, vec![id.into()]).await {
                let kind = text(&a[0]).unwrap_or_default();
                let fields = ADDRESS_FIELDS.iter().zip(&a[1..]).map(|(f, v)| (*f, text(v))).collect();
                addresses.insert(kind, fields);
            }
            let meta = rows(
                conn,
                "SELECT meta_key, meta_value FROM wp_wc_orders_meta WHERE order_id = ? ORDER BY id",
                vec![id.into()],
            )
            .await;
            stored.push(Stored {
                storage: "hpos",
                row,
                status: text(&r[0]).unwrap_or_default(),
                customer: text(&r[1]),
                email: text(&r[2]),
                ip: text(&r[3]),
                note: text(&r[4]),
                billing: addresses.remove("billing").unwrap_or_default(),
                shipping: addresses.remove("shipping").unwrap_or_default(),
                meta: meta
                    .iter()
                    .map(|m| (text(&m[0]).unwrap_or_default(), text(&m[1])))
                    .collect(),
            });
        }
        let post = rows(
            conn,
            "SELECT * FROM wp_posts WHERE ID = ? AND post_type IN ('shop_order', 'shop_order_refund')",
            vec![id.into()],
        )
        .await;
        if let Some(row) = post.into_iter().next() {
            let post = rows(
                conn,
                "SELECT post_status, post_excerpt FROM wp_posts WHERE ID = ?",
                vec![id.into()],
            )
            .await
            .remove(0);
            let status = text(&post[0]).unwrap_or_default();
            let meta: Vec<(String, Option<String>)> = rows(
                conn,
                "SELECT meta_key, meta_value FROM wp_postmeta WHERE post_id = ? ORDER BY meta_id",
                vec![id.into()],
            )
            .await
            .iter()
            .map(|m| (text(&m[0]).unwrap_or_default(), text(&m[1])))
            .collect();
            let get = |key: &str| meta.iter().find(|(k, _)| k == key).and_then(|(_, v)| v.clone());
            let address = |kind: &str| {
                ADDRESS_FIELDS
                    .iter()
                    .filter(|f| !(kind == "shipping" && **f == "email"))
                    .map(|f| (*f, get(&format!("_{kind}_{f}"))))
                    .collect()
            };
            stored.push(Stored {
                storage: "posts",
                row,
                status,
                customer: get("_customer_user"),
                email: get("_billing_email"),
                ip: get("_customer_ip_address"),
                note: text(&post[1]),
                billing: address("billing"),
                shipping: address("shipping"),
                meta: meta.clone(),
            });
        }
        let notes = rows(
            conn,
            "SELECT comment_content FROM wp_comments WHERE comment_post_ID = ? AND comment_type = 'order_note' \
             ORDER BY comment_ID",
            vec![id.into()],
        )
        .await
        .iter()
        .map(|r| text(&r[0]).unwrap_or_default())
        .collect();
        OrderView { id, stored, notes }
    }

    fn storage(&self, name: &str) -> Option<&Stored> {
        self.stored.iter().find(|s| s.storage == name)
    }
}

async fn order_views(conn: &mut Conn, ids: &[u64]) -> BTreeMap<u64, OrderView> {
    let mut views = BTreeMap::new();
    for id in ids {
        views.insert(*id, OrderView::read(conn, *id).await);
    }
    views
}

/// The storages a mode keeps orders in.
fn storages(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::Legacy => &["posts"],
        Mode::Hpos => &["hpos"],
        Mode::HposSync => &["hpos", "posts"],
    }
}

/// A phone number with every digit replaced by 0, as WooCommerce's eraser does.
fn zeroed(phone: &str) -> String {
    phone
        .chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect()
}

fn filled(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------
// What a run must do, worked out from the rows
// ---------------------------------------------------------------------------------------

/// One `shop_order` as the authoritative storage of the mode holds it.
#[derive(Debug, Clone)]
struct OrderFact {
    id: u64,
    customer: u64,
    /// Lowercased billing email.
    email: String,
    status: String,
    created: i64,
    /// The date the invoice belongs to: paid, else completed, else created.
    dated: i64,
}

#[derive(Debug, Clone)]
struct UserFact {
    id: u64,
    email: String,
    /// The latest of registration, `wc_last_active`, `last_update` and session visits.
    seen: i64,
    /// WordPress login sessions exist (their login times are not worked out here).
    logged_in: bool,
}

/// What must happen to an order of a forgotten customer or guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Minimise,
    Anonymise,
    Delete,
}

struct Facts {
    spec: Spec,
    now: i64,
    inactive_before: i64,
    users: Vec<UserFact>,
    orders: Vec<OrderFact>,
}

impl Facts {
    async fn read(shop: &Shop) -> Facts {
        let mut conn = shop.conn().await;
        let users = rows(
            &mut conn,
            "SELECT u.ID, LOWER(TRIM(u.user_email)), UNIX_TIMESTAMP(u.user_registered), \
             (SELECT MAX(CAST(m.meta_value AS SIGNED)) FROM wp_usermeta m WHERE m.user_id = u.ID \
              AND m.meta_key IN ('wc_last_active', 'last_update')), \
             (SELECT MAX(s.session_expiry) - 172800 FROM wp_woocommerce_sessions s WHERE s.session_key = CAST(u.ID AS CHAR) COLLATE utf8mb4_unicode_520_ci), \
             EXISTS(SELECT 1 FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'session_tokens') \
             FROM wp_users u ORDER BY u.ID",
            vec![],
        )
        .await
        .iter()
        .map(|r| {
            let int = |v: &Sql| text(v).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
            UserFact {
                id: int(&r[0]) as u64,
                email: text(&r[1]).unwrap_or_default(),
                seen: int(&r[2]).max(int(&r[3])).max(int(&r[4])),
                logged_in: int(&r[5]) == 1,
            }
        })
        .collect();
        let sql = if shop.mode() == Mode::Legacy {
            "SELECT p.ID, COALESCE(c.meta_value, '0'), LOWER(TRIM(COALESCE(e.meta_value, ''))), p.post_status, \
             UNIX_TIMESTAMP(p.post_date_gmt), \
             COALESCE(CAST(pd.meta_value AS SIGNED), CAST(cd.meta_value AS SIGNED), UNIX_TIMESTAMP(p.post_date_gmt)) \
             FROM wp_posts p \
             LEFT JOIN wp_postmeta c ON c.post_id = p.ID AND c.meta_key = '_customer_user' \
             LEFT JOIN wp_postmeta e ON e.post_id = p.ID AND e.meta_key = '_billing_email' \
             LEFT JOIN wp_postmeta pd ON pd.post_id = p.ID AND pd.meta_key = '_date_paid' \
             LEFT JOIN wp_postmeta cd ON cd.post_id = p.ID AND cd.meta_key = '_date_completed' \
             WHERE p.post_type = 'shop_order' ORDER BY p.ID"
        } else {
            "SELECT o.id, COALESCE(o.customer_id, 0), LOWER(TRIM(COALESCE(o.billing_email, ''))), o.status, \
             UNIX_TIMESTAMP(o.date_created_gmt), \
             UNIX_TIMESTAMP(COALESCE(d.date_paid_gmt, d.date_completed_gmt, o.date_created_gmt)) \
             FROM wp_wc_orders o LEFT JOIN wp_wc_order_operational_data d ON d.order_id = o.id \
             WHERE o.type = 'shop_order' ORDER BY o.id"
        };
        let orders = rows(&mut conn, sql, vec![])
            .await
            .iter()
            .map(|r| {
                let int = |v: &Sql| text(v).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
                OrderFact {
                    id: int(&r[0]) as u64,
                    customer: int(&r[1]) as u64,
                    email: text(&r[2]).unwrap_or_default(),
                    status: text(&r[3]).unwrap_or_default(),
                    created: int(&r[4]),
                    dated: int(&r[5]),
                }
            })
            .collect();
        let now = fixture::default_now();
        let inactive_before = now.checked_sub_months(chrono::Months::new(36)).unwrap();
        Facts {
            spec: shop.spec.clone(),
            now: now.timestamp(),
            inactive_before: inactive_before.timestamp(),
            users,
            orders,
        }
    }

    fn orders_of_customer(&self, user_id: u64) -> Vec<&OrderFact> {
        self.orders.iter().filter(|o| o.customer == user_id).collect()
    }

    fn orders_of_guest(&self, email: &str) -> Vec<&OrderFact> {
        self.orders
            .iter()
            .filter(|o| o.customer == 0 && o.email == email)
            .collect()
    }

    fn last_order(orders: &[&OrderFact]) -> Option<i64> {
        orders
            .iter()
            .filter(|o| o.status != "wc-checkout-draft")
            .map(|o| o.created)
            .max()
    }

    /// Processing or on-hold orders, or a pending one younger than 30 days.
    fn open(&self, orders: &[&OrderFact]) -> bool {
        orders.iter().any(|o| {
            matches!(o.status.as_str(), "wc-processing" | "wc-on-hold")
                || o.status == "wc-pending" && o.created >= self.now - 30 * DAY - MARGIN
        })
    }

    fn customer_last_activity(&self, u: &UserFact) -> i64 {
        u.seen
            .max(Self::last_order(&self.orders_of_customer(u.id)).unwrap_or(0))
    }

    /// Customers whose last activity lies clearly more than three years back; with
    /// `open_too`, also those whose open orders keep them a client.
    fn inactive_customers(&self, open_too: bool) -> Vec<u64> {
        self.users
            .iter()
            .filter(|u| self.spec.customer_of_user_id(u.id).is_some() && !u.logged_in)
            .filter(|u| self.customer_last_activity(u) < self.inactive_before - MARGIN)
            .filter(|u| open_too || !self.open(&self.orders_of_customer(u.id)))
            .map(|u| u.id)
            .collect()
    }

    /// Customers active clearly within the last three years.
    fn active_customers(&self) -> Vec<u64> {
        self.users
            .iter()
            .filter(|u| self.spec.customer_of_user_id(u.id).is_some())
            .filter(|u| self.customer_last_activity(u) > self.inactive_before + MARGIN)
            .map(|u| u.id)
            .collect()
    }

    fn user_email(&self, user_id: u64) -> String {
        self.users.iter().find(|u| u.id == user_id).unwrap().email.clone()
    }

    /// Guest emails (orders without an account, an email no account uses).
    fn guests(&self) -> BTreeSet<String> {
        let accounts: BTreeSet<&str> = self.users.iter().map(|u| u.email.as_str()).collect();
        self.orders
            .iter()
            .filter(|o| o.customer == 0 && !o.email.is_empty() && !accounts.contains(o.email.as_str()))
            .map(|o| o.email.clone())
            .collect()
    }

    fn inactive_guests(&self) -> Vec<String> {
        self.guests()
            .into_iter()
            .filter(|g| {
                let orders = self.orders_of_guest(g);
                Self::last_order(&orders).is_some_and(|t| t < self.inactive_before - MARGIN) && !self.open(&orders)
            })
            .collect()
    }

    fn active_guests(&self) -> Vec<String> {
        self.guests()
            .into_iter()
            .filter(|g| Self::last_order(&self.orders_of_guest(g)).is_some_and(|t| t > self.inactive_before + MARGIN))
            .collect()
    }

    /// What happens to an order of a forgotten subject; `None` near a cut-off.
    fn expect_forgotten(&self, o: &OrderFact) -> Option<Expect> {
        match o.status.as_str() {
            "wc-checkout-draft" if o.created < self.now - 7 * DAY - MARGIN => Some(Expect::Delete),
            "wc-checkout-draft" => None,
            // Invoices are kept seven years after the end of their fiscal year (calendar
            // years, Amsterdam time): invoices of 2019 until 2026-12-31, of 2018 no longer.
            "wc-completed" | "wc-refunded" => {
                let end_2018 = chrono::Utc.with_ymd_and_hms(2018, 12, 31, 0, 0, 0).unwrap().timestamp();
                if o.dated < end_2018 - MARGIN {
                    Some(Expect::Anonymise)
                } else if o.dated > end_2018 + MARGIN {
                    Some(Expect::Minimise)
                } else {
                    None
                }
            }
            _ => Some(Expect::Anonymise),
        }
    }

    /// The subject index of a guest email.
    fn guest_subject(&self, email: &str) -> u64 {
        (0..self.spec.guests)
            .map(|g| self.spec.guest_subject(g))
            .find(|s| self.spec.person(*s).email.to_lowercase() == email)
            .unwrap_or_else(|| panic!("no generated guest has this email"))
    }
}

/// Refund ids of orders, from every storage.
async fn refunds_of(conn: &mut Conn, parents: &[u64]) -> Vec<u64> {
    let mut ids = BTreeSet::new();
    for p in parents {
        for r in rows(
            conn,
            "SELECT id FROM wp_wc_orders WHERE parent_order_id = ? AND type = 'shop_order_refund' \
             UNION SELECT ID FROM wp_posts WHERE post_parent = ? AND post_type = 'shop_order_refund'",
            vec![(*p).into(), (*p).into()],
        )
        .await
        {
            ids.insert(text(&r[0]).unwrap().parse::<u64>().unwrap());
        }
    }
    ids.into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// Assertions on orders
// ---------------------------------------------------------------------------------------

/// The checks both scrubs share: contact data gone, account unlinked, one neutral note.
fn assert_contact_removed(mode: Mode, before: &OrderView, after: &OrderView, how: &str) {
    let id = after.id;
    let names: Vec<&str> = after.stored.iter().map(|s| s.storage).collect();
    assert_eq!(names, storages(mode), "{mode} order {id}: storages after {how}");
    for s in &after.stored {
        let b = before
            .storage(s.storage)
            .unwrap_or_else(|| panic!("{mode} order {id}: no {} copy before", s.storage));
        let at = format!("{mode} order {id} ({how}, {})", s.storage);
        assert_eq!(s.status, b.status, "{at}: status");
        assert_eq!(s.customer.as_deref(), Some("0"), "{at}: account link");
        assert_eq!(s.email.as_deref(), Some(EMAIL), "{at}: billing email");
        if s.storage == "hpos" {
            assert_eq!(s.billing["email"].as_deref(), Some(EMAIL), "{at}: address email");
        }
        if filled(&b.ip) {
            assert_eq!(s.ip.as_deref(), Some(IP), "{at}: IP address");
        }
        if filled(&b.note) {
            assert_eq!(s.note.as_deref(), Some(TEXT), "{at}: customer note");
        }
        if let Some(phone) = &b.billing["phone"] {
            assert_eq!(
                s.billing["phone"].as_deref(),
                Some(zeroed(phone).as_str()),
                "{at}: phone"
            );
        }
        for key in [
            "gift_recipient_name",
            "_customer_user_agent",
            "_wc_order_attribution_user_agent",
        ] {
            if filled(&b.meta(key)) {
                assert_eq!(s.meta(key).as_deref(), Some(TEXT), "{at}: {key}");
            }
        }
        if let Some(phone) = b.meta("delivery_contact_phone") {
            assert_eq!(
                s.meta("delivery_contact_phone"),
                Some(zeroed(&phone)),
                "{at}: delivery phone"
            );
        }
        for f in ["first_name", "last_name", "address_1", "city", "postcode"] {
            if filled(&b.shipping[f]) {
                assert_eq!(s.shipping[f].as_deref(), Some(TEXT), "{at}: shipping {f}");
            }
        }
    }
    assert_eq!(
        after.notes,
        vec![NOTE.to_owned()],
        "{mode} order {id}: notes after {how}"
    );
}

/// A kept invoice: the billing name and address stay, contact data and shipping go.
fn assert_minimised(mode: Mode, before: &OrderView, after: &OrderView) {
    assert_contact_removed(mode, before, after, "minimised");
    for s in &after.stored {
        let b = before.storage(s.storage).unwrap();
        let at = format!("{mode} order {} (minimised, {})", after.id, s.storage);
        for f in ["first_name", "last_name", "address_1", "city", "postcode", "country"] {
            assert!(filled(&b.billing[f]), "{at}: the fixture has no billing {f}");
            assert_eq!(s.billing[f], b.billing[f], "{at}: billing {f} must stay on the invoice");
        }
        assert!(s.has_meta(ORDER_MARKER), "{at}: no {ORDER_MARKER}");
        assert!(!s.has_meta("_anonymized"), "{at}: anonymised instead");
    }
}

/// An order past its retention or never an invoice: nothing personal left.
fn assert_anonymised(mode: Mode, before: &OrderView, after: &OrderView) {
    assert_contact_removed(mode, before, after, "anonymised");
    for s in &after.stored {
        let b = before.storage(s.storage).unwrap();
        let at = format!("{mode} order {} (anonymised, {})", after.id, s.storage);
        assert_eq!(s.meta("_anonymized").as_deref(), Some("yes"), "{at}: _anonymized");
        for f in ["first_name", "last_name", "address_1", "city", "postcode"] {
            if filled(&b.billing[f]) {
                assert_eq!(s.billing[f].as_deref(), Some(TEXT), "{at}: billing {f}");
            }
        }
        assert!(!filled(&s.billing["country"]), "{at}: billing country");
    }
}

/// The order is gone from every order table.
async fn assert_deleted(conn: &mut Conn, mode: Mode, id: u64) {
    for (table, column) in [
        ("wp_wc_orders", "id"),
        ("wp_wc_orders_meta", "order_id"),
        ("wp_wc_order_addresses", "order_id"),
        ("wp_wc_order_operational_data", "order_id"),
        ("wp_posts", "ID"),
        ("wp_postmeta", "post_id"),
        ("wp_woocommerce_order_items", "order_id"),
        ("wp_wc_order_stats", "order_id"),
        ("wp_wc_order_product_lookup", "order_id"),
        ("wp_comments", "comment_post_ID"),
    ] {
        let n = count(
            conn,
            &format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?"),
            vec![id.into()],
        )
        .await;
        assert_eq!(n, 0, "{mode} order {id}: rows left in {table}");
    }
}

/// Checks every order of a forgotten subject against what must happen to it; returns how
/// many were minimised, anonymised and deleted.
async fn assert_forgotten_orders(
    conn: &mut Conn,
    facts: &Facts,
    orders: &[&OrderFact],
    before: &BTreeMap<u64, OrderView>,
) -> [usize; 3] {
    let mode = facts.spec.mode;
    let mut seen = [0; 3];
    for o in orders {
        let Some(expect) = facts.expect_forgotten(o) else {
            continue;
        };
        let after = OrderView::read(conn, o.id).await;
        let b = &before[&o.id];
        match expect {
            Expect::Minimise => assert_minimised(mode, b, &after),
            Expect::Anonymise => assert_anonymised(mode, b, &after),
            Expect::Delete => assert_deleted(conn, mode, o.id).await,
        }
        seen[expect as usize] += 1;
    }
    seen
}

/// Snapshots of the orders (and their refunds) of some subjects.
async fn snapshot_orders(conn: &mut Conn, orders: &[&OrderFact]) -> BTreeMap<u64, OrderView> {
    let ids: Vec<u64> = orders.iter().map(|o| o.id).collect();
    let mut all = ids.clone();
    all.extend(refunds_of(conn, &ids).await);
    order_views(conn, &all).await
}

/// Where in the whole store any of `values` (subject, what, value) still occurs: one
/// (table, subject, what) per hit. WordPress's own privacy request records (`user_request`
/// posts, titled with the requester's email) are not the service's to change.
async fn traces(shop: &Shop, values: &[(u64, &'static str, String)]) -> Vec<(String, u64, &'static str)> {
    let mut conn = shop.conn().await;
    let mut found = Vec::new();
    let values: Vec<&(u64, &'static str, String)> = values.iter().filter(|(_, _, v)| !v.is_empty()).collect();
    if values.is_empty() {
        return found;
    }
    for table in fixture::TABLES {
        let table = format!("wp_{table}");
        let columns: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
                 AND TABLE_NAME = ? AND DATA_TYPE IN ('char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext')",
                (&table,),
            )
            .await
            .unwrap();
        if columns.is_empty() {
            continue;
        }
        let joined: Vec<String> = columns.iter().map(|c| format!("x.`{c}`")).collect();
        let own_records = if table == "wp_posts" {
            " AND x.post_type <> 'user_request'"
        } else {
            ""
        };
        let candidates = vec!["SELECT ? AS i, ? AS val"; values.len()].join(" UNION ALL ");
        let sql = format!(
            "SELECT v.i FROM ({candidates}) v WHERE EXISTS (SELECT 1 FROM `{table}` x \
             WHERE INSTR(CONCAT_WS(CHAR(1), {}), v.val COLLATE utf8mb4_unicode_520_ci) > 0{own_records})",
            joined.join(", ")
        );
        let params: Vec<Sql> = values
            .iter()
            .enumerate()
            .flat_map(|(i, (_, _, v))| [Sql::from(i as u64), Sql::from(v.as_str())])
            .collect();
        for r in rows(&mut conn, &sql, params).await {
            let i: usize = text(&r[0]).unwrap().parse().unwrap();
            found.push((table.clone(), values[i].0, values[i].1));
        }
    }
    found
}

/// A forgotten subject is nowhere in the store any more. An invoice still kept needs the
/// billing name and street, so for a subject with one only the contact data is looked for.
async fn assert_forgotten_everywhere(shop: &Shop, subjects: &[(u64, bool)]) {
    let mut values = Vec::new();
    for (subject, kept_invoice) in subjects {
        let p = shop.spec.person(*subject);
        values.extend([
            (*subject, "email", p.email.clone()),
            (*subject, "phone", p.phone.clone()),
            (*subject, "IP address", p.ip.clone()),
            (*subject, "user agent", p.user_agent.clone()),
        ]);
        if !kept_invoice {
            values.extend([
                (*subject, "full name", p.full_name()),
                (*subject, "last name", p.last_name.clone()),
                (*subject, "street", p.address_1.clone()),
            ]);
        }
    }
    let found = traces(shop, &values).await;
    assert!(
        found.is_empty(),
        "{}: forgotten subjects still found (table, subject, what): {found:?}",
        shop.mode()
    );
}

/// Whether a subject whose orders are `orders` keeps an invoice (or might: near the cut-off).
fn keeps_invoice(facts: &Facts, orders: &[&OrderFact]) -> bool {
    orders.iter().any(|o| {
        matches!(o.status.as_str(), "wc-completed" | "wc-refunded")
            && facts.expect_forgotten(o) != Some(Expect::Anonymise)
    })
}

/// A second apply finds nothing left to do and writes no audit rows.
async fn assert_rerun_applies_nothing(shop: &Shop) {
    let audit = audit_rows(shop).await;
    let doc = shop.apply_json();
    assert_eq!(
        doc["outcome"]["applied"],
        0,
        "{}: a second apply still had work: {}",
        shop.mode(),
        doc["plan"]
    );
    assert_eq!(audit_rows(shop).await, audit, "{}: audit rows of a rerun", shop.mode());
}

// ---------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn inactive_customers_are_anonymised_and_active_ones_untouched() {
    for mode in Mode::ALL {
        let shop = Shop::new("inactive_customers", mode).await;
        let facts = Facts::read(&shop).await;
        let inactive = facts.inactive_customers(false);
        let active = facts.active_customers();
        assert!(inactive.len() >= 5, "{mode}: the store has too few inactive customers");

        // The inactive customer under the magnifier, given a saved card and a (long
        // expired) cart session; and a customer who ordered this year.
        let gone = inactive[0];
        let recent = *active
            .iter()
            .rev()
            .find(|id| Facts::last_order(&facts.orders_of_customer(**id)).is_some_and(|t| t > facts.now - 365 * DAY))
            .expect("a customer who ordered in the last year");
        let mut conn = shop.conn().await;
        conn.exec_drop(
            "INSERT INTO wp_woocommerce_payment_tokens (gateway_id, token, user_id, type, is_default) \
             VALUES ('stripe', 'pm_engine_test', ?, 'CC', 1)",
            (gone,),
        )
        .await
        .unwrap();
        conn.query_drop(
            "INSERT INTO wp_woocommerce_payment_tokenmeta (payment_token_id, meta_key, meta_value) \
             VALUES (LAST_INSERT_ID(), 'last4', '4242')",
        )
        .await
        .unwrap();
        conn.exec_drop(
            "INSERT INTO wp_woocommerce_sessions (session_key, session_value, session_expiry) VALUES (?, 'a:0:{}', ?)",
            (gone.to_string(), facts.inactive_before - 400 * DAY),
        )
        .await
        .unwrap();
        let gone_before = UserView::read(&mut conn, gone).await;
        assert!(
            gone_before.has_meta("billing_first_name"),
            "{mode}: {gone} has no billing meta"
        );
        let recent_before = UserView::read(&mut conn, recent).await;
        let recent_lookup = lookup_row(
            &mut conn,
            facts
                .spec
                .customer_lookup_id(facts.spec.customer_of_user_id(recent).unwrap()),
        )
        .await;
        let mut others_before = BTreeMap::new();
        for id in &active {
            others_before.insert(*id, UserView::read(&mut conn, *id).await);
        }

        let plan = shop.plan_json();
        assert_eq!(
            plan["counts"]["anonymise_customer"],
            inactive.len(),
            "{mode}: plan {plan}"
        );
        let doc = shop.apply_json();
        assert_eq!(doc["outcome"]["interrupted"], false);

        for id in &inactive {
            let u = UserView::read(&mut conn, *id).await;
            let at = format!("{mode} user {id}");
            // wp_users columns: ID, user_login, user_pass, user_nicename, user_email,
            // user_url, user_registered, user_activation_key, user_status, display_name.
            assert_eq!(u.column(1), Some(format!("anonymised-{id}")), "{at}: login");
            assert_eq!(u.column(3), Some(format!("anonymised-{id}")), "{at}: nicename");
            assert_eq!(
                u.column(4),
                Some(format!("anonymised-{id}@site.invalid")),
                "{at}: email"
            );
            assert_eq!(u.column(5).as_deref(), Some(""), "{at}: url");
            assert_eq!(u.column(9).as_deref(), Some(TEXT), "{at}: display name");
            if *id == gone {
                assert_ne!(u.column(2), gone_before.column(2), "{at}: password hash kept");
            }
            for (key, _) in &u.meta {
                assert!(
                    !key.starts_with("billing_") && !key.starts_with("shipping_") && key != "date_of_birth",
                    "{at}: {key} left"
                );
            }
            assert!(u.has_meta(USER_MARKER), "{at}: no {USER_MARKER}");
            assert_eq!(u.meta("first_name").as_deref(), Some(""), "{at}: first name");
            assert_eq!(u.meta("last_name").as_deref(), Some(""), "{at}: last name");
            assert_eq!(u.meta("nickname"), Some(format!("anonymised-{id}")), "{at}: nickname");
            let subject = facts.spec.customer_of_user_id(*id).unwrap();
            if let Some(l) = lookup_row(&mut conn, facts.spec.customer_lookup_id(subject)).await {
                let expected = [
                    Some(id.to_string()),
                    Some(format!("anonymised-{id}")),
                    Some(TEXT.to_owned()),
                    Some(TEXT.to_owned()),
                    Some(EMAIL.to_owned()),
                    Some(TEXT.to_owned()),
                    Some(TEXT.to_owned()),
                    Some(String::new()),
                    Some(String::new()),
                ];
                assert_eq!(l, expected, "{at}: analytics row");
            }
            let sessions = count(
                &mut conn,
                "SELECT COUNT(*) FROM wp_woocommerce_sessions WHERE session_key = ?",
                vec![id.to_string().into()],
            )
            .await;
            assert_eq!(sessions, 0, "{at}: sessions");
            let tokens = count(
                &mut conn,
                "SELECT COUNT(*) FROM wp_woocommerce_payment_tokens WHERE user_id = ?",
                vec![(*id).into()],
            )
            .await;
            assert_eq!(tokens, 0, "{at}: payment tokens");
            let reviews = count(
                &mut conn,
                "SELECT COUNT(*) FROM wp_comments WHERE user_id = ? AND comment_type <> 'order_note'",
                vec![(*id).into()],
            )
            .await;
            assert_eq!(reviews, 0, "{at}: reviews still linked");
        }
        let token_meta = count(
            &mut conn,
            "SELECT COUNT(*) FROM wp_woocommerce_payment_tokenmeta WHERE meta_value = '4242'",
            vec![],
        )
        .await;
        assert_eq!(token_meta, 0, "{mode}: the saved card's details are left");

        // Exactly the inactive customers, and nobody active, carry the marker.
        let marked: Vec<u64> = rows(
            &mut conn,
            "SELECT user_id FROM wp_usermeta WHERE meta_key = ? ORDER BY user_id",
            vec![USER_MARKER.into()],
        )
        .await
        .iter()
        .map(|r| text(&r[0]).unwrap().parse().unwrap())
        .collect();
        for id in &marked {
            assert!(!active.contains(id), "{mode}: active customer {id} anonymised");
        }
        for id in &inactive {
            assert!(marked.contains(id), "{mode}: inactive customer {id} not anonymised");
        }
        assert_eq!(
            UserView::read(&mut conn, recent).await,
            recent_before,
            "{mode}: user {recent} changed"
        );
        let lookup_after = lookup_row(
            &mut conn,
            facts
                .spec
                .customer_lookup_id(facts.spec.customer_of_user_id(recent).unwrap()),
        )
        .await;
        assert_eq!(lookup_after, recent_lookup, "{mode}: analytics row of {recent} changed");
        for (id, before) in &others_before {
            assert_eq!(
                &UserView::read(&mut conn, *id).await,
                before,
                "{mode}: active user {id} changed"
            );
        }
        drop(conn);
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_of_inactive_customers_are_minimised_or_anonymised_in_every_storage() {
    for mode in Mode::ALL {
        let shop = Shop::new("inactive_orders", mode).await;
        let facts = Facts::read(&shop).await;
        let inactive = facts.inactive_customers(false);
        let orders: Vec<&OrderFact> = inactive.iter().flat_map(|id| facts.orders_of_customer(*id)).collect();
        let mut conn = shop.conn().await;
        let before = snapshot_orders(&mut conn, &orders).await;
        // Orders of active customers must keep their contact data.
        let active_orders: Vec<&OrderFact> = facts
            .active_customers()
            .iter()
            .flat_map(|id| facts.orders_of_customer(*id))
            .filter(|o| matches!(o.status.as_str(), "wc-completed" | "wc-refunded" | "wc-processing"))
            .collect();
        let active_before = snapshot_orders(&mut conn, &active_orders).await;

        shop.apply_json();

        let [minimised, anonymised, deleted] = assert_forgotten_orders(&mut conn, &facts, &orders, &before).await;
        let subjects: Vec<(u64, bool)> = inactive
            .iter()
            .map(|id| {
                let subject = facts.spec.customer_of_user_id(*id).unwrap();
                (subject, keeps_invoice(&facts, &facts.orders_of_customer(*id)))
            })
            .collect();
        assert!(
            subjects.iter().any(|(_, kept)| !kept),
            "{mode}: everyone keeps an invoice"
        );
        assert_forgotten_everywhere(&shop, &subjects).await;
        // ... while the search does find the people who stay.
        let kept = facts.active_customers()[0];
        let kept_subject = facts.spec.customer_of_user_id(kept).unwrap();
        let control = traces(&shop, &[(kept_subject, "email", facts.spec.person(kept_subject).email)]).await;
        assert!(
            control.iter().any(|(t, _, _)| t == "wp_users") && control.iter().any(|(t, _, _)| t == "wp_usermeta"),
            "{mode}: the search misses an active customer's email: {control:?}"
        );
        assert!(minimised >= 3, "{mode}: only {minimised} kept invoices checked");
        assert!(anonymised >= 3, "{mode}: only {anonymised} anonymised orders checked");
        assert!(
            deleted >= 1,
            "{mode}: no old checkout draft of an inactive customer checked"
        );
        // Completed orders of both kinds were seen.
        let completed = |e: Expect| {
            orders
                .iter()
                .any(|o| o.status == "wc-completed" && facts.expect_forgotten(o) == Some(e))
        };
        assert!(completed(Expect::Minimise) && completed(Expect::Anonymise), "{mode}");

        // Refunds follow their order: their reason and notes go too.
        for (id, b) in &before {
            if facts.orders.iter().any(|o| o.id == *id) {
                continue;
            }
            let after = OrderView::read(&mut conn, *id).await;
            for s in &after.stored {
                let old = b.storage(s.storage).unwrap();
                if filled(&old.meta("_refund_reason")) {
                    assert_eq!(s.meta("_refund_reason").as_deref(), Some(TEXT), "{mode} refund {id}");
                }
            }
            assert!(after.notes.is_empty(), "{mode} refund {id}: notes {:?}", after.notes);
        }

        for (id, b) in &active_before {
            let after = OrderView::read(&mut conn, *id).await;
            for s in &after.stored {
                let old = b.storage(s.storage).unwrap();
                let at = format!("{mode} order {id} of an active customer ({})", s.storage);
                assert_eq!(s.email, old.email, "{at}: billing email");
                assert_eq!(s.customer, old.customer, "{at}: account link");
                assert_eq!(s.billing, old.billing, "{at}: billing address");
                assert_eq!(s.shipping, old.shipping, "{at}: shipping address");
                assert!(!s.has_meta(ORDER_MARKER) && !s.has_meta("_anonymized"), "{at}: marked");
            }
            assert_eq!(after.notes, b.notes, "{mode} order {id}: notes of an active customer");
        }
        drop(conn);
        shop.finish().await;
    }
}

/// A customer who checked out as a guest before registering: that order carries their
/// email but no account link. "A guest email that belongs to an account is judged with that
/// account" (README), so it is forgotten with the account, in the same run.
#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_customers_guest_checkout_orders_go_in_the_same_run() {
    for mode in Mode::ALL {
        let shop = Shop::new("guest_checkout", mode).await;
        let facts = Facts::read(&shop).await;
        let (customer, order) = facts
            .inactive_customers(false)
            .into_iter()
            .find_map(|id| {
                let orders = facts.orders_of_customer(id);
                let newest = Facts::last_order(&orders)?;
                let first = orders.iter().find(|o| {
                    o.status == "wc-completed" && o.created < newest && facts.expect_forgotten(o).is_some()
                })?;
                Some((id, (*first).clone()))
            })
            .expect("an inactive customer with an older completed order");
        let mut conn = shop.conn().await;
        // The order was placed as a guest: no account link in any storage.
        conn.exec_drop("UPDATE wp_wc_orders SET customer_id = 0 WHERE id = ?", (order.id,))
            .await
            .unwrap();
        conn.exec_drop(
            "UPDATE wp_postmeta SET meta_value = '0' WHERE post_id = ? AND meta_key = '_customer_user'",
            (order.id,),
        )
        .await
        .unwrap();
        let before = snapshot_orders(&mut conn, &[&order]).await;

        let doc = shop.apply_json();
        let plan = &doc["plan"];
        let after = OrderView::read(&mut conn, order.id).await;
        match facts.expect_forgotten(&order) {
            Some(Expect::Minimise) => assert_minimised(mode, &before[&order.id], &after),
            _ => assert_anonymised(mode, &before[&order.id], &after),
        }
        let subject = facts.spec.customer_of_user_id(customer).unwrap();
        assert_forgotten_everywhere(&shop, &[(subject, true)]).await;
        assert!(plan["subjects_forgotten"].as_u64().unwrap() > 0);
        drop(conn);
        assert_rerun_applies_nothing(&shop).await;
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_apply_changes_nothing_and_the_audit_chain_verifies() {
    for mode in Mode::ALL {
        let shop = Shop::new("rerun", mode).await;
        let first = shop.apply(&[]);
        assert_eq!(first.code, 0, "{mode}: {}", first.all_output());
        let applied: u64 = first
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("run 1: ")?.strip_suffix(" steps applied")?.parse().ok())
            .unwrap_or_else(|| panic!("{mode}: no outcome line:\n{}", first.stdout));
        assert!(applied > 0);
        let audit = audit_rows(&shop).await;
        assert_eq!(audit, applied, "{mode}: one audit row per step");
        let sums = checksums(&shop).await;

        let second = shop.apply(&[]);
        assert_eq!(second.code, 0, "{mode}: {}", second.all_output());
        assert!(second.stdout.contains("nothing to do"), "{mode}:\n{}", second.stdout);
        assert!(
            second.stdout.contains("run 2: 0 steps applied"),
            "{mode}:\n{}",
            second.stdout
        );
        assert_eq!(audit_rows(&shop).await, audit, "{mode}: audit rows after a rerun");
        assert_eq!(checksums(&shop).await, sums, "{mode}: the store changed on a rerun");

        let third = shop.apply_json();
        assert_eq!(third["outcome"]["applied"], 0, "{mode}");
        assert_eq!(third["outcome"]["run_id"], 3, "{mode}");
        assert_eq!(third["plan"]["subjects_forgotten"], 0, "{mode}");
        assert_eq!(audit_rows(&shop).await, audit);

        let verify = shop.cli(&["audit", "verify"]);
        assert_eq!(verify.code, 0, "{mode}: {}", verify.all_output());
        assert!(
            verify.stdout.contains(&format!("audit chain verified: {audit} rows")),
            "{mode}: {}",
            verify.stdout
        );
        shop.finish().await;
    }
}

/// The smallest pool the config accepts is enough for a whole run: the lock's connection,
/// which also reads the plan, and one more. A run that asked for a third would wait for
/// it until the connect timeout and fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_needs_no_more_than_two_connections() {
    let smallest = [
        ("WC_RETENTION__DATABASE__POOL_MAX", "2"),
        ("WC_RETENTION__DATABASE__CONNECT_TIMEOUT_SECS", "2"),
        ("WC_RETENTION__APPLY__WORKERS", "1"),
    ];
    for mode in Mode::ALL {
        let shop = Shop::new("two_connections", mode).await;
        let run = shop.cli_with(&["apply", "--now", NOW], &smallest);
        assert_eq!(run.code, 0, "{mode}: {}", run.all_output());
        assert!(run.stdout.contains("anonymise_customer"), "{mode}:\n{}", run.stdout);
        assert!(run.stdout.contains("steps applied"), "{mode}:\n{}", run.stdout);
        let again = shop.cli_with(&["apply", "--now", NOW], &smallest);
        assert!(again.stdout.contains("nothing to do"), "{mode}: {}", again.all_output());
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_shows_the_plan_and_changes_nothing() {
    for mode in Mode::ALL {
        let shop = Shop::new("dry_run", mode).await;
        let sums = checksums(&shop).await;
        let plan = shop.plan(&[]);
        assert_eq!(plan.code, 0, "{mode}: {}", plan.all_output());
        assert!(plan.stdout.contains("anonymise_customer"), "{mode}:\n{}", plan.stdout);
        let dry = shop.apply(&["--dry-run"]);
        assert_eq!(dry.code, 0, "{mode}: {}", dry.all_output());
        assert_eq!(dry.stdout, plan.stdout, "{mode}: dry run and plan differ");
        assert!(!dry.stdout.contains("steps applied"), "{mode}");

        let plan_json = shop.plan_json();
        let dry_json = shop.apply(&["--dry-run", "--json"]);
        assert_eq!(dry_json.code, 0);
        assert_eq!(json(&dry_json), plan_json, "{mode}: dry run and plan JSON differ");

        assert_eq!(checksums(&shop).await, sums, "{mode}: a dry run changed the store");
        assert_eq!(own_tables(&shop).await, 0, "{mode}: a dry run created the audit tables");
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_safety_cap_refuses_a_large_run_until_forced() {
    let mut shop = Shop::new("safety_cap", Mode::HposSync).await;
    let sums = checksums(&shop).await;
    shop.configure("max_share = 1.0\nmax_customers_per_run = 1\n", "");
    let refused = shop.apply(&[]);
    assert_eq!(refused.code, 4, "{}", refused.all_output());
    assert!(
        refused.stderr.contains("more than safety.max_customers_per_run = 1"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(checksums(&shop).await, sums, "a refused run changed the store");
    // The refusal is on record for the operator, with its reason; nothing was audited.
    let mut conn = shop.conn().await;
    let runs: Vec<(String, String, Option<String>)> = conn
        .query("SELECT trigger_kind, status, error FROM wp_wc_retention_runs")
        .await
        .unwrap();
    drop(conn);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].0.as_str(), runs[0].1.as_str()), ("cli", "refused"), "{runs:?}");
    let reason = runs[0].2.as_deref().unwrap_or_default();
    assert!(
        reason.contains("more than safety.max_customers_per_run = 1"),
        "{reason}"
    );
    assert_eq!(audit_rows(&shop).await, 0, "a refused run wrote audit rows");

    shop.configure("max_share = 0.1\nmax_customers_per_run = 1000000\n", "");
    let refused = shop.apply(&[]);
    assert_eq!(refused.code, 4, "{}", refused.all_output());
    assert!(
        refused.stderr.contains("more than safety.max_share = 0.1"),
        "{}",
        refused.stderr
    );
    assert_eq!(checksums(&shop).await, sums);

    shop.configure("max_share = 1.0\nmax_customers_per_run = 1\n", "");
    let forced = shop.apply(&["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.all_output());
    assert!(
        forced.stderr.contains("safety cap overridden with --force"),
        "{}",
        forced.stderr
    );
    assert!(forced.stdout.contains("steps applied"), "{}", forced.stdout);
    assert!(!forced.stdout.contains(": 0 steps applied"), "{}", forced.stdout);
    let mut conn = shop.conn().await;
    let marked = count(
        &mut conn,
        "SELECT COUNT(*) FROM wp_usermeta WHERE meta_key = ?",
        vec![USER_MARKER.into()],
    )
    .await;
    assert!(marked > 1, "the forced run anonymised {marked} customers");
    drop(conn);
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unpaid_orders_are_deleted_trashed_or_anonymised_by_age() {
    for mode in Mode::ALL {
        let shop = Shop::new("unpaid", mode).await;
        let facts = Facts::read(&shop).await;
        let now = facts.now;
        // Orders of people who stay clients: only the unpaid rule acts on them.
        let active_customers = facts.active_customers();
        let active_guests = facts.active_guests();
        let kept_owner = |o: &OrderFact| {
            active_customers.contains(&o.customer) || o.customer == 0 && active_guests.contains(&o.email)
        };
        let older = |o: &OrderFact, days: i64| o.created < now - days * DAY - MARGIN;
        let younger = |o: &OrderFact, days: i64| o.created > now - days * DAY + MARGIN;

        let drafts: Vec<u64> = facts
            .orders
            .iter()
            .filter(|o| o.status == "wc-checkout-draft" && older(o, 7))
            .map(|o| o.id)
            .collect();
        let pending: Vec<u64> = facts
            .orders
            .iter()
            .filter(|o| o.status == "wc-pending" && older(o, 30) && kept_owner(o))
            .map(|o| o.id)
            .collect();
        let young_pending: Vec<u64> = facts
            .orders
            .iter()
            .filter(|o| o.status == "wc-pending" && younger(o, 30))
            .map(|o| o.id)
            .collect();
        let failed: Vec<u64> = facts
            .orders
            .iter()
            .filter(|o| matches!(o.status.as_str(), "wc-failed" | "wc-cancelled") && older(o, 90) && kept_owner(o))
            .map(|o| o.id)
            .collect();
        let young_failed: Vec<u64> = facts
            .orders
            .iter()
            .filter(|o| matches!(o.status.as_str(), "wc-failed" | "wc-cancelled") && younger(o, 90) && kept_owner(o))
            .map(|o| o.id)
            .collect();
        assert!(
            !drafts.is_empty() && !pending.is_empty() && !failed.is_empty(),
            "{mode}: fixture lacks unpaid orders"
        );
        assert!(!young_pending.is_empty(), "{mode}: no young pending order");

        let mut conn = shop.conn().await;
        // The drafts' items exist before, so their deletion means something.
        let mut draft_items = 0;
        for id in &drafts {
            draft_items += count(
                &mut conn,
                "SELECT COUNT(*) FROM wp_woocommerce_order_items WHERE order_id = ?",
                vec![(*id).into()],
            )
            .await;
        }
        assert!(draft_items > 0, "{mode}: the drafts have no items");
        let draft_item_ids: Vec<u64> = {
            let mut ids = Vec::new();
            for id in &drafts {
                for r in rows(
                    &mut conn,
                    "SELECT order_item_id FROM wp_woocommerce_order_items WHERE order_id = ?",
                    vec![(*id).into()],
                )
                .await
                {
                    ids.push(text(&r[0]).unwrap().parse().unwrap());
                }
            }
            ids
        };
        let mut watched: Vec<u64> = pending.clone();
        watched.extend(&young_pending);
        watched.extend(&failed);
        watched.extend(&young_failed);
        let before = order_views(&mut conn, &watched).await;

        shop.apply_json();

        for id in &drafts {
            assert_deleted(&mut conn, mode, *id).await;
        }
        for item in &draft_item_ids {
            let meta = count(
                &mut conn,
                "SELECT COUNT(*) FROM wp_woocommerce_order_itemmeta WHERE order_item_id = ?",
                vec![(*item).into()],
            )
            .await;
            assert_eq!(meta, 0, "{mode}: meta of item {item} of a deleted draft left");
        }
        for id in &pending {
            let after = OrderView::read(&mut conn, *id).await;
            let b = &before[id];
            assert_eq!(after.stored.len(), storages(mode).len(), "{mode} order {id}");
            for s in &after.stored {
                let old = b.storage(s.storage).unwrap();
                let at = format!("{mode} pending order {id} ({})", s.storage);
                assert_eq!(s.status, "trash", "{at}: status");
                assert_eq!(s.meta("_wp_trash_meta_status").as_deref(), Some("wc-pending"), "{at}");
                assert!(s.has_meta("_wp_trash_meta_time"), "{at}: no trash time");
                // The bin keeps the order as it was, for WooCommerce to restore or purge.
                assert_eq!(s.email, old.email, "{at}: billing email");
                assert_eq!(s.billing["last_name"], old.billing["last_name"], "{at}: billing name");
                assert!(!s.has_meta("_anonymized"), "{at}");
            }
        }
        for id in &young_pending {
            let after = OrderView::read(&mut conn, *id).await;
            for s in &after.stored {
                assert_eq!(
                    s.status, "wc-pending",
                    "{mode}: young pending order {id} ({})",
                    s.storage
                );
            }
        }
        for id in &failed {
            let after = OrderView::read(&mut conn, *id).await;
            assert_anonymised(mode, &before[id], &after);
        }
        for id in &young_failed {
            let after = OrderView::read(&mut conn, *id).await;
            let b = &before[id];
            for s in &after.stored {
                let old = b.storage(s.storage).unwrap();
                assert_eq!(s.email, old.email, "{mode}: young failed order {id} ({})", s.storage);
                assert_eq!(
                    s.billing, old.billing,
                    "{mode}: young failed order {id} ({})",
                    s.storage
                );
            }
        }
        drop(conn);
        assert_rerun_applies_nothing(&shop).await;
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_protected_and_open_customers_are_left_alone() {
    for mode in Mode::ALL {
        let mut shop = Shop::new("exclusions", mode).await;
        let mut facts = Facts::read(&shop).await;
        let inactive = facts.inactive_customers(false);
        let (by_id, by_email) = (inactive[0], inactive[1]);
        let guest = facts.inactive_guests()[0].clone();

        // An inactive customer with an order still being processed; made so by hand if
        // the store has none.
        let open_ones: Vec<u64> = facts
            .inactive_customers(true)
            .into_iter()
            .filter(|id| {
                facts
                    .orders_of_customer(*id)
                    .iter()
                    .any(|o| o.status == "wc-processing")
            })
            .collect();
        let mut conn = shop.conn().await;
        let open = match open_ones.first() {
            Some(id) => *id,
            None => {
                let id = inactive[2];
                let order = facts
                    .orders_of_customer(id)
                    .iter()
                    .filter(|o| o.status == "wc-completed")
                    .map(|o| o.id)
                    .max()
                    .expect("a completed order");
                conn.exec_drop(
                    "UPDATE wp_wc_orders SET status = 'wc-processing' WHERE id = ?",
                    (order,),
                )
                .await
                .unwrap();
                conn.exec_drop(
                    "UPDATE wp_posts SET post_status = 'wc-processing' WHERE ID = ? AND post_type = 'shop_order'",
                    (order,),
                )
                .await
                .unwrap();
                drop(conn);
                facts = Facts::read(&shop).await;
                conn = shop.conn().await;
                id
            }
        };
        assert!(![by_id, by_email].contains(&open));

        let staff: Vec<u64> = shop.spec.staff_user_ids().collect();
        let mut users_before = BTreeMap::new();
        for id in staff.iter().chain([by_id, by_email, open].iter()) {
            users_before.insert(*id, UserView::read(&mut conn, *id).await);
        }
        let protected_orders: Vec<&OrderFact> = facts
            .orders_of_customer(by_id)
            .into_iter()
            .chain(facts.orders_of_customer(by_email))
            .chain(facts.orders_of_guest(&guest))
            .collect();
        let protected_before = snapshot_orders(&mut conn, &protected_orders).await;
        let open_orders: Vec<&OrderFact> = facts
            .orders_of_customer(open)
            .into_iter()
            .filter(|o| matches!(o.status.as_str(), "wc-completed" | "wc-refunded" | "wc-processing"))
            .collect();
        let open_before = snapshot_orders(&mut conn, &open_orders).await;
        let mut lookups_before = Vec::new();
        let guest_subject = facts.guest_subject(&guest);
        let subjects = [by_id, by_email, open]
            .map(|id| facts.spec.customer_of_user_id(id).unwrap())
            .into_iter()
            .chain([guest_subject]);
        for s in subjects {
            let id = facts.spec.customer_lookup_id(s);
            lookups_before.push((id, lookup_row(&mut conn, id).await));
        }

        shop.configure(
            SAFE_DEFAULTS,
            &format!(
                "[customers]\nprotected_user_ids = [{by_id}]\nprotected_emails = [\"{}\", \"{}\"]\n",
                facts.user_email(by_email).to_uppercase(),
                guest
            ),
        );
        let doc = shop.apply_json();
        assert!(
            doc["outcome"]["applied"].as_u64().unwrap() > 0,
            "{mode}: nothing applied"
        );

        for (id, before) in &users_before {
            assert_eq!(
                &UserView::read(&mut conn, *id).await,
                before,
                "{mode}: user {id} changed"
            );
        }
        for (id, before) in &protected_before {
            assert_eq!(
                &OrderView::read(&mut conn, *id).await,
                before,
                "{mode}: protected order {id} changed"
            );
        }
        for (id, before) in lookups_before {
            assert_eq!(
                lookup_row(&mut conn, id).await,
                before,
                "{mode}: analytics row {id} changed"
            );
        }
        // The open customer's orders keep their person; only the old IP address may go.
        for (id, b) in &open_before {
            let after = OrderView::read(&mut conn, *id).await;
            for s in &after.stored {
                let old = b.storage(s.storage).unwrap();
                let at = format!("{mode} order {id} of open customer {open} ({})", s.storage);
                assert_eq!(s.email, old.email, "{at}: billing email");
                assert_eq!(s.customer, old.customer, "{at}: account link");
                assert_eq!(s.billing, old.billing, "{at}: billing address");
                assert_eq!(s.shipping, old.shipping, "{at}: shipping address");
                assert!(!s.has_meta(ORDER_MARKER) && !s.has_meta("_anonymized"), "{at}: marked");
            }
            assert_eq!(after.notes, b.notes, "{mode}: notes of order {id}");
        }
        drop(conn);
        assert_rerun_applies_nothing(&shop).await;
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restricted_subject_is_left_alone_and_needs_the_pepper() {
    for mode in Mode::ALL {
        let mut shop = Shop::new("restricted", mode).await;
        let facts = Facts::read(&shop).await;
        let inactive = facts.inactive_customers(false);
        let restricted = inactive[0];
        let subject = facts.spec.customer_of_user_id(restricted).unwrap();
        let email = facts.spec.person(subject).email;
        assert_eq!(facts.user_email(restricted), email.to_lowercase());

        let migrate = shop.cli(&["migrate"]);
        assert_eq!(migrate.code, 0, "{mode}: {}", migrate.all_output());
        let mut conn = shop.conn().await;
        conn.exec_drop(
            "INSERT INTO wp_wc_retention_requests (kind, subject_hash, received_at, deadline_at, status) \
             VALUES ('restrict', ?, '2026-11-01 10:00:00', '2026-12-01 10:00:00', 'active')",
            (wc_retention::subject::hash(PEPPER, &email),),
        )
        .await
        .unwrap();
        let sums = checksums(&shop).await;

        // Without the pepper the register cannot be read: refuse rather than guess.
        for args in [vec!["plan", "--now", NOW], vec!["apply", "--now", NOW]] {
            let run = shop.cli(&args);
            assert_eq!(run.code, 2, "{mode} {args:?}: {}", run.all_output());
            assert!(
                run.stderr.contains("requests.pepper"),
                "{mode} {args:?}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains("1 restricted subjects"),
                "{mode} {args:?}: {}",
                run.stderr
            );
        }
        assert_eq!(checksums(&shop).await, sums, "{mode}: a refused run changed the store");

        shop.configure(SAFE_DEFAULTS, &format!("[requests]\npepper = \"{PEPPER}\"\n"));
        let user_before = UserView::read(&mut conn, restricted).await;
        let orders = facts.orders_of_customer(restricted);
        assert!(!orders.is_empty(), "{mode}: the restricted customer has no orders");
        let orders_before = snapshot_orders(&mut conn, &orders).await;
        let lookup = facts.spec.customer_lookup_id(subject);
        let lookup_before = lookup_row(&mut conn, lookup).await;

        let plan = shop.plan_json();
        assert_eq!(plan["restricted_skipped"], 1, "{mode}: {plan}");
        assert_eq!(
            plan["counts"]["anonymise_customer"],
            inactive.len() - 1,
            "{mode}: {plan}"
        );
        shop.apply_json();

        assert_eq!(
            UserView::read(&mut conn, restricted).await,
            user_before,
            "{mode}: restricted user changed"
        );
        for (id, before) in &orders_before {
            assert_eq!(
                &OrderView::read(&mut conn, *id).await,
                before,
                "{mode}: restricted order {id} changed"
            );
        }
        assert_eq!(
            lookup_row(&mut conn, lookup).await,
            lookup_before,
            "{mode}: analytics row changed"
        );
        // Everyone else inactive was forgotten.
        for id in &inactive[1..] {
            assert!(
                UserView::read(&mut conn, *id).await.has_meta(USER_MARKER),
                "{mode}: user {id}"
            );
        }
        drop(conn);
        assert_rerun_applies_nothing(&shop).await;
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inactive_guests_orders_and_analytics_rows_are_forgotten() {
    for mode in Mode::ALL {
        let shop = Shop::new("guests", mode).await;
        let facts = Facts::read(&shop).await;
        let inactive = facts.inactive_guests();
        let active = facts.active_guests();
        assert!(inactive.len() >= 3 && !active.is_empty(), "{mode}: too few guests");
        let orders: Vec<&OrderFact> = inactive.iter().flat_map(|g| facts.orders_of_guest(g)).collect();
        let mut conn = shop.conn().await;
        let before = snapshot_orders(&mut conn, &orders).await;
        let active_orders: Vec<&OrderFact> = active.iter().flat_map(|g| facts.orders_of_guest(g)).collect();
        let active_before = snapshot_orders(&mut conn, &active_orders).await;
        let mut active_lookups = Vec::new();
        for g in &active {
            let id = facts.spec.customer_lookup_id(facts.guest_subject(g));
            active_lookups.push((id, lookup_row(&mut conn, id).await));
        }

        let plan = shop.plan_json();
        let guest_lines: u64 = plan["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["rule"] == "inactive_guest")
            .map(|l| l["count"].as_u64().unwrap())
            .sum();
        assert!(guest_lines > 0, "{mode}: {plan}");
        shop.apply_json();

        let [minimised, anonymised, _] = assert_forgotten_orders(&mut conn, &facts, &orders, &before).await;
        let subjects: Vec<(u64, bool)> = inactive
            .iter()
            .map(|g| (facts.guest_subject(g), keeps_invoice(&facts, &facts.orders_of_guest(g))))
            .collect();
        assert!(
            subjects.iter().any(|(_, kept)| !kept),
            "{mode}: every guest keeps an invoice"
        );
        assert_forgotten_everywhere(&shop, &subjects).await;
        assert!(
            minimised > 0 && anonymised > 0,
            "{mode}: {minimised} minimised, {anonymised} anonymised"
        );
        for g in &inactive {
            let subject = facts.guest_subject(g);
            let person = facts.spec.person(subject);
            let row = lookup_row(&mut conn, facts.spec.customer_lookup_id(subject))
                .await
                .unwrap_or_else(|| panic!("{mode}: guest {subject} has no analytics row"));
            let at = format!("{mode}: analytics row of guest {subject}");
            assert_eq!(row[0], None, "{at}: user_id");
            assert_eq!(row[2].as_deref(), Some(TEXT), "{at}: first name");
            assert_eq!(row[3].as_deref(), Some(TEXT), "{at}: last name");
            assert_eq!(row[4].as_deref(), Some(EMAIL), "{at}: email");
            assert_eq!(row[5].as_deref(), Some(TEXT), "{at}: postcode");
            assert_eq!(row[6].as_deref(), Some(TEXT), "{at}: city");
            assert_eq!(row[8].as_deref(), Some(""), "{at}: country");
            let left = count(
                &mut conn,
                "SELECT COUNT(*) FROM wp_wc_customer_lookup WHERE email = ? OR last_name = ?",
                vec![person.email.clone().into(), person.last_name.clone().into()],
            )
            .await;
            assert_eq!(left, 0, "{at}: the guest is still in the analytics table");
        }
        for (id, before) in active_lookups {
            assert_eq!(
                lookup_row(&mut conn, id).await,
                before,
                "{mode}: active guest's analytics row {id}"
            );
        }
        for (id, b) in &active_before {
            let after = OrderView::read(&mut conn, *id).await;
            for s in &after.stored {
                let old = b.storage(s.storage).unwrap();
                if s.status == "trash" || s.has_meta("_anonymized") {
                    continue; // the unpaid rule's business
                }
                assert_eq!(s.email, old.email, "{mode}: active guest's order {id} ({})", s.storage);
                assert_eq!(
                    s.billing, old.billing,
                    "{mode}: active guest's order {id} ({})",
                    s.storage
                );
            }
        }
        drop(conn);
        assert_rerun_applies_nothing(&shop).await;
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_delete_action_removes_accounts_and_keeps_their_orders_and_posts() {
    for mode in Mode::ALL {
        let mut shop = Shop::new("delete_action", mode).await;
        shop.configure(SAFE_DEFAULTS, "[customers]\naction = \"delete\"\n");
        let facts = Facts::read(&shop).await;
        let inactive = facts.inactive_customers(false);
        let author = inactive[0];
        let mut conn = shop.conn().await;
        conn.exec_drop(
            "INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt, \
             post_status, post_name, to_ping, pinged, post_modified, post_modified_gmt, post_content_filtered, \
             guid, post_type) VALUES (?, '2019-03-01 10:00:00', '2019-03-01 09:00:00', 'Mijn ervaring', \
             'Gastblog', '', 'publish', 'gastblog', '', '', '2019-03-01 10:00:00', '2019-03-01 09:00:00', '', \
             'https://shop.example.nl/?p=gastblog', 'post')",
            (author,),
        )
        .await
        .unwrap();
        let post_id: u64 = conn.query_first("SELECT LAST_INSERT_ID()").await.unwrap().unwrap();
        let authored = "SELECT COUNT(*) FROM wp_posts WHERE post_author = ? \
                        AND post_type NOT IN ('shop_order', 'shop_order_refund', 'shop_order_placehold')";
        let mut posts_before = BTreeMap::new();
        for id in &inactive {
            posts_before.insert(*id, count(&mut conn, authored, vec![(*id).into()]).await);
        }
        let orders: Vec<&OrderFact> = inactive.iter().flat_map(|id| facts.orders_of_customer(*id)).collect();
        let before = snapshot_orders(&mut conn, &orders).await;

        let plan = shop.plan_json();
        assert_eq!(plan["counts"]["delete_customer"], inactive.len(), "{mode}: {plan}");
        shop.apply_json();

        for id in &inactive {
            let u = UserView::read(&mut conn, *id).await;
            assert_eq!(u.row, None, "{mode}: user {id} still exists");
            assert!(u.meta.is_empty(), "{mode}: meta of user {id} left: {:?}", u.meta);
            let subject = facts.spec.customer_of_user_id(*id).unwrap();
            if let Some(row) = lookup_row(&mut conn, facts.spec.customer_lookup_id(subject)).await {
                assert_eq!(row[0], None, "{mode}: analytics row still names user {id}");
                assert_eq!(row[4].as_deref(), Some(EMAIL), "{mode}: analytics email of user {id}");
                assert_eq!(
                    row[3].as_deref(),
                    Some(TEXT),
                    "{mode}: analytics last name of user {id}"
                );
            }
            for (table, key) in [
                ("wp_woocommerce_payment_tokens", "user_id"),
                ("wp_woocommerce_sessions", "session_key"),
                ("wp_comments", "user_id"),
            ] {
                let n = count(
                    &mut conn,
                    &format!("SELECT COUNT(*) FROM {table} WHERE {key} = ?"),
                    vec![id.to_string().into()],
                )
                .await;
                assert_eq!(n, 0, "{mode}: {table} rows of deleted user {id}");
            }
            assert_eq!(
                count(&mut conn, authored, vec![(*id).into()]).await,
                posts_before[id],
                "{mode}: posts written by user {id}"
            );
        }
        let kept = count(
            &mut conn,
            "SELECT COUNT(*) FROM wp_posts WHERE ID = ? AND post_author = ?",
            vec![post_id.into(), author.into()],
        )
        .await;
        assert_eq!(kept, 1, "{mode}: the blog post of deleted user {author} is gone");

        let [minimised, anonymised, _] = assert_forgotten_orders(&mut conn, &facts, &orders, &before).await;
        let subjects: Vec<(u64, bool)> = inactive
            .iter()
            .map(|id| {
                let subject = facts.spec.customer_of_user_id(*id).unwrap();
                (subject, keeps_invoice(&facts, &facts.orders_of_customer(*id)))
            })
            .collect();
        assert!(
            subjects.iter().any(|(_, kept)| !kept),
            "{mode}: everyone keeps an invoice"
        );
        assert_forgotten_everywhere(&shop, &subjects).await;
        assert!(
            minimised > 0 && anonymised > 0,
            "{mode}: {minimised} minimised, {anonymised} anonymised"
        );
        drop(conn);
        assert_rerun_applies_nothing(&shop).await;
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_run_logs_personal_data_even_at_trace_level() {
    for mode in Mode::ALL {
        let shop = Shop::new("logs", mode).await;
        // `cli` checks every run's output; here at the most talkative level, in both formats.
        let plan = shop.cli(&["--log-level", "trace", "plan", "--now", NOW]);
        assert_eq!(plan.code, 0, "{mode}: {}", plan.all_output());
        // A failing statement: the server's message (here quoting an email, as a duplicate
        // key error would) is withheld, and the batch is rolled back as a whole.
        let sums = checksums(&shop).await;
        let mut conn = shop.conn().await;
        let quoted = shop.spec.person(0).email;
        conn.query_drop(format!(
            "CREATE TRIGGER wp_users_frozen BEFORE UPDATE ON wp_users FOR EACH ROW \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'Duplicate entry {quoted}'"
        ))
        .await
        .unwrap();
        let broken = shop.cli(&["--log-level", "trace", "apply", "--now", NOW]);
        assert_eq!(broken.code, 1, "{mode}: {}", broken.all_output());
        assert!(
            broken
                .stderr
                .contains("MySQL error 1644 (45000); the server's message is withheld"),
            "{mode}: {}",
            broken.stderr
        );
        assert_eq!(checksums(&shop).await, sums, "{mode}: a failed batch left changes");
        assert_eq!(audit_rows(&shop).await, 0, "{mode}: audit rows of a failed batch");
        let run_row = rows(
            &mut conn,
            "SELECT status, error FROM wp_wc_retention_runs ORDER BY id DESC LIMIT 1",
            vec![],
        )
        .await
        .remove(0);
        assert_eq!(
            text(&run_row[0]).as_deref(),
            Some("failed"),
            "{mode}: run record of the failed run"
        );
        let error = text(&run_row[1]).unwrap_or_default();
        assert!(
            error.contains("1644") && !error.contains(&quoted),
            "{mode}: recorded error {error:?}"
        );
        conn.query_drop("DROP TRIGGER wp_users_frozen").await.unwrap();
        drop(conn);

        let run = shop.cli(&["--log-level", "trace", "apply", "--now", NOW]);
        assert_eq!(run.code, 0, "{mode}: {}", run.all_output());
        let lines: Vec<Value> = run
            .stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{mode}: not a JSON log line ({e}): {l}")))
            .collect();
        assert!(
            lines.iter().any(|l| l["message"] == "run finished"),
            "{mode}: {}",
            run.stderr
        );
        let pretty = shop.cli(&["--log-level", "trace", "--log-format", "pretty", "apply", "--now", NOW]);
        assert_eq!(pretty.code, 0, "{mode}: {}", pretty.all_output());
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_apply_leaves_a_completed_run_row_with_its_counts() {
    let shop = Shop::new("run_row", Mode::HposSync).await;
    let doc = shop.apply_json();
    let run_id = doc["outcome"]["run_id"].as_u64().unwrap();
    let applied = doc["outcome"]["applied"].as_u64().unwrap();
    let mut conn = shop.conn().await;
    let row = rows(
        &mut conn,
        "SELECT trigger_kind, status, counts, error, finished_at >= started_at FROM wp_wc_retention_runs WHERE id = ?",
        vec![run_id.into()],
    )
    .await
    .remove(0);
    assert_eq!(text(&row[0]).as_deref(), Some("cli"));
    assert_eq!(text(&row[1]).as_deref(), Some("completed"));
    let counts: Value = serde_json::from_str(&text(&row[2]).expect("counts")).unwrap();
    assert_eq!(counts, doc["plan"]["counts"], "counts of run {run_id}");
    let total: u64 = counts.as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, applied);
    assert_eq!(text(&row[3]), None, "error of a completed run");
    assert_eq!(text(&row[4]).as_deref(), Some("1"), "finished_at");
    assert_eq!(audit_rows(&shop).await, applied);
    let audited = count(
        &mut conn,
        "SELECT COUNT(*) FROM wp_wc_retention_audit WHERE run_id = ?",
        vec![run_id.into()],
    )
    .await;
    assert_eq!(audited, applied, "audit rows of run {run_id}");

    let again = shop.apply_json();
    let second = again["outcome"]["run_id"].as_u64().unwrap();
    assert_eq!(second, run_id + 1);
    let row = rows(
        &mut conn,
        "SELECT status, counts FROM wp_wc_retention_runs WHERE id = ?",
        vec![second.into()],
    )
    .await
    .remove(0);
    assert_eq!(text(&row[0]).as_deref(), Some("completed"));
    assert_eq!(text(&row[1]).as_deref(), Some("{}"));
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) FROM wp_wc_retention_runs", vec![]).await,
        2
    );
    drop(conn);
    shop.finish().await;
}
