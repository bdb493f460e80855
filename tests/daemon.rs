//! The daemon as systemd runs it: `wc-retention run` as a child process with a notify
//! socket, driven by signals. A catch-up at start, two daemons on one store, a reload,
//! a held lock, a store that is not WooCommerce, and a database server that stops and
//! starts again under a running daemon.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::PrivateServer;
use common::{wc_retention, write_config, TestDb, SERVICE_PASSWORD};
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool};
use serde_json::Value;
use wc_retention::fixture::{self, Mode, Spec};

/// Long enough for a cycle on a small store on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(90);

/// A config that never fires on its own during a test (4:00 on 1 January): cycles come
/// from a catch-up at start or from SIGUSR1. `password` goes with the URL's account.
fn config_text(url: &str, password: &str, extra: &str) -> String {
    format!(
        "[database]\nurl = \"{url}\"\npassword = \"{password}\"\nconnect_timeout_secs = 10\n\n[log]\nformat = \"json\"\n\n\
         [schedule]\ncron = \"0 4 1 1 *\"\ntimezone = \"UTC\"\nretry_initial_secs = 1\nretry_max_secs = 2\n\n\
         [safety]\nmax_share = 1.0\nmax_customers_per_run = 1000000\n\n{extra}"
    )
}

/// A generated store on the shared test server with a daemon config for it, connecting
/// as an account that holds only the privileges of `deploy/grants.sql`.
struct Shop {
    db: TestDb,
    spec: Spec,
    dir: tempfile::TempDir,
    url: String,
    cfg: String,
}

impl Shop {
    async fn new(test: &str, customers: u64, extra: &str) -> Shop {
        let db = TestDb::new(test).await;
        let spec = Spec::new("wp_", Mode::HposSync, customers, 71);
        common::generate(&db.pool, &spec).await;
        let dir = tempfile::tempdir().unwrap();
        let url = db.service_url().await;
        let cfg = write_config(&dir, &config_text(&url, SERVICE_PASSWORD, extra));
        Shop {
            db,
            spec,
            dir,
            url,
            cfg,
        }
    }

    /// Replaces the config file, as an operator editing it.
    fn rewrite_config(&self, extra: &str) {
        write_config(&self.dir, &config_text(&self.url, SERVICE_PASSWORD, extra));
    }

    fn cli(&self, args: &[&str]) -> common::Run {
        let mut all = vec!["--config", self.cfg.as_str()];
        all.extend_from_slice(args);
        wc_retention(&all, &[])
    }

    /// The service last ran more than a year ago: the host was down over the yearly run.
    async fn ran_long_ago(&self) {
        let migrate = self.cli(&["migrate"]);
        assert_eq!(migrate.code, 0, "{}", migrate.all_output());
        let mut conn = self.db.pool.get_conn().await.unwrap();
        conn.query_drop(
            "INSERT INTO wp_wc_retention_runs (trigger_kind, started_at, finished_at, status, counts) \
             VALUES ('schedule', UTC_TIMESTAMP(6) - INTERVAL 400 DAY, UTC_TIMESTAMP(6) - INTERVAL 400 DAY, 'completed', '{}')",
        )
        .await
        .unwrap();
    }

    /// Run rows after the seeded one: (trigger, status).
    async fn runs(&self) -> Vec<(String, String)> {
        let mut conn = self.db.pool.get_conn().await.unwrap();
        conn.query("SELECT trigger_kind, status FROM wp_wc_retention_runs WHERE started_at > UTC_TIMESTAMP() - INTERVAL 1 DAY ORDER BY id")
            .await
            .unwrap()
    }

    async fn audited_twice(&self) -> Vec<(String, u64, String, u64)> {
        let mut conn = self.db.pool.get_conn().await.unwrap();
        conn.query(
            "SELECT entity_type, entity_id, action, COUNT(*) FROM wp_wc_retention_audit \
             GROUP BY entity_type, entity_id, action HAVING COUNT(*) > 1",
        )
        .await
        .unwrap()
    }

