//! The store generator against a real MariaDB: schema, storage modes, determinism and the
//! personal data tests rely on.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Row};
use wc_retention::fixture::{self, FixtureError, Mode, Report, Spec, ORDER_STATUSES, TABLES};

const SEED: u64 = 20_261_124;

async fn conn(pool: &Pool) -> Conn {
    pool.get_conn().await.expect("connect to the test database")
}

async fn count(c: &mut Conn, sql: &str) -> u64 {
    c.query_first::<u64, _>(sql).await.expect(sql).unwrap_or(0)
}

async fn option(c: &mut Conn, prefix: &str, name: &str) -> Option<String> {
    c.exec_first(
        format!("SELECT option_value FROM {prefix}options WHERE option_name = ?"),
        (name,),
    )
    .await
    .unwrap()
}

async fn generated(test: &str, spec: &Spec) -> (common::TestDb, Report) {
    let db = common::TestDb::new(test).await;
    let report = common::generate(&db.pool, spec).await;
    (db, report)
}

#[tokio::test]
async fn every_mode_creates_all_tables_and_the_storage_options() {
    for mode in Mode::ALL {
        let spec = Spec::new("wp_", mode, 20, SEED);
        let (db, report) = generated(&format!("fixture_modes_{}", mode.as_str()), &spec).await;
        let mut c = conn(&db.pool).await;
        let tables: HashSet<String> = c.query("SHOW TABLES").await.unwrap().into_iter().collect();
        for t in TABLES {
            assert!(tables.contains(&format!("wp_{t}")), "{mode}: table wp_{t} missing");
        }
        let (enabled, sync) = match mode {
            Mode::Legacy => ("no", "no"),
            Mode::Hpos => ("yes", "no"),
            Mode::HposSync => ("yes", "yes"),
        };
        assert_eq!(
            option(&mut c, "wp_", "woocommerce_custom_orders_table_enabled")
                .await
                .as_deref(),
            Some(enabled)
        );
        assert_eq!(
            option(&mut c, "wp_", "woocommerce_custom_orders_table_data_sync_enabled")
                .await
                .as_deref(),
            Some(sync)
        );
        assert_eq!(
            option(&mut c, "wp_", "woocommerce_version").await.as_deref(),
            Some("11.0.1")
        );
        assert_eq!(
            option(&mut c, "wp_", "woocommerce_db_version").await.as_deref(),
            Some("11.0.1")
        );
        assert_eq!(
            option(&mut c, "wp_", "timezone_string").await.as_deref(),
            Some("Europe/Amsterdam")
        );
        assert_eq!(option(&mut c, "wp_", "gmt_offset").await.as_deref(), Some(""));
        for name in ["siteurl", "home", "blogname", "admin_email", "db_version"] {
            assert!(
                option(&mut c, "wp_", name).await.is_some_and(|v| !v.is_empty()),
                "{mode}: option {name}"
            );
        }
        let roles = option(&mut c, "wp_", "wp_user_roles").await.unwrap_or_default();
        for role in ["administrator", "shop_manager", "customer", "subscriber"] {
            assert!(
                roles.contains(&format!("\"{role}\";a:2:{{")),
                "{mode}: role {role} missing"
            );
        }
        assert!(report.orders > 0);
        drop(c);
        db.drop().await;
    }
}

