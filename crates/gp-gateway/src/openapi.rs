//! The OpenAPI 3.0 description of everything the gateway serves, at `/openapi.json`.
//! Its paths and operations are read from the route table (`routes::ROUTES`: method,
//! path, listener, who may call, summary), so no path is served that is not documented,
//! nor documented that is not served; what each answers (parameters, bodies, the Spine
//! codes of its errors, request examples) is written here, by what answers it.

use bytes::Bytes;
use gp_adapter::ClinicalType;
use gp_fhir::SpineCode;
use gp_fhir::ids::NHS_NUMBER_SYSTEM;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::routes::{
    Access, ENTRY_ID_TEMPLATE, Endpoint, Handler, ID_TEMPLATE, Interaction, Listener, Mount,
    ROUTES, Route, Row, Serving, TOKEN_PATH,
};

/// A valid NHS number, for examples and for routes that carry one.
pub const EXAMPLE_NHS: &str = "9000000009";
/// An example record entry id (an EMIS GUID, as the gateway answers it).
pub const EXAMPLE_ENTRY_ID: &str = "5e3f0c3e-0f4c-4c53-9a1e-2d6f8f6c7a11";

const SPINE_SYSTEM: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";

/// The shape of an NHS number identifier token (the check digit is the gateway's to check).
const NHS_IDENTIFIER_PATTERN: &str = "^https://fhir\\.nhs\\.uk/Id/nhs-number\\|[0-9]{10}$";
/// A patient reference as searches take it: `9000000009`, `Patient/9000000009` or the
/// identifier token.
const PATIENT_PATTERN: &str =
    "^((Patient/)?[0-9]{10}|https://fhir\\.nhs\\.uk/Id/nhs-number\\|[0-9]{10})$";
/// `_format` values the gateway answers (anything else is 406 NOT_ACCEPTABLE).
const FORMATS: [&str; 4] = [
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "json",
];

/// The document for a running gateway, as a response.
pub fn response(app: &App, serving: Serving) -> Response<Full<Bytes>> {
    let mut clinical: Vec<ClinicalType> = app
        .adapters
        .values()
        .flat_map(|a| a.supported_types().iter().copied())
        .collect();
    clinical.sort();
    clinical.dedup();
    let doc = document(&app.public_origin, &app.fhir_base_path, &clinical, serving);
    crate::respond::json(StatusCode::OK, serde_json::to_vec(&doc).unwrap_or_default())
}

/// One documented operation: a row of the route table on one of its paths.
struct Operation {
    row: &'static Row,
    /// What a request to it is answered by.
    handler: Handler,
    /// The path template below the row's mount (`/Patient/{nhsNumber}`).
    template: String,
    /// The path template as the document lists it (the FHIR base included).
    path: String,
}

/// Every operation a gateway serving `serving` answers, on any listener, in the table's
/// order: a clinical type row once per type in `clinical`.
fn operations(base: &str, clinical: &[ClinicalType], serving: Serving) -> Vec<Operation> {
    ROUTES
        .iter()
        .filter(|row| row.when.holds(serving))
        .flat_map(|row| {
            row.paths(clinical)
                .into_iter()
                .map(move |(template, handler)| Operation {
                    row,
                    handler,
                    path: match row.mount {
                        Mount::Origin => template.clone(),
                        Mount::FhirBase => format!("{base}{template}"),
                    },
                    template,
                })
        })
        .collect()
}

/// The SMART scope an operation needs, as `access::check` demands it (`None`: none).
fn scope(op: &Operation) -> Option<String> {
    let Handler::Fhir(route) = &op.handler else {
        return None;
    };
    let (resource_type, interaction) = route.scope().filter(|_| op.row.access == Access::Bearer)?;
    let letter = match interaction {
        Interaction::Read | Interaction::Vread | Interaction::Operation => 'r',
        Interaction::SearchType => 's',
        Interaction::Create => 'c',
        Interaction::Patch | Interaction::Update => 'u',
        Interaction::Delete => 'd',
        // Each entry of a batch needs the scope it would need alone.
        Interaction::Batch => return None,
    };
    Some(format!("system/{resource_type}.{letter}"))
}

/// The admin listener, where the rows served there only are answered.
fn admin_servers() -> Value {
    json!([{
        "url": "http://{admin}",
        "description": "the admin listener ([admin] listen): operators only (Prometheus, the kubelet), plain HTTP, never routed to suppliers",
        "variables": { "admin": {
            "default": "127.0.0.1:9091",
            "description": "the gateway's [admin] listen address (loopback by default)"
        } }
    }])
}

/// The whole document: `origin` is the public origin, `base` the FHIR base path.
pub fn document(origin: &str, base: &str, clinical: &[ClinicalType], serving: Serving) -> Value {
    let mut paths = Map::new();
    let mut scopes = Vec::new();
    for op in operations(base, clinical, serving) {
        if let Some(s) = scope(&op)
            && !scopes.contains(&s)
        {
            scopes.push(s);
        }
        let item = paths.entry(op.path.clone()).or_insert_with(|| json!({}));
        item[op.row.method.as_str().to_lowercase()] = operation(&op, serving.oauth);
        if !op.row.on(Listener::Main) {
            item["servers"] = admin_servers();
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "gp-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One FHIR R4 API (UK Core) over the GP clinical systems in England, and the gateway's operational endpoints. Generated from the gateway's route table. Errors on FHIR routes are OperationOutcomes with a Spine-ErrorOrWarningCode; the token endpoint answers OAuth2 JSON errors.",
        },
        "servers": [{ "url": origin }],
        "paths": paths,
        "components": components(origin, &scopes),
    })
}

/// One operation: what the table says (method, path, summary, who may call), then what
/// answers it.
fn operation(op: &Operation, oauth: bool) -> Value {
    let row = op.row;
    let mut o = match &op.handler {
        Handler::Fhir(route) => fhir_operation(route, op, oauth && row.access == Access::Bearer),
        Handler::Endpoint(endpoint) => endpoint_operation(*endpoint),
    };
    // An operational endpoint served at the origin and below the FHIR base (SMART
    // discovery) is two operations.
    let below_base = matches!(op.handler, Handler::Endpoint(_)) && row.mount == Mount::FhirBase;
    o.insert(
        "operationId".into(),
        json!(format!(
            "{}{}{}",
            row.method.as_str().to_lowercase(),
            op.template.replace(['/', '{', '}', '$', '.', '-'], "_"),
            if below_base { "_below_fhir_base" } else { "" }
        )),
    );
    o.insert("summary".into(), json!(row.summary));
    let mut description = row.description.to_owned();
    if row.on(Listener::Main) && row.on(Listener::Admin) {
        if !description.is_empty() {
            description.push(' ');
        }
        description.push_str("Also served on the admin listener ([admin] listen).");
    }
    if !description.is_empty() {
        o.insert("description".into(), json!(description));
    }
    o.insert(
        "security".into(),
        match scope(op) {
            Some(s) if oauth => json!([{ "smart": [s] }]),
            _ => json!([]),
        },
    );
    // Every listener reads these on every request, and refuses a malformed id (400).
    let mut parameters = vec![
        reference("parameters/XRequestID"),
        reference("parameters/XCorrelationID"),
        reference("parameters/traceparent"),
    ];
    if let Some(Value::Array(more)) = o.remove("parameters") {
        parameters.extend(more);
    }
    o.insert("parameters".into(), Value::Array(parameters));
    Value::Object(o)
}

