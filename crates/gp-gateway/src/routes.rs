//! The route table: everything the gateway serves — on which listener, when, to whom,
//! and what answers it — in one list. The router matches it (a path served with other
//! methods is answered 405 with the `Allow` it gives), and the CapabilityStatement and
//! the OpenAPI document are read from it, so none of them can disagree.

use gp_adapter::ClinicalType;
use http::Method;

/// What a matched FHIR request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /metadata`.
    Metadata,
    /// `GET /Patient/{nhsNumber}`.
    PatientRead(String),
    /// `GET /Patient?identifier=…`, or `POST /Patient/_search` with the parameters in a
    /// form body.
    PatientSearch,
    /// `GET /{ClinicalType}?patient=…`, or `POST /{ClinicalType}/_search`.
    ClinicalSearch(ClinicalType),
    /// `GET /{ClinicalType}/{id}`: one record entry, by the id a search, the structured
    /// record or a create gave.
    ClinicalRead(ClinicalType, String),
    /// `GET /{ClinicalType}/{id}/_history/{vid}`: one version of a record entry (the
    /// current one: GP systems keep no others), as a create's `Location` names it.
    ClinicalVread(ClinicalType, String, String),
    /// `GET /Organization/{odsCode}`: a practice this gateway serves, as
    /// `Patient.managingOrganization` refers to it.
    OrganizationRead(String),
    /// `GET /Practitioner/{id}`: a member of a practice's staff, as the answers refer to
    /// them (usual GP, authors, performers, recorders, participants).
    PractitionerRead(String),
    /// `POST /Patient/$gpc.getstructuredrecord`.
    StructuredRecord,
    /// `GET /List/{id}`: one area's List of a structured record answered, answered again.
    ListRead(String),
    /// `GET /Bundle/{id}`: a structured record answered, answered again.
    BundleRead(String),
    /// `POST /Observation`: write a reading back to the patient's GP record.
    ObservationCreate,
    /// `PATCH /Patient/{nhsNumber}`: change contact details (JSON Patch, JSON Merge
    /// Patch or FHIRPath Patch).
    PatientPatch(String),
    /// `PUT /Patient/{nhsNumber}`: change contact details by sending the whole Patient.
    PatientUpdate(String),
    /// `GET /AuditEvent?…`: the audit trail.
    AuditEventSearch,
    /// `GET /Patient/{nhsNumber}/$access-log`: who accessed a patient's record, for the patient.
    AccessLog(String),
    /// `GET /Slot?start=ge…&end=le…&status=free&_include=Slot:schedule`: free slots of
    /// the practices the supplier is paired with.
    SlotSearch,
    /// `POST /Appointment`: book one or more adjacent free slots for a patient.
    AppointmentCreate,
    /// `GET /Appointment/{id}`.
    AppointmentRead(String),
    /// `GET /Appointment/{id}/_history/{vid}`: the current version, as a booking's
    /// `Location` names it (GP systems keep no earlier ones).
    AppointmentVread(String, String),
    /// `GET /Appointment?patient=…&date=ge…&date=le…`.
    AppointmentSearch,
    /// `PUT /Appointment/{id}`: amend or cancel by sending the whole Appointment.
    AppointmentUpdate(String),
    /// `PATCH /Appointment/{id}`: amend or cancel with a JSON Patch or merge patch.
    AppointmentPatch(String),
    /// `GET /DocumentReference?patient=…`: a patient's documents, metadata only.
    DocumentReferenceSearch,
    /// `GET /DocumentReference/{id}`.
    DocumentReferenceRead(String),
    /// `POST /DocumentReference`: file a document into the patient's record.
    DocumentReferenceCreate,
    /// `GET /Binary/{id}`: a document's content.
    BinaryRead(String),
    /// `POST /Binary`: stage a document's content for a `POST /DocumentReference`.
    BinaryCreate,
    /// `POST /` with a `batch` Bundle: reads and searches, each entry served as its own
    /// request (routed, authorised, rate-limited and audited like one).
    Batch,
    /// `POST /Subscription`: subscribe to a topic (the Subscriptions Backport IG).
    SubscriptionCreate,
    /// `GET /Subscription/{id}`: one of the caller's subscriptions.
    SubscriptionRead(String),
    /// `GET /Subscription`: the caller's subscriptions.
    SubscriptionSearch,
    /// `DELETE /Subscription/{id}`.
    SubscriptionDelete(String),
    /// `GET /Subscription/{id}/$status`, or `GET /Subscription/$status` (`None`).
    SubscriptionStatus(Option<String>),
    /// `GET /Subscription/{id}/$events`: notifications to catch up on.
    SubscriptionEvents(String),
    /// `GET /Basic/{id}`: a subscription topic, in the backport IG's R4 form.
    TopicRead(String),
    /// `GET /Basic?code=SubscriptionTopic`: the subscription topics.
    TopicSearch,
}

/// An operational endpoint: answered before the FHIR pipeline's body limit and access
/// checks, and not audited (the token endpoint, which checks its own caller, excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Liveness.
    Health,
    /// Readiness: every GP system and the audit trail.
    Ready,
    /// The OpenAPI document, read from this table.
    OpenApi,
    /// The sandbox's manifest: demo suppliers, test patients, simulators.
    SandboxManifest,
    /// The OAuth2 token endpoint.
    Token,
    /// The gateway's access-token signing keys.
    Jwks,
    /// SMART discovery.
    SmartConfiguration,
    /// Prometheus metrics.
    Metrics,
}

/// What answers a matched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// A FHIR interaction: body limit, access checks, the GP systems, the audit trail.
    Fhir(Route),
    /// An operational endpoint.
    Endpoint(Endpoint),
}

/// The listeners a gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The suppliers' port (`[server] listen`).
    Main,
    /// The operators' port (`[admin] listen`): metrics and probes, never suppliers.
    Admin,
}

/// Where a row's path hangs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// The listener's origin (`/_health`).
    Origin,
    /// The FHIR base path (`[server] fhir_base_path`, e.g. `/FHIR/R4/metadata`).
    FhirBase,
}

/// When a row is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// With supplier access on (not in the sandbox's open mode).
    OAuth,
    /// In the sandbox only.
    Sandbox,
}

/// Which conditional rows a running gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    /// Supplier access is on: the token endpoint and its discovery documents are served.
    pub oauth: bool,
    /// This is the sandbox: its manifest is served.
    pub sandbox: bool,
}

impl When {
    /// True when a gateway serving `serving` serves rows marked `self`.
    pub fn holds(self, serving: Serving) -> bool {
        match self {
            Self::Always => true,
            Self::OAuth => serving.oauth,
            Self::Sandbox => serving.sandbox,
        }
    }
}

