//! Reading everything the shop's database holds about one person, for the subject-access
//! export ([`crate::export`]): the account and its profile meta, the analytics rows, shop
//! sessions, privacy requests, orders of the account and guest orders under its email
//! (from whichever storage is authoritative) with addresses, lines, refunds and notes,
//! reviews, download permissions and their log, and payment-token summaries.
//!
//! Personal values read here go into the document only: errors and warnings name tables
//! and ids, never values. Every value goes through the converters of `values`, so NULLs,
//! zero dates and bytes that are not UTF-8 never panic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use super::read::{ORDER_MARKER, USER_MARKER};
use super::values::{
    bytes_of, datetime_of, email_of, i64_of, id_list, text_of, time_of, u64_of, unix_meta_of, unix_of,
};
use super::{Discovery, Layout, Store, StoreError};
use crate::anonymise;
use crate::config::Config;
use crate::export::{
    self, Account, Address, Addresses, CartItem, CustomerLookup, Download, DownloadLog, Export, Line, Login, Order,
    OrderNote, PaymentToken, PolicySummary, PrivacyRequest, Profile, Refund, Review, Shop, ShopSession, SubjectInfo,
    Totals, Who, SAFE_TOKEN_META,
};
use crate::localtime::ShopZone;
use crate::php;
use crate::policy::due::{self, Act, DueRules, Forget, Stage};
use crate::policy::{
    self, CustomerFacts, OrderActivity, OrderFacts, Processed, UnreadableDates, UnreadableOrderDates, OPEN_STATUSES,
};

/// What an export needs to know about the store and the policy beyond the person.
pub struct Context<'a> {
    pub config: &'a Config,
    pub layout: Layout,
    pub zone: ShopZone,
    /// The policy's "now" for the due dates, and the export's time.
    pub now: DateTime<Utc>,
    /// The person's processing is restricted (the register holds an active restriction for
    /// their hash): their items are kept, so nothing but the store-wide minimisation is due.
    pub restricted: bool,
}

impl<'a> Context<'a> {
    /// The context for a store as [`super::discover`] found it.
    pub fn new(config: &'a Config, discovery: &Discovery, now: DateTime<Utc>, restricted: bool) -> Context<'a> {
        Context {
            config,
            layout: Layout::of(discovery.order_storage),
            zone: discovery.zone(),
            now,
            restricted,
        }
    }
}

/// The person behind an email: the account with that email if there is one (the lowest
/// user id, should several share it), else a guest.
pub async fn who_by_email(store: &Store, email: &str) -> Result<Who, StoreError> {
    let who = Who::new(None, email);
    if who.email.is_empty() {
        return Ok(who);
    }
    let mut conn = store.conn().await?;
    let rows = rows(
        &mut conn,
        store,
        "the account of an email",
        format!(
            "SELECT ID, user_email FROM {} WHERE user_email = ? ORDER BY ID LIMIT 1",
            store.table("users")
        ),
        vec![who.email.as_str().into()],
    )
    .await?;
    Ok(
        match rows.first().and_then(|r| Some((u64_of(&r[0])?, email_of(&r[1])))) {
            Some((id, email)) => Who::new(Some(id), &email),
            None => who,
        },
    )
}

/// The person behind a user id; `None` when no such user exists.
pub async fn who_by_user_id(store: &Store, user_id: u64) -> Result<Option<Who>, StoreError> {
    let mut conn = store.conn().await?;
    let rows = rows(
        &mut conn,
        store,
        "an account",
        format!("SELECT ID, user_email FROM {} WHERE ID = ?", store.table("users")),
        vec![user_id.into()],
    )
    .await?;
    Ok(rows
        .first()
        .and_then(|r| Some(Who::new(Some(u64_of(&r[0])?), &email_of(&r[1])))))
}

/// Everything the store holds about `who`, with the due date of each item. A person the
/// store knows nothing about gets a document with empty sections.
pub async fn collect(store: &Store, ctx: &Context<'_>, who: &Who) -> Result<Export, StoreError> {
    let mut conn = store.conn().await?;
    let mut c = Collector {
        store,
        ctx,
        who,
        conn: &mut conn,
        rules: DueRules::new(ctx.config, ctx.zone, ctx.now),
        warnings: Vec::new(),
    };
    c.export().await
}

async fn rows(
    conn: &mut Conn,
    store: &Store,
    what: &str,
    sql: String,
    params: Vec<Value>,
) -> Result<Vec<Vec<Value>>, StoreError> {
    let rows: Vec<Row> = conn
        .exec(sql, params)
        .await
        .map_err(StoreError::sql(format!("reading {what} for an export"), store))?;
    Ok(rows.into_iter().map(Row::unwrap).collect())
}

struct Collector<'a, 'c> {
    store: &'a Store,
    ctx: &'a Context<'a>,
    who: &'a Who,
    conn: &'c mut Conn,
    rules: DueRules,
    warnings: Vec<String>,
}

/// The account's row and meta as read.
struct AccountRow {
    id: u64,
    login: String,
    nicename: String,
    email: String,
    url: String,
    registered: Option<DateTime<Utc>>,
    display_name: String,
    meta: Vec<(String, Value)>,
}

/// One order as read from either storage.
#[derive(Default)]
struct OrderRow {
    id: u64,
    status: String,
    customer_id: u64,
    /// Lowercased billing email.
    email: String,
    created: Option<DateTime<Utc>>,
    updated: Option<DateTime<Utc>>,
    paid: Option<DateTime<Utc>>,
    completed: Option<DateTime<Utc>>,
    /// Dates stored but unreadable, as the plan's reader tells them.
    unreadable: UnreadableOrderDates,
    currency: String,
    totals: Totals,
    payment_method: String,
    payment_method_title: String,
    transaction_id: String,
    customer_note: String,
    ip: String,
    user_agent: String,
    billing: Address,
    shipping: Address,
    attribution: BTreeMap<String, String>,
    extra_meta: BTreeMap<String, String>,
    anonymized: bool,
    minimised: bool,
    refunds: Vec<RefundRow>,
}

struct RefundRow {
    id: u64,
    created: Option<DateTime<Utc>>,
    total: String,
    amount: Option<String>,
    reason: String,
}

fn new_order(id: u64) -> OrderRow {
    OrderRow {
        id,
        billing: Address {
            email: Some(String::new()),
            ..Address::default()
        },
        ..OrderRow::default()
    }
}

impl Collector<'_, '_> {
    async fn rows(&mut self, what: &str, sql: String, params: Vec<Value>) -> Result<Vec<Vec<Value>>, StoreError> {
        rows(self.conn, self.store, what, sql, params).await
    }

    fn t(&self, name: &str) -> String {
        self.store.table(name)
    }

    fn time(&self, t: Option<DateTime<Utc>>) -> Option<String> {
        t.map(|t| self.ctx.zone.rfc3339(t))
    }

