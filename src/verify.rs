//! After a run: does WooCommerce itself now show what the database says? A sample of the
//! customers and orders the run changed is read back through the REST API and each
//! personal field is checked to come back anonymised, minimised or gone. A mismatch is
//! typically a persistent object cache still holding the old values.
//!
//! The top half decides (which entities, what each field must look like); [`after_run`]
//! does the I/O: the post-run command, the reads, the log lines and the run row.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::anonymise;
use crate::config::Config;
use crate::engine::{unless_stopped, Outcome};
use crate::plan::{Action, Entity, Plan, Step};
use crate::store::{audit, Store};
use crate::woo::rest::MAX_PER_PAGE;
use crate::woo::{Client, RestError};
use tokio::sync::watch;

/// What one field must look like after the action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `[deleted]` or empty.
    Text,
    /// `deleted@site.invalid`, `anonymised-<id>@site.invalid`, or empty.
    Email,
    /// No digit but 0.
    Phone,
    /// `0.0.0.0` or empty.
    Ip,
    /// Empty (state, country).
    Empty,
    /// `anonymised-<id>`.
    Login,
    /// The number 0 (the order's customer id).
    Zero,
}

fn kind_of(field: &str) -> Kind {
    match tail(field) {
        "email" => Kind::Email,
        "phone" => Kind::Phone,
        "state" | "country" => Kind::Empty,
        "customer_ip_address" => Kind::Ip,
        "username" => Kind::Login,
        "customer_id" => Kind::Zero,
        _ => Kind::Text,
    }
}

fn scrubbed(kind: Kind, value: &Value) -> bool {
    let text = match value {
        Value::Null => return true,
        Value::Number(n) => return kind == Kind::Zero && n.as_u64() == Some(0),
        Value::String(s) => s.as_str(),
        _ => return false,
    };
    if text.is_empty() {
        return kind != Kind::Login;
    }
    match kind {
        Kind::Text => text == anonymise::TEXT,
        Kind::Email => {
            text == anonymise::EMAIL
                || text.starts_with(anonymise::LOGIN_PREFIX) && text.ends_with(anonymise::LOGIN_DOMAIN)
        }
        Kind::Phone => !text.chars().any(|c| c.is_ascii_digit() && c != '0'),
        Kind::Ip => text == anonymise::IP,
        Kind::Empty => false,
        Kind::Login => text.starts_with(anonymise::LOGIN_PREFIX),
        Kind::Zero => text == "0",
    }
}

/// What the REST API must show for an entity after the action.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// These fields (dotted paths into the JSON) hold no personal data.
    Scrubbed(Vec<String>),
    /// Status `trash`, or gone.
    Trashed,
    /// 404.
    Gone,
}

fn address(kind: &str) -> impl Iterator<Item = String> + '_ {
    anonymise::address_fields(kind).map(move |f| format!("{kind}.{f}"))
}

fn expect(action: Action, keep_shipping: bool) -> Expect {
    let fields = |list: &[&str]| list.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>();
    let order_contact = || {
        fields(&[
            "customer_ip_address",
            "customer_user_agent",
            "customer_note",
            "customer_id",
        ])
    };
    match action {
        Action::AnonymiseCustomer => {
            let mut f = fields(&["email", "first_name", "last_name", "username"]);
            f.extend(address("billing").chain(address("shipping")));
            Expect::Scrubbed(f)
        }
        Action::DeleteCustomer | Action::DeleteOrder => Expect::Gone,
        Action::TrashOrder => Expect::Trashed,
        Action::AnonymiseOrder => {
            let mut f = order_contact();
            f.extend(address("billing").chain(address("shipping")));
            Expect::Scrubbed(f)
        }
        Action::MinimiseOrder => {
            let mut f = order_contact();
            f.extend(address("billing").filter(|f| !anonymise::kept_on_invoice(tail(f))));
            if !keep_shipping {
                f.extend(address("shipping"));
            }
            Expect::Scrubbed(f)
        }
        Action::StripOrderIp => Expect::Scrubbed(fields(&["customer_ip_address", "customer_user_agent"])),
        Action::DeleteSession | Action::StripDownloadIp => Expect::Scrubbed(vec![]),
    }
}

