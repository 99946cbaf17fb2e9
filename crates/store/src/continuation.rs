//! Continue tokens for paged lists, in upstream's format: unpadded URL-safe
//! base64 of `{"v":"meta.k8s.io/v1","rv":REV,"start":"KEY\u0000"}`, where
//! KEY is the last returned key relative to the listed prefix. Clients treat
//! it as opaque; keeping upstream's shape keeps tooling that peeks at it happy.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Revision};

const VERSION: &str = "meta.k8s.io/v1";

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: Revision,
    start: String,
}

/// The token for the page after `last_key`, read at `revision`.
pub(crate) fn encode(revision: Revision, prefix: &str, last_key: &str) -> String {
    let relative = last_key.strip_prefix(prefix).unwrap_or(last_key);
    let token = Token {
        v: VERSION.into(),
        rv: revision,
        // The next key in order after `last_key`.
        start: format!("{relative}\0"),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("token serializes"))
}

/// The revision and absolute start key (inclusive) a token asks for.
/// Upstream's revision for "continue from this key at the latest revision",
/// handed out when a token's own revision has been compacted away.
const LATEST: Revision = -1;

/// A token that continues where `token` would have, at the latest revision
/// (the rest of the list is then not consistent with the pages before).
pub fn at_latest(token: &str) -> Result<String> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).map_err(|_| Error::InvalidArgument("continue key is not valid: not base64".into()))?;
    let mut token: Token = serde_json::from_slice(&raw).map_err(|_| Error::InvalidArgument("continue key is not valid: not a continue token".into()))?;
    token.rv = LATEST;
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("token serializes")))
}

/// The revision a token reads at (None: the latest) and the key it starts at.
pub(crate) fn decode(token: &str, prefix: &str) -> Result<(Option<Revision>, String)> {
    let invalid = |why: &str| Error::InvalidArgument(format!("continue key is not valid: {why}"));
    // Older clients send padded tokens; accept both.
    let raw = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("not base64"))?;
    let token: Token = serde_json::from_slice(&raw).map_err(|_| invalid("not a continue token"))?;
    if token.v != VERSION {
        return Err(invalid(&format!("server does not recognize this encoded key version {:?}", token.v)));
    }
    if token.rv <= 0 && token.rv != LATEST {
        return Err(invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)"));
    }
    if token.start.is_empty() {
        return Err(invalid("encoded start key empty"));
    }
    // The start key is only ever appended to the prefix and the read is
    // bounded by the prefix's end, so a token cannot reach outside it.
    let revision = (token.rv != LATEST).then_some(token.rv);
    Ok((revision, format!("{prefix}{}", token.start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = encode(42, "/registry/pods/", "/registry/pods/default/a");
        let (rev, start) = decode(&t, "/registry/pods/").unwrap();
        assert_eq!(rev, Some(42));
        let (latest, same) = decode(&at_latest(&t).unwrap(), "/registry/pods/").unwrap();
        assert_eq!((latest, same.as_str()), (None, start.as_str()));
        assert_eq!(start, "/registry/pods/default/a\0");
        assert!(start.as_str() > "/registry/pods/default/a");
        assert!(start.as_str() < "/registry/pods/default/a0");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "!!!", "e30", /* {} */ "eyJ2IjoieCIsInJ2IjoxLCJzdGFydCI6ImEifQ" /* wrong v */] {
            assert!(matches!(decode(bad, "/p/"), Err(Error::InvalidArgument(_))), "{bad}");
        }
    }
}
