//! `skiff bench images`: the time to start a pod on a host when its image
//! (tens of MB) is on another host only, pulled from that host (the
//! embedded registry) against pulled from a registry on the same bridge.
//! Two agents in network namespaces, a server with `--embedded-registry`
//! and Debian's docker-registry on this machine's address on the bridge;
//! each round uses two new images of the test image plus a layer of random
//! bytes, so nothing is cached.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};

use super::lan::{sh, Host, Lan, Process};

#[derive(clap::Args)]
pub struct Args {
    /// Size of each image's own layer, in MiB of random bytes.
    #[arg(long, default_value_t = 40)]
    mib: usize,
    /// Pods started per source.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The local test registry holding `busybox:test` (scripts/test-registry.sh).
    #[arg(long, default_value = "127.0.0.1:5000/busybox:test")]
    base: String,
}

const LAN: Lan = Lan { bridge: "skbimg", prefix: "10.254.201", netns_prefix: "skiff-bench-img-" };

/// The base image plus a layer of `mib` MiB of random bytes, pushed to
/// `registry` as `repository:1`.
fn make_image(dir: &Path, base: &str, mib: usize, registry: &str, repository: &str) -> Result<String> {
    let layout = dir.join(format!("oci-{}", repository.replace('/', "-")));
    let image = format!("{}:img", layout.display());
    sh(&["skopeo", "copy", "-q", "--src-tls-verify=false", &format!("docker://{base}"), &format!("oci:{image}")])?;
    let bundle = layout.with_extension("bundle");
    sh(&["umoci", "unpack", "--image", &image, &bundle.display().to_string()])?;
    let mut random = vec![0u8; mib << 20];
    rand::Rng::fill(&mut rand::rng(), &mut random[..]);
    std::fs::write(bundle.join("rootfs/payload"), random)?;
    sh(&["umoci", "repack", "--image", &image, &bundle.display().to_string()])?;
    let reference = format!("{registry}/{repository}:1");
    sh(&["skopeo", "copy", "-q", "--dest-tls-verify=false", &format!("oci:{image}"), &format!("docker://{reference}")])?;
    let _ = std::fs::remove_dir_all(&bundle);
    let _ = std::fs::remove_dir_all(&layout);
    Ok(reference)
}

/// Creates a pod running `image` on `node` and returns the time until it runs.
async fn start_pod(pods: &Api<Pod>, name: &str, node: &str, image: &str) -> Result<Duration> {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}]},
    }))?;
    let started = Instant::now();
    pods.create(&PostParams::default(), &pod).await?;
    loop {
        let pod = pods.get(name).await?;
        match pod.status.and_then(|s| s.phase).as_deref() {
            Some("Running") => return Ok(started.elapsed()),
            Some("Failed") => bail!("pod {name} failed"),
            _ if started.elapsed() > Duration::from_secs(300) => bail!("pod {name} did not start in 5 minutes"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn run(args: Args) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("skiff-bench-images-").tempdir()?;
    let _bridge = LAN.up()?;
    let gateway = LAN.gateway();

    // The registry, on this machine's address on the bridge, plain HTTP.
    let registry = format!("{gateway}:5055");
    let config = dir.path().join("registry.yml");
    std::fs::write(&config, format!("version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: \"{registry}\"}}\n", dir.path().join("registry").display()))?;
    let _registry = Process(Command::new("docker-registry").arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting docker-registry")?);
    let registries = dir.path().join("registries.yaml");
    std::fs::write(&registries, format!("mirrors:\n  \"{registry}\":\n    endpoint: [\"http://{registry}\"]\n"))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("building {} images of {} MiB of their own...", 2 * args.rounds, args.mib);
    let mut images = Vec::new();
    for round in 0..args.rounds {
        let from_registry = make_image(dir.path(), &args.base, args.mib, &registry, &format!("bench/registry-{round}")).context("building an image (is scripts/test-registry.sh's registry up?)")?;
        let from_peer = make_image(dir.path(), &args.base, args.mib, &registry, &format!("bench/peer-{round}"))?;
        images.push((from_registry, from_peer));
    }

    // The server on this machine, the agents on two hosts.
    let flags = ["--embedded-registry", "--flannel-backend", "none", "--disable-kube-proxy", "--disable", "coredns", "--cluster-cidr", "10.201.0.0/16"];
    let server = LAN.start_server(dir.path(), 6444, &flags).await?;
    let client = server.client.clone();
    let mut hosts: Vec<Host> = Vec::new();
    for i in 1..=2u8 {
        let mut host = LAN.plug_in(&format!("h{i}"), 10 + i, dir.path())?;
        server.join(&mut host, &format!("bench-img-h{i}"), &["--private-registry", &registries.display().to_string()])?;
        hosts.push(host);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.list(&Default::default()).await?.items.len() < 2 {
        anyhow::ensure!(Instant::now() < deadline, "the agents did not join: {}", hosts[0].log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (mut from_registry, mut from_peer) = (Vec::new(), Vec::new());
    let result = async {
        for (round, (registry_image, peer_image)) in images.iter().enumerate() {
            from_registry.push(start_pod(&pods, &format!("registry-{round}"), "bench-img-h2", registry_image).await?);
            // The first host pulls the other image from the registry; once its
            // Node lists it, the second takes it from the first.
            start_pod(&pods, &format!("seed-{round}"), "bench-img-h1", peer_image).await?;
            let listed = |node: Node| node.status.and_then(|s| s.images).unwrap_or_default().iter().any(|i| i.names.iter().flatten().any(|n| n == peer_image));
            while !listed(nodes.get("bench-img-h1").await?) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            from_peer.push(start_pod(&pods, &format!("peer-{round}"), "bench-img-h2", peer_image).await?);
            anyhow::ensure!(hosts[1].log().contains(&format!("image={peer_image} node=bench-img-h1")), "the second host did not pull {peer_image} from the first");
            eprintln!("round {}: from the registry {:.2} s, from the other node {:.2} s", round + 1, from_registry[round].as_secs_f64(), from_peer[round].as_secs_f64());
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // Pods go first, so that their agents stop and remove what they made.
    server.delete_pods().await;
    result?;

    let median = |samples: &mut Vec<Duration>| super::percentile(samples, 50.0).as_secs_f64();
    println!("\nimages: pod start on a second host, image of {} MiB of its own plus the 1 MiB base, {} rounds", args.mib, args.rounds);
    println!("{:<32} {:>10} {:>10}", "source", "median s", "max s");
    let max = |samples: &[Duration]| samples.iter().max().copied().unwrap_or_default().as_secs_f64();
    println!("{:<32} {:>10.2} {:>10.2}", "registry on the same bridge", median(&mut from_registry), max(&from_registry));
    println!("{:<32} {:>10.2} {:>10.2}", "another node (embedded registry)", median(&mut from_peer), max(&from_peer));
    Ok(())
}
