//! `skiff bench deployment`: how long a Deployment of N replicas takes to
//! become fully Ready on simulated nodes, end to end: the Deployment and
//! ReplicaSet controllers create the pods, the scheduler binds them, the
//! simulated kubelets start them, and the controllers count them Ready.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::api::{namespace, start_server};

#[derive(clap::Args)]
pub struct Args {
    /// Simulated nodes (32 CPU, 256 GiB, 110 pods each).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
}

pub async fn run(args: Args) -> Result<()> {
    let (server, client, _) = start_server(&[]).await?;
    let options = skiff_sim::Options { nodes: args.nodes, ..Default::default() };
    let _sim = skiff_sim::Sim::start(client.clone(), options).await?;
    namespace(&client, "bench").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            },
        },
    }))?;
    let started = Instant::now();
    deployments.create(&PostParams::default(), &deployment).await?;
    let mut last = 0;
    let elapsed = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = deployments.get_status("web").await?.status.unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0);
        if ready == args.replicas && status.available_replicas == Some(args.replicas) {
            break started.elapsed();
        }
        if ready / 100 != last / 100 {
            println!("  … {ready} of {} ready after {:.1} s", args.replicas, started.elapsed().as_secs_f64());
        }
        last = ready;
        if started.elapsed() > Duration::from_secs(600) {
            bail!("not Ready within 10 minutes ({ready} of {})", args.replicas);
        }
    };
    println!("\n| metric | value |\n|---|---|");
    println!("| Deployment of {} replicas on {} nodes: created → all Ready and available | {:.2} s |", args.replicas, args.nodes, elapsed.as_secs_f64());
    println!("| server RSS after (API server, store, scheduler, controllers) | {:.1} MiB |", server.rss_mib());
    println!("| bench RSS after (simulated nodes) | {:.1} MiB |", super::self_rss_mib());
    Ok(())
}
