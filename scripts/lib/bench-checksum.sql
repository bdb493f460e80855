-- The personal-data columns of every table the bench policy changes, one line per table:
-- rows and an order-independent checksum. scripts/bench compares these lines between the
-- store changed by wc-retention and the copy changed by the raw-SQL baseline. Left out
-- because they cannot match: row ids the two give new rows, modification times, the
-- replaced password hashes (random) and the timestamps in the service's marker meta.
-- Each row: the first 60 bits of an MD5 as an integer, summed exactly (a DECIMAL sum,
-- which does not depend on the order of the rows as a floating-point sum would).
SELECT 'wp_users', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, ID, user_login, user_nicename, user_email, user_url,
  display_name, user_activation_key)), 15), 16, 10) AS UNSIGNED)) FROM wp_users;
SELECT 'wp_usermeta', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, user_id, meta_key,
  IF(meta_key = '_wc_retention_anonymised', '', meta_value))), 15), 16, 10) AS UNSIGNED)) FROM wp_usermeta;
SELECT 'wp_comments', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, comment_post_ID, comment_author, comment_author_email,
  comment_author_url, comment_author_IP, comment_content, comment_agent, comment_type, user_id)), 15), 16, 10) AS UNSIGNED)) FROM wp_comments;
SELECT 'wp_commentmeta', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, comment_id, meta_key, meta_value)), 15), 16, 10) AS UNSIGNED))
  FROM wp_commentmeta;
SELECT 'wp_posts', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, ID, post_title, post_excerpt, post_status, post_type)), 15), 16, 10) AS UNSIGNED))
  FROM wp_posts;
SELECT 'wp_postmeta', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, post_id, meta_key,
  IF(meta_key = '_wc_retention_minimised', '', meta_value))), 15), 16, 10) AS UNSIGNED)) FROM wp_postmeta;
SELECT 'wp_wc_orders', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, id, status, customer_id, billing_email, customer_note,
  ip_address, user_agent)), 15), 16, 10) AS UNSIGNED)) FROM wp_wc_orders;
SELECT 'wp_wc_order_addresses', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, order_id, address_type, first_name, last_name,
  company, address_1, address_2, city, state, postcode, country, email, phone)), 15), 16, 10) AS UNSIGNED)) FROM wp_wc_order_addresses;
SELECT 'wp_wc_orders_meta', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, order_id, meta_key,
  IF(meta_key = '_wc_retention_minimised', '', meta_value))), 15), 16, 10) AS UNSIGNED)) FROM wp_wc_orders_meta;
SELECT 'wp_wc_customer_lookup', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, customer_id, user_id, username, first_name,
  last_name, email, postcode, city, state, country)), 15), 16, 10) AS UNSIGNED)) FROM wp_wc_customer_lookup;
SELECT 'wp_woocommerce_downloadable_product_permissions', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, permission_id,
  user_email, user_id)), 15), 16, 10) AS UNSIGNED)) FROM wp_woocommerce_downloadable_product_permissions;
SELECT 'wp_wc_download_log', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, download_log_id, user_id, user_ip_address)), 15), 16, 10) AS UNSIGNED))
  FROM wp_wc_download_log;
SELECT 'wp_woocommerce_sessions', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, session_key, session_value)), 15), 16, 10) AS UNSIGNED))
  FROM wp_woocommerce_sessions;
SELECT 'wp_woocommerce_payment_tokens', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, token_id, user_id, token)), 15), 16, 10) AS UNSIGNED))
  FROM wp_woocommerce_payment_tokens;
SELECT 'wp_woocommerce_payment_tokenmeta', COUNT(*), SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(0x1f, payment_token_id, meta_key, meta_value)), 15), 16, 10) AS UNSIGNED))
  FROM wp_woocommerce_payment_tokenmeta;
