//! Discovery sources: each turns its input into `catalog::RawApp`s and publishes them on a
//! `watch` channel. Only this module knows an input's format.

use crate::catalog::{AppProblem, RawApp};

pub mod file;
pub mod marathon;

/// What one good read of a source gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub apps: Vec<RawApp>,
    /// Apps (or tasks) the source had to leave out, and why.
    pub problems: Vec<AppProblem>,
}
