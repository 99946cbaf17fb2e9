//! The kubelet's plugin watcher for CSI drivers.
//!
//! A driver (or its node-driver-registrar) puts a registration socket into
//! `plugins_registry`. The watcher asks it who it is (`GetInfo`), then asks
//! the driver itself (`NodeGetInfo`, capabilities), records the driver in
//! the node's CSINode, labels the Node with the driver's topology, and tells
//! the plugin it is registered. A socket that goes away unregisters it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSINode;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tonic::transport::Channel;

use crate::pb::csi::{self as csi, controller_client::ControllerClient, identity_client::IdentityClient, node_client::NodeClient};
use crate::pb::registration::{registration_client::RegistrationClient, InfoRequest, RegistrationStatus};

/// How often the registry directory is read: a new driver is found within this.
const SCAN: Duration = Duration::from_millis(500);

/// One registered driver: its channel and what it said of itself.
#[derive(Clone, Debug)]
pub struct Driver {
    pub name: String,
    pub endpoint: PathBuf,
    channel: Channel,
    /// The node's id as the driver knows it (NodeGetInfo).
    pub node_id: String,
    pub topology: BTreeMap<String, String>,
    /// Whether it serves the Controller service (CONTROLLER_SERVICE).
    pub controller: bool,
    /// Whether its controller attaches volumes to nodes (PUBLISH_UNPUBLISH_VOLUME).
    pub publishes: bool,
    /// Whether its controller tells the capacity left (GET_CAPACITY).
    pub reports_capacity: bool,
    /// Whether the node service stages before publishing (STAGE_UNSTAGE_VOLUME).
    pub stages: bool,
    /// Whether the node service grows filesystems (EXPAND_VOLUME).
    pub node_expands: bool,
}

impl Driver {
    /// Connects to a driver's own socket and learns what it does.
    pub async fn connect(name: &str, endpoint: &Path) -> Result<Driver> {
        let channel = crate::socket::channel(endpoint);
        let mut identity = IdentityClient::new(channel.clone());
        let info = identity.get_plugin_info(csi::GetPluginInfoRequest {}).await.context("GetPluginInfo")?.into_inner();
        if info.name != name {
            bail!("the driver at {} calls itself {:?}, not {name:?}", endpoint.display(), info.name);
        }
        use csi::plugin_capability::{service::Type as Service, Type};
        let plugin = identity.get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {}).await.context("GetPluginCapabilities")?.into_inner();
        let controller = plugin.capabilities.iter().any(|c| matches!(&c.r#type, Some(Type::Service(s)) if s.r#type() == Service::ControllerService));
        let controller_capabilities = match controller {
            true => ControllerClient::new(channel.clone()).controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {}).await.context("ControllerGetCapabilities")?.into_inner().capabilities,
            false => Vec::new(),
        };
        let controller_has = |want: csi::controller_service_capability::rpc::Type| {
            use csi::controller_service_capability::Type as Cap;
            controller_capabilities.iter().any(|c| matches!(&c.r#type, Some(Cap::Rpc(r)) if r.r#type() == want))
        };
        let publishes = controller_has(csi::controller_service_capability::rpc::Type::PublishUnpublishVolume);
        let reports_capacity = controller_has(csi::controller_service_capability::rpc::Type::GetCapacity);
        let mut node = NodeClient::new(channel.clone());
        let info = node.node_get_info(csi::NodeGetInfoRequest {}).await.context("NodeGetInfo")?.into_inner();
        let capabilities = node.node_get_capabilities(csi::NodeGetCapabilitiesRequest {}).await.context("NodeGetCapabilities")?.into_inner();
        use csi::node_service_capability::{rpc::Type as Rpc, Type as Cap};
        let has = |want: Rpc| capabilities.capabilities.iter().any(|c| matches!(&c.r#type, Some(Cap::Rpc(r)) if r.r#type() == want));
        Ok(Driver {
            name: name.to_string(),
            endpoint: endpoint.to_path_buf(),
            node_id: info.node_id,
            topology: info.accessible_topology.map(|t| t.segments.into_iter().collect()).unwrap_or_default(),
            controller,
            publishes,
            reports_capacity,
            stages: has(Rpc::StageUnstageVolume),
            node_expands: has(Rpc::ExpandVolume),
            channel,
        })
    }

    pub fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel.clone())
    }

    pub fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel.clone())
    }
}

