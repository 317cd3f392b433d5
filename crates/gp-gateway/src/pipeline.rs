//! The request pipeline: every request crosses these steps, in this order, in this
//! one file. Each step says why it sits where it does.
//!
//! 1. request ids   — first, so every answer (errors included) carries them; then the
//!    head size check — hyper buffers twice `max_header_bytes` so an oversized head is
//!    still refused here, as an OperationOutcome, before any other work
//! 2. trace span    — wraps everything after, keyed by the request id
//! 3. timeout       — bounds the whole of the work below, and contains a panic in it
//!    (answered 500 and audited like any failure, the process serving on)
//! 4. route         — the request is looked up in the one route table (`routes`);
//!    operational endpoints (probes, `/openapi.json`, the token endpoint and its
//!    discovery documents) are answered here, a method they do not serve refused with its
//!    `Allow`: before auth, since probes and discovery carry no token and the token
//!    endpoint authenticates its caller itself (reading at most 16 KiB of body).
//!    `/metrics` is for operators, on the admin listener ([`admin`]), from the same table
//! 5. body limits   — before anything buffers a body
//! 6. FHIR route refusals (404, 405) + content negotiation — a bad path or format costs
//!    no auth work
//! 7. authenticate, authorise, rate limit (gp-auth) — before any patient data is touched
//! 8. locate record → adapter call → consent/sensitivity filter (in `fhir`); a
//!    `POST [type]/_search` first adds its form body's parameters to the query; a batch
//!    serves each entry through steps 4 and 6–9 as a request of its own (its own route,
//!    scope check, rate-limit charge and audit row)
//! 9. respond       — the audit row is committed (no audit, no data), then the headers
//!    every response carries; errors go through the one rescue

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;
use gp_auth::OAuthError;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::app::App;
use crate::error::{GatewayError, Rescue};
use crate::respond::json;
use crate::routes::{
    Access, Endpoint, Handler, Listener, Lookup, Mount, ROUTES, Route, Serving, lookup, shown_path,
};

pub use crate::context::RequestIds;

