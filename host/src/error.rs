//! Gateway-made errors and the one place that maps them to a status and
//! the shared JSON body: `{"error": …, "status": …, "request_id": …}`.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use std::sync::Arc;

/// Any error a body stream may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type on both sides of the proxy.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A whole body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Where a failure came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Upstream,
    Plugin,
    Gateway,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches the request")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: Vec<Method> },
    #[error("request body too large")]
    RequestBodyTooLarge,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("upstream connection failed")]
    UpstreamConnect,
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error("upstream request failed")]
    UpstreamFailed,
    #[error("upstream response too large")]
    ResponseBodyTooLarge,
    #[error("no healthy upstream target")]
    NoTarget,
    #[error("plugin \"{0}\" failed")]
    Plugin(Arc<str>),
    #[error("plugin \"{0}\" made an invalid response")]
    PluginReply(Arc<str>),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::RequestBodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::UpstreamConnect
            | GatewayError::UpstreamFailed
            | GatewayError::ResponseBodyTooLarge => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::NoTarget | GatewayError::Plugin(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::PluginReply(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn origin(&self) -> Origin {
        match self {
            GatewayError::NotFound
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::RequestBodyTooLarge
            | GatewayError::BadRequest(_) => Origin::Client,
            GatewayError::UpstreamConnect
            | GatewayError::UpstreamTimeout
            | GatewayError::UpstreamFailed
            | GatewayError::ResponseBodyTooLarge => Origin::Upstream,
            GatewayError::Plugin(_) | GatewayError::PluginReply(_) => Origin::Plugin,
            GatewayError::NoTarget => Origin::Gateway,
        }
    }

    /// The response the client sees.
    pub fn to_response(&self, request_id: &str) -> Response<Bytes> {
        let status = self.status();
        let body = serde_json::json!({ "error": self.to_string(), "status": status.as_u16(), "request_id": request_id });
        let mut resp = Response::new(Bytes::from(body.to_string()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let GatewayError::MethodNotAllowed { allow } = self {
            let list: Vec<&str> = allow.iter().map(Method::as_str).collect();
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                h.insert(header::ALLOW, v);
            }
        }
        resp
    }
}
