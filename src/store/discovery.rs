//! What kind of store this is: WooCommerce version, order storage, tables present, and what
//! the connected user may do to them. Read-only.

use std::collections::BTreeMap;
use std::fmt;

use mysql_async::prelude::Queryable;
use serde::Serialize;

use super::migrations;
use super::{Store, StoreError};

/// Where WooCommerce keeps orders, from options `woocommerce_custom_orders_table_enabled`
/// (HPOS authoritative) and `woocommerce_custom_orders_table_data_sync_enabled` (the other
/// storage kept in step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStorage {
    /// Orders in posts/postmeta only.
    Legacy,
    /// Posts authoritative, HPOS tables kept in sync.
    LegacySync,
    /// Orders in the `wc_orders*` tables only (posts hold id placeholders).
    Hpos,
    /// HPOS authoritative, posts/postmeta kept in sync.
    HposSync,
}

impl OrderStorage {
    fn from_options(hpos_enabled: Option<&str>, sync_enabled: Option<&str>) -> OrderStorage {
        OrderStorage::from_flags(hpos_enabled == Some("yes"), sync_enabled == Some("yes"))
    }

    /// From the two settings as booleans (WooCommerce's REST `system_status` has them so).
    pub fn from_flags(hpos_enabled: bool, sync_enabled: bool) -> OrderStorage {
        match (hpos_enabled, sync_enabled) {
            (false, false) => OrderStorage::Legacy,
            (false, true) => OrderStorage::LegacySync,
            (true, false) => OrderStorage::Hpos,
            (true, true) => OrderStorage::HposSync,
        }
    }

    /// Whether order rows live in the HPOS tables.
    pub fn uses_hpos_tables(self) -> bool {
        self != OrderStorage::Legacy
    }
}

impl fmt::Display for OrderStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrderStorage::Legacy => "legacy (posts)",
            OrderStorage::LegacySync => "legacy (posts) authoritative, synced to HPOS",
            OrderStorage::Hpos => "HPOS",
            OrderStorage::HposSync => "HPOS authoritative, synced to posts",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Privilege {
    Select,
    Insert,
    Update,
    Delete,
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Always,
    /// Needed when orders live in the HPOS tables.
    Hpos,
    /// Present only in some WooCommerce versions.
    IfPresent,
}

/// A table the service reads or writes, and the privileges it needs there. `deploy/grants.sql`
/// grants exactly these.
struct TableNeed {
    name: &'static str,
    need: Need,
    privileges: &'static [Privilege],
}

use Privilege::{Delete as D, Insert as I, Select as S, Update as U};

/// The WooCommerce and WordPress tables of DESIGN §3.
const SHOP_TABLES: &[TableNeed] = &[
    TableNeed {
        name: "options",
        need: Need::Always,
        privileges: &[S],
    },
    TableNeed {
        name: "users",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "usermeta",
        need: Need::Always,
        privileges: &[S, I, U, D],
    },
    TableNeed {
        name: "posts",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "postmeta",
        need: Need::Always,
        privileges: &[S, I, U, D],
    },
    TableNeed {
        name: "comments",
        need: Need::Always,
        privileges: &[S, I, U, D],
    },
    TableNeed {
        name: "commentmeta",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "wc_customer_lookup",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "wc_order_stats",
        need: Need::Always,
        privileges: &[S, D],
    },
    TableNeed {
        name: "wc_order_product_lookup",
        need: Need::Always,
        privileges: &[S, D],
    },
    TableNeed {
        name: "woocommerce_order_items",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "woocommerce_order_itemmeta",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "woocommerce_sessions",
        need: Need::Always,
        privileges: &[S, D],
    },
    TableNeed {
        name: "wc_download_log",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "woocommerce_downloadable_product_permissions",
        need: Need::Always,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "woocommerce_payment_tokens",
        need: Need::Always,
        privileges: &[S, D],
    },
    TableNeed {
        name: "woocommerce_payment_tokenmeta",
        need: Need::Always,
        privileges: &[S, D],
    },
    TableNeed {
        name: "wc_orders",
        need: Need::Hpos,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "wc_order_addresses",
        need: Need::Hpos,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "wc_orders_meta",
        need: Need::Hpos,
        privileges: &[S, I, U, D],
    },
    TableNeed {
        name: "wc_order_operational_data",
        need: Need::Hpos,
        privileges: &[S, U, D],
    },
    TableNeed {
        name: "wc_stock_notifications",
        need: Need::IfPresent,
        privileges: &[S, U, D],
    },
];