/// Handles one request end to end. Never fails: every error becomes a response.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: Option<std::net::IpAddr>,
) -> Response<Full<Bytes>> {
    // 1. Request ids, and the public base URL this caller reached us by.
    let mut ids = match RequestIds::from_headers(req.headers()) {
        Ok(mut ids) => {
            let origin = crate::forwarded::public_origin(
                req.headers(),
                peer,
                &app.trusted_proxies,
                &app.public_origin,
            );
            ids.base_url = format!("{origin}{}", app.fhir_base_path);
            ids
        }
        Err(e) => {
            let minted = RequestIds::minted(&app.public_base);
            return finish(Rescue::from(e).into_response(&minted.request_id), &minted);
        }
    };
    // 1b. Head size: refused before any work, with an OperationOutcome (not hyper's bare 431).
    if let Err(e) = crate::head::check_head(&req, app.max_header_bytes) {
        return finish(Rescue::from(e).into_response(&ids.request_id), &ids);
    }
    // 2. Trace span, in the caller's trace (or a new one); native calls are its children.
    let span = tracing::info_span!("request", request_id = %ids.request_id, trace_id = tracing::field::Empty, method = %req.method(), path = %crate::redact::nhs_numbers(req.uri().path()));
    ids.traceparent = crate::telemetry::attach(&span, req.headers(), ids.traceparent);
    async move {
        let started = std::time::Instant::now();
        // 3. Timeout over all the work.
        let audited = is_audited(&app, req.uri().path());
        // A panic below is contained here, so it is answered and audited like any
        // failure instead of dropping the connection with no answer and no row.
        let routed = AssertUnwindSafe(route(&app, req, &ids, peer)).catch_unwind();
        let resp = match tokio::time::timeout(app.request_timeout, routed).await {
            Ok(Ok(Ok(resp))) => resp,
            Ok(Ok(Err(rescue))) => {
                ids.facts.outcome(rescue.error.spine_code().as_str());
                rescue.into_response(&ids.request_id)
            }
            Ok(Err(panic)) => {
                app.metrics.panicked();
                // The message may name a patient: masked, as every logged error is.
                let message = crate::redact::nhs_numbers(panic_message(panic.as_ref()));
                tracing::error!(panic = %message, "request handling panicked; answered 500");
                let rescue = Rescue::from(GatewayError::Internal(message));
                ids.facts.outcome(rescue.error.spine_code().as_str());
                rescue.into_response(&ids.request_id)
            }
            Err(_) => {
                let rescue =
                    Rescue::from(GatewayError::Timeout(app.request_timeout.as_millis() as u64));
                ids.facts.outcome(rescue.error.spine_code().as_str());
                rescue.into_response(&ids.request_id)
            }
        };
        // 9a. No audit, no data: the row is committed before the response leaves.
        let resp = if audited {
            audit(&app, &ids, resp).await
        } else {
            resp
        };
        let facts = ids.facts.snapshot();
        let label = match (facts.interaction, facts.resource_type.as_deref()) {
            (Some("token"), _) => "token".to_owned(),
            (Some(i), Some(t)) => format!("{i} {t}"),
            _ if audited => "none".to_owned(),
            _ => "operational".to_owned(),
        };
        app.metrics
            .request(&label, resp.status().as_u16(), started.elapsed());
        tracing::info!(
            status = resp.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request done"
        );
        finish(resp, &ids)
    }
    .instrument(span)
    .await
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Handles one request on the admin listener: the rows of the route table it serves
/// (metrics and the probes, not for suppliers). Not audited (no patient data, no
/// supplier) and not counted as requests.
pub async fn admin(app: Arc<App>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let ids = match RequestIds::from_headers(req.headers()) {
        Ok(ids) => ids,
        Err(e) => {
            let minted = RequestIds::minted(&app.public_base);
            return finish(Rescue::from(e).into_response(&minted.request_id), &minted);
        }
    };
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let base = app.fhir_base_path.as_str();
    let answered = match lookup(Listener::Admin, serving(&app), &parts.method, path, base) {
        Lookup::Found(Handler::Endpoint(e)) => endpoint(&app, e, &parts, body, &ids, None).await,
        Lookup::WrongMethod { allowed, .. } => Err(not_allowed(&parts.method, path, base, allowed)),
        Lookup::Found(Handler::Fhir(_)) | Lookup::NotFound => {
            let served: Vec<String> = ROUTES
                .iter()
                .filter(|r| r.on(Listener::Admin))
                .flat_map(|r| r.paths(&[]))
                .map(|(path, _)| path)
                .collect();
            Err(GatewayError::NotFound(format!(
                "no admin endpoint at {}; served here: {}",
                crate::routes::shown(path),
                served.join(", ")
            ))
            .into())
        }
    };
    let resp = answered.unwrap_or_else(|rescue| rescue.into_response(&ids.request_id));
    finish(resp, &ids)
}

/// Which of the route table's conditional rows this gateway serves.
fn serving(app: &App) -> Serving {
    Serving {
        oauth: app.auth.is_some(),
        sandbox: app.sandbox_manifest.is_some(),
    }
}

/// A path served, with other methods than `method`.
fn not_allowed(method: &Method, path: &str, base: &str, allowed: String) -> Rescue {
    GatewayError::MethodNotAllowed {
        method: crate::routes::shown(method.as_str()),
        path: shown_path(path, base),
        allowed,
    }
    .into()
}

/// 4. An operational endpoint's answer, on either listener.
async fn endpoint(
    app: &App,
    endpoint: Endpoint,
    parts: &Parts,
    body: Incoming,
    ids: &RequestIds,
    peer: Option<std::net::IpAddr>,
) -> Result<Response<Full<Bytes>>, Rescue> {
    // The table serves these rows only when the gateway has what they answer with.
    let unserved = || -> Rescue {
        GatewayError::NotFound(format!(
            "{} is not served by this gateway",
            crate::routes::shown(parts.uri.path())
        ))
        .into()
    };
    Ok(match endpoint {
        Endpoint::Health => json(StatusCode::OK, r#"{"status":"ok"}"#),
        Endpoint::Ready => readiness(app, ids).await,
        Endpoint::OpenApi => crate::openapi::response(app, serving(app)),
        Endpoint::Metrics => crate::respond::with_type(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            app.metrics.render(),
        ),
        Endpoint::SandboxManifest => json(
            StatusCode::OK,
            app.sandbox_manifest.clone().ok_or_else(unserved)?,
        ),
        Endpoint::Jwks => json(
            StatusCode::OK,
            app.auth.as_ref().ok_or_else(unserved)?.jwks.clone(),
        ),
        Endpoint::SmartConfiguration => json(
            StatusCode::OK,
            app.auth
                .as_ref()
                .ok_or_else(unserved)?
                .smart_configuration
                .clone(),
        ),
        Endpoint::Token => {
            let auth = app.auth.as_ref().ok_or_else(unserved)?;
            let declared = content_length(&parts.headers);
            let limit = crate::auth::MAX_TOKEN_REQUEST_BYTES;
            let bytes = match crate::body::read_capped(body, declared, limit).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Ok(crate::auth::refusal(&OAuthError::UnreadableBody(
                        e.to_string(),
                    )));
                }
            };
            ids.facts.route("token", "-");
            let content_type = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let client_cert = crate::context::client_certificate(&parts.extensions);
            // Charged to the pre-signature per-address limit.
            let client =
                crate::forwarded::client_address(&parts.headers, peer, &app.trusted_proxies);
            auth.token_endpoint(content_type, &bytes, client_cert, client, &ids.facts)
                .await
        }
    })
}

