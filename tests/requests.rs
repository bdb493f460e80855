//! Data-subject requests end to end: `forget` of an active customer, `restrict` and
//! `unrestrict` against the policy, WordPress's own erasure and export requests picked up
//! by `requests sync`, and the register, which names people by a keyed hash only.

mod common;

use common::{wc_retention, write_config, Run, TestDb, SERVICE_PASSWORD};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use wc_retention::fixture::{Mode, Spec};

const PEPPER: &str = "requests-tests-pepper-0123456789abcdef";

struct Shop {
    db: TestDb,
    dir: tempfile::TempDir,
    cfg: String,
}

impl Shop {
    /// `requests` are lines of the `[requests]` section (the export directory is set).
    async fn new(test: &str, mode: Mode, requests: &str) -> Shop {
        let db = TestDb::new(test).await;
        let spec = Spec::new("wp_", mode, 60, 31);
        common::generate(&db.pool, &spec).await;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[database]\nurl = \"{}\"\npassword = \"{SERVICE_PASSWORD}\"\n\n[log]\nformat = \"json\"\n\n\
             [safety]\nmax_share = 1.0\nmax_customers_per_run = 1000000\n\n\
             [requests]\nexport_dir = \"{}\"\n{requests}",
            db.service_url().await,
            dir.path().join("exports").display()
        );
        let cfg = write_config(&dir, &text);
        Shop { db, dir, cfg }
    }

    /// The export files written so far.
    fn exports(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path().join("exports"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config", self.cfg.as_str()];
        all.extend_from_slice(args);
        wc_retention(&all, &[])
    }

    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{args:?}:\n{}", run.all_output());
        run
    }

    async fn rows<T: mysql_async::prelude::FromRow + Send + 'static>(&self, sql: &str) -> Vec<T> {
        let mut conn = self.db.pool.get_conn().await.unwrap();
        conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    async fn one<T: mysql_async::prelude::FromRow + Send + 'static>(&self, sql: &str) -> T {
        self.rows(sql)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no row: {sql}"))
    }

    /// A customer who is a client today (an order in the last 60 days, none open), so no
    /// policy rule would touch them: what `forget` does is the request's doing.
    async fn active_customer(&self) -> (u64, String, String) {
        self.one(
            "SELECT u.ID, u.user_email, \
                    (SELECT meta_value FROM wp_usermeta WHERE user_id = u.ID AND meta_key = 'billing_phone') \
             FROM wp_users u JOIN wp_wc_orders o ON o.customer_id = u.ID \
             WHERE o.status = 'wc-completed' AND o.date_created_gmt > UTC_TIMESTAMP() - INTERVAL 60 DAY \
             AND NOT EXISTS (SELECT 1 FROM wp_wc_orders x WHERE x.customer_id = u.ID \
                             AND x.status IN ('wc-processing', 'wc-on-hold', 'wc-pending')) \
             ORDER BY u.ID LIMIT 1",
        )
        .await
    }

    /// A customer (legacy storage) with a billing phone.
    async fn active_customer_legacy(&self) -> (u64, String, String) {
        self.one(
            "SELECT u.ID, u.user_email, m.meta_value FROM wp_users u \
             JOIN wp_usermeta m ON m.user_id = u.ID AND m.meta_key = 'billing_phone' AND m.meta_value <> '' \
             JOIN wp_usermeta c ON c.user_id = u.ID AND c.meta_key = 'wp_capabilities' AND c.meta_value LIKE '%customer%' \
             ORDER BY u.ID LIMIT 1",
        )
        .await
    }

    fn plan(&self) -> Value {
        let plan = self.ok(&["plan", "--json"]);
        serde_json::from_str(&plan.stdout).unwrap()
    }

    async fn drop(self) {
        self.db.drop().await;
    }
}

fn hash(email: &str) -> String {
    wc_retention::subject::hash(PEPPER, email)
}

fn pepper() -> String {
    format!("pepper = \"{PEPPER}\"\n")
}

