//! `skiff certs`: a client certificate signed by the cluster CA for a user
//! and groups (CN and O, as upstream's x509 authenticator reads them),
//! printed as a kubeconfig.

use std::path::PathBuf;

use anyhow::{bail, Result};
use skiff_auth::pki::{self, Pki};

#[derive(clap::Args)]
pub struct Args {
    /// The server's data directory, which holds the cluster CA.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The user name (the certificate's CN).
    #[arg(long)]
    user: String,
    /// A group (an O of the certificate); repeat for several.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// The API server's URL, written into the kubeconfig.
    #[arg(long, default_value = "https://127.0.0.1:6443")]
    server: String,
}

pub fn run(args: Args) -> Result<()> {
    let dir = args.data_dir.join("server/tls");
    if !dir.join("ca.crt").exists() {
        bail!("no cluster CA in {}: run `skiff server --data-dir {}` first", dir.display(), args.data_dir.display());
    }
    if args.user.is_empty() {
        bail!("--user must not be empty");
    }
    let pki = Pki::load_or_create(&dir)?;
    let groups: Vec<&str> = args.groups.iter().map(String::as_str).collect();
    let pair = pki.client(None, &args.user, &groups)?;
    print!("{}", pki::kubeconfig(&args.server, pki.ca_pem(), &args.user, &pair));
    Ok(())
}
