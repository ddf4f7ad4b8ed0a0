//! The append-only, hash-chained audit trail, written in the same transaction as the change it
//! records. Arrives with the audit work; this crate owns that area from the start.
