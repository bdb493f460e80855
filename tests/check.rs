//! `check` and `migrate` against real MariaDB databases: generated stores in each storage
//! mode, and the ways a store can be wrong (empty, wrong prefix, no WooCommerce, a missing
//! table, a wrong password, an unreachable host, missing privileges).

mod common;

use chrono::Datelike;
use common::{wc_retention, write_config, Run, TestDb};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use wc_retention::fixture::{Mode, Spec};
use wc_retention::store::migrations;

async fn store(test: &str, prefix: &str, mode: Mode) -> TestDb {
    let db = TestDb::new(test).await;
    common::generate(&db.pool, &Spec::new(prefix, mode, 12, 7)).await;
    db
}

/// A config for `db` with `extra` keys appended to `[database]`.
fn config(db: &TestDb, prefix: &str, extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[database]\nurl = \"{}\"\ntable_prefix = \"{prefix}\"\n{extra}",
        db.url()
    );
    let path = write_config(&dir, &text);
    (dir, path)
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("check --json printed no JSON ({e}):\n{}", run.stdout))
}

#[tokio::test]
async fn check_reports_version_and_order_storage_of_each_mode() {
    for (mode, expected, orders_sql) in [
        (
            Mode::Legacy,
            "legacy",
            "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_order'",
        ),
        (
            Mode::Hpos,
            "hpos",
            "SELECT COUNT(*) FROM wp_wc_orders WHERE type = 'shop_order'",
        ),
        (
            Mode::HposSync,
            "hpos-sync",
            "SELECT COUNT(*) FROM wp_wc_orders WHERE type = 'shop_order'",
        ),
    ] {
        let db = store(&format!("check_mode_{expected}"), "wp_", mode).await;
        let (_dir, cfg) = config(&db, "wp_", "");
        let run = wc_retention(&["--config", &cfg, "check", "--json"], &[]);
        assert_eq!(run.code, 0, "{expected}: {}", run.all_output());
        let report = json(&run);
        assert_eq!(report["ok"], true);
        assert_eq!(report["store"]["woocommerce_version"], "11.0.1");
        assert_eq!(report["store"]["order_storage"], expected);
        assert_eq!(report["store"]["missing_tables"], serde_json::json!([]));
        let orders = db.scalar::<u64>(orders_sql).await;
        assert!(orders > 0);
        assert_eq!(report["store"]["orders"], orders, "{expected}");
        // The generated shop keeps Amsterdam time: an invoice dated today is a fiscal
        // record until New Year, seven full fiscal years from now.
        let year = chrono::Utc::now().with_timezone(&chrono_tz::Europe::Amsterdam).year();
        assert_eq!(
            report["config"]["invoice_from_today_kept_until"],
            format!("{}-01-01T00:00:00+01:00", year + 8)
        );

        let text = wc_retention(&["--config", &cfg, "--log-format", "pretty", "check"], &[]);
        assert_eq!(text.code, 0);
        assert!(text.stdout.contains("woocommerce  11.0.1"), "{}", text.stdout);
        assert!(text.stdout.contains("result       ok"), "{}", text.stdout);
        db.drop().await;
    }
}

