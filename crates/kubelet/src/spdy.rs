//! The server side of SPDY/3.1 as upstream's streaming protocols use it
//! (exec, attach and port-forward over `Upgrade: SPDY/3.1`, and SPDY
//! tunnelled through WebSocket binary messages for `kubectl
//! port-forward`): the client opens streams whose headers say what each
//! carries; each is accepted with a SYN_REPLY and carries data until
//! either side half-closes it with FIN.
//!
//! Written here because no maintained Rust crate implements SPDY. As
//! upstream's peer (moby/spdystream) does, it neither enforces nor sends
//! flow-control windows.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// Frames larger than this are refused (upstream's framer reads at most
/// 16 MiB; our peers send far less).
const MAX_FRAME: usize = 1 << 24;
/// Data written in frames of at most this size.
const CHUNK: usize = 32 * 1024;

/// The zlib dictionary of SPDY/3 header blocks (draft 3, section
/// 2.6.10.1): these names, each after its 32-bit length, then this text.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding", "accept-language",
        "accept-ranges", "age", "allow", "authorization", "cache-control", "connection", "content-base", "content-encoding",
        "content-language", "content-length", "content-location", "content-md5", "content-range", "content-type", "date", "etag",
        "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
        "last-modified", "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
        "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
        "origin",
    ];
    const TEXT: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505\
        203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden\
        404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable\
        Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT\
        chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,\
        publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    let mut dictionary = Vec::with_capacity(1423);
    for word in WORDS {
        dictionary.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    dictionary.extend_from_slice(TEXT.as_bytes());
    dictionary
});

/// A stream the client opened: its headers (names lowercase), the data it
/// sends (ending at its FIN), and the way back.
pub struct Stream {
    pub headers: HashMap<String, String>,
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or_default()
    }
}

/// Writes one stream's data back to the client.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    connection: Arc<Writer>,
}

impl StreamWriter {
    pub async fn write(&self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let (chunk, rest) = data.split_at(data.len().min(CHUNK));
            self.connection.data(self.id, 0, chunk).await?;
            data = rest;
        }
        Ok(())
    }

    /// Half-closes the stream (FIN): the client's read ends.
    pub async fn close(&self) -> Result<()> {
        self.connection.data(self.id, FLAG_FIN, &[]).await
    }
}

struct Writer {
    io: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    /// One compression context for every header block this side sends.
    headers: Mutex<Compress>,
}

impl Writer {
    async fn frame(&self, frame: &[u8]) -> Result<()> {
        let mut io = self.io.lock().await;
        io.write_all(frame).await?;
        io.flush().await?;
        Ok(())
    }

    async fn data(&self, id: u32, flags: u8, data: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(8 + data.len());
        frame.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
        frame.extend_from_slice(&length_with_flags(flags, data.len()));
        frame.extend_from_slice(data);
        self.frame(&frame).await
    }

    async fn control(&self, kind: u16, flags: u8, payload: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(8 + payload.len());
        frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        frame.extend_from_slice(&kind.to_be_bytes());
        frame.extend_from_slice(&length_with_flags(flags, payload.len()));
        frame.extend_from_slice(payload);
        self.frame(&frame).await
    }

    /// Accepts a stream: a SYN_REPLY with no headers.
    async fn reply(&self, id: u32) -> Result<()> {
        let block = {
            let mut compress = self.headers.lock().expect("the header compressor is not poisoned");
            let mut out = Vec::with_capacity(64);
            compress.compress_vec(&0u32.to_be_bytes(), &mut out, FlushCompress::Sync)?;
            out
        };
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&block);
        self.control(SYN_REPLY, 0, &payload).await
    }
}

fn length_with_flags(flags: u8, length: usize) -> [u8; 4] {
    let l = (length as u32).to_be_bytes();
    [flags, l[1], l[2], l[3]]
}

/// Serves a SPDY connection: the streams the client opens arrive on the
/// returned channel, which closes when the connection ends.
pub fn serve(io: impl AsyncRead + AsyncWrite + Send + Unpin + 'static) -> mpsc::Receiver<Stream> {
    let (reader, writer) = tokio::io::split(io);
    let mut compress = Compress::new(Compression::default(), true);
    compress.set_dictionary(&DICTIONARY).expect("a dictionary set before any data");
    let writer = Arc::new(Writer { io: tokio::sync::Mutex::new(Box::new(writer)), headers: Mutex::new(compress) });
    let (streams, incoming) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = read_frames(reader, writer, streams).await {
            tracing::debug!("SPDY connection ended: {e:#}");
        }
    });
    incoming
}

