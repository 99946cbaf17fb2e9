//! `componentstatuses` (deprecated upstream, still served): the health of
//! the control plane's parts, probed when asked. Upstream lists the
//! scheduler, the controller manager and each etcd server. Skiff's store is
//! reported as `etcd-0` whichever backend holds it, as k3s does over kine;
//! the scheduler and controller manager join when they land.

use serde_json::{json, Value};

use crate::registry::Registry;

/// Every component with its current health.
pub async fn statuses(registry: &Registry) -> Vec<Value> {
    let store = match registry.store.current_revision().await {
        Ok(_) => Ok(r#"{"health":"true","reason":""}"#.to_string()),
        Err(e) => Err(e.to_string()),
    };
    vec![status("etcd-0", store)]
}

fn status(name: &str, health: Result<String, String>) -> Value {
    let condition = match health {
        Ok(message) => json!({"type": "Healthy", "status": "True", "message": message}),
        Err(error) => json!({"type": "Healthy", "status": "False", "error": error}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name}, "conditions": [condition]})
}
