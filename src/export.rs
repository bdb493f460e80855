//! The subject-access export: one JSON document per person with everything the shop's
//! database holds about them, the processors that hold each category of it, and when each
//! item is due to be minimised, anonymised or deleted under the current policy.
//!
//! This module is pure: the document's types (the schema is `docs/export-schema.md`,
//! versioned by [`SCHEMA`]) and writing a document to a private file. Reading the store is
//! [`crate::store::export`]; the due dates are [`crate::policy::due`].

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{self, Processor};
use crate::localtime::ShopZone;
use crate::policy::due::{Act, Stage};

/// The schema of the document, in its `schema` field. A change that removes or renames a
/// field, or changes a field's meaning, gets a new number; added fields do not.
pub const SCHEMA: &str = "wc-retention/export/1";

/// The person an export is about, resolved: their account, if they have one, and their
/// email (lowercased; the account's email when there is an account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub user_id: Option<u64>,
    pub email: String,
}

impl Who {
    pub fn new(user_id: Option<u64>, email: &str) -> Who {
        Who {
            user_id: user_id.filter(|id| *id > 0),
            email: email.trim().to_lowercase(),
        }
    }
}

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Export {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// When the export was made (the policy's "now" for the due dates).
    pub generated_at: String,
    /// The same instant, for naming the file.
    #[serde(skip)]
    pub generated: DateTime<Utc>,
    pub shop: Shop,
    pub subject: SubjectInfo,
    /// The policy the due dates follow.
    pub policy: PolicySummary,
    /// When the person as a whole is forgotten (their account, or as a guest their orders).
    pub due: Vec<Due>,
    pub profile: Profile,
    pub addresses: Addresses,
    pub orders: Vec<Order>,
    pub order_notes: Vec<OrderNote>,
    pub reviews: Vec<Review>,
    pub downloads: Vec<Download>,
    pub payment_tokens: Vec<PaymentToken>,
    /// The processors as configured (`[[processors]]`).
    pub processors: Vec<Processor>,
    /// Every data category with the processors that hold it.
    pub categories: Vec<Category>,
    /// Values that could not be read (named by id, never by value).
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Shop {
    /// The shop's time zone; every time in the document is on its clock.
    pub time_zone: String,
    /// Where the orders were read: `hpos` or `posts`.
    pub order_storage: &'static str,
}

#[derive(Debug, Serialize)]
pub struct SubjectInfo {
    pub user_id: Option<u64>,
    pub email: String,
    /// An account with `user_id` exists.
    pub has_account: bool,
    /// Processing of the person is restricted (their request): no automatic action is due.
    pub restricted: bool,
}

#[derive(Debug, Serialize)]
pub struct PolicySummary {
    pub customers_enabled: bool,
    pub guests_enabled: bool,
    pub inactive_after: String,
    /// `anonymise` or `delete`.
    pub customer_action: String,
    /// Order statuses (without `wc-`) that are invoices.
    pub invoice_statuses: Vec<String>,
    pub invoice_retain_years: u32,
    pub fiscal_year_end: String,
    pub keep_shipping_address: bool,
    /// Per unpaid status: its age and action, when the unpaid rule is on.
    pub unpaid: Vec<UnpaidSummary>,
    /// `null` when `[minimise]` is off.
    pub order_ip_after: Option<String>,
    pub download_ip_after: Option<String>,
    pub expired_sessions_deleted: bool,
}

#[derive(Debug, Serialize)]
pub struct UnpaidSummary {
    pub status: String,
    pub after: String,
    pub action: String,
}

impl PolicySummary {
    pub fn of(c: &config::Config) -> PolicySummary {
        let u = &c.unpaid;
        let unpaid = if u.enabled {
            [
                ("pending", &u.pending),
                ("failed", &u.failed),
                ("cancelled", &u.cancelled),
                ("checkout-draft", &u.checkout_draft),
            ]
            .into_iter()
            .map(|(status, rule)| UnpaidSummary {
                status: status.to_owned(),
                after: rule.after.to_string(),
                action: match rule.action {
                    config::UnpaidAction::Trash => "trash",
                    config::UnpaidAction::Delete => "delete",
                    config::UnpaidAction::Anonymise => "anonymise",
                }
                .to_owned(),
            })
            .collect()
        } else {
            Vec::new()
        };
        let m = &c.minimise;
        PolicySummary {
            customers_enabled: c.customers.enabled,
            guests_enabled: c.guests.enabled,
            inactive_after: c.customers.inactive_after.to_string(),
            customer_action: match c.customers.action {
                config::CustomerAction::Anonymise => "anonymise",
                config::CustomerAction::Delete => "delete",
            }
            .to_owned(),
            invoice_statuses: c.invoices.statuses.clone(),
            invoice_retain_years: c.invoices.retain_years,
            fiscal_year_end: c.invoices.fiscal_year_end.to_string(),
            keep_shipping_address: c.invoices.keep_shipping_address,
            unpaid,
            order_ip_after: m.enabled.then(|| m.ip_after.to_string()),
            download_ip_after: m.enabled.then(|| m.download_ip_after.to_string()),
            expired_sessions_deleted: m.enabled && m.expired_sessions,
        }
    }
}

/// One step of an item's future under the policy (see `docs/export-schema.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Due {
    /// `keep`, `remove_ip`, `trash`, `minimise`, `anonymise` or `delete`.
    pub action: Act,
    /// From when the policy calls for it; `null` when it waits for an event (`condition`)
    /// or never comes (`keep`).
    pub at: Option<String>,
    /// The rule (`inactive_customer`, …) or, for `keep`, why.
    pub rule: &'static str,
    pub condition: Option<&'static str>,
    /// Already done.
    pub done: bool,
}

