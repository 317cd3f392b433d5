//! The OpenAPI 3.0 description of the supplier-facing API, served at `/openapi.json`.
//! Generated from the route table (`routes::served` and the `Route` variants), never
//! written by hand: a route added without a documented method and path fails to compile
//! (`method_and_path` matches every variant) or fails the tests below.

use bytes::Bytes;
use gp_adapter::ClinicalType;
use gp_fhir::SpineCode;
use gp_fhir::ids::NHS_NUMBER_SYSTEM;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::routes::{ACCESS_LOG, Interaction, Route, STRUCTURED_RECORD, served};

/// Where the document is served (outside the FHIR base, like the token endpoint).
pub const PATH: &str = "/openapi.json";
/// The token endpoint.
pub const TOKEN_PATH: &str = "/oauth2/token";
/// A valid NHS number, for examples and for routes that carry one.
pub const EXAMPLE_NHS: &str = "9000000009";

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
pub fn response(app: &App) -> Response<Full<Bytes>> {
    let mut clinical: Vec<ClinicalType> = app
        .adapters
        .values()
        .flat_map(|a| a.supported_types().iter().copied())
        .collect();
    clinical.sort();
    clinical.dedup();
    let doc = document(
        &app.public_origin,
        &app.fhir_base_path,
        &clinical,
        app.auth.is_some(),
    );
    crate::respond::json(StatusCode::OK, serde_json::to_vec(&doc).unwrap_or_default())
}

/// Every route the router serves for `clinical`, one per documented operation.
pub fn documented_routes(clinical: &[ClinicalType]) -> Vec<Route> {
    let mut out = vec![Route::Metadata];
    for (resource_type, interactions) in served(clinical) {
        out.extend(
            interactions
                .into_iter()
                .filter_map(|i| route_for(resource_type, i)),
        );
    }
    out.push(Route::StructuredRecord);
    out.push(Route::AccessLog(EXAMPLE_NHS.into()));
    out
}

/// The route serving `interaction` on `resource_type`, as `served()` lists them.
pub fn route_for(resource_type: &str, interaction: Interaction) -> Option<Route> {
    Some(match (resource_type, interaction) {
        ("Patient", Interaction::Read) => Route::PatientRead(EXAMPLE_NHS.into()),
        ("Patient", Interaction::SearchType) => Route::PatientSearch,
        ("Patient", Interaction::Patch) => Route::PatientPatch(EXAMPLE_NHS.into()),
        ("AuditEvent", Interaction::SearchType) => Route::AuditEventSearch,
        ("Observation", Interaction::Create) => Route::ObservationCreate,
        (t, Interaction::SearchType) => Route::ClinicalSearch(ClinicalType::parse(t)?),
        _ => return None,
    })
}

/// The HTTP method and path template (below the FHIR base) of a route.
pub fn method_and_path(route: &Route) -> (Method, String) {
    match route {
        Route::Metadata => (Method::GET, "/metadata".into()),
        Route::PatientRead(_) => (Method::GET, "/Patient/{nhsNumber}".into()),
        Route::PatientSearch => (Method::GET, "/Patient".into()),
        Route::ClinicalSearch(t) => (Method::GET, format!("/{}", t.as_str())),
        Route::StructuredRecord => (Method::POST, format!("/Patient/{STRUCTURED_RECORD}")),
        Route::ObservationCreate => (Method::POST, "/Observation".into()),
        Route::PatientPatch(_) => (Method::PATCH, "/Patient/{nhsNumber}".into()),
        Route::AuditEventSearch => (Method::GET, "/AuditEvent".into()),
        Route::AccessLog(_) => (Method::GET, format!("/Patient/{{nhsNumber}}/{ACCESS_LOG}")),
    }
}

/// The SMART scope a route needs, as `access::check` demands it (`None`: public).
pub fn scope(route: &Route) -> Option<String> {
    let (resource_type, interaction) = route.interaction()?;
    let letter = match interaction {
        Interaction::Read | Interaction::Operation => 'r',
        Interaction::SearchType => 's',
        Interaction::Create => 'c',
        Interaction::Patch => 'u',
    };
    Some(format!("system/{resource_type}.{letter}"))
}

