//! `provider`: run once per GP system. For each system's standard test patient: the
//! Patient read is UK Core, each clinical search is a proper searchset; the flagged
//! patients are refused the way suppliers are promised.

use serde_json::{Value, json};

use super::{Ctx, Recorder};
use crate::http::{Answer, Probe};
use crate::manifest::Supplier;
use crate::model::{Check, TestDef, Verdict, ensure};
use crate::run_test;
use crate::suites::security::UNKNOWN_NHS_NUMBER;

pub const CATALOGUE: &[TestDef] = &[
    TestDef::required(
        "PRV-PAT-01",
        "patient",
        "Patient read is UK Core: profile, NHS number identifier",
        "REQ-PRV-01",
    ),
    TestDef::required(
        "PRV-SRCH-01",
        "search",
        "AllergyIntolerance search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    TestDef::required(
        "PRV-SRCH-02",
        "search",
        "MedicationStatement search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    TestDef::required(
        "PRV-SRCH-03",
        "search",
        "Condition search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    TestDef::required(
        "PRV-SRCH-04",
        "search",
        "Observation search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    TestDef::required(
        "PRV-SRCH-05",
        "search",
        "Immunization search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    TestDef::required(
        "PRV-SRCH-06",
        "search",
        "Encounter search is a searchset with a self link",
        "REQ-PRV-02",
    ),
    TestDef::required(
        "PRV-ACC-01",
        "access",
        "a sensitive patient answers 404 RESOURCE_NOT_FOUND",
        "REQ-PRV-03",
    ),
    TestDef::required(
        "PRV-ACC-02",
        "access",
        "a dissenting patient answers 403 NO_PATIENT_CONSENT",
        "REQ-PRV-04",
    ),
    TestDef::required(
        "PRV-PAGE-01",
        "paging",
        "_count pages a search: each page a valid searchset, next links followed to the end, no entry twice",
        "REQ-PRV-05",
    ),
    TestDef::required(
        "PRV-DATE-01",
        "search",
        "a date filter splits Observations: ge and lt a date partition the unfiltered search",
        "REQ-PRV-06",
    ),
    TestDef::required(
        "PRV-SORT-01",
        "search",
        "_sort=-date answers the patient's Observations newest first, _sort=date oldest first, the same entries as unsorted",
        "REQ-PRV-09",
    ),
    TestDef::required(
        "PRV-POST-01",
        "search",
        "POST /Observation/_search with the parameters in a form body answers the same entries as the GET",
        "REQ-PRV-10",
    ),
    TestDef::required(
        "PRV-INC-01",
        "search",
        "_include=Observation:performer brings in, as search.mode include, exactly the people a page's Observations refer to; total counts the matches only",
        "REQ-PRV-15",
    ),
    TestDef::required(
        "PRV-BATCH-01",
        "batch",
        "a batch Bundle of a Patient read and an Observation search answers a batch-response, each entry 200 with its resource",
        "REQ-PRV-11",
    ),
    TestDef::required(
        "PRV-CODE-01",
        "coding",
        "coded entries (Condition, AllergyIntolerance, Observation, Immunization) carry a SNOMED CT coding",
        "REQ-PRV-07",
    ),
    TestDef::required(
        "PRV-WRT-01",
        "write-back",
        "POST /Observation with an identifier is created (201) with Location [base]/Observation/{id}/_history/{vid} and ETag W/\"{vid}\", a retry is recognised, a search finds it once with its identifier and vital-signs category, and the Location reads it",
        "REQ-PRV-08",
    ),
    TestDef::required(
        "PRV-WRT-02",
        "write-back",
        "PATCH /Patient contact details with If-Match is applied and read back",
        "REQ-PRV-08",
    ),
    TestDef::required(
        "PRV-REF-01",
        "references",
        "every reference in the structured record resolves: inside the Bundle or by a read; the Bundle and its Lists read back by id",
        "REQ-PRV-12",
    ),
    TestDef::required(
        "PRV-WRT-03",
        "write-back",
        "PUT /Patient with the Patient as read and a new mobile, with If-Match, is applied and read back; a PUT that also changes the name is refused 422 naming Patient.name",
        "REQ-PRV-13",
    ),
    TestDef::required(
        "PRV-WRT-04",
        "write-back",
        "PATCH /Patient as a JSON Merge Patch and as a FHIRPath Patch, each with If-Match, is applied and read back",
        "REQ-PRV-13",
    ),
    TestDef::required(
        "PRV-WRT-05",
        "write-back",
        "POST /Observation?identifier=… (the condition in the query string) creates once: 201, then 200 with the same id",
        "REQ-PRV-14",
    ),
    TestDef::required(
        "PRV-WRT-06",
        "write-back",
        "the official HL7 R4 vital-signs examples (heart rate, body height, BMI, body weight in [lb_av], blood pressure; LOINC-coded, date-only), changed only in subject and identifier, are recorded (201) and read back in SNOMED CT and the recorded unit; the blood pressure's unknown performer is refused naming Observation.performer[0].reference",
        "REQ-PRV-16",
    ),
    TestDef::required(
        "PRV-LOC-01",
        "locator",
        "an unknown NHS number answers 404 RESOURCE_NOT_FOUND",
        "REQ-PAIR-01",
    ),
];

const UK_CORE_PATIENT: &str = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient";
const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const SEARCHES: [(&str, &str); 6] = [
    ("PRV-SRCH-01", "AllergyIntolerance"),
    ("PRV-SRCH-02", "MedicationStatement"),
    ("PRV-SRCH-03", "Condition"),
    ("PRV-SRCH-04", "Observation"),
    ("PRV-SRCH-05", "Immunization"),
    ("PRV-SRCH-06", "Encounter"),
];

