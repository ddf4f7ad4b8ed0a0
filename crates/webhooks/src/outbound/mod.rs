//! Outbound webhooks of a workspace: endpoints (an https URL, the event types it subscribes to,
//! Standard Webhooks secrets sealed with the workspace's data key), each event's delivery to each
//! subscribed endpoint, and every attempt at it.
//!
//! An event is emitted in the transaction of the change it reports ([`emit`]): a delivery row and
//! an outbox action per subscribed endpoint, so both commit with the change or neither does. The
//! outbox runs [`Deliverer::deliver`] for each attempt: a short transaction reads the delivery
//! and opens the secrets, the request is signed per Standard Webhooks and sent through the
//! SSRF-guarded egress client outside any transaction, and a second transaction records the
//! attempt and, after a failure, queues the next attempt on [`RETRY_SCHEDULE_SECS`]. An endpoint
//! whose delivery fails its last attempt with no success since that delivery began, or that
//! answers 410 Gone, is disabled and its owners are told by mail.

mod deliver;
mod emit;
mod endpoints;
mod history;
mod schedule;
mod screen;
mod secrets;

pub use deliver::Deliverer;
pub use emit::{emit, send_test, TEST_EVENT};
pub use endpoints::{
    create, delete, get, list, update, Endpoint, EndpointChange, ALL_EVENTS, EVENT_TYPES, MAX_ENDPOINTS,
};
pub use history::{attempts, deliveries, message_id, replay, Attempt, Delivery};
pub use schedule::{ATTEMPTS, DELIVER_ACTION, RETRY_SCHEDULE_SECS};
pub use screen::{delivery_policy, screen_url, MAX_URL_LEN, REQUEST_TIMEOUT, SCREEN_RESOLVE_TIMEOUT};
pub use secrets::{rotate_secret, MAX_SIGNING_SECRETS, SECRET_OVERLAP_SECS};
