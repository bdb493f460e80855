//! Before the service relies on the REST API (`check`, daemon start): is the shop behind
//! `rest.url` the one behind `database.url`, and what in it keeps personal data that the
//! service's SQL does not reach? [`judge`] decides from what was read; [`run`] reads it.

use serde::Serialize;

use crate::config::{self, Config};
use crate::store::read::Reader;
use crate::store::{Discovery, Layout, OrderStorage, Store};
use crate::woo::{Client, RestError, SystemStatus};

/// What the REST API says about the shop, as `check` shows it.
#[derive(Debug, Serialize)]
pub struct RestView {
    pub url: String,
    /// `basic (HTTPS)` or `OAuth 1.0a (plain HTTP)`.
    pub authentication: &'static str,
    pub woocommerce_version: String,
    pub order_storage: OrderStorage,
    pub database_prefix: String,
    /// A persistent object cache (Redis, Memcached) is in use.
    pub object_cache: bool,
    /// Active plugins that keep personal data of their own, with what kind.
    pub plugins_keeping_personal_data: Vec<String>,
}

/// The REST API's view of the database's newest order.
#[derive(Debug)]
pub enum Newest {
    /// The database holds no order to compare.
    NoOrders,
    /// Statuses without the `wc-` prefix.
    Seen {
        id: u64,
        db_status: String,
        rest_status: String,
    },
    Missing {
        id: u64,
    },
}

/// What preflight found: the view (when the API answered), and what is wrong or worth knowing.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    pub view: Option<RestView>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Kinds of plugin that keep personal data outside the tables the service cleans, and
/// words their slug or name carries.
const PLUGIN_KINDS: &[(&str, &[&str])] = &[
    (
        "payments",
        &[
            "stripe",
            "paypal",
            "mollie",
            "klarna",
            "square",
            "payment",
            "gateway",
            "adyen",
            "multisafepay",
            "buckaroo",
            "braintree",
        ],
    ),
    (
        "newsletters",
        &[
            "newsletter",
            "mailchimp",
            "mailpoet",
            "klaviyo",
            "sendinblue",
            "brevo",
            "mailin",
            "mailerlite",
            "omnisend",
            "creative-mail",
        ],
    ),
    ("subscriptions", &["subscription", "membership"]),
    ("abandoned carts", &["abandon", "cart-recovery", "cartflows"]),
];

/// Host and path of a URL, without scheme or trailing slash.
fn site(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.trim_end_matches('/').to_ascii_lowercase()
}

/// What the config says about the API's side.
pub struct Configured<'a> {
    /// `rest.url`.
    pub url: &'a str,
    /// Requests are signed with OAuth 1.0a (plain HTTP).
    pub signed: bool,
    /// An `apply.post_run_command` is set.
    pub flushes_cache: bool,
}