async fn route(
    app: &App,
    req: Request<Incoming>,
    ids: &RequestIds,
    peer: Option<std::net::IpAddr>,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let base = app.fhir_base_path.as_str();

    // 4. The route table; operational endpoints are answered here.
    let route = match lookup(Listener::Main, serving(app), &parts.method, path, base) {
        Lookup::Found(Handler::Endpoint(e)) => {
            return endpoint(app, e, &parts, body, ids, peer).await;
        }
        Lookup::WrongMethod {
            allowed,
            access: Access::ClientAssertion,
            ..
        } => {
            return Ok(crate::auth::refusal(&OAuthError::MethodNotAllowed {
                allowed,
            }));
        }
        Lookup::WrongMethod {
            allowed,
            mount: Mount::Origin,
            ..
        } => return Err(not_allowed(&parts.method, path, base, allowed)),
        found => fhir_route(found, &parts.method, path, base),
    };

    // 5. Body limits: refuse a body over the limit unread (a document's content has a
    // larger limit of its own).
    let declared = content_length(&parts.headers);
    let limit = route
        .as_ref()
        .ok()
        .and_then(|r| upload_limit(app, r))
        .unwrap_or(app.max_body_bytes);
    if let Some(len) = declared.filter(|l| *l > limit as u64) {
        return Err(GatewayError::BodyTooLarge(len, limit).into());
    }

    // 6–7. FHIR route refusals, content negotiation, then authenticate, authorise and
    // rate limit.
    let route = route?;
    let mut query = gp_fhir::search::parse_query(parts.uri.query().unwrap_or(""))?;
    let caller = authorise(app, &parts, &route, &query, ids).await?;

    // 8. The interaction itself, reading a body only for routes that take one.
    if !app.is_accepting() && parts.method != Method::GET {
        return Err(GatewayError::ShuttingDown.into());
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // A document's content: read into a buffer of its own, decoded and checked there.
    if let Some(limit) = upload_limit(app, &route) {
        let body = crate::body::read_capped_mut(body, declared, limit).await?;
        let mut resp = match route {
            Route::BinaryCreate => {
                crate::documents::create_binary(app, &query, &parts.headers, ids, &caller, body)
                    .await?
            }
            _ => {
                gp_fhir::format::check_content_type(content_type, &[])?;
                crate::documents::create_document(app, &query, &parts.headers, ids, &caller, body)
                    .await?
            }
        };
        if let crate::access::Caller::Supplier { decision, .. } = &caller {
            crate::auth::rate_limit_headers(resp.headers_mut(), decision);
        }
        return Ok(resp);
    }
    let searched = matches!(route, Route::PatientSearch | Route::ClinicalSearch(_));
    let body = match parts.method {
        // FHIR's POST _search: the parameters in a form body, beside any in the query.
        Method::POST if searched => {
            let form = crate::body::read_capped(body, declared, app.max_body_bytes).await?;
            if !form.is_empty() {
                gp_fhir::format::check_form_content_type(content_type)?;
                let text = std::str::from_utf8(&form)
                    .map_err(|_| gp_fhir::search::SearchError::Encoding)?;
                query.extend(gp_fhir::search::parse_query(text.trim_end())?);
                negotiate(&query, &parts.headers)?;
                if let Some(nhs) = named_patient(&route, &query) {
                    ids.facts.patient(&nhs.to_string());
                }
            }
            Bytes::new()
        }
        Method::POST | Method::PUT => {
            gp_fhir::format::check_content_type(content_type, &[])?;
            crate::body::read_capped(body, declared, app.max_body_bytes).await?
        }
        Method::PATCH => {
            gp_fhir::format::patch_format(content_type)?;
            crate::body::read_capped(body, declared, app.max_body_bytes).await?
        }
        _ => Bytes::new(),
    };
    if route == Route::Batch {
        crate::handlers::reject_params(&query, &["_format"])?;
        return batch(app, &parts, &body, ids, &caller).await;
    }
    answer(app, route, &query, &parts.headers, ids, &caller, &body).await
}

/// The body limit of a route that takes a document's content: a raw `POST /Binary` up to
/// `[documents] max_upload_bytes`, a JSON one (or a `POST /DocumentReference`) up to its
/// base64 plus 64 KiB. `None` for every other route (`[server] max_body_bytes`).
fn upload_limit(app: &App, route: &Route) -> Option<usize> {
    matches!(route, Route::BinaryCreate | Route::DocumentReferenceCreate)
        .then(|| crate::documents::upload_body_limit(app.documents.max_upload_bytes))
}

/// The route a FHIR path's lookup found, or the refusal a request to it gets: 405 with
/// the `Allow` of the rows serving the path, 501 for a type the gateway names without
/// serving this interaction, 404 for anything else.
fn fhir_route(found: Lookup, method: &Method, path: &str, base: &str) -> Result<Route, Rescue> {
    let refusal = match found {
        Lookup::Found(Handler::Fhir(route)) => return Ok(route),
        Lookup::WrongMethod { allowed, .. } => {
            return Err(not_allowed(method, path, base, allowed));
        }
        Lookup::NotFound => {
            crate::routes::named_type(path, base).map(|resource_type| GatewayError::NotSupported {
                method: crate::routes::shown(method.as_str()),
                path: shown_path(path, base),
                resource_type,
                base: base.into(),
            })
        }
        // An operational endpoint below the FHIR base (SMART discovery) is no FHIR
        // interaction: a batch entry cannot name it.
        Lookup::Found(Handler::Endpoint(_)) => None,
    };
    Err(refusal
        .unwrap_or_else(|| GatewayError::NoRoute {
            method: crate::routes::shown(method.as_str()),
            path: shown_path(path, base),
            base: base.into(),
        })
        .into())
}

/// 6. Content negotiation: `_format`, then `Accept`.
fn negotiate(query: &[(String, String)], headers: &HeaderMap) -> Result<(), Rescue> {
    let format = query
        .iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v.as_str());
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    gp_fhir::format::negotiate(format, accept)?;
    Ok(())
}

