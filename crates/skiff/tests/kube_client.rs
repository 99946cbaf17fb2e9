//! The `kube` crate against a real `skiff server`: typed API calls, a
//! watcher feeding a reflector and server-side apply, as every controller
//! built on kube-rs uses them.

mod common;

use std::time::Duration;

use common::Cluster;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Config};
use serde_json::json;

async fn client(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

fn configmap(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "data": {"k": "v"},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_api_calls() {
    let c = Cluster::start();
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms.create(&PostParams::default(), &configmap("typed", "kube")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let got = cms.get("typed").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");

    let patched = cms
        .patch("typed", &PatchParams::default(), &Patch::Merge(json!({"data": {"k2": "v2"}})))
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap().len(), 2);

    let listed = cms.list(&ListParams::default().labels("app=kube")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.resource_version.is_some());

    let mut replaced = patched.clone();
    replaced.data.as_mut().unwrap().insert("k3".into(), "v3".into());
    let replaced = cms.replace("typed", &PostParams::default(), &replaced).await.unwrap();
    // Replacing with the old version now conflicts.
    let err = cms.replace("typed", &PostParams::default(), &patched).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 409 && e.reason == "Conflict"), "{err}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                 "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}},
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let strategic = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 81}]}]}}}});
    let d = deployments.patch("d", &PatchParams::default(), &Patch::Strategic(strategic)).await.unwrap();
    let ports = d.spec.unwrap().template.spec.unwrap().containers[0].ports.clone().unwrap();
    assert_eq!(ports.iter().map(|p| p.container_port).collect::<Vec<_>>(), [80, 81]);

    // Every write is recorded in managedFields.
    let fields = cms.get("typed").await.unwrap().metadata.managed_fields.unwrap();
    assert_eq!(fields[0].operation.as_deref(), Some("Update"));
    assert_eq!(fields[0].fields_v1.as_ref().unwrap().0["f:data"], json!({"f:k": {}, "f:k2": {}, "f:k3": {}}));
    assert_eq!(replaced.metadata.managed_fields, Some(fields));

    cms.delete("typed", &DeleteParams::default()).await.unwrap();
    let err = cms.get("typed").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 404), "{err}");
}

