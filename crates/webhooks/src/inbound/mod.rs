//! Inbound webhooks of a workspace: sources (a provider scheme and its secrets, sealed with the
//! workspace's data key) and the persistent inbox. A delivery is verified before anything else
//! runs; an accepted event is recorded in the inbox (unique on source and event id) in the same
//! transaction as its processing — an audit event in the workspace's chain — so a replay, also
//! after a restart or on another replica, is acknowledged and not processed again. Deliveries to
//! one source that arrive together share that transaction ([`Inbox`]).

mod batch;
mod record;
mod secrets;
mod settings;
mod sources;
mod verify;

pub use batch::{Inbox, MAX_BATCH};
pub use record::{Outcome, ReceiveError, Received};
pub use secrets::{SourceSecrets, MAX_SECRETS};
pub use settings::{Kind, Settings};
pub use sources::{create, delete, get, list, set_secrets, Source};
pub use verify::Delivery;