/// The drivers registered on this node, by name.
#[derive(Clone, Default)]
pub struct Registry {
    drivers: Arc<RwLock<HashMap<String, Driver>>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Driver> {
        self.drivers.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    pub fn all(&self) -> Vec<Driver> {
        self.drivers.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// A driver by name, waiting up to `wait` for it to register (the
    /// kubelet may start before a driver it has pods for).
    pub async fn wait_for(&self, name: &str, wait: Duration) -> Result<Driver> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(driver) = self.get(name) {
                return Ok(driver);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("driver name {name} not found in the list of registered CSI drivers");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Watches `dir` for registration sockets, for as long as the process runs.
    pub async fn watch(self, client: kube::Client, node: String, dir: PathBuf) {
        // socket path → driver name, for the sockets registered so far.
        let mut known: HashMap<PathBuf, String> = HashMap::new();
        let mut failed: HashMap<PathBuf, tokio::time::Instant> = HashMap::new();
        let _ = std::fs::create_dir_all(&dir);
        loop {
            let sockets: Vec<PathBuf> = std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| is_socket(p)).collect();
            for socket in &sockets {
                let retry_at = failed.get(socket).copied();
                if known.contains_key(socket) || retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
                    continue;
                }
                match self.register(&client, &node, socket).await {
                    Ok(name) => {
                        tracing::info!(driver = name, "registered CSI driver");
                        failed.remove(socket);
                        known.insert(socket.clone(), name);
                    }
                    Err(e) => {
                        tracing::warn!(socket = %socket.display(), "registering a plugin: {e:#}");
                        failed.insert(socket.clone(), tokio::time::Instant::now() + Duration::from_secs(5));
                    }
                }
            }
            let gone: Vec<PathBuf> = known.keys().filter(|p| !sockets.contains(p)).cloned().collect();
            for socket in gone {
                if let Some(name) = known.remove(&socket) {
                    self.drivers.write().unwrap_or_else(|e| e.into_inner()).remove(&name);
                    if let Err(e) = update_csinode(&client, &node, &name, None).await {
                        tracing::warn!(driver = name, "unregistering from CSINode: {e:#}");
                    }
                    tracing::info!(driver = name, "unregistered CSI driver");
                }
            }
            tokio::time::sleep(SCAN).await;
        }
    }

    async fn register(&self, client: &kube::Client, node: &str, socket: &Path) -> Result<String> {
        let mut registration = RegistrationClient::new(crate::socket::channel(socket));
        let info = registration.get_info(InfoRequest {}).await.context("GetInfo")?.into_inner();
        let outcome = self.admit(client, node, &info).await;
        let status = RegistrationStatus { plugin_registered: outcome.is_ok(), error: outcome.as_ref().err().map(|e| format!("{e:#}")).unwrap_or_default() };
        // The plugin only hears about it; its answer changes nothing.
        let _ = registration.notify_registration_status(status).await;
        outcome.map(|()| info.name)
    }

    async fn admit(&self, client: &kube::Client, node: &str, info: &crate::pb::registration::PluginInfo) -> Result<()> {
        if info.r#type != "CSIPlugin" {
            bail!("plugin type {:?} is not handled here (only CSIPlugin)", info.r#type);
        }
        if !info.supported_versions.iter().any(|v| v.starts_with("1.") || v == "v1") {
            bail!("none of the plugin's versions {:?} is supported (CSI 1.x)", info.supported_versions);
        }
        let driver = Driver::connect(&info.name, Path::new(&info.endpoint)).await?;
        update_csinode(client, node, &driver.name, Some(&driver)).await?;
        self.drivers.write().unwrap_or_else(|e| e.into_inner()).insert(driver.name.clone(), driver);
        Ok(())
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Puts the driver into (or, with None, takes it out of) the node's CSINode;
/// a registered driver's topology keys also label the Node, and its node id
/// goes into the Node's `csi.volume.kubernetes.io/nodeid` annotation.
async fn update_csinode(client: &kube::Client, node: &str, name: &str, driver: Option<&Driver>) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let csinodes: Api<CSINode> = Api::all(client.clone());
    if let Some(driver) = driver {
        let current = nodes.get(node).await?;
        let mut ids: serde_json::Map<String, serde_json::Value> =
            current.metadata.annotations.as_ref().and_then(|a| a.get("csi.volume.kubernetes.io/nodeid")).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default();
        ids.insert(name.to_string(), json!(driver.node_id));
        let patch = json!({"metadata": {"labels": driver.topology, "annotations": {"csi.volume.kubernetes.io/nodeid": serde_json::to_string(&ids)?}}});
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(patch)).await.context("labelling the Node")?;
    }
    for _ in 0..5 {
        let entry = driver.map(|d| json!({"name": d.name, "nodeID": d.node_id, "topologyKeys": d.topology.keys().collect::<Vec<_>>()}));
        let result = match csinodes.get_opt(node).await? {
            None => {
                let Some(entry) = entry else { return Ok(()) };
                let owner = nodes.get(node).await?;
                let object: CSINode = serde_json::from_value(json!({
                    "metadata": {"name": node, "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": owner.metadata.uid}]},
                    "spec": {"drivers": [entry]},
                }))?;
                csinodes.create(&PostParams::default(), &object).await.map(drop)
            }
            Some(mut object) => {
                let mut drivers: Vec<serde_json::Value> = object.spec.drivers.iter().filter(|d| d.name != name).map(serde_json::to_value).collect::<Result<_, _>>()?;
                drivers.extend(entry);
                object.spec.drivers = serde_json::from_value(json!(drivers))?;
                csinodes.replace(node, &PostParams::default(), &object).await.map(drop)
            }
        };
        match result {
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            other => return other.context("writing the CSINode"),
        }
    }
    bail!("the CSINode kept changing")
}
