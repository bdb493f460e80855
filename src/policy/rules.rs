//! The configuration turned into what the rules compare against: cutoff instants computed
//! once from `now` on the shop's calendar, statuses as WooCommerce stores them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::config::{Config, CustomerAction, UnpaidAction};
use crate::localtime::ShopZone;
use crate::period::Period;
use crate::policy::fiscal::Retention;
use crate::subject;

/// Subjects who asked that processing stop: their register hashes, and the pepper to
/// compare emails with them.
#[derive(Debug, Default)]
pub struct Restrictions {
    pepper: Option<String>,
    hashes: HashSet<String>,
}

impl Restrictions {
    /// `hashes` from the register; without a pepper they cannot be matched, which is an
    /// error as soon as there is one.
    pub fn new(pepper: Option<&str>, hashes: HashSet<String>) -> Result<Restrictions, PolicyError> {
        if !hashes.is_empty() && pepper.is_none() {
            return Err(PolicyError::NoPepper(hashes.len()));
        }
        Ok(Restrictions {
            pepper: pepper.map(str::to_owned),
            hashes,
        })
    }

    pub fn contains(&self, email: &str) -> bool {
        match &self.pepper {
            Some(pepper) if !self.hashes.is_empty() => self.hashes.contains(&subject::hash(pepper, email)),
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the register holds {0} restricted subjects, but requests.pepper is not set, so they cannot be recognised: set requests.pepper_file")]
    NoPepper(usize),
    #[error("{0} reaches before the start of the calendar")]
    OutOfRange(String),
}

/// One person who asked to be forgotten: their accounts and their email. A plan made with
/// an erasure covers that person only, whatever their activity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erasure {
    pub user_ids: HashSet<u64>,
    /// Lowercased.
    pub email: String,
}

impl Erasure {
    /// The account's orders, and guest orders (or orders of a deleted account) under the
    /// person's email.
    pub(crate) fn covers_order(&self, customer_id: u64, email: &str, guest: bool) -> bool {
        self.user_ids.contains(&customer_id) || (guest && !email.is_empty() && email == self.email)
    }

    /// The person's accounts: by id, or by the account's email.
    pub(crate) fn covers_user(&self, user_id: u64, email: &str) -> bool {
        self.user_ids.contains(&user_id) || (!email.is_empty() && email == self.email)
    }
}

/// Everything the rules compare facts with.
#[derive(Debug)]
pub struct Rules {
    pub now: DateTime<Utc>,
    pub zone: ShopZone,
    pub customers_enabled: bool,
    pub guests_enabled: bool,
    /// Last activity before this: no longer a client.
    pub inactive_before: DateTime<Utc>,
    pub customer_roles: Vec<String>,
    pub customer_action: CustomerAction,
    pub protected_user_ids: HashSet<u64>,
    /// Lowercased.
    pub protected_emails: HashSet<String>,
    /// With WooCommerce's `wc-` prefix.
    pub invoice_statuses: Vec<String>,
    pub retention: Retention,
    /// (status as stored, created before, action), when the unpaid rule is on.
    pub unpaid: Vec<(String, DateTime<Utc>, UnpaidAction)>,
    /// A pending order created at or after this keeps its customer a client.
    pub pending_open_after: DateTime<Utc>,
    pub ip_before: Option<DateTime<Utc>>,
    pub download_ip_before: Option<DateTime<Utc>>,
    pub expired_sessions: bool,
    pub restrictions: Restrictions,
    /// Set for a `forget`: the plan covers this person only.
    pub erasure: Option<Erasure>,
}

impl Rules {
    pub fn new(
        config: &Config,
        zone: ShopZone,
        now: DateTime<Utc>,
        restrictions: Restrictions,
    ) -> Result<Rules, PolicyError> {
        let before = |key: &str, p: &Period| {
            zone.before(p, now)
                .ok_or_else(|| PolicyError::OutOfRange(format!("{key} = \"{p}\"")))
        };
        let u = &config.unpaid;
        let mut unpaid = Vec::new();
        if u.enabled {
            for (status, key, rule) in [
                ("wc-pending", "unpaid.pending.after", &u.pending),
                ("wc-failed", "unpaid.failed.after", &u.failed),
                ("wc-cancelled", "unpaid.cancelled.after", &u.cancelled),
                ("wc-checkout-draft", "unpaid.checkout_draft.after", &u.checkout_draft),
            ] {
                unpaid.push((status.to_owned(), before(key, &rule.after)?, rule.action));
            }
        }
        let m = &config.minimise;
        let c = &config.customers;
        Ok(Rules {
            now,
            zone,
            customers_enabled: c.enabled,
            guests_enabled: config.guests.enabled,
            inactive_before: before("customers.inactive_after", &c.inactive_after)?,
            customer_roles: c.roles.clone(),
            customer_action: c.action,
            protected_user_ids: c.protected_user_ids.iter().copied().collect(),
            protected_emails: c.protected_emails.iter().map(|e| e.trim().to_lowercase()).collect(),
            invoice_statuses: config.invoices.statuses.iter().map(|s| format!("wc-{s}")).collect(),
            retention: config.invoices.retention(),
            unpaid,
            pending_open_after: before("unpaid.pending.after", &u.pending.after)?,
            ip_before: if m.enabled {
                Some(before("minimise.ip_after", &m.ip_after)?)
            } else {
                None
            },
            download_ip_before: if m.enabled {
                Some(before("minimise.download_ip_after", &m.download_ip_after)?)
            } else {
                None
            },
            expired_sessions: m.enabled && m.expired_sessions,
            restrictions,
            erasure: None,
        })
    }
}
