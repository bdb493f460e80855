//! The audit trail's hash chain: each row's hash covers the previous row's hash and the
//! row's own fields, so deleting, reordering or editing a row breaks the chain from there
//! on. The rows name rules, actions, entity types and numeric ids, never values.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::subject::hex;

/// The `prev_hash` of the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the runs table says about earlier runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunHistory {
    /// When the latest completed run started.
    pub last_completed: Option<DateTime<Utc>>,
    /// When the latest run started, if it did not complete (interrupted, failed, killed,
    /// refused by the safety cap).
    pub unfinished: Option<DateTime<Utc>>,
}

/// The fields of one audit row that the hash covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub run_id: u64,
    /// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), exactly as stored.
    pub created_at: &'a str,
    pub rule: &'a str,
    pub action: &'a str,
    pub entity_type: &'a str,
    pub entity_id: u64,
    pub field_names: &'a str,
}

/// This row's hash, given the previous row's.
pub fn chain_hash(prev_hash: &str, r: &Record<'_>) -> String {
    let mut h = Sha256::new();
    for part in [
        prev_hash,
        &r.run_id.to_string(),
        r.created_at,
        r.rule,
        r.action,
        r.entity_type,
        &r.entity_id.to_string(),
        r.field_names,
    ] {
        h.update(part.as_bytes());
        // A separator no field contains, so ("ab","c") and ("a","bc") differ.
        h.update([0x1f]);
    }
    hex(&h.finalize())
}

/// The outcome of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub rows: u64,
    /// The id of the first row that does not verify, and why.
    pub first_broken: Option<(u64, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> Record<'static> {
        Record {
            run_id: 1,
            created_at: "2026-11-24 03:30:00.000000",
            rule: "inactive_customer",
            action: "anonymise_customer",
            entity_type: "customer",
            entity_id: id,
            field_names: "user_email",
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_count() {
        let a = chain_hash(GENESIS, &record(7));
        assert_eq!(a.len(), 64);
        assert_ne!(a, chain_hash(GENESIS, &record(8)));
        assert_ne!(a, chain_hash(&a, &record(7)));
        let mut other = record(7);
        other.rule = "repair";
        assert_ne!(a, chain_hash(GENESIS, &other));
        assert_eq!(a, chain_hash(GENESIS, &record(7)));
    }
}
