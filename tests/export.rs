//! The subject-access export against generated stores in every order storage: an export
//! holds every generated data point of its subject and nothing of anyone else, its due
//! dates agree with what `plan` does today, and the file is private.
//!
//! What belongs to a subject is worked out here without the collector: every text cell of
//! every table is searched for the subject's identifying values (the fixture makes no
//! subject's value occur inside another's, or in the store's fixed text), and rows are
//! followed from there by their links (an order's meta, lines, notes and refunds; an
//! account's meta, tokens and sessions; a permission's log).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;

use chrono::{DateTime, Utc};
use common::{write_config, TestDb, SERVICE_PASSWORD};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value as Sql};
use serde_json::Value;
use wc_retention::config::{self, Config};
use wc_retention::export::{self, Who};
use wc_retention::fixture::{self, Mode, Person, Spec};
use wc_retention::store::export::{collect, who_by_email, who_by_user_id, Context};
use wc_retention::store::{self, Discovery, Store};

const CUSTOMERS: u64 = 40;
const SEED: u64 = 23;
/// A payment token's secret, inserted for one customer: no export may show it.
const TOKEN_SECRET: &str = "pm_EXPORTTEST_SECRET_4f1c";
const TOKEN_FINGERPRINT: &str = "fp_EXPORTTEST_SECRET_9a2e";

const PROCESSORS: &str = r#"
[[processors]]
name = "Mollie"
purpose = "payment processing"
categories = ["orders", "payment_tokens"]
country = "NL"

[[processors]]
name = "PostNL"
purpose = "parcel delivery"
categories = ["addresses", "orders"]
country = "NL"

[[processors]]
name = "Mailgun"
purpose = "transactional email"
categories = ["profile", "order_notes", "orders"]
country = "US"
"#;

struct Shop {
    db: TestDb,
    spec: Spec,
    config: Config,
    store: Store,
    discovery: Discovery,
    /// Holds the config file and the export directory.
    dir: tempfile::TempDir,
}

impl Shop {
    async fn new(test: &str, mode: Mode) -> Shop {
        let db = TestDb::new(&format!("export_{test}_{mode}")).await;
        let spec = Spec::new("wp_", mode, CUSTOMERS, SEED);
        common::generate(&db.pool, &spec).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[database]\nurl = \"{}\"\npassword = \"{SERVICE_PASSWORD}\"\n\n\
             [personal_data]\n\
             extra_order_meta_keys = [\"gift_recipient_name\", \"delivery_contact_phone\"]\n\
             extra_user_meta_keys = [\"date_of_birth\"]\n\n\
             [requests]\nexport_dir = \"{}\"\n{PROCESSORS}",
            db.service_url().await,
            dir.path().join("exports").display()
        );
        let path = write_config(&dir, &text);
        let config = config::load(std::path::Path::new(&path)).unwrap().config;
        let store = Store::open(&config.database).unwrap();
        let discovery = store::discover(&store).await.unwrap();
        assert!(discovery.problems().is_empty(), "{:?}", discovery.problems());
        Shop {
            db,
            spec,
            config,
            store,
            discovery,
            dir,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.spec.now
    }

    fn who(&self, subject: u64) -> Who {
        let p = self.spec.person(subject);
        let user = (!self.spec.is_guest(subject)).then(|| self.spec.customer_user_id(subject));
        Who::new(user, &p.email)
    }

    async fn export(&self, who: &Who) -> (export::Export, Value) {
        let ctx = Context::new(&self.config, &self.discovery, self.now(), false);
        let doc = collect(&self.store, &ctx, who)
            .await
            .unwrap_or_else(|e| panic!("{}: export of {who:?}: {e}", self.spec.mode));
        let json = serde_json::to_value(&doc).unwrap();
        (doc, json)
    }

    async fn conn(&self) -> Conn {
        let mut conn = self.db.pool.get_conn().await.unwrap();
        conn.query_drop("SET time_zone = '+00:00'").await.unwrap();
        conn
    }

    async fn finish(self) {
        self.store.close().await;
        self.db.drop().await;
    }
}

// ---------------------------------------------------------------------------------------
// The store as rows, and who each row belongs to
// ---------------------------------------------------------------------------------------

fn text(v: &Sql) -> Option<String> {
    match v {
        Sql::NULL => None,
        Sql::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

struct Table {
    name: &'static str,
    columns: Vec<String>,
    rows: Vec<Vec<Option<String>>>,
}

impl Table {
    fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("{} has no column {name}", self.name))
    }

    fn get<'r>(&self, row: &'r [Option<String>], name: &str) -> &'r str {
        row[self.col(name)].as_deref().unwrap_or("")
    }

    fn id(&self, row: &[Option<String>], name: &str) -> u64 {
        self.get(row, name).parse().unwrap_or(0)
    }
}

