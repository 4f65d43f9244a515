//! nicip: a Kubernetes controller that makes cloud NICs carry the secondary
//! IPs and attachments declared in `NicIpClaim` objects.

pub mod api;
pub mod cloud;
#[cfg(feature = "sim")]
pub mod cloudsim;
pub mod controller;
#[cfg(feature = "sim")]
pub mod demo;
#[cfg(feature = "sim")]
pub mod kubesim;
pub mod ops;
pub mod preview;
pub mod signing;
