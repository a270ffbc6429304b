//! A JWK set fetched from `jwks_url` through the host, shared by every
//! instance in host state, refreshed on a timer and on unknown `kid`s, never
//! more often than the cooldown allows.

use crate::keys::Keys;
use gatehouse_sdk::outbound::{self, FetchError};
use gatehouse_sdk::{Error, Result, clock, log, state};
use jsonwebtoken::jwk::JwkSet;
use std::time::Duration;

pub struct RemoteJwks {
    url: String,
    /// The configured keys, which every fetched set is added to.
    base: Keys,
    refresh_ms: u64,
    cooldown_ms: u64,
    /// When the set this instance uses was fetched (its version); 0: none yet.
    fetched_at: u64,
    /// Host-state keys: the set's body, its fetch time, the cooldown marker.
    body_key: String,
    at_key: String,
    try_key: String,
}

impl RemoteJwks {
    pub fn new(url: String, base: &Keys, refresh_ms: u64, cooldown_ms: u64) -> Result<RemoteJwks> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::msg(format!(
                "`jwks_url`: \"{url}\" is not an http:// or https:// URL"
            )));
        }
        if cooldown_ms == 0 || refresh_ms < cooldown_ms {
            return Err(Error::msg(
                "`jwks_cooldown` must be more than 0 and at most `jwks_refresh`",
            ));
        }
        Ok(RemoteJwks {
            body_key: format!("jwks:{url}"),
            at_key: format!("jwks-at:{url}"),
            try_key: format!("jwks-try:{url}"),
            url,
            base: base.clone(),
            refresh_ms,
            cooldown_ms,
            fetched_at: 0,
        })
    }

    /// New keys when the shared set changed (fetched by this or another
    /// instance), `None` when the keys in use are still current. Fetches when
    /// there is no set yet, when it is older than the refresh interval, or
    /// when `kid_unknown`, if no instance has tried within the cooldown.
    /// Errs only when the host refuses the URL by policy.
    pub fn sync(&mut self, kid_unknown: bool) -> Result<Option<Keys>> {
        let mut fresh = self.adopt_shared();
        let now = clock::now_ms();
        let due = self.fetched_at == 0
            || kid_unknown
            || now.saturating_sub(self.fetched_at) >= self.refresh_ms;
        let cooldown = Duration::from_millis(self.cooldown_ms);
        if due && state::set_if_absent(&self.try_key, b"1", Some(cooldown)) {
            match self.fetch() {
                Ok(set) => {
                    let stamp = now.max(self.fetched_at + 1);
                    state::set(&self.body_key, &set, None);
                    state::set(&self.at_key, stamp.to_string().as_bytes(), None);
                    fresh = self.adopt_shared().or(fresh);
                }
                Err(FetchError::Denied(why)) => {
                    return Err(Error::msg(format!(
                        "`jwks_url` cannot be fetched: {why} (add the key server's host:port there)"
                    )));
                }
                Err(e) => log::warn(&format!(
                    "fetching {} failed ({e}); keeping the keys already known",
                    self.url
                )),
            }
        }
        Ok(fresh)
    }

    /// The shared set's keys, if it is newer than the one in use.
    fn adopt_shared(&mut self) -> Option<Keys> {
        let stamp: u64 = String::from_utf8(state::get(&self.at_key)?)
            .ok()?
            .parse()
            .ok()?;
        if stamp == self.fetched_at {
            return None;
        }
        let body = state::get(&self.body_key)?;
        let set: JwkSet = serde_json::from_slice(&body).ok()?;
        self.fetched_at = stamp;
        Some(self.base.with_jwks(&set))
    }

    /// Fetches and checks the set; a bad answer is a failed fetch.
    fn fetch(&self) -> std::result::Result<Vec<u8>, FetchError> {
        let resp = outbound::FetchRequest::new("GET", &self.url)
            .header("accept", "application/json")
            .send()?;
        if resp.status != 200 {
            return Err(FetchError::Failed(format!("status {}", resp.status)));
        }
        let set: JwkSet = serde_json::from_slice(&resp.body)
            .map_err(|e| FetchError::Failed(format!("not a JWK set: {e}")))?;
        if set.keys.is_empty() {
            return Err(FetchError::Failed("the JWK set has no keys".into()));
        }
        Ok(resp.body)
    }
}