#[tokio::test]
async fn report_counts_equal_the_table_counts() {
    let spec = Spec::new("wp_", Mode::HposSync, 40, SEED);
    let (db, report) = generated("fixture_report_counts", &spec).await;
    let mut c = conn(&db.pool).await;
    let mut all = 0;
    for t in TABLES {
        let n = count(&mut c, &format!("SELECT COUNT(*) FROM wp_{t}")).await;
        assert_eq!(n, report.rows_in(t), "rows in wp_{t}");
        all += n;
    }
    assert_eq!(report.total_rows(), all, "total rows vs the tables' COUNT(*)");
    for t in [
        "users",
        "usermeta",
        "posts",
        "postmeta",
        "comments",
        "wc_orders",
        "woocommerce_order_itemmeta",
        "woocommerce_sessions",
    ] {
        assert!(report.rows_in(t) > 0, "wp_{t} is empty");
    }
    let text = report.to_string();
    assert!(
        text.contains("wp_postmeta") && text.contains(" rows in ") && text.ends_with(" rows/s)"),
        "{text}"
    );
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn hpos_sync_keeps_both_storages_identical() {
    let spec = Spec::new("wp_", Mode::HposSync, 40, SEED);
    let (db, report) = generated("fixture_sync_identical", &spec).await;
    let mut c = conn(&db.pool).await;
    let orders = count(&mut c, "SELECT COUNT(*) FROM wp_wc_orders").await;
    assert_eq!(orders, report.orders + report.refunds);
    let posts = count(&mut c, "SELECT COUNT(*) FROM wp_posts p JOIN wp_wc_orders o ON o.id = p.ID AND p.post_type = o.type AND p.post_status = o.status AND p.post_modified_gmt = o.date_updated_gmt AND p.post_date_gmt = o.date_created_gmt AND p.post_parent = o.parent_order_id").await;
    assert_eq!(
        posts, orders,
        "every order has a post with the same type, status and dates"
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_order_placehold'"
        )
        .await,
        0
    );

    // Every billing and shipping field: the HPOS value, or no postmeta row when it is NULL.
    let fields = [
        "first_name",
        "last_name",
        "company",
        "address_1",
        "address_2",
        "city",
        "state",
        "postcode",
        "country",
        "email",
        "phone",
    ];
    for kind in ["billing", "shipping"] {
        for f in fields {
            let mismatches = count(&mut c, &format!(
                "SELECT COUNT(*) FROM wp_wc_order_addresses a LEFT JOIN wp_postmeta m ON m.post_id = a.order_id AND m.meta_key = '_{kind}_{f}' \
                 WHERE a.address_type = '{kind}' AND NOT (a.{f} <=> m.meta_value)"
            )).await;
            assert_eq!(mismatches, 0, "_{kind}_{f} differs between the storages");
            let extra = count(&mut c, &format!(
                "SELECT COUNT(*) FROM wp_postmeta m JOIN wp_wc_orders o ON o.id = m.post_id LEFT JOIN wp_wc_order_addresses a \
                 ON a.order_id = m.post_id AND a.address_type = '{kind}' WHERE m.meta_key = '_{kind}_{f}' AND a.{f} IS NULL"
            )).await;
            assert_eq!(extra, 0, "_{kind}_{f} has postmeta where HPOS has none");
            let optional = ["company", "address_2", "state"].contains(&f) || (kind == "shipping" && f == "email");
            if !optional {
                let same = count(&mut c, &format!(
                    "SELECT COUNT(*) FROM wp_wc_order_addresses a JOIN wp_postmeta m ON m.post_id = a.order_id AND m.meta_key = '_{kind}_{f}' \
                     WHERE a.address_type = '{kind}' AND a.{f} = m.meta_value"
                )).await;
                assert_eq!(same, report.orders, "_{kind}_{f}: every order has it in both storages");
            }
        }
    }
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_wc_order_addresses WHERE address_type = 'shipping' AND email IS NOT NULL"
        )
        .await,
        0
    );
    let email_mismatch = count(&mut c, "SELECT COUNT(*) FROM wp_wc_orders o LEFT JOIN wp_postmeta m ON m.post_id = o.id AND m.meta_key = '_billing_email' WHERE o.type = 'shop_order' AND NOT (o.billing_email <=> m.meta_value)").await;
    assert_eq!(email_mismatch, 0);
    // Every HPOS meta row has its twin in postmeta (address indexes, attribution, refund meta).
    let missing = count(&mut c, "SELECT COUNT(*) FROM wp_wc_orders_meta om LEFT JOIN wp_postmeta pm ON pm.post_id = om.order_id AND pm.meta_key = om.meta_key AND pm.meta_value = om.meta_value WHERE pm.meta_id IS NULL").await;
    assert_eq!(missing, 0);
    let with_index = count(
        &mut c,
        "SELECT COUNT(*) FROM wp_wc_orders_meta WHERE meta_key = '_billing_address_index'",
    )
    .await;
    assert_eq!(with_index, report.orders);
    // Core props stored in columns match their postmeta twins.
    for (column, key) in [
        ("o.customer_note", "p.post_excerpt"),
        (
            "op.order_key",
            "(SELECT meta_value FROM wp_postmeta WHERE post_id = o.id AND meta_key = '_order_key')",
        ),
    ] {
        let bad = count(&mut c, &format!("SELECT COUNT(*) FROM wp_wc_orders o JOIN wp_posts p ON p.ID = o.id JOIN wp_wc_order_operational_data op ON op.order_id = o.id WHERE o.type = 'shop_order' AND NOT ({column} <=> {key})")).await;
        assert_eq!(bad, 0, "{column} vs {key}");
    }
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn hpos_keeps_only_placeholders_in_posts() {
    let spec = Spec::new("wp_", Mode::Hpos, 30, SEED);
    let (db, report) = generated("fixture_hpos_placeholders", &spec).await;
    let mut c = conn(&db.pool).await;
    let orders = count(&mut c, "SELECT COUNT(*) FROM wp_wc_orders").await;
    assert_eq!(orders, report.orders + report.refunds);
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_posts WHERE post_type IN ('shop_order', 'shop_order_refund')"
        )
        .await,
        0
    );
    let placeholders = count(&mut c, "SELECT COUNT(*) FROM wp_posts p JOIN wp_wc_orders o ON o.id = p.ID WHERE p.post_type = 'shop_order_placehold' AND p.post_status = 'draft'").await;
    assert_eq!(placeholders, orders, "one placeholder per order, same id");
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_postmeta m JOIN wp_wc_orders o ON o.id = m.post_id"
        )
        .await,
        0
    );
    assert!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_wc_order_operational_data WHERE date_paid_gmt IS NOT NULL"
        )
        .await
            > 0
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM wp_wc_order_addresses").await,
        2 * report.orders
    );
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn legacy_leaves_the_hpos_tables_empty() {
    let spec = Spec::new("wp_", Mode::Legacy, 30, SEED);
    let (db, report) = generated("fixture_legacy_only", &spec).await;
    let mut c = conn(&db.pool).await;
    for t in [
        "wc_orders",
        "wc_order_addresses",
        "wc_orders_meta",
        "wc_order_operational_data",
    ] {
        assert_eq!(
            count(&mut c, &format!("SELECT COUNT(*) FROM wp_{t}")).await,
            0,
            "wp_{t}"
        );
    }
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_order'").await,
        report.orders
    );
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_order_refund'"
        )
        .await,
        report.refunds
    );
    let with_index = count(
        &mut c,
        "SELECT COUNT(DISTINCT post_id) FROM wp_postmeta WHERE meta_key = '_billing_address_index'",
    )
    .await;
    assert_eq!(with_index, report.orders);
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'shop_order_placehold'"
        )
        .await,
        0
    );
    drop(c);
    db.drop().await;
}

