//! A local stand-in for the WooCommerce REST API v3 (WooCommerce 11 on WordPress 7 behind
//! nginx), for the REST client's tests. It reads orders, customers and options of a store in
//! the test database the way WooCommerce does and answers with WooCommerce's shapes, headers
//! and error bodies (`tests/data/woo/` holds real ones). Authentication follows
//! `WC_REST_Authentication`: basic auth or `consumer_key`/`consumer_secret` over HTTPS only,
//! one-legged OAuth 1.0a otherwise, verified here independently of the client.
//! Deliberately small: GET routes only, orders without line items, meta values served as
//! stored (never unserialized), `_fields` on top-level keys only.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{NaiveDateTime, TimeZone as _};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use mysql_async::prelude::Queryable;
use serde_json::{json, Map, Value};
use sha2::Digest as _;

const SYSTEM_STATUS: &str = include_str!("../data/woo/system_status.json");
const NOT_FOUND: &str = include_str!("../data/woo/not_found.json");
const BAD_SECRET: &str = include_str!("../data/woo/bad_secret_401.json");
const CANNOT_LIST: &str = include_str!("../data/woo/http_basic_401.json");
const NGINX: &str = "nginx/1.22.1";
const JSON_TYPE: &str = "application/json; charset=UTF-8";
const NO_CACHE: [(&str, &str); 2] = [
    ("Expires", "Wed, 11 Jan 1984 05:00:00 GMT"),
    (
        "Cache-Control",
        "no-cache, must-revalidate, max-age=0, no-store, private",
    ),
];
const AUTH_ERROR: &str = "woocommerce_rest_authentication_error";
const OAUTH_PARAMS: &str = "oauth_consumer_key oauth_timestamp oauth_nonce oauth_signature oauth_signature_method";
const ADDRESS: &str = "first_name last_name company address_1 address_2 city state postcode country email phone";
/// WordPress's message for a PHP fatal error (`WP_Fatal_Error_Handler`), sent by wp_die as JSON.
const CRITICAL: &str = "<p>There has been a critical error on this website.</p><p><a href=\"https://wordpress.org/\
    documentation/article/faq-troubleshooting/\">Learn more about troubleshooting WordPress.</a></p>";
/// Order meta the order data stores keep as properties, never in `meta_data` (with `_billing_*`
/// and `_shipping_*` address fields).
const ORDER_INTERNAL: &str = "_order_key _customer_user _payment_method _payment_method_title _transaction_id \
    _customer_ip_address _customer_user_agent _created_via _date_completed _completed_date _date_paid _paid_date \
    _cart_hash _order_currency _cart_discount _cart_discount_tax _order_shipping _order_shipping_tax _order_tax \
    _order_total _order_version _prices_include_tax _recorded_sales _recorded_coupon_usage_counts \
    _download_permissions_granted _order_stock_reduced _new_order_email_sent _billing_address_index \
    _shipping_address_index _edit_lock _edit_last";
/// `WC_Customer_Data_Store::$internal_meta_keys`.
const CUSTOMER_INTERNAL: &str = "locale billing_postcode billing_city billing_address_1 billing_address_2 \
    billing_state billing_country shipping_postcode shipping_city shipping_address_1 shipping_address_2 \
    shipping_state shipping_country paying_customer last_update first_name last_name display_name \
    show_admin_bar_front use_ssl admin_color rich_editing comment_shortcuts dismissed_wp_pointers show_welcome_panel \
    session_tokens nickname description billing_first_name billing_last_name billing_company billing_phone \
    billing_email shipping_first_name shipping_last_name shipping_company shipping_phone wptests_capabilities \
    wptests_user_level syntax_highlighting _order_count _money_spent _last_order _woocommerce_tracks_anon_id";

pub struct WooOptions {
    /// Serve HTTPS with a fresh self-signed CA (rcgen); its PEM is written to a temp file, see `ca_file`.
    pub tls: bool,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// The store behind the API: a mysql:// URL including the database, and the table prefix.
    /// None: only /system_status (the sample as is) and the fault/404 behaviour work.
    pub store: Option<(String, String)>,
}

impl WooOptions {
    pub fn new(key: &str, secret: &str) -> WooOptions {
        let (consumer_key, consumer_secret) = (key.to_string(), secret.to_string());
        WooOptions {
            tls: false,
            consumer_key,
            consumer_secret,
            store: None,
        }
    }
}

pub enum Fault {
    /// 429: nginx's HTML page with `Retry-After: 1`; 500: WordPress's critical-error JSON;
    /// any other status: nginx's HTML page for it.
    Status(u16),
    /// Accept the request, answer nothing for this long, then close the connection.
    Hang(Duration),
    /// 200 with Content-Type JSON but a truncated body.
    Malformed,
}

/// One request as the double saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Decoded, in order, duplicates kept.
    pub query: Vec<(String, String)>,
    pub basic_auth_user: Option<String>,
    /// Carried oauth_* parameters (query or `Authorization: OAuth`).
    pub oauth: bool,
    /// 0 for a request answered with [`Fault::Hang`].
    pub status: u16,
}

type Props = HashMap<String, String>;
type DbResult<T> = Result<T, mysql_async::Error>;

struct Shared {
    home: String,
    tls: bool,
    key: String,
    secret: String,
    prefix: String,
    pool: Option<mysql_async::Pool>,
    state: Mutex<State>,
    /// Created by [`WooServer::flush_command`]: a cache flush.
    flush_flag: std::path::PathBuf,
    _flush_dir: tempfile::TempDir,
}

