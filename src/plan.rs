//! What a run will do: a list of steps (an action on one entity, with the rule that caused
//! it), made by [`crate::policy`] and carried out by [`crate::store::apply`]. `plan` prints
//! it; `apply` executes it. Entities are named by id only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

/// Why something is done: one per retention promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A registered customer inactive for `customers.inactive_after`, and their orders.
    InactiveCustomer,
    /// A guest (billing email) inactive for `customers.inactive_after`: their orders.
    InactiveGuest,
    /// An order whose account no longer exists.
    AccountDeleted,
    /// A minimised invoice whose statutory retention has ended.
    InvoiceRetention,
    /// An unpaid order past the age of its status.
    UnpaidOrder,
    /// An order's IP address and user agent after `minimise.ip_after`.
    OrderIp,
    /// A WooCommerce session past its expiry.
    ExpiredSession,
    /// A download log entry's IP address after `minimise.download_ip_after`.
    DownloadIp,
    /// Personal data that came back into an entity already processed (an admin screen or
    /// a background job saved old values over the service's work).
    Repair,
    /// The person asked to be forgotten (`forget`, a WordPress erasure request).
    ErasureRequest,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::InactiveCustomer => "inactive_customer",
            Rule::InactiveGuest => "inactive_guest",
            Rule::AccountDeleted => "account_deleted",
            Rule::InvoiceRetention => "invoice_retention",
            Rule::UnpaidOrder => "unpaid_order",
            Rule::OrderIp => "order_ip",
            Rule::ExpiredSession => "expired_session",
            Rule::DownloadIp => "download_ip",
            Rule::Repair => "repair",
            Rule::ErasureRequest => "erasure_request",
        }
    }

    /// Whether the rule ends the person's relation with the shop, so that everything
    /// linked to them through the order (reviews, the analytics row, downloads) goes too,
    /// not only the order itself.
    pub fn forgets_subject(self) -> bool {
        matches!(
            self,
            Rule::InactiveCustomer | Rule::InactiveGuest | Rule::AccountDeleted | Rule::Repair | Rule::ErasureRequest
        )
    }
}

/// What is done to one entity. Declared from weakest to strongest: where two rules want
/// different things for one order, the stronger action wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    StripDownloadIp,
    DeleteSession,
    StripOrderIp,
    TrashOrder,
    MinimiseOrder,
    AnonymiseOrder,
    DeleteOrder,
    AnonymiseCustomer,
    DeleteCustomer,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::StripDownloadIp => "strip_download_ip",
            Action::DeleteSession => "delete_session",
            Action::StripOrderIp => "strip_order_ip",
            Action::TrashOrder => "trash_order",
            Action::MinimiseOrder => "minimise_order",
            Action::AnonymiseOrder => "anonymise_order",
            Action::DeleteOrder => "delete_order",
            Action::AnonymiseCustomer => "anonymise_customer",
            Action::DeleteCustomer => "delete_customer",
        }
    }

    pub fn entity(self) -> Entity {
        match self {
            Action::AnonymiseCustomer | Action::DeleteCustomer => Entity::Customer,
            Action::StripDownloadIp => Entity::DownloadLog,
            Action::DeleteSession => Entity::Session,
            _ => Entity::Order,
        }
    }

    /// The fields an action may change, for the audit row (names, never values).
    pub fn field_names(self) -> &'static str {
        match self {
            Action::StripDownloadIp => "user_ip_address",
            Action::DeleteSession => "session",
            Action::StripOrderIp => "ip_address,user_agent,_wc_order_attribution_user_agent",
            Action::TrashOrder => "status",
            Action::MinimiseOrder => {
                "billing_email,billing_phone,customer_id,ip_address,user_agent,customer_note,shipping_address,\
                 address_indexes,order_notes,refund_reason,extra_meta,download_permissions"
            }
            Action::AnonymiseOrder => {
                "billing_address,billing_email,billing_phone,customer_id,ip_address,user_agent,customer_note,\
                 shipping_address,address_indexes,order_notes,refund_reason,extra_meta,download_permissions"
            }
            Action::DeleteOrder => "order",
            Action::AnonymiseCustomer => {
                "user_login,user_nicename,user_email,user_url,display_name,user_pass,user_activation_key,\
                 profile_meta,customer_lookup,sessions,payment_tokens,reviews,privacy_requests"
            }
            Action::DeleteCustomer => {
                "user,profile_meta,customer_lookup,sessions,payment_tokens,reviews,privacy_requests"
            }
        }
    }
}

/// The kind of entity a step acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Customer,
    Order,
    Session,
    DownloadLog,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Customer => "customer",
            Entity::Order => "order",
            Entity::Session => "session",
            Entity::DownloadLog => "download_log",
        }
    }
}

/// One action on one entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub rule: Rule,
    pub action: Action,
    pub id: u64,
}

