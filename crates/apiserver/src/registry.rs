//! The generic registry: how any resource's objects are created, read,
//! updated, patched and deleted in the store, with upstream's object rules
//! (uid, creationTimestamp, generation, resourceVersion preconditions,
//! status vs. main resource, finalizers and graceful deletion). The few
//! per-kind rules live in `strategy`.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use skiff_api::validation::{self, FieldError, Op};
use skiff_api::ResourceDef;
use skiff_store::{Error as StoreError, KeyValue, ListOptions, Revision, Store};

use crate::managed::{self, Manager};
use crate::status::{ApiError, ApiResult};
use crate::strategy;

#[derive(Clone)]
pub struct Registry {
    pub store: Store,
    pub services: std::sync::Arc<crate::services::Allocator>,
    /// Namespaces as last decoded, by key: every namespaced create reads
    /// its namespace (lifecycle, PodSecurity), which decoding each time
    /// made 3 % of a busy server.
    namespaces: std::sync::Arc<std::sync::Mutex<DecodedNamespaces>>,
}

/// Namespaces by key: the revision decoded and the object.
type DecodedNamespaces = HashMap<String, (Revision, std::sync::Arc<Value>)>;

fn is_service(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.kind == "Service"
}

fn owner(ns: Option<&str>, name: &str) -> String {
    format!("{}/{name}", ns.unwrap_or(""))
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A stored object as clients see it: its resourceVersion is the revision
/// of its last write, stamped on the way out.
pub fn decode(def: &ResourceDef, kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    if let Some(conversion) = def.conversion {
        obj = (conversion.from_storage)(obj);
    }
    obj["apiVersion"] = json!(def.api_version());
    obj["kind"] = json!(def.kind);
    obj["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
    Ok(obj)
}

/// What stored objects start with: `encode` writes metadata first so the
/// resourceVersion can be put in place without parsing the object.
const STORED_PREFIX: &[u8] = br#"{"metadata":{"#;

/// The JSON clients see for a stored object, without parsing it: the
/// resourceVersion is spliced in at the start of metadata. Lists and
/// watches take this path; everything that needs fields decodes.
pub fn stamp(def: &ResourceDef, kv: &KeyValue) -> ApiResult<Bytes> {
    let rest = kv.value.strip_prefix(STORED_PREFIX).filter(|_| def.is_storage_version());
    let Some(rest) = rest else {
        return Ok(Bytes::from(serde_json::to_vec(&decode(def, kv)?).expect("JSON serializes")));
    };
    let rv = format!(r#""resourceVersion":"{}""#, kv.mod_revision);
    let mut out = Vec::with_capacity(kv.value.len() + rv.len() + 1);
    out.extend_from_slice(STORED_PREFIX);
    out.extend_from_slice(rv.as_bytes());
    if rest.first() != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(Bytes::from(out))
}

/// A newly created object, and what was stored for it when that is what
/// clients see (the storage version): a response can `stamp` it instead
/// of encoding the object again.
pub struct Created {
    pub object: Value,
    pub stored: Option<KeyValue>,
}

/// The bytes stored for an object: metadata first (see `stamp`), without
/// resourceVersion (the store keeps it), with its apiVersion and kind, in
/// the resource's storage version.
fn encode(def: &ResourceDef, obj: &Value) -> Bytes {
    let (api_version, kind) = (Value::from(def.api_version()), Value::from(def.kind));
    match def.conversion {
        Some(conversion) => {
            let mut obj = obj.clone();
            obj["apiVersion"] = api_version;
            let stored = (conversion.to_storage)(obj);
            encode_stored(&stored, &stored["apiVersion"], &kind)
        }
        None => encode_stored(obj, &api_version, &kind),
    }
}

/// Writes an object as stored: metadata first (the store reads names and
/// owners from the front), without resourceVersion and selfLink, which
/// the store's revision stands for; then its other fields in order, with
/// the storage version's apiVersion and kind. Written field by field, not
/// from an edited copy: every write encodes an object.
fn encode_stored(obj: &Value, api_version: &Value, kind: &Value) -> Bytes {
    fn put(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
        serde_json::to_writer(out, value).expect("JSON serializes");
    }
    let Value::Object(fields) = obj else { unreachable!("objects are JSON objects") };
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(br#"{"metadata":{"#);
    if let Some(Value::Object(meta)) = fields.get("metadata") {
        let kept = meta.iter().filter(|(k, _)| !matches!(k.as_str(), "resourceVersion" | "selfLink"));
        for (i, (k, v)) in kept.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put(&mut out, k);
            out.push(b':');
            put(&mut out, v);
        }
    }
    out.push(b'}');
    let mut rest: Vec<(&str, &Value)> = fields.iter().map(|(k, v)| (k.as_str(), v)).filter(|(k, _)| !matches!(*k, "metadata" | "apiVersion" | "kind")).collect();
    rest.extend([("apiVersion", api_version), ("kind", kind)]);
    rest.sort_by_key(|(k, _)| *k);
    for (k, v) in rest {
        out.push(b',');
        put(&mut out, k);
        out.push(b':');
        put(&mut out, v);
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Parses JSON this server produced.
pub fn parse(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::internal(format!("object is not JSON: {e}")))
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(|v| v.as_str()).unwrap_or("")
}

fn resource_version(obj: &Value) -> ApiResult<Option<Revision>> {
    match obj.pointer("/metadata/resourceVersion").and_then(|v| v.as_str()) {
        None | Some("") => Ok(None),
        Some(rv) => rv
            .parse::<Revision>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))),
    }
}

/// What a list asks for.
#[derive(Default, Clone)]
pub struct ListQuery {
    pub label: skiff_api::selector::LabelSelector,
    pub field: skiff_api::selector::FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// `resourceVersion` with `resourceVersionMatch=Exact`: read at it.
    pub exact_revision: Option<Revision>,
    /// `resourceVersion` otherwise: read no older than it.
    pub min_revision: Option<Revision>,
}

pub struct ListResult {
    /// The objects as the JSON clients see, each decoded only long enough
    /// to apply a selector, so a large list never holds parsed objects.
    pub items: Vec<Bytes>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

pub struct DeleteOptions {
    /// `Orphan`, `Background` or `Foreground`; Background when unset.
    pub propagation: Option<String>,
    pub grace_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<Revision>,
    pub dry_run: bool,
}

pub enum Deleted {
    /// Gone from the store.
    Now(Value),
    /// Marked for deletion; finalizers or graceful termination pending.
    Pending(Value),
}

fn matches(q: &ListQuery, obj: &Value) -> bool {
    (q.label.is_empty() || q.label.matches(&validation::labels_of(obj))) && (q.field.is_empty() || q.field.matches(obj))
}

/// The stored objects `q` selects, as the JSON clients see; each is decoded
/// only when a selector needs it.
pub fn selected(def: &ResourceDef, q: &ListQuery, stored: &[KeyValue]) -> ApiResult<Vec<Bytes>> {
    let filtering = !q.label.is_empty() || !q.field.is_empty();
    let mut items = Vec::with_capacity(if filtering { 0 } else { stored.len() });
    for kv in stored {
        if !filtering || matches(q, &decode(def, kv)?) {
            items.push(stamp(def, kv)?);
        }
    }
    Ok(items)
}

impl Registry {
    pub fn new(store: Store, services: crate::services::Allocator) -> Registry {
        Registry { store, services: std::sync::Arc::new(services), namespaces: Default::default() }
    }

    pub async fn get(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        decode(def, &self.stored(def, &def.key(ns, name), name).await?)
    }

    /// The object as the watch cache has it (an informer's view, a little
    /// behind at worst), or as the store has it when the cache has not
    /// seen it (it may be that new).
    pub async fn get_cached(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> ApiResult<std::sync::Arc<Value>> {
        match self.store.get_recent(&def.key(ns, name)).await {
            Ok(Some(kv)) if def.group.is_empty() && def.kind == "Namespace" => self.decoded_namespace(def, &kv),
            Ok(Some(kv)) => decode(def, &kv).map(std::sync::Arc::new),
            _ => self.get(def, ns, name).await.map(std::sync::Arc::new),
        }
    }

    /// Namespaces are read on every create (lifecycle, PodSecurity): they
    /// stay decoded, shared, until they change.
    fn decoded_namespace(&self, def: &ResourceDef, kv: &KeyValue) -> ApiResult<std::sync::Arc<Value>> {
        // Bounds what deleted namespaces leave behind.
        const MOST: usize = 10_000;
        if let Some((rev, obj)) = self.namespaces.lock().unwrap().get(&kv.key) {
            if *rev == kv.mod_revision {
                return Ok(obj.clone());
            }
        }
        let obj = std::sync::Arc::new(decode(def, kv)?);
        let mut namespaces = self.namespaces.lock().unwrap();
        if namespaces.len() >= MOST {
            namespaces.clear();
        }
        namespaces.insert(kv.key.clone(), (kv.mod_revision, obj.clone()));
        Ok(obj)
    }

    /// The stored object at `key`, or upstream's NotFound for `name`.
    async fn stored(&self, def: &ResourceDef, key: &str, name: &str) -> ApiResult<KeyValue> {
        match self.store.get(key, None).await {
            Ok(Some(kv)) => Ok(kv),
            Ok(None) => Err(ApiError::not_found(def, name)),
            Err(e) => Err(ApiError::from_store(e, def, name)),
        }
    }

    pub async fn list(&self, def: &ResourceDef, ns: Option<&str>, q: &ListQuery) -> ApiResult<ListResult> {
        let prefix = def.list_prefix(ns);
        let filtering = !q.label.is_empty() || !q.field.is_empty();
        let mut opts = ListOptions {
            revision: q.exact_revision,
            min_revision: q.min_revision,
            limit: q.limit,
            continue_token: q.continue_token.clone(),
        };
        let mut items = Vec::new();
        loop {
            let page = self.store.list(&prefix, &opts).await.map_err(|e| match (e, &opts.continue_token) {
                // As upstream: 410, with a token that continues at the latest revision.
                (StoreError::Compacted { .. }, Some(token)) => ApiError {
                    continue_token: skiff_store::continue_at_latest(token).ok(),
                    ..ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    )
                },
                (e, _) => ApiError::from_store(e, def, ""),
            })?;
            items.extend(selected(def, q, &page.items)?);
            // With a selector a page can come back short: keep reading, as
            // upstream does, until the limit is met or the list ends.
            let full = q.limit.is_none_or(|l| items.len() >= l);
            match page.continue_token {
                Some(token) if filtering && !full => {
                    (opts.revision, opts.min_revision) = (None, None);
                    opts.continue_token = Some(token);
                    opts.limit = q.limit.map(|l| l - items.len());
                }
                token => {
                    return Ok(ListResult {
                        items,
                        revision: page.revision,
                        remaining: if filtering { None } else { page.remaining },
                        continue_token: token,
                    })
                }
            }
        }
    }

    /// Everything under the list's prefix in one snapshot, unselected and
    /// unencoded (from the watch cache, these share its memory): for a
    /// whole list written out a little at a time.
    pub async fn snapshot(&self, def: &ResourceDef, ns: Option<&str>, q: &ListQuery) -> ApiResult<skiff_store::ListPage> {
        let opts = ListOptions { revision: q.exact_revision, min_revision: q.min_revision, ..Default::default() };
        self.store.list(&def.list_prefix(ns), &opts).await.map_err(|e| ApiError::from_store(e, def, ""))
    }

    /// Every object matching `q`, decoded (for the server's own use).
    pub async fn list_objects(&self, def: &ResourceDef, ns: Option<&str>, q: &ListQuery) -> ApiResult<Vec<Value>> {
        let listed = self.list(def, ns, q).await?;
        listed.items.iter().map(|b| parse(b)).collect()
    }

    /// Creates an object; `manager` is recorded in its managedFields (an
    /// apply's manager owns the fields of the configuration it sent).
    pub async fn create(&self, def: &ResourceDef, ns: Option<&str>, obj: Value, dry_run: bool, manager: &Manager) -> ApiResult<Value> {
        Ok(self.create_admitted(def, ns, obj, dry_run, manager, async |_| Ok(())).await?.object)
    }

    /// Creates an object that `admit` (validating admission) accepts once
    /// it is complete and valid, just before it is stored.
    pub async fn create_admitted(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
        manager: &Manager,
        admit: impl AsyncFnOnce(&Value) -> ApiResult<()>,
    ) -> ApiResult<Created> {
        check_type(def, &obj)?;
        let applied = manager.apply.then(|| obj.clone());
        if !obj.get("metadata").is_some_and(|m| m.is_object()) {
            obj["metadata"] = json!({});
        }
        if let Some(ns) = ns {
            match obj.pointer("/metadata/namespace").and_then(|v| v.as_str()) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => obj["metadata"]["namespace"] = json!(ns),
            }
            self.check_namespace_accepts(ns).await?;
        } else if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        let generate = match obj.pointer("/metadata/generateName").and_then(|v| v.as_str()) {
            Some(prefix) if name_of(&obj).is_empty() => Some(prefix.to_string()),
            _ => None,
        };
        if let Some(prefix) = &generate {
            // Upstream (RetryGenerateName) tries up to eight names before
            // reporting a collision.
            for attempt in 0..8 {
                let name = format!("{prefix}{}", random_suffix());
                let taken = self.store.get(&def.key(ns, &name), None).await.map_err(|e| ApiError::from_store(e, def, &name))?.is_some();
                obj["metadata"]["name"] = json!(name);
                if !taken || attempt == 7 {
                    break;
                }
            }
        }
        let meta = obj["metadata"].as_object_mut().expect("metadata is an object");
        for field in ["resourceVersion", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"] {
            meta.remove(field);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        if obj.get("spec").is_some() {
            obj["metadata"]["generation"] = json!(1);
        }
        skiff_api::defaults::apply(def, &mut obj);
        strategy::prepare_create(def, &mut obj);
        managed::record_create(def, applied.as_ref(), &mut obj, manager);
        validate(def, Op::Create(&obj))?;
        admit(&obj).await?;
        let name = name_of(&obj).to_string();
        if is_service(def) && !dry_run {
            // Fail on an existing name before claiming anything: the claims
            // carry the owner's name, and the failure path releases them.
            if self.store.get(&def.key(ns, &name), None).await.map_err(|e| ApiError::from_store(e, def, &name))?.is_some() {
                return Err(ApiError::already_exists(def, &name));
            }
            let errs = self.services.allocate(&mut obj, &owner(ns, &name)).await?;
            if !errs.is_empty() {
                return Err(ApiError::invalid(def, &name, &errs));
            }
        }
        if dry_run {
            if self.store.get(&def.key(ns, &name), None).await.map_err(|e| ApiError::from_store(e, def, &name))?.is_some() {
                return Err(ApiError::already_exists(def, &name));
            }
            return Ok(Created { object: obj, stored: None });
        }
        let key = def.key(ns, &name);
        let value = encode(def, &obj);
        let created = self.store.create(&key, value.clone()).await;
        if created.is_err() && is_service(def) {
            self.services.release_all(&obj, &owner(ns, &name)).await;
        }
        let rev = created.map_err(|e| ApiError::from_store(e, def, &name))?;
        obj["metadata"]["resourceVersion"] = json!(rev.to_string());
        let stored = def.is_storage_version().then_some(KeyValue { key, value, create_revision: rev, mod_revision: rev });
        Ok(Created { object: obj, stored })
    }

    /// Upstream's NamespaceLifecycle: no new content in a namespace that does
    /// not exist or is being deleted.
    async fn check_namespace_accepts(&self, ns: &str) -> ApiResult<()> {
        let namespaces = skiff_api::resources::find("", "v1", "namespaces").expect("namespaces are served");
        // As upstream's admission, from the cache.
        let namespace = self.get_cached(namespaces, None, ns).await?;
        if namespace.pointer("/metadata/deletionTimestamp").is_some()
            || namespace.pointer("/status/phase").and_then(|v| v.as_str()) == Some("Terminating")
        {
            let mut err = ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ));
            err.details = Some(json!({
                "name": ns,
                "kind": "namespaces",
                "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}],
            }));
            return Err(err);
        }
        Ok(())
    }

    /// Reads, changes and writes back an object until the write lands on the
    /// version it was computed from (upstream's GuaranteedUpdate). With a
    /// `precondition` a changed object is a conflict instead of a retry.
    /// `change` is given the object to make the new one of (no copy is
    /// made: a pod's binding is one of these).
    pub async fn guaranteed_update<F>(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        precondition: Option<Revision>,
        dry_run: bool,
        change: F,
    ) -> ApiResult<Value>
    where
        F: Fn(Value) -> ApiResult<Value>,
    {
        self.update_until_written(def, ns, name, precondition, dry_run, change, None).await
    }

    /// `guaranteed_update` with admission: `admit` sees the current object
    /// and may complete or refuse the changed one, on every attempt.
    #[allow(clippy::too_many_arguments)]
    pub async fn guaranteed_update_admitted<F>(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        precondition: Option<Revision>,
        dry_run: bool,
        change: F,
        admit: &dyn Admit,
    ) -> ApiResult<Value>
    where
        F: Fn(&Value) -> ApiResult<Value>,
    {
        self.update_until_written(def, ns, name, precondition, dry_run, |current| change(&current), Some(admit)).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn update_until_written<F>(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        precondition: Option<Revision>,
        dry_run: bool,
        change: F,
        admit: Option<&dyn Admit>,
    ) -> ApiResult<Value>
    where
        F: Fn(Value) -> ApiResult<Value>,
    {
        let key = def.key(ns, name);
        // The first try starts from the watch cache's copy, as upstream's
        // does; whatever that copy could get wrong (a conflict, a failed
        // precondition, nothing to write) is decided again on the store's.
        let mut verified = false;
        loop {
            let kv = match verified {
                false => match self.store.get_recent(&key).await {
                    Ok(Some(kv)) => kv,
                    _ => {
                        verified = true;
                        continue;
                    }
                },
                true => self.stored(def, &key, name).await?,
            };
            if precondition.is_some_and(|rv| rv != kv.mod_revision) {
                if !verified {
                    verified = true;
                    continue;
                }
                return Err(ApiError::modified(def, name));
            }
            let current = decode(def, &kv)?;
            // Admission reads the object as it was, and so does the
            // comparison of converted kinds; other updates take it over.
            let original = (admit.is_some() || !def.is_storage_version() || is_service(def)).then(|| current.clone());
            let mut updated = match change(current) {
                Ok(updated) => updated,
                Err(_) if !verified => {
                    verified = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            updated["metadata"]["resourceVersion"] = json!(kv.mod_revision.to_string());
            if let (Some(admit), Some(original)) = (admit, &original) {
                admit.admit(original, &mut updated).await?;
            }
            // A Service's addresses and ports for its (new) type, claimed
            // before it is written; see `services::Allocator::update`. A
            // status update (the spec as it was) claims nothing, as
            // upstream's status store has no allocation.
            let claims = match (is_service(def), &original) {
                (true, Some(original)) if original.get("spec") != updated.get("spec") => Some(self.services.update(&mut updated, original, &owner(ns, name)).await?),
                _ => None,
            };
            // Unchanged, as upstream's GuaranteedUpdate decides it: the bytes
            // to write are those stored (cheaper than comparing objects).
            // Converted kinds may not come back byte for byte, so they
            // compare as objects.
            let value = encode(def, &updated);
            let unchanged = value == kv.value || (!def.is_storage_version() && original.as_ref() == Some(&updated));
            if unchanged || dry_run {
                if let Some(claims) = claims {
                    self.services.revert(claims).await;
                }
                if !verified {
                    verified = true;
                    continue;
                }
                // Nothing changed: upstream does not write (nor bump the version).
                return Ok(updated);
            }
            // The last finalizer removed from an object being deleted: delete it.
            let written = if strategy::is_finalized(def, &updated) {
                let deleted = self.store.delete(&key, Some(kv.mod_revision)).await.map(|(rev, _)| rev);
                if deleted.is_ok() && is_service(def) {
                    self.services.release_all(&updated, &owner(ns, name)).await;
                }
                deleted
            } else {
                self.store.update(&key, value, Some(kv.mod_revision)).await
            };
            if let Some(claims) = claims {
                match written {
                    Ok(_) => self.services.commit(claims).await,
                    Err(_) => self.services.revert(claims).await,
                }
            }
            match written {
                Ok(rev) => {
                    updated["metadata"]["resourceVersion"] = json!(rev.to_string());
                    return Ok(updated);
                }
                Err(StoreError::Conflict { .. }) if precondition.is_none() || !verified => {
                    verified = true;
                    continue;
                }
                Err(StoreError::Conflict { .. }) => return Err(ApiError::modified(def, name)),
                Err(e) => return Err(ApiError::from_store(e, def, name)),
            }
        }
    }

    /// PUT: replaces the object (or, for `/status`, only its status).
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        new: Value,
        dry_run: bool,
        manager: &Manager,
        admit: &dyn Admit,
    ) -> ApiResult<Value> {
        check_type(def, &new)?;
        let body_name = name_of(&new);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let (Some(ns), Some(given)) = (ns, new.pointer("/metadata/namespace").and_then(|v| v.as_str())) {
            if !given.is_empty() && given != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let precondition = resource_version(&new)?;
        let change = |current: &Value| {
            let mut updated = merge_update(def, current, new.clone(), subresource)?;
            managed::record_update(def, Some(current), &mut updated, manager);
            Ok(updated)
        };
        self.guaranteed_update_admitted(def, ns, name, precondition, dry_run, change, admit).await
    }

    pub async fn delete(&self, def: &ResourceDef, ns: Option<&str>, name: &str, opts: &DeleteOptions) -> ApiResult<Deleted> {
        let key = def.key(ns, name);
        loop {
            let kv = self.stored(def, &key, name).await?;
            let obj = decode(def, &kv)?;
            if let Some(uid) = &opts.uid {
                let actual = obj.pointer("/metadata/uid").and_then(|v| v.as_str()).unwrap_or("");
                if uid != actual {
                    return Err(ApiError::conflict(
                        def,
                        name,
                        &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = opts.resource_version {
                if rv != kv.mod_revision {
                    return Err(ApiError::conflict(
                        def,
                        name,
                        &format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            kv.mod_revision
                        ),
                    ));
                }
            }
            // Orphan and Foreground leave the object to the garbage
            // collector, behind a finalizer, as upstream does.
            let finalizer = match opts.propagation.as_deref() {
                Some("Orphan") => Some(strategy::ORPHAN_FINALIZER),
                Some("Foreground") => Some(strategy::FOREGROUND_FINALIZER),
                _ => None,
            };
            let graceful = finalizer.is_some() || strategy::deletes_gracefully(def, &obj, opts.grace_seconds);
            if graceful {
                if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    return Ok(Deleted::Pending(obj));
                }
                let mut marked = obj.clone();
                if let Some(finalizer) = finalizer {
                    strategy::add_finalizer(&mut marked, finalizer);
                }
                strategy::mark_deleted(def, &mut marked, opts.grace_seconds);
                if opts.dry_run {
                    return Ok(Deleted::Pending(marked));
                }
                match self.store.update(&key, encode(def, &marked), Some(kv.mod_revision)).await {
                    Ok(rev) => {
                        marked["metadata"]["resourceVersion"] = json!(rev.to_string());
                        return Ok(Deleted::Pending(marked));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(ApiError::from_store(e, def, name)),
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Now(obj));
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok(_) => {
                    if is_service(def) {
                        self.services.release_all(&obj, &owner(ns, name)).await;
                    }
                    return Ok(Deleted::Now(obj));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, def, name)),
            }
        }
    }
}

/// The object an update (PUT or patch) produces from `current` and the
/// client's `new`: what the client may not change is kept from `current`.
/// Admission of an update, run on every attempt of a guaranteed update
/// with the stored object and the changed one (which it may complete).
#[async_trait::async_trait]
pub trait Admit: Send + Sync {
    async fn admit(&self, old: &Value, new: &mut Value) -> ApiResult<()>;
}

pub fn merge_update(def: &ResourceDef, current: &Value, mut new: Value, subresource: Option<&str>) -> ApiResult<Value> {
    let name = name_of(current).to_string();
    if let (Some(given), Some(actual)) = (
        new.pointer("/metadata/uid").and_then(|v| v.as_str()).filter(|u| !u.is_empty()),
        current.pointer("/metadata/uid").and_then(|v| v.as_str()),
    ) {
        if given != actual {
            return Err(ApiError::conflict(
                def,
                &name,
                &format!("Precondition failed: UID in precondition: {given}, UID in object meta: {actual}"),
            ));
        }
    }
    if subresource == Some("approval") {
        // A CSR's approval changes its conditions and nothing else.
        let mut out = current.clone();
        out["status"]["conditions"] = new.pointer("/status/conditions").cloned().unwrap_or(json!([]));
        validate(def, Op::Status { new: &out, old: current })?;
        return Ok(out);
    }
    if subresource == Some("ephemeralcontainers") {
        // A pod's `/ephemeralcontainers` adds ephemeral containers and
        // changes nothing else.
        let mut out = current.clone();
        out["spec"]["ephemeralContainers"] = new.pointer("/spec/ephemeralContainers").cloned().unwrap_or(json!([]));
        skiff_api::defaults::apply(def, &mut out);
        let errs = validation::ephemeral_containers_update(&out, current);
        if !errs.is_empty() {
            return Err(ApiError::invalid(def, &name, &errs));
        }
        return Ok(out);
    }
    if subresource == Some("status") {
        // `/status` changes the status and nothing else.
        let mut out = current.clone();
        match new.get("status") {
            Some(status) => out["status"] = status.clone(),
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        validate(def, Op::Status { new: &out, old: current })?;
        return Ok(out);
    }
    if !new.get("metadata").is_some_and(|m| m.is_object()) {
        new["metadata"] = json!({});
    }
    for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "name"] {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(v) => new["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    if let Some(m) = new["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    if def.has_status() {
        // The main resource ignores status; `/status` is how it changes.
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    skiff_api::defaults::apply(def, &mut new);
    strategy::prepare_update(def, current, &mut new);
    if spec_changed(current, &new) && current.pointer("/metadata/generation").is_some() {
        let generation = current.pointer("/metadata/generation").and_then(|g| g.as_i64()).unwrap_or(0);
        new["metadata"]["generation"] = json!(generation + 1);
    }
    validate(def, Op::Update { new: &new, old: current })?;
    Ok(new)
}

/// Anything besides metadata and status differs.
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("status");
        }
        v
    };
    strip(old) != strip(new)
}

pub fn check_type(def: &ResourceDef, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!("Object 'Kind' is missing in '{obj}'")));
    }
    if let Some(v) = obj.get("apiVersion").and_then(|v| v.as_str()) {
        if v != def.api_version() {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                def.api_version()
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(|v| v.as_str()) {
        if k != def.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                def.kind
            )));
        }
    }
    Ok(())
}