    /// `plan --json` counts per action, as of now.
    fn planned(&self) -> Value {
        let plan = self.cli(&["plan", "--json"]);
        assert_eq!(plan.code, 0, "{}", plan.all_output());
        let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
        doc["counts"].clone()
    }

    fn assert_no_personal_data(&self, out: &str) {
        for subject in 0..self.spec.subjects() {
            for value in fixture::identifying_values(&self.spec.person(subject)) {
                assert!(
                    value.is_empty() || !out.contains(&value),
                    "the daemon logged personal data of subject {subject}: {value:?}"
                );
            }
        }
    }
}

/// `wc-retention run` as a child, with its JSON log lines and what it told systemd.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    notes: Arc<Mutex<Vec<String>>>,
    _socket_dir: tempfile::TempDir,
}

impl Daemon {
    fn start(cfg: &str) -> Daemon {
        let socket_dir = tempfile::tempdir().unwrap();
        let socket_path = socket_dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        let notes = Arc::new(Mutex::new(Vec::new()));
        let sink = notes.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().extend(text.lines().map(str::to_owned));
            }
        });
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wc-retention"));
        for (k, _) in std::env::vars() {
            if k.starts_with("WC_RETENTION")
                || k == "RUST_LOG"
                || k.starts_with("NOTIFY_")
                || k.starts_with("WATCHDOG_")
            {
                cmd.env_remove(k);
            }
        }
        cmd.args(["--config", cfg, "run"])
            .env("NOTIFY_SOCKET", &socket_path)
            // Pings every 150 ms, so that a test sees them.
            .env("WATCHDOG_USEC", "300000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start wc-retention run");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                common::record_output(&line);
                sink.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            lines,
            notes,
            _socket_dir: socket_dir,
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The log events with this message, in order.
    fn events(&self, message: &str) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// Waits for the `n`th event with this message (1-based) and returns it.
    fn wait_for(&mut self, message: &str, n: usize) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.events(message).get(n - 1) {
                return e.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) before logging {message:?} #{n}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} #{n} within {PATIENCE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -s {name}");
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit; its code and how long it took.
    fn exit(mut self) -> (i32, Duration, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), started.elapsed(), self.log());
            }
            if started.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("the daemon did not exit within {PATIENCE:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit, which must be 0.
    fn stop(self) -> String {
        self.signal("TERM");
        let (code, took, log) = self.exit();
        assert_eq!(code, 0, "exit after SIGTERM:\n{log}");
        assert!(took < Duration::from_secs(20), "SIGTERM took {took:?}");
        log
    }
}

impl Drop for Daemon {
    /// A failed test must not leave a daemon behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn position(notes: &[String], prefix: &str) -> Option<usize> {
    notes.iter().position(|n| n.starts_with(prefix))
}

#[tokio::test]
async fn a_run_missed_while_down_happens_at_start_and_systemd_hears_each_step() {
    let shop = Shop::new("daemon_catch_up", 40, "").await;
    shop.ran_long_ago().await;
    let owed = shop.planned();
    assert!(
        owed["anonymise_customer"].as_u64().unwrap_or(0) > 0,
        "the store owes no work: {owed}"
    );

    let mut daemon = Daemon::start(&shop.cfg);
    let finished = daemon.wait_for("cycle finished", 1);
    assert!(finished["applied"].as_u64().unwrap() > 0, "{finished}");
    let idle = daemon.wait_for("idle until the next run", 1);
    // The schedule is 04:00 on 1 January, UTC: the next run is logged after the cycle.
    let next = idle["next_run"].as_str().unwrap();
    assert!(next.ends_with("-01-01T04:00:00+00:00"), "{idle}");
    // Watchdog pings every 150 ms while idle.
    std::thread::sleep(Duration::from_millis(600));
    let log = daemon.stop();

    assert_eq!(shop.runs().await, [("catch-up".to_owned(), "completed".to_owned())]);
    assert_eq!(
        shop.planned(),
        serde_json::json!({}),
        "work left after the catch-up run"
    );
    shop.assert_no_personal_data(&log);
    shop.db.drop().await;
}

