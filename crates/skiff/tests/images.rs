//! Images across hosts: registries as k3s's `registries.yaml` configures
//! them (plain HTTP, mirrors with rewrites, credentials), and nodes that
//! serve each other the images they hold (the embedded registry).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::hosts::{run, Hosts};

/// Debian's docker-registry on `address`, with htpasswd authentication
/// when `htpasswd` is given; stopped and removed when dropped.
struct Registry {
    child: Child,
    pub address: String,
    _dir: tempfile::TempDir,
}

/// `skiff`:`s3cret`, bcrypt as htpasswd wants it.
const HTPASSWD: &str = "skiff:$2b$12$qTXOG/pApWJioKP9r0t5vuvQw4sRDlQ.8A9jLiL7rE6ZCSK8ycvm6";

impl Registry {
    fn start(host: &str, authenticated: bool) -> Registry {
        let dir = tempfile::Builder::new().prefix("skiff-registry-").tempdir().unwrap();
        let port = std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
        let address = format!("{host}:{port}");
        let auth = if authenticated {
            std::fs::write(dir.path().join("htpasswd"), format!("{HTPASSWD}\n")).unwrap();
            format!("auth: {{htpasswd: {{realm: skiff, path: {}}}}}\n", dir.path().join("htpasswd").display())
        } else {
            String::new()
        };
        let config = format!("version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: \"{address}\"}}\n{auth}", dir.path().join("data").display());
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry").arg("serve").arg(dir.path().join("config.yml")).stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().unwrap();
        // Dropped (and so stopped) if it never answers.
        let registry = Registry { child, address, _dir: dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&registry.address).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("docker-registry did not start on {}", registry.address);
    }

    /// Copies the test image here as `repository:tag`.
    fn push(&self, from: &str, repository: &str, creds: Option<&str>) {
        let to = format!("docker://{}/{repository}", self.address);
        let mut args = vec!["copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"];
        if let Some(creds) = creds {
            args.extend(["--dest-creds", creds]);
        }
        let from = if from.contains("://") { from.to_string() } else { format!("docker://{from}") };
        args.extend([from.as_str(), to.as_str()]);
        run("skopeo", &args);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pod on `node` running `image` (it sleeps).
fn pod(name: &str, node: &str, image: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"nodeName":"{node}","terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{image}","imagePullPolicy":"IfNotPresent","command":["sleep","3600"]}}]}}}}"#)
}

fn phase(hosts: &Hosts, name: &str) -> String {
    String::from_utf8_lossy(&hosts.cluster.kubectl(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]).stdout).into_owned()
}

fn wait_running(hosts: &Hosts, name: &str) {
    hosts.wait(&format!("pod {name} Running"), Duration::from_secs(90), || phase(hosts, name) == "Running");
}

/// The message of the pod's image pull failure, once it has one.
fn pull_failure(hosts: &Hosts, name: &str) -> String {
    let mut message = String::new();
    hosts.wait(&format!("pod {name} to fail its pull"), Duration::from_secs(60), || {
        let events = hosts.cluster.ok(&["get", "events", "--field-selector", &format!("involvedObject.name={name},reason=Failed"), "-o", "jsonpath={.items[*].message}"]);
        message = events;
        !message.is_empty()
    });
    message
}

/// An OCI archive of the test image with one more layer holding `marker`,
/// so its top layer is on no host yet.
fn image_with_layer(dir: &Path, marker: &str) -> PathBuf {
    let layout = dir.join(format!("oci-{marker}"));
    let image = format!("{}:img", layout.display());
    run("skopeo", &["copy", "-q", "--src-tls-verify=false", &format!("docker://{}", common::test_image()), &format!("oci:{image}")]);
    let bundle = dir.join(format!("bundle-{marker}"));
    run("umoci", &["unpack", "--image", &image, &bundle.display().to_string()]);
    std::fs::write(bundle.join("rootfs").join(marker), format!("{marker}\n").repeat(1000)).unwrap();
    run("umoci", &["repack", "--image", &image, &bundle.display().to_string()]);
    let archive = dir.join(format!("{marker}.tar"));
    run("skopeo", &["copy", "-q", &format!("oci:{image}"), &format!("oci-archive:{}", archive.display())]);
    archive
}

