//! What a plugin answers instead of the upstream.

use crate::__bindings::gatehouse::plugin::types as wit;

/// What happens after [`Plugin::on_request`](crate::Plugin::on_request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next plugin, then the upstream.
    Continue,
    /// Answer the client; the rest of the chain and the upstream are skipped.
    Respond(Reply),
}

/// A response made by a plugin.
///
/// ```
/// use gatehouse_sdk::Reply;
/// let r = Reply::json(429, &serde_json::json!({"error": "slow down"})).header("retry-after", "3");
/// assert_eq!(r.status, 429);
/// assert!(r.headers.contains(&("retry-after".into(), "3".into())));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status, 200 to 999.
    pub status: u16,
    /// Header pairs, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// An empty reply with this status.
    ///
    /// ```
    /// let r = gatehouse_sdk::Reply::new(204);
    /// assert!(r.body.is_empty());
    /// ```
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON reply (`content-type: application/json`).
    ///
    /// ```
    /// let r = gatehouse_sdk::Reply::json(403, &serde_json::json!({"error": "forbidden"}));
    /// assert_eq!(r.body, br#"{"error":"forbidden"}"#);
    /// ```
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Reply {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Reply::new(status)
            .header("content-type", "application/json")
            .body(body)
    }

    /// An error in the gateway's own JSON shape, so clients see one shape
    /// whether the gateway or a plugin refused them:
    /// `{"error": message, "status": status, "request_id": …}`.
    ///
    /// ```no_run
    /// # fn f(ctx: &gatehouse_sdk::Context) -> gatehouse_sdk::Reply {
    /// gatehouse_sdk::Reply::error(ctx, 401, "missing API key")
    /// # }
    /// ```
    pub fn error(ctx: &crate::Context, status: u16, message: &str) -> Reply {
        let body = serde_json::json!({ "error": message, "status": status, "request_id": ctx.request_id() });
        Reply::json(status, &body)
    }

    /// A plain-text reply (`content-type: text/plain; charset=utf-8`).
    ///
    /// ```
    /// let r = gatehouse_sdk::Reply::text(503, "down for maintenance");
    /// assert_eq!(r.body, b"down for maintenance");
    /// ```
    pub fn text(status: u16, text: impl Into<String>) -> Reply {
        Reply::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(text.into().into_bytes())
    }

    /// Adds a header.
    ///
    /// ```
    /// let r = gatehouse_sdk::Reply::new(302).header("location", "/login");
    /// assert_eq!(r.headers[0].0, "location");
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    ///
    /// ```
    /// let r = gatehouse_sdk::Reply::new(200).body("ok");
    /// assert_eq!(r.body, b"ok");
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

impl From<Reply> for Action {
    fn from(r: Reply) -> Action {
        Action::Respond(r)
    }
}

impl From<Action> for wit::Action {
    fn from(a: Action) -> wit::Action {
        match a {
            Action::Continue => wit::Action::Continue,
            Action::Respond(r) => wit::Action::Respond(wit::Reply {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
        }
    }
}
