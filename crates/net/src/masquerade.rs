//! The node's NAT for pod traffic, as flannel sets it up: pods reach pods
//! with their own addresses; what leaves the cluster goes out with the
//! node's address; what reaches other nodes' pods from outside the cluster
//! is masqueraded so the answer comes back the same way.

use anyhow::Result;
use ipnet::Ipv4Net;

use crate::nft;

pub const TABLE: &str = "skiff-net";

/// The table's whole content; written again at every start (it is small).
pub fn rules(cluster: Ipv4Net, pod_cidr: Ipv4Net) -> String {
    format!(
        "table ip {TABLE} {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {cluster} ip daddr {cluster} return
    ip saddr {cluster} ip daddr != 224.0.0.0/4 masquerade fully-random
    ip saddr != {cluster} ip daddr {pod_cidr} return
    ip saddr != {cluster} ip daddr {cluster} masquerade fully-random
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr {cluster} accept
    ip daddr {cluster} accept
  }}
}}
"
    )
}

pub fn apply(cluster: Ipv4Net, pod_cidr: Ipv4Net) -> Result<()> {
    nft::apply(&format!("{}{}", nft::fresh_table("ip", TABLE), rules(cluster, pod_cidr)))
}

pub fn remove() -> Result<()> {
    nft::delete_table("ip", TABLE)
}