    fn due(&self, stages: &[Stage]) -> Vec<export::Due> {
        export::due(stages, &self.ctx.zone)
    }

    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// The email to match, if there is one.
    fn email(&self) -> Option<&str> {
        Some(self.who.email.as_str()).filter(|e| !e.is_empty())
    }

    /// The WHERE alternatives that make a row the person's, with their parameters:
    /// `by_account` compared with their user id, `by_email` with their email. Empty when
    /// the person has neither.
    fn theirs(&self, by_account: &str, by_email: &str) -> (Vec<String>, Vec<Value>) {
        let (mut clauses, mut params) = (Vec::new(), Vec::new());
        if let Some(id) = self.who.user_id {
            clauses.push(by_account.to_owned());
            params.push(Value::from(id));
        }
        if let Some(e) = self.email() {
            clauses.push(by_email.to_owned());
            params.push(Value::from(e));
        }
        (clauses, params)
    }

    async fn export(&mut self) -> Result<Export, StoreError> {
        let ctx = self.ctx;
        let account = match self.who.user_id {
            Some(id) => self.account(id).await?,
            None => None,
        };
        let orders = self.orders().await?;
        let order_ids: Vec<u64> = orders.iter().map(|o| o.id).collect();
        let lines = self.lines(&order_ids).await?;
        let refund_ids: Vec<u64> = orders.iter().flat_map(|o| o.refunds.iter().map(|r| r.id)).collect();
        let notes = self
            .notes(order_ids.iter().chain(&refund_ids).copied().collect())
            .await?;
        let sessions = self.sessions().await?;
        let lookups = self.customer_lookup().await?;
        let requests = self.privacy_requests().await?;
        let reviews = self.reviews().await?;
        let downloads = self.downloads(&order_ids).await?;
        let tokens = self.tokens().await?;

        // Who the person is to the policy, and when they are forgotten.
        let user_id = self.who.user_id.unwrap_or(0);
        let is_account_order = |o: &OrderRow| user_id > 0 && o.customer_id == user_id;
        let account_activity = activity(orders.iter().filter(|o| is_account_order(o)));
        let guest_activity = activity(orders.iter().filter(|o| !is_account_order(o)));
        let facts = account
            .as_ref()
            .map(|a| self.customer_facts(a, &sessions, account_activity, guest_activity.clone()));
        let person = match (&account, &facts) {
            (Some(a), Some(facts)) => {
                let anonymised = a.meta.iter().find(|(k, _)| k == USER_MARKER).map(|(_, v)| unix_of(v));
                self.rules.account(facts, anonymised, ctx.restricted)
            }
            _ => self.rules.guest(&self.who.email, &guest_activity, ctx.restricted),
        };

        // Each order's stages; refunds, notes and download permissions follow their order.
        let mut order_due: HashMap<u64, Vec<Stage>> = HashMap::new();
        let mut lines = lines;
        let account_id = account.as_ref().map(|a| a.id);
        let mut out_orders = Vec::with_capacity(orders.len());
        for o in orders {
            let stages = self.rules.order(&order_facts(&o, account_id, &person), &person);
            for id in std::iter::once(o.id).chain(o.refunds.iter().map(|r| r.id)) {
                order_due.insert(id, stages.clone());
            }
            let lines = lines.remove(&o.id).unwrap_or_default();
            out_orders.push(self.order_out(o, lines, &stages));
        }

        let order_notes = notes
            .into_iter()
            .map(|mut n| {
                let stages = order_due.get(&n.order_id).map(Vec::as_slice).unwrap_or(&[]);
                n.due = self.due(&DueRules::with_order(stages, Some(Act::Delete)));
                n
            })
            .collect();
        let downloads = downloads
            .into_iter()
            .map(|mut d| {
                let stages = order_due.get(&d.order_id).map(Vec::as_slice).unwrap_or(&[]);
                d.due = self.due(&DueRules::with_order(stages, Some(Act::Anonymise)));
                d
            })
            .collect();
        let with_person = self.due(&self.rules.anonymised_with_person(&person));
        let deleted_with_person = self.due(&self.rules.deleted_with_person(&person));
        let reviews = reviews
            .into_iter()
            .map(|mut r| {
                r.due = with_person.clone();
                r
            })
            .collect();
        let payment_tokens = tokens
            .into_iter()
            .map(|mut t| {
                t.due = deleted_with_person.clone();
                t
            })
            .collect();
        let customer_lookup = lookups
            .into_iter()
            .map(|mut l| {
                l.due = with_person.clone();
                l
            })
            .collect();
        let account_key = self.who.user_id.map(|id| id.to_string());
        let sessions = sessions
            .into_iter()
            .map(|(key, expiry, mut s)| {
                let owner = (account.is_some() && account_key.as_deref() == Some(key.as_str())).then_some(&person);
                s.due = self.due(&self.rules.session(expiry, owner));
                s
            })
            .collect();
        let subject_due = match &account {
            Some(_) => self.due(&self.rules.profile(&person)),
            None => with_person.clone(),
        };

        let (account_out, addresses) = match (account, facts) {
            (Some(a), Some(facts)) => {
                let (acc, addresses) = self.account_out(a, &person, &facts);
                (Some(acc), addresses)
            }
            _ => (None, Addresses::default()),
        };
        Ok(Export {
            schema: export::SCHEMA,
            generated_at: ctx.zone.rfc3339(ctx.now),
            generated: ctx.now,
            shop: Shop {
                time_zone: zone_name(&ctx.zone),
                order_storage: if ctx.layout.read_hpos { "hpos" } else { "posts" },
            },
            subject: SubjectInfo {
                user_id: self.who.user_id,
                email: self.who.email.clone(),
                has_account: account_out.is_some(),
                restricted: ctx.restricted,
            },
            policy: PolicySummary::of(ctx.config),
            due: subject_due,
            profile: Profile {
                account: account_out,
                customer_lookup,
                sessions,
                privacy_requests: requests,
            },
            addresses,
            orders: out_orders,
            order_notes,
            reviews,
            downloads,
            payment_tokens,
            processors: ctx.config.processors.clone(),
            categories: export::categories(&ctx.config.processors),
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}

fn zone_name(zone: &ShopZone) -> String {
    match zone {
        ShopZone::Named(tz) => tz.name().to_owned(),
        ShopZone::Offset(o) => format!("UTC{o}"),
    }
}

/// An order as the policy sees it. `account`: the person's account, if it exists.
fn order_facts(o: &OrderRow, account: Option<u64>, person: &Forget) -> OrderFacts {
    OrderFacts {
        id: o.id,
        status: o.status.clone(),
        customer_id: o.customer_id,
        account: match o.customer_id {
            0 => policy::Account::Guest,
            id if Some(id) == account => policy::Account::Present {
                anonymised: matches!(person, Forget::Done { .. }),
            },
            _ => policy::Account::Missing,
        },
        contact_present: !o.email.is_empty() && o.email != anonymise::EMAIL,
        email: o.email.clone(),
        created: o.created,
        paid: o.paid,
        completed: o.completed,
        unreadable: o.unreadable,
        processed: match (o.anonymized, o.minimised) {
            (true, _) => Processed::Anonymised,
            (false, true) => Processed::Minimised,
            _ => Processed::No,
        },
        ip_present: !matches!(o.ip.as_str(), "" | anonymise::IP)
            || !matches!(o.user_agent.as_str(), "" | anonymise::TEXT),
    }
}

/// Newest non-draft order, open orders, newest pending order: as the reader aggregates.
fn activity<'o>(orders: impl Iterator<Item = &'o OrderRow>) -> OrderActivity {
    let mut a = OrderActivity::default();
    for o in orders {
        if o.status != "wc-checkout-draft" {
            a.last_order = a.last_order.max(o.created);
            if o.unreadable.created {
                a.undated += 1;
                a.first_undated = Some(a.first_undated.map_or(o.id, |first| first.min(o.id)));
            }
        }
        if OPEN_STATUSES.contains(&o.status.as_str()) {
            a.open += 1;
        }
        if o.status == "wc-pending" {
            a.last_pending = a.last_pending.max(o.created);
        }
    }
    a
}

/// `?, ?, ?` for `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `%<email>%` for `LIKE … ESCAPE '!'`.
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for ch in text.chars() {
        if matches!(ch, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// A serialized value inside a serialized string (WooCommerce's session parts), parsed
/// from its bytes as stored: decoding them as text first would change the byte lengths
/// PHP counted when they are not UTF-8.
fn nested(v: &php::Value) -> Option<php::Value> {
    match v {
        php::Value::Str(bytes) => php::unserialize(bytes).ok(),
        _ => None,
    }
}

/// An array entry of a PHP value by key.
fn entry<'v>(v: &'v php::Value, key: &str) -> Option<&'v php::Value> {
    match v {
        php::Value::Array(entries) => entries.iter().find_map(|(k, v)| match k {
            php::Value::Str(k) if k == key.as_bytes() => Some(v),
            _ => None,
        }),
        _ => None,
    }
}

/// A PHP scalar as text.
fn scalar(v: &php::Value) -> Option<String> {
    match v {
        php::Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
        php::Value::Int(i) => Some(i.to_string()),
        php::Value::Float(f) => Some(f.to_string()),
        php::Value::Bool(b) => Some(if *b { "1" } else { "" }.to_owned()),
        php::Value::Null | php::Value::Array(_) => None,
    }
}

fn php_key(k: &php::Value) -> String {
    scalar(k).unwrap_or_default()
}

/// The items of a WooCommerce cart array (`key => [product_id, quantity, …]`).
fn cart_items(cart: &php::Value) -> Vec<CartItem> {
    let php::Value::Array(items) = cart else {
        return Vec::new();
    };
    items
        .iter()
        .map(|(_, item)| CartItem {
            product_id: entry(item, "product_id").and_then(scalar).and_then(|s| s.parse().ok()),
            quantity: entry(item, "quantity").and_then(scalar),
        })
        .collect()
}

/// WordPress login sessions: token hash → expiration, ip, ua, login.
fn logins(value: &php::Value) -> Vec<(Option<i64>, Option<i64>, String, String)> {
    let php::Value::Array(sessions) = value else {
        return Vec::new();
    };
    sessions
        .iter()
        .map(|(_, s)| {
            let int = |k: &str| entry(s, k).and_then(scalar).and_then(|t| t.parse().ok());
            let text = |k: &str| entry(s, k).and_then(scalar).unwrap_or_default();
            (int("login"), int("expiration"), text("ip"), text("ua"))
        })
        .collect()
}

fn unix(t: Option<i64>) -> Option<DateTime<Utc>> {
    t.filter(|t| *t > 0).and_then(|t| DateTime::from_timestamp(t, 0))
}

impl Collector<'_, '_> {
    fn order_out(&self, o: OrderRow, lines: Vec<Line>, stages: &[Stage]) -> Order {
        let refund_due = self.due(&DueRules::with_order(stages, None));
        let refunds = o
            .refunds
            .into_iter()
            .map(|r| Refund {
                id: r.id,
                created: self.time(r.created),
                amount: r.amount.or_else(|| export::amount(r.total.trim_start_matches('-'))),
                reason: r.reason,
                due: refund_due.clone(),
            })
            .collect();
        Order {
            id: o.id,
            status: o.status.strip_prefix("wc-").unwrap_or(&o.status).to_owned(),
            placed_as: if o.customer_id == 0 { "guest" } else { "account" },
            created: self.time(o.created),
            paid: self.time(o.paid),
            completed: self.time(o.completed),
            updated: self.time(o.updated),
            currency: o.currency,
            totals: o.totals,
            payment_method: o.payment_method,
            payment_method_title: o.payment_method_title,
            transaction_id: o.transaction_id,
            customer_note: o.customer_note,
            ip_address: o.ip,
            user_agent: o.user_agent,
            billing: o.billing,
            shipping: o.shipping,
            lines,
            refunds,
            attribution: o.attribution,
            extra_meta: o.extra_meta,
            processed: match (o.anonymized, o.minimised) {
                (true, _) => "anonymised",
                (false, true) => "minimised",
                _ => "no",
            },
            due: self.due(stages),
        }
    }

    async fn account(&mut self, id: u64) -> Result<Option<AccountRow>, StoreError> {
        let users = self
            .rows(
                "an account",
                format!(
                    "SELECT ID, user_login, user_nicename, user_email, user_url, user_registered, display_name \
                     FROM {} WHERE ID = ?",
                    self.t("users")
                ),
                vec![id.into()],
            )
            .await?;
        let Some((r, id)) = users.first().and_then(|r| Some((r, u64_of(&r[0])?))) else {
            return Ok(None);
        };
        let mut account = AccountRow {
            id,
            login: text_of(&r[1]),
            nicename: text_of(&r[2]),
            email: text_of(&r[3]),
            url: text_of(&r[4]),
            registered: time_of(&r[5]),
            display_name: text_of(&r[6]),
            meta: Vec::new(),
        };
        let extra = &self.ctx.config.personal_data.extra_user_meta_keys;
        let mut params: Vec<Value> = vec![id.into(), format!("{}capabilities", self.store.prefix()).into()];
        params.extend(extra.iter().map(|k| Value::from(k.as_str())));
        let meta = self
            .rows(
                "account meta",
                format!(
                    "SELECT meta_key, meta_value FROM {} WHERE user_id = ? AND (meta_key IN ('first_name', \
                     'last_name', 'nickname', 'description', 'wc_last_active', 'last_update', 'session_tokens', \
                     '{USER_MARKER}', {}) OR meta_key LIKE 'billing\\_%' OR meta_key LIKE 'shipping\\_%' \
                     OR meta_key LIKE '\\_woocommerce\\_persistent\\_cart%') ORDER BY umeta_id",
                    self.t("usermeta"),
                    marks(1 + extra.len())
                ),
                params,
            )
            .await?;
        account.meta = meta.into_iter().map(|r| (text_of(&r[0]), r[1].clone())).collect();
        Ok(Some(account))
    }

    fn customer_facts(
        &mut self,
        a: &AccountRow,
        sessions: &[(String, Option<DateTime<Utc>>, ShopSession)],
        orders: OrderActivity,
        guest_orders: OrderActivity,
    ) -> CustomerFacts {
        let caps = format!("{}capabilities", self.store.prefix());
        let meta = |key: &str| a.meta.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let key = a.id.to_string();
        let (wc_last_active, last_update) = (unix_meta_of(meta("wc_last_active")), unix_meta_of(meta("last_update")));
        let facts = CustomerFacts {
            user_id: a.id,
            email: a.email.trim().to_lowercase(),
            capabilities: meta(&caps).and_then(bytes_of),
            registered: a.registered,
            wc_last_active: wc_last_active.time(),
            last_update: last_update.time(),
            session_tokens: meta("session_tokens").and_then(bytes_of),
            session_expiry: sessions
                .iter()
                .filter(|(k, _, _)| *k == key)
                .filter_map(|(_, e, _)| *e)
                .max(),
            orders,
            guest_orders,
            anonymised: meta(USER_MARKER).is_some(),
            unreadable: UnreadableDates {
                registered: a.registered.is_none(),
                wc_last_active: wc_last_active.unreadable(),
                last_update: last_update.unreadable(),
            },
            // Whether another account shares the email matters to the guest orders of a
            // whole plan, not to one person's due dates.
            email_shared: false,
        };
        // As the plan does: a date that cannot be read may be a later visit.
        let unknown: Vec<String> = due::last_activity(&facts)
            .unknown
            .iter()
            .map(ToString::to_string)
            .collect();
        if !unknown.is_empty() {
            self.warn(format!(
                "user {}: {}; no date can be given for forgetting the account until it is repaired",
                a.id,
                unknown.join(", ")
            ));
        }
        facts
    }

    fn account_out(&mut self, a: AccountRow, person: &Forget, facts: &CustomerFacts) -> (Account, Addresses) {
        let caps = format!("{}capabilities", self.store.prefix());
        let extra = &self.ctx.config.personal_data.extra_user_meta_keys;
        let mut out = Account {
            user_id: a.id,
            login: a.login,
            nicename: a.nicename,
            email: a.email,
            display_name: a.display_name,
            url: a.url,
            registered: self.time(a.registered),
            roles: Vec::new(),
            first_name: String::new(),
            last_name: String::new(),
            nickname: String::new(),
            description: String::new(),
            wc_last_active: self.time(facts.wc_last_active),
            last_update: self.time(facts.last_update),
            last_activity: self.time(due::last_activity(facts).last),
            extra_meta: BTreeMap::new(),
            logins: Vec::new(),
            saved_cart: Vec::new(),
            anonymised: facts.anonymised,
            due: self.due(&self.rules.profile(person)),
        };
        let mut billing = Address {
            email: Some(String::new()),
            ..Address::default()
        };
        let mut shipping = Address::default();
        let gone = self.due(&self.rules.deleted_with_person(person));
        for (key, value) in a.meta {
            let text = text_of(&value);
            // Serialized values are parsed from the bytes as stored (see `nested`).
            let raw = bytes_of(&value).unwrap_or_default();
            match key.as_str() {
                "first_name" => out.first_name = text,
                "last_name" => out.last_name = text,
                "nickname" => out.nickname = text,
                "description" => out.description = text,
                "wc_last_active" | "last_update" | USER_MARKER => {}
                "session_tokens" => match php::unserialize(&raw) {
                    Ok(v) => {
                        for (login, expires, ip, ua) in logins(&v) {
                            out.logins.push(Login {
                                login: self.time(unix(login)),
                                expires: self.time(unix(expires)),
                                ip_address: ip,
                                user_agent: ua,
                                due: gone.clone(),
                            });
                        }
                    }
                    Err(_) => self.warn(format!("user {}: login sessions unreadable; left out", out.user_id)),
                },
                k if k == caps => match php::roles(&raw) {
                    Ok(roles) => out.roles = roles,
                    Err(_) => self.warn(format!("user {}: roles unreadable", out.user_id)),
                },
                k if extra.iter().any(|e| e == k) => {
                    out.extra_meta.insert(key, text);
                }
                k if k.starts_with("_woocommerce_persistent_cart") => match php::unserialize(&raw) {
                    Ok(v) => out
                        .saved_cart
                        .extend(entry(&v, "cart").map(cart_items).unwrap_or_default()),
                    Err(_) => self.warn(format!("user {}: saved cart unreadable; left out", out.user_id)),
                },
                k => {
                    let known = match (k.strip_prefix("billing_"), k.strip_prefix("shipping_")) {
                        (Some(field), _) => billing.set(field, text.clone()),
                        (_, Some(field)) if field != "email" => shipping.set(field, text.clone()),
                        _ => false,
                    };
                    // Fields plugins add to the addresses (a VAT number, a house number).
                    if !known {
                        out.extra_meta.insert(key, text);
                    }
                }
            }
        }
        let addresses = Addresses {
            billing: (!billing.is_empty()).then_some(billing),
            shipping: (!shipping.is_empty()).then_some(shipping),
            due: gone,
        };
        (out, addresses)
    }

    async fn orders(&mut self) -> Result<Vec<OrderRow>, StoreError> {
        let mut orders = if self.ctx.layout.read_hpos {
            self.hpos_orders().await?
        } else {
            self.posts_orders().await?
        };
        for o in &mut orders {
            if let Some(email) = &o.billing.email {
                if o.email.is_empty() {
                    o.email = email.trim().to_lowercase();
                }
            }
        }
        Ok(orders)
    }

    async fn hpos_orders(&mut self) -> Result<Vec<OrderRow>, StoreError> {
        // One SELECT per way an order can be theirs, each on its own index.
        let (clauses, params) = self.theirs(
            "o.customer_id = ?",
            "o.billing_email = ? AND (o.customer_id = 0 OR o.customer_id IS NULL)",
        );
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let selects: Vec<String> = clauses
            .iter()
            .map(|clause| {
                format!(
                    "SELECT o.id, o.status, o.currency, o.customer_id, o.billing_email, o.date_created_gmt, \
                     o.date_updated_gmt, o.payment_method, o.payment_method_title, o.transaction_id, o.ip_address, \
                     o.user_agent, o.customer_note, o.tax_amount, o.total_amount, d.date_paid_gmt, \
                     d.date_completed_gmt, d.shipping_total_amount, d.shipping_tax_amount, d.discount_total_amount, \
                     d.discount_tax_amount FROM {} o LEFT JOIN {} d ON d.order_id = o.id \
                     WHERE o.type = 'shop_order' AND {clause}",
                    self.t("wc_orders"),
                    self.t("wc_order_operational_data"),
                )
            })
            .collect();
        let rows = self
            .rows("orders", format!("{} ORDER BY 1", selects.join(" UNION ")), params)
            .await?;
        let mut orders: Vec<OrderRow> = rows
            .iter()
            .filter_map(|r| {
                let mut o = new_order(u64_of(&r[0])?);
                o.status = text_of(&r[1]);
                o.currency = text_of(&r[2]);
                o.customer_id = u64_of(&r[3]).unwrap_or(0);
                o.email = email_of(&r[4]);
                o.created = time_of(&r[5]);
                o.updated = time_of(&r[6]);
                o.payment_method = text_of(&r[7]);
                o.payment_method_title = text_of(&r[8]);
                o.transaction_id = text_of(&r[9]);
                o.ip = text_of(&r[10]);
                o.user_agent = text_of(&r[11]);
                o.customer_note = text_of(&r[12]);
                o.totals = Totals {
                    tax: export::amount(&text_of(&r[13])),
                    total: export::amount(&text_of(&r[14])),
                    shipping: export::amount(&text_of(&r[17])),
                    shipping_tax: export::amount(&text_of(&r[18])),
                    discount: export::amount(&text_of(&r[19])),
                    discount_tax: export::amount(&text_of(&r[20])),
                };
                let (paid, completed) = (datetime_of(&r[15]), datetime_of(&r[16]));
                (o.paid, o.completed) = (paid.time(), completed.time());
                o.unreadable = UnreadableOrderDates {
                    created: o.created.is_none(),
                    paid: paid.unreadable(),
                    completed: completed.unreadable(),
                };
                Some(o)
            })
            .collect();
        if orders.is_empty() {
            return Ok(orders);
        }
        let index: HashMap<u64, usize> = orders.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
        let ids = id_list(orders.iter().map(|o| o.id));
        let addresses = self
            .rows(
                "order addresses",
                format!(
                    "SELECT order_id, address_type, first_name, last_name, company, address_1, address_2, city, \
                     state, postcode, country, email, phone FROM {} WHERE order_id IN ({ids})",
                    self.t("wc_order_addresses")
                ),
                vec![],
            )
            .await?;
        // The SELECT above lists the columns in this order.
        const COLUMNS: [&str; 11] = crate::anonymise::ADDRESS_FIELDS;
        for r in &addresses {
            let Some(o) = u64_of(&r[0]).and_then(|id| index.get(&id)).map(|i| &mut orders[*i]) else {
                continue;
            };
            let shipping = match text_of(&r[1]).as_str() {
                "billing" => false,
                "shipping" => true,
                _ => continue,
            };
            let address = if shipping { &mut o.shipping } else { &mut o.billing };
            for (field, value) in COLUMNS.iter().zip(&r[2..]) {
                if shipping && *field == "email" && *value == Value::NULL {
                    continue;
                }
                address.set(field, text_of(value));
            }
        }
        let refunds = format!(
            "SELECT id, parent_order_id, date_created_gmt, total_amount FROM {} \
             WHERE type = 'shop_order_refund' AND parent_order_id IN ({ids}) ORDER BY id",
            self.t("wc_orders")
        );
        let meta = self.t("wc_orders_meta");
        let meta = |all: &str| {
            format!("SELECT order_id, meta_key, meta_value FROM {meta} WHERE order_id IN ({all}) ORDER BY id")
        };
        self.refunds_and_meta(&mut orders, &index, refunds, meta, false).await?;
        Ok(orders)
    }

    async fn posts_orders(&mut self) -> Result<Vec<OrderRow>, StoreError> {
        let (posts, postmeta) = (self.t("posts"), self.t("postmeta"));
        let mut selects = Vec::new();
        let mut params = Vec::new();
        if let Some(id) = self.who.user_id {
            selects.push(format!(
                "SELECT p.ID FROM {posts} p JOIN {postmeta} c ON c.post_id = p.ID AND c.meta_key = '_customer_user' \
                 WHERE p.post_type = 'shop_order' AND c.meta_value = ?"
            ));
            params.push(Value::from(id.to_string()));
        }
        if let Some(e) = self.email() {
            selects.push(format!(
                "SELECT p.ID FROM {posts} p JOIN {postmeta} e ON e.post_id = p.ID AND e.meta_key = '_billing_email' \
                 WHERE p.post_type = 'shop_order' AND e.meta_value = ? AND NOT EXISTS (SELECT 1 FROM {postmeta} c \
                 WHERE c.post_id = p.ID AND c.meta_key = '_customer_user' AND c.meta_value NOT IN ('0', ''))"
            ));
            params.push(Value::from(e));
        }
        if selects.is_empty() {
            return Ok(Vec::new());
        }
        let ids: BTreeSet<u64> = self
            .rows("orders", selects.join(" UNION "), params)
            .await?
            .iter()
            .filter_map(|r| u64_of(&r[0]))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = id_list(ids.iter().copied());
        let rows = self
            .rows(
                "orders",
                format!(
                    "SELECT ID, post_status, post_date_gmt, post_modified_gmt, post_excerpt FROM {posts} \
                     WHERE ID IN ({list}) AND post_type = 'shop_order' ORDER BY ID"
                ),
                vec![],
            )
            .await?;
        let mut orders: Vec<OrderRow> = rows
            .iter()
            .filter_map(|r| {
                let mut o = new_order(u64_of(&r[0])?);
                o.status = text_of(&r[1]);
                o.created = time_of(&r[2]);
                o.unreadable.created = o.created.is_none();
                o.updated = time_of(&r[3]);
                o.customer_note = text_of(&r[4]);
                Some(o)
            })
            .collect();
        let index: HashMap<u64, usize> = orders.iter().enumerate().map(|(i, o)| (o.id, i)).collect();
        let refunds = format!(
            "SELECT ID, post_parent, post_date_gmt FROM {posts} WHERE post_type = 'shop_order_refund' \
             AND post_parent IN ({list}) ORDER BY ID"
        );
        let meta = |all: &str| {
            format!("SELECT post_id, meta_key, meta_value FROM {postmeta} WHERE post_id IN ({all}) ORDER BY meta_id")
        };
        self.refunds_and_meta(&mut orders, &index, refunds, meta, true).await?;
        Ok(orders)
    }

    /// Attaches the orders' refunds (`refunds` selects id, parent, created and, from HPOS,
    /// the total), then applies the meta rows of orders and refunds (`meta` selects them
    /// for an id list).
    async fn refunds_and_meta(
        &mut self,
        orders: &mut [OrderRow],
        index: &HashMap<u64, usize>,
        refunds: String,
        meta: impl FnOnce(&str) -> String,
        legacy: bool,
    ) -> Result<(), StoreError> {
        for r in self.rows("refunds", refunds, vec![]).await? {
            let (Some(id), Some(parent)) = (u64_of(&r[0]), u64_of(&r[1])) else {
                continue;
            };
            if let Some(i) = index.get(&parent) {
                orders[*i].refunds.push(RefundRow {
                    id,
                    created: time_of(&r[2]),
                    total: r.get(3).map(text_of).unwrap_or_default(),
                    amount: None,
                    reason: String::new(),
                });
            }
        }
        let all = id_list(
            orders
                .iter()
                .flat_map(|o| std::iter::once(o.id).chain(o.refunds.iter().map(|r| r.id))),
        );
        let meta = self.rows("order meta", meta(&all), vec![]).await?;
        self.apply_meta(orders, index, &meta, legacy);
        Ok(())
    }

    /// Order and refund meta rows (id, key, value); `legacy`: postmeta, which also holds
    /// the core properties HPOS keeps in columns.
    fn apply_meta(&self, orders: &mut [OrderRow], index: &HashMap<u64, usize>, meta: &[Vec<Value>], legacy: bool) {
        let extra = &self.ctx.config.personal_data.extra_order_meta_keys;
        let refund_of: HashMap<u64, (usize, usize)> = orders
            .iter()
            .enumerate()
            .flat_map(|(i, o)| o.refunds.iter().enumerate().map(move |(j, r)| (r.id, (i, j))))
            .collect();
        for r in meta {
            let Some(id) = u64_of(&r[0]) else { continue };
            let key = text_of(&r[1]);
            let value = &r[2];
            if let Some((i, j)) = refund_of.get(&id) {
                let refund = &mut orders[*i].refunds[*j];
                match key.as_str() {
                    "_refund_reason" => refund.reason = text_of(value),
                    "_refund_amount" => refund.amount = export::amount(&text_of(value)),
                    "_order_total" => refund.total = text_of(value),
                    _ => {}
                }
                continue;
            }
            let Some(o) = index.get(&id).map(|i| &mut orders[*i]) else {
                continue;
            };
            let text = text_of(value);
            if key == "_anonymized" {
                o.anonymized = text == "yes";
            } else if key == ORDER_MARKER {
                o.minimised = true;
            } else if let Some(name) = key.strip_prefix("_wc_order_attribution_") {
                o.attribution.insert(name.to_owned(), text);
            } else if extra.contains(&key) || !key.starts_with('_') {
                o.extra_meta.insert(key, text);
            } else if legacy {
                legacy_prop(o, &key, value, text);
            }
        }
    }

    async fn lines(&mut self, orders: &[u64]) -> Result<HashMap<u64, Vec<Line>>, StoreError> {
        let mut out: HashMap<u64, Vec<Line>> = HashMap::new();
        if orders.is_empty() {
            return Ok(out);
        }
        let items = self
            .rows(
                "order items",
                format!(
                    "SELECT order_item_id, order_id, order_item_name, order_item_type FROM {} \
                     WHERE order_id IN ({}) ORDER BY order_item_id",
                    self.t("woocommerce_order_items"),
                    id_list(orders.iter().copied())
                ),
                vec![],
            )
            .await?;
        let mut lines: Vec<(u64, Line)> = items
            .iter()
            .filter_map(|r| {
                Some((
                    u64_of(&r[1])?,
                    Line {
                        id: u64_of(&r[0])?,
                        kind: text_of(&r[3]),
                        name: text_of(&r[2]),
                        product_id: None,
                        variation_id: None,
                        quantity: None,
                        subtotal: None,
                        subtotal_tax: None,
                        total: None,
                        tax: None,
                        meta: BTreeMap::new(),
                    },
                ))
            })
            .collect();
        if lines.is_empty() {
            return Ok(out);
        }
        let index: HashMap<u64, usize> = lines.iter().enumerate().map(|(i, (_, l))| (l.id, i)).collect();
        let meta = self
            .rows(
                "order item meta",
                format!(
                    "SELECT order_item_id, meta_key, meta_value FROM {} WHERE order_item_id IN ({}) ORDER BY meta_id",
                    self.t("woocommerce_order_itemmeta"),
                    id_list(lines.iter().map(|(_, l)| l.id))
                ),
                vec![],
            )
            .await?;
        for r in &meta {
            let Some(line) = u64_of(&r[0]).and_then(|id| index.get(&id)).map(|i| &mut lines[*i].1) else {
                continue;
            };
            let key = text_of(&r[1]);
            let text = text_of(&r[2]);
            let id = || u64_of(&r[2]).filter(|id| *id > 0);
            match (line.kind.as_str(), key.as_str()) {
                (_, "_product_id") => line.product_id = id(),
                (_, "_variation_id") => line.variation_id = id(),
                (_, "_qty") => line.quantity = Some(text),
                (_, "_line_subtotal") => line.subtotal = export::amount(&text),
                (_, "_line_subtotal_tax") => line.subtotal_tax = export::amount(&text),
                (_, "_line_total") => line.total = export::amount(&text),
                (_, "_line_tax") => line.tax = export::amount(&text),
                ("shipping", "cost") | ("coupon", "discount_amount") => line.total = export::amount(&text),
                ("shipping", "total_tax") | ("coupon", "discount_amount_tax") => line.tax = export::amount(&text),
                ("tax", "tax_amount") => line.total = export::amount(&text),
                // Serialized tax breakdowns: the totals above say the same.
                (_, "taxes") => {}
                (_, k) if !k.starts_with('_') => {
                    line.meta.insert(key, text);
                }
                _ => {}
            }
        }
        for (order, line) in lines {
            out.entry(order).or_default().push(line);
        }
        Ok(out)
    }

    async fn notes(&mut self, posts: Vec<u64>) -> Result<Vec<OrderNote>, StoreError> {
        if posts.is_empty() {
            return Ok(Vec::new());
        }
        let (comments, commentmeta) = (self.t("comments"), self.t("commentmeta"));
        let rows = self
            .rows(
                "order notes",
                format!(
                    "SELECT c.comment_ID, c.comment_post_ID, c.comment_author, c.comment_date_gmt, c.comment_content, \
                     EXISTS(SELECT 1 FROM {commentmeta} m WHERE m.comment_id = c.comment_ID \
                     AND m.meta_key = 'is_customer_note' AND m.meta_value = '1') \
                     FROM {comments} c WHERE c.comment_type = 'order_note' AND c.comment_post_ID IN ({}) \
                     ORDER BY c.comment_ID",
                    id_list(posts)
                ),
                vec![],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(OrderNote {
                    id: u64_of(&r[0])?,
                    order_id: u64_of(&r[1])?,
                    date: self.time(time_of(&r[3])),
                    content: text_of(&r[4]),
                    to_customer: i64_of(&r[5]) == Some(1),
                    added_by: if text_of(&r[2]) == "WooCommerce" {
                        "system"
                    } else {
                        "staff"
                    },
                    due: Vec::new(),
                })
            })
            .collect())
    }

