//! Shared test harness: one scratch database per test on the throwaway MariaDB that
//! `scripts/test` starts, named from the test's name so parallel tests never collide.
#![allow(dead_code)] // each test binary uses its own subset of these helpers

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
}

impl TestDb {
    pub async fn new(test_name: &str) -> TestDb {
        let name = format!("wcr_t_{}", sanitize(test_name));
        assert!(name.len() <= 64, "test name too long for a database name: {name}");
        let admin = Pool::new(Opts::from_url(&server_url()).expect("valid test server URL"));
        let mut conn = admin.get_conn().await.expect("connect to the test MariaDB");
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await.unwrap();
        conn.query_drop(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci"
        ))
        .await
        .unwrap();
        drop(conn);
        let opts = OptsBuilder::from_opts(Opts::from_url(&server_url()).unwrap()).db_name(Some(&name));
        TestDb { name, pool: Pool::new(opts), admin }
    }

    /// A `mysql://` URL for this database, for configs handed to the binary.
    pub fn url(&self) -> String {
        let opts = Opts::from_url(&server_url()).unwrap();
        format!(
            "mysql://{}@{}:{}/{}",
            opts.user().unwrap_or("root"),
            opts.ip_or_hostname(),
            opts.tcp_port(),
            self.name
        )
    }

    /// Drops the database; call at the end of a test that passed.
    pub async fn drop(self) {
        self.pool.disconnect().await.ok();
        let mut conn = self.admin.get_conn().await.unwrap();
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)).await.unwrap();
        drop(conn);
        self.admin.disconnect().await.ok();
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}