/// As upstream's GuaranteedUpdate: a write that leaves the stored object
/// as it was is not written, and the resourceVersion stays; also for a
/// kind served in a version other than the one stored (HPA v1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_change_nothing_keep_the_resource_version() {
    use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
    // No controllers: the HPA controller would write the HPA's status in between.
    let c = Cluster::start_with(&["--disable-controller-manager"]);
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms.create(&PostParams::default(), &configmap("same", "kube")).await.unwrap();
    let rv = created.metadata.resource_version.clone();
    let patched = cms.patch("same", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v"}}))).await.unwrap();
    assert_eq!(patched.metadata.resource_version, rv, "a patch to the same value");
    let replaced = cms.replace("same", &PostParams::default(), &created).await.unwrap();
    assert_eq!(replaced.metadata.resource_version, rv, "a replace with the object as it is");
    let changed = cms.patch("same", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "w"}}))).await.unwrap();
    assert_ne!(changed.metadata.resource_version, rv);

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa = serde_json::from_value(json!({
        "metadata": {"name": "h"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
    }))
    .unwrap();
    let created = hpas.create(&PostParams::default(), &hpa).await.unwrap();
    let patched = hpas.patch("h", &PatchParams::default(), &Patch::Merge(json!({"spec": {"maxReplicas": 3}}))).await.unwrap();
    assert_eq!(patched.metadata.resource_version, created.metadata.resource_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_feeds_a_reflector() {
    let c = Cluster::start();
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &configmap("before", "refl")).await.unwrap();

    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default().labels("app=refl")))
        .applied_objects()
        .boxed();
    let drain = tokio::spawn(stream.for_each(|_| async {}));

    for i in 0..5 {
        cms.create(&PostParams::default(), &configmap(&format!("after-{i}"), "refl")).await.unwrap();
    }
    cms.create(&PostParams::default(), &configmap("other", "elsewhere")).await.unwrap();
    cms.delete("after-0", &DeleteParams::default()).await.unwrap();

    let want = ["after-1", "after-2", "after-3", "after-4", "before"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut names: Vec<String> = reader.state().iter().map(|cm| cm.metadata.name.clone().unwrap()).collect();
        names.sort();
        if names == want {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the reflector holds {names:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain.abort();
}

/// A watch that starts with the current state (`sendInitialEvents`,
/// kube-rs's streaming lists): every object as ADDED, in chunks of many
/// objects (here more than one chunk's worth), then upstream's
/// `initial-events-end` bookmark, then the changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_list_sends_the_state_then_the_changes() {
    let c = Cluster::start();
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let filler = "x".repeat(1024);
    for i in 0..150 {
        let mut cm = configmap(&format!("s-{i:03}"), "stream");
        cm.data.as_mut().unwrap().insert("filler".into(), filler.clone());
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut events = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, events.next()).await.expect("the initial state in time").unwrap().unwrap();
        match event {
            watcher::Event::InitApply(cm) => initial.push(cm.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    // The namespace's own root CA ConfigMap is in its state too.
    let want: Vec<String> = std::iter::once("kube-root-ca.crt".to_string()).chain((0..150).map(|i| format!("s-{i:03}"))).collect();
    initial.sort();
    assert_eq!(initial, want);
    cms.create(&PostParams::default(), &configmap("later", "stream")).await.unwrap();
    loop {
        let event = tokio::time::timeout_at(deadline, events.next()).await.expect("the change in time").unwrap().unwrap();
        if let watcher::Event::Apply(cm) = event {
            assert_eq!(cm.metadata.name.as_deref(), Some("later"));
            break;
        }
    }
}

/// Server-side apply through kube-rs, as controllers use it: create by
/// apply, re-apply, conflict with another manager, force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply() {
    let c = Cluster::start();
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let config = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"owned": value}});

    let ctrl = PatchParams::apply("controller-a");
    let created = cms.patch("ssa", &ctrl, &Patch::Apply(config("1"))).await.unwrap();
    let fields = created.metadata.managed_fields.unwrap();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].manager.as_deref(), Some("controller-a"));
    assert_eq!(fields[0].operation.as_deref(), Some("Apply"));
    assert_eq!(fields[0].fields_v1.as_ref().unwrap().0, json!({"f:data": {"f:owned": {}}}));

    // Re-applying the same configuration changes nothing.
    let again = cms.patch("ssa", &ctrl, &Patch::Apply(config("1"))).await.unwrap();
    assert_eq!(again.metadata.resource_version, created.metadata.resource_version);

    // Another manager changing the field conflicts, naming the owner.
    let other = PatchParams::apply("controller-b");
    let err = cms.patch("ssa", &other, &Patch::Apply(config("2"))).await.unwrap_err();
    let kube::Error::Api(status) = err else { panic!("{err}") };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(status.message, "Apply failed with 1 conflict: conflict with \"controller-a\" using v1: .data.owned");

    // Forced, the field changes hands.
    let forced = cms.patch("ssa", &other.force(), &Patch::Apply(config("2"))).await.unwrap();
    assert_eq!(forced.data.unwrap()["owned"], "2");
    let managers: Vec<String> = forced.metadata.managed_fields.unwrap().iter().filter_map(|f| f.manager.clone()).collect();
    assert_eq!(managers, ["controller-b"]);

    // Apply requires a field manager.
    let err = cms.patch("ssa", &PatchParams::default(), &Patch::Apply(config("3"))).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 400), "{err}");
}

/// Beyond `--max-mutating-requests-inflight`, writes get upstream's 429
/// with `retryAfterSeconds` and a `Retry-After` header; reads are limited
/// separately and still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_in_flight_limit_get_429() {
    let c = Cluster::start_with(&["--max-mutating-requests-inflight", "1"]);
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    // The controllers' own writes (Leases, events) take the one slot now
    // and then: a burst that met one of them throughout is tried again.
    let mut acknowledged = 0;
    for round in 0..5 {
        let attempts = (0..64).map(|i| {
            let cms = cms.clone();
            async move { cms.create(&PostParams::default(), &configmap(&format!("burst-{round}-{i}"), "burst")).await }
        });
        let results = futures::future::join_all(attempts).await;
        let refused: Vec<&kube::core::ErrorResponse> = results
            .iter()
            .filter_map(|r| match r {
                Err(kube::Error::Api(e)) => Some(e),
                _ => None,
            })
            .collect();
        assert!(!refused.is_empty(), "64 concurrent writes through one slot: some must be refused");
        assert!(refused.iter().all(|e| e.code == 429 && e.reason == "TooManyRequests"), "{refused:?}");
        let created = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(created + refused.len(), 64);
        acknowledged += created;
        if created > 0 {
            break;
        }
    }
    assert!(acknowledged > 0, "no write got the slot in five bursts");
    // What was acknowledged is there; what was refused is not.
    assert_eq!(cms.list(&ListParams::default().labels("app=burst")).await.unwrap().items.len(), acknowledged);
}

