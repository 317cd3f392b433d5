#!/usr/bin/env python3
"""fhirpy (PyPI) against the gp-gateway sandbox, the way a supplier's developer uses it.

Every check is one library call sequence with fhirpy's defaults, run once per GP system
(on a patient of that system) or once for the gateway. Nothing here works around the
gateway: when fhirpy's default call fails, the gateway is what issue 22 must change.
Failures known today are listed in KNOWN_GAPS, strictly (see `verdict`).

Run by scripts/clients: fhirpy_suite.py MANIFEST GATEWAY_BINARY RESULTS_JSON
"""

import asyncio
import base64
import datetime
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aiohttp
import fhirpy
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import BaseFHIRError, OperationOutcome

LIBRARY = f"fhirpy {fhirpy.__version__}"

# The checks that fail today, each with where issue 22 asks for the fix. STRICT: a check
# listed here that passes fails the run ("remove it from KNOWN_GAPS"), and a failure not
# listed here fails the run. A key is a check name (every system it runs on) or
# "check@system" (that system only).
KNOWN_GAPS = {
}

SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
CLINICAL_TYPES = [
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Observation",
    "Immunization",
    "Encounter",
]
# Every patient's record refers to these; other referenced types get a check of their own.
REFERENCED_TYPES = ["Patient", "Practitioner", "Organization", "Encounter"]
# What the checks need of the reader's and the writer's scopes (SMART v2 letters).
READER_NEEDS = {"Patient": "rus", **{kind: "rs" for kind in CLINICAL_TYPES}}
WRITER_NEEDS = {"Observation": "crs"}
BOOKER_NEEDS = {"Slot": "rs", "Appointment": "cru"}
FILER_NEEDS = {"DocumentReference": "crs", "Binary": "r"}
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
CHECK_SECONDS = 60
HEADERS_SHOWN = ("content-type", "if-match", "if-none-match", "if-none-exist", "prefer")
ANSWER_HEADERS_SHOWN = ("location", "etag", "last-modified")


class Failed(Exception):
    """A check's expectation that the gateway did not meet."""


class Wire:
    """What one supplier's client sent and was answered, and its pace.

    Hooked in through fhirpy's documented `aiohttp_config` (aiohttp's response hook), so
    fhirpy's own requests go out unchanged. The pace keeps the supplier within its rate
    limit (the gateway's RateLimit header says what is left), so answers are real ones.
    """

    def __init__(self, supplier):
        self.supplier = supplier
        self.log = []
        self.left = 5.0
        self.rate = 5.0
        self.burst = 10.0
        self.at = time.monotonic()

    async def hook(self, resp):
        text = (await resp.read()).decode("utf-8", "replace")
        self.log.append(exchange(self.supplier, resp, text))
        now = time.monotonic()
        self.left = min(self.left + (now - self.at) * self.rate, self.burst) - 1
        self.at = now
        policy = resp.headers.get("ratelimit-policy", "")
        q, w = param(policy, "q"), param(policy, "w")
        if q and w:
            self.rate, self.burst = q / w, q
        remaining = param(resp.headers.get("ratelimit", ""), "r")
        if remaining is not None:
            self.left = remaining
        await self.make_room(1)

    async def make_room(self, requests):
        """Waits until `requests` fit in the budget: a batch costs one plus one per entry."""
        self.left = min(self.left + (time.monotonic() - self.at) * self.rate, self.burst)
        self.at = time.monotonic()
        if self.left < requests:
            await asyncio.sleep((requests - self.left) / self.rate + 0.05)
            self.left, self.at = float(requests), time.monotonic()


def param(header, name):
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def exchange(supplier, resp, text):
    req = resp.request_info
    url = req.url
    sent = [f"{k}: {req.headers[k]}" for k in req.headers if k.lower() in HEADERS_SHOWN]
    got = [f"{k}: {resp.headers[k]}" for k in ANSWER_HEADERS_SHOWN if k in resp.headers]
    return {
        "supplier": supplier,
        "sent": f"{req.method} {url.path_qs}" + (f" [{'; '.join(sent)}]" if sent else ""),
        "status": resp.status,
        "answer": summarise(text) + (f" [{'; '.join(got)}]" if got else ""),
        "location": resp.headers.get("location"),
        "at": time.monotonic(),
    }


def summarise(text):
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    if not isinstance(body, dict):
        return text[:200]
    if body.get("resourceType") == "OperationOutcome":
        issue = (body.get("issue") or [{}])[0]
        codes = issue.get("details", {}).get("coding", [{}])
        return f"{codes[0].get('code', issue.get('code'))}: {issue.get('diagnostics', '')}"[:300]
    if body.get("resourceType") == "Bundle":
        return f"Bundle {body.get('type')} of {len(body.get('entry', []))}"
    if "resourceType" in body:
        return f"{body['resourceType']}/{body.get('id', '')}"
    return text[:200]


def access_token(gateway, token_url, client_id):
    """A token as the README shows: a signed assertion, exchanged at the token URL."""
    assertion = subprocess.run(
        [gateway, "client-assertion", "--client-id", client_id, "--token-url", token_url],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    body = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
    ).encode()
    with urllib.request.urlopen(urllib.request.Request(token_url, data=body), timeout=10) as r:
        return json.load(r)["access_token"]


