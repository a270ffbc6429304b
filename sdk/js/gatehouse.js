// The Gatehouse plugin SDK for JavaScript (contract gatehouse:plugin@0.1.5),
// for components built with componentize-js (StarlingMonkey).
//
//   import { Plugin, Reply, PluginError, exportPlugin } from "./gatehouse.js";
//
//   class Guard extends Plugin {
//     constructor(config) {
//       super(config);
//       if (typeof config.header !== "string") throw new PluginError("`header` is required");
//     }
//     onRequest(ctx, req) {
//       if (req.header(this.config.header) === undefined)
//         return Reply.error(ctx, 400, "missing " + this.config.header);
//       return null; // let it through
//     }
//   }
//
//   export const { init, onRequest, onResponse } = exportPlugin(Guard);
//
// `gatehouse plugin build DIR` builds DIR/app.js (it may import other files
// of the project with relative paths). An instance serves many requests, one
// at a time: state on `this` lives across that instance's requests; state
// shared by every instance goes through `state` (u64 values are BigInt there).

import * as declared from "gatehouse:plugin/edits@0.1.5";
import * as host from "gatehouse:plugin/host@0.1.5";
import * as state from "gatehouse:plugin/state@0.1.5";

export { state };

/** Thrown by a plugin: refuses the config in the constructor, fails the
 * request (by the entry's `on_error`) in a phase. */
export class PluginError extends Error {}

const encoder = new TextEncoder();

/** A response the plugin answers with instead of the upstream's. */
export class Reply {
  constructor(status, headers = [], body = new Uint8Array()) {
    this.status = status;
    this.headers = headers;
    this.body = typeof body === "string" ? encoder.encode(body) : body;
  }

  static json(status, value) {
    return new Reply(status, [["content-type", "application/json"]], JSON.stringify(value));
  }

  static text(status, text) {
    return new Reply(status, [["content-type", "text/plain; charset=utf-8"]], text);
  }

  /** The gateway's own error shape: {"error", "request_id", "status"}. */
  static error(ctx, status, message) {
    return Reply.json(status, { error: message, request_id: ctx.requestId, status });
  }
}

/** Host refusals (`result<_, string>`) become PluginError. */
function checked(call) {
  try {
    return call();
  } catch (e) {
    throw new PluginError(String(e && e.payload !== undefined ? e.payload : e));
  }
}

const orUndefined = (v) => (v === null ? undefined : v);

/** Headers for the list calls: [name, value] pairs, or an object of
 * name: value; values are turned into strings. */
function fields(headers) {
  const list = Array.isArray(headers) ? headers : Object.entries(headers);
  return list.map(([name, value]) => [String(name), String(value)]);
}

/** Facts about the request beyond the HTTP message, and values plugins hand
 * down the chain (`consumer`, `param.NAME`, ...). */
export class Context {
  constructor(handle) {
    this.h = handle;
  }
  get route() {
    return this.h.route();
  }
  get upstream() {
    return this.h.upstream();
  }
  get requestId() {
    return this.h.requestId();
  }
  /** The client's IP (a trusted proxy's client when there is one). */
  get clientIp() {
    const addr = this.h.clientAddr();
    if (addr.startsWith("[")) return addr.slice(1, addr.indexOf("]"));
    const colon = addr.indexOf(":");
    return colon >= 0 && colon === addr.lastIndexOf(":") ? addr.slice(0, colon) : addr;
  }
  get(key) {
    return orUndefined(this.h.get(key));
  }
  set(key, value) {
    this.h.set(key, String(value));
  }
  // Sets a header on the response the client gets, whoever answers; from
  // onRequest it spares a plugin its own onResponse (contract 0.1.3).
  setResponseHeader(name, value) {
    checked(() => this.h.setResponseHeader(name, String(value)));
  }
  // Several at once (contract 0.1.4): as setResponseHeader for each pair in
  // order, all or nothing. One host call; pays from about three headers on.
  setResponseHeaders(headers) {
    checked(() => this.h.setResponseHeaders(fields(headers)));
  }
}

class Message {
  constructor(handle) {
    this.h = handle;
  }
  /** The first value of a header, or undefined. */
  header(name) {
    return orUndefined(this.h.header(name));
  }
  headerAll(name) {
    return this.h.headerAll(name);
  }
  headers() {
    return this.h.headers();
  }
  setHeader(name, value) {
    checked(() => this.h.setHeader(name, String(value)));
  }
  /** Several at once (contract 0.1.4): as setHeader for each pair in order
   * (a name given twice ends with its last value), all or nothing: a bad
   * name or value sets none. One host call; pays from about three on. */
  setHeaders(headers) {
    checked(() => this.h.setHeaders(fields(headers)));
  }
  appendHeader(name, value) {
    checked(() => this.h.appendHeader(name, String(value)));
  }
  removeHeader(name) {
    checked(() => this.h.removeHeader(name));
  }
  /** The buffered body (static requestBody / responseBody = true), or undefined. */
  body() {
    return orUndefined(this.h.body());
  }
  setBody(body) {
    checked(() => this.h.setBody(typeof body === "string" ? encoder.encode(body) : body));
  }
}

