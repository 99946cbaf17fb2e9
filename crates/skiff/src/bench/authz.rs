//! `skiff bench authz`: the cost of authorization. The same reads by a
//! token user against two servers in one run: one with AlwaysAllow, one
//! with RBAC holding `--roles` Roles and RoleBindings (plus upstream's
//! defaults) where one binding grants the reads. The ratio of the two
//! median throughputs is the figure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;

use super::api::{namespace, start_server};

#[derive(clap::Args)]
pub struct Args {
    /// Roles and RoleBindings besides the one that grants the reads.
    #[arg(long, default_value_t = 1000)]
    roles: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of reads against each server per round.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

const TOKEN: &str = "bench-reader-token";

/// GETs of one ConfigMap by `clients` tasks for `seconds`; returns reads/s.
async fn reads_per_second(client: &Client, clients: usize, seconds: u64) -> Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (maps, done) = (Api::<ConfigMap>::namespaced(client.clone(), "bench"), done.clone());
            tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(seconds) {
                    maps.get("target").await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// `count` Roles, each bound to its own user, in 100 namespaces, then the
/// one Role and binding the reader needs.
async fn grant(admin: &Client, count: usize) -> Result<()> {
    let namespaces = 100.min(count.max(1));
    for n in 0..namespaces {
        namespace(admin, &format!("team-{n}")).await?;
    }
    let create = |i: usize, ns: String, user: String| {
        let admin = admin.clone();
        async move {
            let role: Role = serde_json::from_value(json!({"metadata": {"name": format!("role-{i}")}, "rules": [{"apiGroups": ["", "apps"], "resources": ["pods", "deployments", "configmaps"], "verbs": ["get", "list", "watch"], "resourceNames": [format!("object-{i}")]}]}))?;
            Api::<Role>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &role).await?;
            let binding: RoleBinding = serde_json::from_value(json!({"metadata": {"name": format!("binding-{i}")}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("role-{i}")}, "subjects": [{"kind": "User", "name": user}, {"kind": "Group", "name": format!("group-{}", i % 50)}]}))?;
            Api::<RoleBinding>::namespaced(admin, &ns).create(&PostParams::default(), &binding).await?;
            anyhow::Ok(())
        }
    };
    let mut creating = tokio::task::JoinSet::new();
    for i in 0..count {
        creating.spawn(create(i, format!("team-{}", i % namespaces), format!("user-{i}")));
        if creating.len() >= 32 {
            creating.join_next().await.expect("a task")??;
        }
    }
    while let Some(done) = creating.join_next().await {
        done??;
    }
    create(count, "bench".into(), "reader".into()).await?;
    let reader: Role = serde_json::from_value(json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}))?;
    Api::<Role>::namespaced(admin.clone(), "bench").create(&PostParams::default(), &reader).await?;
    let binding: RoleBinding = serde_json::from_value(json!({"metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}, "subjects": [{"kind": "User", "name": "reader"}]}))?;
    Api::<RoleBinding>::namespaced(admin.clone(), "bench").create(&PostParams::default(), &binding).await?;
    Ok(())
}

pub async fn run(args: Args) -> Result<()> {
    println!("skiff bench authz: {} roles and bindings, {} clients, {} rounds of {} s per server", args.roles, args.clients, ROUNDS, args.seconds);
    let tokens = tempfile::NamedTempFile::new()?;
    std::fs::write(tokens.path(), format!("{TOKEN},reader,1000\n"))?;
    let token_flag = tokens.path().to_str().expect("a UTF-8 temp path").to_string();
    let mut servers = Vec::new();
    for mode in ["AlwaysAllow", "RBAC"] {
        let flags = ["--disable-scheduler", "--disable-controller-manager", "--token-auth-file", &token_flag, "--authorization-mode", mode];
        let (server, admin, _) = start_server(&flags).await?;
        namespace(&admin, "bench").await?;
        let target: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "target"}, "data": {"k": "v"}}))?;
        Api::<ConfigMap>::namespaced(admin.clone(), "bench").create(&PostParams::default(), &target).await?;
        if mode == "RBAC" {
            let t = Instant::now();
            grant(&admin, args.roles).await?;
            println!("  RBAC: {} roles and bindings written in {:.1} s", args.roles + 1, t.elapsed().as_secs_f64());
        }
        let reader = server.client_with_token(TOKEN).await?;
        reads_per_second(&reader, args.clients, 1).await?; // warm-up
        servers.push((mode, server, reader, Vec::new()));
    }
    // Rounds alternate between the servers, so that noise on this shared
    // machine falls on both; the medians are compared.
    for _ in 0..ROUNDS {
        for (mode, _, reader, rates) in servers.iter_mut() {
            let rate = reads_per_second(reader, args.clients, args.seconds).await?;
            println!("  {mode}: {rate:.0} GETs/s");
            rates.push(rate);
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let allow = median(&mut servers[0].3);
    let rbac = median(&mut servers[1].3);
    println!("  median: AlwaysAllow {allow:.0} GETs/s, RBAC {rbac:.0} GETs/s; RBAC / AlwaysAllow: {:.2}", rbac / allow);
    Ok(())
}

const ROUNDS: usize = 5;
