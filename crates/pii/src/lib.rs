//! Scanner and redactor for personal data and secrets, the activity ingestion pipeline and the
//! untrusted-content envelope. A pure library: no I/O.
//!
//! The scanner arrives with the PII work; this crate owns that area from the start.