    /// Sessions keyed by the account's id, and sessions whose checkout email is the
    /// person's: (key, expiry, session).
    async fn sessions(&mut self) -> Result<Vec<(String, Option<DateTime<Utc>>, ShopSession)>, StoreError> {
        let (mut clauses, mut params) = (Vec::new(), Vec::new());
        let key = self.who.user_id.map(|id| id.to_string());
        if let Some(k) = &key {
            clauses.push("session_key = ?");
            params.push(Value::from(k.as_str()));
        }
        if let Some(e) = self.email() {
            clauses.push("session_value LIKE ? ESCAPE '!'");
            params.push(Value::from(like_pattern(e)));
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "sessions",
                format!(
                    "SELECT session_id, session_key, session_value, session_expiry FROM {} WHERE {} ORDER BY session_id",
                    self.t("woocommerce_sessions"),
                    clauses.join(" OR ")
                ),
                params,
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let Some(id) = u64_of(&r[0]) else { continue };
            let session_key = text_of(&r[1]);
            let keyed = key.as_deref() == Some(session_key.as_str());
            let expiry = unix(i64_of(&r[3]));
            let parsed = php::unserialize(&bytes_of(&r[2]).unwrap_or_default()).ok();
            let customer = parsed.as_ref().and_then(|v| entry(v, "customer")).and_then(nested);
            let mut fields = BTreeMap::new();
            if let Some(php::Value::Array(entries)) = &customer {
                for (k, v) in entries {
                    if let Some(text) = scalar(v).filter(|t| !t.is_empty()) {
                        fields.insert(php_key(k), text);
                    }
                }
            }
            let theirs = keyed
                || fields
                    .get("email")
                    .is_some_and(|e| Some(e.trim().to_lowercase().as_str()) == self.email());
            if !theirs {
                continue;
            }
            if customer.is_none() {
                self.warn(format!("session {id}: contents unreadable; checkout details left out"));
            }
            let cart = parsed
                .as_ref()
                .and_then(|v| entry(v, "cart"))
                .and_then(nested)
                .map(|c| cart_items(&c))
                .unwrap_or_default();
            out.push((
                session_key,
                expiry,
                ShopSession {
                    id,
                    expires: self.time(expiry),
                    customer: fields,
                    cart,
                    due: Vec::new(),
                },
            ));
        }
        Ok(out)
    }