def client_for(base_url, token, wire):
    return AsyncFHIRClient(
        base_url,
        authorization=f"Bearer {token}",
        aiohttp_config={
            "raise_for_status": wire.hook,
            "timeout": aiohttp.ClientTimeout(total=20),
        },
    )


def refs_in(node, path, out):
    """(element path, reference) for every reference in a resource, fhirpy's or plain."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            out.append((path, ref))
        for key, value in node.items():
            if key != "reference":
                refs_in(value, f"{path}.{key}", out)
    elif isinstance(node, list):
        for value in node:
            refs_in(value, path, out)
    return out


def snomed_codes(resource):
    return [c.get("code") for c in resource.get("code", {}).get("coding", []) if c.get("system") == SNOMED]


def codes_of(concepts):
    return [c.get("code") for concept in concepts for c in concept.get("coding", [])]


def instant_key(value):
    """A FHIR date or dateTime as a UTC instant (a date as its first moment)."""
    padded = {4: "-01-01", 7: "-01", 10: ""}.get(len(value))
    if padded is not None:
        value = f"{value}{padded}T00:00:00+00:00"
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def day(resource):
    value = resource.get("effectiveDateTime") or resource.get("effectivePeriod", {}).get("start", "")
    return value[:10]


class System:
    """One GP system's patients and what the checks learn about them."""

    def __init__(self, name, read_nhs, write_nhs):
        self.name = name
        self.read_nhs = read_nhs
        self.write_nhs = write_nhs
        self.record = None
        self.appointment = None


