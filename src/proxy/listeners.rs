//! placeholder
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::watch;
use crate::{routing::RouteTable, shutdown::Shutdown, Shared};
pub struct Listeners { workers: Vec<Handle>, shared: Arc<Shared>, shutdown: Shutdown }
impl Listeners {
    pub fn new(workers: Vec<Handle>, shared: Arc<Shared>, shutdown: Shutdown) -> Listeners { Listeners { workers, shared, shutdown } }
    pub async fn run(self, tables: watch::Receiver<Arc<RouteTable>>) { let _ = (self.workers, self.shared, self.shutdown, tables); }
}
