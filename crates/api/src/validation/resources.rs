//! Resource names and quantities, as upstream's core validation and its
//! `helper` package check them wherever they appear (containers, pod
//! overhead, quotas, limit ranges, nodes, volumes, autoscalers).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{qualified_name, quantity_error, Bad, Errors, FieldError, Path, NON_NEGATIVE};

/// Upstream's `standardResources`.
const STANDARD_RESOURCES: [&str; 20] = [
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage",
    "pods", "resourcequotas", "services", "replicationcontrollers", "secrets", "configmaps", "persistentvolumeclaims", "storage", "requests.storage",
    "services.nodeports", "services.loadbalancers",
];

/// Upstream's `standardQuotaResources`.
const STANDARD_QUOTA_RESOURCES: [&str; 19] = [
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.storage", "requests.ephemeral-storage", "limits.cpu", "limits.memory",
    "limits.ephemeral-storage", "pods", "resourcequotas", "services", "replicationcontrollers", "secrets", "persistentvolumeclaims", "configmaps",
    "services.nodeports", "services.loadbalancers",
];

/// Resources counted in whole units (upstream's `integerResources`).
const INTEGER_RESOURCES: [&str; 9] =
    ["pods", "resourcequotas", "services", "replicationcontrollers", "secrets", "configmaps", "persistentvolumeclaims", "services.nodeports", "services.loadbalancers"];

pub(crate) fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Upstream's `IsQuotaHugePageResourceName`.
fn is_quota_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

/// Upstream's `IsNativeResource`: unprefixed, or in kubernetes.io.
pub(crate) fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Upstream's `IsExtendedResourceName`: `example.com/gpu`.
fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name) && !name.starts_with("requests.") && qualified_name(&format!("requests.{name}")).is_ok()
}

/// Upstream's `IsIntegerResourceName`.
fn is_integer_resource(name: &str) -> bool {
    INTEGER_RESOURCES.contains(&name) || is_extended_resource(name)
}

/// Upstream's `IsOvercommitAllowed`: a request may be below its limit.
pub(crate) fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

/// Upstream's `IsStandardQuotaResourceName`.
pub(crate) fn is_standard_quota_resource(name: &str) -> bool {
    STANDARD_QUOTA_RESOURCES.contains(&name) || is_quota_hugepages(name)
}

/// How a resource name, and a quantity upstream passes whole, show in an
/// error. Upstream prints both bare (`core.ResourceName` and
/// `resource.Quantity` are `fmt.Stringer`s), as pods' errors here do; the
/// quota, limit range, node, RuntimeClass and HPA errors quote them as
/// written, as their tests have them.
#[derive(Clone, Copy)]
pub(crate) enum Shown {
    Bare,
    Quoted,
}

impl Shown {
    fn name(self, name: &str) -> Bad {
        match self {
            Shown::Bare => Bad::raw(name),
            Shown::Quoted => Bad::from(name),
        }
    }

    fn quantity(self, q: &Quantity) -> Bad {
        match self {
            Shown::Bare => Bad::raw(canonical(q)),
            Shown::Quoted => Bad::from(&q.0),
        }
    }
}

/// Upstream's `validateResourceName`.
pub(crate) fn resource_name(name: &str, shown: Shown, path: &Path) -> Errors {
    if let Err(why) = qualified_name(name) {
        return vec![path.invalid(shown.name(name), &why)];
    }
    if !name.contains('/') && !(STANDARD_RESOURCES.contains(&name) || is_quota_hugepages(name)) {
        return vec![path.invalid(shown.name(name), "must be a standard resource type or fully qualified")];
    }
    vec![]
}

/// Upstream's `validateContainerResourceName`.
pub(crate) fn container_resource_name(name: &str, shown: Shown, path: &Path) -> Errors {
    let mut errs = resource_name(name, shown, path);
    if !name.contains('/') {
        if !(["cpu", "memory", "ephemeral-storage"].contains(&name) || is_hugepages(name)) {
            errs.push(path.invalid(shown.name(name), "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(path.invalid(shown.name(name), "doesn't follow extended resource name standard"));
    }
    errs
}

// ---- quantities --------------------------------------------------------------

/// A quantity as upstream prints it (its canonical form: `1500m`, `1Gi`).
pub(crate) fn canonical(q: &Quantity) -> String {
    match skiff_quantity::milli(&q.0) {
        Some(milli) => skiff_quantity::format(milli, skiff_quantity::is_binary(&q.0)),
        None => q.0.clone(),
    }
}

/// A quantity in milli-units (saturating for quantities too large), or why
/// it does not parse. Upstream refuses such text when decoding the
/// request; here it is reported on its field.
pub(crate) fn quantity(q: &Quantity, path: &Path) -> Result<i64, FieldError> {
    if let Some(why) = quantity_error(&q.0) {
        return Err(path.invalid(&q.0, why));
    }
    Ok(skiff_quantity::milli(&q.0).unwrap_or(if q.0.trim_start().starts_with('-') { i64::MIN } else { i64::MAX }))
}

/// Upstream's `ValidateNonnegativeQuantity`.
pub(crate) fn nonnegative_quantity(q: &Quantity, path: &Path) -> Errors {
    match quantity(q, path) {
        Err(e) => vec![e],
        Ok(m) if m < 0 => vec![path.invalid(canonical(q), NON_NEGATIVE)],
        Ok(_) => vec![],
    }
}

/// Upstream's `ValidatePositiveQuantityValue`.
pub(crate) fn positive_quantity(q: &Quantity, path: &Path) -> Errors {
    match quantity(q, path) {
        Err(e) => vec![e],
        Ok(m) if m <= 0 => vec![path.invalid(canonical(q), "must be greater than zero")],
        Ok(_) => vec![],
    }
}

/// Upstream's `ValidateResourceQuantityValue`: not negative, and whole for
/// resources counted in units.
pub(crate) fn resource_quantity_value(name: &str, q: &Quantity, shown: Shown, path: &Path) -> Errors {
    let mut errs = nonnegative_quantity(q, path);
    if is_integer_resource(name) && skiff_quantity::milli(&q.0).is_some_and(|m| m % 1000 != 0) {
        errs.push(path.invalid(shown.quantity(q), "must be an integer"));
    }
    errs
}

/// Upstream's `validateResourceQuantityHugePageValue`: a whole number of
/// pages of the size the name says.
pub(crate) fn hugepages_quantity(name: &str, q: &Quantity, path: &Path) -> Errors {
    let page = name.strip_prefix("hugepages-").and_then(skiff_quantity::milli).filter(|m| *m > 0 && m % 1000 == 0).map(|m| m / 1000);
    let value = skiff_quantity::value(&q.0);
    match (page, value) {
        (Some(page), Some(value)) if value % page == 0 => vec![],
        _ => vec![path.invalid(canonical(q), &format!("{} is not positive integer multiple of {name}", canonical(q)))],
    }
}
