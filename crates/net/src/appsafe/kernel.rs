//! What the kernel tells AppSafe, over netfilter's netlink sockets (parsed
//! by netlink-packet-netfilter): every new connection the node's conntrack
//! confirms (ctnetlink's NEW events; the reply tuple names the pod behind
//! a Service's address), and every packet the policy table drops (its
//! `log group` rules, NFLOG). Each is read by a thread of its own, since
//! the sockets block, and sent on as a `Seen`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::{ConntrackAttribute, IPTuple, ProtoTuple, Protocol, Tuple};
use netlink_packet_netfilter::nflog::{config_request, ConfigCmd, ConfigMode, PacketNla, ULogMessage};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket, SocketAddr};

/// The NFLOG group the policy table's drops are logged to.
pub const LOG_GROUP: u16 = 7157;

/// ctnetlink's multicast group of new connections (NFNLGRP_CONNTRACK_NEW).
const CONNTRACK_NEW: u32 = 1;

/// A burst of new connections waits in the socket's buffer while the
/// reader catches up; this much of one loses none of 100,000 in a second.
const RECEIVE_BUFFER: usize = 32 << 20;

/// A connection, as the pod behind it made and took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Connection {
    pub source: Ipv4Addr,
    /// The destination after any DNAT: the pod, not the Service.
    pub destination: Ipv4Addr,
    pub port: u16,
    pub protocol: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Conntrack confirmed it: it passed.
    Opened(Connection),
    /// The policy table dropped it.
    Dropped(Connection),
}

/// What the readers count, for the agent's metrics.
#[derive(Debug, Default)]
pub struct Counts {
    pub events: AtomicU64,
    /// Times the kernel said its buffer overflowed (events were lost).
    pub overflows: AtomicU64,
    pub drops: AtomicU64,
}

fn protocol_name(number: u8) -> Option<&'static str> {
    match number {
        6 => Some("TCP"),
        17 => Some("UDP"),
        132 => Some("SCTP"),
        _ => None,
    }
}

fn ip_of(tuple: &[Tuple], source: bool) -> Option<Ipv4Addr> {
    tuple.iter().find_map(|t| match t {
        Tuple::Ip(ips) => ips.iter().find_map(|ip| match (ip, source) {
            (IPTuple::SourceAddress(IpAddr::V4(a)), true) | (IPTuple::DestinationAddress(IpAddr::V4(a)), false) => Some(*a),
            _ => None,
        }),
        _ => None,
    })
}

fn proto_of(tuple: &[Tuple]) -> Option<(&'static str, u16, u16)> {
    let parts = tuple.iter().find_map(|t| match t {
        Tuple::Proto(p) => Some(p),
        _ => None,
    })?;
    let mut protocol = None;
    let (mut source_port, mut destination_port) = (None, None);
    for p in parts {
        match p {
            ProtoTuple::Protocol(Protocol::Tcp) => protocol = Some("TCP"),
            ProtoTuple::Protocol(Protocol::Udp) => protocol = Some("UDP"),
            ProtoTuple::Protocol(Protocol::Sctp) => protocol = Some("SCTP"),
            ProtoTuple::SourcePort(port) => source_port = Some(*port),
            ProtoTuple::DestinationPort(port) => destination_port = Some(*port),
            _ => {}
        }
    }
    Some((protocol?, source_port?, destination_port?))
}

/// A NEW event's connection: the original direction's source, and the
/// reply direction's source and port (who really answered).
fn connection_of(attributes: &[ConntrackAttribute]) -> Option<Connection> {
    let (mut original, mut reply) = (None, None);
    for a in attributes {
        match a {
            ConntrackAttribute::CtaTupleOrig(t) => original = Some(t),
            ConntrackAttribute::CtaTupleReply(t) => reply = Some(t),
            _ => {}
        }
    }
    let (original, reply) = (original?, reply?);
    let (protocol, _, _) = proto_of(original)?;
    let (_, answered_from, _) = proto_of(reply)?;
    Some(Connection { source: ip_of(original, true)?, destination: ip_of(reply, true)?, port: answered_from, protocol })
}

/// A logged packet's connection, from its IPv4 header and the first bytes
/// of its TCP, UDP or SCTP header (the destination port is at offset 2 in
/// all three).
pub fn packet_connection(packet: &[u8]) -> Option<Connection> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let header = usize::from(packet[0] & 0x0f) * 4;
    let protocol = protocol_name(packet[9])?;
    let port = packet.get(header + 2..header + 4)?;
    Some(Connection {
        source: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        destination: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        port: u16::from_be_bytes([port[0], port[1]]),
        protocol,
    })
}

/// The messages in one datagram.
fn messages(mut bytes: &[u8]) -> Vec<NetlinkMessage<NetfilterMessage>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let Ok(message) = NetlinkMessage::<NetfilterMessage>::deserialize(bytes) else { break };
        let length = (message.header.length as usize).next_multiple_of(4);
        out.push(message);
        if length == 0 || length > bytes.len() {
            break;
        }
        bytes = &bytes[length..];
    }
    out
}

