//! The service's configuration: a TOML file plus `WC_RETENTION__SECTION__KEY` environment
//! variables, validated strictly at load so a typo never silently changes a retention period.
//!
//! Secrets (database password, REST consumer key and secret, the requests pepper) can be
//! given inline, in an environment variable, or through a `*_file` key, which is what
//! systemd's `LoadCredential=` provides. Secret values never pass through figment's value
//! parser (it would turn "007" into 7) and never appear in `Debug` output or errors.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::period::Period;
use crate::policy::fiscal::{FiscalYearEnd, Retention};
use crate::schedule::Schedule;

/// Where `--config` points when it is not given.
pub const DEFAULT_PATH: &str = "/etc/wc-retention/config.toml";
/// Prefix of the environment variables that override file keys: `WC_RETENTION__DATABASE__URL`.
pub const ENV_PREFIX: &str = "WC_RETENTION__";

/// The whole configuration. Every section but `[database]` has defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach the shop's WordPress database.
    pub database: Database,
    /// When the daemon runs a retention cycle.
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Log format and filter (command-line flags override these).
    #[serde(default)]
    pub log: Log,
    /// The inactive-customer rule.
    #[serde(default)]
    pub customers: Customers,
    /// The statutory retention of invoices.
    #[serde(default)]
    pub invoices: Invoices,
    /// The WooCommerce REST API; without this section the service works on the database alone.
    pub rest: Option<Rest>,
    /// Data-subject requests and their register.
    #[serde(default)]
    pub requests: Requests,
    /// People who order without an account, one subject per billing email.
    #[serde(default)]
    pub guests: Guests,
    /// Unpaid orders (pending, failed, cancelled, checkout drafts) and what becomes of them.
    #[serde(default)]
    pub unpaid: Unpaid,
    /// Data kept shorter than the customer: order IP addresses, sessions, download logs.
    #[serde(default)]
    pub minimise: Minimise,
    /// The shop's own personal fields beyond WooCommerce's.
    #[serde(default)]
    pub personal_data: PersonalData,
    /// Limits that stop a wrong setting from wiping a shop.
    #[serde(default)]
    pub safety: Safety,
    /// How `apply` splits its work into transactions.
    #[serde(default)]
    pub apply: ApplyConfig,
    /// `[[processors]]`: the other companies that hold customers' data for the shop,
    /// named in exports and given a follow-up task when a person is forgotten.
    #[serde(default)]
    pub processors: Vec<Processor>,
}

/// One `[[processors]]` entry.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    /// The company, e.g. "Mollie".
    pub name: String,
    /// What it does for the shop, e.g. "payment processing".
    pub purpose: String,
    /// The data categories it holds: any of [`DATA_CATEGORIES`].
    pub categories: Vec<String>,
    /// Where it processes the data (ISO 3166 country code, e.g. "NL").
    pub country: String,
}

/// The categories of personal data the service knows, as exports group them.
pub const DATA_CATEGORIES: [&str; 7] = [
    "profile",
    "addresses",
    "orders",
    "order_notes",
    "reviews",
    "downloads",
    "payment_tokens",
];

/// `[database]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `mysql://user@host:port/database`, without a password (use `password_file`).
    /// A local socket: `mysql://user@localhost/database?socket=/run/mysqld/mysqld.sock`.
    pub url: String,
    /// The database password inline; prefer `password_file`.
    pub password: Option<Secret>,
    /// A file holding the database password (e.g. a systemd credential).
    pub password_file: Option<PathBuf>,
    /// WordPress's table prefix (`$table_prefix` in wp-config.php).
    #[serde(default = "default_prefix")]
    pub table_prefix: String,
    /// Transport security to the database server.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file of the CA that signed the server's certificate, for `tls = "verify_ca"`.
    pub ca_file: Option<PathBuf>,
    /// Most connections the service opens at once (2 to 100): a run holds its lock on one
    /// and reads its plan on that one and one more.
    #[serde(default = "default_pool_max")]
    pub pool_max: usize,
    /// Seconds to wait for a connection before giving up (1 to 600).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
}

/// How the connection to the database is secured.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain connection: for a server on the same host or a private network.
    #[default]
    Disabled,
    /// Encrypted, without checking whose certificate it is.
    Require,
    /// Encrypted, and the certificate must chain to `ca_file` and match the host name.
    VerifyCa,
}

/// `[schedule]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// crontab(5) syntax: minute hour day-of-month month day-of-week.
    #[serde(default = "default_cron")]
    pub cron: Schedule,
    /// IANA time zone the schedule is read in.
    #[serde(default = "default_timezone")]
    pub timezone: TimeZone,
    /// Seconds before a failed cycle is first retried; each further failure doubles it.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: u64,
    /// The longest wait between retries, in seconds. Retries never pass the next scheduled
    /// run, which happens anyway.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `json` (one object per line, for journald) or `pretty` (for people).
    #[serde(default)]
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter such as `info` or `info,wc_retention=debug`.
    pub level: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// `[customers]`: registered customers who stopped being clients.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customers {
    /// Switch the rule off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A customer with no activity for this long is no longer a client.
    #[serde(default = "default_inactive_after")]
    pub inactive_after: Period,
    /// Only users whose roles are all in this list are customers; everyone else is staff.
    #[serde(default = "default_roles")]
    pub roles: Vec<String>,
    /// What happens to an inactive customer's account.
    #[serde(default)]
    pub action: CustomerAction,
    /// Accounts never touched by any rule, whatever their roles (test accounts, the owner).
    #[serde(default)]
    pub protected_user_ids: Vec<u64>,
    /// Emails never touched by any rule: accounts with this email and guests ordering with it.
    #[serde(default)]
    pub protected_emails: Vec<String>,
}

