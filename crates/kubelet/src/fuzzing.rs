//! What the agent makes of a pod's containers, without a node: the OCI
//! spec (`spec::build`), the environment (expansion, the downward API),
//! the checks on names and mount paths, and the status. For the property
//! tests and the cargo-fuzz targets (`fuzz/`), which feed it hostile pods:
//! errors are expected (a container then waits with
//! `CreateContainerConfigError`); a panic is a bug.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use oci_spec::image::ImageConfiguration;

use crate::status::{self, Waiting};
use crate::{downward, spec};

pub fn containers(pod: &Pod, image: &ImageConfiguration) {
    let allocatable = BTreeMap::from([("cpu".to_string(), "4".to_string()), ("memory".to_string(), "8Gi".to_string())]);
    let Some(pod_spec) = pod.spec.as_ref() else { return };
    let hostname = crate::pods::hostname(pod);
    for volume in pod_spec.volumes.iter().flatten() {
        let _ = spec::check_name("volume", &volume.name);
    }
    for container in pod_spec.containers.iter().chain(pod_spec.init_containers.iter().flatten()) {
        let _ = spec::check_name("container", &container.name);
        if spec::check_mount_paths(container).is_err() {
            continue;
        }
        let mut env: Vec<(String, String)> = Vec::new();
        for var in container.env.iter().flatten() {
            let value = match &var.value_from {
                None => Some(spec::expand(var.value.as_deref().unwrap_or(""), &env)),
                Some(from) => match (&from.field_ref, &from.resource_field_ref) {
                    (Some(field), _) => downward::field(pod, &field.field_path).ok(),
                    (_, Some(resource)) => downward::resource(pod, Some(&container.name), resource, &allocatable).ok(),
                    _ => None,
                },
            };
            env.extend(value.map(|v| (var.name.clone(), v)));
        }
        let mounts = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| spec::BindMount { source: PathBuf::from("/nonexistent/volume"), destination: m.mount_path.clone(), read_only: m.read_only == Some(true) })
            .collect();
        let inputs = spec::Inputs {
            pod,
            container,
            image,
            env,
            mounts,
            devices: vec![],
            namespaces: vec![("net", PathBuf::from("/nonexistent/net")), ("uts", PathBuf::from("/nonexistent/uts"))],
            hostname: hostname.clone(),
            seccomp_dir: Path::new("/nonexistent/seccomp"),
            layers: &[],
        };
        // Unguarded: here a panic must show.
        if let Err(e) = spec::build(inputs) {
            let waiting = Waiting { reason: "CreateContainerConfigError".into(), message: format!("{e:#}") };
            let _ = status::container_status(container, &[], Some(&waiting), &BTreeMap::new());
        }
    }
    let _ = status::phase(pod, &[], true, false);
    let _ = status::conditions(pod, true, Ok(()), vec![], "Running");
}

/// A valid pod using what the agent builds from: env expansion and the
/// downward API, security contexts, seccomp, resources, volume mounts.
pub fn pod_seed() -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a"}, "annotations": {"k": "v"}},
        "spec": {
            "hostname": "web", "subdomain": "svc", "hostPID": false, "restartPolicy": "Always",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true, "fsGroup": 2000, "supplementalGroups": [3000],
                "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"}},
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "conf", "configMap": {"name": "c", "items": [{"key": "a", "path": "a/b"}]}}],
            "containers": [{
                "name": "c", "image": "nginx", "command": ["/bin/sh", "-c", "$(GREETING) $$HOME"], "args": ["$(MISSING)"], "workingDir": "/srv", "tty": true,
                "env": [
                    {"name": "GREETING", "value": "hello $(POD)"},
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                ],
                "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "128Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "sub"}, {"name": "conf", "mountPath": "/etc/conf", "readOnly": true}],
                "securityContext": {"privileged": false, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsUser": 1001,
                    "capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
            }],
            "initContainers": [{"name": "init", "image": "busybox", "restartPolicy": "Always", "resources": {"limits": {"cpu": "100m"}}}],
        },
        "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    })
}

/// A valid image configuration with a user, environment, entrypoint.
pub fn image() -> ImageConfiguration {
    serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"User": "1000:1000", "Env": ["PATH=/usr/bin", "HOME=/root", "BROKEN"], "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx"], "WorkingDir": "/"},
    }))
    .expect("a valid image configuration")
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use skiff_scheduler::fuzzing::{hostile, Entropy};

    use super::*;

    /// Hostile pods (mutated from a valid one by seeded random choices,
    /// as `fuzz/` and `SKIFF_FUZZ_ROUNDS=100000 cargo test` do for longer)
    /// never panic what the agent builds.
    #[test]
    fn hostile_pods_never_panic_the_container_config() {
        let (seed, image) = (pod_seed(), image());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut data = vec![0u8; 1024];
        let rounds = std::env::var("SKIFF_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3000);
        for _ in 0..rounds {
            for b in data.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let pod: Pod = hostile(&seed, &mut Entropy::new(&data));
            containers(&pod, &image);
        }
    }

    /// What a hostile pod gets: a clear error for its container
    /// (reported as `CreateContainerConfigError`), never a panic.
    #[test]
    fn bad_pods_are_configuration_errors() {
        let image = image();
        let build = |patch: serde_json::Value| {
            let mut pod = pod_seed();
            json_patch(&mut pod["spec"]["containers"][0], &patch);
            let pod: Pod = serde_json::from_value(pod).unwrap();
            let container = pod.spec.as_ref().unwrap().containers[0].clone();
            spec::check_name("container", &container.name)?;
            spec::check_mount_paths(&container)?;
            let inputs = spec::Inputs {
                pod: &pod,
                container: &container,
                image: &image,
                env: vec![],
                mounts: vec![],
                devices: vec![],
                namespaces: vec![],
                hostname: "p".into(),
                seccomp_dir: Path::new("/nonexistent"),
                layers: &[],
            };
            spec::build_guarded(inputs).map(drop)
        };
        fn json_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
            for (k, v) in patch.as_object().unwrap() {
                target[k] = v.clone();
            }
        }
        let error = |patch| format!("{:#}", build(patch).unwrap_err());
        assert!(error(json!({"name": "../../etc"})).contains("invalid container name \"../../etc\""));
        assert!(error(json!({"volumeMounts": [{"name": "data", "mountPath": "../../etc"}]})).contains("must not contain '..'"));
        assert!(error(json!({"volumeMounts": [{"name": "data", "mountPath": "/a"}, {"name": "conf", "mountPath": "/a"}]})).contains("must be unique"));
        assert!(error(json!({"securityContext": {"runAsUser": -1}})).contains("runAsUser -1 must be between 0 and 2147483647"));
        let user = json!({"runAsUser": 1, "seccompProfile": {"type": "RuntimeDefault"}});
        let e = error(json!({"securityContext": user, "resources": {"limits": {"cpu": "-1"}}}));
        assert!(e.contains("must be greater than or equal to 0"), "{e}");
        assert!(error(json!({"securityContext": user, "resources": {"limits": {"memory": "1e2147483647"}}})).contains("is not a quantity"));
        // Amounts near i64::MAX overflowed the shares, the quota and the memory limit.
        let huge = json!({"securityContext": user, "resources": {"requests": {"cpu": "9223372036854775807m"}, "limits": {"cpu": "9223372036854775807m", "memory": "9223372036854775807m"}}});
        assert!(build(huge).is_ok());
    }
}
