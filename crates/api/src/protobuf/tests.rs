//! Bodies encoded by prost from k8s-pb's types (generated from upstream's
//! `.proto` files), wrapped as client-go wraps them, must decode to the
//! JSON upstream's JSON encoder writes for the same object.

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::*;

fn wrap(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: Some(api_version.into()), kind: Some(kind.into()) }),
        raw: Some(object.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    [MAGIC, &unknown.encode_to_vec()].concat()
}

fn meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: Some(name.into()),
        // Go writes its non-pointer fields even when empty.
        generate_name: Some(String::new()),
        creation_timestamp: Some(meta::Time::default()),
        labels: [("app".to_string(), "web".to_string())].into(),
        ..Default::default()
    })
}

#[test]
fn decodes_a_secret_with_bytes_and_maps() {
    let secret = core::Secret {
        metadata: meta("s"),
        data: [("key".to_string(), b"\x00bin".to_vec())].into(),
        r#type: Some("Opaque".into()),
        immutable: Some(false),
        ..Default::default()
    };
    let v = decode(&wrap("v1", "Secret", &secret)).unwrap();
    assert_eq!(
        v,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": "s", "creationTimestamp": null, "labels": {"app": "web"}},
               "data": {"key": "AGJpbg=="}})
    );
}

#[test]
fn decodes_inline_fields_acronyms_quantities_and_int_or_string() {
    let volume = core::Volume {
        name: Some("v".into()),
        volume_source: Some(core::VolumeSource {
            aws_elastic_block_store: Some(core::AwsElasticBlockStoreVolumeSource { volume_id: Some("vol-1".into()), ..Default::default() }),
            downward_api: Some(core::DownwardAPIVolumeSource::default()),
            ..Default::default()
        }),
    };
    let container = core::Container {
        name: Some("c".into()),
        image: Some("busybox".into()),
        resources: Some(core::ResourceRequirements {
            limits: [("cpu".to_string(), Quantity { string: Some("250m".into()) })].into(),
            ..Default::default()
        }),
        readiness_probe: Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction { port: Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: Some("http".into()) }), ..Default::default() }),
                ..Default::default()
            }),
            period_seconds: Some(0),
            ..Default::default()
        }),
        ports: vec![core::ContainerPort { container_port: Some(80), host_port: Some(0), host_ip: Some(String::new()), ..Default::default() }],
        stdin: Some(false),
        security_context: Some(core::SecurityContext { run_as_user: Some(0), ..Default::default() }),
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: meta("p"),
        spec: Some(core::PodSpec { volumes: vec![volume], containers: vec![container], ..Default::default() }),
        status: Some(core::PodStatus { pod_ip: Some("10.42.0.5".into()), ..Default::default() }),
    };
    let v = decode(&wrap("v1", "Pod", &pod)).unwrap();
    assert_eq!(v["spec"]["volumes"][0], json!({"name": "v", "awsElasticBlockStore": {"volumeID": "vol-1"}, "downwardAPI": {}}));
    let c = &v["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["cpu"], "250m");
    assert_eq!(c["readinessProbe"], json!({"httpGet": {"port": "http"}}));
    // Go's unset non-pointers are dropped; a pointer set to zero is kept.
    assert_eq!(c["ports"], json!([{"containerPort": 80}]));
    assert!(c.get("stdin").is_none());
    assert_eq!(c["securityContext"], json!({"runAsUser": 0}));
    assert_eq!(v["status"]["podIP"], "10.42.0.5");
    // The decoded object is one the typed Pod accepts without unknown fields.
    let (_, unknown) = (crate::resources::find("", "v1", "pods").unwrap().typed)(&v).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
}

#[test]
fn decodes_times_pointers_at_zero_and_list_wrappers() {
    let deployment = k8s_pb::api::apps::v1::Deployment {
        metadata: Some(meta::ObjectMeta {
            name: Some("d".into()),
            creation_timestamp: Some(meta::Time { seconds: Some(1_700_000_000), nanos: Some(0) }),
            ..Default::default()
        }),
        spec: Some(k8s_pb::api::apps::v1::DeploymentSpec {
            replicas: Some(0),
            strategy: Some(k8s_pb::api::apps::v1::DeploymentStrategy {
                rolling_update: Some(k8s_pb::api::apps::v1::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString { r#type: Some(0), int_val: Some(0), str_val: Some(String::new()) }),
                    max_surge: Some(IntOrString { r#type: Some(1), int_val: Some(0), str_val: Some("25%".into()) }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode(&wrap("apps/v1", "Deployment", &deployment)).unwrap();
    assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(v["spec"]["replicas"], 0);
    assert_eq!(v["spec"]["strategy"]["rollingUpdate"], json!({"maxUnavailable": 0, "maxSurge": "25%"}));

    let review = k8s_pb::api::authentication::v1::TokenReview {
        metadata: meta("r"),
        status: Some(k8s_pb::api::authentication::v1::TokenReviewStatus {
            user: Some(k8s_pb::api::authentication::v1::UserInfo {
                extra: [("scopes".to_string(), k8s_pb::api::authentication::v1::ExtraValue { items: vec!["a".into(), "b".into()] })].into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let v = decode(&wrap("authentication.k8s.io/v1", "TokenReview", &review)).unwrap();
    assert_eq!(v["status"]["user"]["extra"], json!({"scopes": ["a", "b"]}));
    let options = meta::DeleteOptions { grace_period_seconds: Some(0), propagation_policy: Some("Foreground".into()), ..Default::default() };
    let v = decode(&wrap("v1", "DeleteOptions", &options)).unwrap();
    assert_eq!(v, json!({"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}));
}

#[test]
fn refuses_what_is_not_a_kubernetes_object() {
    assert!(decode(b"{}").unwrap_err().contains("prefix"));
    let garbage = [MAGIC, &[0x0a, 0xff, 0xff]].concat();
    assert!(decode(&garbage).is_err());
    let unknown_kind = wrap("v1", "Bogus", &core::Secret::default());
    assert!(decode(&unknown_kind).unwrap_err().contains("Bogus"));
}