/// What the inactive-customer rule does to the account itself.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CustomerAction {
    /// Keep the user row with anonymised values: ids stay valid for other plugins.
    #[default]
    Anonymise,
    /// Delete the user row and its meta. Content the user wrote is kept, never reassigned.
    Delete,
}

/// `[guests]`: people who ordered without an account, identified by billing email. Their
/// last activity is their newest order; `customers.inactive_after` and the invoice rules apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guests {
    /// Switch the rule off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Guests {
    fn default() -> Self {
        Guests { enabled: true }
    }
}

/// `[unpaid]`: orders that never became a sale.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unpaid {
    /// Switch the rule off without deleting its settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `pending` (awaiting payment). Younger ones count as open: their customer is kept.
    #[serde(default = "default_pending")]
    pub pending: UnpaidRule,
    /// `failed` (payment failed or declined).
    #[serde(default = "default_failed")]
    pub failed: UnpaidRule,
    /// `cancelled` (by the shop or the customer).
    #[serde(default = "default_cancelled")]
    pub cancelled: UnpaidRule,
    /// `checkout-draft` (a block checkout that was never submitted).
    #[serde(default = "default_checkout_draft")]
    pub checkout_draft: UnpaidRule,
}

impl Unpaid {
    /// The rule for an order status as stored (`wc-pending`), if it is an unpaid status.
    pub fn rule_for(&self, status: &str) -> Option<&UnpaidRule> {
        match status.strip_prefix("wc-").unwrap_or(status) {
            "pending" => Some(&self.pending),
            "failed" => Some(&self.failed),
            "cancelled" => Some(&self.cancelled),
            "checkout-draft" => Some(&self.checkout_draft),
            _ => None,
        }
    }
}

impl Default for Unpaid {
    fn default() -> Self {
        Unpaid {
            enabled: true,
            pending: default_pending(),
            failed: default_failed(),
            cancelled: default_cancelled(),
            checkout_draft: default_checkout_draft(),
        }
    }
}

/// One unpaid status: after how long, and what happens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnpaidRule {
    /// Age of the order (from its creation) after which `action` applies.
    pub after: Period,
    /// `trash` (WooCommerce's bin), `delete` (gone, with its notes and lines) or
    /// `anonymise` (kept for the statistics without personal data).
    pub action: UnpaidAction,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnpaidAction {
    Trash,
    Delete,
    Anonymise,
}

/// `[minimise]`: personal data the shop needs only briefly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Minimise {
    /// Switch these rules off without deleting their settings.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Orders older than this lose the customer's IP address and user agent.
    #[serde(default = "default_ninety_days")]
    pub ip_after: Period,
    /// Download log entries older than this lose the IP address.
    #[serde(default = "default_ninety_days")]
    pub download_ip_after: Period,
    /// Delete expired `woocommerce_sessions` rows (carts and checkout addresses).
    #[serde(default = "yes")]
    pub expired_sessions: bool,
}

impl Default for Minimise {
    fn default() -> Self {
        Minimise {
            enabled: true,
            ip_after: default_ninety_days(),
            download_ip_after: default_ninety_days(),
            expired_sessions: true,
        }
    }
}

/// `[personal_data]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalData {
    /// Order meta keys the shop's checkout adds that hold personal data (a gift recipient's
    /// name, a delivery phone): anonymised with the order.
    #[serde(default)]
    pub extra_order_meta_keys: Vec<String>,
    /// User meta keys holding personal data beyond WordPress's and WooCommerce's (a date of
    /// birth): deleted with the profile.
    #[serde(default)]
    pub extra_user_meta_keys: Vec<String>,
}

/// `[safety]`: a run that would touch more subjects (customers and guests) than this is
/// refused unless forced (`apply --force`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// Most subjects one run may anonymise or delete.
    #[serde(default = "default_max_customers")]
    pub max_customers_per_run: u64,
    /// Largest share (0 to 1) of all subjects one run may anonymise or delete.
    #[serde(default = "default_max_share")]
    pub max_share: f64,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            max_customers_per_run: default_max_customers(),
            max_share: default_max_share(),
        }
    }
}

/// `[apply]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyConfig {
    /// Customers per transaction.
    #[serde(default = "default_customer_batch")]
    pub customer_batch: usize,
    /// Orders per transaction (they are written in order-id order, which is what makes
    /// them fast: DESIGN §7).
    #[serde(default = "default_order_batch")]
    pub order_batch: usize,
    /// Database connections that apply batches side by side. Each batch is still one
    /// transaction; the database server works on each connection with one core, so two
    /// make a run about 1.5 times faster on a server with two cores or more. 1 is gentlest
    /// on a busy shop. At most `database.pool_max - 1` (one connection stays free for the
    /// run's own bookkeeping).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// A command run after every run that changed something, before the REST check: the
    /// program and its arguments, no shell (e.g. `["wp", "cache", "flush", "--path=/var/www/shop"]`).
    /// A persistent object cache otherwise keeps serving the old personal data.
    #[serde(default)]
    pub post_run_command: Vec<String>,
    /// How long `post_run_command` may take before it is killed.
    #[serde(default = "default_post_run_timeout")]
    pub post_run_timeout_secs: u64,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            customer_batch: default_customer_batch(),
            order_batch: default_order_batch(),
            workers: default_workers(),
            post_run_command: Vec::new(),
            post_run_timeout_secs: default_post_run_timeout(),
        }
    }
}

fn default_post_run_timeout() -> u64 {
    120
}

/// `[invoices]`: orders that are fiscal records, kept (minimised) for the statutory period.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoices {
    /// Statuses (without the `wc-` prefix) of the orders that are invoices.
    #[serde(default = "default_invoice_statuses")]
    pub statuses: Vec<String>,
    /// Years an invoice is kept after the end of its fiscal year: 7 in the Netherlands, 10 for OSS.
    #[serde(default = "default_retain_years")]
    pub retain_years: u32,
    /// The last day of the fiscal year, `MM-DD`.
    #[serde(default)]
    pub fiscal_year_end: FiscalYearEnd,
    /// Keep the shipping address on the retained invoices of a forgotten customer.
    #[serde(default)]
    pub keep_shipping_address: bool,
}

