//! The kernel's routing tables, neighbours and links, over rtnetlink.
//!
//! Every route the agent adds carries its own protocol number, so that what
//! it made can be found again (after a restart, or to clean up) without a
//! file of its own and without touching anyone else's routes.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::{AddressAttribute, AddressScope};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteProtocol, RouteScope, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

/// `proto 88` in `ip route`: the routes this agent made.
pub const PROTOCOL: RouteProtocol = RouteProtocol::Other(88);

/// A route to another node's pods.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    pub destination: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub link: u32,
    /// The gateway is reached on `link` even without an address in its
    /// subnet (VXLAN's per-peer gateways).
    pub onlink: bool,
    /// Who made it (`u8::from(PROTOCOL)` for this agent).
    pub protocol: u8,
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink connection in this process's network namespace.
    pub fn connect() -> Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        match self.handle.link().get().match_name(name.to_string()).execute().try_next().await {
            Ok(link) => Ok(link),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc_enodev() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("looking up link {name}")),
        }
    }

    pub async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(link) = self.link(name).await? else { return Ok(false) };
        self.handle.link().del(link.header.index).execute().await.with_context(|| format!("deleting link {name}"))?;
        Ok(true)
    }

    /// The link holding `address`, with its MTU.
    pub async fn link_of(&self, address: IpAddr) -> Result<(u32, u32)> {
        let mut addresses = self.handle.address().get().execute();
        while let Some(message) = addresses.try_next().await? {
            let holds = message.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(ip) | AddressAttribute::Local(ip) if *ip == address));
            if holds {
                let index = message.header.index;
                let link = self.handle.link().get().match_index(index).execute().try_next().await?.context("the link vanished")?;
                return Ok((index, mtu(&link).unwrap_or(1500)));
            }
        }
        bail!("no interface of this host has the address {address} (--node-ip)")
    }

    /// The IPv4 networks `link` is directly on.
    pub async fn networks(&self, link: u32) -> Result<Vec<Ipv4Net>> {
        let mut dump = self.handle.address().get().set_link_index_filter(link).execute();
        let mut networks = Vec::new();
        while let Some(message) = dump.try_next().await? {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attribute {
                    networks.extend(Ipv4Net::new(*ip, message.header.prefix_len).ok().map(|n| n.trunc()));
                }
            }
        }
        Ok(networks)
    }

    /// Adds `address` to `link` unless it is there, with host scope: the
    /// host answers on it but never picks it as a source (masquerading
    /// traffic that leaves through `lo` would otherwise take it).
    pub async fn add_host_address(&self, link: u32, address: Ipv4Addr) -> Result<()> {
        if self.networks(link).await?.iter().any(|n| n.addr() == address && n.prefix_len() == 32) {
            return Ok(());
        }
        let mut request = self.handle.address().add(link, IpAddr::V4(address), 32);
        request.message_mut().header.scope = AddressScope::Host;
        request.execute().await.with_context(|| format!("adding {address}"))
    }

    /// Removes `address` from `link` if it is there.
    pub async fn delete_address(&self, link: u32, address: Ipv4Addr) -> Result<()> {
        let mut dump = self.handle.address().get().set_link_index_filter(link).execute();
        while let Some(message) = dump.try_next().await? {
            if message.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == address)) {
                self.handle.address().del(message).execute().await.with_context(|| format!("removing {address}"))?;
            }
        }
        Ok(())
    }

    /// Gives `link` exactly this one address.
    pub async fn set_only_address(&self, link: u32, address: Ipv4Net) -> Result<()> {
        let mut current = self.handle.address().get().set_link_index_filter(link).execute();
        let mut present = false;
        let mut stale = Vec::new();
        while let Some(message) = current.try_next().await? {
            let ip = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if ip == Some(address.addr()) && message.header.prefix_len == address.prefix_len() {
                present = true;
            } else {
                stale.push(message);
            }
        }
        for message in stale {
            self.handle.address().del(message).execute().await?;
        }
        if !present {
            self.handle.address().add(link, IpAddr::V4(address.addr()), address.prefix_len()).execute().await.with_context(|| format!("adding {address}"))?;
        }
        Ok(())
    }

    pub async fn set_up(&self, link: u32) -> Result<()> {
        let message = rtnetlink::LinkUnspec::new_with_index(link).up().build();
        self.handle.link().set(message).execute().await.context("setting a link up")
    }

    /// The routes of one protocol (`PROTOCOL`: this agent's).
    pub async fn routes(&self, protocol: RouteProtocol) -> Result<Vec<Route>> {
        let mut dump = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        let mut routes = Vec::new();
        while let Some(message) = dump.try_next().await? {
            if message.header.protocol != protocol {
                continue;
            }
            let mut destination = None;
            let (mut gateway, mut link) = (Ipv4Addr::UNSPECIFIED, 0);
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Ipv4Net::new(*ip, message.header.destination_prefix_length).ok(),
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = *ip,
                    RouteAttribute::Oif(index) => link = *index,
                    _ => {}
                }
            }
            if let Some(destination) = destination {
                routes.push(Route { destination, gateway, link, onlink: message.header.flags.contains(RouteFlags::Onlink), protocol: protocol.into() });
            }
        }
        Ok(routes)
    }

    pub async fn add_route(&self, route: &Route) -> Result<()> {
        self.handle.route().add(route_message(route)).replace().execute().await.with_context(|| format!("adding the route {} via {}", route.destination, route.gateway))
    }

    pub async fn delete_route(&self, route: &Route) -> Result<()> {
        match self.handle.route().del(route_message(route)).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -3 => Ok(()), // ESRCH: gone already
            other => other.with_context(|| format!("deleting the route to {}", route.destination)),
        }
    }

    /// Permanent ARP entries on `link`, as (IP, MAC).
    pub async fn neighbours(&self, link: u32, family: AddressFamily) -> Result<Vec<NeighbourMessage>> {
        let mut dump = self.handle.neighbours().get().set_address_family(family).execute();
        let mut found = Vec::new();
        while let Some(message) = dump.try_next().await? {
            if message.header.ifindex == link {
                found.push(message);
            }
        }
        Ok(found)
    }

    pub async fn set_neighbour(&self, link: u32, ip: Ipv4Addr, mac: &[u8]) -> Result<()> {
        self.handle.neighbours().add(link, IpAddr::V4(ip)).link_layer_address(mac).replace().execute().await.with_context(|| format!("adding the neighbour {ip}"))
    }

    /// A forwarding entry of a VXLAN device: frames for `mac` go to `remote`.
    pub async fn set_forwarding(&self, link: u32, mac: &[u8], remote: Ipv4Addr) -> Result<()> {
        self.handle
            .neighbours()
            .add_bridge(link, mac)
            .flags(NeighbourFlags::Own)
            .destination(IpAddr::V4(remote))
            .replace()
            .execute()
            .await
            .with_context(|| format!("adding the forwarding entry to {remote}"))
    }

    pub async fn delete_neighbour(&self, message: NeighbourMessage) -> Result<()> {
        match self.handle.neighbours().del(message).execute().await {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -2 => Ok(()), // ENOENT
            other => Ok(other?),
        }
    }
}

