//! Bad data a real shop has, against the real binary: NULL and zero dates, garbage where a
//! unix time belongs, broken serialized PHP, orders without addresses or without an email,
//! orders of deleted accounts, two accounts with one email, bytes that are not UTF-8.
//!
//! Each scenario generates a store, damages chosen rows with SQL, then does what an
//! operator would: `plan --json`, `apply`, `plan` again, `audit verify`, and looks at the
//! rows. A damaged entity is either left alone with a warning naming its id (never a
//! personal value), or processed fully; the healthy ones are processed as usual, and the
//! run completes. The rows to damage are chosen by what they hold (a customer inactive by
//! every date, one kept only by `wc_last_active`, …), never by hard-coded ids.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use common::{wc_retention, write_config, Run, TestDb, SERVICE_PASSWORD};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as Sql};
use serde_json::Value;
use wc_retention::fixture::{self, Mode, Spec};

/// Every run acts as of the generated store's "now"; inactive means before 2023-11-24.
const NOW: &str = "2026-11-24T00:00:00Z";
/// A month before and after that cut-off: the shop's time zone never decides a case.
const OLD: &str = "2023-10-25 00:00:00";
const RECENT: &str = "2023-12-24 00:00:00";
const CUSTOMERS: u64 = 60;
const SEED: u64 = 11;

const USER_MARKER: &str = "_wc_retention_anonymised";
const ORDER_MARKER: &str = "_wc_retention_minimised";
/// WooCommerce's empty address indexes: the fields joined by spaces.
const EMPTY_BILLING_INDEX: &str = "          ";
const EMPTY_SHIPPING_INDEX: &str = "         ";

/// A name in latin1 bytes (`Renée Lefèvre`): not UTF-8 as stored.
const LATIN1_FIRST: &str = "CONCAT('Ren', X'E9', 'e')";
const LATIN1_LAST: &str = "CONCAT('Lef', X'E8', 'vre')";

fn unix(t: &str) -> i64 {
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp()
}

// ---------------------------------------------------------------------------------------
// The store, the binary, and rows
// ---------------------------------------------------------------------------------------

struct Shop {
    db: TestDb,
    spec: Spec,
    dir: tempfile::TempDir,
    cfg: String,
    /// Values the damage wrote that are personal data: never printed either.
    planted: Vec<String>,
}

