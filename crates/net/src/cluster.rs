//! The cluster's network settings, chosen on the server and learned by every
//! agent from one ConfigMap (`kube-system/skiff-network`), as kubeadm
//! shares the kubelet's and kube-proxy's configuration: a node never needs
//! a flag of its own to agree with the rest of the cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams};

pub const NAMESPACE: &str = "kube-system";
pub const CONFIG_MAP: &str = "skiff-network";
/// The Role (and binding) that lets every node read it.
const READER: &str = "skiff:network-reader";
pub const DNS_SERVICE: &str = "kube-dns";

/// How pods reach pods on other nodes (`--flannel-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// flannel's VXLAN overlay: `flannel.1`, VNI 1, UDP 8472.
    Vxlan,
    /// Plain routes `podCIDR via nodeIP`, for nodes on one L2 segment.
    HostGw,
    /// Plain routes learned over BGP (BIRD), as Calico does.
    Bgp,
    /// No routes between nodes: another network plugin's job.
    None,
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(text: &str) -> Result<Backend, String> {
        match text {
            "vxlan" => Ok(Backend::Vxlan),
            "host-gw" => Ok(Backend::HostGw),
            "bgp" => Ok(Backend::Bgp),
            "none" => Ok(Backend::None),
            other => Err(format!("unknown flannel backend {other:?}: vxlan, host-gw, bgp or none")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
            Backend::Bgp => "bgp",
            Backend::None => "none",
        })
    }
}

/// An outside BGP router the nodes peer with (`--bgp-peer ADDRESS:ASN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpPeer {
    pub address: IpAddr,
    pub asn: u32,
}

impl FromStr for BgpPeer {
    type Err = String;
    fn from_str(text: &str) -> Result<BgpPeer, String> {
        let (address, asn) = text.rsplit_once(':').ok_or_else(|| format!("{text:?} is not ADDRESS:ASN"))?;
        let address = address.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| format!("{address:?} is not an IP address"))?;
        let asn = asn.parse().map_err(|_| format!("{asn:?} is not an AS number"))?;
        Ok(BgpPeer { address, asn })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    pub backend: Backend,
    pub cluster_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// The `kube-dns` Service's ClusterIP, which every node answers on.
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// The service proxy (off with `--disable-kube-proxy`).
    pub proxy: bool,
    /// Cluster DNS (off with `--disable coredns`).
    pub dns: bool,
    /// LoadBalancer Services answered on node IPs (off with `--disable servicelb`).
    pub service_lb: bool,
    /// The nodes' AS number and the routers outside they peer with.
    pub bgp_asn: u32,
    pub bgp_peers: Vec<BgpPeer>,
    /// Nodes serve their images to one another (`--embedded-registry`).
    pub embedded_registry: bool,
    /// NetworkPolicy is enforced on every node (off with `--disable-network-policy`).
    pub network_policy: bool,
}

