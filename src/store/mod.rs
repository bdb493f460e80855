//! The only module that speaks SQL to the shop's database.
//!
//! It knows the WooCommerce schema (table prefix, order storage) and the service's own
//! tables; it never decides whether to act. Errors carry table names, ids and server error
//! codes, never row values: a MySQL message that may quote a value (duplicate key, bad
//! string) is reduced to its code.

pub mod apply;
pub mod audit;
pub mod discovery;
pub mod export;
pub mod lock;
pub mod migrations;
pub mod read;
pub mod requests;
mod values;

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, SslOpts};

use crate::config::{self, TlsMode};

pub use discovery::{discover, Discovery, OrderStorage};

/// Where a store keeps its orders, as the reads and writes need to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Orders have rows in the HPOS tables (they are written there too).
    pub hpos: bool,
    /// The HPOS tables are authoritative: facts are read from them.
    pub read_hpos: bool,
}

impl Layout {
    pub fn of(storage: OrderStorage) -> Layout {
        Layout {
            hpos: storage.uses_hpos_tables(),
            read_hpos: matches!(storage, OrderStorage::Hpos | OrderStorage::HposSync),
        }
    }
}

/// A connection pool to one WooCommerce database with a known table prefix.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    prefix: String,
    /// Host and port, or socket: for messages.
    target: String,
    user: String,
    database: String,
    /// Whether the connection is meant to be encrypted, to tell TLS failures apart.
    tls: bool,
    connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach the database server at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error(
        "the database server at {target} refused a connection: {reason}; other programs hold the connections \
         this account or the server may have (raise the limit, or lower database.pool_max)"
    )]
    ConnectionLimit { target: String, reason: String },
    #[error("no TLS connection to the database server at {target}: {reason}")]
    Tls { target: String, reason: String },
    #[error(
        "the database server at {target} refused the login of user {user:?}: wrong user or password (MySQL error 1045)"
    )]
    AccessDenied { target: String, user: String },
    #[error("database {database:?} does not exist on {target} (check database.url)")]
    UnknownDatabase { target: String, database: String },
    #[error("user {user:?} may not use database {database:?} (MySQL error 1044): grant it the privileges in deploy/grants.sql")]
    DatabaseDenied { user: String, database: String },
    #[error(
        "user {user:?} may not read {table} (no SELECT privilege on it): grant the privileges in deploy/grants.sql"
    )]
    TableDenied { user: String, table: String },
    #[error("database {database:?} has no WordPress tables with prefix {prefix:?}{hint}")]
    NotWordPress {
        database: String,
        prefix: String,
        hint: String,
    },
    #[error("database {database:?} holds WordPress (prefix {prefix:?}) but WooCommerce is not installed: option woocommerce_version is missing")]
    NotWooCommerce { database: String, prefix: String },
    #[error("the service's own tables are at schema version {found}, newer than this wc-retention knows ({known}): upgrade wc-retention before running it against this database")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("{context}: {}", describe_mysql(.source))]
    Sql {
        context: String,
        source: mysql_async::Error,
    },
}

impl StoreError {
    /// Whether the server refused for lack of a privilege: an operator's fix, not a bug.
    pub fn is_denied(&self) -> bool {
        matches!(self, StoreError::Sql { source: mysql_async::Error::Server(e), .. } if [1142, 1143, 1227].contains(&e.code))
    }

    /// Whether waiting and trying again may help: the server is away, restarting or busy,
    /// rather than the configuration wrong.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } | StoreError::ConnectionLimit { .. } => true,
            // Shutting down, lock wait timeout, deadlock, query
            // interrupted, connection killed, server gone away, connection lost.
            StoreError::Sql {
                source: mysql_async::Error::Server(e),
                ..
            } => [1053, 1205, 1213, 1317, 1927, 2006, 2013].contains(&e.code),
            StoreError::Sql { .. } => true,
            _ => false,
        }
    }

    /// Whether the server rolled the transaction back as a deadlock's victim: trying the
    /// same transaction again is the remedy.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, StoreError::Sql { source: mysql_async::Error::Server(e), .. } if e.code == 1213)
    }

    /// Wraps a driver error with what was being done; connection-level failures become
    /// the specific variants above.
    pub fn sql(context: impl Into<String>, store: &Store) -> impl FnOnce(mysql_async::Error) -> StoreError + '_ {
        let context = context.into();
        move |source| match classify(source, store) {
            Ok(specific) => specific,
            Err(source) => StoreError::Sql { context, source },
        }
    }
}

/// Each statement's cost at debug level: `--log-level debug` shows where a slow plan or
/// batch spends its time (the benchmark's profile comes from these lines).
fn timed(what: &str, rows: u64, started: std::time::Instant) {
    tracing::debug!(
        statement = what,
        rows,
        elapsed_us = started.elapsed().as_micros() as u64,
        "statement done"
    );
}

/// Server errors whose message names only identifiers (users, tables, columns), never row
/// values. Every other message may quote data (a duplicate key, a bad string, a statement
/// near an error), so for those only the code and state are shown.
const MESSAGE_SAFE_CODES: [u16; 12] = [1044, 1045, 1049, 1054, 1142, 1143, 1146, 1205, 1213, 1227, 1290, 1370];