/// 6–7. A routed FHIR request's content negotiation and audit facts, then its caller
/// authenticated, authorised for the route's scope and charged to its rate limit.
async fn authorise(
    app: &App,
    parts: &Parts,
    route: &Route,
    query: &[(String, String)],
    ids: &RequestIds,
) -> Result<crate::access::Caller, Rescue> {
    // A Binary is answered as its own type too: `documents` negotiates it.
    if !matches!(route, Route::BinaryRead(_)) {
        negotiate(query, &parts.headers)?;
    }
    if let Some((resource_type, interaction)) = route.interaction() {
        ids.facts.route(interaction.code(), resource_type);
    }
    // The patient a request names is audited even when it is refused before any lookup.
    if let Some(nhs) = named_patient(route, query) {
        ids.facts.patient(&nhs.to_string());
    }
    crate::access::check(app, parts, route, &ids.facts).await
}

/// 8. The handler's answer, with the caller's rate-limit state.
async fn answer(
    app: &App,
    route: Route,
    query: &[(String, String)],
    headers: &HeaderMap,
    ids: &RequestIds,
    caller: &crate::access::Caller,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, Rescue> {
    let mut resp = crate::handlers::serve(app, route, query, headers, ids, caller, body).await?;
    if let crate::access::Caller::Supplier { decision, .. } = caller {
        crate::auth::rate_limit_headers(resp.headers_mut(), decision);
    }
    Ok(resp)
}

/// Step 8 of a batch: each entry served in turn as the request it stands for (looked up
/// in the route table, authorised and charged to the rate limit with the batch's token,
/// its handler run), and audited as its own interaction before its answer joins the
/// `batch-response`. A refused entry is answered in its place; the batch goes on.
async fn batch(
    app: &App,
    parts: &Parts,
    body: &[u8],
    ids: &RequestIds,
    caller: &crate::access::Caller,
) -> Result<Response<Full<Bytes>>, Rescue> {
    let entries = crate::batch::parse(body, &ids.base_url)?;
    if let crate::access::Caller::Supplier { view, decision } = caller {
        let served = entries.iter().filter(|e| e.is_ok()).count() as u32;
        crate::batch::within_budget(view.client_id(), served, decision)?;
    }
    let mut answers = Vec::with_capacity(entries.len());
    let mut last = None;
    for entry in entries {
        let entry_ids = ids.for_entry();
        let (resp, decision) = match entry {
            Ok(read) => batch_entry(app, parts, &read, &entry_ids).await,
            Err(refused) => (Err(Rescue::from(refused)), None),
        };
        last = decision.or(last);
        let resp = resp.unwrap_or_else(|rescue| {
            entry_ids.facts.outcome(rescue.error.spine_code().as_str());
            rescue.into_response(&ids.request_id)
        });
        let resp = audit(app, &entry_ids, resp).await;
        let (head, body) = resp.into_parts();
        let header = |name: header::HeaderName| {
            head.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        answers.push(crate::batch::EntryAnswer {
            status: head.status,
            etag: header(header::ETAG),
            location: header(header::LOCATION),
            last_modified: header(header::LAST_MODIFIED),
            body: crate::body::answered(body).await.to_vec(),
        });
    }
    let last_updated = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let bundle = crate::batch::response(&ids.request_id, &last_updated, answers);
    let mut resp = crate::respond::fhir(
        StatusCode::OK,
        serde_json::to_vec(&bundle).unwrap_or_default(),
    );
    // The rate-limit state after the last entry charged (or the batch's own).
    let decision = last.as_ref().or(match caller {
        crate::access::Caller::Supplier { decision, .. } => Some(decision),
        _ => None,
    });
    if let Some(decision) = decision {
        crate::auth::rate_limit_headers(resp.headers_mut(), decision);
    }
    Ok(resp)
}

/// One batch entry, served as a `GET` of its URL with the batch's headers (its token,
/// its client certificate) would be; with the rate-limit state it left.
async fn batch_entry(
    app: &App,
    batch: &Parts,
    read: &crate::batch::EntryRead,
    ids: &RequestIds,
) -> (
    Result<Response<Full<Bytes>>, Rescue>,
    Option<gp_auth::RateDecision>,
) {
    let base = app.fhir_base_path.as_str();
    let path = format!("{base}/{}", read.path);
    let route = fhir_route(
        lookup(Listener::Main, serving(app), &Method::GET, &path, base),
        &Method::GET,
        &path,
        base,
    );
    let route = match route {
        Ok(route) => route,
        Err(refused) => return (Err(refused), None),
    };
    let query = match gp_fhir::search::parse_query(&read.query) {
        Ok(query) => query,
        Err(e) => return (Err(e.into()), None),
    };
    let mut parts = batch.clone();
    parts.method = Method::GET;
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::IF_NONE_MATCH);
    if let Some(tag) = read
        .if_none_match
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        parts.headers.insert(header::IF_NONE_MATCH, tag);
    }
    let caller = match authorise(app, &parts, &route, &query, ids).await {
        Ok(caller) => caller,
        Err(refused) => return (Err(refused), None),
    };
    let decision = match &caller {
        crate::access::Caller::Supplier { decision, .. } => Some(*decision),
        _ => None,
    };
    let answered = answer(app, route, &query, &parts.headers, ids, &caller, &[]).await;
    (answered, decision)
}