#[tokio::test]
async fn migrate_creates_own_tables_once_and_refuses_a_newer_schema() {
    let db = store("migrate_twice", "wp_", Mode::HposSync).await;
    let (_dir, cfg) = config(&db, "wp_", "");
    let first = wc_retention(&["--config", &cfg, "migrate"], &[]);
    assert_eq!(first.code, 0, "{}", first.all_output());
    assert!(
        first
            .stdout
            .contains(&format!("own tables created at version {}", migrations::LATEST)),
        "{}",
        first.stdout
    );
    let second = wc_retention(&["--config", &cfg, "migrate"], &[]);
    assert_eq!(second.code, 0, "{}", second.all_output());
    assert!(
        second
            .stdout
            .contains(&format!("already at version {}", migrations::LATEST)),
        "{}",
        second.stdout
    );
    for t in [
        "wp_wc_retention_runs",
        "wp_wc_retention_audit",
        "wp_wc_retention_requests",
    ] {
        let n = db
            .scalar::<u64>(&format!(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{t}'"
            ))
            .await;
        assert_eq!(n, 1, "{t}");
    }
    assert_eq!(
        db.scalar::<u64>("SELECT COUNT(*) FROM wp_wc_retention_schema").await,
        u64::from(migrations::LATEST)
    );
    let report = json(&wc_retention(&["--config", &cfg, "check", "--json"], &[]));
    assert_eq!(report["store"]["own_schema_version"], migrations::LATEST);

    // A store left at version 1 by an older build, whose upgrade was cut short after the
    // column was added but before the version row: migrating again finishes it.
    let mut conn = db.pool.get_conn().await.unwrap();
    conn.query_drop("DELETE FROM wp_wc_retention_schema WHERE version >= 2")
        .await
        .unwrap();
    drop(conn);
    let upgrade = wc_retention(&["--config", &cfg, "migrate"], &[]);
    assert_eq!(upgrade.code, 0, "{}", upgrade.all_output());
    assert!(
        upgrade
            .stdout
            .contains(&format!("migrated from version 1 to {}", migrations::LATEST)),
        "{}",
        upgrade.stdout
    );

    // A newer wc-retention migrated this store; this one must not touch it.
    db.pool
        .get_conn()
        .await
        .unwrap()
        .query_drop("INSERT INTO wp_wc_retention_schema VALUES (99, 'from the future', UTC_TIMESTAMP())")
        .await
        .unwrap();
    let refused = wc_retention(&["--config", &cfg, "migrate"], &[]);
    assert_eq!(refused.code, 3, "{}", refused.all_output());
    assert!(
        refused.stderr.contains(&format!(
            "schema version 99, newer than this wc-retention knows ({})",
            migrations::LATEST
        )),
        "{}",
        refused.stderr
    );
    let check = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(check.code, 3);
    assert!(
        check.stdout.contains("PROBLEM") && check.stdout.contains("version 99"),
        "{}",
        check.stdout
    );
    db.drop().await;
}

#[tokio::test]
async fn an_empty_database_is_not_wordpress() {
    let db = TestDb::new("check_empty").await;
    let (_dir, cfg) = config(&db, "wp_", "");
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr.contains("has no WordPress tables with prefix \"wp_\""),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{}",
        run.stderr
    );
    let run = wc_retention(&["--config", &cfg, "check", "--json"], &[]);
    assert_eq!(run.code, 3);
    assert_eq!(json(&run)["ok"], false);

    let dir = tempfile::tempdir().unwrap();
    let missing = db.url().replace(&db.name, "wcr_no_such_shop");
    let cfg = write_config(&dir, &format!("[database]\nurl = \"{missing}\"\n"));
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr.contains("database \"wcr_no_such_shop\" does not exist"),
        "{}",
        run.stderr
    );
    db.drop().await;
}

#[tokio::test]
async fn a_wrong_prefix_is_named_with_the_right_one() {
    let db = store("check_prefix", "shop7_", Mode::Hpos).await;
    let (_dir, cfg) = config(&db, "wp_", "");
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr.contains("set database.table_prefix = \"shop7_\""),
        "{}",
        run.stderr
    );
    let (_dir, cfg) = config(&db, "shop7_", "");
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    db.drop().await;
}

