"""The Gatehouse plugin SDK for Python (contract gatehouse:plugin@0.1.5).

Subclass `Plugin`, implement `on_request` (and `on_response` if you need
it), and export the class::

    import gatehouse

    class Guard(gatehouse.Plugin):
        def __init__(self, config):
            self.header = config["header"]          # a KeyError refuses the config

        def on_request(self, ctx, req):
            if req.header(self.header) is None:
                return gatehouse.Reply.error(ctx, 400, "missing " + self.header)
            return None                             # let it through

    WitWorld = gatehouse.export(Guard)

`gatehouse plugin build DIR` turns `DIR/app.py` into a component with
componentize-py. An instance serves many requests, one at a time, so state
kept on `self` lives across requests of that instance; state shared by all
instances goes through `gatehouse.state`.
"""

import json
from typing import Callable, Iterable, List, Mapping, Optional, Tuple, Union

from componentize_py_types import Err
from wit_world.imports import edits as _edits
from wit_world.imports import host, state, types  # noqa: F401  (state: for plugins)

__all__ = [
    "Edits",
    "Plugin",
    "PluginError",
    "Reply",
    "Request",
    "Response",
    "Context",
    "Outcome",
    "export",
    "log",
    "now_ms",
    "state",
]

Outcome = types.Outcome


class PluginError(Exception):
    """Raised by a plugin: refuses the config in `__init__`, fails the
    request (by the entry's `on_error`) in a phase."""


class Reply:
    """A response the plugin answers with instead of the upstream's."""

    def __init__(self, status: int, headers: Optional[List[Tuple[str, str]]] = None,
                 body: bytes = b""):
        self.status = status
        self.headers = list(headers or [])
        self.body = body

    @staticmethod
    def json(status: int, value) -> "Reply":
        body = json.dumps(value, separators=(",", ":")).encode()
        return Reply(status, [("content-type", "application/json")], body)

    @staticmethod
    def text(status: int, text: str) -> "Reply":
        return Reply(status, [("content-type", "text/plain; charset=utf-8")], text.encode())

    @staticmethod
    def error(ctx: "Context", status: int, message: str) -> "Reply":
        """The gateway's own error shape: {"error", "request_id", "status"}."""
        return Reply.json(status, {"error": message, "request_id": ctx.request_id,
                                   "status": status})


class Context:
    """Facts about the request beyond the HTTP message, and the values
    plugins hand down the chain (`consumer`, `param.NAME`, ...)."""

    def __init__(self, handle: types.Context):
        self._h = handle

    @property
    def route(self) -> str:
        return self._h.route()

    @property
    def upstream(self) -> str:
        return self._h.upstream()

    @property
    def request_id(self) -> str:
        return self._h.request_id()

    @property
    def client_ip(self) -> str:
        """The client's IP (a trusted proxy's client when there is one)."""
        addr = self._h.client_addr()
        if addr.startswith("["):
            return addr[1:addr.index("]")]
        if addr.count(":") == 1:
            return addr.split(":")[0]
        return addr

    def get(self, key: str) -> Optional[str]:
        return self._h.get(key)

    def set(self, key: str, value: str) -> None:
        self._h.set(key, value)

    def set_response_header(self, name: str, value: str) -> None:
        """Sets a header on the response the client gets, whoever answers;
        from on_request it spares a plugin its own on_response (0.1.3)."""
        _checked(self._h.set_response_header, name, value)

    def set_response_headers(self, headers: "Headers") -> None:
        """Several at once (0.1.4): as `set_response_header` for each pair
        in order, all or nothing. One host call; pays from about three on."""
        _checked(self._h.set_response_headers, _fields(headers))


Headers = Union[Mapping[str, object], Iterable[Tuple[str, object]]]


