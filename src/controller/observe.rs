//! Batched observation. Claims that share a ProviderConfig are described
//! together: a reconcile asks for its NIC, and a per-ProviderConfig batcher
//! gathers the ids asked for within a short window into one Describe (the
//! provider pages and splits at the cloud's documented maximum). A drift sweep
//! describes every claimed NIC of an account at once and leaves the results
//! in a cache that the reconciles it triggers read, so a resync of E claims
//! costs about ⌈E/100⌉ describes.
//!
//! A cached observation is only used if no call was submitted for its NIC
//! since it was taken (an epoch per NIC), so a reconcile never plans from a
//! view older than its own last change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::cloud::{CloudError, NicId, NicProvider, NicRef, ObservedNic};

/// How long the batcher waits for more ids after the first.
const WINDOW: Duration = Duration::from_millis(15);
/// Describes of one batcher under way at once. While they are (waiting for
/// the describe limiter or the cloud's answer), the ids asked for gather into
/// the next batch, so a busy account gets fuller describes rather than more.
const IN_FLIGHT: usize = 2;
/// Most ids one batch gathers (the providers split further if they must).
const MAX_BATCH: usize = 100;
/// How long a swept observation may stand in for a fresh Describe.
const FRESH_FOR: Duration = Duration::from_secs(30);

type Answer = Result<Option<ObservedNic>, CloudError>;

/// What a sweep saw: each NIC's answer (`None`: the cloud does not know it)
/// and its epoch when the sweep began.
pub struct Swept {
    scope: String,
    at: Instant,
    found: HashMap<NicId, (u64, Option<ObservedNic>)>,
}

impl Swept {
    /// The answer for `nic`; `None` if the sweep did not ask for it.
    pub fn get(&self, nic: &NicId) -> Option<Option<&ObservedNic>> {
        self.found.get(nic).map(|(_, n)| n.as_ref())
    }
}

struct Request {
    nic: NicRef,
    provider: Arc<dyn NicProvider>,
    reply: oneshot::Sender<Answer>,
}

struct Cached {
    at: Instant,
    epoch: u64,
    nic: Option<ObservedNic>,
}

#[derive(Default)]
struct State {
    batchers: HashMap<String, mpsc::UnboundedSender<Request>>,
    cache: HashMap<(String, NicId), Cached>,
    epochs: HashMap<(String, NicId), u64>,
}

#[derive(Clone, Default)]
pub struct Observer {
    state: Arc<Mutex<State>>,
}

impl Observer {
    pub fn new() -> Self {
        Observer::default()
    }