/// What a caller needs to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing: probes, discovery, the CapabilityStatement.
    Public,
    /// A signed client assertion in the request itself (the token endpoint); its
    /// refusals are OAuth2 JSON errors (RFC 6749 §5.2), not OperationOutcomes.
    ClientAssertion,
    /// A bearer token whose SMART scopes allow the route's interaction (nothing in the
    /// sandbox's open mode).
    Bearer,
}

/// The patient-facing access log operation's name.
pub const ACCESS_LOG: &str = "$access-log";

/// The structured record operation's name.
pub const STRUCTURED_RECORD: &str = "$gpc.getstructuredrecord";

/// The token endpoint's path (the audit trail records its requests).
pub const TOKEN_PATH: &str = "/oauth2/token";

/// The JWKS's path (named by the SMART configuration).
pub const JWKS_PATH: &str = "/oauth2/jwks";

/// FHIR resource types the gateway names (in references, Bundles, its
/// CapabilityStatement) without serving every interaction on them. A request about one
/// that no row serves is "not supported" (501), never "not found" (404), which FHIR
/// clients read as "deleted".
pub const NAMED_TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "Medication",
    "List",
    "Bundle",
    "AuditEvent",
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Observation",
    "Immunization",
    "Encounter",
    "Slot",
    "Schedule",
    "Appointment",
    "DocumentReference",
    "Binary",
    "Subscription",
    "Basic",
];

/// The named type a FHIR path below `base` is about, when it is well formed (ids,
/// `_history`, `$operations`; no dot segments) and names one of [`NAMED_TYPES`].
pub fn named_type(path: &str, base: &str) -> Option<&'static str> {
    let rest = path.strip_prefix(base)?.strip_prefix('/')?;
    let well_formed = rest.split('/').all(|s| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'$'))
    });
    let first = rest.split('/').next()?;
    well_formed
        .then(|| NAMED_TYPES.iter().copied().find(|t| *t == first))
        .flatten()
}

/// The parameters a free-slot search reads includes from: `_include`, R4's `:iterate`,
/// GP Connect's (STU3) `:recurse`, and `:recursive` (what fhirpy sends for
/// `include(..., recursive=True)`): one include follows the Schedule's and Location's
/// references however the client spells it.
pub const SLOT_INCLUDE_PARAMETERS: &[&str] = &[
    "_include",
    "_include:iterate",
    "_include:recurse",
    "_include:recursive",
];

/// The `_include` (and `_include:recurse`) values a free-slot search takes: the
/// CapabilityStatement and the OpenAPI document read them here.
pub const SLOT_INCLUDES: [&str; 5] = [
    "Slot:schedule",
    "Schedule:actor:Practitioner",
    "Schedule:actor:PractitionerRole",
    "Schedule:actor:Location",
    "Location:managingOrganization",
];

/// How a patient id segment appears in a path template (a patient's id is their NHS
/// number).
pub const ID_TEMPLATE: &str = "{nhsNumber}";

/// How a record entry's id appears in a path template.
pub const ENTRY_ID_TEMPLATE: &str = "{id}";

/// FHIR interactions, as the CapabilityStatement names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Read,
    /// A version of an instance (`_history/{vid}`).
    Vread,
    SearchType,
    /// A type-level operation (reads what its parameters name).
    Operation,
    Create,
    Update,
    Patch,
    Delete,
    /// A system-level `batch` of reads and searches (each entry is authorised as itself).
    Batch,
}

impl Interaction {
    /// The CapabilityStatement code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Vread => "vread",
            Self::SearchType => "search-type",
            Self::Operation => "operation",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::Batch => "batch",
        }
    }

    /// True for an interaction on the whole system, not on one resource type.
    pub fn is_system_level(self) -> bool {
        self == Self::Batch
    }
}

impl Route {
    /// The resource type and interaction a route serves (`None` for `metadata`).
    pub fn interaction(&self) -> Option<(&'static str, Interaction)> {
        match self {
            Self::Metadata => None,
            Self::PatientRead(_) => Some(("Patient", Interaction::Read)),
            Self::PatientSearch => Some(("Patient", Interaction::SearchType)),
            Self::ClinicalSearch(t) => Some((t.as_str(), Interaction::SearchType)),
            Self::ClinicalRead(t, _) => Some((t.as_str(), Interaction::Read)),
            Self::ClinicalVread(t, ..) => Some((t.as_str(), Interaction::Vread)),
            Self::OrganizationRead(_) => Some(("Organization", Interaction::Read)),
            Self::PractitionerRead(_) => Some(("Practitioner", Interaction::Read)),
            Self::StructuredRecord => Some(("Patient", Interaction::Operation)),
            Self::ListRead(_) => Some(("List", Interaction::Read)),
            Self::BundleRead(_) => Some(("Bundle", Interaction::Read)),
            Self::ObservationCreate => Some(("Observation", Interaction::Create)),
            Self::PatientPatch(_) => Some(("Patient", Interaction::Patch)),
            Self::PatientUpdate(_) => Some(("Patient", Interaction::Update)),
            Self::AuditEventSearch => Some(("AuditEvent", Interaction::SearchType)),
            Self::AccessLog(_) => Some(("AuditEvent", Interaction::Read)),
            Self::Batch => Some(("Bundle", Interaction::Batch)),
            Self::SlotSearch => Some(("Slot", Interaction::SearchType)),
            Self::AppointmentCreate => Some(("Appointment", Interaction::Create)),
            Self::AppointmentRead(_) => Some(("Appointment", Interaction::Read)),
            Self::AppointmentVread(..) => Some(("Appointment", Interaction::Vread)),
            Self::AppointmentSearch => Some(("Appointment", Interaction::SearchType)),
            Self::AppointmentUpdate(_) => Some(("Appointment", Interaction::Update)),
            Self::AppointmentPatch(_) => Some(("Appointment", Interaction::Patch)),
            Self::DocumentReferenceSearch => Some(("DocumentReference", Interaction::SearchType)),
            Self::DocumentReferenceRead(_) => Some(("DocumentReference", Interaction::Read)),
            Self::DocumentReferenceCreate => Some(("DocumentReference", Interaction::Create)),
            Self::BinaryRead(_) => Some(("Binary", Interaction::Read)),
            Self::BinaryCreate => Some(("Binary", Interaction::Create)),
            Self::SubscriptionCreate => Some(("Subscription", Interaction::Create)),
            Self::SubscriptionRead(_) => Some(("Subscription", Interaction::Read)),
            Self::SubscriptionSearch => Some(("Subscription", Interaction::SearchType)),
            Self::SubscriptionDelete(_) => Some(("Subscription", Interaction::Delete)),
            Self::SubscriptionStatus(_) | Self::SubscriptionEvents(_) => {
                Some(("Subscription", Interaction::Operation))
            }
            Self::TopicRead(_) => Some(("Basic", Interaction::Read)),
            Self::TopicSearch => Some(("Basic", Interaction::SearchType)),
        }
    }

