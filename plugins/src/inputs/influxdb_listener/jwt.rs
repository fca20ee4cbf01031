//! InfluxDB 1.x's JWT authentication (Telegraf's `token_shared_secret` / `token_username`): a
//! bearer token signed with HMAC (HS256, HS384 or HS512) by the shared secret, whose `username`
//! claim names the configured user, and whose `exp` / `nbf`, when present, hold now.

use ring::hmac;

/// Why a token is refused, as the 401 answer says it.
#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    Algorithm(String),
    Signature,
    Expired,
    NotYetValid,
    NoUsername,
    WrongUser,
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed => f.write_str("invalid token: malformed"),
            JwtError::Algorithm(a) => write!(f, "invalid token: unexpected signing method {a:?}"),
            JwtError::Signature => f.write_str("invalid token: signature is invalid"),
            JwtError::Expired => f.write_str("token expired"),
            JwtError::NotYetValid => f.write_str("invalid token: token is not valid yet"),
            JwtError::NoUsername => f.write_str("token must contain a string username"),
            JwtError::WrongUser => f.write_str("unauthorized"),
        }
    }
}

/// Checks `token` (the part after "Bearer ") against the secret and user, at `now` (seconds).
pub fn verify(token: &str, secret: &[u8], username: &str, now: f64) -> Result<(), JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: serde_json::Value = serde_json::from_slice(&b64url(h).ok_or(JwtError::Malformed)?)
        .map_err(|_| JwtError::Malformed)?;
    let alg = header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        other => return Err(JwtError::Algorithm(other.to_string())),
    };
    let signature = b64url(s).ok_or(JwtError::Malformed)?;
    let key = hmac::Key::new(algorithm, secret);
    let signed = &token[..h.len() + 1 + p.len()];
    hmac::verify(&key, signed.as_bytes(), &signature).map_err(|_| JwtError::Signature)?;
    let claims: serde_json::Value = serde_json::from_slice(&b64url(p).ok_or(JwtError::Malformed)?)
        .map_err(|_| JwtError::Malformed)?;
    if let Some(exp) = claims.get("exp").and_then(|v| v.as_f64())
        && now >= exp
    {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.get("nbf").and_then(|v| v.as_f64())
        && now < nbf
    {
        return Err(JwtError::NotYetValid);
    }
    let user = claims
        .get("username")
        .and_then(|u| u.as_str())
        .filter(|u| !u.is_empty())
        .ok_or(JwtError::NoUsername)?;
    if crate::common::server::secret_eq(user, username) {
        Ok(())
    } else {
        Err(JwtError::WrongUser)
    }
}

/// Base64url without padding (padding tolerated), as JWTs are written.
fn b64url(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const URL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    URL.decode(s).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn b64url_encode(data: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
    }

    /// A token signed the way InfluxDB's docs show (`{"alg":"HS256","typ":"JWT"}`).
    pub(crate) fn token(alg: &str, secret: &[u8], claims: &str) -> String {
        let header = b64url_encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
        let payload = b64url_encode(claims.as_bytes());
        let signing = format!("{header}.{payload}");
        let algorithm = match alg {
            "HS384" => hmac::HMAC_SHA384,
            "HS512" => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        };
        let sig = hmac::sign(&hmac::Key::new(algorithm, secret), signing.as_bytes());
        format!("{signing}.{}", b64url_encode(sig.as_ref()))
    }

    #[test]
    fn verifies_like_influxdb() {
        let now = 1_700_000_000.0;
        let ok = token(
            "HS256",
            b"s3cret",
            r#"{"username":"writer","exp":1700000100}"#,
        );
        assert_eq!(verify(&ok, b"s3cret", "writer", now), Ok(()));
        let ok512 = token("HS512", b"s3cret", r#"{"username":"writer"}"#);
        assert_eq!(verify(&ok512, b"s3cret", "writer", now), Ok(()));
        assert_eq!(
            verify(&ok, b"other", "writer", now),
            Err(JwtError::Signature)
        );
        assert_eq!(
            verify(&ok, b"s3cret", "reader", now),
            Err(JwtError::WrongUser)
        );
        assert_eq!(
            verify(&ok, b"s3cret", "writer", now + 200.0),
            Err(JwtError::Expired)
        );
        let early = token(
            "HS256",
            b"s3cret",
            r#"{"username":"writer","nbf":1700000100}"#,
        );
        assert_eq!(
            verify(&early, b"s3cret", "writer", now),
            Err(JwtError::NotYetValid)
        );
        let nouser = token("HS256", b"s3cret", r#"{"exp":1700000100}"#);
        assert_eq!(
            verify(&nouser, b"s3cret", "writer", now),
            Err(JwtError::NoUsername)
        );
        let none = format!(
            "{}.{}.",
            b64url_encode(br#"{"alg":"none"}"#),
            b64url_encode(br#"{"username":"writer"}"#)
        );
        assert_eq!(
            verify(&none, b"s3cret", "writer", now),
            Err(JwtError::Algorithm("none".into()))
        );
        // A payload changed after signing.
        let mut parts: Vec<String> = ok.split('.').map(String::from).collect();
        parts[1] = b64url_encode(br#"{"username":"writer","exp":9999999999}"#);
        assert_eq!(
            verify(&parts.join("."), b"s3cret", "writer", now),
            Err(JwtError::Signature)
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.??.##", "e30.e30.e30"] {
            assert!(verify(junk, b"s3cret", "writer", now).is_err(), "{junk}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = verify(&s, b"k", "u", 0.0);
        }
    }
}
