//! Structured logging: JSON lines for journald and log shippers, or pretty text for people.
//!
//! Logs go to stderr so that a command's report on stdout (`check --json`) stays parseable.
//! Events name customers and orders by numeric id only; no personal data is ever a field.

use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

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