#[tokio::test]
async fn systemd_notifications_come_in_order() {
    let shop = Shop::new("daemon_notify", 40, "[apply]\ncustomer_batch = 5\n").await;
    shop.ran_long_ago().await;
    let mut daemon = Daemon::start(&shop.cfg);
    daemon.wait_for("cycle finished", 1);
    std::thread::sleep(Duration::from_millis(600));
    let notes_before_stop = daemon.notes();
    daemon.signal("TERM");
    let notes_handle = daemon.notes.clone();
    let (code, _, log) = daemon.exit();
    assert_eq!(code, 0, "{log}");
    let notes = notes_handle.lock().unwrap().clone();

    let ready = position(&notes, "READY=1").unwrap_or_else(|| panic!("no READY=1 in {notes:?}"));
    let applying = position(&notes, "STATUS=applying batch 1/")
        .unwrap_or_else(|| panic!("no \"applying batch\" status in {notes:?}"));
    // Planning beats too, pass by pass: a large store reads for minutes before any batch.
    let planning: Vec<usize> = (1..=5)
        .map(|pass| {
            position(&notes, &format!("STATUS=planning: pass {pass}/5 "))
                .unwrap_or_else(|| panic!("no status for planning pass {pass} in {notes:?}"))
        })
        .collect();
    assert!(planning.is_sorted() && planning[4] < applying, "{notes:?}");
    assert!(
        notes.contains(&"STATUS=planning: pass 3/5 (orders)".to_owned()),
        "{notes:?}"
    );
    assert!(
        ready < applying,
        "READY=1 must come after the store check, before work: {notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with("STATUS=idle, next run ")),
        "no idle status with the next run: {notes:?}"
    );
    let pings = notes_before_stop.iter().filter(|n| *n == "WATCHDOG=1").count();
    assert!(pings >= 3, "watchdog pings: {pings} in {notes_before_stop:?}");
    assert_eq!(notes.last().map(String::as_str), Some("STATUS=stopping"), "{notes:?}");
    assert!(notes.iter().any(|n| n == "STOPPING=1"), "{notes:?}");
    shop.db.drop().await;
}