/// The due stages of one item, with their dates on the shop's clock.
pub fn due(stages: &[Stage], zone: &ShopZone) -> Vec<Due> {
    stages
        .iter()
        .map(|s| Due {
            action: s.action,
            at: s.at.map(|t| zone.rfc3339(t)),
            rule: s.rule,
            condition: s.condition,
            done: s.done,
        })
        .collect()
}

/// Everything about the person that is not an order: the account, the analytics rows,
/// shop sessions and WordPress privacy requests.
#[derive(Debug, Default, Serialize)]
pub struct Profile {
    pub account: Option<Account>,
    /// `wc_customer_lookup` (WooCommerce Analytics): the account's row, or a guest's.
    pub customer_lookup: Vec<CustomerLookup>,
    /// WooCommerce sessions (cart and checkout address) of the account or under the email.
    pub sessions: Vec<ShopSession>,
    /// WordPress privacy requests (Tools › Export/Erase Personal Data) under the email.
    pub privacy_requests: Vec<PrivacyRequest>,
}

#[derive(Debug, Serialize)]
pub struct Account {
    pub user_id: u64,
    pub login: String,
    pub nicename: String,
    pub email: String,
    pub display_name: String,
    pub url: String,
    pub registered: Option<String>,
    /// WordPress roles on this site.
    pub roles: Vec<String>,
    pub first_name: String,
    pub last_name: String,
    pub nickname: String,
    pub description: String,
    /// `wc_last_active`: the day WooCommerce last saw the customer.
    pub wc_last_active: Option<String>,
    /// `last_update`: when the customer's data was last saved.
    pub last_update: Option<String>,
    /// The latest of every activity signal (README "Last activity"): what the
    /// inactive-customer rule counts from.
    pub last_activity: Option<String>,
    /// The `[personal_data] extra_user_meta_keys` the account has.
    pub extra_meta: BTreeMap<String, String>,
    /// WordPress login sessions (`session_tokens`).
    pub logins: Vec<Login>,
    /// The saved cart (`_woocommerce_persistent_cart_*`).
    pub saved_cart: Vec<CartItem>,
    /// The service anonymised the account before.
    pub anonymised: bool,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize)]
