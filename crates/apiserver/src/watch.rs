//! Watch: a stream of `{"type": …, "object": …}` lines.
//!
//! Without a resourceVersion (or with "0"), the current objects come first as
//! ADDED, then changes; with one, changes after it. With selectors, an object
//! that starts to match is ADDED and one that stops matching is DELETED, as
//! upstream does. `allowWatchBookmarks` turns the store's progress into
//! BOOKMARK events, and `sendInitialEvents` ends the initial state with the
//! `k8s.io/initial-events-end` bookmark. A revision that is gone ends the
//! stream with an ERROR event carrying a 410 Status.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::selector::FieldSelector;
use skiff_api::{validation, ResourceDef};
use skiff_store::{Event, EventKind, ListOptions};

use crate::handler::{flag, list_query, metadata_only, Query, Representation};
use crate::registry::{decode, stamp, ListQuery, Registry};
use crate::status::{ApiError, ApiResult};

fn matches(q: &ListQuery, obj: &Value) -> bool {
    (q.label.is_empty() || q.label.matches(&validation::labels_of(obj))) && (q.field.is_empty() || q.field.matches(obj))
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut out = Vec::new();
    write_line(&mut out, kind, &object);
    Bytes::from(out)
}

fn write_line(out: &mut Vec<u8>, kind: &str, object: &Value) {
    start_line(out, kind);
    serde_json::to_writer(&mut *out, object).expect("JSON serializes");
    out.extend_from_slice(b"}\n");
}

/// An event line around already-encoded object bytes.
fn write_raw_line(out: &mut Vec<u8>, kind: &str, object: &[u8]) {
    start_line(out, kind);
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
}

/// A line up to its object; `kind` is one of the event types, which need
/// no escaping.
fn start_line(out: &mut Vec<u8>, kind: &str) {
    out.extend_from_slice(br#"{"type":""#);
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(br#"","object":"#);
}

fn bookmark(def: &ResourceDef, revision: i64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line("BOOKMARK", json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}))
}

fn error_line(err: ApiError) -> Bytes {
    line("ERROR", err.to_status())
}

/// A watcher's lines are sent in chunks of about this size: a commit's
/// events then cost one write (and one TLS record) per chunk rather than
/// per object, while a commit of large objects is not held whole in memory
/// for each of its watchers.
const CHUNK: usize = 64 << 10;

/// What the watchers of one event share (in its `Memo`), each part made by
/// the first watcher that needs it: the line of the object as stored, and
/// the objects decoded. Only the storage version's watchers share them;
/// another version's watchers convert for themselves.
#[derive(Default)]
struct Shared {
    line: OnceLock<Bytes>,
    object: OnceLock<Arc<Value>>,
    prev: OnceLock<Option<Arc<Value>>>,
}

/// `make()`, or what an earlier watcher of the event made.
fn memoized<T: Clone>(slot: Option<&OnceLock<T>>, make: impl FnOnce() -> ApiResult<T>) -> ApiResult<T> {
    if let Some(made) = slot.and_then(OnceLock::get) {
        return Ok(made.clone());
    }
    let made = make()?;
    if let Some(slot) = slot {
        let _ = slot.set(made.clone());
    }
    Ok(made)
}

/// How a watcher without selectors sees a change: the stored object in a
/// line, never parsed. Empty for a delete the store kept nothing of.
fn raw_line(def: &ResourceDef, event: &Event) -> ApiResult<Bytes> {
    let mut out = Vec::new();
    match event.kind {
        EventKind::Put => {
            // As upstream: created at this revision means ADDED.
            let created = event.kv.create_revision == event.kv.mod_revision;
            write_raw_line(&mut out, if created { "ADDED" } else { "MODIFIED" }, &stamp(def, &event.kv)?);
        }
        // A deleted object carries the deletion's revision.
        EventKind::Delete => {
            if let Some(prev) = &event.prev {
                let deleted = skiff_store::KeyValue { mod_revision: event.kv.mod_revision, ..prev.clone() };
                write_raw_line(&mut out, "DELETED", &stamp(def, &deleted)?);
            }
        }
    }
    Ok(Bytes::from(out))
}

/// Appends the line a watcher sees for one change, if any.
fn write_event(out: &mut Vec<u8>, def: &ResourceDef, q: &ListQuery, raw: bool, render: &dyn Fn(&mut Vec<u8>, &str, &Value), event: &Event) -> ApiResult<()> {
    let shared = if def.is_storage_version() { event.memo.get::<Shared>() } else { None };
    if raw {
        out.extend_from_slice(&memoized(shared.map(|s| &s.line), || raw_line(def, event))?);
        return Ok(());
    }
    let prev = memoized(shared.map(|s| &s.prev), || event.prev.as_ref().map(|p| decode(def, p).map(Arc::new)).transpose())?;
    let was = prev.as_ref().is_some_and(|p| matches(q, p));
    match event.kind {
        EventKind::Put => {
            let obj = memoized(shared.map(|s| &s.object), || decode(def, &event.kv).map(Arc::new))?;
            let kind = match (was, matches(q, &obj)) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return Ok(()),
            };
            render(out, kind, &obj);
        }
        EventKind::Delete => {
            if let Some(prev) = prev.filter(|_| was) {
                let mut obj = Value::clone(&prev);
                obj["metadata"]["resourceVersion"] = json!(event.kv.mod_revision.to_string());
                render(out, "DELETED", &obj);
            }
        }
    }
    Ok(())
}

