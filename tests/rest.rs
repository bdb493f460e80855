//! The REST client against the local WooCommerce double (`common::woo`), which answers with
//! the bodies, statuses and headers a real WooCommerce 11 gave, checks Basic auth over
//! HTTPS and OAuth 1.0a signatures over plain HTTP as WooCommerce does, and fails on
//! request: 401, 404, 429, 500s, a hang, broken JSON.

mod common;

use std::time::{Duration, Instant};

use common::woo::{Fault, WooOptions, WooServer};
use wc_retention::config::{self, Config};
use wc_retention::woo::{Client, RestError, SystemStatus};

const KEY: &str = "ck_0123456789abcdef0123456789abcdef01234567";
const SECRET: &str = "cs_fedcba9876543210fedcba9876543210fedcba98";

/// A config whose `[rest]` points at `server` with `extra` keys, loaded as the service
/// loads it (the database is never contacted).
fn config(server: &WooServer, secret: &str, extra: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let ca = server
        .ca_file()
        .map(|p| format!("ca_file = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    let text = format!(
        "[database]\nurl = \"mysql://nobody@127.0.0.1:9/none\"\n\n[rest]\nurl = \"{}/\"\nconsumer_key = \"{KEY}\"\n\
         consumer_secret = \"{secret}\"\n{ca}{extra}\n",
        server.url()
    );
    let path = common::write_config(&dir, &text);
    let loaded = config::load(std::path::Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    (dir, loaded.config)
}

fn client(server: &WooServer, extra: &str) -> Client {
    let (_dir, c) = config(server, SECRET, extra);
    Client::with_backoff(c.rest.as_ref().unwrap(), Duration::from_millis(50)).unwrap()
}

fn https() -> WooServer {
    WooServer::start(WooOptions {
        tls: true,
        ..WooOptions::new(KEY, SECRET)
    })
}

fn http() -> WooServer {
    WooServer::start(WooOptions::new(KEY, SECRET))
}

/// No message may carry the key, the secret or a signature.
fn assert_no_secrets(text: &str) {
    for s in [KEY, SECRET, "oauth_signature", "consumer_secret="] {
        assert!(!text.contains(s), "{s:?} in {text:?}");
    }
}

#[tokio::test]
async fn https_with_basic_auth_reads_the_system_status() {
    let server = https();
    let status = SystemStatus::fetch(&client(&server, "")).await.unwrap();
    assert_eq!(status.environment.version, "11.0.1");
    assert_eq!(status.database.database_prefix, "wp_");
    assert!(status.settings.hpos_enabled);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/wp-json/wc/v3/system_status");
    assert_eq!(seen[0].basic_auth_user.as_deref(), Some(KEY));
    assert!(!seen[0].oauth);
    assert!(seen[0]
        .query
        .iter()
        .any(|(k, v)| k == "_fields" && v.contains("settings")));
}

#[tokio::test]
async fn a_wrong_secret_is_woocommerces_401_with_a_hint_and_no_secret() {
    let server = https();
    let (_dir, c) = config(&server, "cs_wrong", "");
    let client = Client::new(c.rest.as_ref().unwrap()).unwrap();
    let e = SystemStatus::fetch(&client).await.unwrap_err();
    let text = e.to_string();
    assert_eq!(
        text,
        "GET /system_status: WooCommerce answered 401 woocommerce_rest_authentication_error: Consumer secret is \
         invalid. (check rest.consumer_key and rest.consumer_secret)"
    );
    assert_no_secrets(&text);
    assert_no_secrets(&format!("{e:?} {client:?}"));
    assert_eq!(server.seen().len(), 1, "a 401 is not retried");
}

#[tokio::test]
async fn not_found_is_told_apart() {
    let server = https();
    let e = client(&server, "")
        .get::<serde_json::Value>("/orders/999999", &[])
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert_eq!(
        e.to_string(),
        "GET /orders/999999: WooCommerce answered 404 woocommerce_rest_shop_order_invalid_id: Invalid ID."
    );
    // WordPress's 404 for a route it does not know (WooCommerce deactivated) is no answer
    // about the id: verification must not take it for "deleted".
    let e = client(&server, "")
        .get::<serde_json::Value>("/ordres/12", &[])
        .await
        .unwrap_err();
    assert!(!e.is_not_found(), "{e}");
    assert!(e.to_string().contains("404 rest_no_route"), "{e}");
}

#[tokio::test]
async fn a_429_is_waited_out_as_the_server_asks() {
    let server = https();
    server.push_faults([Fault::Status(429)]);
    let started = Instant::now();
    let status = SystemStatus::fetch(&client(&server, "")).await.unwrap();
    assert_eq!(status.environment.version, "11.0.1");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not obeyed"
    );
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn server_errors_are_retried_until_the_retries_run_out() {
    let server = https();
    server.push_faults([Fault::Status(500), Fault::Status(503), Fault::Status(500)]);
    let e = SystemStatus::fetch(&client(&server, "retries = 2")).await.unwrap_err();
    assert!(matches!(e, RestError::GaveUp { attempts: 3, .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("GET /system_status: gave up after 3 attempts (rest.retries)"),
        "{text}"
    );
    assert!(
        text.contains("500 internal_server_error: There has been a critical error"),
        "{text}"
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_hung_server_times_out() {
    let server = https();
    server.push_faults([Fault::Hang(Duration::from_secs(10))]);
    let started = Instant::now();
    let e = SystemStatus::fetch(&client(&server, "timeout_secs = 1\nretries = 0"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "GET /system_status: no answer within 1 s (rest.timeout_secs)"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn broken_json_is_an_error_quoting_no_value() {
    let server = https();
    server.push_faults([Fault::Malformed]);
    let e = client(&server, "")
        .get::<serde_json::Value>("/orders/12", &[])
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("GET /orders/12: the answer is not the JSON WooCommerce sends: the body ends early"),
        "{text}"
    );
    assert_eq!(server.seen().len(), 1, "broken JSON is not retried");
}

#[tokio::test]
async fn plain_http_is_refused_without_the_opt_in_and_signed_with_it() {
    let server = http();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[database]\nurl = \"mysql://nobody@127.0.0.1:9/none\"\n[rest]\nurl = \"{}\"\nconsumer_key = \"{KEY}\"\n\
         consumer_secret = \"{SECRET}\"\n",
        server.url()
    );
    let refused = config::load(std::path::Path::new(&common::write_config(&dir, &text))).unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "invalid configuration:\n  rest.url: \"{}\" is plain HTTP; use https://, or set rest.allow_insecure_http = true \
             for a web server on this host (requests are then signed with OAuth 1.0a, answers travel unencrypted)",
            server.url()
        )
    );

    // With it, every request is signed: the double verifies each signature as WooCommerce
    // does, and refuses a nonce it has seen, so a retry must sign afresh.
    server.push_faults([Fault::Status(503)]);
    let client = client(&server, "allow_insecure_http = true");
    assert!(client.signs_requests());
    let status = SystemStatus::fetch(&client).await.unwrap();
    assert_eq!(status.database.database_prefix, "wp_");
    let seen = server.seen();
    assert_eq!(seen.iter().map(|s| s.status).collect::<Vec<_>>(), [503, 200]);
    for s in &seen {
        assert!(s.oauth && s.basic_auth_user.is_none(), "{s:?}");
    }
    let nonces: Vec<&str> = seen
        .iter()
        .map(|s| s.query.iter().find(|(k, _)| k == "oauth_nonce").unwrap().1.as_str())
        .collect();
    assert_ne!(nonces[0], nonces[1]);
}

#[tokio::test]
async fn a_bad_signature_is_refused_by_woocommerces_rules() {
    let server = http();
    let (_dir, c) = config(&server, "cs_wrong", "allow_insecure_http = true");
    let e = SystemStatus::fetch(&Client::new(c.rest.as_ref().unwrap()).unwrap())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(
            "401 woocommerce_rest_authentication_error: Invalid signature - provided signature does not match."
        ),
        "{text}"
    );
    assert!(
        text.contains("check rest.consumer_secret; and OAuth signatures are made over WordPress's home URL"),
        "{text}"
    );
    assert_no_secrets(&text);
}

// ---------------------------------------------------------------------------------------
// With a store behind the double: pagination, preflight, verification after a run
// ---------------------------------------------------------------------------------------

use common::{wc_retention, write_config, TestDb, SERVICE_PASSWORD};
use serde_json::Value;
use wc_retention::fixture::{self, Mode, Spec};

/// Every run is as of the generator's "now".
const NOW: &str = "2026-11-24T00:00:00Z";

struct Shop {
    db: TestDb,
    spec: Spec,
    woo: WooServer,
    dir: tempfile::TempDir,
}

impl Shop {
    async fn new(test: &str, mode: Mode, customers: u64) -> Shop {
        let db = TestDb::new(&format!("rest_{test}_{mode}")).await;
        let spec = Spec::new("wp_", mode, customers, 5);
        common::generate(&db.pool, &spec).await;
        let woo = WooServer::start(WooOptions {
            tls: true,
            store: Some((db.url(), "wp_".to_owned())),
            ..WooOptions::new(KEY, SECRET)
        });
        Shop {
            db,
            spec,
            woo,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes the config (the service account of deploy/grants.sql, `[rest]` at the
    /// double, `extra` appended) and runs the binary with `args`. Nothing it prints may
    /// name anyone in the store.
    async fn run(&self, extra: &str, args: &[&str]) -> common::Run {
        let text = format!(
            "[database]\nurl = \"{}\"\npassword = \"{SERVICE_PASSWORD}\"\n\n[safety]\nmax_share = 1.0\n\
             max_customers_per_run = 1000000\n\n[rest]\nurl = \"{}\"\nconsumer_key = \"{KEY}\"\n\
             consumer_secret = \"{SECRET}\"\nca_file = {:?}\nverify_sample = 100\n{extra}",
            self.db.service_url().await,
            self.woo.url(),
            self.woo.ca_file().unwrap().display().to_string(),
        );
        let cfg = write_config(&self.dir, &text);
        let mut all = vec!["--config", cfg.as_str()];
        all.extend_from_slice(args);
        let run = wc_retention(&all, &[]);
        let out = run.all_output();
        for subject in 0..self.spec.subjects() {
            for value in fixture::identifying_values(&self.spec.person(subject)) {
                assert!(
                    value.is_empty() || !out.contains(&value),
                    "{args:?} printed {value:?}:\n{out}"
                );
            }
        }
        assert_no_secrets(&out);
        run
    }

    /// The `verification` column of the newest completed run.
    async fn verification(&self) -> Value {
        let stored: String = self
            .db
            .scalar("SELECT verification FROM wp_wc_retention_runs WHERE status = 'completed' ORDER BY id DESC LIMIT 1")
            .await;
        serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{e}: {stored}"))
    }

    async fn finish(self) {
        drop(self.woo);
        self.db.drop().await;
    }
}

#[tokio::test]
async fn lists_are_read_page_by_page() {
    let shop = Shop::new("pages", Mode::Hpos, 40).await;
    let (_dir, c) = config(&shop.woo, SECRET, "");
    let client = Client::new(c.rest.as_ref().unwrap()).unwrap();
    let orders: Vec<Value> = client.list("/orders", &[]).await.unwrap();
    let expected: u64 = shop
        .db
        .scalar("SELECT COUNT(*) FROM wp_wc_orders WHERE type = 'shop_order' AND status NOT IN ('trash', 'auto-draft')")
        .await;
    assert!(expected > 100, "the store must need two pages: {expected} orders");
    assert_eq!(orders.len() as u64, expected);
    let ids: std::collections::BTreeSet<u64> = orders.iter().map(|o| o["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), orders.len(), "no order twice across pages");
    let pages: Vec<String> = shop
        .woo
        .seen()
        .iter()
        .map(|s| s.query.iter().find(|(k, _)| k == "page").unwrap().1.clone())
        .collect();
    assert_eq!(pages, ["1", "2"]);
    shop.finish().await;
}

#[tokio::test]
async fn check_compares_the_rest_view_with_the_database() {
    for mode in [Mode::Legacy, Mode::HposSync] {
        let shop = Shop::new("check", mode, 12).await;
        let run = shop.run("", &["check", "--json"]).await;
        assert_eq!(run.code, 0, "{mode}: {}", run.all_output());
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            report["rest"]["order_storage"], report["store"]["order_storage"],
            "{mode}"
        );
        assert_eq!(report["rest"]["authentication"], "basic (HTTPS)");
        assert_eq!(report["rest"]["database_prefix"], "wp_");

        // The same API in front of another WordPress (another prefix), with a payment
        // plugin and an object cache: check fails, naming both prefixes.
        shop.woo.edit_system_status(|s| {
            s["database"]["database_prefix"] = "shop2_".into();
            s["environment"]["external_object_cache"] = true.into();
            s["active_plugins"].as_array_mut().unwrap().push(
                serde_json::json!({"plugin": "mollie-payments-for-woocommerce/mollie-payments-for-woocommerce.php",
                    "name": "Mollie Payments for WooCommerce"}),
            );
        });
        let run = shop.run("", &["check"]).await;
        assert_eq!(run.code, 3, "{mode}: {}", run.all_output());
        assert!(
            run.stdout.contains(
                "PROBLEM      rest: the REST API's WordPress uses table prefix \"shop2_\", the database config \"wp_\""
            ),
            "{}",
            run.stdout
        );
        assert!(run
            .stdout
            .contains("Mollie Payments for WooCommerce (mollie-payments-for-woocommerce/"));
        assert!(run.stdout.contains("persistent object cache"), "{}", run.stdout);
        shop.finish().await;
    }
}

#[tokio::test]
async fn check_says_when_the_database_stands_alone() {
    let shop = Shop::new("alone", Mode::Hpos, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        &dir,
        &format!(
            "[database]\nurl = \"{}\"\npassword = \"{SERVICE_PASSWORD}\"\n",
            shop.db.service_url().await
        ),
    );
    let run = wc_retention(&["--config", &cfg, "check"], &[]);
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(run
        .stdout
        .contains("rest api     not configured: the service works on the database alone"));
    assert!(!run.stdout.contains("rest view"));
    assert!(shop.woo.seen().is_empty());
    shop.finish().await;
}

/// The first order the plan minimises or anonymises, and its billing email as stored.
async fn cached_order(shop: &Shop) -> (u64, String) {
    let plan = shop.run("", &["plan", "--now", NOW, "--json"]).await;
    assert_eq!(plan.code, 0, "{}", plan.all_output());
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let id = plan["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["action"] == "anonymise_order" || l["action"] == "minimise_order")
        .expect("the plan changes an order")["sample_ids"][0]
        .as_u64()
        .unwrap();
    let email: String = shop
        .db
        .scalar(&format!(
            "SELECT meta_value FROM wp_postmeta WHERE post_id = {id} AND meta_key = '_billing_email' UNION \
             SELECT email FROM wp_wc_order_addresses WHERE order_id = {id} AND address_type = 'billing'"
        ))
        .await;
    (id, email)
}

#[tokio::test]
async fn a_cached_order_is_reported_by_id_and_field() {
    let shop = Shop::new("cached", Mode::HposSync, 30).await;
    let (id, email) = cached_order(&shop).await;
    shop.woo.freeze_order(id);

    let run = shop.run("", &["apply", "--now", NOW]).await;
    assert_eq!(run.code, 7, "{}", run.all_output());
    assert!(!run.all_output().contains(&email));
    assert!(
        run.stderr.contains(&format!(
            "but its check failed: order {id} still shows personal data through the REST API ("
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("billing.email"), "{}", run.stderr);

    // The run row keeps what was found: ids and field names, never values.
    let stored = shop.verification().await;
    assert!(!stored.to_string().contains(&email));
    let mismatches = stored["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{stored}");
    assert_eq!(mismatches[0]["entity"], "order");
    assert_eq!(mismatches[0]["id"], id);
    assert!(mismatches[0]["fields"]
        .as_array()
        .unwrap()
        .contains(&"billing.email".into()));
    assert!(stored["checked"].as_u64().unwrap() > 10, "{stored}");
    shop.finish().await;
}

#[tokio::test]
async fn the_post_run_command_flushes_the_cache_before_the_check() {
    let shop = Shop::new("flushed", Mode::Legacy, 30).await;
    let (id, _) = cached_order(&shop).await;
    shop.woo.freeze_order(id);
    let command: Vec<String> = shop.woo.flush_command();
    let run = shop
        .run(
            &format!("\n[apply]\npost_run_command = {command:?}\n"),
            &["apply", "--now", NOW],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(run.stderr.contains("post-run command finished"), "{}", run.stderr);
    assert!(run.stderr.contains("REST verification passed"), "{}", run.stderr);
    let stored = shop.verification().await;
    assert_eq!(stored["post_run_command"], "ok");
    assert_eq!(stored["mismatches"], serde_json::json!([]));
    // Customers were read with role=all (anonymised accounts keep their role, but staff
    // deleted or anonymised by the policy need not be customers), orders by include=.
    let seen = shop.woo.seen();
    assert!(seen
        .iter()
        .any(|s| s.path.ends_with("/customers") && s.query.iter().any(|(k, v)| k == "role" && v == "all")));
    assert!(seen
        .iter()
        .any(|s| s.path.ends_with("/orders") && s.query.iter().any(|(k, _)| k == "include")));

    // A failing command is reported and makes apply exit 7; the data changes stand.
    let shop2 = Shop::new("flush_fails", Mode::Legacy, 30).await;
    let run = shop2
        .run(
            "\n[apply]\npost_run_command = [\"sh\", \"-c\", \"echo 'Error: cache unreachable' >&2; exit 2\"]\n",
            &["apply", "--now", NOW],
        )
        .await;
    assert_eq!(run.code, 7, "{}", run.all_output());
    assert!(
        run.stderr.contains(
            "check failed: apply.post_run_command \"sh\" failed (exit status: 2); run it by hand as the service's user"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("cache unreachable"),
        "the command's output is kept nowhere"
    );
    for shop in [shop, shop2] {
        shop.finish().await;
    }
}