pub async fn run(ctx: &Ctx, rec: &mut Recorder) {
    let Some((sup, token)) = rec.reader_token(ctx).await else {
        return;
    };
    for system in ctx.manifest.systems() {
        let sys = Some(system.as_str());
        let patient = find(ctx, &sup, &system, "");
        run_test!(
            rec,
            "PRV-PAT-01",
            sys,
            patient_read(ctx, &token, patient.as_deref())
        );
        for (id, resource) in SEARCHES {
            let mut p = rec.probe();
            let check = search(ctx, &sup, &token, patient.as_deref(), resource, &mut p.0).await;
            rec.record(id, sys, check, p);
        }
        let sensitive = find(ctx, &sup, &system, "sensitive");
        run_test!(
            rec,
            "PRV-ACC-01",
            sys,
            refused(ctx, &token, sensitive.as_deref(), 404, "RESOURCE_NOT_FOUND")
        );
        let dissent = find(ctx, &sup, &system, "dissent");
        run_test!(
            rec,
            "PRV-ACC-02",
            sys,
            refused(ctx, &token, dissent.as_deref(), 403, "NO_PATIENT_CONSENT")
        );
        let on = On {
            ctx,
            sup: &sup,
            token: &token,
            patient: patient.as_deref(),
        };
        run_test!(rec, "PRV-PAGE-01", sys, paging(&on));
        run_test!(rec, "PRV-DATE-01", sys, date_filter(&on));
        run_test!(rec, "PRV-SORT-01", sys, sorted_by_date(&on));
        run_test!(rec, "PRV-POST-01", sys, post_search(&on));
        run_test!(rec, "PRV-INC-01", sys, include_performers(&on));
        run_test!(rec, "PRV-BATCH-01", sys, batch(&on));
        run_test!(rec, "PRV-CODE-01", sys, snomed_coded(&on));
        run_test!(rec, "PRV-WRT-01", sys, observation_round_trip(&on));
        run_test!(rec, "PRV-WRT-02", sys, contact_round_trip(&on));
        run_test!(rec, "PRV-REF-01", sys, references_resolve(&on));
        run_test!(rec, "PRV-WRT-03", sys, whole_patient_update(&on));
        run_test!(rec, "PRV-WRT-04", sys, patch_formats(&on));
        run_test!(rec, "PRV-WRT-05", sys, conditional_create_in_query(&on));
        run_test!(rec, "PRV-WRT-06", sys, official_examples(&on));
    }
    run_test!(
        rec,
        "PRV-LOC-01",
        None,
        refused(
            ctx,
            &token,
            Some(UNKNOWN_NHS_NUMBER),
            404,
            "RESOURCE_NOT_FOUND"
        )
    );
}

/// The structured record's areas, by parameter, with the type each answers.
const STRUCTURED_AREAS: [(&str, &str); 6] = [
    ("includeAllergies", "AllergyIntolerance"),
    ("includeMedication", "MedicationStatement"),
    ("includeConsultations", "Encounter"),
    ("includeProblems", "Condition"),
    ("includeImmunisations", "Immunization"),
    ("includeInvestigations", "Observation"),
];

/// Every literal reference in `v`.
fn references_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(fields) => {
            if let Some(r) = fields.get("reference").and_then(Value::as_str) {
                out.push(r.to_owned());
            }
            fields.values().for_each(|x| references_in(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| references_in(x, out)),
        _ => {}
    }
}

/// PRV-REF-01: the structured record of every area the supplier may read; each
/// reference names a resource in the Bundle, or one a read with the same token answers,
/// and the Bundle and each List read back by their ids.
async fn references_resolve(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Patient", 'r')?;
    let mut parameters = vec![json!({
        "name": "patientNHSNumber",
        "valueIdentifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs}
    })];
    for (name, resource) in STRUCTURED_AREAS {
        if !sup.has_scope(resource, 'r') {
            continue;
        }
        parameters.push(if name == "includeAllergies" {
            json!({"name": name, "part": [{"name": "includeResolvedAllergies", "valueBoolean": true}]})
        } else {
            json!({"name": name})
        });
    }
    let body = json!({"resourceType": "Parameters", "parameter": parameters});
    let base = &ctx.manifest.base_url;
    let a = p
        .call(
            "POST",
            &format!("{base}/Patient/$gpc.getstructuredrecord"),
            Some(token),
            &[("content-type", "application/fhir+json")],
            body.to_string().as_bytes(),
        )
        .await?;
    ensure(a.status == 200, || {
        format!("the structured record answered HTTP {}", a.status)
    })?;
    let v = a.json()?;
    let resources: Vec<&Value> = v["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .collect();
    let local: Vec<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut outside = Vec::new();
    for r in &resources {
        let mut refs = Vec::new();
        references_in(r, &mut refs);
        for reference in refs {
            if !local.contains(&reference) && !outside.contains(&reference) {
                outside.push(reference);
            }
        }
    }
    // The Bundle and its Lists are read back by their ids too: every fullUrl resolves.
    outside.push(format!("Bundle/{}", v["id"].as_str().unwrap_or("")));
    outside.extend(local.iter().filter(|l| l.starts_with("List/")).cloned());
    for reference in outside {
        let read = p.get(&format!("{base}/{reference}"), Some(token)).await?;
        ensure(read.status == 200, || {
            format!(
                "{reference} (outside the Bundle, or its own id) answered HTTP {} when read",
                read.status
            )
        })?;
        let got = read.json()?;
        let named = format!(
            "{}/{}",
            got["resourceType"].as_str().unwrap_or(""),
            got["id"].as_str().unwrap_or("")
        );
        ensure(named == reference, || {
            format!("{reference} read as {named}")
        })?;
    }
    Ok(())
}

/// What a per-system test works on: the kit's supplier, its token, and the system's
/// ordinary test patient (if the manifest has one).
struct On<'a> {
    ctx: &'a Ctx,
    sup: &'a Supplier,
    token: &'a str,
    patient: Option<&'a str>,
}

