//! Credentials a [`NativeClient`] presents to its GP system: the [`NativeAuth`] trait and
//! two built-in implementations, an API key header ([`ApiKey`]) and OAuth 2.0 client
//! credentials ([`OAuthClientCredentials`]). Mutual TLS is not here: the client
//! certificate is presented on the TLS handshake ([`super::NativeTls`]).
//!
//! Secrets never appear in `Debug` output, logs or error messages.

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};

use super::{Method, NativeClient};
use crate::json::Document;
use crate::{AdapterError, CallContext, GpSystem};

/// How a native client authenticates its calls. Called on every call, so implementations
/// cache what they can; shared by concurrent calls.
#[async_trait]
pub trait NativeAuth: Send + Sync {
    /// Adds this system's credentials to a request about to be sent (after the client's
    /// own headers). An error fails the call before anything is sent to the system.
    async fn authorise(
        &self,
        headers: &mut HeaderMap,
        ctx: &CallContext,
    ) -> Result<(), AdapterError>;

    /// Called when the system answered `401` to a request sent with `sent` headers: drop
    /// those credentials if they are cached, and return `true` to have the client send
    /// the request once more with fresh ones (a `401` means the system did not act on
    /// it, so a write is safe to repeat). Default: `false`, the `401` is the answer.
    async fn refused(&self, sent: &HeaderMap) -> bool {
        let _ = sent;
        false
    }
}

/// A fixed key sent in a header of every call (`X-API-Key: …`).
pub struct ApiKey {
    header: HeaderName,
    value: HeaderValue,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("header", &self.header)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ApiKey {
    /// Sends `key` in header `header`. Errors say which of the two is not a valid header
    /// name or value, never the key.
    pub fn new(header: &str, key: &str) -> Result<Self, String> {
        let header = HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| format!("'{header}' is not a valid header name"))?;
        let mut value = HeaderValue::from_str(key)
            .map_err(|_| "the key is not a valid header value (one line of visible ASCII)")?;
        value.set_sensitive(true);
        Ok(Self { header, value })
    }
}

#[async_trait]
impl NativeAuth for ApiKey {
    async fn authorise(
        &self,
        headers: &mut HeaderMap,
        _: &CallContext,
    ) -> Result<(), AdapterError> {
        headers.insert(self.header.clone(), self.value.clone());
        Ok(())
    }
}

/// How long before its expiry a token is replaced: 30 s, or half its lifetime when that
/// is shorter, so a call never sets out with a token about to lapse.
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 2).min(Duration::from_secs(30))
}

/// An access token and when to stop using it (`None`: until the system refuses it,
/// for a token endpoint that gives no `expires_in`).
struct Token {
    header: HeaderValue,
    refresh_at: Option<Instant>,
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4): a bearer token from the token endpoint,
/// the client authenticating with HTTP Basic (§2.3.1). The token is cached until shortly
/// before it expires and fetched again when the system answers `401`; concurrent calls
/// wait for one fetch. A token endpoint that cannot be reached or answers 5xx fails the
/// call as `Unavailable`, one that refuses the client (4xx) as `Rejected`, and an answer
/// without a bearer token as `InvalidNativeData`, each saying it was the token endpoint;
/// the native API is then not called.
pub struct OAuthClientCredentials {
    token_endpoint: NativeClient,
    /// `Basic base64(form(client_id):form(secret))`, sensitive.
    client_auth: HeaderValue,
    /// The form body: `grant_type=client_credentials[&scope=…]`.
    form: Vec<u8>,
    cached: tokio::sync::Mutex<Option<Token>>,
}