/// What the service does to its own tables once they exist (`migrate` needs CREATE too).
const OWN_TABLE_PRIVILEGES: &[Privilege] = &[S, I, U];

/// Everything `check` reports about a store.
#[derive(Debug, Serialize)]
pub struct Discovery {
    pub server_version: String,
    pub database: String,
    /// The account as the server sees it, e.g. `wc_retention@localhost`.
    pub user: String,
    /// The TLS cipher of this connection, if encrypted.
    pub tls_cipher: Option<String>,
    pub table_prefix: String,
    pub wordpress_db_version: Option<String>,
    /// The shop's time zone setting (`timezone_string`, else `gmt_offset` in hours).
    pub shop_timezone: Option<String>,
    pub woocommerce_version: String,
    pub woocommerce_db_version: Option<String>,
    pub order_storage: OrderStorage,
    /// `None` when the user may not read the table.
    pub users: Option<u64>,
    pub orders: Option<u64>,
    /// Required tables that do not exist.
    pub missing_tables: Vec<String>,
    /// Tables only some WooCommerce versions have, absent here (not a problem).
    pub absent_optional_tables: Vec<String>,
    /// Tables on a storage engine without transactions (old MyISAM installs).
    pub non_transactional_tables: Vec<String>,
    /// `(table, privilege)` pairs the service needs and the user lacks.
    pub missing_privileges: Vec<(String, Privilege)>,
    /// Version of the service's own tables (`None`: `migrate` has not run).
    pub own_schema_version: Option<u32>,
    pub own_schema_latest: u32,
}

impl Discovery {
    /// A store as discovery would find it, for tests of what is judged from it.
    #[cfg(test)]
    pub fn example(prefix: &str, woocommerce_version: &str, order_storage: OrderStorage) -> Discovery {
        Discovery {
            server_version: "10.11.0-MariaDB".into(),
            database: "wordpress".into(),
            user: "wc_retention@localhost".into(),
            tls_cipher: None,
            table_prefix: prefix.into(),
            wordpress_db_version: None,
            shop_timezone: None,
            woocommerce_version: woocommerce_version.into(),
            woocommerce_db_version: None,
            order_storage,
            users: None,
            orders: None,
            missing_tables: vec![],
            absent_optional_tables: vec![],
            non_transactional_tables: vec![],
            missing_privileges: vec![],
            own_schema_version: None,
            own_schema_latest: migrations::LATEST,
        }
    }

    /// The shop's calendar: WordPress's time zone setting, UTC when unset or unreadable.
    /// Its local columns (`post_date`, `post_modified`) are written in it.
    pub fn zone(&self) -> crate::localtime::ShopZone {
        self.shop_timezone
            .as_deref()
            .and_then(crate::localtime::ShopZone::parse)
            .unwrap_or(crate::localtime::ShopZone::Named(chrono_tz::UTC))
    }

    /// Why the service cannot work on this store; empty when it can.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.missing_tables.is_empty() {
            p.push(format!(
                "missing tables: {} (is this a complete WooCommerce {} database?)",
                self.missing_tables.join(", "),
                self.woocommerce_version
            ));
        }
        if !self.non_transactional_tables.is_empty() {
            p.push(format!(
                "tables without transactions: {} (convert them with ALTER TABLE … ENGINE=InnoDB; \
                 the service changes data only in transactions)",
                self.non_transactional_tables.join(", ")
            ));
        }
        if !self.missing_privileges.is_empty() {
            let list: Vec<String> = self
                .missing_privileges
                .iter()
                .map(|(t, p)| format!("{p} on {t}"))
                .collect();
            p.push(format!(
                "user {} lacks privileges: {} (see deploy/grants.sql)",
                self.user,
                list.join(", ")
            ));
        }
        p
    }
}