fn libc_enodev() -> i32 {
    19
}

pub fn mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

pub fn mac(link: &LinkMessage) -> Option<Vec<u8>> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(m) => Some(m.clone()),
        _ => None,
    })
}

/// A neighbour entry's IP and link-layer address.
pub fn neighbour_entry(message: &NeighbourMessage) -> (Option<IpAddr>, Option<Vec<u8>>) {
    let mut entry = (None, None);
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => entry.0 = Some(IpAddr::V4(*ip)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => entry.0 = Some(IpAddr::V6(*ip)),
            NeighbourAttribute::LinkLayerAddress(mac) => entry.1 = Some(mac.clone()),
            _ => {}
        }
    }
    entry
}

fn route_message(route: &Route) -> RouteMessage {
    let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.destination.network(), route.destination.prefix_len())
        .gateway(route.gateway)
        .output_interface(route.link)
        .protocol(RouteProtocol::from(route.protocol))
        .scope(RouteScope::Universe)
        .kind(RouteType::Unicast);
    if route.onlink {
        builder = builder.onlink();
    }
    builder.build()
}

/// `aa:bb:cc:dd:ee:ff`, as flannel writes a VTEP's MAC.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

pub fn parse_mac(text: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = text.split(':').map(|b| u8::from_str_radix(b, 16).ok()).collect::<Option<_>>()?;
    (bytes.len() == 6).then_some(bytes)
}
