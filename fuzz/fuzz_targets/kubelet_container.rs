#![no_main]
//! A pod mutated by the input into a hostile one: the node agent's
//! container configuration (OCI spec, environment, checks, status); errors
//! (CreateContainerConfigError), never a panic.
use libfuzzer_sys::fuzz_target;
use skiff_scheduler::fuzzing::{hostile, Entropy};

fuzz_target!(|data: &[u8]| {
    let pod: k8s_openapi::api::core::v1::Pod = hostile(&skiff_kubelet::fuzzing::pod_seed(), &mut Entropy::new(data));
    skiff_kubelet::fuzzing::containers(&pod, &skiff_kubelet::fuzzing::image());
});