pub struct Login {
    pub login: Option<String>,
    pub expires: Option<String>,
    pub ip_address: String,
    pub user_agent: String,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CartItem {
    pub product_id: Option<u64>,
    pub quantity: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CustomerLookup {
    pub id: u64,
    pub user_id: Option<u64>,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub city: String,
    pub state: String,
    pub postcode: String,
    pub country: String,
    pub date_last_active: Option<String>,
    pub date_registered: Option<String>,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize)]
pub struct ShopSession {
    pub id: u64,
    pub expires: Option<String>,
    /// The checkout details the session holds (`customer`): field → value, non-empty ones.
    pub customer: BTreeMap<String, String>,
    pub cart: Vec<CartItem>,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize)]
pub struct PrivacyRequest {
    pub id: u64,
    /// `export_personal_data` or `remove_personal_data`.
    pub action: String,
    /// `request-pending`, `request-confirmed`, `request-completed`, `request-failed`.
    pub status: String,
    pub requested: Option<String>,
    pub confirmed: Option<String>,
    pub completed: Option<String>,
    pub due: Vec<Due>,
}

/// The account's saved addresses (user meta `billing_*`, `shipping_*`).
#[derive(Debug, Default, Serialize)]
pub struct Addresses {
    pub billing: Option<Address>,
    pub shipping: Option<Address>,
    pub due: Vec<Due>,
}

/// WooCommerce's address fields; empty where nothing is stored. Shipping has no email.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Address {
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub address_1: String,
    pub address_2: String,
    pub city: String,
    pub state: String,
    pub postcode: String,
    pub country: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub phone: String,
}

impl Address {
    /// Sets one field by WooCommerce's name; `false` for an unknown name.
    pub fn set(&mut self, field: &str, value: String) -> bool {
        let slot = match field {
            "first_name" => &mut self.first_name,
            "last_name" => &mut self.last_name,
            "company" => &mut self.company,
            "address_1" => &mut self.address_1,
            "address_2" => &mut self.address_2,
            "city" => &mut self.city,
            "state" => &mut self.state,
            "postcode" => &mut self.postcode,
            "country" => &mut self.country,
            "phone" => &mut self.phone,
            "email" => {
                self.email = Some(value);
                return true;
            }
            _ => return false,
        };
        *slot = value;
        true
    }

    pub fn is_empty(&self) -> bool {
        [
            &self.first_name,
            &self.last_name,
            &self.company,
            &self.address_1,
            &self.address_2,
            &self.city,
            &self.state,
            &self.postcode,
            &self.country,
            &self.phone,
        ]
        .iter()
        .all(|v| v.is_empty())
            && self.email.as_deref().is_none_or(str::is_empty)
    }
}

#[derive(Debug, Serialize)]
pub struct Order {
    pub id: u64,
    /// WooCommerce's status without `wc-`: `completed`, `processing`, …
    pub status: String,
    /// `account` (linked to the account) or `guest` (placed without logging in).
    pub placed_as: &'static str,
    pub created: Option<String>,
    pub paid: Option<String>,
    pub completed: Option<String>,
    pub updated: Option<String>,
    pub currency: String,
    pub totals: Totals,
    pub payment_method: String,
    pub payment_method_title: String,
    pub transaction_id: String,
    pub customer_note: String,
    pub ip_address: String,
    pub user_agent: String,
    pub billing: Address,
    pub shipping: Address,
    pub lines: Vec<Line>,
    pub refunds: Vec<Refund>,
    /// Order attribution (`_wc_order_attribution_*`, without the prefix).
    pub attribution: BTreeMap<String, String>,
    /// The `[personal_data] extra_order_meta_keys` and other public (not `_`-prefixed)
    /// order meta.
    pub extra_meta: BTreeMap<String, String>,
    /// `no`, `minimised` or `anonymised`: what the service did to the order already.
    pub processed: &'static str,
    pub due: Vec<Due>,
}

