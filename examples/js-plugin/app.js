// canary-router: sends a share of clients to the canary release, and keeps
// each client on the side it was given.
//
//   [[routes.plugins]]
//   plugin = "canary-router"
//   config = { percent = 10, header = "x-canary", cookie = "canary" }
//
// The decision, in order: the request header (`always`/`never`, for testers),
// the cookie set on an earlier response (sticky), else a stable hash of the
// client's IP into `percent` out of 100. The upstream gets `x-canary: canary`
// or `stable` (route on it, e.g. with a header-matched route); later plugins
// get it as `canary` in the context; the first response sets the cookie.

import { Plugin, PluginError, exportPlugin } from "./gatehouse.js";

const SIDES = { always: "canary", never: "stable", canary: "canary", stable: "stable" };

// FNV-1a: a stable spread of client addresses over 0..99.
function bucket(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % 100;
}

class CanaryRouter extends Plugin {
  constructor(config) {
    super(config);
    const percent = config.percent ?? 0;
    if (!Number.isInteger(percent) || percent < 0 || percent > 100)
      throw new PluginError("`percent` must be a whole number from 0 to 100");
    this.percent = percent;
    this.header = config.header ?? "x-canary";
    this.cookie = config.cookie ?? "canary";
    if (!/^[A-Za-z0-9_-]+$/.test(this.cookie))
      throw new PluginError("`cookie` must be a plain cookie name");
  }

  onRequest(ctx, req) {
    const forced = SIDES[(req.header(this.header) ?? "").toLowerCase()];
    const sticky = SIDES[req.cookie(this.cookie) ?? ""];
    const side = forced ?? sticky ?? (bucket(ctx.clientIp) < this.percent ? "canary" : "stable");
    req.setHeader(this.header, side);
    ctx.set("canary", side);
    if (sticky !== side) ctx.set("canary.set-cookie", side);
    return null;
  }

  onResponse(ctx, _req, resp) {
    const side = ctx.get("canary.set-cookie");
    if (side !== undefined)
      resp.appendHeader("set-cookie", `${this.cookie}=${side}; Path=/; Max-Age=86400; HttpOnly`);
  }
}

export const { init, onRequest, onResponse } = exportPlugin(CanaryRouter);
