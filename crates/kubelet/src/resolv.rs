//! A pod's /etc/resolv.conf, as upstream's kubelet composes it
//! (pkg/kubelet/network/dns, with ExpandedDNSConfig's limits) and
//! containerd writes it: `search`, then one `nameserver` line each, then
//! `options`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodDNSConfigOption};

/// Options every ClusterFirst pod gets.
const DEFAULT_OPTIONS: &str = "ndots:5";
/// Upstream's limits: nameservers, search domains, the search line's length
/// (ExpandedDNSConfig), and a search domain's (a DNS-1123 subdomain's).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;
const MAX_SEARCH_DOMAIN_CHARS: usize = 253;

#[derive(Default)]
struct DnsConfig {
    servers: Vec<String>,
    searches: Vec<String>,
    options: Vec<String>,
}

/// The resolv.conf for a pod: its dnsPolicy (ClusterFirst when unset, and
/// Default for a hostNetwork pod unless ClusterFirstWithHostNet) with its
/// dnsConfig merged in. An error for a host resolv.conf with an empty
/// `nameserver` line, as upstream's.
pub fn resolv_conf(pod: &Pod, cluster_dns: &[IpAddr], cluster_domain: &str, host_resolv_conf: &str) -> Result<String, String> {
    let host = parse(host_resolv_conf)?;
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    // Upstream logs an unknown policy and uses ClusterFirst's rules.
    let policy = spec.and_then(|s| s.dns_policy.as_deref()).unwrap_or("ClusterFirst");
    let cluster = match policy {
        "None" => None,
        "Default" => Some(false),
        "ClusterFirst" if host_network => Some(false),
        _ => Some(true),
    };
    let mut config = match cluster {
        None => DnsConfig::default(),
        // Without a cluster DNS address, ClusterFirst falls back to Default.
        Some(true) if !cluster_dns.is_empty() => {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
            let mut searches = Vec::new();
            if !cluster_domain.is_empty() {
                searches = vec![format!("{namespace}.svc.{cluster_domain}"), format!("svc.{cluster_domain}"), cluster_domain.to_string()];
            }
            searches.extend(host.searches);
            DnsConfig { servers: cluster_dns.iter().map(IpAddr::to_string).collect(), searches: dedup(searches), options: vec![DEFAULT_OPTIONS.to_string()] }
        }
        Some(_) => host,
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        config.servers = dedup(config.servers.into_iter().chain(extra.nameservers.iter().flatten().cloned()).collect());
        config.searches = dedup(config.searches.into_iter().chain(extra.searches.iter().flatten().cloned()).collect());
        config.options = merge_options(config.options, extra.options.as_deref().unwrap_or_default());
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches = fit_searches(config.searches);
    Ok(render(&config))
}

/// The host's nameservers (all of them), search list and options (the last
/// line of each wins), as upstream's parseResolvConf.
fn parse(text: &str) -> Result<DnsConfig, String> {
    let mut config = DnsConfig::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => config.servers.push(fields.next().ok_or("resolv.conf: nameserver list is empty")?.to_string()),
            // The same domain with and without the final dot counts once.
            Some("search") => config.searches = fields.map(|s| s.trim_end_matches('.').to_string()).collect(),
            Some("options") => config.options = fields.map(str::to_string).collect(),
            _ => {}
        }
    }
    Ok(config)
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Options by name, the pod's dnsConfig overriding: `name` or `name:value`.
/// Upstream's order comes from a Go map, so any order is upstream's; this
/// one keeps the existing order and appends new names.
fn merge_options(existing: Vec<String>, extra: &[PodDNSConfigOption]) -> Vec<String> {
    let mut options: Vec<(String, String)> = existing
        .into_iter()
        .map(|o| match o.split_once(':') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (o, String::new()),
        })
        .collect();
    for option in extra {
        let name = option.name.clone().unwrap_or_default();
        let value = option.value.clone().unwrap_or_default();
        match options.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => options.push((name, value)),
        }
    }
    options.into_iter().map(|(name, value)| if value.is_empty() { name } else { format!("{name}:{value}") }).collect()
}

/// Upstream's limits on the search line: at most 32 domains, none over
/// 253 characters (glibc aborts on those), and at most 2048 characters in
/// all, cutting from the end.
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCHES);
    searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_CHARS);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
    }
    searches
}