impl fmt::Debug for OAuthClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClientCredentials")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `application/x-www-form-urlencoded` text: unreserved characters as they are, every
/// other byte percent-encoded (a space too, so no `+` to misread).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl OAuthClientCredentials {
    /// Tokens from `token_endpoint` (a client for the token URL itself, e.g. built with
    /// the same TLS settings as the native API's) for `client_id` with `client_secret`,
    /// asking for `scope` when given.
    pub fn new(
        token_endpoint: NativeClient,
        client_id: &str,
        client_secret: &str,
        scope: Option<&str>,
    ) -> Result<Self, String> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            form_encode(client_id),
            form_encode(client_secret)
        ));
        let mut client_auth = HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|_| "the client credentials cannot be sent in a header")?;
        client_auth.set_sensitive(true);
        let mut form = "grant_type=client_credentials".to_owned();
        if let Some(scope) = scope {
            form.push_str("&scope=");
            form.push_str(&form_encode(scope));
        }
        Ok(Self {
            token_endpoint,
            client_auth,
            form: form.into_bytes(),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    fn system(&self) -> GpSystem {
        self.token_endpoint.system()
    }

    /// Asks the token endpoint for a new token.
    async fn fetch(&self, ctx: &CallContext) -> Result<Token, AdapterError> {
        let system = self.system();
        let context = |detail: String| format!("cannot get an access token: {detail}");
        let response = self
            .token_endpoint
            .send_unauthenticated(
                Method::POST,
                "",
                Some(("application/x-www-form-urlencoded", self.form.clone())),
                HeaderMap::from_iter([
                    (AUTHORIZATION, self.client_auth.clone()),
                    (
                        http::header::ACCEPT,
                        HeaderValue::from_static("application/json"),
                    ),
                ]),
                ctx,
            )
            .await
            .map_err(|e| match e {
                AdapterError::Unavailable { system, detail } => AdapterError::Unavailable {
                    system,
                    detail: context(format!("the token endpoint: {detail}")),
                },
                other => other,
            })?;
        if response.status != 200 {
            // RFC 6749 §5.2: `error` and `error_description`, when the answer is JSON.
            let refusal = Document::parse(&response.body).ok().and_then(|doc| {
                let code = doc.get("error").opt_str().ok().flatten()?.to_owned();
                match doc.get("error_description").opt_str().ok().flatten() {
                    Some(text) => Some(format!("{code}: {}", gp_fhir::text::shown(text))),
                    None => Some(code),
                }
            });
            let detail = context(match refusal {
                Some(r) => format!("the token endpoint answered HTTP {} {r}", response.status),
                None => format!("the token endpoint answered HTTP {}", response.status),
            });
            tracing::warn!(system = %system, status = response.status, "token endpoint refused");
            return Err(if (400..500).contains(&response.status) {
                AdapterError::Rejected { system, detail }
            } else {
                AdapterError::Unavailable { system, detail }
            });
        }
        let bad = |detail: String| AdapterError::InvalidNativeData {
            system,
            detail: format!("the token endpoint's answer: {detail}"),
        };
        let doc = Document::parse(&response.body).map_err(|e| bad(e.to_string()))?;
        let token = doc
            .get("access_token")
            .str()
            .map_err(|e| bad(e.to_string()))?;
        let kind = doc.get("token_type");
        let kind_text = kind.str().map_err(|e| bad(e.to_string()))?;
        if !kind_text.eq_ignore_ascii_case("bearer") {
            return Err(bad(kind
                .invalid(format!(
                    "'{}' is not Bearer",
                    gp_fhir::text::shown(kind_text)
                ))
                .to_string()));
        }
        let expires = doc.get("expires_in");
        let lifetime = match expires.opt_integer().map_err(|e| bad(e.to_string()))? {
            None => None,
            Some(secs) => Some(Duration::from_secs(u64::try_from(secs).map_err(|_| {
                bad(expires.invalid(format!("{secs} is negative")).to_string())
            })?)),
        };
        let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| bad("access_token is not a valid header value".to_owned()))?;
        header.set_sensitive(true);
        tracing::debug!(system = %system, expires_in = ?lifetime, "access token fetched");
        let now = Instant::now();
        Ok(Token {
            header,
            refresh_at: lifetime.map(|l| now + l - refresh_margin(l)),
        })
    }
}

#[async_trait]
impl NativeAuth for OAuthClientCredentials {
    async fn authorise(
        &self,
        headers: &mut HeaderMap,
        ctx: &CallContext,
    ) -> Result<(), AdapterError> {
        // Held across the fetch: concurrent calls wait for one token, not one each.
        let mut cached = self.cached.lock().await;
        let fresh = cached
            .as_ref()
            .filter(|t| t.refresh_at.is_none_or(|at| Instant::now() < at))
            .map(|t| t.header.clone());
        let header = match fresh {
            Some(header) => header,
            None => {
                let token = self.fetch(ctx).await?;
                let header = token.header.clone();
                *cached = Some(token);
                header
            }
        };
        headers.insert(AUTHORIZATION, header);
        Ok(())
    }

    async fn refused(&self, sent: &HeaderMap) -> bool {
        let mut cached = self.cached.lock().await;
        // Another call may have replaced the token already; keep that one.
        if cached
            .as_ref()
            .is_some_and(|t| sent.get(AUTHORIZATION) == Some(&t.header))
        {
            *cached = None;
        }
        true
    }
}
