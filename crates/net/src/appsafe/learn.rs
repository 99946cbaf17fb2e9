//! What a connection means for the groups at its two ends: learned (a
//! group in Discover), covered by what was learned, or a violation (a group
//! in Monitor or Protect). Pure, so the rules are tested without a kernel.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use skiff_api::appsafe::{AppGroup, AppGroupStatus, GroupKey, LearnedFlow, LearnedProcess, Peer, DISCOVER, MAX_LEARNED, MONITOR, PROTECT};

use super::kernel::{Connection, Seen};
use super::processes::Process;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// A pod as the observer knows it.
#[derive(Debug, Clone)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Runs on this node.
    pub local: bool,
}

/// One end of a connection.
#[derive(Debug, Clone)]
enum End<'a> {
    Pod(&'a PodRef, Option<&'a AppGroup>),
    /// Outside the cluster's pods and Services.
    External,
}

/// The cluster as the observer sees it: pods by address, groups by name.
pub struct View<'a> {
    pub pods: &'a HashMap<Ipv4Addr, PodRef>,
    pub groups: &'a HashMap<GroupKey, AppGroup>,
    /// Addresses that are the nodes' own or Services' (the pods' gateway,
    /// the cluster DNS): not peers anyone learns.
    pub infrastructure: &'a [Ipv4Net],
    pub node_address: Ipv4Addr,
}

/// What one connection or process asks of the groups.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A flow for `group`'s status, new or seen again.
    Learn { group: GroupKey, direction: Direction, peer: Peer, port: u16, protocol: &'static str },
    /// A process for `group`'s status, new or seen again.
    LearnProcess { group: GroupKey, name: String, path: String },
    Violation(Violation),
}

/// Something `group` did not learn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Violation {
    pub group: GroupKey,
    pub mode: &'static str,
    /// `ingress`, `egress` or `process`.
    pub kind: &'static str,
    /// What was seen: `ingress connection from pod a/b to pod c/d (group d) on TCP/80`.
    pub what: String,
    /// `allowed` (Monitor), `blocked` (a dropped connection) or `killed`.
    pub outcome: &'static str,
}

impl View<'_> {
    fn end(&self, ip: Ipv4Addr) -> Option<End<'_>> {
        if let Some(pod) = self.pods.get(&ip) {
            return Some(End::Pod(pod, self.group_of(pod)));
        }
        if ip == self.node_address || self.infrastructure.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        Some(End::External)
    }

    /// The group whose selector holds the pod (the first by name).
    pub fn group_of(&self, pod: &PodRef) -> Option<&AppGroup> {
        let mut candidates: Vec<&AppGroup> = self
            .groups
            .values()
            .filter(|g| g.metadata.namespace.as_deref() == Some(pod.namespace.as_str()))
            .filter(|g| g.spec.selector.as_ref().is_some_and(|s| skiff_api::validation::selector_matches(s, Some(&pod.labels))))
            .collect();
        candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        candidates.first().copied()
    }

    /// What `seen` means for the groups at its ends. A connection is
    /// reported by one node only: the source's when the source is a pod,
    /// else the destination's; a drop by the node that dropped it.
    pub fn outcomes(&self, seen: Seen) -> Vec<Outcome> {
        let (connection, dropped) = match seen {
            Seen::Opened(c) => (c, false),
            Seen::Dropped(c) => (c, true),
        };
        let (Some(source), Some(destination)) = (self.end(connection.source), self.end(connection.destination)) else { return vec![] };
        if !dropped {
            let ours = match (&source, &destination) {
                (End::Pod(pod, _), _) => pod.local,
                (End::External, End::Pod(pod, _)) => pod.local,
                (End::External, End::External) => false,
            };
            if !ours {
                return vec![];
            }
        }
        let mut out = Vec::new();
        if let End::Pod(_, Some(group)) = &destination {
            out.extend(judge(group, Direction::Ingress, peer_of(&source, connection.source), &source, &destination, connection, dropped));
        }
        if let End::Pod(_, Some(group)) = &source {
            out.extend(judge(group, Direction::Egress, peer_of(&destination, connection.destination), &source, &destination, connection, dropped));
        }
        out
    }
}

