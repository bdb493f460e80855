//! The retention policy on plain facts: a config, a `now`, facts in, a plan out.
//!
//! Every test runs at [`now`] (1 June 2026, 12:00 in Amsterdam) unless it says otherwise,
//! far from a daylight-saving change and from a year end, with the documented defaults:
//! inactive after 3 years (cut-off 2023-06-01T10:00:00Z), invoices `completed`/`refunded`
//! kept 7 years after a fiscal year ending 12-31, pending trashed after 30 days, failed and
//! cancelled anonymised after 90, checkout drafts deleted after 7, IPs stripped after 90.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Europe::Amsterdam;
use figment::providers::{Format, Toml};
use figment::Figment;

use super::{
    Account, CustomerFacts, DownloadFacts, Erasure, GuestFacts, OrderActivity, OrderFacts, Planner, PolicyError,
    Processed, Restrictions, Rules, SessionFacts, UnreadableDates, UnreadableOrderDates,
};
use crate::config::Config;
use crate::localtime::ShopZone;
use crate::plan::{Action, Plan, Rule, Step};

const PEPPER: &str = "0123456789abcdef0123456789abcdef";
const CUSTOMER_ROLE: &[u8] = br#"a:1:{s:8:"customer";b:1;}"#;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    t("2026-06-01T10:00:00Z")
}

fn days_ago(n: i64) -> DateTime<Utc> {
    now() - TimeDelta::days(n)
}

/// `customers.inactive_after` (3 years) before [`now`].
fn inactive_before() -> DateTime<Utc> {
    t("2023-06-01T10:00:00Z")
}

/// A config from TOML sections after the required `[database]`.
fn config(extra: &str) -> Config {
    Figment::new()
        .merge(Toml::string(&format!("[database]\nurl = \"mysql://u@h/db\"\n{extra}")))
        .extract()
        .unwrap_or_else(|e| panic!("test config does not load: {e}"))
}

fn rules_with(at: DateTime<Utc>, extra: &str, restrictions: Restrictions) -> Rules {
    Rules::new(&config(extra), ShopZone::Named(Amsterdam), at, restrictions).unwrap()
}

fn rules_at(at: DateTime<Utc>, extra: &str) -> Rules {
    rules_with(at, extra, Restrictions::default())
}

fn rules() -> Rules {
    rules_at(now(), "")
}

fn restricting(emails: &[&str]) -> Restrictions {
    let hashes: HashSet<String> = emails.iter().map(|e| crate::subject::hash(PEPPER, e)).collect();
    Restrictions::new(Some(PEPPER), hashes).unwrap()
}

#[derive(Default)]
struct Facts {
    customers: Vec<CustomerFacts>,
    guests: Vec<GuestFacts>,
    orders: Vec<OrderFacts>,
    sessions: Vec<SessionFacts>,
    downloads: Vec<DownloadFacts>,
}

/// Runs the passes in the engine's order.
fn plan(rules: &Rules, facts: &Facts) -> Plan {
    let mut p = Planner::new(rules);
    for f in &facts.customers {
        p.customer(f);
    }
    for f in &facts.guests {
        p.guest(f);
    }
    for f in &facts.orders {
        p.order(f);
    }
    for f in &facts.sessions {
        p.session(f);
    }
    for f in &facts.downloads {
        p.download(f);
    }
    p.finish()
}

fn customers_plan(rules: &Rules, customers: Vec<CustomerFacts>) -> Plan {
    plan(
        rules,
        &Facts {
            customers,
            ..Facts::default()
        },
    )
}

fn orders_plan(rules: &Rules, orders: Vec<OrderFacts>) -> Plan {
    plan(
        rules,
        &Facts {
            orders,
            ..Facts::default()
        },
    )
}

fn step(rule: Rule, action: Action, id: u64) -> Step {
    Step { rule, action, id }
}

fn email_of(user_id: u64) -> String {
    format!("customer{user_id}@example.nl")
}

/// A customer whose every activity signal is present and older than the cut-off.
fn long_gone(user_id: u64) -> CustomerFacts {
    CustomerFacts {
        user_id,
        email: email_of(user_id),
        capabilities: Some(CUSTOMER_ROLE.to_vec()),
        registered: Some(t("2015-01-01T09:00:00Z")),
        wc_last_active: Some(t("2021-01-01T00:00:00Z")),
        last_update: Some(t("2021-02-01T10:00:00Z")),
        session_tokens: Some(session_tokens(&[t("2021-03-01T10:00:00Z")])),
        session_expiry: Some(t("2021-03-03T10:00:00Z")),
        orders: OrderActivity {
            last_order: Some(t("2021-04-01T10:00:00Z")),
            ..OrderActivity::default()
        },
        guest_orders: OrderActivity {
            last_order: Some(t("2020-05-01T10:00:00Z")),
            ..OrderActivity::default()
        },
        anonymised: false,
        unreadable: UnreadableDates::default(),
        email_shared: false,
    }
}

/// WordPress's `session_tokens` meta with one session per login time.
fn session_tokens(logins: &[DateTime<Utc>]) -> Vec<u8> {
    let mut s = format!("a:{}:{{", logins.len());
    for (i, login) in logins.iter().enumerate() {
        let key = format!("{i:064x}");
        let login = login.timestamp();
        s += &format!(
            "s:64:\"{key}\";a:3:{{s:10:\"expiration\";i:{};s:2:\"ip\";s:9:\"192.0.2.1\";s:5:\"login\";i:{login};}}",
            login + 14 * 86_400
        );
    }
    s.push('}');
    s.into_bytes()
}

/// A guest order by `guest@example.nl`, no IP stored.
fn order(id: u64, status: &str, created: Option<DateTime<Utc>>) -> OrderFacts {
    OrderFacts {
        id,
        status: status.to_owned(),
        email: "guest@example.nl".to_owned(),
        created,
        contact_present: true,
        ..OrderFacts::default()
    }
}

/// A completed order created, paid and completed at `paid`.
fn invoice(id: u64, paid: DateTime<Utc>) -> OrderFacts {
    OrderFacts {
        paid: Some(paid),
        completed: Some(paid),
        ..order(id, "wc-completed", Some(paid))
    }
}

/// An order whose account no longer exists.
fn orphan(f: OrderFacts) -> OrderFacts {
    OrderFacts {
        customer_id: 99,
        account: Account::Missing,
        email: "deleted-account@example.nl".to_owned(),
        ..f
    }
}

/// An order of the account `user_id`.
fn of_account(user_id: u64, f: OrderFacts) -> OrderFacts {
    OrderFacts {
        customer_id: user_id,
        account: Account::Present { anonymised: false },
        email: email_of(user_id),
        ..f
    }
}

/// The steps one order gets.
fn order_steps(rules: &Rules, f: OrderFacts) -> Vec<Step> {
    orders_plan(rules, vec![f]).orders
}

fn assert_kept(p: &Plan) {
    assert!(p.customers.is_empty(), "{:?}", p.customers);
    assert_eq!(p.subjects_forgotten, 0);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

// ---------------------------------------------------------------------------------------
// Inactive customers and their last activity
// ---------------------------------------------------------------------------------------

#[test]
fn an_inactive_customer_is_anonymised() {
    let p = customers_plan(&rules(), vec![long_gone(5)]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 5)]
    );
    assert_eq!((p.subjects_forgotten, p.subjects_total), (1, 1));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn an_inactive_customer_is_deleted_when_the_action_is_delete() {
    let r = rules_at(now(), "[customers]\naction = \"delete\"\n");
    let p = customers_plan(&r, vec![long_gone(5)]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::DeleteCustomer, 5)]
    );
    assert_eq!(p.subjects_forgotten, 1);
}

#[test]
fn an_active_customer_is_kept() {
    let c = CustomerFacts {
        registered: Some(t("2019-01-01T09:00:00Z")),
        wc_last_active: Some(days_ago(3)),
        last_update: Some(days_ago(40)),
        orders: OrderActivity {
            last_order: Some(days_ago(100)),
            ..OrderActivity::default()
        },
        ..long_gone(5)
    };
    let p = customers_plan(&rules(), vec![c]);
    assert_kept(&p);
    assert_eq!(p.subjects_total, 1);
}