#[tokio::test]
async fn wordpress_without_woocommerce_and_missing_tables_are_refused() {
    let db = store("check_no_woo", "wp_", Mode::Hpos).await;
    let (_dir, cfg) = config(&db, "wp_", "");
    let mut conn = db.pool.get_conn().await.unwrap();
    conn.query_drop("DROP TABLE wp_wc_order_addresses").await.unwrap();
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stdout.contains("missing tables: wp_wc_order_addresses"),
        "{}",
        run.stdout
    );

    conn.query_drop("DELETE FROM wp_options WHERE option_name = 'woocommerce_version'")
        .await
        .unwrap();
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(run.stderr.contains("WooCommerce is not installed"), "{}", run.stderr);
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn a_wrong_password_and_an_unreachable_host_are_clear_and_leak_nothing() {
    let db = store("check_login", "wp_", Mode::Legacy).await;
    let user = "wcr_login_test";
    let url = db.create_user(user, "Right-Pass-4711", "ALL").await;

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("db_password");
    std::fs::write(&pw, "Wrong-Pass-0815\n").unwrap();
    let cfg = write_config(
        &dir,
        &format!("[database]\nurl = \"{url}\"\npassword_file = \"{}\"\n", pw.display()),
    );
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr
            .contains(&format!("refused the login of user \"{user}\": wrong user or password")),
        "{}",
        run.stderr
    );
    assert!(!run.all_output().contains("Wrong-Pass-0815") && !run.all_output().contains("Right-Pass-4711"));

    std::fs::write(&pw, "Right-Pass-4711").unwrap();
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(!run.all_output().contains("Right-Pass-4711"));

    let cfg = write_config(
        &dir,
        "[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\nconnect_timeout_secs = 3\n",
    );
    let run = wc_retention(
        &["--config", &cfg, "check"],
        &[("WC_RETENTION__DATABASE__PASSWORD", "Env-Pass-1234")],
    );
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr.contains("cannot reach the database server at 127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert!(!run.all_output().contains("Env-Pass-1234") && !run.all_output().contains("panicked"));

    db.drop_user(user).await;
    db.drop().await;
}

#[tokio::test]
async fn missing_privileges_are_named_and_deploy_grants_suffice() {
    let db = store("check_grants", "wp_", Mode::HposSync).await;
    let user = "wcr_grants_test";
    let url = db.create_user(user, "Grants-Pass-1", "SELECT").await;
    let mut conn = db.pool.get_conn().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!("[database]\nurl = \"{url}\"\npassword = \"Grants-Pass-1\"\n"),
    );
    let run = wc_retention(&["--config", &cfg, "check", "--json"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    let missing = json(&run)["store"]["missing_privileges"].clone();
    assert!(
        missing
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["wp_users", "UPDATE"])),
        "{missing}"
    );
    assert!(
        missing
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["wp_postmeta", "INSERT"])),
        "{missing}"
    );
    assert!(
        !missing.as_array().unwrap().iter().any(|p| p[1] == "SELECT"),
        "{missing}"
    );
    let text = wc_retention(&["--config", &cfg, "check"], &[]);
    assert!(
        text.stdout.contains("lacks privileges: UPDATE on wp_users"),
        "{}",
        text.stdout
    );

    // Exactly deploy/grants.sql, for this database and user.
    conn.query_drop(format!("REVOKE ALL PRIVILEGES ON `{}`.* FROM '{user}'@'%'", db.name))
        .await
        .unwrap();
    let grants = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grants.sql")).unwrap();
    let grants = grants
        .replace("`wordpress`", &format!("`{}`", db.name))
        .replace("'wc_retention'@'localhost'", &format!("'{user}'@'%'"))
        .replace("IDENTIFIED BY 'change-me'", "IDENTIFIED BY 'Grants-Pass-1'");
    conn.query_drop(grants).await.unwrap();
    let migrate = wc_retention(&["--config", &cfg, "migrate"], &[]);
    assert_eq!(migrate.code, 0, "{}", migrate.all_output());
    let run = wc_retention(&["--config", &cfg, "check", "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert_eq!(json(&run)["store"]["own_schema_version"], migrations::LATEST);

    // One privilege taken away at a time: check names exactly that one.
    for (table, privilege) in [
        ("wp_woocommerce_sessions", "DELETE"),
        ("wp_wc_orders_meta", "INSERT"),
        ("wp_comments", "UPDATE"),
        ("wp_wc_retention_audit", "INSERT"),
    ] {
        let on = format!("`{}`.`{table}` FROM '{user}'@'%'", db.name);
        conn.query_drop(format!("REVOKE {privilege} ON {on}")).await.unwrap();
        let run = wc_retention(&["--config", &cfg, "check", "--json"], &[]);
        assert_eq!(run.code, 3, "without {privilege} on {table}: {}", run.all_output());
        assert_eq!(
            json(&run)["store"]["missing_privileges"],
            serde_json::json!([[table, privilege]]),
            "without {privilege} on {table}: {}",
            run.all_output()
        );
        let to = format!("`{}`.`{table}` TO '{user}'@'%'", db.name);
        conn.query_drop(format!("GRANT {privilege} ON {to}")).await.unwrap();
    }
    // Without reading the options, the store cannot be told from any other database:
    // check names the table rather than saying there is no WordPress.
    let on = format!("`{}`.`wp_options` FROM '{user}'@'%'", db.name);
    conn.query_drop(format!("REVOKE SELECT ON {on}")).await.unwrap();
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr.contains(&format!(
            "user \"{user}\" may not read wp_options (no SELECT privilege on it)"
        )),
        "{}",
        run.all_output()
    );

    drop(conn);
    db.drop_user(user).await;
    db.drop().await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let db = store("check_json_logs", "wp_", Mode::Hpos).await;
    let (_dir, cfg) = config(&db, "wp_", "");
    let run = wc_retention(
        &[
            "--config",
            &cfg,
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "migrate",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all_output());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v.get(key).is_some(), "{key} missing in {line}");
        }
    }
    assert!(lines
        .iter()
        .any(|l| l.contains("\"message\":\"own schema migrated\"") && l.contains("\"version\":1")));
    db.drop().await;
}

