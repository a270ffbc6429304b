//! Gatehouse: an API gateway whose cross-cutting features run as sandboxed
//! WebAssembly components.
//!
//! The host (this crate) owns sockets, routing, upstream pools and limits;
//! plugins own one decision about one request and see only what the
//! `gatehouse:plugin` contract (`wit/`) hands them.

pub mod access_log;
pub mod admin;
pub mod alloc;
pub mod config;
pub mod dev;
pub mod error;
pub mod gateway;
mod handler;
pub mod live;
pub mod metrics;
pub mod plugin;
pub mod proxy;
pub mod router;
pub mod server;
pub mod timer;
pub mod upstream;

pub use config::Config;
pub use gateway::Gateway;
pub use plugin::Runtime;