impl Invoices {
    pub fn retention(&self) -> Retention {
        Retention {
            fiscal_year_end: self.fiscal_year_end,
            years: self.retain_years,
        }
    }
}

impl Default for Invoices {
    fn default() -> Self {
        Invoices {
            statuses: default_invoice_statuses(),
            retain_years: default_retain_years(),
            fiscal_year_end: FiscalYearEnd::default(),
            keep_shipping_address: false,
        }
    }
}

/// `[rest]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rest {
    /// The shop's base URL, e.g. `https://shop.example.nl/`.
    pub url: String,
    /// WooCommerce REST consumer key (`ck_…`) inline; prefer `consumer_key_file`.
    pub consumer_key: Option<Secret>,
    /// File holding the consumer key.
    pub consumer_key_file: Option<PathBuf>,
    /// WooCommerce REST consumer secret (`cs_…`) inline; prefer `consumer_secret_file`.
    pub consumer_secret: Option<Secret>,
    /// File holding the consumer secret.
    pub consumer_secret_file: Option<PathBuf>,
    /// Allow an `http://` URL. WooCommerce then needs OAuth 1.0a signatures, which the
    /// service makes: the secret never travels, but the key and every answer (customers'
    /// data) do, in the clear. Only for a web server on this host.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// A PEM file with the certificate authority of a shop on a private CA.
    pub ca_file: Option<PathBuf>,
    /// How long one request may take, in seconds.
    #[serde(default = "default_rest_timeout")]
    pub timeout_secs: u64,
    /// Retries of a request that got no answer, a 429 or a 5xx, with growing waits.
    #[serde(default = "default_rest_retries")]
    pub retries: u32,
    /// Customers and orders changed by a run (up to 100 of each) that are read back through
    /// the API to confirm WooCommerce shows them anonymised; 0 turns the check off.
    #[serde(default = "default_verify_sample")]
    pub verify_sample: u32,
}

fn default_rest_timeout() -> u64 {
    30
}

fn default_rest_retries() -> u32 {
    3
}

fn default_verify_sample() -> u32 {
    20
}

/// `[requests]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requests {
    /// Secret key of the register's subject hash; prefer `pepper_file`.
    pub pepper: Option<Secret>,
    /// File holding the pepper.
    pub pepper_file: Option<PathBuf>,
    /// How long the shop has to answer a request.
    #[serde(default = "default_deadline")]
    pub deadline: Period,
    /// Where subject-access exports are written (mode 0600), one JSON file per request.
    #[serde(default = "default_export_dir")]
    pub export_dir: PathBuf,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: default_cron(),
            timezone: default_timezone(),
            retry_initial_secs: default_retry_initial(),
            retry_max_secs: default_retry_max(),
        }
    }
}

impl Default for Customers {
    fn default() -> Self {
        Customers {
            enabled: true,
            inactive_after: default_inactive_after(),
            roles: default_roles(),
            action: CustomerAction::default(),
            protected_user_ids: Vec::new(),
            protected_emails: Vec::new(),
        }
    }
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            pepper: None,
            pepper_file: None,
            deadline: default_deadline(),
            export_dir: default_export_dir(),
        }
    }
}

fn default_prefix() -> String {
    "wp_".into()
}
fn default_pool_max() -> usize {
    4
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_cron() -> Schedule {
    "30 3 * * *".parse().expect("the default schedule is valid")
}
fn default_retry_initial() -> u64 {
    30
}
fn default_retry_max() -> u64 {
    1800
}
fn default_timezone() -> TimeZone {
    TimeZone(chrono_tz::Europe::Amsterdam)
}
fn yes() -> bool {
    true
}
fn default_inactive_after() -> Period {
    "3 years".parse().expect("the default period is valid")
}
fn default_roles() -> Vec<String> {
    vec!["customer".into(), "subscriber".into()]
}
fn default_invoice_statuses() -> Vec<String> {
    vec!["completed".into(), "refunded".into()]
}
fn default_retain_years() -> u32 {
    7
}
fn period(text: &str) -> Period {
    text.parse().expect("the default periods are valid")
}
fn default_pending() -> UnpaidRule {
    UnpaidRule {
        after: period("30 days"),
        action: UnpaidAction::Trash,
    }
}
fn default_failed() -> UnpaidRule {
    UnpaidRule {
        after: period("90 days"),
        action: UnpaidAction::Anonymise,
    }
}
fn default_cancelled() -> UnpaidRule {
    UnpaidRule {
        after: period("90 days"),
        action: UnpaidAction::Anonymise,
    }
}
fn default_checkout_draft() -> UnpaidRule {
    UnpaidRule {
        after: period("7 days"),
        action: UnpaidAction::Delete,
    }
}
fn default_ninety_days() -> Period {
    period("90 days")
}
fn default_max_customers() -> u64 {
    1000
}
fn default_max_share() -> f64 {
    0.1
}
fn default_customer_batch() -> usize {
    500
}
fn default_order_batch() -> usize {
    1500
}
fn default_workers() -> usize {
    2
}
fn default_export_dir() -> PathBuf {
    PathBuf::from("/var/lib/wc-retention/exports")
}
fn default_deadline() -> Period {
    "30 days".parse().expect("the default deadline is valid")
}

/// A secret string: printed as `[redacted]` by `Debug` and never serialised.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An IANA time zone name, checked at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeZone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<chrono_tz::Tz>().map(TimeZone).map_err(|_| {
            serde::de::Error::custom(format!(
                "{s:?} is not a known time zone: use an IANA name like \"Europe/Amsterdam\" or \"UTC\""
            ))
        })
    }
}