impl Shop {
    async fn new(mode: Mode) -> Shop {
        let db = TestDb::new(&format!("bad_data_{mode}")).await;
        let spec = Spec::new("wp_", mode, CUSTOMERS, SEED);
        common::generate(&db.pool, &spec).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[database]\nurl = \"{}\"\npassword = \"{SERVICE_PASSWORD}\"\n\n[log]\nformat = \"json\"\n\n\
             [safety]\nmax_share = 1.0\nmax_customers_per_run = 1000000\n\n\
             [requests]\npepper = \"bad-data-tests-pepper-0123456789abcdef\"\n",
            db.service_url().await
        );
        let cfg = write_config(&dir, &text);
        Shop {
            db,
            spec,
            dir,
            cfg,
            planted: Vec::new(),
        }
    }

    fn mode(&self) -> Mode {
        self.spec.mode
    }

    fn hpos(&self) -> bool {
        self.mode() != Mode::Legacy
    }

    fn posts(&self) -> bool {
        self.mode() != Mode::Hpos
    }

    /// A connection that reads and writes UTC, without strict mode (zero dates).
    async fn conn(&self) -> Conn {
        let mut conn = self.db.pool.get_conn().await.unwrap();
        conn.query_drop("SET time_zone = '+00:00', SESSION sql_mode = ''")
            .await
            .unwrap();
        conn
    }

    async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<Sql>> {
        let mut conn = self.conn().await;
        let rows: Vec<Row> = conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(Row::unwrap).collect()
    }

    async fn ids(&self, sql: &str) -> Vec<u64> {
        self.rows(sql).await.iter().map(|r| num(&r[0])).collect()
    }

    async fn text(&self, sql: &str) -> Option<String> {
        self.rows(sql).await.first().and_then(|r| text(&r[0]))
    }

    /// Runs the binary; whatever it prints names no one.
    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config", self.cfg.as_str()];
        all.extend_from_slice(args);
        let run = wc_retention(&all, &[]);
        self.assert_names_no_one(&run, &args.join(" "));
        run
    }

    fn assert_names_no_one(&self, run: &Run, what: &str) {
        let out = run.all_output();
        let people = (0..self.spec.subjects()).flat_map(|s| fixture::identifying_values(&self.spec.person(s)));
        for value in people.chain(self.planted.iter().cloned()) {
            assert!(
                value.is_empty() || !out.contains(&value),
                "{}: `{what}` printed personal data {value:?}:\n{out}",
                self.mode()
            );
        }
    }

    fn plan(&self) -> Value {
        let run = self.run(&["plan", "--json", "--now", NOW]);
        assert_eq!(run.code, 0, "{}: plan failed:\n{}", self.mode(), run.all_output());
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("plan --json printed no JSON ({e}):\n{}", run.stdout))
    }

    fn apply(&self) -> Run {
        let run = self.run(&["apply", "--now", NOW]);
        assert_eq!(run.code, 0, "{}: apply failed:\n{}", self.mode(), run.all_output());
        run
    }

    /// (entity type, id) → the (rule, action) pairs the audit trail holds for it.
    async fn audit(&self) -> BTreeMap<(String, u64), BTreeSet<(String, String)>> {
        let mut out: BTreeMap<(String, u64), BTreeSet<(String, String)>> = BTreeMap::new();
        for r in self
            .rows("SELECT entity_type, entity_id, rule, action FROM wp_wc_retention_audit")
            .await
        {
            out.entry((text(&r[0]).unwrap(), num(&r[1])))
                .or_default()
                .insert((text(&r[2]).unwrap(), text(&r[3]).unwrap()));
        }
        out
    }

    /// A SELECT of the shop's orders as `o` (id, customer_id, email, status, created,
    /// paid), from the storage WooCommerce reads.
    fn orders_cte(&self) -> &'static str {
        if self.hpos() {
            "WITH o AS (SELECT o.id, o.customer_id, o.billing_email AS email, o.status, o.date_created_gmt AS created, \
             d.date_paid_gmt AS paid FROM wp_wc_orders o LEFT JOIN wp_wc_order_operational_data d ON d.order_id = o.id \
             WHERE o.type = 'shop_order')"
        } else {
            "WITH o AS (SELECT p.ID AS id, CAST(IFNULL(c.meta_value, '0') AS UNSIGNED) AS customer_id, \
             e.meta_value AS email, p.post_status AS status, p.post_date_gmt AS created, \
             FROM_UNIXTIME(pd.meta_value) AS paid FROM wp_posts p \
             LEFT JOIN wp_postmeta c ON c.post_id = p.ID AND c.meta_key = '_customer_user' \
             LEFT JOIN wp_postmeta e ON e.post_id = p.ID AND e.meta_key = '_billing_email' \
             LEFT JOIN wp_postmeta pd ON pd.post_id = p.ID AND pd.meta_key = '_date_paid' \
             WHERE p.post_type = 'shop_order')"
        }
    }

    /// Customers (and subscribers) matching `condition` on `u` (wp_users), `o` (orders).
    async fn customers_where(&self, condition: &str) -> Vec<u64> {
        self.ids(&format!(
            "{} SELECT u.ID FROM wp_users u JOIN wp_usermeta r ON r.user_id = u.ID AND r.meta_key = 'wp_capabilities' \
             AND r.meta_value IN ('a:1:{{s:8:\"customer\";b:1;}}', 'a:1:{{s:10:\"subscriber\";b:1;}}') \
             WHERE {condition} ORDER BY u.ID",
            self.orders_cte()
        ))
        .await
    }

    /// Customers whose every activity date lies well before the cut-off: `apply` forgets them.
    async fn inactive_customers(&self) -> Vec<u64> {
        self.customers_where(&format!(
            "u.user_registered < '{OLD}' {no_recent_meta} AND {no_recent_orders}",
            no_recent_meta = no_recent_meta(&["wc_last_active", "last_update"]),
            no_recent_orders = NO_RECENT_ORDERS,
        ))
        .await
    }

    /// Customers whom only `wc_last_active` (a recent visit) keeps: old otherwise.
    async fn kept_by_wc_last_active(&self) -> Vec<u64> {
        self.customers_where(&format!(
            "u.user_registered < '{OLD}' {no_recent_meta} AND {NO_RECENT_ORDERS} AND EXISTS (SELECT 1 FROM wp_usermeta m \
             WHERE m.user_id = u.ID AND m.meta_key = 'wc_last_active' AND CAST(m.meta_value AS UNSIGNED) >= {})",
            unix(RECENT),
            no_recent_meta = no_recent_meta(&["last_update"]),
        ))
        .await
    }

    /// Customers seen recently (a `wc_last_active` after the cut-off).
    async fn active_customers(&self) -> Vec<u64> {
        self.customers_where(&format!(
            "EXISTS (SELECT 1 FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'wc_last_active' \
             AND CAST(m.meta_value AS UNSIGNED) >= {})",
            unix(RECENT)
        ))
        .await
    }

    /// An account's orders: (id, status, paid year).
    async fn orders_of(&self, user: u64) -> Vec<(u64, String, Option<i32>)> {
        self.rows(&format!(
            "{} SELECT id, status, YEAR(paid) FROM o WHERE customer_id = {user} ORDER BY id",
            self.orders_cte()
        ))
        .await
        .iter()
        .map(|r| {
            (
                num(&r[0]),
                text(&r[1]).unwrap(),
                text(&r[2]).and_then(|y| y.parse().ok()),
            )
        })
        .collect()
    }

    /// Guests (billing emails without an account) whose orders are all old and closed,
    /// with the ids of their orders that are not checkout drafts.
    async fn inactive_guests(&self) -> Vec<Vec<u64>> {
        let rows = self
            .rows(&format!(
                "{} SELECT GROUP_CONCAT(IF(o.status = 'wc-checkout-draft', NULL, o.id) ORDER BY o.id) FROM o \
                 WHERE o.customer_id = 0 AND o.email <> '' \
                 AND NOT EXISTS (SELECT 1 FROM wp_users u WHERE {same_email}) GROUP BY o.email \
                 HAVING MAX(o.created) < '{OLD}' AND SUM(o.status IN ('wc-processing', 'wc-on-hold', 'wc-pending')) = 0 \
                 ORDER BY MIN(o.id)",
                self.orders_cte(),
                same_email = SAME_EMAIL,
            ))
            .await;
        rows.iter()
            .filter_map(|r| text(&r[0]))
            .map(|ids| ids.split(',').map(|id| id.parse().unwrap()).collect())
            .collect()
    }

    /// Whether the order still exists in any storage.
    async fn exists(&self, id: u64) -> bool {
        !self
            .ids(&format!(
                "SELECT id FROM wp_wc_orders WHERE id = {id} UNION SELECT ID FROM wp_posts WHERE ID = {id} \
                 AND post_type = 'shop_order'"
            ))
            .await
            .is_empty()
    }

    /// A user's row and meta, exactly as stored.
    async fn user(&self, id: u64) -> Vec<Vec<Sql>> {
        let mut rows = self.rows(&format!("SELECT * FROM wp_users WHERE ID = {id}")).await;
        rows.extend(
            self.rows(&format!(
                "SELECT * FROM wp_usermeta WHERE user_id = {id} ORDER BY umeta_id"
            ))
            .await,
        );
        rows
    }

    /// Everything every storage holds about one order, exactly as stored.
    async fn order(&self, id: u64) -> Vec<Vec<Sql>> {
        let mut out = Vec::new();
        for sql in [
            format!("SELECT * FROM wp_wc_orders WHERE id = {id}"),
            format!("SELECT * FROM wp_wc_order_addresses WHERE order_id = {id} ORDER BY id"),
            format!("SELECT * FROM wp_wc_orders_meta WHERE order_id = {id} ORDER BY id"),
            format!("SELECT * FROM wp_wc_order_operational_data WHERE order_id = {id}"),
            format!("SELECT * FROM wp_posts WHERE ID = {id}"),
            format!("SELECT * FROM wp_postmeta WHERE post_id = {id} ORDER BY meta_id"),
            format!("SELECT * FROM wp_comments WHERE comment_post_ID = {id} ORDER BY comment_ID"),
        ] {
            out.extend(self.rows(&sql).await);
        }
        out
    }

    /// An order's meta value in each storage that has the order (HPOS meta, postmeta).
    async fn order_meta(&self, id: u64, key: &str) -> Vec<Option<String>> {
        let mut out = Vec::new();
        if self.hpos() {
            out.push(
                self.text(&format!(
                    "SELECT meta_value FROM wp_wc_orders_meta WHERE order_id = {id} AND meta_key = '{key}'"
                ))
                .await,
            );
        }
        if self.posts() {
            out.push(
                self.text(&format!(
                    "SELECT meta_value FROM wp_postmeta WHERE post_id = {id} AND meta_key = '{key}'"
                ))
                .await,
            );
        }
        out
    }

    /// Orders of the account, leaving out those being fulfilled and checkout drafts.
    async fn closed_orders_of(&self, user: u64) -> Vec<u64> {
        let orders = self.orders_of(user).await;
        orders
            .into_iter()
            .filter(|(_, s, _)| !OPEN.contains(&s.as_str()) && s != "wc-checkout-draft")
            .map(|(id, _, _)| id)
            .collect()
    }

    /// The order was minimised or anonymised and carries the mark of it, or was deleted.
    async fn assert_processed(&self, actions: &BTreeSet<String>, id: u64, case: &str) {
        let mode = self.mode();
        if actions.contains("delete_order") {
            assert!(!self.exists(id).await, "{mode}: {case}: order {id} was not deleted");
            return;
        }
        assert!(
            actions.contains("minimise_order") || actions.contains("anonymise_order"),
            "{mode}: {case}: order {id}: {actions:?}"
        );
        assert!(self.marked(id).await, "{mode}: {case}: order {id} is not marked");
    }

    /// Whether the service marked the order processed (minimised or anonymised).
    async fn marked(&self, id: u64) -> bool {
        let yes = |v: &Option<String>| v.is_some();
        self.order_meta(id, ORDER_MARKER).await.iter().all(yes) || {
            let anonymized = self.order_meta(id, "_anonymized").await;
            anonymized.iter().all(|v| v.as_deref() == Some("yes"))
        }
    }

    async fn finish(self) {
        self.db.drop().await;
    }
}