/// The headers every answer carries.
fn answer_headers() -> Value {
    json!({
        "X-Request-ID": reference("headers/XRequestID"),
        "X-Correlation-ID": reference("headers/XCorrelationID"),
        "Cache-Control": reference("headers/CacheControl"),
    })
}

/// An OperationOutcome answer, listing the Spine codes it can carry.
fn outcome(codes: &[SpineCode], headers: Value) -> Value {
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    json!({
        "description": format!("OperationOutcome; Spine code {}", names.join(", ")),
        "headers": headers,
        "x-spine-codes": names,
        "content": fhir_content("OperationOutcome"),
    })
}

fn json_content(schema: &str) -> Value {
    json!({ "application/json": { "schema": reference(&format!("schemas/{schema}")) } })
}

/// An operational endpoint's parameters, bodies and answers.
fn endpoint_operation(endpoint: Endpoint) -> Map<String, Value> {
    let text = json!({ crate::metrics::CONTENT_TYPE: { "schema": { "type": "string" } } });
    let (tag, answers) = match endpoint {
        Endpoint::Token => return token_operation(),
        Endpoint::Health => (
            "Operational",
            vec![("200", "serving", json_content("Health"))],
        ),
        Endpoint::Ready => (
            "Operational",
            vec![
                ("200", "ready, or degraded", json_content("Readiness")),
                (
                    "503",
                    "draining, or the audit trail unavailable",
                    json_content("Readiness"),
                ),
            ],
        ),
        Endpoint::Metrics => (
            "Operational",
            vec![("200", "the Prometheus text exposition", text)],
        ),
        Endpoint::OpenApi => (
            "Operational",
            vec![("200", "this document", json_content("OpenAPI"))],
        ),
        Endpoint::SandboxManifest => (
            "Operational",
            vec![(
                "200",
                "the sandbox manifest",
                json_content("SandboxManifest"),
            )],
        ),
        Endpoint::Jwks => (
            "OAuth2",
            vec![("200", "the public signing keys", json_content("JWKS"))],
        ),
        Endpoint::SmartConfiguration => (
            "OAuth2",
            vec![(
                "200",
                "the SMART configuration",
                json_content("SmartConfiguration"),
            )],
        ),
    };
    let mut responses = Map::new();
    for (status, description, content) in answers {
        responses.insert(
            status.into(),
            json!({ "description": description, "headers": answer_headers(), "content": content }),
        );
    }
    let id_headers = json!({ "X-Request-ID": reference("headers/XRequestID") });
    responses.insert(
        "400".into(),
        outcome(&[SpineCode::InvalidValue], id_headers.clone()),
    );
    let mut allow = id_headers;
    allow["Allow"] = reference("headers/Allow");
    responses.insert("405".into(), outcome(&[SpineCode::MethodNotAllowed], allow));
    let mut o = Map::new();
    o.insert("tags".into(), json!([tag]));
    o.insert("responses".into(), Value::Object(responses));
    o
}

