//! The shim: one small process per container, as containerd's shim and
//! CRI-O's conmon are. It outlives the agent, so restarting the agent
//! leaves containers running: it holds the container's stdout and stderr
//! and writes them to the log in the CRI format, and, as the container's
//! subreaper, collects its exit status into `exit.json`.
//!
//! `skiff shim` forks at once: the parent waits until the container has
//! started (or failed to) and reports that through its exit status, the
//! child stays as the container's parent. It must run before any thread
//! exists (no async runtime), since it forks.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub id: String,
    /// The OCI bundle (`config.json` and `rootfs/`); `started.json` and
    /// `exit.json` are written here too.
    #[arg(long)]
    pub bundle: PathBuf,
    /// runc's state directory (`runc --root`).
    #[arg(long)]
    pub runc_root: PathBuf,
    /// The CRI-format log file.
    #[arg(long)]
    pub log: PathBuf,
    /// The log is rotated once it would grow past this many bytes
    /// (upstream's `containerLogMaxSize`, 10Mi)...
    #[arg(long, default_value_t = 10 << 20)]
    pub log_max_size: u64,
    /// ...keeping this many files, the live one included
    /// (`containerLogMaxFiles`).
    #[arg(long, default_value_t = 5)]
    pub log_max_files: usize,
    /// Give the container a stdin that `kubectl attach` writes to: the
    /// FIFO `<bundle>/stdin` (spec `stdin: true`).
    #[arg(long)]
    pub stdin: bool,
    /// Give the container a terminal (spec `tty: true`): its output is the
    /// terminal's, and `<bundle>/resize` takes `WIDTH HEIGHT` lines.
    #[arg(long)]
    pub tty: bool,
}

/// The FIFO an attachable container reads its stdin from.
pub const STDIN_FIFO: &str = "stdin";
/// The FIFO a terminal's size changes are written to.
pub const RESIZE_FIFO: &str = "resize";

/// What `started.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    pub pid: i32,
    pub started_at: String,
}

/// What `exit.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exited {
    pub exit_code: i32,
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
}

pub const STARTED: &str = "started.json";
pub const EXITED: &str = "exit.json";

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Runs the shim: exits (in the parent) once the container runs, 0, or
/// with 1 and why it could not start on stderr.
pub fn main(args: Args) -> ! {
    match start(args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    }
}

fn start(args: Args) -> Result<()> {
    let (report_r, report_w) = pipe()?;
    // SAFETY: called before any other thread exists (see the module docs).
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => {
            drop(report_w);
            let mut said = String::new();
            std::fs::File::from(report_r).read_to_string(&mut said)?;
            match said.strip_prefix("ok") {
                Some(_) => Ok(()),
                None if said.is_empty() => bail!("the shim died before the container started"),
                None => bail!("{}", said.trim()),
            }
        }
        ForkResult::Child => {
            drop(report_r);
            let mut report = std::fs::File::from(report_w);
            let code = match monitor(&args, &mut report) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write!(report, "{e:#}");
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

fn monitor(args: &Args, report: &mut std::fs::File) -> Result<()> {
    // The agent waits for our parent's output to end: let go of it.
    let null = std::fs::File::open("/dev/null")?;
    let own_log = std::fs::OpenOptions::new().create(true).append(true).open(args.bundle.join("shim.log"))?;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    nix::unistd::dup2(own_log.as_raw_fd(), 1)?;
    nix::unistd::dup2(own_log.as_raw_fd(), 2)?;
    nix::unistd::setsid()?;
    // Orphans of the container (its init, once `runc create` exits) come to us.
    nix::sys::prctl::set_child_subreaper(true)?;
    let log = Arc::new(Mutex::new(Log::open(args)?));
    // Opened read-write, a FIFO never reports end of input: the container
    // reads whatever attach sessions write, as long as it runs.
    let fifo = |name: &str| -> Result<std::fs::File> {
        let path = args.bundle.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).with_context(|| format!("making {}", path.display()))?;
        Ok(std::fs::OpenOptions::new().read(true).write(true).open(&path)?)
    };
    let stdin = if args.stdin { Some(fifo(STDIN_FIFO)?) } else { None };
    let pid_file = args.bundle.join("init.pid");
    let runc_log = args.bundle.join("runc.log");
    let mut create = Command::new("runc");
    create.arg("--root").arg(&args.runc_root).arg("--log").arg(&runc_log).arg("--log-format").arg("json").arg("create").arg("--bundle").arg(&args.bundle).arg("--pid-file").arg(&pid_file);
    let copiers = if args.tty {
        // runc makes the terminal and hands us its master over a socket.
        let socket_path = args.bundle.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket_path).context("making the console socket")?;
        let mut runc = create.arg("--console-socket").arg(&socket_path).arg(&args.id).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("running runc")?;
        drop(create);
        let master = receive_console(&listener);
        if !runc.wait()?.success() {
            bail!("{}", runc_error(&runc_log));
        }
        let master = master?;
        let _ = std::fs::remove_file(&socket_path);
        let resize = fifo(RESIZE_FIFO)?;
        let sizes = master.try_clone()?;
        std::thread::spawn(move || follow_sizes(resize, &sizes));
        if let Some(mut typed) = stdin {
            let mut terminal = std::fs::File::from(master.try_clone()?);
            std::thread::spawn(move || std::io::copy(&mut typed, &mut terminal));
        }
        let log = log.clone();
        vec![std::thread::spawn(move || copy_to_log(master, "stdout", &log))]
    } else {
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdin = stdin.map_or_else(Stdio::null, Stdio::from);
        let created = create.arg(&args.id).stdin(stdin).stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w)).status().context("running runc")?;
        // The command holds the pipes' write ends: let go of them, or the
        // copiers never see the end of the container's output.
        drop(create);
        if !created.success() {
            bail!("{}", runc_error(&runc_log));
        }
        [(out_r, "stdout"), (err_r, "stderr")]
            .map(|(fd, stream)| {
                let log = log.clone();
                std::thread::spawn(move || copy_to_log(fd, stream, &log))
            })
            .into()
    };
    let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse().context("runc's pid file")?;
    let started = Command::new("runc").arg("--root").arg(&args.runc_root).arg("--log").arg(&runc_log).arg("--log-format").arg("json").arg("start").arg(&args.id).stdin(Stdio::null()).output()?;
    if !started.status.success() {
        bail!("{}", runc_error(&runc_log));
    }
    let started = Started { pid, started_at: now() };
    write_json(&args.bundle.join(STARTED), &started)?;
    report.write_all(b"ok")?;
    drop(std::mem::replace(report, std::fs::File::open("/dev/null")?));

    let exit_code = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => break code,
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => break 128 + signal as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("waiting for the container: {e}"),
        }
    };
    let finished_at = now();
    // The container's init is gone, so the kernel has killed the rest of
    // its PID namespace and the pipes close; the log is then complete.
    for copier in copiers {
        let _ = copier.join();
    }
    let oom_killed = oom_killed(&args.bundle);
    write_json(&args.bundle.join(EXITED), &Exited { exit_code, finished_at, oom_killed })?;
    Ok(())
}

