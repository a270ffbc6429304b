//! Running a route's chain: `on-request` in order, `on-response` in reverse.

use super::PluginError;
use super::bindings::{Action, Hooks, Outcome, Reply};
use super::exchange::{ContextRes, LentContext, LentRequest, ResponseRes};
use super::pool::{EntryPool, Warm, swap_slot};
use crate::config::OnError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Resource;

/// A route's plugin entries, in config order.
pub struct Chain {
    pub entries: Vec<Arc<EntryPool>>,
    /// Every hook some entry asked for, so the request path need not look.
    any: Hooks,
    /// Whether some entry declared response edits.
    response_edits: bool,
}

/// A plugin failure that stops the request (fail-closed).
#[derive(Debug)]
pub struct ChainFailure {
    pub plugin: Arc<str>,
    pub error: PluginError,
}

/// How the request phase ended.
pub enum RequestStep {
    /// Every plugin let the request through: send it upstream.
    Upstream,
    /// A plugin answered.
    Respond(Reply),
    /// A fail-closed plugin failed.
    Failed(ChainFailure),
}

impl Chain {
    pub fn new(entries: Vec<Arc<EntryPool>>) -> Chain {
        let any = entries.iter().fold(Hooks::empty(), |acc, e| acc | e.hooks);
        let response_edits = entries.iter().any(|e| !e.edits.response.is_empty());
        Chain {
            entries,
            any,
            response_edits,
        }
    }

    pub fn wants_request_body(&self) -> bool {
        self.any.contains(Hooks::REQUEST_BODY)
    }

    pub fn wants_response_body(&self) -> bool {
        self.any.contains(Hooks::RESPONSE_BODY)
    }

    /// Whether some entry's `on-response` will read the request afterwards.
    pub fn has_response_hooks(&self) -> bool {
        self.any.contains(Hooks::ON_RESPONSE)
    }

