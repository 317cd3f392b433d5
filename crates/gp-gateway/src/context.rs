//! A request's context that every layer reads: the ids it is known by (and the facts
//! its audit row gathers), and what the transport learned of it (the client
//! certificate). A leaf: set by the server and the pipeline, read by the handlers, the
//! release policy and the access checks, importing none of them.

use std::sync::Arc;

use gp_adapter::CallContext;
use gp_auth::CertThumbprint;
use http::{HeaderMap, HeaderValue};

use crate::error::GatewayError;

/// The fingerprint of the client certificate a request's connection presented (mutual
/// TLS), put in each request's extensions by the server: only the TLS handshake sets it,
/// never a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertificate(pub CertThumbprint);

/// The client certificate fingerprint of the connection a request came over, if any.
pub fn client_certificate(extensions: &http::Extensions) -> Option<&CertThumbprint> {
    extensions.get::<ClientCertificate>().map(|c| &c.0)
}

/// The ids a request is known by.
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// `X-Request-ID`: the caller's UUID, or one we mint.
    pub request_id: String,
    /// `X-Correlation-ID`, mirrored when sent.
    pub correlation_id: Option<String>,
    /// The W3C trace context of this request's span (continuing the caller's
    /// `traceparent`, or a new trace): every GP system call carries it as its parent.
    pub traceparent: crate::telemetry::TraceContext,
    /// The FHIR base URL links in this response start with.
    pub base_url: String,
    /// What the audit row of this request records, filled in as handling goes.
    pub facts: Arc<crate::context::RequestFacts>,
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn printable(v: &HeaderValue) -> Option<&str> {
    v.to_str()
        .ok()
        .filter(|s| s.len() <= 200 && s.bytes().all(|b| (0x20..0x7f).contains(&b)))
}

impl RequestIds {
    /// Fresh ids for a request whose own id headers were refused, its links starting
    /// with `public_base`.
    pub fn minted(public_base: &str) -> Self {
        Self {
            request_id: uuid::Uuid::new_v4().to_string(),
            correlation_id: None,
            traceparent: crate::telemetry::TraceContext::root(),
            base_url: public_base.to_owned(),
            facts: Arc::default(),
        }
    }

    /// Reads and checks the id headers; a malformed one is refused rather than echoed.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, GatewayError> {
        let request_id = match headers.get("x-request-id") {
            None => uuid::Uuid::new_v4().to_string(),
            Some(v) => match printable(v) {
                Some(s) if is_uuid(s) => s.to_ascii_lowercase(),
                Some(s) => return Err(GatewayError::BadRequestId(s.chars().take(40).collect())),
                None => return Err(GatewayError::BadHeader("X-Request-ID")),
            },
        };
        let correlation_id = match headers.get("x-correlation-id") {
            None => None,
            Some(v) => Some(
                printable(v)
                    .ok_or(GatewayError::BadHeader("X-Correlation-ID"))?
                    .to_owned(),
            ),
        };
        // A malformed traceparent is not refused: the request starts a new trace.
        let traceparent = crate::telemetry::TraceContext::for_request(headers);
        Ok(Self {
            request_id,
            correlation_id,
            traceparent,
            base_url: String::new(),
            facts: Arc::new(crate::context::RequestFacts::new(
                headers.contains_key("x-request-id"),
            )),
        })
    }

    /// The ids of one entry of a batch this request carries: the same request, trace and
    /// base URL, with facts of its own (each entry is audited as its own interaction).
    pub fn for_entry(&self) -> Self {
        Self {
            facts: Arc::new(RequestFacts::new(self.facts.snapshot().request_id_supplied)),
            ..self.clone()
        }
    }

    /// The context passed to adapters.
    pub fn call_context(&self) -> CallContext {
        CallContext {
            request_id: self.request_id.clone(),
            // The gateway's span is the parent of every native call.
            traceparent: Some(self.traceparent.to_string()),
        }
    }
}

/// What a request's handling learned that its audit row needs, filled in as it goes
/// (shared by the pipeline steps through [`RequestIds`]).
#[derive(Debug, Default)]
pub struct RequestFacts(std::sync::Mutex<Facts>);

/// A snapshot of [`RequestFacts`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The caller sent its own `X-Request-ID`.
    pub request_id_supplied: bool,
    pub supplier: Option<String>,
    pub token_id: Option<String>,
    pub patient: Option<String>,
    pub practice: Option<String>,
    pub interaction: Option<&'static str>,
    pub resource_type: Option<String>,
    pub outcome_code: Option<String>,
    /// Changes the request made to the patient's record (a successful write), for the
    /// notification outbox: committed with the audit row, and only if it records a
    /// success.
    pub changes: Vec<(gp_adapter::ChangeKind, Option<String>)>,
}

impl RequestFacts {
    /// Facts of a request whose `X-Request-ID` the caller sent (`true`) or the gateway
    /// minted (`false`): the supplier assessment judges whether suppliers send one.
    pub fn new(request_id_supplied: bool) -> Self {
        Self(std::sync::Mutex::new(Facts {
            request_id_supplied,
            ..Facts::default()
        }))
    }

    fn with(&self, f: impl FnOnce(&mut Facts)) {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard);
    }

    /// The authenticated supplier and its token's id.
    pub fn caller(&self, supplier: &str, token_id: &str) {
        self.with(|f| {
            f.supplier = Some(supplier.to_owned());
            f.token_id = Some(token_id.to_owned());
        });
    }

    /// The registered client a token request names, before (or without) it proving so:
    /// a refused token request is still traceable to the supplier it claimed to be.
    pub fn client(&self, supplier: &str) {
        self.with(|f| f.supplier = Some(supplier.to_owned()));
    }

    /// The interaction routed to.
    pub fn route(&self, interaction: &'static str, resource_type: &str) {
        self.with(|f| {
            f.interaction = Some(interaction);
            f.resource_type = Some(resource_type.to_owned());
        });
    }

    /// The patient the request is about.
    pub fn patient(&self, nhs: &str) {
        self.with(|f| f.patient = Some(nhs.to_owned()));
    }

    /// Where the patient's record was found.
    pub fn practice(&self, ods: &str) {
        self.with(|f| f.practice = Some(ods.to_owned()));
    }

    /// A change the request made to the patient's record: what happened, and the FHIR
    /// id of the resource changed (`None`: the Patient).
    pub fn changed(&self, kind: gp_adapter::ChangeKind, resource_id: Option<String>) {
        self.with(|f| f.changes.push((kind, resource_id)));
    }

    /// The error code of a refusal.
    pub fn outcome(&self, code: &str) {
        self.with(|f| f.outcome_code = Some(code.to_owned()));
    }

    /// What has been learned so far.
    pub fn snapshot(&self) -> Facts {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