/// No meta among `keys` dated after [`OLD`], no login sessions, no WooCommerce session.
fn no_recent_meta(keys: &[&str]) -> String {
    let keys: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    format!(
        "AND NOT EXISTS (SELECT 1 FROM wp_usermeta m WHERE m.user_id = u.ID AND (m.meta_key = 'session_tokens' \
         OR (m.meta_key IN ({}) AND CAST(m.meta_value AS UNSIGNED) >= {}))) \
         AND NOT EXISTS (SELECT 1 FROM wp_woocommerce_sessions s WHERE s.session_key = u.ID)",
        keys.join(", "),
        unix(OLD)
    )
}

/// `o.email` and `u.user_email` are one email, whatever the collations of their tables.
const SAME_EMAIL: &str = "CONVERT(LOWER(o.email) USING utf8mb4) COLLATE utf8mb4_bin \
     = CONVERT(LOWER(u.user_email) USING utf8mb4) COLLATE utf8mb4_bin";

/// No order of the account or under its email after [`OLD`] or still open.
const NO_RECENT_ORDERS: &str = "NOT EXISTS (SELECT 1 FROM o WHERE (o.customer_id = u.ID OR CONVERT(LOWER(o.email) \
     USING utf8mb4) COLLATE utf8mb4_bin = CONVERT(LOWER(u.user_email) USING utf8mb4) COLLATE utf8mb4_bin) \
     AND (o.created >= '2023-10-25' OR o.status IN ('wc-processing', 'wc-on-hold', 'wc-pending')))";