class Suite:
    def __init__(self, manifest, gateway):
        self.base = manifest["base_url"]
        self.token_url = manifest["token_url"]
        self.run_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
        # The reader reads the whole record and updates contact details (demo-consult in
        # the sandbox); the writer records readings, another supplier when one can, so the
        # two rate limits share the work (demo-monitoring).
        reader = supplier_with(manifest, READER_NEEDS)
        writer = supplier_with(manifest, WRITER_NEEDS, avoid=reader)
        self.reader_wire = Wire(reader)
        self.writer_wire = Wire(writer)
        self.reader = client_for(self.base, access_token(gateway, self.token_url, reader), self.reader_wire)
        self.writer = client_for(self.base, access_token(gateway, self.token_url, writer), self.writer_wire)
        self.systems = pick_patients(manifest, reader, writer)
        # The booker finds free slots and books, amends and cancels (demo-booking).
        booker = supplier_with(manifest, BOOKER_NEEDS)
        self.booker_wire = Wire(booker)
        self.booker = client_for(self.base, access_token(gateway, self.token_url, booker), self.booker_wire)
        # The filer files documents and reads them back (demo-consult).
        filer = supplier_with(manifest, FILER_NEEDS)
        self.filer_wire = Wire(filer)
        self.filer = client_for(self.base, access_token(gateway, self.token_url, filer), self.filer_wire)
        self.practice_of = {p["nhs_number"]: p["practice"] for p in manifest["patients"]}
        self.results = []

    # -- reads ------------------------------------------------------------------------

    async def read_patient(self, s):
        patient = await self.reader.reference("Patient", s.read_nhs).to_resource()
        if patient.id != s.read_nhs:
            raise Failed(f"read Patient/{s.read_nhs} answered Patient/{patient.id}")

    async def search_patient_by_identifier(self, s):
        patient = await self.reader.resources("Patient").search(identifier=f"{NHS_NUMBER}|{s.read_nhs}").first()
        if patient is None or patient.id != s.read_nhs:
            raise Failed(f"first() found {patient and patient.id}, not Patient/{s.read_nhs}")

    async def load_record(self, s):
        """The patient and every clinical resource of theirs, by the plain searches."""
        if s.record is None:
            patient = await self.reader.reference("Patient", s.read_nhs).to_resource()
            found = {}
            for kind in CLINICAL_TYPES:
                found[kind] = await self.reader.resources(kind).search(patient=s.read_nhs).fetch_all()
            s.record = (patient, found)
        return s.record

    async def read_search_entry_by_id(self, s):
        _, found = await self.load_record(s)
        problems = []
        for kind in CLINICAL_TYPES:
            if not found[kind]:
                problems.append(f"no {kind} to read")
                continue
            entry = found[kind][0]
            try:
                got = await self.reader.reference(kind, entry.id).to_resource()
                if got.id != entry.id:
                    problems.append(f"{kind}/{entry.id} read as {got.get('resourceType')}/{got.id}")
            except Exception as e:
                problems.append(f"{kind}/{{id}}: {self.answer_to(e)}")
        if problems:
            raise Failed("; ".join(problems))

    async def record_references(self, s):
        """Every distinct reference in the patient and their resources, by target type."""
        patient, found = await self.load_record(s)
        pairs = refs_in(dict(patient), "Patient", [])
        for kind in CLINICAL_TYPES:
            for resource in found[kind]:
                pairs += refs_in(dict(resource), kind, [])
        by_type = {}
        for path, ref in pairs:
            by_type.setdefault(ref.split("/")[0], {}).setdefault(ref, path)
        return by_type

    async def resolve_references(self, s, target):
        by_type = await self.record_references(s)
        refs = by_type.get(target, {})
        if not refs:
            raise Failed(f"the record has no reference to a {target}")
        dangling = {}
        for ref, path in refs.items():
            if path in dangling:
                continue  # one dangling reference per element says enough
            kind, _, rid = ref.partition("/")
            try:
                got = await self.reader.reference(kind, rid).to_resource()
                if got.get("resourceType") != kind or got.id != rid:
                    dangling[path] = f"{ref} read as {got.get('resourceType')}/{got.id}"
            except Exception as e:
                dangling[path] = f"{ref}: {self.answer_to(e)}"
        if dangling:
            raise Failed("dangling: " + "; ".join(f"{p} → {why}" for p, why in dangling.items()))

    async def structured_record(self, s):
        params = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patientNHSNumber", "valueIdentifier": {"system": NHS_NUMBER, "value": s.read_nhs}},
                {"name": "includeAllergies", "part": [{"name": "includeResolvedAllergies", "valueBoolean": True}]},
                {"name": "includeMedication"},
                {"name": "includeConsultations"},
                {"name": "includeProblems"},
                {"name": "includeImmunisations"},
                {"name": "includeInvestigations"},
            ],
        }
        return await self.reader.execute("Patient/$gpc.getstructuredrecord", method="post", data=params)

    async def resolve_structured_record_references(self, s):
        bundle = await self.structured_record(s)
        local = set()
        for entry in bundle.get("entry", []):
            r = entry["resource"]
            local.add(f"{r['resourceType']}/{r.get('id')}")
        pairs = []
        for entry in bundle.get("entry", []):
            pairs += refs_in(entry["resource"], entry["resource"]["resourceType"], [])
        outside = {}
        for path, ref in pairs:
            if ref not in local:
                outside.setdefault(ref, path)
        # The Bundle and its Lists are read back by their ids too (every fullUrl resolves).
        emitted = {f"Bundle/{bundle.get('id')}": "Bundle.id"}
        for entry in bundle.get("entry", []):
            if entry["resource"]["resourceType"] == "List":
                emitted[f"List/{entry['resource'].get('id')}"] = f"Bundle.entry[{entry.get('fullUrl')}]"
        dangling = {}
        for ref, path in [*outside.items(), *emitted.items()]:
            if path in dangling:
                continue
            kind, _, rid = ref.partition("/")
            try:
                got = await self.reader.reference(kind, rid).to_resource()
                if got.id != rid:
                    dangling[path] = f"{ref} read as {got.get('resourceType')}/{got.id}"
            except Exception as e:
                dangling[path] = f"{ref}: {self.answer_to(e)}"
        if dangling:
            raise Failed(
                f"{len(outside)} references outside the bundle; dangling: "
                + "; ".join(f"{p} → {why}" for p, why in dangling.items())
            )

    async def page_default(self, s):
        search = self.reader.resources("Observation").search(patient=s.read_nhs)
        everything = await search.fetch_all()
        bundle = await search.fetch_raw()
        check_pages(everything, bundle.get("total"))

    async def page_count_5(self, s):
        search = self.reader.resources("Observation").search(patient=s.read_nhs).limit(5)
        everything = await search.fetch_all()
        bundle = await search.fetch_raw()
        if (bundle.get("total") or 0) <= 5:
            raise Failed(f"the patient has {bundle.get('total')} Observations: too few for pages of 5")
        check_pages(everything, bundle.get("total"))

    async def search_by_code(self, s):
        everything = await self.reader.resources("Observation").search(patient=s.read_nhs).fetch_all()
        code = next(c for o in everything for c in snomed_codes(o))
        expected = {o.id for o in everything if code in snomed_codes(o)}
        got = await self.reader.resources("Observation").search(patient=s.read_nhs, code=f"{SNOMED}|{code}").fetch_all()
        if {o.id for o in got} != expected:
            raise Failed(f"code={SNOMED}|{code} found {sorted(o.id for o in got)}, expected {sorted(expected)}")

    async def search_by_date(self, s):
        everything = await self.reader.resources("Observation").search(patient=s.read_nhs).fetch_all()
        since = date_boundary([day(o) for o in everything])
        expected = {o.id for o in everything if day(o) >= since}
        got = await self.reader.resources("Observation").search(patient=s.read_nhs, date__ge=since).fetch_all()
        if {o.id for o in got} != expected:
            raise Failed(f"date=ge{since} found {len(got)}, expected {len(expected)}")

    async def search_by_status(self, s):
        _, found = await self.load_record(s)
        expected = {m.id for m in found["MedicationStatement"] if m.get("status") == "active"}
        got = await self.reader.resources("MedicationStatement").search(patient=s.read_nhs, status="active").fetch_all()
        if {m.id for m in got} != expected:
            raise Failed(f"status=active found {sorted(m.id for m in got)}, expected {sorted(expected)}")

    async def search_by_category(self, s):
        _, found = await self.load_record(s)
        expected = {c.id for c in found["Condition"] if "problem-list-item" in codes_of(c.get("category", []))}
        if not expected:
            raise Failed("the patient has no problem-list-item Condition")
        got = await self.reader.resources("Condition").search(patient=s.read_nhs, category="problem-list-item").fetch_all()
        if {c.id for c in got} != expected:
            raise Failed(f"category=problem-list-item found {sorted(c.id for c in got)}, expected {sorted(expected)}")

    async def search_elements(self, s):
        got = await self.reader.resources("Observation").search(patient=s.read_nhs).elements("code").fetch_all()
        if not got:
            raise Failed("no Observations")
        problems = set()
        for o in got:
            extra = set(o.keys()) - {"resourceType", "id", "meta", "status", "code"}
            if extra:
                problems.add(f"kept {sorted(extra)}")
            if "code" not in o:
                problems.add("lost code")
            if not any(t.get("code") == "SUBSETTED" for t in o.get("meta", {}).get("tag", [])):
                problems.add("not marked SUBSETTED")
        if problems:
            raise Failed("_elements=code: " + "; ".join(sorted(problems)))

    async def search_sort_date(self, s):
        got = await self.reader.resources("Observation").search(patient=s.read_nhs).sort("-date").fetch_all()
        moments = [instant_key(o.get("effectiveDateTime", "")) for o in got]
        if len(moments) < 2 or any(a < b for a, b in zip(moments, moments[1:])):
            raise Failed(f"_sort=-date gave {[o.get('effectiveDateTime') for o in got]}")

    async def search_post(self, s):
        # fhirpy sends no POST _search of its own; execute() posts to [base]/Observation/_search
        # with the parameters in the query (FHIR lets them be split between query and body).
        params = {"patient": s.read_nhs, "_sort": "-date", "_count": "5"}
        posted = await self.reader.execute("Observation/_search", method="post", params=params)
        get = await self.reader.resources("Observation").search(patient=s.read_nhs).sort("-date").limit(5).fetch_raw()
        ids = lambda b: [e["resource"]["id"] for e in b.get("entry", [])]
        if posted.get("resourceType") != "Bundle" or ids(posted) != ids(get) or posted.get("total") != get.get("total"):
            raise Failed(f"POST _search gave {ids(posted)} of {posted.get('total')}, GET {ids(get)} of {get.get('total')}")

    async def search_include(self, s):
        # fhirpy's include() / revinclude() send _include / _revinclude.
        def split(bundle):
            entries = bundle.get("entry", [])
            found = [e["resource"] for e in entries if e.get("search", {}).get("mode") == "match"]
            extra = {
                f"{e['resource']['resourceType']}/{e['resource']['id']}"
                for e in entries
                if e.get("search", {}).get("mode") == "include"
            }
            return found, extra

        raw = await (
            self.reader.resources("Observation")
            .search(patient=s.read_nhs)
            .include("Observation", "encounter")
            .include("Observation", "performer")
            .limit(50)
            .fetch_raw()
        )
        found, extra = split(raw)
        referred = set()
        for o in found:
            for r in [o.get("encounter") or {}] + o.get("performer", []):
                if r.get("reference"):
                    referred.add(r["reference"])
        if not found or not extra or not extra <= referred:
            raise Failed(f"_include: {len(found)} matches referring to {sorted(referred)}; included {sorted(extra)}")
        if not any(r.startswith("Practitioner/") for r in extra):
            raise Failed(f"_include=Observation:performer included no one: {sorted(extra)}")
        raw = await (
            self.reader.resources("Encounter")
            .search(patient=s.read_nhs)
            .revinclude("Observation", "encounter")
            .limit(50)
            .fetch_raw()
        )
        found, extra = split(raw)
        encounters = {f"Encounter/{e['id']}" for e in found}
        observations = await self.reader.resources("Observation").search(patient=s.read_nhs).fetch_all()
        expected = {
            f"Observation/{o.id}"
            for o in observations
            if (o.get("encounter") or {}).get("reference") in encounters
        }
        if extra != expected:
            raise Failed(f"_revinclude=Observation:encounter included {sorted(extra)}, expected {sorted(expected)}")

    async def batch(self, s):
        # fhirpy's execute() posts the batch Bundle to the base.
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": f"Patient/{s.read_nhs}"}},
                {"request": {"method": "GET", "url": f"Observation?patient={s.read_nhs}&_sort=-date&_count=2"}},
                {"request": {"method": "GET", "url": f"Condition?patient={s.read_nhs}&_summary=count"}},
            ],
        }
        await self.reader_wire.make_room(1 + len(bundle["entry"]))
        answer = await self.reader.execute("", method="post", data=bundle)
        entries = answer.get("entry", [])
        statuses = [e.get("response", {}).get("status") for e in entries]
        if answer.get("type") != "batch-response" or statuses != ["200 OK"] * 3:
            raise Failed(f"batch answered {answer.get('type')} with {statuses}")
        if entries[0]["resource"].get("id") != s.read_nhs or len(entries[1]["resource"].get("entry", [])) != 2:
            raise Failed("batch entries are not the read and the search asked for")

    # -- writes -----------------------------------------------------------------------

    def reading(self, s, what):
        effective = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).replace(microsecond=0)
        body = {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [
                {"system": "https://example.com/fhirpy-suite/readings", "value": f"{self.run_id}-{s.name}-{what}"}
            ],
            "category": [
                {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                    ]
                }
            ],
            "subject": {"reference": f"Patient/{s.write_nhs}"},
            "effectiveDateTime": effective.isoformat(),
        }
        if what == "bp":
            body["code"] = {"coding": [{"system": SNOMED, "code": "75367002", "display": "Blood pressure"}]}
            body["component"] = [
                {
                    "code": {"coding": [{"system": SNOMED, "code": c}]},
                    "valueQuantity": {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
                }
                for c, v in (("271649006", 128), ("271650006", 82))
            ]
        else:
            body["code"] = {"coding": [{"system": SNOMED, "code": "27113001", "display": "Body weight"}]}
            body["valueQuantity"] = {"value": 72.4, "unit": "kg", "system": UCUM, "code": "kg"}
        return body

    async def create_and_read_back(self, s, what):
        sent = self.reading(s, what)
        mark = len(self.writer_wire.log)
        created = await self.writer.resource("Observation", **json.loads(json.dumps(sent))).save()
        post = self.writer_wire.log[mark]
        problems = []
        if post["status"] != 201:
            problems.append(f"POST answered {post['status']}, not 201")
        location = post["location"]
        rid = created.get("id")
        prefix = f"{self.base}/Observation/"
        if not location:
            problems.append("no Location")
        elif not location.startswith(prefix) or "?" in location:
            problems.append(f"Location is {location}, not {prefix}{{id}}/_history/{{vid}}")
        else:
            rid = location[len(prefix) :].split("/")[0]
            if rid != created.get("id"):
                problems.append(f"Location names {rid}, the body {created.get('id')}")
        if not rid:
            raise Failed("; ".join(problems + ["no id to read back"]))
        try:
            got = await self.writer.reference("Observation", rid).to_resource()
        except Exception as e:
            raise Failed("; ".join(problems + [f"read back Observation/{rid}: {self.answer_to(e)}"])) from None
        problems += differences(sent, dict(got))
        if problems:
            raise Failed("; ".join(problems))

    async def create_observation_read_back(self, s):
        await self.create_and_read_back(s, "weight")

    async def create_bp_panel_read_back(self, s):
        await self.create_and_read_back(s, "bp")

    async def conditional_create(self, s):
        sent = self.reading(s, "conditional")
        ident = sent["identifier"][0]
        search = self.writer.resources("Observation").search(identifier=f"{ident['system']}|{ident['value']}")
        first, created = await search.get_or_create(self.writer.resource("Observation", **sent))
        if not created:
            raise Failed("the first conditional create did not create")
        again, created_again = await search.get_or_create(self.writer.resource("Observation", **sent))
        if created_again or again.get("id") != first.get("id"):
            raise Failed(f"the second created again (ids {first.get('id')}, {again.get('id')})")

    async def patch_patient_contact(self, s):
        patient = await self.reader.reference("Patient", s.write_nhs).to_resource()
        phone = f"01632 960{int(time.time()) % 1000:03d}"
        telecom = [t for t in patient.get("telecom", []) if not (t.get("system") == "phone" and t.get("use") == "home")]
        telecom.append({"system": "phone", "value": phone, "use": "home"})
        await patient.patch(telecom=telecom)
        got = await self.reader.reference("Patient", s.write_nhs).to_resource()
        if not any(t.get("value") == phone for t in got.get("telecom", [])):
            raise Failed(f"home phone is not {phone} after the patch")

    async def update_patient(self, s):
        patient = await self.reader.reference("Patient", s.write_nhs).to_resource()
        email = f"fhirpy.{self.run_id.lower()}@example.com"
        patient["telecom"] = [t for t in patient.get("telecom", []) if t.get("system") != "email"] + [
            {"system": "email", "value": email}
        ]
        await patient.save()
        got = await self.reader.reference("Patient", s.write_nhs).to_resource()
        if not any(t.get("value") == email for t in got.get("telecom", [])):
            raise Failed(f"email is not {email} after the update")

    async def refresh_patient(self, s):
        patient = await self.reader.reference("Patient", s.read_nhs).to_resource()
        if "versionId" not in patient.get("meta", {}):
            raise Failed("Patient has no meta.versionId, which refresh() sends as If-None-Match")
        await patient.refresh()

    def answer_to(self, e, full=False):
        """The gateway's answer that made fhirpy raise `e`: status and Spine code, and with
        `full` the diagnostics too. Anything else is described as it is."""
        last = max(
            (w.log[-1] for w in (self.reader_wire, self.writer_wire, self.booker_wire) if w.log),
            key=lambda x: x["at"],
            default=None,
        )
        if last is None or not isinstance(e, BaseFHIRError):
            return brief(e)
        return f"{last['status']} {last['answer'] if full else last['answer'].split(':')[0]}"

    # -- appointments -------------------------------------------------------------------

    async def free_slot(self, s):
        """A free slot at the booking patient's practice an hour or more ahead, found with
        fhirpy's include() (recursive=True sends _include:recurse), and its Location."""
        today = datetime.date.today()
        raw = await (
            self.booker.resources("Slot")
            .search(
                start=f"ge{today}",
                end=f"le{today + datetime.timedelta(days=13)}",
                status="free",
                practice=self.practice_of[s.write_nhs],
            )
            .include("Slot", "schedule")
            .include("Schedule", "actor", "Location", recursive=True)
            .fetch_raw()
        )
        entries = raw.get("entry", [])
        included = {
            f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"]
            for e in entries
            if e.get("search", {}).get("mode") == "include"
        }
        soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        for e in entries:
            slot = e["resource"]
            if slot["resourceType"] != "Slot" or parse_instant(slot["start"]) < soon:
                continue
            schedule = included.get(slot["schedule"]["reference"])
            if schedule is None:
                raise Failed(f"Slot/{slot['id']}'s {slot['schedule']['reference']} is not included")
            location = next(
                (a["reference"] for a in schedule.get("actor", []) if a["reference"].startswith("Location/")), None
            )
            if location not in included:
                raise Failed(f"{slot['schedule']['reference']}'s Location {location} is not included")
            return slot, location
        raise Failed(f"no free slot an hour or more ahead in {len(entries)} entries")

    async def slot_search_include(self, s):
        await self.free_slot(s)

    async def book_appointment_read_back(self, s):
        slot, location = await self.free_slot(s)
        sent = {
            "status": "booked",
            "identifier": [{"system": "https://fhirpy.example/bookings", "value": f"{self.run_id}-{s.name}"}],
            "slot": [{"reference": f"Slot/{slot['id']}"}],
            "start": slot["start"],
            "end": slot["end"],
            "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
            "description": "Review booked by fhirpy",
            "participant": [
                {"actor": {"reference": f"Patient/{s.write_nhs}"}, "status": "accepted"},
                {"actor": {"reference": location}, "status": "accepted"},
            ],
        }
        mark = len(self.booker_wire.log)
        created = await self.booker.resource("Appointment", **json.loads(json.dumps(sent))).save()
        post = self.booker_wire.log[mark]
        if post["status"] != 201:
            raise Failed(f"POST answered {post['status']}, not 201")
        got = await self.booker.reference("Appointment", created.id).to_resource()
        problems = []
        if got.get("status") != "booked":
            problems.append(f"read back as {got.get('status')}")
        if [r.get("reference") for r in got.get("slot", [])] != [f"Slot/{slot['id']}"]:
            problems.append(f"read back with slots {got.get('slot')}")
        if problems:
            raise Failed("; ".join(problems))
        s.appointment = (created.id, slot["id"])

    async def cancel_appointment_update(self, s):
        if getattr(s, "appointment", None) is None:
            raise Failed("nothing booked to cancel (book-appointment-read-back failed)")
        rid, slot_id = s.appointment
        appointment = await self.booker.reference("Appointment", rid).to_resource()
        appointment["status"] = "cancelled"
        appointment["cancelationReason"] = {"text": "Patient no longer needs it"}
        await appointment.save()
        got = await self.booker.reference("Appointment", rid).to_resource()
        if got.get("status") != "cancelled":
            raise Failed(f"read back as {got.get('status')} after the update")
        today = datetime.date.today()
        again = await (
            self.booker.resources("Slot")
            .search(
                start=f"ge{today}",
                end=f"le{today + datetime.timedelta(days=13)}",
                status="free",
                practice=self.practice_of[s.write_nhs],
            )
            .include("Slot", "schedule")
            .fetch_raw()
        )
        if not any(e["resource"].get("id") == slot_id for e in again.get("entry", [])):
            raise Failed(f"Slot/{slot_id} is not free again after the cancel")

    # -- the gateway ------------------------------------------------------------------

    async def file_document_read_back(self, s):
        """A consultation summary filed inline, listed, read back and its content byte-identical."""
        content = f"Client library check {self.run_id}: seen today, advice given.\n".encode()
        sent = {
            "resourceType": "DocumentReference",
            "identifier": [
                {"system": "https://gp-gateway.invalid/client-suite/document", "value": f"{LIBRARY}-{self.run_id}-{s.name}"}
            ],
            "status": "current",
            "type": {
                "coding": [{"system": "http://snomed.info/sct", "code": "371530004", "display": "Clinical consultation report"}]
            },
            "subject": {"reference": f"Patient/{s.write_nhs}"},
            "description": "Client library check: consultation summary",
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(content).decode()}}],
        }
        created = await self.filer.resource("DocumentReference", **sent).save()
        rid = created.get("id")
        if not rid:
            raise Failed("the filing answered no id")
        listed = await self.filer.resources("DocumentReference").search(patient=s.write_nhs).fetch_all()
        if not any(d.get("id") == rid for d in listed):
            raise Failed(f"DocumentReference/{rid} is not in the patient's documents")
        got = await self.filer.reference("DocumentReference", rid).to_resource()
        url = got["content"][0]["attachment"].get("url")
        if url != f"Binary/{rid}":
            raise Failed(f"attachment.url is {url}, not Binary/{rid}")
        binary = await self.filer.reference("Binary", rid).to_resource()
        if base64.b64decode(binary.get("data", "")) != content:
            raise Failed("the Binary's data differs from the content filed")

    async def discover_smart_configuration(self):
        url = f"{self.base}/.well-known/smart-configuration"
        config = get_json(url)
        check_smart_configuration(config, self.token_url)

    async def discover_capability_oauth_uris(self):
        statement = await self.reader.execute("metadata", method="get")
        security = statement.get("rest", [{}])[0].get("security", {})
        uris = next((e for e in security.get("extension", []) if e.get("url") == OAUTH_URIS), None)
        if uris is None:
            raise Failed(f"CapabilityStatement.rest[0].security has no {OAUTH_URIS} extension")
        token = next((e.get("valueUri") for e in uris.get("extension", []) if e.get("url") == "token"), None)
        if token != self.token_url:
            raise Failed(f"oauth-uris token is {token}, not {self.token_url}")

    # -- running ----------------------------------------------------------------------

    def checks(self):
        per_system = [
            ("read-patient", self.read_patient),
            ("search-patient-by-identifier", self.search_patient_by_identifier),
            ("read-search-entry-by-id", self.read_search_entry_by_id),
        ]
        per_system += [(f"resolve-record-references-{t}", resolver(self, t)) for t in REFERENCED_TYPES]
        per_system += [
            ("resolve-structured-record-references", self.resolve_structured_record_references),
            ("page-default", self.page_default),
            ("page-count-5", self.page_count_5),
            ("search-by-code", self.search_by_code),
            ("search-by-date", self.search_by_date),
            ("search-by-status", self.search_by_status),
            ("search-by-category", self.search_by_category),
            ("search-elements", self.search_elements),
            ("search-sort-date", self.search_sort_date),
            ("search-post", self.search_post),
            ("search-include", self.search_include),
            ("batch", self.batch),
            ("create-observation-read-back", self.create_observation_read_back),
            ("create-bp-panel-read-back", self.create_bp_panel_read_back),
            ("conditional-create", self.conditional_create),
            ("patch-patient-contact", self.patch_patient_contact),
            ("update-patient", self.update_patient),
            ("refresh-patient", self.refresh_patient),
            ("slot-search-include", self.slot_search_include),
            ("book-appointment-read-back", self.book_appointment_read_back),
            ("cancel-appointment-update", self.cancel_appointment_update),
            ("file-document-read-back", self.file_document_read_back),
        ]
        gateway = [
            ("discover-smart-configuration", self.discover_smart_configuration),
            ("discover-capability-oauth-uris", self.discover_capability_oauth_uris),
        ]
        return per_system, gateway

    async def run(self):
        per_system, gateway = self.checks()
        for name, fn in gateway:
            await self.run_check(name, "gateway", fn)
        self.progress("gateway")
        for s in self.systems:
            for name, fn in per_system:
                await self.run_check(name, s.name, lambda fn=fn, s=s: fn(s))
            # Referenced types beyond the usual ones get a check each.
            try:
                extra = sorted(set(await self.record_references(s)) - set(REFERENCED_TYPES))
            except Exception:
                extra = []
            for t in extra:
                await self.run_check(
                    f"resolve-record-references-{t}", s.name, lambda t=t, s=s: self.resolve_references(s, t)
                )
            self.progress(s.name)

    def progress(self, system):
        rows = [r for r in self.results if r["system"] == system]
        count = {o: sum(r["outcome"] == o for r in rows) for o in ("pass", "gap", "FAIL")}
        seconds = sum(r["seconds"] for r in rows)
        print(
            f"  {system}: {len(rows)} checks, {count['pass']} pass, {count['gap']} known gap, "
            f"{count['FAIL']} FAIL ({seconds:.1f} s)",
            flush=True,
        )

    async def run_check(self, name, system, fn):
        marks = (len(self.reader_wire.log), len(self.writer_wire.log), len(self.booker_wire.log))
        started = time.monotonic()
        try:
            await asyncio.wait_for(fn(), CHECK_SECONDS)
            error = None
        except Exception as e:
            error = self.answer_to(e, full=True)
        exchanges = (
            self.reader_wire.log[marks[0] :] + self.writer_wire.log[marks[1] :] + self.booker_wire.log[marks[2] :]
        )
        r = verdict(name, system, error, exchanges, time.monotonic() - started)
        self.results.append(r)
        if r["outcome"] == "FAIL":
            print(f"  FAIL {name} @ {system}: {r['detail']}", flush=True)


