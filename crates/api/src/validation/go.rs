//! Go values as upstream shows them in its messages (`fmt`'s `%#v` and
//! `%q`) and compares them (`equality.Semantic.DeepEqual`): clients see
//! these texts, so they are spelled as Go spells them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use super::Bad;

/// A structure as Go's `%#v` would show it, near enough to read: the
/// JSON form. (Go prints its own type names, which Rust cannot know.)
pub fn go_struct(v: &Value) -> String {
    v.to_string()
}

/// `go_struct` of any serializable value (its JSON form, keys sorted).
pub(crate) fn go_value<T: Serialize + ?Sized>(value: &T) -> String {
    go_struct(&serde_json::to_value(value).unwrap_or(Value::Null))
}

/// A string slice of Go type `ty` (`[]string`, `[]core.IPFamily`) as
/// `%#v` prints it: `[]string{"a", "b"}`, or `[]string(nil)` when nil.
pub(crate) fn go_slice(ty: &str, items: Option<&[String]>) -> String {
    match items {
        None => format!("{ty}(nil)"),
        Some(items) => {
            let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
            format!("{ty}{{{}}}", quoted.join(", "))
        }
    }
}

/// A `[]string` as `%#v` prints it.
pub(crate) fn go_strings(items: &[String]) -> String {
    go_slice("[]string", Some(items))
}

/// A `[]string` as `%q` prints it: `["a" "b"]`.
pub(crate) fn go_quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// An `[]int32` as `%#v` prints it.
pub(crate) fn go_int32s(values: &[i32]) -> String {
    let shown: Vec<String> = values.iter().map(i32::to_string).collect();
    format!("[]int32{{{}}}", shown.join(", "))
}

/// A `map[string]string` as `%#v` prints it (keys sorted, as fmt prints
/// maps), or `map[string]string(nil)` when nil.
pub(crate) fn go_string_map(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        None => "map[string]string(nil)".into(),
        Some(map) => {
            let pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
            format!("map[string]string{{{}}}", pairs.join(", "))
        }
    }
}

/// A `metav1.LabelSelector` as `%#v` prints it.
pub(crate) fn go_selector(selector: &LabelSelector) -> String {
    let expressions = match &selector.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(requirements) => {
            let shown: Vec<String> = requirements
                .iter()
                .map(|r| format!("v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{}}}", r.key, r.operator, go_slice("[]string", r.values.as_deref())))
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", shown.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}", go_string_map(selector.match_labels.as_ref()))
}

/// An `intstr.IntOrString` as `%#v` prints it.
pub(crate) fn go_int_or_string(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(n) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        IntOrString::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{s:?}}}"),
    }
}

/// A pointer field inside a `%#v` structure: Go prints its address, which
/// Rust cannot know, when it is set.
pub(crate) fn go_pointer(type_name: &str, set: bool) -> String {
    if set {
        format!("(*{type_name})(0xc000000000)")
    } else {
        format!("(*{type_name})(nil)")
    }
}

/// A `[]byte` as `%#v` prints it.
pub(crate) fn go_bytes(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().map(|b| format!("{b:#x}")).collect();
    format!("[]byte{{{}}}", shown.join(", "))
}

/// A `metav1.Time` as it prints itself.
pub(crate) fn go_time(t: &Time) -> String {
    t.0.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
}

/// A `core.Toleration` as `%#v` prints it (the seconds, a pointer in Go,
/// shown by value).
pub(crate) fn go_toleration(t: &Toleration) -> String {
    let seconds = match t.toleration_seconds {
        Some(s) => format!("(*int64)({s})"),
        None => "(*int64)(nil)".into(),
    };
    format!(
        "core.Toleration{{Key:{:?}, Operator:{:?}, Value:{:?}, Effect:{:?}, TolerationSeconds:{seconds}}}",
        t.key.as_deref().unwrap_or(""),
        t.operator.as_deref().unwrap_or(""),
        t.value.as_deref().unwrap_or(""),
        t.effect.as_deref().unwrap_or(""),
    )
}

/// A quantity as `%#v` prints the `resource.Quantity` that
/// `resource.ParseQuantity` makes of it; the plain text when Go would hold
/// it as an `inf.Dec` (shown with a pointer, which cannot be reproduced).
pub(crate) fn go_quantity(text: &str) -> Bad {
    go_quantity_struct(text).map(Bad::raw).unwrap_or_else(|| Bad::from(text))
}

