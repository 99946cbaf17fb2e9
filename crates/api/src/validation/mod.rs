//! Validation of every built-in kind, as upstream's
//! `pkg/apis/<group>/validation` packages do it: the same rules, field
//! paths, reasons and messages, and every error of an object reported
//! together. Written here from upstream's behaviour, one module per API
//! group; `meta` holds the apimachinery rules (names, labels, metadata),
//! and `go`, `addresses` and `resources` what many groups share: Go values
//! as upstream prints them, IPs and domain names, resource names and
//! quantities.
//!
//! A kind's rules are three functions of its k8s-openapi type (upstream's
//! `ValidateX`, `ValidateXUpdate`, `ValidateXStatusUpdate`): on create the
//! first; on update the first on the new object plus the second (what may
//! not change); on a `/status` write only the third.

mod meta;

mod addresses;
mod go;
mod resources;

mod admissionregistration;
mod apiextensions;
mod appsafe;
mod apps;
mod autoscaling;
mod batch;
mod certificates;
mod coordination;
mod core;
mod discovery;
mod flowcontrol;
mod networking;
mod node;
mod pod;
mod pod_scheduling;
mod policy;
mod quantities;
mod rbac;
mod scheduling;
mod storage;

pub use go::go_struct;
pub use meta::*;
pub use pod_scheduling::ephemeral_containers_update;
pub use quantities::decode as decode_quantities;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ResourceDef;

/// One field error: `path: Invalid value: "x": why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub type Errors = Vec<FieldError>;

/// A field's path as upstream's `field.Path` prints it:
/// `spec.containers[0].ports[1].containerPort`, `metadata.labels[app]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Path {
        Path(root.to_string())
    }

    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn error(&self, reason: &'static str, message: String) -> FieldError {
        FieldError { field: self.0.clone(), reason, message }
    }

    /// `Required value[: detail]`.
    pub fn required(&self, detail: &str) -> FieldError {
        self.error("FieldValueRequired", with_detail("Required value".into(), detail))
    }

    /// `Invalid value: VALUE[: detail]`.
    pub fn invalid(&self, value: impl Into<Bad>, detail: &str) -> FieldError {
        self.error("FieldValueInvalid", with_detail(format!("Invalid value: {}", value.into().0), detail))
    }

    /// `Unsupported value: VALUE: supported values: "a", "b"`.
    pub fn not_supported(&self, value: impl Into<Bad>, supported: &[&str]) -> FieldError {
        let listed: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = if listed.is_empty() { String::new() } else { format!("supported values: {}", listed.join(", ")) };
        self.error("FieldValueNotSupported", with_detail(format!("Unsupported value: {}", value.into().0), &detail))
    }

    /// `Duplicate value: VALUE`.
    pub fn duplicate(&self, value: impl Into<Bad>) -> FieldError {
        self.error("FieldValueDuplicate", format!("Duplicate value: {}", value.into().0))
    }

    /// `Not found: VALUE`.
    pub fn not_found(&self, value: impl Into<Bad>) -> FieldError {
        self.error("FieldValueNotFound", format!("Not found: {}", value.into().0))
    }

    /// `Forbidden: detail`.
    pub fn forbidden(&self, detail: &str) -> FieldError {
        self.error("FieldValueForbidden", with_detail("Forbidden".into(), detail))
    }

    /// `Too long: may not be more than N bytes`.
    pub fn too_long(&self, max: usize) -> FieldError {
        let unit = if max == 1 { "byte" } else { "bytes" };
        self.error("FieldValueTooLong", format!("Too long: may not be more than {max} {unit}"))
    }

    /// `Too many: N: must have at most M items`.
    pub fn too_many(&self, actual: usize, max: usize) -> FieldError {
        let unit = if max == 1 { "item" } else { "items" };
        self.error("FieldValueTooMany", format!("Too many: {actual}: must have at most {max} {unit}"))
    }

    /// `Internal error: detail`.
    pub fn internal(&self, detail: &str) -> FieldError {
        self.error("InternalError", with_detail("Internal error".into(), detail))
    }
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

/// A bad value as upstream prints it in a field error: strings quoted
/// (Go's `%q`), numbers and booleans bare, anything else as given
/// (`Bad::raw`, for Go's `%#v` of a structure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad(pub String);

