//! The service proxy (upstream's kube-proxy, nftables mode): Services and
//! EndpointSlices in, one nftables transaction per change out, holding only
//! what changed. Stale UDP flows to endpoints that went away are deleted
//! from conntrack.

mod conntrack;
pub mod model;
pub mod rules;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};

use crate::nft;
use model::ServicePortRules;
use rules::{Fragment, NodeContext};

/// A Service by namespace and name.
pub type Key = (String, String);

pub struct Proxy {
    pub node_name: String,
    pub node: NodeContext,
    /// LoadBalancer ingress IPs are answered (ServiceLB is on).
    pub service_lb: bool,
    /// Services answered on this node itself (the cluster DNS): no rules.
    pub local_services: HashSet<Key>,
}

// Short-lived, one at a time: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Change {
    Service(watcher::Result<watcher::Event<Service>>),
    Slice(watcher::Result<watcher::Event<EndpointSlice>>),
}

/// One kind's objects as its watch shows them, grouped by the Service
/// they belong to, then by name.
struct Watched<T> {
    objects: HashMap<Key, HashMap<String, T>>,
    /// A list in progress (the watch's first, or a relist).
    listing: Option<HashMap<Key, HashMap<String, T>>>,
    listed: bool,
    /// Where an object belongs: its Service and its own name.
    locate: fn(&T) -> Option<(Key, String)>,
}

impl<T> Watched<T> {
    fn new(locate: fn(&T) -> Option<(Key, String)>) -> Self {
        Watched { objects: HashMap::new(), listing: None, listed: false, locate }
    }

    /// Takes one event; the Services it touched become `dirty`.
    fn apply(&mut self, event: watcher::Event<T>, dirty: &mut HashSet<Key>) {
        match event {
            watcher::Event::Init => self.listing = Some(HashMap::new()),
            watcher::Event::InitApply(object) => {
                if let (Some(list), Some((key, name))) = (&mut self.listing, (self.locate)(&object)) {
                    list.entry(key).or_default().insert(name, object);
                }
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                dirty.extend(self.objects.keys().chain(listed.keys()).cloned());
                self.objects = listed;
                self.listed = true;
            }
            watcher::Event::Apply(object) => {
                if let Some((key, name)) = (self.locate)(&object) {
                    dirty.insert(key.clone());
                    self.objects.entry(key).or_default().insert(name, object);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some((key, name)) = (self.locate)(&object) {
                    if let Some(group) = self.objects.get_mut(&key) {
                        group.remove(&name);
                        if group.is_empty() {
                            self.objects.remove(&key);
                        }
                    }
                    dirty.insert(key);
                }
            }
        }
    }
}

/// What the watches have shown, and what was last written.
struct State {
    services: Watched<Service>,
    slices: Watched<EndpointSlice>,
    dirty: HashSet<Key>,
    /// What the kernel holds, per Service.
    written: HashMap<Key, (Vec<ServicePortRules>, Fragment)>,
}

/// A Service is the only member of its own group.
fn service_key(service: &Service) -> Option<(Key, String)> {
    Some(((service.metadata.namespace.clone()?, service.metadata.name.clone()?), String::new()))
}

fn slice_key(slice: &EndpointSlice) -> Option<(Key, String)> {
    let service = slice.metadata.labels.as_ref()?.get("kubernetes.io/service-name")?.clone();
    Some(((slice.metadata.namespace.clone()?, service), slice.metadata.name.clone()?))
}

impl State {
    fn new() -> State {
        State { services: Watched::new(service_key), slices: Watched::new(slice_key), dirty: HashSet::new(), written: HashMap::new() }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Service(Err(e)) | Change::Slice(Err(e)) => tracing::warn!("service proxy watch: {e}"),
            Change::Service(Ok(event)) => self.services.apply(event, &mut self.dirty),
            Change::Slice(Ok(event)) => self.slices.apply(event, &mut self.dirty),
        }
    }
}

impl Proxy {
    fn ports(&self, state: &State, key: &Key) -> Vec<ServicePortRules> {
        if self.local_services.contains(key) {
            return Vec::new();
        }
        let Some(service) = state.services.objects.get(key).and_then(|group| group.values().next()) else { return Vec::new() };
        let slices: Vec<&EndpointSlice> = state.slices.objects.get(key).map(|s| s.values().collect()).unwrap_or_default();
        model::service_ports(service, &slices, &self.node_name, self.service_lb)
    }

