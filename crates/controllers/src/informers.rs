//! Shared informers: one watch and one in-memory copy per kind for all the
//! controllers, as client-go's shared informer factory, instead of a copy
//! per controller (pods are the largest kind; a copy per controller of
//! 150,000 pods would not fit the memory target).
//!
//! kube-runtime's own shared store (`store_shared`) does not tell its
//! subscribers about deletions, which the workload controllers must see
//! (a deleted pod is replaced), so the fan-out is this module's.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Changes a subscriber may fall behind by; one that falls further is
/// handed every object instead (a resync), so it misses nothing.
const BUFFER: usize = 1024;

pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    events: broadcast::Sender<Arc<K>>,
    task: JoinHandle<()>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching; the store is ready once the first list is in.
    /// managedFields are the bulk of a small object and no controller
    /// reads them: not kept (client-go informers trim them the same way).
    pub fn start(api: Api<K>) -> Self {
        Self::start_trimmed(api, |obj| obj.managed_fields_mut().clear())
    }

    /// Starts watching, keeping each object as `trim` leaves it.
    pub fn start_trimmed(api: Api<K>, trim: fn(&mut K)) -> Self {
        let (store, writer) = reflector::store();
        let (events, _) = broadcast::channel(BUFFER);
        let (sender, reader) = (events.clone(), store.clone());
        // Watched again from a fresh list if the watch ever ends or panics.
        let writer = Arc::new(std::sync::Mutex::new(writer));
        let name = format!("{} informer", K::plural(&()));
        let watch = move || {
            let (writer, sender, reader) = (writer.clone(), sender.clone(), reader.clone());
            watcher(api.clone(), watcher::Config::default()).default_backoff().modify(trim).for_each(move |event| {
                if let Ok(event) = event {
                    crate::common::lock(&writer).apply_watcher_event(&event);
                    let changed = match event {
                        watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => vec![Arc::new(obj)],
                        watcher::Event::InitDone => reader.state(),
                        watcher::Event::Init | watcher::Event::InitApply(_) => vec![],
                    };
                    for obj in changed {
                        let _ = sender.send(obj);
                    }
                }
                async {}
            })
        };
        let restarted = name.clone();
        let task = tokio::spawn(skiff_scheduler::crash::supervise(name, watch, move || crate::metrics::restarted(&restarted)));
        Informer { store, events, task }
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Each object as the watch changes it (its last state when deleted),
    /// once the store holds the change.
    pub fn subscribe(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (events, store) = (self.events.subscribe(), self.store.clone());
        stream::unfold((events, store), |(mut events, store)| async move {
            let batch = match events.recv().await {
                Ok(obj) => vec![obj],
                Err(broadcast::error::RecvError::Lagged(_)) => store.state(),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((stream::iter(batch), (events, store)))
        })
        .flatten()
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Drop for Informer<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until `store` holds its first list. kube-runtime 0.98's
/// `Store::wait_until_ready` keeps one waker (a oneshot channel's), so of
/// several tasks waiting at once only the last to poll is woken and the
/// others wait forever; each waiter here polls again every 50 ms.
pub async fn ready<K: Resource + Clone>(store: &Store<K>) -> Result<(), reflector::store::WriterDropped>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(done) = tokio::time::timeout(Duration::from_millis(50), store.wait_until_ready()).await {
            return done;
        }
    }
}

/// A controller for `K` that also reconciles every `K` of a namespace when
/// a pod there changes: Services (their endpoints), PodDisruptionBudgets
/// and ResourceQuotas select pods by labels a pod may stop matching, so
/// the pod's own event is the trigger.
pub fn on_pods_in_namespace<K>(client: &kube::Client, pods: &Informer<k8s_openapi::api::core::v1::Pod>) -> kube::runtime::Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let controller = kube::runtime::Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let objects = controller.store();
    controller.watches_shared_stream(pods.subscribe(), move |pod| {
        objects.state().into_iter().filter(|o| o.meta().namespace == pod.metadata.namespace).map(|o| kube::runtime::reflector::ObjectRef::from_obj(&*o)).collect::<Vec<_>>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    /// Every task waiting for a store's first list wakes when it is in,
    /// however many wait at once.
    #[tokio::test]
    async fn every_waiter_wakes_when_the_store_is_ready() {
        let (store, mut writer) = reflector::store::<Pod>();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { ready(&store).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for waiter in waiters {
            let woke = tokio::time::timeout(Duration::from_secs(2), waiter).await;
            assert!(matches!(woke, Ok(Ok(Ok(())))), "a waiter was never woken");
        }
    }
}