/// Everything that can be wrong with a configuration. Each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist (give another with --config)")]
    Missing(PathBuf),
    #[error("config file {} is a directory, not a file (give the file with --config)", .0.display())]
    NotAFile(PathBuf),
    #[error("config file {path} cannot be read: {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("config file {} is not UTF-8 text (first bad byte on line {line}): save it as UTF-8", path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("invalid configuration:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// A loaded configuration and the warnings found while loading it (to be logged once
/// logging is set up, which itself depends on the configuration).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Keys whose values are secrets: they bypass figment's value parser and are redacted.
const SECRET_KEYS: [&str; 4] = [
    "database.password",
    "rest.consumer_key",
    "rest.consumer_secret",
    "requests.pepper",
];

/// Loads and validates the file at `path` overlaid with the process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_layers(path, true)
}

fn load_layers(path: &Path, with_env: bool) -> Result<Loaded, ConfigError> {
    let unreadable = |source| ConfigError::Unreadable {
        path: path.to_owned(),
        source,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ConfigError::Missing(path.to_owned())),
        Err(source) => return Err(unreadable(source)),
        Ok(m) if m.is_dir() => return Err(ConfigError::NotAFile(path.to_owned())),
        Ok(_) => {}
    }
    // Read here first: figment reports a non-UTF-8 file as a bare I/O error, and the text
    // lets a TOML syntax error name its key.
    let text = String::from_utf8(std::fs::read(path).map_err(unreadable)?).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ConfigError::NotUtf8 {
            path: path.to_owned(),
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
        }
    })?;
    let mut figment = Figment::new().merge(Toml::file_exact(path));
    if with_env {
        // Secrets are kept out of figment's Env provider, which would reinterpret them
        // ("007" becomes 7), and added back verbatim.
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .split("__")
                // `k` is not lowercased yet here; UncasedStr compares case-insensitively.
                .filter(|k| !SECRET_KEYS.iter().any(|secret| k == *secret)),
        );
        for key in SECRET_KEYS {
            let var = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase());
            if let Ok(value) = std::env::var(&var) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
    }
    // Secrets written in the file itself (not in the environment or a *_file).
    let secrets_in_file: Vec<&str> = SECRET_KEYS
        .into_iter()
        .filter(|key| {
            figment
                .find_metadata(key)
                .is_some_and(|m| matches!(m.source, Some(figment::Source::File(_))))
        })
        .collect();
    let config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Invalid(describe(e, &text)))?;
    let mut loaded = Loaded {
        config,
        warnings: Vec::new(),
    };
    if with_env {
        loaded.warnings.extend(
            std::env::vars()
                .map(|(k, _)| k)
                .filter(|k| k.starts_with("WC_RETENTION_") && !k.starts_with(ENV_PREFIX) && k != "WC_RETENTION_CONFIG")
                .map(|k| {
                    format!("environment variable {k} is ignored: overrides are written {ENV_PREFIX}SECTION__KEY")
                }),
        );
    }
    loaded.finish(path, &secrets_in_file)?;
    Ok(loaded)
}

fn describe(e: figment::Error, text: &str) -> Vec<String> {
    use figment::error::Kind;
    e.into_iter()
        .map(|err| {
            let mut path = err.path.clone();
            let message = match &err.kind {
                // figment's path already ends with the unknown key.
                Kind::UnknownField(_, expected) => {
                    format!("unknown key (expected one of: {})", expected.join(", "))
                }
                Kind::MissingField(field) if path.is_empty() && field == "database" => {
                    path.push(field.to_string());
                    "missing: the [database] section is required, with url = \"mysql://user@host:3306/database\""
                        .to_owned()
                }
                Kind::MissingField(field) => {
                    path.push(field.to_string());
                    "missing: this key is required".to_owned()
                }
                Kind::InvalidType(actual, expected) if SECRET_KEYS.contains(&path.join(".").as_str()) => {
                    let _ = actual;
                    format!("expected {}", plain_type(expected))
                }
                Kind::InvalidType(actual, expected) => {
                    format!("invalid type: found {actual}, expected {}", plain_type(expected))
                }
                Kind::InvalidValue(actual, expected) => {
                    format!("invalid value: found {actual}, expected {}", plain_type(expected))
                }
                Kind::UnknownVariant(found, expected) => {
                    format!("{found:?} is not one of: {}", expected.join(", "))
                }
                // A TOML syntax error quotes the offending line, which may hold a secret:
                // keep only where it is, the key it is about, and what is wrong.
                Kind::Message(m) if m.starts_with("TOML parse error") => {
                    let lines: Vec<&str> = m.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                    if let Some(key) = lines.first().and_then(|l| toml_key_at(text, error_line(l)?)) {
                        path = vec![key];
                    }
                    match (lines.first(), lines.last()) {
                        (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
                        _ => "TOML parse error".to_owned(),
                    }
                }
                other => other.to_string(),
            };
            let key = if path.is_empty() {
                "(top level)".to_owned()
            } else {
                path.join(".")
            };
            let source = err
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(figment::Source::File(f)) => format!(" (in {})", f.display()),
                    _ if m.name.contains("environment") => {
                        format!(" (from {ENV_PREFIX}{})", err.path.join("__").to_ascii_uppercase())
                    }
                    // Secrets from the environment come through a provider whose name
                    // is a type name, which would tell the operator nothing.
                    _ => String::new(),
                })
                .unwrap_or_default();
            format!("  {key}: {message}{source}")
        })
        .collect()
}

/// A problem line for `key` when `value` is outside `range`.
fn within(problems: &mut Vec<String>, key: &str, value: u64, range: std::ops::RangeInclusive<u64>) {
    if !range.contains(&value) {
        problems.push(format!(
            "  {key}: {value} is out of range ({} to {})",
            range.start(),
            range.end()
        ));
    }
}

