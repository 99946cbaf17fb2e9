#![no_main]
//! Any string as a ServiceAccount JWT.
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static ISSUER: OnceLock<skiff_auth::serviceaccount::Issuer> = OnceLock::new();

fuzz_target!(|token: &str| {
    let issuer = ISSUER.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("a P-256 key").serialize_pem();
        skiff_auth::serviceaccount::Issuer::new("https://kubernetes.default.svc.cluster.local", &key).expect("an issuer")
    });
    let _ = skiff_auth::serviceaccount::looks_like_jwt(token) && issuer.verify(token, &[issuer.issuer.clone()]).is_some();
});
