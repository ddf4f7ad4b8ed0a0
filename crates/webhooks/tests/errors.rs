//! The error codes are part of the API: they are stable and each names one outcome.

use webhooks::VerifyError;

#[test]
fn every_error_has_its_stable_code_and_only_a_missing_secret_is_the_servers_fault() {
    let table = [
        (VerifyError::SignatureMissing("x"), "webhook_signature_missing", false),
        (VerifyError::SignatureMalformed("x"), "webhook_signature_malformed", false),
        (VerifyError::SignatureStale, "webhook_signature_stale", false),
        (VerifyError::SignatureFuture, "webhook_signature_future", false),
        (VerifyError::SignatureMismatch, "webhook_signature_mismatch", false),
        (VerifyError::SecretMissing("x"), "webhook_secret_missing", true),
    ];
    for (error, code, configuration) in table {
        assert_eq!(error.code(), code);
        assert_eq!(error.is_configuration_error(), configuration, "{code}");
    }
}

#[test]
fn the_metric_name_is_unchanged() {
    assert_eq!(webhooks::SIGNATURE_FAILURES_METRIC, "rampart_webhook_signature_failures_total");
}