#[tokio::test]
async fn forget_erases_an_active_customer_and_the_register_keeps_only_a_hash() {
    let shop = Shop::new("requests_forget", Mode::HposSync, &pepper()).await;
    let (id, email, phone) = shop.active_customer().await;
    assert!(shop.plan()["lines"].as_array().unwrap().iter().all(|l| {
        l["sample_ids"]
            .as_array()
            .is_none_or(|ids| !ids.contains(&Value::from(id)))
    }));
    let users_before: u64 = shop
        .one("SELECT COUNT(*) FROM wp_users WHERE user_email LIKE 'anonymised-%'")
        .await;

    let forget = shop.ok(&["forget", "--email", &email.to_uppercase()]);
    assert!(forget.stdout.contains("erasure completed"), "{}", forget.stdout);

    // The account is anonymised; nobody else is.
    let now_email: String = shop
        .one(&format!("SELECT user_email FROM wp_users WHERE ID = {id}"))
        .await;
    assert_eq!(now_email, format!("anonymised-{id}@site.invalid"));
    let users_after: u64 = shop
        .one("SELECT COUNT(*) FROM wp_users WHERE user_email LIKE 'anonymised-%'")
        .await;
    assert_eq!(users_after, users_before + 1);
    // Their orders are processed: invoices minimised, nothing left with their email.
    let left: u64 = shop
        .one(&format!(
            "SELECT COUNT(*) FROM wp_wc_orders WHERE customer_id = {id} AND billing_email <> 'deleted@site.invalid' \
             AND status NOT IN ('wc-processing', 'wc-on-hold')"
        ))
        .await;
    assert_eq!(left, 0, "orders of user {id} still carry an email");
    let audited: Vec<(String, String)> = shop
        .rows("SELECT DISTINCT rule, entity_type FROM wp_wc_retention_audit ORDER BY entity_type")
        .await;
    assert_eq!(
        audited,
        [
            ("erasure_request".to_owned(), "customer".to_owned()),
            ("erasure_request".to_owned(), "order".to_owned())
        ]
    );

    // The register: kind, hash, dates, status. Nothing else about the person.
    let register: Vec<(String, String, String, Option<String>)> = shop
        .rows("SELECT kind, subject_hash, status, CAST(completed_at AS CHAR) FROM wp_wc_retention_requests")
        .await;
    assert_eq!(register.len(), 1);
    assert_eq!((register[0].0.as_str(), register[0].2.as_str()), ("erase", "completed"));
    assert_eq!(register[0].1, hash(&email));
    assert!(register[0].3.is_some());

    // Email and phone are not invoice fields: no copy anywhere in the database, nor in
    // anything the command printed.
    let dump = shop.db.dump();
    for value in [&email, &phone] {
        assert!(
            !dump.contains(value.as_str()),
            "the dump still holds {value:?} of user {id}"
        );
        assert!(!forget.all_output().contains(value.as_str()), "printed {value:?}");
    }
    let list = shop.ok(&["requests", "list", "--json"]);
    let entries: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(entries[0]["kind"], "erase");
    assert!(!list.stdout.contains(&email));
    shop.drop().await;
}

#[tokio::test]
async fn forget_again_after_an_erasure_changes_nothing_and_unknown_people_are_answered() {
    let shop = Shop::new("requests_forget_again", Mode::Legacy, &pepper()).await;
    let (id, email, _) = shop
        .one::<(u64, String, Option<String>)>(
            "SELECT u.ID, u.user_email, NULL FROM wp_users u JOIN wp_usermeta m ON m.user_id = u.ID \
         AND m.meta_key = 'wp_capabilities' AND m.meta_value LIKE '%customer%' ORDER BY u.ID LIMIT 1",
        )
        .await;
    shop.ok(&["forget", "--user-id", &id.to_string()]);
    let audit_rows: u64 = shop.one("SELECT COUNT(*) FROM wp_wc_retention_audit").await;
    let again = shop.ok(&["forget", "--email", &email]);
    assert!(again.stdout.contains("(0 steps applied)"), "{}", again.stdout);
    assert_eq!(
        shop.one::<u64>("SELECT COUNT(*) FROM wp_wc_retention_audit").await,
        audit_rows
    );
    // Someone the shop never knew still gets an answer, and a register entry.
    let stranger = shop.ok(&["forget", "--email", "nobody.here@example.org"]);
    assert!(stranger.stdout.contains("(0 steps applied)"), "{}", stranger.stdout);
    let completed: u64 = shop
        .one("SELECT COUNT(*) FROM wp_wc_retention_requests WHERE kind = 'erase' AND status = 'completed'")
        .await;
    assert_eq!(completed, 3);
    assert_eq!(shop.ok(&["audit", "verify"]).code, 0);
    shop.drop().await;
}

