//! Authentication and authorization through real credentials and stock
//! kubectl: client certificates, static tokens, basic auth, anonymous
//! requests, impersonation, ABAC and RBAC with escalation prevention, and
//! the review APIs behind `kubectl auth can-i` and `kubectl auth whoami`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use common::{kubectl_with, Cluster};

const TOKENS: &str = "alice-token,alice,1001,\"dev,ops\"\ndave-token,dave,1004\n";
const PASSWORDS: &str = "bob-password,bob,1002,\"readers\"\n";

/// A cluster with the token and password files above, plus `extra` flags.
fn cluster(extra: &[&str]) -> Cluster {
    let files = tempfile::tempdir().unwrap().keep();
    std::fs::write(files.join("tokens.csv"), TOKENS).unwrap();
    std::fs::write(files.join("passwords.csv"), PASSWORDS).unwrap();
    let (tokens, passwords) = (files.join("tokens.csv"), files.join("passwords.csv"));
    let mut flags = vec!["--token-auth-file", tokens.to_str().unwrap(), "--basic-auth-file", passwords.to_str().unwrap()];
    let flags_owned: Vec<String> = flags.drain(..).map(String::from).chain(extra.iter().map(|s| s.to_string())).collect();
    Cluster::start_with(&flags_owned.iter().map(String::as_str).collect::<Vec<_>>())
}

fn token(c: &Cluster, name: &str, token: &str) -> PathBuf {
    c.kubeconfig_for(name, &format!("{{token: {token}}}"))
}

fn basic(c: &Cluster, name: &str, password: &str) -> PathBuf {
    c.kubeconfig_for(name, &format!("{{username: {name}, password: {password}}}"))
}

/// A kubeconfig with a certificate from `skiff certs`.
fn certificate(c: &Cluster, user: &str, groups: &[&str]) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.args(["certs", "--user", user, "--server", &c.url(), "--data-dir"]).arg(c.data_dir().join("data"));
    for g in groups {
        cmd.args(["--group", g]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "skiff certs: {}", String::from_utf8_lossy(&out.stderr));
    // KUBECONFIG is a colon-separated list: no colons in the file name.
    let path = c.data_dir().join(format!("{}-cert.kubeconfig", user.replace(':', "_")));
    std::fs::write(&path, out.stdout).unwrap();
    path
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `kubectl auth can-i` as the kubeconfig's user.
fn can_i(kubeconfig: &Path, verb: &str, resource: &str, ns: &str) -> bool {
    let out = kubectl_with(kubeconfig, &["auth", "can-i", verb, resource, "-n", ns], None);
    // "yes", or "no" with the denial's reason after it.
    let answer = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string();
    assert!(answer == "yes" || answer == "no", "can-i {verb} {resource} -n {ns}: {}", text(&out));
    answer == "yes"
}

/// What actually happens when the user tries: forbidden or not. Reads and
/// deletes aim at an object that does not exist (404 when allowed), creates
/// are server-side dry runs, so the matrix changes nothing.
fn really_allowed(kubeconfig: &Path, verb: &str, resource: &str, ns: &str) -> bool {
    let manifest = match resource {
        "configmaps" => r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}}"#.to_string(),
        "secrets" => r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "m"}}"#.to_string(),
        "deployments.apps" => r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}"#.to_string(),
        "roles.rbac.authorization.k8s.io" => r#"{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "m"}, "rules": []}"#.to_string(),
        other => panic!("no manifest for {other}"),
    };
    let out = match verb {
        "list" => kubectl_with(kubeconfig, &["get", resource, "-n", ns], None),
        "get" => kubectl_with(kubeconfig, &["get", resource, "absent", "-n", ns], None),
        "delete" => kubectl_with(kubeconfig, &["delete", resource, "absent", "-n", ns], None),
        "create" => kubectl_with(kubeconfig, &["create", "--dry-run=server", "-n", ns, "-f", "-"], Some(&manifest)),
        other => panic!("no action for {other}"),
    };
    let said = text(&out);
    let forbidden = said.contains("Forbidden") || said.contains("forbidden");
    assert!(forbidden || out.status.success() || said.contains("NotFound") || said.contains("not found"), "{verb} {resource}: {said}");
    !forbidden
}

