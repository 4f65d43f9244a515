//! nicip: a Kubernetes controller that makes cloud NICs carry the secondary
//! IPs and attachments declared in `NicIpClaim` objects.

pub mod api;
pub mod cloud;
pub mod cloudsim;
pub mod controller;
pub mod demo;
pub mod kubesim;
pub mod ops;
pub mod preview;
pub mod signing;
