//! `kubectl exec` on the agent: a command run in a container, its streams
//! carried over WebSocket in upstream's channel protocol
//! (`v5.channel.k8s.io`, and `v4.channel.k8s.io`): each binary message
//! starts with its stream, 0 stdin, 1 stdout, 2 stderr, 3 the final
//! Status, and in v5 255 to close a stream.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::State as Run;
use crate::Kubelet;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the query of an exec request asks for.
#[derive(Debug, Default)]
struct Request {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn parse(query: &str) -> Request {
    let mut request = Request::default();
    for (key, value) in url_pairs(query) {
        // Go's strconv.ParseBool, which upstream's parameter codec uses.
        let on = matches!(value.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True");
        match key.as_str() {
            "command" => request.command.push(value),
            "stdin" => request.stdin = on,
            "stdout" => request.stdout = on,
            "stderr" => request.stderr = on,
            "tty" => request.tty = on,
            _ => {}
        }
    }
    request
}

/// `k=v&…` decoded; `command` repeats, so no map.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).map(|(k, v)| (decode(k), decode(v))).collect()
}

/// `GET /exec/{namespace}/{pod}/{container}?command=…&stdin=…`
pub(crate) async fn exec(State(kubelet): State<Arc<Kubelet>>, Path((namespace, pod, container)): Path<(String, String, String)>, RawQuery(query): RawQuery, ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>) -> Response {
    let request = parse(query.as_deref().unwrap_or(""));
    if request.command.is_empty() {
        return (StatusCode::BAD_REQUEST, "you must specify at least 1 command").into_response();
    }
    let Ok(ws) = ws else {
        return (StatusCode::BAD_REQUEST, "exec is served over WebSocket (v5.channel.k8s.io or v4.channel.k8s.io)").into_response();
    };
    let runs = kubelet.runtime.list(None).await.unwrap_or_default();
    let running = runs.into_iter().find(|c| c.meta.pod_namespace == namespace && c.meta.pod_name == pod && c.meta.container == container && matches!(c.state, Run::Running { .. }));
    let Some(target) = running else {
        return (StatusCode::BAD_REQUEST, format!("container {container} is not running in pod {pod}")).into_response();
    };
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| async move {
            if let Err(e) = session(kubelet, target.id, request, socket).await {
                tracing::warn!("exec session ended: {e:#}");
            }
        })
        .into_response()
}

fn frame(stream: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(stream);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// The final Status upstream sends on the error stream.
fn status(command: &[String], code: Option<i32>) -> serde_json::Value {
    match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        Some(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        None => json!({"metadata": {}, "status": "Failure", "message": "command was killed by a signal", "reason": "InternalError"}),
    }
}

async fn session(kubelet: Arc<Kubelet>, id: String, request: Request, socket: WebSocket) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = socket.split();
    type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
    type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
    // A terminal merges stdout and stderr, and takes resizes.
    let started: anyhow::Result<(tokio::process::Child, Vec<(Reader, u8, bool)>, Option<Writer>, Option<std::os::fd::OwnedFd>)> = async {
        if request.tty {
            let (child, master) = kubelet.runtime.exec_tty(&id, &request.command).await?;
            let output = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
            let input = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
            let input: Option<Writer> = request.stdin.then(|| Box::new(input) as Writer);
            Ok((child, vec![(Box::new(output) as Reader, STDOUT, request.stdout)], input, Some(master)))
        } else {
            let mut child = kubelet.runtime.exec(&id, &request.command, request.stdin).await?;
            let outputs = vec![
                (Box::new(child.stdout.take().expect("piped")) as Reader, STDOUT, request.stdout),
                (Box::new(child.stderr.take().expect("piped")) as Reader, STDERR, request.stderr),
            ];
            let input = child.stdin.take().map(|i| Box::new(i) as Writer);
            Ok((child, outputs, input, None))
        }
    }
    .await;
    let (mut child, outputs, mut stdin, terminal) = match started {
        Ok(started) => started,
        Err(e) => {
            let failure = json!({"metadata": {}, "status": "Failure", "message": format!("{e:#}"), "reason": "InternalError"});
            sink.send(frame(ERROR, failure.to_string().as_bytes())).await?;
            sink.send(normal_close()).await?;
            return Ok(());
        }
    };
    let (tx, mut outgoing) = tokio::sync::mpsc::channel::<Message>(16);
    let pump = |mut reader: Reader, stream: u8, wanted: bool| {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) if wanted => {
                        if tx.send(frame(stream, &buffer[..n])).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                }
            }
        })
    };
    let runc_pid = child.id();
    let pumps: Vec<_> = outputs.into_iter().map(|(reader, stream, wanted)| pump(reader, stream, wanted)).collect();
    drop(tx);
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        sink
    });
    let reader = async {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(data) if data.first() == Some(&STDIN) => {
                    if let Some(input) = stdin.as_mut() {
                        if input.write_all(&data[1..]).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Message::Binary(data) if data.first() == Some(&CLOSE) && data.get(1) == Some(&STDIN) => stdin = None,
                Message::Binary(data) if data.first() == Some(&RESIZE) => {
                    if let (Some(fd), Ok(size)) = (&terminal, serde_json::from_slice::<serde_json::Value>(&data[1..])) {
                        resize(fd, size["Width"].as_u64().unwrap_or(80) as u16, size["Height"].as_u64().unwrap_or(24) as u16);
                        if let Some(pid) = runc_pid {
                            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGWINCH);
                        }
                    }
                }
                Message::Close(_) => return true,
                _ => {}
            }
        }
        true
    };
    // The command's end ends the session; the client leaving ends the command.
    let code = tokio::select! {
        exit = child.wait() => exit.ok().and_then(|s| s.code()),
        _ = reader => {
            let _ = child.kill().await;
            return Ok(());
        }
    };
    // A terminal's output ends with its last process; pipes end on their own.
    if terminal.is_some() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        pumps.iter().for_each(|p| p.abort());
    }
    for p in pumps {
        let _ = p.await;
    }
    let mut sink = writer.await?;
    sink.send(frame(ERROR, status(&request.command, code).to_string().as_bytes())).await?;
    sink.send(normal_close()).await?;
    Ok(())
}

/// A normal closure (1000) ends the error stream; without a code, clients see an error.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() }))
}

/// Sets a terminal's size (TIOCSWINSZ), as the client's window changes.
fn resize(terminal: &std::os::fd::OwnedFd, width: u16, height: u16) {
    use std::os::fd::AsRawFd;
    let size = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: a valid descriptor and a winsize that lives across the call.
    unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_repeat_the_command() {
        let r = parse("command=sh&command=-c&command=echo+%24HOME&stdin=true&stdout=1&stderr=false");
        assert_eq!(r.command, ["sh", "-c", "echo $HOME"]);
        assert!(r.stdin && r.stdout && !r.stderr);
        assert_eq!(status(&["false".into()], Some(1))["details"]["causes"][0]["message"], "1");
        assert_eq!(status(&[], Some(0))["status"], "Success");
    }
}
