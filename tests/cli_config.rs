//! The binary's handling of configuration and flags: every mistake an operator can make is
//! exit code 2 and one message that names the key and the bad value. No database needed.

mod common;

use common::{wc_retention, write_config};

const DB: &str = "[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\n";

/// How a malformed configuration reaches the binary.
enum Input {
    /// Appended to a valid `[database]` section; keys under a leading `[database]` are merged
    /// into it (a second `[database]` table would be a TOML error of its own).
    Toml(&'static str),
    /// The whole config file, byte for byte.
    File(&'static [u8]),
    /// A valid config and this environment variable.
    Env(&'static str, &'static str),
}

use Input::{Env, File, Toml};

/// Every case: the input, and the message fragment the operator must see (`{dir}` is a
/// scratch directory, `{config}` the config file). Values marked SECRET must never be echoed.
const BAD_CONFIGS: &[(Input, &str)] = &[
    // Unknown sections and keys, in the file and in the environment.
    (Toml("[database]\nsurprise = 1\n"), "database.surprise: unknown key (expected one of: url, password"),
    (Toml("[customer]\ninactive_after = \"3 years\"\n"), "customer: unknown key (expected one of: database, schedule"),
    (
        File(b"colour = \"blue\"\n[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\n"),
        "colour: unknown key (expected one of: database",
    ),
    (Toml("[customers]\nenabeld = false\n"), "customers.enabeld: unknown key (expected one of: enabled"),
    (
        Env("WC_RETENTION__CUSTOMERS__INACTIVE_AFTRE", "1 year"),
        "customers.inactive_aftre: unknown key (expected one of: enabled, inactive_after",
    ),
    // Wrong types.
    (
        Toml("[customers]\ninactive_after = 3\n"),
        "customers.inactive_after: invalid type: found signed int `3`, expected a string (in {config})",
    ),
    (
        Toml("[customers]\nroles = \"customer\"\n"),
        "customers.roles: invalid type: found string \"customer\", expected a list, like [\"a\", \"b\"]",
    ),
    (
        Toml("[guests]\nenabled = \"yes\"\n"),
        "guests.enabled: invalid type: found string \"yes\", expected true or false",
    ),
    (
        Toml("[database]\npool_max = \"four\"\n"),
        "database.pool_max: invalid type: found string \"four\", expected a whole number, 0 or more",
    ),
    (
        Env("WC_RETENTION__DATABASE__POOL_MAX", "many"),
        "database.pool_max: invalid type: found string \"many\", expected a whole number, 0 or more \
         (from WC_RETENTION__DATABASE__POOL_MAX)",
    ),
    (
        File(b"database = 5\n"),
        "database: invalid type: found signed int `5`, expected a table (a [section])",
    ),
    (Toml("[database]\npassword = 7\n"), "database.password: expected a string"),
    // Negative, zero, out-of-range and huge numbers.
    (
        Toml("[database]\npool_max = -4\n"),
        "database.pool_max: invalid value: found signed int `-4`, expected a whole number, 0 or more",
    ),
    (Toml("[database]\npool_max = 1\n"), "database.pool_max: 1 is out of range (2 to 100)"),
    (
        Toml("[database]\npool_max = 99999999999999999999\n"),
        "database.pool_max: TOML parse error at line 3, column 12: number too large to fit in target type",
    ),
    (
        Toml("[database]\nconnect_timeout_secs = 0\n"),
        "database.connect_timeout_secs: 0 is out of range (1 to 600)",
    ),
    (
        Toml("[apply]\nworkers = 0\n"),
        "apply.workers: 0 is out of range: use 1, or at most database.pool_max - 1 (here 3)",
    ),
    (
        Toml("[database]\npool_max = 2\n[apply]\nworkers = 2\n"),
        "apply.workers: 2 is out of range: use 1, or at most database.pool_max - 1 (here 1)",
    ),
    (
        Env("WC_RETENTION__APPLY__WORKERS", "9"),
        "apply.workers: 9 is out of range: use 1, or at most database.pool_max - 1 (here 3)",
    ),
    (Toml("[apply]\ncustomer_batch = 0\n"), "apply.customer_batch: 0 is out of range: use 1 to 10000"),
    (
        Toml("[apply]\norder_batch = 1000000000\n"),
        "apply.order_batch: 1000000000 is out of range: use 1 to 10000",
    ),
    (
        Toml("[apply]\npost_run_timeout_secs = 0\n"),
        "apply.post_run_timeout_secs: 0 is out of range (1 to 600)",
    ),
    (
        Toml("[safety]\nmax_share = 1.5\n"),
        "safety.max_share: 1.5 is not a share: write a number above 0 and at most 1",
    ),
    (
        Toml("[safety]\nmax_customers_per_run = -5\n"),
        "safety.max_customers_per_run: invalid value: found signed int `-5`, expected a whole number, 0 or more",
    ),
    (
        Toml("[invoices]\nretain_years = 0\n"),
        "invoices.retain_years: 0 is not a retention period: write the statutory years, 1 to 100",
    ),
    (
        Toml("[invoices]\nretain_years = 5000000000\n"),
        "invoices.retain_years: invalid value: found signed int `5000000000`, expected a whole number from 0 to 4294967295",
    ),
    (
        Toml("[customers]\nprotected_user_ids = [-1]\n"),
        "customers.protected_user_ids.0: invalid value: found signed int `-1`, expected a whole number, 0 or more",
    ),
    (
        Toml("[schedule]\nretry_initial_secs = 0\n"),
        "schedule.retry_initial_secs: 0 is out of range: use 1 to 86400 (a day)",
    ),
    (
        Toml("[schedule]\nretry_max_secs = 10\n"),
        "schedule.retry_max_secs: 10 must be at least retry_initial_secs (30) and at most 604800 (a week)",
    ),
    (
        Toml("[rest]\nurl = \"https://shop.example\"\nconsumer_key = \"ck_SECRET\"\nconsumer_secret = \"cs_SECRET\"\ntimeout_secs = 0\n"),
        "rest.timeout_secs: 0 is out of range (1 to 600)",
    ),
    // Periods, schedules, zones, dates and names that are not what they say.
    (
        Toml("[customers]\ninactive_after = \"3 yeers\"\n"),
        "customers.inactive_after: \"3 yeers\" is not a period: write a positive whole number and a unit",
    ),
    (
        Toml("[customers]\ninactive_after = \"0 days\"\n"),
        "customers.inactive_after: \"0 days\" is not a period",
    ),
    (Toml("[requests]\ndeadline = \"soon\"\n"), "requests.deadline: \"soon\" is not a period"),
    (
        Toml("[schedule]\ncron = \"0 3 * * * *\"\n"),
        "schedule.cron: \"0 3 * * * *\" is not a crontab schedule: expected 5 fields (minute hour day-of-month month \
         day-of-week), found 6",
    ),
    (
        Toml("[schedule]\ncron = \"30 3 * * 8\"\n"),
        "schedule.cron: \"30 3 * * 8\" is not a crontab schedule: day-of-week 8 is outside 0-7",
    ),
    (
        Env("WC_RETENTION__SCHEDULE__CRON", "every night"),
        "schedule.cron: \"every night\" is not a crontab schedule: expected 5 fields (minute hour day-of-month month \
         day-of-week), found 2 (from WC_RETENTION__SCHEDULE__CRON)",
    ),
    (
        Toml("[schedule]\ntimezone = \"Europe/Amsterdan\"\n"),
        "schedule.timezone: \"Europe/Amsterdan\" is not a known time zone",
    ),
    (Toml("[schedule]\ntimezone = \"\"\n"), "schedule.timezone: \"\" is not a known time zone"),
    (
        Toml("[invoices]\nfiscal_year_end = \"02-30\"\n"),
        "invoices.fiscal_year_end: \"02-30\" is not a fiscal year end",
    ),
    (
        Toml("[invoices]\nstatuses = [\"wc-completed\"]\n"),
        "invoices.statuses: write \"wc-completed\" without the wc- prefix",
    ),
    (Toml("[customers]\nroles = []\n"), "customers.roles: must name at least one role"),
    (Toml("[customers]\naction = \"purge\"\n"), "customers.action: \"purge\" is not one of: anonymise, delete"),
    (
        Toml("[customers]\nprotected_emails = [\"nobody\"]\n"),
        "customers.protected_emails: \"nobody\" is not an email address",
    ),
    (
        Toml("[unpaid.failed]\nafter = \"30 days\"\naction = \"burn\"\n"),
        "unpaid.failed.action: \"burn\" is not one of: trash, delete, anonymise",
    ),
    (Toml("[unpaid.pending]\nafter = \"30 days\"\n"), "unpaid.pending.action: missing: this key is required"),
    (Toml("[log]\nformat = \"xml\"\n"), "log.format: \"xml\" is not one of: json, pretty"),
    (
        Toml("[log]\nlevel = \"warning\"\n"),
        "log.level: \"warning\" is not a log level: use off, error, warn, info, debug or trace",
    ),
    (
        Toml("[[processors]]\nname = \"Mollie\"\npurpose = \"payments\"\ncategories = [\"cards\"]\ncountry = \"NL\"\n"),
        "processors[0].categories: \"cards\" is not a data category",
    ),
    (
        Toml("[personal_data]\nextra_user_meta_keys = [\"\"]\n"),
        "personal_data.extra_user_meta_keys: \"\" is not a meta key (1 to 255 characters)",
    ),
    // Empty strings.
    (
        Toml("[database]\ntable_prefix = \"\"\n"),
        "database.table_prefix: \"\" is not a table prefix: use letters, digits and underscores",
    ),
    (
        Toml("[rest]\nurl = \"https://shop.example\"\nconsumer_key = \"\"\nconsumer_secret = \"cs_SECRET\"\n"),
        "rest.consumer_key: is empty: give the value, or remove the key",
    ),
    (Toml("[requests]\nexport_dir = \"\"\n"), "requests.export_dir: must not be empty"),
    (
        Toml("[apply]\npost_run_command = [\"\"]\n"),
        "apply.post_run_command: the first element must name a program",
    ),
    // The database URL and TLS.
    (
        File(b"[database]\nurl = \"postgres://wcr@127.0.0.1/shop\"\n"),
        "database.url: \"postgres://wcr@127.0.0.1/shop\" is not a database URL: write mysql://user@host:3306/database",
    ),
    (
        File(b"[database]\nurl = \"mysql:///shop\"\n"),
        "database.url: \"mysql:///shop\" is not a database URL",
    ),
    (
        File(b"[database]\nurl = \"mysql://wcr@127.0.0.1:1\"\n"),
        "database.url: \"mysql://wcr@127.0.0.1:1\" names no database",
    ),
    (File(b"[database]\nurl = \"\"\n"), "database.url: \"\" is not a database URL"),
    (
        File(b"[database]\nurl = \"mysql://wcr:Pw-SECRET@127.0.0.1/shop\"\n"),
        "database.url: carries a password; remove it from the URL and use database.password_file",
    ),
    (
        Toml("[database]\ntls = \"on\"\n"),
        "database.tls: \"on\" is not one of: disabled, require, verify_ca",
    ),
    (
        Toml("[database]\ntls = \"verify_ca\"\n"),
        "database.ca_file: required when database.tls = \"verify_ca\"",
    ),
    (
        Toml("[database]\nca_file = \"{dir}/no-ca.pem\"\n"),
        "database.ca_file: cannot read {dir}/no-ca.pem: No such file or directory",
    ),
    // The REST API.
    (
        Toml("[rest]\nurl = \"https://shop.example\"\n"),
        "rest.consumer_key: required with [rest] (or rest.consumer_key_file)",
    ),
    (
        Toml("[rest]\nurl = \"ftp://shop.example\"\nconsumer_key = \"ck_SECRET\"\nconsumer_secret = \"cs_SECRET\"\n"),
        "rest.url: \"ftp://shop.example\" is not an http:// or https:// URL",
    ),
    (
        Toml("[rest]\nurl = \"https://\"\nconsumer_key = \"ck_SECRET\"\nconsumer_secret = \"cs_SECRET\"\n"),
        "rest.url: \"https://\" names no host",
    ),
    (
        Toml("[rest]\nurl = \"http://shop.example\"\nconsumer_key = \"ck_SECRET\"\nconsumer_secret = \"cs_SECRET\"\n"),
        "rest.url: \"http://shop.example\" is plain HTTP; use https://, or set rest.allow_insecure_http = true",
    ),
    (
        Toml("[rest]\nurl = \"https://ck_SECRET:cs_SECRET@shop.example/\"\nconsumer_key_file = \"{dir}/ck\"\nconsumer_secret_file = \"{dir}/cs\"\n"),
        "rest.url: carries a user name, password, query or fragment (not shown)",
    ),
    // Secrets: conflicting, unreadable, too short.
    (
        Toml("[database]\npassword = \"Pw-SECRET\"\npassword_file = \"{dir}/pw\"\n"),
        "database.password: set either database.password or database.password_file, not both",
    ),
    (
        Toml("[database]\npassword_file = \"{dir}\"\n"),
        "database.password_file: cannot read secret file {dir}: Is a directory",
    ),
    (
        Toml("[database]\npassword_file = \"/nonexistent/db_password\"\n"),
        "database.password_file: cannot read secret file /nonexistent/db_password: No such file or directory",
    ),
    (
        Toml("[requests]\npepper = \"SECRET\"\n"),
        "requests.pepper: too short: use at least 32 random characters",
    ),
    // The file itself: duplicates, syntax, encoding, emptiness.
    (
        Toml("[database]\nurl = \"mysql://wcr@127.0.0.1:1/other\"\n"),
        "database.url: TOML parse error at line 3, column 1: duplicate key `url` in table `database`",
    ),
    (
        File(b"[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\n[database]\npool_max = 2\n"),
        "database: TOML parse error at line 3, column 1: duplicate key `database` in document root",
    ),
    (
        Toml("[database]\npassword = Unquoted-SECRET\n"),
        "database.password: TOML parse error at line 3, column 12",
    ),
    (
        File(b"[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\n# caf\xe9\n"),
        "config file {config} is not UTF-8 text (first bad byte on line 3): save it as UTF-8",
    ),
    (File(b"[database]\n"), "database.url: missing: this key is required"),
    (File(b""), "database: missing: the [database] section is required, with url ="),
];

/// Every case: the arguments (after `--config <a valid config>`, unless they name their
/// own `--config`) and the message fragment.
const BAD_FLAGS: &[(&[&str], &str)] = &[
    (&["chek"], "error: unrecognized subcommand 'chek'"),
    (&["audit", "check"], "error: unrecognized subcommand 'check'"),
    (
        &[],
        "error: 'wc-retention' requires a subcommand but one was not provided",
    ),
    (&["requests"], "Usage: wc-retention requests [OPTIONS] <COMMAND>"),
    (&["check", "--jsno"], "error: unexpected argument '--jsno' found"),
    (&["check", "extra"], "error: unexpected argument 'extra' found"),
    (
        &["--log-format", "xml", "check"],
        "error: invalid value 'xml' for '--log-format <LOG_FORMAT>'",
    ),
    (
        &["--log-level", "warning", "check"],
        "wc-retention: error: --log-level: \"warning\" is not a log level: use off, error, warn, info, debug or trace",
    ),
    (
        &["--log-level", "info,[[", "check"],
        "wc-retention: error: --log-level: \"info,[[\" is not a log filter",
    ),
    (
        &["--log-level", "", "check"],
        "wc-retention: error: --log-level: \"\" is empty",
    ),
    (
        &["plan", "--now", "yesterday"],
        "error: invalid value 'yesterday' for '--now <TIME>': \"yesterday\" is not a time",
    ),
    (
        &["plan", "--now", "2026-13-01T00:00:00Z"],
        "error: invalid value '2026-13-01T00:00:00Z' for '--now <TIME>': \"2026-13-01T00:00:00Z\" is not a time",
    ),
    (
        &["plan", "--now", "1969-12-31T23:59:59Z"],
        "\"1969-12-31T23:59:59Z\" is before 1970",
    ),
    (
        &["plan", "--now"],
        "error: a value is required for '--now <TIME>' but none was supplied",
    ),
    (
        &["apply", "--now", "2999-01-01T00:00:00Z"],
        "wc-retention: error: --now: apply cannot act as of a future time",
    ),
    (
        &["apply", "--dry-run", "--force"],
        "error: the argument '--dry-run' cannot be used with '--force'",
    ),
    (&["forget"], "error: the following required arguments were not provided"),
    (
        &["forget", "--email", "someone@shop.example", "--user-id", "3"],
        "error: the argument '--email <EMAIL>' cannot be used with '--user-id <ID>'",
    ),
    (
        &["forget", "--user-id", "-3"],
        "error: invalid value '-3' for '--user-id <ID>': \"-3\" is not a WordPress user id",
    ),
    (&["restrict", "--user-id", "0"], "\"0\" is not a WordPress user id"),
    (&["export", "--user-id", "abc"], "\"abc\" is not a WordPress user id"),
    (
        &["export", "--user-id", "3", "--out"],
        "error: a value is required for '--out <FILE>' but none was supplied",
    ),
    (
        &["requests", "extend", "1", "--by", "3 yeers", "--reason", "complexity"],
        "error: invalid value '3 yeers' for '--by <PERIOD>': \"3 yeers\" is not a period",
    ),
    (
        &["requests", "extend", "1", "--by", "1 month", "--reason", "boredom"],
        "error: invalid value 'boredom' for '--reason <REASON>'",
    ),
    (
        &["requests", "extend", "x", "--by", "1 month", "--reason", "number"],
        "error: invalid value 'x' for '<ID>'",
    ),
    (
        &["--config"],
        "error: a value is required for '--config <PATH>' but none was supplied",
    ),
    (
        &["--config", "{dir}", "check"],
        "wc-retention: error: config file {dir} is a directory, not a file (give the file with --config)",
    ),
    (
        &["--config", "/nonexistent/wc-retention.toml", "check"],
        "wc-retention: error: config file /nonexistent/wc-retention.toml does not exist",
    ),
];

/// Exit code 2, the expected fragment, no panic, and nothing marked SECRET echoed.
fn assert_refused(run: &common::Run, case: &str, want: &str) {
    assert_eq!(run.code, 2, "{case}: {}", run.all_output());
    assert!(run.stderr.contains(want), "{case}: want {want:?}, got:\n{}", run.stderr);
    assert!(!run.all_output().contains("panicked"), "{case}: {}", run.all_output());
    assert!(
        !run.all_output().contains("SECRET"),
        "{case}: a secret was echoed: {}",
        run.all_output()
    );
}

#[test]
fn bad_configs_exit_2_naming_the_key_and_the_value() {
    assert!(BAD_CONFIGS.len() >= 25, "{} cases", BAD_CONFIGS.len());
    for (input, want) in BAD_CONFIGS {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().to_str().unwrap();
        let (bytes, env) = match input {
            Toml(extra) => {
                let extra = extra.replace("{dir}", scratch);
                let text = match extra.strip_prefix("[database]\n") {
                    Some(keys) => format!("{DB}{keys}"),
                    None => format!("{DB}{extra}"),
                };
                (text.into_bytes(), None)
            }
            File(bytes) => (bytes.to_vec(), None),
            Env(var, value) => (DB.as_bytes().to_vec(), Some((*var, *value))),
        };
        let config = write_config(&dir, "");
        std::fs::write(&config, &bytes).unwrap();
        let run = wc_retention(&["--config", &config, "check"], env.as_slice());
        let want = want.replace("{dir}", scratch).replace("{config}", &config);
        let case = String::from_utf8_lossy(&bytes).into_owned() + &format!("{env:?}");
        assert_refused(&run, &case, &want);
        assert!(
            run.stderr.starts_with("wc-retention: error: "),
            "{case}: {}",
            run.stderr
        );
    }
    println!(
        "hardening: malformed configs: {} refused with exit 2 and their message, no panic",
        BAD_CONFIGS.len()
    );
}

#[test]
fn bad_flags_exit_2_naming_the_flag_and_the_value() {
    assert!(BAD_FLAGS.len() >= 10, "{} cases", BAD_FLAGS.len());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, DB);
    let scratch = dir.path().to_str().unwrap();
    for (args, want) in BAD_FLAGS {
        let mut all: Vec<String> = Vec::new();
        if !args.contains(&"--config") {
            all.extend(["--config".to_owned(), config.clone()]);
        }
        all.extend(args.iter().map(|a| a.replace("{dir}", scratch)));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let run = wc_retention(&all, &[]);
        assert_refused(&run, &format!("{args:?}"), &want.replace("{dir}", scratch));
    }
    println!(
        "hardening: bad flags: {} refused with exit 2 and their message, no panic",
        BAD_FLAGS.len()
    );
    let run = wc_retention(&["--help"], &[]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("Exit codes:"), "{}", run.stdout);
}

#[test]
fn secrets_in_the_environment_stay_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &format!("{DB}[customers]\ninactive_after = \"3 yeers\"\n"));
    let run = wc_retention(
        &["--config", &config, "check"],
        &[
            ("WC_RETENTION__DATABASE__PASSWORD", "007-Secret-Pw"),
            ("WC_RETENTION__REQUESTS__PEPPER", "x"),
        ],
    );
    assert_eq!(run.code, 2);
    assert!(!run.all_output().contains("007-Secret-Pw"), "{}", run.all_output());
}

