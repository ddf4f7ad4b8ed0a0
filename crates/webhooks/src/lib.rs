//! Inbound webhook verification (Stripe, Standard Webhooks, Twilio, generic HMAC) and signed
//! outbound delivery. Arrives with the webhooks work; this crate owns that area from the start.
