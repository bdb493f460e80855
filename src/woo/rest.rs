//! A small client of the WooCommerce REST API v3 (`/wp-json/wc/v3`): authentication as
//! WooCommerce wants it, bounded retries, pagination, and WooCommerce's error bodies
//! turned into errors that say what failed. Requests are named by method and path only:
//! the query can hold the consumer key and a signature, and no message carries it.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::oauth;
use crate::config::{self, Secret};

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error(
        "rest.url {url} is plain HTTP: set rest.allow_insecure_http = true to use it (requests are then signed with \
         OAuth 1.0a; answers travel unencrypted), or use https://"
    )]
    InsecureRefused { url: String },
    #[error("rest.url {url} is not an http:// or https:// URL")]
    BadUrl { url: String },
    #[error("rest.ca_file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    #[error("{request}: WooCommerce answered {status} {code}: {message}{}", hint(*status, code, message))]
    Api {
        request: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{request}: the web server answered {status}")]
    Http { request: String, status: u16 },
    #[error("{request}: redirected ({status}) to {location}: set rest.url to the shop's address as WordPress has it")]
    Redirect {
        request: String,
        status: u16,
        location: String,
    },
    #[error("{request}: no answer within {secs} s (rest.timeout_secs)")]
    Timeout { request: String, secs: u64 },
    #[error("{request}: cannot connect: {reason}")]
    Connect { request: String, reason: String },
    #[error("{request}: the answer is not the JSON WooCommerce sends: {reason}")]
    Malformed { request: String, reason: String },
    #[error("{request}: gave up after {attempts} attempts (rest.retries); the last: {last}")]
    GaveUp {
        request: String,
        attempts: u32,
        last: Box<RestError>,
    },
}

/// What an operator can do about an answer WooCommerce gives often.
fn hint(status: u16, code: &str, message: &str) -> &'static str {
    match (status, code) {
        (401, "woocommerce_rest_authentication_error") if message.contains("signature") => {
            " (check rest.consumer_secret; and OAuth signatures are made over WordPress's home URL: rest.url must be \
             http:// and the Site Address's host and path)"
        }
        (401, "woocommerce_rest_authentication_error") => " (check rest.consumer_key and rest.consumer_secret)",
        (401 | 403, _) => {
            " (the key needs Read permission; over HTTPS some web servers strip the Authorization header)"
        }
        _ => "",
    }
}

impl RestError {
    /// Worth another attempt: no answer, rate limited, or a server error.
    pub fn is_transient(&self) -> bool {
        match self {
            RestError::Api { status, .. } | RestError::Http { status, .. } => *status == 429 || *status >= 500,
            RestError::Timeout { .. } | RestError::Connect { .. } => true,
            _ => false,
        }
    }

    /// WooCommerce says the id does not exist (`…_invalid_id`). WordPress's 404 for a
    /// route it does not know (WooCommerce deactivated, a wrong URL) is not that.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RestError::Api { status: 404, code, .. } if code.ends_with("_invalid_id"))
    }
}

/// One page of a collection.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `X-WP-TotalPages`.
    pub total_pages: u64,
}

/// WooCommerce's largest page.
pub const MAX_PER_PAGE: usize = 100;

/// The API of one shop. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `<shop>/wp-json/wc/v3`, without a trailing slash.
    api: String,
    key: Secret,
    secret: Secret,
    /// Plain HTTP: WooCommerce ignores Basic auth there and wants OAuth 1.0a signatures.
    signed: bool,
    retries: u32,
    backoff: Duration,
    timeout_secs: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &config::redact_url(&self.api))
            .field("signed", &self.signed)
            .finish_non_exhaustive()
    }
}

