//! The DNS zone in use: `control` stores each new one whole (or clears it when `[dns]` goes
//! away), `dns::server` loads it once per query and admin for the `/v1` lookups. Beside it,
//! how and when it was compiled ([`ZoneInfo`]), for the status page.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwapOption, Guard};

use crate::dns::Zone;

/// The one writer of the zone (`control`'s). Not `Clone`.
pub struct ZoneWriter {
    zone: Arc<ArcSwapOption<Zone>>,
    info: Arc<ArcSwapOption<ZoneInfo>>,
}

/// Reads the zone in use; `None` until the first one is compiled. Cheap to clone.
#[derive(Clone)]
pub struct ZoneReader {
    zone: Arc<ArcSwapOption<Zone>>,
    info: Arc<ArcSwapOption<ZoneInfo>>,
}

/// How the zone in use was compiled. Only admin reads it, so it sits in a swap of its own
/// rather than in the zone the DNS server loads per query; for a moment after a store the
/// two may be one compile apart, which a status page can show.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneInfo {
    /// The SOA serial.
    pub serial: u32,
    pub records: usize,
    /// Wall-clock time the compile finished (shown to people).
    pub compiled_at: SystemTime,
    /// How long the compile took.
    pub took: Duration,
}

// === impl ZoneWriter ===

impl ZoneWriter {
    /// No zone yet.
    pub fn new() -> ZoneWriter {
        ZoneWriter {
            zone: Arc::new(ArcSwapOption::empty()),
            info: Arc::new(ArcSwapOption::empty()),
        }
    }

    pub fn reader(&self) -> ZoneReader {
        ZoneReader {
            zone: self.zone.clone(),
            info: self.info.clone(),
        }
    }

    /// Replaces the zone in use (`None`: no zone, queries in the domain fail). Its
    /// compile info is cleared; [`ZoneWriter::store_compiled`] sets both.
    pub fn store(&self, zone: Option<Arc<Zone>>) {
        self.zone.store(zone);
        self.info.store(None);
    }

    /// Replaces the zone in use with a new compile, and says how it went.
    pub fn store_compiled(&self, zone: Arc<Zone>, info: ZoneInfo) {
        self.zone.store(Some(zone));
        self.info.store(Some(Arc::new(info)));
    }

    /// Whether a zone is in use.
    pub fn is_set(&self) -> bool {
        self.zone.load().is_some()
    }
}

impl Default for ZoneWriter {
    fn default() -> ZoneWriter {
        ZoneWriter::new()
    }
}

// === impl ZoneReader ===

impl ZoneReader {
    /// The zone in use. Drop the guard before any `.await`.
    pub fn load(&self) -> Guard<Option<Arc<Zone>>> {
        self.zone.load()
    }

    /// The zone in use, to keep.
    pub fn load_full(&self) -> Option<Arc<Zone>> {
        self.zone.load_full()
    }

    /// How the zone in use was compiled; `None` without a zone (or one stored without it).
    pub fn info(&self) -> Option<Arc<ZoneInfo>> {
        self.info.load_full()
    }
}