    async fn customer_lookup(&mut self) -> Result<Vec<CustomerLookup>, StoreError> {
        let (clauses, params) = self.theirs("user_id = ?", "(user_id IS NULL AND email = ?)");
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "the analytics rows",
                format!(
                    "SELECT customer_id, user_id, username, first_name, last_name, email, date_last_active, \
                     date_registered, country, postcode, city, state FROM {} WHERE {} ORDER BY customer_id",
                    self.t("wc_customer_lookup"),
                    clauses.join(" OR ")
                ),
                params,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(CustomerLookup {
                    id: u64_of(&r[0])?,
                    user_id: u64_of(&r[1]),
                    username: text_of(&r[2]),
                    first_name: text_of(&r[3]),
                    last_name: text_of(&r[4]),
                    email: text_of(&r[5]),
                    date_last_active: self.time(time_of(&r[6])),
                    date_registered: self.time(time_of(&r[7])),
                    country: text_of(&r[8]),
                    postcode: text_of(&r[9]),
                    city: text_of(&r[10]),
                    state: text_of(&r[11]),
                    due: Vec::new(),
                })
            })
            .collect())
    }

    async fn privacy_requests(&mut self) -> Result<Vec<PrivacyRequest>, StoreError> {
        let (clauses, params) = self.theirs("post_author = ?", "post_title = ?");
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "privacy requests",
                format!(
                    "SELECT ID, post_name, post_status, post_date_gmt FROM {} WHERE post_type = 'user_request' \
                     AND ({}) ORDER BY ID",
                    self.t("posts"),
                    clauses.join(" OR ")
                ),
                params,
            )
            .await?;
        let ids: Vec<u64> = rows.iter().filter_map(|r| u64_of(&r[0])).collect();
        let mut stamps: HashMap<(u64, String), Option<DateTime<Utc>>> = HashMap::new();
        if !ids.is_empty() {
            let meta = self
                .rows(
                    "privacy request dates",
                    format!(
                        "SELECT post_id, meta_key, meta_value FROM {} WHERE post_id IN ({}) AND meta_key IN \
                         ('_wp_user_request_confirmed_timestamp', '_wp_user_request_completed_timestamp')",
                        self.t("postmeta"),
                        id_list(ids.iter().copied())
                    ),
                    vec![],
                )
                .await?;
            for r in &meta {
                if let Some(id) = u64_of(&r[0]) {
                    stamps.insert((id, text_of(&r[1])), unix_of(&r[2]));
                }
            }
        }
        // WordPress keeps its request records until an administrator removes them.
        let keep = self.due(&[Stage {
            action: Act::Keep,
            at: None,
            rule: "wordpress_request",
            condition: None,
            done: false,
        }]);
        let stamp = |id: u64, key: &str| stamps.get(&(id, key.to_owned())).copied().flatten();
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id = u64_of(&r[0])?;
                Some(PrivacyRequest {
                    id,
                    action: text_of(&r[1]),
                    status: text_of(&r[2]),
                    requested: self.time(time_of(&r[3])),
                    confirmed: self.time(stamp(id, "_wp_user_request_confirmed_timestamp")),
                    completed: self.time(stamp(id, "_wp_user_request_completed_timestamp")),
                    due: keep.clone(),
                })
            })
            .collect())
    }

    async fn reviews(&mut self) -> Result<Vec<Review>, StoreError> {
        let (clauses, params) = self.theirs("c.user_id = ?", "c.comment_author_email = ?");
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let (comments, commentmeta) = (self.t("comments"), self.t("commentmeta"));
        let rows = self
            .rows(
                "reviews",
                format!(
                    "SELECT c.comment_ID, c.comment_post_ID, p.post_title, c.comment_type, c.comment_date_gmt, \
                     c.comment_author, c.comment_author_email, c.comment_author_url, c.comment_author_IP, \
                     c.comment_agent, c.comment_content, c.comment_approved, \
                     (SELECT MAX(m.meta_value) FROM {commentmeta} m WHERE m.comment_id = c.comment_ID AND m.meta_key = 'rating'), \
                     (SELECT MAX(m.meta_value) FROM {commentmeta} m WHERE m.comment_id = c.comment_ID AND m.meta_key = 'verified') \
                     FROM {comments} c LEFT JOIN {} p ON p.ID = c.comment_post_ID \
                     WHERE c.comment_type <> 'order_note' AND ({}) ORDER BY c.comment_ID",
                    self.t("posts"),
                    clauses.join(" OR ")
                ),
                params,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let opt = |v: &Value| (*v != Value::NULL).then(|| text_of(v));
                Some(Review {
                    id: u64_of(&r[0])?,
                    post_id: u64_of(&r[1]).unwrap_or(0),
                    post_title: text_of(&r[2]),
                    kind: text_of(&r[3]),
                    date: self.time(time_of(&r[4])),
                    author: text_of(&r[5]),
                    author_email: text_of(&r[6]),
                    author_url: text_of(&r[7]),
                    ip_address: text_of(&r[8]),
                    user_agent: text_of(&r[9]),
                    content: text_of(&r[10]),
                    approved: text_of(&r[11]),
                    rating: opt(&r[12]),
                    verified: opt(&r[13]),
                    due: Vec::new(),
                })
            })
            .collect())
    }

    async fn downloads(&mut self, orders: &[u64]) -> Result<Vec<Download>, StoreError> {
        let (mut clauses, params) = self.theirs("d.user_id = ?", "d.user_email = ?");
        if !orders.is_empty() {
            clauses.push(format!("d.order_id IN ({})", id_list(orders.iter().copied())));
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .rows(
                "download permissions",
                format!(
                    "SELECT d.permission_id, d.download_id, d.product_id, p.post_title, d.order_id, d.user_email, \
                     d.downloads_remaining, d.access_granted, d.access_expires, d.download_count \
                     FROM {} d LEFT JOIN {} p ON p.ID = d.product_id WHERE {} ORDER BY d.permission_id",
                    self.t("woocommerce_downloadable_product_permissions"),
                    self.t("posts"),
                    clauses.join(" OR ")
                ),
                params,
            )
            .await?;
        let mut downloads: Vec<Download> = rows
            .iter()
            .filter_map(|r| {
                Some(Download {
                    permission_id: u64_of(&r[0])?,
                    download_id: text_of(&r[1]),
                    product_id: u64_of(&r[2]).unwrap_or(0),
                    product: text_of(&r[3]),
                    order_id: u64_of(&r[4]).unwrap_or(0),
                    email: text_of(&r[5]),
                    downloads_remaining: text_of(&r[6]),
                    access_granted: self.time(time_of(&r[7])),
                    access_expires: self.time(time_of(&r[8])),
                    download_count: u64_of(&r[9]),
                    log: Vec::new(),
                    due: Vec::new(),
                })
            })
            .collect();
        if downloads.is_empty() {
            return Ok(downloads);
        }
        let index: HashMap<u64, usize> = downloads
            .iter()
            .enumerate()
            .map(|(i, d)| (d.permission_id, i))
            .collect();
        let log = self
            .rows(
                "the download log",
                format!(
                    "SELECT download_log_id, timestamp, permission_id, user_ip_address FROM {} \
                     WHERE permission_id IN ({}) ORDER BY download_log_id",
                    self.t("wc_download_log"),
                    id_list(downloads.iter().map(|d| d.permission_id))
                ),
                vec![],
            )
            .await?;
        for r in &log {
            let (Some(id), Some(i)) = (u64_of(&r[0]), u64_of(&r[2]).and_then(|p| index.get(&p))) else {
                continue;
            };
            let at = time_of(&r[1]);
            let ip = text_of(&r[3]);
            let present = !matches!(ip.as_str(), "" | anonymise::IP);
            let due = self.due(&self.rules.download_log(at, present));
            downloads[*i].log.push(DownloadLog {
                id,
                at: self.time(at),
                ip_address: ip,
                due,
            });
        }
        Ok(downloads)
    }

    /// Saved payment methods, summarised: the token column is never read.
    async fn tokens(&mut self) -> Result<Vec<PaymentToken>, StoreError> {
        let Some(user_id) = self.who.user_id else {
            return Ok(Vec::new());
        };
        let rows = self
            .rows(
                "payment tokens",
                format!(
                    "SELECT token_id, gateway_id, type, is_default FROM {} WHERE user_id = ? ORDER BY token_id",
                    self.t("woocommerce_payment_tokens")
                ),
                vec![user_id.into()],
            )
            .await?;
        let mut tokens: Vec<PaymentToken> = rows
            .iter()
            .filter_map(|r| {
                Some(PaymentToken {
                    id: u64_of(&r[0])?,
                    gateway: text_of(&r[1]),
                    kind: text_of(&r[2]),
                    is_default: i64_of(&r[3]) == Some(1),
                    card_type: None,
                    last4: None,
                    expiry_month: None,
                    expiry_year: None,
                    due: Vec::new(),
                })
            })
            .collect();
        if tokens.is_empty() {
            return Ok(tokens);
        }
        let index: HashMap<u64, usize> = tokens.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
        let safe: Vec<String> = SAFE_TOKEN_META.iter().map(|k| format!("'{k}'")).collect();
        let meta = self
            .rows(
                "payment token details",
                format!(
                    "SELECT payment_token_id, meta_key, meta_value FROM {} WHERE payment_token_id IN ({}) \
                     AND meta_key IN ({})",
                    self.t("woocommerce_payment_tokenmeta"),
                    id_list(tokens.iter().map(|t| t.id)),
                    safe.join(", ")
                ),
                vec![],
            )
            .await?;
        for r in &meta {
            let Some(t) = u64_of(&r[0]).and_then(|id| index.get(&id)).map(|i| &mut tokens[*i]) else {
                continue;
            };
            let value = Some(text_of(&r[2]));
            match text_of(&r[1]).as_str() {
                "card_type" => t.card_type = value,
                "last4" => t.last4 = value,
                "expiry_month" => t.expiry_month = value,
                "expiry_year" => t.expiry_year = value,
                _ => {}
            }
        }
        Ok(tokens)
    }
}