/// Amounts as WooCommerce stores them, as decimal strings (at least two decimals).
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub total: Option<String>,
    pub tax: Option<String>,
    pub shipping: Option<String>,
    pub shipping_tax: Option<String>,
    pub discount: Option<String>,
    pub discount_tax: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Line {
    pub id: u64,
    /// `line_item`, `shipping`, `fee`, `coupon` or `tax`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub product_id: Option<u64>,
    pub variation_id: Option<u64>,
    pub quantity: Option<String>,
    pub subtotal: Option<String>,
    pub subtotal_tax: Option<String>,
    pub total: Option<String>,
    pub tax: Option<String>,
    /// Other item meta not starting with `_` (shipping method, tax rate, custom fields).
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct Refund {
    pub id: u64,
    pub created: Option<String>,
    pub amount: Option<String>,
    pub reason: String,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize)]
pub struct OrderNote {
    pub id: u64,
    pub order_id: u64,
    pub date: Option<String>,
    pub content: String,
    /// Sent to the customer (a "note to customer").
    pub to_customer: bool,
    /// `system` (WooCommerce) or `staff` (typed by the shop's staff).
    pub added_by: &'static str,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize)]
pub struct Review {
    pub id: u64,
    /// The product (or post) reviewed.
    pub post_id: u64,
    pub post_title: String,
    /// `review`, `comment`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub date: Option<String>,
    pub author: String,
    pub author_email: String,
    pub author_url: String,
    pub ip_address: String,
    pub user_agent: String,
    pub content: String,
    pub rating: Option<String>,
    pub verified: Option<String>,
    /// WordPress's `comment_approved`: `1`, `0`, `spam`, `trash`.
    pub approved: String,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize)]
pub struct Download {
    pub permission_id: u64,
    pub download_id: String,
    pub product_id: u64,
    pub product: String,
    pub order_id: u64,
    pub email: String,
    pub downloads_remaining: String,
    pub access_granted: Option<String>,
    pub access_expires: Option<String>,
    pub download_count: Option<u64>,
    pub log: Vec<DownloadLog>,
    pub due: Vec<Due>,
}

#[derive(Debug, Serialize)]
pub struct DownloadLog {
    pub id: u64,
    pub at: Option<String>,
    pub ip_address: String,
    pub due: Vec<Due>,
}

/// A saved payment method, summarised: never the gateway's token itself.
#[derive(Debug, Serialize)]
pub struct PaymentToken {
    pub id: u64,
    pub gateway: String,
    /// `CC`, `eCheck`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub is_default: bool,
    pub card_type: Option<String>,
    pub last4: Option<String>,
    pub expiry_month: Option<String>,
    pub expiry_year: Option<String>,
    pub due: Vec<Due>,
}

/// The token meta keys an export may show; everything else (the token) stays out.
pub const SAFE_TOKEN_META: [&str; 4] = ["card_type", "last4", "expiry_month", "expiry_year"];

#[derive(Debug, Serialize, PartialEq)]
pub struct Category {
    /// One of [`config::DATA_CATEGORIES`]: the document's section of that name.
    pub category: &'static str,
    pub processors: Vec<CategoryProcessor>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct CategoryProcessor {
    pub name: String,
    pub purpose: String,
    pub country: String,
}

/// Every data category, in [`config::DATA_CATEGORIES`] order, with the processors that
/// hold it (in config order).
pub fn categories(processors: &[Processor]) -> Vec<Category> {
    config::DATA_CATEGORIES
        .iter()
        .map(|category| Category {
            category,
            processors: processors
                .iter()
                .filter(|p| p.categories.iter().any(|c| c == category))
                .map(|p| CategoryProcessor {
                    name: p.name.clone(),
                    purpose: p.purpose.clone(),
                    country: p.country.clone(),
                })
                .collect(),
        })
        .collect()
}

/// A stored amount as a decimal string with at least two decimals (`12.50000000` →
/// `12.50`, `5` → `5.00`); `None` when nothing is stored, the text itself when it is no
/// number.
pub fn amount(stored: &str) -> Option<String> {
    let s = stored.trim();
    if s.is_empty() {
        return None;
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let numeric =
        !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit());
    if !numeric {
        return Some(s.to_owned());
    }
    let mut frac = frac.trim_end_matches('0').to_owned();
    while frac.len() < 2 {
        frac.push('0');
    }
    let sign = if s.starts_with('-') { "-" } else { "" };
    Some(format!("{sign}{int}.{frac}"))
}

/// Writes `doc` as a new file in `dir` (created, mode 0700, if missing) that only its
/// owner can read (mode 0600), and returns its path. The name holds the time of the export
/// and, when given, the request's register id, never anything about the person:
/// `export-<request id>-<UTC time>-<random>.json` or `export-<UTC time>-<random>.json`.
///
/// The file appears whole or not at all: the document goes to a hidden temporary file
/// (created exclusively with mode 0600), is flushed to disk, and is then linked under its
/// final name, which never replaces an existing file.
pub fn write(doc: &Export, dir: &Path, request: Option<u64>) -> io::Result<PathBuf> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let path = dir.join(file_name(doc.generated, request));
    write_to(doc, &path)?;
    Ok(path)
}