/// The next datagram's size. An overflow (the kernel dropped messages the
/// reader was too slow for) is counted and reading goes on.
fn receive(socket: &Socket, buffer: &mut [u8], counts: &Counts) -> std::io::Result<usize> {
    loop {
        match socket.recv(&mut &mut buffer[..], 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                counts.overflows.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            done => return done,
        }
    }
}

/// Reads new connections until `sink` is gone.
pub fn read_conntrack(sink: tokio::sync::mpsc::UnboundedSender<Seen>, counts: Arc<Counts>) -> Result<()> {
    let mut socket = Socket::new(NETLINK_NETFILTER).context("a netfilter netlink socket")?;
    socket.bind(&SocketAddr::new(0, 0)).context("binding the conntrack socket")?;
    socket.add_membership(CONNTRACK_NEW).context("subscribing to conntrack's new connections")?;
    // Too small a buffer is no reason not to observe.
    if let Err(e) = socket.set_rx_buf_sz(RECEIVE_BUFFER) {
        tracing::warn!("the conntrack socket's buffer: {e}");
    }
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let size = receive(&socket, &mut buffer, &counts).context("reading conntrack events")?;
        for message in messages(&buffer[..size]) {
            let NetlinkPayload::InnerMessage(NetfilterMessage { inner: NetfilterMessageInner::Conntrack(netlink_packet_netfilter::conntrack::ConntrackMessage::New(attributes)), .. }) = &message.payload else { continue };
            counts.events.fetch_add(1, Ordering::Relaxed);
            if let Some(connection) = connection_of(attributes) {
                if sink.send(Seen::Opened(connection)).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

fn configure(socket: &Socket, group: u16, command: Vec<netlink_packet_netfilter::nflog::ConfigNla>) -> Result<()> {
    let mut request = config_request(NetfilterProtoFamily::IPv4, group, command);
    request.header.sequence_number = 1;
    let mut bytes = vec![0; request.header.length as usize];
    request.serialize(&mut bytes[..]);
    socket.send(&bytes, 0).context("configuring NFLOG")?;
    let mut buffer = vec![0u8; 4096];
    let size = socket.recv(&mut &mut buffer[..], 0).context("NFLOG's answer")?;
    for message in messages(&buffer[..size]) {
        if let NetlinkPayload::Error(e) = message.payload {
            if let Some(code) = e.code {
                bail!("NFLOG refused the configuration: {}", std::io::Error::from_raw_os_error(-code.get()));
            }
        }
    }
    Ok(())
}

/// Reads the policy table's dropped packets until `sink` is gone.
pub fn read_drops(sink: tokio::sync::mpsc::UnboundedSender<Seen>, counts: Arc<Counts>) -> Result<()> {
    let mut socket = Socket::new(NETLINK_NETFILTER).context("a netfilter netlink socket")?;
    socket.bind_auto().context("binding the NFLOG socket")?;
    // Headers are enough: the addresses and the ports.
    configure(&socket, LOG_GROUP, vec![ConfigCmd::Bind.into(), ConfigMode::new_packet(64).into()])?;
    if let Err(e) = socket.set_rx_buf_sz(RECEIVE_BUFFER / 4) {
        tracing::warn!("the NFLOG socket's buffer: {e}");
    }
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let size = receive(&socket, &mut buffer, &counts).context("reading NFLOG")?;
        for message in messages(&buffer[..size]) {
            let NetlinkPayload::InnerMessage(NetfilterMessage { inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)), .. }) = &message.payload else { continue };
            let packet = nlas.iter().find_map(|n| match n {
                PacketNla::Payload(p) => Some(p),
                _ => None,
            });
            if let Some(connection) = packet.and_then(|p| packet_connection(p)) {
                counts.drops.fetch_add(1, Ordering::Relaxed);
                if sink.send(Seen::Dropped(connection)).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logged_packet_gives_its_addresses_and_port() {
        // IPv4, 20-byte header, TCP, 10.42.1.5 -> 10.42.2.7, then TCP ports 40000 -> 5432.
        let mut packet = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 42, 1, 5, 10, 42, 2, 7];
        packet.extend_from_slice(&[0x9c, 0x40, 0x15, 0x38, 0, 0, 0, 0]);
        let c = packet_connection(&packet).unwrap();
        assert_eq!((c.source, c.destination, c.port, c.protocol), (Ipv4Addr::new(10, 42, 1, 5), Ipv4Addr::new(10, 42, 2, 7), 5432, "TCP"));
        packet[9] = 1; // ICMP: no port to speak of
        assert!(packet_connection(&packet).is_none());
        assert!(packet_connection(&packet[..10]).is_none());
    }
}
