//! `skiff token create`: a bootstrap token for joining nodes, as
//! `kubeadm token create`: a `bootstrap.kubernetes.io/token` Secret in
//! kube-system, printed as `<id>.<secret>`.

use std::path::PathBuf;

use anyhow::Result;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use rand::Rng;
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum Token {
    /// Create a bootstrap token and print it.
    Create(CreateArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(long, default_value = "/etc/skiff/skiff.yaml")]
    kubeconfig: PathBuf,
    /// How long the token is valid (`24h`, `30m`; `0` for ever).
    #[arg(long, default_value = "24h", value_parser = crate::components::parse_duration)]
    ttl: std::time::Duration,
    /// Extra groups (each `system:bootstrappers:…`).
    #[arg(long, value_delimiter = ',', default_value = "system:bootstrappers:skiff:default-node-token")]
    groups: Vec<String>,
    #[arg(long)]
    description: Option<String>,
}

/// `n` characters of upstream's bootstrap token alphabet.
fn random(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

impl Token {
    pub async fn run(self) -> Result<()> {
        let Token::Create(args) = self;
        if let Some(bad) = args.groups.iter().find(|g| !g.starts_with("system:bootstrappers:")) {
            anyhow::bail!("group {bad:?} must start with \"system:bootstrappers:\"");
        }
        let client = crate::sim::client(&args.kubeconfig).await?;
        let (id, secret) = (random(6), random(16));
        let mut data = json!({
            "token-id": id, "token-secret": secret,
            "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
            "auth-extra-groups": args.groups.join(","),
        });
        if !args.ttl.is_zero() {
            let expires = chrono::Utc::now() + chrono::Duration::from_std(args.ttl)?;
            data["expiration"] = json!(expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        if let Some(description) = &args.description {
            data["description"] = json!(description);
        }
        let object: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": data,
        }))?;
        Api::<Secret>::namespaced(client, "kube-system").create(&PostParams::default(), &object).await?;
        println!("{id}.{secret}");
        Ok(())
    }
}
