//! The pure core: retention decisions from facts read from the store and a `now` passed
//! in. No I/O and no clock reads, so every decision is testable with plain values.
//!
//! A [`Planner`] sees the store in three passes, in this order: customers (by user id),
//! guests (by billing email), then orders (by order id), and last sessions and download
//! logs. What it learnt about people in the first two passes decides the orders.

pub mod due;
pub mod fiscal;
mod rules;

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::anonymise;
use crate::config::{CustomerAction, UnpaidAction};
use crate::php;
use crate::plan::{Action, Plan, Rule, Step};

pub use rules::{Erasure, PolicyError, Restrictions, Rules};

/// An account's or guest's orders, as activity and openness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderActivity {
    /// The newest order of any status but `checkout-draft`.
    pub last_order: Option<DateTime<Utc>>,
    /// Orders in `processing` or `on-hold`.
    pub open: u64,
    /// The newest `pending` order: young ones count as open.
    pub last_pending: Option<DateTime<Utc>>,
    /// Orders (any status but `checkout-draft`) whose creation date cannot be read (NULL
    /// or a zero date): any of them may be newer than `last_order`.
    pub undated: u64,
    /// The lowest id among the `undated` orders, for the warning.
    pub first_undated: Option<u64>,
}

/// Dates an account's rows hold but that cannot be read: a zero `user_registered`, or a
/// `wc_last_active` / `last_update` that is not a unix time. An empty meta value or no
/// row at all is no date rather than an unreadable one (see [`due::last_activity`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadableDates {
    pub registered: bool,
    pub wc_last_active: bool,
    pub last_update: bool,
}

/// An order's dates that are stored but cannot be read: a NULL or zero creation date, a
/// zero `date_paid_gmt` / `date_completed_gmt`, or a `_date_paid` / `_date_completed`
/// meta value that is not a unix time (an empty one means "not paid", "not completed").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnreadableOrderDates {
    pub created: bool,
    pub paid: bool,
    pub completed: bool,
}

/// A WordPress user, as the customer rule sees them.
#[derive(Debug, Clone, Default)]
pub struct CustomerFacts {
    pub user_id: u64,
    /// Lowercased; compared with protected emails and restrictions, never logged.
    pub email: String,
    /// The raw `{prefix}capabilities` meta (serialized PHP), `None` without one.
    pub capabilities: Option<Vec<u8>>,
    pub registered: Option<DateTime<Utc>>,
    /// `wc_last_active`: the day WooCommerce last saw the customer (since WooCommerce 3.4).
    pub wc_last_active: Option<DateTime<Utc>>,
    /// `last_update`: when the customer's data was last saved.
    pub last_update: Option<DateTime<Utc>>,
    /// The raw `session_tokens` meta: WordPress login sessions with their login times.
    pub session_tokens: Option<Vec<u8>>,
    /// The latest expiry of the customer's WooCommerce sessions (a visit, 48 hours ahead).
    pub session_expiry: Option<DateTime<Utc>>,
    pub orders: OrderActivity,
    /// Orders placed without logging in under the account's email (before registering,
    /// or as a guest later): the same person's activity.
    pub guest_orders: OrderActivity,
    /// The service anonymised this account before.
    pub anonymised: bool,
    /// Dates above that are stored but could not be read (and are `None`).
    pub unreadable: UnreadableDates,
    /// Another account has the same email (WordPress does not enforce unique emails in
    /// the database; imports and letter case make duplicates).
    pub email_shared: bool,
}

/// People who ordered without an account, one per billing email.
#[derive(Debug, Clone, Default)]
pub struct GuestFacts {
    /// Lowercased billing email.
    pub email: String,
    pub orders: OrderActivity,
    /// An account uses this email: the person is judged by the customer rule instead.
    pub has_account: bool,
}

/// Whether the service already processed an order (its own marker meta).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Processed {
    #[default]
    No,
    Minimised,
    Anonymised,
}

/// The account an order belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Account {
    /// A guest order (`customer_id` 0).
    #[default]
    Guest,
    Present {
        /// The service anonymised it before.
        anonymised: bool,
    },
    /// `customer_id` names a user that no longer exists.
    Missing,
}

