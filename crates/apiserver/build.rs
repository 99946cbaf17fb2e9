//! Records what `/version` reports about the build: the commit, whether the
//! tree had local changes, when it was built and by which compiler.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok().filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = output("git", &["rev-parse", "HEAD"]).unwrap_or_default();
    let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let date = output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default();
    let rustc = output(&std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()), &["--version"]).unwrap_or_default();
    println!("cargo:rustc-env=SKIFF_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=SKIFF_GIT_TREE_STATE={}", if dirty { "dirty" } else { "clean" });
    println!("cargo:rustc-env=SKIFF_BUILD_DATE={date}");
    println!("cargo:rustc-env=SKIFF_RUSTC_VERSION={rustc}");
    for path in ["../../.git/HEAD", "../../.git/index"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
