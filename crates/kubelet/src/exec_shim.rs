//! The exec shim: the process behind one `kubectl exec -t`, as
//! containerd's shim is for an exec. `runc exec --tty` in the foreground
//! copies the terminal itself and, when the command ends, closes it
//! without reading what the command wrote last; so runc runs detached
//! (`--detach --console-socket`), hands the terminal to us, and we, the
//! command's subreaper, copy until its output ends and collect its exit
//! status.
//!
//! Its stdin is what the client types, its stdout the terminal's output
//! (and runc's error when the command cannot start), and fd 3 takes
//! `WIDTH HEIGHT` lines for the terminal's size. It exits with the
//! command's status (128 + the signal when killed).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::shim;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub id: String,
    /// The container's bundle: its `config.json` gives the command's
    /// environment, user and working directory, as plain `runc exec` would.
    #[arg(long)]
    pub bundle: PathBuf,
    /// runc's state directory (`runc --root`).
    #[arg(long)]
    pub runc_root: PathBuf,
    /// The terminal's size from the start, `COLUMNSxROWS`.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u16, u16)>,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The descriptor the agent passes the size changes on.
pub const RESIZE_FD: i32 = 3;

/// How long output may go on after the command has ended, while
/// something it left behind still holds the terminal.
const LINGER: Duration = Duration::from_millis(200);

fn parse_size(text: &str) -> Result<(u16, u16), String> {
    let (columns, rows) = text.split_once('x').ok_or("expected COLUMNSxROWS")?;
    Ok((columns.parse().map_err(|e| format!("{e}"))?, rows.parse().map_err(|e| format!("{e}"))?))
}

pub fn main(args: Args) -> ! {
    match run(&args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let _ = write!(std::io::stdout(), "{e:#}\r\n");
            std::process::exit(126);
        }
    }
}

fn run(args: &Args) -> Result<i32> {
    // Orphans of the command (once runc exits, the command itself) come to us.
    nix::sys::prctl::set_child_subreaper(true)?;
    let spec = oci_spec::runtime::Spec::load(args.bundle.join("config.json")).context("reading the container's spec")?;
    let mut process = spec.process().clone().context("the container's spec has no process")?;
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(true));
    // runc sizes the terminal before the command starts.
    let size = args.size.map(|(columns, rows)| oci_spec::runtime::BoxBuilder::default().width(u64::from(columns)).height(u64::from(rows)).build()).transpose()?;
    process.set_console_size(size);

    let scratch = tempfile::Builder::new().prefix("skiff-exec-").tempdir().context("making a scratch directory")?;
    let (process_file, socket_path, pid_file) = (scratch.path().join("process.json"), scratch.path().join("console.sock"), scratch.path().join("pid"));
    std::fs::write(&process_file, serde_json::to_vec(&process)?)?;
    let listener = std::os::unix::net::UnixListener::bind(&socket_path).context("making the console socket")?;
    let log = scratch.path().join("runc.log");
    let status = Command::new("runc")
        .arg("--root")
        .arg(&args.runc_root)
        .arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "exec", "--detach", "--console-socket"])
        .arg(&socket_path)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--process")
        .arg(&process_file)
        .arg(&args.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running runc exec")?;
    if !status.success() {
        let _ = write!(std::io::stdout(), "{}\r\n", shim::runc_error(&log));
        return Ok(status.code().unwrap_or(126));
    }
    // Detached, runc has handed the terminal over before it exits: never wait for it.
    listener.set_nonblocking(true)?;
    let master = shim::receive_console(&listener)?;
    let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse().context("runc's pid file")?;
    drop(scratch);

    let (exited_tx, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited_tx.send(wait_for(pid));
    });
    let mut input = std::fs::File::from(master.try_clone()?);
    std::thread::spawn(move || std::io::copy(&mut std::io::stdin().lock(), &mut input));
    // SAFETY: the agent passes the resize pipe as this descriptor, and nothing else owns it.
    let resize = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(RESIZE_FD) });
    let sizes = master.try_clone()?;
    std::thread::spawn(move || shim::follow_sizes(resize, &sizes));
    copy_output(&master, &exited)
}

/// The command's exit status, once it has exited; other orphans are reaped on the way.
fn wait_for(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return code,
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => return 128 + signal as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 126,
        }
    }
}

/// Copies the terminal's output to stdout until every holder of the
/// terminal has closed it (EIO), or the command has exited and nothing
/// more came for a while; returns the command's exit status.
fn copy_output(master: &OwnedFd, exited: &mpsc::Receiver<i32>) -> Result<i32> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut stdout = std::io::stdout().lock();
    let mut buffer = vec![0u8; 32 * 1024];
    let mut code = None;
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::try_from(LINGER).unwrap_or(PollTimeout::MAX))?;
        code = code.or_else(|| exited.try_recv().ok());
        if ready == 0 {
            match code {
                Some(code) => return Ok(code),
                None => continue,
            }
        }
        match nix::unistd::read(master.as_raw_fd(), &mut buffer) {
            Ok(0) | Err(nix::errno::Errno::EIO) => break,
            Ok(n) => stdout.write_all(&buffer[..n]).and_then(|()| stdout.flush()).context("writing the output")?,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => return Err(e).context("reading the terminal"),
        }
    }
    Ok(code.unwrap_or_else(|| exited.recv().unwrap_or(126)))
}