    /// The resource type and interaction whose scope the route needs before its
    /// handler runs: its own, except that a structured record's List or Bundle needs
    /// the operation's (`system/Patient.r`; the handler checks each area's type).
    pub fn scope(&self) -> Option<(&'static str, Interaction)> {
        match self {
            Self::ListRead(_) | Self::BundleRead(_) => Some(("Patient", Interaction::Read)),
            // Staged content is half of filing a document: it needs what filing needs.
            Self::BinaryCreate => Some(("DocumentReference", Interaction::Create)),
            // The topics are published, like the CapabilityStatement: no token needed.
            Self::TopicRead(_) | Self::TopicSearch => None,
            _ => self.interaction(),
        }
    }
}

/// One segment of a row's path pattern.
#[derive(Debug, Clone, Copy)]
enum Seg {
    /// Exactly this text.
    Lit(&'static str),
    /// A patient's id: not empty, and not an operation name (`$…`).
    Id,
    /// A record entry's id: not empty, and not an operation name (`$…`).
    EntryId,
    /// A clinical resource type the adapters serve.
    Clinical,
}

/// What a row's matching request is answered by.
#[derive(Clone, Copy)]
enum Make {
    /// This endpoint, whatever the path's segments.
    Endpoint(Endpoint),
    /// The FHIR route, from the path's segments.
    Fhir(fn(&[&str]) -> Option<Route>),
}

/// One row of the route table.
pub struct Row {
    /// The method served (`HEAD` is served wherever `GET` is).
    pub method: Method,
    pub mount: Mount,
    path: &'static [Seg],
    /// The listeners serving it.
    pub listeners: &'static [Listener],
    pub when: When,
    pub access: Access,
    make: Make,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// More, when a line is not enough (empty otherwise).
    pub description: &'static str,
}

/// A FHIR interaction's row: on the main listener, below the FHIR base, always served.
const fn fhir(
    method: Method,
    path: &'static [Seg],
    access: Access,
    make: fn(&[&str]) -> Option<Route>,
    summary: &'static str,
) -> Row {
    Row {
        method,
        mount: Mount::FhirBase,
        path,
        listeners: &[Listener::Main],
        when: When::Always,
        access,
        make: Make::Fhir(make),
        summary,
        description: "",
    }
}

/// An operational endpoint's row: at the origin, open to anyone unless narrowed.
const fn endpoint(
    method: Method,
    path: &'static [Seg],
    listeners: &'static [Listener],
    when: When,
    endpoint: Endpoint,
    summary: &'static str,
) -> Row {
    Row {
        method,
        mount: Mount::Origin,
        path,
        listeners,
        when,
        access: Access::Public,
        make: Make::Endpoint(endpoint),
        summary,
        description: "",
    }
}

impl Row {
    /// The row, open only to callers with `access`.
    const fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// The row, hung below `mount` instead.
    const fn at(mut self, mount: Mount) -> Self {
        self.mount = mount;
        self
    }