#[tokio::test]
async fn two_daemons_on_one_store_apply_once() {
    let shop = Shop::new("daemon_two", 60, "[apply]\ncustomer_batch = 10\norder_batch = 40\n").await;
    shop.ran_long_ago().await;
    // Both start owing the missed run; one takes the store's lock and does it.
    let mut a = Daemon::start(&shop.cfg);
    let mut b = Daemon::start(&shop.cfg);
    let settled = |d: &Daemon| {
        d.events("cycle finished").len()
            + d.events("another runner holds this store's lock; this run is skipped")
                .len()
            + d.events("another runner already did this run's work; skipped").len()
    };
    let deadline = Instant::now() + PATIENCE;
    while settled(&a) + settled(&b) < 2 {
        assert!(Instant::now() < deadline, "A:\n{}\nB:\n{}", a.log(), b.log());
        assert!(a.running() && b.running(), "A:\n{}\nB:\n{}", a.log(), b.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let applied = a.events("cycle finished").len() + b.events("cycle finished").len();
    let (log_a, log_b) = (a.stop(), b.stop());
    assert_eq!(applied, 1, "A:\n{log_a}\nB:\n{log_b}");
    // One completed run. On a loaded machine an attempt may fail first (a connection not
    // made in time) and be retried: a failed attempt is allowed, a second success is not.
    let runs = shop.runs().await;
    let completed: Vec<_> = runs.iter().filter(|r| r.1 == "completed").collect();
    assert_eq!(completed.len(), 1, "{runs:?}\nA:\n{log_a}\nB:\n{log_b}");
    assert!(
        runs.iter()
            .all(|r| r.0 == "catch-up" && (r.1 == "completed" || r.1 == "failed")),
        "{runs:?}"
    );
    assert_eq!(shop.audited_twice().await, []);
    assert_eq!(shop.planned(), serde_json::json!({}));
    shop.db.drop().await;
}

#[tokio::test]
async fn sighup_changes_the_next_plan_and_a_broken_config_keeps_the_running_one() {
    let periods = |after: &str| format!("[customers]\ninactive_after = \"{after}\"\n");
    let shop = Shop::new("daemon_reload", 80, &periods("6 years")).await;
    let mut daemon = Daemon::start(&shop.cfg);
    daemon.wait_for("daemon ready", 1);
    daemon.signal("USR1");
    let first = daemon.wait_for("plan made", 1);
    daemon.wait_for("cycle finished", 1);

    // A shorter period: more customers count as gone.
    shop.rewrite_config(&periods("2 years"));
    let expected = shop.planned()["anonymise_customer"].as_u64().unwrap_or(0);
    assert!(expected > 0, "2 years should reach customers 6 years did not");
    daemon.signal("HUP");
    daemon.wait_for("configuration reloaded", 1);
    daemon.signal("USR1");
    let second = daemon.wait_for("plan made", 2);
    assert_eq!(
        second["customers"].as_u64(),
        Some(expected),
        "first {first}, second {second}"
    );
    daemon.wait_for("cycle finished", 2);

    // Broken: a period that is not one.
    shop.rewrite_config(&periods("1 fortnight"));
    daemon.signal("HUP");
    let rejected = daemon.wait_for("the new configuration is invalid; keeping the running configuration", 1);
    assert_eq!(rejected["level"], "ERROR");
    assert!(
        rejected["error"].as_str().unwrap().contains("customers.inactive_after"),
        "{rejected}"
    );
    // The running schedule (yearly, UTC) still decides the next run, not a default one.
    let idle = daemon.events("idle until the next run");
    let next = idle.last().unwrap()["next_run"].as_str().unwrap().to_owned();
    assert!(next.ends_with("-01-01T04:00:00+00:00"), "{next}");
    daemon.signal("USR1");
    let third = daemon.wait_for("plan made", 3);
    // Still the running config's 2 years, whose work is done: nothing to do.
    assert_eq!(third["customers"].as_u64(), Some(0), "{third}");
    assert!(daemon.running());
    let log = daemon.stop();
    shop.assert_no_personal_data(&log);
    shop.db.drop().await;
}

#[tokio::test]
async fn a_run_in_progress_elsewhere_is_skipped_not_raced() {
    let shop = Shop::new("daemon_lock", 30, "").await;
    let mut holder = shop.db.pool.get_conn().await.unwrap();
    let name = format!("wc-retention:{}:wp_", shop.db.name);
    let got: Option<i64> = holder.exec_first("SELECT GET_LOCK(?, 0)", (&name,)).await.unwrap();
    assert_eq!(got, Some(1));

    let mut daemon = Daemon::start(&shop.cfg);
    daemon.wait_for("daemon ready", 1);
    daemon.signal("USR1");
    daemon.wait_for("another runner holds this store's lock; this run is skipped", 1);
    // `apply` meets the same lock and says so.
    let apply = shop.cli(&["apply"]);
    assert_eq!(apply.code, 6, "{}", apply.all_output());
    assert!(
        apply.stderr.contains("another run holds this store's lock"),
        "{}",
        apply.stderr
    );
    assert_eq!(shop.runs().await, []);

    holder.exec_drop("DO RELEASE_LOCK(?)", (&name,)).await.unwrap();
    drop(holder);
    daemon.signal("USR1");
    daemon.wait_for("cycle finished", 1);
    daemon.stop();
    assert_eq!(shop.runs().await, [("signal".to_owned(), "completed".to_owned())]);
    shop.db.drop().await;
}

#[tokio::test]
async fn a_database_that_is_not_woocommerce_ends_the_daemon_with_its_reason() {
    let db = TestDb::new("daemon_not_woo").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, &config_text(&db.url(), "", ""));
    let daemon = Daemon::start(&cfg);
    let notes = daemon.notes.clone();
    let (code, _, log) = daemon.exit();
    assert_eq!(code, 3, "{log}");
    assert!(
        log.contains("wc-retention: error: database \"wcr_t_daemon_not_woo\" has no WordPress tables"),
        "{log}"
    );
    assert!(position(&notes.lock().unwrap(), "READY=1").is_none());
    db.drop().await;
}

// ---------------------------------------------------------------------------------------
// A database server that stops and starts under a running daemon
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_daemon_outlives_a_database_restart_and_recovers() {
    let mut server = PrivateServer::start(&[]).await;
    let admin = Pool::new(Opts::from_url(&server.url("")).unwrap());
    admin
        .get_conn()
        .await
        .unwrap()
        .query_drop("CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci")
        .await
        .unwrap();
    admin.disconnect().await.unwrap();
    let pool = Pool::new(OptsBuilder::from_opts(Opts::from_url(&server.url("shop")).unwrap()));
    let spec = Spec::new("wp_", Mode::HposSync, 40, 72);
    common::generate(&pool, &spec).await;
    pool.disconnect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(&dir, &config_text(&server.url("shop"), "", ""));

    // Down at start: the daemon waits for it and is not ready.
    server.pause();
    let mut daemon = Daemon::start(&cfg);
    let waiting = daemon.wait_for("cannot check the store yet; waiting", 2);
    assert!(
        waiting["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the database server"),
        "{waiting}"
    );
    assert_eq!(position(&daemon.notes(), "READY=1"), None);
    server.resume().await;
    daemon.wait_for("daemon ready", 1);
    assert!(position(&daemon.notes(), "READY=1").is_some());
    daemon.signal("USR1");
    daemon.wait_for("cycle finished", 1);

    // Down during the next cycle: logged with its cause, retried, recovered.
    server.pause();
    daemon.signal("USR1");
    let failed = daemon.wait_for("cycle failed", 1);
    assert_eq!(failed["level"], "ERROR");
    daemon.wait_for("cycle failed: retrying with backoff", 2);
    assert!(daemon.running());
    server.resume().await;
    let recovered = daemon.wait_for("cycle finished", 2);
    assert!(recovered["run_id"].as_u64().is_some(), "{recovered}");
    let log = daemon.stop();
    for line in log.lines().filter(|l| l.contains("\"level\":\"ERROR\"")) {
        assert!(!line.contains("panicked"), "{line}");
    }
    let mut conn = mysql_async::Conn::new(Opts::from_url(&server.url("shop")).unwrap())
        .await
        .unwrap();
    let runs: Vec<(String, String)> = conn
        .query("SELECT trigger_kind, status FROM wp_wc_retention_runs ORDER BY id")
        .await
        .unwrap();
    assert_eq!(runs.last().map(|r| r.1.as_str()), Some("completed"), "{runs:?}");
    assert_eq!(runs.first().map(|r| r.1.as_str()), Some("completed"), "{runs:?}");
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn each_cycle_picks_up_wordpress_requests_and_warns_about_overdue_ones() {
    let exports = tempfile::tempdir().unwrap();
    let extra = format!(
        "[requests]\npepper = \"daemon-tests-pepper-0123456789abcdef\"\ndeadline = \"7 days\"\nexport_dir = \"{}\"\n",
        exports.path().display()
    );
    let shop = Shop::new("daemon_requests", 40, &extra).await;
    let mut daemon = Daemon::start(&shop.cfg);
    daemon.wait_for("daemon ready", 1);
    daemon.signal("USR1");
    let picked = daemon.wait_for("WordPress privacy requests picked up", 1);
    assert_eq!(
        (picked["erased"].as_u64(), picked["exported"].as_u64()),
        (Some(1), Some(1)),
        "{picked}"
    );
    assert_eq!(std::fs::read_dir(exports.path()).unwrap().count(), 1);
    let overdue = daemon.wait_for("request overdue: answer it now", 1);
    assert_eq!(overdue["level"], "WARN");
    assert!(overdue["request_id"].as_u64().is_some(), "{overdue}");
    daemon.wait_for("cycle finished", 1);
    let log = daemon.stop();
    shop.assert_no_personal_data(&log);
    let mut conn = shop.db.pool.get_conn().await.unwrap();
    let completed: Option<u64> = conn
        .query_first(
            "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'user_request' \
             AND post_name = 'remove_personal_data' AND post_status = 'request-completed'",
        )
        .await
        .unwrap();
    assert!(completed.unwrap_or(0) >= 1);
    // The erasure's own run does not stand in for the policy run of the cycle.
    let runs: Vec<(String, String)> = conn
        .query("SELECT trigger_kind, status FROM wp_wc_retention_runs ORDER BY id")
        .await
        .unwrap();
    drop(conn);
    assert_eq!(
        runs,
        [
            ("wordpress".to_owned(), "completed".to_owned()),
            ("signal".to_owned(), "completed".to_owned())
        ]
    );
    shop.db.drop().await;
}

#[tokio::test]
async fn the_daemon_checks_the_rest_api_at_start_and_reads_each_run_back() {
    use common::woo::{WooOptions, WooServer};
    let (key, secret) = ("ck_daemon", "cs_daemon");
    let shop = Shop::new("daemon_rest", 30, "").await;
    shop.ran_long_ago().await;
    let woo = WooServer::start(WooOptions {
        tls: true,
        store: Some((shop.db.url(), "wp_".to_owned())),
        ..WooOptions::new(key, secret)
    });
    woo.edit_system_status(|s| {
        s["active_plugins"].as_array_mut().unwrap().push(serde_json::json!({
            "plugin": "mailpoet/mailpoet.php", "name": "MailPoet"
        }));
    });
    let rest = format!(
        "[rest]\nurl = \"{}\"\nconsumer_key = \"{key}\"\nconsumer_secret = \"{secret}\"\nca_file = {:?}\n",
        woo.url(),
        woo.ca_file().unwrap().display().to_string()
    );
    shop.rewrite_config(&rest);

    let mut daemon = Daemon::start(&shop.cfg);
    let reached = daemon.wait_for("REST API reached", 1);
    assert_eq!(
        reached["order_storage"], "HPOS authoritative, synced to posts",
        "{reached}"
    );
    assert_eq!(reached["problems"], 0, "{}", daemon.log());
    let warned = daemon.events("REST preflight");
    assert!(
        warned
            .iter()
            .any(|w| w["warning"].as_str().unwrap_or("").contains("MailPoet")),
        "{}",
        daemon.log()
    );
    let passed = daemon.wait_for("REST verification passed", 1);
    assert!(passed["checked"].as_u64().unwrap() > 5, "{passed}");
    let log = daemon.stop();
    shop.assert_no_personal_data(&log);
    assert!(!log.contains(secret) && !log.contains(key));

    let mut conn = shop.db.pool.get_conn().await.unwrap();
    let stored: String = conn
        .query_first("SELECT verification FROM wp_wc_retention_runs WHERE trigger_kind = 'catch-up'")
        .await
        .unwrap()
        .unwrap();
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["mismatches"], serde_json::json!([]), "{stored}");
    // Read-backs of deleted entities may 404; nothing was refused or failed.
    assert!(
        woo.seen().iter().all(|s| matches!(s.status, 200 | 404)),
        "{:?}",
        woo.seen()
    );
    drop(conn);
    drop(woo);
    shop.db.drop().await;
}