/// The four secrets, each with a marker no other output contains.
const SECRETS: [(&str, &str); 4] = [
    ("database.password", "Db-Pw-SECRET-0001"),
    ("rest.consumer_key", "ck_SECRET_0002"),
    ("rest.consumer_secret", "cs_SECRET_0003"),
    ("requests.pepper", "Pepper-SECRET-0004-0123456789abcdef0123456789"),
];

/// A config that names every secret inline (`None`) or through `*_file` keys.
fn config_with_secrets(files: Option<&std::path::Path>) -> String {
    let mut text = "[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\nconnect_timeout_secs = 2\n".to_owned();
    let mut rest = "[rest]\nurl = \"https://shop.example/\"\n".to_owned();
    let mut requests = "[requests]\n".to_owned();
    for (key, value) in SECRETS {
        let (section, name) = key.split_once('.').unwrap();
        let line = match files {
            None => format!("{name} = \"{value}\"\n"),
            Some(dir) => {
                let file = dir.join(key);
                std::fs::write(&file, format!("{value}\n")).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
                format!("{name}_file = \"{}\"\n", file.display())
            }
        };
        match section {
            "database" => text.push_str(&line),
            "rest" => rest.push_str(&line),
            _ => requests.push_str(&line),
        }
    }
    format!("{text}{rest}{requests}")
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn secrets_never_reach_the_output_at_any_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, &str)> = SECRETS
        .iter()
        .map(|(key, value)| {
            (
                format!("WC_RETENTION__{}", key.replace('.', "__").to_ascii_uppercase()),
                *value,
            )
        })
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let setups = [
        ("inline in the file", config_with_secrets(None), &[][..]),
        ("in secret files", config_with_secrets(Some(dir.path())), &[][..]),
        (
            "in the environment",
            "[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\nconnect_timeout_secs = 2\n\
             [rest]\nurl = \"https://shop.example/\"\n"
                .to_owned(),
            &env[..],
        ),
    ];
    let commands: [&[&str]; 8] = [
        &["check"],
        &["check", "--json"],
        &["plan"],
        &["plan", "--json"],
        &["--log-level", "trace", "check"],
        &["--log-level", "trace", "check", "--json"],
        &["--log-level", "trace", "plan"],
        &["--log-format", "pretty", "--log-level", "trace", "apply", "--dry-run"],
    ];
    for (how, text, env) in setups {
        let config = write_config(&dir, &text);
        for args in commands {
            let mut all = vec!["--config", config.as_str()];
            all.extend_from_slice(args);
            let mut runs = vec![wc_retention(&all, env)];
            if args == ["check"] {
                let mut with_rust_log = env.to_vec();
                with_rust_log.push(("RUST_LOG", "trace"));
                runs.push(wc_retention(&all, &with_rust_log));
            }
            for run in runs {
                assert_eq!(run.code, 3, "secrets {how}, {args:?}: {}", run.all_output());
                assert!(
                    run.stderr.contains("cannot reach the database server at 127.0.0.1:1"),
                    "secrets {how}, {args:?}: {}",
                    run.stderr
                );
                let output = run.all_output();
                assert!(!output.contains("panicked"), "{output}");
                for (key, value) in SECRETS {
                    assert!(
                        !output.contains(value),
                        "secrets {how}, {args:?}: {key} in the output:\n{output}"
                    );
                }
                assert!(
                    !output.contains("SECRET"),
                    "secrets {how}, {args:?}: part of a secret:\n{output}"
                );
            }
        }
    }
}

