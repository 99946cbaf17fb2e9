//! Reading container logs in the CRI format (`<time> <stream> <F|P> <text>`)
//! as `kubectl logs` asks: `tailLines`, `sinceTime`/`sinceSeconds`,
//! `timestamps`, `limitBytes`, and `follow` until the container ends,
//! across rotations (the shim rotates the file by size).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Default, Clone)]
pub struct Options {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<DateTime<Utc>>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// One entry of a CRI log: its time as written, and the text with its
/// newline unless the entry is a partial line.
struct Entry<'a> {
    time: &'a str,
    text: String,
}

fn parse(line: &str) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    let text = if tag == "P" { text.to_string() } else { format!("{text}\n") };
    Some(Entry { time, text })
}

/// One CRI log line as its stream and the bytes it carried (with the
/// newline unless it was a partial line).
pub(crate) fn entry_bytes(line: &[u8]) -> Option<(&str, bytes::Bytes)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let _time = parts.next()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let mut text = parts.next().unwrap_or_default().to_vec();
    if tag != b"P" {
        text.push(b'\n');
    }
    Some((stream, text.into()))
}

fn render(entry: &Entry, options: &Options) -> Option<String> {
    if let Some(since) = options.since {
        let at = DateTime::parse_from_rfc3339(entry.time).ok()?;
        if at < since {
            return None;
        }
    }
    Some(if options.timestamps { format!("{} {}", entry.time, entry.text) } else { entry.text.clone() })
}

/// What the log holds now, as asked.
pub fn read(text: &str, options: &Options) -> String {
    let rendered: Vec<String> = text.lines().filter_map(parse).filter_map(|e| render(&e, options)).collect();
    let skip = options.tail_lines.map(|n| rendered.len().saturating_sub(n)).unwrap_or(0);
    let mut out: String = rendered[skip..].concat();
    if let Some(limit) = options.limit_bytes {
        let mut cut = limit.min(out.len());
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// The log as a stream of chunks: what it holds, then (with `follow`)
/// what is appended until `running` says the container has ended.
pub fn stream(path: PathBuf, options: Options, running: impl Fn() -> bool + Send + 'static) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    tokio::spawn(async move {
        let Ok(mut file) = std::fs::File::open(&path) else {
            let _ = tx.send(Ok(bytes::Bytes::new())).await;
            return;
        };
        let mut text = String::new();
        if file.read_to_string(&mut text).is_err() {
            return;
        }
        let first = read(&text, &options);
        let mut sent = first.len();
        if tx.send(Ok(first.into())).await.is_err() || !options.follow {
            return;
        }
        // Keep only an unfinished last line to prepend to what comes next.
        let mut pending = match text.rfind('\n') {
            Some(i) => text[i + 1..].to_string(),
            None => text,
        };
        let mut position = file.stream_position().unwrap_or(0);
        loop {
            let ended = !running();
            let mut more = String::new();
            if file.seek(SeekFrom::Start(position)).is_ok() && file.read_to_string(&mut more).is_ok() && !more.is_empty() {
                position += more.len() as u64;
                pending.push_str(&more);
                if let Some(i) = pending.rfind('\n') {
                    let complete: String = pending.drain(..=i).collect();
                    let chunk: String = complete.lines().filter_map(parse).filter_map(|e| render(&e, &options)).collect();
                    let chunk = match options.limit_bytes {
                        Some(limit) if sent >= limit => return,
                        Some(limit) => chunk.chars().scan(sent, |n, c| { *n += c.len_utf8(); (*n <= limit).then_some(c) }).collect(),
                        None => chunk,
                    };
                    sent += chunk.len();
                    if !chunk.is_empty() && tx.send(Ok(chunk.into())).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            // Read to its end, the file may have been rotated: follow the new one.
            if rotated(&file, &path) {
                if let Ok(new) = std::fs::File::open(&path) {
                    (file, position) = (new, 0);
                    continue;
                }
            }
            if ended {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Whether `path` now names another file than the one open.
fn rotated(open: &std::fs::File, path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F one\n2026-01-01T00:00:02Z stderr P tw\n2026-01-01T00:00:02.5Z stderr F o\n2026-01-01T00:00:03Z stdout F three\n";

    #[test]
    fn options_select_and_format_as_kubectl_asks() {
        assert_eq!(read(LOG, &Options::default()), "one\ntwo\nthree\n");
        assert_eq!(read(LOG, &Options { tail_lines: Some(1), ..Default::default() }), "three\n");
        let since = DateTime::parse_from_rfc3339("2026-01-01T00:00:02.2Z").unwrap().with_timezone(&Utc);
        assert_eq!(read(LOG, &Options { since: Some(since), ..Default::default() }), "o\nthree\n");
        assert_eq!(read(LOG, &Options { timestamps: true, tail_lines: Some(1), ..Default::default() }), "2026-01-01T00:00:03Z three\n");
        assert_eq!(read(LOG, &Options { limit_bytes: Some(5), ..Default::default() }), "one\nt");
    }
}