#[tokio::test]
async fn tls_require_and_verify_ca_against_a_tls_server() {
    let ca = std::env::var("WC_RETENTION_TEST_CA").expect("WC_RETENTION_TEST_CA: run the suite with scripts/test");
    let db = store("check_tls", "wp_", Mode::Hpos).await;

    let (_dir, cfg) = config(&db, "wp_", "tls = \"require\"\n");
    let run = wc_retention(&["--config", &cfg, "check", "--json"], &[]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(json(&run)["store"]["tls_cipher"].is_string(), "{}", run.stdout);

    // The test server's certificate names "localhost"; the socket shortcut is off so the
    // connection really goes over TCP and TLS.
    let dir = tempfile::tempdir().unwrap();
    let by_name = format!("{}?prefer_socket=false", db.url().replacen("127.0.0.1", "localhost", 1));
    let verify = |url: &str, ca: &str| {
        format!("[database]\nurl = \"{url}\"\ntls = \"verify_ca\"\nca_file = \"{ca}\"\nconnect_timeout_secs = 5\n")
    };
    let run = wc_retention(
        &[
            "--config",
            &write_config(&dir, &verify(&by_name, &ca)),
            "check",
            "--json",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(json(&run)["store"]["tls_cipher"].is_string());

    let run = wc_retention(
        &["--config", &write_config(&dir, &verify(&db.url(), &ca)), "check"],
        &[],
    );
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr.contains("no TLS connection") && run.stderr.contains("not valid for name"),
        "{}",
        run.stderr
    );

    let other_ca = dir.path().join("other-ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(dir.path().join("other-key.pem"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    let cfg = write_config(&dir, &verify(&by_name, other_ca.to_str().unwrap()));
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 3, "{}", run.all_output());
    assert!(
        run.stderr.contains("no TLS connection") && run.stderr.contains("UnknownIssuer"),
        "{}",
        run.stderr
    );
    db.drop().await;
}

#[tokio::test]
async fn no_personal_data_reaches_the_output() {
    let spec = Spec::new("wp_", Mode::HposSync, 12, 7);
    let db = TestDb::new("check_no_pii").await;
    common::generate(&db.pool, &spec).await;
    let (_dir, cfg) = config(&db, "wp_", "");
    let mut output = String::new();
    for args in [&["migrate"][..], &["check"], &["check", "--json"]] {
        let mut all = vec!["--config", cfg.as_str(), "--log-level", "trace"];
        all.extend_from_slice(args);
        let run = wc_retention(&all, &[]);
        assert_eq!(run.code, 0, "{args:?}: {}", run.all_output());
        output.push_str(&run.all_output());
    }
    for subject in 0..spec.subjects() {
        let p = spec.person(subject);
        for value in [&p.email, &p.phone, &p.address_1, &p.ip, &p.last_name, &p.user_agent] {
            assert!(
                !output.contains(value.as_str()),
                "subject {subject}'s data in the output"
            );
        }
    }
    db.drop().await;
}
