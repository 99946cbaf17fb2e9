//! Admission plugins through stock kubectl, one test per plugin, each
//! checking upstream's behaviour and wording.

mod common;

use common::Cluster;
use serde_json::Value;

fn pod(name: &str, extra_spec: &str) -> String {
    format!(r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}}, "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]{extra_spec}}}}}"#)
}

/// The quota race: 50 parallel creates against a quota of 10 pods.
/// [sig-api-machinery] ResourceQuota should create a ResourceQuota and ensure its status is promptly calculated. [Conformance]
#[test]
fn resource_quota_fifty_parallel_creates_against_ten() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "q"]);
    c.ok(&["create", "quota", "pods", "-n", "q", "--hard=pods=10"]);
    c.wait_for(&["get", "quota", "pods", "-n", "q", "-o", "jsonpath={.status.used.pods}"], "the quota's first count", |u| u == "0");
    let c = &c;
    let outcomes: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50).map(|i| s.spawn(move || c.kubectl(&["run", &format!("p{i}"), "-n", "q", "--image=busybox", "--restart=Never"]))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let admitted = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(admitted, 10);
    for refused in outcomes.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("is forbidden: exceeded quota: pods, requested: pods=1, used: pods=10, limited: pods=10"), "{err}");
    }
    assert_eq!(c.ok(&["get", "pods", "-n", "q", "--no-headers"]).lines().count(), 10);
    // The controller's recount agrees; deleting frees room again.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(c.ok(&["get", "quota", "pods", "-n", "q", "-o", "jsonpath={.status.used.pods}"]), "10");
    // Which 10 of the 50 were admitted varies: delete them all.
    c.ok(&["delete", "pods", "--all", "-n", "q", "--wait=false"]);
    c.wait_for(&["get", "quota", "pods", "-n", "q", "-o", "jsonpath={.status.used.pods}"], "the quota to be freed", |u| u != "10");
    // Compute quotas need every container to say what it asks for.
    c.ok(&["create", "quota", "compute", "-n", "q", "--hard=requests.cpu=1,limits.memory=1Gi"]);
    c.wait_for(&["get", "quota", "compute", "-n", "q", "-o", "jsonpath={.status.used}"], "the compute quota's count", |u| u.contains("requests.cpu"));
    let err = c.fails(&["create", "-n", "q", "-f", "-"], Some(&pod("bare", "")));
    assert!(err.contains(r#"pods "bare" is forbidden: failed quota: compute: must specify limits.memory,requests.cpu"#), "{err}");
}

/// [sig-scheduling] LimitRange should create a LimitRange with defaults and ensure pod has those defaults applied. [Conformance]
#[test]
fn limit_ranger_defaults_and_bounds() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "lr"]);
    let range = r#"{"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"}, "spec": {"limits": [
        {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"}, "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}, "min": {"cpu": "50m"}}]}}"#;
    c.ok_stdin(&["create", "-n", "lr", "-f", "-"], Some(range));
    c.ok_stdin(&["create", "-n", "lr", "-f", "-"], Some(&pod("defaulted", "")));
    let created = c.json(&["get", "pod", "defaulted", "-n", "lr", "-o", "json"]);
    let resources = &created["spec"]["containers"][0]["resources"];
    assert_eq!(resources["limits"], serde_json::json!({"cpu": "500m", "memory": "256Mi"}));
    assert_eq!(resources["requests"], serde_json::json!({"cpu": "100m", "memory": "256Mi"}));
    assert_eq!(created["metadata"]["annotations"]["kubernetes.io/limit-ranger"], "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c");
    let big = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"}, "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "2"}}}]}}"#;
    let err = c.fails(&["create", "-n", "lr", "-f", "-"], Some(big));
    assert!(err.contains(r#"pods "big" is forbidden: [minimum cpu usage per Container is 50m, but request is 10m, maximum cpu usage per Container is 1, but limit is 2]"#), "{err}");
}

/// The ServiceAccount plugin: the token volume, and opting out of it.
/// [sig-auth] ServiceAccounts should allow opting out of API token automount [Conformance]
#[test]
fn service_account_plugin_mounts_a_token_for_an_existing_account() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "sa"]);
    c.ok_stdin(&["create", "-n", "sa", "-f", "-"], Some(&pod("p", "")));
    let spec = c.json(&["get", "pod", "p", "-n", "sa", "-o", "json"])["spec"].clone();
    assert_eq!(spec["serviceAccountName"], "default");
    let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-")).expect("a token volume").clone();
    let sources: Vec<&str> = volume["projected"]["sources"].as_array().unwrap().iter().map(|s| s.as_object().unwrap().keys().next().unwrap().as_str()).collect();
    assert_eq!(sources, ["serviceAccountToken", "configMap", "downwardAPI"]);
    assert_eq!(spec["containers"][0]["volumeMounts"][0]["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount");
    let err = c.fails(&["create", "-n", "sa", "-f", "-"], Some(&pod("q", r#", "serviceAccountName": "robot""#)));
    assert!(err.contains(r#"pods "q" is forbidden: error looking up service account sa/robot: serviceaccount "robot" not found"#), "{err}");
    c.ok(&["create", "serviceaccount", "robot", "-n", "sa"]);
    c.ok_stdin(&["create", "-n", "sa", "-f", "-"], Some(&pod("q", r#", "serviceAccountName": "robot", "automountServiceAccountToken": false"#)));
    let spec = c.json(&["get", "pod", "q", "-n", "sa", "-o", "json"])["spec"].clone();
    assert!(spec["volumes"].is_null(), "{spec}");
}

#[test]
fn priority_comes_from_the_priority_class() {
    let c = Cluster::start();
    let names = c.ok(&["get", "priorityclass", "-o", "name"]);
    assert!(names.contains("system-cluster-critical") && names.contains("system-node-critical"), "{names}");
    c.ok(&["create", "priorityclass", "high", "--value=1000", "--preemption-policy=Never"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("important", r#", "priorityClassName": "high""#)));
    let spec = c.json(&["get", "pod", "important", "-o", "json"])["spec"].clone();
    assert_eq!((spec["priority"].clone(), spec["preemptionPolicy"].clone()), (serde_json::json!(1000), serde_json::json!("Never")));
    let err = c.fails(&["create", "-f", "-"], Some(&pod("lost", r#", "priorityClassName": "nope""#)));
    assert!(err.contains(r#"pods "lost" is forbidden: no PriorityClass with name nope was found"#), "{err}");
    let err = c.fails(&["create", "-f", "-"], Some(&pod("forged", r#", "priorityClassName": "high", "priority": 5"#)));
    assert!(err.contains("the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"), "{err}");
    c.ok(&["create", "priorityclass", "usual", "--value=10", "--global-default"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("plain", "")));
    let spec = c.json(&["get", "pod", "plain", "-o", "json"])["spec"].clone();
    assert_eq!((spec["priority"].clone(), spec["priorityClassName"].clone()), (serde_json::json!(10), serde_json::json!("usual")));
}

#[test]
fn default_storage_class_and_namespace_lifecycle() {
    let c = Cluster::start();
    let class = r#"{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}, "provisioner": "skiff.io/local"}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(class));
    let claim = |name: &str, class: &str| format!(r#"{{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {{"name": "{name}"}}, "spec": {{"accessModes": ["ReadWriteOnce"], "resources": {{"requests": {{"storage": "1Gi"}}}}{class}}}}}"#);
    c.ok_stdin(&["create", "-f", "-"], Some(&claim("defaulted", "")));
    c.ok_stdin(&["create", "-f", "-"], Some(&claim("none", r#", "storageClassName": """#)));
    assert_eq!(c.ok(&["get", "pvc", "defaulted", "-o", "jsonpath={.spec.storageClassName}"]), "fast");
    assert_eq!(c.ok(&["get", "pvc", "none", "-o", "jsonpath={.spec.storageClassName}"]), "");
    for ns in ["default", "kube-system", "kube-public"] {
        let err = c.fails(&["delete", "namespace", ns], None);
        assert!(err.contains(&format!(r#"namespaces "{ns}" is forbidden: this namespace may not be deleted"#)), "{err}");
    }
}

#[test]
fn pod_security_plugins_when_enabled() {
    let c = Cluster::start_with(&["--enable-admission-plugins=AlwaysPullImages,SecurityContextDeny,DenyExecOnPrivileged"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("pulled", "")));
    let created: Value = c.json(&["get", "pod", "pulled", "-o", "json"]);
    assert_eq!(created["spec"]["containers"][0]["imagePullPolicy"], "Always");
    let err = c.fails(&["create", "-f", "-"], Some(&pod("root", r#", "securityContext": {"runAsUser": 0}"#)));
    assert!(err.contains(r#"pods "root" is forbidden: pod.Spec.SecurityContext.RunAsUser is forbidden"#), "{err}");
    let privileged = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "priv"}, "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(privileged));
    let err = c.fails(&["exec", "priv", "--", "true"], None);
    assert!(err.contains("cannot exec into or attach to a privileged container"), "{err}");
    let host_pid = &pod("hostpid", r#", "hostPID": true"#);
    c.ok_stdin(&["create", "-f", "-"], Some(host_pid));
    let err = c.fails(&["exec", "hostpid", "--", "true"], None);
    assert!(err.contains("cannot exec into or attach to a container using host pid"), "{err}");
}

#[test]
fn always_deny_refuses_every_write() {
    let c = Cluster::start_with(&["--enable-admission-plugins=AlwaysDeny"]);
    let err = c.fails(&["create", "configmap", "x"], None);
    assert!(err.contains(r#"configmaps "x" is forbidden: admission control is denying all modifications"#), "{err}");
    // Reads are not admission's business.
    c.ok(&["get", "configmaps"]);
}

#[test]
fn pod_security_enforces_and_warns_by_namespace_labels() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "strict"]);
    c.ok(&["label", "namespace", "strict", "pod-security.kubernetes.io/enforce=restricted"]);
    let err = c.fails(&["create", "-n", "strict", "-f", "-"], Some(&pod("plain", "")));
    assert!(err.contains(r#"pods "plain" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#), "{err}");
    let hardened = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hardened"}, "spec": {
        "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "image": "busybox", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}"#;
    c.ok_stdin(&["create", "-n", "strict", "-f", "-"], Some(hardened));
    c.ok(&["create", "namespace", "watched"]);
    c.ok(&["label", "namespace", "watched", "pod-security.kubernetes.io/warn=baseline"]);
    let out = c.kubectl_stdin(&["create", "-n", "watched", "-f", "-"], Some(&pod("host", r#", "hostNetwork": true"#)));
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(warning.contains(r#"Warning: would violate PodSecurity "baseline:latest": host namespaces (hostNetwork=true)"#), "{warning}");
    // Workloads are warned about (their pods would be refused), not refused.
    let out = c.kubectl(&["create", "deployment", "web", "-n", "strict", "--image=busybox"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    c.ok(&["label", "namespace", "strict", "pod-security.kubernetes.io/warn=restricted"]);
    let out = c.kubectl(&["create", "deployment", "web2", "-n", "strict", "--image=busybox"]);
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warning.contains(r#"Warning: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#), "{warning}");
    // Unlabelled namespaces are privileged.
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("anything", r#", "hostPID": true"#)));
    // Updates are admitted too: a pod from before the label keeps running,
    // but changing its spec is judged by the namespace's standard.
    c.ok(&["label", "namespace", "default", "pod-security.kubernetes.io/enforce=baseline"]);
    c.ok(&["label", "pod", "anything", "touched=yes"]);
    let err = c.fails(&["set", "image", "pod/anything", "c=busybox:2"], None);
    assert!(err.contains(r#"violates PodSecurity "baseline:latest": host namespaces (hostPID=true)"#), "{err}");
}

/// An HTTPS admission webhook on loopback, answering by path: `/mutate`
/// labels the object, `/validate` refuses objects labelled `deny=yes`,
/// `/slow` answers after 3 s. Returns its port and CA bundle (base64 PEM).
fn webhook_server() -> (u16, String) {
    use base64::Engine;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())];
    let cert = params.self_signed(&key).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(cert.pem());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        let path = req.uri().path().to_string();
                        let review: Value = serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes()).unwrap();
                        let request = &review["request"];
                        let mut response = serde_json::json!({"uid": request["uid"], "allowed": true});
                        match path.as_str() {
                            "/mutate" => {
                                let patch = r#"[{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]"#;
                                response["patchType"] = "JSONPatch".into();
                                response["patch"] = base64::engine::general_purpose::STANDARD.encode(patch).into();
                            }
                            "/validate" if request["object"]["metadata"]["labels"]["deny"] == "yes" => {
                                response["allowed"] = false.into();
                                response["status"] = serde_json::json!({"code": 403, "message": "no pods labelled deny"});
                            }
                            "/slow" => tokio::time::sleep(std::time::Duration::from_secs(3)).await,
                            _ => {}
                        }
                        let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body.to_string()))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                });
            }
        });
    });
    (port, bundle)
}

fn webhook_configuration(kind: &str, name: &str, port: u16, bundle: &str, path: &str, extra: &str) -> String {
    format!(
        r#"{{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "{kind}", "metadata": {{"name": "{name}"}}, "webhooks": [{{
            "name": "{name}", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {{"url": "https://127.0.0.1:{port}{path}", "caBundle": "{bundle}"}},
            "rules": [{{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}}],
            "namespaceSelector": {{"matchLabels": {{"webhooks": "on"}}}}{extra}}}]}}"#
    )
}

#[test]
fn admission_webhooks_mutate_refuse_and_time_out() {
    let c = Cluster::start();
    let (port, bundle) = webhook_server();
    c.ok(&["create", "namespace", "hooked"]);
    c.ok(&["label", "namespace", "hooked", "webhooks=on"]);
    let mutating = webhook_configuration("MutatingWebhookConfiguration", "label.skiff.test", port, &bundle, "/mutate", "");
    let validating = webhook_configuration("ValidatingWebhookConfiguration", "deny.skiff.test", port, &bundle, "/validate", "");
    c.ok_stdin(&["create", "-f", "-"], Some(&mutating));
    c.ok_stdin(&["create", "-f", "-"], Some(&validating));
    let labelled = |name: &str, labels: &str| format!(r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "labels": {labels}}}, "spec": {{"containers": [{{"name": "c", "image": "busybox"}}]}}}}"#);
    c.ok_stdin(&["create", "-n", "hooked", "-f", "-"], Some(&labelled("plain", r#"{"app": "x"}"#)));
    assert_eq!(c.ok(&["get", "pod", "plain", "-n", "hooked", "-o", "jsonpath={.metadata.labels.mutated}"]), "yes");
    let err = c.fails(&["create", "-n", "hooked", "-f", "-"], Some(&labelled("denied", r#"{"deny": "yes"}"#)));
    assert!(err.contains(r#"admission webhook "deny.skiff.test" denied the request: no pods labelled deny"#), "{err}");
    // Namespaces the selector leaves out are not sent to the webhooks.
    c.ok_stdin(&["create", "-f", "-"], Some(&labelled("elsewhere", r#"{"deny": "yes"}"#)));
    assert_eq!(c.ok(&["get", "pod", "elsewhere", "-o", "jsonpath={.metadata.labels.mutated}"]), "");
    // A webhook slower than its timeout fails the request, unless it is ignorable.
    let slow = webhook_configuration("ValidatingWebhookConfiguration", "slow.skiff.test", port, &bundle, "/slow", r#", "timeoutSeconds": 1, "failurePolicy": "Fail""#);
    c.ok_stdin(&["create", "-f", "-"], Some(&slow));
    let err = c.fails(&["create", "-n", "hooked", "-f", "-"], Some(&labelled("late", r#"{"app": "x"}"#)));
    assert!(err.contains(r#"failed calling webhook "slow.skiff.test""#) && err.contains("context deadline exceeded"), "{err}");
    c.ok(&["patch", "validatingwebhookconfiguration", "slow.skiff.test", "--type=json", "-p", r#"[{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]"#]);
    c.ok_stdin(&["create", "-n", "hooked", "-f", "-"], Some(&labelled("late", r#"{"app": "x"}"#)));
}

/// Upstream's documented example policy: at most 5 replicas for
/// Deployments in namespaces labelled `environment: test`.
#[test]
fn validating_admission_policy_denies_and_warns_with_cel() {
    let c = Cluster::start();
    let policy = r#"{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "demo-policy.example.com"},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                 "validations": [{"expression": "object.spec.replicas <= 5"}]}}"#;
    let binding = |name: &str, action: &str, env: &str| format!(
        r#"{{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": {{"name": "{name}"}},
            "spec": {{"policyName": "demo-policy.example.com", "validationActions": ["{action}"], "matchResources": {{"namespaceSelector": {{"matchLabels": {{"environment": "{env}"}}}}}}}}}}"#
    );
    c.ok_stdin(&["create", "-f", "-"], Some(policy));
    c.ok_stdin(&["create", "-f", "-"], Some(&binding("demo-binding-test.example.com", "Deny", "test")));
    c.ok_stdin(&["create", "-f", "-"], Some(&binding("demo-binding-staging.example.com", "Warn", "staging")));
    for (ns, env) in [("t", "test"), ("s", "staging"), ("free", "none")] {
        c.ok(&["create", "namespace", ns]);
        c.ok(&["label", "namespace", ns, &format!("environment={env}")]);
    }
    let err = c.fails(&["create", "deployment", "big", "-n", "t", "--image=busybox", "--replicas=6"], None);
    assert!(err.contains("ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= 5"), "{err}");
    c.ok(&["create", "deployment", "small", "-n", "t", "--image=busybox", "--replicas=3"]);
    // Updates are checked too (`kubectl scale` goes through deployments/scale,
    // which these rules do not name, as upstream).
    let err = c.fails(&["patch", "deployment", "small", "-n", "t", "-p", r#"{"spec": {"replicas": 7}}"#], None);
    assert!(err.contains("denied request: failed expression: object.spec.replicas <= 5"), "{err}");
    c.ok(&["scale", "deployment", "small", "-n", "t", "--replicas=7"]);
    // A policy on the scale subresource sees Scale objects.
    let scale_policy = r#"{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "scale-limit"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["deployments/scale"]}]},
                 "validations": [{"expression": "object.kind == 'Scale' && object.spec.replicas <= 8", "message": "at most 8 replicas"}]}}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(scale_policy));
    let scale_binding = r#"{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "scale-limit"},
        "spec": {"policyName": "scale-limit", "validationActions": ["Deny"]}}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(scale_binding));
    let err = c.fails(&["scale", "deployment", "small", "-n", "t", "--replicas=9"], None);
    assert!(err.contains("ValidatingAdmissionPolicy 'scale-limit' with binding 'scale-limit' denied request: at most 8 replicas"), "{err}");
    c.ok(&["scale", "deployment", "small", "-n", "t", "--replicas=8"]);
    let out = c.kubectl(&["create", "deployment", "big", "-n", "s", "--image=busybox", "--replicas=6"]);
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(warning.contains("Warning: Validation failed for ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-staging.example.com': failed expression: object.spec.replicas <= 5"), "{warning}");
    c.ok(&["create", "deployment", "big", "-n", "free", "--image=busybox", "--replicas=6"]);
}