async fn read_frames(mut reader: impl AsyncRead + Unpin, writer: Arc<Writer>, streams: mpsc::Sender<Stream>) -> Result<()> {
    let mut inflate = HeaderReader { decompress: Decompress::new(true) };
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let mut head = [0u8; 8];
        if let Err(e) = reader.read_exact(&mut head).await {
            return if e.kind() == std::io::ErrorKind::UnexpectedEof { Ok(()) } else { Err(e.into()) };
        }
        let flags = head[4];
        let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if length > MAX_FRAME {
            bail!("a frame of {length} bytes");
        }
        let mut payload = vec![0u8; length];
        reader.read_exact(&mut payload).await?;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            if let Some(data) = open.get(&id) {
                if !payload.is_empty() && data.send(Bytes::from(payload)).await.is_err() {
                    open.remove(&id);
                }
            }
            if flags & FLAG_FIN != 0 {
                open.remove(&id);
            }
            continue;
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            bail!("SPDY version {version} is not supported");
        }
        let stream_id = || payload.get(..4).map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]])).context("a short control frame");
        match u16::from_be_bytes([head[2], head[3]]) {
            SYN_STREAM => {
                let id = stream_id()?;
                let block = payload.get(10..).context("a short SYN_STREAM")?;
                let headers = inflate.headers(block)?;
                let (data, receiver) = mpsc::channel(16);
                if flags & FLAG_FIN == 0 {
                    open.insert(id, data);
                }
                writer.reply(id).await?;
                let stream = Stream { headers, data: receiver, writer: StreamWriter { id, connection: writer.clone() } };
                if streams.send(stream).await.is_err() {
                    return Ok(());
                }
            }
            RST_STREAM => {
                open.remove(&stream_id()?);
            }
            // Pings from the client (odd ids) are echoed.
            PING => writer.control(PING, 0, &payload).await?,
            GOAWAY => return Ok(()),
            // SETTINGS, HEADERS and WINDOW_UPDATE change nothing here.
            _ => {}
        }
    }
}

/// The client's header blocks: one zlib stream across the connection.
struct HeaderReader {
    decompress: Decompress,
}

