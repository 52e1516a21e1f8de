//! The Marathon source: reads `/v2/apps?embed=apps.tasks` snapshots and follows the
//! `/v2/events` stream, and turns what it reads into `catalog::RawApp`s with marathon-lb's
//! semantics. Only this module knows Marathon's JSON.
//!
//! - `apps`: decode of the apps snapshot, and the marathon-lb conversion to raw apps.
//! - `events`: the server-sent-event framing and the event types we act on.
//! - `client`: one request to one of the configured instances, failing over, leader first.
//! - `sync`: the loop that keeps the published snapshot current and plausible.

pub mod apps;
pub mod client;
mod convert;
pub mod events;
pub mod sync;