fn text(v: &Sql) -> Option<String> {
    match v {
        Sql::NULL => None,
        Sql::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

fn num(v: &Sql) -> u64 {
    text(v)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {v:?}"))
}

/// Takes the first of `pool` that `fits`, so no row serves two cases.
async fn take<F, Fut>(pool: &mut Vec<u64>, what: &str, fits: F) -> u64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for i in 0..pool.len() {
        if fits(pool[i]).await {
            return pool.remove(i);
        }
    }
    panic!("the generated store has no customer for {what}; left: {pool:?}")
}

const OPEN: [&str; 3] = ["wc-processing", "wc-on-hold", "wc-pending"];

/// The rules that act on an order by its own age, whoever placed it: the only ones that
/// may touch the orders of a person left alone.
const AGE_RULES: [&str; 2] = ["order_ip", "unpaid_order"];

// ---------------------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------------------

/// Who got which damage, and what the run must do about it.
#[derive(Default, Debug)]
struct Cases {
    /// Accounts left alone, each with a warning naming it: (case, user id).
    skipped_users: Vec<(&'static str, u64)>,
    /// Orders left alone by every rule, each named by a warning: (case, order id).
    skipped_orders: Vec<(&'static str, u64)>,
    /// Accounts anonymised as usual despite the damage: (case, user id).
    forgotten_users: Vec<(&'static str, u64)>,
    /// Orders processed (minimised or anonymised) as usual despite the damage: (case, id).
    processed_orders: Vec<(&'static str, u64)>,
    /// Healthy inactive customers: anonymised, as on any store.
    healthy: Vec<u64>,
}

async fn bad_rows_never_stop_a_run(mode: Mode) {
    let mut shop = Shop::new(mode).await;
    let mut cases = Cases::default();
    let mut inactive = shop.inactive_customers().await;
    assert!(
        inactive.len() >= 12,
        "{mode}: too few inactive customers to damage: {inactive:?}"
    );

    // -- Customers ------------------------------------------------------------------

    // An old invoice (retention ended: anonymised) whose paid date is unreadable: kept
    // minimised, with a warning naming the order; its customer forgotten as usual.
    let unreadable_paid = take(&mut inactive, "an old paid invoice", |u| {
        let shop = &shop;
        async move {
            shop.orders_of(u)
                .await
                .iter()
                .any(|(_, s, y)| s == "wc-completed" && y.is_some_and(|y| y <= 2017))
        }
    })
    .await;
    let invoice = shop
        .orders_of(unreadable_paid)
        .await
        .into_iter()
        .find(|(_, s, y)| s == "wc-completed" && y.is_some_and(|y| y <= 2017))
        .unwrap()
        .0;
    if shop.hpos() {
        shop.exec(&format!(
            "UPDATE wp_wc_order_operational_data SET date_paid_gmt = '0000-00-00 00:00:00' WHERE order_id = {invoice}"
        ))
        .await;
    }
    if shop.posts() {
        shop.exec(&format!(
            "UPDATE wp_postmeta SET meta_value = CASE meta_key WHEN '_date_paid' THEN 'yesterday' \
             ELSE '0000-00-00 00:00:00' END WHERE post_id = {invoice} AND meta_key IN ('_date_paid', '_paid_date')"
        ))
        .await;
    }
    cases.forgotten_users.push(("unreadable paid date", unreadable_paid));

    let two_orders = |u: u64| {
        let shop = &shop;
        async move { shop.closed_orders_of(u).await.len() >= 2 }
    };
    // An order without addresses (no address rows, no `_billing_*`/`_shipping_*` meta;
    // the stale indexes still name the person), and one with zero modification dates.
    let no_addresses = take(&mut inactive, "two orders", two_orders).await;
    let (bare, zero_modified) = {
        let orders = shop.closed_orders_of(no_addresses).await;
        (orders[0], orders[1])
    };
    shop.exec(&format!("DELETE FROM wp_wc_order_addresses WHERE order_id = {bare}"))
        .await;
    shop.exec(&format!(
        "DELETE FROM wp_postmeta WHERE post_id = {bare} AND (meta_key LIKE '\\_billing\\_%' \
         OR meta_key LIKE '\\_shipping\\_%') AND meta_key NOT LIKE '%\\_address\\_index'"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_wc_orders SET date_updated_gmt = '0000-00-00 00:00:00' WHERE id = {zero_modified}"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_posts SET post_modified = '0000-00-00 00:00:00', post_modified_gmt = '0000-00-00 00:00:00' \
         WHERE ID = {zero_modified}"
    ))
    .await;
    cases.forgotten_users.push(("orders without addresses", no_addresses));
    cases.processed_orders.push(("no addresses", bare));
    cases.processed_orders.push(("zero modification date", zero_modified));

    // An order whose creation date is unreadable: it may be the customer's newest, so the
    // customer is not judged inactive on the others.
    let undated = take(&mut inactive, "two orders", two_orders).await;
    let undated_order = *shop.closed_orders_of(undated).await.last().unwrap();
    shop.exec(&format!(
        "UPDATE wp_wc_orders SET date_created_gmt = '0000-00-00 00:00:00' WHERE id = {undated_order}"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_posts SET post_date_gmt = '0000-00-00 00:00:00' WHERE ID = {undated_order}"
    ))
    .await;
    cases.skipped_users.push(("an undated order", undated));
    cases.skipped_orders.push(("undated order", undated_order));

    // Not UTF-8: an old install's WordPress tables, beside WooCommerce's newer ones. The
    // postmeta still in latin1 and the usermeta values left as bytes by a charset
    // conversion that stopped halfway. The users table in latin1 too (legacy), or in the
    // collation WordPress 4.2 converted it to (HPOS): the server refuses to compare that
    // with the HPOS tables' (MySQL error 1267) unless told how.
    let latin1 = take(&mut inactive, "an order", |u| {
        let shop = &shop;
        async move { !shop.orders_of(u).await.is_empty() }
    })
    .await;
    let display_name = if shop.hpos() {
        shop.exec("ALTER TABLE wp_users CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            .await;
        "'Renée Lefèvre'".to_owned()
    } else {
        shop.exec("ALTER TABLE wp_users CONVERT TO CHARACTER SET latin1 COLLATE latin1_swedish_ci")
            .await;
        format!("CONCAT({LATIN1_FIRST}, ' ', {LATIN1_LAST})")
    };
    shop.exec("ALTER TABLE wp_usermeta MODIFY meta_value LONGBLOB").await;
    shop.exec("ALTER TABLE wp_postmeta MODIFY meta_value LONGTEXT CHARACTER SET latin1 COLLATE latin1_swedish_ci")
        .await;
    shop.exec(&format!(
        "UPDATE wp_users SET display_name = {display_name} WHERE ID = {latin1}"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_usermeta SET meta_value = IF(meta_key LIKE '%first_name', {LATIN1_FIRST}, {LATIN1_LAST}) \
         WHERE user_id = {latin1} AND meta_key IN ('first_name', 'last_name', 'billing_first_name', 'billing_last_name')"
    ))
    .await;
    let latin1_orders: Vec<u64> = shop.orders_of(latin1).await.iter().map(|o| o.0).collect();
    let list = ids(&latin1_orders);
    shop.exec(&format!(
        "UPDATE wp_wc_order_addresses SET first_name = 'Renée', last_name = 'Lefèvre' WHERE order_id IN ({list})"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_postmeta SET meta_value = IF(meta_key LIKE '%first_name', {LATIN1_FIRST}, {LATIN1_LAST}) \
         WHERE post_id IN ({list}) AND meta_key IN ('_billing_first_name', '_billing_last_name')"
    ))
    .await;
    shop.planted.extend([
        "Renée".into(),
        "Lefèvre".into(),
        "Ren\u{fffd}e".into(),
        "Lef\u{fffd}vre".into(),
    ]);
    cases.forgotten_users.push(("not UTF-8", latin1));

    // A zero registration date (imports), an empty `last_update` and a zero last-active
    // date in the analytics row: the account's own visits still date it.
    let zero_registered = inactive.remove(0);
    shop.exec(&format!(
        "UPDATE wp_users SET user_registered = '0000-00-00 00:00:00' WHERE ID = {zero_registered}"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_usermeta SET meta_value = '' WHERE user_id = {zero_registered} AND meta_key = 'last_update'"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_wc_customer_lookup SET date_last_active = '0000-00-00 00:00:00' WHERE user_id = {zero_registered}"
    ))
    .await;
    cases.forgotten_users.push(("zero registration", zero_registered));

    // Broken serialized PHP: the roles (truncated), and the login sessions.
    let broken_roles = inactive.remove(0);
    shop.exec(&format!(
        "UPDATE wp_usermeta SET meta_value = 'a:2:{{s:8:\"customer\";b:1;s:10:\"subscri' \
         WHERE user_id = {broken_roles} AND meta_key = 'wp_capabilities'"
    ))
    .await;
    cases.skipped_users.push(("broken roles", broken_roles));
    let broken_logins = inactive.remove(0);
    shop.exec(&format!(
        "INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES ({broken_logins}, 'session_tokens', \
         'a:1:{{s:64:\"0123456789abcdef\";a:4:{{s:10:\"expiration\";i:17')"
    ))
    .await;
    cases.skipped_users.push(("broken login sessions", broken_logins));

    // Garbage where a unix time belongs, on a customer whom only that visit keeps.
    let garbage_visit = shop.kept_by_wc_last_active().await[0];
    shop.exec(&format!(
        "UPDATE wp_usermeta SET meta_value = 'soon' WHERE user_id = {garbage_visit} AND meta_key = 'wc_last_active'"
    ))
    .await;
    cases.skipped_users.push(("garbage wc_last_active", garbage_visit));

    // Two accounts, one email (in another letter case): an inactive one takes the email
    // of an active one who wrote a review; forgetting the first leaves the second's alone.
    let active = shop.active_customers().await;
    let mut reviewer = None;
    for a in active {
        if a != garbage_visit
            && !shop
                .ids(&format!(
                    "SELECT comment_ID FROM wp_comments WHERE user_id = {a} AND comment_type = 'review'"
                ))
                .await
                .is_empty()
        {
            reviewer = Some(a);
            break;
        }
    }
    let reviewer = reviewer.expect("an active customer with a review");
    let twin = inactive.remove(0);
    shop.exec(&format!(
        "UPDATE wp_users t JOIN wp_users r ON r.ID = {reviewer} SET t.user_email = UPPER(r.user_email) WHERE t.ID = {twin}"
    ))
    .await;
    cases.forgotten_users.push(("shares an email", twin));

    // -- Orders -----------------------------------------------------------------------

    // A guest order without a billing email: a subject of its own, forgotten by its age.
    let mut guests = shop.inactive_guests().await;
    assert!(guests.len() >= 2, "{mode}: too few inactive guests: {guests:?}");
    let lone = guests.remove(0)[0];
    shop.exec(&format!("UPDATE wp_wc_orders SET billing_email = '' WHERE id = {lone}"))
        .await;
    shop.exec(&format!(
        "UPDATE wp_wc_order_addresses SET email = '' WHERE order_id = {lone} AND address_type = 'billing'"
    ))
    .await;
    shop.exec(&format!(
        "DELETE FROM wp_postmeta WHERE post_id = {lone} AND meta_key = '_billing_email'"
    ))
    .await;
    cases.processed_orders.push(("guest order without an email", lone));

    // A guest with an order whose creation date is NULL or zero: their other orders stay.
    let undated_guest = guests
        .into_iter()
        .find(|orders| orders.len() >= 2)
        .expect("an inactive guest with two orders");
    let guest_undated_order = undated_guest[0];
    shop.exec(&format!(
        "UPDATE wp_wc_orders SET date_created_gmt = NULL WHERE id = {guest_undated_order}"
    ))
    .await;
    shop.exec(&format!(
        "UPDATE wp_posts SET post_date_gmt = '0000-00-00 00:00:00' WHERE ID = {guest_undated_order}"
    ))
    .await;
    cases.skipped_orders.push(("undated guest order", guest_undated_order));

    // An account deleted behind WooCommerce's back: its closed orders are forgotten at once.
    let deleted = shop
        .active_customers()
        .await
        .into_iter()
        .find(|u| *u != reviewer && *u != garbage_visit)
        .unwrap();
    let deleted_orders: Vec<(u64, String, Option<i32>)> = shop.orders_of(deleted).await;
    assert!(!deleted_orders.is_empty());
    shop.exec(&format!("DELETE FROM wp_usermeta WHERE user_id = {deleted}"))
        .await;
    shop.exec(&format!("DELETE FROM wp_users WHERE ID = {deleted}")).await;
    for (id, status, _) in &deleted_orders {
        if !["wc-processing", "wc-on-hold"].contains(&status.as_str()) {
            cases.processed_orders.push(("account deleted", *id));
        }
    }

    // A WooCommerce session whose value is cut short: it expired, so it goes all the same.
    let expired = shop
        .ids(&format!(
            "SELECT session_id FROM wp_woocommerce_sessions WHERE session_expiry < {} ORDER BY session_id",
            unix("2026-11-24 00:00:00")
        ))
        .await;
    let broken_session = *expired.first().expect("an expired session");
    shop.exec(&format!(
        "UPDATE wp_woocommerce_sessions SET session_value = 'a:3:{{s:4:\"cart\";s:44' WHERE session_id = {broken_session}"
    ))
    .await;

    cases.healthy = inactive;

    // -- Before the run ---------------------------------------------------------------

    // Forgetting unlinks the orders from the account: their ids are taken now.
    let mut orders_before = BTreeMap::new();
    for u in cases
        .forgotten_users
        .iter()
        .map(|(_, u)| *u)
        .chain(cases.healthy.iter().copied())
    {
        orders_before.insert(u, shop.orders_of(u).await);
    }
    for (_, u) in &cases.skipped_users {
        orders_before.insert(*u, shop.orders_of(*u).await);
    }

    let mut before_users = BTreeMap::new();
    for (_, u) in &cases.skipped_users {
        before_users.insert(*u, shop.user(*u).await);
    }
    let mut before_orders = BTreeMap::new();
    for (_, id) in &cases.skipped_orders {
        before_orders.insert(*id, shop.order(*id).await);
    }
    let reviews_of_reviewer = format!("SELECT * FROM wp_comments WHERE user_id = {reviewer} ORDER BY comment_ID");
    let reviewer_before = (shop.user(reviewer).await, shop.rows(&reviews_of_reviewer).await);

    // -- The run ----------------------------------------------------------------------

    let plan = shop.plan();
    let warnings: Vec<String> = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect();
    let warned = |prefix: String| warnings.iter().any(|w| w.starts_with(&prefix));
    for (case, u) in &cases.skipped_users {
        assert!(
            warned(format!("user {u}: ")),
            "{mode}: {case}: no warning names user {u}: {warnings:#?}"
        );
    }
    for (case, id) in &cases.skipped_orders {
        assert!(
            warned(format!("order {id}: ")),
            "{mode}: {case}: no warning names order {id}: {warnings:#?}"
        );
    }
    assert!(
        warned(format!("order {invoice}: ")),
        "{mode}: the invoice with an unreadable paid date is not named: {warnings:#?}"
    );

    let applied = shop.apply();
    for (case, u) in &cases.skipped_users {
        assert!(
            applied.stderr.contains(&format!("user {u}: ")),
            "{mode}: {case}: apply's log does not name user {u}:\n{}",
            applied.stderr
        );
    }

    // -- The rows ---------------------------------------------------------------------

    let audit = shop.audit().await;
    let steps = |kind: &str, id: u64| audit.get(&(kind.to_owned(), id)).cloned().unwrap_or_default();
    let order_rules = |id: u64| -> BTreeSet<String> { steps("order", id).into_iter().map(|(_, a)| a).collect() };

    // Left alone: the account exactly as it was, no step for it, and none for its orders
    // but those of the rules that go by an order's own age (an old IP address, unpaid).
    for (case, u) in &cases.skipped_users {
        assert!(
            steps("customer", *u).is_empty(),
            "{mode}: {case}: user {u} was processed"
        );
        assert_eq!(shop.user(*u).await, before_users[u], "{mode}: {case}: user {u} changed");
        for (id, _, _) in &orders_before[u] {
            let found = steps("order", *id);
            assert!(
                found.iter().all(|(rule, _)| AGE_RULES.contains(&rule.as_str())),
                "{mode}: {case}: order {id} of user {u} was processed: {found:?}"
            );
        }
    }
    for (case, id) in &cases.skipped_orders {
        assert!(
            steps("order", *id).is_empty(),
            "{mode}: {case}: order {id} was processed"
        );
        assert_eq!(
            shop.order(*id).await,
            before_orders[id],
            "{mode}: {case}: order {id} changed"
        );
    }
    for id in &undated_guest {
        let found = steps("order", *id);
        assert!(
            found.iter().all(|(rule, _)| AGE_RULES.contains(&rule.as_str())),
            "{mode}: the undated guest's order {id} was processed: {found:?}"
        );
    }

    // Forgotten as usual: the account anonymised, every closed order minimised or
    // anonymised and marked.
    for (case, u) in cases
        .forgotten_users
        .iter()
        .map(|(c, u)| (*c, *u))
        .chain(cases.healthy.iter().map(|u| ("healthy", *u)))
    {
        assert_eq!(
            steps("customer", u),
            BTreeSet::from([("inactive_customer".to_owned(), "anonymise_customer".to_owned())]),
            "{mode}: {case}: user {u}"
        );
        let email = shop
            .text(&format!("SELECT user_email FROM wp_users WHERE ID = {u}"))
            .await;
        assert_eq!(
            email,
            Some(format!("anonymised-{u}@site.invalid")),
            "{mode}: {case}: user {u}"
        );
        let marker = shop
            .text(&format!(
                "SELECT COUNT(*) FROM wp_usermeta WHERE user_id = {u} AND meta_key = '{USER_MARKER}'"
            ))
            .await;
        assert_eq!(marker.as_deref(), Some("1"), "{mode}: {case}: user {u} is not marked");
        for (id, status, _) in &orders_before[&u] {
            if !OPEN.contains(&status.as_str()) {
                shop.assert_processed(&order_rules(*id), *id, &format!("{case}: order of user {u}"))
                    .await;
            }
        }
    }
    for (case, id) in &cases.processed_orders {
        shop.assert_processed(&order_rules(*id), *id, case).await;
    }

    // The unreadable paid date: minimised (kept as an invoice), not anonymised.
    assert_eq!(
        steps("order", invoice),
        BTreeSet::from([("inactive_customer".to_owned(), "minimise_order".to_owned())]),
        "{mode}: the invoice with an unreadable paid date"
    );

    // The order without addresses: its indexes no longer name anyone.
    for (key, empty) in [
        ("_billing_address_index", EMPTY_BILLING_INDEX),
        ("_shipping_address_index", EMPTY_SHIPPING_INDEX),
    ] {
        for value in shop.order_meta(bare, key).await {
            assert_eq!(
                value.as_deref(),
                Some(empty),
                "{mode}: order {bare} without addresses: {key}"
            );
        }
    }

    // The zero modification dates: replaced by one new time in both storages.
    let mut modified = Vec::new();
    if shop.hpos() {
        modified.push(
            shop.text(&format!(
                "SELECT date_updated_gmt FROM wp_wc_orders WHERE id = {zero_modified}"
            ))
            .await,
        );
    }
    if shop.posts() {
        modified.push(
            shop.text(&format!(
                "SELECT post_modified_gmt FROM wp_posts WHERE ID = {zero_modified}"
            ))
            .await,
        );
    }
    assert!(
        modified
            .iter()
            .all(|m| m.as_deref().is_some_and(|m| !m.starts_with("0000")) && *m == modified[0]),
        "{mode}: order {zero_modified}: modification times {modified:?}"
    );

    // The email-less guest order went as a guest's.
    assert!(
        steps("order", lone).iter().all(|(rule, _)| rule == "inactive_guest"),
        "{mode}: guest order {lone} without an email: {:?}",
        steps("order", lone)
    );

    // Not UTF-8: gone from the account, and from every order anonymised.
    let display = shop
        .text(&format!("SELECT display_name FROM wp_users WHERE ID = {latin1}"))
        .await;
    assert_eq!(display.as_deref(), Some("[deleted]"), "{mode}: latin1 display name");
    let names = shop
        .rows(&format!(
            "SELECT meta_key FROM wp_usermeta WHERE user_id = {latin1} AND meta_key LIKE '%\\_name' AND meta_value <> ''"
        ))
        .await;
    assert!(names.is_empty(), "{mode}: user {latin1} keeps names: {names:?}");
    for id in &latin1_orders {
        if order_rules(*id).contains("anonymise_order") {
            let mut names = shop.order_meta(*id, "_billing_first_name").await;
            names.push(
                shop.text(&format!(
                    "SELECT first_name FROM wp_wc_order_addresses WHERE order_id = {id} AND address_type = 'billing'"
                ))
                .await,
            );
            for name in names.into_iter().flatten() {
                assert_eq!(name, "[deleted]", "{mode}: order {id} of the latin1 customer");
            }
        }
    }

    // Two accounts, one email: the active one and their reviews untouched.
    assert!(
        steps("customer", reviewer).is_empty(),
        "{mode}: the reviewer {reviewer} was processed"
    );
    assert_eq!(
        (shop.user(reviewer).await, shop.rows(&reviews_of_reviewer).await),
        reviewer_before,
        "{mode}: user {reviewer}, whose email user {twin} had too, or their reviews changed"
    );

    // The deleted account's analytics row went with its orders (none is being fulfilled).
    if deleted_orders
        .iter()
        .all(|(_, s, _)| !["wc-processing", "wc-on-hold"].contains(&s.as_str()))
    {
        let email = shop
            .text(&format!(
                "SELECT email FROM wp_wc_customer_lookup WHERE user_id = {deleted}"
            ))
            .await;
        assert!(
            email.is_none() || email.as_deref() == Some("deleted@site.invalid"),
            "{mode}: the analytics row of deleted user {deleted} keeps its email"
        );
    }

    // The session with a broken value expired and went.
    let left = shop
        .ids(&format!(
            "SELECT session_id FROM wp_woocommerce_sessions WHERE session_id = {broken_session}"
        ))
        .await;
    assert!(
        left.is_empty(),
        "{mode}: the expired session {broken_session} with a broken value is still there"
    );

    // -- Again --------------------------------------------------------------------------

    // Nothing more to do; the damaged entities are still named.
    let again = shop.plan();
    assert_eq!(
        again["lines"],
        serde_json::json!([]),
        "{mode}: a second plan still has work: {again:#}"
    );
    let again_warnings = again["warnings"].as_array().unwrap();
    let named = |prefix: String| again_warnings.iter().any(|w| w.as_str().unwrap().starts_with(&prefix));
    for (case, u) in &cases.skipped_users {
        assert!(
            named(format!("user {u}: ")),
            "{mode}: {case}: user {u} is no longer named"
        );
    }
    for (case, id) in &cases.skipped_orders {
        assert!(
            named(format!("order {id}: ")),
            "{mode}: {case}: order {id} is no longer named"
        );
    }
    let verify = shop.run(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{mode}: audit verify:\n{}", verify.all_output());

    // An access request still answers for each damaged account, to a file.
    for (case, u) in cases.skipped_users.iter().chain(&cases.forgotten_users) {
        let out = shop.dir.path().join(format!("export-{u}.json"));
        let run = shop.run(&["export", "--user-id", &u.to_string(), "--out", out.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{mode}: {case}: export of user {u}:\n{}", run.all_output());
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert!(doc.is_object(), "{mode}: {case}: export of user {u}");
    }

    let kinds: BTreeSet<&str> = [
        &cases.skipped_users,
        &cases.skipped_orders,
        &cases.forgotten_users,
        &cases.processed_orders,
    ]
    .iter()
    .flat_map(|c| c.iter().map(|(case, _)| *case))
    .collect();
    println!(
        "hardening: bad data ({mode}): {} kinds of damage on {} entities, each skipped with a warning \
         naming its id ({}) or processed whole ({}); the run completed, a rerun planned nothing more",
        kinds.len(),
        cases.skipped_users.len()
            + cases.skipped_orders.len()
            + cases.forgotten_users.len()
            + cases.processed_orders.len(),
        cases.skipped_users.len() + cases.skipped_orders.len(),
        cases.forgotten_users.len() + cases.processed_orders.len(),
    );
    shop.finish().await;
}

fn ids(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

#[tokio::test]
async fn bad_rows_never_stop_a_run_hpos_sync() {
    bad_rows_never_stop_a_run(Mode::HposSync).await;
}

#[tokio::test]
async fn bad_rows_never_stop_a_run_legacy() {
    bad_rows_never_stop_a_run(Mode::Legacy).await;
}
