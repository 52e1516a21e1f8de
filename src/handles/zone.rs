//! The DNS zone in use: `control` stores each new one whole (or clears it when `[dns]` goes
//! away), `dns::server` loads it once per query and admin for the `/v1` lookups.

use std::sync::Arc;

use arc_swap::{ArcSwapOption, Guard};

use crate::dns::Zone;

/// The one writer of the zone (`control`'s). Not `Clone`.
pub struct ZoneWriter {
    zone: Arc<ArcSwapOption<Zone>>,
}

/// Reads the zone in use; `None` until the first one is compiled. Cheap to clone.
#[derive(Clone)]
pub struct ZoneReader {
    zone: Arc<ArcSwapOption<Zone>>,
}

// === impl ZoneWriter ===

impl ZoneWriter {
    /// No zone yet.
    pub fn new() -> ZoneWriter {
        ZoneWriter {
            zone: Arc::new(ArcSwapOption::empty()),
        }
    }

    pub fn reader(&self) -> ZoneReader {
        ZoneReader {
            zone: self.zone.clone(),
        }
    }

    /// Replaces the zone in use (`None`: no zone, queries in the domain fail).
    pub fn store(&self, zone: Option<Arc<Zone>>) {
        self.zone.store(zone);
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
}