fn tail(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

fn lookup<'v>(json: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(json, |v, key| v.get(key).unwrap_or(&Value::Null))
}

/// One entity whose REST view disagrees with what the run did. Names fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub entity: Entity,
    pub id: u64,
    pub action: Action,
    /// Fields that still hold personal data; empty when the problem is presence.
    pub fields: Vec<String>,
    /// What is wrong, in words.
    pub problem: String,
}

/// Judges one entity's REST answer (`None`: not found). Pure.
fn judge(step: &Step, keep_shipping: bool, answer: Option<&Value>) -> Option<Mismatch> {
    let mismatch = |fields: Vec<String>, problem: &str| {
        Some(Mismatch {
            entity: step.action.entity(),
            id: step.id,
            action: step.action,
            fields,
            problem: problem.to_owned(),
        })
    };
    match (expect(step.action, keep_shipping), answer) {
        (Expect::Gone | Expect::Trashed, None) => None,
        (Expect::Gone, Some(_)) => mismatch(vec![], "still exists through the REST API"),
        (Expect::Trashed, Some(json)) if lookup(json, "status") == "trash" => None,
        (Expect::Trashed, Some(_)) => mismatch(vec!["status".into()], "is not in the trash according to the REST API"),
        (Expect::Scrubbed(_), None) => mismatch(vec![], "is not found through the REST API"),
        (Expect::Scrubbed(fields), Some(json)) => {
            let dirty: Vec<String> = fields
                .into_iter()
                .filter(|f| !scrubbed(kind_of(f), lookup(json, f)))
                .collect();
            if dirty.is_empty() {
                None
            } else {
                mismatch(dirty, "still shows personal data through the REST API")
            }
        }
    }
}

/// Up to `n` of `steps`, spread evenly over them so the first and the last batches are
/// both looked at. Pure.
fn spread(steps: &[Step], n: usize) -> Vec<Step> {
    if n == 0 || steps.is_empty() {
        return vec![];
    }
    if steps.len() <= n {
        return steps.to_vec();
    }
    (0..n).map(|i| steps[i * (steps.len() - 1) / (n - 1).max(1)]).collect()
}

/// The steps of `plan` the run committed (`applied` of them, in plan order) that the REST
/// API can show: customers and orders, up to `n` of each. An entity with several steps (an
/// unpaid order trashed and its IP stripped) is judged by the strongest.
fn sample(plan: &Plan, applied: u64, n: usize) -> Vec<Step> {
    let committed = |steps: &[Step], before: usize| -> Vec<Step> {
        let left = (applied as usize).saturating_sub(before);
        let mut strongest: BTreeMap<u64, Step> = BTreeMap::new();
        for s in steps.iter().take(left) {
            strongest
                .entry(s.id)
                .and_modify(|k| {
                    if s.action > k.action {
                        *k = *s
                    }
                })
                .or_insert(*s);
        }
        strongest.into_values().collect()
    };
    let customers = committed(&plan.customers, 0);
    let orders = committed(&plan.orders, plan.customers.len());
    let mut out = spread(&customers, n);
    out.extend(spread(&orders, n));
    out
}

/// What the check found, as logged and stored in the run row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// How `apply.post_run_command` went, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_run_command: Option<String>,
    /// Entities read back through the REST API.
    pub checked: usize,
    pub mismatches: Vec<Mismatch>,
    /// Why the check could not be completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Verification {
    /// The command succeeded, nothing was found wrong, and nothing stopped the check.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.error.is_none() && self.post_run_command.as_deref().is_none_or(|c| c == "ok")
    }

    /// One line for a person: ids and field names only.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.post_run_command.as_deref().filter(|c| *c != "ok") {
            parts.push(c.to_owned());
        }
        for m in &self.mismatches {
            let fields = if m.fields.is_empty() {
                String::new()
            } else {
                format!(" ({})", m.fields.join(", "))
            };
            parts.push(format!("{} {} {}{fields}", m.entity.as_str(), m.id, m.problem));
        }
        if let Some(e) = &self.error {
            parts.push(format!("REST verification could not finish: {e}"));
        }
        if parts.is_empty() {
            parts.push(format!(
                "{} entities read back through the REST API, all as expected",
                self.checked
            ));
        }
        parts.join("; ")
    }
}