async fn checksums(pool: &Pool, prefix: &str) -> BTreeMap<String, Option<u64>> {
    let mut c = conn(pool).await;
    let names: Vec<String> = TABLES.iter().map(|t| format!("{prefix}{t}")).collect();
    let rows: Vec<Row> = c.query(format!("CHECKSUM TABLE {}", names.join(", "))).await.unwrap();
    rows.into_iter()
        .map(|r| {
            let table: String = r.get(0).unwrap_or_default();
            let sum: Option<u64> = r.get(1).flatten();
            (table.rsplit('.').next().unwrap_or_default().to_string(), sum)
        })
        .collect()
}

#[tokio::test]
async fn the_same_seed_gives_the_same_store_and_another_seed_another() {
    let spec = Spec::new("wp_", Mode::HposSync, 25, SEED);
    let (a, _) = generated("fixture_same_seed_a", &spec).await;
    let (b, _) = generated("fixture_same_seed_b", &spec).await;
    let (other, _) = generated(
        "fixture_same_seed_other",
        &Spec::new("wp_", Mode::HposSync, 25, SEED + 1),
    )
    .await;
    let (sa, sb, so) = (
        checksums(&a.pool, "wp_").await,
        checksums(&b.pool, "wp_").await,
        checksums(&other.pool, "wp_").await,
    );
    assert_eq!(sa.len(), TABLES.len());
    assert_eq!(sa, sb, "same seed, same spec: identical tables");
    for t in [
        "wp_users",
        "wp_usermeta",
        "wp_postmeta",
        "wp_wc_orders",
        "wp_wc_order_addresses",
        "wp_comments",
    ] {
        assert_ne!(sa[t], so[t], "{t} should differ with another seed");
    }
    a.drop().await;
    b.drop().await;
    other.drop().await;
}