#[derive(Default)]
struct State {
    faults: VecDeque<Fault>,
    frozen: HashMap<(&'static str, u64), Option<Value>>,
    /// The system_status sample as edited by the test, if it was.
    status: Option<Value>,
    nonces: HashSet<String>,
    seen: Vec<Seen>,
}

impl State {
    /// `flush_command` was run since the last request: the object cache is empty.
    fn flush_if_asked(&mut self, flag: &std::path::Path) {
        if std::fs::remove_file(flag).is_ok() {
            self.frozen.clear();
        }
    }
}

pub struct WooServer {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    ca: Option<tempfile::NamedTempFile>,
}

impl WooServer {
    /// Starts on 127.0.0.1 with a free port, on its own thread and tokio runtime; stops when dropped.
    pub fn start(options: WooOptions) -> WooServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the WooCommerce double");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (acceptor, ca) = match options.tls {
            true => tls_config(),
            false => (None, None),
        };
        let (store, prefix) = options.store.unwrap_or_default();
        let flush_dir = tempfile::tempdir().unwrap();
        let shared = Arc::new(Shared {
            home: match options.tls {
                true => format!("https://localhost:{port}"),
                false => format!("http://127.0.0.1:{port}"),
            },
            tls: options.tls,
            key: options.consumer_key,
            secret: options.consumer_secret,
            prefix: if store.is_empty() { "wp_".to_string() } else { prefix },
            pool: (!store.is_empty()).then(|| mysql_async::Pool::new(store.as_str())),
            state: Mutex::default(),
            flush_flag: flush_dir.path().join("flushed"),
            _flush_dir: flush_dir,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        Ok((stream, _)) = listener.accept() => drop(tokio::spawn(serve(sh.clone(), acceptor.clone(), stream))),
                    }
                }
                if let Some(pool) = sh.pool.clone() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), pool.disconnect()).await;
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
        });
        WooServer {
            shared,
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
            ca,
        }
    }

    /// `http://127.0.0.1:PORT` or `https://localhost:PORT` (cert valid for localhost and 127.0.0.1).
    pub fn url(&self) -> String {
        self.shared.home.clone()
    }

    pub fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.ca.as_ref().map(|f| f.path().to_path_buf())
    }

    /// The next requests (any route) are answered with these faults, in order, one each.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.state.lock().unwrap().faults.extend(faults);
    }

    /// A persistent object cache: the order's JSON as the store holds it now is served from
    /// now on, whatever the database later says (an absent order stays absent).
    pub fn freeze_order(&self, id: u64) {
        self.freeze("orders", id);
    }

    pub fn freeze_customer(&self, id: u64) {
        self.freeze("customers", id);
    }

    /// Reads on the double's own runtime, so a `#[tokio::test]` can call it.
    fn freeze(&self, kind: &'static str, id: u64) {
        let (tx, rx) = std::sync::mpsc::channel();
        let sh = self.shared.clone();
        self.runtime
            .spawn(async move { tx.send(load(&sh, kind, id).await.map_err(|e| e.to_string())) });
        let value = rx.recv().unwrap().unwrap_or_else(|e| panic!("freeze {kind} {id}: {e}"));
        self.shared.state.lock().unwrap().frozen.insert((kind, id), value);
    }

    /// Edits the system_status body served from now on: the edit applies to WooCommerce's sample;
    /// the values taken from the store (versions, prefix, HPOS settings) replace only values the
    /// edits left as they were.
    pub fn edit_system_status(&self, edit: impl FnOnce(&mut Value) + Send + 'static) {
        let mut state = self.shared.state.lock().unwrap();
        edit(state.status.get_or_insert_with(|| status_sample(&self.shared.home)));
    }

    /// A command that empties the object cache (unfreezes everything), like `wp cache flush`.
    pub fn flush_command(&self) -> Vec<String> {
        vec!["touch".into(), self.shared.flush_flag.display().to_string()]
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.state.lock().unwrap().seen.clone()
    }
}

impl Drop for WooServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A CA and a leaf for localhost and 127.0.0.1 signed by it; the CA's PEM in a temp file.
fn tls_config() -> (Option<tokio_rustls::TlsAcceptor>, Option<tempfile::NamedTempFile>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    use tokio_rustls::rustls::{pki_types::PrivatePkcs8KeyDer, ServerConfig};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "wc-retention test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ca.pem()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let key = PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into();
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))), Some(file))
}

async fn serve(sh: Arc<Shared>, tls: Option<tokio_rustls::TlsAcceptor>, stream: tokio::net::TcpStream) {
    let service = hyper::service::service_fn(move |req| handle(sh.clone(), req));
    let http = hyper::server::conn::http1::Builder::new();
    let _ = match tls {
        Some(tls) => match tls.accept(stream).await {
            Ok(stream) => {
                http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await
            }
            Err(_) => Ok(()),
        },
        None => {
            http.serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
        }
    };
}

