//! The WooCommerce REST API edge: [`rest`] talks to it, [`oauth`] signs for it, and
//! [`SystemStatus`] is what preflight reads from it. The decisions about what it answers
//! live in [`crate::preflight`] and [`crate::verify`].

pub mod oauth;
pub mod rest;

use serde::Deserialize;

pub use rest::{Client, RestError};

/// The parts of `GET /system_status` the service reads.
#[derive(Debug, Deserialize)]
pub struct SystemStatus {
    pub environment: Environment,
    pub database: Database,
    pub settings: Settings,
    #[serde(default)]
    pub active_plugins: Vec<Plugin>,
}

/// The `_fields` preflight asks for: the remote GET/POST tests in the rest are slow.
pub const SYSTEM_STATUS_FIELDS: &str = "environment,database,settings,active_plugins";

#[derive(Debug, Deserialize)]
pub struct Environment {
    /// WooCommerce's version.
    pub version: String,
    pub home_url: String,
    /// WordPress's `wp_using_ext_object_cache()`: a persistent object cache (Redis,
    /// Memcached) serves old values after SQL writes until it is flushed.
    #[serde(default)]
    pub external_object_cache: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Database {
    pub database_prefix: String,
}

#[derive(Debug, Deserialize)]
pub struct Settings {
    #[serde(rename = "HPOS_enabled", default)]
    pub hpos_enabled: bool,
    #[serde(rename = "HPOS_sync_enabled", default)]
    pub hpos_sync_enabled: bool,
}

#[derive(Debug, Deserialize)]
pub struct Plugin {
    /// `directory/file.php`.
    pub plugin: String,
    #[serde(default)]
    pub name: String,
}

impl SystemStatus {
    pub async fn fetch(client: &Client) -> Result<SystemStatus, RestError> {
        client
            .get("/system_status", &[("_fields", SYSTEM_STATUS_FIELDS.to_owned())])
            .await
    }
}
