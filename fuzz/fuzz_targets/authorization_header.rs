#![no_main]
//! Any Authorization header: a user or a 401, never a panic.
use libfuzzer_sys::fuzz_target;
use skiff_auth::{Authenticator, PeerCertificate};

fuzz_target!(|header: &[u8]| {
    let authenticator = Authenticator::default();
    let _ = authenticator.authenticate(&PeerCertificate::None, Some(header));
});