/// Reads what kind of store this is. A database that is not WordPress or not WooCommerce is
/// an error; missing tables and privileges are reported in the result for `check` to list.
pub async fn discover(store: &Store) -> Result<Discovery, StoreError> {
    let mut conn = store.conn().await?;
    let err = |what: &str| StoreError::sql(what.to_owned(), store);

    let (server_version, database, user): (String, String, String) = conn
        .query_first("SELECT VERSION(), DATABASE(), CURRENT_USER()")
        .await
        .map_err(err("reading server identity"))?
        .unwrap_or_default();
    let tls_cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .map_err(err("reading TLS status"))?;
    let tls_cipher = tls_cipher.map(|(_, c)| c).filter(|c| !c.is_empty());

    // The probes below take metadata locks; behind a long DDL or backup lock they must
    // give up rather than wait the server's default of a year.
    conn.query_drop("SET SESSION lock_wait_timeout = 10")
        .await
        .map_err(err("limiting lock waits"))?;

    // information_schema lists only tables the user holds some privilege on; a required
    // table missing from it is probed to tell "absent" from "not allowed".
    let listed: BTreeMap<String, Option<String>> = conn
        .query("SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()")
        .await
        .map_err(err("listing tables"))?
        .into_iter()
        .collect();
    let prefix = store.prefix();
    let options = presence(&mut conn, store, &listed, "options").await?;
    // The shop's other tables are visible: the options table is there, only hidden.
    let others = ["users", "posts"].map(|t| format!("{prefix}{t}"));
    if options == Presence::Hidden && others.iter().all(|t| listed.contains_key(t)) {
        return Err(StoreError::TableDenied {
            user: store.user.clone(),
            table: format!("{prefix}options"),
        });
    }
    if options != Presence::Exists {
        return Err(StoreError::NotWordPress {
            database,
            prefix: prefix.to_owned(),
            hint: prefix_hint(&listed),
        });
    }

    let wanted = [
        "woocommerce_version",
        "woocommerce_db_version",
        "woocommerce_custom_orders_table_enabled",
        "woocommerce_custom_orders_table_data_sync_enabled",
        "db_version",
        "timezone_string",
        "gmt_offset",
    ];
    let placeholders = vec!["?"; wanted.len()].join(",");
    let options: Vec<(String, String)> = conn
        .exec(
            format!(
                "SELECT option_name, option_value FROM {} WHERE option_name IN ({placeholders})",
                store.table("options")
            ),
            wanted.to_vec(),
        )
        .await
        .map_err(err("reading WooCommerce options"))?;
    let option = |name: &str| {
        options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let Some(woocommerce_version) = option("woocommerce_version") else {
        return Err(StoreError::NotWooCommerce {
            database,
            prefix: prefix.to_owned(),
        });
    };
    let order_storage = OrderStorage::from_options(
        option("woocommerce_custom_orders_table_enabled").as_deref(),
        option("woocommerce_custom_orders_table_data_sync_enabled").as_deref(),
    );
    // WordPress keeps either a zone name or a bare hour offset such as "2" or "-5.5".
    let shop_timezone = option("timezone_string").or_else(|| {
        let offset = option("gmt_offset")?;
        let offset = offset.trim_start_matches('+');
        Some(if offset.starts_with('-') {
            format!("UTC{offset}")
        } else {
            format!("UTC+{offset}")
        })
    });

    let mut missing_tables = Vec::new();
    let mut absent_optional_tables = Vec::new();
    let mut missing_privileges = Vec::new();
    let mut non_transactional_tables = Vec::new();
    for t in SHOP_TABLES {
        let full = format!("{prefix}{}", t.name);
        let needed = match t.need {
            Need::Always => true,
            Need::Hpos => order_storage.uses_hpos_tables(),
            Need::IfPresent => false,
        };
        if !needed && t.need != Need::IfPresent {
            continue;
        }
        match presence(&mut conn, store, &listed, t.name).await? {
            Presence::Exists => {
                for p in t.privileges {
                    if !allowed(&mut conn, store, t.name, *p).await? {
                        missing_privileges.push((full.clone(), *p));
                    }
                }
                if let Some(Some(engine)) = listed.get(&full).filter(|e| e.as_deref() != Some("InnoDB")) {
                    non_transactional_tables.push(format!("{full} ({engine})"));
                }
            }
            Presence::Absent if needed => missing_tables.push(full),
            // The user may not even see it: every privilege it needs there is missing.
            Presence::Hidden if needed => missing_privileges.extend(t.privileges.iter().map(|p| (full.clone(), *p))),
            Presence::Absent | Presence::Hidden => absent_optional_tables.push(full),
        }
    }

    let readable = |name: &str| {
        let full = format!("{prefix}{name}");
        listed.contains_key(&full) && !missing_privileges.contains(&(full, Privilege::Select))
    };
    let users = if readable("users") {
        conn.query_first(format!("SELECT COUNT(*) FROM {}", store.table("users")))
            .await
            .map_err(err("counting users"))?
    } else {
        None
    };
    let (orders_table, orders_sql) = if order_storage.uses_hpos_tables() && order_storage != OrderStorage::LegacySync {
        (
            "wc_orders",
            format!(
                "SELECT COUNT(*) FROM {} WHERE type = 'shop_order'",
                store.table("wc_orders")
            ),
        )
    } else {
        (
            "posts",
            format!(
                "SELECT COUNT(*) FROM {} WHERE post_type = 'shop_order'",
                store.table("posts")
            ),
        )
    };
    let orders = if readable(orders_table) {
        conn.query_first(orders_sql).await.map_err(err("counting orders"))?
    } else {
        None
    };

    let own_schema_version = migrations::current_version(&mut conn, store).await?;
    if own_schema_version.is_some() {
        for name in migrations::OWN_TABLES {
            for p in OWN_TABLE_PRIVILEGES {
                if !allowed(&mut conn, store, name, *p).await? {
                    missing_privileges.push((format!("{prefix}{name}"), *p));
                }
            }
        }
    }
    Ok(Discovery {
        server_version,
        database,
        user,
        tls_cipher,
        table_prefix: prefix.to_owned(),
        wordpress_db_version: option("db_version"),
        shop_timezone,
        woocommerce_version,
        woocommerce_db_version: option("woocommerce_db_version"),
        order_storage,
        users,
        orders,
        missing_tables,
        absent_optional_tables,
        non_transactional_tables,
        missing_privileges,
        own_schema_version,
        own_schema_latest: migrations::LATEST,
    })
}

/// Other prefixes under which this database holds WordPress, to name in the error.
fn prefix_hint(listed: &BTreeMap<String, Option<String>>) -> String {
    let found: Vec<&str> = listed
        .keys()
        .filter_map(|t| t.strip_suffix("options"))
        .filter(|p| listed.contains_key(&format!("{p}users")) && listed.contains_key(&format!("{p}posts")))
        .collect();
    match found.as_slice() {
        [] => " (or the user may not read them; and none under another prefix: is database.url naming the shop's database?)"
            .into(),
        [one] => format!("; it does have WordPress tables with prefix {one:?}: set database.table_prefix = {one:?}"),
        many => format!("; it has WordPress tables with prefixes {many:?}: set database.table_prefix to the shop's"),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Presence {
    Exists,
    Absent,
    /// Access is denied, so whether it exists cannot be told: with table-level grants the
    /// server answers "denied" for a table that does not exist too.
    Hidden,
}

/// Whether a table exists, probing those information_schema hides from this user.
async fn presence(
    conn: &mut mysql_async::Conn,
    store: &Store,
    listed: &BTreeMap<String, Option<String>>,
    name: &str,
) -> Result<Presence, StoreError> {
    if listed.contains_key(&format!("{}{name}", store.prefix())) {
        return Ok(Presence::Exists);
    }
    match conn
        .query_drop(format!("SELECT 1 FROM {} LIMIT 0", store.table(name)))
        .await
    {
        Ok(()) => Ok(Presence::Exists),
        Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(Presence::Absent),
        Err(mysql_async::Error::Server(e)) if e.code == 1142 => Ok(Presence::Hidden),
        Err(e) => Err(StoreError::sql(format!("probing table {}", store.table(name)), store)(
            e,
        )),
    }
}

/// Whether the user holds `privilege` on the table, tested by a statement that matches no
/// row. The server checks privileges before it looks at rows, so this covers grants made
/// through roles, wildcards and column lists alike, without parsing `SHOW GRANTS`.
async fn allowed(
    conn: &mut mysql_async::Conn,
    store: &Store,
    name: &str,
    privilege: Privilege,
) -> Result<bool, StoreError> {
    let t = store.table(name);
    let sql = match privilege {
        Privilege::Select => format!("SELECT 1 FROM {t} LIMIT 0"),
        Privilege::Insert => format!("INSERT INTO {t} SELECT * FROM {t} WHERE 1 = 0"),
        Privilege::Update => {
            let column: Option<String> = conn
                .exec_first(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION LIMIT 1",
                    (format!("{}{name}", store.prefix()),),
                )
                .await
                .map_err(StoreError::sql("reading columns", store))?;
            let Some(column) = column else {
                return Ok(false);
            };
            format!("UPDATE {t} SET `{column}` = `{column}` WHERE 1 = 0")
        }
        Privilege::Delete => format!("DELETE FROM {t} WHERE 1 = 0"),
    };
    match conn.query_drop(sql).await {
        Ok(()) => Ok(true),
        // 1142: table-level denial; 1143: column-level denial.
        Err(mysql_async::Error::Server(e)) if e.code == 1142 || e.code == 1143 => Ok(false),
        Err(e) => Err(StoreError::sql(format!("probing {privilege} on {t}"), store)(e)),
    }
}