/// Compares the REST view with the database's and the config's. Pure.
pub fn judge(status: &SystemStatus, db: &Discovery, newest: &Newest, ours: &Configured<'_>) -> Findings {
    let mut f = Findings::default();
    let rest_url = ours.url;
    if site(&status.environment.home_url) != site(rest_url) {
        f.warnings.push(format!(
            "rest: WordPress's Site Address is {}, rest.url is {}: OAuth signatures (plain HTTP) are made over the \
             Site Address and fail, and the two may be different shops",
            config::redact_url(&status.environment.home_url),
            config::redact_url(rest_url)
        ));
    }
    let rest_storage = OrderStorage::from_flags(status.settings.hpos_enabled, status.settings.hpos_sync_enabled);
    let same_shop = "rest.url and database.url may point at different shops";
    if status.database.database_prefix != db.table_prefix {
        f.problems.push(format!(
            "rest: the REST API's WordPress uses table prefix {:?}, the database config {:?}: {same_shop}",
            status.database.database_prefix, db.table_prefix
        ));
    }
    if rest_storage != db.order_storage {
        f.problems.push(format!(
            "rest: the REST API reports order storage {rest_storage}, the database {}: {same_shop}, or an object \
             cache holds old settings",
            db.order_storage
        ));
    }
    if status.environment.version != db.woocommerce_version {
        f.warnings.push(format!(
            "rest: the REST API reports WooCommerce {}, the database {} (an update in progress, or {same_shop})",
            status.environment.version, db.woocommerce_version
        ));
    }
    match newest {
        Newest::NoOrders => {}
        Newest::Missing { id } => f.problems.push(format!(
            "rest: order {id}, the newest in the database, is not found through the REST API: {same_shop}"
        )),
        Newest::Seen {
            id,
            db_status,
            rest_status,
        } if db_status != rest_status => f.warnings.push(format!(
            "rest: order {id} has status {db_status} in the database and {rest_status} through the REST API (an object \
             cache serving old values?)"
        )),
        Newest::Seen { .. } => {}
    }
    let object_cache = status.environment.external_object_cache == Some(true);
    if object_cache && !ours.flushes_cache {
        f.warnings.push(
            "rest: WordPress uses a persistent object cache, which keeps serving old personal data after the service's \
             SQL writes: set apply.post_run_command (e.g. [\"wp\", \"cache\", \"flush\", \"--path=/var/www/shop\"])"
                .to_owned(),
        );
    }
    let mut plugins = Vec::new();
    for p in &status.active_plugins {
        if p.plugin.starts_with("woocommerce/") {
            continue;
        }
        let haystack = format!("{} {}", p.plugin, p.name).to_lowercase();
        if let Some((kind, _)) = PLUGIN_KINDS
            .iter()
            .find(|(_, words)| words.iter().any(|w| haystack.contains(w)))
        {
            let name = if p.name.is_empty() { &p.plugin } else { &p.name };
            f.warnings.push(format!(
                "rest: active plugin {name} ({}) keeps {kind} data of its own, which the service does not erase: name \
                 its provider under [[processors]] so erasures list it as a follow-up",
                p.plugin
            ));
            plugins.push(format!("{name} ({kind})"));
        }
    }
    f.view = Some(RestView {
        url: config::redact_url(rest_url),
        authentication: if ours.signed {
            "OAuth 1.0a (plain HTTP)"
        } else {
            "basic (HTTPS)"
        },
        woocommerce_version: status.environment.version.clone(),
        order_storage: rest_storage,
        database_prefix: status.database.database_prefix.clone(),
        object_cache,
        plugins_keeping_personal_data: plugins,
    });
    f
}

