//! Keeps the index up to date from the API: watches of Services,
//! EndpointSlices and Namespaces applied as they come (a change shows in
//! the next answer), without a reflector's store, so that only the
//! index's compact form of each object stays in memory.

use std::collections::HashSet;
use std::fmt::Debug;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::records::{key, Listed, Records};
use super::server::Shared;

/// How the index takes one kind of object.
trait Indexed: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + 'static {
    const LISTED: Listed;
    fn key(&self) -> String;
    fn apply(&self, records: &mut Records);
    fn delete(&self, records: &mut Records);
    fn retain(records: &mut Records, keep: &HashSet<String>);
}

impl Indexed for Service {
    const LISTED: Listed = Listed::Services;
    fn key(&self) -> String {
        key(&self.namespace().unwrap_or_default(), &self.name_any())
    }
    fn apply(&self, records: &mut Records) {
        records.apply_service(self);
    }
    fn delete(&self, records: &mut Records) {
        records.delete_service(&self.namespace().unwrap_or_default(), &self.name_any());
    }
    fn retain(records: &mut Records, keep: &HashSet<String>) {
        records.retain_services(|k| keep.contains(k));
    }
}

impl Indexed for EndpointSlice {
    const LISTED: Listed = Listed::EndpointSlices;
    fn key(&self) -> String {
        key(&self.namespace().unwrap_or_default(), &self.name_any())
    }
    fn apply(&self, records: &mut Records) {
        records.apply_endpoint_slice(self);
    }
    fn delete(&self, records: &mut Records) {
        records.delete_endpoint_slice(&self.namespace().unwrap_or_default(), &self.name_any());
    }
    fn retain(records: &mut Records, keep: &HashSet<String>) {
        records.retain_endpoint_slices(|k| keep.contains(k));
    }
}

impl Indexed for Namespace {
    const LISTED: Listed = Listed::Namespaces;
    fn key(&self) -> String {
        self.name_any().to_ascii_lowercase()
    }
    fn apply(&self, records: &mut Records) {
        records.apply_namespace(&self.name_any());
    }
    fn delete(&self, records: &mut Records) {
        records.delete_namespace(&self.name_any());
    }
    fn retain(records: &mut Records, keep: &HashSet<String>) {
        records.retain_namespaces(|k| keep.contains(k));
    }
}

/// Feeds the index from the API for ever (each watch retries with backoff).
pub async fn watch(client: kube::Client, records: Shared) -> anyhow::Result<()> {
    let services = watch_all(Api::<Service>::all(client.clone()));
    let slices = watch_all(Api::<EndpointSlice>::all(client.clone()));
    let namespaces = watch_all(Api::<Namespace>::all(client));
    tokio::join!(apply(services, &records), apply(slices, &records), apply(namespaces, &records));
    anyhow::bail!("the DNS watches ended")
}

fn watch_all<K: Indexed>(api: Api<K>) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send {
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

/// Applies one watch's events. A relist (Init … InitDone) applies objects
/// as they come and then drops those it did not list.
async fn apply<K: Indexed>(events: impl Stream<Item = Result<Event<K>, watcher::Error>>, records: &Shared) {
    let mut listed: Option<HashSet<String>> = None;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(kind = %K::kind(&()), error = %e, "DNS watch failed; retrying");
                continue;
            }
        };
        let mut records = records.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Apply(object) => object.apply(&mut records),
            Event::Delete(object) => object.delete(&mut records),
            Event::Init => listed = Some(HashSet::new()),
            Event::InitApply(object) => {
                object.apply(&mut records);
                listed.get_or_insert_with(HashSet::new).insert(object.key());
            }
            Event::InitDone => {
                K::retain(&mut records, &listed.take().unwrap_or_default());
                records.mark_listed(K::LISTED);
            }
        }
    }
}