/// Pulls through `registries.yaml`: a registry on the hosts' LAN marked
/// `http://`, `docker.io/library/…` from a mirror with a rewrite, and a
/// registry with htpasswd that fails plainly without credentials and works
/// once the file gives them (read again without a restart). A file that is
/// not YAML, or names an endpoint that is not a URL, stops the agent at
/// start with the line and the reason.
#[test]
fn private_registries_over_http_with_mirrors_rewrites_and_credentials() {
    let dir = tempfile::Builder::new().prefix("skiff-registries-").tempdir().unwrap();
    let file = dir.path().join("registries.yaml");
    std::fs::write(&file, "").unwrap();
    let file_flag = file.display().to_string();
    let hosts = Hosts::start_with(2, &[], &["--private-registry", &file_flag]);
    let open = Registry::start(&hosts.gateway(), false);
    let locked = Registry::start(&hosts.gateway(), true);
    let test_image = common::test_image();
    open.push(&test_image, "team/busybox:1", None);
    open.push(&test_image, "mirrored/skiffbox:1", None);
    locked.push(&test_image, "private/busybox:1", Some("skiff:s3cret"));
    let (open_at, locked_at) = (&open.address, &locked.address);
    let write = |auth: &str| {
        std::fs::write(&file, format!("mirrors:\n  \"{open_at}\":\n    endpoint: [\"http://{open_at}\"]\n  \"{locked_at}\":\n    endpoint: [\"http://{locked_at}\"]\n  docker.io:\n    endpoint: [\"http://{open_at}\"]\n    rewrite:\n      \"^library/(.*)\": \"mirrored/$1\"\n{auth}")).unwrap();
    };
    write("");

    // Plain HTTP on the LAN, on both hosts.
    for host in ["h1", "h2"] {
        hosts.cluster.ok_stdin(&["create", "-f", "-"], Some(&pod(&format!("http-{host}"), host, &format!("{open_at}/team/busybox:1"))));
    }
    wait_running(&hosts, "http-h1");
    wait_running(&hosts, "http-h2");
    // docker.io through the mirror, its repository rewritten.
    hosts.cluster.ok_stdin(&["create", "-f", "-"], Some(&pod("mirrored", "h1", "skiffbox:1")));
    wait_running(&hosts, "mirrored");
    let image_id = hosts.cluster.ok(&["get", "pod", "mirrored", "-o", "jsonpath={.status.containerStatuses[0].imageID}"]);
    assert!(image_id.starts_with("docker.io/library/skiffbox@sha256:"), "the image keeps the name it was asked by: {image_id}");

    // The registry with credentials refuses without them, plainly...
    hosts.cluster.ok_stdin(&["create", "-f", "-"], Some(&pod("private", "h2", &format!("{locked_at}/private/busybox:1"))));
    let message = pull_failure(&hosts, "private");
    assert!(message.contains("Not authorized"), "{message}");
    // ...and lets the pod's next try in once the file gives them.
    write(&format!("configs:\n  \"{locked_at}\":\n    auth: {{username: skiff, password: s3cret}}\n"));
    wait_running(&hosts, "private");

    // Bad files stop the agent at start, saying where and why.
    let h1 = hosts.host("h1");
    for (text, says) in [("mirrors: [unclosed\n", "line "), ("mirrors:\n  docker.io:\n    endpoint: [\"registry.local:5000\"]\n", "is not a URL")] {
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, text).unwrap();
        let out = h1.run(env!("CARGO_BIN_EXE_skiff"), &["agent", "--server", &hosts.cluster.url(), "--ca-file", "/nonexistent", "--private-registry", &bad.display().to_string(), "--data-dir", &dir.path().join("bad-agent").display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says) && stderr.contains("bad.yaml"), "{stderr}");
    }
}

/// With `--embedded-registry`, an image imported on one host runs on the
/// other with no registry at all, pulled from the first host; a blob the
/// peer serves that does not match its digest is refused and nothing of
/// the image is kept.
#[test]
fn embedded_registry_shares_an_imported_image_between_hosts() {
    let hosts = Hosts::start(2, &["--embedded-registry"]);
    let dir = tempfile::Builder::new().prefix("skiff-peer-images-").tempdir().unwrap();
    let h1_data = hosts.host("h1").dir.join("data").display().to_string();
    let import = |archive: &Path, name: &str| {
        run(env!("CARGO_BIN_EXE_skiff"), &["image", "import", &archive.display().to_string(), "--name", name, "--data-dir", &h1_data]);
    };
    // No registry answers for example.invalid: only h1 has these.
    let shared = "example.invalid/only-h1/busybox:1";
    import(&image_with_layer(dir.path(), "shared-marker"), shared);
    let tampered = "example.invalid/only-h1/tampered:1";
    import(&image_with_layer(dir.path(), "tampered-marker"), tampered);
    hosts.wait("h1 to advertise its images", Duration::from_secs(60), || hosts.cluster.ok(&["get", "node", "h1", "-o", "jsonpath={.status.images[*].names}"]).contains("example.invalid/only-h1/tampered"));

    hosts.cluster.ok_stdin(&["create", "-f", "-"], Some(&pod("from-peer", "h2", shared)));
    wait_running(&hosts, "from-peer");
    let pulled = hosts.cluster.ok(&["get", "events", "--field-selector", "involvedObject.name=from-peer,reason=Pulled", "-o", "jsonpath={.items[*].message}"]);
    assert!(pulled.contains("Successfully pulled image"), "{pulled}");
    let marker = hosts.cluster.ok(&["exec", "from-peer", "--", "head", "-n1", "/shared-marker"]);
    assert_eq!(marker.trim(), "shared-marker");

    // h1 now serves garbage for the tampered image's top layer.
    let store: serde_json::Value = serde_json::from_slice(&std::fs::read(hosts.host("h1").dir.join("data/agent/images/images.json")).unwrap()).unwrap();
    let image = store.as_array().unwrap().iter().find(|i| i["references"].to_string().contains("tampered")).unwrap();
    let top = image["layers"].as_array().unwrap().last().unwrap().as_str().unwrap().trim_start_matches("sha256:").to_string();
    let blob = hosts.host("h1").dir.join("data/agent/images/blobs").join(&top);
    let size = std::fs::metadata(&blob).unwrap().len() as usize;
    std::fs::write(&blob, vec![b'x'; size]).unwrap();
    hosts.cluster.ok_stdin(&["create", "-f", "-"], Some(&pod("tampered", "h2", tampered)));
    let message = pull_failure(&hosts, "tampered");
    assert!(message.contains("from node h1") && message.contains("refused"), "{message}");
    let h2_images = hosts.host("h2").dir.join("data/agent/images");
    let kept = std::fs::read_to_string(h2_images.join("images.json")).unwrap();
    assert!(!kept.contains("tampered"), "{kept}");
    assert!(!h2_images.join("layers").join(&top).exists() && !h2_images.join("blobs").join(&top).exists(), "nothing unverified is kept");
}