impl Bad {
    pub fn raw(text: impl Into<String>) -> Bad {
        Bad(text.into())
    }
}

impl From<&str> for Bad {
    fn from(s: &str) -> Bad {
        Bad(format!("{s:?}"))
    }
}

impl From<&String> for Bad {
    fn from(s: &String) -> Bad {
        Bad::from(s.as_str())
    }
}

impl From<String> for Bad {
    fn from(s: String) -> Bad {
        Bad::from(s.as_str())
    }
}

macro_rules! bare {
    ($($t:ty),*) => {$(
        impl From<$t> for Bad {
            fn from(v: $t) -> Bad {
                Bad(v.to_string())
            }
        }
    )*};
}
bare!(i32, i64, u16, u32, u64, usize, f64, bool);

/// An Invalid field error showing `value` as is: upstream quotes strings
/// (as `invalid` does) and prints numbers and structures bare.
pub fn invalid_value(field: &str, value: impl std::fmt::Display, why: &str) -> FieldError {
    Path::new(field).invalid(Bad::raw(value.to_string()), why)
}

pub fn forbidden(field: &str, detail: impl std::fmt::Display) -> FieldError {
    Path::new(field).forbidden(&detail.to_string())
}

pub fn required(field: &str, what: &str) -> FieldError {
    Path::new(field).required(what)
}

// ---- apimachinery's shared rules -------------------------------------

pub const NON_NEGATIVE: &str = "must be greater than or equal to 0";
pub const IMMUTABLE: &str = "field is immutable";

/// Upstream's `ValidateNonnegativeField`.
pub fn non_negative(value: i64, path: &Path) -> Errors {
    if value < 0 {
        vec![path.invalid(value, NON_NEGATIVE)]
    } else {
        vec![]
    }
}

/// Upstream's `ValidatePositiveField`... as `ValidateNonnegativeField`
/// but 0 is refused too ("must be greater than 0").
pub fn positive(value: i64, path: &Path) -> Errors {
    if value <= 0 {
        vec![path.invalid(value, "must be greater than 0")]
    } else {
        vec![]
    }
}

/// `Required value` for an empty string.
pub(crate) fn required_text(value: &str, path: &Path) -> Errors {
    if value.is_empty() {
        vec![path.required("")]
    } else {
        vec![]
    }
}

/// Upstream's `ValidateImmutableField`: `new` must equal `old`.
pub fn immutable<T: PartialEq + serde::Serialize>(new: &T, old: &T, path: &Path) -> Errors {
    if new == old {
        return vec![];
    }
    let shown = match serde_json::to_value(new) {
        Ok(Value::String(s)) => Bad::from(s),
        Ok(Value::Null) => Bad::raw("null"),
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => Bad::raw(v.to_string()),
        Ok(v) => Bad::raw(go_struct(&v)),
        Err(_) => Bad::raw("null"),
    };
    vec![path.invalid(shown, IMMUTABLE)]
}

/// `immutable` with upstream's semantic equality, for values where nil
/// and empty lists or maps are alike (not pod specs: `go::semantic`).
pub(crate) fn semantic_immutable<T: PartialEq + serde::Serialize>(new: &T, old: &T, path: &Path) -> Errors {
    if go::semantic_of(new) == go::semantic_of(old) {
        vec![]
    } else {
        immutable(new, old, path)
    }
}

/// Upstream's `IsInRange` (and its `InclusiveRangeError`), as a field
/// error: `IsValidUserID`, `IsValidGroupID`, LUNs...
pub fn inclusive_range(value: i64, lo: i64, hi: i64, path: &Path) -> Errors {
    if (lo..=hi).contains(&value) {
        vec![]
    } else {
        vec![path.invalid(value, &format!("must be between {lo} and {hi}, inclusive"))]
    }
}

/// Upstream's `IsValidPortNum`, as a field error.
pub fn port_number(port: i64, path: &Path) -> Errors {
    inclusive_range(port, 1, 65535, path)
}