/// A manifest patient on `system` the supplier is paired with, with `flag` ("" = none).
fn find(ctx: &Ctx, sup: &Supplier, system: &str, flag: &str) -> Option<String> {
    ctx.manifest
        .patients
        .iter()
        .find(|p| {
            p.system == system
                && sup.practices.contains(&p.practice)
                && if flag.is_empty() {
                    p.flags.is_empty()
                } else {
                    p.flags.iter().any(|f| f == flag)
                }
        })
        .map(|p| p.nhs_number.clone())
}

fn need(patient: Option<&str>, what: &str) -> Result<String, Verdict> {
    patient.map(str::to_owned).ok_or_else(|| {
        Verdict::Omit(format!(
            "the manifest has no {what} patient on this GP system paired with the kit's supplier"
        ))
    })
}

async fn patient_read(ctx: &Ctx, token: &str, patient: Option<&str>, p: &mut Probe) -> Check {
    let nhs = need(patient, "ordinary")?;
    let a = p
        .get(
            &format!("{}/Patient/{nhs}", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    let v = a.json()?;
    ensure(v["resourceType"] == "Patient", || {
        format!("resourceType is {}", v["resourceType"])
    })?;
    let profiles = v["meta"]["profile"].as_array().cloned().unwrap_or_default();
    ensure(profiles.iter().any(|x| x == UK_CORE_PATIENT), || {
        format!("meta.profile does not name {UK_CORE_PATIENT}")
    })?;
    let ids = v["identifier"].as_array().cloned().unwrap_or_default();
    ensure(
        ids.iter()
            .any(|i| i["system"] == NHS_NUMBER_SYSTEM && i["value"] == nhs.as_str()),
        || format!("no identifier with system {NHS_NUMBER_SYSTEM} and the patient's NHS number"),
    )
}

async fn search(
    ctx: &Ctx,
    sup: &Supplier,
    token: &str,
    patient: Option<&str>,
    resource: &str,
    p: &mut Probe,
) -> Check {
    let nhs = need(patient, "ordinary")?;
    if !sup.has_scope(resource, 's') {
        return Err(Verdict::Skip(format!(
            "{} holds no system/{resource}.s scope",
            sup.client_id
        )));
    }
    let a = p
        .get(
            &format!("{}/{resource}?patient={nhs}", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    searchset(&a, resource)
}

fn searchset(a: &Answer, resource: &str) -> Check {
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    let v = a.json()?;
    ensure(
        v["resourceType"] == "Bundle" && v["type"] == "searchset",
        || {
            format!(
                "expected a searchset Bundle, got {} of type {}",
                v["resourceType"], v["type"]
            )
        },
    )?;
    let links = v["link"].as_array().cloned().unwrap_or_default();
    ensure(
        links
            .iter()
            .any(|l| l["relation"] == "self" && l["url"].is_string()),
        || "no link with relation 'self'".into(),
    )?;
    for (i, e) in v["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let t = &e["resource"]["resourceType"];
        let is_match = e["search"]["mode"] != "include";
        if is_match {
            ensure(t == resource, || {
                format!("entry[{i}] is a {t}, not a {resource}")
            })?;
        }
    }
    Ok(())
}

async fn refused(
    ctx: &Ctx,
    token: &str,
    patient: Option<&str>,
    status: u16,
    code: &str,
    p: &mut Probe,
) -> Check {
    let nhs = need(
        patient,
        if status == 403 {
            "dissent"
        } else {
            "sensitive"
        },
    )?;
    let a = p
        .get(
            &format!("{}/Patient/{nhs}", ctx.manifest.base_url),
            Some(token),
        )
        .await?;
    ensure(a.status == status, || {
        format!("expected HTTP {status}, got {}", a.status)
    })?;
    super::security::outcome(&a, code)
}

const SNOMED: &str = "http://snomed.info/sct";
/// Pages followed at most, so a next link that loops cannot hold the run.
const MAX_PAGES: usize = 50;

/// The search scope `resource` needs, or a skip saying the supplier lacks it.
fn need_scope(sup: &Supplier, resource: &str, interaction: char) -> Check {
    if sup.has_scope(resource, interaction) {
        Ok(())
    } else {
        Err(Verdict::Omit(format!(
            "{} holds no system/{resource}.{interaction} scope",
            sup.client_id
        )))
    }
}

/// The matched resources of a searchset.
fn matches(v: &Value) -> Vec<Value> {
    v["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter(|e| e["search"]["mode"] != "include")
                .map(|e| e["resource"].clone())
                .collect()
        })
        .unwrap_or_default()
}

/// All of a search's matches, following `next` links (at most [`MAX_PAGES`]).
async fn search_all(
    url: &str,
    resource: &str,
    token: &str,
    p: &mut Probe,
) -> Result<(Vec<Value>, usize), Verdict> {
    let mut out = Vec::new();
    let mut next = Some(url.to_owned());
    let mut pages = 0;
    while let Some(url) = next.take() {
        if pages == MAX_PAGES {
            return Err(Verdict::Fail(format!(
                "still a next link after {MAX_PAGES} pages: paging does not end"
            )));
        }
        let a = p.get(&url, Some(token)).await?;
        searchset(&a, resource).map_err(|v| match v {
            Verdict::Fail(m) => Verdict::Fail(format!("page {}: {m}", pages + 1)),
            other => other,
        })?;
        let v = a.json()?;
        out.extend(matches(&v));
        pages += 1;
        next = v["link"].as_array().and_then(|ls| {
            ls.iter()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str().map(str::to_owned))
        });
    }
    Ok((out, pages))
}

async fn paging(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Observation", 's')?;
    let base = format!("{}/Observation?patient={nhs}", ctx.manifest.base_url);
    let (all, _) = search_all(&format!("{base}&_count=250"), "Observation", token, p).await?;
    if all.len() <= 2 {
        return Err(Verdict::Skip(format!(
            "the patient has {} Observation(s): too few to page by 2",
            all.len()
        )));
    }
    let evidence_from = p.evidence.len();
    let (paged, pages) = search_all(&format!("{base}&_count=2"), "Observation", token, p).await?;
    // The long unpaged answer is not what this test is about: keep its request only.
    for e in p.evidence.iter_mut().take(evidence_from) {
        e.response_body = "(the unpaged search: omitted)".into();
    }
    ensure(pages >= all.len().div_ceil(2), || {
        format!(
            "{} Observations came in {pages} page(s) of _count=2: the pages are larger than asked",
            all.len()
        )
    })?;
    let ids = |v: &[Value]| -> Vec<String> {
        let mut ids: Vec<String> = v
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let (want, got) = (ids(&all), ids(&paged));
    let mut dedup = got.clone();
    dedup.dedup();
    ensure(dedup.len() == got.len(), || {
        format!(
            "{} entries appeared on more than one page",
            got.len() - dedup.len()
        )
    })?;
    ensure(want == got, || {
        format!(
            "paging by 2 found {} Observations over {pages} pages, the unpaged search {}: entries were lost or added between pages",
            got.len(),
            want.len()
        )
    })
}

/// The date (`YYYY-MM-DD`) an Observation is filed under.
fn effective_day(r: &Value) -> Option<String> {
    r["effectiveDateTime"]
        .as_str()
        .or_else(|| r["effectivePeriod"]["start"].as_str())
        .or_else(|| r["issued"].as_str())
        .and_then(|d| d.get(..10))
        .map(str::to_owned)
}

/// The ordinary patient's Observations, unfiltered, with the search URL they came from.
async fn observations(on: &On<'_>, p: &mut Probe) -> Result<(String, Vec<Value>), Verdict> {
    let nhs = need(on.patient, "ordinary")?;
    need_scope(on.sup, "Observation", 's')?;
    let base = format!(
        "{}/Observation?patient={nhs}&_count=250",
        on.ctx.manifest.base_url
    );
    let (all, _) = search_all(&base, "Observation", on.token, p).await?;
    Ok((base, all))
}

async fn date_filter(on: &On<'_>, p: &mut Probe) -> Check {
    let token = on.token;
    let (base, all) = observations(on, p).await?;
    let mut days: Vec<String> = all.iter().filter_map(effective_day).collect();
    days.sort();
    days.dedup();
    if days.len() < 2 {
        return Err(Verdict::Skip(format!(
            "the patient's Observations fall on {} date(s): a date filter cannot be seen to split them",
            days.len()
        )));
    }
    let cut = days[days.len() / 2].clone();
    let (ge, _) = search_all(&format!("{base}&date=ge{cut}"), "Observation", token, p).await?;
    let (lt, _) = search_all(&format!("{base}&date=lt{cut}"), "Observation", token, p).await?;
    for (name, set, inside) in [("ge", &ge, true), ("lt", &lt, false)] {
        if let Some(bad) = set
            .iter()
            .find(|r| effective_day(r).is_some_and(|d| (d.as_str() >= cut.as_str()) != inside))
        {
            return Err(Verdict::Fail(format!(
                "date={name}{cut} returned Observation/{} dated {}",
                bad["id"].as_str().unwrap_or("?"),
                effective_day(bad).unwrap_or_default()
            )));
        }
    }
    ensure(
        ge.len() + lt.len() == all.len() && !ge.is_empty() && !lt.is_empty(),
        || {
            format!(
                "date=ge{cut} found {} and date=lt{cut} found {}, together not the {} of the unfiltered search",
                ge.len(),
                lt.len(),
                all.len()
            )
        },
    )
}

async fn sorted_by_date(on: &On<'_>, p: &mut Probe) -> Check {
    let token = on.token;
    let (base, all) = observations(on, p).await?;
    let ids = |set: &[Value]| {
        let mut ids: Vec<String> = set.iter().map(|r| r["id"].to_string()).collect();
        ids.sort();
        ids
    };
    for (sort, newest_first) in [("-date", true), ("date", false)] {
        let (sorted, _) =
            search_all(&format!("{base}&_sort={sort}"), "Observation", token, p).await?;
        ensure(ids(&sorted) == ids(&all), || {
            format!("_sort={sort} answered other entries than the unsorted search")
        })?;
        let days: Vec<String> = sorted.iter().filter_map(effective_day).collect();
        if let Some(pair) = days
            .windows(2)
            .find(|d| (d[0] < d[1]) == newest_first && d[0] != d[1])
        {
            return Err(Verdict::Fail(format!(
                "_sort={sort} put {} before {}",
                pair[0], pair[1]
            )));
        }
    }
    Ok(())
}

async fn post_search(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Observation", 's')?;
    let params = format!("patient={nhs}&_sort=-date&_count=5");
    let base = &ctx.manifest.base_url;
    let get = p
        .get(&format!("{base}/Observation?{params}"), Some(token))
        .await?;
    searchset(&get, "Observation")?;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let post = p
        .call(
            "POST",
            &format!("{base}/Observation/_search"),
            Some(token),
            &form,
            params.as_bytes(),
        )
        .await?;
    searchset(&post, "Observation")?;
    let ids =
        |v: &Value| -> Vec<String> { matches(v).iter().map(|r| r["id"].to_string()).collect() };
    let (get, post) = (get.json()?, post.json()?);
    ensure(
        ids(&get) == ids(&post) && get["total"] == post["total"],
        || {
            format!(
                "POST _search answered {} of {}, the GET {} of {}",
                ids(&post).len(),
                post["total"],
                ids(&get).len(),
                get["total"]
            )
        },
    )
}

async fn include_performers(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Observation", 's')?;
    need_scope(sup, "Practitioner", 'r')?;
    let a = p
        .get(
            &format!(
                "{}/Observation?patient={nhs}&_count=10&_include=Observation:performer",
                ctx.manifest.base_url
            ),
            Some(token),
        )
        .await?;
    searchset(&a, "Observation")?;
    let v = a.json()?;
    let found = matches(&v);
    let mut wanted: Vec<String> = found
        .iter()
        .flat_map(|o| o["performer"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["reference"].as_str().map(str::to_owned))
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut included: Vec<String> = v["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter(|e| e["search"]["mode"] == "include")
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap_or("?"),
                        e["resource"]["id"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    included.sort();
    ensure(included == wanted, || {
        format!("the page's Observations refer to {wanted:?}; included were {included:?}")
    })?;
    ensure(
        v["total"].as_u64().is_some_and(|t| t >= found.len() as u64),
        || {
            format!(
                "total {} counts fewer than the {} matches",
                v["total"],
                found.len()
            )
        },
    )
}

async fn batch(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Patient", 'r')?;
    need_scope(sup, "Observation", 's')?;
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            { "request": { "method": "GET", "url": format!("Patient/{nhs}") } },
            { "request": { "method": "GET", "url": format!("Observation?patient={nhs}&_count=2") } }
        ]
    });
    let a = p
        .call(
            "POST",
            &ctx.manifest.base_url,
            Some(token),
            &[("content-type", "application/fhir+json")],
            bundle.to_string().as_bytes(),
        )
        .await?;
    ensure(a.status == 200, || {
        format!("expected HTTP 200, got {}", a.status)
    })?;
    let v = a.json()?;
    ensure(v["type"] == "batch-response", || {
        format!("Bundle.type is {}, not batch-response", v["type"])
    })?;
    let entries = v["entry"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<&str> = entries
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or("(none)"))
        .collect();
    ensure(
        statuses.len() == 2 && statuses.iter().all(|s| s.starts_with("200")),
        || format!("entry statuses {statuses:?}, expected two 200s"),
    )?;
    ensure(
        entries[0]["resource"]["id"] == nhs.as_str()
            && entries[1]["resource"]["type"] == "searchset",
        || "the entries are not the Patient read and the Observation search asked for".into(),
    )
}

/// The coded element of each coded resource type.
const CODED: [(&str, &str); 4] = [
    ("Condition", "code"),
    ("AllergyIntolerance", "code"),
    ("Observation", "code"),
    ("Immunization", "vaccineCode"),
];

async fn snomed_coded(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    let mut checked = 0;
    for (resource, element) in CODED {
        if !sup.has_scope(resource, 's') {
            continue;
        }
        let url = format!(
            "{}/{resource}?patient={nhs}&_count=250",
            ctx.manifest.base_url
        );
        let (found, _) = search_all(&url, resource, token, p).await?;
        for r in &found {
            let codings = r[element]["coding"].as_array().cloned().unwrap_or_default();
            if codings.is_empty() {
                continue;
            }
            checked += 1;
            ensure(
                codings.iter().any(|c| {
                    c["system"] == SNOMED && c["code"].as_str().is_some_and(|c| !c.is_empty())
                }),
                || {
                    let systems: Vec<&str> = codings
                        .iter()
                        .filter_map(|c| c["system"].as_str())
                        .collect();
                    format!(
                        "{resource}/{} {element} is coded only in {systems:?}: no SNOMED CT ({SNOMED}) coding",
                        r["id"].as_str().unwrap_or("?")
                    )
                },
            )?;
        }
    }
    if checked == 0 {
        return Err(Verdict::Skip(
            "no coded entry for the patient (or no search scope for the coded types)".into(),
        ));
    }
    Ok(())
}

/// An hour ago, RFC 3339 UTC: a reading taken today, never in the future.
fn an_hour_ago() -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Where the kit's write-back readings are identified.
const KIT_READINGS: &str = "https://gp-conformance.invalid/Id/reading";

/// The official HL7 R4 vital-signs examples, changed only as a supplier would (subject,
/// identifier; no id, text, meta, encounter or basedOn), with the SNOMED CT code, value
/// and unit GP systems record each as.
const OFFICIAL_EXAMPLES: [(&str, &str, &str, f64, &str); 5] = [
    (
        "Observation-heart-rate",
        include_str!(
            "../../../gp-gateway/tests/fixtures/hl7-r4-vital-signs/Observation-heart-rate.json"
        ),
        "364075005",
        44.0,
        "/min",
    ),
    (
        "Observation-body-height",
        include_str!(
            "../../../gp-gateway/tests/fixtures/hl7-r4-vital-signs/Observation-body-height.json"
        ),
        "50373000",
        169.9,
        "cm",
    ),
    (
        "Observation-bmi",
        include_str!("../../../gp-gateway/tests/fixtures/hl7-r4-vital-signs/Observation-bmi.json"),
        "60621009",
        16.2,
        "kg/m2",
    ),
    (
        "Observation-example",
        include_str!(
            "../../../gp-gateway/tests/fixtures/hl7-r4-vital-signs/Observation-example.json"
        ),
        "27113001",
        83.91,
        "kg",
    ),
    (
        "Observation-blood-pressure",
        include_str!(
            "../../../gp-gateway/tests/fixtures/hl7-r4-vital-signs/Observation-blood-pressure.json"
        ),
        "75367002",
        0.0,
        "",
    ),
];

/// PRV-WRT-06: the official examples are recorded on this GP system.
async fn official_examples(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Observation", 'c')?;
    let url = format!("{}/Observation", ctx.manifest.base_url);
    let run = uuid::Uuid::new_v4().simple().to_string();
    for (name, text, code, value, unit) in OFFICIAL_EXAMPLES {
        let mut body: Value = serde_json::from_str(text)
            .map_err(|e| Verdict::Fail(format!("{name}: the kit's copy does not parse: {e}")))?;
        body["subject"] = json!({"reference": format!("Patient/{nhs}")});
        body["identifier"] = json!([{"system": KIT_READINGS, "value": format!("{name}-{run}")}]);
        if code == "75367002" {
            // Its performer (Practitioner/example) is no one the GP system knows.
            let a = p
                .call(
                    "POST",
                    &url,
                    Some(token),
                    &[("content-type", "application/fhir+json")],
                    body.to_string().as_bytes(),
                )
                .await?;
            let named = a
                .json()
                .ok()
                .and_then(|o| o["issue"][0]["expression"][0].as_str().map(str::to_owned));
            ensure(
                a.status == 422 && named.as_deref() == Some("Observation.performer[0].reference"),
                || {
                    format!(
                        "{name} with performer Practitioner/example answered HTTP {} naming {named:?}, expected 422 naming Observation.performer[0].reference",
                        a.status
                    )
                },
            )?;
            if let Some(o) = body.as_object_mut() {
                o.remove("performer");
            }
        }
        let a = p
            .call(
                "POST",
                &url,
                Some(token),
                &[("content-type", "application/fhir+json")],
                body.to_string().as_bytes(),
            )
            .await?;
        ensure(a.status == 201, || {
            format!(
                "{name} answered HTTP {}{}, expected 201",
                a.status,
                a.spine_code()
                    .map(|(_, c)| format!(" ({c})"))
                    .unwrap_or_default()
            )
        })?;
        let r = a.json()?;
        let has_code = r["code"]["coding"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["system"] == SNOMED && c["code"] == code)
        });
        ensure(has_code, || {
            format!("{name} reads back without SNOMED CT {code}: {}", r["code"])
        })?;
        if !unit.is_empty() {
            ensure(
                r["valueQuantity"]["value"].as_f64() == Some(value)
                    && r["valueQuantity"]["code"] == unit,
                || {
                    format!(
                        "{name} reads back as {}, expected {value} {unit}",
                        r["valueQuantity"]
                    )
                },
            )?;
        }
    }
    Ok(())
}

async fn observation_round_trip(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Observation", 'c')?;
    need_scope(sup, "Observation", 's')?;
    let key = uuid::Uuid::new_v4().to_string();
    let when = an_hour_ago();
    let reading = json!({
        "resourceType": "Observation",
        "identifier": [{"system": KIT_READINGS, "value": key}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": SNOMED, "code": "27113001", "display": "Body weight"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 71.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    });
    let url = format!("{}/Observation", ctx.manifest.base_url);
    // The create, then the same create again (a client retrying after a lost answer).
    let mut answers = Vec::new();
    for _ in 0..2 {
        let a = p
            .call(
                "POST",
                &url,
                Some(token),
                &[("content-type", "application/fhir+json")],
                reading.to_string().as_bytes(),
            )
            .await?;
        answers.push(a);
    }
    let (a, retry) = (&answers[0], &answers[1]);
    ensure(a.status == 201, || {
        format!(
            "POST /Observation answered HTTP {}, expected 201 Created{}",
            a.status,
            a.spine_code()
                .map(|(_, c)| format!(" ({c})"))
                .unwrap_or_default()
        )
    })?;
    let created = a.json()?;
    let id = created["id"]
        .as_str()
        .filter(|i| !i.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Verdict::Fail("the 201 answer carries no Observation with an id".into()))?;
    // The retry (same identifier) is recognised, never recorded twice.
    let retried_id = retry
        .json()
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned));
    ensure(
        matches!(retry.status, 200 | 201) && retried_id.as_deref() == Some(id.as_str()),
        || {
            format!(
                "re-sending the same create (identifier {KIT_READINGS}|{key}) answered HTTP {} with Observation/{}: not recognised as the one created (Observation/{id})",
                retry.status,
                retried_id.as_deref().unwrap_or("?")
            )
        },
    )?;
    let day = when.get(..10).unwrap_or_default();
    let search = format!(
        "{}/Observation?patient={nhs}&date=ge{day}&_count=250",
        ctx.manifest.base_url
    );
    let (found, _) = search_all(&search, "Observation", token, p).await?;
    let same: Vec<&Value> = found.iter().filter(|r| r["id"] == id.as_str()).collect();
    let Some(back) = same.first() else {
        return Err(Verdict::Fail(format!(
            "the created Observation/{id} is not among the {} found by a search afterwards (date=ge{day})",
            found.len()
        )));
    };
    ensure(same.len() == 1, || {
        format!(
            "Observation/{id} appears {} times in the search",
            same.len()
        )
    })?;
    let has_code = back["code"]["coding"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["system"] == SNOMED && c["code"] == "27113001")
    });
    ensure(has_code, || {
        "the Observation read back lost its SNOMED CT code 27113001".into()
    })?;
    ensure(
        back["valueQuantity"]["value"].as_f64() == Some(71.5),
        || {
            format!(
                "the Observation read back has value {}, not 71.5",
                back["valueQuantity"]["value"]
            )
        },
    )?;
    // The supplier's identifier and the vital-signs category are read back too.
    let kept = back["identifier"].as_array().is_some_and(|ids| {
        ids.iter()
            .any(|i| i["system"] == KIT_READINGS && i["value"] == key.as_str())
    });
    ensure(kept, || {
        format!(
            "the Observation read back lost its identifier {KIT_READINGS}|{key}: {}",
            back["identifier"]
        )
    })?;
    let vital = back["category"].as_array().is_some_and(|cs| {
        cs.iter().any(|c| {
            c["coding"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["code"] == "vital-signs"))
        })
    });
    ensure(vital, || {
        format!(
            "the Observation read back lost its category vital-signs: {}",
            back["category"]
        )
    })?;
    // The Location names the version created (FHIR: [base]/Observation/{id}/_history/{vid}),
    // whose versionId the ETag quotes; (with read scope) reading it gives it back.
    let vid = created["meta"]["versionId"].as_str().unwrap_or_default();
    let expected = format!("{url}/{id}/_history/{vid}");
    ensure(
        !vid.is_empty() && a.header("location") == Some(expected.as_str()),
        || {
            format!(
                "the 201 answer's Location is {:?} (meta.versionId {vid:?}), expected {url}/{id}/_history/{{meta.versionId}}",
                a.header("location")
            )
        },
    )?;
    let etag = format!("W/\"{vid}\"");
    ensure(a.header("etag") == Some(etag.as_str()), || {
        format!(
            "the 201 answer's ETag is {:?}, expected {etag} (its meta.versionId)",
            a.header("etag")
        )
    })?;
    if need_scope(sup, "Observation", 'r').is_ok() {
        let read = p.get(&expected, Some(token)).await?;
        ensure(read.status == 200, || {
            format!(
                "GET {expected} (the Location) answered HTTP {}",
                read.status
            )
        })?;
        ensure(read.json()?["id"] == id.as_str(), || {
            format!("GET {expected} answered another Observation")
        })?;
        ensure(read.header("etag") == Some(etag.as_str()), || {
            format!(
                "GET {expected} answered ETag {:?}, not the create's {etag}",
                read.header("etag")
            )
        })?;
    }
    Ok(())
}

