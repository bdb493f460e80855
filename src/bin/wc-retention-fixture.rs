//! Generates a deterministic WooCommerce store into a MySQL/MariaDB database for tests, the
//! demo and benchmarks, and prints what it wrote and how fast.
//!
//! Exit codes: 0 success, 2 bad flags, 1 any other failure (one line on stderr).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool};
use wc_retention::fixture::{self, FixtureError, Mode, Spec};

#[derive(Parser, Debug)]
#[command(
    name = "wc-retention-fixture",
    version,
    about = "Generate a deterministic WooCommerce store (WordPress + WooCommerce 11 tables) in a MySQL/MariaDB database"
)]
struct Cli {
    /// Target database, e.g. mysql://root@127.0.0.1:3306/shop
    #[arg(long, env = "WC_RETENTION_FIXTURE_URL", hide_env_values = true)]
    url: String,
    /// Table prefix
    #[arg(long, default_value = "wp_")]
    prefix: String,
    /// Order storage: legacy, hpos or hpos-sync
    #[arg(long, default_value = "hpos-sync", value_parser = parse_mode)]
    mode: Mode,
    /// Registered customers
    #[arg(long)]
    customers: u64,
    /// Seed: the same seed and sizes give the same store, byte for byte
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Guests (orders without an account) [default: customers / 5]
    #[arg(long)]
    guests: Option<u64>,
    /// Staff users (administrators and shop managers) [default: 4]
    #[arg(long)]
    staff: Option<u64>,
    /// Average orders per customer [default: 3]
    #[arg(long)]
    orders_per_customer: Option<f64>,
    /// Average orders per guest [default: 2]
    #[arg(long)]
    orders_per_guest: Option<f64>,
    /// Products in the catalogue, 2 to 24 [default: 12]
    #[arg(long)]
    products: Option<u64>,
    /// Years of history [default: 10]
    #[arg(long)]
    years: Option<u32>,
    /// The store's "now" (RFC 3339) [default: 2026-11-24T00:00:00Z]
    #[arg(long, value_parser = parse_now)]
    now: Option<DateTime<Utc>>,
    /// Parallel writer connections [default: 2]
    #[arg(long)]
    writers: Option<usize>,
    /// Target size of one INSERT statement in KiB [default: 2048]
    #[arg(long)]
    statement_kib: Option<usize>,
    /// Create tables with all indexes up front instead of adding them after the load
    #[arg(long)]
    no_defer_indexes: bool,
    /// Create the database named in the URL if it does not exist
    #[arg(long)]
    create_database: bool,
    /// Drop this prefix's store tables first if the database already holds a store
    #[arg(long)]
    replace: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse().map_err(|e: FixtureError| e.to_string())
}

fn parse_now(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| "expected an RFC 3339 time such as 2026-11-24T00:00:00Z".to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let spec = spec(&cli);
    if let Err(e) = spec.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(&cli, &spec).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn spec(cli: &Cli) -> Spec {
    let mut spec = Spec::new(&cli.prefix, cli.mode, cli.customers, cli.seed);
    spec.guests = cli.guests.unwrap_or(spec.guests);
    spec.staff = cli.staff.unwrap_or(spec.staff);
    spec.orders_per_customer = cli.orders_per_customer.unwrap_or(spec.orders_per_customer);
    spec.orders_per_guest = cli.orders_per_guest.unwrap_or(spec.orders_per_guest);
    spec.products = cli.products.unwrap_or(spec.products);
    spec.years = cli.years.unwrap_or(spec.years);
    spec.now = cli.now.unwrap_or(spec.now);
    spec.writers = cli.writers.unwrap_or(spec.writers);
    spec.statement_bytes = cli
        .statement_kib
        .map_or(spec.statement_bytes, |k| k.saturating_mul(1024));
    spec.defer_indexes = !cli.no_defer_indexes;
    spec
}

async fn run(cli: &Cli, spec: &Spec) -> Result<fixture::Report, String> {
    // The URL may hold a password: never echo it.
    let opts = Opts::from_url(&cli.url).map_err(|_| "--url is not a valid mysql:// URL".to_string())?;
    let Some(database) = opts.db_name().map(str::to_string) else {
        return Err("--url must name a database, e.g. mysql://root@127.0.0.1:3306/shop".into());
    };
    if cli.create_database {
        create_database(&opts, &database).await?;
    }
    let pool = Pool::new(opts);
    let result = fill(&pool, cli, spec, &database).await;
    pool.disconnect().await.ok();
    result
}

async fn fill(pool: &Pool, cli: &Cli, spec: &Spec, database: &str) -> Result<fixture::Report, String> {
    let exists = fixture::store_exists(pool, &spec.prefix)
        .await
        .map_err(|e| hint_unknown_database(e, database))?;
    if exists {
        if !cli.replace {
            return Err(format!(
                "database {database:?} already holds a store with table prefix {:?}; pass --replace to drop its tables first",
                spec.prefix
            ));
        }
        fixture::drop_store(pool, &spec.prefix)
            .await
            .map_err(|e| e.to_string())?;
    }
    fixture::generate(pool, spec).await.map_err(|e| e.to_string())
}

fn hint_unknown_database(e: FixtureError, database: &str) -> String {
    let message = e.to_string();
    if message.contains("MySQL error 1049") {
        format!("database {database:?} does not exist; pass --create-database to create it")
    } else {
        message
    }
}

async fn create_database(opts: &Opts, database: &str) -> Result<(), String> {
    let server = Pool::new(OptsBuilder::from_opts(opts.clone()).db_name(None::<String>));
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci",
        database.replace('`', "``")
    );
    let result = async {
        let mut conn = fixture::connect(&server).await.map_err(|e| e.to_string())?;
        conn.query_drop(sql)
            .await
            .map_err(|e| format!("create database {database:?}: {}", fixture::describe(&e)))
    }
    .await;
    server.disconnect().await.ok();
    result
}