struct Reply {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn raw(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.trim().to_string(),
            headers: Vec::new(),
        }
    }

    fn json(status: u16, body: &Value) -> Reply {
        Reply::raw(status, &php_json(body))
    }

    fn header(mut self, name: &'static str, value: impl ToString) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// A `WP_Error` as the REST server sends it, in WordPress's key order.
fn wp_error(status: u16, code: &str, message: &str) -> Reply {
    let (code, message) = (php_json(&json!(code)), php_json(&json!(message)));
    Reply::raw(
        status,
        &format!(r#"{{"code":{code},"message":{message},"data":{{"status":{status}}}}}"#),
    )
}

async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (basic, oauth_header) = (basic_credentials(authorization), oauth_header_params(authorization));
    let query = parse_query(req.uri().query().unwrap_or(""));
    let mut seen = Seen {
        method: req.method().as_str().to_string(),
        path: req.uri().path().to_string(),
        basic_auth_user: basic.as_ref().map(|(user, _)| user.clone()),
        oauth: !oauth_header.is_empty() || query.iter().any(|(k, _)| k.starts_with("oauth_")),
        query,
        status: 0,
    };
    let fault = {
        let mut state = sh.state.lock().unwrap();
        state.flush_if_asked(&sh.flush_flag);
        state.faults.pop_front()
    };
    let reply = match fault {
        Some(Fault::Hang(time)) => {
            sh.state.lock().unwrap().seen.push(seen);
            tokio::time::sleep(time).await;
            return Err(std::io::Error::other("the worker hung"));
        }
        Some(Fault::Status(status)) => fault_reply(status),
        Some(Fault::Malformed) => Reply::raw(200, r#"{"id":12,"billing":{"#)
            .header("Server", NGINX)
            .header("Content-Type", JSON_TYPE),
        None => match authenticate(&sh, &seen, basic, oauth_header) {
            Err(reply) => wordpress_headers(reply, &sh.home, false),
            Ok(authed) => match route(&sh, &seen, authed).await {
                Ok(reply) => wordpress_headers(reply, &sh.home, authed),
                Err(e) => {
                    eprintln!("WooCommerce double: reading the store failed: {e}");
                    fault_reply(500)
                }
            },
        },
    };
    seen.status = reply.status;
    sh.state.lock().unwrap().seen.push(seen);
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    Ok(response.body(Full::new(Bytes::from(reply.body))).unwrap())
}

fn fault_reply(status: u16) -> Reply {
    if status == 500 {
        let body = json!({"code": "internal_server_error", "message": CRITICAL, "data": {"status": 500},
            "additional_errors": []});
        let reply = Reply::json(500, &body)
            .header("Server", NGINX)
            .header("Content-Type", JSON_TYPE);
        return NO_CACHE
            .into_iter()
            .fold(reply, |r, (name, value)| r.header(name, value));
    }
    let reason = match status {
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error"),
    };
    let title = format!("{status} {reason}");
    let body = format!("<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{NGINX}</center>\r\n</body>\r\n</html>");
    let reply = Reply::raw(status, &body)
        .header("Server", NGINX)
        .header("Content-Type", "text/html");
    match status {
        429 => reply.header("Retry-After", 1),
        _ => reply,
    }
}

/// The headers WordPress and nginx add to every REST answer: signed-in requests get nocache
/// headers and `Allow`; anonymous GETs get `Vary: Origin` (rest_send_cors_headers).
fn wordpress_headers(mut reply: Reply, home: &str, authed: bool) -> Reply {
    let mut headers = vec![("Server", NGINX.to_string()), ("Content-Type", JSON_TYPE.to_string())];
    headers.push(("X-Robots-Tag", "noindex".into()));
    if !reply.headers.iter().any(|(name, _)| *name == "Link") {
        headers.push(("Link", format!("<{home}/wp-json/>; rel=\"https://api.w.org/\"")));
    }
    headers.push(("X-Content-Type-Options", "nosniff".into()));
    headers.push((
        "Access-Control-Expose-Headers",
        "X-WP-Total, X-WP-TotalPages, Link".into(),
    ));
    let allowed = "Authorization, X-WP-Nonce, Content-Disposition, Content-MD5, Content-Type";
    headers.push(("Access-Control-Allow-Headers", allowed.into()));
    headers.extend(reply.headers.drain(..).filter(|(name, _)| authed || *name != "Allow"));
    match authed {
        true => headers.extend(NO_CACHE.map(|(name, value)| (name, value.to_string()))),
        false => headers.push(("Vary", "Origin".into())),
    }
    reply.headers = headers;
    reply
}

/// `WC_REST_Authentication::authenticate`: Ok(true) signed in, Ok(false) anonymous, Err the 401.
fn authenticate(
    sh: &Shared,
    seen: &Seen,
    basic: Option<(String, String)>,
    header: Vec<(String, String)>,
) -> Result<bool, Reply> {
    let get = |k: &str| last(&seen.query, k).unwrap_or("").to_string();
    let mut error = None;
    if sh.tls {
        let (key, secret) = match !php_empty(&get("consumer_key")) && !php_empty(&get("consumer_secret")) {
            true => (get("consumer_key"), get("consumer_secret")),
            false => basic.unwrap_or_default(),
        };
        // An unknown key sets no error: the request goes on as anonymous.
        if !php_empty(&key) && !php_empty(&secret) && key == sh.key {
            if secret == sh.secret {
                return Ok(true);
            }
            error = Some(Reply::raw(401, BAD_SECRET));
        }
    }
    let mut params: BTreeMap<String, String> = seen.query.iter().cloned().collect();
    params.extend(header);
    match oauth(sh, &seen.method, &format!("{}{}", sh.home, seen.path), &params) {
        None => error.map_or(Ok(false), Err),
        Some(result) => result.map(|()| true),
    }
}

/// `perform_oauth_authentication`: None when the request carries no OAuth parameter at all.
fn oauth(sh: &Shared, method: &str, url: &str, params: &BTreeMap<String, String>) -> Option<Result<(), Reply>> {
    let missing: Vec<&str> = OAUTH_PARAMS
        .split(' ')
        .filter(|k| params.get(*k).is_none_or(|v| php_empty(v)))
        .collect();
    if missing.len() == 5 {
        return None;
    }
    let fail = |code: &str, message: &str| Some(Err(wp_error(401, code, message)));
    if !missing.is_empty() {
        let (s, list) = (if missing.len() == 1 { "" } else { "s" }, missing.join(", "));
        return fail(
            "woocommerce_rest_authentication_missing_parameter",
            &format!("Missing OAuth parameter{s} {list}"),
        );
    }
    if params["oauth_consumer_key"] != sh.key {
        return fail(AUTH_ERROR, "Consumer key is invalid.");
    }
    if let Err(message) = verify_oauth_signature(method, url, params, &sh.secret) {
        return fail(AUTH_ERROR, message);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if !params["oauth_timestamp"]
        .parse::<i64>()
        .is_ok_and(|t| (t - now).abs() <= 15 * 60)
    {
        return fail(AUTH_ERROR, "Invalid timestamp.");
    }
    if !sh.state.lock().unwrap().nonces.insert(params["oauth_nonce"].clone()) {
        return fail(AUTH_ERROR, "Invalid nonce - nonce has already been used.");
    }
    Some(Ok(()))
}

/// `check_oauth_signature`: `params` are the decoded request parameters, `oauth_signature`
/// included; `url` is the home URL followed by the request path.
pub fn verify_oauth_signature(
    method: &str,
    url: &str,
    params: &BTreeMap<String, String>,
    secret: &str,
) -> Result<(), &'static str> {
    let provided = decode(
        &params
            .get("oauth_signature")
            .cloned()
            .unwrap_or_default()
            .replace(' ', "+"),
        false,
    );
    let base = signature_base_string(method, url, params);
    let algorithm = params.get("oauth_signature_method").map_or("", String::as_str);
    let mac = hmac(algorithm, format!("{secret}&").as_bytes(), base.as_bytes());
    match mac.map(|mac| base64::engine::general_purpose::STANDARD.encode(mac) == provided) {
        None => Err("Invalid signature - signature method is invalid."),
        Some(false) => Err("Invalid signature - provided signature does not match."),
        Some(true) => Ok(()),
    }
}

/// METHOD&rawurlencode(url)&, then every parameter but oauth_signature sorted by key (strcmp),
/// key and value rawurlencoded, each `key=value` rawurlencoded again, joined with `%26`.
pub fn signature_base_string(method: &str, url: &str, params: &BTreeMap<String, String>) -> String {
    let pairs = params.iter().filter(|(k, _)| *k != "oauth_signature");
    let pairs: Vec<String> = pairs
        .map(|(k, v)| rawurlencode(&format!("{}={}", rawurlencode(k), rawurlencode(v))))
        .collect();
    format!("{}&{}&{}", method.to_uppercase(), rawurlencode(url), pairs.join("%26"))
}

/// HMAC-SHA1 or HMAC-SHA256 (`oauth_signature_method` names); None for any other method.
pub fn hmac(method: &str, key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    use hmac::{Hmac, Mac};
    fn digest<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match method {
        "HMAC-SHA1" => Some(digest::<Hmac<sha1::Sha1>>(key, message)),
        "HMAC-SHA256" => Some(digest::<Hmac<sha2::Sha256>>(key, message)),
        _ => None,
    }
}

/// PHP's rawurlencode (RFC 3986).
pub fn rawurlencode(s: &str) -> String {
    percent_encode(s, false)
}

/// `form`: PHP's urlencode, as add_query_arg uses it (space as `+`, `~` encoded).
fn percent_encode(s: &str, form: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            b'~' if !form => out.push('~'),
            b' ' if form => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// PHP's urldecode (`plus`: `+` is a space) or rawurldecode.
fn decode(s: &str, plus: bool) -> String {
    let (bytes, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 2;
            }
            (b'+', _) if plus => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(raw: &str) -> Vec<(String, String)> {
    let pairs = raw.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(k, v)| (decode(k, true), decode(v, true)))
        .collect()
}

/// PHP's `$_GET[$k]`: the last value given.
fn last<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// PHP's `empty()` of a string.
fn php_empty(s: &str) -> bool {
    s.is_empty() || s == "0"
}

fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.split_once(' ')?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    scheme
        .eq_ignore_ascii_case("basic")
        .then(|| (user.to_string(), password.to_string()))
}

/// `WC_REST_Authentication::parse_header`: the oauth_* pairs of `Authorization: OAuth ...`.
fn oauth_header_params(authorization: &str) -> Vec<(String, String)> {
    let Some(rest) = authorization.trim().strip_prefix("OAuth ") else {
        return Vec::new();
    };
    let pairs = rest
        .split(',')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| k.starts_with("oauth_"));
    pairs
        .map(|(k, v)| (k.to_string(), decode(v.trim_matches('"'), true)))
        .collect()
}

/// PHP's json_encode as wp_json_encode calls it: `/` and non-ASCII escaped.
fn php_json(v: &Value) -> String {
    let mut out = String::new();
    for c in v.to_string().chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if !c.is_ascii() => c
                .encode_utf16(&mut [0; 2])
                .iter()
                .for_each(|u| out.push_str(&format!("\\u{u:04x}"))),
            c => out.push(c),
        }
    }
    out
}

