//! What Skiff serves, independent of how: the resource table, validation of
//! names, labels and metadata, label and field selectors, and Table output.

pub mod appsafe;
pub mod conversion;
pub mod custom;
pub mod defaults;
pub mod metrics;
pub mod printers;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod selector;
pub mod table;
pub mod validation;

pub use resources::{ResourceDef, Verbs, BUILTIN};

/// The Kubernetes version whose API Skiff serves.
pub const KUBERNETES_VERSION: &str = "v1.32.4";