pub(crate) fn go_quantity_struct(text: &str) -> Option<String> {
    let render = |value: i64, scale: i32, cached: &str, format: &str| {
        format!("resource.Quantity{{i:resource.int64Amount{{value:{value}, scale:{scale}}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:{cached:?}, Format:{format:?}}}")
    };
    if text == "0" {
        return Some(render(0, 0, "0", "DecimalSI"));
    }
    // parseQuantityString: sign, numerator without leading zeros, denominator, suffix.
    let (positive, rest) = match text.as_bytes().first() {
        Some(b'-') => (false, &text[1..]),
        Some(b'+') => (true, &text[1..]),
        _ => (true, text),
    };
    let rest = rest.trim_start_matches('0');
    let num_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let num = if num_end == 0 { "0" } else { &rest[..num_end] };
    let mut rest = &rest[num_end..];
    let mut denom = "";
    if let Some(after) = rest.strip_prefix('.') {
        let end = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        denom = &after[..end];
        rest = &after[end..];
    }
    let (exponent, format): (i32, &str) = match rest {
        "" => (0, "DecimalSI"),
        "n" => (-9, "DecimalSI"),
        "u" => (-6, "DecimalSI"),
        "m" => (-3, "DecimalSI"),
        "k" => (3, "DecimalSI"),
        "M" => (6, "DecimalSI"),
        "G" => (9, "DecimalSI"),
        "T" => (12, "DecimalSI"),
        "P" => (15, "DecimalSI"),
        "E" => (18, "DecimalSI"),
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => (10 * ("KMGTPE".find(&rest[..1])? as i32 + 1), "BinarySI"),
        e => (e.strip_prefix(['e', 'E'])?.parse().ok()?, "DecimalExponent"),
    };
    let (mut scale, precision, mantissa) = if format == "BinarySI" {
        if denom.is_empty() {
            (0, 15 - num.len() as i32 - exponent * 3 / 10 - 1, 1i64 << exponent)
        } else {
            (0, -1, 1)
        }
    } else {
        (exponent, 18 - (num.len() + denom.len()) as i32, 1)
    };
    if precision < 0 {
        return None;
    }
    scale -= denom.len() as i32;
    if scale < -9 {
        return None;
    }
    let shifted = format!("{num}{denom}");
    let value: i64 = shifted.parse().ok()?;
    let mut result = value.checked_mul(mantissa)?;
    if !positive {
        result = -result;
    }
    let canonical = if format == "BinarySI" {
        exponent % 10 == 0 && value & 0x07 != 0
    } else {
        scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
    };
    Some(render(result, scale, if canonical { text } else { "" }, format))
}

// ---- comparing ---------------------------------------------------------------

/// A value as `Semantic.DeepEqual` compares it, for types whose nil and
/// empty are the same once decoded: nulls, empty lists and empty maps are
/// left out. (Pod specs tell an empty structure from a missing one:
/// `pod_scheduling::comparable`.)
pub(crate) fn semantic(value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, semantic(v)))
                .filter(|(_, v)| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty) || v.as_object().is_some_and(|o| o.is_empty())))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(semantic).collect()),
        other => other,
    }
}

/// `semantic` of a serializable value.
pub(crate) fn semantic_of<T: Serialize + ?Sized>(value: &T) -> Value {
    semantic(serde_json::to_value(value).unwrap_or(Value::Null))
}

/// Where two values differ, as `  path: old → new` lines (upstream
/// appends a `cmp.Diff` to such errors; this says the same). `path` is
/// where the values are; empty at the root.
pub(crate) fn differences(path: &str, old: &Value, new: &Value) -> Vec<String> {
    fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
        match (old, new) {
            (Value::Object(a), Value::Object(b)) => {
                let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in keys {
                    let at = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(&at, a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), out);
                }
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{path}[{i}]"), x, y, out);
                }
            }
            _ if old != new => out.push(format!("  {path}: {old} → {new}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(path, old, new, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::go_quantity_struct;

    #[test]
    fn quantities_print_as_go_prints_them() {
        let q = |v: i64, scale: i32, s: &str, f: &str| format!("resource.Quantity{{i:resource.int64Amount{{value:{v}, scale:{scale}}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:{s:?}, Format:{f:?}}}");
        assert_eq!(go_quantity_struct("0").unwrap(), q(0, 0, "0", "DecimalSI"));
        assert_eq!(go_quantity_struct("-0").unwrap(), q(0, 0, "", "DecimalSI"));
        assert_eq!(go_quantity_struct("0m").unwrap(), q(0, -3, "", "DecimalSI"));
        assert_eq!(go_quantity_struct("-1").unwrap(), q(-1, 0, "-1", "DecimalSI"));
        assert_eq!(go_quantity_struct("-1.5").unwrap(), q(-15, -1, "", "DecimalSI"));
        assert_eq!(go_quantity_struct("-1000").unwrap(), q(-1000, 0, "", "DecimalSI"));
        assert_eq!(go_quantity_struct("-2k").unwrap(), q(-2, 3, "-2k", "DecimalSI"));
        assert_eq!(go_quantity_struct("-1Mi").unwrap(), q(-1048576, 0, "-1Mi", "BinarySI"));
        assert_eq!(go_quantity_struct("-8Ki").unwrap(), q(-8192, 0, "", "BinarySI"));
        assert_eq!(go_quantity_struct("-1e3").unwrap(), q(-1, 3, "-1e3", "DecimalExponent"));
        assert_eq!(go_quantity_struct("-0.5Gi"), None, "held as an inf.Dec");
    }
}