/// The core order properties that legacy storage keeps as postmeta.
fn legacy_prop(o: &mut OrderRow, key: &str, value: &Value, text: String) {
    match key {
        "_customer_user" => o.customer_id = u64_of(value).unwrap_or(0),
        "_order_currency" => o.currency = text,
        "_order_total" => o.totals.total = export::amount(&text),
        "_order_tax" => o.totals.tax = export::amount(&text),
        "_order_shipping" => o.totals.shipping = export::amount(&text),
        "_order_shipping_tax" => o.totals.shipping_tax = export::amount(&text),
        "_cart_discount" => o.totals.discount = export::amount(&text),
        "_cart_discount_tax" => o.totals.discount_tax = export::amount(&text),
        "_payment_method" => o.payment_method = text,
        "_payment_method_title" => o.payment_method_title = text,
        "_transaction_id" => o.transaction_id = text,
        "_customer_ip_address" => o.ip = text,
        "_customer_user_agent" => o.user_agent = text,
        "_date_paid" => (o.paid, o.unreadable.paid) = unix_meta_of(Some(value)).parts(),
        "_date_completed" => (o.completed, o.unreadable.completed) = unix_meta_of(Some(value)).parts(),
        "_billing_email" => {
            o.email = text.trim().to_lowercase();
            o.billing.email = Some(text);
        }
        k => {
            if let Some(field) = k.strip_prefix("_billing_") {
                o.billing.set(field, text);
            } else if let Some(field) = k.strip_prefix("_shipping_").filter(|f| *f != "email") {
                o.shipping.set(field, text);
            }
        }
    }
}