/// One order (`shop_order`; refunds follow their parent).
#[derive(Debug, Clone, Default)]
pub struct OrderFacts {
    pub id: u64,
    /// As stored: `wc-completed`, `trash`, …
    pub status: String,
    pub customer_id: u64,
    pub account: Account,
    /// Lowercased billing email.
    pub email: String,
    pub created: Option<DateTime<Utc>>,
    pub paid: Option<DateTime<Utc>>,
    pub completed: Option<DateTime<Utc>>,
    pub processed: Processed,
    /// The billing email is a real one, not empty or the anonymised value.
    pub contact_present: bool,
    /// An IP address or user agent is stored.
    pub ip_present: bool,
    /// Dates above that are stored but could not be read (and are `None`).
    pub unreadable: UnreadableOrderDates,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionFacts {
    pub id: u64,
    pub expiry: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct DownloadFacts {
    pub id: u64,
    pub at: Option<DateTime<Utc>>,
    pub ip_present: bool,
}

/// Statuses of orders being fulfilled: they keep their person a client.
pub const OPEN_STATUSES: [&str; 2] = ["wc-processing", "wc-on-hold"];

/// Warnings are listed up to this many; the rest are counted.
const MAX_WARNINGS: usize = 100;

/// Builds a [`Plan`] from facts, pass by pass.
pub struct Planner<'r> {
    rules: &'r Rules,
    plan: Plan,
    gone_users: HashSet<u64>,
    untouchable_users: HashSet<u64>,
    gone_guests: HashSet<String>,
    untouchable_guests: HashSet<String>,
    /// Emails of accounts forgotten or never touched in this plan: their guest orders follow.
    gone_account_emails: HashSet<String>,
    untouchable_account_emails: HashSet<String>,
    /// Emails of accounts kept in this plan that another account uses too: the guest
    /// orders under such an email are as much the kept account's as the forgotten one's.
    kept_shared_emails: HashSet<String>,
    unlisted_warnings: u64,
}

impl<'r> Planner<'r> {
    pub fn new(rules: &'r Rules) -> Planner<'r> {
        Planner {
            rules,
            plan: Plan {
                now: rules.now,
                ..Plan::default()
            },
            gone_users: HashSet::new(),
            untouchable_users: HashSet::new(),
            gone_guests: HashSet::new(),
            untouchable_guests: HashSet::new(),
            gone_account_emails: HashSet::new(),
            untouchable_account_emails: HashSet::new(),
            kept_shared_emails: HashSet::new(),
            unlisted_warnings: 0,
        }
    }

    pub fn finish(mut self) -> Plan {
        if self.unlisted_warnings > 0 {
            self.plan
                .warnings
                .push(format!("{} more warnings not listed", self.unlisted_warnings));
        }
        self.plan
    }

    fn warn(&mut self, message: String) {
        if self.plan.warnings.len() < MAX_WARNINGS {
            self.plan.warnings.push(message);
        } else {
            self.unlisted_warnings += 1;
        }
    }

    /// Pass 1: one registered user.
    pub fn customer(&mut self, f: &CustomerFacts) {
        self.judge_customer(f);
        if f.email_shared && !self.gone_users.contains(&f.user_id) {
            self.kept_shared_emails.insert(f.email.clone());
        }
    }

    fn judge_customer(&mut self, f: &CustomerFacts) {
        let r = self.rules;
        let roles = match f.capabilities.as_deref().map(php::roles) {
            None => Vec::new(),
            Some(Ok(roles)) => roles,
            Some(Err(e)) => {
                self.warn(format!("user {}: roles unreadable ({e}); skipped", f.user_id));
                self.untouchable(f);
                return;
            }
        };
        let is_customer = !roles.is_empty() && roles.iter().all(|role| r.customer_roles.contains(role));
        if let Some(erasure) = &r.erasure {
            self.erasure_customer(erasure, f, is_customer);
            return;
        }
        // No role on this site, or any role beyond the customer roles: not a customer.
        if !is_customer {
            self.untouchable(f);
            return;
        }
        self.plan.subjects_total += 1;
        if r.protected_user_ids.contains(&f.user_id) || r.protected_emails.contains(&f.email) {
            self.untouchable(f);
            return;
        }
        if r.restrictions.contains(&f.email) {
            self.plan.restricted_skipped += 1;
            self.untouchable(f);
            return;
        }
        let action = match r.customer_action {
            CustomerAction::Anonymise => Action::AnonymiseCustomer,
            CustomerAction::Delete => Action::DeleteCustomer,
        };
        if f.anonymised {
            if !looks_anonymised(&f.email) {
                self.push_customer(Rule::Repair, Action::AnonymiseCustomer, f.user_id);
            }
            return;
        }
        if !r.customers_enabled || r.is_open(&f.orders) || r.is_open(&f.guest_orders) {
            return;
        }
        let activity = due::last_activity(f);
        let Some(last) = activity.last else {
            self.warn(format!("user {}: no activity date can be read; skipped", f.user_id));
            return;
        };
        if last >= r.inactive_before {
            return;
        }
        if !activity.unknown.is_empty() {
            // Inactive on the dates that can be read; the others may be a later visit.
            let unknown: Vec<String> = activity.unknown.iter().map(ToString::to_string).collect();
            self.warn(format!(
                "user {}: inactive on the dates that can be read, but {}; skipped until it is repaired",
                f.user_id,
                unknown.join(", ")
            ));
            return;
        }
        self.gone_users.insert(f.user_id);
        self.gone_account_emails.insert(f.email.clone());
        self.plan.subjects_forgotten += 1;
        self.push_customer(Rule::InactiveCustomer, action, f.user_id);
    }

    /// An erasure request: the person's accounts go now, whatever their activity,
    /// protection or restriction; everyone else is left alone. A staff account is kept
    /// (an administrator is removed by hand) with a warning.
    fn erasure_customer(&mut self, erasure: &Erasure, f: &CustomerFacts, is_customer: bool) {
        if !erasure.covers_user(f.user_id, &f.email) {
            self.untouchable(f);
            return;
        }
        self.plan.subjects_total += 1;
        if !is_customer {
            self.warn(format!(
                "user {}: has a role outside customers.roles; the account is kept, its orders are processed",
                f.user_id
            ));
        } else if !(f.anonymised && looks_anonymised(&f.email)) {
            let action = match self.rules.customer_action {
                CustomerAction::Anonymise => Action::AnonymiseCustomer,
                CustomerAction::Delete => Action::DeleteCustomer,
            };
            self.push_customer(Rule::ErasureRequest, action, f.user_id);
        }
        self.plan.subjects_forgotten += 1;
        self.gone_users.insert(f.user_id);
        self.gone_account_emails.insert(f.email.clone());
    }

    fn untouchable(&mut self, f: &CustomerFacts) {
        self.untouchable_users.insert(f.user_id);
        self.untouchable_account_emails.insert(f.email.clone());
    }

    fn push_customer(&mut self, rule: Rule, action: Action, id: u64) {
        self.plan.customers.push(Step { rule, action, id });
    }

    /// Pass 2: one guest email.
    pub fn guest(&mut self, f: &GuestFacts) {
        let r = self.rules;
        if let Some(erasure) = &r.erasure {
            if f.email == erasure.email {
                if !f.has_account {
                    self.plan.subjects_total += 1;
                    self.plan.subjects_forgotten += 1;
                }
                self.gone_guests.insert(f.email.clone());
            } else {
                self.untouchable_guests.insert(f.email.clone());
            }
            return;
        }
        if !f.has_account {
            self.plan.subjects_total += 1;
        }
        // Protection and restriction cover the person's guest orders even when the email
        // also has an account (they ordered as a guest before registering).
        if r.protected_emails.contains(&f.email) {
            self.untouchable_guests.insert(f.email.clone());
            return;
        }
        if r.restrictions.contains(&f.email) {
            if !f.has_account {
                self.plan.restricted_skipped += 1;
            }
            self.untouchable_guests.insert(f.email.clone());
            return;
        }
        if f.has_account {
            // The account's rule judged this person, guest orders included. Where several
            // accounts share the email, the guest orders go only when all of them go.
            if self.untouchable_account_emails.contains(&f.email) {
                self.untouchable_guests.insert(f.email.clone());
            } else if self.gone_account_emails.contains(&f.email) && !self.kept_shared_emails.contains(&f.email) {
                self.gone_guests.insert(f.email.clone());
            }
            return;
        }
        if !r.guests_enabled || r.is_open(&f.orders) {
            return;
        }
        let o = &f.orders;
        if o.last_order.is_none_or(|last| last < r.inactive_before) {
            // An order without a readable date may be their newest: never forgotten on
            // the others' dates (see `due::last_activity`). Named by that order's id.
            if let (true, Some(id)) = (o.undated > 0, o.first_undated) {
                self.warn(format!(
                    "order {id}: a guest order without a readable creation date; the guest's orders are kept \
                     until it is repaired"
                ));
                return;
            }
        }
        if o.last_order.is_some_and(|last| last < r.inactive_before) {
            self.plan.subjects_forgotten += 1;
            self.gone_guests.insert(f.email.clone());
        }
    }

    /// Pass 3: one order, in order-id order.
    pub fn order(&mut self, f: &OrderFacts) {
        let r = self.rules;
        if let Some(erasure) = &r.erasure {
            self.erasure_order(erasure, f);
            return;
        }
        let untouchable = match &f.account {
            Account::Present { .. } => self.untouchable_users.contains(&f.customer_id),
            Account::Guest => self.untouchable_guests.contains(&f.email),
            Account::Missing => false,
        };
        if untouchable
            || (f.contact_present && (r.protected_emails.contains(&f.email) || r.restrictions.contains(&f.email)))
        {
            return;
        }
        if f.processed != Processed::No {
            self.processed_order(f);
            return;
        }
        // An order being fulfilled is never forgotten, whoever placed it.
        let open = OPEN_STATUSES.contains(&f.status.as_str());
        let subject_rule = match &f.account {
            Account::Guest if f.email.is_empty() => self.lone_guest_order(f, open),
            _ if open => None,
            Account::Present { anonymised } if *anonymised || self.gone_users.contains(&f.customer_id) => {
                Some(Rule::InactiveCustomer)
            }
            Account::Present { .. } => None,
            Account::Missing => Some(Rule::AccountDeleted),
            Account::Guest if self.gone_guests.contains(&f.email) => Some(Rule::InactiveGuest),
            Account::Guest => None,
        };
        let mut best: Option<Step> = None;
        let mut consider = |rule: Rule, action: Action| {
            if best.is_none_or(|b| action > b.action) {
                best = Some(Step { rule, action, id: f.id });
            }
        };
        if let Some(rule) = subject_rule {
            let action = match self.invoice_retained(f) {
                Some(true) => Action::MinimiseOrder,
                Some(false) | None => Action::AnonymiseOrder,
            };
            consider(rule, action);
        }
        if let Some(action) = r.unpaid_action(&f.status, f.created) {
            consider(Rule::UnpaidOrder, action);
        }
        let old_ip = f.ip_present
            && r.ip_before
                .zip(f.created)
                .is_some_and(|(cutoff, created)| created < cutoff);
        if old_ip {
            consider(Rule::OrderIp, Action::StripOrderIp);
        }
        match best {
            Some(step) => {
                self.plan.orders.push(step);
                // Trashing keeps the order's data; its old IP address goes all the same.
                if step.action == Action::TrashOrder && old_ip {
                    self.plan.orders.push(Step {
                        rule: Rule::OrderIp,
                        action: Action::StripOrderIp,
                        id: f.id,
                    });
                }
            }
            // Its age is unknown, never old: the unpaid, IP and lone-guest rules leave it.
            None if f.unreadable.created => self.warn(format!(
                "order {}: its creation date cannot be read; the rules that go by its age skip it until it is repaired",
                f.id
            )),
            None => {}
        }
    }

    /// A guest order without a billing email names no one it could be linked with: it is
    /// a subject of its own, whose only activity is the order itself. Left out, its name,
    /// address and phone would be kept for ever. A checkout draft is no activity (the
    /// email is typed later in the checkout); the unpaid rule deals with drafts.
    fn lone_guest_order(&mut self, f: &OrderFacts, open: bool) -> Option<Rule> {
        let r = self.rules;
        if f.status == "wc-checkout-draft" {
            return None;
        }
        self.plan.subjects_total += 1;
        let activity = OrderActivity {
            last_order: f.created,
            open: u64::from(open),
            last_pending: f.created.filter(|_| f.status == "wc-pending"),
            ..OrderActivity::default()
        };
        if !r.guests_enabled || r.is_open(&activity) {
            return None;
        }
        // No readable creation date: its age is unknown (warned by the caller).
        let created = f.created?;
        if created >= r.inactive_before {
            return None;
        }
        self.plan.subjects_forgotten += 1;
        Some(Rule::InactiveGuest)
    }

    /// An erasure request's orders: minimised while an invoice must be kept, anonymised
    /// otherwise; an order being fulfilled is kept, with a warning, until it is done.
    fn erasure_order(&mut self, erasure: &Erasure, f: &OrderFacts) {
        let guest = !matches!(f.account, Account::Present { .. });
        if !erasure.covers_order(f.customer_id, &f.email, guest) {
            return;
        }
        if f.processed != Processed::No {
            self.processed_order(f);
            return;
        }
        if OPEN_STATUSES.contains(&f.status.as_str()) {
            self.warn(format!(
                "order {}: being fulfilled; kept until it is done, then forget again",
                f.id
            ));
            return;
        }
        let action = match self.invoice_retained(f) {
            Some(true) => Action::MinimiseOrder,
            Some(false) | None => Action::AnonymiseOrder,
        };
        self.plan.orders.push(Step {
            rule: Rule::ErasureRequest,
            action,
            id: f.id,
        });
    }

    /// `Some(true)` while an invoice must be kept, `Some(false)` after; `None` for orders
    /// that are not invoices.
    fn invoice_retained(&mut self, f: &OrderFacts) -> Option<bool> {
        let r = self.rules;
        if !r.invoice_statuses.contains(&f.status) {
            return None;
        }
        let Some(dated) = due::invoice_date(f) else {
            // Never anonymise an invoice whose date cannot be read: keep it minimised.
            self.warn(format!(
                "order {}: the date its retention counts from cannot be read; kept as an invoice",
                f.id
            ));
            return Some(true);
        };
        Some(r.zone.retention_ends(&r.retention, dated).is_none_or(|end| r.now < end))
    }

    fn processed_order(&mut self, f: &OrderFacts) {
        let retained = self.invoice_retained(f) != Some(false);
        let (rule, action) = match (f.processed, f.contact_present, retained) {
            (Processed::Anonymised, true, _) => (Rule::Repair, Action::AnonymiseOrder),
            (Processed::Minimised, true, true) => (Rule::Repair, Action::MinimiseOrder),
            (Processed::Minimised, true, false) => (Rule::Repair, Action::AnonymiseOrder),
            (Processed::Minimised, false, false) => (Rule::InvoiceRetention, Action::AnonymiseOrder),
            _ => return,
        };
        self.plan.orders.push(Step { rule, action, id: f.id });
    }

    /// Pass 4: sessions and download logs.
    pub fn session(&mut self, f: &SessionFacts) {
        // An erasure's sessions go with the account.
        if self.rules.erasure.is_none() && self.rules.expired_sessions && f.expiry < self.rules.now.timestamp() {
            self.plan.sessions.push(Step {
                rule: Rule::ExpiredSession,
                action: Action::DeleteSession,
                id: f.id,
            });
        }
    }

    pub fn download(&mut self, f: &DownloadFacts) {
        if self.rules.erasure.is_some() {
            // The person's download logs go with their orders.
            return;
        }
        let old = self
            .rules
            .download_ip_before
            .zip(f.at)
            .is_some_and(|(cutoff, at)| at < cutoff);
        if f.ip_present && old {
            self.plan.downloads.push(Step {
                rule: Rule::DownloadIp,
                action: Action::StripDownloadIp,
                id: f.id,
            });
        }
    }
}

impl Rules {
    /// Whether orders keep their person a client: processing, on-hold, or a young pending one.
    fn is_open(&self, o: &OrderActivity) -> bool {
        o.open > 0 || o.last_pending.is_some_and(|t| t >= self.pending_open_after)
    }

    fn unpaid_action(&self, status: &str, created: Option<DateTime<Utc>>) -> Option<Action> {
        let (cutoff, action) = self
            .unpaid
            .iter()
            .find(|(s, _, _)| s == status)
            .map(|(_, c, a)| (c, a))?;
        created.filter(|t| t < cutoff)?;
        match action {
            UnpaidAction::Trash => Some(Action::TrashOrder),
            UnpaidAction::Delete => Some(Action::DeleteOrder),
            UnpaidAction::Anonymise => Some(Action::AnonymiseOrder),
        }
    }
}

/// The unique email the service gives an anonymised account.
fn looks_anonymised(email: &str) -> bool {
    email.starts_with(anonymise::LOGIN_PREFIX) && email.ends_with(anonymise::LOGIN_DOMAIN)
}

#[cfg(test)]
mod tests;