/// Every row of every table the generator writes.
struct Dump {
    tables: Vec<Table>,
}

impl Dump {
    async fn read(shop: &Shop) -> Dump {
        let mut conn = shop.conn().await;
        let mut tables = Vec::new();
        for name in fixture::TABLES {
            let rows: Vec<Row> = conn.query(format!("SELECT * FROM wp_{name}")).await.unwrap();
            let columns = rows
                .first()
                .map(|r| r.columns_ref().iter().map(|c| c.name_str().into_owned()).collect())
                .unwrap_or_default();
            let rows = rows
                .into_iter()
                .map(|r| r.unwrap().iter().map(text).collect())
                .collect();
            tables.push(Table { name, columns, rows });
        }
        Dump { tables }
    }

    fn table(&self, name: &str) -> &Table {
        self.tables.iter().find(|t| t.name == name).unwrap()
    }

    /// Subject → rows (table index, row index) holding one of their identifying values.
    fn owners(&self, spec: &Spec) -> HashMap<u64, Vec<(usize, usize)>> {
        const K: usize = 6;
        let mut index: HashMap<&[u8], Vec<(u64, String)>> = HashMap::new();
        let values: Vec<(u64, String)> = (0..spec.subjects())
            .flat_map(|s| {
                fixture::identifying_values(&spec.person(s))
                    .into_iter()
                    .map(move |v| (s, v))
            })
            .collect();
        for (s, v) in &values {
            assert!(v.len() >= K, "subject {s}: identifying value shorter than {K} bytes");
        }
        for (s, v) in &values {
            index.entry(&v.as_bytes()[..K]).or_default().push((*s, v.clone()));
        }
        let mut owners: HashMap<u64, Vec<(usize, usize)>> = HashMap::new();
        for (t, table) in self.tables.iter().enumerate() {
            for (r, row) in table.rows.iter().enumerate() {
                let mut found = BTreeSet::new();
                for cell in row.iter().flatten() {
                    let bytes = cell.as_bytes();
                    for i in 0..bytes.len().saturating_sub(K - 1) {
                        for (s, v) in index.get(&bytes[i..i + K]).into_iter().flatten() {
                            if bytes[i..].starts_with(v.as_bytes()) {
                                found.insert(*s);
                            }
                        }
                    }
                }
                assert!(
                    found.len() <= 1,
                    "{} row {r} holds values of subjects {found:?}",
                    table.name
                );
                if let Some(s) = found.first() {
                    owners.entry(*s).or_default().push((t, r));
                }
            }
        }
        owners
    }

    /// Post or order id → `post_type` / HPOS `type` (HPOS wins over placeholders).
    fn kinds(&self) -> HashMap<u64, String> {
        let mut kinds = HashMap::new();
        let posts = self.table("posts");
        for row in &posts.rows {
            kinds.insert(posts.id(row, "ID"), posts.get(row, "post_type").to_owned());
        }
        let orders = self.table("wc_orders");
        for row in &orders.rows {
            kinds.insert(orders.id(row, "id"), orders.get(row, "type").to_owned());
        }
        kinds
    }
}

/// What a subject's export must hold, worked out from the rows.
#[derive(Default, Debug)]
struct Expected {
    users: BTreeSet<u64>,
    orders: BTreeSet<u64>,
    refunds: BTreeSet<u64>,
    requests: BTreeSet<u64>,
    notes: BTreeSet<u64>,
    reviews: BTreeSet<u64>,
    permissions: BTreeSet<u64>,
    logs: BTreeSet<u64>,
    sessions: BTreeSet<u64>,
    lookups: BTreeSet<u64>,
    tokens: BTreeSet<u64>,
    /// Order id → number of order items.
    lines: BTreeMap<u64, usize>,
    /// Rows whose values must be in the export: (table index, row index).
    rows: BTreeSet<(usize, usize)>,
}