#[tokio::test]
async fn a_custom_prefix_works_everywhere() {
    let spec = Spec::new("shop7_", Mode::HposSync, 15, SEED);
    let (db, report) = generated("fixture_custom_prefix", &spec).await;
    let mut c = conn(&db.pool).await;
    let tables: Vec<String> = c.query("SHOW TABLES").await.unwrap();
    assert_eq!(tables.len(), TABLES.len());
    assert!(tables.iter().all(|t| t.starts_with("shop7_")), "{tables:?}");
    assert!(option(&mut c, "shop7_", "shop7_user_roles").await.is_some());
    let customers = count(&mut c, "SELECT COUNT(*) FROM shop7_usermeta WHERE meta_key = 'shop7_capabilities' AND meta_value LIKE '%\"customer\"%'").await;
    let subscribers = count(&mut c, "SELECT COUNT(*) FROM shop7_usermeta WHERE meta_key = 'shop7_capabilities' AND meta_value LIKE '%\"subscriber\"%'").await;
    assert_eq!(customers + subscribers, spec.customers);
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM shop7_usermeta WHERE meta_key LIKE 'wp\\_%'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&mut c, "SELECT COUNT(*) FROM shop7_wc_orders").await,
        report.orders + report.refunds
    );
    let admin: Option<String> = c
        .query_first("SELECT meta_value FROM shop7_usermeta WHERE user_id = 1 AND meta_key = 'shop7_capabilities'")
        .await
        .unwrap();
    assert_eq!(admin.as_deref(), Some("a:1:{s:13:\"administrator\";b:1;}"));
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn each_subject_is_unique_and_found_where_expected() {
    let spec = Spec::new("wp_", Mode::HposSync, 40, SEED);
    let (db, _) = generated("fixture_subjects", &spec).await;
    let mut c = conn(&db.pool).await;
    let people: Vec<_> = (0..spec.subjects()).map(|i| spec.person(i)).collect();
    // No subject's value lies inside another's, in this store and far beyond it.
    let values: Vec<(u64, String)> = (0..4000)
        .flat_map(|i| fixture::identifying_values(&spec.person(i)).map(|v| (i, v)))
        .collect();
    if let Some((a, b)) = fixture::contained_pair(&values) {
        panic!("{:?} is inside {:?}", values[a], values[b]);
    }
    assert_eq!(fixture::person(SEED, 3), people[3], "person() is pure");
    // A whole-table search for one subject's values finds only that subject's orders.
    for (i, p) in people.iter().enumerate() {
        let strays: u64 = c
            .exec_first(
                "SELECT COUNT(*) FROM wp_wc_order_addresses a JOIN wp_wc_orders o ON o.id = a.order_id \
                 WHERE o.billing_email <> ? AND (a.phone LIKE CONCAT('%', ?, '%') OR a.address_1 LIKE CONCAT('%', ?, '%') \
                 OR CONCAT(a.first_name, ' ', a.last_name) LIKE CONCAT('%', ?, '%'))",
                (p.email.as_str(), p.phone.as_str(), p.address_1.as_str(), p.full_name()),
            )
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(strays, 0, "subject {i}'s values turn up in other people's orders");
    }

    for customer in [0, 7, 23, 39] {
        let p = &people[customer as usize];
        let user_id = spec.customer_user_id(customer);
        assert_eq!(spec.customer_of_user_id(user_id), Some(customer));
        let email: Option<String> = c
            .exec_first("SELECT user_email FROM wp_users WHERE ID = ?", (user_id,))
            .await
            .unwrap();
        assert_eq!(email.as_deref(), Some(p.email.as_str()));
        let meta: Vec<(String, String)> = c
            .exec("SELECT meta_key, meta_value FROM wp_usermeta WHERE user_id = ? AND meta_key IN ('first_name', 'last_name', 'billing_phone', 'billing_postcode')", (user_id,))
            .await
            .unwrap();
        assert!(meta.contains(&("first_name".into(), p.first_name.clone())));
        assert!(meta.contains(&("last_name".into(), p.last_name.clone())));
        // Orders linked to the account carry this person's address and no one else's.
        let orders = count(
            &mut c,
            &format!("SELECT COUNT(*) FROM wp_wc_orders WHERE customer_id = {user_id} AND type = 'shop_order'"),
        )
        .await;
        let by_email: u64 = c
            .exec_first(
                "SELECT COUNT(*) FROM wp_wc_order_addresses WHERE address_type = 'billing' AND email = ?",
                (p.email.as_str(),),
            )
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(orders, by_email, "customer {customer}'s orders");
        let mixed: u64 = c
            .exec_first("SELECT COUNT(*) FROM wp_wc_orders o JOIN wp_wc_order_addresses a ON a.order_id = o.id WHERE o.customer_id = ? AND (a.phone <> ? OR a.postcode <> ?)", (user_id, p.phone.as_str(), p.postcode.as_str()))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(mixed, 0);
        let postmeta: u64 = c
            .exec_first(
                "SELECT COUNT(*) FROM wp_postmeta WHERE meta_key = '_billing_email' AND meta_value = ?",
                (p.email.as_str(),),
            )
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(postmeta, orders);
    }
    // Staff are never customers.
    for staff in spec.staff_user_ids() {
        let caps: Option<String> = c
            .exec_first(
                "SELECT meta_value FROM wp_usermeta WHERE user_id = ? AND meta_key = 'wp_capabilities'",
                (staff,),
            )
            .await
            .unwrap();
        let caps = caps.unwrap_or_default();
        assert!(
            caps.contains("administrator") || caps.contains("shop_manager"),
            "{caps}"
        );
        assert_eq!(
            count(
                &mut c,
                &format!("SELECT COUNT(*) FROM wp_wc_orders WHERE customer_id = {staff} AND type = 'shop_order'")
            )
            .await,
            0
        );
    }
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn guests_order_several_times_and_have_a_lookup_row_per_email() {
    let mut spec = Spec::new("wp_", Mode::Hpos, 20, SEED);
    spec.guests = 6;
    spec.orders_per_guest = 4.0;
    let (db, _) = generated("fixture_guests", &spec).await;
    let mut c = conn(&db.pool).await;
    let guest_emails = count(
        &mut c,
        "SELECT COUNT(DISTINCT billing_email) FROM wp_wc_orders WHERE customer_id = 0 AND type = 'shop_order'",
    )
    .await;
    let guest_orders = count(
        &mut c,
        "SELECT COUNT(*) FROM wp_wc_orders WHERE customer_id = 0 AND type = 'shop_order'",
    )
    .await;
    assert!(
        guest_emails > 0 && guest_orders > guest_emails,
        "{guest_orders} orders from {guest_emails} guests"
    );
    let lookup = count(
        &mut c,
        "SELECT COUNT(*) FROM wp_wc_customer_lookup WHERE user_id IS NULL",
    )
    .await;
    assert_eq!(lookup, guest_emails);
    let linked = count(&mut c, "SELECT COUNT(*) FROM wp_wc_order_stats s JOIN wp_wc_customer_lookup l ON l.customer_id = s.customer_id JOIN wp_wc_orders o ON o.id = s.order_id WHERE o.type = 'shop_order' AND NOT (l.email <=> o.billing_email)").await;
    assert_eq!(linked, 0, "order stats point at the lookup row of the order's customer");
    for g in 0..spec.guests {
        let p = spec.person(spec.guest_subject(g));
        let registered = count(
            &mut c,
            &format!("SELECT COUNT(*) FROM wp_users WHERE user_email = '{}'", p.email),
        )
        .await;
        assert_eq!(registered, 0);
    }
    // Every customer-role user has a lookup row (WooCommerce's profile sync); other
    // registered users only once they ordered (its order import). The subscriber test
    // below checks the second half.
    let customers = count(
        &mut c,
        "SELECT COUNT(*) FROM wp_usermeta WHERE meta_key = 'wp_capabilities' AND meta_value LIKE '%\"customer\"%'",
    )
    .await;
    assert_eq!(
        count(
            &mut c,
            "SELECT COUNT(*) FROM wp_wc_customer_lookup l JOIN wp_usermeta m ON m.user_id = l.user_id AND m.meta_key = 'wp_capabilities' \
             WHERE m.meta_value LIKE '%\"customer\"%'"
        )
        .await,
        customers
    );
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn every_order_status_appears() {
    let spec = Spec::new("wp_", Mode::Legacy, 10, SEED);
    let (db, report) = generated("fixture_statuses", &spec).await;
    assert!(report.orders >= 16);
    let mut c = conn(&db.pool).await;
    let found: HashSet<String> = c
        .query("SELECT DISTINCT post_status FROM wp_posts WHERE post_type = 'shop_order'")
        .await
        .unwrap()
        .into_iter()
        .collect();
    for status in ORDER_STATUSES {
        assert!(found.contains(status), "no {status} order");
    }
    let refunded_without_refund = count(&mut c, "SELECT COUNT(*) FROM wp_posts o WHERE o.post_type = 'shop_order' AND o.post_status = 'wc-refunded' AND NOT EXISTS (SELECT 1 FROM wp_posts r WHERE r.post_parent = o.ID AND r.post_type = 'shop_order_refund')").await;
    assert_eq!(refunded_without_refund, 0);
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn the_store_has_woocommerce_shaped_personal_data_everywhere() {
    let spec = Spec::new("wp_", Mode::HposSync, 60, SEED);
    let (db, _) = generated("fixture_shapes", &spec).await;
    let mut c = conn(&db.pool).await;
    let checks = [
        ("order notes by WooCommerce", "SELECT COUNT(*) FROM wp_comments WHERE comment_type = 'order_note' AND comment_agent = 'WooCommerce'"),
        ("reviews with IP and agent", "SELECT COUNT(*) FROM wp_comments WHERE comment_type = 'review' AND comment_author_IP <> '' AND comment_agent LIKE 'Mozilla/5.0%'"),
        ("review ratings", "SELECT COUNT(*) FROM wp_commentmeta WHERE meta_key = 'rating'"),
        ("sessions with a customer entry", "SELECT COUNT(*) FROM wp_woocommerce_sessions WHERE session_value LIKE '%s:8:\"customer\";%'"),
        ("erasure requests", "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'user_request' AND post_name = 'remove_personal_data'"),
        ("export requests", "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'user_request' AND post_name = 'export_personal_data'"),
        ("confirmed requests", "SELECT COUNT(*) FROM wp_postmeta m JOIN wp_posts p ON p.ID = m.post_id WHERE p.post_status = 'request-confirmed' AND m.meta_key = '_wp_user_request_confirmed_timestamp'"),
        ("download permissions with email", "SELECT COUNT(*) FROM wp_woocommerce_downloadable_product_permissions WHERE user_email LIKE '%@%'"),
        ("download log IPs", "SELECT COUNT(*) FROM wp_wc_download_log WHERE user_ip_address <> ''"),
        ("refund reasons", "SELECT COUNT(*) FROM wp_wc_orders_meta WHERE meta_key = '_refund_reason'"),
        ("order IPs", "SELECT COUNT(*) FROM wp_wc_orders WHERE ip_address <> '' AND user_agent <> ''"),
        ("line items", "SELECT COUNT(*) FROM wp_woocommerce_order_itemmeta WHERE meta_key = '_product_id'"),
        ("wc_last_active", "SELECT COUNT(*) FROM wp_usermeta WHERE meta_key = 'wc_last_active' AND meta_value REGEXP '^[0-9]+$' AND meta_value % 86400 = 0"),
        ("products", "SELECT COUNT(*) FROM wp_posts WHERE post_type = 'product'"),
        ("operational data", "SELECT COUNT(*) FROM wp_wc_order_operational_data WHERE order_key LIKE 'wc_order_%'"),
    ];
    for (what, sql) in checks {
        assert!(count(&mut c, sql).await > 0, "no {what}");
    }
    // Notes quote the customer's own phone and email, and nobody else's.
    let notes: Vec<(String, String)> = c
        .query("SELECT c.comment_content, o.billing_email FROM wp_comments c JOIN wp_wc_orders o ON o.id = c.comment_post_ID WHERE c.comment_type = 'order_note'")
        .await
        .unwrap();
    let (mut phones, mut emails) = (0, 0);
    for p in (0..spec.subjects()).map(|i| spec.person(i)) {
        for (text, owner) in &notes {
            let (phone, email) = (text.contains(&p.phone), text.contains(&p.email));
            if phone || email || text.contains(&p.full_name()) {
                assert_eq!(
                    owner, &p.email,
                    "a note on someone else's order quotes {}: {text}",
                    p.email
                );
            }
            phones += u64::from(phone);
            emails += u64::from(email);
        }
    }
    assert!(
        phones > 0 && emails > 0,
        "notes quote {phones} phones and {emails} emails"
    );
    let without_activity = count(&mut c, "SELECT COUNT(*) FROM wp_users u WHERE u.ID > 4 AND NOT EXISTS (SELECT 1 FROM wp_usermeta m WHERE m.user_id = u.ID AND m.meta_key = 'wc_last_active')").await;
    assert!(without_activity > 0, "some customers predate wc_last_active");
    let future = count(&mut c, "SELECT COUNT(*) FROM wp_wc_orders WHERE date_created_gmt > '2026-11-24 00:00:00' OR date_updated_gmt > '2026-11-24 00:00:00'").await;
    assert_eq!(future, 0, "no date after the spec's now");
    drop(c);
    db.drop().await;
}

#[tokio::test]
async fn refunds_add_up_and_full_ones_mirror_their_order() {
    let spec = Spec::new("wp_", Mode::HposSync, 300, SEED);
    let (db, _) = generated("fixture_refunds", &spec).await;
    let mut c = conn(&db.pool).await;
    // Every stats row adds up; a full refund gives back the parent's shipping and tax.
    let off = count(&mut c, "SELECT COUNT(*) FROM wp_wc_order_stats WHERE ABS(total_sales - tax_total - shipping_total - net_total) > 0.001").await;
    assert_eq!(off, 0);
    let full = count(
        &mut c,
        "SELECT COUNT(*) FROM wp_wc_order_stats r WHERE r.parent_id <> 0 AND r.num_items_sold < 0",
    )
    .await;
    assert!(full > 0, "no full refunds");
    let wrong = count(&mut c, "SELECT COUNT(*) FROM wp_wc_order_stats r JOIN wp_wc_order_stats o ON o.order_id = r.parent_id WHERE r.num_items_sold < 0 AND (r.shipping_total <> -o.shipping_total OR r.tax_total <> -o.tax_total OR r.net_total <> -o.net_total OR r.total_sales <> -o.total_sales)").await;
    assert_eq!(wrong, 0, "full refunds that do not mirror their order");
    let shipped = count(
        &mut c,
        "SELECT COUNT(*) FROM wp_wc_order_stats r WHERE r.num_items_sold < 0 AND r.shipping_total < 0",
    )
    .await;
    assert!(shipped > 0, "no full refund of a shipped order");
    // Storage records an amount-only refund's total and tax, shipping 0 (as WooCommerce does).
    let storage = count(&mut c, "SELECT COUNT(*) FROM wp_wc_orders r JOIN wp_wc_order_stats s ON s.order_id = r.id WHERE r.type = 'shop_order_refund' AND (r.total_amount <> s.total_sales OR r.tax_amount <> s.tax_total)").await;
    assert_eq!(storage, 0);
    drop(c);
    db.drop().await;
}

/// Hard facts of WooCommerce 11's schema (`SHOW CREATE TABLE` on a real install, see
/// `shared/woocommerce/schema.sql`) that anonymisation queries rely on.
const WOOCOMMERCE_SCHEMA: &[(&str, &[&str])] = &[
    (
        "wc_orders",
        &[
            "`id` bigint(20) unsigned NOT NULL,",
            "`billing_email` varchar(320) DEFAULT NULL,",
            "`customer_id` bigint(20) unsigned DEFAULT NULL,",
            "`ip_address` varchar(100) DEFAULT NULL,",
            "`user_agent` text DEFAULT NULL,",
            "`customer_note` text DEFAULT NULL,",
            "PRIMARY KEY (`id`)",
            "KEY `customer_id_billing_email` (`customer_id`,`billing_email`(171))",
            "KEY `billing_email` (`billing_email`(191))",
            "KEY `type_status_date` (`type`,`status`,`date_created_gmt`)",
        ],
    ),
    (
        "wc_order_addresses",
        &[
            "`id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,",
            "`address_1` text DEFAULT NULL,",
            "`email` varchar(320) DEFAULT NULL,",
            "`phone` varchar(100) DEFAULT NULL,",
            "UNIQUE KEY `address_type_order_id` (`address_type`,`order_id`)",
            "KEY `email` (`email`(191))",
            "KEY `phone` (`phone`)",
        ],
    ),
    (
        "postmeta",
        &[
            "`post_id` bigint(20) unsigned NOT NULL DEFAULT 0,",
            "`meta_key` varchar(255) DEFAULT NULL,",
            "`meta_value` longtext DEFAULT NULL,",
            "KEY `post_id` (`post_id`)",
            "KEY `meta_key` (`meta_key`(191))",
        ],
    ),
    (
        "wc_customer_lookup",
        &[
            "`date_last_active` timestamp NULL DEFAULT NULL,",
            "`email` varchar(100) DEFAULT NULL,",
            "UNIQUE KEY `user_id` (`user_id`)",
        ],
    ),
];

#[tokio::test]
async fn generate_and_create_schema_build_woocommerces_columns_and_indexes() {
    let spec = Spec::new("wp_", Mode::Legacy, 5, SEED);
    let (generated_db, _) = generated("fixture_schema_generated", &spec).await;
    let empty = common::TestDb::new("fixture_schema_empty").await;
    fixture::create_schema(&empty.pool, "wp_")
        .await
        .expect("create the schema");
    // Deferred indexes (generate) and inline ones (create_schema) both end up as WooCommerce's.
    for db in [&generated_db, &empty] {
        let mut c = conn(&db.pool).await;
        for (table, facts) in WOOCOMMERCE_SCHEMA {
            let ddl: Option<(String, String)> = c.query_first(format!("SHOW CREATE TABLE wp_{table}")).await.unwrap();
            let ddl = ddl.expect("the table exists").1;
            let lines: Vec<&str> = ddl.lines().map(|l| l.trim().trim_end_matches(',')).collect();
            for fact in *facts {
                assert!(
                    lines.contains(&fact.trim_end_matches(',')),
                    "wp_{table} lacks {fact}:\n{ddl}"
                );
            }
            assert!(ddl.contains("utf8mb4_unicode_520_ci"), "{ddl}");
        }
    }
    let mut b = conn(&empty.pool).await;
    assert_eq!(count(&mut b, "SELECT COUNT(*) FROM wp_users").await, 0);
    drop(b);
    assert!(matches!(
        fixture::generate(&empty.pool, &spec).await,
        Err(FixtureError::StoreExists { .. })
    ));
    generated_db.drop().await;
    empty.drop().await;
}

#[tokio::test]
async fn subscribers_have_a_lookup_row_exactly_when_they_ordered() {
    // WooCommerce's order import creates the row for any registered user; its profile sync
    // only for the customer role. Their orders' analytics rows point at that row.
    let spec = Spec::new("wp_", Mode::Hpos, 300, SEED);
    let (db, _) = generated("fixture_subscribers", &spec).await;
    let mut c = conn(&db.pool).await;
    let subscribers: Vec<u64> = c
        .query(
            "SELECT user_id FROM wp_usermeta WHERE meta_key = 'wp_capabilities' AND meta_value LIKE '%\"subscriber\"%'",
        )
        .await
        .unwrap();
    let (mut with_orders, mut without) = (0, 0);
    for user in &subscribers {
        let rows = count(
            &mut c,
            &format!("SELECT COUNT(*) FROM wp_wc_customer_lookup WHERE user_id = {user}"),
        )
        .await;
        let orders = count(
            &mut c,
            &format!("SELECT COUNT(*) FROM wp_wc_orders WHERE customer_id = {user} AND type = 'shop_order'"),
        )
        .await;
        assert_eq!(
            rows,
            u64::from(orders > 0),
            "user {user}: {orders} orders, {rows} lookup rows"
        );
        let stats = "wp_wc_order_stats s JOIN wp_wc_orders o ON o.id = s.order_id";
        let counted = count(
            &mut c,
            &format!("SELECT COUNT(*) FROM {stats} WHERE o.customer_id = {user}"),
        )
        .await;
        let pointing = count(&mut c, &format!("SELECT COUNT(*) FROM {stats} JOIN wp_wc_customer_lookup l ON l.customer_id = s.customer_id WHERE o.customer_id = {user} AND l.user_id = {user}")).await;
        assert_eq!(pointing, counted, "user {user}'s orders in analytics");
        with_orders += u64::from(orders > 0);
        without += u64::from(orders == 0);
    }
    assert!(
        with_orders > 0 && without > 0,
        "{with_orders} subscribers with orders, {without} without"
    );
    drop(c);
    db.drop().await;
}

fn fixture_binary(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wc-retention-fixture"))
        .args(args)
        .env_remove("WC_RETENTION_FIXTURE_URL")
        .output()
        .expect("run wc-retention-fixture")
}

#[tokio::test]
async fn the_binary_fills_refuses_and_replaces() {
    let db = common::TestDb::new("fixture_binary").await;
    let url = db.url();
    let args = ["--url", &url, "--customers", "8", "--mode", "hpos", "--prefix", "bin_"];
    let first = fixture_binary(&args);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.contains("bin_wc_orders") && out.contains("rows/s"), "{out}");
    let again = fixture_binary(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--replace"));
    let replaced = fixture_binary(&[&args[..], &["--replace", "--seed", "2"]].concat());
    assert!(
        replaced.status.success(),
        "{}",
        String::from_utf8_lossy(&replaced.stderr)
    );
    db.drop().await;
}

#[test]
fn the_binary_fails_cleanly_on_bad_input() {
    let bad_flag = fixture_binary(&["--url", "mysql://root@127.0.0.1:1/x", "--customers", "ten"]);
    assert_eq!(bad_flag.status.code(), Some(2));
    let bad_mode = fixture_binary(&[
        "--url",
        "mysql://root@127.0.0.1:1/x",
        "--customers",
        "1",
        "--mode",
        "cpt",
    ]);
    assert_eq!(bad_mode.status.code(), Some(2));
    let bad_url = fixture_binary(&["--url", "postgres://secret:hunter2@host/db", "--customers", "1"]);
    assert_eq!(bad_url.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_url.stderr);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1 && !err.contains("hunter2"),
        "{err}"
    );
    let no_db = fixture_binary(&["--url", "mysql://root@127.0.0.1:1/", "--customers", "1"]);
    assert_eq!(no_db.status.code(), Some(1));
    let unreachable = fixture_binary(&["--url", "mysql://root:hunter2@127.0.0.1:1/shop", "--customers", "1"]);
    assert_eq!(unreachable.status.code(), Some(1));
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1 && !err.contains("hunter2"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&unreachable.stderr).contains("panicked"));
}