async fn route(sh: &Shared, seen: &Seen, authed: bool) -> DbResult<Reply> {
    let route = seen.path.strip_prefix("/wp-json/").unwrap_or("").trim_end_matches('/');
    let parts: Vec<&str> = route.split('/').collect();
    let id = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let cannot_view = || {
        wp_error(
            401,
            "woocommerce_rest_cannot_view",
            "Sorry, you cannot view this resource.",
        )
    };
    let item = |v: Value| Reply::json(200, &fields(v, &seen.query)).header("Allow", "GET, POST, PUT, PATCH, DELETE");
    Ok(match (seen.method.as_str(), parts.as_slice()) {
        ("GET", ["wc", "v3", "system_status"]) if authed => {
            Reply::json(200, &fields(system_status(sh).await?, &seen.query)).header("Allow", "GET")
        }
        ("GET", ["wc", "v3", "system_status"]) => Reply::raw(401, CANNOT_LIST),
        ("GET", ["wc", "v3", "orders"]) => collection(sh, seen, authed, "orders").await?,
        ("GET", ["wc", "v3", "customers"]) => collection(sh, seen, authed, "customers").await?,
        // A missing order passes the permission check (WC_REST_CRUD_Controller), then 404s.
        ("GET", ["wc", "v3", "orders", n]) if id(n).is_some() => match lookup(sh, "orders", id(n).unwrap()).await? {
            None => Reply::raw(404, NOT_FOUND).header("Allow", "GET, POST, PUT, PATCH, DELETE"),
            Some(_) if !authed => cannot_view(),
            Some(order) => item(order),
        },
        // Users::get_user_in_current_site fails in the permission check, whoever asks.
        ("GET", ["wc", "v3", "customers", n]) if id(n).is_some() => {
            match lookup(sh, "customers", id(n).unwrap()).await? {
                None => wp_error(404, "wc_user_invalid_id", "Invalid user ID."),
                Some(_) if !authed => cannot_view(),
                Some(customer) => item(customer),
            }
        }
        _ => wp_error(
            404,
            "rest_no_route",
            "No route was found matching the URL and request method.",
        ),
    })
}

