//! Scanner and redactor for personal data and secrets, the activity ingestion pipeline and the
//! untrusted-content envelope. A pure library: no I/O, no clock, no randomness of its own.
//! It must never log, store or print a value it found.
//!
//! - [`scan`] finds e-mail addresses, payment cards, US SSNs, IP addresses, phone numbers, IBANs
//!   and secrets in one linear pass; [`Redactor`] replaces them by tag, mask or keyed hash;
//!   [`scrub`] is the fast tag-mode entry point for log lines and audit payloads.
//! - [`pipeline`] is the seven-stage activity ingestion pipeline.
//! - [`envelope`] wraps untrusted text before a model sees it and flags instruction-like model
//!   output; [`provider`] is the metered, rate-limited model-call interface.
//! - [`eval`] measures precision and recall against labelled text.

// Library crates never panic on bad input outside tests (ARCHITECTURE.md, "Invariants").
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod envelope;
pub mod eval;
mod kind;
pub mod pipeline;
pub mod provider;
mod redact;
mod scan;
pub mod validate;

pub use kind::{char_spans, CharSpan, Finding, Kind};
pub use redact::{normalise, scrub, scrub_keeping, HashKey, Mode, Redacted, Redactor};
pub use scan::{scan, scanner, Scanner};