/// What serde's name for an expected type means to someone editing a TOML file.
fn plain_type(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".to_owned(),
        "u16" => "a whole number from 0 to 65535".to_owned(),
        "u32" => "a whole number from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a whole number, 0 or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a sequence" => "a list, like [\"a\", \"b\"]".to_owned(),
        "a boolean" => "true or false".to_owned(),
        e if e.starts_with("struct ") => "a table (a [section])".to_owned(),
        e => e.to_owned(),
    }
}

/// The line number of toml's "TOML parse error at line 3, column 12".
fn error_line(message: &str) -> Option<usize> {
    let rest = message.split_once(" at line ")?.1;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The dotted key that line `line` (1-based) of a TOML text sets or opens, e.g.
/// `database.pool_max`, from the line's own key or header and the table above it. Only
/// bare keys are named; the value is never looked at, so no secret is repeated.
fn toml_key_at(text: &str, line: usize) -> Option<String> {
    let bare = |k: &str| {
        let k = k.trim();
        (!k.is_empty()
            && k.split('.').all(|part| {
                !part.trim().is_empty()
                    && part
                        .trim()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }))
        .then(|| k.split('.').map(str::trim).collect::<Vec<_>>().join("."))
    };
    let header = |l: &str| {
        let l = l.trim();
        let inner = l.strip_prefix("[[").and_then(|r| r.split_once("]]")).map(|(h, _)| h);
        let inner = inner.or_else(|| l.strip_prefix('[').and_then(|r| r.split_once(']')).map(|(h, _)| h));
        inner.map(bare)
    };
    // `Some("")` at the top level, `None` under a header that is not a bare key.
    let mut table = Some(String::new());
    for (i, l) in text.lines().enumerate() {
        let here = i + 1 == line;
        if let Some(h) = header(l) {
            if here {
                return h;
            }
            table = h;
        } else if here {
            let key = bare(l.split_once('=')?.0)?;
            return match table?.as_str() {
                "" => Some(key),
                t => Some(format!("{t}.{key}")),
            };
        }
    }
    None
}

impl Loaded {
    /// Checks what serde cannot, resolves secret files, and notes loose permissions.
    fn finish(&mut self, path: &Path, secrets_in_file: &[&str]) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let c = &mut self.config;
        let db = &mut c.database;
        if db.table_prefix.is_empty()
            || !db
                .table_prefix
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            problems.push(format!(
                "  database.table_prefix: {:?} is not a table prefix: use letters, digits and underscores, like \"wp_\"",
                db.table_prefix
            ));
        }
        match mysql_async::Opts::from_url(&db.url) {
            Err(_) => problems.push(format!(
                "  database.url: {:?} is not a database URL: write mysql://user@host:3306/database",
                redact_url(&db.url)
            )),
            Ok(o) if o.pass().is_some() => problems.push(
                "  database.url: carries a password; remove it from the URL and use database.password_file".to_owned(),
            ),
            Ok(o) if o.db_name().is_none() => problems.push(format!(
                "  database.url: {:?} names no database: write mysql://user@host:3306/database",
                redact_url(&db.url)
            )),
            Ok(_) => {}
        }
        within(&mut problems, "database.pool_max", db.pool_max as u64, 2..=100);
        within(
            &mut problems,
            "database.connect_timeout_secs",
            db.connect_timeout_secs,
            1..=600,
        );
        if let Some(level) = &c.log.level {
            if let Err(e) = crate::telemetry::check_filter(level) {
                problems.push(format!("  log.level: {e}"));
            }
        }
        match (&db.tls, &db.ca_file) {
            (TlsMode::VerifyCa, None) => {
                problems.push("  database.ca_file: required when database.tls = \"verify_ca\"".to_owned())
            }
            (_, Some(ca)) => {
                if let Err(e) = std::fs::File::open(ca) {
                    problems.push(format!("  database.ca_file: cannot read {}: {e}", ca.display()));
                }
            }
            _ => {}
        }
        if !(1..=100).contains(&c.invoices.retain_years) {
            problems.push(format!(
                "  invoices.retain_years: {} is not a retention period: write the statutory years, 1 to 100 (7 in the Netherlands)",
                c.invoices.retain_years
            ));
        }
        if c.invoices.statuses.is_empty() {
            problems.push("  invoices.statuses: must name at least one order status, like \"completed\"".to_owned());
        }
        if let Some(s) = c.invoices.statuses.iter().find(|s| s.starts_with("wc-")) {
            problems.push(format!("  invoices.statuses: write {:?} without the wc- prefix", s));
        }
        if let Some(s) = c.invoices.statuses.iter().find(|s| s.trim().is_empty()) {
            problems.push(format!("  invoices.statuses: {s:?} is not an order status"));
        }
        if c.customers.roles.is_empty() {
            problems.push("  customers.roles: must name at least one role".to_owned());
        }
        if let Some(r) = c.customers.roles.iter().find(|r| r.trim().is_empty()) {
            problems.push(format!("  customers.roles: {r:?} is not a role"));
        }
        if c.requests.export_dir.as_os_str().is_empty() {
            problems.push(
                "  requests.export_dir: must not be empty: name a directory, like \"/var/lib/wc-retention/exports\""
                    .to_owned(),
            );
        }
        if let Some(e) = c.customers.protected_emails.iter().find(|e| !e.contains('@')) {
            problems.push(format!("  customers.protected_emails: {e:?} is not an email address"));
        }
        if !(c.safety.max_share > 0.0 && c.safety.max_share <= 1.0) {
            problems.push(format!(
                "  safety.max_share: {} is not a share: write a number above 0 and at most 1, like 0.1 for 10%",
                c.safety.max_share
            ));
        }
        for (key, n) in [
            ("apply.customer_batch", c.apply.customer_batch),
            ("apply.order_batch", c.apply.order_batch),
        ] {
            if !(1..=10_000).contains(&n) {
                problems.push(format!("  {key}: {n} is out of range: use 1 to 10000"));
            }
        }
        let workers = c.apply.workers;
        if workers == 0 || (workers > 1 && workers >= db.pool_max) {
            problems.push(format!(
                "  apply.workers: {workers} is out of range: use 1, or at most database.pool_max - 1 (here {})",
                db.pool_max.saturating_sub(1)
            ));
        }
        for (i, p) in c.processors.iter().enumerate() {
            for (key, value) in [("name", &p.name), ("purpose", &p.purpose), ("country", &p.country)] {
                if value.trim().is_empty() {
                    problems.push(format!("  processors[{i}].{key}: must not be empty"));
                }
            }
            for category in p.categories.iter().filter(|c| !DATA_CATEGORIES.contains(&c.as_str())) {
                problems.push(format!(
                    "  processors[{i}].categories: {category:?} is not a data category; use any of {}",
                    DATA_CATEGORIES.join(", ")
                ));
            }
        }
        let (initial, max) = (c.schedule.retry_initial_secs, c.schedule.retry_max_secs);
        if !(1..=86_400).contains(&initial) {
            problems.push(format!(
                "  schedule.retry_initial_secs: {initial} is out of range: use 1 to 86400 (a day)"
            ));
        } else if max < initial || max > 7 * 86_400 {
            problems.push(format!(
                "  schedule.retry_max_secs: {max} must be at least retry_initial_secs ({initial}) and at most 604800 (a week)"
            ));
        }
        let meta_keys = c
            .personal_data
            .extra_order_meta_keys
            .iter()
            .map(|k| ("personal_data.extra_order_meta_keys", k))
            .chain(
                c.personal_data
                    .extra_user_meta_keys
                    .iter()
                    .map(|k| ("personal_data.extra_user_meta_keys", k)),
            );
        for (key, k) in meta_keys {
            if k.is_empty() || k.len() > 255 {
                problems.push(format!("  {key}: {k:?} is not a meta key (1 to 255 characters)"));
            }
        }
        if let Some(rest) = &c.rest {
            if let Err(problem) = check_rest_url(&rest.url, rest.allow_insecure_http, &mut warnings) {
                problems.push(format!("  rest.url: {problem}"));
            }
            within(&mut problems, "rest.timeout_secs", rest.timeout_secs, 1..=600);
            within(&mut problems, "rest.retries", u64::from(rest.retries), 0..=10);
            if rest.verify_sample > 100 {
                problems.push(format!(
                    "  rest.verify_sample: {} is out of range (0 to 100 customers and as many orders)",
                    rest.verify_sample
                ));
            }
            if let Some(ca) = &rest.ca_file {
                if let Err(e) = std::fs::File::open(ca) {
                    problems.push(format!("  rest.ca_file: cannot read {}: {e}", ca.display()));
                }
            }
        }
        if c.apply.post_run_command.first().is_some_and(|p| p.trim().is_empty()) {
            problems.push("  apply.post_run_command: the first element must name a program".to_owned());
        }
        within(
            &mut problems,
            "apply.post_run_timeout_secs",
            c.apply.post_run_timeout_secs,
            1..=600,
        );

        let mut resolve =
            |key: &str, inline: &mut Option<Secret>, file: &Option<PathBuf>| match (inline.is_some(), file) {
                (true, Some(_)) => problems.push(format!("  {key}: set either {key} or {key}_file, not both")),
                (false, Some(f)) => match read_secret_file(f) {
                    Ok((secret, loose)) => {
                        if loose {
                            warnings.push(format!(
                                "{key}_file {} is readable by group or others; restrict it with chmod 600",
                                f.display()
                            ));
                        }
                        *inline = Some(secret);
                    }
                    Err(e) => problems.push(format!("  {key}_file: cannot read secret file {}: {e}", f.display())),
                },
                (_, None) => {}
            };
        resolve("database.password", &mut db.password, &db.password_file.clone());
        if let Some(rest) = &mut c.rest {
            resolve(
                "rest.consumer_key",
                &mut rest.consumer_key,
                &rest.consumer_key_file.clone(),
            );
            resolve(
                "rest.consumer_secret",
                &mut rest.consumer_secret,
                &rest.consumer_secret_file.clone(),
            );
        }
        resolve(
            "requests.pepper",
            &mut c.requests.pepper,
            &c.requests.pepper_file.clone(),
        );
        if let Some(rest) = &c.rest {
            let keys = [
                ("rest.consumer_key", &rest.consumer_key, &rest.consumer_key_file),
                (
                    "rest.consumer_secret",
                    &rest.consumer_secret,
                    &rest.consumer_secret_file,
                ),
            ];
            for (key, value, file) in keys {
                if value.is_none() && file.is_none() {
                    problems.push(format!("  {key}: required with [rest] (or {key}_file)"));
                }
            }
        }
        // An empty database.password stays allowed: it is how a password-less account
        // (a test server's root) is written.
        let secrets = [
            (
                "rest.consumer_key",
                c.rest.as_ref().and_then(|r| r.consumer_key.as_ref()),
            ),
            (
                "rest.consumer_secret",
                c.rest.as_ref().and_then(|r| r.consumer_secret.as_ref()),
            ),
        ];
        for (key, secret) in secrets {
            if secret.is_some_and(|s| s.expose().is_empty()) {
                problems.push(format!("  {key}: is empty: give the value, or remove the key"));
            }
        }
        if let Some(p) = &c.requests.pepper {
            if p.expose().len() < 32 {
                problems.push(
                    "  requests.pepper: too short: use at least 32 random characters (e.g. openssl rand -hex 32)"
                        .to_owned(),
                );
            }
        }

        if !secrets_in_file.is_empty() && is_loose(path) {
            warnings.push(format!(
                "config file {} holds secrets ({}) and is readable by group or others; restrict it with chmod 600 \
                 or move the secrets to *_file keys",
                path.display(),
                secrets_in_file.join(", ")
            ));
        }
        self.warnings.extend(warnings);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Checks `rest.url`: an `https://` (or allowed `http://`) URL with a host, and nothing
/// that could be a credential (a user name, password or query string), which would
/// otherwise be repeated in messages and `check`.
fn check_rest_url(url: &str, allow_http: bool, warnings: &mut Vec<String>) -> Result<(), String> {
    const BASE: &str = "write the shop's base URL, like https://shop.example.nl/";
    let parsed = reqwest::Url::parse(url);
    if url.contains(['@', '?', '#']) || parsed.as_ref().is_ok_and(|u| !u.username().is_empty()) {
        return Err(format!(
            "carries a user name, password, query or fragment (not shown); {BASE}, and the keys in \
             rest.consumer_key_file and rest.consumer_secret_file"
        ));
    }
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default());
    if host.is_some_and(str::is_empty) {
        return Err(format!("{url:?} names no host; {BASE}"));
    }
    let u = match parsed {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => return Err(format!("{url:?} is not an http:// or https:// URL; {BASE}")),
    };
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} names no host; {BASE}"));
    }
    match u.scheme() {
        "http" if allow_http => warnings.push(format!(
            "rest.url {url} is plain HTTP: requests are signed (OAuth 1.0a), but customers' data in the answers travels unencrypted"
        )),
        "http" => {
            return Err(format!(
                "{url:?} is plain HTTP; use https://, or set rest.allow_insecure_http = true for a web server on this host \
                 (requests are then signed with OAuth 1.0a, answers travel unencrypted)"
            ))
        }
        _ => {}
    }
    Ok(())
}