pub async fn serve(
    registry: &Registry,
    def: &'static ResourceDef,
    ns: Option<&str>,
    name: Option<&str>,
    query: &Query,
    repr: Representation,
) -> ApiResult<Response> {
    let mut q = list_query(def, query)?;
    if let Some(name) = name {
        q.field = FieldSelector::parse(&format!("metadata.name={name}"), &[], def.namespaced).map_err(ApiError::bad_request)?;
    }
    // Unset: the current state, consistently read, then changes; "0": any
    // recent state (the watch cache's) then changes; N: changes after N.
    let start = q.min_revision.filter(|rv| *rv > 0);
    let bookmarks = flag(query, "allowWatchBookmarks");
    let send_initial = match query.get("sendInitialEvents") {
        Some(_) => flag(query, "sendInitialEvents"),
        None => start.is_none(),
    };
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let include_object = query.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into());
    let render = move |out: &mut Vec<u8>, kind: &str, obj: &Value| match repr {
        Representation::Object => write_line(out, kind, obj),
        Representation::Metadata => write_line(out, kind, &metadata_only(obj)),
        Representation::Table => {
            let rv = obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""));
            write_line(out, kind, &skiff_api::table::table(def, std::iter::once(obj.clone()), json!({"resourceVersion": rv}), &include_object))
        }
    };

    let store = registry.store.clone();
    let prefix = def.list_prefix(ns);
    // The initial state, read as one snapshot (from the watch cache); the
    // watch continues from it. Without selectors, plain JSON is written from
    // the stored bytes: no object is parsed, however many watchers there are.
    let raw = q.label.is_empty() && q.field.is_empty() && repr == Representation::Object;
    let (initial, from) = if send_initial {
        let opts = ListOptions { min_revision: q.min_revision, ..Default::default() };
        let page = store.list(&prefix, &opts).await.map_err(|e| ApiError::from_store(e, def, ""))?;
        (page.items, page.revision)
    } else {
        let from = match start {
            Some(rv) => rv,
            // No version and no initial state: start at the most recent.
            None => store.current_revision().await.map_err(|e| ApiError::from_store(e, def, ""))?,
        };
        (Vec::new(), from)
    };
    let watch = store.watch(&prefix, from).await;

    let stream = async_stream::stream! {
        // The initial state is encoded a chunk (CHUNK bytes) at a time as
        // the client reads it: many watches opened at once (a reconnect
        // storm) hold the snapshot's shared objects, not each an encoded
        // copy of it.
        let mut chunk = Vec::new();
        for kv in &initial {
            let written = if raw {
                stamp(def, kv).map(|object| write_raw_line(&mut chunk, "ADDED", &object))
            } else {
                decode(def, kv).map(|obj| if matches(&q, &obj) { render(&mut chunk, "ADDED", &obj) })
            };
            if let Err(e) = written {
                yield Ok::<Bytes, std::convert::Infallible>(error_line(e));
                return;
            }
            if chunk.len() >= CHUNK {
                yield Ok(Bytes::from(std::mem::take(&mut chunk)));
            }
        }
        if !chunk.is_empty() {
            yield Ok(Bytes::from(chunk));
        }
        drop(initial);
        if send_initial && bookmarks {
            yield Ok(bookmark(def, from, true));
        }
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                yield Ok(error_line(ApiError::from_store(e, def, "")));
                return;
            }
        };
        while let Some(batch) = watch.next().await {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    yield Ok(error_line(ApiError::from_store(e, def, "")));
                    return;
                }
            };
            if batch.events.is_empty() {
                if bookmarks {
                    yield Ok(bookmark(def, batch.revision, false));
                }
                continue;
            }
            let mut chunk = Vec::new();
            for event in &batch.events {
                if let Err(e) = write_event(&mut chunk, def, &q, raw, &render, event) {
                    if !chunk.is_empty() {
                        yield Ok(Bytes::from(chunk));
                    }
                    yield Ok(error_line(e));
                    return;
                }
                if chunk.len() >= CHUNK {
                    yield Ok(Bytes::from(std::mem::take(&mut chunk)));
                }
            }
            if !chunk.is_empty() {
                yield Ok(Bytes::from(chunk));
            }
        }
    };
    let body = match timeout {
        Some(t) => Body::from_stream(stream.take_until(tokio::time::sleep(t))),
        None => Body::from_stream(stream),
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}