fn expected(dump: &Dump, kinds: &HashMap<u64, String>, owned: &[(usize, usize)]) -> Expected {
    let mut e = Expected::default();
    let mut posts: BTreeSet<u64> = BTreeSet::new();
    let mut comments: BTreeSet<u64> = BTreeSet::new();
    let name = |t: usize| dump.tables[t].name;
    for &(t, r) in owned {
        let table = &dump.tables[t];
        let row = &table.rows[r];
        match name(t) {
            "users" => {
                e.users.insert(table.id(row, "ID"));
            }
            "usermeta" => {
                e.users.insert(table.id(row, "user_id"));
            }
            "posts" => {
                posts.insert(table.id(row, "ID"));
            }
            "postmeta" => {
                posts.insert(table.id(row, "post_id"));
            }
            "wc_orders" => {
                posts.insert(table.id(row, "id"));
            }
            "wc_order_addresses" | "wc_orders_meta" => {
                posts.insert(table.id(row, "order_id"));
            }
            "comments" => {
                comments.insert(table.id(row, "comment_ID"));
                if table.get(row, "comment_type") == "order_note" {
                    posts.insert(table.id(row, "comment_post_ID"));
                }
            }
            "wc_customer_lookup" => {
                e.lookups.insert(table.id(row, "customer_id"));
            }
            "woocommerce_sessions" => {
                e.sessions.insert(table.id(row, "session_id"));
            }
            "wc_download_log" => {
                e.logs.insert(table.id(row, "download_log_id"));
            }
            "woocommerce_downloadable_product_permissions" => {
                e.permissions.insert(table.id(row, "permission_id"));
            }
            other => panic!("{other} holds a subject's identifying value; this test does not know that table"),
        }
        e.rows.insert((t, r));
    }
    // Refunds and their orders belong together.
    let parents: Vec<(u64, u64)> = {
        let mut pairs = Vec::new();
        let p = dump.table("posts");
        for row in &p.rows {
            if p.get(row, "post_type") == "shop_order_refund" {
                pairs.push((p.id(row, "ID"), p.id(row, "post_parent")));
            }
        }
        let o = dump.table("wc_orders");
        for row in &o.rows {
            if o.get(row, "type") == "shop_order_refund" {
                pairs.push((o.id(row, "id"), o.id(row, "parent_order_id")));
            }
        }
        pairs
    };
    for (refund, parent) in &parents {
        if posts.contains(refund) {
            posts.insert(*parent);
        }
    }
    for (refund, parent) in &parents {
        if posts.contains(parent) {
            posts.insert(*refund);
        }
    }
    for id in &posts {
        match kinds.get(id).map(String::as_str) {
            Some("shop_order") => e.orders.insert(*id),
            Some("shop_order_refund") => e.refunds.insert(*id),
            Some("user_request") => e.requests.insert(*id),
            other => panic!("post {id} of type {other:?} holds a subject's value"),
        };
    }
    let users_text: HashSet<String> = e.users.iter().map(u64::to_string).collect();
    let orders_and_refunds: BTreeSet<u64> = e.orders.union(&e.refunds).copied().collect();
    // Follow the links.
    for (t, table) in dump.tables.iter().enumerate() {
        for (r, row) in table.rows.iter().enumerate() {
            let linked = match table.name {
                "usermeta" => e.users.contains(&table.id(row, "user_id")),
                "users" => e.users.contains(&table.id(row, "ID")),
                "posts" => posts.contains(&table.id(row, "ID")),
                "postmeta" => posts.contains(&table.id(row, "post_id")),
                "wc_orders" => posts.contains(&table.id(row, "id")),
                "wc_order_addresses" | "wc_orders_meta" => posts.contains(&table.id(row, "order_id")),
                "comments" => {
                    let id = table.id(row, "comment_ID");
                    let note = table.get(row, "comment_type") == "order_note";
                    if note && orders_and_refunds.contains(&table.id(row, "comment_post_ID")) {
                        e.notes.insert(id);
                        true
                    } else if !note && (comments.contains(&id) || e.users.contains(&table.id(row, "user_id"))) {
                        e.reviews.insert(id);
                        true
                    } else {
                        false
                    }
                }
                "wc_customer_lookup" => {
                    let user = table.get(row, "user_id");
                    let mine = !user.is_empty() && users_text.contains(user);
                    if mine {
                        e.lookups.insert(table.id(row, "customer_id"));
                    }
                    mine || e.lookups.contains(&table.id(row, "customer_id"))
                }
                "woocommerce_sessions" => {
                    let mine = users_text.contains(table.get(row, "session_key"));
                    if mine {
                        e.sessions.insert(table.id(row, "session_id"));
                    }
                    mine || e.sessions.contains(&table.id(row, "session_id"))
                }
                "woocommerce_downloadable_product_permissions" => {
                    let mine = orders_and_refunds.contains(&table.id(row, "order_id"))
                        || users_text.contains(table.get(row, "user_id"));
                    if mine {
                        e.permissions.insert(table.id(row, "permission_id"));
                    }
                    mine || e.permissions.contains(&table.id(row, "permission_id"))
                }
                "woocommerce_payment_tokens" => {
                    let mine = users_text.contains(table.get(row, "user_id"));
                    if mine {
                        e.tokens.insert(table.id(row, "token_id"));
                    }
                    false
                }
                "woocommerce_order_items" => {
                    let order = table.id(row, "order_id");
                    if e.orders.contains(&order) {
                        *e.lines.entry(order).or_default() += 1;
                    }
                    false
                }
                _ => false,
            };
            if linked {
                e.rows.insert((t, r));
            }
        }
    }
    let log = dump.table("wc_download_log");
    for (r, row) in log.rows.iter().enumerate() {
        if e.permissions.contains(&log.id(row, "permission_id")) {
            e.logs.insert(log.id(row, "download_log_id"));
            let t = dump.tables.iter().position(|t| t.name == "wc_download_log").unwrap();
            e.rows.insert((t, r));
        }
    }
    e
}

