//! wc-retention: keeps a self-hosted WooCommerce shop's privacy promises.
//!
//! The crate is a pure core between thin edges (see DESIGN §2):
//! - [`config`] turns the operator's TOML and environment into a validated [`config::Config`];
//! - [`schedule`] and [`period`] are the pure time vocabulary of that config;
//! - [`policy`] is the pure core: retention decisions from facts and a given `now`;
//! - [`store`] is the only module that speaks SQL: discovery of the WooCommerce schema and the
//!   service's own tables;
//! - [`fixture`] generates realistic WooCommerce stores for tests, the demo and benchmarks;
//! - [`engine`] is one run: lock, plan, apply in batches; [`daemon`] runs it on the schedule
//!   under systemd;
//! - [`check`] judges a store and a config for `wc-retention check`;
//! - [`telemetry`] sets up structured logging.

pub mod anonymise;
pub mod audit;
pub mod check;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod export;
pub mod fixture;
pub mod hook;
pub mod localtime;
pub mod period;
pub mod php;
pub mod plan;
pub mod policy;
pub mod preflight;
pub mod requests;
pub mod schedule;
pub mod store;
pub mod subject;
pub mod telemetry;
pub mod verify;
pub mod woo;