/// GETs `path` raw: (status code, JSON body).
async fn get_raw(client: &Client, path: &str) -> (u16, serde_json::Value) {
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    let response = client.send(request.map(kube::client::Body::from)).await.unwrap();
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// [sig-api-machinery] Servers with support for API chunking should support continue listing from the last key if the original version has been compacted away, though the list is inconsistent [Slow] [Conformance]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_after_compaction_is_inconsistent_but_possible() {
    let c = Cluster::start_with(&["--etcd-compaction-interval", "1s"]);
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..30 {
        cms.create(&PostParams::default(), &configmap(&format!("chunk-{i:02}"), "chunks")).await.unwrap();
    }
    let path = "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dchunks&limit=10";
    let (code, first) = get_raw(&client, path).await;
    assert_eq!(code, 200);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let first_rv: i64 = first["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    // A write, then two compaction intervals: the first page's revision is gone.
    cms.create(&PostParams::default(), &configmap("chunk-late", "chunks")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, expired) = get_raw(&client, &format!("{path}&continue={token}")).await;
    assert_eq!((code, expired["reason"].as_str()), (410, Some("Expired")), "{expired}");
    let fresh = expired["metadata"]["continue"].as_str().expect("the 410 carries a token to go on with");
    let (code, rest) = get_raw(&client, &format!("{path}&continue={fresh}")).await;
    assert_eq!(code, 200, "{rest}");
    let names: Vec<&str> = rest["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names.first(), Some(&"chunk-10"), "it goes on after the last key of the first page");
    let rest_rv: i64 = rest["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rest_rv > first_rv, "the rest is read at the latest revision");
}

/// A whole list is streamed a page at a time from one snapshot: every
/// object once, in key order, none newer than the list's resourceVersion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lists_are_streamed_from_one_snapshot() {
    let c = Cluster::start();
    let client = client(&c).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let creates = futures::stream::iter(0..1_234).map(|i| {
        let cms = cms.clone();
        async move { cms.create(&PostParams::default(), &configmap(&format!("many-{i:04}"), "many")).await.unwrap() }
    });
    creates.buffer_unordered(16).collect::<Vec<_>>().await;
    let (listing, writing) = tokio::join!(get_raw(&client, "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dmany"), async {
        cms.create(&PostParams::default(), &configmap("many-late", "many")).await.unwrap()
    });
    let (code, list) = listing;
    assert_eq!(code, 200);
    let rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    let late_rv: i64 = writing.metadata.resource_version.unwrap().parse().unwrap();
    let expected = 1_234 + usize::from(late_rv <= rv);
    assert_eq!(names.len(), expected, "every object once");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "in key order");
    assert!(items.iter().all(|i| i["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() <= rv));
}

/// The Service as a client-go test's `UpdateService` changes it: GET,
/// change, PUT.
async fn update_service(services: &Api<k8s_openapi::api::core::v1::Service>, name: &str, change: impl Fn(&mut k8s_openapi::api::core::v1::ServiceSpec)) -> k8s_openapi::api::core::v1::Service {
    let mut svc = services.get(name).await.unwrap();
    change(svc.spec.as_mut().unwrap());
    services.replace(name, &PostParams::default(), &svc).await.unwrap()
}

fn service_of(spec: serde_json::Value) -> k8s_openapi::api::core::v1::Service {
    serde_json::from_value(json!({"metadata": {"name": "svc"}, "spec": spec})).unwrap()
}

fn in_service_cidr(ip: &str) -> bool {
    ip.starts_with("10.43.") && ip != "10.43.0.1"
}

/// [sig-network] Services should be able to change the type from ExternalName to ClusterIP [Conformance]
/// An ExternalName Service has no cluster IP; replaced as a ClusterIP
/// Service (the port and protocol the e2e test gives it), it gets one,
/// with the fields upstream fills in for the new type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_change_type_from_external_name_to_cluster_ip() {
    use k8s_openapi::api::core::v1::{Service, ServicePort};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let c = Cluster::start();
    let services: Api<Service> = Api::namespaced(client(&c).await, "default");
    let created = services.create(&PostParams::default(), &service_of(json!({"type": "ExternalName", "externalName": "foo.example.com", "ports": [{"port": 80}]}))).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!((spec.cluster_ip, spec.cluster_ips, spec.ip_families, spec.internal_traffic_policy), (None, None, None, None), "no cluster IP for an ExternalName Service");

    let updated = update_service(&services, "svc", |s| {
        s.type_ = Some("ClusterIP".into());
        s.external_name = None;
        s.ports = Some(vec![ServicePort { port: 80, name: Some("http".into()), protocol: Some("TCP".into()), target_port: Some(IntOrString::Int(9376)), ..Default::default() }]);
    })
    .await;
    let spec = updated.spec.unwrap();
    let ip = spec.cluster_ip.clone().expect("a cluster IP once ClusterIP");
    assert!(in_service_cidr(&ip), "{ip}");
    assert_eq!(spec.cluster_ips, Some(vec![ip.clone()]));
    assert_eq!((spec.ip_families, spec.ip_family_policy.as_deref()), (Some(vec!["IPv4".to_string()]), Some("SingleStack")));
    assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    assert_eq!(services.get("svc").await.unwrap().spec.unwrap().cluster_ip, Some(ip.clone()), "as stored");
    // The address is the Service's: another cannot take it.
    let err = services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "thief"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})).unwrap()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 422 && e.message.contains("provided IP is already allocated")), "{err}");

    // A merge patch changes the type the same way (kubectl patch).
    services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "patched"}, "spec": {"type": "ExternalName", "externalName": "foo.example.com"}})).unwrap()).await.unwrap();
    let patch = json!({"spec": {"type": "ClusterIP", "externalName": null, "ports": [{"port": 80}]}});
    let patched = services.patch("patched", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let patched_ip = patched.spec.unwrap().cluster_ip.unwrap();
    assert!(in_service_cidr(&patched_ip) && patched_ip != ip, "{patched_ip}");
    // A dry run shows an address and keeps none.
    services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "dry"}, "spec": {"type": "ExternalName", "externalName": "foo.example.com"}})).unwrap()).await.unwrap();
    let dry = PatchParams { dry_run: true, ..Default::default() };
    let shown = services.patch("dry", &dry, &Patch::Merge(json!({"spec": {"type": "ClusterIP", "externalName": null, "clusterIP": "10.43.0.99", "ports": [{"port": 80}]}}))).await.unwrap();
    assert_eq!(shown.spec.unwrap().cluster_ip.as_deref(), Some("10.43.0.99"));
    assert_eq!(services.get("dry").await.unwrap().spec.unwrap().cluster_ip, None);
    services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "taker"}, "spec": {"clusterIP": "10.43.0.99", "ports": [{"port": 80}]}})).unwrap()).await.unwrap();
}

