-- The benchmark's raw-SQL baseline: the changes `wc-retention apply` makes for the bench
-- policy (anonymise inactive customers, minimise their retained invoices, anonymise
-- their other orders), written by hand as set-based SQL on one connection, with no audit
-- rows. It works on the entities listed in `bench_targets` (loaded by scripts/bench from
-- the service's audit rows of the same store, so both change the same rows) in
-- transactions of 500 customers, then of 1,500 orders in order-id order, and writes the
-- same new values: scripts/bench compares the personal-data columns afterwards.
--
-- Table prefix `wp_`, HPOS with compatibility sync (the fixture's `hpos-sync` mode).

DELIMITER //

DROP PROCEDURE IF EXISTS bench_baseline //
CREATE PROCEDURE bench_baseline()
BEGIN
  DECLARE done_to BIGINT UNSIGNED DEFAULT 0;
  DECLARE upto BIGINT UNSIGNED;
  DECLARE watermark BIGINT UNSIGNED;
  DECLARE stamp VARCHAR(20) DEFAULT UNIX_TIMESTAMP();
  DECLARE token VARCHAR(64) DEFAULT SHA2(RAND(), 256);

  -- Reviews written by the customers while logged in: comments.user_id has no index, so
  -- they are found in one pass, not one per transaction.
  SELECT MAX(comment_ID) INTO watermark FROM wp_comments;
  DROP TEMPORARY TABLE IF EXISTS t_reviews;
  CREATE TEMPORARY TABLE t_reviews (comment_id BIGINT UNSIGNED PRIMARY KEY, user_id BIGINT UNSIGNED, KEY (user_id))
    SELECT c.comment_ID AS comment_id, c.user_id FROM wp_comments c
    JOIN bench_targets t ON t.kind = 'customer' AND t.id = c.user_id
    WHERE c.comment_type <> 'order_note' AND c.user_id <> 0;

  customers: LOOP
    SELECT MAX(id) INTO upto FROM (SELECT id FROM bench_targets WHERE kind = 'customer' AND id > done_to
      ORDER BY id LIMIT 500) x;
    IF upto IS NULL THEN LEAVE customers; END IF;
    START TRANSACTION;
    DROP TEMPORARY TABLE IF EXISTS t_users;
    CREATE TEMPORARY TABLE t_users (id BIGINT UNSIGNED PRIMARY KEY)
      SELECT id FROM bench_targets WHERE kind = 'customer' AND id > done_to AND id <= upto;
    DROP TEMPORARY TABLE IF EXISTS t_emails;
    CREATE TEMPORARY TABLE t_emails (email VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci PRIMARY KEY)
      SELECT DISTINCT u.user_email AS email FROM wp_users u JOIN t_users t ON t.id = u.ID WHERE u.user_email <> '';
    CALL bench_forget_emails();

    DROP TEMPORARY TABLE IF EXISTS t_review_ids;
    CREATE TEMPORARY TABLE t_review_ids (id BIGINT UNSIGNED PRIMARY KEY)
      SELECT r.comment_id AS id FROM t_reviews r JOIN t_users t ON t.id = r.user_id;
    CALL bench_anonymise_reviews();
    UPDATE wp_wc_customer_lookup l JOIN t_users t ON t.id = l.user_id
      SET l.username = CONCAT('anonymised-', l.user_id),
          l.first_name = IF(l.first_name IS NULL OR l.first_name = '', l.first_name, '[deleted]'),
          l.last_name = IF(l.last_name IS NULL OR l.last_name = '', l.last_name, '[deleted]'),
          l.email = IF(l.email IS NULL OR l.email = '', l.email, 'deleted@site.invalid'),
          l.postcode = IF(l.postcode IS NULL OR l.postcode = '', l.postcode, '[deleted]'),
          l.city = IF(l.city IS NULL OR l.city = '', l.city, '[deleted]'),
          l.state = '', l.country = '';
    DELETE s FROM wp_woocommerce_sessions s JOIN t_users t ON s.session_key = CAST(t.id AS CHAR);
    DELETE m FROM wp_woocommerce_payment_tokenmeta m JOIN wp_woocommerce_payment_tokens k ON k.token_id = m.payment_token_id
      JOIN t_users t ON t.id = k.user_id;
    DELETE k FROM wp_woocommerce_payment_tokens k JOIN t_users t ON t.id = k.user_id;
    DELETE m FROM wp_usermeta m JOIN t_users t ON t.id = m.user_id
      WHERE m.meta_key IN ('session_tokens', 'community-events-location', '_woocommerce_tracks_anon_id', 'wc_last_active')
         OR m.meta_key LIKE 'billing\_%' OR m.meta_key LIKE 'shipping\_%' OR m.meta_key LIKE '\_woocommerce\_persistent\_cart%';
    UPDATE wp_usermeta m JOIN t_users t ON t.id = m.user_id
      SET m.meta_value = IF(m.meta_key = 'nickname', CONCAT('anonymised-', m.user_id), '')
      WHERE m.meta_key IN ('first_name', 'last_name', 'nickname', 'description');
    INSERT INTO wp_usermeta (user_id, meta_key, meta_value) SELECT id, '_wc_retention_anonymised', stamp FROM t_users;
    UPDATE wp_users u JOIN t_users t ON t.id = u.ID
      SET u.user_login = CONCAT('anonymised-', u.ID), u.user_nicename = CONCAT('anonymised-', u.ID),
          u.user_email = CONCAT('anonymised-', u.ID, '@site.invalid'), u.user_url = '', u.display_name = '[deleted]',
          u.user_pass = SHA2(CONCAT(token, u.ID), 256), u.user_activation_key = '';
    COMMIT;
    SET done_to = upto;
  END LOOP;

  SET done_to = 0;
  orders: LOOP
    SELECT MAX(id) INTO upto FROM (SELECT id FROM bench_targets WHERE kind = 'order' AND id > done_to
      ORDER BY id LIMIT 1500) x;
    IF upto IS NULL THEN LEAVE orders; END IF;
    START TRANSACTION;
    -- The batch's orders (minimise = 1 for retained invoices) and their refunds.
    DROP TEMPORARY TABLE IF EXISTS t_parents;
    CREATE TEMPORARY TABLE t_parents (id BIGINT UNSIGNED PRIMARY KEY, minimise TINYINT)
      SELECT id, action = 'minimise_order' AS minimise FROM bench_targets
      WHERE kind = 'order' AND id > done_to AND id <= upto;
    DROP TEMPORARY TABLE IF EXISTS t_orders;
    CREATE TEMPORARY TABLE t_orders (id BIGINT UNSIGNED PRIMARY KEY, minimise TINYINT) SELECT id, minimise FROM t_parents;
    INSERT IGNORE INTO t_orders SELECT o.id, p.minimise FROM wp_wc_orders o JOIN t_parents p ON p.id = o.parent_order_id
      WHERE o.type = 'shop_order_refund';
    INSERT IGNORE INTO t_orders SELECT r.ID, p.minimise FROM wp_posts r JOIN t_parents p ON p.id = r.post_parent
      WHERE r.post_type = 'shop_order_refund';
    DROP TEMPORARY TABLE IF EXISTS t_emails;
    CREATE TEMPORARY TABLE t_emails (email VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci PRIMARY KEY)
      SELECT DISTINCT o.billing_email AS email FROM wp_wc_orders o JOIN t_parents p ON p.id = o.id
      WHERE o.billing_email NOT IN ('', 'deleted@site.invalid');
    CALL bench_forget_emails();

    -- Notes: all go, one without personal data stays.
    DELETE cm FROM wp_commentmeta cm JOIN wp_comments c ON c.comment_ID = cm.comment_id JOIN t_orders t ON t.id = c.comment_post_ID
      WHERE c.comment_type = 'order_note';
    DELETE c FROM wp_comments c JOIN t_orders t ON t.id = c.comment_post_ID WHERE c.comment_type = 'order_note';
    INSERT INTO wp_comments (comment_post_ID, comment_author, comment_author_email, comment_author_url, comment_author_IP,
        comment_date, comment_date_gmt, comment_content, comment_karma, comment_approved, comment_agent, comment_type,
        comment_parent, user_id)
      SELECT id, 'WooCommerce', '', '', '', NOW(), UTC_TIMESTAMP(), 'Personal data removed.', 0, '1', 'wc-retention',
        'order_note', 0, 0 FROM t_parents;
    UPDATE wp_wc_download_log l JOIN wp_woocommerce_downloadable_product_permissions p ON p.permission_id = l.permission_id
      JOIN t_orders t ON t.id = p.order_id
      SET l.user_ip_address = IF(l.user_ip_address IS NULL OR l.user_ip_address = '', l.user_ip_address, '0.0.0.0'), l.user_id = 0;
    UPDATE wp_woocommerce_downloadable_product_permissions p JOIN t_orders t ON t.id = p.order_id
      SET p.user_email = IF(p.user_email IS NULL OR p.user_email = '', p.user_email, 'deleted@site.invalid'), p.user_id = 0;

    -- HPOS.
    UPDATE wp_wc_orders o JOIN t_orders t ON t.id = o.id
      SET o.ip_address = IF(o.ip_address IS NULL OR o.ip_address = '', o.ip_address, '0.0.0.0'),
          o.user_agent = IF(o.user_agent IS NULL OR o.user_agent = '', o.user_agent, '[deleted]'),
          o.date_updated_gmt = UTC_TIMESTAMP(),
          o.billing_email = IF(o.billing_email IS NULL OR o.billing_email = '', o.billing_email, 'deleted@site.invalid'),
          o.customer_note = IF(o.customer_note IS NULL OR o.customer_note = '', o.customer_note, '[deleted]'),
          o.customer_id = 0;
    -- Anonymised: every field of both addresses. Minimised (an invoice): the billing email
    -- and phone only, and the whole shipping address.
    UPDATE wp_wc_order_addresses a JOIN t_orders t ON t.id = a.order_id
      SET a.email = IF(a.address_type = 'shipping' OR a.email IS NULL OR a.email = '', a.email, 'deleted@site.invalid'),
          a.phone = REGEXP_REPLACE(a.phone, '[0-9]', '0'),
          a.first_name = IF(t.minimise AND a.address_type = 'billing' OR a.first_name IS NULL OR a.first_name = '', a.first_name, '[deleted]'),
          a.last_name = IF(t.minimise AND a.address_type = 'billing' OR a.last_name IS NULL OR a.last_name = '', a.last_name, '[deleted]'),
          a.company = IF(t.minimise AND a.address_type = 'billing' OR a.company IS NULL OR a.company = '', a.company, '[deleted]'),
          a.address_1 = IF(t.minimise AND a.address_type = 'billing' OR a.address_1 IS NULL OR a.address_1 = '', a.address_1, '[deleted]'),
          a.address_2 = IF(t.minimise AND a.address_type = 'billing' OR a.address_2 IS NULL OR a.address_2 = '', a.address_2, '[deleted]'),
          a.city = IF(t.minimise AND a.address_type = 'billing' OR a.city IS NULL OR a.city = '', a.city, '[deleted]'),
          a.postcode = IF(t.minimise AND a.address_type = 'billing' OR a.postcode IS NULL OR a.postcode = '', a.postcode, '[deleted]'),
          a.state = IF(t.minimise AND a.address_type = 'billing' OR a.state IS NULL OR a.state = '', a.state, ''),
          a.country = IF(t.minimise AND a.address_type = 'billing' OR a.country IS NULL OR a.country = '', a.country, '');
    UPDATE wp_wc_orders_meta m JOIN t_orders t ON t.id = m.order_id
      SET m.meta_value = CASE WHEN m.meta_key = '_customer_ip_address' THEN '0.0.0.0' ELSE '[deleted]' END
      WHERE m.meta_key IN ('_customer_ip_address', '_customer_user_agent', '_wc_order_attribution_user_agent', '_refund_reason')
        AND m.meta_value IS NOT NULL AND m.meta_value <> '';
    UPDATE wp_wc_orders_meta m JOIN t_parents t ON t.id = m.order_id
      JOIN wp_wc_order_addresses a ON a.order_id = m.order_id
        AND a.address_type = IF(m.meta_key = '_billing_address_index', 'billing', 'shipping')
      SET m.meta_value = IF(a.address_type = 'billing',
        CONCAT_WS(' ', COALESCE(a.first_name, ''), COALESCE(a.last_name, ''), COALESCE(a.company, ''), COALESCE(a.address_1, ''),
          COALESCE(a.address_2, ''), COALESCE(a.city, ''), COALESCE(a.state, ''), COALESCE(a.postcode, ''),
          COALESCE(a.country, ''), COALESCE(a.email, ''), COALESCE(a.phone, '')),
        CONCAT_WS(' ', COALESCE(a.first_name, ''), COALESCE(a.last_name, ''), COALESCE(a.company, ''), COALESCE(a.address_1, ''),
          COALESCE(a.address_2, ''), COALESCE(a.city, ''), COALESCE(a.state, ''), COALESCE(a.postcode, ''),
          COALESCE(a.country, ''), COALESCE(a.phone, '')))
      WHERE m.meta_key IN ('_billing_address_index', '_shipping_address_index');
    INSERT INTO wp_wc_orders_meta (order_id, meta_key, meta_value)
      SELECT id, IF(minimise, '_wc_retention_minimised', '_anonymized'), IF(minimise, stamp, 'yes') FROM t_parents;

    -- Posts storage.
    UPDATE wp_posts p JOIN t_orders t ON t.id = p.ID
      SET p.post_modified = NOW(), p.post_modified_gmt = UTC_TIMESTAMP(),
          p.post_excerpt = IF(p.post_excerpt IS NULL OR p.post_excerpt = '', p.post_excerpt, '[deleted]')
      WHERE p.post_type IN ('shop_order', 'shop_order_refund');
    UPDATE wp_postmeta m JOIN t_orders t ON t.id = m.post_id
      SET m.meta_value = CASE WHEN m.meta_key LIKE '%\_email' THEN 'deleted@site.invalid'
          WHEN m.meta_key LIKE '%\_phone' THEN REGEXP_REPLACE(m.meta_value, '[0-9]', '0')
          WHEN m.meta_key = '_customer_ip_address' THEN '0.0.0.0' WHEN m.meta_key = '_customer_user' THEN '0'
          ELSE '[deleted]' END
      WHERE m.meta_value IS NOT NULL AND m.meta_value <> '' AND (
        m.meta_key IN ('_customer_ip_address', '_customer_user_agent', '_wc_order_attribution_user_agent', '_refund_reason',
          '_customer_user', '_billing_email', '_billing_phone', '_shipping_first_name', '_shipping_last_name',
          '_shipping_company', '_shipping_address_1', '_shipping_address_2', '_shipping_city', '_shipping_postcode',
          '_shipping_phone')
        OR NOT t.minimise AND m.meta_key IN ('_billing_first_name', '_billing_last_name', '_billing_company',
          '_billing_address_1', '_billing_address_2', '_billing_city', '_billing_postcode'));
    DELETE m FROM wp_postmeta m JOIN t_orders t ON t.id = m.post_id
      WHERE m.meta_key IN ('_shipping_state', '_shipping_country')
         OR NOT t.minimise AND m.meta_key IN ('_billing_state', '_billing_country');
    UPDATE wp_postmeta idx JOIN (
        SELECT m.post_id,
          CONCAT_WS(' ', MAX(IF(meta_key = '_billing_first_name', meta_value, '')), MAX(IF(meta_key = '_billing_last_name', meta_value, '')),
            MAX(IF(meta_key = '_billing_company', meta_value, '')), MAX(IF(meta_key = '_billing_address_1', meta_value, '')),
            MAX(IF(meta_key = '_billing_address_2', meta_value, '')), MAX(IF(meta_key = '_billing_city', meta_value, '')),
            MAX(IF(meta_key = '_billing_state', meta_value, '')), MAX(IF(meta_key = '_billing_postcode', meta_value, '')),
            MAX(IF(meta_key = '_billing_country', meta_value, '')), MAX(IF(meta_key = '_billing_email', meta_value, '')),
            MAX(IF(meta_key = '_billing_phone', meta_value, ''))) AS billing,
          MAX(meta_key IN ('_billing_first_name', '_billing_last_name', '_billing_company', '_billing_address_1',
            '_billing_address_2', '_billing_city', '_billing_state', '_billing_postcode', '_billing_country',
            '_billing_email', '_billing_phone')) AS has_billing,
          CONCAT_WS(' ', MAX(IF(meta_key = '_shipping_first_name', meta_value, '')), MAX(IF(meta_key = '_shipping_last_name', meta_value, '')),
            MAX(IF(meta_key = '_shipping_company', meta_value, '')), MAX(IF(meta_key = '_shipping_address_1', meta_value, '')),
            MAX(IF(meta_key = '_shipping_address_2', meta_value, '')), MAX(IF(meta_key = '_shipping_city', meta_value, '')),
            MAX(IF(meta_key = '_shipping_state', meta_value, '')), MAX(IF(meta_key = '_shipping_postcode', meta_value, '')),
            MAX(IF(meta_key = '_shipping_country', meta_value, '')), MAX(IF(meta_key = '_shipping_phone', meta_value, ''))) AS shipping,
          MAX(meta_key IN ('_shipping_first_name', '_shipping_last_name', '_shipping_company', '_shipping_address_1',
            '_shipping_address_2', '_shipping_city', '_shipping_state', '_shipping_postcode', '_shipping_country',
            '_shipping_phone')) AS has_shipping
        FROM wp_postmeta m JOIN t_parents t ON t.id = m.post_id
        WHERE m.meta_key LIKE '\_billing\_%' OR m.meta_key LIKE '\_shipping\_%'
        GROUP BY m.post_id) src ON src.post_id = idx.post_id
      SET idx.meta_value = CASE WHEN idx.meta_key = '_billing_address_index' AND src.has_billing THEN src.billing
          WHEN idx.meta_key = '_shipping_address_index' AND src.has_shipping THEN src.shipping ELSE idx.meta_value END
      WHERE idx.meta_key IN ('_billing_address_index', '_shipping_address_index');
    INSERT INTO wp_postmeta (post_id, meta_key, meta_value)
      SELECT id, IF(minimise, '_wc_retention_minimised', '_anonymized'), IF(minimise, stamp, 'yes') FROM t_parents;
    COMMIT;
    SET done_to = upto;
  END LOOP;
END //

-- Reviews, privacy requests and guest analytics rows under the emails in t_emails.
DROP PROCEDURE IF EXISTS bench_forget_emails //
CREATE PROCEDURE bench_forget_emails()
BEGIN
  DROP TEMPORARY TABLE IF EXISTS t_review_ids;
  CREATE TEMPORARY TABLE t_review_ids (id BIGINT UNSIGNED PRIMARY KEY)
    SELECT c.comment_ID AS id FROM wp_comments c JOIN t_emails e ON c.comment_author_email = e.email
    WHERE c.comment_type <> 'order_note';
  CALL bench_anonymise_reviews();
  UPDATE wp_posts p JOIN t_emails e ON p.post_title = e.email SET p.post_title = 'deleted@site.invalid'
    WHERE p.post_type = 'user_request';
  UPDATE wp_wc_customer_lookup l JOIN t_emails e ON l.email = e.email
    SET l.username = '', l.first_name = IF(l.first_name IS NULL OR l.first_name = '', l.first_name, '[deleted]'),
        l.last_name = IF(l.last_name IS NULL OR l.last_name = '', l.last_name, '[deleted]'), l.email = 'deleted@site.invalid',
        l.postcode = IF(l.postcode IS NULL OR l.postcode = '', l.postcode, '[deleted]'),
        l.city = IF(l.city IS NULL OR l.city = '', l.city, '[deleted]'), l.state = '', l.country = ''
    WHERE l.user_id IS NULL;
END //

-- The comments in t_review_ids lose their author's name, email, address, IP and agent.
DROP PROCEDURE IF EXISTS bench_anonymise_reviews //
CREATE PROCEDURE bench_anonymise_reviews()
BEGIN
  UPDATE wp_comments c JOIN t_review_ids r ON r.id = c.comment_ID
    SET c.comment_author = '[deleted]',
        c.comment_author_email = IF(c.comment_author_email IS NULL OR c.comment_author_email = '', c.comment_author_email, 'deleted@site.invalid'),
        c.comment_author_url = '',
        c.comment_author_IP = IF(c.comment_author_IP IS NULL OR c.comment_author_IP = '', c.comment_author_IP, '0.0.0.0'),
        c.comment_agent = IF(c.comment_agent IS NULL OR c.comment_agent = '', c.comment_agent, '[deleted]'),
        c.user_id = 0;
END //

DELIMITER ;
