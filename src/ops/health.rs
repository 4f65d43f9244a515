//! What `/healthz` and `/readyz` answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// Where this replica stands in leader election. A controller run without
/// election goes straight to `Leader`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Starting,
    /// Waiting for the Lease; it reconciles nothing.
    Standby,
    Leader,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::Standby,
            2 => Role::Leader,
            _ => Role::Starting,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Role::Starting => 0,
            Role::Standby => 1,
            Role::Leader => 2,
        }
    }
}

/// Liveness and readiness, shared by the controller, the elector and the
/// admin server.
#[derive(Debug, Default)]
pub struct Health {
    synced: AtomicBool,
    role: AtomicU8,
    election_healthy: AtomicBool,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// The controller's watches delivered their first complete list.
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::SeqCst);
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(role.as_u8(), Ordering::SeqCst);
    }

    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::SeqCst))
    }

    /// Whether the election loop reached the API server recently; a standby
    /// that cannot could not take over, so it is not ready.
    pub fn set_election_healthy(&self, healthy: bool) {
        self.election_healthy.store(healthy, Ordering::SeqCst);
    }

    /// `Ok` when ready, else why not (the `/readyz` body).
    pub fn readiness(&self) -> Result<(), &'static str> {
        match self.role() {
            Role::Starting => Err("starting"),
            Role::Leader if self.synced.load(Ordering::SeqCst) => Ok(()),
            Role::Leader => Err("leader, waiting for the first watch sync"),
            Role::Standby if self.election_healthy.load(Ordering::SeqCst) => Ok(()),
            Role::Standby => Err("standby, cannot reach the API server for the Lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_table() {
        // (role, synced, election healthy) -> ready
        let table = [
            (Role::Starting, false, false, false),
            (Role::Starting, true, true, false),
            (Role::Leader, false, true, false),
            (Role::Leader, true, false, true),
            (Role::Standby, false, false, false),
            (Role::Standby, false, true, true),
            (Role::Standby, true, false, false),
        ];
        for (role, synced, healthy, ready) in table {
            let h = Health::new();
            h.set_role(role);
            if synced {
                h.mark_synced();
            }
            h.set_election_healthy(healthy);
            assert_eq!(
                h.readiness().is_ok(),
                ready,
                "{role:?} synced={synced} healthy={healthy}"
            );
            assert_eq!(h.role(), role);
        }
    }
}