async fn contact_round_trip(on: &On<'_>, p: &mut Probe) -> Check {
    let (ctx, sup, token) = (on.ctx, on.sup, on.token);
    let nhs = need(on.patient, "ordinary")?;
    need_scope(sup, "Patient", 'u')?;
    let url = format!("{}/Patient/{nhs}", ctx.manifest.base_url);
    let a = p.get(&url, Some(token)).await?;
    ensure(a.status == 200, || {
        format!("reading the patient first: HTTP {}", a.status)
    })?;
    let etag = a.header("etag").map(str::to_owned).ok_or_else(|| {
        Verdict::Fail("the Patient read carries no ETag to quote in If-Match".into())
    })?;
    let before = a.json()?;
    let mobile = kit_mobile();
    let patch = json!([{"op": "add", "path": "/telecom", "value": with_mobile(&before, &mobile)}]);
    let b = p
        .call(
            "PATCH",
            &url,
            Some(token),
            &[
                ("content-type", "application/json-patch+json"),
                ("if-match", &etag),
            ],
            patch.to_string().as_bytes(),
        )
        .await?;
    ensure(b.status == 200, || {
        format!(
            "PATCH with If-Match {etag} answered HTTP {}, expected 200{}",
            b.status,
            b.spine_code()
                .map(|(_, c)| format!(" ({c})"))
                .unwrap_or_default()
        )
    })?;
    let c = p.get(&url, Some(token)).await?;
    ensure(c.status == 200, || {
        format!("reading the patient back: HTTP {}", c.status)
    })?;
    let after = c.json()?;
    let has = after["telecom"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["value"] == mobile.as_str()));
    ensure(has, || {
        format!("the patient read back has no telecom {mobile}: the change was not kept")
    })?;
    ensure(c.header("etag") != Some(etag.as_str()), || {
        format!("the patient changed but its ETag is still {etag}")
    })
}