fn key_of(group: &AppGroup) -> GroupKey {
    (group.metadata.namespace.clone().unwrap_or_default(), group.metadata.name.clone().unwrap_or_default())
}

fn peer_of(end: &End<'_>, ip: Ipv4Addr) -> Peer {
    match end {
        End::Pod(pod, Some(group)) => Peer { group: group.metadata.name.clone(), namespace: Some(pod.namespace.clone()), cidr: None },
        _ => Peer { cidr: Some(format!("{ip}/32")), ..Peer::default() },
    }
}

fn describe(end: &End<'_>, ip: Ipv4Addr) -> String {
    match end {
        End::Pod(pod, Some(group)) => format!("pod {}/{} (group {})", pod.namespace, pod.name, group.metadata.name.as_deref().unwrap_or_default()),
        End::Pod(pod, None) => format!("pod {}/{}", pod.namespace, pod.name),
        End::External => format!("{ip}"),
    }
}

fn judge(group: &AppGroup, direction: Direction, peer: Peer, source: &End<'_>, destination: &End<'_>, c: Connection, dropped: bool) -> Option<Outcome> {
    let mode = match group.mode() {
        DISCOVER => DISCOVER,
        MONITOR => MONITOR,
        _ => PROTECT,
    };
    let peer_ip = match direction {
        Direction::Ingress => c.source,
        Direction::Egress => c.destination,
    };
    let learned = group.status.as_ref().map_or(&[][..], |s| match direction {
        Direction::Ingress => &s.ingress[..],
        Direction::Egress => &s.egress[..],
    });
    let covered = learned.iter().any(|f| covers(f, &peer, peer_ip, c.port, c.protocol));
    match (mode, dropped) {
        // A drop in Discover is some other policy's doing.
        (DISCOVER, true) | (MONITOR, true) => None,
        (DISCOVER, false) => Some(Outcome::Learn { group: key_of(group), direction, peer, port: c.port, protocol: c.protocol }),
        // Learned flows seen again are counted, as in Discover.
        (_, false) if covered => Some(Outcome::Learn { group: key_of(group), direction, peer, port: c.port, protocol: c.protocol }),
        (PROTECT, true) if covered => None,
        _ => Some(Outcome::Violation(Violation {
            group: key_of(group),
            mode,
            kind: direction.name(),
            what: format!("{} connection from {} to {} on {}/{}", direction.name(), describe(source, c.source), describe(destination, c.destination), c.protocol, c.port),
            outcome: if dropped { "blocked" } else { "allowed" },
        })),
    }
}

impl View<'_> {
    /// What a process seen starting in `pod` means for its group, and
    /// whether Protect wants it killed.
    pub fn process_outcome(&self, pod: &PodRef, process: &Process) -> Option<(Outcome, bool)> {
        let group = self.group_of(pod)?;
        let learned = group.status.as_ref().is_some_and(|s| s.processes.iter().any(|p| p.name == process.name && p.path == process.path));
        let mode = group.mode();
        if mode == DISCOVER || learned {
            return Some((Outcome::LearnProcess { group: key_of(group), name: process.name.clone(), path: process.path.clone() }, false));
        }
        let protect = mode == PROTECT;
        let violation = Violation {
            group: key_of(group),
            mode: if protect { PROTECT } else { MONITOR },
            kind: "process",
            what: format!("process {} ({}) in pod {}/{}", process.name, process.path, pod.namespace, pod.name),
            outcome: if protect { "killed" } else { "allowed" },
        };
        Some((Outcome::Violation(violation), protect))
    }
}

/// Whether a learned flow allows a connection with `peer` (at `ip`).
fn covers(flow: &LearnedFlow, peer: &Peer, ip: Ipv4Addr, port: u16, protocol: &str) -> bool {
    if flow.port != i32::from(port) || flow.protocol != protocol {
        return false;
    }
    match flow.peer() {
        Some(Peer { cidr: Some(cidr), .. }) => cidr.parse::<Ipv4Net>().is_ok_and(|net| net.contains(&ip)),
        Some(learned) => learned.group.is_some() && learned.group == peer.group && learned.namespace == peer.namespace,
        None => false,
    }
}