// ---------------------------------------------------------------------------------------
// The export as seen by its reader
// ---------------------------------------------------------------------------------------

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn ids(v: &Value, path: &[&str], key: &str) -> BTreeSet<u64> {
    let mut items = vec![v];
    for p in path {
        items = items
            .into_iter()
            .flat_map(|v| match &v[*p] {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                Value::Null => Vec::new(),
                other => vec![other],
            })
            .collect();
    }
    items.iter().filter_map(|i| i[key].as_u64()).collect()
}

/// A person's values beyond the identifying ones, as the fixture writes them.
fn person_fields(p: &Person) -> Vec<String> {
    [
        &p.first_name,
        &p.last_name,
        &p.company,
        &p.address_1,
        &p.address_2,
        &p.city,
        &p.state,
        &p.postcode,
        &p.country,
        &p.email,
        &p.phone,
        &p.ip,
        &p.user_agent,
        &p.username,
        &p.birth_date,
    ]
    .into_iter()
    .filter(|v| !v.is_empty())
    .cloned()
    .collect()
}

/// Cells that hold a person's values in another form: serialized PHP, or the address
/// indexes WooCommerce builds for its search. Their values must appear; the cell itself not.
fn derived(table: &Table, row: &[Option<String>], column: &str) -> bool {
    let key = || {
        table
            .columns
            .iter()
            .position(|c| c == "meta_key")
            .map(|i| row[i].as_deref().unwrap_or(""))
    };
    match (table.name, column) {
        ("woocommerce_sessions", "session_value") => true,
        (_, "meta_value") => matches!(
            key(),
            Some("session_tokens" | "_billing_address_index" | "_shipping_address_index")
        ),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Shaping the store: the cases a customer can be in that the generator leaves to chance
// ---------------------------------------------------------------------------------------

/// The cases set up beyond the generator's own: returns (customer, order) of the order
/// turned into a guest checkout under the customer's email.
async fn shape(shop: &Shop) -> (u64, u64) {
    let mut conn = shop.conn().await;
    // A guest checkout of a customer: their first order without the account link.
    let stats: Vec<(u64, u64)> = conn
        .query("SELECT order_id, customer_id FROM wp_wc_order_stats WHERE parent_id = 0 ORDER BY order_id")
        .await
        .unwrap();
    let mut by_subject: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (order, lookup) in stats {
        by_subject.entry(lookup - 1).or_default().push(order);
    }
    let (customer, order) = by_subject
        .iter()
        .find(|(s, orders)| !shop.spec.is_guest(**s) && orders.len() >= 2)
        .map(|(s, orders)| (*s, orders[0]))
        .expect("a customer with two orders");
    conn.exec_drop("UPDATE wp_wc_orders SET customer_id = 0 WHERE id = ?", (order,))
        .await
        .unwrap();
    conn.exec_drop(
        "UPDATE wp_postmeta SET meta_value = '0' WHERE post_id = ? AND meta_key = '_customer_user'",
        (order,),
    )
    .await
    .unwrap();

    // A saved card with a secret token and a detail no export may show.
    let user = shop.spec.customer_user_id(0);
    conn.exec_drop(
        "INSERT INTO wp_woocommerce_payment_tokens (gateway_id, token, user_id, type, is_default) \
         VALUES ('stripe', ?, ?, 'CC', 1)",
        (TOKEN_SECRET, user),
    )
    .await
    .unwrap();
    conn.exec_drop(
        "INSERT INTO wp_woocommerce_payment_tokenmeta (payment_token_id, meta_key, meta_value) \
         VALUES (LAST_INSERT_ID(), 'last4', '4242'), (LAST_INSERT_ID(), 'fingerprint', ?)",
        (TOKEN_FINGERPRINT,),
    )
    .await
    .unwrap();

    // A WordPress login (IP and browser), when no customer has one by chance.
    let logins: u64 = conn
        .query_first("SELECT COUNT(*) FROM wp_usermeta WHERE meta_key = 'session_tokens'")
        .await
        .unwrap()
        .unwrap();
    if logins == 0 {
        let p = shop.spec.person(1);
        let login = shop.now().timestamp() - 86_400;
        let value = format!(
            "a:1:{{s:64:\"{}\";a:4:{{s:10:\"expiration\";i:{};s:2:\"ip\";{}s:2:\"ua\";{}s:5:\"login\";i:{login};}}}}",
            "ab".repeat(32),
            login + 14 * 86_400,
            php_str(&p.ip),
            php_str(&p.user_agent),
        );
        conn.exec_drop(
            "INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES (?, 'session_tokens', ?)",
            (shop.spec.customer_user_id(1), value),
        )
        .await
        .unwrap();
    }

    // A guest's checkout session (keyed by a cart token, found by its email).
    let guest = shop.spec.guest_subject(0);
    let p = shop.spec.person(guest);
    let customer_fields = format!(
        "a:4:{{s:2:\"id\";s:1:\"0\";s:10:\"first_name\";{}s:9:\"address_1\";{}s:5:\"email\";{}}}",
        php_str(&p.first_name),
        php_str(&p.address_1),
        php_str(&p.email)
    );
    let value = format!("a:1:{{s:8:\"customer\";{}}}", php_str(&customer_fields));
    conn.exec_drop(
        "INSERT INTO wp_woocommerce_sessions (session_key, session_value, session_expiry) VALUES (?, ?, ?)",
        (
            "t_exporttest0000000000000000001",
            value,
            shop.now().timestamp() + 86_400,
        ),
    )
    .await
    .unwrap();
    (customer, order)
}

fn php_str(s: &str) -> String {
    format!("s:{}:\"{s}\";", s.len())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_export_holds_every_data_point_of_its_subject_and_nothing_of_anyone_else() {
    for mode in Mode::ALL {
        let shop = Shop::new("complete", mode).await;
        let (guest_checkout_customer, guest_checkout_order) = shape(&shop).await;
        let dump = Dump::read(&shop).await;
        let kinds = dump.kinds();
        let owners = dump.owners(&shop.spec);
        let tokens = dump.table("woocommerce_payment_tokens");
        let secrets: Vec<String> = tokens
            .rows
            .iter()
            .map(|r| tokens.get(r, "token").to_owned())
            .chain([TOKEN_FINGERPRINT.to_owned()])
            .collect();
        let users = dump.table("users");
        let staff_emails: Vec<String> = users
            .rows
            .iter()
            .filter(|r| users.id(r, "ID") <= shop.spec.staff)
            .map(|r| users.get(r, "user_email").to_owned())
            .collect();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut count = |what: &'static str, n: usize| *seen.entry(what).or_default() += n;

        for subject in 0..shop.spec.subjects() {
            let p = shop.spec.person(subject);
            let who = shop.who(subject);
            // The CLI's way from an email or a user id to the subject.
            assert_eq!(who_by_email(&shop.store, &p.email.to_uppercase()).await.unwrap(), who);
            if let Some(id) = who.user_id {
                assert_eq!(who_by_user_id(&shop.store, id).await.unwrap().as_ref(), Some(&who));
            }
            let (_, json) = shop.export(&who).await;
            let at = format!("{mode} subject {subject}");
            assert_eq!(json["schema"], export::SCHEMA, "{at}");
            let mut leaves = Vec::new();
            strings(&json, &mut leaves);
            let all = leaves.join("\n");

            // Entities: exactly those the rows say are theirs.
            let e = expected(&dump, &kinds, owners.get(&subject).map(Vec::as_slice).unwrap_or(&[]));
            let account: BTreeSet<u64> = json["profile"]["account"]["user_id"].as_u64().into_iter().collect();
            assert_eq!(account, e.users, "{at}: account");
            assert_eq!(ids(&json, &["orders"], "id"), e.orders, "{at}: orders");
            assert_eq!(ids(&json, &["orders", "refunds"], "id"), e.refunds, "{at}: refunds");
            assert_eq!(ids(&json, &["order_notes"], "id"), e.notes, "{at}: order notes");
            assert_eq!(ids(&json, &["reviews"], "id"), e.reviews, "{at}: reviews");
            assert_eq!(
                ids(&json, &["downloads"], "permission_id"),
                e.permissions,
                "{at}: download permissions"
            );
            assert_eq!(ids(&json, &["downloads", "log"], "id"), e.logs, "{at}: download log");
            assert_eq!(ids(&json, &["profile", "sessions"], "id"), e.sessions, "{at}: sessions");
            assert_eq!(
                ids(&json, &["profile", "customer_lookup"], "id"),
                e.lookups,
                "{at}: analytics rows"
            );
            assert_eq!(
                ids(&json, &["profile", "privacy_requests"], "id"),
                e.requests,
                "{at}: privacy requests"
            );
            assert_eq!(ids(&json, &["payment_tokens"], "id"), e.tokens, "{at}: payment tokens");
            for order in json["orders"].as_array().unwrap() {
                let id = order["id"].as_u64().unwrap();
                assert_eq!(
                    order["lines"].as_array().unwrap().len(),
                    e.lines.get(&id).copied().unwrap_or(0),
                    "{at}: lines of order {id}"
                );
                assert!(
                    !order["due"].as_array().unwrap().is_empty(),
                    "{at}: order {id} has no due"
                );
            }

            // Values: every personal value of their rows, verbatim where stored plainly.
            let identifying: Vec<String> = fixture::identifying_values(&p)
                .into_iter()
                .chain(
                    [&p.postcode, &p.company, &p.address_2, &p.username, &p.birth_date]
                        .into_iter()
                        .filter(|v| !v.is_empty())
                        .cloned(),
                )
                .collect();
            let fields = person_fields(&p);
            for &(t, r) in &e.rows {
                let table = &dump.tables[t];
                let row = &table.rows[r];
                for (c, cell) in row.iter().enumerate() {
                    let Some(cell) = cell.as_deref() else { continue };
                    let column = &table.columns[c];
                    let inside: Vec<&String> = identifying.iter().filter(|v| cell.contains(v.as_str())).collect();
                    if !inside.is_empty() {
                        if derived(table, row, column) {
                            for v in fields.iter().filter(|f| cell.contains(f.as_str())) {
                                assert!(all.contains(v.as_str()), "{at}: {v:?} of {}.{column}", table.name);
                            }
                        } else {
                            assert!(
                                all.contains(cell),
                                "{at}: {}.{column} = {cell:?} (row {r}) is not in the export",
                                table.name
                            );
                        }
                    }
                    if fields.iter().any(|f| f == cell) {
                        assert!(
                            all.contains(cell),
                            "{at}: {}.{column} = {cell:?} is not in the export",
                            table.name
                        );
                    }
                }
            }

            // Nothing of anyone else.
            for other in (0..shop.spec.subjects()).filter(|o| *o != subject) {
                for v in fixture::identifying_values(&shop.spec.person(other)) {
                    assert!(!all.contains(&v), "{at}: the export holds {v:?} of subject {other}");
                }
            }
            for s in secrets.iter().chain(&staff_emails) {
                assert!(!all.contains(s.as_str()), "{at}: the export holds {s:?}");
            }

            if subject == guest_checkout_customer {
                let order = json["orders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|o| o["id"] == guest_checkout_order)
                    .unwrap_or_else(|| panic!("{at}: the guest checkout is missing"));
                assert_eq!(order["placed_as"], "guest", "{at}");
                count("guest checkouts of customers", 1);
            }
            let len = |v: &Value| v.as_array().map_or(0, Vec::len);
            let account = &json["profile"]["account"];
            if shop.spec.is_guest(subject) {
                assert!(account.is_null(), "{at}: a guest with an account");
                count("guests with orders", usize::from(len(&json["orders"]) > 0));
            }
            count("orders", len(&json["orders"]));
            count("refunds", e.refunds.len());
            count("order notes", len(&json["order_notes"]));
            count("reviews", len(&json["reviews"]));
            count("download permissions", e.permissions.len());
            count("download log entries", e.logs.len());
            count("payment tokens", len(&json["payment_tokens"]));
            count("sessions", len(&json["profile"]["sessions"]));
            count("logins", len(&account["logins"]));
            count("analytics rows", e.lookups.len());
            count("privacy requests", e.requests.len());
            count(
                "extra user meta",
                account["extra_meta"].as_object().map_or(0, |m| m.len()),
            );
            count(
                "extra order meta",
                json["orders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["extra_meta"].as_object().unwrap().len())
                    .sum(),
            );
        }
        for what in [
            "guest checkouts of customers",
            "guests with orders",
            "orders",
            "refunds",
            "order notes",
            "reviews",
            "download permissions",
            "download log entries",
            "payment tokens",
            "sessions",
            "logins",
            "analytics rows",
            "privacy requests",
            "extra user meta",
            "extra order meta",
        ] {
            assert!(
                seen.get(what).copied().unwrap_or(0) > 0,
                "{mode}: no export held {what}, so the test proved nothing about them: {seen:?}"
            );
        }
        shop.finish().await;
    }
}

fn due_at(stage: &Value) -> Option<DateTime<Utc>> {
    stage["at"]
        .as_str()
        .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
}

/// The strongest action an item's due list calls for by `now`: not yet done, and not
/// waiting for a condition (an open order).
fn due_by(due: &Value, now: DateTime<Utc>) -> Option<String> {
    const STRENGTH: [&str; 5] = ["remove_ip", "trash", "minimise", "anonymise", "delete"];
    due.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["done"] == false && s["condition"].is_null() && due_at(s).is_some_and(|t| t <= now))
        .filter_map(|s| s["action"].as_str())
        .max_by_key(|a| STRENGTH.iter().position(|s| s == a))
        .map(str::to_owned)
}

/// What is due by the export's "now" is what `plan` does now: the due dates follow the
/// same rules as the engine, on every order and account of the store.
#[tokio::test(flavor = "multi_thread")]
async fn export_due_dates_agree_with_the_plan() {
    for mode in Mode::ALL {
        let shop = Shop::new("due", mode).await;
        shape(&shop).await;
        let planned = wc_retention::engine::plan(&shop.store, &shop.config, shop.now())
            .await
            .unwrap()
            .plan;
        let mut planned_orders: BTreeMap<u64, String> = BTreeMap::new();
        for step in &planned.orders {
            let action = match step.action.as_str() {
                "strip_order_ip" => "remove_ip",
                "trash_order" => "trash",
                "minimise_order" => "minimise",
                "anonymise_order" => "anonymise",
                "delete_order" => "delete",
                other => panic!("{other} on an order"),
            };
            let strength = |a: &str| {
                ["remove_ip", "trash", "minimise", "anonymise", "delete"]
                    .iter()
                    .position(|s| *s == a)
            };
            let e = planned_orders.entry(step.id).or_insert_with(|| action.to_owned());
            if strength(action) > strength(e) {
                *e = action.to_owned();
            }
        }
        let planned_customers: BTreeSet<u64> = planned.customers.iter().map(|s| s.id).collect();
        let mut exported_orders: BTreeMap<u64, Option<String>> = BTreeMap::new();
        let mut stages: BTreeMap<u64, (Value, Value)> = BTreeMap::new();
        let mut due_customers = BTreeSet::new();
        let mut dated = 0;
        for subject in 0..shop.spec.subjects() {
            let (_, json) = shop.export(&shop.who(subject)).await;
            for order in json["orders"].as_array().unwrap() {
                dated += order["due"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| !s["at"].is_null())
                    .count();
                let id = order["id"].as_u64().unwrap();
                exported_orders.insert(id, due_by(&order["due"], shop.now()));
                stages.insert(id, (order["due"].clone(), json["due"].clone()));
            }
            let account = &json["profile"]["account"];
            if !account.is_null() && due_by(&account["due"], shop.now()).is_some() {
                due_customers.insert(account["user_id"].as_u64().unwrap());
            }
        }
        assert!(dated > 0, "{mode}: no dated due stage at all");
        for (id, action) in &exported_orders {
            assert_eq!(
                action.as_deref(),
                planned_orders.get(id).map(String::as_str),
                "{mode}: order {id}: due by now in the export vs planned; its stages {} and its person's {}",
                stages[id].0,
                stages[id].1
            );
        }
        for id in planned_orders.keys() {
            assert!(
                exported_orders.contains_key(id),
                "{mode}: planned order {id} is in no export"
            );
        }
        assert_eq!(
            due_customers, planned_customers,
            "{mode}: accounts due by now vs planned"
        );
        assert!(!planned_customers.is_empty(), "{mode}: the plan forgets no one");
        shop.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_file_is_private_its_name_names_no_one_and_processors_are_listed() {
    let shop = Shop::new("file", Mode::HposSync).await;
    let subject = 3;
    let (doc, json) = shop.export(&shop.who(subject)).await;
    let dir = shop.config.requests.export_dir.clone();
    let path = export::write(&doc, &dir, Some(17)).unwrap();
    let again = export::write(&doc, &dir, None).unwrap();
    assert_ne!(path, again);
    for p in [&path, &again] {
        let meta = std::fs::metadata(p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", p.display());
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("export-") && name.ends_with(".json"), "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"-.T".contains(&b) || b == b'Z'),
            "{name}"
        );
        // export-[<request>-]<YYYYMMDD>T<HHMMSS>Z-<8 hex digits>.json: nothing else.
        let parts: Vec<&str> = name.trim_end_matches(".json").split('-').collect();
        let (time, random) = (parts[parts.len() - 2], parts[parts.len() - 1]);
        assert_eq!(time, "20261124T000000Z", "{name}");
        assert!(
            random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert!(
            matches!(&parts[..parts.len() - 2], ["export"] | ["export", "17"]),
            "{name}"
        );
        let person = shop.spec.person(subject);
        for v in person_fields(&person).into_iter().filter(|v| v.len() > 3) {
            assert!(!name.contains(&v), "{name} holds {v}");
        }
        let written: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        assert_eq!(written, json);
    }
    assert!(path.file_name().unwrap().to_str().unwrap().starts_with("export-17-"));
    // `--out FILE`: the same, under the operator's name, never over an existing file.
    let out = shop.dir.path().join("subject.json");
    export::write_to(&doc, &out).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let again = export::write_to(&doc, &out).unwrap_err();
    assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(&out).unwrap()).unwrap(),
        json
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700,
        "the export directory"
    );

    // The processors as configured, and under each category the ones that hold it.
    assert_eq!(json["processors"].as_array().unwrap().len(), 3);
    assert_eq!(json["processors"][0]["name"], "Mollie");
    assert_eq!(json["processors"][2]["country"], "US");
    let by_category: Vec<(String, Vec<String>)> = json["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let names = c["processors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            (c["category"].as_str().unwrap().to_owned(), names)
        })
        .collect();
    let expect = |c: &str, names: &[&str]| (c.to_owned(), names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    assert_eq!(
        by_category,
        vec![
            expect("profile", &["Mailgun"]),
            expect("addresses", &["PostNL"]),
            expect("orders", &["Mollie", "PostNL", "Mailgun"]),
            expect("order_notes", &["Mailgun"]),
            expect("reviews", &[]),
            expect("downloads", &[]),
            expect("payment_tokens", &["Mollie"]),
        ]
    );
    // A restricted person: nothing of theirs is due.
    let ctx = Context::new(&shop.config, &shop.discovery, shop.now(), true);
    let restricted = serde_json::to_value(collect(&shop.store, &ctx, &shop.who(subject)).await.unwrap()).unwrap();
    assert_eq!(restricted["subject"]["restricted"], true);
    let keep =
        serde_json::json!([{"action": "keep", "at": null, "rule": "restricted", "condition": null, "done": false}]);
    assert_eq!(restricted["due"], keep);
    assert!(!restricted["orders"].as_array().unwrap().is_empty());
    for order in restricted["orders"].as_array().unwrap() {
        assert_eq!(order["due"], keep, "order {}", order["id"]);
    }
    for review in restricted["reviews"].as_array().unwrap() {
        assert_eq!(review["due"], keep);
    }
    // Every category is a section of the document.
    for (category, _) in &by_category {
        assert!(!json[category.as_str()].is_null(), "no section {category}");
    }
    shop.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn export_of_a_person_the_store_does_not_know_has_empty_sections() {
    let shop = Shop::new("unknown", Mode::Legacy).await;
    let who = who_by_email(&shop.store, "Nobody.Here@Example.invalid").await.unwrap();
    assert_eq!(who, Who::new(None, "nobody.here@example.invalid"));
    assert_eq!(who_by_user_id(&shop.store, 999_999).await.unwrap(), None);
    for who in [
        who,
        Who::new(Some(999_999), "nobody.here@example.invalid"),
        Who::new(None, ""),
    ] {
        let (_, json) = shop.export(&who).await;
        assert!(json["profile"]["account"].is_null(), "{who:?}");
        assert_eq!(json["subject"]["has_account"], false);
        for section in ["orders", "order_notes", "reviews", "downloads", "payment_tokens"] {
            assert_eq!(json[section], Value::Array(vec![]), "{who:?}: {section}");
        }
        for section in ["customer_lookup", "sessions", "privacy_requests"] {
            assert_eq!(json["profile"][section], Value::Array(vec![]), "{who:?}: {section}");
        }
        assert!(json["addresses"]["billing"].is_null() && json["addresses"]["shipping"].is_null());
        assert_eq!(
            json["categories"].as_array().unwrap().len(),
            config::DATA_CATEGORIES.len()
        );
    }
    shop.finish().await;
}
