//! `kubectl exec` on the agent: a command run in a container, its streams
//! carried over WebSocket in upstream's channel protocol
//! (`v5.channel.k8s.io`, and `v4.channel.k8s.io`): each binary message
//! starts with its stream, 0 stdin, 1 stdout, 2 stderr, 3 the final
//! Status, and in v5 255 to close a stream. Over SPDY (kubectl with
//! `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`), each channel is a stream of
//! its own.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::runtime::State as Run;
use crate::Kubelet;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the query of an exec (or attach) request asks for.
#[derive(Debug, Default)]
struct Request {
    /// Attach to the container's own streams instead of running a command.
    attach: bool,
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

/// `GET|POST /exec/{namespace}/{pod}/{container}?command=…&stdin=…`
pub(crate) async fn exec(state: State<Arc<Kubelet>>, path: Path<(String, String, String)>, RawQuery(query): RawQuery, request: axum::extract::Request) -> Response {
    let asked = parse(query.as_deref().unwrap_or(""));
    if asked.command.is_empty() {
        return (StatusCode::BAD_REQUEST, "you must specify at least 1 command").into_response();
    }
    connect(state, path, asked, request).await
}

/// `GET|POST /attach/{namespace}/{pod}/{container}?stdin=…&stdout=…`
pub(crate) async fn attach(state: State<Arc<Kubelet>>, path: Path<(String, String, String)>, RawQuery(query): RawQuery, request: axum::extract::Request) -> Response {
    let asked = Request { attach: true, command: Vec::new(), ..parse(query.as_deref().unwrap_or("")) };
    connect(state, path, asked, request).await
}

async fn connect(State(kubelet): State<Arc<Kubelet>>, Path((namespace, pod, container)): Path<(String, String, String)>, asked: Request, request: axum::extract::Request) -> Response {
    let runs = kubelet.runtime.list(None).await.unwrap_or_default();
    let running = runs.into_iter().find(|c| c.meta.pod_namespace == namespace && c.meta.pod_name == pod && c.meta.container == container && matches!(c.state, Run::Running { .. }));
    let Some(target) = running else {
        return (StatusCode::BAD_REQUEST, format!("container {container} is not running in pod {pod}")).into_response();
    };
    let (mut parts, body) = request.into_parts();
    if let Ok(ws) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        return ws
            .protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
            .on_upgrade(move |socket| async move {
                if let Err(e) = websocket_session(kubelet, target.id, asked, socket).await {
                    tracing::warn!("exec session ended: {e:#}");
                }
            })
            .into_response();
    }
    let mut request = axum::extract::Request::from_parts(parts, body);
    crate::spdy::upgrade(&mut request, &SPDY_PROTOCOLS, move |streams, protocol| spdy_session(kubelet, target.id, asked, streams, protocol))
}

/// The remote command protocols over SPDY, upstream's preference first.
const SPDY_PROTOCOLS: [&str; 4] = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

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

/// A command's streams, whichever protocol carries them: what the client
/// types, its terminal's size, and the output to send (by stream number).
struct Channels {
    stdin: Option<mpsc::Receiver<Bytes>>,
    resize: Option<mpsc::Receiver<(u16, u16)>>,
    output: mpsc::Sender<(u8, Bytes)>,
}

/// How a command ended: its exit status (`None` when killed), or `Err`
/// when it could not start. `Ok(None)` when the client left first.
type Outcome = Result<Option<Option<i32>>, String>;

