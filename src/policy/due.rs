//! When each piece of a subject's data is due to be minimised, anonymised or deleted under
//! the current policy, for the subject-access export (`docs/export-schema.md`). Pure, like
//! the rest of the policy: facts and a `now` in, dates out.
//!
//! The dates are the policy's, worked out from today's facts: an item is due at the first
//! instant at which the rule that [`crate::policy::Planner`] applies to it would hold. The
//! first scheduled run after that instant carries it out. New activity (an order, a visit)
//! moves the dates of a client later; nothing here predicts that.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{Config, CustomerAction, UnpaidAction};
use crate::localtime::ShopZone;
use crate::period::{Period, Unit};
use crate::php;
use crate::plan::Rule;
use crate::policy::fiscal::Retention;
use crate::policy::{Account, CustomerFacts, OrderActivity, OrderFacts, Processed, OPEN_STATUSES};

/// What happens to an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    /// Nothing: the item is kept (see the stage's `rule` for why).
    Keep,
    /// The IP address (and an order's user agent) is removed.
    RemoveIp,
    /// The order is moved to WooCommerce's trash, with its data.
    Trash,
    /// What an invoice does not legally need is removed (README "Minimised").
    Minimise,
    /// Personal values are replaced by anonymous ones.
    Anonymise,
    /// The item is deleted.
    Delete,
}

/// One step in an item's future.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub action: Act,
    /// The instant from which the policy calls for `action`; `None` when it waits for an
    /// event rather than a date (see `condition`), or never comes (`Keep`).
    pub at: Option<DateTime<Utc>>,
    /// The rule, as `plan` names it (`inactive_customer`, `invoice_retention`, …), or for
    /// `Keep` why nothing is due (`protected`, `restricted`, `not_a_customer`, …).
    pub rule: &'static str,
    /// What must hold as well, in words.
    pub condition: Option<&'static str>,
    /// The store shows this was already done (the service's marker on the entity).
    pub done: bool,
}

impl Stage {
    fn new(action: Act, at: Option<DateTime<Utc>>, rule: &'static str) -> Stage {
        Stage {
            action,
            at,
            rule,
            condition: None,
            done: false,
        }
    }

    fn keep(why: &'static str) -> Stage {
        Stage::new(Act::Keep, None, why)
    }
}

/// Why a person is never forgotten by the retention rules.
pub const PROTECTED: &str = "protected";
pub const RESTRICTED: &str = "restricted";
pub const NOT_A_CUSTOMER: &str = "not_a_customer";
pub const RULE_DISABLED: &str = "rule_disabled";
pub const NO_ACTIVITY_DATE: &str = "no_activity_date";

const WHILE_OPEN: &str = "and not while one of their orders is processing or on hold";
const ORDER_OPEN: &str = "not before the order is completed: it is processing or on hold";

/// When a person (an account, or a guest's email) is forgotten.
#[derive(Clone, Debug, PartialEq)]
pub enum Forget {
    /// From `at` on, by `rule`; `blocked`: they have an open order, which keeps them a client.
    At {
        at: DateTime<Utc>,
        rule: &'static str,
        blocked: bool,
    },
    /// The service anonymised the account already (at the marker's time, if readable).
    Done { at: Option<DateTime<Utc>> },
    /// Not by the retention rules, and why (one of the constants above).
    Never(&'static str),
}

impl Forget {
    /// Whether no rule may touch the person's data at all (the planner's "untouchable").
    fn untouchable(&self) -> bool {
        matches!(self, Forget::Never(why) if [PROTECTED, RESTRICTED, NOT_A_CUSTOMER].contains(why))
    }
}

/// A customer's last activity (README "Last activity"), and what could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct Activity {
    /// The latest readable signal.
    pub last: Option<DateTime<Utc>>,
    /// Signals that are stored but cannot be read and may hide activity later than
    /// `last`: while any remains, the customer cannot be shown to be inactive.
    pub unknown: Vec<Unknown>,
}

/// A stored activity signal whose date cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// A field of the account: `user_registered`, `wc_last_active`, `last_update`,
    /// `session_tokens`.
    Field(&'static str),
    /// An order of the account, or under its email, without a readable creation date.
    Order(u64),
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unknown::Field(name) => write!(f, "{name} cannot be read"),
            Unknown::Order(id) => write!(f, "order {id} has no readable creation date"),
        }
    }
}