    /// The NIC as the cloud shows it now (or as a sweep showed it since the
    /// last call this controller made on it). `Ok(None)`: the cloud does not
    /// know the NIC.
    pub async fn observe(
        &self,
        scope: &str,
        provider: Arc<dyn NicProvider>,
        nic: &NicRef,
    ) -> Answer {
        let key = (scope.to_string(), nic.id.clone());
        let batch = batch_key(scope, provider.provider(), nic);
        let sender = {
            let mut state = self.lock();
            let epoch = state.epochs.get(&key).copied().unwrap_or(0);
            if let Some(c) = state.cache.remove(&key)
                && c.epoch == epoch
                && c.at.elapsed() < FRESH_FOR
            {
                return Ok(c.nic);
            }
            state
                .batchers
                .entry(batch)
                .or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(batch_loop(rx));
                    tx
                })
                .clone()
        };
        let (reply, answer) = oneshot::channel();
        let kind = provider.provider();
        let request = Request {
            nic: nic.clone(),
            provider,
            reply,
        };
        if sender.send(request).is_err() {
            return Err(gone(kind, nic));
        }
        answer.await.unwrap_or_else(|_| Err(gone(kind, nic)))
    }

    /// Marks the NIC as changed by this controller: earlier observations of it
    /// are not used again.
    pub fn invalidate(&self, scope: &str, nic: &NicId) {
        let key = (scope.to_string(), nic.clone());
        let mut state = self.lock();
        *state.epochs.entry(key.clone()).or_insert(0) += 1;
        state.cache.remove(&key);
    }

    /// Describes all of these NICs (as few calls as the provider allows).
    /// The answers are cached only for the NICs [`Observer::keep`] is told
    /// of, the ones whose claims the sweep wakes: caching every answer would
    /// hold a copy of the whole fleet between sweeps.
    pub async fn sweep(
        &self,
        scope: &str,
        provider: &Arc<dyn NicProvider>,
        nics: &[NicRef],
    ) -> Result<Swept, CloudError> {
        let epochs: Vec<u64> = {
            let mut state = self.lock();
            // Answers no reconcile came to read (its claim was gone, or it
            // ended early) are dropped here rather than kept until used.
            state.cache.retain(|_, c| c.at.elapsed() < FRESH_FOR);
            nics.iter()
                .map(|n| {
                    state
                        .epochs
                        .get(&(scope.to_string(), n.id.clone()))
                        .copied()
                        .unwrap_or(0)
                })
                .collect()
        };
        let found = provider.describe_nics(nics).await?;
        let mut by_id: HashMap<NicId, ObservedNic> =
            found.into_iter().map(|n| (n.id.clone(), n)).collect();
        let found = nics
            .iter()
            .zip(epochs)
            .map(|(nic, epoch)| (nic.id.clone(), (epoch, by_id.remove(&nic.id))))
            .collect();
        Ok(Swept {
            scope: scope.to_string(),
            at: Instant::now(),
            found,
        })
    }

    /// Caches what `swept` saw of `nic` for the reconcile about to read it,
    /// unless a call was submitted for the NIC since.
    pub fn keep(&self, swept: &Swept, nic: &NicId) {
        let Some((epoch, observed)) = swept.found.get(nic) else {
            return;
        };
        let key = (swept.scope.clone(), nic.clone());
        let mut state = self.lock();
        if state.epochs.get(&key).copied().unwrap_or(0) == *epoch {
            state.cache.insert(
                key,
                Cached {
                    at: swept.at,
                    epoch: *epoch,
                    nic: observed.clone(),
                },
            );
        }
    }

    /// Forgets a NIC's cache entries (its claim is gone).
    pub fn forget(&self, scope: &str, nic: &NicId) {
        let key = (scope.to_string(), nic.clone());
        let mut state = self.lock();
        state.cache.remove(&key);
        state.epochs.remove(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain maps behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Gathers the ids asked for within the window, and while earlier describes
/// are under way, into one Describe.
async fn batch_loop(mut rx: mpsc::UnboundedReceiver<Request>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = Instant::now() + WINDOW;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Describe without holding up the next batch.
        tokio::spawn(async move {
            describe_batch(batch).await;
            drop(slot);
        });
    }
}

/// NICs described together: one account; on the legacy API, which describes
/// one VPC per call, also one VPC, so that a wrong `vpcId` fails only the
/// claims that name it.
pub fn batch_key(scope: &str, provider: crate::cloud::Provider, nic: &NicRef) -> String {
    match (provider, &nic.vpc_id) {
        (crate::cloud::Provider::TencentLegacy, Some(vpc)) => format!("{scope}/{vpc}"),
        _ => scope.to_string(),
    }
}

async fn describe_batch(batch: Vec<Request>) {
    let provider = batch[0].provider.clone();
    let mut refs: Vec<NicRef> = Vec::with_capacity(batch.len());
    for r in &batch {
        if !refs.iter().any(|n| n.id == r.nic.id) {
            refs.push(r.nic.clone());
        }
    }
    match provider.describe_nics(&refs).await {
        Ok(found) => {
            for r in batch {
                let nic = found.iter().find(|n| n.id == r.nic.id).cloned();
                let _ = r.reply.send(Ok(nic));
            }
        }
        Err(e) => {
            for r in batch {
                let _ = r.reply.send(Err(e.clone()));
            }
        }
    }
}

fn gone(provider: crate::cloud::Provider, nic: &NicRef) -> CloudError {
    CloudError {
        provider,
        action: "DescribeNetworkInterfaces".into(),
        code: "Client.Shutdown".into(),
        message: format!("the observer stopped before NIC {} was described", nic.id),
        http_status: None,
        request_id: None,
        class: crate::cloud::ErrorClass::Transient,
        outcome: crate::cloud::Outcome::NotSent,
    }
}
