//! Field management (`metadata.managedFields`) and server-side apply, with
//! upstream's semantics (structured-merge-diff): every write records which
//! manager set which fields; an apply sets the fields of its configuration,
//! removes those it set before and no longer names, and is refused with a
//! conflict when it would change a field another manager owns, unless
//! forced, which takes the field over.
//!
//! Field sets are kept in upstream's FieldsV1 form: `f:name` for fields,
//! `k:{"name":"web"}` for items of lists merged by key, `v:"x"` for items
//! of lists that are sets, `.` for a list item itself; a leaf is `{}`.
//! Which lists are keyed comes from the strategic merge keys (`patch`).

use std::collections::BTreeMap;

use axum::http::{header, HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use skiff_api::ResourceDef;

use crate::handler::Query;
use crate::registry::now;
use crate::status::{ApiError, ApiResult};

/// A set of field paths: a tree whose leaves (empty nodes) are members.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct Set(BTreeMap<String, Set>);

impl std::ops::Deref for Set {
    type Target = BTreeMap<String, Set>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Set {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(String, Set)> for Set {
    fn from_iter<I: IntoIterator<Item = (String, Set)>>(iter: I) -> Self {
        Set(iter.into_iter().collect())
    }
}
/// A set as FieldsV1 JSON, its keys moved rather than copied.
impl From<Set> for Value {
    fn from(set: Set) -> Value {
        Value::Object(set.0.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
    }
}

type Path = Vec<String>;

/// Who is writing, as managedFields names it.
#[derive(Debug, Clone)]
pub struct Manager {
    pub name: String,
    pub apply: bool,
    pub subresource: Option<String>,
}

impl Manager {
    /// The `fieldManager` parameter, else upstream's default: the client's
    /// user agent up to its first `/`. Apply requires the parameter.
    pub fn of_request(query: &Query, headers: &HeaderMap, subresource: Option<&str>, apply: bool) -> ApiResult<Manager> {
        let name = match query.get("fieldManager") {
            Some(name) => name.clone(),
            None if apply => return Err(ApiError::bad_request("PATCH: fieldManager: Required value: is required for apply patch")),
            None => {
                let agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
                agent.split('/').next().unwrap_or(agent).to_string()
            }
        };
        if name.chars().count() > 128 {
            return Err(ApiError::bad_request(format!("fieldManager: Too long: may not be more than 128 bytes (got {})", name.len())));
        }
        Ok(Manager { name, apply, subresource: subresource.filter(|s| matches!(*s, "status" | "scale")).map(String::from) })
    }

    pub fn internal(name: &str) -> Manager {
        Manager { name: name.into(), apply: false, subresource: None }
    }

    fn operation(&self) -> &'static str {
        if self.apply { "Apply" } else { "Update" }
    }
}

struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    set: Set,
}

impl Entry {
    fn is(&self, m: &Manager, api_version: &str) -> bool {
        self.manager == m.name && self.operation == m.operation() && self.subresource == m.subresource && self.api_version == api_version
    }

    /// How upstream names a manager in a conflict.
    fn describe(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{:?} with subresource {sub:?} using {}", self.manager, self.api_version),
            None => format!("{:?} using {}", self.manager, self.api_version),
        }
    }
}

fn entries(obj: &Value) -> Vec<Entry> {
    let list = obj.pointer("/metadata/managedFields").and_then(Value::as_array);
    list.map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or_default().into(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            time: e["time"].as_str().unwrap_or_default().into(),
            subresource: e["subresource"].as_str().map(String::from),
            set: serde_json::from_value(e["fieldsV1"].clone()).unwrap_or_default(),
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": Value::from(e.set),
            });
            if let Some(sub) = e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    let meta = obj["metadata"].as_object_mut().expect("objects have metadata");
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

// Field sets of objects.

enum ListKind {
    Keyed(Vec<&'static str>),
    Set,
    Atomic,
}

fn list_kind(field: &str, items: &[Value]) -> ListKind {
    match items.first() {
        Some(sample @ Value::Object(_)) => match crate::patch::merge_key(field, sample) {
            // Ports are keyed by port and protocol together.
            Some(key @ ("containerPort" | "port")) => ListKind::Keyed(vec![key, "protocol"]),
            Some(key) => ListKind::Keyed(vec![key]),
            None => ListKind::Atomic,
        },
        Some(_) if crate::patch::merges_primitives(field) => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// A key field's value in an item; `protocol` defaults to TCP, as upstream.
fn key_value(item: &Value, key: &str) -> Value {
    match item.get(key) {
        Some(v) => v.clone(),
        None if key == "protocol" => json!("TCP"),
        None => Value::Null,
    }
}

/// `k:{"name":"web"}`: the key fields as compact JSON, sorted by name.
fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    let fields: Vec<String> = keys.iter().map(|k| format!("{}:{}", json!(k), key_value(item, k))).collect();
    format!("k:{{{}}}", fields.join(","))
}

fn object_set(obj: &Map<String, Value>) -> Set {
    obj.iter().map(|(k, v)| (format!("f:{k}"), value_set(k, v))).collect()
}

fn value_set(field: &str, v: &Value) -> Set {
    match v {
        Value::Object(m) if !m.is_empty() => object_set(m),
        Value::Array(items) if !items.is_empty() => match list_kind(field, items) {
            ListKind::Keyed(keys) => items
                .iter()
                .map(|item| {
                    let mut set = item.as_object().map(object_set).unwrap_or_default();
                    set.insert(".".into(), Set::default());
                    (item_key(item, &keys), set)
                })
                .collect(),
            ListKind::Set => items.iter().map(|item| (format!("v:{item}"), Set::default())).collect(),
            ListKind::Atomic => Set::default(),
        },
        _ => Set::default(),
    }
}

/// The fields of `obj` a manager can own: not identity or system fields,
/// and on the main resource not status (the `/status` subresource owns
/// only status).
fn owned_fields(def: &ResourceDef, obj: &Value, subresource: Option<&str>) -> Set {
    const SYSTEM: [&str; 10] = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"];
    let Some(map) = obj.as_object() else { return Set::default() };
    let owned = |field: &str| match subresource {
        Some("status") => field == "status",
        _ => !(matches!(field, "apiVersion" | "kind") || (field == "status" && def.has_status())),
    };
    // Fields left out are skipped, not built and then removed: this runs
    // for every write.
    map.iter()
        .filter(|(field, _)| owned(field))
        .filter_map(|(field, v)| {
            let set = match (field.as_str(), v) {
                ("metadata", Value::Object(meta)) => meta.iter().filter(|(k, _)| !SYSTEM.contains(&k.as_str())).map(|(k, v)| (format!("f:{k}"), value_set(k, v))).collect(),
                _ => value_set(field, v),
            };
            // Metadata with only system fields is not owned at all.
            (field != "metadata" || !set.is_empty()).then(|| (format!("f:{field}"), set))
        })
        .collect()
}

fn paths(set: &Set) -> Vec<Path> {
    fn walk(set: &Set, prefix: &mut Path, out: &mut Vec<Path>) {
        for (k, child) in set.iter() {
            prefix.push(k.clone());
            if child.is_empty() {
                out.push(prefix.clone());
            } else {
                walk(child, prefix, out);
            }
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(set, &mut Vec::new(), &mut out);
    out
}

/// The leaf paths of `set` whose values in `a` and `b` pass `test`: one
/// walk of the set and both objects together, each path step parsed
/// once, instead of a lookup from the root per path.
fn leaves_where(set: &Set, a: Option<&Value>, b: Option<&Value>, test: &dyn Fn(Option<&Value>, Option<&Value>) -> bool) -> Vec<Path> {
    fn walk(set: &Set, a: Option<&Value>, b: Option<&Value>, test: &dyn Fn(Option<&Value>, Option<&Value>) -> bool, prefix: &mut Path, out: &mut Vec<Path>) {
        for (k, child) in set.iter() {
            let step = Step::parse(k);
            let (a, b) = match &step {
                Some(step) => (a.and_then(|v| step.find(v)), b.and_then(|v| step.find(v))),
                None => (None, None),
            };
            prefix.push(k.clone());
            if child.is_empty() {
                if test(a, b) {
                    out.push(prefix.clone());
                }
            } else {
                walk(child, a, b, test, prefix, out);
            }
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(set, a, b, test, &mut Vec::new(), &mut out);
    out
}

fn contains(set: &Set, path: &[String]) -> bool {
    match path.split_first() {
        None => true,
        Some((first, rest)) => set.get(first).is_some_and(|child| if rest.is_empty() { child.is_empty() } else { contains(child, rest) }),
    }
}

fn insert(set: &mut Set, path: &[String]) {
    if let Some((first, rest)) = path.split_first() {
        insert(set.entry(first.clone()).or_default(), rest);
    }
}

fn remove(set: &mut Set, path: &[String]) {
    let Some((first, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        set.remove(first);
    } else if let Some(child) = set.get_mut(first).filter(|c| !c.is_empty()) {
        remove(child, rest);
        if child.is_empty() {
            set.remove(first);
        }
    }
}

// Values at paths.

/// One element of a field path, parsed.
enum Step {
    /// `f:name`
    Field(String),
    /// `k:{…}`: the item of a keyed list with these key values.
    Key(Map<String, Value>),
    /// `v:…`: the item of a set list equal to this value.
    Item(Value),
    /// `.`: the item itself.
    Itself,
}

impl Step {
    fn parse(elem: &str) -> Option<Step> {
        Some(match elem.split_at_checked(2).unwrap_or((elem, "")) {
            ("f:", name) => Step::Field(name.to_string()),
            ("k:", key) => Step::Key(serde_json::from_str(key).ok()?),
            ("v:", value) => Step::Item(serde_json::from_str(value).ok()?),
            _ => Step::Itself,
        })
    }

    /// The field or list item of `v` this step names.
    fn find<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        match self {
            Step::Field(name) => v.get(name),
            Step::Itself => Some(v),
            step => v.as_array()?.iter().find(|item| step.picks(item)),
        }
    }

    /// Whether a list item is the one this step names.
    fn picks(&self, item: &Value) -> bool {
        match self {
            Step::Key(key) => matches_key(item, key),
            Step::Item(value) => item == value,
            Step::Field(_) | Step::Itself => false,
        }
    }
}

fn matches_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(k, v)| key_value(item, k) == *v)
}

fn lookup<'a>(mut v: &'a Value, path: &[String]) -> Option<&'a Value> {
    for elem in path {
        v = Step::parse(elem)?.find(v)?;
    }
    Some(v)
}

fn lookup_mut<'a>(mut v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    for elem in path {
        v = match Step::parse(elem)? {
            Step::Field(name) => v.get_mut(&name)?,
            Step::Itself => v,
            step => v.as_array_mut()?.iter_mut().find(|item| step.picks(item))?,
        };
    }
    Some(v)
}

/// Removes the field or list item `path` names (a path ending in `.`
/// names the item before it).
fn remove_value(v: &mut Value, path: &[String]) {
    let path = match path.split_last() {
        Some((last, rest)) if last == "." => rest,
        _ => path,
    };
    let Some((last, parents)) = path.split_last() else { return };
    let (Some(target), Some(step)) = (lookup_mut(v, parents), Step::parse(last)) else { return };
    match step {
        Step::Field(name) => {
            target.as_object_mut().map(|m| m.remove(&name));
        }
        Step::Itself => {}
        step => {
            if let Some(items) = target.as_array_mut() {
                items.retain(|item| !step.picks(item));
            }
        }
    }
}

/// Removes the lists and objects on `path` that its removal left empty,
/// unless the configuration itself names them.
fn prune_emptied(obj: &mut Value, path: &[String], config: &Value) {
    let path: Vec<String> = path.iter().filter(|e| *e != ".").cloned().collect();
    for len in (1..path.len()).rev() {
        let prefix = &path[..len];
        let emptied = match lookup(obj, prefix) {
            Some(Value::Array(items)) => items.is_empty(),
            Some(Value::Object(fields)) => fields.is_empty(),
            _ => false,
        };
        if !emptied || lookup(config, prefix).is_some() {
            return;
        }
        remove_value(obj, prefix);
    }
}

/// `.spec.containers[name="web"].image`, as upstream prints a path.
fn render(path: &[String]) -> String {
    let mut out = String::new();
    for step in path.iter().filter_map(|e| Step::parse(e)) {
        match step {
            Step::Field(name) => {
                out.push('.');
                out.push_str(&name);
            }
            Step::Key(key) => {
                let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            Step::Item(value) => out.push_str(&format!("[={value}]")),
            Step::Itself => {}
        }
    }
    out
}

/// Records a create or update by `m`: it owns the fields it set or
/// changed; other managers lose the fields it changed or removed.
pub fn record_update(def: &ResourceDef, old: Option<&Value>, new: &mut Value, m: &Manager) {
    let api_version = def.api_version();
    let sub = m.subresource.as_deref();
    let mut list = old.map(entries).unwrap_or_default();
    let old_fields = old.map(|o| owned_fields(def, o, sub)).unwrap_or_default();
    let new_fields = owned_fields(def, new, sub);
    if old.is_none() {
        // A create: the manager owns every field it sent.
        let entry = Entry { manager: m.name.clone(), operation: m.operation().into(), api_version, time: now(), subresource: m.subresource.clone(), set: new_fields };
        return write_entries(new, vec![entry]);
    }
    let changed = leaves_where(&new_fields, old, Some(new), &|before, after| before != after);
    let removed = leaves_where(&old_fields, old, Some(new), &|_, after| after.is_none());
    if changed.is_empty() && removed.is_empty() {
        if let Some(old) = old {
            new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
            if new["metadata"]["managedFields"].is_null() {
                new["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
            }
        }
        return;
    }
    for e in list.iter_mut() {
        for p in changed.iter().chain(&removed) {
            remove(&mut e.set, p);
        }
    }
    let mine = match list.iter().position(|e| e.is(m, &api_version)) {
        Some(i) => i,
        None => {
            list.push(Entry { manager: m.name.clone(), operation: m.operation().into(), api_version: api_version.clone(), time: String::new(), subresource: m.subresource.clone(), set: Set::default() });
            list.len() - 1
        }
    };
    for p in &changed {
        insert(&mut list[mine].set, p);
    }
    list[mine].time = now();
    write_entries(new, list);
}

/// Records the creation of `created`: by an apply (`applied` is its
/// configuration), whose manager owns what it sent, or by an update.
pub fn record_create(def: &ResourceDef, applied: Option<&Value>, created: &mut Value, m: &Manager) {
    match applied {
        Some(config) => {
            let set = owned_fields(def, config, m.subresource.as_deref());
            let entry = Entry { manager: m.name.clone(), operation: "Apply".into(), api_version: def.api_version(), time: now(), subresource: m.subresource.clone(), set };
            write_entries(created, vec![entry]);
        }
        None => record_update(def, None, created, m),
    }
}

/// Server-side apply of `config` by `m` onto `live` (None: the object does
/// not exist yet). Returns the merged object, carrying its new managedFields.
pub fn apply(def: &ResourceDef, live: Option<&Value>, config: &Value, m: &Manager, force: bool) -> ApiResult<Value> {
    let api_version = def.api_version();
    let sub = m.subresource.as_deref();
    let applied = owned_fields(def, config, sub);
    let mut list = live.map(entries).unwrap_or_default();
    let mine = list.iter().position(|e| e.is(m, &api_version));
    let previous = mine.map(|i| list[i].set.clone()).unwrap_or_default();

    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    if let Some(live) = live {
        for p in paths(&applied) {
            match lookup(live, &p) {
                Some(current) if lookup(config, &p) != Some(current) && p.last().is_none_or(|l| l != ".") => {
                    conflicts.extend(list.iter().enumerate().filter(|(i, e)| Some(*i) != mine && contains(&e.set, &p)).map(|(i, _)| (i, p.clone())));
                }
                _ => {}
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&list, &conflicts));
    }

    let mut merged = live.cloned().unwrap_or_else(|| json!({}));
    merge("", &mut merged, config);
    for p in paths(&previous) {
        let kept = contains(&applied, &p) || list.iter().enumerate().any(|(i, e)| Some(i) != mine && contains(&e.set, &p));
        if !kept {
            remove_value(&mut merged, &p);
            prune_emptied(&mut merged, &p, config);
        }
    }
    for (i, p) in &conflicts {
        remove(&mut list[*i].set, p);
    }
    // Re-applying what is already there writes nothing, as upstream: the
    // entry keeps its time rather than making a change of its own.
    let without_fields = |o: &Value| {
        let mut o = o.clone();
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        o
    };
    let unchanged = mine.is_some() && previous == applied && conflicts.is_empty() && live.is_some_and(|l| without_fields(l) == without_fields(&merged));
    let time = match mine {
        Some(i) if unchanged => list[i].time.clone(),
        _ => now(),
    };
    let entry = Entry { manager: m.name.clone(), operation: "Apply".into(), api_version, time, subresource: m.subresource.clone(), set: applied };
    match mine {
        Some(i) => list[i] = entry,
        None => list.push(entry),
    }
    write_entries(&mut merged, list);
    Ok(merged)
}

/// Merges an applied configuration into the live object: objects field by
/// field, keyed lists item by item, set lists as sets; anything else is
/// replaced. A null in the configuration removes the field.
fn merge(field: &str, live: &mut Value, config: &Value) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                if cv.is_null() {
                    l.remove(k);
                } else if let Some(lv) = l.get_mut(k) {
                    merge(k, lv, cv);
                } else {
                    l.insert(k.clone(), cv.clone());
                }
            }
        }
        (Value::Array(l), Value::Array(c)) if !c.is_empty() => match list_kind(field, c) {
            ListKind::Keyed(keys) => {
                for item in c {
                    let key: Map<String, Value> = keys.iter().map(|k| (k.to_string(), key_value(item, k))).collect();
                    match l.iter_mut().find(|i| matches_key(i, &key)) {
                        Some(existing) => merge(field, existing, item),
                        None => l.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in c {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            ListKind::Atomic => *l = c.clone(),
        },
        (live, config) => *live = config.clone(),
    }
}

fn conflict_error(list: &[Entry], conflicts: &[(usize, Path)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(i, p)| json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", list[*i].describe()), "field": render(p)}))
        .collect();
    let message = if let [(i, p)] = conflicts {
        format!("Apply failed with 1 conflict: conflict with {}: {}", list[*i].describe(), render(p))
    } else {
        let mut by_manager: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (i, p) in conflicts {
            by_manager.entry(*i).or_default().push(render(p));
        }
        let groups: Vec<String> = by_manager
            .iter()
            .map(|(i, fields)| format!("conflicts with {}:\n{}", list[*i].describe(), fields.iter().map(|f| format!("- {f}")).collect::<Vec<_>>().join("\n")))
            .collect();
        format!("Apply failed with {} conflicts: {}", conflicts.len(), groups.join("\n"))
    };
    ApiError { details: Some(json!({"causes": causes})), ..ApiError::new(StatusCode::CONFLICT, "Conflict", message) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceDef {
        skiff_api::resources::find("apps", "v1", "deployments").unwrap()
    }

    fn manager(name: &str, apply: bool) -> Manager {
        Manager { name: name.into(), apply, subresource: None }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn field_sets_are_written_as_upstream_writes_them() {
        let set = owned_fields(deployments(), &deployment(2, "a"), None);
        let v = serde_json::to_value(&set).unwrap();
        assert_eq!(
            v,
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}, "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}})
        );
        let path: Path = vec!["f:spec".into(), "f:template".into(), "f:spec".into(), "f:containers".into(), "k:{\"name\":\"web\"}".into(), "f:image".into()];
        assert_eq!(render(&path), ".spec.template.spec.containers[name=\"web\"].image");
        assert_eq!(lookup(&deployment(2, "a"), &path), Some(&json!("a")));
    }

    #[test]
    fn apply_conflicts_forces_and_removes_what_it_stops_naming() {
        let def = deployments();
        // Created by an updater, then applied by another manager.
        let mut live = deployment(2, "a");
        record_update(def, None, &mut live, &manager("creator", false));
        let err = apply(def, Some(&live), &deployment(3, "a"), &manager("ci", true), false).unwrap_err();
        assert_eq!(err.code, StatusCode::CONFLICT);
        assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"creator\" using apps/v1: .spec.replicas");
        // Same values are shared, not conflicts; force takes the field over.
        let forced = apply(def, Some(&live), &deployment(3, "a"), &manager("ci", true), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let list = entries(&forced);
        let creator = list.iter().find(|e| e.manager == "creator").unwrap();
        assert!(!contains(&creator.set, &["f:spec".into(), "f:replicas".into()]));
        assert!(contains(&creator.set, &["f:metadata".into(), "f:labels".into(), "f:app".into()]));
        // Applying again without the label: the label stays (creator owns it too).
        let mut smaller = deployment(3, "a");
        smaller["metadata"].as_object_mut().unwrap().remove("labels");
        let again = apply(def, Some(&forced), &smaller, &manager("ci", true), false).unwrap();
        assert_eq!(again["metadata"]["labels"]["app"], "web");
        // A field only the applier owned is removed when it stops naming it.
        let mut with_env = smaller.clone();
        with_env["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "A", "value": "1"}]);
        let added = apply(def, Some(&again), &with_env, &manager("ci", true), false).unwrap();
        assert_eq!(added["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "A");
        let dropped = apply(def, Some(&added), &smaller, &manager("ci", true), false).unwrap();
        assert!(dropped["spec"]["template"]["spec"]["containers"][0].get("env").is_none(), "{dropped}");
    }

    #[test]
    fn an_update_takes_changed_fields_from_other_managers() {
        let def = deployments();
        let live = apply(def, None, &deployment(2, "a"), &manager("ci", true), false).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(def, Some(&live), &mut scaled, &manager("kubectl-scale", false));
        let list = entries(&scaled);
        let replicas: Path = vec!["f:spec".into(), "f:replicas".into()];
        assert!(contains(&list.iter().find(|e| e.manager == "kubectl-scale").unwrap().set, &replicas));
        assert!(!contains(&list.iter().find(|e| e.manager == "ci").unwrap().set, &replicas));
        // Nothing changed: nothing recorded.
        let mut same = scaled.clone();
        record_update(def, Some(&scaled), &mut same, &manager("other", false));
        assert!(entries(&same).iter().all(|e| e.manager != "other"));
    }
}