fn token_operation() -> Map<String, Value> {
    let oauth_error = json_content("OAuth2Error");
    let mut bad_request = oauth_error.clone();
    bad_request["application/fhir+json"] =
        fhir_content("OperationOutcome")["application/fhir+json"].clone();
    let retry = json!({ "X-Request-ID": reference("headers/XRequestID"), "Retry-After": reference("headers/RetryAfter") });
    let mut limited = retry.clone();
    limited["RateLimit"] = reference("headers/RateLimit");
    limited["RateLimit-Policy"] = reference("headers/RateLimitPolicy");
    let mut unavailable = oauth_error.clone();
    unavailable["application/fhir+json"] = bad_request["application/fhir+json"].clone();
    let op = json!({
        "tags": ["OAuth2"],
        "requestBody": { "required": true, "content": {
            "application/x-www-form-urlencoded": { "schema": reference("schemas/TokenRequest") } } },
        "responses": {
            "200": { "description": "an access token", "headers": answer_headers(),
                "content": json_content("TokenResponse") },
            "400": { "description": "invalid_request, invalid_grant, invalid_scope, unsupported_grant_type (one precise message per failed check); an OperationOutcome for a malformed X-Request-ID or X-Correlation-ID", "content": bad_request },
            "401": { "description": "invalid_client", "content": oauth_error.clone() },
            "405": { "description": "invalid_request: use POST", "headers": { "Allow": reference("headers/Allow") }, "content": oauth_error.clone() },
            "429": { "description": "temporarily_unavailable: too many token requests (from this address, naming this client, or over the client's own budget, which its RateLimit headers describe)", "headers": limited, "content": oauth_error },
            "503": { "description": "temporarily_unavailable: the replay store or the rate limiter is unreachable; an OperationOutcome when the audit trail cannot take the request's row", "headers": retry, "content": unavailable },
        }
    });
    match op {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// A FHIR interaction's parameters, bodies and answers. `bearer`: it needs a token.
fn fhir_operation(route: &Route, op: &Operation, bearer: bool) -> Map<String, Value> {
    let mut parameters = vec![
        reference("parameters/Accept"),
        reference("parameters/format"),
    ];
    if op.template.contains(ID_TEMPLATE) {
        parameters.push(reference("parameters/nhsNumber"));
    }
    if op.template.contains(ENTRY_ID_TEMPLATE) {
        parameters.push(reference("parameters/id"));
    }
    // A POST _search takes its parameters in a form body too: none is required in the query.
    let form_search = op.row.method == http::Method::POST
        && matches!(route, Route::PatientSearch | Route::ClinicalSearch(_));
    parameters.extend(query_parameters(route).into_iter().map(|mut p| {
        if form_search {
            p["required"] = json!(false);
        }
        p
    }));
    // The request bodies a route takes, by media type (the first carries the example).
    let (ok_status, ok_schema, request_schemas): (u16, &str, &[(&str, &str)]) = match route {
        Route::Metadata => (200, "CapabilityStatement", &[]),
        Route::PatientRead(_) => (200, "Patient", &[]),
        Route::PatientPatch(_) => (
            200,
            "Patient",
            &[
                ("application/json-patch+json", "JsonPatch"),
                ("application/merge-patch+json", "MergePatch"),
                ("application/fhir+json", "FhirPatch"),
                ("application/json", "FhirPatch"),
            ],
        ),
        Route::PatientUpdate(_) => (200, "Patient", &[("application/fhir+json", "Patient")]),
        Route::ClinicalRead(..)
        | Route::ClinicalVread(..)
        | Route::OrganizationRead(_)
        | Route::PractitionerRead(_) => (200, "Resource", &[]),
        Route::ListRead(_) => (200, "Resource", &[]),
        Route::BundleRead(_) => (200, "Bundle", &[]),
        Route::PatientSearch
        | Route::ClinicalSearch(_)
        | Route::AuditEventSearch
        | Route::AccessLog(_) => (200, "Bundle", &[]),
        Route::Batch => (200, "Bundle", &[("application/fhir+json", "Bundle")]),
        Route::StructuredRecord => (200, "Bundle", &[("application/fhir+json", "Parameters")]),
        Route::ObservationCreate => (
            201,
            "Observation",
            &[("application/fhir+json", "Observation")],
        ),
        Route::SlotSearch | Route::AppointmentSearch => (200, "Bundle", &[]),
        Route::AppointmentRead(_) | Route::AppointmentVread(..) => (200, "Resource", &[]),
        Route::AppointmentCreate => (201, "Resource", &[("application/fhir+json", "Resource")]),
        Route::AppointmentUpdate(_) => (200, "Resource", &[("application/fhir+json", "Resource")]),
        Route::AppointmentPatch(_) => (
            200,
            "Resource",
            &[
                ("application/json-patch+json", "JsonPatch"),
                ("application/merge-patch+json", "MergePatch"),
            ],
        ),
        Route::DocumentReferenceSearch => (200, "Bundle", &[]),
        Route::DocumentReferenceRead(_) | Route::BinaryRead(_) => (200, "Resource", &[]),
        Route::DocumentReferenceCreate => {
            (201, "Resource", &[("application/fhir+json", "Resource")])
        }
        Route::BinaryCreate => (
            201,
            "Resource",
            &[
                ("application/pdf", "RawContent"),
                ("text/plain", "RawContent"),
                ("text/html", "RawContent"),
                ("application/fhir+json", "Resource"),
            ],
        ),
        Route::SubscriptionCreate => (201, "Resource", &[("application/fhir+json", "Resource")]),
        Route::SubscriptionRead(_) | Route::TopicRead(_) => (200, "Resource", &[]),
        Route::SubscriptionDelete(_) => (204, "Resource", &[]),
        Route::SubscriptionSearch | Route::SubscriptionStatus(_) | Route::TopicSearch => {
            (200, "Bundle", &[])
        }
        Route::SubscriptionEvents(_) => (200, "Bundle", &[]),
    };
    match route {
        Route::ObservationCreate => {
            parameters.push(reference("parameters/IfNoneExist"));
            parameters.push(reference("parameters/identifierCondition"));
        }
        Route::AppointmentCreate | Route::DocumentReferenceCreate => {
            parameters.push(reference("parameters/IfNoneExist"));
            parameters.push(reference("parameters/identifierCondition"));
        }
        Route::BinaryCreate => {
            parameters.push(json!({ "name": "X-Security-Context", "in": "header", "required": false,
                "schema": { "type": "string", "pattern": "^Patient/[0-9]{10}$" },
                "description": "Patient/{nhsNumber}: the patient whose record the content is for (required with a raw body)" }));
        }
        Route::PatientPatch(_)
        | Route::PatientUpdate(_)
        | Route::AppointmentUpdate(_)
        | Route::AppointmentPatch(_) => {
            parameters.push(reference("parameters/IfMatch"));
        }
        _ => {}
    }
    let (resource_type, interaction) = route
        .interaction()
        .map(|(t, i)| (t, i.code()))
        .unwrap_or(("CapabilityStatement", "capabilities"));
    let mut o = Map::new();
    o.insert("tags".into(), json!([resource_type]));
    o.insert("x-fhir-interaction".into(), json!(interaction));
    o.insert("parameters".into(), Value::Array(parameters));
    if form_search {
        // The same parameters as the query, as form fields (split between the two as
        // the client likes).
        let properties: Map<String, Value> = query_parameters(route)
            .into_iter()
            .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["schema"].clone())))
            .collect();
        o.insert(
            "requestBody".into(),
            json!({ "required": false, "content": { "application/x-www-form-urlencoded": {
                "schema": { "type": "object", "properties": properties } } } }),
        );
    }
    if !request_schemas.is_empty() {
        let mut content = Map::new();
        for (i, (media_type, schema)) in request_schemas.iter().enumerate() {
            let mut media = json!({ "schema": reference(&format!("schemas/{schema}")) });
            if let Some(example) = request_example(route).filter(|_| i == 0) {
                media["example"] = example;
            }
            content.insert((*media_type).into(), media);
        }
        o.insert(
            "requestBody".into(),
            json!({ "required": true, "content": content }),
        );
    }
    let mut ok_headers = answer_headers();
    if matches!(
        route,
        Route::PatientRead(_)
            | Route::PatientPatch(_)
            | Route::PatientUpdate(_)
            | Route::AppointmentCreate
            | Route::AppointmentRead(_)
            | Route::AppointmentVread(..)
            | Route::AppointmentUpdate(_)
            | Route::AppointmentPatch(_)
    ) {
        ok_headers["ETag"] = reference("headers/ETag");
    }
    if matches!(
        route,
        Route::ObservationCreate
            | Route::AppointmentCreate
            | Route::DocumentReferenceCreate
            | Route::BinaryCreate
    ) {
        ok_headers["Location"] = reference("headers/Location");
    }
    if bearer {
        ok_headers["RateLimit"] = reference("headers/RateLimit");
        ok_headers["RateLimit-Policy"] = reference("headers/RateLimitPolicy");
    }
    let mut responses = Map::new();
    responses.insert(
        ok_status.to_string(),
        json!({ "description": op.row.summary, "headers": ok_headers, "content": fhir_content(ok_schema) }),
    );
    if matches!(route, Route::ObservationCreate) {
        responses.insert(
            "200".into(),
            json!({ "description": "a retry of a reading already recorded (same identifier): nothing recorded again", "headers": ok_headers, "content": fhir_content("Observation") }),
        );
    }
    if matches!(route, Route::DocumentReferenceCreate) {
        responses.insert(
            "200".into(),
            json!({ "description": "a retry of a document already filed (same identifier): nothing filed again", "headers": ok_headers, "content": fhir_content("Resource") }),
        );
    }
    if matches!(route, Route::AppointmentCreate) {
        responses.insert(
            "200".into(),
            json!({ "description": "a retry of a booking already made (same identifier): nothing booked again", "headers": ok_headers, "content": fhir_content("Resource") }),
        );
    }
    for (status, codes) in errors(route, bearer, form_search) {
        let mut headers = json!({ "X-Request-ID": reference("headers/XRequestID") });
        match status {
            405 => headers["Allow"] = reference("headers/Allow"),
            401 => headers["WWW-Authenticate"] = reference("headers/WWWAuthenticate"),
            429 | 503 => headers["Retry-After"] = reference("headers/RetryAfter"),
            _ => {}
        }
        responses.insert(status.to_string(), outcome(&codes, headers));
    }
    o.insert("responses".into(), Value::Object(responses));
    o
}

