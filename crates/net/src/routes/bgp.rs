//! The bgp backend, as Calico's control plane: BIRD 2 on every node
//! announces the node's pod CIDR and installs the routes it learns
//! (`proto bird`). Nodes peer in a full mesh, or, when some nodes are
//! labelled route reflectors, only with those; every node also peers with
//! the routers outside the cluster (`--bgp-peer`), so that the outside
//! reaches pod IPs by routing.

use std::fmt::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;

use super::Peer;
use crate::cluster::BgpPeer;

/// Nodes with this label set to "true" reflect routes for the others.
pub const ROUTE_REFLECTOR_LABEL: &str = "bgp.skiff.io/route-reflector";

/// This node's side of the BGP sessions.
pub struct Speaker {
    pub address: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub asn: u32,
    pub reflector: bool,
    pub external: Vec<BgpPeer>,
}

/// BIRD's configuration for this node and these peers.
pub fn config(me: &Speaker, peers: &[Peer]) -> String {
    let mut s = String::new();
    let (address, asn) = (me.address, me.asn);
    let _ = writeln!(s, "log stderr {{ warning, error, fatal }};\nrouter id {address};\n");
    s.push_str("protocol device { scan time 10; }\n\n");
    // The host's own networks and routes resolve peers' next hops (iBGP's
    // are recursive); none of them is announced.
    s.push_str("protocol direct { ipv4; }\n\n");
    // Learned routes go to the kernel; they stay there if BIRD stops (an
    // agent restart), and BIRD removes those it no longer has when it starts.
    s.push_str("protocol kernel {\n  persist;\n  learn;\n  scan time 10;\n  ipv4 { import all; export where source = RTS_BGP; };\n}\n\n");
    // Preferred over the pods' bridge route (direct, 240), so that it is
    // the one announced; only BGP's routes reach the kernel.
    let _ = writeln!(s, "protocol static pods {{\n  ipv4 {{ preference 250; }};\n  route {} blackhole;\n}}\n", me.pod_cidr);
    // Our pod CIDR, reached through our address; a reflector passes on
    // what it learned, as it was.
    let _ = writeln!(
        s,
        "filter announce {{\n  if proto = \"pods\" then {{ bgp_next_hop = {address}; accept; }}\n  {}\n  reject;\n}}\n",
        if me.reflector { "if source = RTS_BGP then accept;" } else { "" }
    );
    let reflectors: Vec<&Peer> = peers.iter().filter(|p| p.route_reflector).collect();
    for peer in peers {
        // Full mesh without reflectors; with them, clients talk to
        // reflectors only and reflectors to everyone.
        if !me.reflector && !reflectors.is_empty() && !peer.route_reflector {
            continue;
        }
        let client = if me.reflector && !peer.route_reflector { format!("  rr client;\n  rr cluster id {address};\n") } else { String::new() };
        let _ = writeln!(
            s,
            "protocol bgp {} {{\n  local {address} as {asn};\n  neighbor {} as {asn};\n{client}  ipv4 {{ import all; export filter announce; }};\n}}\n",
            name("node", &peer.name),
            peer.address
        );
    }
    for (i, router) in me.external.iter().enumerate() {
        let _ = writeln!(
            s,
            "protocol bgp external_{i} {{\n  local {address} as {asn};\n  neighbor {} as {};\n  ipv4 {{ import all; export filter announce; }};\n}}\n",
            router.address, router.asn
        );
    }
    s
}

/// A protocol name BIRD takes: letters, digits and underscores.
fn name(prefix: &str, node: &str) -> String {
    let cleaned: String = node.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{prefix}_{cleaned}")
}

/// A BIRD process of this agent's, with its own configuration and socket.
pub struct Bird {
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    written: Mutex<String>,
}

impl Bird {
    pub fn new(dir: PathBuf) -> Bird {
        Bird { dir, child: Mutex::default(), written: Mutex::default() }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// Runs BIRD with this configuration: started if it is not running,
    /// told to reload if it is.
    pub fn apply(&self, config: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let running = child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if running && *written == config {
            return Ok(());
        }
        let path = self.dir.join("bird.conf");
        std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
        if running {
            let out = Command::new("birdc").arg("-s").arg(self.socket()).arg("configure").output().context("running birdc (BIRD 2: apt-get install bird2)")?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() || !text.contains("Reconfigured") && !text.contains("Reconfiguration in progress") {
                bail!("birdc configure: {}{}", text.trim(), String::from_utf8_lossy(&out.stderr).trim());
            }
        } else {
            let log = std::fs::File::create(self.dir.join("bird.log"))?;
            let started = Command::new("bird")
                .arg("-f")
                .arg("-c")
                .arg(&path)
                .arg("-s")
                .arg(self.socket())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => anyhow::anyhow!("the bgp backend needs BIRD 2, and the bird binary is missing (apt-get install bird2)"),
                    _ => anyhow::Error::new(e).context("starting bird"),
                })?;
            *child = Some(started);
        }
        *written = config.to_string();
        Ok(())
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, address: &str, reflector: bool) -> Peer {
        Peer { name: name.into(), pod_cidr: "10.42.9.0/24".parse().unwrap(), address: address.parse().unwrap(), vtep_mac: None, route_reflector: reflector }
    }

    fn me(reflector: bool) -> Speaker {
        Speaker { address: "192.0.2.1".parse().unwrap(), pod_cidr: "10.42.1.0/24".parse().unwrap(), asn: 64512, reflector, external: vec!["192.0.2.250:64600".parse().unwrap()] }
    }

    #[test]
    fn a_full_mesh_without_reflectors_and_reflector_clients_with_them() {
        let mesh = config(&me(false), &[peer("node-b", "192.0.2.2", false), peer("c", "192.0.2.3", false)]);
        assert!(mesh.contains("protocol bgp node_node_b {\n  local 192.0.2.1 as 64512;\n  neighbor 192.0.2.2 as 64512;"), "{mesh}");
        assert!(mesh.contains("neighbor 192.0.2.3 as 64512"), "{mesh}");
        assert!(mesh.contains("neighbor 192.0.2.250 as 64600"), "{mesh}");
        assert!(mesh.contains("route 10.42.1.0/24 blackhole"), "{mesh}");

        let client = config(&me(false), &[peer("rr", "192.0.2.2", true), peer("c", "192.0.2.3", false)]);
        assert!(client.contains("neighbor 192.0.2.2") && !client.contains("neighbor 192.0.2.3"), "{client}");
        let reflector = config(&me(true), &[peer("b", "192.0.2.2", false)]);
        assert!(reflector.contains("rr client;") && reflector.contains("if source = RTS_BGP then accept;"), "{reflector}");
    }

    /// BIRD itself accepts the configuration (`bird -p` parses it only).
    #[test]
    fn bird_parses_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.conf");
        std::fs::write(&path, config(&me(true), &[peer("b", "192.0.2.2", false), peer("rr-2", "192.0.2.4", true)])).unwrap();
        match Command::new("bird").arg("-p").arg("-c").arg(&path).output() {
            Ok(out) => assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr)),
            Err(_) => eprintln!("bird is not installed here; skipped"),
        }
    }
}
