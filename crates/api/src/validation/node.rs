//! node.k8s.io/v1: runtime classes, as upstream's
//! `pkg/apis/node/validation`.

use std::collections::BTreeSet;

use k8s_openapi::api::node::v1::{RuntimeClass, Scheduling};

use super::go::go_toleration;
use super::resources::Shown;
use super::{dns1123_label, immutable, labels, name_by, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "RuntimeClass" => op.run(runtime_class, runtime_class_update, super::nothing),
        _ => return None,
    })
}

fn runtime_class(class: &RuntimeClass) -> Errors {
    let mut errs = name_by(dns1123_label, &class.handler, &Path::new("handler"));
    if let Some(overhead) = &class.overhead {
        // Upstream validates the overhead as a container's limits, and its
        // paths say so: `overhead.limits[cpu]`.
        errs.extend(super::pod::resource_requirements(overhead.pod_fixed.as_ref(), None, None, &BTreeSet::new(), Shown::Quoted, &Path::new("overhead")));
    }
    if let Some(scheduling) = &class.scheduling {
        errs.extend(scheduling_rules(scheduling, &Path::new("scheduling")));
    }
    errs
}

/// The handler names what the node runs pods with: pods already admitted
/// with the class rely on it.
fn runtime_class_update(new: &RuntimeClass, old: &RuntimeClass) -> Errors {
    immutable(&new.handler, &old.handler, &Path::new("handler"))
}

