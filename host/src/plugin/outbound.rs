//! The host side of the contract's `outbound` interface: HTTP requests made
//! for a plugin, only to the hosts its entry allows, bounded in time and size.

use super::bindings::{FetchError, FetchRequest, FetchResponse};
use super::exchange::header_list;
use crate::config::AllowedHost;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, builderstates::WantsSchemes};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The largest response body handed to a plugin.
pub const MAX_FETCH_BODY: usize = 4 * 1024 * 1024;

/// What one plugin entry may reach.
#[derive(Debug, Default)]
pub struct FetchPolicy {
    pub allow: Vec<AllowedHost>,
    pub timeout: Duration,
}

/// The client every entry's outbound requests share (its connection pool too).
pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Default for Outbound {
    /// https trusts the system's CA certificates (or `SSL_CERT_FILE`'s).
    fn default() -> Self {
        let roots = HttpsConnectorBuilder::new()
            .with_native_roots()
            .unwrap_or_else(|e| {
                tracing::warn!(
                    "no CA certificates found ({e}): plugins' https requests will fail; install the system's CA bundle or set SSL_CERT_FILE"
                );
                HttpsConnectorBuilder::new().with_tls_config(trusting(rustls::RootCertStore::empty()))
            });
        Outbound::with_connector(roots)
    }
}

/// A TLS client config trusting `roots`.
fn trusting(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl Outbound {
    fn with_connector(tls: HttpsConnectorBuilder<WantsSchemes>) -> Outbound {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(connector);
        Outbound { client }
    }

    pub async fn fetch(
        &self,
        policy: &FetchPolicy,
        req: FetchRequest,
    ) -> Result<FetchResponse, FetchError> {
        let timeout = req.timeout_ms.map_or(policy.timeout, |ms| {
            Duration::from_millis(ms).min(policy.timeout)
        });
        let request = build(policy, req)?;
        let exchange = async {
            let resp = self.client.request(request).await.map_err(|e| {
                let why = error_chain(&e);
                if e.is_connect() {
                    FetchError::Connect(why)
                } else {
                    FetchError::Failed(why)
                }
            })?;
            let (parts, body) = resp.into_parts();
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_FETCH_BODY as u64) {
                return Err(FetchError::TooLarge);
            }
            let body = Limited::new(body, MAX_FETCH_BODY)
                .collect()
                .await
                .map_err(|e| match e.downcast_ref::<LengthLimitError>() {
                    Some(_) => FetchError::TooLarge,
                    None => FetchError::Failed(format!("reading the response: {e}")),
                })?
                .to_bytes();
            Ok(FetchResponse {
                status: parts.status.as_u16(),
                headers: header_list(&parts.headers),
                body: body.to_vec(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| FetchError::Timeout)?
    }
}

/// Checks the request against the entry's policy and builds it.
fn build(policy: &FetchPolicy, req: FetchRequest) -> Result<Request<Full<Bytes>>, FetchError> {
    let uri: Uri = req
        .url
        .parse()
        .map_err(|e| FetchError::Invalid(format!("invalid URL \"{}\": {e}", req.url)))?;
    let default_port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => {
            return Err(FetchError::Invalid(format!(
                "invalid URL \"{}\": expected an absolute http:// or https:// URL",
                req.url
            )));
        }
    };
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    if !policy
        .allow
        .iter()
        .any(|a| a.allows(&host, port, default_port))
    {
        return Err(FetchError::Denied(format!(
            "{host}:{port} is not in this plugin entry's allow_hosts"
        )));
    }
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| FetchError::Invalid(format!("invalid method \"{}\"", req.method)))?;
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in &req.headers {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(FetchError::Invalid(format!("invalid header \"{name}\"")));
        };
        builder = builder.header(n, v);
    }
    builder
        .body(Full::new(Bytes::from(req.body)))
        .map_err(|e| FetchError::Invalid(e.to_string()))
}

/// An error and its causes on one line ("client error (Connect): tcp
/// connect error: Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::sync::Arc;

    /// A CA and an https server on 127.0.0.1 with a certificate it signed;
    /// the server answers every request with "keys".
    async fn https_server() -> (rustls::RootCertStore, std::net::SocketAddr) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();

        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"keys"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (roots, addr)
    }

    fn get(url: String) -> FetchRequest {
        FetchRequest {
            method: "GET".into(),
            url,
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        }
    }

    fn policy(addr: std::net::SocketAddr) -> FetchPolicy {
        FetchPolicy {
            allow: vec![AllowedHost::parse(&addr.to_string()).unwrap()],
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn https_reaches_a_server_whose_certificate_chains_to_a_trusted_root() {
        let (roots, addr) = https_server().await;
        let outbound =
            Outbound::with_connector(HttpsConnectorBuilder::new().with_tls_config(trusting(roots)));
        let resp = outbound
            .fetch(&policy(addr), get(format!("https://{addr}/jwks.json")))
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"keys");
    }

    #[tokio::test]
    async fn https_refuses_a_certificate_from_an_unknown_issuer() {
        let (_roots, addr) = https_server().await;
        let outbound = Outbound::with_connector(
            HttpsConnectorBuilder::new().with_tls_config(trusting(rustls::RootCertStore::empty())),
        );
        let err = outbound
            .fetch(&policy(addr), get(format!("https://{addr}/jwks.json")))
            .await
            .unwrap_err();
        match err {
            FetchError::Connect(why) => assert!(why.contains("UnknownIssuer"), "{why}"),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