/// The valid NHS number a request's path or `patient` parameter names, if any.
fn named_patient(
    route: &crate::routes::Route,
    query: &[(String, String)],
) -> Option<gp_fhir::NhsNumber> {
    use crate::routes::Route;
    let raw = match route {
        Route::PatientRead(id) | Route::PatientPatch(id) | Route::PatientUpdate(id) => {
            Some(id.as_str())
        }
        _ => query
            .iter()
            .find(|(k, _)| k == "patient" || k == "patient:identifier" || k == "subject")
            .map(|(_, v)| v.rsplit(['/', '|']).next().unwrap_or(v)),
    }?;
    gp_fhir::NhsNumber::parse(raw).ok()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

async fn readiness(app: &App, ids: &RequestIds) -> Response<Full<Bytes>> {
    if !app.is_accepting() {
        return json(StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#);
    }
    let ctx = ids.call_context();
    let mut systems = serde_json::Map::new();
    let mut all_ready = true;
    // Every system is probed at once, so the probe takes as long as the slowest (≤ 2 s).
    let probes: Vec<_> = app
        .adapters
        .iter()
        .map(|(system, adapter)| {
            let ctx = ctx.clone();
            let adapter = adapter.clone();
            let system = *system;
            tokio::spawn(async move {
                let state = match tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    adapter.ready(&ctx),
                )
                .await
                {
                    Ok(Ok(())) => "ready".to_owned(),
                    Ok(Err(e)) => format!("unavailable: {e}"),
                    Err(_) => "unavailable: readiness probe timed out".to_owned(),
                };
                (system, state)
            })
        })
        .collect();
    for probe in probes {
        let Ok((system, state)) = probe.await else {
            all_ready = false;
            continue;
        };
        all_ready &= state == "ready";
        systems.insert(system.id().to_owned(), serde_json::Value::String(state));
    }
    // Without the audit trail nothing can be served: not ready at all.
    let audit = match app.audit.ready().await {
        Ok(()) => "ready".to_owned(),
        Err(e) => format!("unavailable: {e}"),
    };
    if audit != "ready" {
        let body =
            serde_json::json!({ "status": "unavailable", "audit": audit, "systems": systems });
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::to_vec(&body).unwrap_or_default(),
        );
    }
    let status = if all_ready { "ready" } else { "degraded" };
    let body =
        serde_json::json!({ "status": status, "audit": app.audit.backend(), "systems": systems });
    // One GP system down must not take the gateway out of service for the others.
    json(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// Requests the trail records: every FHIR route and the token endpoint.
fn is_audited(app: &App, path: &str) -> bool {
    path == crate::routes::TOKEN_PATH
        || path
            .strip_prefix(app.fhir_base_path.as_str())
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
}

/// Writes the request's audit row. When it cannot be committed in time, a successful
/// answer is replaced by a 503 (no patient data leaves unaudited); a refusal is still
/// sent, since it releases nothing, and the failure is logged. Either way the trail
/// records, if anything, what was sent ([`crate::audit::AuditRecord::withheld`]).
async fn audit(app: &App, ids: &RequestIds, resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let facts = ids.facts.snapshot();
    let status = resp.status().as_u16();
    let record = crate::audit::AuditRecord {
        id: crate::audit::new_row_id(),
        recorded: crate::audit::now_recorded(),
        request_id: ids.request_id.clone(),
        request_id_supplied: Some(facts.request_id_supplied),
        supplier: facts.supplier.clone(),
        token_id: facts.token_id.clone(),
        patient: facts.patient.clone(),
        practice: facts.practice.clone(),
        interaction: facts.interaction.unwrap_or("none").to_owned(),
        resource_type: facts.resource_type.clone(),
        status,
        outcome_code: facts.outcome_code.clone(),
        replica: app.replica.clone(),
    };
    let events = crate::notify::events_of(&facts, &record, status);
    let result = if events.is_empty() {
        app.audit.append(record).await
    } else {
        let committed = app.audit.append_with_events(record, events).await;
        if let (Ok(()), Some(n)) = (&committed, &app.notifier) {
            n.wake.notify_one();
        }
        committed
    };
    if result.is_err() {
        app.metrics.audit_failure();
    }
    match result {
        Ok(()) => resp,
        Err(e) if crate::audit::releases(status) => {
            tracing::error!(error = %e, "audit row not committed: response withheld");
            Rescue::from(e).into_response(&ids.request_id)
        }
        Err(e) => {
            tracing::error!(error = %e, status, "audit row not committed for a refusal");
            resp
        }
    }
}

/// 9. Headers every response carries.
fn finish(mut resp: Response<Full<Bytes>>, ids: &RequestIds) -> Response<Full<Bytes>> {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        headers.insert("x-request-id", v);
    }
    if let Some(v) = ids
        .correlation_id
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.insert("x-correlation-id", v);
    }
    // Responses may identify patients: never stored by browsers or intermediaries.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}
