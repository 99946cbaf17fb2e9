#![no_main]
//! Nodes, pods, disruption budgets and storage mutated by the input into
//! hostile objects: one scheduling decision (filters, scores, spreading,
//! affinity, volume binding, preemption), never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skiff_scheduler::fuzzing::schedule(data));