fn render(config: &DnsConfig) -> String {
    let mut text = String::new();
    if !config.searches.is_empty() {
        text += &format!("search {}\n", config.searches.join(" "));
    }
    for server in &config.servers {
        text += &format!("nameserver {server}\n");
    }
    if !config.options.is_empty() {
        text += &format!("options {}\n", config.options.join(" "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const HOST: &str = "# from the host\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch corp.example. lab.example\noptions edns0 timeout:2\n";

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    fn conf(spec: Value) -> String {
        resolv_conf(&pod(spec), &["10.43.0.10".parse().unwrap()], "cluster.local", HOST).unwrap()
    }

    #[test]
    fn cluster_first_is_the_default() {
        let want = "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n";
        assert_eq!(conf(json!({})), want);
        assert_eq!(conf(json!({"dnsPolicy": "ClusterFirst"})), want);
    }

    #[test]
    fn cluster_first_on_the_host_network_is_default() {
        let host = "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 timeout:2\n";
        assert_eq!(conf(json!({"hostNetwork": true})), host);
        assert_eq!(conf(json!({"hostNetwork": true, "dnsPolicy": "Default"})), host);
        assert_eq!(conf(json!({"dnsPolicy": "Default"})), host);
    }

    #[test]
    fn cluster_first_with_host_net_uses_cluster_dns() {
        let want = "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.43.0.10\noptions ndots:5\n";
        assert_eq!(conf(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})), want);
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_the_host() {
        let got = resolv_conf(&pod(json!({})), &[], "cluster.local", HOST).unwrap();
        assert_eq!(got, "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 timeout:2\n");
    }

    #[test]
    fn none_takes_only_the_dns_config() {
        let spec = json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.1.1.1", "1.1.1.1", "8.8.8.8"],
            "searches": ["a.example", "b.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
        }});
        assert_eq!(conf(spec), "search a.example b.example\nnameserver 1.1.1.1\nnameserver 8.8.8.8\noptions ndots:2 edns0\n");
        assert_eq!(conf(json!({"dnsPolicy": "None"})), "");
    }

    #[test]
    fn dns_config_merges_into_cluster_first() {
        let spec = json!({"dnsConfig": {
            "nameservers": ["192.0.2.99"],
            "searches": ["svc.cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}],
        }});
        assert_eq!(
            conf(spec),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example extra.example\nnameserver 10.43.0.10\nnameserver 192.0.2.99\noptions ndots:1 single-request-reopen\n"
        );
    }

    #[test]
    fn dns_config_merges_into_default() {
        let spec = json!({"dnsPolicy": "Default", "dnsConfig": {"options": [{"name": "timeout", "value": "5"}, {"name": "edns0"}]}});
        assert_eq!(conf(spec), "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\noptions edns0 timeout:5\n");
    }

    #[test]
    fn at_most_three_nameservers() {
        let spec = json!({"dnsPolicy": "Default", "dnsConfig": {"nameservers": ["192.0.2.1", "192.0.2.2"]}});
        assert_eq!(conf(spec), "search corp.example lab.example\nnameserver 192.0.2.53\nnameserver 192.0.2.54\nnameserver 192.0.2.1\noptions edns0 timeout:2\n");
    }

    #[test]
    fn search_limits_as_upstream() {
        // 40 domains: the first 32 stay.
        let searches: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let got = conf(json!({"dnsPolicy": "None", "dnsConfig": {"searches": searches}}));
        let line = got.lines().next().unwrap();
        assert_eq!(line.split_whitespace().count() - 1, 32);
        assert!(line.ends_with(" d31.example"));

        // A domain over 253 characters goes; the line is cut from the end to 2048 characters.
        let long = format!("{}.example", "a".repeat(250));
        let wide: Vec<String> = (0..30).map(|i| format!("{i:02}{}", ".x".repeat(49))).collect();
        let mut searches = vec![long];
        searches.extend(wide.clone());
        let got = conf(json!({"dnsPolicy": "None", "dnsConfig": {"searches": searches}}));
        let line = got.lines().next().unwrap().strip_prefix("search ").unwrap();
        assert!(line.len() <= 2048, "{}", line.len());
        assert_eq!(line, wide[..20].join(" "));
    }

    #[test]
    fn empty_nameserver_line_is_an_error() {
        assert!(resolv_conf(&pod(json!({})), &[], "cluster.local", "nameserver\n").is_err());
    }

    #[test]
    fn host_search_trailing_dots_and_duplicates_count_once() {
        let host = "nameserver 192.0.2.53\nsearch cluster.local. svc.cluster.local corp.example\n";
        let got = resolv_conf(&pod(json!({})), &["10.43.0.10".parse().unwrap()], "cluster.local", host).unwrap();
        assert_eq!(got, "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:5\n");
    }
}