/// What the caller lets the check do while it runs.
pub struct Watch<'a> {
    /// Turns true on a signal: the REST reads end at once.
    pub stop: &'a watch::Receiver<bool>,
    /// Called before each request, for the daemon's watchdog.
    pub beat: &'a (dyn Fn() + Sync),
}

/// The longest the REST reads may take: well within the daemon's watchdog stall limit.
const DEADLINE: Duration = Duration::from_secs(10 * 60);
/// The longest the post-run command may take after a stop request: systemd waits 90 s.
const STOPPING_HOOK_LIMIT: Duration = Duration::from_secs(30);

/// Runs `apply.post_run_command`, then reads a sample of what the run changed back
/// through the REST API; logs the result and stores it in the run row. The command runs
/// after an interrupted run too (its batches are committed); the reads do not. `None`
/// when the run changed nothing, or there was neither a command nor a REST check to do.
pub async fn after_run(
    config: &Config,
    store: &Store,
    plan: &Plan,
    outcome: &Outcome,
    watch: &Watch<'_>,
) -> Option<Verification> {
    let run_id = outcome.run_id;
    if outcome.applied == 0 {
        return None;
    }
    let mut v = Verification::default();
    let command = &config.apply.post_run_command;
    if !command.is_empty() {
        let mut timeout = Duration::from_secs(config.apply.post_run_timeout_secs);
        if outcome.interrupted {
            timeout = timeout.min(STOPPING_HOOK_LIMIT);
        }
        (watch.beat)();
        let running = crate::hook::run(command, timeout);
        let result = if outcome.interrupted {
            // The stop already came; the short limit above is what bounds it.
            running.await.map_err(|e| e.to_string())
        } else {
            match unless_stopped(watch.stop, running).await {
                Some(r) => r.map_err(|e| e.to_string()),
                None => Err("apply.post_run_command cut short by a stop request".to_owned()),
            }
        };
        v.post_run_command = Some(match result {
            Ok(()) => {
                tracing::info!(run_id, "post-run command finished");
                "ok".to_owned()
            }
            Err(e) => {
                tracing::error!(run_id, error = %e, "post-run command failed");
                e
            }
        });
    }
    let rest = config.rest.as_ref().filter(|r| r.verify_sample > 0);
    match rest {
        None if v.post_run_command.is_none() => return None,
        Some(_) if outcome.interrupted => {
            tracing::warn!(run_id, "stop requested: REST verification skipped");
            v.error = Some("skipped: the run was stopped".to_owned());
        }
        None => {}
        Some(rest) => {
            let steps = sample(plan, outcome.applied, rest.verify_sample as usize);
            let keep_shipping = config.invoices.keep_shipping_address;
            match Client::new(rest) {
                Ok(client) => {
                    let checking = tokio::time::timeout(DEADLINE, check(&client, &steps, keep_shipping, watch, &mut v));
                    match unless_stopped(watch.stop, checking).await {
                        Some(Ok(())) => {}
                        Some(Err(_)) => {
                            v.error = Some(format!("did not finish within {} minutes", DEADLINE.as_secs() / 60))
                        }
                        None => v.error = Some("cut short by a stop request".to_owned()),
                    }
                }
                Err(e) => v.error = Some(e.to_string()),
            }
            report(run_id, &v);
        }
    }
    let json = serde_json::to_value(&v).unwrap_or_default();
    if let Err(e) = audit::record_verification(store, run_id, &json).await {
        tracing::warn!(run_id, error = %e, "could not record the verification in the run row");
    }
    Some(v)
}

