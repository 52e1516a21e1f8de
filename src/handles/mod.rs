//! The handles tasks are given instead of one shared god-object: each holds one value (or
//! one channel) and says by its type whether its holder reads or writes it. A task gets only
//! the handles of what it touches, so the wiring in `server` shows who depends on what.
//!
//! | handle | written by | read by |
//! | --- | --- | --- |
//! | [`RouteTableWriter`] / [`RouteTableReader`] | `control` | proxies, health monitor, admin |
//! | [`ZoneWriter`] / [`ZoneReader`] | `control` | `dns::server`, admin |
//! | [`ConfigWriter`] / [`ConfigReader`] | `control` | admin (`/v1/config`) |
//! | [`SourceStatus`] (from [`SourceErrors`]) / [`SourceErrorsReader`] | each source | admin |
//! | [`HealthStatusWriter`] / [`HealthStatusReader`] | health monitor | admin |
//! | [`CheckedDownWriter`] / [`CheckedDownReceiver`] | health monitor | `control` (the zone) |
//! | [`ListenerStatusWriter`] / [`ListenerStatusReader`] | `proxy::listeners` | admin |
//! | [`EjectionSender`] / [`EjectionReceiver`] | proxies | health monitor |
//! | [`Reread`] (requests) / its `watch::Receiver<()>`s | SIGHUP, admin (`/_mlb_signal/*`) | config reload, every source, certificates |
//! | [`UpstreamErrorSender`] / [`UpstreamErrorsReader`] (via [`UpstreamErrorLog`]) | proxies | admin (status page) |
//!
//! A value replaced whole has one writer, not `Clone`, which hands out the readers; readers
//! clone cheaply (one `Arc`). What the data plane reads (the table, the zone) is behind an
//! `ArcSwap`, and what it writes (ejections) is an unbounded channel: no request or query
//! ever takes a lock here; the upstream errors are a bounded channel the proxies `try_send`
//! into (a report is dropped, and counted, rather than waited for). `Metrics` is not a
//! handle: its handles are passed as they are.

mod checked_down;
mod config;
mod ejections;
mod reread;
mod status;
mod table;
mod upstream_errors;
mod zone;

pub use checked_down::{CheckedDown, CheckedDownReceiver, CheckedDownWriter};
pub use config::{ConfigInUse, ConfigReader, ConfigWriter};
pub use ejections::{ejections, Ejection, EjectionReceiver, EjectionSender};
pub use reread::Reread;
pub use status::{
    HealthStatusReader, HealthStatusWriter, ListenerStatusReader, ListenerStatusWriter,
    SourceErrors, SourceErrorsReader, SourceStatus,
};
pub use table::{RouteTableReader, RouteTableWriter};
pub use upstream_errors::{
    upstream_errors, UpstreamError, UpstreamErrorLog, UpstreamErrorSender, UpstreamErrorsReader,
};
pub use zone::{ZoneInfo, ZoneReader, ZoneWriter};
