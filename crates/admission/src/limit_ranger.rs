//! LimitRanger: the LimitRanges of a namespace give containers their
//! default requests and limits, and bound what containers, pods and claims
//! may ask for (min, max, max limit/request ratio), as upstream's plugin.

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use skiff_quantity::milli;

use crate::pods::{containers, containers_mut};
use crate::{aggregate, Cluster, Operation, Plugin, Rejection, Request};

pub struct LimitRanger;

/// A LimitRange item with upstream's defaulting: `default` from `max`,
/// `defaultRequest` from `default`, then from `min`.
fn item_defaults(item: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let field = |f: &str| item[f].as_object().cloned().unwrap_or_default();
    let mut limits = field("default");
    for (k, v) in field("max") {
        limits.entry(k).or_insert(v);
    }
    let mut requests = field("defaultRequest");
    for (k, v) in limits.iter().chain(field("min").iter()) {
        requests.entry(k.clone()).or_insert(v.clone());
    }
    (requests, limits)
}

/// The limit items of every LimitRange in the namespace.
async fn items(cluster: &dyn Cluster, ns: &str) -> Result<Vec<Value>, Rejection> {
    let ranges = cluster.list("", "limitranges", Some(ns)).await.map_err(Rejection::internal)?;
    Ok(ranges.iter().flat_map(|r| r["spec"]["limits"].as_array().cloned().unwrap_or_default()).collect())
}

fn of_type<'v>(items: &'v [Value], kind: &'v str) -> impl Iterator<Item = &'v Value> {
    items.iter().filter(move |i| i["type"] == kind)
}

#[async_trait]
impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    async fn mutate(&self, req: &Request<'_>, pod: &mut Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Create || !req.is("", "pods") {
            return Ok(());
        }
        let mut notes = Vec::new();
        for item in of_type(&items(cluster, req.namespace).await?, "Container") {
            let (default_requests, default_limits) = item_defaults(item);
            for c in containers_mut(&mut pod["spec"]) {
                let name = c["name"].as_str().unwrap_or_default().to_string();
                let mut set = |field: &str, defaults: &Map<String, Value>| {
                    let mut set_here: Vec<String> = Vec::new();
                    for (resource, value) in defaults {
                        if c["resources"][field][resource].is_null() {
                            c["resources"][field][resource] = value.clone();
                            set_here.push(resource.clone());
                        }
                    }
                    set_here.sort();
                    set_here
                };
                let requests = set("requests", &default_requests);
                let limits = set("limits", &default_limits);
                if !requests.is_empty() {
                    notes.push(format!("{} request for container {name}", requests.join(", ")));
                }
                if !limits.is_empty() {
                    notes.push(format!("{} limit for container {name}", limits.join(", ")));
                }
            }
        }
        if !notes.is_empty() {
            if !pod["metadata"]["annotations"].is_object() {
                pod["metadata"]["annotations"] = json!({});
            }
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        }
        Ok(())
    }

    async fn validate(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Create {
            return Ok(());
        }
        let mut errors = Vec::new();
        if req.is("", "pods") {
            let items = items(cluster, req.namespace).await?;
            for item in of_type(&items, "Container") {
                for c in containers(&obj["spec"]) {
                    check(item, "Container", &c["resources"]["requests"], &c["resources"]["limits"], &mut errors);
                }
            }
            for item in of_type(&items, "Pod") {
                let (requests, limits) = (pod_total(&obj["spec"], "requests"), pod_total(&obj["spec"], "limits"));
                check(item, "Pod", &requests, &limits, &mut errors);
            }
        } else if req.is("", "persistentvolumeclaims") {
            for item in of_type(&items(cluster, req.namespace).await?, "PersistentVolumeClaim") {
                let resources = &obj["spec"]["resources"];
                check(item, "PersistentVolumeClaim", &resources["requests"], &resources["limits"], &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Rejection::forbidden(req, aggregate(&errors)))
        }
    }
}

/// A pod's requests or limits as upstream totals them for LimitRanges, as
/// quantities.
fn pod_total(spec: &Value, field: &str) -> Value {
    let totals = crate::pods::pod_totals(spec, field).into_iter().map(|(k, m)| {
        let text = skiff_quantity::format(m, k != "cpu");
        (k, json!(text))
    });
    Value::Object(totals.collect())
}

/// Upstream's min, max and ratio constraints for one item, one subject.
fn check(item: &Value, kind: &str, requests: &Value, limits: &Value, errors: &mut Vec<String>) {
    let get = |list: &Value, r: &str| list[r].as_str().map(|s| (s.to_string(), milli(s).unwrap_or(0)));
    for (r, min) in item["min"].as_object().into_iter().flatten() {
        let (min, bound) = (min.as_str().unwrap_or_default(), milli(min.as_str().unwrap_or_default()).unwrap_or(0));
        match (get(requests, r), get(limits, r)) {
            (None, _) => errors.push(format!("minimum {r} usage per {kind} is {min}.  No request is specified")),
            (Some((text, v)), _) if v < bound => errors.push(format!("minimum {r} usage per {kind} is {min}, but request is {text}")),
            (_, Some((text, v))) if v < bound => errors.push(format!("minimum {r} usage per {kind} is {min}, but limit is {text}")),
            _ => {}
        }
    }
    for (r, max) in item["max"].as_object().into_iter().flatten() {
        let (max, bound) = (max.as_str().unwrap_or_default(), milli(max.as_str().unwrap_or_default()).unwrap_or(0));
        match (get(requests, r), get(limits, r)) {
            (_, None) => errors.push(format!("maximum {r} usage per {kind} is {max}.  No limit is specified")),
            (_, Some((text, v))) if v > bound => errors.push(format!("maximum {r} usage per {kind} is {max}, but limit is {text}")),
            (Some((text, v)), _) if v > bound => errors.push(format!("maximum {r} usage per {kind} is {max}, but request is {text}")),
            _ => {}
        }
    }
    for (r, ratio) in item["maxLimitRequestRatio"].as_object().into_iter().flatten() {
        let (ratio, bound) = (ratio.as_str().unwrap_or_default(), milli(ratio.as_str().unwrap_or_default()).unwrap_or(0));
        match (get(requests, r), get(limits, r)) {
            (None, _) | (Some((_, 0)), _) => errors.push(format!("{r} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0")),
            (_, None) | (_, Some((_, 0))) => errors.push(format!("{r} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0")),
            (Some((_, request)), Some((_, limit))) => {
                let observed = limit as f64 / request as f64;
                if observed * 1000.0 > bound as f64 {
                    errors.push(format!("{r} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_word_their_failures_as_upstream() {
        let item = json!({"type": "Container", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "2"}});
        let mut errors = Vec::new();
        check(&item, "Container", &json!({"cpu": "50m", "memory": "2Gi"}), &json!({"cpu": "400m", "memory": "2Gi"}), &mut errors);
        assert_eq!(errors, [
            "minimum cpu usage per Container is 100m, but request is 50m",
            "maximum memory usage per Container is 1Gi, but limit is 2Gi",
            "cpu max limit to request ratio per Container is 2, but provided ratio is 8.000000",
        ]);
        let mut errors = Vec::new();
        check(&item, "Container", &json!({"cpu": "200m"}), &json!({"cpu": "300m", "memory": "1Gi"}), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn defaults_follow_upstream_defaulting() {
        let (requests, limits) = item_defaults(&json!({"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}, "default": {"memory": "256Mi"}}));
        assert_eq!(Value::Object(limits), json!({"cpu": "1", "memory": "256Mi"}));
        assert_eq!(Value::Object(requests), json!({"cpu": "1", "memory": "256Mi"}));
    }
}
