//! The cluster's network flags, as k3s names them, on `skiff server`.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use skiff_net::cluster::{Backend, BgpPeer, ClusterNetwork};

/// What `--disable` turns off (k3s's names for its packaged components).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// Cluster DNS.
    Coredns,
    /// LoadBalancer Services answered on node IPs.
    Servicelb,
    /// The built-in storage classes, `local-path` (the default) and `local-disk`.
    LocalStorage,
}

#[derive(clap::Args, Clone)]
pub struct NetworkFlags {
    /// How pods reach pods on other nodes: vxlan, host-gw, bgp or none.
    #[arg(long, default_value = "vxlan", value_parser = |s: &str| s.parse::<Backend>())]
    flannel_backend: Backend,
    /// The cluster DNS Service's IP, inside --service-cidr.
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: Ipv4Addr,
    /// The domain cluster names live under.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Do not run the service proxy on the nodes.
    #[arg(long)]
    disable_kube_proxy: bool,
    /// Components not to run (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    disable: Vec<Component>,
    /// Do not enforce NetworkPolicy on the nodes (k3s's flag).
    #[arg(long)]
    disable_network_policy: bool,
    /// Every node serves the images it holds to the others, which pull
    /// from it before the registry (k3s's embedded registry mirror).
    #[arg(long)]
    embedded_registry: bool,
    /// The nodes' AS number (bgp backend).
    #[arg(long, default_value_t = 64512)]
    bgp_asn: u32,
    /// A router outside the cluster every node peers with (bgp backend), `ADDRESS:ASN`; repeatable.
    #[arg(long = "bgp-peer", value_parser = |s: &str| s.parse::<BgpPeer>())]
    bgp_peers: Vec<BgpPeer>,
}

impl NetworkFlags {
    /// Whether a packaged component runs (is not `--disable`d).
    pub fn enabled(&self, component: Component) -> bool {
        !self.disable.contains(&component)
    }

    pub fn cluster(&self, cluster_cidr: &str, service_cidr: &str) -> Result<ClusterNetwork> {
        let cluster = ClusterNetwork {
            backend: self.flannel_backend,
            cluster_cidr: cluster_cidr.parse().context("--cluster-cidr")?,
            service_cidr: service_cidr.parse().context("--service-cidr")?,
            cluster_dns: self.cluster_dns,
            cluster_domain: self.cluster_domain.trim_end_matches('.').to_string(),
            proxy: !self.disable_kube_proxy,
            dns: !self.disable.contains(&Component::Coredns),
            service_lb: !self.disable.contains(&Component::Servicelb),
            embedded_registry: self.embedded_registry,
            network_policy: !self.disable_network_policy,
            bgp_asn: self.bgp_asn,
            bgp_peers: self.bgp_peers.clone(),
        };
        anyhow::ensure!(cluster.service_cidr.contains(&cluster.cluster_dns), "--cluster-dns {} is outside --service-cidr {}", cluster.cluster_dns, cluster.service_cidr);
        Ok(cluster)
    }
}