/// The terminal master runc sends over the console socket (SCM_RIGHTS).
pub(crate) fn receive_console(listener: &std::os::unix::net::UnixListener) -> Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let (connection, _) = listener.accept().context("waiting for runc's console")?;
    let mut name = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let message = nix::sys::socket::recvmsg::<()>(connection.as_raw_fd(), &mut iov, Some(&mut space), nix::sys::socket::MsgFlags::empty())?;
    for control in message.cmsgs()? {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = control {
            if let Some(fd) = fds.first() {
                // SAFETY: the descriptor was just received and is owned by no one else.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    bail!("runc sent no terminal")
}

/// Applies `WIDTH HEIGHT` lines from the resize FIFO to the terminal.
pub(crate) fn follow_sizes(resize: std::fs::File, terminal: &OwnedFd) {
    for line in BufReader::new(resize).lines().map_while(Result::ok) {
        let mut parts = line.split_whitespace().filter_map(|n| n.parse::<u16>().ok());
        if let (Some(width), Some(height)) = (parts.next(), parts.next()) {
            let size = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
            // SAFETY: a valid descriptor and a winsize that lives across the call.
            unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        }
    }
}

pub(crate) fn runc_error(log: &Path) -> String {
    // runc's log is JSON lines; the last error is the reason.
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
        .unwrap_or_else(|| "runc failed without saying why".into())
}

/// The CRI log format: `<RFC 3339 time> <stream> <F|P> <text>`, one line
/// per line of output; `P` marks a piece of a line longer than 16 KiB.
fn copy_to_log(fd: OwnedFd, stream: &str, log: &Mutex<Log>) {
    const MAX_LINE: usize = 16 * 1024;
    let mut reader = BufReader::new(std::fs::File::from(fd));
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (text, tag) = match line.strip_suffix(b"\n") {
            Some(text) => (text, "F"),
            None if line.len() >= MAX_LINE => (&line[..], "P"),
            None => (&line[..], "F"), // the last line, without a newline
        };
        let mut entry = format!("{} {stream} {tag} ", now()).into_bytes();
        entry.extend_from_slice(text);
        entry.push(b'\n');
        let _ = log.lock().unwrap().write(&entry);
    }
}

/// The container's log file, rotated by size as upstream's kubelet rotates
/// it: the live file is renamed `<log>.<time>` and a new one begun, and
/// the oldest rotated files go beyond the number kept.
struct Log {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    max_size: u64,
    max_files: usize,
}

impl Log {
    fn open(args: &Args) -> Result<Log> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&args.log).with_context(|| format!("opening {}", args.log.display()))?;
        let size = file.metadata()?.len();
        Ok(Log { path: args.log.clone(), file, size, max_size: args.log_max_size, max_files: args.log_max_files.max(1) })
    }

    fn write(&mut self, entry: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + entry.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(entry)?;
        self.size += entry.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S%.f");
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{stamp}"));
        std::fs::rename(&self.path, &rotated)?;
        self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        let name = self.path.file_name().map(|n| format!("{}.", n.to_string_lossy())).unwrap_or_default();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&name)).map(|e| e.path()).collect();
        old.sort();
        let excess = old.len().saturating_sub(self.max_files - 1);
        for path in &old[..excess] {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// Whether the kernel's OOM killer struck in the container's memory cgroup
/// (cgroup v1 `memory.oom_control`, v2 `memory.events`).
fn oom_killed(bundle: &Path) -> bool {
    let Ok(config) = std::fs::read(bundle.join("config.json")) else { return false };
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
    let Some(path) = config.pointer("/linux/cgroupsPath").and_then(|p| p.as_str()) else { return false };
    let path = path.trim_start_matches('/');
    let count = |file: String, key: &str| {
        std::fs::read_to_string(file).ok().and_then(|t| t.lines().find_map(|l| l.strip_prefix(key).and_then(|n| n.trim().parse::<u64>().ok())))
    };
    count(format!("/sys/fs/cgroup/memory/{path}/memory.oom_control"), "oom_kill ")
        .or_else(|| count(format!("/sys/fs/cgroup/{path}/memory.events"), "oom_kill "))
        .is_some_and(|n| n > 0)
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    crate::write_file_atomically(path, &serde_json::to_vec(value)?)
}

/// A pipe neither end of which leaks into runc or the container, except
/// as the stdio a child is given.
fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}