/// The error statuses and Spine codes a route can answer (`bearer`: it needs a token;
/// `form_search`: a POST _search, whose body must be a form).
fn errors(route: &Route, bearer: bool, form_search: bool) -> Vec<(u16, Vec<SpineCode>)> {
    use SpineCode as S;
    let writes = matches!(
        route,
        Route::ObservationCreate
            | Route::PatientPatch(_)
            | Route::PatientUpdate(_)
            | Route::StructuredRecord
            | Route::Batch
            | Route::AppointmentCreate
            | Route::AppointmentUpdate(_)
            | Route::AppointmentPatch(_)
            | Route::DocumentReferenceCreate
            | Route::BinaryCreate
    );
    let patient_data = !matches!(route, Route::Metadata | Route::AuditEventSearch);
    let mut bad_request = vec![S::InvalidValue, S::InvalidParameter];
    if patient_data {
        bad_request.push(S::InvalidResourceId);
    }
    if matches!(
        route,
        Route::PatientSearch
            | Route::ClinicalSearch(_)
            | Route::AuditEventSearch
            | Route::SlotSearch
            | Route::AppointmentSearch
            | Route::DocumentReferenceSearch
    ) {
        bad_request.extend([S::InvalidSearchData, S::MissingValue]);
    }
    if matches!(route, Route::Batch) {
        bad_request.push(S::InvalidResource);
    }
    let mut out = vec![
        (400, bad_request),
        (404, vec![S::UnsupportedService]),
        (405, vec![S::MethodNotAllowed]),
        (406, vec![S::NotAcceptable]),
        (413, vec![S::PayloadTooLarge]),
    ];
    if bearer {
        out.push((401, vec![S::AccessDenied]));
        out.push((403, vec![S::AccessDenied]));
        out.push((429, vec![S::TooManyRequests]));
    }
    if patient_data {
        if let Some((_, codes)) = out.iter_mut().find(|(s, _)| *s == 404) {
            codes.extend([S::ResourceNotFound, S::InvalidatedResource]);
        }
        match out.iter_mut().find(|(s, _)| *s == 403) {
            Some((_, codes)) => codes.push(S::NoPatientConsent),
            None => out.push((403, vec![S::NoPatientConsent])),
        }
        out.push((502, vec![S::UnableToCallService]));
    }
    if writes {
        out.push((415, vec![S::UnsupportedMediaType]));
        out.push((422, vec![S::InvalidResource, S::InvalidParameter]));
    }
    if form_search {
        // POST _search with a body that is not a form.
        out.push((415, vec![S::UnsupportedMediaType]));
    }
    match route {
        Route::ObservationCreate => out.push((409, vec![S::DuplicateRejected])),
        Route::AppointmentCreate => out.push((409, vec![S::DuplicateRejected])),
        // A GP system whose adapter cannot manage documents yet.
        Route::DocumentReferenceSearch
        | Route::DocumentReferenceRead(_)
        | Route::DocumentReferenceCreate
        | Route::BinaryCreate => out.push((501, vec![S::NotImplemented])),
        // Content over the inline limit: ask the practice.
        Route::BinaryRead(_) => {
            out.push((403, vec![S::AccessDenied]));
            out.push((501, vec![S::NotImplemented]));
        }
        // A GP system whose adapter cannot manage appointments yet.
        Route::AppointmentRead(_) | Route::AppointmentVread(..) => {
            out.push((501, vec![S::NotImplemented]));
        }
        Route::AppointmentUpdate(_) | Route::AppointmentPatch(_) => {
            out.push((412, vec![S::PreconditionFailed]));
            out.push((501, vec![S::NotImplemented]));
        }
        // The search refusals GP Connect names: 422 INVALID_PARAMETER naming the parameter.
        Route::SlotSearch | Route::AppointmentSearch => {
            out.push((422, vec![S::InvalidParameter]));
            out.push((501, vec![S::NotImplemented]));
        }
        Route::PatientPatch(_) => {
            out.push((409, vec![S::VersionConflict]));
            out.push((412, vec![S::PreconditionFailed]));
        }
        // A GP system that cannot read its staff (an adapter without read_practitioner).
        Route::PractitionerRead(_) => out.push((501, vec![S::NotImplemented])),
        Route::PatientUpdate(_) => out.push((412, vec![S::PreconditionFailed])),
        _ => {}
    }
    out.push((503, vec![S::ServiceUnavailable]));
    out.push((504, vec![S::UnableToCallService]));
    out.sort_by_key(|(s, _)| *s);
    out
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/{name}") })
}

fn fhir_content(schema: &str) -> Value {
    json!({ "application/fhir+json": { "schema": reference(&format!("schemas/{schema}")) } })
}

