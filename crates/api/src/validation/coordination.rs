//! coordination.k8s.io/v1: leases, as upstream's
//! `pkg/apis/coordination/validation`.

use k8s_openapi::api::coordination::v1::Lease;

use super::{name_by, positive, qualified_name, Errors, Op, Path, NON_NEGATIVE};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        // Upstream's update rules are its create rules.
        "Lease" => op.run(lease, super::nothing, super::nothing),
        _ => return None,
    })
}

/// The coordinated leader election strategies Kubernetes defines.
const STRATEGIES: [&str; 1] = ["OldestEmulationVersion"];

fn lease(lease: &Lease) -> Errors {
    let spec = match &lease.spec {
        Some(spec) => spec,
        None => return vec![],
    };
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if let Some(seconds) = spec.lease_duration_seconds {
        errs.extend(positive(seconds.into(), &path.child("leaseDurationSeconds")));
    }
    if let Some(transitions) = spec.lease_transitions.filter(|t| *t < 0) {
        errs.push(path.child("leaseTransitions").invalid(transitions, NON_NEGATIVE));
    }
    if let Some(strategy) = &spec.strategy {
        errs.extend(coordinated_lease_strategy(strategy, &path.child("strategy")));
    }
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if has(&spec.preferred_holder) && !has(&spec.strategy) {
        errs.push(path.child("preferredHolder").forbidden("may only be specified if `strategy` is defined"));
    }
    errs
}

/// Upstream's `ValidateCoordinatedLeaseStrategy`: a strategy Kubernetes
/// defines, or a qualified name of one's own (`example.com/mine`).
/// Upstream adds `strategy` to the path it is given, so the field reads
/// `spec.strategy.strategy`: kept, as that is what clients see.
fn coordinated_lease_strategy(strategy: &str, path: &Path) -> Errors {
    let at = path.child("strategy");
    if strategy.contains('/') {
        name_by(qualified_name, strategy, &at)
    } else if STRATEGIES.contains(&strategy) {
        vec![]
    } else {
        vec![at.not_supported(strategy, &STRATEGIES)]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{table, update_table, with};

    const G: &str = "coordination.k8s.io";

    /// A node heartbeat lease as the kubelet writes it.
    fn node_lease() -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2024-01-01T00:00:00.000000Z"},
        })
    }

    #[test]
    fn lease_valid() {
        table(G, "Lease", &[
            ("node lease", node_lease(), ""),
            ("no spec", json!({"metadata": {"name": "x", "namespace": "default"}}), ""),
            ("empty spec", json!({"metadata": {"name": "x", "namespace": "default"}, "spec": {}}), ""),
            ("leader election", with(&node_lease(), json!({"spec": {"holderIdentity": "kube-controller-manager_abc", "leaseTransitions": 0, "acquireTime": "2024-01-01T00:00:00.000000Z"}})), ""),
            ("coordinated", with(&node_lease(), json!({"spec": {"strategy": "OldestEmulationVersion", "preferredHolder": "node-2"}})), ""),
            ("custom strategy", with(&node_lease(), json!({"spec": {"strategy": "example.com/mine"}})), ""),
            ("empty preferred holder", with(&node_lease(), json!({"spec": {"preferredHolder": ""}})), ""),
        ]);
    }

    #[test]
    fn lease_invalid() {
        let l = node_lease();
        table(G, "Lease", &[
            ("zero duration", with(&l, json!({"spec": {"leaseDurationSeconds": 0}})), "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
            ("negative duration", with(&l, json!({"spec": {"leaseDurationSeconds": -5}})), "spec.leaseDurationSeconds: Invalid value: -5: must be greater than 0"),
            ("negative transitions", with(&l, json!({"spec": {"leaseTransitions": -1}})), "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"),
            ("unknown strategy", with(&l, json!({"spec": {"strategy": "Youngest"}})), "spec.strategy.strategy: Unsupported value: \"Youngest\": supported values: \"OldestEmulationVersion\""),
            ("empty strategy", with(&l, json!({"spec": {"strategy": ""}})), "spec.strategy.strategy: Unsupported value: \"\": supported values: \"OldestEmulationVersion\""),
            ("bad custom strategy", with(&l, json!({"spec": {"strategy": "example.com/my strategy"}})), "spec.strategy.strategy: Invalid value: \"example.com/my strategy\": name part must consist of alphanumeric characters"),
            ("two slashes", with(&l, json!({"spec": {"strategy": "a/b/c"}})), "spec.strategy.strategy: Invalid value: \"a/b/c\": a qualified name must consist of"),
            ("preferred holder without strategy", with(&l, json!({"spec": {"preferredHolder": "node-2"}})), "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined"),
        ]);
    }

    #[test]
    fn lease_update() {
        let old = node_lease();
        update_table(G, "Lease", &old, &[
            ("renewed", with(&old, json!({"spec": {"renewTime": "2024-01-01T00:00:10.000000Z"}})), ""),
            ("new holder", with(&old, json!({"spec": {"holderIdentity": "node-2", "leaseTransitions": 1}})), ""),
            ("broken", with(&old, json!({"spec": {"leaseDurationSeconds": 0}})), "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
        ]);
    }
}
