//! The binary's handling of configuration and flags: every mistake an operator can make is
//! exit code 2 and one message that names the key and the bad value. No database needed.

mod common;

use common::{wc_retention, write_config};

const DB: &str = "[database]\nurl = \"mysql://wcr@127.0.0.1:1/shop\"\n";

#[test]
fn bad_configs_exit_2_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[database]\nsurprise = 1\n", "database.surprise: unknown key"),
        ("[customer]\ninactive_after = \"3 years\"\n", "customer: unknown key"),
        (
            "[customers]\ninactive_after = \"3 yeers\"\n",
            "customers.inactive_after: \"3 yeers\" is not a period",
        ),
        (
            "[customers]\ninactive_after = 3\n",
            "customers.inactive_after: invalid type",
        ),
        (
            "[schedule]\ncron = \"0 3 * * * *\"\n",
            "schedule.cron: \"0 3 * * * *\" is not a crontab schedule",
        ),
        ("[schedule]\ncron = \"30 3 * * 8\"\n", "day-of-week 8 is outside 0-7"),
        (
            "[schedule]\ntimezone = \"Europe/Amsterdan\"\n",
            "schedule.timezone: \"Europe/Amsterdan\" is not a known time zone",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        (
            "[database]\npassword_file = \"/nonexistent/db_password\"\n",
            "database.password_file: cannot read secret file /nonexistent/db_password",
        ),
        ("[requests]\npepper = \"short\"\n", "requests.pepper: too short"),
        (
            "[invoices]\nfiscal_year_end = \"02-30\"\n",
            "invoices.fiscal_year_end: \"02-30\" is not a fiscal year end",
        ),
        (
            "[invoices]\nretain_years = 0\n",
            "invoices.retain_years: 0 is not a retention period",
        ),
        (
            "[invoices]\nstatuses = [\"wc-completed\"]\n",
            "invoices.statuses: write \"wc-completed\" without the wc- prefix",
        ),
        (
            "[rest]\nurl = \"https://shop.example\"\n",
            "rest.consumer_key: required with [rest]",
        ),
    ];
    for (extra, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        // A later [database] table would be a TOML error, so keys for it are merged in.
        let text = match extra.strip_prefix("[database]\n") {
            Some(keys) => format!("{DB}{keys}"),
            None => format!("{DB}{extra}"),
        };
        let run = wc_retention(&["--config", &write_config(&dir, &text), "check"], &[]);
        assert_eq!(run.code, 2, "{extra}: {}", run.stderr);
        assert!(
            run.stderr.contains(want),
            "want {want:?} for {extra:?}, got:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn missing_config_file_is_named() {
    let run = wc_retention(&["--config", "/nonexistent/wc-retention.toml", "check"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("config file /nonexistent/wc-retention.toml does not exist"),
        "{}",
        run.stderr
    );
}

#[test]
fn environment_overrides_are_checked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, DB);
    let run = wc_retention(
        &["--config", &config, "check"],
        &[("WC_RETENTION__SCHEDULE__CRON", "every night")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("schedule.cron: \"every night\" is not a crontab schedule"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("WC_RETENTION__SCHEDULE__CRON"), "{}", run.stderr);

    let run = wc_retention(
        &["--config", &config, "check"],
        &[("WC_RETENTION__CUSTOMERS__INACTIVE_AFTRE", "1 year")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("customers.inactive_aftre: unknown key"),
        "{}",
        run.stderr
    );
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

#[test]
fn toml_syntax_errors_do_not_quote_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &format!("{DB}password = Unquoted-Secret-77\n"));
    let run = wc_retention(&["--config", &config, "check"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("TOML parse error at line 3"), "{}", run.stderr);
    assert!(!run.all_output().contains("Unquoted-Secret-77"), "{}", run.all_output());
}

#[test]
fn a_zero_period_would_forget_everyone_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, &format!("{DB}[customers]\ninactive_after = \"0 days\"\n"));
    let run = wc_retention(&["--config", &config, "check"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("customers.inactive_after: \"0 days\" is not a period"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_password_in_the_url_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "[database]\nurl = \"mysql://wcr:Hunter2-Pw@127.0.0.1/shop\"\n");
    let run = wc_retention(&["--config", &config, "check"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("database.url: carries a password"),
        "{}",
        run.stderr
    );
    assert!(!run.all_output().contains("Hunter2-Pw"));
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--log-format", "xml", "check"][..],
        &["chek"],
        &["check", "--jsno"],
        &[],
    ] {
        let run = wc_retention(args, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("error:") || run.stderr.contains("Usage"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let run = wc_retention(&["--help"], &[]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("Exit codes:"), "{}", run.stdout);
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