    /// Whether the response phase changes anything: some entry's
    /// `on-response` or declared response edits.
    pub fn has_response_phase(&self) -> bool {
        self.has_response_hooks() || self.response_edits
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs `on-request` down the chain. Returns the step and how many
    /// entries ran (their `on-response` is due, in reverse).
    pub async fn on_request(
        &self,
        ctx: &mut LentContext,
        req: &mut LentRequest,
    ) -> (RequestStep, usize) {
        // One clock reading ends a call and starts the next.
        let mut clock = Instant::now();
        for (i, entry) in self.entries.iter().enumerate() {
            entry.edits.request.apply(&mut req.parts.headers);
            if !entry.hooks.contains(Hooks::ON_REQUEST) {
                continue;
            }
            req.body_visible = entry.hooks.contains(Hooks::REQUEST_BODY);
            let result = call_request(entry, ctx, req).await;
            let took = lap(&mut clock);
            entry.record(false, took, &result);
            if let Some(timings) = &mut ctx.timings {
                timings.push((entry.tag.plugin.clone(), "request", took));
            }
            match result {
                Ok(Action::Continue) => {}
                Ok(Action::Respond(reply)) => return (RequestStep::Respond(reply), i),
                Err(error) => {
                    log_failure(entry, ctx, &error, "request");
                    if entry.on_error == OnError::FailClosed {
                        let failure = ChainFailure {
                            plugin: entry.tag.plugin.clone(),
                            error,
                        };
                        return (RequestStep::Failed(failure), i);
                    }
                }
            }
        }
        (RequestStep::Upstream, self.entries.len())
    }

    /// Runs `on-response` for the first `ran` entries, last to first. A
    /// fail-closed failure replaces the response with the gateway's error,
    /// which the remaining entries then see.
    pub async fn on_response(
        &self,
        ran: usize,
        ctx: &mut LentContext,
        req: &mut LentRequest,
        resp: &mut ResponseRes,
        mut outcome: Outcome,
        fail: impl Fn(&ChainFailure) -> ResponseRes,
    ) {
        req.writable = false;
        req.body_visible = false;
        let mut clock = Instant::now();
        for entry in self.entries[..ran].iter().rev() {
            entry.edits.response.apply(&mut resp.parts.headers);
            if !entry.hooks.contains(Hooks::ON_RESPONSE) {
                continue;
            }
            resp.body_visible = entry.hooks.contains(Hooks::RESPONSE_BODY);
            let result = call_response(entry, ctx, req, resp, outcome).await;
            let took = lap(&mut clock);
            entry.record(true, took, &result);
            if let Some(timings) = &mut ctx.timings {
                timings.push((entry.tag.plugin.clone(), "response", took));
            }
            if let Err(error) = result {
                log_failure(entry, ctx, &error, "response");
                if entry.on_error == OnError::FailClosed {
                    *resp = fail(&ChainFailure {
                        plugin: entry.tag.plugin.clone(),
                        error,
                    });
                    ctx.reapply_response_headers(&mut resp.parts.headers);
                    outcome = Outcome::Gateway;
                    clock = Instant::now();
                }
            }
        }
    }
}

/// The time since `clock`, which then moves on to now.
fn lap(clock: &mut Instant) -> Duration {
    let now = Instant::now();
    let took = now - *clock;
    *clock = now;
    took
}

fn log_failure(entry: &EntryPool, ctx: &ContextRes, error: &PluginError, phase: &str) {
    let policy = entry.on_error.as_str();
    let kind = match error {
        PluginError::Trap { kind, .. } => kind.as_str(),
        PluginError::Failed { .. } => "error",
        _ => "load",
    };
    tracing::warn!(
        route = &*ctx.route,
        plugin = &*entry.tag.plugin,
        request_id = &*ctx.request_id,
        phase,
        policy,
        reason = kind,
        "plugin failed: {error}"
    );
}

async fn call_request(
    entry: &EntryPool,
    ctx: &mut LentContext,
    req: &mut LentRequest,
) -> Result<Action, PluginError> {
    let mut warm = entry.checkout().await?;
    warm.arm(entry.ticks, &ctx.request_id);
    let Warm {
        store,
        bindings,
        slots,
        ..
    } = &mut *warm;
    let table = &mut store.data_mut().table;
    swap_slot(table, &slots.ctx, ctx);
    swap_slot(table, &slots.req, req);
    let (c, r) = (borrow(&slots.ctx), borrow(&slots.req));
    let ticking = entry.ticker().hold();
    let result = bindings.call_on_request(&mut *store, c, r).await;
    drop(ticking);
    let table = &mut store.data_mut().table;
    swap_slot(table, &slots.ctx, ctx);
    swap_slot(table, &slots.req, req);
    settle(entry, warm, result, "on-request")
}

/// A call's answer: the instance goes back to its pool unless the call
/// trapped (its state is then not to be trusted).
fn settle<T>(
    entry: &EntryPool,
    warm: Box<Warm>,
    result: wasmtime::Result<Result<T, String>>,
    context: &'static str,
) -> Result<T, PluginError> {
    match result {
        Ok(answer) => {
            entry.checkin(warm);
            answer.map_err(|message| PluginError::Failed { context, message })
        }
        Err(e) => Err(PluginError::from_trap(&e, &warm.store, context)),
    }
}

/// A borrow of a slot for one call.
fn borrow<T: 'static>(slot: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(slot.rep())
}

async fn call_response(
    entry: &EntryPool,
    ctx: &mut LentContext,
    req: &mut LentRequest,
    resp: &mut ResponseRes,
    outcome: Outcome,
) -> Result<(), PluginError> {
    let mut warm = entry.checkout().await?;
    warm.arm(entry.ticks, &ctx.request_id);
    let Warm {
        store,
        bindings,
        slots,
        ..
    } = &mut *warm;
    let table = &mut store.data_mut().table;
    swap_slot(table, &slots.ctx, ctx);
    swap_slot(table, &slots.req, req);
    swap_slot(table, &slots.resp, resp);
    let (c, r, p) = (borrow(&slots.ctx), borrow(&slots.req), borrow(&slots.resp));
    let ticking = entry.ticker().hold();
    let result = bindings
        .call_on_response(&mut *store, c, r, p, outcome)
        .await;
    drop(ticking);
    let table = &mut store.data_mut().table;
    swap_slot(table, &slots.ctx, ctx);
    swap_slot(table, &slots.req, req);
    swap_slot(table, &slots.resp, resp);
    settle(entry, warm, result, "on-response")
}
