-- Least privileges for wc-retention. Replace `wordpress` with the shop's database, `wp_`
-- with its table prefix, and the host and password as needed; then run as a MySQL admin.
-- `wc-retention check` names any privilege that is missing.

CREATE USER IF NOT EXISTS 'wc_retention'@'localhost' IDENTIFIED BY 'change-me';

-- Read the WordPress and WooCommerce settings (version, order storage, time zone).
GRANT SELECT ON `wordpress`.`wp_options` TO 'wc_retention'@'localhost';

-- Tables holding personal data: read, anonymise in place, delete what must go.
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_users` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_posts` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_commentmeta` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_wc_customer_lookup` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_woocommerce_order_items` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_woocommerce_order_itemmeta` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_wc_download_log` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_woocommerce_downloadable_product_permissions` TO 'wc_retention'@'localhost';
-- The HPOS order tables exist from WooCommerce 8.2 on; on an older legacy store leave out
-- the lines naming wc_orders, wc_order_addresses, wc_order_operational_data, wc_orders_meta.
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_wc_orders` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_wc_order_addresses` TO 'wc_retention'@'localhost';
GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_wc_order_operational_data` TO 'wc_retention'@'localhost';
-- Analytics rows of deleted orders (unpaid orders past their age) go with them.
GRANT SELECT, DELETE ON `wordpress`.`wp_wc_order_stats` TO 'wc_retention'@'localhost';
GRANT SELECT, DELETE ON `wordpress`.`wp_wc_order_product_lookup` TO 'wc_retention'@'localhost';
GRANT SELECT, DELETE ON `wordpress`.`wp_woocommerce_sessions` TO 'wc_retention'@'localhost';
GRANT SELECT, DELETE ON `wordpress`.`wp_woocommerce_payment_tokens` TO 'wc_retention'@'localhost';
GRANT SELECT, DELETE ON `wordpress`.`wp_woocommerce_payment_tokenmeta` TO 'wc_retention'@'localhost';
-- Meta and notes also get rows added: the `_anonymized` flag and the service's own markers,
-- the "Personal data removed." note, the completion time of a WordPress privacy request.
GRANT SELECT, INSERT, UPDATE, DELETE ON `wordpress`.`wp_usermeta` TO 'wc_retention'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE ON `wordpress`.`wp_postmeta` TO 'wc_retention'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE ON `wordpress`.`wp_comments` TO 'wc_retention'@'localhost';
GRANT SELECT, INSERT, UPDATE, DELETE ON `wordpress`.`wp_wc_orders_meta` TO 'wc_retention'@'localhost';
-- Only on WooCommerce versions that have it (back-in-stock notifications):
-- GRANT SELECT, UPDATE, DELETE ON `wordpress`.`wp_wc_stock_notifications` TO 'wc_retention'@'localhost';

-- The service's own tables. CREATE, ALTER and INDEX on exactly these names let
-- `wc-retention migrate` create and upgrade them, and nothing else in the database.
GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE ON `wordpress`.`wp_wc_retention_schema` TO 'wc_retention'@'localhost';
GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE ON `wordpress`.`wp_wc_retention_runs` TO 'wc_retention'@'localhost';
GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE ON `wordpress`.`wp_wc_retention_audit` TO 'wc_retention'@'localhost';
GRANT CREATE, ALTER, INDEX, SELECT, INSERT, UPDATE ON `wordpress`.`wp_wc_retention_requests` TO 'wc_retention'@'localhost';