/// Flows waiting to be written into one group's status: by direction,
/// peer, port and protocol, how many connections and when.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    pub flows: BTreeMap<(Direction, Peer, u16, &'static str), Tally>,
    /// Processes by name and path.
    pub processes: BTreeMap<(String, String), Tally>,
}

#[derive(Debug, Clone, Copy)]
pub struct Tally {
    pub connections: i64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

impl Pending {
    pub fn add(&mut self, direction: Direction, peer: Peer, port: u16, protocol: &'static str, now: DateTime<Utc>) {
        let tally = self.flows.entry((direction, peer, port, protocol)).or_insert(Tally { connections: 0, first: now, last: now });
        tally.connections += 1;
        tally.last = now;
    }

    pub fn add_process(&mut self, name: String, path: String, now: DateTime<Utc>) {
        let tally = self.processes.entry((name, path)).or_insert(Tally { connections: 0, first: now, last: now });
        tally.connections += 1;
        tally.last = now;
    }

    /// Whether any flow or process here is not in `status` yet (worth a
    /// write now, where counts alone can wait).
    pub fn has_new(&self, status: Option<&AppGroupStatus>) -> bool {
        self.flows.keys().any(|(direction, peer, port, protocol)| find(status, *direction, peer, *port, protocol).is_none())
            || self.processes.keys().any(|(name, path)| !status.is_some_and(|s| s.processes.iter().any(|p| &p.name == name && &p.path == path)))
    }
}

fn entries(status: &mut AppGroupStatus, direction: Direction) -> &mut Vec<LearnedFlow> {
    match direction {
        Direction::Ingress => &mut status.ingress,
        Direction::Egress => &mut status.egress,
    }
}

fn find<'a>(status: Option<&'a AppGroupStatus>, direction: Direction, peer: &Peer, port: u16, protocol: &str) -> Option<&'a LearnedFlow> {
    let status = status?;
    let list = match direction {
        Direction::Ingress => &status.ingress,
        Direction::Egress => &status.egress,
    };
    list.iter().find(|f| f.peer() == Some(peer) && f.port == i32::from(port) && f.protocol == protocol)
}