#[test]
fn the_inactivity_cutoff_is_three_calendar_years_to_the_second() {
    let at_cutoff = CustomerFacts {
        user_id: 5,
        email: email_of(5),
        capabilities: Some(CUSTOMER_ROLE.to_vec()),
        registered: Some(inactive_before()),
        ..CustomerFacts::default()
    };
    let just_before = CustomerFacts {
        user_id: 6,
        email: email_of(6),
        registered: Some(inactive_before() - TimeDelta::seconds(1)),
        ..at_cutoff.clone()
    };
    let p = customers_plan(&rules(), vec![at_cutoff, just_before]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 6)]
    );
}

#[test]
fn registration_alone_keeps_a_customer() {
    let c = CustomerFacts {
        registered: Some(days_ago(30)),
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn wc_last_active_alone_keeps_a_customer() {
    let c = CustomerFacts {
        wc_last_active: Some(days_ago(30)),
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn last_update_alone_keeps_a_customer() {
    let c = CustomerFacts {
        last_update: Some(days_ago(30)),
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn a_login_alone_keeps_a_customer() {
    // The newest of several login sessions counts, wherever it is in the list.
    let c = CustomerFacts {
        session_tokens: Some(session_tokens(&[
            t("2020-01-01T10:00:00Z"),
            days_ago(30),
            t("2021-01-01T10:00:00Z"),
        ])),
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn a_woocommerce_session_alone_keeps_a_customer() {
    let c = CustomerFacts {
        session_expiry: Some(days_ago(30)),
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn a_session_counts_as_a_visit_48_hours_before_its_expiry() {
    // Expiring 48 hours after the cut-off: the visit was at the cut-off, so still a client.
    let visit_at_cutoff = CustomerFacts {
        session_expiry: Some(inactive_before() + TimeDelta::hours(48)),
        ..long_gone(5)
    };
    // Expiring 47 hours after it: the visit was an hour before, so no longer a client.
    let visit_before_cutoff = CustomerFacts {
        session_expiry: Some(inactive_before() + TimeDelta::hours(47)),
        ..long_gone(6)
    };
    let p = customers_plan(&rules(), vec![visit_at_cutoff, visit_before_cutoff]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 6)]
    );
}

#[test]
fn the_newest_order_alone_keeps_a_customer() {
    let c = CustomerFacts {
        orders: OrderActivity {
            last_order: Some(days_ago(30)),
            ..OrderActivity::default()
        },
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn unreadable_login_sessions_skip_an_otherwise_inactive_customer_with_a_warning_naming_the_user() {
    let c = CustomerFacts {
        session_tokens: Some(b"a:1:{s:5:\"login\";".to_vec()),
        ..long_gone(5)
    };
    let p = customers_plan(&rules(), vec![c]);
    // The broken value may hold yesterday's login.
    assert!(p.customers.is_empty(), "{:?}", p.customers);
    assert_eq!(p.subjects_forgotten, 0);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with("user 5: ") && p.warnings[0].contains("session_tokens cannot be read"),
        "{:?}",
        p.warnings
    );
    assert!(!p.warnings[0].contains(&email_of(5)));
    // A readable recent signal decides without any warning.
    let c = CustomerFacts {
        session_tokens: Some(b"a:1:{s:5:\"login\";".to_vec()),
        wc_last_active: Some(days_ago(3)),
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn an_unreadable_wc_last_active_or_last_update_is_unknown_never_old() {
    for (unreadable, what) in [
        (
            UnreadableDates {
                wc_last_active: true,
                ..UnreadableDates::default()
            },
            "wc_last_active",
        ),
        (
            UnreadableDates {
                last_update: true,
                ..UnreadableDates::default()
            },
            "last_update",
        ),
    ] {
        let c = CustomerFacts {
            wc_last_active: None,
            last_update: None,
            unreadable,
            ..long_gone(7)
        };
        let p = customers_plan(&rules(), vec![c]);
        assert!(p.customers.is_empty(), "{what}: {:?}", p.customers);
        assert_eq!(p.warnings.len(), 1, "{what}: {:?}", p.warnings);
        assert!(
            p.warnings[0].starts_with("user 7: ") && p.warnings[0].contains(&format!("{what} cannot be read")),
            "{:?}",
            p.warnings
        );
    }
    // No value at all (or an empty one, which the reader does not count as unreadable)
    // says nothing: the other dates decide.
    let c = CustomerFacts {
        wc_last_active: None,
        last_update: None,
        ..long_gone(7)
    };
    let p = customers_plan(&rules(), vec![c]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 7)]
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn an_unreadable_registration_counts_only_without_the_accounts_own_activity() {
    let zero_registration = |c: CustomerFacts| CustomerFacts {
        registered: None,
        unreadable: UnreadableDates {
            registered: true,
            ..UnreadableDates::default()
        },
        ..c
    };
    // wc_last_active, last_update and logins all come after the registration.
    let p = customers_plan(&rules(), vec![zero_registration(long_gone(5))]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 5)]
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // Orders alone do not: WooCommerce links older guest orders to a new account.
    let only_orders = CustomerFacts {
        wc_last_active: None,
        last_update: None,
        session_tokens: None,
        session_expiry: None,
        ..zero_registration(long_gone(5))
    };
    let p = customers_plan(&rules(), vec![only_orders]);
    assert!(p.customers.is_empty(), "{:?}", p.customers);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].contains("user_registered cannot be read"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn an_order_without_a_readable_date_keeps_its_customer_with_a_warning_naming_both() {
    for account_order in [true, false] {
        let undated = OrderActivity {
            last_order: Some(t("2020-01-01T10:00:00Z")),
            undated: 1,
            first_undated: Some(77),
            ..OrderActivity::default()
        };
        let c = if account_order {
            CustomerFacts {
                orders: undated,
                ..long_gone(5)
            }
        } else {
            CustomerFacts {
                guest_orders: undated,
                ..long_gone(5)
            }
        };
        let p = customers_plan(&rules(), vec![c]);
        assert!(p.customers.is_empty(), "{:?}", p.customers);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        let w = &p.warnings[0];
        assert!(
            w.starts_with("user 5: ") && w.contains("order 77 has no readable creation date"),
            "{w}"
        );
    }
}

#[test]
fn a_guest_with_an_undated_order_is_kept_with_a_warning_naming_the_order() {
    let mut g = guest("guest@example.nl", Some(t("2020-04-01T10:00:00Z")));
    g.orders.undated = 2;
    g.orders.first_undated = Some(31);
    let p = plan(
        &rules(),
        &Facts {
            guests: vec![g.clone()],
            orders: vec![invoice(10, t("2020-04-01T10:00:00Z"))],
            ..Facts::default()
        },
    );
    assert!(p.orders.is_empty(), "{:?}", p.orders);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 1));
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].starts_with("order 31: "), "{:?}", p.warnings);
    assert!(!p.warnings[0].contains("example.nl"), "{:?}", p.warnings);
    // Only undated orders: no readable date either.
    g.orders.last_order = None;
    let p = plan(
        &rules(),
        &Facts {
            guests: vec![g],
            ..Facts::default()
        },
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert_eq!(p.subjects_forgotten, 0);
}

#[test]
fn a_customer_without_any_date_is_never_anonymised() {
    let c = CustomerFacts {
        user_id: 9,
        email: email_of(9),
        capabilities: Some(CUSTOMER_ROLE.to_vec()),
        ..CustomerFacts::default()
    };
    let p = customers_plan(&rules(), vec![c]);
    assert!(p.customers.is_empty(), "{:?}", p.customers);
    assert_eq!(p.subjects_forgotten, 0);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].starts_with("user 9: "), "{:?}", p.warnings);
    assert!(!p.warnings[0].contains(&email_of(9)));
}

#[test]
fn warnings_beyond_one_hundred_are_counted() {
    let undated: Vec<CustomerFacts> = (1..=105)
        .map(|id| CustomerFacts {
            user_id: id,
            email: email_of(id),
            capabilities: Some(CUSTOMER_ROLE.to_vec()),
            ..CustomerFacts::default()
        })
        .collect();
    let p = customers_plan(&rules(), undated);
    assert_eq!(p.warnings.len(), 101);
    assert!(p.warnings[99].starts_with("user 100: "), "{}", p.warnings[99]);
    assert_eq!(p.warnings[100], "5 more warnings not listed");
}

#[test]
fn the_customer_rule_can_be_switched_off() {
    let r = rules_at(now(), "[customers]\nenabled = false\n");
    let p = plan(
        &r,
        &Facts {
            customers: vec![long_gone(5)],
            orders: vec![of_account(5, invoice(10, t("2021-04-01T10:00:00Z")))],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!(p.subjects_forgotten, 0);
}

// ---------------------------------------------------------------------------------------
// Who is never touched
// ---------------------------------------------------------------------------------------

#[test]
fn staff_are_never_customers() {
    let admin = CustomerFacts {
        capabilities: Some(br#"a:1:{s:13:"administrator";b:1;}"#.to_vec()),
        ..long_gone(1)
    };
    let shop_manager_and_customer = CustomerFacts {
        capabilities: Some(br#"a:2:{s:8:"customer";b:1;s:12:"shop_manager";b:1;}"#.to_vec()),
        ..long_gone(2)
    };
    let p = plan(
        &rules(),
        &Facts {
            customers: vec![admin, shop_manager_and_customer],
            orders: vec![
                of_account(1, invoice(10, t("2021-04-01T10:00:00Z"))),
                of_account(2, invoice(11, t("2021-04-01T10:00:00Z"))),
            ],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 0));
}

#[test]
fn a_role_that_is_false_does_not_make_staff() {
    // WordPress keeps a removed role as `false`: this is a plain customer.
    let c = CustomerFacts {
        capabilities: Some(br#"a:2:{s:8:"customer";b:1;s:12:"shop_manager";b:0;}"#.to_vec()),
        ..long_gone(5)
    };
    let p = customers_plan(&rules(), vec![c]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 5)]
    );
}

#[test]
fn a_user_without_capabilities_is_not_a_customer() {
    let none = CustomerFacts {
        capabilities: None,
        ..long_gone(5)
    };
    let no_role = CustomerFacts {
        capabilities: Some(b"a:0:{}".to_vec()),
        ..long_gone(6)
    };
    let p = customers_plan(&rules(), vec![none, no_role]);
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 0));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn broken_capabilities_skip_the_user_with_a_warning_naming_only_the_id() {
    let c = CustomerFacts {
        capabilities: Some(br#"a:1:{s:8:"customer";b:1;"#.to_vec()),
        ..long_gone(7)
    };
    let p = plan(
        &rules(),
        &Facts {
            customers: vec![c],
            orders: vec![of_account(
                7,
                OrderFacts {
                    ip_present: true,
                    ..invoice(10, t("2021-04-01T10:00:00Z"))
                },
            )],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 0));
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    let w = &p.warnings[0];
    assert!(w.starts_with("user 7: roles unreadable"), "{w}");
    assert!(w.ends_with("skipped"), "{w}");
    for leaked in [email_of(7).as_str(), "customer7", "example.nl", "s:8:", "customer\""] {
        assert!(!w.contains(leaked), "{leaked:?} in {w}");
    }
}

#[test]
fn protected_user_ids_are_kept() {
    let r = rules_at(now(), "[customers]\nprotected_user_ids = [5]\n");
    let p = plan(
        &r,
        &Facts {
            customers: vec![long_gone(5), long_gone(6)],
            orders: vec![of_account(
                5,
                OrderFacts {
                    ip_present: true,
                    ..invoice(10, t("2021-04-01T10:00:00Z"))
                },
            )],
            ..Facts::default()
        },
    );
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 6)]
    );
    assert!(p.orders.is_empty(), "{:?}", p.orders);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (1, 2));
}

#[test]
fn protected_emails_are_kept_whatever_their_case() {
    let r = rules_at(
        now(),
        "[customers]\nprotected_emails = [\" Customer5@Example.NL \", \"GUEST@example.nl\", \"Deleted-Account@Example.nl\"]\n",
    );
    let p = plan(
        &r,
        &Facts {
            customers: vec![long_gone(5)],
            guests: vec![GuestFacts {
                email: "guest@example.nl".to_owned(),
                orders: OrderActivity {
                    last_order: Some(t("2021-04-01T10:00:00Z")),
                    ..OrderActivity::default()
                },
                has_account: false,
            }],
            orders: vec![
                of_account(
                    5,
                    OrderFacts {
                        ip_present: true,
                        ..invoice(10, t("2021-04-01T10:00:00Z"))
                    },
                ),
                OrderFacts {
                    ip_present: true,
                    ..invoice(11, t("2021-04-01T10:00:00Z"))
                },
                orphan(OrderFacts {
                    ip_present: true,
                    ..invoice(12, t("2021-04-01T10:00:00Z"))
                }),
            ],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 2));
}

#[test]
fn an_open_order_keeps_a_customer() {
    let c = CustomerFacts {
        orders: OrderActivity {
            open: 1,
            ..long_gone(5).orders
        },
        ..long_gone(5)
    };
    assert_kept(&customers_plan(&rules(), vec![c]));
}

#[test]
fn a_young_pending_order_keeps_a_customer_an_old_one_does_not() {
    // With inactivity shorter than the pending age, only the pending rule keeps them.
    let r = rules_at(now(), "[customers]\ninactive_after = \"20 days\"\n");
    let pending = |user_id: u64, at: DateTime<Utc>| CustomerFacts {
        user_id,
        email: email_of(user_id),
        capabilities: Some(CUSTOMER_ROLE.to_vec()),
        registered: Some(t("2020-01-01T10:00:00Z")),
        orders: OrderActivity {
            last_order: Some(at),
            open: 0,
            last_pending: Some(at),
            ..OrderActivity::default()
        },
        ..CustomerFacts::default()
    };
    let p = customers_plan(&r, vec![pending(5, days_ago(29)), pending(6, days_ago(31))]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 6)]
    );
}

#[test]
fn restricted_subjects_are_skipped_with_all_their_orders() {
    let r = rules_with(
        now(),
        "",
        restricting(&[&email_of(5), "guest@example.nl", "deleted-account@example.nl"]),
    );
    let old_ip = |f: OrderFacts| OrderFacts { ip_present: true, ..f };
    let p = plan(
        &r,
        &Facts {
            customers: vec![long_gone(5)],
            guests: vec![GuestFacts {
                email: "guest@example.nl".to_owned(),
                orders: OrderActivity {
                    last_order: Some(t("2021-04-01T10:00:00Z")),
                    ..OrderActivity::default()
                },
                has_account: false,
            }],
            orders: vec![
                of_account(5, old_ip(invoice(10, t("2021-04-01T10:00:00Z")))),
                of_account(5, old_ip(order(11, "wc-pending", Some(t("2021-03-01T10:00:00Z"))))),
                of_account(5, old_ip(order(12, "wc-completed", Some(days_ago(120))))),
                old_ip(order(13, "wc-checkout-draft", Some(t("2021-03-01T10:00:00Z")))),
                old_ip(order(14, "wc-completed", Some(days_ago(120)))),
                orphan(old_ip(invoice(15, t("2021-04-01T10:00:00Z")))),
                orphan(old_ip(order(16, "wc-failed", Some(days_ago(120))))),
            ],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!(p.restricted_skipped, 2);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 2));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn restrictions_are_matched_by_the_peppered_hash_only() {
    let other_pepper = Restrictions::new(
        Some("another pepper of at least 32 chars"),
        HashSet::from([crate::subject::hash(PEPPER, &email_of(5))]),
    )
    .unwrap();
    let p = customers_plan(&rules_with(now(), "", other_pepper), vec![long_gone(5)]);
    assert_eq!(
        p.customers,
        vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 5)]
    );
    assert_eq!(p.restricted_skipped, 0);
}

#[test]
fn restrictions_without_a_pepper_are_an_error() {
    let hashes = HashSet::from([crate::subject::hash(PEPPER, "jan@example.nl")]);
    let e = Restrictions::new(None, hashes).unwrap_err();
    assert_eq!(e, PolicyError::NoPepper(1));
    assert!(e.to_string().contains("requests.pepper"), "{e}");
    // An empty register needs no pepper.
    assert!(Restrictions::new(None, HashSet::new()).is_ok());
}

// ---------------------------------------------------------------------------------------
// Guests
// ---------------------------------------------------------------------------------------

fn guest(email: &str, last_order: Option<DateTime<Utc>>) -> GuestFacts {
    GuestFacts {
        email: email.to_owned(),
        orders: OrderActivity {
            last_order,
            ..OrderActivity::default()
        },
        has_account: false,
    }
}

#[test]
fn an_inactive_guests_orders_are_minimised_or_anonymised() {
    let p = plan(
        &rules(),
        &Facts {
            guests: vec![
                guest("guest@example.nl", Some(t("2021-04-01T10:00:00Z"))),
                guest("recent@example.nl", Some(days_ago(10))),
            ],
            orders: vec![
                // Fiscal year 2021: kept until the end of 2028.
                invoice(10, t("2021-04-01T10:00:00Z")),
                // Fiscal year 2018: kept until the end of 2025.
                invoice(11, t("2018-04-01T10:00:00Z")),
                OrderFacts {
                    email: "recent@example.nl".to_owned(),
                    ..invoice(12, t("2018-04-01T10:00:00Z"))
                },
            ],
            ..Facts::default()
        },
    );
    assert_eq!(
        p.orders,
        vec![
            step(Rule::InactiveGuest, Action::MinimiseOrder, 10),
            step(Rule::InactiveGuest, Action::AnonymiseOrder, 11),
        ]
    );
    assert_eq!((p.subjects_forgotten, p.subjects_total), (1, 2));
}

#[test]
fn a_guest_with_an_account_is_judged_as_a_customer() {
    let p = plan(
        &rules(),
        &Facts {
            guests: vec![GuestFacts {
                has_account: true,
                ..guest("guest@example.nl", Some(t("2021-04-01T10:00:00Z")))
            }],
            orders: vec![invoice(10, t("2021-04-01T10:00:00Z"))],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 0));
}

#[test]
fn a_guest_with_only_drafts_is_not_forgotten() {
    let p = plan(
        &rules(),
        &Facts {
            guests: vec![guest("guest@example.nl", None)],
            orders: vec![order(10, "wc-checkout-draft", Some(days_ago(3)))],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 1));
}

#[test]
fn a_guest_with_an_open_order_is_kept() {
    let p = plan(
        &rules(),
        &Facts {
            guests: vec![GuestFacts {
                orders: OrderActivity {
                    last_order: Some(t("2021-04-01T10:00:00Z")),
                    open: 1,
                    ..OrderActivity::default()
                },
                ..guest("guest@example.nl", None)
            }],
            orders: vec![invoice(10, t("2021-04-01T10:00:00Z"))],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 1));
}

#[test]
fn the_guest_rule_can_be_switched_off() {
    let r = rules_at(now(), "[guests]\nenabled = false\n");
    let p = plan(
        &r,
        &Facts {
            guests: vec![guest("guest@example.nl", Some(t("2021-04-01T10:00:00Z")))],
            orders: vec![invoice(10, t("2021-04-01T10:00:00Z"))],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
    assert_eq!(p.subjects_forgotten, 0);
}

// ---------------------------------------------------------------------------------------
// Orders of people who are gone
// ---------------------------------------------------------------------------------------

fn gone_customer_orders(orders: Vec<OrderFacts>) -> Plan {
    let orders = orders.into_iter().map(|f| of_account(5, f)).collect();
    plan(
        &rules(),
        &Facts {
            customers: vec![long_gone(5)],
            orders,
            ..Facts::default()
        },
    )
}

#[test]
fn a_gone_customers_invoice_is_minimised_while_it_is_retained() {
    let p = gone_customer_orders(vec![invoice(10, t("2021-04-01T10:00:00Z"))]);
    assert_eq!(p.orders, vec![step(Rule::InactiveCustomer, Action::MinimiseOrder, 10)]);
}

#[test]
fn a_gone_customers_invoice_is_anonymised_after_its_retention() {
    let p = gone_customer_orders(vec![invoice(10, t("2018-04-01T10:00:00Z"))]);
    assert_eq!(p.orders, vec![step(Rule::InactiveCustomer, Action::AnonymiseOrder, 10)]);
}

#[test]
fn a_gone_customers_refunded_invoice_is_an_invoice_too() {
    let p = gone_customer_orders(vec![OrderFacts {
        status: "wc-refunded".to_owned(),
        ..invoice(10, t("2021-04-01T10:00:00Z"))
    }]);
    assert_eq!(p.orders, vec![step(Rule::InactiveCustomer, Action::MinimiseOrder, 10)]);
}

#[test]
fn a_gone_customers_other_orders_are_anonymised() {
    let p = gone_customer_orders(vec![
        // A plugin's own status: not an invoice, not unpaid.
        OrderFacts {
            status: "wc-shipped".to_owned(),
            ..invoice(10, t("2021-04-01T10:00:00Z"))
        },
        // Cancelled: the unpaid rule wants the same action; the subject's rule is named,
        // so that everything linked to the person goes too.
        order(11, "wc-cancelled", Some(t("2021-03-01T10:00:00Z"))),
        order(12, "trash", Some(t("2021-03-01T10:00:00Z"))),
    ]);
    assert_eq!(
        p.orders,
        vec![
            step(Rule::InactiveCustomer, Action::AnonymiseOrder, 10),
            step(Rule::InactiveCustomer, Action::AnonymiseOrder, 11),
            step(Rule::InactiveCustomer, Action::AnonymiseOrder, 12),
        ]
    );
}

#[test]
fn an_active_customers_orders_are_kept() {
    let active = CustomerFacts {
        wc_last_active: Some(days_ago(3)),
        ..long_gone(5)
    };
    let p = plan(
        &rules(),
        &Facts {
            customers: vec![active],
            orders: vec![
                of_account(5, invoice(10, t("2018-04-01T10:00:00Z"))),
                of_account(5, invoice(11, t("2021-04-01T10:00:00Z"))),
            ],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "{:?}", p);
}

#[test]
fn orders_of_a_deleted_account_are_forgotten() {
    let p = orders_plan(
        &rules(),
        vec![
            orphan(invoice(10, t("2021-04-01T10:00:00Z"))),
            orphan(invoice(11, t("2018-04-01T10:00:00Z"))),
        ],
    );
    assert_eq!(
        p.orders,
        vec![
            step(Rule::AccountDeleted, Action::MinimiseOrder, 10),
            step(Rule::AccountDeleted, Action::AnonymiseOrder, 11),
        ]
    );
    // Orders are not subjects: the count is of the customers and guests behind them.
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 0));
}

#[test]
fn orders_of_an_anonymised_account_are_forgotten() {
    // The account was anonymised in an earlier run, so the customer pass forgets no one now.
    let anonymised = |f: OrderFacts| OrderFacts {
        customer_id: 5,
        account: Account::Present { anonymised: true },
        ..f
    };
    let p = orders_plan(
        &rules(),
        vec![
            anonymised(invoice(10, t("2021-04-01T10:00:00Z"))),
            anonymised(invoice(11, t("2018-04-01T10:00:00Z"))),
        ],
    );
    assert_eq!(
        p.orders,
        vec![
            step(Rule::InactiveCustomer, Action::MinimiseOrder, 10),
            step(Rule::InactiveCustomer, Action::AnonymiseOrder, 11),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Fiscal years on the shop's calendar
// ---------------------------------------------------------------------------------------

fn orphan_invoice_at(at: DateTime<Utc>, extra: &str, paid: DateTime<Utc>) -> Vec<Step> {
    order_steps(&rules_at(at, extra), orphan(invoice(10, paid)))
}

fn minimised_invoice_at(at: DateTime<Utc>, extra: &str, paid: DateTime<Utc>) -> Vec<Step> {
    let f = OrderFacts {
        processed: Processed::Minimised,
        contact_present: false,
        customer_id: 0,
        email: String::new(),
        ..invoice(10, paid)
    };
    order_steps(&rules_at(at, extra), f)
}

const MINIMISE: [Step; 1] = [Step {
    rule: Rule::AccountDeleted,
    action: Action::MinimiseOrder,
    id: 10,
}];
const ANONYMISE: [Step; 1] = [Step {
    rule: Rule::AccountDeleted,
    action: Action::AnonymiseOrder,
    id: 10,
}];
const RETENTION_OVER: [Step; 1] = [Step {
    rule: Rule::InvoiceRetention,
    action: Action::AnonymiseOrder,
    id: 10,
}];

#[test]
fn an_invoice_paid_late_on_new_years_eve_is_kept_to_the_end_of_that_fiscal_year() {
    // 23:30 on 31 December 2018 in Amsterdam: fiscal year 2018, kept through 2025-12-31
    // local, which ends at 2025-12-31T23:00:00Z.
    let paid = t("2018-12-31T22:30:00Z");
    assert_eq!(orphan_invoice_at(t("2025-12-31T22:59:59Z"), "", paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2025-12-31T23:00:00Z"), "", paid), ANONYMISE);
    assert_eq!(minimised_invoice_at(t("2025-12-31T22:59:59Z"), "", paid), []);
    assert_eq!(
        minimised_invoice_at(t("2025-12-31T23:00:00Z"), "", paid),
        RETENTION_OVER
    );
}

#[test]
fn an_invoice_paid_after_local_midnight_belongs_to_the_new_year() {
    // 00:30 on 1 January 2019 in Amsterdam, still 2018 in UTC: fiscal year 2019.
    let paid = t("2018-12-31T23:30:00Z");
    assert_eq!(orphan_invoice_at(t("2026-06-01T10:00:00Z"), "", paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2026-12-31T22:59:59Z"), "", paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2026-12-31T23:00:00Z"), "", paid), ANONYMISE);
}

#[test]
fn a_leap_day_invoice_with_a_february_29_year_end() {
    // "02-29" is the last day of February: fiscal year 2019/20 closes on the leap day
    // itself, and seven years later on 28 February 2027 (00:00 on 1 March local).
    let cfg = "[invoices]\nfiscal_year_end = \"02-29\"\n";
    let paid = t("2020-02-29T12:00:00Z");
    assert_eq!(orphan_invoice_at(t("2027-02-27T12:00:00Z"), cfg, paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2027-02-28T22:59:59Z"), cfg, paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2027-02-28T23:00:00Z"), cfg, paid), ANONYMISE);
    assert_eq!(orphan_invoice_at(t("2027-03-01T12:00:00Z"), cfg, paid), ANONYMISE);
}

#[test]
fn a_leap_day_invoice_with_a_february_28_year_end() {
    // With "02-28" the leap day opens fiscal year 2020/21, closing 28 February 2021;
    // seven years later is 28 February 2028, so it goes on the leap day 2028.
    let cfg = "[invoices]\nfiscal_year_end = \"02-28\"\n";
    let paid = t("2020-02-29T12:00:00Z");
    assert_eq!(orphan_invoice_at(t("2027-03-01T12:00:00Z"), cfg, paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2028-02-27T12:00:00Z"), cfg, paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2028-02-28T22:59:59Z"), cfg, paid), MINIMISE);
    assert_eq!(orphan_invoice_at(t("2028-02-28T23:00:00Z"), cfg, paid), ANONYMISE);
    assert_eq!(orphan_invoice_at(t("2028-02-29T12:00:00Z"), cfg, paid), ANONYMISE);
}

#[test]
fn the_paid_date_wins_over_completed_and_created() {
    // At now(), fiscal year 2018 is over (kept through 2025) and 2019 is not (through 2026).
    let dated = |id, created: &str, paid: Option<&str>, completed: Option<&str>| {
        orphan(OrderFacts {
            paid: paid.map(t),
            completed: completed.map(t),
            ..order(id, "wc-completed", Some(t(created)))
        })
    };
    let p = orders_plan(
        &rules(),
        vec![
            // Paid in 2018, completed in 2019: 2018.
            dated(
                10,
                "2018-12-20T10:00:00Z",
                Some("2018-12-30T10:00:00Z"),
                Some("2019-01-05T10:00:00Z"),
            ),
            // Created and completed in 2018, paid in 2019: 2019.
            dated(
                11,
                "2018-12-20T10:00:00Z",
                Some("2019-01-05T10:00:00Z"),
                Some("2018-12-30T10:00:00Z"),
            ),
            // Not paid, completed in 2019: 2019.
            dated(12, "2018-12-20T10:00:00Z", None, Some("2019-01-05T10:00:00Z")),
            // Only created, in 2018: 2018.
            dated(13, "2018-12-20T10:00:00Z", None, None),
        ],
    );
    assert_eq!(
        p.orders,
        vec![
            step(Rule::AccountDeleted, Action::AnonymiseOrder, 10),
            step(Rule::AccountDeleted, Action::MinimiseOrder, 11),
            step(Rule::AccountDeleted, Action::MinimiseOrder, 12),
            step(Rule::AccountDeleted, Action::AnonymiseOrder, 13),
        ]
    );
}

#[test]
fn an_invoice_without_any_date_is_kept_minimised_with_a_warning() {
    let undated = orphan(OrderFacts {
        paid: None,
        completed: None,
        created: None,
        ..invoice(42, t("2018-04-01T10:00:00Z"))
    });
    let p = orders_plan(&rules(), vec![undated]);
    assert_eq!(p.orders, vec![step(Rule::AccountDeleted, Action::MinimiseOrder, 42)]);
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(p.warnings[0].starts_with("order 42: "), "{:?}", p.warnings);
    assert!(!p.warnings[0].contains("example.nl"), "{:?}", p.warnings);
}

// ---------------------------------------------------------------------------------------
// Unpaid orders
// ---------------------------------------------------------------------------------------

fn unpaid_steps(r: &Rules, status: &str, created: DateTime<Utc>) -> Vec<Step> {
    order_steps(r, order(10, status, Some(created)))
}

#[test]
fn pending_orders_are_trashed_after_30_days() {
    let r = rules();
    let trash = vec![step(Rule::UnpaidOrder, Action::TrashOrder, 10)];
    assert_eq!(unpaid_steps(&r, "wc-pending", days_ago(29)), []);
    assert_eq!(unpaid_steps(&r, "wc-pending", days_ago(30)), [], "exactly 30 days");
    assert_eq!(
        unpaid_steps(&r, "wc-pending", days_ago(30) - TimeDelta::seconds(1)),
        trash
    );
    assert_eq!(unpaid_steps(&r, "wc-pending", days_ago(31)), trash);
}

#[test]
fn failed_orders_are_anonymised_after_90_days() {
    let r = rules();
    assert_eq!(unpaid_steps(&r, "wc-failed", days_ago(89)), []);
    assert_eq!(
        unpaid_steps(&r, "wc-failed", days_ago(91)),
        [step(Rule::UnpaidOrder, Action::AnonymiseOrder, 10)]
    );
}

#[test]
fn cancelled_orders_are_anonymised_after_90_days() {
    let r = rules();
    assert_eq!(unpaid_steps(&r, "wc-cancelled", days_ago(89)), []);
    assert_eq!(
        unpaid_steps(&r, "wc-cancelled", days_ago(91)),
        [step(Rule::UnpaidOrder, Action::AnonymiseOrder, 10)]
    );
}

#[test]
fn checkout_drafts_are_deleted_after_7_days() {
    let r = rules();
    assert_eq!(unpaid_steps(&r, "wc-checkout-draft", days_ago(6)), []);
    assert_eq!(
        unpaid_steps(&r, "wc-checkout-draft", days_ago(8)),
        [step(Rule::UnpaidOrder, Action::DeleteOrder, 10)]
    );
}

#[test]
fn unpaid_ages_and_actions_come_from_the_config() {
    let r = rules_at(
        now(),
        "[unpaid]\npending = { after = \"10 days\", action = \"delete\" }\nfailed = { after = \"2 weeks\", action = \"trash\" }\n",
    );
    assert_eq!(unpaid_steps(&r, "wc-pending", days_ago(9)), []);
    assert_eq!(
        unpaid_steps(&r, "wc-pending", days_ago(11)),
        [step(Rule::UnpaidOrder, Action::DeleteOrder, 10)]
    );
    assert_eq!(unpaid_steps(&r, "wc-failed", days_ago(13)), []);
    assert_eq!(
        unpaid_steps(&r, "wc-failed", days_ago(15)),
        [step(Rule::UnpaidOrder, Action::TrashOrder, 10)]
    );
}

#[test]
fn paid_statuses_are_not_unpaid() {
    let r = rules();
    for status in ["wc-completed", "wc-processing", "wc-on-hold", "wc-refunded"] {
        assert_eq!(unpaid_steps(&r, status, days_ago(400)), [], "{status}");
    }
}

#[test]
fn the_unpaid_rule_can_be_switched_off() {
    let r = rules_at(now(), "[unpaid]\nenabled = false\n");
    for status in ["wc-pending", "wc-failed", "wc-cancelled", "wc-checkout-draft"] {
        assert_eq!(unpaid_steps(&r, status, days_ago(400)), [], "{status}");
    }
}

#[test]
fn a_trashed_order_is_not_trashed_again() {
    assert_eq!(unpaid_steps(&rules(), "trash", days_ago(60)), []);
}

// ---------------------------------------------------------------------------------------
// When two rules want different things for one order
// ---------------------------------------------------------------------------------------

#[test]
fn an_unpaid_delete_beats_forgetting_the_subject() {
    let steps = order_steps(
        &rules(),
        orphan(OrderFacts {
            ip_present: true,
            ..order(10, "wc-checkout-draft", Some(days_ago(100)))
        }),
    );
    assert_eq!(steps, [step(Rule::UnpaidOrder, Action::DeleteOrder, 10)]);
}

#[test]
fn forgetting_the_subject_beats_an_unpaid_trash() {
    let steps = order_steps(
        &rules(),
        orphan(OrderFacts {
            ip_present: true,
            ..order(10, "wc-pending", Some(days_ago(100)))
        }),
    );
    assert_eq!(steps, [step(Rule::AccountDeleted, Action::AnonymiseOrder, 10)]);
}

#[test]
fn a_trashed_order_still_loses_its_old_ip() {
    let r = rules();
    let with_ip = |created| OrderFacts {
        ip_present: true,
        ..order(10, "wc-pending", Some(created))
    };
    assert_eq!(
        order_steps(&r, with_ip(days_ago(100))),
        [
            step(Rule::UnpaidOrder, Action::TrashOrder, 10),
            step(Rule::OrderIp, Action::StripOrderIp, 10),
        ]
    );
    // Old enough to trash, too young for the IP rule.
    assert_eq!(
        order_steps(&r, with_ip(days_ago(40))),
        [step(Rule::UnpaidOrder, Action::TrashOrder, 10)]
    );
}

// ---------------------------------------------------------------------------------------
// Order IP addresses
// ---------------------------------------------------------------------------------------

#[test]
fn an_orders_ip_is_stripped_after_90_days() {
    let r = rules();
    let completed = |created, ip_present| OrderFacts {
        ip_present,
        ..order(10, "wc-completed", Some(created))
    };
    assert_eq!(order_steps(&r, completed(days_ago(89), true)), []);
    assert_eq!(
        order_steps(&r, completed(days_ago(91), true)),
        [step(Rule::OrderIp, Action::StripOrderIp, 10)]
    );
    assert_eq!(order_steps(&r, completed(days_ago(91), false)), [], "no IP stored");
}

#[test]
fn an_order_without_a_created_date_gets_no_age_based_step() {
    let r = rules();
    for status in [
        "wc-completed",
        "wc-pending",
        "wc-failed",
        "wc-cancelled",
        "wc-checkout-draft",
    ] {
        let f = OrderFacts {
            ip_present: true,
            ..order(10, status, None)
        };
        assert_eq!(order_steps(&r, f), [], "{status}");
    }
}

// ---------------------------------------------------------------------------------------
// Orders the service processed before
// ---------------------------------------------------------------------------------------

fn processed(state: Processed, contact_present: bool, paid: &str) -> OrderFacts {
    OrderFacts {
        processed: state,
        contact_present,
        customer_id: 0,
        email: if contact_present {
            "came-back@example.nl".to_owned()
        } else {
            String::new()
        },
        ..invoice(10, t(paid))
    }
}

const RETAINED: &str = "2021-04-01T10:00:00Z";
const EXPIRED: &str = "2018-04-01T10:00:00Z";

#[test]
fn an_anonymised_order_whose_contact_came_back_is_repaired() {
    for paid in [RETAINED, EXPIRED] {
        assert_eq!(
            order_steps(&rules(), processed(Processed::Anonymised, true, paid)),
            [step(Rule::Repair, Action::AnonymiseOrder, 10)],
            "paid {paid}"
        );
    }
}

#[test]
fn a_clean_anonymised_order_is_left_alone() {
    for paid in [RETAINED, EXPIRED] {
        assert_eq!(
            order_steps(&rules(), processed(Processed::Anonymised, false, paid)),
            [],
            "paid {paid}"
        );
    }
}

#[test]
fn a_minimised_order_whose_contact_came_back_is_minimised_again_while_retained() {
    assert_eq!(
        order_steps(&rules(), processed(Processed::Minimised, true, RETAINED)),
        [step(Rule::Repair, Action::MinimiseOrder, 10)]
    );
}

#[test]
fn a_minimised_order_whose_contact_came_back_is_anonymised_after_its_retention() {
    assert_eq!(
        order_steps(&rules(), processed(Processed::Minimised, true, EXPIRED)),
        [step(Rule::Repair, Action::AnonymiseOrder, 10)]
    );
}

#[test]
fn a_minimised_invoice_is_anonymised_when_its_retention_ends() {
    assert_eq!(
        order_steps(&rules(), processed(Processed::Minimised, false, EXPIRED)),
        [step(Rule::InvoiceRetention, Action::AnonymiseOrder, 10)]
    );
}

#[test]
fn a_clean_minimised_invoice_is_left_alone_while_retained() {
    assert_eq!(
        order_steps(&rules(), processed(Processed::Minimised, false, RETAINED)),
        []
    );
}

#[test]
fn an_anonymised_customer_whose_email_came_back_is_repaired() {
    let came_back = CustomerFacts {
        anonymised: true,
        ..long_gone(5)
    };
    let clean = CustomerFacts {
        anonymised: true,
        email: "anonymised-6@site.invalid".to_owned(),
        ..long_gone(6)
    };
    let p = customers_plan(&rules(), vec![came_back, clean]);
    assert_eq!(p.customers, vec![step(Rule::Repair, Action::AnonymiseCustomer, 5)]);
    assert_eq!((p.subjects_forgotten, p.subjects_total), (0, 2));
}

// ---------------------------------------------------------------------------------------
// Sessions and download logs
// ---------------------------------------------------------------------------------------

#[test]
fn expired_sessions_are_deleted_and_live_ones_kept() {
    let at = now().timestamp();
    let p = plan(
        &rules(),
        &Facts {
            sessions: vec![
                SessionFacts { id: 1, expiry: at - 1 },
                SessionFacts { id: 2, expiry: at },
                SessionFacts {
                    id: 3,
                    expiry: at + 48 * 3600,
                },
            ],
            ..Facts::default()
        },
    );
    assert_eq!(p.sessions, vec![step(Rule::ExpiredSession, Action::DeleteSession, 1)]);
}

#[test]
fn old_download_ips_are_stripped() {
    let p = plan(
        &rules(),
        &Facts {
            downloads: vec![
                DownloadFacts {
                    id: 1,
                    at: Some(days_ago(91)),
                    ip_present: true,
                },
                DownloadFacts {
                    id: 2,
                    at: Some(days_ago(89)),
                    ip_present: true,
                },
                DownloadFacts {
                    id: 3,
                    at: Some(days_ago(400)),
                    ip_present: false,
                },
                DownloadFacts {
                    id: 4,
                    at: None,
                    ip_present: true,
                },
            ],
            ..Facts::default()
        },
    );
    assert_eq!(p.downloads, vec![step(Rule::DownloadIp, Action::StripDownloadIp, 1)]);
}

#[test]
fn minimisation_can_be_switched_off() {
    let facts = Facts {
        orders: vec![OrderFacts {
            ip_present: true,
            ..order(10, "wc-completed", Some(days_ago(400)))
        }],
        sessions: vec![SessionFacts {
            id: 1,
            expiry: days_ago(10).timestamp(),
        }],
        downloads: vec![DownloadFacts {
            id: 1,
            at: Some(days_ago(400)),
            ip_present: true,
        }],
        ..Facts::default()
    };
    let on = plan(&rules(), &facts);
    assert_eq!(on.steps().count(), 3, "{:?}", on);
    let off = plan(&rules_at(now(), "[minimise]\nenabled = false\n"), &facts);
    assert!(off.is_empty(), "{:?}", off);
    let no_sessions = plan(&rules_at(now(), "[minimise]\nexpired_sessions = false\n"), &facts);
    assert!(no_sessions.sessions.is_empty(), "{:?}", no_sessions);
    assert_eq!(no_sessions.steps().count(), 2);
}

// ---------------------------------------------------------------------------------------
// Protection and restriction reach every order of the person, processed or not
// ---------------------------------------------------------------------------------------

#[test]
fn protected_emails_also_protect_guest_orders_of_an_account_holder() {
    // The person has an account and ordered as a guest before registering: the guest pass
    // skips their email (has_account), so it never becomes untouchable.
    let r = rules_at(
        now(),
        &format!("[customers]\nprotected_emails = [\"{}\"]\n", email_of(5)),
    );
    let p = plan(
        &r,
        &Facts {
            customers: vec![long_gone(5)],
            guests: vec![GuestFacts {
                has_account: true,
                ..guest(&email_of(5), Some(t("2021-04-01T10:00:00Z")))
            }],
            orders: vec![
                OrderFacts {
                    email: email_of(5),
                    ip_present: true,
                    ..order(10, "wc-completed", Some(days_ago(120)))
                },
                OrderFacts {
                    email: email_of(5),
                    ..order(11, "wc-pending", Some(days_ago(60)))
                },
            ],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "a protected email's guest orders were touched: {:?}", p);
}

#[test]
fn a_restricted_account_holders_guest_orders_are_left_alone() {
    let r = rules_with(now(), "", restricting(&[&email_of(5)]));
    let p = plan(
        &r,
        &Facts {
            customers: vec![long_gone(5)],
            guests: vec![GuestFacts {
                has_account: true,
                ..guest(&email_of(5), Some(t("2021-04-01T10:00:00Z")))
            }],
            orders: vec![
                OrderFacts {
                    email: email_of(5),
                    ip_present: true,
                    ..order(10, "wc-completed", Some(days_ago(120)))
                },
                OrderFacts {
                    email: email_of(5),
                    ..order(11, "wc-pending", Some(days_ago(60)))
                },
            ],
            ..Facts::default()
        },
    );
    assert_eq!(p.restricted_skipped, 1);
    assert!(
        p.is_empty(),
        "a restricted subject's guest orders were touched: {:?}",
        p
    );
}

#[test]
fn a_restricted_guests_processed_orders_are_not_repaired() {
    // An earlier run minimised the order; an admin save brought the billing email back,
    // and the person has since asked that processing stop.
    let r = rules_with(now(), "", restricting(&["came-back@example.nl"]));
    let p = plan(
        &r,
        &Facts {
            guests: vec![guest("came-back@example.nl", Some(t("2021-04-01T10:00:00Z")))],
            orders: vec![
                processed(Processed::Minimised, true, RETAINED),
                OrderFacts {
                    id: 11,
                    ..processed(Processed::Minimised, true, EXPIRED)
                },
            ],
            ..Facts::default()
        },
    );
    assert_eq!(p.restricted_skipped, 1);
    assert!(p.is_empty(), "a restricted subject's orders were changed: {:?}", p);
}

#[test]
fn an_open_order_of_a_deleted_account_is_not_forgotten() {
    let r = rules_at(now(), "");
    let facts = Facts {
        orders: vec![
            orphan(order(20, "wc-processing", Some(t("2021-03-01T10:00:00Z")))),
            orphan(order(21, "wc-on-hold", Some(t("2021-03-01T10:00:00Z")))),
            orphan(order(22, "wc-cancelled", Some(t("2021-03-01T10:00:00Z")))),
        ],
        ..Facts::default()
    };
    let p = plan(&r, &facts);
    let ids: Vec<u64> = p.orders.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![22], "{:?}", p);
}

#[test]
fn guest_orders_under_the_accounts_email_are_the_persons_activity_and_follow_the_account() {
    let r = rules_at(now(), "");
    let recent_guest_order = CustomerFacts {
        guest_orders: OrderActivity {
            last_order: Some(days_ago(30)),
            ..OrderActivity::default()
        },
        ..long_gone(5)
    };
    let p = plan(
        &r,
        &Facts {
            customers: vec![recent_guest_order],
            ..Facts::default()
        },
    );
    assert!(p.is_empty(), "a recent guest order keeps the account: {:?}", p);

    let account_guest = |email: String| GuestFacts {
        email,
        orders: OrderActivity {
            last_order: Some(t("2020-05-01T10:00:00Z")),
            ..OrderActivity::default()
        },
        has_account: true,
    };
    let guest_order = |id: u64, email: String| OrderFacts {
        email,
        ..invoice(id, t("2020-05-01T10:00:00Z"))
    };
    let p = plan(
        &r,
        &Facts {
            customers: vec![long_gone(5)],
            guests: vec![account_guest(email_of(5))],
            orders: vec![guest_order(30, email_of(5))],
            ..Facts::default()
        },
    );
    let order = p
        .orders
        .iter()
        .find(|s| s.id == 30)
        .expect("the guest order goes with the account");
    assert_eq!(order.action, Action::MinimiseOrder);
    assert_eq!(p.subjects_forgotten, 1, "one person, not two");
}

#[test]
fn guest_orders_under_a_shared_email_go_only_when_every_account_with_it_goes() {
    let r = rules();
    let shared = email_of(5);
    let account_guest = GuestFacts {
        has_account: true,
        ..guest(&shared, Some(t("2020-05-01T10:00:00Z")))
    };
    let guest_order = OrderFacts {
        email: shared.clone(),
        ..invoice(30, t("2020-05-01T10:00:00Z"))
    };
    let twin = |user_id: u64, c: CustomerFacts| CustomerFacts {
        user_id,
        email: shared.clone(),
        email_shared: true,
        ..c
    };
    // Account 5 is gone, account 6 with the same email is active (here in either order).
    for customers in [
        vec![twin(5, long_gone(5)), twin(6, active(6))],
        vec![twin(6, active(6)), twin(5, long_gone(5))],
    ] {
        let p = plan(
            &r,
            &Facts {
                customers,
                guests: vec![account_guest.clone()],
                orders: vec![guest_order.clone()],
                ..Facts::default()
            },
        );
        assert_eq!(
            p.customers,
            vec![step(Rule::InactiveCustomer, Action::AnonymiseCustomer, 5)]
        );
        assert!(
            p.orders.is_empty(),
            "the guest order is account 6's as much: {:?}",
            p.orders
        );
    }
    // Both gone: it goes with them.
    let p = plan(
        &r,
        &Facts {
            customers: vec![twin(5, long_gone(5)), twin(6, long_gone(6))],
            guests: vec![account_guest.clone()],
            orders: vec![guest_order.clone()],
            ..Facts::default()
        },
    );
    assert_eq!(p.orders, vec![step(Rule::InactiveGuest, Action::MinimiseOrder, 30)]);
    // One of them staff: untouchable, whoever the other is.
    let staff = CustomerFacts {
        capabilities: Some(br#"a:1:{s:13:"administrator";b:1;}"#.to_vec()),
        ..twin(6, long_gone(6))
    };
    let p = plan(
        &r,
        &Facts {
            customers: vec![twin(5, long_gone(5)), staff],
            guests: vec![account_guest],
            orders: vec![OrderFacts {
                ip_present: true,
                ..guest_order
            }],
            ..Facts::default()
        },
    );
    assert!(p.orders.is_empty(), "{:?}", p.orders);
}

/// A guest order without a billing email.
fn lone(id: u64, status: &str, created: Option<DateTime<Utc>>) -> OrderFacts {
    OrderFacts {
        email: String::new(),
        contact_present: false,
        ..order(id, status, created)
    }
}

#[test]
fn a_guest_order_without_an_email_is_a_subject_of_its_own() {
    let r = rules();
    let p = plan(
        &r,
        &Facts {
            orders: vec![
                // Fiscal year 2021: kept until the end of 2028.
                OrderFacts {
                    paid: Some(t("2021-04-01T10:00:00Z")),
                    ..lone(10, "wc-completed", Some(t("2021-04-01T10:00:00Z")))
                },
                lone(11, "wc-cancelled", Some(t("2020-04-01T10:00:00Z"))),
                // Young, being fulfilled, or a draft (no email typed yet): not forgotten.
                lone(12, "wc-completed", Some(days_ago(30))),
                lone(13, "wc-processing", Some(t("2020-04-01T10:00:00Z"))),
                lone(14, "wc-checkout-draft", Some(days_ago(2))),
            ],
            ..Facts::default()
        },
    );
    assert_eq!(
        p.orders,
        vec![
            step(Rule::InactiveGuest, Action::MinimiseOrder, 10),
            step(Rule::InactiveGuest, Action::AnonymiseOrder, 11),
        ]
    );
    assert_eq!((p.subjects_forgotten, p.subjects_total), (2, 4));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let off = rules_at(now(), "[guests]\nenabled = false\n");
    let p = orders_plan(&off, vec![lone(11, "wc-completed", Some(t("2020-04-01T10:00:00Z")))]);
    assert!(p.orders.is_empty(), "{:?}", p.orders);
}

#[test]
fn an_order_whose_creation_date_cannot_be_read_is_left_by_the_age_rules_with_a_warning() {
    let undated = |f: OrderFacts| OrderFacts {
        ip_present: true,
        unreadable: UnreadableOrderDates {
            created: true,
            ..UnreadableOrderDates::default()
        },
        ..f
    };
    for f in [
        undated(order(10, "wc-pending", None)),
        undated(order(10, "wc-completed", None)),
        undated(lone(10, "wc-completed", None)),
    ] {
        let p = orders_plan(&rules(), vec![f]);
        assert!(p.orders.is_empty(), "{:?}", p.orders);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("order 10: "), "{:?}", p.warnings);
    }
    // Its person's rule still reaches it: an orphan's undated invoice is minimised.
    let p = orders_plan(&rules(), vec![orphan(undated(invoice(10, t("2018-01-01T10:00:00Z"))))]);
    assert_eq!(p.orders, vec![step(Rule::AccountDeleted, Action::AnonymiseOrder, 10)]);
}

#[test]
fn an_invoice_whose_paid_or_completed_date_cannot_be_read_is_kept_minimised() {
    // Paid in 2018, so its retention ended at the end of 2025 (anonymised, see above);
    // an unreadable paid date must not let the created date decide instead, nor an
    // unreadable completed date (with no paid one) let the created date decide.
    let unreadable_paid = orphan(OrderFacts {
        paid: None,
        unreadable: UnreadableOrderDates {
            paid: true,
            ..UnreadableOrderDates::default()
        },
        ..invoice(42, t("2018-04-01T10:00:00Z"))
    });
    let unreadable_completed = orphan(OrderFacts {
        paid: None,
        completed: None,
        unreadable: UnreadableOrderDates {
            completed: true,
            ..UnreadableOrderDates::default()
        },
        ..invoice(43, t("2018-04-01T10:00:00Z"))
    });
    let p = orders_plan(&rules(), vec![unreadable_paid, unreadable_completed]);
    assert_eq!(
        p.orders,
        vec![
            step(Rule::AccountDeleted, Action::MinimiseOrder, 42),
            step(Rule::AccountDeleted, Action::MinimiseOrder, 43),
        ]
    );
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
    assert!(p.warnings[0].starts_with("order 42: ") && p.warnings[1].starts_with("order 43: "));
    // A readable paid date decides whatever the later ones hold.
    let readable_paid = orphan(OrderFacts {
        unreadable: UnreadableOrderDates {
            completed: true,
            created: false,
            paid: false,
        },
        ..invoice(44, t("2018-04-01T10:00:00Z"))
    });
    let p = orders_plan(&rules(), vec![readable_paid]);
    assert_eq!(p.orders, vec![step(Rule::AccountDeleted, Action::AnonymiseOrder, 44)]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

// ---------------------------------------------------------------------------------------
// Erasure requests
// ---------------------------------------------------------------------------------------

/// An erasure of the account `user_id` (and its email).
fn erasing(user_id: u64, extra: &str) -> Rules {
    let mut rules = rules_with(now(), extra, restricting(&[&email_of(user_id)]));
    rules.erasure = Some(Erasure {
        user_ids: HashSet::from([user_id]),
        email: email_of(user_id),
    });
    rules
}

/// A customer who was here yesterday and has an order being fulfilled.
fn active(user_id: u64) -> CustomerFacts {
    CustomerFacts {
        wc_last_active: Some(days_ago(1)),
        orders: OrderActivity {
            last_order: Some(days_ago(2)),
            open: 1,
            ..OrderActivity::default()
        },
        ..long_gone(user_id)
    }
}

#[test]
fn an_erasure_forgets_an_active_restricted_protected_customer_and_nobody_else() {
    let rules = erasing(7, "[customers]\nprotected_user_ids = [7]\n");
    let mut guest_order = invoice(30, days_ago(40));
    guest_order.email = email_of(7);
    let facts = Facts {
        customers: vec![active(7), long_gone(8)],
        guests: vec![
            GuestFacts {
                email: email_of(7),
                has_account: true,
                ..GuestFacts::default()
            },
            GuestFacts {
                email: "guest@example.nl".into(),
                orders: OrderActivity {
                    last_order: Some(t("2015-01-01T00:00:00Z")),
                    ..OrderActivity::default()
                },
                has_account: false,
            },
        ],
        orders: vec![
            of_account(7, invoice(10, days_ago(30))),
            of_account(7, order(11, "wc-cancelled", Some(days_ago(3)))),
            of_account(7, order(12, "wc-processing", Some(days_ago(2)))),
            guest_order,
            of_account(8, invoice(20, t("2016-01-01T00:00:00Z"))),
            order(40, "wc-pending", Some(t("2015-01-01T00:00:00Z"))),
        ],
        sessions: vec![SessionFacts { id: 1, expiry: 0 }],
        downloads: vec![DownloadFacts {
            id: 1,
            at: Some(t("2015-01-01T00:00:00Z")),
            ip_present: true,
        }],
    };
    let p = plan(&rules, &facts);
    assert_eq!(p.customers, [step(Rule::ErasureRequest, Action::AnonymiseCustomer, 7)]);
    assert_eq!(
        p.orders,
        [
            step(Rule::ErasureRequest, Action::MinimiseOrder, 10),
            step(Rule::ErasureRequest, Action::AnonymiseOrder, 11),
            step(Rule::ErasureRequest, Action::MinimiseOrder, 30),
        ]
    );
    assert!(p.sessions.is_empty() && p.downloads.is_empty(), "{p:?}");
    assert_eq!(
        (p.subjects_forgotten, p.subjects_total, p.restricted_skipped),
        (1, 1, 0)
    );
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    assert!(
        p.warnings[0].starts_with("order 12: being fulfilled"),
        "{:?}",
        p.warnings
    );
}

#[test]
fn an_erasure_of_a_guest_covers_their_orders_and_orders_of_a_deleted_account() {
    let mut rules = rules();
    rules.erasure = Some(Erasure {
        user_ids: HashSet::new(),
        email: "guest@example.nl".into(),
    });
    let mut orphaned = orphan(invoice(3, t("2015-03-01T00:00:00Z")));
    orphaned.email = "guest@example.nl".into();
    let facts = Facts {
        customers: vec![long_gone(8)],
        guests: vec![GuestFacts {
            email: "guest@example.nl".into(),
            orders: OrderActivity {
                last_order: Some(days_ago(1)),
                ..OrderActivity::default()
            },
            has_account: false,
        }],
        orders: vec![
            invoice(1, days_ago(1)),
            of_account(8, invoice(2, t("2016-01-01T00:00:00Z"))),
            orphaned,
        ],
        ..Facts::default()
    };
    let p = plan(&rules, &facts);
    assert!(p.customers.is_empty(), "{p:?}");
    assert_eq!(
        p.orders,
        [
            step(Rule::ErasureRequest, Action::MinimiseOrder, 1),
            step(Rule::ErasureRequest, Action::AnonymiseOrder, 3),
        ]
    );
    assert_eq!(p.subjects_forgotten, 1);
}

#[test]
fn an_erasure_of_a_staff_account_keeps_the_account_with_a_warning() {
    let rules = erasing(5, "");
    let admin = CustomerFacts {
        capabilities: Some(br#"a:1:{s:13:"administrator";b:1;}"#.to_vec()),
        ..active(5)
    };
    let p = plan(
        &rules,
        &Facts {
            customers: vec![admin],
            orders: vec![of_account(5, order(9, "wc-failed", Some(days_ago(5))))],
            ..Facts::default()
        },
    );
    assert!(p.customers.is_empty(), "{p:?}");
    assert_eq!(p.orders, [step(Rule::ErasureRequest, Action::AnonymiseOrder, 9)]);
    assert!(
        p.warnings[0].contains("user 5: has a role outside customers.roles"),
        "{:?}",
        p.warnings
    );
}
