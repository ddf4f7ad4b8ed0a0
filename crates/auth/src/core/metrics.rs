//! Names of the metrics this crate records (through the `metrics` facade; the API exports them).

/// Failed sign-ins, labelled by `reason` (`wrong_password`, `locked`, `unknown_account`, …).
pub const AUTH_FAILURES: &str = "rampart_auth_failures_total";

pub(crate) fn signin_failed(reason: &str) {
    metrics::counter!(AUTH_FAILURES, "reason" => reason.to_owned()).increment(1);
}