/// Query parameters of a route, as the router parses them.
fn query_parameters(route: &Route) -> Vec<Value> {
    let q = |name: &str, required: bool, schema: Value, description: &str| json!({ "name": name, "in": "query", "required": required, "schema": schema, "description": description });
    let string = json!({ "type": "string" });
    // A FHIR date, month or year, or a dateTime with its zone, after an optional prefix.
    let date = |prefixes: &str| {
        json!({ "type": "array", "items": { "type": "string",
            "pattern": format!("^({prefixes})?[0-9]{{4}}(-[0-9]{{2}}(-[0-9]{{2}}(T[0-9]{{2}}:[0-9]{{2}}(:[0-9]{{2}}(\\.[0-9]+)?)?(Z|[+-][0-9]{{2}}:[0-9]{{2}}))?)?)?$") },
            "example": ["ge2020-01-01"] })
    };
    let patient = json!({ "type": "string", "pattern": PATIENT_PATTERN, "example": EXAMPLE_NHS });
    // Each search parameter as the parser reads it (gp_fhir::search::search_params),
    // with a tighter schema where one helps a client (and schemathesis) send good values.
    let search = |resource_type: &str| -> Vec<Value> {
        gp_fhir::search::search_params(resource_type)
            .into_iter()
            .map(|p| {
                let schema = match p.name {
                    "patient" | "subject" => patient.clone(),
                    "date" => date("eq|gt|lt|ge|le|sa|eb"),
                    "identifier" if resource_type == "Patient" => {
                        json!({ "type": "string", "pattern": NHS_IDENTIFIER_PATTERN,
                            "example": format!("{NHS_NUMBER_SYSTEM}|{EXAMPLE_NHS}") })
                    }
                    "code" | "category" | "status" | "clinical-status" | "identifier" => {
                        json!({ "type": "array", "items": { "type": "string", "minLength": 1 }, "example": [p.example] })
                    }
                    "_id" => {
                        json!({ "type": "string", "pattern": "^[A-Za-z0-9.-]{1,64}(,[A-Za-z0-9.-]{1,64})*$" })
                    }
                    "_count" => json!({ "type": "integer", "minimum": 0, "default": 50 }),
                    "_offset" => json!({ "type": "integer", "minimum": 0 }),
                    "_summary" => {
                        json!({ "type": "string", "enum": ["true", "data", "count", "false"] })
                    }
                    "_sort" => json!({ "type": "string", "enum": ["date", "-date"] }),
                    "_total" => {
                        json!({ "type": "string", "enum": ["none", "estimate", "accurate"] })
                    }
                    "_pretty" => json!({ "type": "string", "enum": ["true", "false"] }),
                    "_include" => {
                        let values: Vec<String> = gp_fhir::include::includes_of(resource_type)
                            .map(gp_fhir::include::IncludeDef::name)
                            .collect();
                        json!({ "type": "array", "items": { "type": "string", "enum": values }, "example": [p.example] })
                    }
                    "_revinclude" => {
                        let values: Vec<String> = gp_fhir::include::revincludes_of(resource_type)
                            .map(gp_fhir::include::IncludeDef::name)
                            .collect();
                        json!({ "type": "array", "items": { "type": "string", "enum": values }, "example": [p.example] })
                    }
                    _ => json!({ "type": "string", "example": p.example }),
                };
                // A search names its patient: by `patient` or `subject` for clinical types.
                let required = matches!(
                    (resource_type, p.name),
                    ("Patient", "identifier") | (_, "patient")
                );
                q(p.name, required, schema, p.documentation)
            })
            .collect()
    };
    match route {
        Route::SlotSearch => vec![
            q(
                "start",
                true,
                date("ge|gt"),
                "ge{date}: the first day searched",
            ),
            q(
                "end",
                true,
                date("le|lt"),
                "le{date}: the last day searched (at most 14 days after start)",
            ),
            q(
                "status",
                true,
                json!({ "type": "string", "enum": ["free"] }),
                "free: the only status offered",
            ),
            q(
                "_include",
                true,
                json!({ "type": "array", "items": { "type": "string", "enum": crate::routes::SLOT_INCLUDES }, "example": ["Slot:schedule"] }),
                "Slot:schedule (required), and what the Schedule and Location refer to",
            ),
            q(
                "_include:iterate",
                false,
                json!({ "type": "array", "items": { "type": "string", "enum": crate::routes::SLOT_INCLUDES } }),
                "as _include (R4's modifier)",
            ),
            q(
                "_include:recurse",
                false,
                json!({ "type": "array", "items": { "type": "string", "enum": crate::routes::SLOT_INCLUDES } }),
                "as _include (GP Connect's modifier)",
            ),
            q(
                "_include:recursive",
                false,
                json!({ "type": "array", "items": { "type": "string", "enum": crate::routes::SLOT_INCLUDES } }),
                "as _include (fhirpy's include(..., recursive=True))",
            ),
            q(
                "practice",
                false,
                json!({ "type": "string", "pattern": "^(https://fhir\\.nhs\\.uk/Id/ods-organization-code\\|)?[A-Za-z0-9]{3,10}$" }),
                "the practice's ODS code; without it, every practice you are paired with",
            ),
            q(
                "delivery-channel",
                false,
                json!({ "type": "string", "enum": ["In-person", "Telephone", "Video"] }),
                "how the patient and clinician meet",
            ),
            q(
                "service-type",
                false,
                string,
                "the slot type (Slot.serviceType.text)",
            ),
        ],
        Route::AppointmentSearch => vec![
            q("patient", true, patient, "the NHS number"),
            q(
                "date",
                true,
                date("ge|gt|le|lt"),
                "date=ge{date}&date=le{date}: from today on, at most 31 days",
            ),
        ],
        Route::DocumentReferenceSearch => vec![
            q("patient", true, patient, "the NHS number"),
            q(
                "date",
                false,
                date("ge|gt|le|lt"),
                "when the practice received it",
            ),
            q(
                "created",
                false,
                date("ge|gt|le|lt"),
                "when the document was created",
            ),
            q(
                "type",
                false,
                json!({ "type": "string", "example": "http://snomed.info/sct|371530004" }),
                "SNOMED CT record artifact: http://snomed.info/sct|{code} or {code}",
            ),
            q(
                "author",
                false,
                json!({ "type": "string", "pattern": "^[A-Za-z0-9]{3,10}$" }),
                "the author organisation's ODS code",
            ),
            q(
                "author:identifier",
                false,
                json!({ "type": "string", "pattern": "^https://fhir\\.nhs\\.uk/Id/ods-organization-code\\|[A-Za-z0-9]{3,10}$" }),
                "the author organisation's ODS code as an identifier",
            ),
            q(
                "_count",
                false,
                json!({ "type": "integer", "minimum": 0, "default": 50 }),
                "page size",
            ),
            q(
                "_offset",
                false,
                json!({ "type": "integer", "minimum": 0 }),
                "paging: follow Bundle.link next",
            ),
        ],
        Route::PatientSearch => search("Patient"),
        Route::ClinicalSearch(t) => search(t.as_str()),
        Route::SubscriptionSearch => vec![q(
            "status",
            false,
            json!({ "type": "string", "pattern": "^(requested|active|error|off)(,(requested|active|error|off))*$" }),
            "requested, active, error or off (comma-separated: any of them)",
        )],
        Route::SubscriptionStatus(None) => vec![
            q(
                "id",
                false,
                json!({ "type": "string", "pattern": "^[A-Za-z0-9-]{1,64}(,[A-Za-z0-9-]{1,64})*$" }),
                "subscription ids (comma-separated)",
            ),
            q(
                "status",
                false,
                json!({ "type": "string", "pattern": "^(requested|active|error|off)(,(requested|active|error|off))*$" }),
                "requested, active, error or off",
            ),
        ],
        Route::SubscriptionEvents(_) => vec![
            q(
                "eventsSinceNumber",
                false,
                json!({ "type": "integer", "minimum": 1 }),
                "the first event number (inclusive)",
            ),
            q(
                "eventsUntilNumber",
                false,
                json!({ "type": "integer", "minimum": 1 }),
                "the last event number (inclusive; at most 100 after the first)",
            ),
            q(
                "content",
                false,
                json!({ "type": "string", "enum": ["empty", "id-only", "full-resource"] }),
                "how much of each changed resource to include",
            ),
        ],
        Route::TopicSearch => vec![
            q(
                "code",
                false,
                json!({ "type": "string", "enum": ["SubscriptionTopic"] }),
                "SubscriptionTopic",
            ),
            q(
                "url",
                false,
                json!({ "type": "string" }),
                "a topic's canonical URL",
            ),
        ],
        Route::AuditEventSearch => vec![
            q("patient", false, patient, "the NHS number"),
            q(
                "agent",
                false,
                string,
                "a client id (operators only; suppliers see their own rows)",
            ),
            q(
                "date",
                false,
                date("eq|ge|gt|le|lt"),
                "prefixes eq, ge, gt, le, lt",
            ),
            q(
                "_count",
                false,
                json!({ "type": "integer", "minimum": 1 }),
                "rows per page, most recent first (default 50; more than 1000 gets 1000)",
            ),
            q(
                "_cursor",
                false,
                json!({ "type": "string", "pattern": "^[0-9T:.Z+-]{10,40},[A-Za-z0-9-]{1,64}$" }),
                "paging: follow Bundle.link next (where the previous page ended)",
            ),
        ],
        _ => Vec::new(),
    }
}

