//! Reading the facts the policy decides on, in keyset-paginated chunks so memory stays flat
//! whatever the store's size. Personal values read here (emails) go to the policy only;
//! they are never logged.

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::Queryable;
use mysql_async::{BinaryProtocol, Conn, QueryResult, Row, Value};

use super::values::{
    bytes_of, datetime_of, email_of, i64_of, id_list, id_text_list, row_values, text_of, time_of, u64_of, unix_meta_of,
    unix_of,
};
use super::{Layout, Store, StoreError};
use crate::anonymise;
use crate::policy::{
    Account, CustomerFacts, DownloadFacts, GuestFacts, OrderActivity, OrderFacts, Processed, SessionFacts,
    UnreadableDates, UnreadableOrderDates, OPEN_STATUSES,
};

/// Rows per read chunk.
pub const CHUNK: usize = 2000;

/// The service's marker on an anonymised account (usermeta; value: unix time).
pub const USER_MARKER: &str = "_wc_retention_anonymised";
/// The service's marker on a minimised order (order meta; value: unix time). A fully
/// anonymised order carries WooCommerce's own `_anonymized = yes`.
pub const ORDER_MARKER: &str = "_wc_retention_minimised";

/// The user ids the customer pass saw, ascending (8 bytes an account).
#[derive(Default)]
pub struct Accounts {
    ids: Vec<u64>,
    anonymised: Vec<u64>,
}

impl Accounts {
    /// Whether the account was anonymised; `None` for an account the pass did not see.
    fn anonymised(&self, id: u64) -> Option<bool> {
        let seen = self.ids.binary_search(&id).is_ok();
        seen.then(|| self.anonymised.binary_search(&id).is_ok())
    }
}

/// Reads facts for one store with one connection (the customer pass takes a second).
pub struct Reader<'a> {
    pub store: &'a Store,
    pub layout: Layout,
    pub conn: &'a mut Conn,
}