/// WordPress's `_fields`, top-level keys only.
fn fields(v: Value, query: &[(String, String)]) -> Value {
    let (Some(list), Value::Object(map)) = (last(query, "_fields"), &v) else {
        return v;
    };
    let wanted: Vec<&str> = list
        .split(',')
        .map(|f| f.trim().split('.').next().unwrap_or(""))
        .collect();
    Value::Object(
        map.iter()
            .filter(|(k, _)| wanted.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

async fn collection(sh: &Shared, seen: &Seen, authed: bool, kind: &'static str) -> DbResult<Reply> {
    let q = &seen.query;
    let mut invalid = (Map::new(), Map::new());
    let page = int_param(q, "page", 1, None, &mut invalid);
    let per_page = int_param(q, "per_page", 10, Some(100), &mut invalid);
    if !invalid.0.is_empty() {
        let names = invalid.0.keys().cloned().collect::<Vec<_>>().join(", ");
        let data = json!({"status": 400, "params": invalid.0, "details": invalid.1});
        let body =
            json!({"code": "rest_invalid_param", "message": format!("Invalid parameter(s): {names}"), "data": data});
        return Ok(Reply::json(400, &body));
    }
    if !authed {
        return Ok(Reply::raw(401, CANNOT_LIST));
    }
    let (ids, total) = collection_ids(sh, kind, q, per_page, page).await?;
    let mut items = Vec::new();
    for id in ids {
        items.extend(lookup(sh, kind, id).await?.map(|o| fields(o, q)));
    }
    let pages = total.div_ceil(per_page);
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!(
            "<{}>; rel=\"prev\"",
            page_link(&sh.home, kind, q, (page - 1).min(pages))
        ));
    }
    if pages > page {
        links.push(format!("<{}>; rel=\"next\"", page_link(&sh.home, kind, q, page + 1)));
    }
    let mut reply = Reply::json(200, &Value::Array(items))
        .header("X-WP-Total", total)
        .header("X-WP-TotalPages", pages);
    if !links.is_empty() {
        reply = reply.header("Link", links.join(", "));
    }
    Ok(reply.header("Allow", "GET, POST"))
}

/// An integer parameter as WordPress validates it against the route's schema (minimum 1).
fn int_param(
    q: &[(String, String)],
    name: &str,
    default: u64,
    max: Option<i64>,
    invalid: &mut (Map<String, Value>, Map<String, Value>),
) -> u64 {
    let Some(raw) = last(q, name) else { return default };
    let (code, message) = match (raw.parse::<i64>(), max) {
        (Err(_), _) => ("rest_invalid_type", format!("{name} is not of type integer.")),
        (Ok(n), Some(m)) if n < 1 || n > m => (
            "rest_out_of_bounds",
            format!("{name} must be between 1 (inclusive) and {m} (inclusive)"),
        ),
        (Ok(n), None) if n < 1 => (
            "rest_out_of_bounds",
            format!("{name} must be greater than or equal to 1"),
        ),
        (Ok(n), _) => return n as u64,
    };
    invalid.0.insert(name.to_string(), json!(message));
    // rest_validate_value_from_schema: a type error carries the parameter, a range error nothing.
    let data = if code == "rest_invalid_type" {
        json!({"param": name})
    } else {
        Value::Null
    };
    invalid.1.insert(
        name.to_string(),
        json!({"code": code, "message": message, "data": data}),
    );
    default
}

/// The collection link WC_REST_CRUD_Controller::get_items builds: the request's query
/// parameters, the defaults the orders controller sets, `page` replaced.
fn page_link(home: &str, kind: &str, q: &[(String, String)], page: u64) -> String {
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in q {
        match params.iter_mut().find(|(pk, _)| pk == k) {
            Some(p) => p.1 = v.clone(),
            None => params.push((k.clone(), v.clone())),
        }
    }
    let base = |key: &str| key.split('[').next().unwrap_or("").to_string();
    let defaults: &[(&str, &str)] = match kind {
        "orders" => &[("status[0]", "any"), ("dp", "2"), ("context", "view")],
        _ => &[("context", "view")],
    };
    for &(k, v) in defaults {
        if !params.iter().any(|(pk, _)| base(pk) == base(k)) {
            params.push((k.to_string(), v.to_string()));
        }
    }
    match params.iter_mut().find(|(k, _)| k == "page") {
        Some(p) => p.1 = page.to_string(),
        None => params.push(("page".into(), page.to_string())),
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k, true), percent_encode(v, true)))
        .collect();
    format!("{home}/wp-json/wc/v3/{kind}?{}", query.join("&"))
}

fn status_sample(home: &str) -> Value {
    let mut v: Value = serde_json::from_str(SYSTEM_STATUS).unwrap();
    v["environment"]["home_url"] = json!(home);
    v["environment"]["site_url"] = json!(home);
    v
}