fn describe_mysql(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) if MESSAGE_SAFE_CODES.contains(&s.code) => {
            format!("MySQL error {} ({}): {}", s.code, s.state, s.message)
        }
        mysql_async::Error::Server(s) => format!(
            "MySQL error {} ({}); the server's message is withheld because it may quote row data",
            s.code, s.state
        ),
        other => other.to_string(),
    }
}

/// Login and connection failures deserve their own, precise message.
fn classify(e: mysql_async::Error, store: &Store) -> Result<StoreError, mysql_async::Error> {
    let target = store.target.clone();
    match &e {
        mysql_async::Error::Server(s) if s.code == 1045 => Ok(StoreError::AccessDenied {
            target,
            user: store.user.clone(),
        }),
        mysql_async::Error::Server(s) if s.code == 1049 => Ok(StoreError::UnknownDatabase {
            target,
            database: store.database.clone(),
        }),
        // Too many connections to the server, or for this account: the messages name only
        // the account and the limit.
        mysql_async::Error::Server(s) if [1040, 1203, 1226].contains(&s.code) => Ok(StoreError::ConnectionLimit {
            target,
            reason: format!("MySQL error {}: {}", s.code, s.message),
        }),
        mysql_async::Error::Server(s) if s.code == 1044 => Ok(StoreError::DatabaseDenied {
            user: store.user.clone(),
            database: store.database.clone(),
        }),
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => Ok(StoreError::Tls {
            target,
            reason: "the server does not offer TLS (enable it on the server, or set database.tls = \"disabled\" \
                     for a server on this host)"
                .into(),
        }),
        mysql_async::Error::Io(mysql_async::IoError::Tls(tls)) => Ok(StoreError::Tls {
            target,
            reason: tls.to_string(),
        }),
        // tokio-rustls reports a rejected certificate as InvalidData.
        mysql_async::Error::Io(mysql_async::IoError::Io(io))
            if store.tls && io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Ok(StoreError::Tls {
                target,
                reason: io.to_string(),
            })
        }
        mysql_async::Error::Io(io) => Ok(StoreError::Unreachable {
            target,
            reason: io.to_string(),
        }),
        mysql_async::Error::Driver(d) => Ok(StoreError::Unreachable {
            target,
            reason: d.to_string(),
        }),
        _ => Err(e),
    }
}

impl Store {
    /// A pool for the configured database; no connection is made until first use.
    pub fn open(db: &config::Database) -> Result<Store, StoreError> {
        let base = Opts::from_url(&db.url).map_err(|_| StoreError::Unreachable {
            target: config::redact_url(&db.url),
            reason: "database.url is not a valid mysql:// URL".into(),
        })?;
        let target = match base.socket() {
            Some(sock) => format!("socket {sock}"),
            None => format!("{}:{}", base.ip_or_hostname(), base.tcp_port()),
        };
        let ssl = match db.tls {
            TlsMode::Disabled => None,
            TlsMode::Require => Some(
                SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            TlsMode::VerifyCa => {
                let roots = db.ca_file.iter().map(|p| p.clone().into()).collect();
                // Only the configured CA: the built-in web roots would let any public
                // certificate for the host pass.
                Some(
                    SslOpts::default()
                        .with_root_certs(roots)
                        .with_disable_built_in_roots(true),
                )
            }
        };
        let user = base.user().unwrap_or_default().to_owned();
        let database = base.db_name().unwrap_or_default().to_owned();
        let constraints = PoolConstraints::new(0, db.pool_max).unwrap_or_default();
        let opts = OptsBuilder::from_opts(base)
            .pass(db.password.as_ref().map(|p| p.expose().to_owned()))
            .ssl_opts(ssl)
            .pool_opts(PoolOpts::default().with_constraints(constraints))
            // UTC sessions: the service compares *_gmt columns and writes its own times in UTC.
            .init(vec!["SET time_zone = '+00:00'"]);
        Ok(Store {
            pool: Pool::new(opts),
            prefix: db.table_prefix.clone(),
            target,
            user,
            database,
            tls: db.tls != TlsMode::Disabled,
            connect_timeout: Duration::from_secs(db.connect_timeout_secs),
        })
    }

    /// A connection, or a precise error (unreachable, wrong password, unknown database).
    pub async fn conn(&self) -> Result<mysql_async::Conn, StoreError> {
        match tokio::time::timeout(self.connect_timeout, self.pool.get_conn()).await {
            Ok(r) => r.map_err(StoreError::sql("connecting", self)),
            Err(_) => Err(StoreError::Unreachable {
                target: self.target.clone(),
                reason: format!("no connection within {} s", self.connect_timeout.as_secs()),
            }),
        }
    }

    /// A WooCommerce table's full name, quoted for SQL: `table("users")` → `` `wp_users` ``.
    /// The prefix is validated at config load to be `[A-Za-z0-9_]+`.
    pub fn table(&self, name: &str) -> String {
        format!("`{}{}`", self.prefix, name)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The database name from the URL.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Closes every connection; waits for checked-out ones to come back.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }
}