#[tokio::test]
async fn a_restricted_person_is_skipped_by_every_rule_until_unrestricted() {
    let shop = Shop::new("requests_restrict", Mode::Hpos, &pepper()).await;
    // Someone the policy forgets today.
    let plan = shop.plan();
    let line = plan["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rule"] == "inactive_customer" && l["action"] == "anonymise_customer")
        .cloned()
        .expect("the store has inactive customers");
    let id = line["sample_ids"][0].as_u64().unwrap();
    let before = line["count"].as_u64().unwrap();

    let restrict = shop.ok(&["restrict", "--user-id", &id.to_string()]);
    assert!(
        restrict.stdout.contains("restriction registered"),
        "{}",
        restrict.stdout
    );
    let again = shop.ok(&["restrict", "--user-id", &id.to_string()]);
    assert!(again.stdout.contains("already restricted"), "{}", again.stdout);
    let plan = shop.plan();
    assert_eq!(plan["restricted_skipped"], 1, "{plan}");
    let line = plan["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rule"] == "inactive_customer" && l["action"] == "anonymise_customer")
        .cloned()
        .unwrap();
    assert_eq!(line["count"].as_u64().unwrap(), before - 1);
    let text = shop.ok(&["plan"]);
    assert!(text.stdout.contains("1 restricted subjects skipped"), "{}", text.stdout);
    shop.ok(&["apply"]);
    let kept: String = shop
        .one(&format!("SELECT user_email FROM wp_users WHERE ID = {id}"))
        .await;
    assert!(!kept.starts_with("anonymised-"), "a restricted customer was anonymised");

    let lifted = shop.ok(&["unrestrict", "--user-id", &id.to_string()]);
    assert!(lifted.stdout.contains("1 restriction(s) lifted"), "{}", lifted.stdout);
    shop.ok(&["apply"]);
    let gone: String = shop
        .one(&format!("SELECT user_email FROM wp_users WHERE ID = {id}"))
        .await;
    assert_eq!(gone, format!("anonymised-{id}@site.invalid"));
    let statuses: Vec<String> = shop.rows("SELECT status FROM wp_wc_retention_requests").await;
    assert_eq!(statuses, ["lifted"]);
    shop.drop().await;
}

