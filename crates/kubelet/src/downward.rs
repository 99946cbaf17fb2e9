//! The downward API: a pod's own fields and resources, for environment
//! variables and downwardAPI volumes, with upstream's formats.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Pod, ResourceFieldSelector};

/// A field by its path (`metadata.name`, `metadata.labels['app']`,
/// `status.podIP`, …). Whole label and annotation maps are `key="value"`
/// lines, sorted, as upstream writes them.
pub fn field(pod: &Pod, path: &str) -> Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let map_entry = |map: Option<&BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = map_entry(meta.labels.as_ref(), "metadata.labels['") {
        return Ok(v);
    }
    if let Some(v) = map_entry(meta.annotations.as_ref(), "metadata.annotations['") {
        return Ok(v);
    }
    let whole = |map: Option<&BTreeMap<String, String>>| map.into_iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n");
    let ips = |list: Option<Vec<String>>| list.unwrap_or_default().join(",");
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => whole(meta.labels.as_ref()),
        "metadata.annotations" => whole(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => ips(status.and_then(|s| s.host_ips.as_ref()).map(|l| l.iter().map(|i| i.ip.clone()).collect())),
        "status.podIPs" => ips(status.and_then(|s| s.pod_ips.as_ref()).map(|l| l.iter().map(|i| i.ip.clone()).collect())),
        other => bail!("unsupported fieldPath {other:?}"),
    })
}

/// A container's request or limit (`limits.memory`, `requests.cpu`, …)
/// divided by the divisor, rounded up; a limit that is not set is the
/// node's allocatable amount, as upstream.
pub fn resource(pod: &Pod, default_container: Option<&str>, selector: &ResourceFieldSelector, allocatable: &BTreeMap<String, String>) -> Result<String> {
    let name = selector.container_name.as_deref().filter(|n| !n.is_empty()).or(default_container).context("resourceFieldRef needs a containerName")?;
    let spec = pod.spec.as_ref().context("pod without spec")?;
    let container = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name).with_context(|| format!("no container {name:?}"))?;
    let (kind, resource) = selector.resource.split_once('.').with_context(|| format!("unsupported resource {:?}", selector.resource))?;
    let resources = container.resources.as_ref();
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => bail!("unsupported resource {:?}", selector.resource),
    };
    let amount = set.and_then(|m| m.get(resource)).map(|q| q.0.clone());
    let amount = match (amount, kind) {
        (Some(a), _) => a,
        (None, "limits") => allocatable.get(resource).cloned().unwrap_or_else(|| "0".into()),
        (None, _) => "0".into(),
    };
    let milli = skiff_quantity::milli(&amount).with_context(|| format!("{amount:?} is not a quantity"))?;
    let divisor = selector.divisor.as_ref().map(|d| d.0.as_str()).unwrap_or("1");
    let divisor = skiff_quantity::milli(divisor).filter(|d| *d > 0).with_context(|| format!("invalid divisor {divisor:?}"))?;
    // Rounded up without overflow (amounts reach i64::MAX).
    Ok((milli.div_euclid(divisor) + i64::from(milli.rem_euclid(divisor) != 0)).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_resources_as_upstream_formats_them() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]},
        }))
        .unwrap();
        assert_eq!(field(&pod, "metadata.labels").unwrap(), "a=\"1\"\nb=\"2\"");
        assert_eq!(field(&pod, "metadata.labels['b']").unwrap(), "2");
        assert!(field(&pod, "spec.bogus").is_err());
        let sel = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            container_name: None,
            resource: resource.into(),
            divisor: divisor.map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
        };
        let node = BTreeMap::from([("cpu".to_string(), "2".to_string())]);
        assert_eq!(resource(&pod, Some("c"), &sel("limits.memory", Some("1Mi")), &node).unwrap(), "64");
        assert_eq!(resource(&pod, Some("c"), &sel("requests.cpu", None), &node).unwrap(), "1", "rounded up");
        assert_eq!(resource(&pod, Some("c"), &sel("requests.cpu", Some("1m")), &node).unwrap(), "250");
        assert_eq!(resource(&pod, Some("c"), &sel("limits.cpu", None), &node).unwrap(), "2", "node allocatable");
    }
}