    /// The row, with a description.
    const fn described(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }
}

const MAIN: &[Listener] = &[Listener::Main];
const BOTH: &[Listener] = &[Listener::Main, Listener::Admin];

/// The route table: everything served, in one list.
pub const ROUTES: &[Row] = &[
    endpoint(
        Method::GET,
        &[Seg::Lit("_health")],
        BOTH,
        When::Always,
        Endpoint::Health,
        "Liveness: 200 while the process serves",
    ),
    endpoint(
        Method::GET,
        &[Seg::Lit("_ready")],
        BOTH,
        When::Always,
        Endpoint::Ready,
        "Readiness: every GP system and the audit trail",
    )
    .described(
        "200 `ready`, or `degraded` while some GP system is unreachable (the others are still served); 503 `draining` once shutdown begins, or `unavailable` while the audit trail cannot take rows.",
    ),
    endpoint(
        Method::GET,
        &[Seg::Lit("metrics")],
        &[Listener::Admin],
        When::Always,
        Endpoint::Metrics,
        "Prometheus metrics (the admin listener only: operators, never suppliers)",
    ),
    endpoint(
        Method::GET,
        &[Seg::Lit("openapi.json")],
        MAIN,
        When::Always,
        Endpoint::OpenApi,
        "This document, generated from the gateway's route table",
    ),
    endpoint(
        Method::GET,
        &[Seg::Lit("_sandbox"), Seg::Lit("manifest")],
        MAIN,
        When::Sandbox,
        Endpoint::SandboxManifest,
        "The sandbox's demo suppliers (keys, scopes, practices), test patients and simulators",
    ),
    endpoint(
        Method::POST,
        &[Seg::Lit("oauth2"), Seg::Lit("token")],
        MAIN,
        When::OAuth,
        Endpoint::Token,
        "Exchange a signed JWT client assertion for an access token (SMART Backend Services)",
    )
    .access(Access::ClientAssertion),
    endpoint(
        Method::GET,
        &[Seg::Lit("oauth2"), Seg::Lit("jwks")],
        MAIN,
        When::OAuth,
        Endpoint::Jwks,
        "The gateway's access-token signing keys (JWKS)",
    ),
    endpoint(
        Method::GET,
        &[Seg::Lit(".well-known"), Seg::Lit("smart-configuration")],
        MAIN,
        When::OAuth,
        Endpoint::SmartConfiguration,
        "SMART discovery: the token endpoint, its authentication methods and the scopes",
    ),
    // SMART clients (fhir-kit-client, the SMART JS client) look below the FHIR base.
    endpoint(
        Method::GET,
        &[Seg::Lit(".well-known"), Seg::Lit("smart-configuration")],
        MAIN,
        When::OAuth,
        Endpoint::SmartConfiguration,
        "SMART discovery below the FHIR base, where SMART clients look for it",
    )
    .at(Mount::FhirBase),
    fhir(
        Method::POST,
        &[],
        Access::Bearer,
        |_| Some(Route::Batch),
        "A batch of reads and searches: a batch Bundle in, a batch-response Bundle out",
    )
    .described(
        "Entries are GET reads and searches with relative URLs (Patient/9000000009, Observation?patient=…&code=…). Each is routed, authorised (scopes, pairing, release rules), charged to your rate limit and audited as its own request; a refused entry gets its own response.status and response.outcome, never failing the batch. At most 100 entries (more: 413); a transaction, or any other Bundle type, is 422. The batch itself costs one request of the rate limit, each entry one more.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("metadata")],
        Access::Public,
        |_| Some(Route::Metadata),
        "The CapabilityStatement, generated from the routes served",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Patient"), Seg::Id],
        Access::Bearer,
        |s| Some(Route::PatientRead(s[1].to_owned())),
        "Read a patient (UK Core Patient)",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Patient")],
        Access::Bearer,
        |_| Some(Route::PatientSearch),
        "Find a patient by NHS number: a searchset of 0 or 1",
    ),
    fhir(
        Method::POST,
        &[Seg::Lit("Patient"), Seg::Lit("_search")],
        Access::Bearer,
        |_| Some(Route::PatientSearch),
        "Find a patient by NHS number, the parameters in a form body (and the query)",
    )
    .described(
        "FHIR's POST _search: the parameters of GET /Patient as application/x-www-form-urlencoded, split between the body and the query string as you like; the same answer as the GET.",
    ),
    fhir(
        Method::PATCH,
        &[Seg::Lit("Patient"), Seg::Id],
        Access::Bearer,
        |s| Some(Route::PatientPatch(s[1].to_owned())),
        "Change a patient's contact details (telecom, address, communication)",
    )
    .described(
        "JSON Patch (application/json-patch+json), JSON Merge Patch (application/merge-patch+json, or a partial Patient as application/fhir+json or application/json) or FHIRPath Patch (a Parameters body as application/fhir+json): each may change telecom, address and communication only (422 INVALID_RESOURCE naming any other element); If-Match with a read's ETag (412 when stale).",
    ),
    fhir(
        Method::PUT,
        &[Seg::Lit("Patient"), Seg::Id],
        Access::Bearer,
        |s| Some(Route::PatientUpdate(s[1].to_owned())),
        "Replace a patient's contact details by sending the whole Patient as read, changed",
    )
    .described(
        "The body is the Patient with its id: telecom, address and communication may differ from the current record; every other element must equal it (422 INVALID_RESOURCE naming each that differs), meta.versionId and meta.lastUpdated are ignored and meta and text may be left out. If-Match with a read's ETag (412 when stale).",
    ),
    fhir(
        Method::POST,
        &[Seg::Lit("Patient"), Seg::Lit(STRUCTURED_RECORD)],
        Access::Bearer,
        |_| Some(Route::StructuredRecord),
        "GP Connect's structured record in R4: a collection Bundle with one List per area",
    )
    .described(
        "Needs system/Patient.r plus system/{Type}.r of each area asked for; invalid parameter combinations answer 422 INVALID_PARAMETER naming the parameter.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Patient"), Seg::Id, Seg::Lit(ACCESS_LOG)],
        Access::Bearer,
        |s| Some(Route::AccessLog(s[1].to_owned())),
        "Who accessed the patient's record, for the patient",
    ),
    fhir(
        Method::GET,
        &[Seg::Clinical],
        Access::Bearer,
        |s| ClinicalType::parse(s[0]).map(Route::ClinicalSearch),
        "Search a patient's record entries of this type",
    ),
    fhir(
        Method::POST,
        &[Seg::Clinical, Seg::Lit("_search")],
        Access::Bearer,
        |s| ClinicalType::parse(s[0]).map(Route::ClinicalSearch),
        "Search a patient's record entries of this type, the parameters in a form body",
    )
    .described(
        "FHIR's POST _search: the parameters of the GET search as application/x-www-form-urlencoded, split between the body and the query string as you like; the same answer as the GET.",
    ),
    fhir(
        Method::GET,
        &[Seg::Clinical, Seg::EntryId],
        Access::Bearer,
        |s| ClinicalType::parse(s[0]).map(|t| Route::ClinicalRead(t, s[1].to_owned())),
        "Read one record entry by its id (a searchset entry's fullUrl, a create's Location)",
    )
    .described(
        "Served for entries this gateway has answered (in a search, the structured record or a create) within a day, under the same pairing, scope and release rules as the search; any other id is 404 RESOURCE_NOT_FOUND.",
    ),
    fhir(
        Method::GET,
        &[Seg::Clinical, Seg::EntryId, Seg::Lit("_history"), Seg::EntryId],
        Access::Bearer,
        |s| {
            ClinicalType::parse(s[0])
                .map(|t| Route::ClinicalVread(t, s[1].to_owned(), s[3].to_owned()))
        },
        "Read a record entry's version (a create's Location): the current one",
    )
    .described(
        "GP systems keep no earlier versions of an entry: the current version (its meta.versionId, the ETag of a read) answers 200 with that ETag; any other versionId answers 404 RESOURCE_NOT_FOUND saying only the current version is kept. The same pairing, scope and release rules as a read.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Organization"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::OrganizationRead(s[1].to_owned())),
        "Read a practice this gateway serves, by its ODS code (UK Core Organization)",
    )
    .described(
        "What Patient.managingOrganization refers to. Needs system/Organization.r; a practice you are not paired with, or one this gateway does not serve, is 404 RESOURCE_NOT_FOUND.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Practitioner"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::PractitionerRead(s[1].to_owned())),
        "Read a member of a practice's staff the gateway's answers refer to (UK Core Practitioner)",
    )
    .described(
        "What Patient.generalPractitioner and the entries' authors, performers, recorders and participants refer to, in answers this gateway gave within a day. Needs system/Practitioner.r; a person of a practice you are not paired with, or one no answer referred to, is 404 RESOURCE_NOT_FOUND. A GP system that cannot read its staff answers 501 NOT_IMPLEMENTED.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("List"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::ListRead(s[1].to_owned())),
        "Read one area's List of a structured record answered, by its id",
    )
    .described(
        "Served for the Lists $gpc.getstructuredrecord answered within a day: the area selected again now under the operation's rules, its entries as references. Needs system/Patient.r plus system/{Type}.r of the area's type; any other id, or a patient you may not see, is 404 RESOURCE_NOT_FOUND.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Bundle"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::BundleRead(s[1].to_owned())),
        "Read a structured record answered, by its Bundle id: the same request answered again",
    )
    .described(
        "Served for Bundles $gpc.getstructuredrecord answered within a day: the same patient and parameters, selected again now under the operation's rules (pairing, release rules, confidential entries withheld), with the Bundle's id. Needs what the operation needs: system/Patient.r plus system/{Type}.r of each area; any other id, or a patient you may not see, is 404 RESOURCE_NOT_FOUND.",
    ),
    fhir(
        Method::POST,
        &[Seg::Lit("Observation")],
        Access::Bearer,
        |_| Some(Route::ObservationCreate),
        "Record a reading in the patient's GP record (201; 200 for a retry)",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Slot")],
        Access::Bearer,
        |_| Some(Route::SlotSearch),
        "Free slots to book: a searchset of Slots with their Schedules (and, as asked, Practitioners, PractitionerRoles, Locations and Organizations)",
    )
    .described(
        "start=ge{date}, end=le{date} (at most 14 days), status=free and _include=Slot:schedule are required; _include (or _include:iterate, :recurse, :recursive) Schedule:actor:Practitioner, Schedule:actor:PractitionerRole, Schedule:actor:Location and Location:managingOrganization add what they name; practice ({ODS} or https://fhir.nhs.uk/Id/ods-organization-code|{ODS}; without it every practice you are paired with), delivery-channel (In-person, Telephone, Video) and service-type (the slot type) filter. Only free slots open to third parties are offered, never from a cache. A practice that cannot answer is left out with an OperationOutcome entry (search.mode outcome) naming it; when none can, the search fails. A missing or invalid parameter is 422 INVALID_PARAMETER naming it in expression.",
    ),
    fhir(
        Method::POST,
        &[Seg::Lit("Appointment")],
        Access::Bearer,
        |_| Some(Route::AppointmentCreate),
        "Book an appointment in free slots for a patient (201; 200 for a retry)",
    )
    .described(
        "status booked; slot: Slot references (several only when adjacent, in one schedule, with one channel and type); start and end the slots' own; participant: Patient/{nhsNumber} and the schedule's Location; created; description (at most 100 characters) and comment (at most 500). The booking organisation recorded is your ODS code from the supplier registry (a contained Organization referred to by the GP Connect BookingOrganisation extension is optional and must match). Reasons, specialties, categories, past or unknown slots are 422 INVALID_RESOURCE naming the element; a slot already taken is 409 DUPLICATE_REJECTED. Idempotent on identifier or If-None-Exist: identifier=system|value.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Appointment")],
        Access::Bearer,
        |_| Some(Route::AppointmentSearch),
        "A patient's appointments, booked and cancelled, in a future range",
    )
    .described(
        "patient (the NHS number, Patient/{nhsNumber} or https://fhir.nhs.uk/Id/nhs-number|{nhsNumber}) and date=ge{date}&date=le{date} are required: from today on, at most 31 days (otherwise 422 INVALID_PARAMETER naming date).",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Appointment"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::AppointmentRead(s[1].to_owned())),
        "Read an appointment, as the GP system holds it now",
    ),
    fhir(
        Method::GET,
        &[
            Seg::Lit("Appointment"),
            Seg::EntryId,
            Seg::Lit("_history"),
            Seg::EntryId,
        ],
        Access::Bearer,
        |s| Some(Route::AppointmentVread(s[1].to_owned(), s[3].to_owned())),
        "Read an appointment's version (a booking's Location): the current one",
    )
    .described(
        "GP systems keep no earlier versions of an appointment: the current version (its meta.versionId, the ETag of a read) answers 200 with that ETag; any other versionId answers 404 RESOURCE_NOT_FOUND.",
    ),
    fhir(
        Method::PUT,
        &[Seg::Lit("Appointment"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::AppointmentUpdate(s[1].to_owned())),
        "Amend (description, comment) or cancel (status cancelled with cancelationReason) by sending the whole Appointment",
    )
    .described(
        "Every other element must equal the appointment as read (422 INVALID_RESOURCE naming each that differs); a cancelled appointment cannot change (422). If-Match with a read's ETag (412 when stale); without it, the body's meta.versionId, else the current version. A cancel frees the slots.",
    ),
    fhir(
        Method::PATCH,
        &[Seg::Lit("Appointment"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::AppointmentPatch(s[1].to_owned())),
        "Amend or cancel an appointment with a JSON Patch or JSON Merge Patch",
    )
    .described(
        "The patch is applied to the appointment as it stands, then checked as a PUT is. If-Match with a read's ETag (412 when stale).",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("DocumentReference")],
        Access::Bearer,
        |_| Some(Route::DocumentReferenceSearch),
        "A patient's documents (letters, reports, what suppliers filed), metadata only",
    )
    .described(
        "patient (the NHS number, Patient/{nhsNumber} or https://fhir.nhs.uk/Id/nhs-number|{nhsNumber}) is required; date (when the practice received it) and created (when it was written) take ge, gt, le and lt; type a SNOMED CT record artifact (http://snomed.info/sct|{code} or {code}); author the author organisation's ODS code (or author:identifier=https://fhir.nhs.uk/Id/ods-organization-code|{ODS}); _count pages (follow Bundle.link next). Newest first. A document larger than [documents] max_inline_bytes is listed without attachment.url and with a placeholder title: ask the practice for it. Documents the practice marked confidential are left out. Needs system/DocumentReference.s.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("DocumentReference"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::DocumentReferenceRead(s[1].to_owned())),
        "Read one document's metadata, as the GP system holds it now",
    )
    .described(
        "The id is a search's or a filing's; under the same pairing and release rules as the search (a confidential document, or one of a patient you may not see, is 404 RESOURCE_NOT_FOUND). Needs system/DocumentReference.r.",
    ),
    fhir(
        Method::POST,
        &[Seg::Lit("DocumentReference")],
        Access::Bearer,
        |_| Some(Route::DocumentReferenceCreate),
        "File a document (PDF, plain text or an HTML consultation summary) into the patient's record (201; 200 for a retry)",
    )
    .described(
        "subject Patient/{nhsNumber}; status current; type a SNOMED CT record artifact (e.g. 371530004 clinical consultation report, 823691000000103 clinical letter); description or content[0].attachment.title; content[0].attachment with contentType application/pdf, text/plain or text/html and either data (base64, inline) or url Binary/{id} (from POST /Binary); author, when given, your own organisation (https://fhir.nhs.uk/Id/ods-organization-code|{your ODS code}); date and attachment.creation default to now. Content is checked against its type and refused with active content (scripts, event handlers, javascript: URLs in HTML; JavaScript, launch actions or embedded files in PDF): 422 naming the element. The body may be up to the base64 of [documents] max_upload_bytes plus 64 KiB (413 otherwise, before it is read). Idempotent on identifier or If-None-Exist: identifier=system|value. Needs system/DocumentReference.c.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Binary"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::BinaryRead(s[1].to_owned())),
        "A document's content: the bytes with their Content-Type, or a FHIR Binary",
    )
    .described(
        "Accept the content's type or */* for the bytes themselves; application/fhir+json for a Binary with base64 data and securityContext. Content larger than [documents] max_inline_bytes is refused 403 (issue too-costly): ask the practice for a copy. The same pairing and release rules as the patient's record (a confidential document is 404). Needs system/Binary.r.",
    ),
    fhir(
        Method::POST,
        &[Seg::Lit("Binary")],
        Access::Bearer,
        |_| Some(Route::BinaryCreate),
        "Stage a document's content, to be filed by a POST /DocumentReference naming it (201)",
    )
    .described(
        "The raw bytes with Content-Type application/pdf, text/plain or text/html and the header X-Security-Context: Patient/{nhsNumber} (other types are 415), or a FHIR Binary (application/fhir+json) with contentType, securityContext and base64 data. At most [documents] max_upload_bytes (413 before the body is read). Content is checked as a filing's is (422). The answer's Location is [base]/Binary/{id}: name it in content[0].attachment.url. Staging is part of filing: it needs system/DocumentReference.c.",
    ),
    fhir(
        Method::POST,
        &[Seg::Lit("Subscription")],
        Access::Bearer,
        |_| Some(Route::SubscriptionCreate),
        "Subscribe to a topic: notifications of changes POSTed, signed, to your HTTPS endpoint (201)",
    )
    .described(
        "An R4 Subscription with the Subscriptions Backport IG's profile: criteria a topic's canonical URL (GET /Basic?code=SubscriptionTopic lists them); filters in criteria's backport-filter-criteria extensions, each [{Type}?]patient={nhsNumber}, practice={ODS} or _type={Type,...} (ANDed); channel.type rest-hook; channel.endpoint https:// resolving to public addresses only; channel.payload application/fhir+json with backport-payload-content empty, id-only (default) or full-resource; optional backport-heartbeat-period (at least 10 s), backport-timeout and channel.header lines sent as given. Answered with status requested: a handshake is delivered, then it is active. Deliveries carry Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature v1a, Ed25519 over {id}.{timestamp}.{body}; the key is in /oauth2/jwks). What each notification may say is decided when it is delivered, under the release rules. An element the gateway does not take is 422 naming it. Needs system/Subscription.c.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Subscription")],
        Access::Bearer,
        |_| Some(Route::SubscriptionSearch),
        "Your subscriptions (status narrows), with their current status",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Subscription"), Seg::Lit("$status")],
        Access::Bearer,
        |_| Some(Route::SubscriptionStatus(None)),
        "The status of your subscriptions (id and status narrow): a searchset of backport subscription statuses",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Subscription"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::SubscriptionRead(s[1].to_owned())),
        "Read one of your subscriptions, with its current status (and error, while in error)",
    ),
    fhir(
        Method::DELETE,
        &[Seg::Lit("Subscription"), Seg::EntryId],
        Access::Bearer,
        |s| Some(Route::SubscriptionDelete(s[1].to_owned())),
        "Delete one of your subscriptions: no more deliveries (204)",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Subscription"), Seg::EntryId, Seg::Lit("$status")],
        Access::Bearer,
        |s| Some(Route::SubscriptionStatus(Some(s[1].to_owned()))),
        "One subscription's status: events since it started, its status and last error",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Subscription"), Seg::EntryId, Seg::Lit("$events")],
        Access::Bearer,
        |s| Some(Route::SubscriptionEvents(s[1].to_owned())),
        "Catch up on notifications: eventsSinceNumber, eventsUntilNumber (inclusive; at most 100) and content",
    )
    .described(
        "A history Bundle in the notification form (type query-event): each event numbered in the range that you may still learn of now (pairing, scopes, sensitive and dissenting patients decided again), with its focus, and with full-resource content the resources as a read answers them now.",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Basic")],
        Access::Public,
        |_| Some(Route::TopicSearch),
        "The subscription topics (code=SubscriptionTopic; url narrows), in the backport IG's R4 form",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("Basic"), Seg::EntryId],
        Access::Public,
        |s| Some(Route::TopicRead(s[1].to_owned())),
        "One subscription topic: its canonical URL, triggers and filters",
    ),
    fhir(
        Method::GET,
        &[Seg::Lit("AuditEvent")],
        Access::Bearer,
        |_| Some(Route::AuditEventSearch),
        "The audit trail as AuditEvents, most recent first (operators)",
    ),
];