/// A mobile number from Ofcom's drama range, different each run.
fn kit_mobile() -> String {
    format!(
        "07700 900{:03}",
        u32::from(uuid::Uuid::new_v4().as_bytes()[0]) * 999 / 255
    )
}

/// `telecom` with its mobile replaced by `mobile`.
fn with_mobile(patient: &Value, mobile: &str) -> Value {
    let mut telecom: Vec<Value> = patient["telecom"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !(t["system"] == "phone" && t["use"] == "mobile"))
        .collect();
    telecom.push(json!({"system": "phone", "value": mobile, "use": "mobile"}));
    Value::Array(telecom)
}

/// Reads the patient: the Patient and its ETag.
async fn read_patient(url: &str, token: &str, p: &mut Probe) -> Result<(Value, String), Verdict> {
    let a = p.get(url, Some(token)).await?;
    ensure(a.status == 200, || {
        format!("reading the patient: HTTP {}", a.status)
    })?;
    let etag = a.header("etag").map(str::to_owned).ok_or_else(|| {
        Verdict::Fail("the Patient read carries no ETag to quote in If-Match".into())
    })?;
    Ok((a.json()?, etag))
}

/// Sends a change to the patient and expects `status`.
async fn change_patient(
    p: &mut Probe,
    (method, url, token): (&str, &str, &str),
    content_type: &str,
    etag: &str,
    body: &Value,
    status: u16,
) -> Result<Answer, Verdict> {
    let a = p
        .call(
            method,
            url,
            Some(token),
            &[("content-type", content_type), ("if-match", etag)],
            body.to_string().as_bytes(),
        )
        .await?;
    ensure(a.status == status, || {
        format!(
            "{method} as {content_type} with If-Match {etag} answered HTTP {}, expected {status}{}",
            a.status,
            a.spine_code()
                .map(|(_, c)| format!(" ({c})"))
                .unwrap_or_default()
        )
    })?;
    Ok(a)
}

