//! Glue between the generated bindings and [`Plugin`](crate::Plugin).
//! Not part of the public API.

use crate::__bindings::gatehouse::plugin::types as wit;
use crate::__bindings::{Guest, Hooks};
use crate::{Context, Outcome, Plugin, Request, Response};

/// Where the export macro keeps the instance's plugin value.
pub trait Slot: 'static {
    type Plugin: Plugin;
    fn with<R>(f: impl FnOnce(&mut Option<Self::Plugin>) -> R) -> R;
}

fn wit_hooks(h: crate::Hooks) -> Hooks {
    let mut w = Hooks::empty();
    w.set(Hooks::ON_REQUEST, h.on_request);
    w.set(Hooks::ON_RESPONSE, h.on_response);
    w.set(Hooks::REQUEST_BODY, h.request_body);
    w.set(Hooks::RESPONSE_BODY, h.response_body);
    w
}

const NOT_INITIALISED: &str = "plugin called before init";

impl<S: Slot> Guest for S {
    fn init(config: String) -> Result<Hooks, String> {
        // A panic traps the instance; have its message reach the gateway's
        // log (plugins have no stderr) before it does.
        std::panic::set_hook(Box::new(|info| {
            crate::log::error(&format!("plugin panicked: {info}"))
        }));
        let de = &mut serde_json::Deserializer::from_str(&config);
        let typed = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // serde_json's position is inside the JSON the host made from
            // the TOML table, which means nothing to the config's author.
            let inner = e.into_inner().to_string();
            let inner = inner
                .rfind(" at line ")
                .map_or(inner.as_str(), |i| &inner[..i]);
            if path == "." {
                format!("invalid config: {inner}")
            } else {
                format!("invalid config at `{path}`: {inner}")
            }
        })?;
        let plugin = S::Plugin::new(typed).map_err(|e| e.to_string())?;
        let hooks = wit_hooks(plugin.hooks());
        plugin.edits().declare()?;
        S::with(|slot| *slot = Some(plugin));
        Ok(hooks)
    }

    fn on_request(ctx: &'_ wit::Context, req: &'_ wit::Request) -> Result<wit::Action, String> {
        S::with(|slot| {
            let plugin = slot.as_mut().ok_or(NOT_INITIALISED)?;
            let ctx = Context::new(ctx);
            let mut req = Request::new(req);
            plugin
                .on_request(&ctx, &mut req)
                .map(Into::into)
                .map_err(|e| e.to_string())
        })
    }

    fn on_response(
        ctx: &'_ wit::Context,
        req: &'_ wit::Request,
        resp: &'_ wit::Response,
        outcome: wit::Outcome,
    ) -> Result<(), String> {
        S::with(|slot| {
            let plugin = slot.as_mut().ok_or(NOT_INITIALISED)?;
            let (ctx, req, mut resp) = (Context::new(ctx), Request::new(req), Response::new(resp));
            plugin
                .on_response(&ctx, &req, &mut resp, Outcome::from(outcome))
                .map_err(|e| e.to_string())
        })
    }
}