/** A header named in a `cookie` header, or undefined. */
function cookie(message, name) {
  for (const line of message.headerAll("cookie")) {
    for (const part of line.split(";")) {
      const eq = part.indexOf("=");
      if (eq >= 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

export class Request extends Message {
  get method() {
    return this.h.method();
  }
  get path() {
    return this.h.path();
  }
  get query() {
    return orUndefined(this.h.query());
  }
  setPath(path) {
    checked(() => this.h.setPath(path));
  }
  setQuery(query) {
    checked(() => this.h.setQuery(query === undefined ? undefined : query));
  }
  /** A cookie the client sent, or undefined. */
  cookie(name) {
    return cookie(this, name);
  }
}

export class Response extends Message {
  get status() {
    return this.h.status();
  }
  setStatus(status) {
    checked(() => this.h.setStatus(status));
  }
}

/** Header edits the gateway makes itself on every request or response, at
 * the plugin's place in the chain, without calling the plugin (0.1.5): for
 * edits the config fixes, such as a constant header set or a header removed.
 * Returned by `Plugin.edits()` when the instance is created; a bad name or
 * value refuses the config then. In each phase they are made in the order
 * given, just before the plugin's own hook for that phase, or in its place:
 * a plugin whose request phase is only such edits does not override
 * `onRequest` and costs no call into JavaScript per request.
 *
 *   edits() {
 *     return new Edits().removeRequestHeader("cookie").setResponseHeader("x-served-by", "gatehouse");
 *   }
 */
export class Edits {
  constructor() {
    /** [phase, name, value]; no value: a removal. */
    this.list = [];
  }
  add(phase, name, value) {
    this.list.push([phase, String(name), value === undefined ? undefined : String(value)]);
    return this;
  }
  /** Sets a header of the request on its way upstream, replacing any values it had. */
  setRequestHeader(name, value) {
    return this.add("request", name, value);
  }
  /** Removes every value of a request header. */
  removeRequestHeader(name) {
    return this.add("request", name);
  }
  /** Sets a header of the response on its way to the client, replacing any values it had. */
  setResponseHeader(name, value) {
    return this.add("response", name, value);
  }
  /** Removes every value of a response header. */
  removeResponseHeader(name) {
    return this.add("response", name);
  }
  /** Hands the edits to the host, in order; the first it refuses throws. */
  declare() {
    for (const [phase, name, value] of this.list)
      checked(() =>
        value === undefined
          ? declared.removeHeader(phase, name)
          : declared.setHeader(phase, name, value),
      );
  }
}

/** Base class: override `onRequest` (and `onResponse` if needed). */
export class Plugin {
  static requestBody = false;
  static responseBody = false;

  constructor(config) {
    this.config = config;
  }
  /** Header edits the gateway makes itself (see `Edits`); none by default. */
  edits() {
    return new Edits();
  }
  /** Return null to let the request through, or a Reply to answer. */
  onRequest(_ctx, _req) {
    return null;
  }
  /** `outcome`: "upstream", "plugin", "connect-error", "timeout" or "gateway". */
  onResponse(_ctx, _req, _resp, _outcome) {}
}

/** `level`: "trace", "debug", "info", "warn" or "error". */
export function log(level, message) {
  host.log(level, String(message));
}

/** Wall-clock time in milliseconds, as a Number. */
export function nowMs() {
  return Number(host.nowMs());
}

/** An error for the host: the message of a PluginError, or the kind and
 * message of anything else thrown. */
function failure(e) {
  if (e instanceof PluginError) return e.message;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** The contract's exports for a Plugin subclass:
 * `export const { init, onRequest, onResponse } = exportPlugin(MyPlugin);` */
export function exportPlugin(cls) {
  const overrides = (name) => cls.prototype[name] !== Plugin.prototype[name];
  const hooks = {
    onRequest: overrides("onRequest"),
    onResponse: overrides("onResponse"),
    requestBody: Boolean(cls.requestBody),
    responseBody: Boolean(cls.responseBody),
  };
  let plugin = null;
  return {
    init(config) {
      try {
        plugin = new cls(JSON.parse(config));
        plugin.edits().declare();
      } catch (e) {
        throw failure(e);
      }
      return hooks;
    },
    onRequest(ctx, req) {
      let reply;
      try {
        reply = plugin.onRequest(new Context(ctx), new Request(req));
      } catch (e) {
        throw failure(e);
      }
      if (reply === null || reply === undefined) return { tag: "continue" };
      return {
        tag: "respond",
        val: { status: reply.status, headers: reply.headers, body: reply.body },
      };
    },
    onResponse(ctx, req, resp, outcome) {
      try {
        plugin.onResponse(new Context(ctx), new Request(req), new Response(resp), outcome);
      } catch (e) {
        throw failure(e);
      }
    },
  };
}