/// A request body that succeeds against the sandbox's demo patient [`EXAMPLE_NHS`].
fn request_example(route: &Route) -> Option<Value> {
    let snomed = "http://snomed.info/sct";
    Some(match route {
        Route::ObservationCreate => json!({
            "resourceType": "Observation",
            "status": "final",
            "code": { "coding": [{ "system": snomed, "code": "27113001", "display": "Body weight" }] },
            "subject": { "reference": format!("Patient/{EXAMPLE_NHS}") },
            "effectiveDateTime": "2026-01-05T09:30:00+00:00",
            "valueQuantity": { "value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg" }
        }),
        Route::StructuredRecord => json!({
            "resourceType": "Parameters",
            "parameter": [
                { "name": "patientNHSNumber",
                  "valueIdentifier": { "system": NHS_NUMBER_SYSTEM, "value": EXAMPLE_NHS } },
                { "name": "includeAllergies",
                  "part": [{ "name": "includeResolvedAllergies", "valueBoolean": true }] }
            ]
        }),
        Route::Batch => json!({
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                { "request": { "method": "GET", "url": format!("Patient/{EXAMPLE_NHS}") } },
                { "request": { "method": "GET",
                    "url": format!("Observation?patient={EXAMPLE_NHS}&_sort=-date&_count=5") } }
            ]
        }),
        Route::PatientPatch(_) => json!([
            { "op": "add", "path": "/telecom/-",
              "value": { "system": "email", "value": "patient@example.com", "use": "home" } }
        ]),
        _ => return None,
    })
}

fn components(origin: &str, scopes: &[String]) -> Value {
    let header =
        |description: &str| json!({ "description": description, "schema": { "type": "string" } });
    let scope_map: Map<String, Value> = scopes
        .iter()
        .map(|s| (s.clone(), json!(format!("SMART v2 scope {s}"))))
        .collect();
    json!({
        "securitySchemes": {
            "smart": {
                "type": "oauth2",
                "description": "OAuth2 client credentials with a signed JWT client assertion (private_key_jwt; RS512, RS384 or ES384, `kid` in the header, aud = the token URL)",
                "flows": { "clientCredentials": {
                    "tokenUrl": format!("{origin}{TOKEN_PATH}"),
                    "scopes": scope_map,
                } }
            }
        },
        "parameters": {
            "id": { "name": "id", "in": "path", "required": true,
                "schema": { "type": "string", "pattern": "^[A-Za-z0-9.-]{1,64}$" },
                "example": EXAMPLE_ENTRY_ID,
                "description": "a record entry's id, as a search, the structured record or a create gave it" },
            "nhsNumber": { "name": "nhsNumber", "in": "path", "required": true,
                "schema": { "type": "string", "pattern": "^[0-9]{10}$" }, "example": EXAMPLE_NHS,
                "description": "a 10-digit NHS number (modulus 11 check digit)" },
            "XRequestID": { "name": "X-Request-ID", "in": "header", "required": false,
                "schema": { "type": "string", "format": "uuid" },
                "description": "your request's UUID, mirrored back; one is minted when absent" },
            "XCorrelationID": { "name": "X-Correlation-ID", "in": "header", "required": false,
                "schema": { "type": "string", "maxLength": 200, "pattern": "^[ -~]*$" },
                "description": "printable ASCII, mirrored back" },
            "traceparent": { "name": "traceparent", "in": "header", "required": false,
                "schema": { "type": "string" },
                "description": "W3C trace context; a malformed one starts a new trace" },
            "Accept": { "name": "Accept", "in": "header", "required": false,
                "schema": { "type": "string", "default": "application/fhir+json" },
                "description": "FHIR JSON (application/fhir+json, application/json or */*); anything else is 406 NOT_ACCEPTABLE" },
            "format": { "name": "_format", "in": "query", "required": false,
                "schema": { "type": "string", "enum": FORMATS },
                "description": "overrides Accept; JSON only (XML is 406 NOT_ACCEPTABLE)" },
            "IfMatch": { "name": "If-Match", "in": "header", "required": false,
                "schema": { "type": "string" },
                "description": "a read's ETag, or *; a stale one answers 412 PRECONDITION_FAILED. Without it the change is made to the version current when the gateway reads it" },
            "IfNoneExist": { "name": "If-None-Exist", "in": "header", "required": false,
                "schema": { "type": "string" },
                "description": "conditional create: identifier={system}|{value}" },
            "identifierCondition": { "name": "identifier", "in": "query", "required": false,
                "schema": { "type": "string", "pattern": "^[^|]+\\|.+$" },
                "description": "conditional create as fhirpy sends it ({system}|{value}): the same as If-None-Exist: identifier={system}|{value}; both given must agree" },
        },
        "headers": {
            "XRequestID": header("the request's id (yours, if you sent a UUID)"),
            "XCorrelationID": header("mirrored when sent"),
            "CacheControl": header("no-store"),
            "ETag": header("the version of the resource, for If-Match"),
            "Location": header("where the created reading can be read: [base]/Observation/{id}"),
            "Allow": header("the methods the path allows"),
            "WWWAuthenticate": header("Bearer error=\"invalid_token\""),
            "RetryAfter": header("seconds to wait before retrying"),
            "RateLimit": header("the remaining quota (IETF RateLimit header fields)"),
            "RateLimitPolicy": header("the quota policy"),
        },
        "schemas": {
            "Resource": { "type": "object", "required": ["resourceType"],
                "properties": { "resourceType": { "type": "string" }, "id": { "type": "string" } },
                "additionalProperties": true },
            "Patient": resource_schema("Patient"),
            "Observation": resource_schema("Observation"),
            "Parameters": resource_schema("Parameters"),
            "Bundle": resource_schema("Bundle"),
            "CapabilityStatement": resource_schema("CapabilityStatement"),
            "OperationOutcome": {
                "type": "object", "required": ["resourceType", "issue"],
                "properties": {
                    "resourceType": { "type": "string", "enum": ["OperationOutcome"] },
                    "id": { "type": "string", "description": "the request id" },
                    "issue": { "type": "array", "minItems": 1, "items": {
                        "type": "object", "required": ["severity", "code"],
                        "properties": {
                            "severity": { "type": "string" },
                            "code": { "type": "string", "description": "FHIR issue type" },
                            "details": { "type": "object", "properties": { "coding": {
                                "type": "array", "items": { "type": "object", "properties": {
                                    "system": { "type": "string", "enum": [SPINE_SYSTEM] },
                                    "code": { "type": "string" },
                                    "display": { "type": "string" } } } } } },
                            "diagnostics": { "type": "string" }
                        } } }
                }
            },
            "RawContent": { "type": "string", "format": "binary",
                "description": "a document's content as it is: a PDF, plain text (UTF-8) or an HTML consultation summary, with no active content" },
            "MergePatch": { "type": "object", "additionalProperties": true,
                "description": "a JSON Merge Patch (RFC 7386) of the Patient: telecom, address and communication may change; any other member must leave its element as it is (null removes an element)" },
            "FhirPatch": { "type": "object", "additionalProperties": true,
                "description": "a FHIRPath Patch (a Parameters resource of operation parameters: add, insert, delete, replace, move on telecom, address and communication), or a partial Patient read as a JSON Merge Patch" },
            "JsonPatch": { "type": "array", "items": {
                "type": "object", "required": ["op", "path"],
                "properties": {
                    "op": { "type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"] },
                    "path": { "type": "string", "description": "Patient: /telecom, /address or /communication only; Appointment: /description, /comment, /status and /cancelationReason only" },
                    "from": { "type": "string" },
                    "value": {} } } },
            "TokenRequest": { "type": "object",
                "required": ["grant_type", "client_assertion_type", "client_assertion"],
                "properties": {
                    "grant_type": { "type": "string", "enum": ["client_credentials"] },
                    "client_assertion_type": { "type": "string",
                        "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"] },
                    "client_assertion": { "type": "string", "description": "the signed JWT" },
                    "scope": { "type": "string", "description": "space-separated SMART scopes (default: all granted)" } } },
            "TokenResponse": { "type": "object", "required": ["access_token", "token_type", "expires_in"],
                "properties": {
                    "access_token": { "type": "string" },
                    "token_type": { "type": "string", "enum": ["Bearer"] },
                    "expires_in": { "type": "integer" },
                    "scope": { "type": "string" } } },
            "Health": { "type": "object", "required": ["status"],
                "properties": { "status": { "type": "string", "enum": ["ok"] } } },
            "Readiness": { "type": "object", "required": ["status"],
                "properties": {
                    "status": { "type": "string", "enum": ["ready", "degraded", "draining", "unavailable"] },
                    "audit": { "type": "string", "description": "the audit trail's backend, or why it cannot take rows" },
                    "systems": { "type": "object", "additionalProperties": { "type": "string" },
                        "description": "each GP system: ready, or why it is unavailable" } } },
            "OpenAPI": { "type": "object", "required": ["openapi", "info", "paths"],
                "properties": { "openapi": { "type": "string" } } },
            "SandboxManifest": { "type": "object",
                "required": ["base_url", "token_url", "suppliers", "patients", "practices", "simulators"],
                "properties": {
                    "base_url": { "type": "string" },
                    "token_url": { "type": "string" },
                    "suppliers": { "type": "array", "items": { "type": "object" } },
                    "patients": { "type": "array", "items": { "type": "object" } },
                    "practices": { "type": "array", "items": { "type": "object" } },
                    "simulators": { "type": "object", "additionalProperties": { "type": "string" } } } },
            "JWKS": { "type": "object", "required": ["keys"],
                "properties": { "keys": { "type": "array", "items": { "type": "object",
                    "required": ["kty", "kid"], "properties": {
                        "kty": { "type": "string" }, "kid": { "type": "string" }, "alg": { "type": "string" } } } } } },
            "SmartConfiguration": { "type": "object", "required": ["token_endpoint", "grant_types_supported"],
                "properties": {
                    "token_endpoint": { "type": "string" },
                    "jwks_uri": { "type": "string" },
                    "token_endpoint_auth_methods_supported": { "type": "array", "items": { "type": "string" } },
                    "grant_types_supported": { "type": "array", "items": { "type": "string" } },
                    "scopes_supported": { "type": "array", "items": { "type": "string" } } } },
            "OAuth2Error": { "type": "object", "required": ["error"],
                "properties": {
                    "error": { "type": "string", "enum": ["invalid_request", "invalid_client", "invalid_grant", "invalid_scope", "unsupported_grant_type", "temporarily_unavailable", "server_error"] },
                    "error_description": { "type": "string" } } },
        }
    })
}

