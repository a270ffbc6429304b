//! Sets a configured header on every request sent upstream.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "add-header"
//! config = { name = "x-gateway", value = "gatehouse" }
//! ```

use gatehouse_sdk::{Action, Context, Error, Plugin, Request, Result, export};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    value: String,
}

struct AddHeader(Config);

impl Plugin for AddHeader {
    type Config = Config;
    const ON_RESPONSE: bool = false;

    fn new(config: Config) -> Result<Self> {
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if config.name.is_empty() || !config.name.chars().all(token) {
            return Err(Error::msg(format!(
                "invalid header name \"{}\"",
                config.name
            )));
        }
        Ok(AddHeader(config))
    }

    fn on_request(&mut self, _ctx: &Context, req: &mut Request) -> Result<Action> {
        req.set_header(&self.0.name, &self.0.value)?;
        Ok(Action::Continue)
    }
}

export!(AddHeader);
