//! The controller's operations layer: Prometheus metrics, health probes and
//! the admin server that serves them, leader election on a Lease, logging and
//! the shutdown signal.

mod admin;
mod health;
mod leader;
mod logging;
mod metrics;

pub use admin::{parse_listen_addr, serve_admin};
pub use health::{Health, Role};
pub use leader::{Elector, Fence, Leadership, LeaseConfig, NotLeader};
pub use logging::{LogFormat, init_logging, shutdown_signal};
pub use metrics::{ClaimMetrics, Metrics};