/// Reads the patient back and checks its mobile is `mobile`.
async fn mobile_read_back(url: &str, token: &str, mobile: &str, p: &mut Probe) -> Check {
    let (after, _) = read_patient(url, token, p).await?;
    let has = after["telecom"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["value"] == mobile));
    ensure(has, || {
        format!("the patient read back has no telecom {mobile}: the change was not kept")
    })
}

async fn whole_patient_update(on: &On<'_>, p: &mut Probe) -> Check {
    let nhs = need(on.patient, "ordinary")?;
    need_scope(on.sup, "Patient", 'u')?;
    let url = format!("{}/Patient/{nhs}", on.ctx.manifest.base_url);
    let (mut patient, etag) = read_patient(&url, on.token, p).await?;
    // A PUT that changes the name too is refused, naming it.
    let mut renamed = patient.clone();
    renamed["name"] = json!([{"family": "Conformance"}]);
    let a = change_patient(
        p,
        ("PUT", &url, on.token),
        "application/fhir+json",
        &etag,
        &renamed,
        422,
    )
    .await?;
    let expression = a.json()?["issue"][0]["expression"].clone();
    ensure(expression == json!(["Patient.name"]), || {
        format!("the 422 names {expression}, not [\"Patient.name\"]")
    })?;
    let mobile = kit_mobile();
    patient["telecom"] = with_mobile(&patient, &mobile);
    let b = change_patient(
        p,
        ("PUT", &url, on.token),
        "application/fhir+json",
        &etag,
        &patient,
        200,
    )
    .await?;
    ensure(b.header("etag") != Some(etag.as_str()), || {
        format!("the patient changed but its ETag is still {etag}")
    })?;
    mobile_read_back(&url, on.token, &mobile, p).await
}

