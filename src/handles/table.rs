//! The route table in use: `control` stores each new one whole, the proxies, the health
//! monitor and admin `load()` it without a lock. Storing the first table also makes the
//! process ready (`/readyz`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::routing::RouteTable;

/// The table and whether one was ever stored, in one allocation both sides point at.
#[derive(Default)]
struct Slot {
    table: ArcSwap<RouteTable>,
    /// Set by the first store; the empty default table does not count.
    ready: AtomicBool,
}

/// The one writer of the route table (`control`'s). Not `Clone`.
pub struct RouteTableWriter {
    slot: Arc<Slot>,
}

/// Reads the route table in use. Cheap to clone.
#[derive(Clone)]
pub struct RouteTableReader {
    slot: Arc<Slot>,
}

// === impl RouteTableWriter ===

impl RouteTableWriter {
    /// An empty table, not ready.
    pub fn new() -> RouteTableWriter {
        RouteTableWriter {
            slot: Arc::default(),
        }
    }

    pub fn reader(&self) -> RouteTableReader {
        RouteTableReader {
            slot: self.slot.clone(),
        }
    }

    /// The table in use, which the next compile starts from.
    pub fn current(&self) -> Arc<RouteTable> {
        self.slot.table.load_full()
    }

    /// Replaces the table in use; from now on the process is ready.
    pub fn store(&self, table: Arc<RouteTable>) {
        self.slot.table.store(table);
        self.slot.ready.store(true, Ordering::Release);
    }
}

impl Default for RouteTableWriter {
    fn default() -> RouteTableWriter {
        RouteTableWriter::new()
    }
}

// === impl RouteTableReader ===

impl RouteTableReader {
    /// The table in use. Drop the guard before any `.await`.
    pub fn load(&self) -> Guard<Arc<RouteTable>> {
        self.slot.table.load()
    }

    /// The table in use, to keep.
    pub fn load_full(&self) -> Arc<RouteTable> {
        self.slot.table.load_full()
    }

    /// Whether a table has been stored (the first good catalog read is done).
    pub fn is_ready(&self) -> bool {
        self.slot.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_each_store_and_ready_follows_the_first() {
        let writer = RouteTableWriter::new();
        let reader = writer.reader();
        assert!(!reader.is_ready());
        assert_eq!(reader.load().version, 0);
        let mut table = RouteTable::default();
        table.version = 3;
        writer.store(Arc::new(table));
        assert!(reader.clone().is_ready());
        assert_eq!(reader.load_full().version, 3);
        assert_eq!(writer.current().version, 3);
    }
}