/// The first wait between attempts; it doubles each time, up to [`MAX_BACKOFF`].
pub const BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` obeyed; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Client {
    /// A client for `[rest]` (secrets already resolved from their files).
    pub fn new(rest: &config::Rest) -> Result<Client, RestError> {
        Client::with_backoff(rest, BACKOFF)
    }

    /// [`Client::new`] with another first wait between attempts.
    pub fn with_backoff(rest: &config::Rest, backoff: Duration) -> Result<Client, RestError> {
        let url = config::redact_url(&rest.url);
        let signed = match rest.url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
            Some(s) if s == "https" => false,
            Some(s) if s == "http" && rest.allow_insecure_http => true,
            Some(s) if s == "http" => return Err(RestError::InsecureRefused { url }),
            _ => return Err(RestError::BadUrl { url }),
        };
        let (Some(key), Some(secret)) = (rest.consumer_key.clone(), rest.consumer_secret.clone()) else {
            return Err(RestError::Setup(
                "rest.consumer_key and rest.consumer_secret are required".into(),
            ));
        };
        // mysql_async brings rustls with ring; reqwest uses whichever provider the process
        // installed. Installing twice is harmless (the first one stays).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = Duration::from_secs(rest.timeout_secs);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")))
            .https_only(!signed)
            // A redirect would lose the signature or send the key to another host.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &rest.ca_file {
            let ca_error = |reason: String| RestError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("holds no PEM certificate".into()));
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| RestError::Setup(chain(&e)))?;
        Ok(Client {
            http,
            api: format!("{}/wp-json/wc/v3", rest.url.trim_end_matches('/')),
            key,
            secret,
            signed,
            retries: rest.retries,
            backoff,
            timeout_secs: rest.timeout_secs,
        })
    }

    /// Whether requests are signed with OAuth 1.0a (plain HTTP) rather than Basic auth.
    pub fn signs_requests(&self) -> bool {
        self.signed
    }

    /// `GET path` (below `/wp-json/wc/v3`), retried while the failure is transient.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, RestError> {
        let (_, body) = self.get_retried(path, query).await?;
        parse(path, &body)
    }

    /// One page of a collection, with WooCommerce's page count.
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        page: u64,
        per_page: usize,
    ) -> Result<Page<T>, RestError> {
        let mut query = query.to_vec();
        query.push(("per_page", per_page.clamp(1, MAX_PER_PAGE).to_string()));
        query.push(("page", page.to_string()));
        let (headers, body) = self.get_retried(path, &query).await?;
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let items: Vec<T> = parse(path, &body)?;
        Ok(Page {
            total_pages: number("x-wp-totalpages").unwrap_or(1),
            items,
        })
    }

    /// Every item of a collection, page by page.
    pub async fn list<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<T>, RestError> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let p: Page<T> = self.page(path, query, page, MAX_PER_PAGE).await?;
            let empty = p.items.is_empty();
            all.extend(p.items);
            if empty || page >= p.total_pages {
                return Ok(all);
            }
            page += 1;
        }
    }

    async fn get_retried(&self, path: &str, query: &[(&str, String)]) -> Result<(HeaderMap, Vec<u8>), RestError> {
        let request = format!("GET {path}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, retry_after) = match self.get_once(&request, path, query).await {
                Ok(answer) => return Ok(answer),
                Err(failure) => failure,
            };
            if !error.is_transient() {
                return Err(error);
            }
            if attempt > self.retries {
                return Err(if attempt == 1 {
                    error
                } else {
                    RestError::GaveUp {
                        request,
                        attempts: attempt,
                        last: Box::new(error),
                    }
                });
            }
            let wait = retry_after
                .map(|d| d.min(MAX_RETRY_AFTER))
                .unwrap_or_else(|| (self.backoff * 2u32.saturating_pow(attempt - 1)).min(MAX_BACKOFF));
            tracing::warn!(
                request = %request,
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                error = %error,
                "REST request failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt. A failure comes with the wait the server asked for, if any.
    async fn get_once(
        &self,
        request: &str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(HeaderMap, Vec<u8>), (RestError, Option<Duration>)> {
        let url = format!("{}{path}", self.api);
        let own: Vec<(String, String)> = query.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let builder = if self.signed {
            // Each attempt needs its own nonce: WooCommerce refuses one it has seen.
            let params = oauth::sign(
                &oauth::Signing {
                    method: "GET",
                    base_url: &url,
                    params: &own,
                    consumer_key: self.key.expose(),
                    timestamp: chrono::Utc::now().timestamp(),
                    nonce: &oauth::nonce(),
                },
                self.secret.expose(),
            );
            self.http.get(with_query(&url, &params))
        } else {
            self.http
                .get(with_query(&url, &own))
                .basic_auth(self.key.expose(), Some(self.secret.expose()))
        };
        let failed = |e: reqwest::Error| (self.transport_error(request, e), None);
        let response = builder.send().await.map_err(failed)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(failed)?.to_vec();
        if status.is_success() {
            return Ok((headers, body));
        }
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err((error_for(request, status, &headers, &body), retry_after))
    }

    fn transport_error(&self, request: &str, e: reqwest::Error) -> RestError {
        let e = e.without_url();
        if e.is_timeout() {
            RestError::Timeout {
                request: request.to_owned(),
                secs: self.timeout_secs,
            }
        } else if e.is_decode() || e.is_body() {
            RestError::Malformed {
                request: request.to_owned(),
                reason: chain(&e),
            }
        } else {
            RestError::Connect {
                request: request.to_owned(),
                reason: chain(&e),
            }
        }
    }
}

/// `url?k=v&…`, encoded as the signature was made (RFC 3986).
fn with_query(url: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return url.to_owned();
    }
    let pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", oauth::encode(k), oauth::encode(v)))
        .collect();
    format!("{url}?{}", pairs.join("&"))
}

/// WooCommerce's error body (`code`, `message`, `data.status`), or the bare status.
fn error_for(request: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> RestError {
    #[derive(serde::Deserialize)]
    struct WooError {
        code: String,
        message: String,
    }
    if status.is_redirection() {
        return RestError::Redirect {
            request: request.to_owned(),
            status: status.as_u16(),
            location: headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "nowhere".to_owned(), |l| l.split('?').next().unwrap_or(l).to_owned()),
        };
    }
    match serde_json::from_slice::<WooError>(body) {
        Ok(e) => {
            let code: String = e
                .code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            // WooCommerce's and WordPress's own codes come with fixed messages; another
            // plugin's message may say anything, a customer's details included.
            let own = ["woocommerce_", "wc_", "rest_", "internal_server_error"]
                .iter()
                .any(|p| code.starts_with(p));
            RestError::Api {
                request: request.to_owned(),
                status: status.as_u16(),
                message: if own {
                    plain_text(&e.message)
                } else {
                    "(a message from outside WooCommerce, not shown)".to_owned()
                },
                code,
            }
        }
        Err(_) => RestError::Http {
            request: request.to_owned(),
            status: status.as_u16(),
        },
    }
}

/// WordPress's messages may hold HTML (its critical-error page): tags dropped, one line,
/// at most 200 characters.
fn plain_text(message: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in message.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(if c.is_whitespace() { ' ' } else { c }),
            _ => {}
        }
    }
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    match out.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &out[..i]),
        None => out,
    }
}

/// A body as `T`. The error names where the JSON went wrong, never a value from it
/// (serde's own message quotes the value, which may be personal data).
fn parse<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, RestError> {
    serde_json::from_slice(body).map_err(|e| RestError::Malformed {
        request: format!("GET {path}"),
        reason: format!(
            "{} at line {} column {}",
            match e.classify() {
                serde_json::error::Category::Io => "unreadable",
                serde_json::error::Category::Syntax => "broken JSON",
                serde_json::error::Category::Data => "unexpected fields or types",
                serde_json::error::Category::Eof => "the body ends early",
            },
            e.line(),
            e.column()
        ),
    })
}

/// An error and its causes on one line (reqwest's own message says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn woocommerce_messages_become_one_plain_line() {
        assert_eq!(
            plain_text("<p>There has been a critical error on this website.</p><p><a href=\"x\">Learn more</a></p>"),
            "There has been a critical error on this website.Learn more"
        );
        assert_eq!(plain_text(&"x".repeat(300)).chars().count(), 201);
    }

    #[test]
    fn parse_errors_quote_no_value() {
        let e = parse::<Vec<u64>>("/orders", br#"["jan.jansen@example.nl"]"#).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("jan.jansen"), "{text}");
        assert!(text.contains("GET /orders") && text.contains("line 1"), "{text}");
    }
}