impl HeaderReader {
    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before = self.decompress.total_in();
            match self.decompress.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.decompress.set_dictionary(&DICTIONARY).context("the SPDY header dictionary")?;
                }
                Err(e) => bail!("a header block does not inflate: {e}"),
            }
            input = &input[(self.decompress.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// A header block: a count, then each name and value after its 32-bit
    /// length (several values of a name joined by NUL).
    fn headers(&mut self, block: &[u8]) -> Result<HashMap<String, String>> {
        let raw = self.inflate(block)?;
        let mut rest = raw.as_slice();
        let mut take = |n: usize| -> Result<&[u8]> {
            let (head, tail) = rest.split_at_checked(n).context("a truncated header block")?;
            rest = tail;
            Ok(head)
        };
        let number = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let count = number(take(4)?);
        let mut headers = HashMap::new();
        for _ in 0..count {
            let length = number(take(4)?);
            let name = String::from_utf8_lossy(take(length)?).to_ascii_lowercase();
            let length = number(take(4)?);
            let value = String::from_utf8_lossy(take(length)?).into_owned();
            headers.insert(name, value);
        }
        Ok(headers)
    }
}

/// Switches an HTTP request to SPDY (`Upgrade: SPDY/3.1`), agreeing on
/// the first of `protocols` the client offers in its
/// `X-Stream-Protocol-Version` headers, or `protocols[0]` when it offers
/// none (upstream's handshake); the connection's streams go to `serve`.
pub fn upgrade<F, Fut>(request: &mut axum::extract::Request, protocols: &[&'static str], serve_streams: F) -> axum::response::Response
where
    F: FnOnce(mpsc::Receiver<Stream>, &'static str) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let spdy = request.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
    if !spdy {
        return (StatusCode::BAD_REQUEST, "Upgrade request required: WebSocket or SPDY/3.1").into_response();
    }
    let offered: Vec<String> = request.headers().get_all("x-stream-protocol-version").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
    let agreed = match protocols.iter().find(|p| offered.iter().any(|o| o == *p)) {
        Some(p) => *p,
        None if offered.is_empty() => protocols[0],
        None => {
            let message = format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {protocols:?}");
            return (StatusCode::FORBIDDEN, message).into_response();
        }
    };
    let pending = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match pending.await {
            Ok(upgraded) => serve_streams(serve(hyper_util::rt::TokioIo::new(upgraded)), agreed).await,
            Err(e) => tracing::debug!("SPDY upgrade failed: {e}"),
        }
    });
    let headers = [(header::CONNECTION, "Upgrade"), (header::UPGRADE, "SPDY/3.1")];
    (StatusCode::SWITCHING_PROTOCOLS, headers, [("x-stream-protocol-version", agreed)]).into_response()
}

/// The byte stream of SPDY tunnelled through WebSocket binary messages
/// (`SPDY/3.1+portforward.k8s.io`, kubectl's port-forward since 1.31).
pub fn tunnel(socket: axum::extract::ws::WebSocket) -> tokio::io::DuplexStream {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    let (ours, theirs) = tokio::io::duplex(CHUNK * 2);
    // What the client sends goes in `inbound`; what the server writes comes out of `outbound`.
    let (mut outbound, mut inbound) = tokio::io::split(ours);
    let (mut sink, mut messages) = socket.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                Message::Binary(bytes) if inbound.write_all(&bytes).await.is_ok() => {}
                Message::Binary(_) | Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = inbound.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buffer = vec![0u8; CHUNK];
        while let Ok(n @ 1..) = outbound.read(&mut buffer).await {
            if sink.send(Message::Binary(Bytes::copy_from_slice(&buffer[..n]))).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_drafts() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
    }

    /// A client's side of the protocol, enough to check the server's.
    async fn client_frames(io: &mut (impl AsyncRead + AsyncWrite + Unpin), compress: &mut Compress, id: u32, headers: &[(&str, &str)], data: &[u8]) {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            for text in [name, value] {
                block.extend_from_slice(&(text.len() as u32).to_be_bytes());
                block.extend_from_slice(text.as_bytes());
            }
        }
        let mut compressed = Vec::with_capacity(block.len() + 64);
        compress.compress_vec(&block, &mut compressed, FlushCompress::Sync).unwrap();
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&compressed);
        let mut frame = vec![0x80, 3, 0, SYN_STREAM as u8];
        frame.extend_from_slice(&length_with_flags(0, payload.len()));
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&length_with_flags(FLAG_FIN, data.len()));
        frame.extend_from_slice(data);
        io.write_all(&frame).await.unwrap();
    }

    #[tokio::test]
    async fn streams_carry_headers_and_data_both_ways() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut incoming = serve(server);
        let mut compress = Compress::new(Compression::default(), true);
        compress.set_dictionary(&DICTIONARY).unwrap();
        client_frames(&mut client, &mut compress, 1, &[("streamtype", "data"), ("port", "80")], b"hello").await;
        client_frames(&mut client, &mut compress, 3, &[("streamtype", "error"), ("port", "80")], b"").await;
        let mut data = incoming.recv().await.unwrap();
        assert_eq!((data.header("streamtype"), data.header("port")), ("data", "80"));
        assert_eq!(data.data.recv().await.unwrap(), Bytes::from_static(b"hello"));
        assert!(data.data.recv().await.is_none(), "FIN ends the stream's data");
        let error = incoming.recv().await.unwrap();
        assert_eq!(error.header("streamtype"), "error", "the second header block reads with the same zlib stream");
        data.writer.write(b"back").await.unwrap();
        data.writer.close().await.unwrap();

        // Two SYN_REPLYs, then the data and its FIN.
        let mut inflate = HeaderReader { decompress: Decompress::new(true) };
        for id in [1u32, 3] {
            let mut head = [0u8; 8];
            client.read_exact(&mut head).await.unwrap();
            assert_eq!(&head[..4], &[0x80, 3, 0, SYN_REPLY as u8]);
            let mut payload = vec![0u8; u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize];
            client.read_exact(&mut payload).await.unwrap();
            assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), id);
            assert!(inflate.headers(&payload[4..]).unwrap().is_empty());
        }
        let mut frame = [0u8; 12];
        client.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\0\0\0\x01\0\0\0\x04back");
        let mut fin = [0u8; 8];
        client.read_exact(&mut fin).await.unwrap();
        assert_eq!(fin, [0, 0, 0, 1, FLAG_FIN, 0, 0, 0]);
    }
}
