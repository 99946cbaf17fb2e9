//! GET of one object and of lists: whole lists streamed from one snapshot
//! of the watch cache, pages with `limit`/`continue`, each as objects,
//! metadata or a Table; and the kinds computed rather than stored.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skiff_api::selector::{selectable_fields, FieldSelector, LabelSelector};
use skiff_api::validation::FieldError;
use skiff_api::ResourceDef;

use super::{json_response, metadata_only, respond_object, Api, Query, Representation, Request};
use crate::fields;
use crate::registry::ListQuery;
use crate::status::{ApiError, ApiResult};

impl Api {
    pub(super) async fn get(&self, r: &Request<'_>) -> ApiResult<Response> {
        let obj = self.registry.get(r.def(), r.ns(), r.name()).await?;
        Ok(respond_object(r.def(), StatusCode::OK, obj, r.repr, r.query))
    }

    /// get and list of what is computed, not stored: componentstatuses
    /// and metrics.k8s.io.
    pub(super) async fn computed(&self, r: &Request<'_>, verb: &str) -> ApiResult<Response> {
        let (def, ns, name, query, repr) = (r.def(), r.ns(), r.name(), r.query, r.repr);
        let deprecated: Vec<String> = match def.group {
            "" => vec![format!("{} {} is deprecated in v1.19+", def.api_version(), def.kind)],
            _ => vec![],
        };
        let mut items = match def.group {
            "" => crate::components::statuses(&self.registry).await,
            _ => self.resource_metrics.objects(def.kind, ns),
        };
        if let Some(selector) = query.get("labelSelector").filter(|s| !s.is_empty()) {
            let selector = LabelSelector::parse(selector).map_err(|e| ApiError::bad_request(&e))?;
            items.retain(|item| selector.matches(&serde_json::from_value(item["metadata"]["labels"].clone()).unwrap_or_default()));
        }
        let response = if verb == "get" {
            let at = items.iter().position(|c| c["metadata"]["name"] == name).ok_or_else(|| ApiError::not_found(def, name))?;
            respond_object(def, StatusCode::OK, items.swap_remove(at), repr, query)
        } else {
            let include = query.get("includeObject").map_or("Metadata", String::as_str);
            let body = match repr {
                Representation::Table => skiff_api::table::table(def, items.into_iter(), json!({}), include),
                _ => json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {}, "items": items}),
            };
            json_response(StatusCode::OK, &body)
        };
        Ok(fields::with_warnings(response, &deprecated))
    }

    pub(super) async fn list(&self, r: &Request<'_>) -> ApiResult<Response> {
        let (def, ns, query, repr) = (r.def(), r.ns(), r.query, r.repr);
        let q = list_query(def, query)?;
        let include = query.get("includeObject").map_or("Metadata", String::as_str);
        let writer = match repr {
            Representation::Object => ListWriter::Objects(def),
            Representation::Table => ListWriter::Table(skiff_api::table::TableWriter::new(def, include)),
            Representation::Metadata => ListWriter::Metadata,
        };
        if q.limit.is_none() && q.continue_token.is_none() {
            return self.streamed_list(def, ns, q, writer).await;
        }
        // A page asked for with `limit` or `continue`.
        let listed = self.registry.list(def, ns, &q).await?;
        let mut meta = json!({"resourceVersion": listed.revision.to_string()});
        if let Some(c) = &listed.continue_token {
            meta["continue"] = json!(c);
        }
        if let Some(r) = listed.remaining {
            meta["remainingItemCount"] = json!(r);
        }
        let mut out = writer.opening(meta);
        writer.push(&mut out, &listed.items, true)?;
        out.extend_from_slice(b"]}");
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], out).into_response())
    }

    /// A whole list, read from one snapshot a page at a time and
    /// streamed out, so a list of any size holds about one page in memory.
    /// The first page is read before answering, so its errors get a proper
    /// Status; a failure later can only cut the response short.
    async fn streamed_list(&self, def: &'static ResourceDef, ns: Option<&str>, q: ListQuery, writer: ListWriter) -> ApiResult<Response> {
        // Written PAGE objects at a time: the encoded list is never whole in
        // memory, and the snapshot is the watch cache's own (shared) data.
        const PAGE: usize = 500;
        let snapshot = self.registry.snapshot(def, ns, &q).await?;
        let mut opening = writer.opening(json!({"resourceVersion": snapshot.revision.to_string()}));
        if snapshot.items.len() <= PAGE {
            writer.push(&mut opening, &crate::registry::selected(def, &q, &snapshot.items)?, true)?;
            opening.extend_from_slice(b"]}");
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], opening).into_response());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
        tokio::spawn(async move {
            if tx.send(Ok(bytes::Bytes::from(opening))).await.is_err() {
                return;
            }
            let mut first = true;
            for page in snapshot.items.chunks(PAGE) {
                let mut chunk = Vec::new();
                let written = crate::registry::selected(def, &q, page).and_then(|items| {
                    writer.push(&mut chunk, &items, first)?;
                    first &= items.is_empty();
                    Ok(())
                });
                if let Err(e) = written {
                    let _ = tx.send(Err(std::io::Error::other(e.message))).await;
                    return;
                }
                if tx.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(bytes::Bytes::from_static(b"]}"))).await;
        });
        let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}

