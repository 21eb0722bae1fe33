//! Watch caches the controllers share, so that no decision LISTs a whole namespace on a timer:
//! one reflector per kind, started with the [`Context`](crate::runtime::context::Context), read through
//! [`Caches`]. A reader waits (bounded) for the first full list, so an empty cache is never
//! mistaken for "nothing there".

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::ResourceExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tracing::warn;

use crate::config::RunArgs;
use crate::crd::Switchover;
use crate::error::{Error, Result};

/// How long a reader waits for a cache's first full list before the reconcile fails (and is
/// retried with backoff): the apiserver normally answers in milliseconds.
const SYNC_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Caches {
    switchovers: Store<Switchover>,
}

impl Caches {
    /// Starts the reflectors on the current tokio runtime; they run as long as it does,
    /// re-listing with backoff after a broken watch.
    pub fn start(client: &Client, config: &RunArgs) -> Self {
        let (switchovers, writer) = reflector::store();
        let api = super::scoped::<Switchover>(client, config);
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        tokio::spawn(stream.for_each(|event| async move {
            if let Err(error) = event {
                warn!(%error, "Switchover watch failed; retrying");
            }
        }));
        Self { switchovers }
    }

    /// The Switchovers of `namespace`, from the cache.
    pub async fn switchovers(&self, namespace: &str) -> Result<Vec<Arc<Switchover>>> {
        match tokio::time::timeout(SYNC_WAIT, self.switchovers.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => return Err(Error::CacheNotSynced { kind: "Switchover" }),
        }
        Ok(self
            .switchovers
            .state()
            .into_iter()
            .filter(|so| so.namespace().as_deref() == Some(namespace))
            .collect())
    }
}
