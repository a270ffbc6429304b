//! Write Gatehouse API gateway plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`], built for `wasm32-wasip2` as a
//! `cdylib` and exported with [`export!`]. The gateway keeps a pool of warm
//! instances of it per route entry; each instance is created once from the
//! entry's typed [`Plugin::Config`] and then serves many requests, one at a
//! time, so `&mut self` is a per-instance cache. The response phase of a
//! request may run on another instance than its request phase: hand facts
//! from one phase to the other with [`Context::set`], not in `self`. State
//! shared by all instances lives in the host: see [`state`]. Requests to
//! other services go through the host too: see [`outbound`].
//!
//! ```no_run
//! use gatehouse_sdk::{export, Action, Context, Plugin, Request, Result};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Config { name: String, value: String }
//!
//! struct AddHeader(Config);
//!
//! impl Plugin for AddHeader {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self> { Ok(AddHeader(config)) }
//!     fn on_request(&mut self, _ctx: &Context, req: &mut Request) -> Result<Action> {
//!         req.set_header(&self.0.name, &self.0.value)?;
//!         Ok(Action::Continue)
//!     }
//! }
//!
//! export!(AddHeader);
//! ```
#![deny(missing_docs)]

extern crate self as gatehouse_sdk;

pub mod config;
mod edits;
mod error;
mod http;
pub mod log;
pub mod metrics;
pub mod outbound;
mod reply;
pub mod state;

pub use edits::Edits;
pub use error::{Error, Result};
pub use http::{Context, Outcome, Request, Response};
pub use reply::{Action, Reply};

#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "::gatehouse_sdk::__bindings",
        runtime_path: "::gatehouse_sdk::__wit_bindgen::rt",
        generate_all,
        // Imports take borrowed strings and lists (`&[(&str, &str)]`), so a
        // call hands the host the plugin's data without copying it first.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

#[doc(hidden)]
pub mod __rt;

/// Wall-clock and monotonic time from the host.
pub mod clock {
    use crate::__bindings::gatehouse::plugin::host;

    /// Milliseconds since the Unix epoch.
    ///
    /// ```no_run
    /// let started = gatehouse_sdk::clock::now_ms();
    /// ```
    pub fn now_ms() -> u64 {
        host::now_ms()
    }

    /// A monotonic clock in nanoseconds, for measuring intervals.
    ///
    /// ```no_run
    /// let t0 = gatehouse_sdk::clock::monotonic_ns();
    /// let spent = gatehouse_sdk::clock::monotonic_ns() - t0;
    /// ```
    pub fn monotonic_ns() -> u64 {
        host::monotonic_ns()
    }
}

/// Which calls an instance wants from the host, and which bodies buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks {
    /// Call [`Plugin::on_request`].
    pub on_request: bool,
    /// Call [`Plugin::on_response`].
    pub on_response: bool,
    /// Buffer the request body for [`Request::body`].
    pub request_body: bool,
    /// Buffer the response body for [`Response::body`].
    pub response_body: bool,
}

impl Hooks {
    /// The hooks a plugin type's constants ask for.
    ///
    /// ```
    /// # use gatehouse_sdk::{Hooks, Plugin, Result};
    /// struct P;
    /// impl Plugin for P {
    ///     type Config = serde_json::Value;
    ///     const ON_RESPONSE: bool = false;
    ///     fn new(_: serde_json::Value) -> Result<Self> { Ok(P) }
    /// }
    /// assert!(!Hooks::of::<P>().on_response);
    /// ```
    pub fn of<P: Plugin>() -> Hooks {
        Hooks {
            on_request: P::ON_REQUEST,
            on_response: P::ON_RESPONSE,
            request_body: P::REQUEST_BODY,
            response_body: P::RESPONSE_BODY,
        }
    }
}