fn report(run_id: u64, v: &Verification) {
    for m in &v.mismatches {
        tracing::error!(
            run_id,
            entity = m.entity.as_str(),
            id = m.id,
            action = m.action.as_str(),
            fields = %m.fields.join(","),
            "{}; a persistent object cache may hold old values (see apply.post_run_command)",
            m.problem
        );
    }
    match &v.error {
        Some(e) => tracing::error!(run_id, checked = v.checked, error = %e, "REST verification could not finish"),
        None if v.mismatches.is_empty() => {
            tracing::info!(run_id, checked = v.checked, "REST verification passed")
        }
        None => tracing::error!(
            run_id,
            checked = v.checked,
            mismatches = v.mismatches.len(),
            "REST verification found personal data the run removed from the database"
        ),
    }
}

/// Reads `steps`' entities and judges each. Orders and customers expected to exist are
/// read by the page (`include=`, 100 ids a request); trashed and deleted ones, and any the
/// lists leave out (WooCommerce's order lists skip the trash), one by one.
async fn check(client: &Client, steps: &[Step], keep_shipping: bool, watch: &Watch<'_>, v: &mut Verification) {
    let result = async {
        for entity in [Entity::Customer, Entity::Order] {
            let path = if entity == Entity::Customer {
                "/customers"
            } else {
                "/orders"
            };
            let (listed, single): (Vec<&Step>, Vec<&Step>) = steps
                .iter()
                .filter(|s| s.action.entity() == entity)
                .partition(|s| matches!(expect(s.action, keep_shipping), Expect::Scrubbed(_)));
            let mut found = HashMap::new();
            for chunk in listed.chunks(MAX_PER_PAGE) {
                (watch.beat)();
                found.extend(fetch_listed(client, path, chunk).await?);
            }
            let unlisted: Vec<&Step> = listed.iter().copied().filter(|s| !found.contains_key(&s.id)).collect();
            for s in single.iter().chain(&unlisted) {
                (watch.beat)();
                match client.get::<Value>(&format!("{path}/{}", s.id), &[]).await {
                    Ok(json) => drop(found.insert(s.id, json)),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            for s in listed.iter().chain(&single) {
                v.checked += 1;
                v.mismatches.extend(judge(s, keep_shipping, found.get(&s.id)));
            }
        }
        Ok::<(), RestError>(())
    };
    if let Err(e) = result.await {
        v.error = Some(e.to_string());
    }
}

async fn fetch_listed(client: &Client, path: &str, steps: &[&Step]) -> Result<HashMap<u64, Value>, RestError> {
    let ids: Vec<String> = steps.iter().map(|s| s.id.to_string()).collect();
    let mut query = vec![("include", ids.join(","))];
    if path == "/customers" {
        // WooCommerce lists only the `customer` role unless told otherwise.
        query.push(("role", "all".to_owned()));
    }
    let mut found = HashMap::new();
    for item in client.list::<Value>(path, &query).await? {
        if let Some(id) = item.get("id").and_then(Value::as_u64) {
            found.insert(id, item);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Rule;

    fn step(action: Action, id: u64) -> Step {
        Step {
            rule: Rule::InactiveCustomer,
            action,
            id,
        }
    }

    fn order_json() -> Value {
        serde_json::from_str(include_str!("../tests/data/woo/order.json")).unwrap()
    }

    /// The real order as WooCommerce showed it, with the values the service writes.
    fn anonymised(mut o: Value, billing_too: bool) -> Value {
        for kind in ["billing", "shipping"] {
            if kind == "billing" && !billing_too {
                o["billing"]["email"] = anonymise::EMAIL.into();
                o["billing"]["phone"] = "+00 0000 000000".into();
                continue;
            }
            for f in anonymise::address_fields(kind) {
                let value = match f {
                    "email" => anonymise::EMAIL.into(),
                    "phone" => "+00 0000 000000".into(),
                    "state" | "country" => "".into(),
                    _ if o[kind][f] == "" => "".into(),
                    _ => anonymise::TEXT.into(),
                };
                o[kind][f] = value;
            }
        }
        o["customer_ip_address"] = anonymise::IP.into();
        o["customer_user_agent"] = anonymise::TEXT.into();
        o["customer_note"] = anonymise::TEXT.into();
        o["customer_id"] = 0.into();
        o
    }

    #[test]
    fn the_real_order_fails_until_scrubbed() {
        let s = step(Action::AnonymiseOrder, 245);
        let m = judge(&s, false, Some(&order_json())).unwrap();
        assert!(m.fields.contains(&"billing.email".to_owned()));
        assert!(m.fields.contains(&"customer_ip_address".to_owned()));
        assert!(
            !m.fields.contains(&"customer_id".to_owned()),
            "a guest order's customer id is 0"
        );
        assert_eq!(judge(&s, false, Some(&anonymised(order_json(), true))), None);
    }

    #[test]
    fn a_minimised_invoice_keeps_its_billing_name_and_address() {
        let s = step(Action::MinimiseOrder, 245);
        assert_eq!(judge(&s, false, Some(&anonymised(order_json(), false))), None);
        let mut stale = anonymised(order_json(), false);
        stale["billing"]["phone"] = "+44 7700 900304".into();
        let m = judge(&s, false, Some(&stale)).unwrap();
        assert_eq!(m.fields, ["billing.phone"]);
        let text = serde_json::to_string(&m).unwrap();
        assert!(!text.contains("7700"), "{text}");
        // Kept shipping addresses are not expected to be scrubbed.
        let mut shipping_kept = anonymised(order_json(), false);
        shipping_kept["shipping"] = order_json()["shipping"].clone();
        assert!(judge(&s, false, Some(&shipping_kept)).is_some());
        assert_eq!(judge(&s, true, Some(&shipping_kept)), None);
    }

    #[test]
    fn presence_is_judged_by_action() {
        let json = order_json();
        assert_eq!(judge(&step(Action::DeleteOrder, 1), false, None), None);
        assert!(judge(&step(Action::DeleteOrder, 1), false, Some(&json)).is_some());
        assert!(judge(&step(Action::TrashOrder, 1), false, Some(&json)).is_some());
        let mut trashed = json.clone();
        trashed["status"] = "trash".into();
        assert_eq!(judge(&step(Action::TrashOrder, 1), false, Some(&trashed)), None);
        let missing = judge(&step(Action::AnonymiseOrder, 1), false, None).unwrap();
        assert_eq!(missing.problem, "is not found through the REST API");
    }

    #[test]
    fn an_anonymised_customer_as_woocommerce_shows_it() {
        let mut c: Value = serde_json::from_str(include_str!("../tests/data/woo/customer.json")).unwrap();
        let s = step(Action::AnonymiseCustomer, 2);
        assert!(judge(&s, false, Some(&c)).unwrap().fields.len() > 10);
        c["email"] = "anonymised-2@site.invalid".into();
        c["username"] = "anonymised-2".into();
        for f in ["first_name", "last_name"] {
            c[f] = "".into();
        }
        for kind in ["billing", "shipping"] {
            for f in anonymise::address_fields(kind) {
                c[kind][f] = "".into();
            }
        }
        assert_eq!(judge(&s, false, Some(&c)), None);
    }

    #[test]
    fn the_sample_spreads_over_what_was_committed() {
        let plan = Plan {
            customers: (1..=10).map(|i| step(Action::AnonymiseCustomer, i)).collect(),
            orders: (100..200).map(|i| step(Action::MinimiseOrder, i)).collect(),
            ..Plan::default()
        };
        let ids = |steps: Vec<Step>| steps.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(ids(sample(&plan, 110, 3)), [1, 5, 10, 100, 149, 199]);
        // Interrupted after the customers and 5 orders.
        assert_eq!(ids(sample(&plan, 15, 3)), [1, 5, 10, 100, 102, 104]);
        assert_eq!(ids(sample(&plan, 4, 20)), [1, 2, 3, 4]);
        assert!(sample(&plan, 110, 0).is_empty());
        let twice = Plan {
            orders: vec![
                step(Action::StripOrderIp, 7),
                step(Action::TrashOrder, 7),
                step(Action::MinimiseOrder, 8),
            ],
            ..Plan::default()
        };
        let judged: Vec<(u64, Action)> = sample(&twice, 3, 5).iter().map(|s| (s.id, s.action)).collect();
        assert_eq!(judged, [(7, Action::TrashOrder), (8, Action::MinimiseOrder)]);
    }
}