def resolver(suite, target):
    return lambda s: suite.resolve_references(s, target)


def check_pages(everything, total):
    ids = [o.id for o in everything]
    if len(set(ids)) != len(ids):
        raise Failed(f"{len(ids) - len(set(ids))} entries came twice across pages")
    if total is not None and len(ids) != total:
        raise Failed(f"fetch_all gave {len(ids)} of a total of {total}")


def date_boundary(days):
    """A day between two of the patient's entry dates with no entry on it."""
    distinct = sorted(set(d for d in days if d))
    for earlier, later in zip(distinct[len(distinct) // 2 - 1 :], distinct[len(distinct) // 2 :]):
        after = datetime.date.fromisoformat(earlier) + datetime.timedelta(days=1)
        if after.isoformat() < later:
            return after.isoformat()
    raise Failed(f"no date boundary among {distinct}")


def differences(sent, got):
    """What a read-back lost or changed of a reading as sent."""
    problems = []
    for key in ("status", "code", "subject", "valueQuantity", "category"):
        if key in sent and got.get(key) != sent[key] and not contains(got.get(key), sent[key]):
            problems.append(f"{key} read back as {json.dumps(got.get(key))}")
    if not contains(got.get("identifier"), sent["identifier"]):
        problems.append(f"identifier read back as {json.dumps(got.get('identifier'))}")
    if got.get("effectiveDateTime") and parse_instant(got["effectiveDateTime"]) != parse_instant(
        sent["effectiveDateTime"]
    ):
        problems.append(f"effectiveDateTime read back as {got['effectiveDateTime']}")
    if "component" in sent:
        values = sorted(
            (c["code"]["coding"][0]["code"], c.get("valueQuantity", {}).get("value")) for c in got.get("component", [])
        )
        expected = sorted((c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in sent["component"])
        if values != expected:
            problems.append(f"components read back as {values or 'none'} (code {snomed_codes(got)})")
    return problems


def contains(got, sent):
    """Whether `got` holds everything `sent` has (the gateway may add displays, codings)."""
    if isinstance(sent, dict):
        return isinstance(got, dict) and all(contains(got.get(k), v) for k, v in sent.items() if k != "display")
    if isinstance(sent, list):
        return isinstance(got, list) and all(any(contains(g, s) for g in got) for s in sent)
    return got == sent


def parse_instant(value):
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value


def get_json(url):
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"Accept": "application/json"}), timeout=10
        ) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise Failed(f"GET {url} answered {e.code}: {summarise(e.read().decode('utf-8', 'replace'))}") from None


