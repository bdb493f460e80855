//! Self-tests of the WooCommerce REST double (`tests/common/woo.rs`): its OAuth verifier
//! against requests a real WooCommerce accepted, its reads of generated stores in both order
//! storages, the object cache, authentication over HTTP and HTTPS, pagination and faults.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use common::woo::{self, Fault, WooOptions, WooServer};
use common::TestDb;
use mysql_async::prelude::Queryable;
use serde_json::{json, Value};
use wc_retention::fixture::{Mode, Spec};

const KEY: &str = "ck_0123456789abcdef0123456789abcdef01234567";
const SECRET: &str = "cs_76543210fedcba9876543210fedcba9876543210";

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/woo/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn client() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A GET URL signed the way a one-legged OAuth 1.0a client signs it (HMAC-SHA256).
fn signed(server: &WooServer, path: &str, query: &[(&str, &str)], secret: &str) -> String {
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut params: BTreeMap<String, String> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let nonce = format!("n{now}x{}", NONCE.fetch_add(1, Ordering::Relaxed));
    for (k, v) in [
        ("consumer_key", KEY.into()),
        ("timestamp", now.to_string()),
        ("nonce", nonce),
    ] {
        params.insert(format!("oauth_{k}"), v);
    }
    params.insert("oauth_signature_method".into(), "HMAC-SHA256".into());
    let url = format!("{}{path}", server.url());
    let base = woo::signature_base_string("GET", &url, &params);
    let mac = woo::hmac("HMAC-SHA256", format!("{secret}&").as_bytes(), base.as_bytes()).unwrap();
    params.insert(
        "oauth_signature".into(),
        base64::engine::general_purpose::STANDARD.encode(mac),
    );
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", woo::rawurlencode(k), woo::rawurlencode(v)))
        .collect();
    format!("{url}?{}", query.join("&"))
}

