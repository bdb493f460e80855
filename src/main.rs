//! The `wc-retention` command line: parses flags, loads the config, runs one command and
//! turns its outcome into a documented exit code. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wc_retention::config::{self, LogFormat};
use wc_retention::store::{migrations, Store, StoreError};
use wc_retention::{check, telemetry};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  unexpected failure (see the message and the log)
  2  bad flags or bad configuration
  3  the store is unreachable, refuses the login, or is not a WooCommerce database the
     service can work on (missing tables or privileges, own tables from a newer version)";

#[derive(Parser)]
#[command(name = "wc-retention", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "PATH", default_value = config::DEFAULT_PATH, env = "WC_RETENTION_CONFIG")]
    config: PathBuf,
    /// Log format; overrides `log.format` of the config.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter such as `info` or `debug,mysql_async=warn`; overrides `log.level`.
    /// `RUST_LOG`, when set, overrides both.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the database, the WooCommerce install and the configuration.
    Check {
        /// Print the report as JSON (on stdout).
        #[arg(long)]
        json: bool,
    },
    /// Create or upgrade the service's own tables (runs, audit, requests).
    Migrate,
}

/// An exit code and the message explaining it.
struct Failure(u8, String);

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let code = match e {
            StoreError::Sql { .. } if !e.is_denied() => 1,
            _ => 3,
        };
        Failure(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("wc-retention: error: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let loaded = config::load(&cli.config).map_err(|e| Failure(2, e.to_string()))?;
    let cfg = &loaded.config;
    let format = cli.log_format.unwrap_or(cfg.log.format);
    let filter = cli.log_level.as_deref().or(cfg.log.level.as_deref()).unwrap_or("info");
    telemetry::init(format, filter).map_err(|e| Failure(2, e))?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure(1, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        match cli.command {
            Command::Check { json } => {
                let report = check::run(cfg, &loaded.warnings).await;
                let report = match (report, json) {
                    (Ok(r), _) => r,
                    (Err(e), true) => {
                        println!("{}", serde_json::json!({ "ok": false, "error": e.to_string() }));
                        return Err(e.into());
                    }
                    (Err(e), false) => return Err(e.into()),
                };
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&report).map_err(|e| Failure(1, e.to_string()))?
                    );
                } else {
                    print!("{}", report.to_text());
                }
                if report.ok {
                    Ok(())
                } else {
                    Err(Failure(
                        3,
                        format!("the store is not ready: {}", report.problems.join("; ")),
                    ))
                }
            }
            Command::Migrate => {
                let store = Store::open(&cfg.database)?;
                let outcome = migrations::migrate(&store).await;
                store.close().await;
                let outcome = outcome?;
                match outcome.from {
                    Some(v) if v == outcome.to => {
                        println!("own tables already at version {v}; nothing to do")
                    }
                    Some(v) => println!("own tables migrated from version {v} to {}", outcome.to),
                    None => println!("own tables created at version {}", outcome.to),
                }
                Ok(())
            }
        }
    })
}