/// The latest of: registration, `wc_last_active`, `last_update`, the latest login in
/// `session_tokens`, the last WooCommerce session (its expiry minus 48 hours), and the
/// newest order (any status but `checkout-draft`) of the account or under its email.
///
/// A date that is stored but cannot be read (a zero date, garbage where a unix time
/// belongs, broken serialized PHP) is unknown, never old: it is listed in `unknown`, and
/// the policy does not forget a customer on the readable dates alone while one remains,
/// since the unreadable one may be the visit that keeps them a client. Two exceptions,
/// because they cannot hide anything later:
/// - an empty `wc_last_active` or `last_update` (or none) records no visit at all
///   (customers WooCommerce has not seen since 3.4 have none);
/// - an unreadable registration, when the account has activity of its own that comes
///   after it: WooCommerce writes `last_update` when it creates the customer and
///   `wc_last_active` on their first visit (the day, so at most a day before), WordPress
///   records every login in `session_tokens`, and a session keyed by the account is a
///   visit while logged in. Only orders are not enough: WooCommerce links the guest
///   orders placed before registering to the new account.
pub fn last_activity(f: &CustomerFacts) -> Activity {
    let (login, logins_unreadable) = match f.session_tokens.as_deref().map(php::latest_login) {
        Some(Ok(t)) => (t.and_then(|t| DateTime::from_timestamp(t, 0)), false),
        Some(Err(_)) => (None, true),
        None => (None, false),
    };
    let visit = f.session_expiry.map(|t| t - TimeDelta::hours(48));
    let last = [
        f.registered,
        f.wc_last_active,
        f.last_update,
        login,
        visit,
        f.orders.last_order,
        f.guest_orders.last_order,
    ]
    .into_iter()
    .flatten()
    .max();
    let u = f.unreadable;
    let own_activity = [f.wc_last_active, f.last_update, login, visit]
        .iter()
        .any(Option::is_some);
    let mut unknown: Vec<Unknown> = [
        (u.registered && !own_activity, "user_registered"),
        (u.wc_last_active, "wc_last_active"),
        (u.last_update, "last_update"),
        (logins_unreadable, "session_tokens"),
    ]
    .into_iter()
    .filter(|(bad, _)| *bad)
    .map(|(_, name)| Unknown::Field(name))
    .collect();
    for orders in [&f.orders, &f.guest_orders] {
        if orders.undated > 0 {
            unknown.extend(orders.first_undated.map(Unknown::Order));
        }
    }
    Activity { last, unknown }
}

/// The date an invoice's retention counts from: paid, else completed, else created (on
/// the shop's calendar). `None` when the order has none, or when the first of them it
/// holds cannot be read: counting from a later one in the list (an earlier date: an order
/// is created, then paid, then completed) could end the retention too soon.
pub fn invoice_date(o: &OrderFacts) -> Option<DateTime<Utc>> {
    let u = o.unreadable;
    for (t, unreadable) in [(o.paid, u.paid), (o.completed, u.completed), (o.created, u.created)] {
        if unreadable {
            return None;
        }
        if t.is_some() {
            return t;
        }
    }
    None
}

/// The policy as the due dates need it.
#[derive(Debug)]
pub struct DueRules {
    pub now: DateTime<Utc>,
    pub zone: ShopZone,
    customers_enabled: bool,
    guests_enabled: bool,
    inactive_after: Period,
    customer_action: CustomerAction,
    customer_roles: Vec<String>,
    protected_user_ids: HashSet<u64>,
    protected_emails: HashSet<String>,
    /// With WooCommerce's `wc-` prefix.
    invoice_statuses: Vec<String>,
    retention: Retention,
    /// (status as stored, age, action), when the unpaid rule is on.
    unpaid: Vec<(String, Period, UnpaidAction)>,
    pending_after: Period,
    ip_after: Option<Period>,
    download_ip_after: Option<Period>,
    expired_sessions: bool,
}

