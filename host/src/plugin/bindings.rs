//! Host bindings generated from `wit/`; private to the plugin runtime.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: {
        // Shared state may later be served by a networked store: async, so a
        // slow answer parks the call's fiber instead of blocking a worker.
        "gatehouse:plugin/state": async,
        // Network I/O: the call's fiber parks while the request is in flight.
        "gatehouse:plugin/outbound": async,
        // A guest that hands back a stale handle has broken the contract: trap.
        "gatehouse:plugin/types": trappable,
    },
    exports: { default: async },
    with: {
        "gatehouse:plugin/types.context": super::exchange::LentContext,
        "gatehouse:plugin/types.request": super::exchange::LentRequest,
        "gatehouse:plugin/types.response": super::exchange::ResponseRes,
    },
});

pub use self::gatehouse::plugin::host::Level;
pub use self::gatehouse::plugin::outbound::{FetchError, FetchRequest, FetchResponse};
pub use self::gatehouse::plugin::state::WindowCount;
pub use self::gatehouse::plugin::types::Reply;