async fn system_status(sh: &Shared) -> DbResult<Value> {
    let sample = status_sample(&sh.home);
    let mut v = sh
        .state
        .lock()
        .unwrap()
        .status
        .clone()
        .unwrap_or_else(|| sample.clone());
    let Some((_, o)) = open(sh).await? else { return Ok(v) };
    let opt = |k: &str| o.get(k).cloned().unwrap_or_default();
    let hpos = opt("woocommerce_custom_orders_table_enabled") == "yes";
    let store = opt("woocommerce_custom_orders_table_data_sync_enabled") == "yes";
    let datastore = match hpos {
        true => "Automattic\\WooCommerce\\Internal\\DataStores\\Orders\\OrdersTableDataStore",
        false => "WC_Order_Data_Store_CPT",
    };
    let mut tables = sample["database"]["database_tables"].clone();
    for group in tables.as_object_mut().into_iter().flat_map(|t| t.values_mut()) {
        let Some(group) = group.as_object_mut() else { continue };
        let renamed = std::mem::take(group).into_iter();
        *group = renamed
            .map(|(k, t)| {
                (
                    k.strip_prefix("wp_").map_or(k.clone(), |r| format!("{}{r}", sh.prefix)),
                    t,
                )
            })
            .collect();
    }
    let from_store = [
        ("/environment/version", json!(opt("woocommerce_version"))),
        ("/database/wc_database_version", json!(opt("woocommerce_db_version"))),
        ("/database/database_prefix", json!(sh.prefix)),
        ("/database/database_tables", tables),
        ("/settings/HPOS_enabled", json!(hpos)),
        ("/settings/HPOS_sync_enabled", json!(store)),
        ("/settings/order_datastore", json!(datastore)),
    ];
    for (pointer, value) in from_store {
        if v.pointer(pointer) == sample.pointer(pointer) {
            v.pointer_mut(pointer)
                .into_iter()
                .for_each(|slot| *slot = value.clone());
        }
    }
    Ok(v)
}

/// A frozen copy if there is one, else the store's current state.
async fn lookup(sh: &Shared, kind: &'static str, id: u64) -> DbResult<Option<Value>> {
    let frozen = sh.state.lock().unwrap().frozen.get(&(kind, id)).cloned();
    match frozen {
        Some(frozen) => Ok(frozen),
        None => load(sh, kind, id).await,
    }
}

async fn load(sh: &Shared, kind: &'static str, id: u64) -> DbResult<Option<Value>> {
    let Some((mut conn, opts)) = open(sh).await? else {
        return Ok(None);
    };
    match kind {
        "orders" => load_order(sh, &mut conn, &opts, id).await,
        _ => load_customer(sh, &mut conn, &opts, id).await,
    }
}

/// A connection and the options the double needs, when there is a store.
async fn open(sh: &Shared) -> DbResult<Option<(mysql_async::Conn, Props)>> {
    let Some(pool) = &sh.pool else { return Ok(None) };
    let mut conn = pool.get_conn().await?;
    let names = "'woocommerce_version', 'woocommerce_db_version', 'woocommerce_custom_orders_table_enabled', \
        'woocommerce_custom_orders_table_data_sync_enabled', 'timezone_string', 'gmt_offset'";
    let sql = format!(
        "SELECT option_name, option_value FROM {}options WHERE option_name IN ({names})",
        sh.prefix
    );
    let rows = rows(&mut conn, sql, ()).await?;
    Ok(Some((
        conn,
        rows.into_iter()
            .map(|r| (r["option_name"].clone(), r["option_value"].clone()))
            .collect(),
    )))
}

/// Rows as column name → text (NULL as "", dates as MySQL writes them).
async fn rows(
    conn: &mut mysql_async::Conn,
    sql: String,
    params: impl Into<mysql_async::Params> + Send,
) -> DbResult<Vec<Props>> {
    use mysql_async::Value as V;
    let text = |v: V| match v {
        V::NULL | V::Time(..) => String::new(),
        V::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        V::Int(n) => n.to_string(),
        V::UInt(n) => n.to_string(),
        V::Float(f) => f.to_string(),
        V::Double(f) => f.to_string(),
        V::Date(y, mo, d, h, mi, s, _) => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
    };
    let rows: Vec<mysql_async::Row> = conn.exec(sql, params).await?;
    let named = |row: mysql_async::Row| {
        let names: Vec<String> = row.columns_ref().iter().map(|c| c.name_str().into_owned()).collect();
        names.into_iter().zip(row.unwrap().into_iter().map(text)).collect()
    };
    Ok(rows.into_iter().map(named).collect())
}

fn hpos(opts: &Props) -> bool {
    opts.get("woocommerce_custom_orders_table_enabled")
        .is_some_and(|v| v == "yes")
}

/// The ids of one page of a collection and the collection's size. Orders: status "any"
/// (every status but trash and drafts), newest first; customers: the `customer` role unless
/// `role=all`, by id. Both honour `include` (`1,2` or `include[]=1`).
async fn collection_ids(
    sh: &Shared,
    kind: &str,
    q: &[(String, String)],
    per_page: u64,
    page: u64,
) -> DbResult<(Vec<u64>, u64)> {
    let Some((mut conn, opts)) = open(sh).await? else {
        return Ok((Vec::new(), 0));
    };
    let p = &sh.prefix;
    let include: Vec<u64> = q
        .iter()
        .filter(|(k, _)| k == "include" || k.starts_with("include["))
        .flat_map(|(_, v)| {
            v.split(',')
                .filter_map(|id| id.trim().parse().ok())
                .collect::<Vec<u64>>()
        })
        .collect();
    let (id, mut from, order) = match (kind, hpos(&opts)) {
        ("orders", true) => (
            "id",
            format!("{p}wc_orders WHERE type = 'shop_order' AND status NOT IN ('trash', 'auto-draft', 'draft')"),
            "date_created_gmt DESC, id DESC",
        ),
        ("orders", false) => (
            "ID",
            format!("{p}posts WHERE post_type = 'shop_order' AND post_status NOT IN ('trash', 'auto-draft')"),
            "post_date DESC, ID DESC",
        ),
        _ => {
            let role = match last(q, "role") {
                Some("all") => String::new(),
                other => format!(
                    " AND ID IN (SELECT user_id FROM {p}usermeta WHERE meta_key = '{p}capabilities' AND meta_value LIKE '%\"{}\"%')",
                    other.unwrap_or("customer").replace(['\'', '"', '%', '\\'], "")
                ),
            };
            ("ID", format!("{p}users WHERE 1 = 1{role}"), "ID ASC")
        }
    };
    if !include.is_empty() {
        let list: Vec<String> = include.iter().map(u64::to_string).collect();
        from.push_str(&format!(" AND {id} IN ({})", list.join(",")));
    }
    let total: u64 = conn
        .query_first(format!("SELECT COUNT(*) FROM {from}"))
        .await?
        .unwrap_or(0);
    let sql = format!("SELECT {id} FROM {from} ORDER BY {order} LIMIT ? OFFSET ?");
    Ok((conn.exec(sql, (per_page, (page - 1) * per_page)).await?, total))
}