impl Reader<'_> {
    async fn rows(&mut self, what: &str, sql: String, params: Vec<Value>) -> Result<Vec<Vec<Value>>, StoreError> {
        let started = std::time::Instant::now();
        let rows: Vec<Row> = self
            .conn
            .exec(sql, params)
            .await
            .map_err(StoreError::sql(format!("reading {what}"), self.store))?;
        super::timed(what, rows.len() as u64, started);
        Ok(rows.into_iter().map(row_values).collect())
    }

    /// The newest order (highest id) and its status with the `wc-` prefix, as WooCommerce
    /// reads it: for comparing the REST API's view with the database's.
    pub async fn newest_order(&mut self) -> Result<Option<(u64, String)>, StoreError> {
        let sql = if self.layout.read_hpos {
            format!(
                "SELECT id, status FROM {} WHERE type = 'shop_order' ORDER BY id DESC LIMIT 1",
                self.store.table("wc_orders")
            )
        } else {
            format!(
                "SELECT ID, post_status FROM {} WHERE post_type = 'shop_order' ORDER BY ID DESC LIMIT 1",
                self.store.table("posts")
            )
        };
        let row = self.rows("the newest order", sql, vec![]).await?.into_iter().next();
        Ok(row.and_then(|r| Some((u64_of(&r[0])?, text_of(&r[1])))))
    }

    /// Every user, in user-id order, a chunk at a time, with what the customer rule needs;
    /// returns the accounts seen, for [`Self::orders`]. The profile meta and the account
    /// orders come from one statement on `side`, read alongside the chunks.
    pub async fn customers(
        &mut self,
        side: &mut Conn,
        mut each: impl FnMut(&CustomerFacts),
    ) -> Result<Accounts, StoreError> {
        let mut accounts = Accounts::default();
        // The next chunk is read while the current one's profiles are, and the first
        // while the server sorts the profiles.
        let (mut profiles, mut next) =
            tokio::try_join!(AccountRows::open(self.store, self.layout, side), self.chunk(0))?;
        while let Some(mut chunk) = next {
            let rows;
            (rows, next) = tokio::try_join!(profiles.until(chunk.last), self.chunk(chunk.last))?;
            chunk.add(&rows);
            for f in &chunk.facts {
                accounts.ids.push(f.user_id);
                if f.anonymised {
                    accounts.anonymised.push(f.user_id);
                }
                each(f);
            }
        }
        profiles.finish().await?;
        Ok(accounts)
    }

    /// The accounts after `after`, with their sessions and guest orders; `None` past the last.
    async fn chunk(&mut self, after: u64) -> Result<Option<AccountChunk>, StoreError> {
        let s = self.store;
        let users = self
            .rows(
                "users",
                // Whether another account has the same email (WordPress's own index on it).
                format!(
                    "SELECT u.ID, u.user_email, u.user_registered, u.user_email <> '' AND EXISTS(SELECT 1 \
                     FROM {users} o WHERE o.user_email = u.user_email AND o.ID <> u.ID) \
                     FROM {users} u WHERE u.ID > ? ORDER BY u.ID LIMIT {CHUNK}",
                    users = s.table("users")
                ),
                vec![after.into()],
            )
            .await?;
        let Some(last) = users.last().and_then(|r| u64_of(&r[0])) else {
            return Ok(None);
        };
        let facts: Vec<CustomerFacts> = users
            .iter()
            .filter_map(|r| {
                // NOT NULL: WordPress writes it when it creates the account; a zero
                // date (imports) cannot be read.
                let registered = time_of(&r[2]);
                Some(CustomerFacts {
                    user_id: u64_of(&r[0])?,
                    email: email_of(&r[1]),
                    registered,
                    email_shared: i64_of(&r[3]) == Some(1),
                    unreadable: UnreadableDates {
                        registered: registered.is_none(),
                        ..UnreadableDates::default()
                    },
                    ..CustomerFacts::default()
                })
            })
            .collect();
        let mut chunk = AccountChunk {
            index: facts.iter().enumerate().map(|(i, f)| (f.user_id, i)).collect(),
            facts,
            last,
        };
        let sessions = self
            .rows(
                "sessions",
                format!(
                    "SELECT session_key, session_expiry FROM {} WHERE session_key IN ({})",
                    s.table("woocommerce_sessions"),
                    id_text_list(chunk.facts.iter().map(|f| f.user_id))
                ),
                vec![],
            )
            .await?;
        for r in &sessions {
            if let Some(f) = chunk.get(&r[0]) {
                f.session_expiry = unix_of(&r[1]);
            }
        }
        // Accounts sharing an email share its guest orders.
        let mut by_email: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, f) in chunk.facts.iter().enumerate() {
            by_email.entry(f.email.clone()).or_default().push(i);
        }
        for r in self.guest_activity(by_email.keys()).await? {
            for i in by_email.get(&email_of(&r[0])).into_iter().flatten() {
                chunk.facts[*i].guest_orders = activity_of(&r[1..]);
            }
        }
        Ok(Some(chunk))
    }

    /// Per email of a chunk: activity of orders placed without logging in.
    async fn guest_activity(&mut self, emails: impl Iterator<Item = &String>) -> Result<Vec<Vec<Value>>, StoreError> {
        let emails: Vec<Value> = emails
            .filter(|e| !e.is_empty())
            .map(|e| Value::from(e.as_str()))
            .collect();
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        let s = self.store;
        let marks = vec!["?"; emails.len()].join(", ");
        let (sql, params) = if self.layout.read_hpos {
            // One branch per guest marker, so that each looks up (customer_id, email) in
            // WooCommerce's index on both: with an OR the server takes the email index and
            // reads every order of the chunk's customers to find the few guest ones.
            let guest_orders = |guest: &str| {
                format!(
                    "SELECT id, status, date_created_gmt, billing_email FROM {} \
                     WHERE type = 'shop_order' AND customer_id {guest} AND billing_email IN ({marks})",
                    s.table("wc_orders")
                )
            };
            let sql = format!(
                "SELECT LOWER(TRIM(billing_email)), {} FROM ({} UNION ALL {}) g GROUP BY 1",
                activity_columns("id", "status", "date_created_gmt"),
                guest_orders("= 0"),
                guest_orders("IS NULL")
            );
            (sql, [emails.clone(), emails].concat())
        } else {
            // wp_postmeta has no index on values: this scans the `_billing_email` rows.
            let sql = format!(
                "SELECT LOWER(TRIM(e.meta_value)), {} FROM {postmeta} e JOIN {} p ON p.ID = e.post_id \
                 JOIN {postmeta} c ON c.post_id = p.ID AND c.meta_key = '_customer_user' \
                 WHERE e.meta_key = '_billing_email' AND e.meta_value IN ({marks}) AND c.meta_value IN ('0', '') \
                 AND p.post_type = 'shop_order' GROUP BY 1",
                activity_columns("p.ID", "p.post_status", "p.post_date_gmt"),
                s.table("posts"),
                postmeta = s.table("postmeta"),
            );
            (sql, emails)
        };
        self.rows("guest orders of accounts", sql, params).await
    }

    /// Every guest email (orders without an account), streamed.
    pub async fn guests(&mut self, mut each: impl FnMut(&GuestFacts)) -> Result<(), StoreError> {
        let s = self.store;
        let inner = if self.layout.read_hpos {
            format!(
                "SELECT LOWER(TRIM(billing_email)) AS email, {} FROM {} \
                 WHERE type = 'shop_order' AND (customer_id = 0 OR customer_id IS NULL) \
                 AND billing_email IS NOT NULL AND TRIM(billing_email) NOT IN ('', '{email}') GROUP BY 1",
                activity_columns("id", "status", "date_created_gmt"),
                s.table("wc_orders"),
                email = anonymise::EMAIL,
            )
        } else {
            format!(
                "SELECT LOWER(TRIM(e.meta_value)) AS email, {} FROM {posts} p \
                 JOIN {postmeta} c ON c.post_id = p.ID AND c.meta_key = '_customer_user' \
                 JOIN {postmeta} e ON e.post_id = p.ID AND e.meta_key = '_billing_email' \
                 WHERE p.post_type = 'shop_order' AND c.meta_value IN ('0', '') \
                 AND TRIM(e.meta_value) NOT IN ('', '{email}') GROUP BY 1",
                activity_columns("p.ID", "p.post_status", "p.post_date_gmt"),
                posts = s.table("posts"),
                postmeta = s.table("postmeta"),
                email = anonymise::EMAIL,
            )
        };
        let email = self.as_user_email("g.email").await?;
        let sql = format!(
            "SELECT g.*, EXISTS(SELECT 1 FROM {} u WHERE u.user_email = {email}) FROM ({inner}) g",
            s.table("users")
        );
        let context = StoreError::sql("reading guest orders", s);
        let mut result = self.conn.exec_iter(sql, ()).await.map_err(context)?;
        let context = StoreError::sql("reading guest orders", s);
        result
            .for_each(|row| {
                let r = row_values(row);
                let has_account = r.last().and_then(i64_of) == Some(1);
                each(&GuestFacts {
                    email: email_of(&r[0]),
                    orders: activity_of(&r[1..]),
                    has_account,
                });
            })
            .await
            .map_err(context)
    }

    /// `expr`, a text from the order tables, in the character set and collation of
    /// `users.user_email`, for comparing the two. Old shops keep WordPress's tables in the
    /// collation of their day (`utf8mb4_unicode_ci`, latin1) while WooCommerce created the
    /// HPOS tables later in today's (`utf8mb4_unicode_520_ci`), and the server refuses to
    /// compare two Unicode collations (MySQL error 1267). `expr` as it is when the
    /// column's collation cannot be read.
    async fn as_user_email(&mut self, expr: &str) -> Result<String, StoreError> {
        let rows = self
            .rows(
                "the collation of the users' emails",
                "SELECT CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = 'user_email'"
                    .to_owned(),
                vec![format!("{}users", self.store.prefix()).into()],
            )
            .await?;
        let name = |v: &Value| {
            Some(text_of(v)).filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        };
        Ok(match rows.first().map(|r| (name(&r[0]), name(&r[1]))) {
            Some((Some(charset), Some(collation))) => format!("CONVERT({expr} USING {charset}) COLLATE {collation}"),
            _ => expr.to_owned(),
        })
    }

    /// Every order (`shop_order`), in order-id order, a chunk at a time.
    pub async fn orders(&mut self, accounts: &Accounts, mut each: impl FnMut(&OrderFacts)) -> Result<(), StoreError> {
        let mut after = 0u64;
        loop {
            let mut chunk = if self.layout.read_hpos {
                self.hpos_orders(after).await?
            } else {
                self.posts_orders(after).await?
            };
            let Some(last) = chunk.last().map(|o| o.id) else {
                return Ok(());
            };
            after = last;
            self.resolve_accounts(accounts, &mut chunk).await?;
            for o in &chunk {
                each(o);
            }
        }
    }

    async fn hpos_orders(&mut self, after: u64) -> Result<Vec<OrderFacts>, StoreError> {
        let s = self.store;
        let meta = s.table("wc_orders_meta");
        let rows = self
            .rows(
                "orders",
                format!(
                    "SELECT o.id, o.status, o.customer_id, o.billing_email, o.date_created_gmt, \
                     d.date_paid_gmt, d.date_completed_gmt, o.ip_address, o.user_agent, \
                     a.order_id IS NOT NULL, m.order_id IS NOT NULL \
                     FROM {} o LEFT JOIN {} d ON d.order_id = o.id \
                     LEFT JOIN {meta} a ON a.order_id = o.id AND a.meta_key = '_anonymized' AND a.meta_value = 'yes' \
                     LEFT JOIN {meta} m ON m.order_id = o.id AND m.meta_key = '{ORDER_MARKER}' \
                     WHERE o.type = 'shop_order' AND o.id > ? ORDER BY o.id LIMIT {CHUNK}",
                    s.table("wc_orders"),
                    s.table("wc_order_operational_data"),
                ),
                vec![after.into()],
            )
            .await?;
        let mut orders: Vec<OrderFacts> = rows
            .iter()
            .filter_map(|r| {
                let email = email_of(&r[3]);
                // Every order has a creation date: NULL or zero cannot be read. The paid
                // and completed dates are NULL until then.
                let created = time_of(&r[4]);
                let (paid, completed) = (datetime_of(&r[5]), datetime_of(&r[6]));
                Some(OrderFacts {
                    id: u64_of(&r[0])?,
                    status: text_of(&r[1]),
                    customer_id: u64_of(&r[2]).unwrap_or(0),
                    contact_present: is_contact(&email),
                    email,
                    created,
                    paid: paid.time(),
                    completed: completed.time(),
                    unreadable: UnreadableOrderDates {
                        created: created.is_none(),
                        paid: paid.unreadable(),
                        completed: completed.unreadable(),
                    },
                    ip_present: ip_present(&text_of(&r[7]), &text_of(&r[8])),
                    processed: processed(i64_of(&r[9]) == Some(1), i64_of(&r[10]) == Some(1)),
                    account: Account::Guest,
                })
            })
            .collect();
        // Joins rather than two EXISTS per order (three times faster); an order with a
        // marker twice comes twice, and its first row stands for it.
        orders.dedup_by_key(|o| o.id);
        Ok(orders)
    }

    async fn posts_orders(&mut self, after: u64) -> Result<Vec<OrderFacts>, StoreError> {
        let s = self.store;
        let posts = self
            .rows(
                "orders",
                format!(
                    "SELECT ID, post_status, post_date_gmt FROM {} WHERE post_type = 'shop_order' AND ID > ? \
                     ORDER BY ID LIMIT {CHUNK}",
                    s.table("posts")
                ),
                vec![after.into()],
            )
            .await?;
        let mut facts: Vec<OrderFacts> = posts
            .iter()
            .filter_map(|r| {
                // NOT NULL; a zero date cannot be read.
                let created = time_of(&r[2]);
                Some(OrderFacts {
                    id: u64_of(&r[0])?,
                    status: text_of(&r[1]),
                    created,
                    unreadable: UnreadableOrderDates {
                        created: created.is_none(),
                        ..UnreadableOrderDates::default()
                    },
                    ..OrderFacts::default()
                })
            })
            .collect();
        if facts.is_empty() {
            return Ok(facts);
        }
        let index: HashMap<u64, usize> = facts.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
        let meta = self
            .rows(
                "order meta",
                format!(
                    "SELECT post_id, meta_key, meta_value FROM {} WHERE post_id IN ({}) AND meta_key IN \
                     ('_customer_user', '_billing_email', '_date_paid', '_date_completed', '_customer_ip_address', \
                     '_customer_user_agent', '_anonymized', '{ORDER_MARKER}')",
                    s.table("postmeta"),
                    id_list(facts.iter().map(|f| f.id))
                ),
                vec![],
            )
            .await?;
        let mut ip: HashMap<u64, (String, String)> = HashMap::new();
        let mut markers: HashMap<u64, (bool, bool)> = HashMap::new();
        for r in &meta {
            let Some(id) = u64_of(&r[0]) else { continue };
            let Some(f) = index.get(&id).map(|i| &mut facts[*i]) else {
                continue;
            };
            match text_of(&r[1]).as_str() {
                "_customer_user" => f.customer_id = u64_of(&r[2]).unwrap_or(0),
                "_billing_email" => f.email = email_of(&r[2]),
                // WooCommerce writes an empty value until the order is paid, completed.
                "_date_paid" => (f.paid, f.unreadable.paid) = unix_meta_of(Some(&r[2])).parts(),
                "_date_completed" => (f.completed, f.unreadable.completed) = unix_meta_of(Some(&r[2])).parts(),
                "_customer_ip_address" => ip.entry(id).or_default().0 = text_of(&r[2]),
                "_customer_user_agent" => ip.entry(id).or_default().1 = text_of(&r[2]),
                "_anonymized" => markers.entry(id).or_default().0 = text_of(&r[2]) == "yes",
                _ => markers.entry(id).or_default().1 = true,
            }
        }
        for f in &mut facts {
            f.contact_present = is_contact(&f.email);
            f.ip_present = ip.get(&f.id).is_some_and(|(a, u)| ip_present(a, u));
            let (anonymized, minimised) = markers.get(&f.id).copied().unwrap_or_default();
            f.processed = processed(anonymized, minimised);
        }
        Ok(facts)
    }

    /// Fills in whether each order's account exists and was anonymised.
    /// Whether each order's account exists and was anonymised: from the customer pass,
    /// and from the database for accounts created since (reading every order's account
    /// again would cost more than all other reads of the plan together).
    async fn resolve_accounts(&mut self, accounts: &Accounts, chunk: &mut [OrderFacts]) -> Result<(), StoreError> {
        let unknown: HashSet<u64> = chunk
            .iter()
            .map(|o| o.customer_id)
            .filter(|id| *id > 0 && accounts.anonymised(*id).is_none())
            .collect();
        let mut found: HashMap<u64, bool> = HashMap::new();
        if !unknown.is_empty() {
            let s = self.store;
            let rows = self
                .rows(
                    "order accounts",
                    format!(
                        "SELECT u.ID, MAX(m.user_id IS NOT NULL) FROM {} u \
                         LEFT JOIN {} m FORCE INDEX (user_id) ON m.user_id = u.ID AND m.meta_key = '{USER_MARKER}' \
                         WHERE u.ID IN ({}) GROUP BY u.ID",
                        s.table("users"),
                        s.table("usermeta"),
                        id_list(unknown)
                    ),
                    vec![],
                )
                .await?;
            found = rows
                .iter()
                .filter_map(|r| Some((u64_of(&r[0])?, i64_of(&r[1]) == Some(1))))
                .collect();
        }
        for o in chunk.iter_mut().filter(|o| o.customer_id > 0) {
            let id = o.customer_id;
            o.account = match accounts.anonymised(id).or_else(|| found.get(&id).copied()) {
                Some(anonymised) => Account::Present { anonymised },
                None => Account::Missing,
            };
        }
        Ok(())
    }

    /// Every WooCommerce session, in id order.
    pub async fn sessions(&mut self, mut each: impl FnMut(&SessionFacts)) -> Result<(), StoreError> {
        self.keyset(
            "sessions",
            "woocommerce_sessions",
            "session_id",
            "session_expiry",
            |r| {
                if let (Some(id), Some(expiry)) = (u64_of(&r[0]), i64_of(&r[1])) {
                    each(&SessionFacts { id, expiry });
                }
            },
        )
        .await
    }

    /// Every download log entry, in id order.
    pub async fn downloads(&mut self, mut each: impl FnMut(&DownloadFacts)) -> Result<(), StoreError> {
        self.keyset(
            "download log",
            "wc_download_log",
            "download_log_id",
            "timestamp, user_ip_address",
            |r| {
                if let Some(id) = u64_of(&r[0]) {
                    each(&DownloadFacts {
                        id,
                        at: time_of(&r[1]),
                        ip_present: ip_present(&text_of(&r[2]), ""),
                    });
                }
            },
        )
        .await
    }

    /// Every row of a table in `id` order, a chunk at a time: `id` first, then `columns`.
    async fn keyset(
        &mut self,
        what: &str,
        table: &str,
        id: &str,
        columns: &str,
        mut each: impl FnMut(&[Value]),
    ) -> Result<(), StoreError> {
        let table = self.store.table(table);
        let mut after = 0u64;
        loop {
            let sql = format!("SELECT {id}, {columns} FROM {table} WHERE {id} > ? ORDER BY {id} LIMIT {CHUNK}");
            let rows = self.rows(what, sql, vec![after.into()]).await?;
            let Some(last) = rows.last().and_then(|r| u64_of(&r[0])) else {
                return Ok(());
            };
            after = last;
            rows.iter().for_each(|r| each(r));
        }
    }

    /// Register hashes of subjects whose processing is restricted.
    pub async fn restricted(&mut self) -> Result<HashSet<String>, StoreError> {
        let rows = self
            .rows(
                "restrictions",
                format!(
                    "SELECT subject_hash FROM {} WHERE kind = 'restrict' AND status = 'active'",
                    self.store.table("wc_retention_requests")
                ),
                vec![],
            )
            .await?;
        Ok(rows.iter().map(|r| text_of(&r[0])).collect())
    }
}