fn resource_schema(resource_type: &str) -> Value {
    json!({ "allOf": [ reference("schemas/Resource"), {
        "type": "object",
        "properties": { "resourceType": { "type": "string", "enum": [resource_type] } },
        "description": format!("a FHIR R4 {resource_type} (UK Core profile where one exists)"),
    } ] })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use http::Method;

    use super::*;
    use crate::routes::{ACCESS_LOG, Lookup, STRUCTURED_RECORD, lookup};

    const BASE: &str = "/FHIR/R4";
    const ALL: Serving = Serving {
        oauth: true,
        sandbox: true,
    };

    fn doc() -> Value {
        served_as(ALL)
    }

    fn served_as(serving: Serving) -> Value {
        document("https://gp.example", BASE, ClinicalType::ALL, serving)
    }

    /// Every (method, path template) a document lists.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "servers" {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn the_document_lists_exactly_the_rows_of_the_route_table() {
        let servings = [(true, true), (true, false), (false, true), (false, false)]
            .map(|(oauth, sandbox)| Serving { oauth, sandbox });
        for serving in servings {
            let doc = served_as(serving);
            // The table's side, read from the rows themselves.
            let mut table = BTreeSet::new();
            for row in ROUTES.iter().filter(|r| r.when.holds(serving)) {
                for (template, _) in row.paths(ClinicalType::ALL) {
                    let path = match row.mount {
                        Mount::Origin => template,
                        Mount::FhirBase => format!("{BASE}{template}"),
                    };
                    table.insert((row.method.to_string(), path));
                }
            }
            let documented = documented(&doc);
            assert_eq!(
                documented.difference(&table).collect::<Vec<_>>(),
                Vec::<&(String, String)>::new(),
                "documented, not in the table ({serving:?})"
            );
            assert_eq!(
                table.difference(&documented).collect::<Vec<_>>(),
                Vec::<&(String, String)>::new(),
                "in the table, not documented ({serving:?})"
            );
        }
        // The conditional rows come and go with what they need.
        let open = served_as(Serving {
            oauth: false,
            sandbox: false,
        });
        assert!(open["paths"][TOKEN_PATH].is_null());
        assert!(open["paths"]["/_sandbox/manifest"].is_null());
        assert!(doc()["paths"]["/_sandbox/manifest"]["get"].is_object());
    }

    #[test]
    fn every_documented_operation_is_answered_on_the_listener_the_document_names() {
        let doc = doc();
        let ops = documented(&doc);
        assert!(ops.len() >= 22, "{ops:?}");
        for (method, path) in ops {
            let item = &doc["paths"][&path];
            let (named, other) = if item["servers"].is_null() {
                (Listener::Main, Listener::Admin)
            } else {
                (Listener::Admin, Listener::Main)
            };
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let concrete = path
                .replace(ID_TEMPLATE, EXAMPLE_NHS)
                .replace(ENTRY_ID_TEMPLATE, EXAMPLE_ENTRY_ID);
            let found = lookup(named, ALL, &method, &concrete, BASE);
            let Lookup::Found(handler) = found else {
                panic!("{method} {path} is documented but refused: {found:?}");
            };
            let op = &item[method.as_str().to_lowercase()];
            match handler {
                Handler::Fhir(route) => assert_eq!(
                    op["x-fhir-interaction"],
                    route
                        .interaction()
                        .map_or("capabilities", |(_, i)| i.code()),
                    "{method} {path}"
                ),
                Handler::Endpoint(_) => assert!(op["x-fhir-interaction"].is_null()),
            }
            // Served on both listeners: said so. On one: the other refuses it.
            let also = op["description"]
                .as_str()
                .is_some_and(|d| d.contains("admin listener"));
            let elsewhere = lookup(other, ALL, &method, &concrete, BASE);
            assert_eq!(
                matches!(elsewhere, Lookup::Found(_)),
                also,
                "{method} {path} on {other:?}: {elsewhere:?}"
            );
        }
        assert!(doc["paths"]["/metrics"]["servers"][0]["url"].is_string());
        assert!(doc["paths"]["/_health"]["servers"].is_null());
    }

    #[test]
    fn the_document_is_structurally_valid_openapi_3() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.0."));
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        assert!(doc["paths"].is_object());
        // Every $ref resolves.
        fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r);
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
        let mut ids = std::collections::BTreeSet::new();
        let resolve = |v: &Value| -> Value {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => doc.pointer(&r[1..]).cloned().unwrap(),
                None => v.clone(),
            }
        };
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert!(path.starts_with('/'), "{path}");
            for (method, op) in item.as_object().unwrap() {
                if method == "servers" {
                    // A path item's own servers: each URL's variables have defaults.
                    for server in op.as_array().unwrap() {
                        let url = server["url"].as_str().unwrap();
                        for name in url.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                            assert!(server["variables"][name]["default"].is_string(), "{url}");
                        }
                    }
                    continue;
                }
                assert!(
                    ["get", "post", "patch", "put", "delete", "head"].contains(&method.as_str())
                );
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}"
                );
                for (status, resp) in responses {
                    assert!(status.parse::<u16>().is_ok(), "{status}");
                    assert!(resp["description"].is_string(), "{method} {path} {status}");
                }
                // Every path template parameter is declared as a required path parameter.
                let params: Vec<Value> = op["parameters"]
                    .as_array()
                    .map(|a| a.iter().map(resolve).collect())
                    .unwrap_or_default();
                for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                    assert!(
                        params.iter().any(|p| p["in"] == "path"
                            && p["name"] == name
                            && p["required"] == true),
                        "{method} {path}: path parameter {name} undeclared"
                    );
                }
                for p in &params {
                    assert!(
                        p["name"].is_string() && p["in"].is_string() && p["schema"].is_object()
                    );
                }
                // Security requirements name a declared scheme and declared scopes.
                for req in op["security"].as_array().unwrap() {
                    for (scheme, scopes) in req.as_object().unwrap() {
                        let flows = &doc["components"]["securitySchemes"][scheme]["flows"];
                        for s in scopes.as_array().unwrap() {
                            assert!(
                                flows["clientCredentials"]["scopes"][s.as_str().unwrap()]
                                    .is_string(),
                                "{s}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn request_examples_are_accepted_by_the_parsers_they_document() {
        let doc = doc();
        let example = |path: &str, method: &str, media: &str| {
            let op = &doc["paths"][format!("{BASE}{path}")][method];
            serde_json::to_vec(&op["requestBody"]["content"][media]["example"]).unwrap()
        };
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        let obs = crate::write_body::observation(
            &example("/Observation", "post", "application/fhir+json"),
            now,
        )
        .unwrap();
        assert_eq!(obs.nhs_number.to_string(), EXAMPLE_NHS);
        let ops = crate::patch::parse(&example(
            "/Patient/{nhsNumber}",
            "patch",
            "application/json-patch+json",
        ))
        .unwrap();
        assert_eq!(ops.len(), 1);
        let structured = example(
            &format!("/Patient/{STRUCTURED_RECORD}"),
            "post",
            "application/fhir+json",
        );
        crate::structured::parse(&structured, (2026, 11, 23)).unwrap();
        let batch = crate::batch::parse(
            &example("", "post", "application/fhir+json"),
            "https://gw.example/FHIR/R4",
        )
        .unwrap();
        assert!(batch.iter().all(Result::is_ok));
        let format = &doc["components"]["parameters"]["format"]["schema"]["enum"];
        for f in format.as_array().unwrap() {
            gp_fhir::format::negotiate(f.as_str(), None).unwrap();
        }
    }

    #[test]
    fn errors_carry_real_spine_codes_and_scopes_follow_access_rules() {
        let doc = doc();
        let patch = &doc["paths"]["/FHIR/R4/Patient/{nhsNumber}"]["patch"];
        assert_eq!(patch["security"][0]["smart"][0], "system/Patient.u");
        assert_eq!(
            patch["responses"]["412"]["x-spine-codes"][0],
            "PRECONDITION_FAILED"
        );
        assert!(patch["parameters"].to_string().contains("IfMatch"));
        let create = &doc["paths"]["/FHIR/R4/Observation"]["post"];
        assert_eq!(create["security"][0]["smart"][0], "system/Observation.c");
        assert!(create["responses"]["201"]["headers"]["Location"].is_object());
        let metadata = &doc["paths"]["/FHIR/R4/metadata"]["get"];
        assert_eq!(metadata["security"], json!([]));
        assert!(metadata["responses"]["401"].is_null());
        let access_log =
            &doc["paths"][format!("/FHIR/R4/Patient/{{nhsNumber}}/{ACCESS_LOG}")]["get"];
        assert_eq!(access_log["security"][0]["smart"][0], "system/AuditEvent.r");
        let read = &doc["paths"]["/FHIR/R4/Patient/{nhsNumber}"]["get"];
        for status in [
            "400", "401", "403", "404", "405", "406", "413", "429", "502", "503", "504",
        ] {
            assert!(read["responses"][status].is_object(), "{status}");
        }
        let person = &doc["paths"]["/FHIR/R4/Practitioner/{id}"]["get"];
        assert_eq!(person["security"][0]["smart"][0], "system/Practitioner.r");
        assert_eq!(
            person["responses"]["501"]["x-spine-codes"][0],
            "NOT_IMPLEMENTED"
        );
        assert!(doc["paths"][TOKEN_PATH]["post"]["requestBody"]["content"]
            ["application/x-www-form-urlencoded"]
            .is_object());
        // Open mode: no token endpoint, no security requirements.
        let open = served_as(Serving {
            oauth: false,
            sandbox: true,
        });
        assert!(open["paths"][TOKEN_PATH].is_null());
        assert_eq!(
            open["paths"]["/FHIR/R4/Patient/{nhsNumber}"]["get"]["security"],
            json!([])
        );
        // Operational endpoints answer 405 with Allow like every route, each in its dialect.
        let health = &doc["paths"]["/_health"]["get"];
        assert!(health["responses"]["405"]["headers"]["Allow"].is_object());
        assert_eq!(health["security"], json!([]));
        let token = &doc["paths"][TOKEN_PATH]["post"];
        assert!(token["responses"]["405"]["headers"]["Allow"].is_object());
        assert!(token["responses"]["429"]["headers"]["Retry-After"].is_object());
        assert!(
            token["responses"]["405"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("OAuth2Error"))
        );
        assert_eq!(read["x-fhir-interaction"], "read");
    }
}
