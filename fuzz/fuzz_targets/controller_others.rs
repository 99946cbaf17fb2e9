#![no_main]
//! A PodDisruptionBudget, a Service's endpoints and slices, a ResourceQuota, a Node's lifecycle, or a CertificateSigningRequest, mutated by the input into hostile objects: the
//! controller's decisions, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skiff_controllers::fuzzing::others(data));
