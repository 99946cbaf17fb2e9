#![no_main]
//! A DaemonSet, nodes and its pods, mutated by the input into hostile objects: the
//! controller's decisions, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skiff_controllers::fuzzing::daemonset(data));