#[test]
fn loose_permissions_on_secrets_are_warned_about_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let loose = |path: &str, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let check = |config: &str, env: &[(&str, &str)]| {
        let run = wc_retention(&["--config", config, "--log-format", "pretty", "check"], env);
        assert_eq!(run.code, 3, "{}", run.all_output());
        assert!(!run.all_output().contains("SECRET"), "{}", run.all_output());
        run.stderr
    };

    // An inline secret in a config file others can read.
    let config = write_config(&dir, &format!("{DB}[requests]\npepper = \"{}\"\n", SECRETS[3].1));
    loose(&config, 0o644);
    let stderr = check(&config, &[]);
    assert!(
        stderr.contains(&format!(
            "WARN wc_retention: config file {config} holds secrets (requests.pepper) and is readable by group or others; \
             restrict it with chmod 600"
        )),
        "{stderr}"
    );
    // The same file, private: no warning.
    loose(&config, 0o600);
    assert!(!check(&config, &[]).contains("WARN"));

    // A secret file the group can read.
    let secret = dir.path().join("db_password");
    std::fs::write(&secret, SECRETS[0].1).unwrap();
    let secret = secret.to_str().unwrap();
    loose(secret, 0o640);
    let config = write_config(&dir, &format!("{DB}password_file = \"{secret}\"\n"));
    let stderr = check(&config, &[]);
    assert!(
        stderr.contains(&format!(
            "WARN wc_retention: database.password_file {secret} is readable by group or others; restrict it with chmod 600"
        )),
        "{stderr}"
    );

    // A loose config file without secrets, the secrets in the environment: nothing to warn about.
    let config = write_config(&dir, DB);
    loose(&config, 0o644);
    let stderr = check(&config, &[("WC_RETENTION__DATABASE__PASSWORD", SECRETS[0].1)]);
    assert!(!stderr.contains("WARN"), "{stderr}");
}

#[test]
fn the_example_config_loads() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let loaded = wc_retention::config::load(std::path::Path::new(example)).expect("config.example.toml is valid");
    assert_eq!(loaded.config.customers.inactive_after.to_string(), "3 years");
    assert_eq!(loaded.config.database.table_prefix, "wp_");
    // Every key the example documents is a key the service knows: uncommenting the
    // optional ones must not produce an unknown-key error.
    let text = std::fs::read_to_string(example).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &uncommented);
    match wc_retention::config::load(std::path::Path::new(&path)) {
        Ok(_) => {}
        Err(e) => {
            let e = e.to_string();
            // The credential and CA files of the example do not exist here; anything else is a defect.
            assert!(
                !e.contains("unknown key") && e.lines().skip(1).all(|l| l.contains("cannot read")),
                "{e}"
            );
        }
    }
}
