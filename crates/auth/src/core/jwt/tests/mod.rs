//! Tests of the access tokens, through the key set's public functions.

mod keys;
mod support;
mod verify;