/// Upstream's `IsValidPortName` (an IANA_SVC_NAME), its reasons in its
/// order; an empty name fails its charset (`^[-a-z0-9]+$`) too.
pub fn port_name(name: &str, path: &Path) -> Errors {
    let mut why = Vec::new();
    if name.len() > 15 {
        why.push("must be no more than 15 characters");
    }
    let b = name.as_bytes();
    if b.is_empty() || !b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-') {
        why.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !b.iter().any(|c| c.is_ascii_lowercase()) {
        why.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        why.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        why.push("must not begin or end with a hyphen");
    }
    why.into_iter().map(|w| path.invalid(name, w)).collect()
}

/// A name checked by `rule` (one of `meta`'s), as a field error.
pub fn name_by(rule: fn(&str) -> Result<(), String>, name: &str, path: &Path) -> Errors {
    match rule(name) {
        Ok(()) => vec![],
        Err(why) => vec![path.invalid(name, &why)],
    }
}

/// Upstream's `ValidateLabels`.
pub fn labels(labels: Option<&std::collections::BTreeMap<String, String>>, path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        if let Err(why) = qualified_name(k) {
            errs.push(path.invalid(k, &why));
        }
        if let Err(why) = label_value(v) {
            errs.push(path.invalid(v, &why));
        }
    }
    errs
}

/// Upstream's `ValidateAnnotations` (apimachinery): keys are qualified
/// names, whatever their case, and all of them fit in 256 KiB.
pub fn annotations(annotations: Option<&std::collections::BTreeMap<String, String>>, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations.into_iter().flatten() {
        if let Err(why) = qualified_name(&k.to_ascii_lowercase()) {
            errs.push(path.invalid(k, &why));
        }
        total += k.len() + v.len();
    }
    if total > 256 * 1024 {
        errs.push(path.too_long(256 * 1024));
    }
    errs
}

/// Upstream's `ValidateLabelSelector` (metav1validation): keys are
/// qualified names, operators known, In/NotIn with values, Exists and
/// DoesNotExist without.
pub fn label_selector(selector: &LabelSelector, path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let at = path.child("matchExpressions").index(i);
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if req.values.as_ref().is_none_or(Vec::is_empty) {
                    errs.push(at.child("values").required("must be specified when `operator` is 'In' or 'NotIn'"));
                }
            }
            "Exists" | "DoesNotExist" => {
                if req.values.as_ref().is_some_and(|v| !v.is_empty()) {
                    errs.push(at.child("values").forbidden("may not be specified when `operator` is 'Exists' or 'DoesNotExist'"));
                }
            }
            op => errs.push(at.child("operator").invalid(op, "not a valid selector operator")),
        }
        if let Err(why) = qualified_name(&req.key) {
            errs.push(at.child("key").invalid(&req.key, &why));
        }
        for (j, v) in req.values.iter().flatten().enumerate() {
            if let Err(why) = label_value(v) {
                errs.push(at.child("values").index(j).invalid(v, &why));
            }
        }
    }
    errs.extend(labels(selector.match_labels.as_ref(), &path.child("matchLabels")));
    errs
}

/// Upstream's `ValidateLabelSelector` with its `AllowInvalidLabelValueInSelector`
/// option: when set (an update of an object whose stored selector already
/// holds such values), the values of `matchExpressions` are not checked.
pub(crate) fn selector_allowing(selector: &LabelSelector, allow_invalid_values: bool, path: &Path) -> Errors {
    let mut errs = label_selector(selector, path);
    if allow_invalid_values {
        let expressions = format!("{}.matchExpressions[", path.as_str());
        errs.retain(|e| !(e.reason == "FieldValueInvalid" && e.field.starts_with(&expressions) && e.field.contains("].values[")));
    }
    errs
}

/// Whether `selector` fails upstream's strict check (so updates may keep it).
pub(crate) fn selector_is_invalid(selector: Option<&LabelSelector>) -> bool {
    selector.is_some_and(|s| !label_selector(s, &Path::new("")).is_empty())
}

