//! Watch caches the controllers share, so that no decision LISTs a whole namespace on a timer:
//! one reflector per kind a frequent decision reads beside its own object (Switchovers, read
//! by every PgCluster reconcile), started with the [`Context`](crate::runtime::context::Context),
//! read through [`Caches`]. A reader waits (bounded) for the first full list, so an empty cache
//! is never mistaken for "nothing there". Decisions taken once per backup that a cache one
//! event behind would get wrong (the queue, retention) read fresh
//! ([`list_now`](crate::runtime::list_now)).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::config::RunArgs;
use crate::crd::Switchover;
use crate::error::{Error, Result};

/// How long a reader waits for a cache's first full list before the reconcile fails (and is
/// retried with backoff): the apiserver normally answers in milliseconds.
const SYNC_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Caches {
    switchovers: Cache<Switchover>,
}

impl Caches {
    /// Starts the reflectors on the current tokio runtime; they run as long as it does,
    /// re-listing with backoff after a broken watch.
    pub fn start(client: &Client, config: &RunArgs) -> Self {
        Self { switchovers: Cache::start(client, config, "Switchover") }
    }

    /// The Switchovers of `namespace`, from the cache.
    pub async fn switchovers(&self, namespace: &str) -> Result<Vec<Arc<Switchover>>> {
        self.switchovers.in_namespace(namespace).await
    }
}

/// One kind's reflector.
#[derive(Clone)]
struct Cache<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    kind: &'static str,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    fn start(client: &Client, config: &RunArgs, kind: &'static str) -> Self {
        let (store, writer) = reflector::store();
        let api = super::api::scoped::<K>(client, config);
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        tokio::spawn(stream.for_each(move |event| async move {
            if let Err(error) = event {
                warn!(%error, kind, "watch failed; retrying");
            }
        }));
        Self { store, kind }
    }

    async fn in_namespace(&self, namespace: &str) -> Result<Vec<Arc<K>>> {
        match tokio::time::timeout(SYNC_WAIT, self.store.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => return Err(Error::CacheNotSynced { kind: self.kind }),
        }
        Ok(self
            .store
            .state()
            .into_iter()
            .filter(|object| object.namespace().as_deref() == Some(namespace))
            .collect())
    }
}
