//! Admits a request only when its tenant header names a known tenant.
//! Unknown or missing tenants get a JSON 403 (or 400) from the gateway
//! itself, and the upstream is never called. Known tenants are handed to
//! later plugins as the `consumer` and to the upstream as `x-tenant-id`.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "tenant-guard"
//! config = { header = "x-tenant", tenants = { acme = "t-001", globex = "t-002" } }
//! ```

use gatehouse_sdk::{Action, Context, Error, Plugin, Reply, Request, Result, export, log};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_header")]
    header: String,
    /// Tenant name -> tenant id sent upstream.
    tenants: HashMap<String, String>,
}

fn default_header() -> String {
    "x-tenant".into()
}

struct TenantGuard(Config);

impl Plugin for TenantGuard {
    type Config = Config;
    const ON_RESPONSE: bool = false;

    fn new(config: Config) -> Result<Self> {
        if config.tenants.is_empty() {
            return Err(Error::msg("tenants must name at least one tenant"));
        }
        Ok(TenantGuard(config))
    }

    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        let Some(name) = req.header(&self.0.header) else {
            let body =
                json!({ "error": format!("missing {} header", self.0.header), "status": 400 });
            return Ok(Action::Respond(Reply::json(400, &body)));
        };
        let Some(id) = self.0.tenants.get(&name) else {
            log::info(&format!("refused unknown tenant {name:?}"));
            let body = json!({ "error": "unknown tenant", "status": 403 });
            return Ok(Action::Respond(Reply::json(403, &body)));
        };
        ctx.set("consumer", &name);
        req.set_header("x-tenant-id", id)?;
        Ok(Action::Continue)
    }
}

export!(TenantGuard);
