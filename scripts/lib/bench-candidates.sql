-- The best hand-written candidate query for the bench policy, which `plan` is measured
-- against: customers (role customer or subscriber) registered, last active and last
-- ordering before the cutoff (3 years before the benchmark's "now"), with no order in
-- processing or on hold; then their orders with the dates that decide invoice retention.
-- NOT EXISTS is the fastest form measured (../shared/research/raw-sql-limit.md §4).
SET @cutoff = '2023-11-24 00:00:00';
CREATE TEMPORARY TABLE candidates (id BIGINT UNSIGNED PRIMARY KEY)
SELECT u.ID AS id FROM wp_users u
JOIN wp_usermeta cap ON cap.user_id = u.ID AND cap.meta_key = 'wp_capabilities'
  AND (cap.meta_value LIKE '%"customer"%' OR cap.meta_value LIKE '%"subscriber"%')
WHERE u.user_registered < @cutoff
  AND NOT EXISTS (SELECT 1 FROM wp_usermeta la WHERE la.user_id = u.ID AND la.meta_key = 'wc_last_active'
    AND CAST(la.meta_value AS UNSIGNED) >= UNIX_TIMESTAMP(@cutoff))
  AND NOT EXISTS (SELECT 1 FROM wp_wc_orders o WHERE o.customer_id = u.ID AND o.type = 'shop_order'
    AND (o.date_created_gmt >= @cutoff OR o.status IN ('wc-processing', 'wc-on-hold')));
SELECT 'candidates', COUNT(*) FROM candidates;
SELECT 'their orders', COUNT(*), SUM(d.date_paid_gmt IS NOT NULL), SUM(d.date_completed_gmt IS NOT NULL)
FROM candidates c JOIN wp_wc_orders o ON o.customer_id = c.id AND o.type = 'shop_order'
LEFT JOIN wp_wc_order_operational_data d ON d.order_id = o.id;
