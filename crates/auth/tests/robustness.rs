//! What the fuzz targets in `fuzz/` exercise, on stable: every parser of
//! untrusted input before authentication gets random bytes and mutations
//! of valid inputs, and must answer (a user, or a refusal) without
//! panicking. Seeded, so a failure reproduces.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use skiff_auth::serviceaccount::{Claims, Issuer, Private, Ref};
use skiff_auth::{Authenticator, PeerCertificate, UserInfo};

const ROUNDS: usize = 20_000;

/// `valid` with a few random bytes flipped, cut or appended.
fn mutate(rng: &mut StdRng, valid: &[u8]) -> Vec<u8> {
    let mut out = valid.to_vec();
    match rng.random_range(0..4) {
        0 if !out.is_empty() => {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..out.len());
                out[at] = rng.random();
            }
        }
        1 => out.truncate(rng.random_range(0..=out.len())),
        2 => out.extend((0..rng.random_range(1..16)).map(|_| rng.random::<u8>())),
        _ => {
            let mut noise = vec![0u8; rng.random_range(0..64)];
            rng.fill_bytes(&mut noise);
            out = noise;
        }
    }
    out
}

#[test]
fn authorization_headers_never_panic() {
    let mut rng = StdRng::seed_from_u64(1);
    let authenticator = Authenticator::default();
    let valid = [b"Bearer abc".as_slice(), b"Basic YWxpY2U6c2VjcmV0", b"bearer  x.y.z "];
    for _ in 0..ROUNDS {
        let pick = rng.random_range(0..valid.len());
        let header = mutate(&mut rng, valid[pick]);
        assert!(authenticator.authenticate(&PeerCertificate::None, Some(&header)).is_err());
    }
}

#[test]
fn client_certificates_never_panic() {
    let mut rng = StdRng::seed_from_u64(2);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "dev");
    let der = params.self_signed(&key).unwrap().der().to_vec();
    assert_eq!(UserInfo::from_certificate(&der).unwrap().name, "alice");
    for _ in 0..ROUNDS {
        let _ = UserInfo::from_certificate(&mutate(&mut rng, &der));
    }
}

#[test]
fn service_account_tokens_never_panic_nor_verify_when_altered() {
    let mut rng = StdRng::seed_from_u64(3);
    let issuer = Issuer::new("https://kubernetes.default.svc.cluster.local", &rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = Claims {
        iss: issuer.issuer.clone(),
        sub: "system:serviceaccount:ns:sa".into(),
        aud: vec![issuer.issuer.clone()],
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: "j".into(),
        kubernetes: Private { namespace: "ns".into(), serviceaccount: Ref { name: "sa".into(), uid: "u".into() }, ..Default::default() },
    };
    let token = issuer.sign(&claims).unwrap();
    let audiences = [issuer.issuer.clone()];
    assert!(issuer.verify(&token, &audiences).is_some());
    for _ in 0..ROUNDS {
        let altered = mutate(&mut rng, token.as_bytes());
        let Ok(text) = String::from_utf8(altered.clone()) else { continue };
        if altered != token.as_bytes() {
            // Only a change past the signature's end can still verify (trailing base64 bits).
            let verified = issuer.verify(&text, &audiences);
            assert!(verified.is_none() || text.starts_with(&token[..token.rfind('.').unwrap()]), "{text}");
        }
    }
}

#[test]
fn abac_policies_never_panic() {
    let mut rng = StdRng::seed_from_u64(4);
    let valid = br#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "alice", "namespace": "*", "resource": "*", "apiGroup": "*"}}"#;
    for _ in 0..ROUNDS / 4 {
        let _ = skiff_auth::abac::Policy::parse(&String::from_utf8_lossy(&mutate(&mut rng, valid)));
    }
}