impl DueRules {
    pub fn new(config: &Config, zone: ShopZone, now: DateTime<Utc>) -> DueRules {
        let u = &config.unpaid;
        let unpaid = if u.enabled {
            [
                ("wc-pending", &u.pending),
                ("wc-failed", &u.failed),
                ("wc-cancelled", &u.cancelled),
                ("wc-checkout-draft", &u.checkout_draft),
            ]
            .into_iter()
            .map(|(status, rule)| (status.to_owned(), rule.after, rule.action))
            .collect()
        } else {
            Vec::new()
        };
        let m = &config.minimise;
        let c = &config.customers;
        DueRules {
            now,
            zone,
            customers_enabled: c.enabled,
            guests_enabled: config.guests.enabled,
            inactive_after: c.inactive_after,
            customer_action: c.action,
            customer_roles: c.roles.clone(),
            protected_user_ids: c.protected_user_ids.iter().copied().collect(),
            protected_emails: c.protected_emails.iter().map(|e| e.trim().to_lowercase()).collect(),
            invoice_statuses: config.invoices.statuses.iter().map(|s| format!("wc-{s}")).collect(),
            retention: config.invoices.retention(),
            unpaid,
            pending_after: u.pending.after,
            ip_after: m.enabled.then_some(m.ip_after),
            download_ip_after: m.enabled.then_some(m.download_ip_after),
            expired_sessions: m.enabled && m.expired_sessions,
        }
    }