/// Reads the REST API's view and judges it against `db`. Without `[rest]`, says so.
pub async fn run(config: &Config, store: &Store, db: &Discovery) -> Findings {
    let Some(rest) = &config.rest else {
        return Findings::default();
    };
    let client = match Client::new(rest) {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let status = match SystemStatus::fetch(&client).await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    let (newest, unread) = match newest(&client, store, db).await {
        Ok(n) => (n, None),
        Err(problem) => (Newest::NoOrders, Some(problem)),
    };
    let ours = Configured {
        url: &rest.url,
        signed: client.signs_requests(),
        flushes_cache: !config.apply.post_run_command.is_empty(),
    };
    let mut f = judge(&status, db, &newest, &ours);
    f.problems.extend(unread);
    f
}

fn failed(e: RestError) -> Findings {
    Findings {
        problems: vec![format!("rest: {e}")],
        ..Findings::default()
    }
}

async fn newest(client: &Client, store: &Store, db: &Discovery) -> Result<Newest, String> {
    let read = async {
        let mut conn = store.conn().await?;
        let mut reader = Reader {
            store,
            layout: Layout::of(db.order_storage),
            conn: &mut conn,
        };
        reader.newest_order().await
    };
    let Some((id, db_status)) = read
        .await
        .map_err(|e| format!("rest: cannot read the newest order: {e}"))?
    else {
        return Ok(Newest::NoOrders);
    };
    #[derive(serde::Deserialize)]
    struct Order {
        status: String,
    }
    match client.get::<Order>(&format!("/orders/{id}"), &[]).await {
        Ok(o) => Ok(Newest::Seen {
            id,
            db_status: db_status.strip_prefix("wc-").unwrap_or(&db_status).to_owned(),
            rest_status: o.status,
        }),
        Err(e) if e.is_not_found() => Ok(Newest::Missing { id }),
        Err(e) => Err(format!("rest: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SystemStatus {
        serde_json::from_str(include_str!("../tests/data/woo/system_status.json")).unwrap()
    }

    fn discovery() -> Discovery {
        Discovery::example("wp_", "11.0.1", OrderStorage::HposSync)
    }

    /// The sample's own shop over plain HTTP.
    const LOCAL: Configured<'static> = Configured {
        url: "http://127.0.0.1:8080/",
        signed: true,
        flushes_cache: false,
    };

    #[test]
    fn the_real_sample_agrees_with_its_own_store() {
        let seen = Newest::Seen {
            id: 245,
            db_status: "processing".into(),
            rest_status: "processing".into(),
        };
        let f = judge(&sample(), &discovery(), &seen, &LOCAL);
        assert!(f.problems.is_empty() && f.warnings.is_empty(), "{f:?}");
        let view = f.view.unwrap();
        assert_eq!(view.authentication, "OAuth 1.0a (plain HTTP)");
        assert_eq!(view.url, "http://127.0.0.1:8080/");
        assert_eq!(view.order_storage, OrderStorage::HposSync);
        assert!(!view.object_cache);
    }

    #[test]
    fn a_different_shop_is_a_problem_naming_both_sides() {
        let mut s = sample();
        s.database.database_prefix = "shop2_".into();
        s.settings.hpos_enabled = false;
        let elsewhere = Configured {
            url: "https://shop.example.nl",
            signed: false,
            ..LOCAL
        };
        let f = judge(&s, &discovery(), &Newest::Missing { id: 245 }, &elsewhere);
        assert_eq!(f.problems.len(), 3, "{f:?}");
        assert!(f.warnings[0].contains("Site Address is http://127.0.0.1:8080, rest.url is https://shop.example.nl"));
        assert!(f.problems[0].contains("\"shop2_\"") && f.problems[0].contains("\"wp_\""));
        assert!(f.problems[1].contains("legacy (posts) authoritative"));
        assert!(f.problems[2].contains("order 245"));
    }

    #[test]
    fn plugins_and_caches_are_warned_about() {
        let mut s = sample();
        s.environment.external_object_cache = Some(true);
        for (plugin, name) in [
            (
                "woocommerce-gateway-stripe/woocommerce-gateway-stripe.php",
                "WooCommerce Stripe Gateway",
            ),
            ("mailpoet/mailpoet.php", "MailPoet"),
            (
                "woocommerce-subscriptions/woocommerce-subscriptions.php",
                "Woo Subscriptions",
            ),
            ("query-monitor/query-monitor.php", "Query Monitor"),
        ] {
            s.active_plugins.push(crate::woo::Plugin {
                plugin: plugin.into(),
                name: name.into(),
            });
        }
        let f = judge(&s, &discovery(), &Newest::NoOrders, &LOCAL);
        let view = f.view.as_ref().unwrap();
        assert_eq!(
            view.plugins_keeping_personal_data,
            [
                "WooCommerce Stripe Gateway (payments)",
                "MailPoet (newsletters)",
                "Woo Subscriptions (subscriptions)"
            ]
        );
        assert!(f.warnings.iter().any(|w| w.contains("object cache")), "{f:?}");
        let flushed = judge(
            &s,
            &discovery(),
            &Newest::NoOrders,
            &Configured {
                flushes_cache: true,
                ..LOCAL
            },
        );
        assert!(!flushed.warnings.iter().any(|w| w.contains("object cache")));
    }
}
