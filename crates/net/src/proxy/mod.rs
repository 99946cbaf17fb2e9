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

/// What the watches have shown, and what was last written.
#[derive(Default)]
struct State {
    services: HashMap<Key, Service>,
    /// Slices by their Service, then by name.
    slices: HashMap<Key, HashMap<String, EndpointSlice>>,
    /// Lists in progress (a watch's first list, or a relist).
    listing_services: Option<HashMap<Key, Service>>,
    listing_slices: Option<HashMap<Key, HashMap<String, EndpointSlice>>>,
    listed: (bool, bool),
    dirty: HashSet<Key>,
    /// What the kernel holds, per Service.
    written: HashMap<Key, (Vec<ServicePortRules>, Fragment)>,
}

fn key_of(meta: &kube::api::ObjectMeta) -> Option<Key> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

fn slice_key(slice: &EndpointSlice) -> Option<(Key, String)> {
    let service = slice.metadata.labels.as_ref()?.get("kubernetes.io/service-name")?.clone();
    Some(((slice.metadata.namespace.clone()?, service), slice.metadata.name.clone()?))
}

impl State {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Service(Err(e)) | Change::Slice(Err(e)) => tracing::warn!("service proxy watch: {e}"),
            Change::Service(Ok(event)) => match event {
                watcher::Event::Init => self.listing_services = Some(HashMap::new()),
                watcher::Event::InitApply(s) => {
                    if let (Some(list), Some(key)) = (&mut self.listing_services, key_of(&s.metadata)) {
                        list.insert(key, s);
                    }
                }
                watcher::Event::InitDone => {
                    let listed = self.listing_services.take().unwrap_or_default();
                    self.dirty.extend(self.services.keys().cloned().chain(listed.keys().cloned()));
                    self.services = listed;
                    self.listed.0 = true;
                }
                watcher::Event::Apply(s) => {
                    if let Some(key) = key_of(&s.metadata) {
                        self.dirty.insert(key.clone());
                        self.services.insert(key, s);
                    }
                }
                watcher::Event::Delete(s) => {
                    if let Some(key) = key_of(&s.metadata) {
                        self.services.remove(&key);
                        self.dirty.insert(key);
                    }
                }
            },
            Change::Slice(Ok(event)) => match event {
                watcher::Event::Init => self.listing_slices = Some(HashMap::new()),
                watcher::Event::InitApply(s) => {
                    if let (Some(list), Some((key, name))) = (&mut self.listing_slices, slice_key(&s)) {
                        list.entry(key).or_default().insert(name, s);
                    }
                }
                watcher::Event::InitDone => {
                    let listed = self.listing_slices.take().unwrap_or_default();
                    self.dirty.extend(self.slices.keys().cloned().chain(listed.keys().cloned()));
                    self.slices = listed;
                    self.listed.1 = true;
                }
                watcher::Event::Apply(s) => {
                    if let Some((key, name)) = slice_key(&s) {
                        self.dirty.insert(key.clone());
                        self.slices.entry(key).or_default().insert(name, s);
                    }
                }
                watcher::Event::Delete(s) => {
                    if let Some((key, name)) = slice_key(&s) {
                        if let Some(slices) = self.slices.get_mut(&key) {
                            slices.remove(&name);
                            if slices.is_empty() {
                                self.slices.remove(&key);
                            }
                        }
                        self.dirty.insert(key);
                    }
                }
            },
        }
    }
}

impl Proxy {
    fn ports(&self, state: &State, key: &Key) -> Vec<ServicePortRules> {
        if self.local_services.contains(key) {
            return Vec::new();
        }
        let Some(service) = state.services.get(key) else { return Vec::new() };
        let slices: Vec<&EndpointSlice> = state.slices.get(key).map(|s| s.values().collect()).unwrap_or_default();
        model::service_ports(service, &slices, &self.node_name, self.service_lb)
    }

    /// Follows Services and EndpointSlices for ever.
    pub async fn run(&self, client: kube::Client) -> Result<()> {
        let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff().map(Change::Service);
        let slices = watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()).default_backoff().map(Change::Slice);
        let mut changes = std::pin::pin!(futures::stream::select(services, slices));
        let mut state = State::default();
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
            if state.listed != (true, true) || (state.dirty.is_empty() && !whole) {
                continue;
            }
            let started = Instant::now();
            let keys: Vec<Key> = if whole {
                state.dirty.clear();
                state.services.keys().chain(state.written.keys()).cloned().collect::<HashSet<_>>().into_iter().collect()
            } else {
                state.dirty.drain().collect()
            };
            let mut script = String::new();
            if whole {
                script.push_str(&format!("add table ip {t}\ndelete table ip {t}\n", t = rules::TABLE));
                script.push_str(&rules::base(&self.node));
            }
            let mut next = Vec::with_capacity(keys.len());
            for key in keys {
                let ports = self.ports(&state, &key);
                let fragment = rules::fragment(&ports, &self.node);
                let empty = (Vec::new(), Fragment::default());
                let (old_ports, old) = if whole { &empty } else { state.written.get(&key).unwrap_or(&empty) };
                rules::diff(old, &fragment, &mut script);
                // After a restart what the kernel held is unknown: its UDP
                // flows are left alone rather than cut.
                let stale = if whole { Vec::new() } else { conntrack::stale_udp(old_ports, &ports) };
                next.push((key, ports, fragment, stale));
            }
            let applied = tokio::task::spawn_blocking(move || nft::apply(&script)).await?;
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
            tracing::debug!(services = changed, took = ?started.elapsed(), "service proxy synced");
            if !flows.is_empty() {
                tokio::task::spawn_blocking(move || conntrack::delete(&flows));
            }
        }
    }
}

/// Removes the proxy's table.
pub fn clean_up() -> Result<()> {
    nft::delete_table("ip", rules::TABLE)
}
