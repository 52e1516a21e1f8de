//! The Marathon source: reads `/v2/apps?embed=apps.tasks` snapshots and single apps
//! (`/v2/apps/{id}`), follows the `/v2/events` stream, and turns what it reads into
//! `catalog::RawApp`s with marathon-lb's semantics. Only this module knows Marathon's JSON.
//!
//! - `apps`: decode of the apps snapshot and of one app, and the marathon-lb conversion to
//!   raw apps (of all apps, or of one app alone when it does not depend on others).
//! - `events`: the server-sent-event framing, the event types we act on, and which apps an
//!   event names.
//! - `client`: one request to one of the configured instances, failing over, leader first.
//! - `sync`: the loop that keeps the published snapshot current and plausible, app by app
//!   where it can.

pub mod apps;
pub mod client;
mod convert;
pub mod events;
pub mod sync;