def check_smart_configuration(config, token_url):
    problems = []
    if config.get("token_endpoint") != token_url:
        problems.append(f"token_endpoint is {config.get('token_endpoint')}, not {token_url}")
    if "private_key_jwt" not in config.get("token_endpoint_auth_methods_supported", []):
        problems.append("token_endpoint_auth_methods_supported lacks private_key_jwt")
    if "client_credentials" not in config.get("grant_types_supported", []):
        problems.append("grant_types_supported lacks client_credentials")
    if problems:
        raise Failed("; ".join(problems))


def brief(e):
    if isinstance(e, Failed):
        return str(e)
    if isinstance(e, asyncio.TimeoutError):
        return f"no answer within {CHECK_SECONDS} s"
    text = str(e)
    if isinstance(e, OperationOutcome):
        text = summarise(json.dumps(e.resource))
    elif text.lstrip().startswith("{"):
        text = summarise(text)
    return f"{type(e).__name__}: {text}"[:400]


def verdict(name, system, error, exchanges, seconds):
    gap = KNOWN_GAPS.get(f"{name}@{system}") or KNOWN_GAPS.get(name)
    if error is None and gap is None:
        outcome, detail = "pass", ""
    elif error is None:
        outcome, detail = "FAIL", f"passes now: remove it from KNOWN_GAPS ({gap})"
    elif gap is None:
        outcome, detail = "FAIL", error
    else:
        outcome, detail = "gap", error
    return {
        "check": name,
        "system": system,
        "outcome": outcome,
        "detail": detail,
        "gap": gap,
        "seconds": round(seconds, 2),
        "exchanges": exchanges,
    }