/// One chunk of accounts, by user id.
struct AccountChunk {
    facts: Vec<CustomerFacts>,
    index: HashMap<u64, usize>,
    /// The highest user id in the chunk.
    last: u64,
}

impl AccountChunk {
    fn get(&mut self, id: &Value) -> Option<&mut CustomerFacts> {
        let i = u64_of(id).and_then(|id| self.index.get(&id))?;
        self.facts.get_mut(*i)
    }

    /// Rows of [`AccountRows`]: profile meta and order activity.
    fn add(&mut self, rows: &[Vec<Value>]) {
        for r in rows {
            let Some(f) = self.get(&r[0]) else { continue };
            if i64_of(&r[1]) == Some(ORDERS_PART) {
                f.orders = activity_of(&r[4..]);
                continue;
            }
            match text_of(&r[2]).as_str() {
                "wc_last_active" => (f.wc_last_active, f.unreadable.wc_last_active) = unix_meta_of(Some(&r[3])).parts(),
                "last_update" => (f.last_update, f.unreadable.last_update) = unix_meta_of(Some(&r[3])).parts(),
                "session_tokens" => f.session_tokens = bytes_of(&r[3]),
                USER_MARKER => f.anonymised = true,
                _ => f.capabilities = bytes_of(&r[3]),
            }
        }
    }
}