/// Status, a header reader and the body of a GET.
async fn get(url: &str) -> (u16, impl Fn(&str) -> String, String) {
    let res = client().build().unwrap().get(url).send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let header = move |name: &str| headers.get(name).map_or("", |v| v.to_str().unwrap()).to_string();
    (status, header, res.text().await.unwrap())
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_verifier_accepts_the_requests_woocommerce_accepted() {
    let recorded: Value = serde_json::from_str(&sample("oauth1_accepted.json")).unwrap();
    for request in recorded["requests"].as_array().unwrap() {
        let text = |k: &str| request[k].as_str().unwrap().to_string();
        let params = request["params"].as_object().unwrap().iter();
        let mut params: BTreeMap<String, String> =
            params.map(|(k, v)| (k.clone(), v.as_str().unwrap().into())).collect();
        let (url, secret) = (text("url"), text("consumer_secret"));
        assert_eq!(
            woo::signature_base_string("GET", &url, &params),
            text("signature_base_string")
        );
        params.insert("oauth_signature".into(), text("signature"));
        assert_eq!(woo::verify_oauth_signature("GET", &url, &params, &secret), Ok(()));
        let mismatch = Err("Invalid signature - provided signature does not match.");
        let mut changed = params.clone();
        changed.insert("per_page".into(), "2".into());
        assert_eq!(woo::verify_oauth_signature("GET", &url, &changed, &secret), mismatch);
        let mut changed = params.clone();
        changed.get_mut("oauth_signature").unwrap().replace_range(0..1, "A");
        assert_eq!(woo::verify_oauth_signature("GET", &url, &changed, &secret), mismatch);
        changed.insert("oauth_signature_method".into(), "PLAINTEXT".into());
        let invalid = Err("Invalid signature - signature method is invalid.");
        assert_eq!(woo::verify_oauth_signature("GET", &url, &changed, &secret), invalid);
    }
    // RFC 2202 test case 2 (Python's hmac agrees): the hand-written SHA-1 behind HMAC-SHA1.
    let mac = woo::hmac("HMAC-SHA1", b"Jefe", b"what do ya want for nothing?").unwrap();
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
}

async fn store(test: &str, mode: Mode) -> (TestDb, WooServer) {
    let db = TestDb::new(test).await;
    common::generate(&db.pool, &Spec::new("wp_", mode, 12, 7)).await;
    let mut options = WooOptions::new(KEY, SECRET);
    options.store = Some((db.url(), "wp_".into()));
    (db, WooServer::start(options))
}

/// The billing email and names of an order, read the way its storage keeps them.
async fn billing_in_store(db: &TestDb, mode: Mode, id: u64) -> (String, String, String) {
    let meta = |k: &str| format!("MAX(CASE WHEN meta_key = '_billing_{k}' THEN meta_value END)");
    let sql = match mode {
        Mode::Legacy => format!("SELECT {}, {}, {} FROM wp_postmeta WHERE post_id = ?", meta("email"), meta("first_name"), meta("last_name")),
        _ => "SELECT email, first_name, last_name FROM wp_wc_order_addresses WHERE order_id = ? AND address_type = 'billing'".into(),
    };
    db.pool
        .get_conn()
        .await
        .unwrap()
        .exec_first(sql, (id,))
        .await
        .unwrap()
        .unwrap()
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn orders_and_customers_read_over_the_double_agree_with_the_store() {
    let (order_sample, customer_sample): (Value, Value) = (
        serde_json::from_str(&sample("order.json")).unwrap(),
        serde_json::from_str(&sample("customer.json")).unwrap(),
    );
    for (mode, name, listed) in [
        (
            Mode::Legacy,
            "legacy",
            "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_order' AND post_status <> 'trash'",
        ),
        (
            Mode::Hpos,
            "hpos",
            "SELECT COUNT(*) FROM wp_wc_orders WHERE type = 'shop_order' AND status <> 'trash'",
        ),
    ] {
        let (db, server) = store(&format!("woo_double_read_{name}"), mode).await;
        let (status, header, body) = get(&signed(&server, "/wp-json/wc/v3/orders", &[("per_page", "2")], SECRET)).await;
        assert_eq!(status, 200, "{name}: {body}");
        let total: u64 = db
            .pool
            .get_conn()
            .await
            .unwrap()
            .query_first(listed)
            .await
            .unwrap()
            .unwrap();
        assert!(total > 2);
        assert_eq!(
            (header("x-wp-total"), header("x-wp-totalpages")),
            (total.to_string(), total.div_ceil(2).to_string())
        );
        let link = header("link");
        assert!(
            link.starts_with(&format!("<{}/wp-json/wc/v3/orders?oauth_consumer_key=", server.url())),
            "{link}"
        );
        assert!(
            link.ends_with("&per_page=2&status%5B0%5D=any&dp=2&context=view&page=2>; rel=\"next\""),
            "{link}"
        );
        assert_eq!(header("allow"), "GET, POST");
        let list: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0]["date_created_gmt"].as_str() >= list[1]["date_created_gmt"].as_str());

        let id = list[0]["id"].as_u64().unwrap();
        let (status, _, body) = get(&signed(&server, &format!("/wp-json/wc/v3/orders/{id}"), &[], SECRET)).await;
        let order: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, &order), (200, &list[0]));
        let (email, first, last) = billing_in_store(&db, mode, id).await;
        let billing = &order["billing"];
        assert_eq!(
            (&billing["email"], &billing["first_name"], &billing["last_name"]),
            (&json!(email), &json!(first), &json!(last))
        );
        assert!(!order["status"].as_str().unwrap().starts_with("wc-"));
        assert!(
            keys(&order).iter().all(|k| order_sample.get(k).is_some()),
            "{name}: {:?}",
            keys(&order)
        );
        assert_eq!(keys(&order["billing"]), keys(&order_sample["billing"]));
        assert_eq!(keys(&order["shipping"]), keys(&order_sample["shipping"]));

        let sql = "SELECT u.ID, u.user_email, m.meta_value FROM wp_users u \
            JOIN wp_usermeta m ON m.user_id = u.ID AND m.meta_key = 'billing_city' ORDER BY u.ID LIMIT 1";
        let (user, user_email, city): (u64, String, String) = db.scalar(sql).await;
        let (status, _, body) = get(&signed(
            &server,
            &format!("/wp-json/wc/v3/customers/{user}"),
            &[],
            SECRET,
        ))
        .await;
        let customer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, &customer["email"], &customer["billing"]["city"]),
            (200, &json!(user_email), &json!(city))
        );
        assert!(
            keys(&customer).iter().all(|k| customer_sample.get(k).is_some()),
            "{:?}",
            keys(&customer)
        );
        let (status, _, body) = get(&signed(&server, "/wp-json/wc/v3/customers/999999", &[], SECRET)).await;
        let unknown = r#"{"code":"wc_user_invalid_id","message":"Invalid user ID.","data":{"status":404}}"#;
        assert_eq!((status, body.as_str()), (404, unknown));
        let (_, _, body) = get(&signed(&server, "/wp-json/wc/v3/system_status", &[], SECRET)).await;
        let system: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(system["settings"]["HPOS_enabled"], json!(mode == Mode::Hpos), "{name}");
        assert_eq!(system["environment"]["version"], "11.0.1");
        drop(server);
        db.drop().await;
    }
}

