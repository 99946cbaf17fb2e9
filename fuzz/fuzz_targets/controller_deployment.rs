#![no_main]
//! A Deployment and its ReplicaSets, mutated by the input into hostile objects: the
//! controller's decisions, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skiff_controllers::fuzzing::deployment(data));
