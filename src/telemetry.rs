//! Structured logging: JSON lines for journald and log shippers, or pretty text for people.
//!
//! Logs go to stderr so that a command's report on stdout (`check --json`) stays parseable.
//! Events name customers and orders by numeric id only; no personal data is ever a field.

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Checks a log filter as `--log-level` and `log.level` take it: a level (`info`) or a
/// `RUST_LOG`-style list (`info,wc_retention=debug`). A bare word that is no level, such
/// as `warning` or `verbose`, is refused: `EnvFilter` would read it as a target name and
/// quietly log almost nothing.
pub fn check_filter(filter: &str) -> Result<(), String> {
    const USE: &str = "use off, error, warn, info, debug or trace, or a list such as \"info,wc_retention=debug\"";
    if filter.trim().is_empty() {
        return Err(format!("{filter:?} is empty: {USE}"));
    }
    let not_a_level = filter.split(',').map(str::trim).find(|d| {
        !d.is_empty() && !d.contains(['=', '[']) && d.parse::<tracing::level_filters::LevelFilter>().is_err()
    });
    match not_a_level {
        Some(word) if word == filter.trim() => return Err(format!("{word:?} is not a log level: {USE}")),
        Some(word) => return Err(format!("{filter:?}: {word:?} is not a log level: {USE}")),
        None => {}
    }
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("{filter:?} is not a log filter ({e}): {USE}"))
}

/// Installs the global subscriber. `filter` is a `RUST_LOG`-style directive list; the
/// `RUST_LOG` environment variable, when set, wins over it, as operators expect.
pub fn init(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG={env:?}: {e}"))?,
        _ => EnvFilter::try_new(filter).map_err(|e| format!("log level {filter:?}: {e}"))?,
    };
    let writer = std::io::stderr.with_max_level(tracing::Level::TRACE);
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(true)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::check_filter;

    #[test]
    fn filters_are_levels_or_directive_lists() {
        for good in [
            "info",
            "DEBUG",
            "trace",
            "off",
            "info,wc_retention=debug",
            "warn,mysql_async=error",
        ] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
        let cases = [
            ("warning", "\"warning\" is not a log level"),
            ("info,verbose", "\"info,verbose\": \"verbose\" is not a log level"),
            ("", "\"\" is empty"),
            ("info,[[", "\"info,[[\" is not a log filter"),
        ];
        for (bad, want) in cases {
            let e = check_filter(bad).unwrap_err();
            assert!(e.starts_with(want), "{bad:?}: {e}");
        }
    }
}
