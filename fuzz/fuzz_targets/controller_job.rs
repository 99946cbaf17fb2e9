#![no_main]
//! A Job and its pods (and its TTL), mutated by the input into hostile objects: the
//! controller's decisions, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skiff_controllers::fuzzing::job(data));
