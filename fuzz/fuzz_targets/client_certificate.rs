#![no_main]
//! Any bytes as a client certificate's DER.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    let _ = skiff_auth::UserInfo::from_certificate(der);
});