/// How a list's items are written: as the objects themselves, as their
/// metadata, or as Table rows. Each writes `opening`, then pages of items
/// with `push`, then `]}`.
enum ListWriter {
    Objects(&'static ResourceDef),
    Metadata,
    Table(skiff_api::table::TableWriter),
}

impl ListWriter {
    fn opening(&self, meta: Value) -> Vec<u8> {
        let (kind, api_version) = match self {
            ListWriter::Table(table) => return table.opening(meta),
            ListWriter::Objects(def) => (format!("{}List", def.kind), def.api_version()),
            ListWriter::Metadata => ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1".to_string()),
        };
        let mut out = serde_json::to_vec(&json!({"kind": kind, "apiVersion": api_version, "metadata": meta})).expect("JSON serializes");
        out.pop(); // the closing brace
        out.extend_from_slice(b",\"items\":[");
        out
    }

    /// Appends `items` (objects' JSON), comma-separated, with a leading
    /// comma unless they are the list's `first`.
    fn push(&self, out: &mut Vec<u8>, items: &[bytes::Bytes], first: bool) -> ApiResult<()> {
        // Sized once, for the items whole (a row or metadata is smaller):
        // growing a buffer of tens of MiB copies it again and again.
        out.reserve(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
        let unreadable = |e: serde_json::Error| ApiError::internal(format!("object is not JSON: {e}"));
        for (i, item) in items.iter().enumerate() {
            let first = first && i == 0;
            match self {
                ListWriter::Table(table) => table.push_row(out, item, first).map_err(unreadable)?,
                ListWriter::Objects(_) => {
                    if !first {
                        out.push(b',');
                    }
                    out.extend_from_slice(item);
                }
                ListWriter::Metadata => {
                    if !first {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, &metadata_only(&crate::registry::parse(item)?)).expect("JSON serializes");
                }
            }
        }
        Ok(())
    }
}

pub fn list_query(def: &ResourceDef, query: &Query) -> ApiResult<ListQuery> {
    let label = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str)).map_err(ApiError::bad_request)?;
    let field = FieldSelector::parse(
        query.get("fieldSelector").map_or("", String::as_str),
        selectable_fields(def.group, def.kind),
        def.namespaced,
    )
    .map_err(ApiError::bad_request)?;
    let limit = match query.get("limit").map(|l| l.parse::<i64>()) {
        Some(Ok(l)) if l > 0 => Some(l as usize),
        Some(Ok(_)) | None => None,
        Some(Err(_)) => return Err(ApiError::bad_request("invalid limit")),
    };
    let continue_token = query.get("continue").filter(|c| !c.is_empty()).cloned();
    // "0" is any version at all: what the watch cache holds.
    let rv = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(rv) => Some(rv.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?),
    };
    if continue_token.is_some() && rv.is_some_and(|rv| rv != 0) {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    let exact = query.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
    let forbidden = |why: &str| (format!("Forbidden: {why}"), "FieldValueForbidden");
    let refusal = match query.get("resourceVersionMatch").map(String::as_str).filter(|m| !m.is_empty()) {
        None => None,
        Some(_) if rv.is_none() => Some(forbidden("resourceVersionMatch is forbidden unless resourceVersion is provided")),
        Some(_) if continue_token.is_some() => Some(forbidden("resourceVersionMatch is forbidden when continue is provided")),
        Some("Exact") if rv == Some(0) => Some(forbidden("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")),
        Some("Exact" | "NotOlderThan") => None,
        Some(other) => Some((format!("Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""), "FieldValueNotSupported")),
    };
    if let Some((message, reason)) = refusal {
        let error = FieldError { field: "resourceVersionMatch".into(), reason, message };
        return Err(ApiError::invalid_options("ListOptions", &[error]));
    }
    Ok(ListQuery {
        label,
        field,
        limit,
        min_revision: rv.filter(|_| !exact && continue_token.is_none()),
        continue_token,
        exact_revision: rv.filter(|_| exact),
    })
}