/// Whether `selector` selects `labels` (an empty selector selects all).
pub fn selector_matches(
    selector: &LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    let labels_match = selector.match_labels.iter().flatten().all(|(k, v)| get(k) == Some(v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" => get(&req.key).is_some_and(|v| values.contains(v)),
            "NotIn" => get(&req.key).is_none_or(|v| !values.contains(v)),
            "Exists" => get(&req.key).is_some(),
            "DoesNotExist" => get(&req.key).is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

const CONDITION_REASON: &str = "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')";

fn is_condition_reason(reason: &str) -> bool {
    let b = reason.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':'))
        && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
}

/// Upstream's `ValidateConditions` (metav1validation): unique types, each
/// condition well formed.
pub(crate) fn conditions(conditions: &[Condition], path: &Path) -> Errors {
    /// Go's zero time, which `IsZero` reports.
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    let mut errs = Vec::new();
    let mut types = std::collections::BTreeSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let at = path.index(i);
        if !types.insert(c.type_.as_str()) {
            errs.push(at.child("type").duplicate(&c.type_));
        }
        if let Err(why) = qualified_name(&c.type_) {
            errs.push(at.child("type").invalid(&c.type_, &why));
        }
        if !matches!(c.status.as_str(), "True" | "False" | "Unknown") {
            errs.push(at.child("status").not_supported(&c.status, &["False", "True", "Unknown"]));
        }
        if let Some(generation) = c.observed_generation.filter(|g| *g < 0) {
            errs.push(at.child("observedGeneration").invalid(generation, "must be greater than or equal to zero"));
        }
        if c.last_transition_time.0.timestamp() == GO_ZERO_TIME {
            errs.push(at.child("lastTransitionTime").required("must be set"));
        }
        if c.reason.is_empty() {
            errs.push(at.child("reason").required("must be set"));
        } else {
            if !is_condition_reason(&c.reason) {
                errs.push(at.child("reason").invalid(&c.reason, CONDITION_REASON));
            }
            if c.reason.len() > 1024 {
                errs.push(at.child("reason").too_long(1024));
            }
        }
        if c.message.len() > 32 * 1024 {
            errs.push(at.child("message").too_long(32 * 1024));
        }
    }
    errs
}

/// The message upstream's quantity parser fails with: the three errors
/// of `resource.ParseQuantity`.
pub const QUANTITY_FORMAT: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Why `text` is not a quantity, as upstream's `ParseQuantity` says it.
pub fn quantity_error(text: &str) -> Option<&'static str> {
    let rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(split);
    let suffix_shape = {
        let letters = suffix.trim_end_matches(|c: char| c.is_ascii_digit());
        let letters = letters.strip_suffix(['+', '-']).unwrap_or(letters);
        letters.chars().all(|c| "eEinumkKMGTP".contains(c))
    };
    if text.is_empty() || number.is_empty() || !suffix_shape {
        return Some(QUANTITY_FORMAT);
    }
    if number.matches('.').count() > 1 || number == "." {
        return Some("unable to parse numeric part of quantity");
    }
    if skiff_quantity::milli(text).is_none() && !matches!(suffix, "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei") && !is_exponent(suffix) {
        return Some("unable to parse quantity's suffix");
    }
    None
}

