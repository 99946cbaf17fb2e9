//! The `kube` crate against a real `skiff server`: typed API calls, and a
//! watcher feeding a reflector, as every controller built on kube-rs uses it.

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

    // Server-side apply is not served yet: a clear 415, nothing changed.
    let err = cms
        .patch("typed", &PatchParams::apply("test"), &Patch::Apply(configmap("typed", "kube")))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 415), "{err}");
    assert_eq!(cms.get("typed").await.unwrap().metadata.resource_version, replaced.metadata.resource_version);

    cms.delete("typed", &DeleteParams::default()).await.unwrap();
    let err = cms.get("typed").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 404), "{err}");
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