def _fields(headers: Headers) -> List[Tuple[str, str]]:
    """Headers for the list calls: (name, value) pairs or a mapping;
    values are turned into strings."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(str(name), str(value)) for name, value in items]


def _checked(call: Callable, *args):
    """Host refusals (`result<_, string>`) become PluginError."""
    try:
        return call(*args)
    except Err as e:
        raise PluginError(e.value) from None


class _Message:
    def __init__(self, handle):
        self._h = handle

    def header(self, name: str) -> Optional[str]:
        return self._h.header(name)

    def header_all(self, name: str) -> List[str]:
        return self._h.header_all(name)

    def headers(self) -> List[Tuple[str, str]]:
        return self._h.headers()

    def set_header(self, name: str, value: str) -> None:
        _checked(self._h.set_header, name, value)

    def set_headers(self, headers: Headers) -> None:
        """Several at once (0.1.4): as `set_header` for each pair in order
        (a name given twice ends with its last value), all or nothing: a
        bad name or value sets none. One host call; pays from about three on."""
        _checked(self._h.set_headers, _fields(headers))

    def append_header(self, name: str, value: str) -> None:
        _checked(self._h.append_header, name, value)

    def remove_header(self, name: str) -> None:
        _checked(self._h.remove_header, name)

    def body(self) -> Optional[bytes]:
        """The buffered body (`request_body` / `response_body` = True)."""
        return self._h.body()

    def set_body(self, body: bytes) -> None:
        _checked(self._h.set_body, body)


class Request(_Message):
    @property
    def method(self) -> str:
        return self._h.method()

    @property
    def path(self) -> str:
        return self._h.path()

    @property
    def query(self) -> Optional[str]:
        return self._h.query()

    def set_path(self, path: str) -> None:
        _checked(self._h.set_path, path)

    def set_query(self, query: Optional[str]) -> None:
        _checked(self._h.set_query, query)


class Response(_Message):
    @property
    def status(self) -> int:
        return self._h.status()

    def set_status(self, status: int) -> None:
        _checked(self._h.set_status, status)


class Edits:
    """Header edits the gateway makes itself on every request or response,
    at the plugin's place in the chain, without calling the plugin (0.1.5):
    for edits the config fixes, such as a constant header set or a header
    removed. Returned by `Plugin.edits` when the instance is created; a bad
    name or value refuses the config then. In each phase they are made in
    the order given, just before the plugin's own hook for that phase, or
    in its place: a plugin whose request phase is only such edits does not
    define `on_request` and costs no call into Python per request::

        def edits(self):
            return (gatehouse.Edits()
                    .remove_request_header("cookie")
                    .set_response_header("x-served-by", "gatehouse"))
    """

    def __init__(self):
        # (phase, name, value); value None: a removal.
        self._list: List[Tuple[object, str, Optional[str]]] = []

    def _add(self, phase, name: str, value: Optional[str]) -> "Edits":
        self._list.append((phase, name, value))
        return self

    def set_request_header(self, name: str, value: str) -> "Edits":
        """Sets a header of the request on its way upstream, replacing any
        values it had."""
        return self._add(_edits.Phase.REQUEST, name, str(value))

    def remove_request_header(self, name: str) -> "Edits":
        """Removes every value of a request header."""
        return self._add(_edits.Phase.REQUEST, name, None)

    def set_response_header(self, name: str, value: str) -> "Edits":
        """Sets a header of the response on its way to the client,
        replacing any values it had."""
        return self._add(_edits.Phase.RESPONSE, name, str(value))

    def remove_response_header(self, name: str) -> "Edits":
        """Removes every value of a response header."""
        return self._add(_edits.Phase.RESPONSE, name, None)

    def _declare(self) -> None:
        """Hands the edits to the host, in order; the first it refuses raises."""
        for phase, name, value in self._list:
            if value is None:
                _checked(_edits.remove_header, phase, name)
            else:
                _checked(_edits.set_header, phase, name, value)


class Plugin:
    """Base class. Set `request_body` / `response_body` to True to see bodies."""

    request_body = False
    response_body = False

    def __init__(self, config: dict):
        self.config = config

    def edits(self) -> Edits:
        """Header edits the gateway makes itself (see `Edits`); none by default."""
        return Edits()

    def on_request(self, ctx: Context, req: Request) -> Optional[Reply]:
        """Return None to let the request through, or a Reply to answer."""
        return None

    def on_response(self, ctx: Context, req: Request, resp: Response,
                    outcome: types.Outcome) -> None:
        return None


def log(level: str, message: str) -> None:
    """`level`: trace, debug, info, warn or error."""
    host.log(getattr(host.Level, level.upper()), message)


def now_ms() -> int:
    return host.now_ms()


def _fail(e: BaseException) -> Err:
    if isinstance(e, PluginError):
        return Err(str(e))
    if isinstance(e, KeyError):
        return Err("missing " + str(e))
    return Err(type(e).__name__ + ": " + str(e))


def export(cls) -> type:
    """The contract's exports for a Plugin subclass: `WitWorld = export(MyPlugin)`."""

    hooks = types.Hooks(0)
    if cls.on_request is not Plugin.on_request:
        hooks |= types.Hooks.ON_REQUEST
    if cls.on_response is not Plugin.on_response:
        hooks |= types.Hooks.ON_RESPONSE
    if cls.request_body:
        hooks |= types.Hooks.REQUEST_BODY
    if cls.response_body:
        hooks |= types.Hooks.RESPONSE_BODY

    class WitWorld:
        plugin = None

        def init(self, config: str) -> types.Hooks:
            try:
                WitWorld.plugin = cls(json.loads(config))
                WitWorld.plugin.edits()._declare()
            except Exception as e:  # the config is refused, with the reason
                raise _fail(e) from None
            return hooks

        def on_request(self, ctx: types.Context, req: types.Request) -> types.Action:
            try:
                reply = WitWorld.plugin.on_request(Context(ctx), Request(req))
            except Exception as e:
                raise _fail(e) from None
            if reply is None:
                return types.Action_Continue()
            return types.Action_Respond(types.Reply(reply.status, reply.headers, reply.body))

        def on_response(self, ctx: types.Context, req: types.Request,
                        resp: types.Response, outcome: types.Outcome) -> None:
            try:
                WitWorld.plugin.on_response(Context(ctx), Request(req), Response(resp), outcome)
            except Exception as e:
                raise _fail(e) from None

    return WitWorld
