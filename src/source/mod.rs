//! Discovery sources: each turns its input into `catalog::RawApp`s and publishes them on a
//! `watch` channel. Only this module knows an input's format.

pub mod file;
pub mod marathon;