/// `status` with `pending` merged in: counts added, times widened, new
/// flows appended while there is room (else `LearningFull` is True) —
/// only for a group still learning; others only count what they know.
pub fn merge(status: &AppGroupStatus, pending: &Pending, learning: bool, now: DateTime<Utc>) -> AppGroupStatus {
    let mut out = status.clone();
    let mut full = false;
    for ((direction, peer, port, protocol), tally) in &pending.flows {
        let list = entries(&mut out, *direction);
        if let Some(flow) = list.iter_mut().find(|f| f.peer() == Some(peer) && f.port == i32::from(*port) && f.protocol == *protocol) {
            flow.connections += tally.connections;
            flow.last_seen = Some(Time(flow.last_seen.as_ref().map_or(tally.last, |t| t.0.max(tally.last))));
            continue;
        }
        if !learning {
            continue;
        }
        if list.len() >= MAX_LEARNED {
            full = true;
            continue;
        }
        let (from, to) = match direction {
            Direction::Ingress => (Some(peer.clone()), None),
            Direction::Egress => (None, Some(peer.clone())),
        };
        list.push(LearnedFlow { from, to, port: i32::from(*port), protocol: protocol.to_string(), first_seen: Some(Time(tally.first)), last_seen: Some(Time(tally.last)), connections: tally.connections });
    }
    for ((name, path), tally) in &pending.processes {
        if let Some(process) = out.processes.iter_mut().find(|p| &p.name == name && &p.path == path) {
            process.count += tally.connections;
            process.last_seen = Some(Time(process.last_seen.as_ref().map_or(tally.last, |t| t.0.max(tally.last))));
        } else if learning && out.processes.len() >= MAX_LEARNED {
            full = true;
        } else if learning {
            out.processes.push(LearnedProcess { name: name.clone(), path: path.clone(), first_seen: Some(Time(tally.first)), last_seen: Some(Time(tally.last)), count: tally.connections });
        }
    }
    out.processes.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    for direction in [Direction::Ingress, Direction::Egress] {
        entries(&mut out, direction).sort_by(|a, b| (a.peer(), a.port, &a.protocol).cmp(&(b.peer(), b.port, &b.protocol)));
    }
    if full && !out.conditions.iter().any(|c| c.type_ == "LearningFull" && c.status == "True") {
        out.conditions.retain(|c| c.type_ != "LearningFull");
        out.conditions.push(Condition {
            type_: "LearningFull".into(),
            status: "True".into(),
            reason: "TooManyFlows".into(),
            message: format!("the group keeps at most {MAX_LEARNED} flows each way and {MAX_LEARNED} processes; nothing new is learned"),
            last_transition_time: Time(now),
            observed_generation: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, app: &str, local: bool) -> PodRef {
        PodRef { uid: format!("uid-{name}"), namespace: ns.into(), name: name.into(), labels: [("app".to_string(), app.to_string())].into(), local }
    }

    fn group(name: &str, mode: &str, status: serde_json::Value) -> AppGroup {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop"}, "spec": {"mode": mode, "selector": {"matchLabels": {"app": name}}}, "status": status})).unwrap()
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 42, 0, last)
    }

    fn world(web_mode: &str, db_mode: &str) -> (HashMap<Ipv4Addr, PodRef>, HashMap<GroupKey, AppGroup>) {
        let pods = [(ip(2), pod("shop", "web-1", "web", true)), (ip(3), pod("shop", "db-0", "db", false)), (ip(4), pod("shop", "tool", "tool", true))].into();
        let learned = json!({"ingress": [{"from": {"group": "web", "namespace": "shop"}, "port": 5432, "protocol": "TCP", "connections": 1}]});
        let groups = [(("shop".into(), "web".into()), group("web", web_mode, json!({"egress": [{"to": {"group": "db", "namespace": "shop"}, "port": 5432, "protocol": "TCP", "connections": 1}]}))), (("shop".into(), "db".into()), group("db", db_mode, learned))].into();
        (pods, groups)
    }

    fn tcp(source: Ipv4Addr, destination: Ipv4Addr, port: u16) -> Connection {
        Connection { source, destination, port, protocol: "TCP" }
    }

    #[test]
    fn discover_learns_both_ends_once_and_skips_the_infrastructure() {
        let (pods, groups) = world(DISCOVER, DISCOVER);
        let infra: Vec<Ipv4Net> = vec!["10.43.0.0/16".parse().unwrap()];
        let view = View { pods: &pods, groups: &groups, infrastructure: &infra, node_address: Ipv4Addr::new(192, 0, 2, 1) };
        let out = view.outcomes(Seen::Opened(tcp(ip(2), ip(3), 5432)));
        let web = Peer { group: Some("web".into()), namespace: Some("shop".into()), cidr: None };
        let db = Peer { group: Some("db".into()), namespace: Some("shop".into()), cidr: None };
        assert_eq!(
            out,
            [
                Outcome::Learn { group: ("shop".into(), "db".into()), direction: Direction::Ingress, peer: web, port: 5432, protocol: "TCP" },
                Outcome::Learn { group: ("shop".into(), "web".into()), direction: Direction::Egress, peer: db, port: 5432, protocol: "TCP" },
            ]
        );
        // The db's node sees the same connection arrive and leaves it to the web's.
        assert!(view.outcomes(Seen::Opened(tcp(ip(3), ip(2), 80))).is_empty());
        // The cluster DNS and the node itself are no one's peers.
        assert!(view.outcomes(Seen::Opened(tcp(ip(2), Ipv4Addr::new(10, 43, 0, 10), 53))).is_empty());
        assert!(view.outcomes(Seen::Opened(tcp(Ipv4Addr::new(192, 0, 2, 1), ip(2), 80))).is_empty());
        // Outside the cluster: a /32.
        let out = view.outcomes(Seen::Opened(tcp(ip(2), Ipv4Addr::new(198, 51, 100, 9), 443)));
        assert!(matches!(&out[..], [Outcome::Learn { peer: Peer { cidr: Some(c), .. }, .. }] if c == "198.51.100.9/32"));
    }

    #[test]
    fn monitor_reports_what_was_not_learned_and_protect_reports_drops() {
        let (pods, groups) = world(MONITOR, MONITOR);
        let view = View { pods: &pods, groups: &groups, infrastructure: &[], node_address: Ipv4Addr::new(192, 0, 2, 1) };
        // Learned: counted, not reported.
        assert!(view.outcomes(Seen::Opened(tcp(ip(2), ip(3), 5432))).iter().all(|o| matches!(o, Outcome::Learn { .. })));
        // The tool pod never talked to the db: the db reports it (the tool has no group).
        let out = view.outcomes(Seen::Opened(tcp(ip(4), ip(3), 5432)));
        assert_eq!(
            out,
            [Outcome::Violation(Violation {
                group: ("shop".into(), "db".into()),
                mode: MONITOR,
                kind: "ingress",
                what: "ingress connection from pod shop/tool to pod shop/db-0 (group db) on TCP/5432".into(),
                outcome: "allowed",
            })]
        );
        // A new port from web: both ends report it.
        assert_eq!(view.outcomes(Seen::Opened(tcp(ip(2), ip(3), 22))).len(), 2);
        let (pods, groups) = world(PROTECT, PROTECT);
        let view = View { pods: &pods, groups: &groups, infrastructure: &[], node_address: Ipv4Addr::new(192, 0, 2, 1) };
        let out = view.outcomes(Seen::Dropped(tcp(ip(4), ip(3), 5432)));
        assert!(matches!(&out[..], [Outcome::Violation(Violation { mode: PROTECT, outcome: "blocked", .. })]));
    }

    #[test]
    fn processes_are_learned_in_discover_and_killed_in_protect() {
        let (pods, mut groups) = world(DISCOVER, PROTECT);
        groups.get_mut(&("shop".to_string(), "db".to_string())).unwrap().status.as_mut().unwrap().processes =
            vec![LearnedProcess { name: "postgres".into(), path: "/usr/bin/postgres".into(), count: 1, ..Default::default() }];
        let view = View { pods: &pods, groups: &groups, infrastructure: &[], node_address: Ipv4Addr::new(192, 0, 2, 1) };
        let process = |name: &str, path: &str| Process { pid: 7, name: name.into(), path: path.into() };
        let web = &pods[&ip(2)];
        assert!(matches!(view.process_outcome(web, &process("sh", "/bin/busybox")), Some((Outcome::LearnProcess { .. }, false))));
        let db = &pods[&ip(3)];
        assert!(matches!(view.process_outcome(db, &process("postgres", "/usr/bin/postgres")), Some((Outcome::LearnProcess { .. }, false))));
        let Some((Outcome::Violation(v), true)) = view.process_outcome(db, &process("xmrig", "/tmp/xmrig")) else { panic!("a new process in Protect is killed") };
        assert_eq!((v.kind, v.outcome, v.what.as_str()), ("process", "killed", "process xmrig (/tmp/xmrig) in pod shop/db-0"));
        // A pod in no group is no one's business.
        assert!(view.process_outcome(&pod("shop", "x", "none", true), &process("sh", "/bin/sh")).is_none());
    }

    #[test]
    fn merging_adds_counts_appends_new_flows_and_says_when_full() {
        let now = Utc::now();
        let peer = |n: u32| Peer { cidr: Some(format!("198.51.{}.{}/32", n / 256, n % 256)), ..Peer::default() };
        let mut pending = Pending::default();
        pending.add(Direction::Egress, peer(0), 443, "TCP", now);
        pending.add(Direction::Egress, peer(0), 443, "TCP", now);
        let status = merge(&AppGroupStatus::default(), &pending, true, now);
        assert_eq!((status.egress.len(), status.egress[0].connections), (1, 2));
        assert!(!pending.has_new(Some(&status)));
        let status = merge(&status, &pending, true, now);
        assert_eq!(status.egress[0].connections, 4);
        // A group not learning counts what it knows and adds nothing.
        let mut other = Pending::default();
        other.add(Direction::Egress, peer(1), 443, "TCP", now);
        assert!(other.has_new(Some(&status)));
        assert_eq!(merge(&status, &other, false, now).egress.len(), 1);
        // Bounded.
        let mut many = Pending::default();
        for n in 0..300 {
            many.add(Direction::Ingress, peer(n), 80, "TCP", now);
        }
        let status = merge(&status, &many, true, now);
        assert_eq!(status.ingress.len(), MAX_LEARNED);
        assert!(status.conditions.iter().any(|c| c.type_ == "LearningFull" && c.status == "True"));
    }
}
