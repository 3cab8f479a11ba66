//! sluice: a Kong-compatible, DB-less API gateway on Pingora.
//!
//! Data flow, one module per stage: [`config`] (declarative file → validated model) →
//! [`snapshot`] (immutable runtime) → [`router`] / [`plugins`] → [`proxy`] (Pingora) →
//! [`server`] (CLI-facing wiring, reload).

pub mod admin;
pub mod allocator;
pub mod balancer;
pub mod config;
pub mod env;
pub mod listen;
pub mod metrics;
pub mod plugins;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod snapshot;
