//! Name, label and annotation validation with upstream's messages (from
//! apimachinery's validation package), so errors read the same as on a
//! stock cluster.

use std::collections::BTreeMap;

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

fn invalid(field: &str, value: &str, why: &str) -> FieldError {
    invalid_value(field, format!("{value:?}"), why)
}

/// An Invalid field error showing `value` as is: upstream quotes strings
/// (as `invalid` does) and prints numbers and structures bare.
pub fn invalid_value(field: &str, value: impl std::fmt::Display, why: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value}: {why}"),
    }
}

pub fn forbidden(field: &str, detail: impl std::fmt::Display) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueForbidden",
        message: format!("Forbidden: {detail}"),
    }
}

pub fn required(field: &str, what: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueRequired",
        message: format!("Required value: {what}"),
    }
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";

fn is_label(s: &str, first: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && first(b[0])
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Upstream's pattern for these checks: a length limit and a format, each
/// reported when broken, joined into one message.
fn name_check(s: &str, max: usize, well_formed: bool, format: String) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.len() > max {
        errs.push(format!("must be no more than {max} characters"));
    }
    if !well_formed {
        errs.push(format);
    }
    if errs.is_empty() { Ok(()) } else { Err(errs.join(", ")) }
}

pub fn dns1123_label(s: &str) -> Result<(), String> {
    name_check(s, 63, is_label(s, lower_alnum), format!(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{DNS1123_LABEL_FMT}')"
    ))
}

pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    let well_formed = !s.is_empty() && s.split('.').all(|part| is_label(part, lower_alnum));
    name_check(s, 253, well_formed, format!(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*')"
    ))
}

pub fn dns1035_label(s: &str) -> Result<(), String> {
    name_check(s, 63, is_label(s, |c| c.is_ascii_lowercase()), format!(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"
    ))
}

/// Names that only have to be usable as one URL path segment (RBAC kinds).
pub fn path_segment_name(s: &str) -> Result<(), String> {
    if s == "." || s == ".." {
        return Err(format!("may not be '{s}'"));
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            return Err(format!("may not contain '{bad}'"));
        }
    }
    Ok(())
}

/// How a kind's `metadata.name` is validated.
pub fn name_rule(group: &str, kind: &str) -> fn(&str) -> Result<(), String> {
    match (group, kind) {
        ("", "Namespace") => dns1123_label,
        ("", "Service") => dns1035_label,
        ("rbac.authorization.k8s.io", _) => path_segment_name,
        _ => dns1123_subdomain,
    }
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// A label or annotation key: `[prefix/]name`.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("prefix part must be non-empty".into());
        }
        dns1123_subdomain(p).map_err(|e| format!("prefix part {e}"))?;
    }
    if name.is_empty() {
        return Err("name part must be non-empty".into());
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters".into());
    }
    if !is_name_part(name) {
        return Err(QUALIFIED_NAME_MSG.into());
    }
    Ok(())
}

pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !is_name_part(s) {
        return Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    Ok(())
}

/// Validates `metadata` of an object of `kind`.
pub fn object_meta(group: &str, kind: &str, meta: &serde_json::Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match meta.get("name").and_then(|v| v.as_str()) {
        Some(name) if !name.is_empty() => {
            if let Err(why) = name_rule(group, kind)(name) {
                errs.push(invalid("metadata.name", name, &why));
            }
        }
        _ => errs.push(required("metadata.name", "name or generateName is required")),
    }
    if let Some(labels) = meta.get("labels").and_then(|v| v.as_object()) {
        for (k, v) in labels {
            if let Err(why) = qualified_name(k) {
                errs.push(invalid("metadata.labels", k, &why));
            }
            match v.as_str() {
                Some(v) => {
                    if let Err(why) = label_value(v) {
                        errs.push(invalid("metadata.labels", v, &why));
                    }
                }
                None => errs.push(invalid("metadata.labels", &v.to_string(), "must be a string")),
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(|v| v.as_object()) {
        let mut total = 0;
        for (k, v) in annotations {
            if let Err(why) = qualified_name(&k.to_ascii_lowercase()) {
                errs.push(invalid("metadata.annotations", k, &why));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            errs.push(FieldError {
                field: "metadata.annotations".into(),
                reason: "FieldValueTooLong",
                message: "Too long: may not be more than 262144 bytes".to_string(),
            });
        }
    }
    errs
}

/// Labels of an object as a map (missing or malformed: empty).
pub fn labels_of(obj: &serde_json::Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.as_object())
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("web.example-1").is_ok());
        assert!(dns1123_subdomain("Web").unwrap_err().contains("RFC 1123 subdomain"));
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1035_label("1abc").is_err());
        assert!(dns1035_label("abc-1").is_ok());
        assert!(path_segment_name("system:admin").is_ok());
        assert!(path_segment_name("a/b").is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(qualified_name("app.kubernetes.io/name").is_ok());
        assert!(qualified_name("-x").is_err());
        assert!(qualified_name("/x").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("a b").is_err());
    }

    #[test]
    fn meta_errors_name_the_field() {
        let errs = object_meta("", "ConfigMap", &serde_json::json!({"name": "Bad_Name", "labels": {"ok": "v", "bad key": "v"}}));
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(text[0].starts_with("metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
        assert!(text[1].starts_with("metadata.labels: Invalid value: \"bad key\""));
    }
}
