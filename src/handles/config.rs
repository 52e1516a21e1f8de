//! The config `control` runs with, as admin's `/v1/config` shows it. `control` publishes
//! the zone options it derives along with the config, so admin shows what is in use without
//! deriving them again (and without depending on `control`).

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use crate::config::Config;
use crate::dns::ZoneOptions;

/// One config and what was derived from it, published together so they always agree.
#[derive(Debug)]
pub struct ConfigInUse {
    pub config: Arc<Config>,
    /// The DNS zone's options; `None` without `[dns]`.
    pub zone: Option<ZoneOptions>,
}

/// The one writer of the config in use (`control`'s). Not `Clone`.
pub struct ConfigWriter {
    cell: Arc<ArcSwapOption<ConfigInUse>>,
}

/// Reads the config in use; `None` until `control` starts. Cheap to clone.
#[derive(Clone)]
pub struct ConfigReader {
    cell: Arc<ArcSwapOption<ConfigInUse>>,
}

// === impl ConfigWriter ===

impl ConfigWriter {
    pub fn new() -> ConfigWriter {
        ConfigWriter {
            cell: Arc::new(ArcSwapOption::empty()),
        }
    }

    pub fn reader(&self) -> ConfigReader {
        ConfigReader {
            cell: self.cell.clone(),
        }
    }

    pub fn store(&self, in_use: ConfigInUse) {
        self.cell.store(Some(Arc::new(in_use)));
    }
}

impl Default for ConfigWriter {
    fn default() -> ConfigWriter {
        ConfigWriter::new()
    }
}

// === impl ConfigReader ===

impl ConfigReader {
    pub fn load_full(&self) -> Option<Arc<ConfigInUse>> {
        self.cell.load_full()
    }
}