    /// Follows Services and EndpointSlices for ever.
    pub async fn run(&self, client: kube::Client) -> Result<()> {
        let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff().map(Change::Service);
        let slices = watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()).default_backoff().map(Change::Slice);
        let mut changes = std::pin::pin!(futures::stream::select(services, slices));
        let mut state = State::new();
        // The first write replaces whatever an earlier run left, in one
        // transaction, so established flows never see an empty table.
        let mut whole = true;
        // A failed write is tried again without waiting for another change.
        let mut retry = false;
        loop {
            if !retry {
                let Some(change) = changes.next().await else { bail!("the service proxy's watches ended") };
                state.apply(change);
            }
            retry = false;
            // Everything already waiting goes into the same transaction.
            while let Some(Some(change)) = changes.next().now_or_never() {
                state.apply(change);
            }
            if !state.services.listed || !state.slices.listed || (state.dirty.is_empty() && !whole) {
                continue;
            }
            let started = Instant::now();
            let keys: Vec<Key> = if whole {
                state.dirty.clear();
                state.services.objects.keys().chain(state.written.keys()).cloned().collect::<HashSet<_>>().into_iter().collect()
            } else {
                state.dirty.drain().collect()
            };
            let mut changes = Vec::new();
            let mut next = Vec::with_capacity(keys.len());
            for key in keys {
                let ports = self.ports(&state, &key);
                let fragment = rules::fragment(&ports, &self.node);
                let empty = (Vec::new(), Fragment::default());
                let (old_ports, old) = if whole { &empty } else { state.written.get(&key).unwrap_or(&empty) };
                rules::diff(&rules::shard_table(&key.0, &key.1), old, &fragment, &mut changes);
                // After a restart what the kernel held is unknown: its UDP
                // flows are left alone rather than cut.
                let stale = if whole { Vec::new() } else { conntrack::stale_udp(old_ports, &ports) };
                next.push((key, ports, fragment, stale));
            }
            // The whole table goes through `nft`; a change, straight to the
            // kernel, which spares reading the table back first.
            let applied = if whole {
                let mut script = rules::whole(&self.node);
                rules::script(&changes, &mut script);
                tokio::task::spawn_blocking(move || nft::apply(&script)).await?
            } else {
                let batch = rules::batch(&changes);
                tokio::task::spawn_blocking(move || batch.commit()).await?
            };
            if let Err(e) = applied {
                tracing::error!("service proxy: {e:#}; writing the whole table again");
                state.dirty.extend(next.into_iter().map(|(key, ..)| key));
                whole = true;
                retry = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let (mut changed, mut flows) = (0, Vec::new());
            for (key, ports, fragment, stale) in next {
                changed += 1;
                flows.extend(stale);
                if ports.is_empty() {
                    state.written.remove(&key);
                } else {
                    state.written.insert(key, (ports, fragment));
                }
            }
            whole = false;
            crate::metrics::proxy_synced(started.elapsed());
            tracing::debug!(services = changed, took = ?started.elapsed(), "service proxy synced");
            if !flows.is_empty() {
                tokio::task::spawn_blocking(move || conntrack::delete(&flows));
            }
        }
    }
}

/// Removes the proxy's tables.
pub fn clean_up() -> Result<()> {
    rules::tables().iter().try_for_each(|table| nft::delete_table("ip", table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, service: &str) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "ns", "labels": {"kubernetes.io/service-name": service}}, "addressType": "IPv4", "endpoints": []})).unwrap()
    }

    #[test]
    fn a_relist_replaces_what_the_watch_showed_and_dirties_both() {
        let mut dirty = HashSet::new();
        let mut slices = Watched::new(slice_key);
        slices.apply(watcher::Event::Apply(slice("a-1", "a")), &mut dirty);
        slices.apply(watcher::Event::Apply(slice("a-2", "a")), &mut dirty);
        assert_eq!(slices.objects[&("ns".to_string(), "a".to_string())].len(), 2);
        dirty.clear();
        slices.apply(watcher::Event::Init, &mut dirty);
        slices.apply(watcher::Event::InitApply(slice("b-1", "b")), &mut dirty);
        assert!(dirty.is_empty() && slices.objects.len() == 1, "nothing changes until the list is whole");
        slices.apply(watcher::Event::InitDone, &mut dirty);
        let key = |s: &str| ("ns".to_string(), s.to_string());
        assert_eq!(dirty, [key("a"), key("b")].into());
        assert!(slices.listed && slices.objects.keys().eq([&key("b")]));
        slices.apply(watcher::Event::Delete(slice("b-1", "b")), &mut dirty);
        assert!(slices.objects.is_empty());
    }
}