#[tokio::test]
async fn wordpress_requests_are_registered_and_confirmed_erasures_completed_in_wordpress() {
    let shop = Shop::new("requests_wordpress", Mode::HposSync, &pepper()).await;
    let requests: Vec<(u64, String, String, String, String)> = shop
        .rows(
            "SELECT ID, post_name, post_status, post_title, CAST(post_date_gmt AS CHAR) FROM wp_posts \
             WHERE post_type = 'user_request' ORDER BY ID",
        )
        .await;
    let confirmed_erase = requests
        .iter()
        .find(|r| r.1 == "remove_personal_data" && r.2 == "request-confirmed")
        .cloned()
        .expect("the generator makes a confirmed erasure request");
    let open: Vec<_> = requests
        .iter()
        .filter(|r| r.2 == "request-pending" || r.2 == "request-confirmed")
        .collect();

    let sync = shop.ok(&["requests", "sync"]);
    assert!(
        sync.stdout.contains("1 erasures carried out and 1 exports written"),
        "{}",
        sync.stdout
    );

    // WordPress sees the erasure done, as its own Tools screen would leave it.
    let (status, title, stamp): (String, String, Option<String>) = shop
        .one(&format!(
            "SELECT p.post_status, p.post_title, m.meta_value FROM wp_posts p LEFT JOIN wp_postmeta m \
             ON m.post_id = p.ID AND m.meta_key = '_wp_user_request_completed_timestamp' WHERE p.ID = {}",
            confirmed_erase.0
        ))
        .await;
    assert_eq!(status, "request-completed");
    assert_eq!(title, "deleted@site.invalid");
    let stamp: i64 = stamp.expect("a completion timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - stamp).abs() < 600);
    let email = &confirmed_erase.3;
    assert!(
        !shop.db.dump().contains(email.as_str()),
        "the erased requester's email is still in the store"
    );

    // Every unfinished request is in the register, with WordPress's id and a deadline 30
    // days after it was made; unconfirmed ones are not carried out.
    let register: Vec<(u64, String, String, String, String)> = shop
        .rows(
            "SELECT wp_request_id, kind, status, subject_hash, CAST(deadline_at AS CHAR) \
             FROM wp_wc_retention_requests ORDER BY wp_request_id",
        )
        .await;
    assert_eq!(register.len(), open.len(), "{register:?}");
    for (r, e) in open.iter().zip(&register) {
        assert_eq!(e.0, r.0);
        assert_eq!(
            e.1,
            if r.1 == "remove_personal_data" {
                "erase"
            } else {
                "export"
            }
        );
        let expected = match (r.1.as_str(), r.2.as_str()) {
            (_, "request-confirmed") => "completed",
            _ => "pending",
        };
        assert_eq!(e.2, expected, "{e:?}");
        assert_eq!(e.3, hash(&r.3));
        let received = chrono::NaiveDateTime::parse_from_str(&r.4, "%Y-%m-%d %H:%M:%S").unwrap();
        let deadline = chrono::NaiveDateTime::parse_from_str(&e.4, "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(deadline - received, chrono::Duration::days(30), "{e:?}");
    }
    let pending_left: u64 = shop
        .one("SELECT COUNT(*) FROM wp_posts WHERE post_type = 'user_request' AND post_status = 'request-pending'")
        .await;
    assert_eq!(
        pending_left,
        open.iter().filter(|r| r.2 == "request-pending").count() as u64
    );

    // A second pickup finds nothing new and changes nothing.
    let again = shop.ok(&["requests", "sync"]);
    assert!(
        again.stdout.contains("0 newly registered, 0 erasures"),
        "{}",
        again.stdout
    );
    for r in &requests {
        assert!(!sync.all_output().contains(&r.3), "printed a requester's email");
    }
    shop.drop().await;
}

#[tokio::test]
async fn requests_without_a_pepper_or_with_bad_flags_are_refused_clearly() {
    let shop = Shop::new("requests_refused", Mode::Hpos, "").await;
    let run = shop.run(&["forget", "--email", "someone@example.org"]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("requests.pepper_file"), "{}", run.stderr);
    let run = shop.run(&["forget", "--email", "a@b.example", "--user-id", "3"]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    let run = shop.run(&["restrict"]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    shop.drop().await;

    let shop = Shop::new("requests_refused_user", Mode::Hpos, &pepper()).await;
    let run = shop.run(&["forget", "--user-id", "999999"]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("--user-id 999999: no such user"), "{}", run.stderr);
    let run = shop.run(&["forget", "--email", "not-an-address"]);
    assert_eq!(run.code, 2, "{}", run.all_output());
    assert!(run.stderr.contains("not an email address"), "{}", run.stderr);
    shop.drop().await;
}

#[tokio::test]
async fn overdue_requests_are_listed_and_warned_about() {
    let extra = format!("{}deadline = \"7 days\"\n", pepper());
    let shop = Shop::new("requests_overdue", Mode::HposSync, &extra).await;
    shop.ok(&["requests", "sync"]);
    let all: Value = serde_json::from_str(&shop.ok(&["requests", "list", "--json"]).stdout).unwrap();
    let overdue: Value = serde_json::from_str(&shop.ok(&["requests", "list", "--overdue", "--json"]).stdout).unwrap();
    let now = chrono::Utc::now();
    let expected: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["completed"].is_null()
                && chrono::DateTime::parse_from_rfc3339(e["deadline"].as_str().unwrap()).unwrap() < now
        })
        .collect();
    assert!(
        !expected.is_empty(),
        "the generated requests should include one older than 7 days: {all}"
    );
    assert_eq!(overdue.as_array().unwrap().iter().collect::<Vec<_>>(), expected);
    let open: Value = serde_json::from_str(&shop.ok(&["requests", "list", "--open", "--json"]).stdout).unwrap();
    assert!(open.as_array().unwrap().iter().all(|e| e["completed"].is_null()));
    let text = shop.ok(&["requests", "list"]);
    assert!(text.stdout.contains("kind      status"), "{}", text.stdout);
    shop.drop().await;
}

#[tokio::test]
async fn export_writes_the_persons_data_privately_and_registers_the_answer() {
    use std::os::unix::fs::PermissionsExt;
    let shop = Shop::new("requests_export", Mode::Legacy, &pepper()).await;
    let (id, email, phone) = shop.active_customer_legacy().await;
    let run = shop.ok(&["export", "--user-id", &id.to_string()]);
    assert!(run.stdout.contains("export written to"), "{}", run.stdout);
    let files = shop.exports();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let local_part = email.split('@').next().unwrap();
    assert!(name.starts_with("export-") && !name.contains(local_part), "{name}");
    let text = std::fs::read_to_string(file).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        doc["schema"],
        "wc-retention/export/1",
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.contains(&email) && text.contains(&phone),
        "the export lacks the person's contact data"
    );
    assert!(!run.all_output().contains(&email), "printed the email");

    // --out: a named new file, never an existing one.
    let out = shop.dir.path().join("for-the-customer.json");
    shop.ok(&["export", "--email", &email, "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let again = shop.run(&["export", "--email", &email, "--out", out.to_str().unwrap()]);
    assert_eq!(again.code, 1, "{}", again.all_output());
    assert!(again.stderr.contains("cannot write the export to"), "{}", again.stderr);

    let register: Vec<(String, String, String)> = shop
        .rows("SELECT kind, status, subject_hash FROM wp_wc_retention_requests ORDER BY id")
        .await;
    assert_eq!(register[0], ("export".to_owned(), "completed".to_owned(), hash(&email)));
    assert_eq!(register[1].1, "completed");
    // The failed third attempt stays open, to be answered.
    assert_eq!(register[2].1, "open");
    shop.drop().await;
}

#[tokio::test]
async fn a_deadline_is_extended_once_by_at_most_two_months_with_a_reason_code() {
    let shop = Shop::new("requests_extend", Mode::Hpos, &pepper()).await;
    shop.ok(&["requests", "sync"]);
    let (id, deadline): (u64, String) = shop
        .one(
            "SELECT id, CAST(deadline_at AS CHAR) FROM wp_wc_retention_requests \
             WHERE completed_at IS NULL ORDER BY id LIMIT 1",
        )
        .await;
    let id_text = id.to_string();
    let too_long = shop.run(&[
        "requests",
        "extend",
        &id_text,
        "--by",
        "3 months",
        "--reason",
        "complexity",
    ]);
    assert_eq!(too_long.code, 2, "{}", too_long.all_output());
    assert!(too_long.stderr.contains("at most 2 months"), "{}", too_long.stderr);
    let free_text = shop.run(&[
        "requests",
        "extend",
        &id_text,
        "--by",
        "1 month",
        "--reason",
        "the customer is slow",
    ]);
    assert_eq!(free_text.code, 2, "{}", free_text.all_output());

    let run = shop.ok(&["requests", "extend", &id_text, "--by", "2 months", "--reason", "number"]);
    assert!(run.stdout.contains("deadline extended to"), "{}", run.stdout);
    let (now_deadline, reason): (String, String) = shop
        .one(&format!(
            "SELECT CAST(deadline_at AS CHAR), extension_reason FROM wp_wc_retention_requests WHERE id = {id}"
        ))
        .await;
    let parse = |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
    let moved = parse(&now_deadline) - parse(&deadline);
    assert!((59..=62).contains(&moved.num_days()), "moved {moved}");
    assert_eq!(reason, "number");
    let again = shop.run(&["requests", "extend", &id_text, "--by", "1 day", "--reason", "number"]);
    assert_eq!(again.code, 2, "{}", again.all_output());
    assert!(again.stderr.contains("extended once already"), "{}", again.stderr);
    let list: Value = serde_json::from_str(&shop.ok(&["requests", "list", "--json"]).stdout).unwrap();
    let entry = list.as_array().unwrap().iter().find(|e| e["id"] == id).unwrap().clone();
    assert_eq!(entry["extension"], "number");
    let missing = shop.run(&["requests", "extend", "99999", "--by", "1 month", "--reason", "number"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no such request"), "{}", missing.stderr);
    shop.drop().await;
}