fn scheduling_rules(scheduling: &Scheduling, path: &Path) -> Errors {
    let mut errs = labels(scheduling.node_selector.as_ref(), &path.child("nodeSelector"));
    let path = path.child("tolerations");
    let tolerations = scheduling.tolerations.as_deref().unwrap_or_default();
    errs.extend(super::pod_scheduling::tolerations(tolerations, |t| Bad::raw(go_toleration(t)), &path));
    // A runtime class lists each toleration once.
    let mut seen = BTreeSet::new();
    for (i, t) in tolerations.iter().enumerate() {
        let key = (t.key.clone(), t.operator.clone(), t.value.clone(), t.effect.clone());
        if !seen.insert(key) {
            errs.push(path.index(i).duplicate(Bad::raw(go_toleration(t))));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "node.k8s.io";

    fn gvisor() -> Value {
        json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": {"name": "gvisor"},
            "handler": "runsc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
            "scheduling": {
                "nodeSelector": {"runtime.example.com/gvisor": "true"},
                "tolerations": [{"key": "runtime", "operator": "Equal", "value": "gvisor", "effect": "NoSchedule"}],
            },
        })
    }

    fn toleration(t: Value) -> Value {
        with(&gvisor(), json!({"scheduling": {"tolerations": [t]}}))
    }

    #[test]
    fn runtime_class_valid() {
        table(G, "RuntimeClass", &[
            ("gvisor", gvisor(), ""),
            ("k3s nvidia", json!({"metadata": {"name": "nvidia"}, "handler": "nvidia"}), ""),
            ("empty overhead", with(&gvisor(), json!({"overhead": {}})), ""),
            ("extended and huge pages", with(&gvisor(), json!({"overhead": {"podFixed": {"memory": "1Gi", "hugepages-2Mi": "4Mi", "example.com/gpu": "1"}}})), ""),
            ("match all", toleration(json!({"operator": "Exists"})), ""),
            ("evicted later", toleration(json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})), ""),
            ("same key, other effects", with(&gvisor(), json!({"scheduling": {"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}, {"key": "a", "operator": "Exists", "effect": "NoExecute"}]}})), ""),
        ]);
    }

    #[test]
    fn runtime_class_invalid() {
        let rc = gvisor();
        table(G, "RuntimeClass", &[
            ("no handler", with(&rc, json!({"handler": ""})), "handler: Invalid value: \"\": a lowercase RFC 1123 label"),
            ("handler missing", with(&rc, json!({"handler": null})), "handler: Invalid value: \"\": a lowercase RFC 1123 label"),
            ("handler with dot", with(&rc, json!({"handler": "run.sc"})), "handler: Invalid value: \"run.sc\": a lowercase RFC 1123 label"),
            ("handler too long", with(&rc, json!({"handler": "h".repeat(64)})), "handler: Invalid value: \"hhhh"),
            ("negative overhead", with(&rc, json!({"overhead": {"podFixed": {"cpu": "-250m"}}})), "overhead.limits[cpu]: Invalid value: \"-250m\": must be greater than or equal to 0"),
            ("not a quantity", with(&rc, json!({"overhead": {"podFixed": {"memory": "lots"}}})), "overhead.limits[memory]: Invalid value: \"lots\": quantities must match"),
            ("pods are not container resources", with(&rc, json!({"overhead": {"podFixed": {"pods": "1"}}})), "overhead.limits[pods]: Invalid value: \"pods\": must be a standard resource for containers"),
            ("fractional extended resource", with(&rc, json!({"overhead": {"podFixed": {"example.com/gpu": "500m"}}})), "overhead.limits[example.com/gpu]: Invalid value: \"500m\": must be an integer"),
            ("huge pages alone", with(&rc, json!({"overhead": {"podFixed": {"cpu": null, "memory": null, "hugepages-2Mi": "2Mi"}}})), "overhead: Forbidden: HugePages require cpu or memory"),
            ("huge pages not whole", with(&rc, json!({"overhead": {"podFixed": {"cpu": "1", "hugepages-2Mi": "3Mi"}}})), "overhead.limits[hugepages-2Mi]: Invalid value: \"3Mi\": 3Mi is not positive integer multiple of hugepages-2Mi"),
            ("node selector value", with(&rc, json!({"scheduling": {"nodeSelector": {"a": "not ok"}}})), "scheduling.nodeSelector: Invalid value: \"not ok\""),
            ("node selector key", with(&rc, json!({"scheduling": {"nodeSelector": {"-a": "b"}}})), "scheduling.nodeSelector: Invalid value: \"-a\""),
            ("toleration key", toleration(json!({"key": "bad key", "operator": "Exists"})), "scheduling.tolerations[0].key: Invalid value: \"bad key\""),
            ("no key without Exists", toleration(json!({"operator": "Equal", "value": "x"})), "scheduling.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""),
            ("seconds without NoExecute", toleration(json!({"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 10})), "scheduling.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"),
            ("bad value", toleration(json!({"key": "a", "value": "a b"})), "scheduling.tolerations[0].operator: Invalid value: \"a b\": a valid label must be"),
            ("value with Exists", toleration(json!({"key": "a", "operator": "Exists", "value": "b"})), "scheduling.tolerations[0].operator: Invalid value: core.Toleration{Key:\"a\", Operator:\"Exists\", Value:\"b\", Effect:\"\", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'"),
            ("operator", toleration(json!({"key": "a", "operator": "Lt", "value": "1"})), "scheduling.tolerations[0].operator: Unsupported value: \"Lt\": supported values: \"Equal\", \"Exists\""),
            ("effect", toleration(json!({"key": "a", "operator": "Exists", "effect": "NoRun"})), "scheduling.tolerations[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""),
            ("duplicate toleration", with(&rc, json!({"scheduling": {"tolerations": [
                {"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
                {"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2},
            ]}})), "scheduling.tolerations[1]: Duplicate value: core.Toleration{Key:\"a\", Operator:\"Exists\", Value:\"\", Effect:\"NoExecute\""),
        ]);
        let bad_name = with(&rc, json!({"overhead": {"podFixed": {"gpu": "1"}}}));
        assert_eq!(messages(G, "RuntimeClass", Op::Create(&bad_name)), [
            "overhead.limits[gpu]: Invalid value: \"gpu\": must be a standard resource type or fully qualified",
            "overhead.limits[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
        ]);
    }

    #[test]
    fn runtime_class_update() {
        let old = gvisor();
        update_table(G, "RuntimeClass", &old, &[
            ("overhead and scheduling", with(&old, json!({"overhead": {"podFixed": {"cpu": "1"}}, "scheduling": null})), ""),
            ("labels", with(&old, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("handler", with(&old, json!({"handler": "runc"})), "handler: Invalid value: \"runc\": field is immutable"),
            ("broken overhead", with(&old, json!({"overhead": {"podFixed": {"memory": "-1"}}})), "overhead.limits[memory]: Invalid value: \"-1\""),
        ]);
    }
}