/// Writes `doc` to `path` (`export --out FILE`) as [`write`] does: mode 0600, whole or not
/// at all, never replacing an existing file (that is an `AlreadyExists` error).
pub fn write_to(doc: &Export, path: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the export path names no file"))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(".{}.part", name.to_string_lossy()));
    let result = write_new(&temp, doc).and_then(|()| fs::hard_link(&temp, path));
    let _ = fs::remove_file(&temp);
    result?;
    File::open(dir)?.sync_all()
}

fn write_new(path: &Path, doc: &Export) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    let mut text = serde_json::to_vec_pretty(doc).map_err(io::Error::other)?;
    text.push(b'\n');
    file.write_all(&text)?;
    file.sync_all()
}

/// `export-[<request>-]<YYYYMMDDTHHMMSSZ>-<8 random hex digits>.json`.
pub fn file_name(at: DateTime<Utc>, request: Option<u64>) -> String {
    let mut random = [0u8; 4];
    // Without an OS random source the time alone still names the file; a clash is refused.
    let _ = getrandom::fill(&mut random);
    let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let time = at.format("%Y%m%dT%H%M%SZ");
    match request {
        Some(id) => format!("export-{id}-{time}-{random}.json"),
        None => format!("export-{time}-{random}.json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_keep_two_decimals() {
        assert_eq!(amount("12.50000000").as_deref(), Some("12.50"));
        assert_eq!(amount("0.00000000").as_deref(), Some("0.00"));
        assert_eq!(amount("5").as_deref(), Some("5.00"));
        assert_eq!(amount("-12.5").as_deref(), Some("-12.50"));
        assert_eq!(amount("4.955").as_deref(), Some("4.955"));
        assert_eq!(amount(" ").as_deref(), None);
        assert_eq!(amount("n/a").as_deref(), Some("n/a"));
    }

    #[test]
    fn who_is_lowercased_and_user_zero_is_no_account() {
        assert_eq!(
            Who::new(Some(0), " Jan@Example.NL "),
            Who {
                user_id: None,
                email: "jan@example.nl".into()
            }
        );
    }

    #[test]
    fn every_category_lists_the_processors_holding_it() {
        let p = |name: &str, categories: &[&str]| Processor {
            name: name.into(),
            purpose: format!("{name} purpose"),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            country: "NL".into(),
        };
        let list = categories(&[
            p("Mollie", &["orders", "payment_tokens"]),
            p("PostNL", &["addresses", "orders"]),
        ]);
        let names: Vec<(&str, Vec<&str>)> = list
            .iter()
            .map(|c| (c.category, c.processors.iter().map(|p| p.name.as_str()).collect()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("profile", vec![]),
                ("addresses", vec!["PostNL"]),
                ("orders", vec!["Mollie", "PostNL"]),
                ("order_notes", vec![]),
                ("reviews", vec![]),
                ("downloads", vec![]),
                ("payment_tokens", vec!["Mollie"]),
            ]
        );
    }

    #[test]
    fn file_names_hold_the_time_and_request_only() {
        let at = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let a = file_name(at, Some(42));
        assert!(a.starts_with("export-42-20261118T"), "{a}");
        assert!(a.ends_with(".json"));
        assert_ne!(file_name(at, None), file_name(at, None));
    }
}
