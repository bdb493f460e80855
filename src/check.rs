//! `wc-retention check`: is this store one the service can work on, and is the config sane?

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::localtime::ShopZone;
use crate::preflight::{self, RestView};
use crate::store::{self, Discovery, Store, StoreError};

/// The report `check` prints, as text or JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub store: Discovery,
    pub config: ConfigSummary,
    /// What the REST API says about the shop, when `[rest]` is set and it answered.
    pub rest: Option<RestView>,
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// What the configuration means in dates, so an operator can see a wrong period before it acts.
#[derive(Debug, Serialize)]
pub struct ConfigSummary {
    pub schedule: String,
    pub timezone: String,
    pub next_run: Option<String>,
    pub customers_rule: String,
    /// Customers last active before this moment count as inactive today.
    pub inactive_before: Option<String>,
    pub invoices_rule: String,
    /// When an invoice dated now stops being a fiscal record, on the shop's calendar.
    pub invoice_from_today_kept_until: Option<String>,
    pub rest: String,
}

impl ConfigSummary {
    /// `shop_zone` is the shop's calendar, `None` when WordPress's setting cannot be read.
    pub fn of(config: &Config, shop_zone: Option<&ShopZone>) -> ConfigSummary {
        let tz = config.schedule.timezone.0;
        let now = Utc::now().with_timezone(&tz);
        let c = &config.customers;
        let inv = &config.invoices;
        let retention = inv.retention();
        let now_utc = now.with_timezone(&Utc);
        // Invoices follow the shop's calendar; without a usable setting, the schedule's zone.
        let zone = shop_zone.copied().unwrap_or(ShopZone::Named(tz));
        let kept_until = zone.retention_ends(&retention, now_utc).map(|t| zone.rfc3339(t));
        ConfigSummary {
            schedule: config.schedule.cron.to_string(),
            timezone: tz.name().to_owned(),
            next_run: config
                .schedule
                .cron
                .next_after(&now)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false)),
            customers_rule: if c.enabled {
                format!(
                    "anonymise customers ({}) inactive for {}",
                    c.roles.join(", "),
                    c.inactive_after
                )
            } else {
                "off".to_owned()
            },
            inactive_before: c
                .enabled
                .then(|| {
                    c.inactive_after
                        .before(&now)
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
                })
                .flatten(),
            invoices_rule: format!(
                "orders {} kept {} years after the fiscal year ending {}, minimised meanwhile when their \
                 customer is forgotten (shipping address {})",
                inv.statuses.join(", "),
                inv.retain_years,
                inv.fiscal_year_end,
                if inv.keep_shipping_address { "kept" } else { "removed" }
            ),
            invoice_from_today_kept_until: kept_until,
            rest: match &config.rest {
                Some(r) => format!("configured: {}", crate::config::redact_url(&r.url)),
                None => "not configured: the service works on the database alone".to_owned(),
            },
        }
    }
}

/// Connects, discovers the store and judges it. `Err` when the store cannot be examined
/// at all (unreachable, wrong password, not WooCommerce).
pub async fn run(config: &Config, config_warnings: &[String]) -> Result<Report, StoreError> {
    let store = Store::open(&config.database)?;
    let d = match store::discover(&store).await {
        Ok(d) => d,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let rest = preflight::run(config, &store, &d).await;
    store.close().await;
    let mut problems = d.problems();
    problems.extend(rest.problems);
    let mut warnings = config_warnings.to_vec();
    warnings.extend(rest.warnings);
    match d.own_schema_version {
        None => warnings.push("the service's own tables do not exist yet: run `wc-retention migrate`".into()),
        Some(v) if v < d.own_schema_latest => warnings.push(format!(
            "the service's own tables are at version {v}, this build uses {}: run `wc-retention migrate`",
            d.own_schema_latest
        )),
        Some(v) if v > d.own_schema_latest => problems.push(
            StoreError::SchemaTooNew {
                found: v,
                known: d.own_schema_latest,
            }
            .to_string(),
        ),
        Some(_) => {}
    }
    let shop_zone = d.shop_timezone.as_deref().and_then(ShopZone::parse);
    if shop_zone.is_none() {
        warnings.push(format!(
            "WordPress's time zone setting ({}) cannot be read: invoice retention is shown in schedule.timezone ({}); \
             set Settings › General › Timezone",
            d.shop_timezone.as_deref().unwrap_or("unset"),
            config.schedule.timezone.0.name()
        ));
    }
    if d.tls_cipher.is_none() && !is_local(store_target(config)) {
        warnings.push("the database connection is not encrypted; set database.tls for a server on another host".into());
    }
    Ok(Report {
        ok: problems.is_empty(),
        config: ConfigSummary::of(config, shop_zone.as_ref()),
        rest: rest.view,
        store: d,
        problems,
        warnings,
    })
}

fn count(n: Option<u64>) -> String {
    n.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

fn store_target(config: &Config) -> String {
    mysql_async::Opts::from_url(&config.database.url)
        .map(|o| {
            if o.socket().is_some() {
                "localhost".to_owned()
            } else {
                o.ip_or_hostname().to_owned()
            }
        })
        .unwrap_or_default()
}

fn is_local(host: String) -> bool {
    matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1") || host.starts_with("127.")
}

impl Report {
    /// The short, readable form.
    pub fn to_text(&self) -> String {
        let d = &self.store;
        let c = &self.config;
        let own = match d.own_schema_version {
            Some(v) => format!("version {v} (this build: {})", d.own_schema_latest),
            None => "not created (run `wc-retention migrate`)".to_owned(),
        };
        let mut out = format!(
            "database     {} as {} on {}{}\n\
             wordpress    prefix {:?}, db_version {}, shop time zone {}\n\
             woocommerce  {} (db {})\n\
             orders       {} — {} orders, {} users\n\
             own tables   {own}\n\
             schedule     {:?} in {} — next run {}\n\
             customers    {}{}\n\
             invoices     {}; one dated today is kept until {}\n\
             rest api     {}\n",
            d.database,
            d.user,
            d.server_version,
            d.tls_cipher.as_ref().map(|c| format!(", TLS {c}")).unwrap_or_default(),
            d.table_prefix,
            d.wordpress_db_version.as_deref().unwrap_or("unknown"),
            d.shop_timezone.as_deref().unwrap_or("unset"),
            d.woocommerce_version,
            d.woocommerce_db_version.as_deref().unwrap_or("unknown"),
            d.order_storage,
            count(d.orders),
            count(d.users),
            c.schedule,
            c.timezone,
            c.next_run.as_deref().unwrap_or("never"),
            c.customers_rule,
            c.inactive_before
                .as_ref()
                .map(|t| format!(" (last active before {t})"))
                .unwrap_or_default(),
            c.invoices_rule,
            c.invoice_from_today_kept_until
                .as_deref()
                .unwrap_or("beyond the calendar"),
            c.rest,
        );
        if let Some(r) = &self.rest {
            out.push_str(&format!(
                "rest view    WooCommerce {}, {}, prefix {:?}, {}, object cache {}{}\n",
                r.woocommerce_version,
                r.order_storage,
                r.database_prefix,
                r.authentication,
                if r.object_cache { "yes" } else { "no" },
                if r.plugins_keeping_personal_data.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; plugins with their own personal data: {}",
                        r.plugins_keeping_personal_data.join(", ")
                    )
                }
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning      {w}\n"));
        }
        for p in &self.problems {
            out.push_str(&format!("PROBLEM      {p}\n"));
        }
        out.push_str(if self.ok {
            "result       ok\n"
        } else {
            "result       NOT OK: fix the problems above\n"
        });
        out
    }
}
