//! Name, label and annotation validation with upstream's messages (from
//! apimachinery's validation package), so errors read the same as on a
//! stock cluster.

use std::collections::BTreeMap;

use super::{required, FieldError, Path};

fn invalid(field: &str, value: &str, why: &str) -> FieldError {
    Path::new(field).invalid(value, why)
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

/// Upstream's `NameIsDNSSubdomain(name, prefix=true)`: a trailing dash is
/// allowed, as a generateName has. (Its `maskTrailingDash` drops two
/// characters for one: kept as upstream has it.)
pub fn dns1123_subdomain_prefix(name: &str) -> Result<(), String> {
    if name.len() > 1 && name.ends_with('-') {
        dns1123_subdomain(&format!("{}a", &name[..name.len() - 2]))
    } else {
        dns1123_subdomain(name)
    }
}

pub fn dns1035_label(s: &str) -> Result<(), String> {
    name_check(s, 63, is_label(s, |c| c.is_ascii_lowercase()), format!(
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '{DNS1035_LABEL_FMT}')"
    ))
}

/// Upstream's `IsValidPathSegmentName`: why `s` cannot be one URL path
/// segment, every reason.
fn path_segment_reasons(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"].iter().filter(|bad| s.contains(**bad)).map(|bad| format!("may not contain '{bad}'")).collect()
}

/// Names that only have to be usable as one URL path segment (RBAC
/// kinds), as a name rule: the first reason.
pub fn path_segment_name(s: &str) -> Result<(), String> {
    match path_segment_reasons(s).into_iter().next() {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// `IsValidPathSegmentName` as field errors, one a reason.
pub(crate) fn path_segment(name: &str, path: &Path) -> Vec<FieldError> {
    path_segment_reasons(name).iter().map(|why| path.invalid(name, why)).collect()
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

/// What upstream says of a key with more than one '/'.
const QUALIFIED_NAME_SHAPE: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";

const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// A label or annotation key: `[prefix/]name`.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((_, n)) if n.contains('/') => {
            return Err(QUALIFIED_NAME_SHAPE.into());
        }
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

/// Upstream's `IsConfigMapKey` (ConfigMap and Secret keys, key
/// selectors), every reason reported.
pub(crate) fn config_map_key(key: &str, path: &Path) -> Vec<FieldError> {
    let mut why = Vec::new();
    if key.len() > 253 {
        why.push("must be no more than 253 characters");
    }
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) {
        why.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
    }
    match key {
        "." => why.push("must not be '.'"),
        ".." => why.push("must not be '..'"),
        k if k.starts_with("..") => why.push("must not start with '..'"),
        _ => {}
    }
    why.into_iter().map(|w| path.invalid(key, w)).collect()
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
        // A value that is not a string counts for nothing in the size.
        let annotations: BTreeMap<String, String> = annotations.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
        errs.extend(super::annotations(Some(&annotations), &Path::new("metadata.annotations")));
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
        assert!(qualified_name("a/b/c").unwrap_err().starts_with("a qualified name must consist of alphanumeric characters"));
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