impl Row {
    /// True when `listener` serves this row.
    pub fn on(&self, listener: Listener) -> bool {
        self.listeners.contains(&listener)
    }

    /// True when a path's segments (below the row's mount) fit the row's pattern.
    fn fits(&self, segments: &[&str]) -> bool {
        self.path.len() == segments.len()
            && self.path.iter().zip(segments).all(|(p, s)| match p {
                Seg::Lit(l) => l == s,
                Seg::Id | Seg::EntryId => !s.is_empty() && !s.starts_with('$'),
                Seg::Clinical => ClinicalType::parse(s).is_some(),
            })
    }

    fn handler(&self, segments: &[&str]) -> Option<Handler> {
        match self.make {
            Make::Endpoint(e) => Some(Handler::Endpoint(e)),
            Make::Fhir(make) => make(segments).map(Handler::Fhir),
        }
    }

    /// True for a FHIR operation (a `$…` segment).
    pub fn is_operation(&self) -> bool {
        self.path
            .iter()
            .any(|seg| matches!(seg, Seg::Lit(l) if l.starts_with('$')))
    }

    /// The paths this row serves below its mount, each as a template (an id is
    /// [`ID_TEMPLATE`]; a clinical type segment gives one path per type in `clinical`)
    /// with the handler a request to it gets.
    pub fn paths(&self, clinical: &[ClinicalType]) -> Vec<(String, Handler)> {
        let per_type = self.path.iter().any(|seg| matches!(seg, Seg::Clinical));
        let types: Vec<Option<ClinicalType>> = if per_type {
            clinical.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        types
            .into_iter()
            .filter_map(|t| {
                let segments: Vec<&str> = self
                    .path
                    .iter()
                    .map(|seg| match seg {
                        Seg::Lit(l) => l,
                        Seg::Id => ID_TEMPLATE,
                        Seg::EntryId => ENTRY_ID_TEMPLATE,
                        Seg::Clinical => t.map_or("", ClinicalType::as_str),
                    })
                    .collect();
                let handler = self.handler(&segments)?;
                // The FHIR base itself (batch) is the base path, with no `/` after it.
                let template = match segments.is_empty() {
                    true => String::new(),
                    false => format!("/{}", segments.join("/")),
                };
                Some((template, handler))
            })
            .collect()
    }
}

/// A request looked up in [`ROUTES`].
#[derive(Debug)]
pub enum Lookup {
    /// A row serves it.
    Found(Handler),
    /// Rows serve the path, with other methods: `allowed` is the `Allow` header (`GET`
    /// first, then in the table's order), `access` who those rows are for (whose dialect
    /// the refusal speaks), `mount` where they hang.
    WrongMethod {
        allowed: String,
        access: Access,
        mount: Mount,
    },
    /// No row serves the path.
    NotFound,
}

/// A path's segments; the root (`/`, or the FHIR base itself) has none.
fn segments(path: &str) -> Vec<&str> {
    match path.trim_start_matches('/') {
        "" => Vec::new(),
        rest => rest.split('/').collect(),
    }
}

/// Looks a request to `listener` up in [`ROUTES`], among the rows `serving` turns on;
/// `base` is the FHIR base path. `HEAD` is served wherever `GET` is.
pub fn lookup(
    listener: Listener,
    serving: Serving,
    method: &Method,
    path: &str,
    base: &str,
) -> Lookup {
    let asked = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let at_origin = segments(path);
    let below_base = path
        .strip_prefix(base)
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .map(segments);
    let mut allowed: Vec<&str> = Vec::new();
    let mut refusing = None;
    for row in ROUTES
        .iter()
        .filter(|r| r.on(listener) && r.when.holds(serving))
    {
        let segments = match row.mount {
            Mount::Origin => &at_origin,
            Mount::FhirBase => match &below_base {
                Some(s) => s,
                None => continue,
            },
        };
        if !row.fits(segments) {
            continue;
        }
        if row.method == *asked
            && let Some(handler) = row.handler(segments)
        {
            return Lookup::Found(handler);
        }
        refusing.get_or_insert(row);
        if !allowed.contains(&row.method.as_str()) {
            allowed.push(row.method.as_str());
        }
    }
    let Some(row) = refusing else {
        return Lookup::NotFound;
    };
    // GET first, then as the table lists them: `GET, PATCH`, `GET, POST`.
    allowed.sort_by_key(|m| *m != "GET");
    Lookup::WrongMethod {
        allowed: allowed.join(", "),
        access: row.access,
        mount: row.mount,
    }
}

/// The path as an error message shows it: bounded, with the FHIR base kept whole.
pub fn shown_path(path: &str, base: &str) -> String {
    match path
        .strip_prefix(base)
        .filter(|r| r.is_empty() || r.starts_with('/'))
    {
        Some(rest) => format!("{base}/{}", shown(rest.trim_start_matches('/'))),
        None => shown(path),
    }
}

pub use gp_fhir::text::shown;

/// The FHIR interactions of every row, as `(resource type, interaction)`.
fn interactions(clinical: &[ClinicalType]) -> impl Iterator<Item = (&'static str, Interaction)> {
    ROUTES
        .iter()
        .filter(|row| !row.is_operation())
        .flat_map(|row| row.paths(clinical))
        .filter_map(|(_, handler)| match handler {
            Handler::Fhir(route) => route.interaction(),
            Handler::Endpoint(_) => None,
        })
}

/// The system-level interactions the router serves (`batch`), for the
/// CapabilityStatement's `rest.interaction`.
pub fn served_system() -> Vec<Interaction> {
    let mut out: Vec<Interaction> = Vec::new();
    for (_, i) in interactions(&[]).filter(|(_, i)| i.is_system_level()) {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Every resource type and interaction the router serves, for the CapabilityStatement:
/// read from [`ROUTES`] (operations, `$…` paths, are listed as operations instead, and
/// system-level interactions by [`served_system`]), with Patient first, then `clinical`
/// in its order, then the rest; within a type, in the table's order, each once (a search
/// by GET and by POST is one `search-type`).
pub fn served(clinical: &[ClinicalType]) -> Vec<(&'static str, Vec<Interaction>)> {
    let pairs = interactions(clinical).filter(|(_, i)| !i.is_system_level());
    let rank = |t: &str| match t {
        "Patient" => 0,
        t => clinical
            .iter()
            .position(|c| c.as_str() == t)
            .map_or(usize::MAX, |i| i + 1),
    };
    let mut out: Vec<(&'static str, Vec<Interaction>)> = Vec::new();
    for (t, i) in pairs {
        match out.iter_mut().find(|(r, _)| *r == t) {
            Some((_, list)) if list.contains(&i) => {}
            Some((_, list)) => list.push(i),
            None => out.push((t, vec![i])),
        }
    }
    out.sort_by_key(|(t, _)| rank(t));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/FHIR/R4";
    const ALL: Serving = Serving {
        oauth: true,
        sandbox: true,
    };

    fn main(method: Method, path: &str) -> Lookup {
        lookup(Listener::Main, ALL, &method, path, BASE)
    }

    fn fhir(method: Method, rest: &str) -> Option<Route> {
        match main(method, &format!("{BASE}{rest}")) {
            Lookup::Found(Handler::Fhir(route)) => Some(route),
            _ => None,
        }
    }

    fn allowed(method: Method, path: &str) -> String {
        match main(method.clone(), path) {
            Lookup::WrongMethod { allowed, .. } => allowed,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn routes_and_refusals() {
        assert_eq!(fhir(Method::GET, "/metadata"), Some(Route::Metadata));
        assert_eq!(
            fhir(Method::GET, "/Patient/9000000009"),
            Some(Route::PatientRead("9000000009".into()))
        );
        assert_eq!(
            fhir(Method::GET, "/Observation"),
            Some(Route::ClinicalSearch(ClinicalType::Observation))
        );
        assert_eq!(
            fhir(Method::GET, "/Observation/abc/_history/0123456789abcdef"),
            Some(Route::ClinicalVread(
                ClinicalType::Observation,
                "abc".into(),
                "0123456789abcdef".into()
            ))
        );
        for path in ["/FHIR/R4/Foo", "/FHIR/R4/Patient/1/2", "/FHIR/R4x/metadata"] {
            assert!(
                matches!(main(Method::GET, path), Lookup::NotFound),
                "{path}"
            );
        }
        assert_eq!(
            allowed(Method::DELETE, "/FHIR/R4/Patient/9000000009"),
            "GET, PATCH, PUT"
        );
        assert_eq!(
            fhir(Method::PUT, "/Patient/9000000009"),
            Some(Route::PatientUpdate("9000000009".into()))
        );
        assert_eq!(
            fhir(Method::POST, "/Observation"),
            Some(Route::ObservationCreate)
        );
        assert_eq!(
            fhir(Method::PATCH, "/Patient/9000000009"),
            Some(Route::PatientPatch("9000000009".into()))
        );
        assert_eq!(allowed(Method::PUT, "/FHIR/R4/Observation"), "GET, POST");
        assert_eq!(allowed(Method::POST, "/FHIR/R4/Condition"), "GET");
        // POST _search: the same route as the GET; batch at the base itself.
        assert_eq!(
            fhir(Method::POST, "/Condition/_search"),
            Some(Route::ClinicalSearch(ClinicalType::Condition))
        );
        assert_eq!(
            fhir(Method::POST, "/Patient/_search"),
            Some(Route::PatientSearch)
        );
        assert_eq!(fhir(Method::POST, ""), Some(Route::Batch));
        assert_eq!(fhir(Method::POST, "/"), Some(Route::Batch));
        assert_eq!(allowed(Method::GET, "/FHIR/R4"), "POST");
    }

    #[test]
    fn allow_lists_the_tables_methods_for_the_path_operations_included() {
        assert_eq!(
            allowed(Method::GET, "/FHIR/R4/Patient/$gpc.getstructuredrecord"),
            "POST"
        );
        assert_eq!(
            allowed(Method::PATCH, "/FHIR/R4/Patient/9000000009/$access-log"),
            "GET"
        );
        assert_eq!(allowed(Method::DELETE, "/FHIR/R4/AuditEvent"), "GET");
        assert_eq!(allowed(Method::POST, "/FHIR/R4/metadata"), "GET");
        assert_eq!(
            fhir(Method::HEAD, "/Patient/9000000009"),
            Some(Route::PatientRead("9000000009".into()))
        );
        // An operation name is never read as an id.
        assert!(matches!(
            main(Method::GET, "/FHIR/R4/Patient/$everything"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn operational_endpoints_are_rows_like_the_rest_allow_included() {
        let endpoint =
            |listener, method: Method, path| match lookup(listener, ALL, &method, path, BASE) {
                Lookup::Found(Handler::Endpoint(e)) => Some(e),
                _ => None,
            };
        assert_eq!(
            endpoint(Listener::Main, Method::GET, "/_health"),
            Some(Endpoint::Health)
        );
        assert_eq!(
            endpoint(Listener::Admin, Method::HEAD, "/_ready"),
            Some(Endpoint::Ready)
        );
        assert_eq!(
            endpoint(Listener::Admin, Method::GET, "/metrics"),
            Some(Endpoint::Metrics)
        );
        // Metrics are for operators: not on the suppliers' port; FHIR not on the admin port.
        assert_eq!(endpoint(Listener::Main, Method::GET, "/metrics"), None);
        assert!(matches!(
            lookup(
                Listener::Admin,
                ALL,
                &Method::GET,
                "/FHIR/R4/metadata",
                BASE
            ),
            Lookup::NotFound
        ));
        assert_eq!(allowed(Method::POST, "/_health"), "GET");
        assert_eq!(allowed(Method::DELETE, "/openapi.json"), "GET");
        assert!(matches!(
            main(Method::GET, TOKEN_PATH),
            Lookup::WrongMethod { allowed, access: Access::ClientAssertion, mount: Mount::Origin }
                if allowed == "POST"
        ));
        // Conditional rows: no token endpoint in open mode, no manifest outside the sandbox.
        let open = Serving {
            oauth: false,
            sandbox: false,
        };
        for path in [TOKEN_PATH, JWKS_PATH, "/_sandbox/manifest"] {
            assert!(matches!(
                lookup(Listener::Main, open, &Method::GET, path, BASE),
                Lookup::NotFound
            ));
        }
    }

    #[test]
    fn every_row_is_reached_by_its_own_paths_and_bearer_rows_name_an_interaction() {
        for row in ROUTES {
            for (template, handler) in row.paths(ClinicalType::ALL) {
                let path = match row.mount {
                    Mount::Origin => template.clone(),
                    Mount::FhirBase => format!("{BASE}{template}"),
                };
                for &listener in row.listeners {
                    let found = lookup(listener, ALL, &row.method, &path, BASE);
                    assert!(
                        matches!(&found, Lookup::Found(h) if *h == handler),
                        "{} {path}: {found:?}",
                        row.method
                    );
                }
                let scope = match &handler {
                    Handler::Fhir(route) => route.scope(),
                    Handler::Endpoint(_) => None,
                };
                // The access check reads the scope a bearer row needs from its route; a
                // public row needs none (the topics are published like the metadata).
                assert_eq!(row.access == Access::Bearer, scope.is_some(), "{path}");
                // FHIR interactions hang below the FHIR base; operational endpoints at
                // the origin, and SMART discovery also below the base.
                assert!(
                    row.mount == Mount::FhirBase || matches!(handler, Handler::Endpoint(_)),
                    "{path}"
                );
            }
        }
    }

    #[test]
    fn named_types_are_told_apart_from_unknown_and_malformed_paths() {
        assert_eq!(
            named_type("/FHIR/R4/Practitioner/abc", BASE),
            Some("Practitioner")
        );
        assert_eq!(
            named_type("/FHIR/R4/Patient/9000000009/_history/1", BASE),
            Some("Patient")
        );
        assert_eq!(named_type("/FHIR/R4/Frobnicate", BASE), None);
        assert_eq!(named_type("/FHIR/R4/Patient/../../etc/passwd", BASE), None);
        assert_eq!(named_type("/FHIR/R4/Patient//x", BASE), None);
        assert_eq!(
            named_type("/Practitioner/abc", BASE),
            None,
            "not below the base"
        );
    }

    #[test]
    fn the_capability_statement_reads_the_same_table() {
        let clinical = [ClinicalType::Condition, ClinicalType::Observation];
        assert_eq!(
            served(&clinical),
            [
                (
                    "Patient",
                    vec![
                        Interaction::Read,
                        Interaction::SearchType,
                        Interaction::Patch,
                        Interaction::Update
                    ]
                ),
                (
                    "Condition",
                    vec![
                        Interaction::SearchType,
                        Interaction::Read,
                        Interaction::Vread
                    ]
                ),
                (
                    "Observation",
                    vec![
                        Interaction::SearchType,
                        Interaction::Read,
                        Interaction::Vread,
                        Interaction::Create
                    ]
                ),
                ("Organization", vec![Interaction::Read]),
                ("Practitioner", vec![Interaction::Read]),
                ("List", vec![Interaction::Read]),
                ("Bundle", vec![Interaction::Read]),
                ("Slot", vec![Interaction::SearchType]),
                (
                    "Appointment",
                    vec![
                        Interaction::Create,
                        Interaction::SearchType,
                        Interaction::Read,
                        Interaction::Vread,
                        Interaction::Update,
                        Interaction::Patch
                    ]
                ),
                (
                    "DocumentReference",
                    vec![
                        Interaction::SearchType,
                        Interaction::Read,
                        Interaction::Create
                    ]
                ),
                ("Binary", vec![Interaction::Read, Interaction::Create]),
                (
                    "Subscription",
                    vec![
                        Interaction::Create,
                        Interaction::SearchType,
                        Interaction::Read,
                        Interaction::Delete
                    ]
                ),
                ("Basic", vec![Interaction::SearchType, Interaction::Read]),
                ("AuditEvent", vec![Interaction::SearchType]),
            ]
        );
        assert_eq!(served_system(), [Interaction::Batch]);
    }
}
