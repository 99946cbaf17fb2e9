//! apiextensions.k8s.io: CustomResourceDefinitions, as upstream's
//! apiextensions validation checks their names, versions and scope (the
//! structural-schema rules are not checked here).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{CustomResourceDefinition, CustomResourceDefinitionNames};

use super::{dns1035_label, dns1123_subdomain, immutable, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "CustomResourceDefinition" => op.run(crd, crd_update, crd_status_update),
        _ => return None,
    })
}

/// How upstream prints the version list in its errors.
const VERSIONS: &str = "[]apiextensions.CustomResourceDefinitionVersion";

fn crd(crd: &CustomResourceDefinition) -> Errors {
    let mut errs = Vec::new();
    let spec = &crd.spec;
    let name = crd.metadata.name.as_deref().unwrap_or_default();
    if name != format!("{}.{}", spec.names.plural, spec.group) {
        errs.push(Path::new("metadata.name").invalid(name, r#"must be spec.names.plural+"."+spec.group"#));
    }
    let path = Path::new("spec");
    if spec.group.is_empty() {
        errs.push(path.child("group").required(""));
    } else if let Err(why) = dns1123_subdomain(&spec.group) {
        errs.push(path.child("group").invalid(&spec.group, &why));
    } else if !spec.group.contains('.') {
        errs.push(path.child("group").invalid(&spec.group, "should be a domain with at least one dot"));
    }
    match spec.scope.as_str() {
        "" => errs.push(path.child("scope").required("")),
        "Cluster" | "Namespaced" => {}
        other => errs.push(path.child("scope").not_supported(other, &["Cluster", "Namespaced"])),
    }
    let versions = path.child("versions");
    let mut seen = std::collections::BTreeSet::new();
    let mut unique = true;
    for (i, v) in spec.versions.iter().enumerate() {
        unique &= seen.insert(v.name.as_str());
        if let Err(why) = dns1035_label(&v.name) {
            errs.push(versions.index(i).child("name").invalid(&v.name, &why));
        }
        if v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).is_none() {
            errs.push(versions.index(i).child("schema").child("openAPIV3Schema").required("schemas are required"));
        }
    }
    if !unique {
        errs.push(versions.invalid(Bad::raw(VERSIONS), "must contain unique version names"));
    }
    if spec.versions.iter().filter(|v| v.storage).count() != 1 {
        errs.push(versions.invalid(Bad::raw(VERSIONS), "must have exactly one version marked as storage version"));
    }
    let names = path.child("names");
    for (field, value) in [("plural", &spec.names.plural), ("singular", spec.names.singular.as_ref().unwrap_or(&String::new())), ("kind", &spec.names.kind), ("listKind", spec.names.list_kind.as_ref().unwrap_or(&String::new()))] {
        // Upstream defaults singular and listKind from plural and kind.
        let defaulted = matches!(field, "singular" | "listKind");
        if value.is_empty() && !defaulted {
            errs.push(names.child(field).required(""));
        }
    }
    errs.extend(crd_names(&spec.names, &names));
    if let Some(conversion) = &spec.conversion {
        let strategy = conversion.strategy.as_str();
        if !matches!(strategy, "None" | "Webhook") {
            errs.push(path.child("conversion").child("strategy").not_supported(strategy, &["None", "Webhook"]));
        }
        if strategy == "Webhook" && conversion.webhook.as_ref().is_none_or(|w| w.client_config.is_none()) {
            errs.push(path.child("conversion").child("webhook").child("clientConfig").required("required when strategy is set to Webhook"));
        }
    }
    errs
}

/// Upstream's `ValidateCustomResourceDefinitionNames`.
fn crd_names(names: &CustomResourceDefinitionNames, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let label = |value: &str, field: Path, errs: &mut Errors| {
        if !value.is_empty() {
            if let Err(why) = dns1035_label(value) {
                errs.push(field.invalid(value, &why));
            }
        }
    };
    label(&names.plural, path.child("plural"), &mut errs);
    label(names.singular.as_deref().unwrap_or_default(), path.child("singular"), &mut errs);
    for (field, value) in [("kind", names.kind.as_str()), ("listKind", names.list_kind.as_deref().unwrap_or_default())] {
        if !value.is_empty() {
            if let Err(why) = dns1035_label(&value.to_ascii_lowercase()) {
                errs.push(path.child(field).invalid(value, &format!("may have mixed case, but should otherwise match: {why}")));
            }
        }
    }
    if !names.kind.is_empty() && names.list_kind.as_deref() == Some(names.kind.as_str()) {
        errs.push(path.child("listKind").invalid(&names.kind, "kind and listKind may not be the same"));
    }
    for (list, field) in [(&names.short_names, "shortNames"), (&names.categories, "categories")] {
        for (i, value) in list.iter().flatten().enumerate() {
            if let Err(why) = dns1035_label(value) {
                errs.push(path.child(field).index(i).invalid(value, &why));
            }
        }
    }
    errs
}

fn established(crd: &CustomResourceDefinition) -> bool {
    let conditions = crd.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Established" && c.status == "True")
}

fn crd_update(new: &CustomResourceDefinition, old: &CustomResourceDefinition) -> Errors {
    let spec = Path::new("spec");
    let mut errs = Vec::new();
    if established(old) {
        // They decide where objects are stored.
        errs.extend(immutable(&new.spec.scope, &old.spec.scope, &spec.child("scope")));
        errs.extend(immutable(&new.spec.names.kind, &old.spec.names.kind, &spec.child("names").child("kind")));
    }
    // They make the resource's name, which never changes.
    errs.extend(immutable(&new.spec.group, &old.spec.group, &spec.child("group")));
    errs.extend(immutable(&new.spec.names.plural, &old.spec.names.plural, &spec.child("names").child("plural")));
    errs.extend(stored_versions(new));
    errs
}

fn crd_status_update(new: &CustomResourceDefinition, _old: &CustomResourceDefinition) -> Errors {
    let mut errs = Vec::new();
    if let Some(status) = &new.status {
        if let Some(accepted) = &status.accepted_names {
            errs.extend(crd_names(accepted, &Path::new("status").child("acceptedNames")));
        }
    }
    errs.extend(stored_versions(new));
    errs
}

/// Every stored version must still be listed in the spec: objects stored
/// in it would otherwise be unreadable.
fn stored_versions(crd: &CustomResourceDefinition) -> Errors {
    let stored = crd.status.as_ref().and_then(|s| s.stored_versions.as_ref());
    let path = Path::new("status").child("storedVersions");
    stored
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, v)| !crd.spec.versions.iter().any(|s| &s.name == *v))
        .map(|(i, v)| path.index(i).invalid(v, "must appear in spec.versions"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{table, update_table, with};

    const GROUP: &str = "apiextensions.k8s.io";

    fn valid() -> Value {
        json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        })
    }

    #[test]
    fn custom_resource_definition_invalid() {
        let v = valid();
        let version = |name: &str, storage: bool| json!({"name": name, "served": true, "storage": storage, "schema": {"openAPIV3Schema": {"type": "object"}}});
        table(GROUP, "CustomResourceDefinition", &[
            ("valid", v.clone(), ""),
            ("name not plural.group", with(&v, json!({"metadata": {"name": "gadgets.example.com"}})), r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#),
            ("group without a dot", with(&v, json!({"metadata": {"name": "widgets.example"}, "spec": {"group": "example"}})), r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#),
            ("scope", with(&v, json!({"spec": {"scope": "Global"}})), r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#),
            ("no storage version", with(&v, json!({"spec": {"versions": [version("v1", false)]}})), "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion: must have exactly one version marked as storage version"),
            ("two storage versions", with(&v, json!({"spec": {"versions": [version("v1", true), version("v2", true)]}})), "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion: must have exactly one version marked as storage version"),
            ("repeated version", with(&v, json!({"spec": {"versions": [version("v1", true), version("v1", false)]}})), "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion: must contain unique version names"),
            ("version name", with(&v, json!({"spec": {"versions": [version("V1", true)]}})), r#"spec.versions[0].name: Invalid value: "V1": a DNS-1035 label"#),
            ("no schema", with(&v, json!({"spec": {"versions": [{"name": "v1", "served": true, "storage": true}]}})), "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"),
            ("kind missing", with(&v, json!({"spec": {"names": {"kind": null, "listKind": null}}})), "spec.names.kind: Required value"),
            ("kind", with(&v, json!({"spec": {"names": {"kind": "Wid get"}}})), r#"spec.names.kind: Invalid value: "Wid get": may have mixed case, but should otherwise match: a DNS-1035 label"#),
            ("kind equals listKind", with(&v, json!({"spec": {"names": {"listKind": "Widget"}}})), r#"spec.names.listKind: Invalid value: "Widget": kind and listKind may not be the same"#),
            ("short name", with(&v, json!({"spec": {"names": {"shortNames": ["W"]}}})), r#"spec.names.shortNames[0]: Invalid value: "W": a DNS-1035 label"#),
            ("conversion strategy", with(&v, json!({"spec": {"conversion": {"strategy": "Magic"}}})), r#"spec.conversion.strategy: Unsupported value: "Magic": supported values: "None", "Webhook""#),
        ]);
    }

    #[test]
    fn custom_resource_definition_update_invalid() {
        let mut old = valid();
        old["status"] = json!({"conditions": [{"type": "Established", "status": "True"}], "storedVersions": ["v1"]});
        update_table(GROUP, "CustomResourceDefinition", &old, &[
            ("unchanged", old.clone(), ""),
            ("scope of an established CRD", with(&old, json!({"spec": {"scope": "Cluster"}})), r#"spec.scope: Invalid value: "Cluster": field is immutable"#),
            ("stored version dropped", with(&old, json!({"spec": {"versions": [{"name": "v2", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}})), r#"status.storedVersions[0]: Invalid value: "v1": must appear in spec.versions"#),
        ]);
    }
}
