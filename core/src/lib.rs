//! Verge's core: the central axum service that owns every write, the admin API, and the
//! `verge` command line.
//!
//! `App::build` turns a [`Config`] into a ready axum `Router`; the `verge` binary serves it.
//! Storage sits behind two seams chosen at start-up: PostgreSQL or embedded SQLite for
//! data ([`db`]), Redis or an in-process store for caches and counters ([`cache`]).

pub mod audit;
mod autocomplete;
pub mod cache;
mod catalog;
pub mod cli;
pub mod config;
mod console;
mod csv;
mod customers;
pub mod db;
mod edge;
pub mod error;
mod events;
pub mod flags;
mod health;
pub mod ids;
mod inventory;
pub mod jobs;
pub mod keys;
mod links;
mod memo;
mod metrics;
mod notifications;
mod openapi;
pub mod operators;
pub mod orders;
pub mod pagination;
pub mod publish;
mod ratelimit;
mod requests;
pub mod server;
mod state;
mod tally;
pub mod time;
mod traffic;
mod webhooks;

pub use config::Config;
pub use server::App;
pub use state::AppState;
