//! The node's network, run by every agent: routes to other nodes' pods
//! (VXLAN overlay, plain L3 routes or BGP), the service proxy (nftables)
//! and cluster DNS. Like the kubelet, an API client only.

pub mod dns;
