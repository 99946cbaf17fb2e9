//! ServiceAccount tokens: JWTs signed by the cluster's service account key
//! (ES256), as upstream's TokenRequest issues them, bound to an audience,
//! an expiry and optionally a pod; plus the OIDC discovery documents that
//! let others verify them (`/.well-known/openid-configuration`,
//! `/openid/v1/jwks`).

use anyhow::{Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The issuer of legacy secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// An object a token names by name and uid.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// Upstream's private claims, under `kubernetes.io`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Private {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Private,
}

/// Signs and verifies the cluster's ServiceAccount tokens.
pub struct Issuer {
    pub issuer: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    jwk: Value,
}

impl Issuer {
    /// `key_pem`: a PKCS#8 P-256 private key (`Pki::service_account_key`).
    pub fn new(issuer: &str, key_pem: &str) -> Result<Issuer> {
        let key = rcgen::KeyPair::from_pem(key_pem).context("the service account key")?;
        let point = key.public_key_raw();
        anyhow::ensure!(point.len() == 65 && point[0] == 4, "the service account key is not a P-256 key");
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
        // Upstream's key id: the SHA-256 of the public key's DER.
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &rcgen::PublicKeyData::subject_public_key_info(&key)));
        Ok(Issuer {
            issuer: issuer.to_string(),
            encoding: EncodingKey::from_ec_pem(key_pem.as_bytes())?,
            decoding: DecodingKey::from_ec_components(&x, &y)?,
            jwk: json!({"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "x": x, "y": y}),
            kid,
        })
    }

    pub fn sign(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// The claims of a token this issuer signed, unexpired, for one of
    /// `audiences`; None for anything else (another issuer's, tampered, …).
    pub fn verify(&self, token: &str, audiences: &[String]) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok().map(|d| d.claims)
    }

    /// A legacy token for a `kubernetes.io/service-account-token` Secret:
    /// no expiry and no audience, as upstream's token controller signs them.
    pub fn sign_legacy(&self, namespace: &str, account: &Ref, secret: &str) -> Result<String> {
        let claims = json!({
            "iss": LEGACY_ISSUER,
            "sub": format!("system:serviceaccount:{namespace}:{}", account.name),
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret,
            "kubernetes.io/serviceaccount/service-account.name": account.name,
            "kubernetes.io/serviceaccount/service-account.uid": account.uid,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// The (namespace, account, secret name) of a legacy token this issuer signed.
    pub fn verify_legacy(&self, token: &str) -> Option<(String, Ref, String)> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[LEGACY_ISSUER]);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["iss", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &self.decoding, &validation).ok()?.claims;
        let field = |k: &str| claims[format!("kubernetes.io/serviceaccount/{k}")].as_str().map(String::from);
        Some((field("namespace")?, Ref { name: field("service-account.name")?, uid: field("service-account.uid")? }, field("secret.name")?))
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// The OIDC discovery document, with the JWKS at `jwks_uri`.
    pub fn openid_configuration(&self, jwks_uri: &str) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

/// Whether a bearer token looks like a JWT (three base64url parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> Claims {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        Claims {
            iss: "https://kubernetes.default.svc".into(),
            sub: "system:serviceaccount:ns:robot".into(),
            aud: vec!["api".into()],
            exp: now + exp_in,
            iat: now,
            nbf: now,
            jti: "1".into(),
            kubernetes: Private { namespace: "ns".into(), serviceaccount: Ref { name: "robot".into(), uid: "u".into() }, ..Default::default() },
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampered_or_expired_ones_do_not() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let issuer = Issuer::new("https://kubernetes.default.svc", &key).unwrap();
        let token = issuer.sign(&claims(600)).unwrap();
        assert!(looks_like_jwt(&token));
        let verified = issuer.verify(&token, &["api".into()]).unwrap();
        assert_eq!((verified.sub.as_str(), verified.kubernetes.serviceaccount.uid.as_str()), ("system:serviceaccount:ns:robot", "u"));
        assert!(issuer.verify(&token, &["other".into()]).is_none());
        assert!(issuer.verify(&issuer.sign(&claims(-10)).unwrap(), &["api".into()]).is_none());
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({"sub": "system:admin"})).unwrap());
        assert!(issuer.verify(&parts.join("."), &["api".into()]).is_none());
        let other = Issuer::new("https://kubernetes.default.svc", &rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(other.verify(&token, &["api".into()]).is_none());
        for garbage in ["", "a.b.c", "..", "x"] {
            assert!(issuer.verify(garbage, &["api".into()]).is_none());
        }
        assert_eq!(issuer.jwks()["keys"][0]["kid"], issuer.kid);
        let account = Ref { name: "robot".into(), uid: "u".into() };
        let legacy = issuer.sign_legacy("ns", &account, "robot-token").unwrap();
        assert_eq!(issuer.verify_legacy(&legacy), Some(("ns".to_string(), account, "robot-token".to_string())));
        assert!(issuer.verify(&legacy, &["api".into()]).is_none() && issuer.verify_legacy(&token).is_none());
    }
}
