//! The core's side of the edge: the settings every edge reads (published to edge KV like
//! any dataset), and running the local edge host next to the core.

pub(crate) mod local;
pub(crate) mod settings;