/// The order as WooCommerce reads it from the authoritative storage, as REST v3 JSON.
async fn load_order(sh: &Shared, conn: &mut mysql_async::Conn, opts: &Props, id: u64) -> DbResult<Option<Value>> {
    let p = &sh.prefix;
    let (mut props, meta) = if hpos(opts) {
        let sql = format!("SELECT id, parent_order_id AS parent_id, status, currency, tax_amount AS total_tax, \
            total_amount AS total, customer_id, billing_email, date_created_gmt, date_updated_gmt AS date_modified_gmt, \
            payment_method, payment_method_title, transaction_id, ip_address AS customer_ip_address, \
            user_agent AS customer_user_agent, customer_note FROM {p}wc_orders WHERE id = ? AND type = 'shop_order'");
        let Some(mut props) = rows(conn, sql, (id,)).await?.pop() else {
            return Ok(None);
        };
        let columns = ADDRESS.replace(' ', ", ");
        let sql = format!("SELECT address_type, {columns} FROM {p}wc_order_addresses WHERE order_id = ?");
        for address in rows(conn, sql, (id,)).await? {
            for field in ADDRESS.split(' ') {
                props.insert(format!("{}_{field}", address["address_type"]), address[field].clone());
            }
        }
        let sql = format!("SELECT order_key, woocommerce_version AS version, created_via, cart_hash, prices_include_tax, \
            date_paid_gmt, date_completed_gmt, shipping_total_amount AS shipping_total, shipping_tax_amount AS shipping_tax, \
            discount_total_amount AS discount_total, discount_tax_amount AS discount_tax \
            FROM {p}wc_order_operational_data WHERE order_id = ?");
        props.extend(rows(conn, sql, (id,)).await?.pop().unwrap_or_default());
        let cart_tax = number(&props, "total_tax") - number(&props, "shipping_tax");
        props.insert("cart_tax".into(), cart_tax.to_string());
        let sql = format!("SELECT id, meta_key, meta_value FROM {p}wc_orders_meta WHERE order_id = ? ORDER BY id");
        (props, rows(conn, sql, (id,)).await?)
    } else {
        let sql = format!(
            "SELECT ID AS id, post_parent AS parent_id, post_status AS status, post_excerpt AS customer_note, \
            post_date_gmt AS date_created_gmt, post_modified_gmt AS date_modified_gmt \
            FROM {p}posts WHERE ID = ? AND post_type = 'shop_order'"
        );
        let Some(mut props) = rows(conn, sql, (id,)).await?.pop() else {
            return Ok(None);
        };
        let sql =
            format!("SELECT meta_id AS id, meta_key, meta_value FROM {p}postmeta WHERE post_id = ? ORDER BY meta_id");
        let meta = rows(conn, sql, (id,)).await?;
        for m in &meta {
            let (Some(key), value) = (m["meta_key"].strip_prefix('_'), &m["meta_value"]) else {
                continue;
            };
            let prop = match key {
                "order_total" => "total",
                "order_currency" => "currency",
                "order_version" => "version",
                "customer_user" => "customer_id",
                "order_shipping" => "shipping_total",
                "order_shipping_tax" => "shipping_tax",
                "order_tax" => "cart_tax",
                "cart_discount" => "discount_total",
                "cart_discount_tax" => "discount_tax",
                "date_paid" => "date_paid_gmt",
                "date_completed" => "date_completed_gmt",
                key => key,
            };
            let value = match key {
                "date_paid" | "date_completed" => unix_gmt(value),
                "prices_include_tax" => u8::from(value == "yes").to_string(),
                _ => value.clone(),
            };
            // get_post_meta( $id, $key, true ): the first row.
            props.entry(prop.to_string()).or_insert(value);
        }
        let total_tax = number(&props, "cart_tax") + number(&props, "shipping_tax");
        props.insert("total_tax".into(), total_tax.to_string());
        (props, meta)
    };
    let internal = |k: &str| {
        let address = ["_billing_", "_shipping_"]
            .iter()
            .any(|a| k.strip_prefix(a).is_some_and(|f| ADDRESS.split(' ').any(|x| x == f)));
        address || ORDER_INTERNAL.split_whitespace().any(|x| x == k)
    };
    let meta_data = meta_data(&meta, |k| !internal(k));
    props.insert("status".into(), props["status"].trim_start_matches("wc-").to_string());
    Ok(Some(order_json(&props, meta_data, &sh.home, opts)))
}

fn meta_data(meta: &[Props], shown: impl Fn(&str) -> bool) -> Value {
    let meta = meta.iter().filter(|m| shown(&m["meta_key"]));
    meta.map(|m| json!({"id": m["id"].parse::<u64>().unwrap_or(0), "key": m["meta_key"], "value": m["meta_value"]}))
        .collect()
}

