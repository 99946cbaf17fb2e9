//! nftables, driven as upstream's kube-proxy drives it (knftables): a
//! script of commands handed to `nft -f -`, applied by the kernel as one
//! atomic transaction. Small changes that must land fast skip the binary
//! and go to the kernel directly (`netlink`).

pub mod netlink;

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Applies `script` atomically: all of it or none.
pub fn apply(script: &str) -> Result<()> {
    run(&["-f", "-"], Some(script)).map(|_| ())
}

/// Output of `nft ARGS…` (for reading state, e.g. `list table`).
pub fn run(args: &[&str], input: Option<&str>) -> Result<String> {
    run_binary("nft", args, input)
}

fn run_binary(binary: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!("the {binary} binary is missing: install nftables (apt-get install nftables)"),
            _ => anyhow::Error::new(e).context("running nft"),
        })?;
    if let Some(text) = input {
        child.stdin.take().expect("piped stdin").write_all(text.as_bytes()).context("writing to nft")?;
    }
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The start of a script that replaces a table whole: what follows
/// fills it afresh, in the same transaction, so no packet sees it empty.
/// (Adding first makes the delete succeed whether or not it existed.)
pub fn fresh_table(family: &str, name: &str) -> String {
    format!("add table {family} {name}\ndelete table {family} {name}\n")
}

/// Removes a table this agent made, if it is there.
pub fn delete_table(family: &str, name: &str) -> Result<()> {
    apply(&fresh_table(family, name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_nft_is_named() {
        let e = super::run_binary("nft-not-installed", &["list", "tables"], None).unwrap_err();
        assert_eq!(e.to_string(), "the nft-not-installed binary is missing: install nftables (apt-get install nftables)");
    }
}