def supplier_with(manifest, needs, avoid=None):
    """The first active supplier whose SMART scopes grant `needs` ({type: "rs", …})."""

    def grants(scopes, kind, letters):
        for scope in scopes:
            granted_type, _, granted = scope.removeprefix("system/").partition(".")
            if granted_type in (kind, "*") and set(letters) <= set(granted):
                return True
        return False

    able = [
        s["client_id"]
        for s in manifest["suppliers"]
        if s["status"] == "active"
        and not s["operator"]
        and all(grants(s["scopes"], kind, letters) for kind, letters in needs.items())
    ]
    if not able:
        raise SystemExit(f"no supplier in the manifest has the scopes {needs}")
    return next((c for c in able if c != avoid), able[0])


def pick_patients(manifest, reader, writer):
    """Per GP system, two ordinary patients (no flags) at a practice both suppliers may see."""
    practices = {s["client_id"]: set(s["practices"]) for s in manifest["suppliers"]}
    shared = practices[reader] & practices[writer]
    systems = {}
    for p in manifest["patients"]:
        if not p["flags"] and p["practice"] in shared:
            systems.setdefault(p["system"], []).append(p["nhs_number"])
    return [System(name, nhs[0], nhs[1]) for name, nhs in systems.items()]


def table(results, library):
    systems = []
    for r in results:
        if r["system"] not in systems:
            systems.append(r["system"])
    checks = []
    for r in results:
        if r["check"] not in checks:
            checks.append(r["check"])
    cell = {(r["check"], r["system"]): r["outcome"] for r in results}
    width = max(len(c) for c in checks)
    lines = [f"{library}: check × GP system (pass / gap = known gap / FAIL)"]
    lines.append(f"  {'check':<{width}}  " + "  ".join(f"{s:<9}" for s in systems))
    for c in checks:
        lines.append(f"  {c:<{width}}  " + "  ".join(f"{cell.get((c, s), '·'):<9}" for s in systems))
    return "\n".join(lines)