/// Every error of `op`, as one 422 (upstream reports them together).
fn validate(def: &ResourceDef, op: Op<'_>) -> ApiResult<()> {
    let errs: Vec<FieldError> = validation::validate(def, op);
    if errs.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(def, name_of(op.new_object()), &errs))
}

/// Upstream's generateName suffix: five characters from an alphabet
/// without vowels or look-alikes.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let id = uuid::Uuid::new_v4();
    id.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_stored_metadata_first_without_their_version() {
        let pods = skiff_api::resources::find("", "v1", "pods").unwrap();
        let pod = json!({"spec": {"b": 1, "a": [2]}, "kind": "Other", "metadata": {"selfLink": "/x", "resourceVersion": "5", "name": "p", "labels": {"k": "v"}}});
        let stored = encode(pods, &pod);
        assert_eq!(std::str::from_utf8(&stored).unwrap(), r#"{"metadata":{"labels":{"k":"v"},"name":"p"},"apiVersion":"v1","kind":"Pod","spec":{"a":[2],"b":1}}"#);
        let hpas = skiff_api::resources::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let stored: Value = serde_json::from_slice(&encode(hpas, &json!({"metadata": {"name": "h"}, "spec": {"maxReplicas": 2}}))).unwrap();
        assert_eq!((stored["apiVersion"].as_str(), stored["kind"].as_str()), (Some("autoscaling/v2"), Some("HorizontalPodAutoscaler")));
    }
}
