"""hmac-auth: requests must be signed with a shared secret.

    [[routes.plugins]]
    plugin = "hmac-auth"
    [routes.plugins.config]
    keys = { "partner-a" = "s3cret-a", "partner-b" = "s3cret-b" }   # key id -> secret
    max_skew = 300                                                   # seconds, default 300

A client sends `x-key-id`, `x-timestamp` (Unix seconds) and `x-signature`:
hex HMAC-SHA256 of "METHOD\\nPATH?QUERY\\nTIMESTAMP\\n" followed by the body.
A missing header, a stale timestamp, an unknown key or a wrong signature is
answered 401; a good one hands the key id to later plugins as `consumer`.
"""

import hashlib
import hmac
import warnings  # noqa: F401  hmac imports it lazily; only modules loaded at build time are bundled

import gatehouse


class HmacAuth(gatehouse.Plugin):
    request_body = True

    def __init__(self, config):
        keys = config.get("keys")
        if not isinstance(keys, dict) or not keys:
            raise gatehouse.PluginError("`keys` must map at least one key id to its secret")
        for key_id, secret in keys.items():
            if not isinstance(secret, str) or len(secret) < 8:
                raise gatehouse.PluginError(
                    f"`keys.{key_id}`: the secret must be a string of at least 8 characters")
        self.keys = {k: v.encode() for k, v in keys.items()}
        self.max_skew = config.get("max_skew", 300)
        if not isinstance(self.max_skew, int) or self.max_skew <= 0:
            raise gatehouse.PluginError("`max_skew` must be a positive number of seconds")

    def on_request(self, ctx, req):
        key_id = req.header("x-key-id")
        stamp = req.header("x-timestamp")
        signature = req.header("x-signature")
        if key_id is None or stamp is None or signature is None:
            return gatehouse.Reply.error(ctx, 401, "missing x-key-id, x-timestamp or x-signature")
        try:
            skew = abs(gatehouse.now_ms() // 1000 - int(stamp))
        except ValueError:
            return gatehouse.Reply.error(ctx, 401, "x-timestamp must be Unix seconds")
        if skew > self.max_skew:
            return gatehouse.Reply.error(ctx, 401, "stale or future x-timestamp")
        secret = self.keys.get(key_id)
        target = req.path if req.query is None else f"{req.path}?{req.query}"
        message = f"{req.method}\n{target}\n{stamp}\n".encode() + (req.body() or b"")
        # Unknown keys cost the same comparison, so timing does not tell them apart.
        expected = hmac.new(secret or b"\0" * 32, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()) or secret is None:
            gatehouse.log("info", f"refused a bad signature for key {key_id!r}")
            return gatehouse.Reply.error(ctx, 401, "invalid signature")
        ctx.set("consumer", key_id)
        return None


WitWorld = gatehouse.export(HmacAuth)