/// [`AccountRows`]' second part: an account's orders (the first: its profile meta).
const ORDERS_PART: i64 = 1;

/// What [`AccountRows`] reads, for its errors.
const ACCOUNT_ROWS: &str = "reading the accounts' profiles and orders";

/// The profile meta and the order activity of every account, in one statement sorted by
/// account, read alongside the customer pass's chunks on a connection of its own. The
/// server scans each table once and sorts, which costs less than half of looking each
/// chunk's rows up by user id (6.5 s against 17 s at 100k customers), and the service
/// holds one chunk's rows at a time. On a store where usermeta rows of one person are
/// spread over the table (added over years), the lookups would cost more still.
struct AccountRows<'c> {
    store: &'c Store,
    rows: QueryResult<'c, 'static, BinaryProtocol>,
    /// The first row past the last chunk.
    ahead: Option<Vec<Value>>,
}

impl<'c> AccountRows<'c> {
    async fn open(store: &'c Store, layout: Layout, conn: &'c mut Conn) -> Result<Self, StoreError> {
        let orders = if layout.read_hpos {
            format!(
                "SELECT customer_id, {ORDERS_PART}, NULL, NULL, {} FROM {} \
                 WHERE type = 'shop_order' AND customer_id > 0 GROUP BY customer_id",
                activity_columns("id", "status", "date_created_gmt"),
                store.table("wc_orders")
            )
        } else {
            // Only a plain number names an account, as WooCommerce writes it.
            format!(
                "SELECT CAST(c.meta_value AS UNSIGNED) AS account, {ORDERS_PART}, NULL, NULL, {} \
                 FROM {} c JOIN {} p ON p.ID = c.post_id \
                 WHERE c.meta_key = '_customer_user' AND c.meta_value REGEXP '^[0-9]+$' \
                 AND p.post_type = 'shop_order' GROUP BY account HAVING account > 0",
                activity_columns("p.ID", "p.post_status", "p.post_date_gmt"),
                store.table("postmeta"),
                store.table("posts"),
            )
        };
        let sql = format!(
            "SELECT user_id AS account, 0 AS part, meta_key, meta_value, NULL, NULL, NULL, NULL, NULL FROM {} \
             WHERE meta_key IN (?, 'wc_last_active', 'last_update', 'session_tokens', '{USER_MARKER}') \
             UNION ALL {orders} ORDER BY account, part",
            store.table("usermeta")
        );
        let started = std::time::Instant::now();
        let rows = conn
            .exec_iter(sql, (format!("{}capabilities", store.prefix()),))
            .await
            .map_err(StoreError::sql(ACCOUNT_ROWS, store))?;
        super::timed("accounts' profiles and orders: sorted", 0, started);
        Ok(AccountRows {
            store,
            rows,
            ahead: None,
        })
    }

