//! A real `skiff server` on a free loopback port, driven with stock kubectl.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// Extra `skiff server` flags (e.g. the datastore).
    extra: Vec<String>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut cluster = Cluster { child: None, dir, port, extra };
        cluster.boot();
        cluster
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same data directory.
    pub fn boot(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(&self.extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("skiff server did not become ready: {}", self.log());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(&self.kubeconfig(), args, stdin)
    }

    /// The cluster CA, for kubeconfigs of other users.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("data/server/tls/ca.crt")
    }

    /// A kubeconfig for this cluster whose user entry is `user` (YAML
    /// flow mapping, e.g. `{token: abc}`), written as `<name>.kubeconfig`.
    pub fn kubeconfig_for(&self, name: &str, user: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: {}}}}}]\nusers: [{{name: u, user: {user}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
            self.url(),
            self.ca_file().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// kubectl with the given kubeconfig.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.args(args).env("KUBECONFIG", kubeconfig).env_remove("KUBERNETES_SERVICE_HOST");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl is installed");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

impl Cluster {
    /// Runs kubectl, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None)
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(!out.status.success(), "kubectl {} should fail but printed {}", args.join(" "), String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `skiff sim` joined to this cluster with these flags; stopped when
    /// the returned guard is dropped. Returns once its nodes are Ready.
    /// Another skiff process against this cluster (`skiff scheduler`, …),
    /// logging to `<name>.log` in the data dir; stopped when dropped.
    pub fn component(&self, command: &str, log_name: &str, args: &[&str]) -> Sim {
        let log = std::fs::File::create(self.dir.path().join(format!("{log_name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg(command)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Sim(child)
    }

    pub fn sim(&self, args: &[&str]) -> Sim {
        let log = std::fs::File::create(self.dir.path().join("sim.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("sim")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let sim = Sim(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default().contains("registered") {
            assert!(Instant::now() < deadline, "skiff sim did not register its nodes");
            std::thread::sleep(Duration::from_millis(50));
        }
        sim
    }

    /// Polls `kubectl args` until its output satisfies `done`; returns it.
    pub fn wait_for(&self, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_up_to(Duration::from_secs(30), args, what, done)
    }

    pub fn wait_up_to(&self, limit: Duration, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.kubectl(args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && done(&text) {
                return text;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last output:\n{text}{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub struct Sim(Child);

impl Sim {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