#[tokio::test]
async fn a_frozen_order_keeps_its_old_email_after_an_update() {
    let (db, server) = store("woo_double_frozen", Mode::Hpos).await;
    let mut conn = db.pool.get_conn().await.unwrap();
    let ids: Vec<u64> = conn
        .query("SELECT id FROM wp_wc_orders WHERE type = 'shop_order' ORDER BY id LIMIT 2")
        .await
        .unwrap();
    let (frozen, live) = (ids[0], ids[1]);
    let (old_email, _, _) = billing_in_store(&db, Mode::Hpos, frozen).await;
    server.freeze_order(frozen);
    let new_email = "changed@example.invalid";
    let updates = [
        "UPDATE wp_wc_orders SET billing_email = ? WHERE id IN (?, ?)",
        "UPDATE wp_wc_order_addresses SET email = ? WHERE order_id IN (?, ?) AND address_type = 'billing'",
    ];
    for sql in updates {
        conn.exec_drop(sql, (new_email, frozen, live)).await.unwrap();
    }
    drop(conn);
    for (id, expected) in [(frozen, old_email.as_str()), (live, new_email)] {
        let (status, _, body) = get(&signed(&server, &format!("/wp-json/wc/v3/orders/{id}"), &[], SECRET)).await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["billing"]["email"],
            expected,
            "order {id}"
        );
    }
    drop(server);
    db.drop().await;
}

#[tokio::test]
async fn plain_http_ignores_basic_auth_and_checks_oauth_like_woocommerce() {
    let server = WooServer::start(WooOptions::new(KEY, SECRET));
    let client = client().build().unwrap();
    let basic = |path: &str| {
        client
            .get(format!("{}{path}", server.url()))
            .basic_auth(KEY, Some(SECRET))
            .send()
    };
    let res = basic("/wp-json/wc/v3/orders").await.unwrap();
    let header = |name: &str| res.headers().get(name).map_or("", |v| v.to_str().unwrap()).to_string();
    assert_eq!(
        (res.status().as_u16(), header("vary"), header("allow")),
        (401, "Origin".into(), String::new())
    );
    assert_eq!(header("content-type"), "application/json; charset=UTF-8");
    assert_eq!(res.text().await.unwrap(), sample("http_basic_401.json"));
    // A missing order passes WooCommerce's permission check and 404s even for anonymous requests.
    let res = basic("/wp-json/wc/v3/orders/5").await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.text().await.unwrap()),
        (404, sample("not_found.json"))
    );
    let body = basic("/wp-json/wc/v3/nothing").await.unwrap().text().await.unwrap();
    assert_eq!(
        message(&body),
        "No route was found matching the URL and request method."
    );

    let (status, _, body) = get(&format!(
        "{}/wp-json/wc/v3/orders?oauth_consumer_key={KEY}",
        server.url()
    ))
    .await;
    let missing = "Missing OAuth parameters oauth_timestamp, oauth_nonce, oauth_signature, oauth_signature_method";
    assert_eq!((status, message(&body).as_str()), (401, missing));
    let (status, _, body) = get(&signed(&server, "/wp-json/wc/v3/orders", &[], "cs_wrong")).await;
    assert_eq!(
        (status, message(&body).as_str()),
        (401, "Invalid signature - provided signature does not match.")
    );
    let url = signed(&server, "/wp-json/wc/v3/system_status", &[], SECRET);
    let (status, header, _) = get(&url).await;
    assert_eq!((status, header("cache-control").contains("no-store")), (200, true));
    let (status, _, body) = get(&url).await;
    assert_eq!(
        (status, message(&body).as_str()),
        (401, "Invalid nonce - nonce has already been used.")
    );
    let (status, _, body) = get(&signed(
        &server,
        "/wp-json/wc/v3/orders",
        &[("per_page", "101")],
        SECRET,
    ))
    .await;
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, error["code"].as_str()), (400, Some("rest_invalid_param")));
    assert_eq!(
        error["data"]["params"]["per_page"],
        "per_page must be between 1 (inclusive) and 100 (inclusive)"
    );

    let seen = server.seen();
    assert_eq!(seen[0].basic_auth_user.as_deref(), Some(KEY));
    assert_eq!(
        (seen[0].path.as_str(), seen[0].oauth, seen[0].status),
        ("/wp-json/wc/v3/orders", false, 401)
    );
    assert!(
        seen[4].oauth
            && seen[4]
                .query
                .iter()
                .any(|(k, v)| k == "oauth_signature_method" && v == "HMAC-SHA256")
    );
}