/// Reads a secret file as systemd credentials and `echo secret > file` write it: the
/// content without its trailing newline.
fn read_secret_file(path: &Path) -> std::io::Result<(Secret, bool)> {
    let text = std::fs::read_to_string(path)?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is empty",
        ));
    }
    Ok((Secret(value.to_owned()), is_loose(path)))
}

fn is_loose(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o077 != 0)
        .unwrap_or(false)
}

/// A database URL fit for messages: any password replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    // The environment layer is exercised by the binary's tests, which own their process
    // environment; unit tests run in parallel in one process and must not share it.
    fn load_str(text: &str) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        load_layers(&write(&dir, "config.toml", text), false)
    }

    const MINIMAL: &str = "[database]\nurl = \"mysql://wcr@db.example:3306/shop\"\n";

    fn error_of(text: &str) -> String {
        load_str(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = load_str(MINIMAL).unwrap().config;
        assert_eq!(c.database.table_prefix, "wp_");
        assert_eq!(c.customers.inactive_after.to_string(), "3 years");
        assert_eq!(c.schedule.cron.as_str(), "30 3 * * *");
        assert_eq!(c.schedule.timezone.0, chrono_tz::Europe::Amsterdam);
        assert_eq!(c.requests.deadline.to_string(), "30 days");
        assert!(c.rest.is_none());
    }

    #[test]
    fn errors_name_the_key_and_the_value() {
        let cases = [
            (format!("{MINIMAL}surprise = 1\n"), "database.surprise: unknown key"),
            (format!("surprise = 1\n{MINIMAL}"), "surprise: unknown key"),
            (
                format!("{MINIMAL}[customers]\ninactive_after = \"3 yeers\"\n"),
                "customers.inactive_after: \"3 yeers\" is not a period",
            ),
            (
                format!("{MINIMAL}[schedule]\ncron = \"30 3 * *\"\n"),
                "schedule.cron: \"30 3 * *\" is not a crontab schedule",
            ),
            (
                format!("{MINIMAL}[schedule]\ntimezone = \"Europe/Amsterdan\"\n"),
                "schedule.timezone: \"Europe/Amsterdan\" is not a known time zone",
            ),
            (
                format!("{MINIMAL}[customers]\nenabeld = false\n"),
                "customers.enabeld: unknown key",
            ),
            ("[database]\n".to_owned(), "database.url: missing"),
            (
                "[database]\nurl = \"mysql://u:hunter2@h/db\"\n".to_owned(),
                "database.url: carries a password",
            ),
            (
                format!("{MINIMAL}table_prefix = \"wp; DROP\"\n"),
                "database.table_prefix",
            ),
            (format!("{MINIMAL}[log]\nformat = \"xml\"\n"), "log.format"),
            (
                format!("{MINIMAL}[apply]\nworkers = 0\n"),
                "apply.workers: 0 is out of range: use 1, or at most database.pool_max - 1 (here 3)",
            ),
            (
                format!("{MINIMAL}pool_max = 2\n[apply]\nworkers = 2\n"),
                "apply.workers: 2 is out of range: use 1, or at most database.pool_max - 1 (here 1)",
            ),
        ];
        for (text, want) in cases {
            let e = error_of(&text);
            assert!(e.contains(&format!("\n  {want}")), "want {want:?} in:\n{e}");
            assert!(!e.contains("hunter2"), "password leaked: {e}");
        }
    }

    #[test]
    fn unreadable_secret_file_names_the_key_and_path() {
        let e = error_of(&format!("{MINIMAL}password_file = \"/nonexistent/db_password\"\n"));
        assert!(
            e.contains("database.password_file: cannot read secret file /nonexistent/db_password"),
            "{e}"
        );
    }

    #[test]
    fn secrets_from_files_env_and_never_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let pw = write(&dir, "db_password", "007\n");
        let text = format!("{MINIMAL}password_file = \"{}\"\n", pw.display());
        let cfg = write(&dir, "c.toml", &text);
        let loaded = load_layers(&cfg, false).unwrap();
        assert_eq!(loaded.config.database.password.as_ref().unwrap().expose(), "007");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

        let debug = format!("{:?}", loaded.config);
        assert!(!debug.contains("007"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn loose_secret_files_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let pw = write(&dir, "db_password", "s3cret");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = write(
            &dir,
            "c.toml",
            &format!("{MINIMAL}password_file = \"{}\"\n", pw.display()),
        );
        let loaded = load_layers(&cfg, false).unwrap();
        assert!(
            loaded.warnings[0].contains("database.password_file"),
            "{:?}",
            loaded.warnings
        );
    }

    // Every secret once inline and once from a file; none may show in `Debug`, which
    // is what a `tracing` field or an `{:?}` in a message would print.
    #[test]
    fn debug_output_holds_no_secret_inline_or_from_files() {
        let secrets = [
            "Db-Password-Inline-1",
            "ck_Key-Inline-2",
            "cs_Secret-Inline-3",
            "Pepper-Inline-4-0123456789abcdef0123456789",
            "Db-Password-File-5",
            "ck_Key-File-6",
            "cs_Secret-File-7",
            "Pepper-File-8-0123456789abcdef0123456789abcd",
        ];
        let dir = tempfile::tempdir().unwrap();
        let inline = format!(
            "[database]\nurl = \"mysql://wcr@db.example:3306/shop\"\npassword = \"{}\"\n\
             [rest]\nurl = \"https://shop.example/\"\nconsumer_key = \"{}\"\nconsumer_secret = \"{}\"\n\
             [requests]\npepper = \"{}\"\n",
            secrets[0], secrets[1], secrets[2], secrets[3]
        );
        let file = |name: &str, secret: &str| write(&dir, name, &format!("{secret}\n")).display().to_string();
        let from_files = format!(
            "[database]\nurl = \"mysql://wcr@db.example:3306/shop\"\npassword_file = \"{}\"\n\
             [rest]\nurl = \"https://shop.example/\"\nconsumer_key_file = \"{}\"\nconsumer_secret_file = \"{}\"\n\
             [requests]\npepper_file = \"{}\"\n",
            file("db", secrets[4]),
            file("ck", secrets[5]),
            file("cs", secrets[6]),
            file("pepper", secrets[7])
        );
        for (name, text, held) in [
            ("inline.toml", inline, &secrets[..4]),
            ("files.toml", from_files, &secrets[4..]),
        ] {
            let loaded = load_layers(&write(&dir, name, &text), false).unwrap();
            let c = &loaded.config;
            let rest = c.rest.as_ref().unwrap();
            let exposed = [
                c.database.password.as_ref().unwrap().expose(),
                rest.consumer_key.as_ref().unwrap().expose(),
                rest.consumer_secret.as_ref().unwrap().expose(),
                c.requests.pepper.as_ref().unwrap().expose(),
            ];
            assert_eq!(exposed, held, "{name}: the secrets are loaded");
            let debug = format!("{loaded:?}\n{c:#?}");
            for secret in secrets {
                assert!(!debug.contains(secret), "{name}: {secret} in Debug output:\n{debug}");
            }
            assert_eq!(debug.matches("[redacted]").count(), 8, "{debug}");
        }
    }

    #[test]
    fn a_loose_config_file_holding_a_secret_is_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let pepper = "Loose-Pepper-0123456789abcdef0123456789";
        let with_secret = format!("{MINIMAL}[requests]\npepper = \"{pepper}\"\n");
        for (text, mode, warned) in [
            (with_secret.as_str(), 0o644, true),
            (with_secret.as_str(), 0o640, true),
            (with_secret.as_str(), 0o600, false),
            (MINIMAL, 0o644, false),
        ] {
            let cfg = write(&dir, "c.toml", text);
            std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(mode)).unwrap();
            let loaded = load_layers(&cfg, false).unwrap();
            let warning = loaded.warnings.iter().find(|w| w.starts_with("config file"));
            assert_eq!(warning.is_some(), warned, "{mode:o} {text:?}: {:?}", loaded.warnings);
            if let Some(w) = warning {
                assert!(w.contains(&cfg.display().to_string()), "{w}");
                assert!(w.contains("(requests.pepper)"), "{w}");
                assert!(!w.contains(pepper), "{w}");
            }
        }
    }

    #[test]
    fn toml_syntax_errors_are_named_by_key_without_the_value() {
        let text =
            "top = 1\n[database]\nurl = \"x\"\npassword = Unquoted\n[[processors]]\n name = x\n[\"odd\"]\nk = 1\n";
        let keys: Vec<Option<String>> = (1..=9).map(|line| toml_key_at(text, line)).collect();
        let want = [
            Some("top"),
            Some("database"),
            Some("database.url"),
            Some("database.password"),
            Some("processors"),
            Some("processors.name"),
            None,
            None,
            None,
        ];
        assert_eq!(keys, want.map(|k| k.map(str::to_owned)));
        let e = error_of(&format!("{MINIMAL}pool_max = 99999999999999999999999\n"));
        assert!(
            e.contains("\n  database.pool_max: TOML parse error at line 3, column 12: number too large"),
            "{e}"
        );
        let e = error_of(&format!("{MINIMAL}password = Unquoted-Secret-77\n"));
        assert!(e.contains("\n  database.password: TOML parse error at line 3"), "{e}");
        assert!(!e.contains("Unquoted-Secret-77"), "{e}");
    }

    #[test]
    fn a_missing_file_is_an_error_not_an_empty_config() {
        let e = load(Path::new("/nonexistent/config.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Missing(_)), "{e}");
    }

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(redact_url("mysql://u:pw@h:3306/db"), "mysql://u:[redacted]@h:3306/db");
        assert_eq!(redact_url("mysql://u@h/db"), "mysql://u@h/db");
    }
}