/// Runs the command until it ends or `gone` resolves (the client left, so
/// the command is killed). Every output sender is dropped on return.
async fn run(kubelet: &Kubelet, id: &str, request: &Request, channels: Channels, gone: impl std::future::Future<Output = ()>) -> Outcome {
    if request.attach {
        return attach_streams(kubelet, id, channels, gone).await;
    }
    type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
    let Channels { stdin: typed, mut resize, output } = channels;
    // kubectl sends the terminal's size as soon as it connects: a command
    // started on a terminal of that size never sees it change under it.
    let size = match resize.as_mut() {
        Some(sizes) if request.tty => tokio::time::timeout(FIRST_SIZE_WAIT, sizes.recv()).await.ok().flatten(),
        _ => None,
    };
    let started = match request.tty {
        true => kubelet.runtime.exec_tty(id, &request.command, size).await.map(|(child, sizes)| (child, Some(sizes))),
        false => kubelet.runtime.exec(id, &request.command, request.stdin).await.map(|child| (child, None)),
    };
    let (mut child, sizes) = started.map_err(|e| format!("{e:#}"))?;
    // A terminal merges stdout and stderr (on one, the exec shim's stderr
    // carries only its own errors), and takes resizes.
    let (errors, errors_wanted) = if request.tty { (STDOUT, request.stdout) } else { (STDERR, request.stderr) };
    let outputs: [(Reader, u8, bool); 2] = [
        (Box::new(child.stdout.take().expect("piped")), STDOUT, request.stdout),
        (Box::new(child.stderr.take().expect("piped")), errors, errors_wanted),
    ];
    let stdin = child.stdin.take().filter(|_| request.stdin);
    let pumps: Vec<_> = outputs
        .into_iter()
        .map(|(mut reader, stream, wanted)| {
            let output = output.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 32 * 1024];
                while let Ok(n @ 1..) = reader.read(&mut buffer).await {
                    if wanted && output.send((stream, Bytes::copy_from_slice(&buffer[..n]))).await.is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(output);
    let mut helpers = Vec::new();
    if let (Some(mut input), Some(mut typed)) = (stdin, typed) {
        helpers.push(tokio::spawn(async move {
            while let Some(bytes) = typed.recv().await {
                if input.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = input.shutdown().await;
        }));
    }
    if let (Some(sizes), Some(mut resize)) = (sizes, resize) {
        let mut sizes = tokio::net::unix::pipe::Sender::from_owned_fd(sizes).map_err(|e| e.to_string())?;
        helpers.push(tokio::spawn(async move {
            while let Some((width, height)) = resize.recv().await {
                if sizes.write_all(format!("{width} {height}\n").as_bytes()).await.is_err() {
                    return;
                }
            }
        }));
    }
    let code = tokio::select! {
        exit = child.wait() => exit.ok().map(|s| s.code()),
        _ = gone => None,
    };
    helpers.iter().for_each(|h| h.abort());
    let Some(code) = code else {
        let _ = child.kill().await;
        pumps.iter().for_each(|p| p.abort());
        return Ok(None);
    };
    // Output ends when the last holder of the pipes closes them, normally
    // the command itself; a process it left behind holding them open does
    // not keep the session open.
    for mut p in pumps {
        if tokio::time::timeout(OUTPUT_DRAIN, &mut p).await.is_err() {
            p.abort();
        }
    }
    Ok(Some(code))
}

/// How long a command on a terminal waits for the client's first size.
const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// How long output may go on after the command has ended.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Attaches to a running container: what it writes, read as its log
/// grows (the shim holds its output), what the client types, written to
/// its stdin FIFO if it has one, and its terminal's size if it has one;
/// until it stops or the client leaves.
async fn attach_streams(kubelet: &Kubelet, id: &str, channels: Channels, gone: impl std::future::Future<Output = ()>) -> Outcome {
    let containers = kubelet.runtime.list(None).await.map_err(|e| format!("{e:#}"))?;
    let log = containers.into_iter().find(|c| c.id == id).map(|c| c.meta.log_path).ok_or("the container is gone")?;
    let Channels { stdin: typed, output, resize } = channels;
    let resizer = resize.map(|mut sizes| {
        let (runtime, id) = (kubelet.runtime.clone(), id.to_string());
        tokio::spawn(async move {
            while let Some((width, height)) = sizes.recv().await {
                if let Err(e) = runtime.resize(&id, width, height) {
                    tracing::debug!("resizing the terminal of {id}: {e}");
                }
            }
        })
    });
    let writer = match (typed, kubelet.runtime.stdin(id)) {
        (Some(mut typed), Some(fifo)) => Some(tokio::spawn(async move {
            let Ok(mut input) = tokio::fs::OpenOptions::new().write(true).open(&fifo).await else { return };
            while let Some(bytes) = typed.recv().await {
                if input.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        })),
        _ => None,
    };
    let runtime = kubelet.runtime.clone();
    let id = id.to_string();
    let follow = async move {
        let Ok(mut file) = tokio::fs::File::open(&log).await else { return };
        let _ = tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::End(0)).await;
        let mut pending = Vec::new();
        loop {
            let running = matches!(runtime.state(&id), Some(Run::Running { .. }));
            let mut more = Vec::new();
            let _ = file.read_to_end(&mut more).await;
            pending.extend_from_slice(&more);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Some((stream, text)) = crate::logs::entry_bytes(&line) {
                    if output.send((if stream == "stderr" { STDERR } else { STDOUT }, text)).await.is_err() {
                        return;
                    }
                }
            }
            if !running {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let outcome = tokio::select! {
        _ = follow => Ok(Some(Some(0))),
        _ = gone => Ok(None),
    };
    for task in writer.iter().chain(&resizer) {
        task.abort();
    }
    outcome
}

/// The v5/v4 channel protocol over WebSocket.
async fn websocket_session(kubelet: Arc<Kubelet>, id: String, request: Request, socket: WebSocket) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = socket.split();
    let (stdin, typed) = mpsc::channel::<Bytes>(16);
    let (resizes, resize) = mpsc::channel(4);
    let (output, mut outgoing) = mpsc::channel::<(u8, Bytes)>(16);
    let (left, gone) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut stdin = Some(stdin);
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(data) if data.first() == Some(&STDIN) => {
                    if let Some(tx) = &stdin {
                        if tx.send(data.slice(1..)).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Message::Binary(data) if data.first() == Some(&CLOSE) && data.get(1) == Some(&STDIN) => stdin = None,
                Message::Binary(data) if data.first() == Some(&RESIZE) => {
                    if let Ok(size) = serde_json::from_slice(&data[1..]) {
                        let _ = resizes.try_send(terminal_size(&size));
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = left.send(());
    });
    let writer = tokio::spawn(async move {
        while let Some((stream, bytes)) = outgoing.recv().await {
            if sink.send(frame(stream, &bytes)).await.is_err() {
                break;
            }
        }
        sink
    });
    let channels = Channels { stdin: request.stdin.then_some(typed), resize: request.tty.then_some(resize), output };
    let outcome = run(&kubelet, &id, &request, channels, async {
        let _ = gone.await;
    })
    .await;
    let mut sink = writer.await?;
    let status = match outcome {
        Ok(None) => return Ok(()),
        Ok(Some(code)) => status(&request.command, code),
        Err(e) => json!({"metadata": {}, "status": "Failure", "message": e, "reason": "InternalError"}),
    };
    sink.send(frame(ERROR, status.to_string().as_bytes())).await?;
    sink.send(normal_close()).await?;
    Ok(())
}

/// The same over SPDY: one stream per channel, named by its `streamtype`
/// header, which the client opens before the command starts.
async fn spdy_session(kubelet: Arc<Kubelet>, id: String, request: Request, mut streams: mpsc::Receiver<crate::spdy::Stream>, protocol: &'static str) {
    let mut wanted = vec!["error"];
    wanted.extend(request.stdin.then_some("stdin"));
    wanted.extend(request.stdout.then_some("stdout"));
    wanted.extend((request.stderr && !request.tty).then_some("stderr"));
    wanted.extend((request.tty && matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io")).then_some("resize"));
    let mut opened: std::collections::HashMap<String, crate::spdy::Stream> = Default::default();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !wanted.iter().all(|w| opened.contains_key(*w)) {
        match tokio::time::timeout_at(deadline, streams.recv()).await {
            Ok(Some(stream)) => {
                opened.insert(stream.header("streamtype").to_string(), stream);
            }
            _ => return,
        }
    }
    let Some(error) = opened.remove("error") else { return };
    let stdin = opened.remove("stdin").map(|s| s.data);
    let resize = opened.remove("resize").map(|stream| {
        let (sizes, resize) = mpsc::channel(4);
        tokio::spawn(read_sizes(stream.data, sizes));
        resize
    });
    let outputs = [STDOUT, STDERR].map(|n| opened.remove(if n == STDOUT { "stdout" } else { "stderr" }).map(|s| s.writer));
    let (output, mut outgoing) = mpsc::channel::<(u8, Bytes)>(16);
    let writers = outputs.clone();
    let writer = tokio::spawn(async move {
        while let Some((stream, bytes)) = outgoing.recv().await {
            if let Some(w) = &writers[(stream - 1) as usize] {
                if w.write(&bytes).await.is_err() {
                    break;
                }
            }
        }
    });
    let channels = Channels { stdin, resize, output };
    // The connection's end closes the channel of new streams.
    let outcome = run(&kubelet, &id, &request, channels, async move { while streams.recv().await.is_some() {} }).await;
    let _ = writer.await;
    for w in outputs.iter().flatten() {
        let _ = w.close().await;
    }
    // v4 reports every end as a Status; earlier versions only failures, as text.
    let report = match (&outcome, protocol) {
        (Ok(None), _) => return,
        (Ok(Some(code)), "v4.channel.k8s.io") => Some(status(&request.command, *code).to_string()),
        (Ok(Some(code)), _) => status(&request.command, *code)["message"].as_str().map(String::from),
        (Err(e), "v4.channel.k8s.io") => Some(json!({"metadata": {}, "status": "Failure", "message": e, "reason": "InternalError"}).to_string()),
        (Err(e), _) => Some(e.clone()),
    };
    if let Some(report) = report {
        let _ = error.writer.write(report.as_bytes()).await;
    }
    let _ = error.writer.close().await;
}

/// A resize stream carries JSON objects one after another.
async fn read_sizes(mut data: mpsc::Receiver<Bytes>, sizes: mpsc::Sender<(u16, u16)>) {
    let mut pending = Vec::new();
    while let Some(bytes) = data.recv().await {
        pending.extend_from_slice(&bytes);
        let mut objects = serde_json::Deserializer::from_slice(&pending).into_iter::<serde_json::Value>();
        let mut used = 0;
        while let Some(Ok(size)) = objects.next() {
            used = objects.byte_offset();
            let _ = sizes.send(terminal_size(&size)).await;
        }
        pending.drain(..used);
    }
}

/// `{"Width": 80, "Height": 24}`
fn terminal_size(size: &serde_json::Value) -> (u16, u16) {
    (size["Width"].as_u64().unwrap_or(80) as u16, size["Height"].as_u64().unwrap_or(24) as u16)
}

/// A normal closure (1000) ends the error stream; without a code, clients see an error.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame { code: axum::extract::ws::close_code::NORMAL, reason: "".into() }))
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