async fn patch_formats(on: &On<'_>, p: &mut Probe) -> Check {
    let nhs = need(on.patient, "ordinary")?;
    need_scope(on.sup, "Patient", 'u')?;
    let url = format!("{}/Patient/{nhs}", on.ctx.manifest.base_url);
    let (patient, etag) = read_patient(&url, on.token, p).await?;
    let mobile = kit_mobile();
    let merge = json!({ "telecom": with_mobile(&patient, &mobile) });
    change_patient(
        p,
        ("PATCH", &url, on.token),
        "application/merge-patch+json",
        &etag,
        &merge,
        200,
    )
    .await?;
    mobile_read_back(&url, on.token, &mobile, p).await?;
    let (_, etag) = read_patient(&url, on.token, p).await?;
    let again = kit_mobile();
    let fhirpath = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.telecom.where(system = 'phone' and use = 'mobile').value"},
        {"name": "value", "valueString": again}
    ]}]});
    change_patient(
        p,
        ("PATCH", &url, on.token),
        "application/fhir+json",
        &etag,
        &fhirpath,
        200,
    )
    .await?;
    mobile_read_back(&url, on.token, &again, p).await
}

async fn conditional_create_in_query(on: &On<'_>, p: &mut Probe) -> Check {
    let nhs = need(on.patient, "ordinary")?;
    need_scope(on.sup, "Observation", 'c')?;
    let key = uuid::Uuid::new_v4().to_string();
    let reading = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": SNOMED, "code": "78564009", "display": "Pulse rate"}]},
        "subject": {"reference": format!("Patient/{nhs}")},
        "effectiveDateTime": an_hour_ago(),
        "valueQuantity": {"value": 64, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let url = format!(
        "{}/Observation?identifier={}%7C{key}",
        on.ctx.manifest.base_url,
        KIT_READINGS.replace(':', "%3A").replace('/', "%2F")
    );
    let mut ids = Vec::new();
    for expected in [201, 200] {
        let a = p
            .call(
                "POST",
                &url,
                Some(on.token),
                &[("content-type", "application/fhir+json")],
                reading.to_string().as_bytes(),
            )
            .await?;
        ensure(a.status == expected, || {
            format!(
                "POST /Observation?identifier={KIT_READINGS}|{key} answered HTTP {}, expected {expected}",
                a.status
            )
        })?;
        ids.push(a.json()?["id"].as_str().unwrap_or_default().to_owned());
    }
    ensure(!ids[0].is_empty() && ids[0] == ids[1], || {
        format!(
            "the second conditional create answered Observation/{}, not the first's Observation/{}",
            ids[1], ids[0]
        )
    })
}