#[tokio::test]
async fn https_with_the_ca_file_takes_basic_auth_and_query_keys() {
    let mut options = WooOptions::new(KEY, SECRET);
    options.tls = true;
    let server = WooServer::start(options);
    assert!(server.url().starts_with("https://localhost:"));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(server.ca_file().unwrap()).unwrap()).unwrap();
    let client = client().add_root_certificate(ca).build().unwrap();
    let url = format!(
        "{}/wp-json/wc/v3/system_status?_fields=environment,database",
        server.url()
    );
    let res = client.get(&url).basic_auth(KEY, Some(SECRET)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let status: Value = res.json().await.unwrap();
    assert_eq!(keys(&status), ["database", "environment"]);
    assert_eq!(status["environment"]["home_url"], server.url());
    let res = client.get(&url).basic_auth(KEY, Some("cs_wrong")).send().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), res.text().await.unwrap()),
        (401, sample("bad_secret_401.json"))
    );

    server.edit_system_status(|v| v["environment"]["external_object_cache"] = json!(true));
    let by_query = format!(
        "{}/wp-json/wc/v3/system_status?consumer_key={KEY}&consumer_secret={SECRET}",
        server.url()
    );
    let status: Value = client.get(&by_query).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (
            &status["environment"]["external_object_cache"],
            &status["settings"]["currency"]
        ),
        (&json!(true), &json!("EUR"))
    );
}

#[tokio::test]
async fn faults_answer_the_next_requests_in_order() {
    let server = WooServer::start(WooOptions::new(KEY, SECRET));
    let hang = Fault::Hang(Duration::from_millis(500));
    server.push_faults([Fault::Status(429), Fault::Status(500), Fault::Malformed, hang]);
    let url = format!("{}/wp-json/wc/v3/system_status", server.url());
    let (status, header, body) = get(&url).await;
    assert_eq!((status, header("retry-after")), (429, "1".into()));
    assert!(body.contains("<title>429 Too Many Requests</title>"), "{body}");
    let (status, _, body) = get(&url).await;
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, &error["code"], &error["data"]["status"]),
        (500, &json!("internal_server_error"), &json!(500))
    );
    assert!(error["message"]
        .as_str()
        .unwrap()
        .starts_with("<p>There has been a critical error on this website.</p>"));
    let (status, header, body) = get(&url).await;
    assert_eq!(
        (status, header("content-type")),
        (200, "application/json; charset=UTF-8".into())
    );
    assert!(serde_json::from_str::<Value>(&body).is_err());
    let impatient = client().timeout(Duration::from_millis(100)).build().unwrap();
    assert!(impatient.get(&url).send().await.unwrap_err().is_timeout());
    let (status, _, _) = get(&signed(&server, "/wp-json/wc/v3/system_status", &[], SECRET)).await;
    assert_eq!(status, 200);
    let statuses: Vec<u16> = server.seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [429, 500, 200, 0, 200]);
}