fn is_exponent(suffix: &str) -> bool {
    suffix.strip_prefix(['e', 'E']).is_some_and(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A quantity in milli-units, for comparisons; quantities too large for
/// an i64 of milli-units compare as the largest.
pub fn milli(q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> i64 {
    skiff_quantity::milli(&q.0).unwrap_or(i64::MAX)
}

// ---- the entry point ---------------------------------------------------

/// What is being validated.
#[derive(Clone, Copy)]
pub enum Op<'a> {
    Create(&'a Value),
    Update { new: &'a Value, old: &'a Value },
    /// A write through `/status`.
    Status { new: &'a Value, old: &'a Value },
}

impl<'a> Op<'a> {
    /// Runs a kind's three functions on the objects decoded as `K`.
    pub(crate) fn run<K: DeserializeOwned>(self, create: fn(&K) -> Errors, update: fn(&K, &K) -> Errors, status: fn(&K, &K) -> Errors) -> Errors {
        let decode = |v: &Value| K::deserialize(v).map_err(|e| vec![Path::new("").internal(&e.to_string())]);
        let result = match self {
            Op::Create(obj) => decode(obj).map(|k| create(&k)),
            Op::Update { new, old } => decode(new).and_then(|n| {
                let o = decode(old)?;
                let mut errs = create(&n);
                errs.extend(update(&n, &o));
                Ok(errs)
            }),
            Op::Status { new, old } => decode(new).and_then(|n| Ok(status(&n, &decode(old)?))),
        };
        result.unwrap_or_else(|e| e)
    }

    /// The object as it is to be stored.
    pub fn new_object(&self) -> &'a Value {
        match *self {
            Op::Create(obj) => obj,
            Op::Update { new, .. } | Op::Status { new, .. } => new,
        }
    }
}

/// For kinds or operations with no rules of their own.
pub(crate) fn nothing<K>(_: &K, _: &K) -> Errors {
    vec![]
}

/// Every error of `op` on an object of `def`, metadata first.
pub fn validate(def: &ResourceDef, op: Op<'_>) -> Errors {
    if let Some(conversion) = def.conversion {
        // Validated as stored, as upstream validates the internal version.
        let convert = |v: &Value| (conversion.to_storage)(v.clone());
        let stored = crate::resources::BUILTIN
            .iter()
            .find(|d| d.group == conversion.storage_group && d.version == conversion.storage_version && d.plural == def.plural && d.conversion.is_none());
        if let Some(stored) = stored {
            return match op {
                Op::Create(obj) => validate(stored, Op::Create(&convert(obj))),
                Op::Update { new, old } => validate(stored, Op::Update { new: &convert(new), old: &convert(old) }),
                Op::Status { new, old } => validate(stored, Op::Status { new: &convert(new), old: &convert(old) }),
            };
        }
    }
    let mut errs = match op {
        Op::Status { .. } => vec![],
        _ => object_meta(def.group, def.kind, &op.new_object()["metadata"]),
    };
    if let Some(custom) = &def.custom {
        // Custom resources are checked against their CRD's schema.
        errs.extend(custom.validate(op.new_object()));
        return errs;
    }
    let kind = def.kind;
    let by_group = match def.group {
        "" => core::check(kind, op).or_else(|| pod::check(kind, op)),
        "admissionregistration.k8s.io" => admissionregistration::check(kind, op),
        "apiextensions.k8s.io" => apiextensions::check(kind, op),
        crate::appsafe::GROUP => appsafe::check(kind, op),
        "apps" => apps::check(kind, op),
        "autoscaling" => autoscaling::check(kind, op),
        "batch" => batch::check(kind, op),
        "certificates.k8s.io" => certificates::check(kind, op),
        "coordination.k8s.io" => coordination::check(kind, op),
        "discovery.k8s.io" => discovery::check(kind, op),
        "flowcontrol.apiserver.k8s.io" => flowcontrol::check(kind, op),
        "networking.k8s.io" => networking::check(kind, op),
        "node.k8s.io" => node::check(kind, op),
        "policy" => policy::check(kind, op),
        "rbac.authorization.k8s.io" => rbac::check(kind, op),
        "scheduling.k8s.io" => scheduling::check(kind, op),
        "storage.k8s.io" => storage::check(kind, op),
        _ => None,
    };
    errs.extend(by_group.unwrap_or_default());
    errs
}

#[cfg(test)]
pub(crate) mod testing {
    //! Table tests: an object, a change to it, and the errors expected.
    use super::*;

    /// The `field: message` lines `op` produces for `kind` of `group`.
    pub fn messages(group: &str, kind: &str, op: Op<'_>) -> Vec<String> {
        let def = crate::resources::BUILTIN
            .iter()
            .find(|d| d.group == group && d.kind == kind && d.conversion.is_none())
            .unwrap_or_else(|| panic!("{group}/{kind} is served"));
        validate(def, op).iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    }

    /// `base` with JSON merge patch `change` applied (null removes).
    pub fn with(base: &Value, change: Value) -> Value {
        let mut out = base.clone();
        merge(&mut out, change);
        out
    }

    fn merge(target: &mut Value, change: Value) {
        match change {
            Value::Object(fields) if target.is_object() => {
                let map = target.as_object_mut().expect("an object");
                for (k, v) in fields {
                    if v.is_null() {
                        map.remove(&k);
                    } else {
                        merge(map.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            other => *target = other,
        }
    }

    /// Asserts that each case (a name, an object, the `field: message`
    /// prefix expected) yields exactly one error starting so, or none
    /// when the expected text is empty.
    pub fn table(group: &str, kind: &str, cases: &[(&str, Value, &str)]) {
        for (name, obj, expected) in cases {
            let got = messages(group, kind, Op::Create(obj));
            check(name, &got, expected);
        }
    }

    /// As `table`, for updates from `old`.
    pub fn update_table(group: &str, kind: &str, old: &Value, cases: &[(&str, Value, &str)]) {
        for (name, new, expected) in cases {
            let got = messages(group, kind, Op::Update { new, old });
            check(name, &got, expected);
        }
    }

    fn check(name: &str, got: &[String], expected: &str) {
        if expected.is_empty() {
            assert!(got.is_empty(), "{name}: expected no error, got {got:#?}");
        } else {
            assert!(
                got.len() == 1 && got[0].starts_with(expected),
                "{name}: expected one error starting {expected:?}, got {got:#?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_messages_read_as_upstream() {
        let p = Path::new("spec").child("containers").index(0).child("ports").index(1).child("containerPort");
        assert_eq!(p.as_str(), "spec.containers[0].ports[1].containerPort");
        assert_eq!(p.invalid(0, "must be between 1 and 65535, inclusive").to_string(), "spec.containers[0].ports[1].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive");
        assert_eq!(Path::new("spec.restartPolicy").not_supported("Sometimes", &["Always", "OnFailure", "Never"]).message, r#"Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#);
        assert_eq!(Path::new("metadata.labels").key("app").as_str(), "metadata.labels[app]");
        assert_eq!(Path::new("x").required("").message, "Required value");
    }

    #[test]
    fn port_names_fail_as_upstream_says() {
        let why = |name: &str| port_name(name, &Path::new("port")).into_iter().map(|e| e.message).collect::<Vec<_>>();
        let invalid = |name: &str, reasons: &[&str]| reasons.iter().map(|r| format!("Invalid value: {name:?}: {r}")).collect::<Vec<_>>();
        assert!(why("http").is_empty() && why("h2c-9").is_empty());
        const CHARSET: &str = "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
        const LETTER: &str = "must contain at least one letter (a-z)";
        assert_eq!(why(""), invalid("", &[CHARSET, LETTER]));
        // The letter rule comes before the hyphen rules, as in upstream's IsValidPortName.
        assert_eq!(why("1--2"), invalid("1--2", &[LETTER, "must not contain consecutive hyphens"]));
        assert_eq!(why("--"), invalid("--", &[LETTER, "must not contain consecutive hyphens", "must not begin or end with a hyphen"]));
        assert_eq!(why("Http_x-"), invalid("Http_x-", &[CHARSET, "must not begin or end with a hyphen"]));
        assert_eq!(why("a-very-long-port-name"), invalid("a-very-long-port-name", &["must be no more than 15 characters"]));
    }

    #[test]
    fn quantities_fail_as_upstream_parses_them() {
        for ok in ["1", "100m", "1.5Gi", "1e3", "+2", "-1", "0.5", "1E-3", ".5", "5."] {
            assert_eq!(quantity_error(ok), None, "{ok}");
        }
        assert_eq!(quantity_error("lots"), Some(QUANTITY_FORMAT));
        assert_eq!(quantity_error(""), Some(QUANTITY_FORMAT));
        assert_eq!(quantity_error("1Gb"), Some(QUANTITY_FORMAT));
        assert_eq!(quantity_error("1.2.3"), Some("unable to parse numeric part of quantity"));
        assert_eq!(quantity_error("1iG"), Some("unable to parse quantity's suffix"));
    }

    /// Objects made from each kind's schema, with values chosen to hurt
    /// (empty, huge, negative, unicode, paths, addresses), on create, update
    /// and status: validation answers, it never panics. Seeded, so a
    /// failure reproduces; `SKIFF_FUZZ_ROUNDS` runs longer.
    #[test]
    fn no_object_panics_validation() {
        let rounds: usize = std::env::var("SKIFF_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(40);
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for def in crate::resources::BUILTIN.iter().filter(|d| d.verbs == crate::Verbs::All) {
            let schema = crate::schema::DEFINITIONS.get(&(def.schema_name)()).unwrap_or_else(|| panic!("{} has a schema", def.kind));
            for round in 0..rounds {
                let (mut new, mut old) = (hostile(schema, &mut rng, 0), hostile(schema, &mut rng, 0));
                for obj in [&mut new, &mut old] {
                    // Decoding checks them; the rest is what validation sees.
                    obj["apiVersion"] = json!(def.api_version());
                    obj["kind"] = json!(def.kind);
                }
                new["metadata"]["name"] = json!(["x", "", "a.b", "-", "\u{e9}"][round % 5]);
                for op in [Op::Create(&new), Op::Update { new: &new, old: &old }, Op::Status { new: &new, old: &old }] {
                    let caught = std::panic::catch_unwind(|| validate(def, op));
                    assert!(caught.is_ok(), "{} panicked on {new}\nold: {old}", def.kind);
                }
            }
        }
    }

    /// xorshift64: enough to pick values, no dependency for it.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn hostile(schema: &Value, rng: &mut Rng, depth: usize) -> Value {
        const STRINGS: &[&str] = &[
            "", "a", "-", "..", "../../etc", "a/b/c", "*", "1e3", "-5", "150%", "-1%", "abc%", "9999999999999999999Ei", "1e2147483647", "0.0.0.0",
            "::1", "127.0.0.1", "10.0.0.0/8", "fe80::1/64", "2001:db8::/129", "Always", "In", "Exists", "TCP", "Prefix", "http://x/../y", "@every 1s",
            "*/1 * * * *", "TZ=UTC", "\u{e9}\u{301}", "a\nb", "kubernetes.io/x", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
        ];
        const INTEGERS: &[i64] = &[0, 1, -1, 65535, 65536, i32::MAX as i64, i32::MIN as i64, 1_000_000_001];
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if reference.ends_with(".Time") || reference.ends_with(".MicroTime") {
                return json!(["2026-01-01T00:00:00Z", "1970-01-01T00:00:00.000001Z", "9999-12-31T23:59:59Z"][rng.below(3)]);
            }
            return crate::schema::resolve(reference).map_or(Value::Null, |s| hostile(s, rng, depth + 1));
        }
        if let Some(first) = schema.get("allOf").and_then(Value::as_array).and_then(|a| a.first()) {
            return hostile(first, rng, depth);
        }
        let text = |rng: &mut Rng| Value::from(STRINGS[rng.below(STRINGS.len())]);
        match schema.get("type").and_then(Value::as_str) {
            // Deep enough: what is left out is left out.
            Some("array") if depth > 8 => json!([]),
            Some("object") | None if depth > 8 => json!({}),
            Some("object") | None if schema.get("properties").is_some() => {
                let mut out = serde_json::Map::new();
                for (k, s) in schema["properties"].as_object().into_iter().flatten() {
                    if rng.below(3) > 0 {
                        out.insert(k.clone(), hostile(s, rng, depth + 1));
                    }
                }
                Value::Object(out)
            }
            Some("object") => match schema.get("additionalProperties") {
                Some(values) if values.is_object() => {
                    let keys = ["a", "cpu", "memory", "hugepages-2Mi", "example.com/gpu", "storage", "pods", "", "Bad Key"];
                    (0..rng.below(3)).map(|_| (keys[rng.below(keys.len())].to_string(), hostile(values, rng, depth + 1))).collect()
                }
                _ => json!({}),
            },
            Some("array") => (0..rng.below(3)).map(|_| hostile(&schema["items"], rng, depth + 1)).collect(),
            Some("string") => match schema.get("format").and_then(Value::as_str) {
                Some("date-time") => json!(["2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"][rng.below(3)]),
                Some("byte") => json!(["", "AAAA", "LS0tLS1CRUdJTg=="][rng.below(3)]),
                _ => text(rng),
            },
            Some("integer") => json!(INTEGERS[rng.below(INTEGERS.len())]),
            Some("number") => json!([0.0, -1.5, 1e300][rng.below(3)]),
            Some("boolean") => json!(rng.below(2) == 0),
            // Int-or-string and untyped fields.
            _ if rng.below(2) == 0 => json!(INTEGERS[rng.below(INTEGERS.len())]),
            _ => text(rng),
        }
    }
}