def main():
    manifest_path, gateway, results_path = sys.argv[1:4]
    with open(manifest_path) as f:
        manifest = json.load(f)
    suite = Suite(manifest, gateway)
    print(
        f"== {LIBRARY} against {suite.base}: "
        + ", ".join(f"{s.name} {s.read_nhs}/{s.write_nhs}" for s in suite.systems),
        flush=True,
    )
    asyncio.run(suite.run())
    ran = {r["check"] for r in suite.results} | {f"{r['check']}@{r['system']}" for r in suite.results}
    stale = sorted(k for k in KNOWN_GAPS if k not in ran)
    for key in stale:
        suite.results.append(
            {
                "check": key,
                "system": "gateway",
                "outcome": "FAIL",
                "gap": KNOWN_GAPS[key],
                "seconds": 0,
                "detail": "KNOWN_GAPS names a check that did not run: remove it",
                "exchanges": [],
            }
        )
    print(table(suite.results, LIBRARY))
    with open(results_path, "w") as f:
        json.dump({"library": LIBRARY, "results": suite.results}, f, indent=1)
    failed = [r for r in suite.results if r["outcome"] == "FAIL"]
    passed = sum(r["outcome"] == "pass" for r in suite.results)
    gaps = sum(r["outcome"] == "gap" for r in suite.results)
    print(f"{LIBRARY}: {passed} passed, {gaps} known gaps, {len(failed)} failed")
    for r in failed:
        print(f"FAIL {r['check']} @ {r['system']}: {r['detail']}")
        for x in r["exchanges"]:
            print(f"     {x['sent']} → {x['status']} {x['answer']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