/// A Gatehouse plugin.
///
/// Only [`Plugin::new`] is required; both phases default to letting
/// everything through. See the crate docs for a complete plugin.
pub trait Plugin: Sized + 'static {
    /// The entry's `config` table, checked by serde when the gateway loads
    /// the config: a missing or mistyped field refuses the config with the
    /// field's path. Use `()`-like `serde_json::Value` for free-form config.
    type Config: serde::de::DeserializeOwned;

    /// Call [`Plugin::on_request`] (default true).
    const ON_REQUEST: bool = true;
    /// Call [`Plugin::on_response`] (default true; set false to save a call
    /// per request when you do not implement it).
    const ON_RESPONSE: bool = true;
    /// Have the host buffer the request body for [`Request::body`].
    const REQUEST_BODY: bool = false;
    /// Have the host buffer the response body for [`Response::body`].
    const RESPONSE_BODY: bool = false;

    /// Builds an instance from its config. An error refuses the config.
    fn new(config: Self::Config) -> Result<Self>;

    /// What the host should do for this instance. By default the constants
    /// above; override it when the config decides (ask for the response
    /// body only when a configured rule needs it, say).
    ///
    /// ```no_run
    /// # use gatehouse_sdk::{Hooks, Plugin, Result};
    /// # struct Transform { json_rules: bool }
    /// # impl Plugin for Transform {
    /// #     type Config = serde_json::Value;
    /// #     fn new(_: serde_json::Value) -> Result<Self> { Ok(Transform { json_rules: false }) }
    /// fn hooks(&self) -> Hooks {
    ///     Hooks { response_body: self.json_rules, ..Hooks::of::<Self>() }
    /// }
    /// # }
    /// ```
    fn hooks(&self) -> Hooks {
        Hooks::of::<Self>()
    }

    /// Header edits the gateway makes itself at this plugin's place in the
    /// chain, on every request or response, without calling the plugin
    /// (see [`Edits`]). Asked once, after [`Plugin::new`]. By default none.
    ///
    /// ```no_run
    /// # use gatehouse_sdk::{Edits, Plugin, Result};
    /// # struct AddHeader { name: String, value: String }
    /// # impl Plugin for AddHeader {
    /// #     type Config = serde_json::Value;
    /// #     fn new(_: serde_json::Value) -> Result<Self> { unimplemented!() }
    /// // Nothing left to do per request: no call into the plugin at all.
    /// const ON_REQUEST: bool = false;
    /// const ON_RESPONSE: bool = false;
    ///
    /// fn edits(&self) -> Edits {
    ///     Edits::new().set_request_header(&self.name, &self.value)
    /// }
    /// # }
    /// ```
    fn edits(&self) -> Edits {
        Edits::new()
    }

    /// The request phase: change the request, or answer it with
    /// [`Action::Respond`]. An error fails the request by the entry's
    /// `on_error` policy.
    fn on_request(&mut self, ctx: &Context, req: &mut Request) -> Result<Action> {
        let _ = (ctx, req);
        Ok(Action::Continue)
    }

    /// The response phase, run in reverse chain order. `req` is the request
    /// as it went upstream (read-only); `outcome` says where `resp` came from.
    fn on_response(
        &mut self,
        ctx: &Context,
        req: &Request,
        resp: &mut Response,
        outcome: Outcome,
    ) -> Result<()> {
        let _ = (ctx, req, resp, outcome);
        Ok(())
    }
}

/// Exports a [`Plugin`] type as the component's implementation of the
/// `gatehouse:plugin` world. Use it once per plugin crate.
///
/// ```no_run
/// # use gatehouse_sdk::{Plugin, Result};
/// struct Noop;
/// impl Plugin for Noop {
///     type Config = serde_json::Value;
///     fn new(_: serde_json::Value) -> Result<Self> { Ok(Noop) }
/// }
/// gatehouse_sdk::export!(Noop);
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            struct __GatehouseExport;
            impl $crate::__rt::Slot for __GatehouseExport {
                type Plugin = $plugin;
                fn with<R>(f: impl FnOnce(&mut Option<$plugin>) -> R) -> R {
                    ::std::thread_local! {
                        static INSTANCE: ::std::cell::RefCell<Option<$plugin>> = const { ::std::cell::RefCell::new(None) };
                    }
                    INSTANCE.with(|cell| f(&mut cell.borrow_mut()))
                }
            }
            $crate::__bindings::__export_plugin!(__GatehouseExport with_types_in $crate::__bindings);
        };
    };
}