/// [sig-network] Services should be able to change the type from ExternalName to NodePort [Conformance]
/// Replaced as a NodePort Service, it gets a cluster IP and a node port
/// from upstream's default range, and the externalTrafficPolicy default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_change_type_from_external_name_to_node_port() {
    use k8s_openapi::api::core::v1::{Service, ServicePort};
    let c = Cluster::start();
    let services: Api<Service> = Api::namespaced(client(&c).await, "default");
    services.create(&PostParams::default(), &service_of(json!({"type": "ExternalName", "externalName": "foo.example.com"}))).await.unwrap();
    let updated = update_service(&services, "svc", |s| {
        s.type_ = Some("NodePort".into());
        s.external_name = None;
        s.ports = Some(vec![ServicePort { port: 80, name: Some("http".into()), protocol: Some("TCP".into()), ..Default::default() }]);
    })
    .await;
    let spec = updated.spec.unwrap();
    assert!(in_service_cidr(spec.cluster_ip.as_deref().unwrap()), "{:?}", spec.cluster_ip);
    let port = &spec.ports.as_ref().unwrap()[0];
    let node_port = port.node_port.expect("a node port once NodePort");
    assert!((30000..=32767).contains(&node_port), "{node_port}");
    assert_eq!(port.target_port, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80)));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let table = c.ok(&["get", "svc", "svc", "-n", "default", "--no-headers"]);
    assert!(table.contains(&format!("80:{node_port}/TCP")) && table.contains("NodePort"), "{table}");
    // The node port is the Service's.
    let err = services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "thief"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}})).unwrap()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 422 && e.message.contains("provided port is already allocated")), "{err}");
}

