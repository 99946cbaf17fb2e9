//! flannel's VXLAN backend: one device, `flannel.1` (VNI 1, UDP 8472,
//! no learning), holding the network address of this node's pod CIDR.
//! Each peer gets three entries: a route to its pod CIDR through its
//! device's address, that address's MAC (ARP), and where frames for that
//! MAC go (FDB: the peer's public IP).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::AddressFamily;

use super::Peer;
use crate::netlink::{self, Netlink, Route};

pub const DEVICE: &str = "flannel.1";
pub const VNI: u32 = 1;
/// Linux's VXLAN port as flannel uses it (not IANA's 4789).
pub const PORT: u16 = 8472;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const OVERHEAD: u32 = 50;

pub struct Vtep {
    pub index: u32,
    pub mac: Vec<u8>,
}

/// The VTEP MAC in a peer's `backend-data` annotation.
pub fn mac_of(backend_data: &str) -> Option<String> {
    let data: serde_json::Value = serde_json::from_str(backend_data).ok()?;
    let mac = data["VtepMAC"].as_str()?;
    netlink::parse_mac(mac).map(|_| mac.to_string())
}

impl Vtep {
    /// The device, made if missing or made for another address; kept
    /// otherwise, so that a restarted agent does not cut pods' traffic.
    pub async fn ensure(netlink: &Netlink, local: Ipv4Addr, underlay: u32, underlay_mtu: u32, pod_cidr: Ipv4Net) -> Result<Vtep> {
        if let Some(link) = netlink.link(DEVICE).await? {
            if local_of(&link) != Some(local) {
                netlink.delete_link(DEVICE).await?;
            }
        }
        let link = match netlink.link(DEVICE).await? {
            Some(link) => link,
            None => {
                let message = rtnetlink::LinkVxlan::new(DEVICE, VNI).dev(underlay).local(local).port(PORT).learning(false).mtu(underlay_mtu - OVERHEAD).up().build();
                netlink.handle().link().add(message).execute().await.with_context(|| format!("creating the VXLAN device {DEVICE} (does the kernel have VXLAN?)"))?;
                netlink.link(DEVICE).await?.context("the VXLAN device vanished")?
            }
        };
        let index = link.header.index;
        netlink.set_only_address(index, Ipv4Net::new(pod_cidr.network(), 32)?).await?;
        netlink.set_up(index).await?;
        let mac = netlink::mac(&link).context("the VXLAN device has no MAC")?;
        Ok(Vtep { index, mac })
    }

    /// This node's `flannel.alpha.coreos.com/backend-data`.
    pub fn backend_data(&self) -> String {
        serde_json::json!({"VNI": VNI, "VtepMAC": netlink::format_mac(&self.mac)}).to_string()
    }

    pub fn route(&self, peer: &Peer) -> Route {
        Route { destination: peer.pod_cidr, gateway: peer.pod_cidr.network(), link: self.index, onlink: true, protocol: crate::netlink::PROTOCOL.into() }
    }

    /// The ARP and FDB entries for exactly these peers.
    pub async fn sync_neighbours(&self, netlink: &Netlink, peers: &[Peer]) -> Result<()> {
        let macs: Vec<(&Peer, Vec<u8>)> = peers.iter().filter_map(|p| Some((p, netlink::parse_mac(p.vtep_mac.as_deref()?)?))).collect();
        let gateways: HashSet<IpAddr> = macs.iter().map(|(p, _)| IpAddr::V4(p.pod_cidr.network())).collect();
        for entry in netlink.neighbours(self.index, AddressFamily::Inet).await? {
            if netlink::neighbour_entry(&entry).0.is_none_or(|ip| !gateways.contains(&ip)) {
                netlink.delete_neighbour(entry).await?;
            }
        }
        let wanted: HashSet<&[u8]> = macs.iter().map(|(_, mac)| mac.as_slice()).collect();
        for entry in netlink.neighbours(self.index, AddressFamily::Bridge).await? {
            if netlink::neighbour_entry(&entry).1.is_none_or(|mac| !wanted.contains(mac.as_slice())) {
                netlink.delete_neighbour(entry).await?;
            }
        }
        for (peer, mac) in &macs {
            netlink.set_neighbour(self.index, peer.pod_cidr.network(), mac).await?;
            netlink.set_forwarding(self.index, mac, peer.address).await?;
        }
        Ok(())
    }
}

fn local_of(link: &LinkMessage) -> Option<Ipv4Addr> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|info| match info {
            LinkInfo::Data(InfoData::Vxlan(data)) => data.iter().find_map(|d| match d {
                InfoVxlan::Local(ip) => Some(*ip),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    }).filter(|_| link.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkInfo(i) if i.contains(&LinkInfo::Kind(InfoKind::Vxlan)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_s_mac_comes_from_its_backend_data() {
        assert_eq!(mac_of(r#"{"VNI":1,"VtepMAC":"0a:1b:2c:3d:4e:5f"}"#).as_deref(), Some("0a:1b:2c:3d:4e:5f"));
        assert_eq!(mac_of(r#"{"VNI":1,"VtepMAC":"nope"}"#), None);
        assert_eq!(mac_of("null"), None);
    }
}