    /// The rows of the accounts up to user id `last` not yet taken.
    async fn until(&mut self, last: u64) -> Result<Vec<Vec<Value>>, StoreError> {
        let started = std::time::Instant::now();
        let mut taken = Vec::new();
        loop {
            let next = match self.ahead.take() {
                Some(row) => Some(row),
                None => self.next().await?,
            };
            let Some(row) = next else { break };
            if u64_of(&row[0]).unwrap_or(0) > last {
                self.ahead = Some(row);
                break;
            }
            taken.push(row);
        }
        super::timed("accounts' profiles and orders", taken.len() as u64, started);
        Ok(taken)
    }

    async fn next(&mut self) -> Result<Option<Vec<Value>>, StoreError> {
        let row = self.rows.next().await;
        let row = row.map_err(StoreError::sql(ACCOUNT_ROWS, self.store))?;
        Ok(row.map(row_values))
    }

    /// Reads what is left (rows of accounts deleted during the pass), freeing the connection.
    async fn finish(self) -> Result<(), StoreError> {
        let store = self.store;
        self.rows
            .drop_result()
            .await
            .map_err(StoreError::sql(ACCOUNT_ROWS, store))
    }
}

/// Aggregates over one subject's orders: newest non-draft, open ones, newest pending, and
/// the non-drafts whose creation date cannot be read (NULL, a zero date, or a zero month
/// or day) with the lowest of their ids. MAX passes over NULLs and zero dates sort first,
/// so the newest readable date wins; the undated ones are counted apart.
fn activity_columns(id: &str, status: &str, created: &str) -> String {
    let open: Vec<String> = OPEN_STATUSES.iter().map(|s| format!("'{s}'")).collect();
    let undated =
        format!("{status} <> 'wc-checkout-draft' AND IFNULL(MONTH({created}) * DAYOFMONTH({created}), 0) = 0");
    format!(
        "MAX(IF({status} <> 'wc-checkout-draft', {created}, NULL)), \
         SUM({status} IN ({})), \
         MAX(IF({status} = 'wc-pending', {created}, NULL)), \
         SUM({undated}), MIN(IF({undated}, {id}, NULL))",
        open.join(", ")
    )
}

/// The columns of [`activity_columns`].
fn activity_of(r: &[Value]) -> OrderActivity {
    let undated = r.get(3).and_then(u64_of).unwrap_or(0);
    OrderActivity {
        last_order: time_of(&r[0]),
        open: u64_of(&r[1]).unwrap_or(0),
        last_pending: time_of(&r[2]),
        undated,
        first_undated: r.get(4).and_then(u64_of).filter(|_| undated > 0),
    }
}

fn is_contact(email: &str) -> bool {
    !email.is_empty() && email != anonymise::EMAIL
}

fn ip_present(ip: &str, user_agent: &str) -> bool {
    !matches!(ip, "" | anonymise::IP) || !matches!(user_agent, "" | anonymise::TEXT)
}

fn processed(anonymized: bool, minimised: bool) -> Processed {
    match (anonymized, minimised) {
        (true, _) => Processed::Anonymised,
        (false, true) => Processed::Minimised,
        _ => Processed::No,
    }
}