fn number(props: &Props, key: &str) -> f64 {
    props.get(key).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// A unix timestamp as a MySQL GMT datetime ("" if none).
fn unix_gmt(ts: &str) -> String {
    let t = ts.parse().ok().and_then(|ts| chrono::DateTime::from_timestamp(ts, 0));
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
}

/// Sets `date_{name}` (shop-local) and `date_{name}_gmt` from a GMT datetime, null if none. The
/// shop's time zone is `timezone_string`, else the `gmt_offset` in hours.
fn put_dates(out: &mut Map<String, Value>, name: &str, gmt: &str, opts: &Props) {
    let t = NaiveDateTime::parse_from_str(gmt, "%Y-%m-%d %H:%M:%S").ok();
    let local = t.map(|t| {
        match opts
            .get("timezone_string")
            .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
        {
            Some(tz) => tz.from_utc_datetime(&t).naive_local(),
            None => t + chrono::Duration::seconds((number(opts, "gmt_offset") * 3600.0) as i64),
        }
    });
    let f = |t: Option<NaiveDateTime>| t.map_or(Value::Null, |t| json!(t.format("%Y-%m-%dT%H:%M:%S").to_string()));
    out.insert(format!("date_{name}"), f(local));
    out.insert(format!("date_{name}_gmt"), f(t));
}

fn address(get: impl Fn(&str) -> String, kind: &str) -> Value {
    let fields = ADDRESS.split(' ').filter(|f| kind == "billing" || *f != "email");
    Value::Object(
        fields
            .map(|f| (f.to_string(), json!(get(&format!("{kind}_{f}")))))
            .collect(),
    )
}

fn links(home: &str, collection: &str, id: u64) -> Value {
    let allow = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    json!({
        "self": [{"href": format!("{home}/wp-json/wc/v3/{collection}/{id}"), "targetHints": {"allow": allow}}],
        "collection": [{"href": format!("{home}/wp-json/wc/v3/{collection}")}],
    })
}

fn order_json(p: &Props, meta_data: Value, home: &str, opts: &Props) -> Value {
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let id: u64 = get("id").parse().unwrap_or(0);
    let mut o = Map::new();
    for k in "id parent_id customer_id".split(' ') {
        o.insert(k.into(), json!(get(k).parse::<u64>().unwrap_or(0)));
    }
    let texts = "status currency version order_key payment_method payment_method_title transaction_id \
        customer_ip_address customer_user_agent created_via customer_note cart_hash";
    for k in texts.split_whitespace() {
        o.insert(k.into(), json!(get(k)));
    }
    for k in "discount_total discount_tax shipping_total shipping_tax cart_tax total total_tax".split(' ') {
        o.insert(k.into(), json!(format!("{:.2}", number(p, k))));
    }
    for name in ["created", "modified", "paid", "completed"] {
        put_dates(&mut o, name, &get(&format!("date_{name}_gmt")), opts);
    }
    for k in "line_items tax_lines shipping_lines fee_lines coupon_lines refunds".split(' ') {
        o.insert(k.into(), json!([]));
    }
    let symbol = match get("currency").as_str() {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        _ => "",
    };
    let pay = format!(
        "{home}/checkout/order-pay/{id}/?pay_for_order=true&key={}",
        get("order_key")
    );
    let rest = json!({"prices_include_tax": get("prices_include_tax") == "1", "billing": address(get, "billing"),
        "shipping": address(get, "shipping"), "number": id.to_string(), "meta_data": meta_data, "payment_url": pay,
        "currency_symbol": symbol, "_links": links(home, "orders", id)});
    o.extend(rest.as_object().cloned().unwrap_or_default());
    Value::Object(o)
}

/// WC_Customer as REST v3 shows it: `wp_users` plus usermeta.
async fn load_customer(sh: &Shared, conn: &mut mysql_async::Conn, opts: &Props, id: u64) -> DbResult<Option<Value>> {
    let p = &sh.prefix;
    let sql = format!("SELECT user_login, user_email, user_registered FROM {p}users WHERE ID = ?");
    let Some(user) = rows(conn, sql, (id,)).await?.pop() else {
        return Ok(None);
    };
    let sql =
        format!("SELECT umeta_id AS id, meta_key, meta_value FROM {p}usermeta WHERE user_id = ? ORDER BY umeta_id");
    let meta = rows(conn, sql, (id,)).await?;
    let get = |k: &str| {
        meta.iter()
            .find(|m| m["meta_key"] == k)
            .map(|m| m["meta_value"].clone())
            .unwrap_or_default()
    };
    // The first role key of the serialized capabilities (`a:1:{s:8:"customer";b:1;}`).
    let role = get(&format!("{p}capabilities"))
        .split('"')
        .nth(1)
        .unwrap_or("customer")
        .to_string();
    let email = user["user_email"].clone();
    let avatar: String = sha2::Sha256::digest(email.trim().to_lowercase())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // WC_Customer_Data_Store::exclude_internal_meta_keys.
    let shown = |k: &str| {
        let prefixed = [
            "_woocommerce_persistent_cart",
            "closedpostboxes_",
            "metaboxhidden_",
            "manageedit-",
        ];
        !CUSTOMER_INTERNAL.split_whitespace().any(|x| x == k)
            && !prefixed.iter().any(|x| k.starts_with(x))
            && !k.contains(p.as_str())
            && !k.to_lowercase().starts_with("wp_")
    };
    let mut c = json!({"id": id, "email": email, "first_name": get("first_name"), "last_name": get("last_name"),
        "role": role, "username": user["user_login"], "billing": address(get, "billing"),
        "shipping": address(get, "shipping"), "is_paying_customer": get("paying_customer") == "1",
        "avatar_url": format!("https://secure.gravatar.com/avatar/{avatar}?s=96&d=mm&r=g"),
        "meta_data": meta_data(&meta, shown), "_links": links(&sh.home, "customers", id)});
    let c_map = c.as_object_mut().unwrap();
    put_dates(c_map, "created", &user["user_registered"], opts);
    put_dates(c_map, "modified", &unix_gmt(&get("last_update")), opts);
    Ok(Some(c))
}
