//! Shared test harness: one scratch database per test on the throwaway MariaDB that
//! `scripts/test` starts, named from the test's name so parallel tests never collide.
#![allow(dead_code)] // each test binary uses its own subset of these helpers

pub mod server;
pub mod woo;

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool};

/// The server URL `scripts/test` exports (no database part needed).
pub const URL_VAR: &str = "WC_RETENTION_TEST_DATABASE_URL";

pub fn server_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!("{URL_VAR} is not set: run the suite with scripts/test, which starts a throwaway MariaDB")
    })
}

/// A database that exists for one test. Dropped at the end of a passing test; a failing
/// test leaves it behind for inspection and the next run of that test replaces it.
pub struct TestDb {
    pub name: String,
    pub pool: Pool,
    admin: Pool,
    /// The server's URL, without a database.
    server: String,
}

impl TestDb {
    /// A database on the suite's server.
    pub async fn new(test_name: &str) -> TestDb {
        TestDb::on(&server_url(), test_name).await
    }

    /// A database on the server at `server` (a URL without a database), e.g. a
    /// [`server::PrivateServer`] a test stops and starts.
    pub async fn on(server: &str, test_name: &str) -> TestDb {
        let name = format!("wcr_t_{}", sanitize(test_name));
        assert!(name.len() <= 64, "test name too long for a database name: {name}");
        let admin = Pool::new(Opts::from_url(server).expect("valid test server URL"));
        let mut conn = admin.get_conn().await.expect("connect to the test MariaDB");
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .unwrap();
        conn.query_drop(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci"
        ))
        .await
        .unwrap();
        drop(conn);
        let opts = OptsBuilder::from_opts(Opts::from_url(server).unwrap()).db_name(Some(&name));
        TestDb {
            name,
            pool: Pool::new(opts),
            admin,
            server: server.to_owned(),
        }
    }

    /// A `mysql://` URL for this database, for configs handed to the binary.
    pub fn url(&self) -> String {
        let opts = Opts::from_url(&self.server).unwrap();
        self.url_as(opts.user().unwrap_or("root"))
    }

    /// The URL of this database for another account (its password goes in the config).
    pub fn url_as(&self, user: &str) -> String {
        let opts = Opts::from_url(&self.server).unwrap();
        format!(
            "mysql://{user}@{}:{}/{}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            self.name
        )
    }

    /// A server account holding `privileges` on this database only (replacing one a failed
    /// run left behind); returns its URL. Accounts are server-wide: drop it with
    /// [`TestDb::drop_user`].
    pub async fn create_user(&self, user: &str, password: &str, privileges: &str) -> String {
        let mut conn = self.admin.get_conn().await.unwrap();
        conn.query_drop(format!("DROP USER IF EXISTS '{user}'@'%'"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
            .await
            .unwrap();
        conn.query_drop(format!("GRANT {privileges} ON `{}`.* TO '{user}'@'%'", self.name))
            .await
            .unwrap();
        self.url_as(user)
    }

    pub async fn drop_user(&self, user: &str) {
        let mut conn = self.admin.get_conn().await.unwrap();
        conn.query_drop(format!("DROP USER IF EXISTS '{user}'@'%'"))
            .await
            .unwrap();
    }

    /// The service account of this database: a URL for an account holding exactly the
    /// privileges of `deploy/grants.sql` on this database's `wp_` store, as an operator
    /// would create it; its password is [`SERVICE_PASSWORD`]. Call it after the store's
    /// tables exist (grants name tables). See [`TestDb::service_url_for`].
    pub async fn service_url(&self) -> String {
        self.service_url_for("wp_").await
    }

    /// [`TestDb::service_url`] for a store with another table prefix. Runs the statements
    /// of `deploy/grants.sql` with `wordpress` replaced by this database, `wp_` by
    /// `prefix`, the account by this database's own (replacing one a failed run left
    /// behind) and the password by [`SERVICE_PASSWORD`]. Lines are left out only where the
    /// file's comments tell an operator to: the HPOS tables it names when the store has
    /// none, and commented-out GRANTs are used when their table exists.
    pub async fn service_url_for(&self, prefix: &str) -> String {
        let user = service_user(&self.name);
        let mut conn = self.admin.get_conn().await.unwrap();
        conn.query_drop(format!("DROP USER IF EXISTS '{user}'@'%'"))
            .await
            .unwrap();
        let tables: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
                (&self.name,),
            )
            .await
            .unwrap();
        let leave_out = grants_left_out_when_absent(GRANTS_SQL);
        for grant in grant_statements(GRANTS_SQL) {
            let optional = grant.commented
                || grant
                    .table
                    .as_deref()
                    .is_some_and(|t| leave_out.iter().any(|l| *l == t));
            if let (true, Some(table)) = (optional, &grant.table) {
                if !tables.contains(&format!("{prefix}{table}")) {
                    continue;
                }
            }
            let sql = grant
                .sql
                .replace("`wordpress`", &format!("`{}`", self.name))
                .replace("`wp_", &format!("`{prefix}"))
                .replace("'wc_retention'@'localhost'", &format!("'{user}'@'%'"))
                .replace(
                    "IDENTIFIED BY 'change-me'",
                    &format!("IDENTIFIED BY '{SERVICE_PASSWORD}'"),
                );
            conn.query_drop(&sql)
                .await
                .unwrap_or_else(|e| panic!("deploy/grants.sql for {}: {sql}: {e}", self.name));
        }
        self.url_as(&user)
    }

    /// The whole database as `mariadb-dump` writes it, one row per INSERT: what a backup
    /// of the shop would hold.
    pub fn dump(&self) -> String {
        let opts = Opts::from_url(&self.server).unwrap();
        let tool = ["mariadb-dump", "mysqldump"]
            .into_iter()
            .find(|t| {
                std::process::Command::new(t)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("mariadb-dump or mysqldump on the PATH");
        let mut cmd = std::process::Command::new(tool);
        cmd.args([
            "--no-defaults",
            "--protocol=TCP",
            "--skip-extended-insert",
            "--no-tablespaces",
        ])
        .arg(format!("--host={}", opts.ip_or_hostname()))
        .arg(format!("--port={}", opts.tcp_port()))
        .arg(format!("--user={}", opts.user().unwrap_or("root")))
        .arg(&self.name);
        if let Some(pass) = opts.pass() {
            cmd.env("MYSQL_PWD", pass);
        }
        let out = cmd.output().expect("run the dump tool");
        assert!(
            out.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("the dump is UTF-8")
    }

    /// The first row of `sql` (one value, or a tuple); panics naming the query when there is none.
    pub async fn scalar<T: mysql_async::prelude::FromRow + Send + 'static>(&self, sql: &str) -> T {
        let mut conn = self.pool.get_conn().await.unwrap();
        conn.query_first::<T, _>(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: no row"))
    }

    /// Drops the database; call at the end of a test that passed.
    pub async fn drop(self) {
        self.pool.disconnect().await.ok();
        let mut conn = self.admin.get_conn().await.unwrap();
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .await
            .unwrap();
        conn.query_drop(format!("DROP USER IF EXISTS '{}'@'%'", service_user(&self.name)))
            .await
            .unwrap();
        drop(conn);
        self.admin.disconnect().await.ok();
    }
}

/// The password of the accounts [`TestDb::service_url`] creates.
pub const SERVICE_PASSWORD: &str = "Service-Grants-Pass-1";

/// The least privileges of the service, as shipped to operators.
const GRANTS_SQL: &str = include_str!("../../deploy/grants.sql");

/// The service account of a test database: server-wide, so named from the database by a
/// short hash (at most 32 characters, MySQL's limit; MariaDB allows 80).
fn service_user(db_name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(db_name.as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("wcr_svc_{hex}")
}

/// One statement of `deploy/grants.sql`.
struct GrantStatement {
    sql: String,
    /// The unprefixed table of `ON `db`.`wp_table``, if any.
    table: Option<String>,
    /// A GRANT the file ships commented out, for tables only some versions have.
    commented: bool,
}

/// The statements of `deploy/grants.sql`, with its commented-out GRANTs marked as such.
fn grant_statements(text: &str) -> Vec<GrantStatement> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        let (code, commented) = match line.strip_prefix("--") {
            Some(rest) if rest.trim_start().starts_with("GRANT ") => (rest.trim_start(), true),
            Some(_) => continue,
            None => (line, false),
        };
        if code.is_empty() {
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(code);
        if let Some(sql) = current.strip_suffix(';') {
            let table = sql
                .split_once(".`wp_")
                .and_then(|(_, rest)| rest.split_once('`'))
                .map(|(table, _)| table.to_owned());
            statements.push(GrantStatement {
                sql: sql.to_owned(),
                table,
                commented,
            });
            current.clear();
        }
    }
    assert!(
        current.is_empty(),
        "deploy/grants.sql: unterminated statement {current:?}"
    );
    assert!(statements.len() > 10, "deploy/grants.sql: too few statements found");
    statements
}

/// The tables whose lines the file's comments tell an operator to leave out on a store
/// without them ("... leave out the lines naming wc_orders, wc_order_addresses, ...").
fn grants_left_out_when_absent(text: &str) -> Vec<String> {
    let comments: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("--"))
        .map(str::trim)
        .collect();
    let comments = comments.join(" ");
    let marker = "leave out the lines naming ";
    let start = comments
        .find(marker)
        .unwrap_or_else(|| panic!("deploy/grants.sql no longer says which lines to {marker:?}: update tests/common"))
        + marker.len();
    let list = &comments[start..];
    let list = &list[..list.find('.').unwrap_or(list.len())];
    let tables: Vec<String> = list.split(',').map(|t| t.trim().to_owned()).collect();
    assert!(
        tables
            .iter()
            .all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
        "deploy/grants.sql: cannot read the tables to leave out from {list:?}"
    );
    tables
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// What a run of the `wc-retention` binary left: exit code and both streams.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, for "never printed anywhere" assertions.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs the binary with `args`, a clean `WC_RETENTION__*` environment plus `env`.
pub fn wc_retention(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wc-retention"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WC_RETENTION") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().expect("run the wc-retention binary");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    record_output(&run.stdout);
    record_output(&run.stderr);
    run
}

// ---------------------------------------------------------------------------------------
// The suite's output, kept for the personal-data scan
// ---------------------------------------------------------------------------------------

/// Where every test process keeps what the binary printed and which stores it generated;
/// `tests/pii_scan.rs`, which `scripts/test` runs after the suite, searches the one for
/// the personal data of the other.
pub const OUTPUT_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/wc-retention-output");

fn append(file: &str, text: &str) {
    use std::io::Write;
    if text.is_empty() {
        return;
    }
    std::fs::create_dir_all(OUTPUT_DIR).expect("create the suite's output directory");
    let path = format!("{OUTPUT_DIR}/{file}-{}", std::process::id());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    // One write per call: the threads of a test process append whole texts.
    let mut whole = text.to_owned();
    whole.push('\n');
    f.write_all(whole.as_bytes()).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// Keeps output of the binary (stdout, stderr or a log line) for the scan.
pub fn record_output(text: &str) {
    append("output", text);
}

/// A generated store, kept in the list of stores whose people the scan looks for.
pub async fn generate(pool: &Pool, spec: &wc_retention::fixture::Spec) -> wc_retention::fixture::Report {
    append("stores", &format!("{} {}", spec.seed, spec.subjects()));
    wc_retention::fixture::generate(pool, spec)
        .await
        .expect("generate a store")
}

/// Writes a config file (mode 0600) into `dir` and returns its path as a string.
pub fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// WooCommerce's address fields, as columns of `wc_order_addresses`, as the `_billing_*` /
/// `_shipping_*` postmeta keys, and in `_billing_address_index` order (shipping has no
/// email). The tests keep their own copy of this fact, apart from the service's.
pub const ADDRESS_FIELDS: [&str; 11] = [
    "first_name",
    "last_name",
    "company",
    "address_1",
    "address_2",
    "city",
    "state",
    "postcode",
    "country",
    "email",
    "phone",
];
