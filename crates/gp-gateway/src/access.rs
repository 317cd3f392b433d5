//! The access step of the pipeline: authenticate the bearer token, authorise the
//! route's scope, then charge the supplier's rate limit. Practice pairing is checked
//! later, once the record locator knows the patient's practice.

use gp_auth::{Permission, RateDecision, RateLimitExceeded, SupplierView};
use gp_fhir::{FhirError, IssueType, SpineCode};
use http::header;
use http::request::Parts;

use crate::app::App;
use crate::config::AccessMode;
use crate::error::Rescue;
use crate::routes::{Interaction, Route};

/// Who is calling.
pub enum Caller {
    /// A public route (the CapabilityStatement): no token needed.
    Public,
    /// The sandbox's open mode: no supplier.
    Open,
    /// An authenticated, authorised supplier, and its rate-limit state.
    Supplier {
        view: SupplierView,
        decision: RateDecision,
    },
}

impl Caller {
    /// True when the caller may see patients at `practice`.
    pub fn paired_with(&self, practice: &gp_fhir::OdsCode) -> bool {
        match self {
            Self::Supplier { view, .. } => view.paired_with(practice),
            Self::Open | Self::Public => true,
        }
    }

    /// Checks the caller may read `resource_type` (a structured record part).
    pub fn require_read(&self, resource_type: &str) -> Result<(), gp_auth::ScopeError> {
        match self {
            Self::Supplier { view, .. } => view.require(resource_type, Permission::Read),
            Self::Open | Self::Public => Ok(()),
        }
    }

    /// The client id whose audit rows the caller is limited to (`None`: every row —
    /// an operator client, or the sandbox's open mode).
    pub fn audit_scope(&self) -> Option<&str> {
        match self {
            Self::Supplier { view, .. } if !view.is_operator() => Some(view.client_id()),
            _ => None,
        }
    }

    /// The booking organisation the caller's appointments are recorded with: the
    /// registry's ODS code and name (`Err`: the supplier, by client id, has no ODS code
    /// in the registry); `None` without a supplier (the sandbox's open mode).
    pub fn booking_organisation(&self) -> Option<Result<(gp_fhir::OdsCode, String), String>> {
        match self {
            Self::Supplier { view, .. } => Some(
                view.ods_code()
                    .map(|ods| (ods.clone(), view.name().to_owned()))
                    .ok_or_else(|| view.client_id().to_owned()),
            ),
            Self::Open | Self::Public => None,
        }
    }

    /// The supplier's client id, for logs and audit.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Supplier { view, .. } => Some(view.client_id()),
            _ => None,
        }
    }
}

/// The shared-state store behind rate limits failed: fail closed.
#[derive(Debug, thiserror::Error)]
#[error("rate limiting is unavailable ({0}); the request was not processed")]
pub struct LimiterUnavailable(String);

impl FhirError for LimiterUnavailable {
    fn status(&self) -> u16 {
        503
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::ServiceUnavailable
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Transient
    }
    fn blame(&self) -> gp_fhir::Blame {
        gp_fhir::Blame::Gateway
    }
}

/// Authenticates, authorises and rate-limits a FHIR request.
pub async fn check(
    app: &App,
    parts: &Parts,
    route: &Route,
    facts: &crate::context::RequestFacts,
) -> Result<Caller, Rescue> {
    let Some((resource_type, interaction)) = route.scope() else {
        return Ok(Caller::Public);
    };
    let auth = match (app.access, &app.auth) {
        // The sandbox's open mode: `serve` refuses to start with it.
        (AccessMode::Open, _) => return Ok(Caller::Open),
        (AccessMode::Oauth, Some(auth)) => auth,
        (AccessMode::Oauth, None) => {
            return Err(crate::error::GatewayError::Internal(
                "oauth mode without auth state".into(),
            )
            .into());
        }
    };
    let header = match parts.headers.get(header::AUTHORIZATION) {
        None => None,
        // A non-ASCII header is as malformed as a wrong scheme.
        Some(v) => Some(v.to_str().unwrap_or("")),
    };
    let claims = auth.verify(header).await.map_err(Rescue::from)?;
    facts.caller(&claims.client_id, &claims.token_id);
    let view = auth.registry.authorise(&claims).map_err(Rescue::from)?;
    // A supplier bound to a client certificate must call over a connection presenting it
    // (the token alone is not enough: RFC 8705 certificate-bound access).
    view.require_client_cert(crate::context::client_certificate(&parts.extensions))
        .map_err(Rescue::from)?;
    let needed = match interaction {
        Interaction::Read | Interaction::Vread | Interaction::Operation => Some(Permission::Read),
        Interaction::SearchType => Some(Permission::Search),
        Interaction::Create => Some(Permission::Create),
        Interaction::Patch | Interaction::Update => Some(Permission::Update),
        Interaction::Delete => Some(Permission::Delete),
        // A batch needs no scope of its own: each entry is authorised as itself.
        Interaction::Batch => None,
    };
    if let Some(needed) = needed {
        view.require(resource_type, needed)?;
    }
    let decision = auth
        .limiter
        .check(&format!("api:{}", view.client_id()), view.rate_limit())
        .await
        .map_err(|e| LimiterUnavailable(e.to_string()))?;
    if !decision.allowed {
        app.metrics.rate_limited(view.client_id());
        // The error carries its Retry-After and RateLimit headers.
        return Err(
            RateLimitExceeded::new(format!("supplier {}", view.client_id()), &decision).into(),
        );
    }
    tracing::debug!(supplier = view.client_id(), token = %claims.token_id, "access granted");
    Ok(Caller::Supplier { view, decision })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_limiter_is_a_503_the_gateway_answers_for() {
        let e = LimiterUnavailable("redis: connection refused".into());
        assert_eq!(e.status(), 503);
        assert_eq!(e.spine_code(), SpineCode::ServiceUnavailable);
        assert_eq!(e.issue_type(), IssueType::Transient);
        assert_eq!(e.blame(), gp_fhir::Blame::Gateway);
    }
}
