//! Accounts, passwords, sessions, tokens and sign-in flows. Arrives with the identity work; this
//! crate owns that area from the start.
