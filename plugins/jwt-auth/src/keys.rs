//! The keys a token may be checked with, grouped by algorithm family.

use gatehouse_sdk::{Error, Result};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Family {
    use jsonwebtoken::AlgorithmFamily as F;
    match alg.family() {
        F::Hmac => Family::Hmac,
        F::Rsa => Family::Rsa,
        F::Ec => Family::Ec,
        _ => Family::Ed,
    }
}

#[derive(Clone)]
pub struct Keys {
    secret: Option<DecodingKey>,
    /// (family, kid, key): public keys (no kid) and JWKS keys (oct ones too).
    public: Vec<(u8, Option<String>, DecodingKey)>,
}

fn tag(f: &Family) -> u8 {
    match f {
        Family::Hmac => 0,
        Family::Rsa => 1,
        Family::Ec => 2,
        Family::Ed => 3,
    }
}

/// Signature keys of a set: `alg` is optional in a JWK, so skip only keys
/// that name one we cannot do, and encryption keys.
fn usable(set: &JwkSet) -> impl Iterator<Item = &Jwk> {
    set.keys.iter().filter(|k| {
        (k.common.key_algorithm.is_none() || k.is_supported())
            && !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption))
    })
}

fn jwk_family(jwk: &Jwk) -> Option<Family> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    match &jwk.algorithm {
        P::RSA(_) => Some(Family::Rsa),
        P::EllipticCurve(_) => Some(Family::Ec),
        P::OctetKeyPair(_) => Some(Family::Ed),
        P::OctetKey(_) => Some(Family::Hmac),
        _ => None,
    }
}

impl Keys {
    pub fn new(
        algorithms: &[Algorithm],
        secret: Option<&str>,
        pems: &[String],
        jwks: Option<&serde_json::Value>,
        remote_jwks: bool,
    ) -> Result<Keys> {
        let wants_hmac = algorithms
            .iter()
            .any(|a| matches!(family(*a), Family::Hmac));
        let wants_public = algorithms
            .iter()
            .any(|a| !matches!(family(*a), Family::Hmac));
        let secret = match (secret, wants_hmac) {
            (Some(""), _) => return Err(Error::msg("`secret` must not be empty")),
            (Some(s), true) => Some(DecodingKey::from_secret(s.as_bytes()).map_err(Error::from)?),
            (Some(_), false) => {
                return Err(Error::msg(
                    "`secret` is only for HS* algorithms, and none is listed",
                ));
            }
            _ => None,
        };
        let mut public = Vec::new();
        for (i, pem) in pems.iter().enumerate() {
            let bytes = pem.as_bytes();
            let key = DecodingKey::from_rsa_pem(bytes)
                .map(|k| (Family::Rsa, k))
                .or_else(|_| DecodingKey::from_ec_pem(bytes).map(|k| (Family::Ec, k)))
                .or_else(|_| DecodingKey::from_ed_pem(bytes).map(|k| (Family::Ed, k)))
                .map_err(|_| {
                    Error::msg(format!(
                        "`public_keys[{i}]` is not an RSA, EC or Ed25519 public key in PEM"
                    ))
                })?;
            public.push((tag(&key.0), None, key.1));
        }
        let mut keys = Keys { secret, public };
        if let Some(v) = jwks {
            let set: JwkSet = serde_json::from_value(v.clone())
                .map_err(|e| Error::msg(format!("`jwks`: {e}")))?;
            keys.add_jwks(&set)
                .map_err(|e| Error::msg(format!("`jwks`: {e}")))?;
        }
        let hmac = tag(&Family::Hmac);
        let has_oct = keys.public.iter().any(|(f, _, _)| *f == hmac);
        if wants_hmac && keys.secret.is_none() && !has_oct && !remote_jwks {
            return Err(Error::msg(
                "an HS* algorithm is listed: set `secret` (or oct keys in `jwks`)",
            ));
        }
        if wants_public && !keys.public.iter().any(|(f, _, _)| *f != hmac) && !remote_jwks {
            return Err(Error::msg(
                "a public-key algorithm is listed: set `public_keys`, `jwks` or `jwks_url`",
            ));
        }
        Ok(keys)
    }

    /// These keys plus a JWK set's (a fetched one: keys it cannot use are
    /// skipped, so one odd key does not lose the whole set).
    pub fn with_jwks(&self, set: &JwkSet) -> Keys {
        let mut keys = self.clone();
        for jwk in usable(set) {
            if let Ok(key) = DecodingKey::from_jwk(jwk)
                && let Some(f) = jwk_family(jwk)
            {
                keys.public.push((tag(&f), jwk.common.key_id.clone(), key));
            }
        }
        keys
    }

    /// Adds every usable key of a configured set; a bad one is an error.
    fn add_jwks(&mut self, set: &JwkSet) -> std::result::Result<(), String> {
        for jwk in usable(set) {
            let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
            if let Some(f) = jwk_family(jwk) {
                self.public.push((tag(&f), jwk.common.key_id.clone(), key));
            }
        }
        Ok(())
    }

    /// Whether some key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.public
            .iter()
            .any(|(_, k, _)| k.as_deref() == Some(kid))
    }

    /// The keys to try for a token's algorithm and key id, best first.
    pub fn candidates(&self, alg: Algorithm, kid: Option<&str>) -> Vec<&DecodingKey> {
        let t = tag(&family(alg));
        let same_family = self.public.iter().filter(|(ft, _, _)| *ft == t);
        if t == tag(&Family::Hmac) && self.secret.is_some() {
            return self
                .secret
                .iter()
                .chain(same_family.map(|(_, _, k)| k))
                .collect();
        }
        match kid {
            // A kid that names a key picks it; one that names none fails.
            Some(kid) if self.public.iter().any(|(_, k, _)| k.is_some()) => same_family
                .filter(|(_, k, _)| k.as_deref() == Some(kid))
                .map(|(_, _, key)| key)
                .collect(),
            _ => same_family.map(|(_, _, key)| key).collect(),
        }
    }
}