    /// `period` after `t` on the shop's calendar, as the rules count it: the first instant
    /// `c` at which `t` is no longer after the cut-off `period` before `c` (the rules act
    /// on `t < cut-off`, so from just after `c`). Calendar months make this more than an
    /// addition: one month after 31 January is 1 March, since the cut-off one month before
    /// 28 February is 28 January. `None` beyond chrono's calendar.
    pub fn after(&self, period: &Period, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let t = DateTime::from_timestamp(t.timestamp(), 0)?;
        // Longest possible length of the period, plus room for clock changes.
        let days = match period.unit {
            Unit::Days => i64::from(period.amount),
            Unit::Weeks => 7 * i64::from(period.amount),
            Unit::Months => 31 * i64::from(period.amount),
            Unit::Years => 366 * i64::from(period.amount),
        };
        let mut lo = t;
        let mut hi = t.checked_add_signed(TimeDelta::try_days(days + 2)?)?;
        let cut = |c: DateTime<Utc>| self.zone.before(period, c);
        if cut(hi)? < t {
            return None;
        }
        // cut(lo) < t <= cut(hi); `cut` never decreases.
        while (hi - lo).num_seconds() > 1 {
            let mid = lo + TimeDelta::seconds((hi - lo).num_seconds() / 2);
            if cut(mid)? >= t {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }

    /// When a registered user is forgotten by the inactive-customer rule. `anonymised_at`:
    /// the service's marker is on the account (with its time, if readable).
    pub fn account(&self, f: &CustomerFacts, anonymised: Option<Option<DateTime<Utc>>>, restricted: bool) -> Forget {
        let roles = match f.capabilities.as_deref().map(php::roles) {
            None => Vec::new(),
            Some(Ok(roles)) => roles,
            Some(Err(_)) => return Forget::Never(NOT_A_CUSTOMER),
        };
        if roles.is_empty() || !roles.iter().all(|role| self.customer_roles.contains(role)) {
            return Forget::Never(NOT_A_CUSTOMER);
        }
        if self.protected_user_ids.contains(&f.user_id) || self.protected_emails.contains(&f.email) {
            return Forget::Never(PROTECTED);
        }
        if restricted {
            return Forget::Never(RESTRICTED);
        }
        if let Some(at) = anonymised {
            return Forget::Done { at };
        }
        if !self.customers_enabled {
            return Forget::Never(RULE_DISABLED);
        }
        let activity = last_activity(f);
        // A date that cannot be read may be a later visit: no date can be given (the
        // planner skips the customer) until it is repaired.
        let (Some(last), true) = (activity.last, activity.unknown.is_empty()) else {
            return Forget::Never(NO_ACTIVITY_DATE);
        };
        match self.after(&self.inactive_after, last) {
            Some(at) => Forget::At {
                at,
                rule: Rule::InactiveCustomer.as_str(),
                blocked: self.is_open(&f.orders) || self.is_open(&f.guest_orders),
            },
            None => Forget::Never(NO_ACTIVITY_DATE),
        }
    }

    /// When a guest (a billing email without an account) is forgotten.
    pub fn guest(&self, email: &str, orders: &OrderActivity, restricted: bool) -> Forget {
        if self.protected_emails.contains(email) {
            return Forget::Never(PROTECTED);
        }
        if restricted {
            return Forget::Never(RESTRICTED);
        }
        if !self.guests_enabled {
            return Forget::Never(RULE_DISABLED);
        }
        // An order without a readable date may be their newest (see `last_activity`).
        if orders.undated > 0 {
            return Forget::Never(NO_ACTIVITY_DATE);
        }
        match orders
            .last_order
            .and_then(|last| self.after(&self.inactive_after, last))
        {
            Some(at) => Forget::At {
                at,
                rule: Rule::InactiveGuest.as_str(),
                blocked: self.is_open(orders),
            },
            None => Forget::Never(NO_ACTIVITY_DATE),
        }
    }

    /// The account itself: anonymised (or deleted, with `customers.action = "delete"`).
    pub fn profile(&self, forget: &Forget) -> Vec<Stage> {
        let act = match self.customer_action {
            CustomerAction::Anonymise => Act::Anonymise,
            CustomerAction::Delete => Act::Delete,
        };
        self.with_person(forget, act)
    }

    /// What goes entirely with the person: profile meta (addresses, logins, extra keys),
    /// sessions, payment tokens.
    pub fn deleted_with_person(&self, forget: &Forget) -> Vec<Stage> {
        self.with_person(forget, Act::Delete)
    }

    /// What is anonymised with the person: reviews, the analytics row.
    pub fn anonymised_with_person(&self, forget: &Forget) -> Vec<Stage> {
        self.with_person(forget, Act::Anonymise)
    }

    fn with_person(&self, forget: &Forget, act: Act) -> Vec<Stage> {
        match forget {
            Forget::At { at, rule, blocked } => vec![Stage {
                condition: blocked.then_some(WHILE_OPEN),
                ..Stage::new(act, Some(*at), rule)
            }],
            Forget::Done { at } => vec![Stage {
                done: true,
                ..Stage::new(act, *at, Rule::InactiveCustomer.as_str())
            }],
            Forget::Never(why) => vec![Stage::keep(why)],
        }
    }

    /// An order (`shop_order`) of the person `forget` describes: its account's fate for
    /// account orders, the guest's (or the account's, for guest orders under an account's
    /// email) for guest orders. Stages come in date order; each is stronger than the ones
    /// before it (an anonymised order needs no IP removal afterwards).
    pub fn order(&self, o: &OrderFacts, forget: &Forget) -> Vec<Stage> {
        if let (true, Forget::Never(why)) = (forget.untouchable(), forget) {
            return vec![Stage::keep(why)];
        }
        if o.contact_present && self.protected_emails.contains(&o.email) {
            return vec![Stage::keep(PROTECTED)];
        }
        let invoice = self.invoice_statuses.contains(&o.status);
        let retention_end = invoice_date(o).and_then(|dated| self.zone.retention_ends(&self.retention, dated));
        match o.processed {
            Processed::Anonymised => {
                return vec![Stage {
                    done: true,
                    ..Stage::new(Act::Anonymise, None, Rule::InactiveCustomer.as_str())
                }]
            }
            Processed::Minimised => {
                let mut stages = vec![Stage {
                    done: true,
                    ..Stage::new(Act::Minimise, None, Rule::InactiveCustomer.as_str())
                }];
                if invoice {
                    if let Some(end) = retention_end {
                        stages.push(Stage::new(Act::Anonymise, Some(end), Rule::InvoiceRetention.as_str()));
                    }
                }
                return stages;
            }
            Processed::No => {}
        }
        let mut stages = Vec::new();
        let subject = match (&o.account, forget) {
            (Account::Missing, _) => Some((self.now, Rule::AccountDeleted.as_str(), None)),
            (_, Forget::At { at, rule, blocked }) => Some((*at, *rule, blocked.then_some(WHILE_OPEN))),
            (_, Forget::Done { at }) => Some((at.unwrap_or(self.now), Rule::InactiveCustomer.as_str(), None)),
            (_, Forget::Never(_)) => None,
        };
        if let Some((at, rule, condition)) = subject {
            let first = if invoice { Act::Minimise } else { Act::Anonymise };
            if OPEN_STATUSES.contains(&o.status.as_str()) {
                stages.push(Stage {
                    condition: Some(ORDER_OPEN),
                    ..Stage::new(first, None, rule)
                });
            } else if !invoice {
                stages.push(Stage {
                    condition,
                    ..Stage::new(Act::Anonymise, Some(at), rule)
                });
            } else {
                match retention_end {
                    Some(end) if at < end => {
                        stages.push(Stage {
                            condition,
                            ..Stage::new(Act::Minimise, Some(at), rule)
                        });
                        stages.push(Stage::new(Act::Anonymise, Some(end), Rule::InvoiceRetention.as_str()));
                    }
                    Some(_) => stages.push(Stage {
                        condition,
                        ..Stage::new(Act::Anonymise, Some(at), rule)
                    }),
                    // No readable date, or an end beyond the calendar: kept minimised.
                    None => stages.push(Stage {
                        condition,
                        ..Stage::new(Act::Minimise, Some(at), rule)
                    }),
                }
            }
        }
        if let Some((_, after, action)) = self.unpaid.iter().find(|(s, _, _)| *s == o.status) {
            if let Some(at) = o.created.and_then(|c| self.after(after, c)) {
                let act = match action {
                    UnpaidAction::Trash => Act::Trash,
                    UnpaidAction::Delete => Act::Delete,
                    UnpaidAction::Anonymise => Act::Anonymise,
                };
                stages.push(Stage::new(act, Some(at), Rule::UnpaidOrder.as_str()));
            }
        }
        if o.ip_present {
            if let Some(at) = self.ip_after.zip(o.created).and_then(|(p, c)| self.after(&p, c)) {
                stages.push(Stage::new(Act::RemoveIp, Some(at), Rule::OrderIp.as_str()));
            }
        }
        in_order(stages)
    }

    /// Order notes, refunds and download permissions: their personal data goes when their
    /// order is minimised, anonymised or deleted. `act` says what happens to the item then
    /// (`None`: what happens to the order); a deleted order takes its items with it.
    pub fn with_order(order: &[Stage], act: Option<Act>) -> Vec<Stage> {
        match order
            .iter()
            .find(|s| matches!(s.action, Act::Minimise | Act::Anonymise | Act::Delete))
        {
            Some(s) => vec![Stage {
                action: match (s.action, act) {
                    (Act::Delete, _) | (_, None) => s.action,
                    (_, Some(act)) => act,
                },
                ..s.clone()
            }],
            None => match order.first() {
                Some(s) if s.action == Act::Keep => vec![s.clone()],
                _ => Vec::new(),
            },
        }
    }

    /// A WooCommerce session: deleted once expired (`minimise.expired_sessions`, whoever
    /// it belongs to), and with the account it belongs to (`person`; guests' sessions are
    /// keyed by a cart token).
    pub fn session(&self, expiry: Option<DateTime<Utc>>, person: Option<&Forget>) -> Vec<Stage> {
        let mut stages = Vec::new();
        if let (true, Some(at)) = (self.expired_sessions, expiry) {
            stages.push(Stage::new(Act::Delete, Some(at), Rule::ExpiredSession.as_str()));
        }
        if let Some(f) = person {
            stages.extend(self.deleted_with_person(f));
        }
        in_order(stages)
    }

    /// A download log entry: its IP address goes after `minimise.download_ip_after`.
    pub fn download_log(&self, at: Option<DateTime<Utc>>, ip_present: bool) -> Vec<Stage> {
        match self.download_ip_after.zip(at).filter(|_| ip_present) {
            Some((p, at)) => self
                .after(&p, at)
                .map(|due| vec![Stage::new(Act::RemoveIp, Some(due), Rule::DownloadIp.as_str())])
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Whether orders keep their person a client: processing, on-hold, or a young pending one.
    fn is_open(&self, o: &OrderActivity) -> bool {
        o.open > 0
            || o.last_pending
                .and_then(|t| self.after(&self.pending_after, t))
                .is_some_and(|until| self.now <= until)
    }
}

/// Stages by date (undated last), each stronger than every earlier one, none after a deletion.
fn in_order(mut stages: Vec<Stage>) -> Vec<Stage> {
    stages.sort_by_key(|s| (s.at.is_none(), s.at, s.action));
    let mut out: Vec<Stage> = Vec::new();
    for s in stages {
        let strongest = out.iter().map(|o| o.action).max();
        if strongest.is_none_or(|m| s.action > m && m != Act::Delete) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Processed;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn config(extra: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!("[database]\nurl = \"mysql://u@localhost/shop\"\n{extra}"),
        )
        .unwrap();
        crate::config::load(&path).unwrap().config
    }

    const NOW: &str = "2026-11-24T00:00:00Z";

    fn rules(extra: &str) -> DueRules {
        DueRules::new(&config(extra), ShopZone::Named(chrono_tz::Europe::Amsterdam), utc(NOW))
    }

    fn customer(last_order: &str) -> CustomerFacts {
        CustomerFacts {
            user_id: 7,
            email: "jan@example.nl".into(),
            capabilities: Some(b"a:1:{s:8:\"customer\";b:1;}".to_vec()),
            registered: Some(utc("2015-01-01T10:00:00Z")),
            orders: OrderActivity {
                last_order: Some(utc(last_order)),
                ..OrderActivity::default()
            },
            ..CustomerFacts::default()
        }
    }

    fn order(status: &str, created: &str) -> OrderFacts {
        OrderFacts {
            id: 1,
            status: status.into(),
            customer_id: 7,
            account: Account::Present { anonymised: false },
            email: "jan@example.nl".into(),
            created: Some(utc(created)),
            contact_present: true,
            ..OrderFacts::default()
        }
    }

    fn at(forget: &Forget) -> DateTime<Utc> {
        match forget {
            Forget::At { at, .. } => *at,
            other => panic!("not dated: {other:?}"),
        }
    }

    #[test]
    fn after_is_the_inverse_of_the_rules_cut_off() {
        let r = rules("");
        let three: Period = "3 years".parse().unwrap();
        let t = utc("2020-05-10T08:30:00Z");
        let due = r.after(&three, t).unwrap();
        assert_eq!(due, utc("2023-05-10T08:30:00Z"));
        // The rule: inactive when t < cut-off(now).
        let cut = |now| r.zone.before(&three, now).unwrap();
        assert!(t >= cut(due), "not yet at the due instant");
        assert!(t < cut(due + TimeDelta::seconds(1)), "due just after");
        // Across a clock change the wall-clock time is kept: 10 March 12:00 in Amsterdam
        // (CET) to 10 April 12:00 (CEST) is one hour less in UTC.
        let month: Period = "1 month".parse().unwrap();
        assert_eq!(
            r.after(&month, utc("2026-03-10T11:00:00Z")).unwrap(),
            utc("2026-04-10T10:00:00Z")
        );
    }

    #[test]
    fn after_a_month_end_is_the_first_day_the_rule_holds() {
        let r = rules("");
        let month: Period = "1 month".parse().unwrap();
        // One month before 28 February is 28 January; before 1 March, 1 February: 31
        // January 12:00 is past the cut-off from 1 March 00:00 (Amsterdam) on.
        let due = r.after(&month, utc("2026-01-31T11:00:00Z")).unwrap();
        assert_eq!(due, utc("2026-02-28T23:00:00Z"));
        let year: Period = "1 year".parse().unwrap();
        // A leap day: one year before 28 February 2029 is 28 February 2028.
        let due = r.after(&year, utc("2028-02-29T11:00:00Z")).unwrap();
        assert_eq!(due, utc("2029-02-28T23:00:00Z"));
    }

    #[test]
    fn a_customer_is_due_inactive_after_of_their_last_activity() {
        let r = rules("");
        let mut f = customer("2022-06-01T12:00:00Z");
        f.wc_last_active = Some(utc("2023-01-15T00:00:00Z"));
        assert_eq!(last_activity(&f).last, Some(utc("2023-01-15T00:00:00Z")));
        let forget = r.account(&f, None, false);
        assert_eq!(at(&forget), utc("2026-01-15T00:00:00Z"));
        let profile = r.profile(&forget);
        assert_eq!(profile.len(), 1);
        assert_eq!(profile[0].action, Act::Anonymise);
        assert_eq!(profile[0].rule, "inactive_customer");
        assert_eq!(profile[0].condition, None);
        // A login in session_tokens is activity too.
        f.session_tokens = Some(b"a:1:{s:2:\"ab\";a:1:{s:5:\"login\";i:1700000000;}}".to_vec());
        assert_eq!(last_activity(&f).last, DateTime::from_timestamp(1_700_000_000, 0));
        f.session_tokens = Some(b"a:1:{broken".to_vec());
        assert_eq!(last_activity(&f).unknown, vec![Unknown::Field("session_tokens")]);
    }

    #[test]
    fn unreadable_dates_give_no_due_date() {
        let r = rules("");
        let mut f = customer("2020-06-01T12:00:00Z");
        f.unreadable.wc_last_active = true;
        assert_eq!(r.account(&f, None, false), Forget::Never(NO_ACTIVITY_DATE));
        let mut f = customer("2020-06-01T12:00:00Z");
        f.orders.undated = 1;
        f.orders.first_undated = Some(12);
        assert_eq!(last_activity(&f).unknown, vec![Unknown::Order(12)]);
        assert_eq!(r.account(&f, None, false), Forget::Never(NO_ACTIVITY_DATE));
        assert_eq!(
            r.guest("gast@example.nl", &f.orders, false),
            Forget::Never(NO_ACTIVITY_DATE)
        );
        // An unreadable registration is covered by the account's own later activity.
        let mut f = customer("2020-06-01T12:00:00Z");
        (f.registered, f.unreadable.registered) = (None, true);
        assert_eq!(last_activity(&f).unknown, vec![Unknown::Field("user_registered")]);
        f.last_update = Some(utc("2020-07-01T12:00:00Z"));
        assert!(last_activity(&f).unknown.is_empty());
        assert_eq!(at(&r.account(&f, None, false)), utc("2023-07-01T12:00:00Z"));
    }

    #[test]
    fn an_invoice_counts_from_the_first_date_it_holds_unless_that_one_is_unreadable() {
        let mut o = order("wc-completed", "2018-03-10T09:00:00Z");
        o.completed = Some(utc("2019-01-05T09:00:00Z"));
        assert_eq!(invoice_date(&o), o.completed);
        o.paid = Some(utc("2018-03-10T09:05:00Z"));
        o.unreadable.completed = true;
        assert_eq!(invoice_date(&o), o.paid);
        o.paid = None;
        assert_eq!(invoice_date(&o), None);
        // No anonymisation is scheduled for it: it stays minimised.
        let r = rules("");
        let forget = r.account(&customer("2019-01-01T00:00:00Z"), None, false);
        let stages = r.order(&o, &forget);
        assert_eq!(stages.iter().map(|s| s.action).collect::<Vec<_>>(), vec![Act::Minimise]);
    }

    #[test]
    fn staff_protected_restricted_and_disabled_are_never_due() {
        let r = rules("[customers]\nprotected_user_ids = [8]\nprotected_emails = [\"Boss@Example.nl\"]\n");
        let mut f = customer("2010-06-01T12:00:00Z");
        f.capabilities = Some(b"a:1:{s:13:\"administrator\";b:1;}".to_vec());
        assert_eq!(r.account(&f, None, false), Forget::Never(NOT_A_CUSTOMER));
        let f = customer("2010-06-01T12:00:00Z");
        assert_eq!(r.account(&f, None, true), Forget::Never(RESTRICTED));
        let mut p = customer("2010-06-01T12:00:00Z");
        p.user_id = 8;
        assert_eq!(r.account(&p, None, false), Forget::Never(PROTECTED));
        assert_eq!(
            r.guest("boss@example.nl", &OrderActivity::default(), false),
            Forget::Never(PROTECTED)
        );
        let forget = r.account(&p, None, false);
        let o = OrderFacts {
            ip_present: true,
            ..order("wc-completed", "2015-03-01T10:00:00Z")
        };
        assert_eq!(r.order(&o, &forget), vec![Stage::keep(PROTECTED)]);
        let off = rules("[customers]\nenabled = false\n");
        assert_eq!(off.account(&f, None, false), Forget::Never(RULE_DISABLED));
        // With the rule off, an order still loses its IP address.
        let stages = off.order(&o, &off.account(&f, None, false));
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0].action, Act::RemoveIp);
        assert_eq!(stages[0].at, Some(utc("2015-05-30T09:00:00Z")));
    }

    #[test]
    fn an_invoice_is_minimised_with_its_customer_and_anonymised_after_retention() {
        let r = rules("");
        let forget = r.account(&customer("2024-03-10T09:00:00Z"), None, false);
        let profile_due = at(&forget);
        assert_eq!(profile_due, utc("2027-03-10T09:00:00Z"));
        let mut o = order("wc-completed", "2024-03-10T09:00:00Z");
        o.paid = Some(utc("2024-03-10T09:05:00Z"));
        o.ip_present = true;
        let stages = r.order(&o, &forget);
        let actions: Vec<(Act, Option<DateTime<Utc>>, &str)> =
            stages.iter().map(|s| (s.action, s.at, s.rule)).collect();
        assert_eq!(
            actions,
            vec![
                (Act::RemoveIp, Some(utc("2024-06-08T08:00:00Z")), "order_ip"),
                (Act::Minimise, Some(profile_due), "inactive_customer"),
                // Fiscal year 2024 + 7: from 1 January 2032 in Amsterdam.
                (Act::Anonymise, Some(utc("2031-12-31T23:00:00Z")), "invoice_retention"),
            ]
        );
        // Notes go with the first step that scrubs the order.
        let notes = DueRules::with_order(&stages, Some(Act::Delete));
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].action, notes[0].at), (Act::Delete, Some(profile_due)));
        // An invoice whose retention ended before its customer leaves: anonymised at once.
        let old = order("wc-completed", "2012-03-10T09:00:00Z");
        let stages = r.order(&old, &forget);
        assert_eq!(stages.len(), 1);
        assert_eq!((stages[0].action, stages[0].at), (Act::Anonymise, Some(profile_due)));
    }

    #[test]
    fn other_orders_follow_their_customer_and_unpaid_ones_their_age() {
        let r = rules("[unpaid.failed]\nafter = \"90 days\"\naction = \"trash\"\n");
        let forget = r.account(&customer("2024-03-10T09:00:00Z"), None, false);
        let due = at(&forget);
        // Trashed after 90 days on the shop's wall clock (10:00 CET on 10 March, 10:00 CEST
        // on 8 June), anonymised with the customer.
        let failed = order("wc-failed", "2024-03-10T09:00:00Z");
        let got: Vec<(Act, Option<DateTime<Utc>>, &str)> = r
            .order(&failed, &forget)
            .iter()
            .map(|s| (s.action, s.at, s.rule))
            .collect();
        assert_eq!(
            got,
            vec![
                (Act::Trash, Some(utc("2024-06-08T08:00:00Z")), "unpaid_order"),
                (Act::Anonymise, Some(due), "inactive_customer"),
            ]
        );
        // Deleted after a week: nothing comes after a deletion.
        let draft = order("wc-checkout-draft", "2024-03-10T09:00:00Z");
        let got: Vec<(Act, &str)> = r.order(&draft, &forget).iter().map(|s| (s.action, s.rule)).collect();
        assert_eq!(got, vec![(Act::Delete, "unpaid_order")]);
        // A custom status that is no invoice: anonymised with the customer.
        let other = order("wc-shipped", "2024-03-10T09:00:00Z");
        let stages = r.order(&other, &forget);
        assert_eq!((stages[0].action, stages[0].at), (Act::Anonymise, Some(due)));
    }

    #[test]
    fn open_orders_wait_for_completion_and_block_their_customer() {
        let r = rules("");
        let mut f = customer("2020-03-10T09:00:00Z");
        f.orders.open = 1;
        let forget = r.account(&f, None, false);
        let Forget::At { blocked, .. } = forget else {
            panic!("{forget:?}")
        };
        assert!(blocked);
        assert_eq!(r.profile(&forget)[0].condition, Some(WHILE_OPEN));
        let o = order("wc-processing", "2020-03-10T09:00:00Z");
        let stages = r.order(&o, &forget);
        assert_eq!(stages[0].action, Act::Anonymise);
        assert_eq!(stages[0].at, None);
        assert_eq!(stages[0].condition, Some(ORDER_OPEN));
    }

    #[test]
    fn deleted_accounts_guests_and_processed_orders() {
        let r = rules("");
        let forget = r.guest(
            "gast@example.nl",
            &OrderActivity {
                last_order: Some(utc("2025-02-01T10:00:00Z")),
                ..OrderActivity::default()
            },
            false,
        );
        assert_eq!(at(&forget), utc("2028-02-01T10:00:00Z"));
        let mut o = order("wc-shipped", "2019-02-01T10:00:00Z");
        o.account = Account::Missing;
        let stages = r.order(&o, &forget);
        assert!(stages
            .iter()
            .any(|s| s.rule == "account_deleted" && s.at == Some(r.now)));
        let mut done = order("wc-completed", "2019-02-01T10:00:00Z");
        done.processed = Processed::Minimised;
        let stages = r.order(&done, &forget);
        assert!(stages[0].done && stages[0].action == Act::Minimise);
        assert_eq!(stages[1].rule, "invoice_retention");
        assert_eq!(stages[1].at, Some(utc("2026-12-31T23:00:00Z")));
        let account = r.account(&customer("2010-01-01T00:00:00Z"), Some(None), false);
        assert_eq!(account, Forget::Done { at: None });
        assert!(r.profile(&account)[0].done);
    }

    #[test]
    fn sessions_and_download_logs() {
        let r = rules("");
        let forget = r.account(&customer("2024-03-10T09:00:00Z"), None, false);
        let expiry = utc("2024-03-12T09:00:00Z");
        let stages = r.session(Some(expiry), Some(&forget));
        assert_eq!(stages.len(), 1);
        assert_eq!((stages[0].action, stages[0].at), (Act::Delete, Some(expiry)));
        let stages = r.download_log(Some(utc("2026-01-01T12:00:00Z")), true);
        assert_eq!(stages[0].action, Act::RemoveIp);
        assert_eq!(stages[0].at, Some(utc("2026-04-01T11:00:00Z")));
        assert!(r.download_log(Some(utc("2026-01-01T12:00:00Z")), false).is_empty());
    }
}