/// The error statuses and Spine codes a route can answer.
fn errors(route: &Route, oauth: bool) -> Vec<(u16, Vec<SpineCode>)> {
    use SpineCode as S;
    let writes = matches!(
        route,
        Route::ObservationCreate | Route::PatientPatch(_) | Route::StructuredRecord
    );
    let patient_data = !matches!(route, Route::Metadata | Route::AuditEventSearch);
    let mut bad_request = vec![S::InvalidValue, S::InvalidParameter];
    if patient_data {
        bad_request.push(S::InvalidResourceId);
    }
    if matches!(
        route,
        Route::PatientSearch | Route::ClinicalSearch(_) | Route::AuditEventSearch
    ) {
        bad_request.extend([S::InvalidSearchData, S::MissingValue]);
    }
    let mut out = vec![
        (400, bad_request),
        (404, vec![S::UnsupportedService]),
        (405, vec![S::MethodNotAllowed]),
        (406, vec![S::NotAcceptable]),
        (413, vec![S::PayloadTooLarge]),
    ];
    if oauth && route.interaction().is_some() {
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
    match route {
        Route::ObservationCreate => out.push((409, vec![S::DuplicateRejected])),
        Route::PatientPatch(_) => {
            out.push((409, vec![S::VersionConflict]));
            out.push((412, vec![S::PreconditionFailed]));
        }
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
    // The result parameters every FHIR search takes (client libraries send them).
    let result_parameters = || {
        vec![
            q(
                "_count",
                false,
                json!({ "type": "integer", "minimum": 0, "default": 50 }),
                "page size; more than 250 is served 250, 0 the total only",
            ),
            q(
                "_offset",
                false,
                json!({ "type": "integer", "minimum": 0 }),
                "paging: follow Bundle.link next",
            ),
            q(
                "_summary",
                false,
                json!({ "type": "string", "enum": ["count", "false"] }),
                "count: the total only; false: whole resources",
            ),
        ]
    };
    match route {
        Route::PatientSearch => {
            let mut params = vec![q(
                "identifier",
                true,
                json!({ "type": "string", "pattern": NHS_IDENTIFIER_PATTERN,
                    "example": format!("{NHS_NUMBER_SYSTEM}|{EXAMPLE_NHS}") }),
                "https://fhir.nhs.uk/Id/nhs-number|{NHS number}",
            )];
            params.extend(result_parameters());
            params
        }
        Route::ClinicalSearch(_) => vec![
            q(
                "patient",
                true,
                patient.clone(),
                "Patient/{NHS number}, the NHS number, or https://fhir.nhs.uk/Id/nhs-number|{NHS number}",
            ),
            q(
                "date",
                false,
                date("eq|gt|lt|ge|le|sa|eb"),
                "prefixes eq, gt, lt, ge, le, sa, eb; repeatable",
            ),
            q(
                "_id",
                false,
                json!({ "type": "string", "pattern": "^[A-Za-z0-9.-]{1,64}(,[A-Za-z0-9.-]{1,64})*$" }),
                "comma-separated entry ids (a create's Location uses it)",
            ),
        ]
        .into_iter()
        .chain(result_parameters())
        .collect(),
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

fn operation(route: &Route, oauth: bool) -> Value {
    let (method, template) = method_and_path(route);
    let mut parameters = vec![
        reference("parameters/XRequestID"),
        reference("parameters/XCorrelationID"),
        reference("parameters/traceparent"),
        reference("parameters/Accept"),
        reference("parameters/format"),
    ];
    if template.contains("{nhsNumber}") {
        parameters.push(reference("parameters/nhsNumber"));
    }
    parameters.extend(query_parameters(route));
    let mut op = Map::new();
    let (summary, ok_status, ok_schema, request_schema): (&str, u16, &str, Option<(&str, &str)>) =
        match route {
            Route::Metadata => (
                "The CapabilityStatement, generated from the routes served",
                200,
                "CapabilityStatement",
                None,
            ),
            Route::PatientRead(_) => ("Read a patient (UK Core Patient)", 200, "Patient", None),
            Route::PatientSearch => (
                "Find a patient by NHS number: a searchset of 0 or 1",
                200,
                "Bundle",
                None,
            ),
            Route::ClinicalSearch(_) => (
                "Search a patient's record entries of this type",
                200,
                "Bundle",
                None,
            ),
            Route::StructuredRecord => (
                "GP Connect's structured record in R4: a collection Bundle with one List per area",
                200,
                "Bundle",
                Some(("application/fhir+json", "Parameters")),
            ),
            Route::ObservationCreate => (
                "Record a reading in the patient's GP record (201; 200 for a retry)",
                201,
                "Observation",
                Some(("application/fhir+json", "Observation")),
            ),
            Route::PatientPatch(_) => (
                "Change a patient's contact details (telecom, address, communication)",
                200,
                "Patient",
                Some(("application/json-patch+json", "JsonPatch")),
            ),
            Route::AuditEventSearch => (
                "The audit trail as AuditEvents, most recent first (operators)",
                200,
                "Bundle",
                None,
            ),
            Route::AccessLog(_) => (
                "Who accessed the patient's record, for the patient",
                200,
                "Bundle",
                None,
            ),
        };
    match route {
        Route::ObservationCreate => parameters.push(reference("parameters/IfNoneExist")),
        Route::PatientPatch(_) => parameters.push(reference("parameters/IfMatch")),
        _ => {}
    }
    let (resource_type, interaction) = route
        .interaction()
        .map(|(t, i)| (t, i.code()))
        .unwrap_or(("CapabilityStatement", "capabilities"));
    op.insert(
        "operationId".into(),
        json!(format!(
            "{}{}",
            method.as_str().to_lowercase(),
            template.replace(['/', '{', '}', '$', '.', '-'], "_")
        )),
    );
    op.insert("summary".into(), json!(summary));
    op.insert("tags".into(), json!([resource_type]));
    op.insert("x-fhir-interaction".into(), json!(interaction));
    op.insert("parameters".into(), Value::Array(parameters));
    if let Some((media_type, schema)) = request_schema {
        let mut media = json!({ "schema": reference(&format!("schemas/{schema}")) });
        if let Some(example) = request_example(route) {
            media["example"] = example;
        }
        op.insert(
            "requestBody".into(),
            json!({ "required": true, "content": { media_type: media } }),
        );
    }
    let mut ok_headers = json!({
        "X-Request-ID": reference("headers/XRequestID"),
        "X-Correlation-ID": reference("headers/XCorrelationID"),
        "Cache-Control": reference("headers/CacheControl"),
    });
    if matches!(route, Route::PatientRead(_) | Route::PatientPatch(_)) {
        ok_headers["ETag"] = reference("headers/ETag");
    }
    if matches!(route, Route::ObservationCreate) {
        ok_headers["Location"] = reference("headers/Location");
    }
    if oauth && route.interaction().is_some() {
        ok_headers["RateLimit"] = reference("headers/RateLimit");
        ok_headers["RateLimit-Policy"] = reference("headers/RateLimitPolicy");
    }
    let mut responses = Map::new();
    responses.insert(
        ok_status.to_string(),
        json!({ "description": summary, "headers": ok_headers, "content": fhir_content(ok_schema) }),
    );
    if matches!(route, Route::ObservationCreate) {
        responses.insert(
            "200".into(),
            json!({ "description": "a retry of a reading already recorded (same identifier): nothing recorded again", "headers": ok_headers, "content": fhir_content("Observation") }),
        );
    }
    for (status, codes) in errors(route, oauth) {
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let mut headers = json!({ "X-Request-ID": reference("headers/XRequestID") });
        match status {
            405 => headers["Allow"] = reference("headers/Allow"),
            401 => headers["WWW-Authenticate"] = reference("headers/WWWAuthenticate"),
            429 | 503 => headers["Retry-After"] = reference("headers/RetryAfter"),
            _ => {}
        }
        responses.insert(
            status.to_string(),
            json!({
                "description": format!("OperationOutcome; Spine code {}", names.join(", ")),
                "headers": headers,
                "x-spine-codes": names,
                "content": fhir_content("OperationOutcome"),
            }),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    op.insert(
        "security".into(),
        match scope(route) {
            Some(s) if oauth => json!([{ "smart": [s] }]),
            _ => json!([]),
        },
    );
    if let Route::StructuredRecord = route {
        op.insert(
            "description".into(),
            json!("Needs system/Patient.r plus system/{Type}.r of each area asked for; invalid parameter combinations answer 422 INVALID_PARAMETER naming the parameter."),
        );
    }
    Value::Object(op)
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
        Route::PatientPatch(_) => json!([
            { "op": "add", "path": "/telecom/-",
              "value": { "system": "email", "value": "patient@example.com", "use": "home" } }
        ]),
        _ => return None,
    })
}

fn token_operation() -> Value {
    let oauth_error = json!({ "application/json": { "schema": reference("schemas/OAuth2Error") } });
    json!({
        "post": {
            "operationId": "post_oauth2_token",
            "summary": "Exchange a signed JWT client assertion for an access token (SMART Backend Services)",
            "tags": ["OAuth2"],
            "security": [],
            "requestBody": { "required": true, "content": {
                "application/x-www-form-urlencoded": { "schema": reference("schemas/TokenRequest") } } },
            "responses": {
                "200": { "description": "an access token", "content": {
                    "application/json": { "schema": reference("schemas/TokenResponse") } } },
                "400": { "description": "invalid_request, invalid_scope, unsupported_grant_type (one precise message per failed check)", "content": oauth_error.clone() },
                "401": { "description": "invalid_client", "content": oauth_error.clone() },
                "405": { "description": "invalid_request: use POST", "headers": { "Allow": reference("headers/Allow") }, "content": oauth_error },
            }
        }
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
                "description": "a read's ETag; a stale one answers 412 PRECONDITION_FAILED" },
            "IfNoneExist": { "name": "If-None-Exist", "in": "header", "required": false,
                "schema": { "type": "string" },
                "description": "conditional create: identifier={system}|{value}" },
        },
        "headers": {
            "XRequestID": header("the request's id (yours, if you sent a UUID)"),
            "XCorrelationID": header("mirrored when sent"),
            "CacheControl": header("no-store"),
            "ETag": header("the version of the resource, for If-Match"),
            "Location": header("where the created entries can be read"),
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
            "JsonPatch": { "type": "array", "items": {
                "type": "object", "required": ["op", "path"],
                "properties": {
                    "op": { "type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"] },
                    "path": { "type": "string", "description": "/telecom, /address or /communication only" },
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
            "OAuth2Error": { "type": "object", "required": ["error"],
                "properties": {
                    "error": { "type": "string", "enum": ["invalid_request", "invalid_client", "invalid_scope", "unsupported_grant_type"] },
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

/// The whole document: `origin` is the public origin, `base` the FHIR base path.
pub fn document(origin: &str, base: &str, clinical: &[ClinicalType], oauth: bool) -> Value {
    let mut paths = Map::new();
    let mut scopes = Vec::new();
    for route in documented_routes(clinical) {
        let (method, template) = method_and_path(&route);
        if let Some(s) = scope(&route)
            && !scopes.contains(&s)
        {
            scopes.push(s);
        }
        let entry = paths
            .entry(format!("{base}{template}"))
            .or_insert_with(|| json!({}));
        entry[method.as_str().to_lowercase()] = operation(&route, oauth);
    }
    if oauth {
        paths.insert(TOKEN_PATH.into(), token_operation());
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "gp-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One FHIR R4 API (UK Core) over the GP clinical systems in England. Generated from the gateway's route table. Errors on FHIR routes are OperationOutcomes with a Spine-ErrorOrWarningCode; the token endpoint answers OAuth2 JSON errors.",
        },
        "servers": [{ "url": origin }],
        "paths": paths,
        "components": components(origin, &scopes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::match_route;

    const BASE: &str = "/FHIR/R4";

    fn doc() -> Value {
        document("https://gp.example", BASE, ClinicalType::ALL, true)
    }

    /// Every documented path and method, with path parameters filled in.
    fn operations(doc: &Value) -> Vec<(Method, String, String)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, _) in item.as_object().unwrap() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                out.push((m, path.clone(), path.replace("{nhsNumber}", EXAMPLE_NHS)));
            }
        }
        out
    }

    #[test]
    fn every_served_interaction_and_route_variant_is_documented() {
        let doc = doc();
        for (t, interactions) in served(ClinicalType::ALL) {
            for i in interactions {
                let route = route_for(t, i)
                    .unwrap_or_else(|| panic!("served() lists {t} {i:?} but no route maps to it"));
                let (method, template) = method_and_path(&route);
                let op = &doc["paths"][format!("{BASE}{template}")][method.as_str().to_lowercase()];
                assert!(
                    op.is_object(),
                    "{method} {template} ({t} {i:?}) is not documented"
                );
                assert_eq!(op["x-fhir-interaction"], i.code());
            }
        }
        // Every Route variant: a new one fails `method_and_path` to compile until
        // documented, and must be produced by `documented_routes`.
        let routes = documented_routes(ClinicalType::ALL);
        let samples = [
            Route::Metadata,
            Route::PatientRead(EXAMPLE_NHS.into()),
            Route::PatientSearch,
            Route::StructuredRecord,
            Route::ObservationCreate,
            Route::PatientPatch(EXAMPLE_NHS.into()),
            Route::AuditEventSearch,
            Route::AccessLog(EXAMPLE_NHS.into()),
        ]
        .into_iter()
        .chain(ClinicalType::ALL.iter().map(|t| Route::ClinicalSearch(*t)));
        for route in samples {
            assert!(routes.contains(&route), "{route:?} is not documented");
        }
    }

    #[test]
    fn every_documented_operation_is_routed_to_the_route_it_documents() {
        let doc = doc();
        let ops = operations(&doc);
        assert!(ops.len() >= 15, "{ops:?}");
        for (method, template, concrete) in ops {
            if template == TOKEN_PATH {
                assert_eq!(method, Method::POST);
                continue;
            }
            let rest = concrete
                .strip_prefix(BASE)
                .unwrap_or_else(|| panic!("{template} is outside the FHIR base"));
            let route = match_route(&method, rest, BASE)
                .unwrap_or_else(|e| panic!("{method} {template} is documented but refused: {e}"));
            let (m, t) = method_and_path(&route);
            assert_eq!((m, format!("{BASE}{t}")), (method, template));
        }
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
        assert!(doc["paths"][TOKEN_PATH]["post"]["requestBody"]["content"]
            ["application/x-www-form-urlencoded"]
            .is_object());
        // Open mode: no token endpoint, no security requirements.
        let open = document("http://127.0.0.1:1", BASE, ClinicalType::ALL, false);
        assert!(open["paths"][TOKEN_PATH].is_null());
        assert_eq!(read["x-fhir-interaction"], "read");
    }
}