impl ClusterNetwork {
    pub fn to_data(&self) -> BTreeMap<String, String> {
        let peers: Vec<String> = self.bgp_peers.iter().map(|p| format!("{}:{}", p.address, p.asn)).collect();
        [
            ("backend", self.backend.to_string()),
            ("cluster-cidr", self.cluster_cidr.to_string()),
            ("service-cidr", self.service_cidr.to_string()),
            ("cluster-dns", self.cluster_dns.to_string()),
            ("cluster-domain", self.cluster_domain.clone()),
            ("kube-proxy", self.proxy.to_string()),
            ("dns", self.dns.to_string()),
            ("servicelb", self.service_lb.to_string()),
            ("embedded-registry", self.embedded_registry.to_string()),
            ("network-policy", self.network_policy.to_string()),
            ("bgp-asn", self.bgp_asn.to_string()),
            ("bgp-peers", peers.join(",")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub fn from_data(data: &BTreeMap<String, String>) -> Result<ClusterNetwork> {
        let get = |key: &str| data.get(key).map(String::as_str).with_context(|| format!("{CONFIG_MAP} has no {key:?}"));
        let flag = |key: &str| get(key).map(|v| v == "true");
        let parse = |key: &str| -> Result<_> { get(key)?.parse::<Ipv4Net>().with_context(|| format!("{CONFIG_MAP} {key}")) };
        Ok(ClusterNetwork {
            backend: get("backend")?.parse().map_err(anyhow::Error::msg)?,
            cluster_cidr: parse("cluster-cidr")?,
            service_cidr: parse("service-cidr")?,
            cluster_dns: get("cluster-dns")?.parse().context("cluster-dns")?,
            cluster_domain: get("cluster-domain")?.to_string(),
            proxy: flag("kube-proxy")?,
            dns: flag("dns")?,
            service_lb: flag("servicelb")?,
            // Absent from a server older than the setting: off.
            embedded_registry: flag("embedded-registry").unwrap_or(false),
            network_policy: flag("network-policy").unwrap_or(false),
            bgp_asn: get("bgp-asn")?.parse().context("bgp-asn")?,
            bgp_peers: get("bgp-peers")?.split(',').filter(|p| !p.is_empty()).map(|p| p.parse().map_err(anyhow::Error::msg)).collect::<Result<_>>()?,
        })
    }

    /// Writes the settings for the agents (the server does, at each start),
    /// lets nodes read them, and declares the `kube-dns` Service every
    /// node answers for.
    pub async fn publish(&self, client: kube::Client) -> Result<()> {
        let apply = PatchParams::apply("skiff-server").force();
        let config_map = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
            "data": self.to_data(),
        });
        let role = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": READER, "namespace": NAMESPACE},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [CONFIG_MAP], "verbs": ["get", "list", "watch"]}],
        });
        let binding = serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": READER, "namespace": NAMESPACE},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READER},
            // Nodes, and the controller manager for ServiceLB.
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}, {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-controller-manager"}],
        });
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE).patch(CONFIG_MAP, &apply, &Patch::Apply(config_map)).await.context("publishing the cluster's network settings")?;
        Api::<Role>::namespaced(client.clone(), NAMESPACE).patch(READER, &apply, &Patch::Apply(role)).await.context("the role reading the network settings")?;
        Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE).patch(READER, &apply, &Patch::Apply(binding)).await.context("the nodes' binding to it")?;
        if self.dns {
            self.publish_dns_service(client).await?;
        }
        Ok(())
    }

    /// `kube-system/kube-dns`, as k3s's CoreDNS manifest declares it, but
    /// without a selector: every node answers on its ClusterIP itself.
    async fn publish_dns_service(&self, client: kube::Client) -> Result<()> {
        let ip = self.cluster_dns.to_string();
        let service = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": DNS_SERVICE, "namespace": NAMESPACE, "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"}},
            "spec": {
                "clusterIP": ip, "clusterIPs": [ip],
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        });
        let services: Api<Service> = Api::namespaced(client, NAMESPACE);
        match services.get_opt(DNS_SERVICE).await? {
            // A ClusterIP cannot change: a Service made for another
            // --cluster-dns is made again.
            Some(old) if old.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) != Some(ip.as_str()) => {
                services.delete(DNS_SERVICE, &Default::default()).await?;
            }
            _ => {}
        }
        services.patch(DNS_SERVICE, &PatchParams::apply("skiff-server").force(), &Patch::Apply(service)).await.with_context(|| format!("declaring the {DNS_SERVICE} Service at {ip} (is --cluster-dns inside --service-cidr?)"))?;
        Ok(())
    }

    /// The settings' ConfigMap data, if a server has written it.
    async fn data(client: kube::Client) -> kube::Result<Option<BTreeMap<String, String>>> {
        let config_maps: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);
        Ok(config_maps.get_opt(CONFIG_MAP).await?.map(|m| m.data.unwrap_or_default()))
    }

    /// The settings, if a server has written them; no waiting.
    pub async fn read(client: kube::Client) -> Result<Option<ClusterNetwork>> {
        let data = ClusterNetwork::data(client).await.with_context(|| format!("reading {NAMESPACE}/{CONFIG_MAP}"))?;
        data.map(|d| ClusterNetwork::from_data(&d)).transpose()
    }

    /// Reads the settings, waiting for a server to have written them.
    pub async fn fetch(client: kube::Client) -> Result<ClusterNetwork> {
        let mut waited = Duration::ZERO;
        loop {
            match ClusterNetwork::data(client.clone()).await {
                Ok(Some(data)) => return ClusterNetwork::from_data(&data),
                Ok(None) if waited < Duration::from_secs(60) => {}
                Ok(None) => bail!("{NAMESPACE}/{CONFIG_MAP} is missing: is the server a Skiff server?"),
                Err(e) if waited < Duration::from_secs(60) => tracing::debug!("reading {CONFIG_MAP}: {e}"),
                Err(e) => return Err(e).context("reading the cluster's network settings"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            waited += Duration::from_millis(250);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_the_config_map() {
        let network = ClusterNetwork {
            backend: Backend::HostGw,
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            service_cidr: "10.43.0.0/16".parse().unwrap(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            proxy: true,
            dns: false,
            service_lb: true,
            embedded_registry: true,
            network_policy: true,
            bgp_asn: 64512,
            bgp_peers: vec!["192.0.2.1:64513".parse().unwrap(), "[2001:db8::1]:65000".parse().unwrap()],
        };
        assert_eq!(ClusterNetwork::from_data(&network.to_data()).unwrap(), network);
    }

    #[test]
    fn bad_settings_are_named() {
        assert!("gre".parse::<Backend>().unwrap_err().contains("vxlan, host-gw, bgp or none"));
        assert!("192.0.2.1".parse::<BgpPeer>().unwrap_err().contains("ADDRESS:ASN"));
        assert!("192.0.2.1:x".parse::<BgpPeer>().unwrap_err().contains("AS number"));
    }
}
