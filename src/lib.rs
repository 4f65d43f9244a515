//! nicip: a Kubernetes controller that makes cloud NICs carry the secondary
//! IPs and attachments declared in `NicIpClaim` objects.

pub mod cloud;
pub mod signing;
