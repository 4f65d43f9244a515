//! nicip: a Kubernetes controller that makes cloud NICs carry the secondary
//! IPs and attachments declared in `NicIpClaim` objects.

pub mod api;
pub mod cloud;
#[cfg(feature = "sim")]
pub mod cloudsim;
#[cfg(feature = "sim")]
pub mod kubesim;
pub mod signing;