/// Everything a run will do, in the order it will be done: customers by user id, then
/// orders by order id, then sessions and download logs.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    #[serde(serialize_with = "rfc3339")]
    pub now: DateTime<Utc>,
    pub customers: Vec<Step>,
    pub orders: Vec<Step>,
    pub sessions: Vec<Step>,
    pub downloads: Vec<Step>,
    /// Subjects (customers and guests) this plan anonymises or deletes; what the safety cap counts.
    pub subjects_forgotten: u64,
    /// All subjects seen: customers in the configured roles and guest emails.
    pub subjects_total: u64,
    /// Restricted subjects whose entities the plan leaves alone.
    pub restricted_skipped: u64,
    /// Entities skipped because their data could not be judged, by id; see `warnings`.
    pub warnings: Vec<String>,
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// Counts of one (rule, action) pair with a few example ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub rule: Rule,
    pub action: Action,
    pub count: u64,
    pub sample_ids: Vec<u64>,
}

const SAMPLES: usize = 5;

impl Plan {
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.customers
            .iter()
            .chain(&self.orders)
            .chain(&self.sessions)
            .chain(&self.downloads)
    }

    pub fn is_empty(&self) -> bool {
        self.steps().next().is_none()
    }

    /// The table of rule × action with counts and sample ids.
    pub fn summary(&self) -> Vec<Line> {
        let mut lines: BTreeMap<(Rule, Action), Line> = BTreeMap::new();
        for s in self.steps() {
            let line = lines.entry((s.rule, s.action)).or_insert(Line {
                rule: s.rule,
                action: s.action,
                count: 0,
                sample_ids: Vec::new(),
            });
            line.count += 1;
            if line.sample_ids.len() < SAMPLES {
                line.sample_ids.push(s.id);
            }
        }
        lines.into_values().collect()
    }

    /// Counts per action name, for the run record.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for s in self.steps() {
            *counts.entry(s.action.as_str()).or_insert(0) += 1;
        }
        counts
    }

    /// The plan as people read it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan at {}: {} subjects of {} to forget, {} restricted subjects skipped",
            self.now.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.subjects_forgotten,
            self.subjects_total,
            self.restricted_skipped
        );
        let lines = self.summary();
        if lines.is_empty() {
            out.push_str("nothing to do\n");
        } else {
            let _ = writeln!(out, "{:<18} {:<19} {:>9}  sample ids", "rule", "action", "count");
            for l in &lines {
                let ids: Vec<String> = l.sample_ids.iter().map(u64::to_string).collect();
                let _ = writeln!(
                    out,
                    "{:<18} {:<19} {:>9}  {}",
                    l.rule.as_str(),
                    l.action.as_str(),
                    l.count,
                    ids.join(", ")
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// The plan as JSON: the summary lines and totals (not every step).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "now": self.now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "subjects_forgotten": self.subjects_forgotten,
            "subjects_total": self.subjects_total,
            "restricted_skipped": self.restricted_skipped,
            "lines": self.summary(),
            "counts": self.counts(),
            "warnings": self.warnings,
        })
    }

    /// Whether the plan stays within the safety cap; the reason when it does not.
    pub fn check_cap(&self, max_subjects: u64, max_share: f64) -> Result<(), String> {
        let n = self.subjects_forgotten;
        if n > max_subjects {
            return Err(format!(
                "this run would forget {n} subjects, more than safety.max_customers_per_run = {max_subjects}"
            ));
        }
        let share = if self.subjects_total == 0 {
            0.0
        } else {
            n as f64 / self.subjects_total as f64
        };
        if share > max_share {
            return Err(format!(
                "this run would forget {n} of {} subjects ({:.1}%), more than safety.max_share = {max_share}",
                self.subjects_total,
                share * 100.0
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(rule: Rule, action: Action, id: u64) -> Step {
        Step { rule, action, id }
    }

    #[test]
    fn summary_counts_and_samples() {
        let plan = Plan {
            customers: (1..=7)
                .map(|i| step(Rule::InactiveCustomer, Action::AnonymiseCustomer, i))
                .collect(),
            orders: vec![step(Rule::UnpaidOrder, Action::TrashOrder, 40)],
            ..Plan::default()
        };
        let s = plan.summary();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].count, 7);
        assert_eq!(s[0].sample_ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(plan.counts()["anonymise_customer"], 7);
        assert!(plan
            .to_text()
            .contains("inactive_customer  anonymise_customer          7  1, 2, 3, 4, 5"));
    }

    #[test]
    fn the_cap_counts_and_shares() {
        let plan = Plan {
            subjects_forgotten: 30,
            subjects_total: 100,
            ..Plan::default()
        };
        assert!(plan.check_cap(30, 0.3).is_ok());
        assert!(plan
            .check_cap(29, 0.3)
            .unwrap_err()
            .contains("max_customers_per_run = 29"));
        assert!(plan.check_cap(100, 0.2).unwrap_err().contains("30.0%"));
        assert!(Plan::default().check_cap(0, 0.1).is_ok());
    }
}