/// [sig-network] Services should be able to change the type from ClusterIP to ExternalName [Conformance]
/// Replaced as an ExternalName Service, a ClusterIP Service loses its
/// cluster IPs, IP families and policy (upstream's
/// dropTypeDependentFields), and its address is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_change_type_from_cluster_ip_to_external_name() {
    use k8s_openapi::api::core::v1::Service;
    let c = Cluster::start();
    let services: Api<Service> = Api::namespaced(client(&c).await, "default");
    let created = services.create(&PostParams::default(), &service_of(json!({"ports": [{"port": 80}]}))).await.unwrap();
    let ip = created.spec.unwrap().cluster_ip.unwrap();
    assert!(in_service_cidr(&ip), "{ip}");
    let updated = update_service(&services, "svc", |s| {
        s.type_ = Some("ExternalName".into());
        s.external_name = Some("foo.example.com".into());
    })
    .await;
    let spec = updated.spec.unwrap();
    assert_eq!((spec.cluster_ip, spec.cluster_ips, spec.ip_families, spec.ip_family_policy, spec.internal_traffic_policy), (None, None, None, None, None));
    assert_eq!(spec.external_name.as_deref(), Some("foo.example.com"));
    let shown = c.ok(&["get", "svc", "svc", "-n", "default", "--no-headers"]);
    assert!(shown.split_whitespace().take(4).eq(["svc", "ExternalName", "<none>", "foo.example.com"]), "{shown}");
    // Its address is released: another Service may have it.
    services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "next"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})).unwrap()).await.unwrap();
    // A cluster IP the client keeps while changing to ExternalName is refused, as upstream.
    let err = c.fails(&["patch", "svc", "next", "-n", "default", "--type=merge", "-p", r#"{"spec":{"type":"ExternalName","externalName":"foo.example.com","clusterIP":"10.43.0.200"}}"#], None);
    assert!(err.contains("may not be set for ExternalName services") || err.contains("may not change once set"), "{err}");
    // kubectl patch: the same through a merge patch.
    c.ok(&["patch", "svc", "next", "-n", "default", "--type=merge", "-p", r#"{"spec":{"type":"ExternalName","externalName":"bar.example.com"}}"#]);
    let spec = c.json(&["get", "svc", "next", "-n", "default", "-o", "json"])["spec"].clone();
    assert!(spec.get("clusterIP").is_none() && spec.get("clusterIPs").is_none() && spec.get("ipFamilies").is_none(), "{spec}");
    services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "third"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})).unwrap()).await.unwrap();
}

/// [sig-network] Services should be able to change the type from NodePort to ExternalName [Conformance]
/// Replaced as an ExternalName Service, a NodePort Service loses its
/// cluster IP, node ports and externalTrafficPolicy, and both its address
/// and its node port are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_change_type_from_node_port_to_external_name() {
    use k8s_openapi::api::core::v1::Service;
    let c = Cluster::start();
    let services: Api<Service> = Api::namespaced(client(&c).await, "default");
    let created = services.create(&PostParams::default(), &service_of(json!({"type": "NodePort", "ports": [{"port": 80}]}))).await.unwrap();
    let spec = created.spec.unwrap();
    let (ip, node_port) = (spec.cluster_ip.unwrap(), spec.ports.unwrap()[0].node_port.unwrap());
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
    let updated = update_service(&services, "svc", |s| {
        s.type_ = Some("ExternalName".into());
        s.external_name = Some("foo.example.com".into());
    })
    .await;
    let spec = updated.spec.unwrap();
    assert_eq!((spec.cluster_ip, spec.cluster_ips, spec.external_traffic_policy), (None, None, None));
    assert_eq!(spec.ports.unwrap()[0].node_port, None, "node ports are cleared");
    let next = json!({"metadata": {"name": "next"}, "spec": {"type": "NodePort", "clusterIP": ip, "ports": [{"port": 80, "nodePort": node_port}]}});
    services.create(&PostParams::default(), &serde_json::from_value(next).unwrap()).await.unwrap();
    // NodePort → ClusterIP keeps the address and releases the node port.
    let updated = update_service(&services, "next", |s| s.type_ = Some("ClusterIP".into())).await;
    let spec = updated.spec.unwrap();
    assert_eq!((spec.cluster_ip.as_deref(), spec.ports.unwrap()[0].node_port, spec.external_traffic_policy), (Some(ip.as_str()), None, None));
    services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "third"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}})).unwrap()).await.unwrap();
}
