//! What a URL path addresses, following upstream's request-info rules:
//!
//! ```text
//! /api/v1[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]
//! /apis/{group}/{version}[/namespaces/{ns}]/{resource}[/{name}[/{subresource}]]
//! ```
//! plus the legacy `/watch/` prefix, and discovery at `/api`, `/apis`,
//! `/apis/{group}` and `/api/v1`, `/apis/{group}/{version}`.

use skiff_api::{resources, ResourceDef};

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    ApiVersions,
    ApiGroupList,
    ApiGroup(String),
    ResourceList { group: String, version: String },
    Resource(Target),
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Reached through the legacy `/watch/` path prefix.
    pub legacy_watch: bool,
    /// What follows `/proxy/` (`nodes/{name}/proxy/stats/summary`).
    pub proxy_path: String,
}

pub fn parse(path: &str) -> Route {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Route::ApiVersions,
        ["apis"] => return Route::ApiGroupList,
        ["apis", group] => return Route::ApiGroup(group.to_string()),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Unknown,
    };
    if rest.is_empty() {
        return Route::ResourceList {
            group: group.into(),
            version: version.into(),
        };
    }
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    // `/namespaces/{ns}/{resource}...` unless it is the namespace itself
    // (`/namespaces/{name}` or `/namespaces/{name}/{status|finalize}`).
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, rest @ ..] if !is_namespace_subresource(resource) || !rest.is_empty() => {
            (Some(ns.to_string()), [&[*resource][..], rest].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let Some(def) = resources::find(group, version, rest[0]) else {
        return Route::Unknown;
    };
    let proxied = rest.get(2) == Some(&"proxy");
    if (rest.len() > 3 && !proxied) || (namespace.is_some() && !def.namespaced) {
        return Route::Unknown;
    }
    Route::Resource(Target {
        def,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
        legacy_watch,
        proxy_path: if proxied { rest[3..].join("/") } else { String::new() },
    })
}

fn is_namespace_subresource(s: &str) -> bool {
    s == "status" || s == "finalize"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse(path) {
            Route::Resource(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths() {
        assert_eq!(parse("/api"), Route::ApiVersions);
        assert_eq!(parse("/apis/apps"), Route::ApiGroup("apps".into()));
        assert!(matches!(parse("/apis/apps/v1"), Route::ResourceList { .. }));
        let t = target("/api/v1/namespaces/default/pods/web/status");
        assert_eq!((t.def.plural, t.namespace.as_deref(), t.name.as_deref(), t.subresource.as_deref()), ("pods", Some("default"), Some("web"), Some("status")));
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!((t.def.plural, t.namespace, t.name.as_deref()), ("namespaces", None, Some("kube-system")));
        let t = target("/api/v1/namespaces/kube-system/status");
        assert_eq!((t.def.plural, t.name.as_deref(), t.subresource.as_deref()), ("namespaces", Some("kube-system"), Some("status")));
        let t = target("/api/v1/pods");
        assert_eq!((t.def.plural, t.namespace, t.name), ("pods", None, None));
        let t = target("/apis/apps/v1/watch/namespaces/x/deployments");
        assert!(t.legacy_watch && t.namespace.as_deref() == Some("x"));
        assert_eq!(parse("/api/v1/namespaces/x/nodes"), Route::Unknown, "nodes are not namespaced");
        assert_eq!(parse("/api/v1/nothing"), Route::Unknown);
    }
}