/// Checks each user × verb × resource × namespace against `expected`, both
/// with `kubectl auth can-i` and by doing it.
fn check_matrix(users: &[(&str, &Path)], expected: impl Fn(&str, &str, &str, &str) -> bool) {
    let mut wrong = Vec::new();
    for (user, kubeconfig) in users {
        for resource in ["configmaps", "secrets", "deployments.apps", "roles.rbac.authorization.k8s.io"] {
            for verb in ["get", "list", "create", "delete"] {
                for ns in ["team", "default"] {
                    let want = expected(user, verb, resource, ns);
                    let (said, did) = (can_i(kubeconfig, verb, resource, ns), really_allowed(kubeconfig, verb, resource, ns));
                    if said != want || did != want {
                        wrong.push(format!("{user} {verb} {resource} -n {ns}: expected {want}, can-i said {said}, doing it was {did}"));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rbac_matrix_for_certificates_tokens_basic_auth_and_service_accounts() {
    let c = cluster(&[]);
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["create", "rolebinding", "alice-edit", "-n", "team", "--clusterrole=edit", "--user=alice"]);
    c.ok(&["create", "rolebinding", "readers-view", "-n", "team", "--clusterrole=view", "--group=readers"]);
    c.ok(&["create", "clusterrolebinding", "auditors", "--clusterrole=view", "--group=auditors"]);
    // view and edit are aggregated by the controller manager.
    c.wait_for(&["get", "clusterrole", "edit", "-o", "jsonpath={.rules[*].resources}"], "edit to aggregate", |r| r.contains("deployments"));
    c.wait_for(&["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}"], "view to aggregate", |r| r.contains("deployments"));
    let alice = token(&c, "alice", "alice-token");
    let bob = basic(&c, "bob", "bob-password");
    let carol = certificate(&c, "carol", &["auditors"]);
    let dave = token(&c, "dave", "dave-token");
    c.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    c.ok(&["create", "rolebinding", "robot-edit", "-n", "team", "--clusterrole=edit", "--serviceaccount=team:robot"]);
    let robot = token(&c, "robot", c.ok(&["create", "token", "robot", "-n", "team"]).trim());
    let users = [("alice", alice.as_path()), ("bob", bob.as_path()), ("carol", carol.as_path()), ("dave", dave.as_path()), ("robot", robot.as_path())];
    check_matrix(&users, |user, verb, resource, ns| {
        let read = matches!(verb, "get" | "list");
        match user {
            // edit: everything but roles, in team only.
            "alice" | "robot" => ns == "team" && !resource.starts_with("roles"),
            // view: reads, but not secrets or roles.
            "bob" => ns == "team" && read && !matches!(resource, "secrets" | "roles.rbac.authorization.k8s.io"),
            "carol" => read && !matches!(resource, "secrets" | "roles.rbac.authorization.k8s.io"),
            _ => false,
        }
    });
    // Denials are upstream's 403 wording.
    let out = kubectl_with(&dave, &["get", "pods", "-n", "team"], None);
    assert!(text(&out).contains(r#"pods is forbidden: User "dave" cannot list resource "pods" in API group "" in the namespace "team""#), "{}", text(&out));
    let out = kubectl_with(&dave, &["get", "nodes", "n1"], None);
    assert!(text(&out).contains(r#"nodes "n1" is forbidden: User "dave" cannot get resource "nodes" in API group "" at the cluster scope"#), "{}", text(&out));
    // whoami for each kind of credential.
    for (kubeconfig, user, groups) in [(&alice, "alice", "[dev ops system:authenticated]"), (&bob, "bob", "[readers system:authenticated]"), (&carol, "carol", "[auditors system:authenticated]")] {
        let out = text(&kubectl_with(kubeconfig, &["auth", "whoami"], None));
        assert!(out.contains(user) && out.contains(groups), "{out}");
    }
    // `can-i --list` shows what edit grants in team.
    let list = text(&kubectl_with(&alice, &["auth", "can-i", "--list", "-n", "team"], None));
    assert!(list.lines().any(|l| l.starts_with("deployments.apps") && l.contains("create")), "{list}");
}

#[test]
fn abac_policy_file_decides() {
    let policy = [
        r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "alice", "namespace": "*", "resource": "*", "apiGroup": "*", "nonResourcePath": "*"}}"#,
        r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "bob", "namespace": "team", "resource": "*", "apiGroup": "*", "readonly": true}}"#,
        r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "dave", "namespace": "default", "resource": "configmaps", "apiGroup": ""}}"#,
        r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"group": "system:authenticated", "readonly": true, "nonResourcePath": "*"}}"#,
        r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"group": "system:authenticated", "apiGroup": "authorization.k8s.io", "resource": "selfsubjectaccessreviews", "namespace": "*"}}"#,
        r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "system:kube-controller-manager", "namespace": "*", "resource": "*", "apiGroup": "*"}}"#,
        r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "system:kube-scheduler", "namespace": "*", "resource": "*", "apiGroup": "*"}}"#,
    ]
    .join("\n");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), policy).unwrap();
    let c = cluster(&["--authorization-mode=ABAC", "--authorization-policy-file", file.path().to_str().unwrap()]);
    c.ok(&["create", "namespace", "team"]);
    let alice = token(&c, "alice", "alice-token");
    let bob = basic(&c, "bob", "bob-password");
    let dave = token(&c, "dave", "dave-token");
    let users = [("alice", alice.as_path()), ("bob", bob.as_path()), ("dave", dave.as_path())];
    check_matrix(&users, |user, verb, resource, ns| match user {
        "alice" => true,
        "bob" => ns == "team" && matches!(verb, "get" | "list"),
        _ => ns == "default" && resource == "configmaps",
    });
    let out = text(&kubectl_with(&dave, &["get", "secrets", "-n", "default"], None));
    assert!(out.contains(r#"User "dave" cannot list resource "secrets" in API group "" in the namespace "default": No policy matched."#), "{out}");
}

#[test]
fn anonymous_requests_see_only_public_information() {
    let curl = |c: &Cluster, path: &str| {
        let out = Command::new("curl").args(["-sk", &format!("{}{path}", c.url())]).output().expect("curl is installed");
        String::from_utf8(out.stdout).unwrap()
    };
    let c = Cluster::start();
    let status: serde_json::Value = serde_json::from_str(&curl(&c, "/api/v1/namespaces")).unwrap();
    assert_eq!((status["code"].as_i64(), status["reason"].as_str()), (Some(403), Some("Forbidden")));
    assert_eq!(status["message"], r#"namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" at the cluster scope"#);
    assert_eq!(curl(&c, "/readyz"), "ok");
    assert!(curl(&c, "/version").contains("gitVersion"));
    let status: serde_json::Value = serde_json::from_str(&curl(&c, "/apis")).unwrap();
    assert_eq!(status["message"], r#"forbidden: User "system:anonymous" cannot get path "/apis""#);
    drop(c);
    // Without anonymous access, nothing is served to a client without credentials.
    let c = Cluster::start_with(&["--anonymous-auth=false"]);
    for path in ["/api/v1/namespaces", "/readyz"] {
        let status: serde_json::Value = serde_json::from_str(&curl(&c, path)).unwrap();
        assert_eq!((status["code"].as_i64(), status["reason"].as_str()), (Some(401), Some("Unauthorized")), "{path}");
    }
}

/// A client certificate for `user` signed by the cluster CA but already
/// expired, written as PEM files; returns (cert, key).
fn expired_certificate(c: &Cluster, user: &str) -> (PathBuf, PathBuf) {
    let tls = c.data_dir().join("data/server/tls");
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(tls.join("ca.crt")).unwrap(), ca_key).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, user);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (c.data_dir().join(format!("{user}-expired.crt")), c.data_dir().join(format!("{user}-expired.key")));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[test]
fn bad_credentials_are_unauthorized() {
    let c = cluster(&[]);
    let request = |args: &[&str]| {
        let out = Command::new("curl").args(["-sk", &format!("{}/api/v1/namespaces", c.url())]).args(args).output().unwrap();
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|_| panic!("{args:?}: not a Status: {body}"))
    };
    let wrong_password = format!("Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode("bob:nope"));
    let forged_jwt = "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06YWRtaW4ifQ.c2lnbmF0dXJl";
    for header in ["Authorization: Bearer nope", "Authorization: Bearer", "Authorization: Basic !!!", wrong_password.as_str(), "Authorization: Digest x", forged_jwt] {
        let status = request(&["-H", header]);
        assert_eq!((status["code"].as_i64(), status["reason"].as_str()), (Some(401), Some("Unauthorized")), "{header}");
    }
    // A certificate from another CA, and an expired one from ours.
    let foreign = c.data_dir().join("foreign");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=mallory/O=system:masters", "-keyout"])
        .arg(foreign.with_extension("key"))
        .arg("-out")
        .arg(foreign.with_extension("crt"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let (expired_crt, expired_key) = expired_certificate(&c, "eve");
    for (crt, key) in [(foreign.with_extension("crt"), foreign.with_extension("key")), (expired_crt, expired_key)] {
        let status = request(&["--cert", crt.to_str().unwrap(), "--key", key.to_str().unwrap()]);
        assert_eq!((status["code"].as_i64(), status["reason"].as_str()), (Some(401), Some("Unauthorized")), "{}", crt.display());
        // A valid token still authenticates beside a refused certificate.
        let status = request(&["--cert", crt.to_str().unwrap(), "--key", key.to_str().unwrap(), "-H", "Authorization: Bearer dave-token"]);
        assert_eq!(status["code"].as_i64(), Some(403), "{status}");
    }
    assert!(c.log().lines().all(|l| !l.contains("panicked")), "{}", c.log());
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let c = cluster(&[]);
    let alice = token(&c, "alice", "alice-token");
    c.ok(&["create", "clusterrole", "impersonate-bob", "--verb=impersonate", "--resource=users", "--resource-name=bob"]);
    c.ok(&["create", "clusterrole", "impersonate-readers", "--verb=impersonate", "--resource=groups", "--resource-name=readers"]);
    c.ok(&["create", "clusterrolebinding", "alice-as-bob", "--clusterrole=impersonate-bob", "--user=alice"]);
    let whoami = text(&kubectl_with(&alice, &["auth", "whoami", "--as", "bob"], None));
    assert!(whoami.contains("bob") && whoami.contains("[system:authenticated]"), "{whoami}");
    // (`auth whoami` hides a 403's message, `get` shows it.)
    let out = text(&kubectl_with(&alice, &["get", "pods", "--as", "carol"], None));
    assert!(out.contains(r#"users "carol" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#), "{out}");
    let out = text(&kubectl_with(&alice, &["get", "pods", "--as", "bob", "--as-group", "readers"], None));
    assert!(out.contains(r#"groups "readers" is forbidden"#), "{out}");
    c.ok(&["create", "clusterrolebinding", "alice-as-readers", "--clusterrole=impersonate-readers", "--user=alice"]);
    let whoami = text(&kubectl_with(&alice, &["auth", "whoami", "--as", "bob", "--as-group", "readers"], None));
    assert!(whoami.contains("[readers system:authenticated]"), "{whoami}");
    // The impersonated user's permissions apply, not the impersonator's.
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["create", "rolebinding", "bob-view", "-n", "team", "--clusterrole=view", "--user=bob"]);
    c.wait_for(&["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}"], "view to aggregate", |r| r.contains("pods"));
    assert!(kubectl_with(&alice, &["get", "pods", "-n", "team", "--as", "bob"], None).status.success());
    assert!(!kubectl_with(&alice, &["get", "pods", "-n", "team"], None).status.success());
}

#[test]
fn rbac_escalation_is_prevented() {
    let c = cluster(&[]);
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["create", "rolebinding", "alice-admin", "-n", "team", "--clusterrole=admin", "--user=alice"]);
    c.wait_for(&["get", "clusterrole", "admin", "-o", "jsonpath={.rules[*].resources}"], "admin to aggregate", |r| r.contains("rolebindings"));
    let alice = token(&c, "alice", "alice-token");
    let alice_do = |args: &[&str]| kubectl_with(&alice, args, None);
    // What alice holds she may grant.
    assert!(alice_do(&["create", "role", "pod-reader", "-n", "team", "--verb=get", "--resource=pods"]).status.success());
    assert!(alice_do(&["create", "rolebinding", "dave-view", "-n", "team", "--clusterrole=view", "--user=dave"]).status.success());
    // What she does not hold she may not.
    let out = text(&alice_do(&["create", "role", "everything", "-n", "team", "--verb=*", "--resource=*"]));
    assert!(out.contains("roles.rbac.authorization.k8s.io \"everything\" is forbidden: user \"alice\" (groups=[\"dev\" \"ops\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"*\"], Verbs:[\"*\"]}"), "{out}");
    let out = text(&alice_do(&["create", "rolebinding", "dave-admin", "-n", "team", "--clusterrole=cluster-admin", "--user=dave"]));
    assert!(out.contains("is attempting to grant RBAC permissions not currently held"), "{out}");
    let out = text(&alice_do(&["create", "role", "node-reader", "-n", "default", "--verb=get", "--resource=pods"]));
    assert!(out.contains("forbidden"), "{out}");
    // `bind` on a role lets her bind it without holding it; `escalate` lets her write any role.
    c.ok(&["create", "role", "binder", "-n", "team", "--verb=bind", "--resource=clusterroles.rbac.authorization.k8s.io", "--resource-name=cluster-admin"]);
    c.ok(&["create", "rolebinding", "alice-binder", "-n", "team", "--role=binder", "--user=alice"]);
    assert!(alice_do(&["create", "rolebinding", "dave-admin", "-n", "team", "--clusterrole=cluster-admin", "--user=dave"]).status.success());
    c.ok(&["create", "role", "escalator", "-n", "team", "--verb=escalate", "--resource=roles.rbac.authorization.k8s.io"]);
    c.ok(&["create", "rolebinding", "alice-escalator", "-n", "team", "--role=escalator", "--user=alice"]);
    assert!(alice_do(&["create", "role", "everything", "-n", "team", "--verb=*", "--resource=*"]).status.success());
    // A patch that would add a rule is checked as well.
    let patch = r#"[{"op": "add", "path": "/rules/-", "value": {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}}]"#;
    c.ok(&["delete", "rolebinding", "alice-escalator", "-n", "team"]);
    let out = text(&alice_do(&["patch", "role", "pod-reader", "-n", "team", "--type=json", "-p", patch]));
    assert!(out.contains("attempting to grant RBAC permissions not currently held"), "{out}");
}

/// A CertificateSigningRequest for `subject` (`/CN=…/O=…`) to `signer`.
fn csr(dir: &Path, name: &str, subject: &str, signer: &str) -> String {
    let (key, pem) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.csr")));
    let out = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&pem).unwrap());
    format!("apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {request}\n  signerName: {signer}\n  usages: [client auth]\n")
}

/// Upstream's CertificateApproval, CertificateSigning and
/// CertificateSubjectRestriction admission: approving and signing a
/// request take `approve` and `sign` on its signer, and the API server's
/// client signer never issues `system:masters`.
#[test]
fn certificate_approval_and_signing_need_the_signer_verbs() {
    let c = cluster(&[]);
    let dir = tempfile::tempdir().unwrap();
    c.ok_stdin(&["create", "-f", "-"], Some(&csr(dir.path(), "req", "/CN=carol/O=dev", "kubernetes.io/kube-apiserver-client")));
    c.ok(&["create", "clusterrole", "csr-editor", "--verb=get,list,update,patch", "--resource=certificatesigningrequests,certificatesigningrequests/approval,certificatesigningrequests/status"]);
    c.ok(&["create", "clusterrolebinding", "alice-csr-editor", "--clusterrole=csr-editor", "--user=alice"]);
    let alice = token(&c, "alice", "alice-token");

    let out = text(&kubectl_with(&alice, &["certificate", "approve", "req"], None));
    assert!(out.contains(r#"user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client""#), "{out}");
    assert!(c.ok(&["get", "csr", "req", "--no-headers"]).contains("Pending"), "nothing was approved");

    // `approve` on the signer's domain is enough.
    // Signers are no served resource, so kubectl's generator refuses them.
    let approver = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: approver}\nrules:\n- {apiGroups: [certificates.k8s.io], resources: [signers], resourceNames: [kubernetes.io/*], verbs: [approve]}\n";
    c.ok_stdin(&["create", "-f", "-"], Some(approver));
    c.ok(&["create", "clusterrolebinding", "alice-approver", "--clusterrole=approver", "--user=alice"]);
    let out = kubectl_with(&alice, &["certificate", "approve", "req"], None);
    assert!(out.status.success(), "{}", text(&out));

    // Issuing a certificate is signing, which alice may not do; the
    // controller manager may, for the built-in signers. (A signer of its
    // own, which no controller serves, keeps the request unsigned while
    // alice tries; the certificate she sends is well formed, so it is
    // admission, after validation, that refuses it.)
    c.ok_stdin(&["create", "-f", "-"], Some(&csr(dir.path(), "custom", "/CN=carol", "example.com/custom")));
    c.ok(&["certificate", "approve", "custom"]);
    let pem = base64::engine::general_purpose::STANDARD.encode(std::fs::read(c.ca_file()).unwrap());
    let patch = format!(r#"{{"status":{{"certificate":"{pem}"}}}}"#);
    let out = text(&kubectl_with(&alice, &["patch", "csr", "custom", "--subresource=status", "--type=merge", "-p", &patch], None));
    assert!(out.contains(r#"user not permitted to sign requests with signerName "example.com/custom""#), "{out}");
    c.wait_for(&["get", "csr", "req", "--no-headers"], "the controller manager to issue the certificate", |l| l.trim_end().ends_with("Approved,Issued"));

    let masters = csr(dir.path(), "masters", "/CN=eve/O=system:masters", "kubernetes.io/kube-apiserver-client");
    let out = c.fails(&["create", "-f", "-"], Some(&masters));
    assert!(out.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"), "{out}");
    let other_signer = csr(dir.path(), "masters", "/CN=eve/O=system:masters", "example.com/signer");
    c.ok_stdin(&["create", "-f", "-"], Some(&other_signer));
}

/// SubjectAccessReview, LocalSubjectAccessReview and TokenReview.
/// [sig-auth] SubjectReview should support SubjectReview API operations [Conformance]
#[test]
fn access_reviews_answer_for_any_user() {
    let c = cluster(&[]);
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["create", "rolebinding", "alice-edit", "-n", "team", "--clusterrole=edit", "--user=alice"]);
    c.wait_for(&["get", "clusterrole", "edit", "-o", "jsonpath={.rules[*].resources}"], "edit to aggregate", |r| r.contains("deployments"));
    let review = |kind: &str, ns: Option<&str>, spec: &str| {
        let body = format!(r#"{{"apiVersion": "authorization.k8s.io/v1", "kind": "{kind}", "spec": {spec}}}"#);
        // Reviews have no PATCH operation: kubectl validates them against
        // the OpenAPI v2 document in protobuf.
        let mut args = vec!["create", "-f", "-", "-o", "json"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        serde_json::from_str::<serde_json::Value>(&c.ok_stdin(&args, Some(&body))).unwrap()["status"].clone()
    };
    let sar = |user: &str, verb: &str, ns: &str| {
        review("SubjectAccessReview", None, &format!(r#"{{"user": "{user}", "resourceAttributes": {{"verb": "{verb}", "group": "apps", "resource": "deployments", "namespace": "{ns}"}}}}"#))
    };
    assert_eq!(sar("alice", "create", "team")["allowed"], true);
    assert_eq!(sar("alice", "create", "default")["allowed"], false);
    assert_eq!(sar("bob", "get", "team")["allowed"], false);
    let group = review("SubjectAccessReview", None, r#"{"user": "x", "groups": ["system:masters"], "nonResourceAttributes": {"verb": "get", "path": "/metrics"}}"#);
    assert_eq!(group["allowed"], true);
    let local = review("LocalSubjectAccessReview", Some("team"), r#"{"user": "alice", "resourceAttributes": {"verb": "delete", "resource": "secrets", "namespace": "team"}}"#);
    assert_eq!(local["allowed"], true);
    // A local review about another namespace is refused.
    let body = r#"{"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview", "spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}}"#;
    assert!(c.fails(&["create", "-n", "team", "-f", "-"], Some(body)).contains("must match"));
    // TokenReview resolves static tokens.
    let body = r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "alice-token"}}"#;
    let status = serde_json::from_str::<serde_json::Value>(&c.ok_stdin(&["create", "-f", "-", "-o", "json"], Some(body))).unwrap()["status"].clone();
    assert_eq!((status["authenticated"].clone(), status["user"]["username"].clone(), status["user"]["uid"].clone()), (serde_json::json!(true), serde_json::json!("alice"), serde_json::json!("1001")));
    let body = r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "forged"}}"#;
    let status = serde_json::from_str::<serde_json::Value>(&c.ok_stdin(&["create", "-f", "-", "-o", "json"], Some(body))).unwrap()["status"].clone();
    assert_ne!(status["authenticated"], true);
}

#[test]
fn service_account_tokens_are_signed_bound_and_checked() {
    let c = cluster(&[]);
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    c.ok(&["create", "rolebinding", "robot-view", "-n", "team", "--clusterrole=view", "--serviceaccount=team:robot"]);
    c.wait_for(&["get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}"], "view to aggregate", |r| r.contains("pods"));
    let token = c.ok(&["create", "token", "robot", "-n", "team"]).trim().to_string();
    let robot = c.kubeconfig_for("robot", &format!("{{token: {token}}}"));
    let whoami = text(&kubectl_with(&robot, &["auth", "whoami"], None));
    assert!(whoami.contains("system:serviceaccount:team:robot") && whoami.contains("[system:serviceaccounts system:serviceaccounts:team system:authenticated]"), "{whoami}");
    assert!(kubectl_with(&robot, &["get", "pods", "-n", "team"], None).status.success());
    let out = text(&kubectl_with(&robot, &["get", "pods", "-n", "default"], None));
    assert!(out.contains(r#"User "system:serviceaccount:team:robot" cannot list resource "pods""#), "{out}");
    // A tampered token, a token for another audience, and a token of a
    // deleted account are all 401.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"iss":"https://kubernetes.default.svc.cluster.local","sub":"system:serviceaccount:kube-system:admin","aud":["https://kubernetes.default.svc.cluster.local"],"exp":9999999999}"#);
    parts[1] = &forged_claims;
    let forged = c.kubeconfig_for("forged", &format!("{{token: {}}}", parts.join(".")));
    assert!(text(&kubectl_with(&forged, &["auth", "whoami"], None)).contains("Unauthorized"));
    let elsewhere = c.ok(&["create", "token", "robot", "-n", "team", "--audience=vault"]).trim().to_string();
    let elsewhere = c.kubeconfig_for("elsewhere", &format!("{{token: {elsewhere}}}"));
    assert!(text(&kubectl_with(&elsewhere, &["auth", "whoami"], None)).contains("Unauthorized"));
    // Too short a lifetime is refused as upstream refuses it.
    let err = c.fails(&["create", "token", "robot", "-n", "team", "--duration=1m"], None);
    assert!(err.contains(r#"TokenRequest.authentication.k8s.io "robot" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#), "{err}");
    // The issuer and its keys are discoverable.
    let config: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/.well-known/openid-configuration"])).unwrap();
    assert_eq!(config["issuer"], "https://kubernetes.default.svc.cluster.local");
    let keys: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    assert_eq!(keys["keys"][0]["alg"], "ES256");
    // A legacy token Secret, when asked for, holds a token that works while it exists.
    let legacy = r#"{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token", "metadata": {"name": "robot-token", "annotations": {"kubernetes.io/service-account.name": "robot"}}}"#;
    c.ok_stdin(&["create", "-n", "team", "-f", "-"], Some(legacy));
    let stored = c.json(&["get", "secret", "robot-token", "-n", "team", "-o", "json"]);
    let decode = |k: &str| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(stored["data"][k].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(decode("namespace"), "team");
    assert!(decode("ca.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    let old_style = c.kubeconfig_for("legacy", &format!("{{token: {}}}", decode("token")));
    assert!(text(&kubectl_with(&old_style, &["auth", "whoami"], None)).contains("system:serviceaccount:team:robot"));
    c.ok(&["delete", "secret", "robot-token", "-n", "team"]);
    assert!(text(&kubectl_with(&old_style, &["auth", "whoami"], None)).contains("Unauthorized"));
    c.ok(&["delete", "serviceaccount", "robot", "-n", "team"]);
    assert!(text(&kubectl_with(&robot, &["auth", "whoami"], None)).contains("Unauthorized"));
}

/// Everything SQLite holds on disk (the database and its write-ahead log).
fn raw_store(c: &Cluster) -> Vec<u8> {
    let db = c.data_dir().join("data/server/db");
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(db).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    bytes
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_are_encrypted_at_rest_and_keys_rotate() {
    let config = |providers: &str| format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: {providers}\n");
    let (first, second) = (base64::engine::general_purpose::STANDARD.encode([1u8; 32]), base64::engine::general_purpose::STANDARD.encode([2u8; 32]));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config(&format!("[{{aesgcm: {{keys: [{{name: first, secret: {first}}}]}}}}, {{identity: {{}}}}]"))).unwrap();
    let mut c = Cluster::start_with(&["--encryption-provider-config", file.path().to_str().unwrap()]);
    c.ok(&["create", "secret", "generic", "db", "--from-literal=password=hunter2-plaintext"]);
    c.ok(&["create", "configmap", "open", "--from-literal=note=visible-plaintext"]);
    // Clients see the value; the store holds only ciphertext.
    let value = c.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(value).unwrap(), b"hunter2-plaintext");
    let raw = raw_store(&c);
    let encoded = base64::engine::general_purpose::STANDARD.encode("hunter2-plaintext");
    assert!(holds(&raw, "visible-plaintext"), "the raw store is readable for what is not encrypted");
    assert!(!holds(&raw, &encoded) && !holds(&raw, "hunter2"), "a secret's value is in the raw store");
    assert!(holds(&raw, "k8s:enc:aesgcm:v1:first:"));
    // Rotation: the new key first, the old one still read; rewriting moves every secret to the new key.
    std::fs::write(file.path(), config(&format!("[{{secretbox: {{keys: [{{name: second, secret: {second}}}]}}}}, {{aesgcm: {{keys: [{{name: first, secret: {first}}}]}}}}]"))).unwrap();
    c.stop();
    c.boot();
    let all = c.ok(&["get", "secrets", "-A", "-o", "json"]);
    // (kubectl validates a List against the OpenAPI v2 document in protobuf.)
    c.ok_stdin(&["replace", "-f", "-"], Some(&all));
    assert_eq!(c.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]), encoded);
    c.ok(&["create", "secret", "generic", "later", "--from-literal=token=second-plaintext"]);
    let raw = raw_store(&c);
    assert!(holds(&raw, "k8s:enc:secretbox:v1:second:") && !holds(&raw, "second-plaintext"));
    // A key that is gone from the configuration cannot read what it wrote.
    std::fs::write(file.path(), config(&format!("[{{aesgcm: {{keys: [{{name: other, secret: {first}}}]}}}}]"))).unwrap();
    c.stop();
    c.boot();
    assert!(!c.kubectl(&["get", "secret", "later"]).status.success());
}

#[test]
fn audit_log_follows_the_policy() {
    let files = tempfile::tempdir().unwrap();
    let (policy, log) = (files.path().join("policy.yaml"), files.path().join("audit.log"));
    std::fs::write(&policy, r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:nodes"]
- level: None
  users: ["system:kube-controller-manager", "system:kube-scheduler"]
- level: RequestResponse
  resources: [{group: "", resources: ["configmaps"]}]
- level: Metadata
  resources: [{group: "", resources: ["secrets", "pods"]}]
- level: None
"#).unwrap();
    let c = cluster(&["--audit-policy-file", policy.to_str().unwrap(), "--audit-log-path", log.to_str().unwrap()]);
    let alice = token(&c, "alice", "alice-token");
    c.ok(&["create", "rolebinding", "alice-edit", "-n", "default", "--clusterrole=edit", "--user=alice"]);
    c.wait_for(&["get", "clusterrole", "edit", "-o", "jsonpath={.rules[*].resources}"], "edit to aggregate", |r| r.contains("configmaps"));
    assert!(kubectl_with(&alice, &["create", "configmap", "audited", "--from-literal=k=v"], None).status.success());
    assert!(!kubectl_with(&alice, &["get", "secrets", "-n", "kube-system"], None).status.success());
    c.ok(&["get", "secrets", "-n", "default", "--as", "alice"]);
    // PodSecurity's audit mode annotates the event of a violating pod.
    c.ok(&["label", "namespace", "default", "pod-security.kubernetes.io/audit=restricted"]);
    c.ok(&["run", "loose", "--image=busybox"]);
    // A body over the limit is refused as without auditing (413), not read short.
    let huge = format!(r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "huge"}}, "data": {{"k": "{}"}}}}"#, "x".repeat(4 << 20));
    let huge_file = files.path().join("huge.json");
    std::fs::write(&huge_file, huge).unwrap();
    let out = c.kubectl(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", huge_file.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("too large"), "{}", text(&out));
    let stranger = c.kubeconfig_for("stranger", "{token: nope}");
    assert!(!kubectl_with(&stranger, &["get", "secrets"], None).status.success());
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.iter().all(|e| e["apiVersion"] == "audit.k8s.io/v1" && e["kind"] == "Event" && e["stage"] != "RequestReceived"), "{events:?}");
    let created = events.iter().find(|e| e["verb"] == "create" && e["objectRef"]["name"] == "audited").expect("the create is audited");
    assert_eq!((created["level"].clone(), created["user"]["username"].clone(), created["responseStatus"]["code"].clone()), (serde_json::json!("RequestResponse"), serde_json::json!("alice"), serde_json::json!(201)));
    assert_eq!(created["requestObject"]["data"]["k"], "v");
    assert_eq!(created["responseObject"]["metadata"]["name"], "audited");
    let denied = events.iter().find(|e| e["verb"] == "list" && e["objectRef"]["namespace"] == "kube-system").expect("the denied list is audited");
    assert_eq!((denied["level"].clone(), denied["responseStatus"]["code"].clone()), (serde_json::json!("Metadata"), serde_json::json!(403)));
    assert!(denied.get("responseObject").is_none());
    let impersonated = events.iter().find(|e| e["impersonatedUser"]["username"] == "alice").expect("impersonation is audited");
    assert_eq!(impersonated["user"]["username"], "skiff-admin");
    let failed = events.iter().find(|e| e["responseStatus"]["code"] == 401).expect("a failed authentication is audited");
    assert_eq!((failed["stage"].clone(), failed["user"]["username"].clone()), (serde_json::json!("ResponseStarted"), serde_json::json!("")));
    let pod = events.iter().find(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "pods").expect("the pod's create is audited");
    let violations = pod["annotations"]["pod-security.kubernetes.io/audit-violations"].as_str().unwrap_or_default();
    assert!(violations.starts_with(r#"would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#), "{pod}");
    assert!(events.iter().all(|e| ["configmaps", "secrets", "pods"].iter().any(|r| e["objectRef"]["resource"] == *r)), "the catch-all rule is None");
}

#[test]
fn bootstrap_tokens_authenticate_until_they_expire() {
    let c = cluster(&[]);
    let create = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff")).args(["token", "create", "--kubeconfig"]).arg(c.kubeconfig()).args(args).output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let token = create(&[]);
    assert!(token.len() == 23 && token.as_bytes()[6] == b'.', "{token}");
    let joining = c.kubeconfig_for("joining", &format!("{{token: {token}}}"));
    let whoami = text(&kubectl_with(&joining, &["auth", "whoami"], None));
    let id = &token[..6];
    assert!(whoami.contains(&format!("system:bootstrap:{id}")) && whoami.contains("[system:bootstrappers system:bootstrappers:skiff:default-node-token system:authenticated]"), "{whoami}");
    // A wrong secret for a real id, and an expired token, are 401.
    let forged = c.kubeconfig_for("forged", &format!("{{token: {id}.0123456789abcdef}}"));
    assert!(text(&kubectl_with(&forged, &["auth", "whoami"], None)).contains("Unauthorized"));
    let short = create(&["--ttl", "1s"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let expired = c.kubeconfig_for("expired", &format!("{{token: {short}}}"));
    assert!(text(&kubectl_with(&expired, &["auth", "whoami"], None)).contains("Unauthorized"));
    assert!(Command::new(env!("CARGO_BIN_EXE_skiff")).args(["token", "create", "--groups", "admins", "--kubeconfig"]).arg(c.kubeconfig()).output().unwrap().status.code() != Some(0));
}

/// A kubelet's identity: the Node authorizer's rules and NodeRestriction.
#[test]
fn nodes_may_change_only_their_own_objects() {
    let c = cluster(&[]);
    let n1 = certificate(&c, "system:node:n1", &["system:nodes"]);
    let node = |name: &str| format!(r#"{{"apiVersion": "v1", "kind": "Node", "metadata": {{"name": "{name}"}}}}"#);
    let out = kubectl_with(&n1, &["create", "-f", "-"], Some(&node("n1")));
    assert!(out.status.success(), "{}", text(&out));
    let out = text(&kubectl_with(&n1, &["create", "-f", "-"], Some(&node("n2"))));
    assert!(out.contains(r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#), "{out}");
    let lease = |name: &str| format!(r#"{{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {{"name": "{name}", "namespace": "kube-node-lease"}}}}"#);
    assert!(kubectl_with(&n1, &["create", "-f", "-"], Some(&lease("n1"))).status.success());
    let out = text(&kubectl_with(&n1, &["create", "-f", "-"], Some(&lease("n2"))));
    assert!(out.contains("can only access node lease with the same name as the requesting node"), "{out}");
    let pod = |name: &str, node: &str, mirror: bool| {
        let annotations = if mirror { r#", "annotations": {"kubernetes.io/config.mirror": "hash"}"# } else { "" };
        format!(r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}", "namespace": "default"{annotations}}}, "spec": {{"nodeName": "{node}", "containers": [{{"name": "c", "image": "busybox"}}]}}}}"#)
    };
    let out = text(&kubectl_with(&n1, &["create", "-f", "-"], Some(&pod("plain", "n1", false))));
    assert!(out.contains(r#"pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#), "{out}");
    assert!(kubectl_with(&n1, &["create", "-f", "-"], Some(&pod("static", "n1", true))).status.success());
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("elsewhere", "n2", false)));
    let out = text(&kubectl_with(&n1, &["delete", "pod", "elsewhere", "-n", "default"], None));
    assert!(out.contains(r#"node "n1" can only delete pods with spec.nodeName set to itself"#), "{out}");
    // Secrets and configmaps are readable only through a pod bound to the node.
    c.ok(&["create", "secret", "generic", "db", "--from-literal=p=1"]);
    c.ok(&["create", "secret", "generic", "other", "--from-literal=p=2"]);
    c.ok(&["create", "configmap", "settings", "--from-literal=k=v"]);
    let user = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user", "namespace": "default"}, "spec": {"nodeName": "n1",
        "containers": [{"name": "c", "image": "busybox", "envFrom": [{"configMapRef": {"name": "settings"}}]}],
        "volumes": [{"name": "creds", "secret": {"secretName": "db"}}]}}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(user));
    for (kind, name) in [("secret", "db"), ("configmap", "settings")] {
        let out = kubectl_with(&n1, &["get", kind, name, "-n", "default"], None);
        assert!(out.status.success(), "{kind} {name}: {}", text(&out));
    }
    let out = text(&kubectl_with(&n1, &["get", "secret", "other", "-n", "default"], None));
    assert!(out.contains(r#"secrets "other" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#), "{out}");
    let out = text(&kubectl_with(&n1, &["get", "secrets", "-n", "default"], None));
    assert!(out.contains("forbidden"), "a node may not list every secret: {out}");
}
