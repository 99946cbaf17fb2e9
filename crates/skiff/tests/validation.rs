//! Validation through stock kubectl: objects and updates upstream refuses
//! are refused here with upstream's field paths and messages, and nothing
//! of them is written. The rules themselves are tested as tables beside
//! the code (`crates/api/src/validation/`); these are the cases a new user
//! tried first.

mod common;

use common::Cluster;

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n";

/// `kubectl create -f -` of `manifest` fails naming `expected`, and the
/// object named `get` is not there afterwards.
fn refused(c: &Cluster, manifest: &str, expected: &str, get: &[&str]) {
    let err = c.fails(&["create", "-n", "default", "-f", "-"], Some(manifest));
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}\nfor:\n{manifest}");
    let mut args = vec!["get", "-n", "default"];
    args.extend_from_slice(get);
    assert!(c.fails(&args, None).contains("not found"), "{get:?} was written");
}

fn deployment(replicas: i32, selector: &str, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {selector}}}\n  template:\n    metadata: {{labels: {labels}}}\n    spec: {{containers: [{{name: web, image: busybox}}]}}\n"
    )
}

#[test]
fn objects_upstream_refuses_are_refused_with_its_messages() {
    let c = Cluster::start();
    let web = ["deployment", "web"];
    refused(&c, &deployment(-3, "{app: web}", "{app: web}"), "spec.replicas: Invalid value: -3: must be greater than or equal to 0", &web);
    refused(&c, &deployment(1, "{app: web}", "{app: other}"), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`", &web);

    let pod = ["pod", "p"];
    let pods: [(&str, &str); 9] = [
        ("  containers: [{name: a, image: x}, {name: a, image: x}]", "spec.containers[1].name: Duplicate value: \"a\""),
        ("  containers: [{name: Bad_Name, image: x}]", "spec.containers[0].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of"),
        ("  restartPolicy: Sometimes\n  containers: [{name: a, image: x}]", "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""),
        ("  containers: [{name: a, image: x, resources: {requests: {cpu: lots}}}]", "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
        ("  containers: [{name: a, image: x, resources: {requests: {cpu: 2}, limits: {cpu: 1}}}]", "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"),
        ("  containers: [{name: a, image: x, volumeMounts: [{name: missing, mountPath: /data}]}]", "spec.containers[0].volumeMounts[0].name: Not found: \"missing\""),
        ("  containers: [{name: a, image: x, ports: [{containerPort: 0}]}]", "spec.containers[0].ports[0].containerPort: "),
        ("  containers: [{name: a, image: x, ports: [{containerPort: 80, hostPort: 99999}]}]", "spec.containers[0].ports[0].hostPort: Invalid value: 99999: must be between 1 and 65535, inclusive"),
        ("  containers: []", "spec.containers: Required value"),
    ];
    for (spec, expected) in pods {
        refused(&c, &format!("{POD}{spec}\n"), expected, &pod);
    }

    let others: [(&str, &str, &[&str]); 13] = [
        ("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 70000}]}", "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive", &["service", "s"]),
        ("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {completions: -1, template: {spec: {restartPolicy: Never, containers: [{name: a, image: x}]}}}", "spec.completions: Invalid value: -1: must be greater than or equal to 0", &["job", "j"]),
        ("apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {spec: {restartPolicy: Always, containers: [{name: a, image: x}]}}}", "spec.template.spec.restartPolicy: ", &["job", "j"]),
        ("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: cj}\nspec: {schedule: not a schedule, jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: a, image: x}]}}}}}", "spec.schedule: Invalid value: \"not a schedule\"", &["cronjob", "cj"]),
        ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\nspec: {rules: [{http: {paths: [{path: foo, pathType: Prefix, backend: {service: {name: s, port: {number: 80}}}}]}}]}", "spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path", &["ingress", "i"]),
        ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}", "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive", &["networkpolicy", "np"]),
        ("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {accessModes: [ReadWriteOnce]}", "spec.resources[storage]: Required value", &["pvc", "c"]),
        ("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: c}\nspec: {resources: {requests: {storage: 1Gi}}}", "spec.accessModes: Required value: at least 1 access mode is required", &["pvc", "c"]),
        ("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: b}\nspec: {minAvailable: 150%, selector: {matchLabels: {app: web}}}", "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%", &["pdb", "b"]),
        ("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nspec: {maxReplicas: -1, scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}}", "spec.maxReplicas: Invalid value: -1: must be greater than 0", &["hpa", "h"]),
        ("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec: {hard: {pods: \"-5\"}}", "spec.hard[pods]: Invalid value: \"-5\": must be greater than or equal to 0", &["quota", "q"]),
        ("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r}\nrules: [{apiGroups: [\"\"], resources: [pods]}]", "rules[0].verbs: Required value: verbs must contain at least one value", &["role", "r"]),
        ("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: too-high}\nvalue: 2000000000", "value: Forbidden: maximum allowed value of a user defined priority is 1000000000", &["priorityclass", "too-high"]),
    ];
    for (manifest, expected, get) in others {
        refused(&c, manifest, expected, get);
    }
}

#[test]
fn updates_upstream_forbids_are_refused_and_change_nothing() {
    let c = Cluster::start();
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(&deployment(1, "{app: web}", "{app: web}")));
    let err = c.fails(&["apply", "-n", "default", "-f", "-"], Some(&deployment(1, "{app: web, tier: x}", "{app: web, tier: x}")));
    assert!(err.contains("spec.selector: Invalid value: ") && err.contains("field is immutable"), "{err}");
    let selector = c.ok(&["get", "deployment", "web", "-n", "default", "-o", "jsonpath={.spec.selector.matchLabels}"]);
    assert_eq!(selector, r#"{"app":"web"}"#);

    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {suspend: true, template: {spec: {restartPolicy: Never, containers: [{name: a, image: IMAGE}]}}}";
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(&job.replace("IMAGE", "one")));
    let err = c.fails(&["apply", "-n", "default", "-f", "-"], Some(&job.replace("IMAGE", "two")));
    assert!(err.contains("spec.template: Invalid value: ") && err.contains("field is immutable"), "{err}");
    let image = c.ok(&["get", "job", "j", "-n", "default", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "one");

    // A status write is validated on its own.
    let err = c.fails(&["patch", "deployment", "web", "-n", "default", "--subresource=status", "--type=merge", "-p", r#"{"status":{"replicas":-1}}"#], None);
    assert!(err.contains("status.replicas: Invalid value: -1: must be greater than or equal to 0"), "{err}");
}
