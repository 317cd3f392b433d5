// @medplum/core (npm) against the gp-gateway sandbox, the way a supplier's developer uses it.
//
// Every check is one library call sequence with MedplumClient's defaults, run once per GP
// system (on a patient of that system) or once for the gateway. Nothing here works around
// the gateway: when medplum's default call fails, the gateway is what issue 22 must change.
// Failures known today are listed in KNOWN_GAPS, strictly (see `verdict`).
//
// Run by scripts/clients (from its npm ci folder under target/):
//   node medplum_suite.mjs MANIFEST GATEWAY_BINARY RESULTS_JSON

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { MEDPLUM_VERSION, MedplumClient } from '@medplum/core';

const LIBRARY = `@medplum/core ${MEDPLUM_VERSION.split('-')[0]}`;

// The checks that fail today, each with where issue 22 asks for the fix. STRICT: a check
// listed here that passes fails the run ("remove it from KNOWN_GAPS"), and a failure not
// listed here fails the run. A key is a check name (every system it runs on) or
// "check@system" (that system only).
const KNOWN_GAPS = {
};

const SNOMED = 'http://snomed.info/sct';
const UCUM = 'http://unitsofmeasure.org';
const NHS_NUMBER = 'https://fhir.nhs.uk/Id/nhs-number';
const CLINICAL_TYPES = ['AllergyIntolerance', 'MedicationStatement', 'Condition', 'Observation', 'Immunization', 'Encounter'];
// Every patient's record refers to these; other referenced types get a check of their own.
const REFERENCED_TYPES = ['Patient', 'Practitioner', 'Organization', 'Encounter'];
// What the checks need of the reader's and the writer's scopes (SMART v2 letters).
const READER_NEEDS = { Patient: 'rus', ...Object.fromEntries(CLINICAL_TYPES.map((t) => [t, 'rs'])) };
const WRITER_NEEDS = { Observation: 'crs' };
const BOOKER_NEEDS = { Slot: 'rs', Appointment: 'cru' };
const FILER_NEEDS = { DocumentReference: 'crs', Binary: 'r' };
const OAUTH_URIS = 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris';
const CHECK_SECONDS = 60;
const HEADERS_SHOWN = ['content-type', 'if-match', 'if-none-match', 'if-none-exist', 'prefer'];
const ANSWER_HEADERS_SHOWN = ['location', 'etag', 'last-modified'];

class Failed extends Error {}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// What one supplier's client sent and was answered, and its pace. Handed to MedplumClient
// as its documented `fetch` option, so medplum's own requests go out unchanged. The pace
// keeps the supplier within its rate limit (the gateway's RateLimit header says what is
// left), so answers are real ones.
class Wire {
  constructor(supplier) {
    this.supplier = supplier;
    this.log = [];
    this.left = 5;
    this.rate = 5;
    this.burst = 10;
    this.at = performance.now();
    this.fetch = this.fetch.bind(this);
  }

  async fetch(url, init = {}) {
    const response = await fetch(url, init);
    const text = await response.clone().text();
    this.log.push(exchange(this.supplier, url, init, response, text));
    const now = performance.now();
    this.left = Math.min(this.left + ((now - this.at) / 1000) * this.rate, this.burst) - 1;
    this.at = now;
    const policy = response.headers.get('ratelimit-policy') ?? '';
    const [q, w] = [param(policy, 'q'), param(policy, 'w')];
    if (q && w) {
      [this.rate, this.burst] = [q / w, q];
    }
    const remaining = param(response.headers.get('ratelimit') ?? '', 'r');
    if (remaining !== undefined) {
      this.left = remaining;
    }
    await this.makeRoom(1);
    return response;
  }

  // Waits until `requests` fit in the budget: a batch costs one plus one per entry.
  async makeRoom(requests) {
    const now = performance.now();
    this.left = Math.min(this.left + ((now - this.at) / 1000) * this.rate, this.burst);
    this.at = now;
    if (this.left < requests) {
      await sleep(((requests - this.left) / this.rate) * 1000 + 50);
      this.left = requests;
      this.at = performance.now();
    }
  }
}

function param(header, name) {
  for (const part of header.split(';')) {
    const [key, value] = part.trim().split('=');
    if (key === name) {
      const n = Number(value);
      return Number.isNaN(n) ? undefined : n;
    }
  }
  return undefined;
}

function exchange(supplier, url, init, response, text) {
  const u = new URL(url.toString());
  const headers = new Headers(init.headers ?? {});
  const sent = HEADERS_SHOWN.filter((h) => headers.has(h)).map((h) => `${h}: ${headers.get(h)}`);
  const got = ANSWER_HEADERS_SHOWN.filter((h) => response.headers.has(h)).map((h) => `${h}: ${response.headers.get(h)}`);
  return {
    supplier,
    sent: `${init.method ?? 'GET'} ${u.pathname}${u.search}` + (sent.length ? ` [${sent.join('; ')}]` : ''),
    status: response.status,
    answer: summarise(text) + (got.length ? ` [${got.join('; ')}]` : ''),
    location: response.headers.get('location'),
    at: performance.now(),
  };
}

function summarise(text) {
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    return text.slice(0, 200);
  }
  if (!body || typeof body !== 'object') {
    return text.slice(0, 200);
  }
  if (body.resourceType === 'OperationOutcome') {
    const issue = body.issue?.[0] ?? {};
    const code = issue.details?.coding?.[0]?.code ?? issue.code;
    return `${code}: ${issue.diagnostics ?? ''}`.slice(0, 300);
  }
  if (body.resourceType === 'Bundle') {
    return `Bundle ${body.type} of ${(body.entry ?? []).length}`;
  }
  if (body.resourceType) {
    return `${body.resourceType}/${body.id ?? ''}`;
  }
  return text.slice(0, 200);
}

// A token as the README shows: a signed assertion, exchanged at the token URL.
async function accessToken(gateway, tokenUrl, clientId) {
  const assertion = execFileSync(gateway, ['client-assertion', '--client-id', clientId, '--token-url', tokenUrl], {
    encoding: 'utf8',
    timeout: 30_000,
  }).trim();
  const response = await fetch(tokenUrl, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    }),
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) {
    throw new Error(`token for ${clientId}: ${response.status} ${await response.text()}`);
  }
  return (await response.json()).access_token;
}

function clientFor(origin, base, token, wire) {
  const medplum = new MedplumClient({
    baseUrl: `${origin}/`,
    fhirUrlPath: new URL(base).pathname.replace(/^\//, ''),
    fetch: wire.fetch,
  });
  medplum.setAccessToken(token);
  return medplum;
}

// [element path, reference] for every reference in a resource.
function refsIn(node, path, out) {
  if (Array.isArray(node)) {
    for (const value of node) {
      refsIn(value, path, out);
    }
  } else if (node && typeof node === 'object') {
    if (typeof node.reference === 'string') {
      out.push([path, node.reference]);
    }
    for (const [key, value] of Object.entries(node)) {
      if (key !== 'reference') {
        refsIn(value, `${path}.${key}`, out);
      }
    }
  }
  return out;
}

const snomedCodes = (r) => (r.code?.coding ?? []).filter((c) => c.system === SNOMED).map((c) => c.code);
const day = (r) => (r.effectiveDateTime ?? r.effectivePeriod?.start ?? '').slice(0, 10);

class Suite {
  constructor(manifest, gateway) {
    this.gateway = gateway;
    this.base = manifest.base_url;
    this.tokenUrl = manifest.token_url;
    this.origin = new URL(this.base).origin;
    this.runId = new Date().toISOString().replace(/[-:]/g, '').slice(0, 15);
    // The reader reads the whole record and updates contact details (demo-consult in the
    // sandbox); the writer records readings, another supplier when one can, so the two
    // rate limits share the work (demo-monitoring).
    const reader = supplierWith(manifest, READER_NEEDS);
    const writer = supplierWith(manifest, WRITER_NEEDS, reader);
    this.readerWire = new Wire(reader);
    this.writerWire = new Wire(writer);
    this.systems = pickPatients(manifest, reader, writer);
    // The booker finds free slots and books, amends and cancels (demo-booking).
    this.bookerWire = new Wire(supplierWith(manifest, BOOKER_NEEDS));
    // The filer files documents and reads them back (demo-consult).
    this.filerWire = new Wire(supplierWith(manifest, FILER_NEEDS));
    this.practiceOf = Object.fromEntries(manifest.patients.map((p) => [p.nhs_number, p.practice]));
    this.results = [];
  }

  async connect() {
    const token = (wire) => accessToken(this.gateway, this.tokenUrl, wire.supplier);
    this.reader = clientFor(this.origin, this.base, await token(this.readerWire), this.readerWire);
    this.writer = clientFor(this.origin, this.base, await token(this.writerWire), this.writerWire);
    this.booker = clientFor(this.origin, this.base, await token(this.bookerWire), this.bookerWire);
    this.filer = clientFor(this.origin, this.base, await token(this.filerWire), this.filerWire);
  }

  // A consultation summary filed inline, listed, read back and its content byte-identical.
  async fileDocumentReadBack(s) {
    const content = `Client library check ${this.runId}: seen today, advice given.\n`;
    const sent = {
      resourceType: 'DocumentReference',
      identifier: [{ system: 'https://example.com/medplum-suite/documents', value: `${this.runId}-${s.name}` }],
      status: 'current',
      type: { coding: [{ system: 'http://snomed.info/sct', code: '371530004', display: 'Clinical consultation report' }] },
      subject: { reference: `Patient/${s.writeNhs}` },
      description: 'Client library check: consultation summary',
      content: [{ attachment: { contentType: 'text/plain', data: Buffer.from(content).toString('base64') } }],
    };
    const created = await this.filer.createResource(structuredClone(sent));
    if (!created.id) throw new Failed('the filing answered no id');
    const listed = await this.filer.searchResources('DocumentReference', { patient: s.writeNhs });
    if (!listed.some((d) => d.id === created.id)) throw new Failed(`DocumentReference/${created.id} is not in the patient's documents`);
    const got = await this.filer.readResource('DocumentReference', created.id);
    const url = got.content?.[0]?.attachment?.url;
    if (url !== `Binary/${created.id}`) throw new Failed(`attachment.url is ${url}, not Binary/${created.id}`);
    const binary = await this.filer.readResource('Binary', created.id);
    if (Buffer.from(binary.data ?? '', 'base64').toString() !== content) throw new Failed("the Binary's data differs from the content filed");
  }

  // -- reads ------------------------------------------------------------------------

  async readPatient(s) {
    const patient = await this.reader.readResource('Patient', s.readNhs);
    if (patient.id !== s.readNhs) {
      throw new Failed(`read Patient/${s.readNhs} answered Patient/${patient.id}`);
    }
  }

  async searchPatientByIdentifier(s) {
    const patient = await this.reader.searchOne('Patient', { identifier: `${NHS_NUMBER}|${s.readNhs}` });
    if (patient?.id !== s.readNhs) {
      throw new Failed(`searchOne found ${patient?.id}, not Patient/${s.readNhs}`);
    }
  }

  // The patient and every clinical resource of theirs, by the plain searches.
  async loadRecord(s) {
    if (!s.record) {
      const patient = await this.reader.readResource('Patient', s.readNhs);
      const found = {};
      for (const kind of CLINICAL_TYPES) {
        found[kind] = await this.reader.searchResources(kind, { patient: s.readNhs });
      }
      s.record = { patient, found };
    }
    return s.record;
  }

  async readSearchEntryById(s) {
    const { found } = await this.loadRecord(s);
    const problems = [];
    for (const kind of CLINICAL_TYPES) {
      const entry = found[kind][0];
      if (!entry) {
        problems.push(`no ${kind} to read`);
        continue;
      }
      try {
        const got = await this.reader.readResource(kind, entry.id);
        if (got.id !== entry.id) {
          problems.push(`${kind}/${entry.id} read as ${got.resourceType}/${got.id}`);
        }
      } catch (e) {
        problems.push(`${kind}/{id}: ${this.answerTo(e)}`);
      }
    }
    if (problems.length) {
      throw new Failed(problems.join('; '));
    }
  }

  // Every distinct reference in the patient and their resources, by target type.
  async recordReferences(s) {
    const { patient, found } = await this.loadRecord(s);
    let pairs = refsIn(patient, 'Patient', []);
    for (const kind of CLINICAL_TYPES) {
      for (const resource of found[kind]) {
        pairs = pairs.concat(refsIn(resource, kind, []));
      }
    }
    const byType = new Map();
    for (const [path, ref] of pairs) {
      const type = ref.split('/')[0];
      if (!byType.has(type)) {
        byType.set(type, new Map());
      }
      if (!byType.get(type).has(ref)) {
        byType.get(type).set(ref, path);
      }
    }
    return byType;
  }

  async resolveReferences(s, target) {
    const refs = (await this.recordReferences(s)).get(target);
    if (!refs?.size) {
      throw new Failed(`the record has no reference to a ${target}`);
    }
    const dangling = new Map();
    for (const [ref, path] of refs) {
      if (dangling.has(path)) {
        continue; // one dangling reference per element says enough
      }
      try {
        const got = await this.reader.readReference({ reference: ref });
        if (`${got.resourceType}/${got.id}` !== ref) {
          dangling.set(path, `${ref} read as ${got.resourceType}/${got.id}`);
        }
      } catch (e) {
        dangling.set(path, `${ref}: ${this.answerTo(e)}`);
      }
    }
    if (dangling.size) {
      throw new Failed('dangling: ' + [...dangling].map(([p, why]) => `${p} → ${why}`).join('; '));
    }
  }

  async resolveStructuredRecordReferences(s) {
    const params = {
      resourceType: 'Parameters',
      parameter: [
        { name: 'patientNHSNumber', valueIdentifier: { system: NHS_NUMBER, value: s.readNhs } },
        { name: 'includeAllergies', part: [{ name: 'includeResolvedAllergies', valueBoolean: true }] },
        { name: 'includeMedication' },
        { name: 'includeConsultations' },
        { name: 'includeProblems' },
        { name: 'includeImmunisations' },
        { name: 'includeInvestigations' },
      ],
    };
    const bundle = await this.reader.post(this.reader.fhirUrl('Patient', '$gpc.getstructuredrecord'), params);
    const local = new Set((bundle.entry ?? []).map((e) => `${e.resource.resourceType}/${e.resource.id}`));
    const outside = new Map();
    for (const entry of bundle.entry ?? []) {
      for (const [path, ref] of refsIn(entry.resource, entry.resource.resourceType, [])) {
        if (!local.has(ref) && !outside.has(ref)) {
          outside.set(ref, path);
        }
      }
    }
    // The Bundle and its Lists are read back by their ids too (every fullUrl resolves).
    const emitted = new Map([[`Bundle/${bundle.id}`, 'Bundle.id']]);
    for (const entry of bundle.entry ?? []) {
      if (entry.resource.resourceType === 'List') {
        emitted.set(`List/${entry.resource.id}`, `Bundle.entry[${entry.fullUrl}]`);
      }
    }
    const dangling = new Map();
    for (const [ref, path] of [...outside, ...emitted]) {
      if (dangling.has(path)) {
        continue;
      }
      try {
        const got = await this.reader.readReference({ reference: ref });
        if (`${got.resourceType}/${got.id}` !== ref) {
          dangling.set(path, `${ref} read as ${got.resourceType}/${got.id}`);
        }
      } catch (e) {
        dangling.set(path, `${ref}: ${this.answerTo(e)}`);
      }
    }
    if (dangling.size) {
      throw new Failed(
        `${outside.size} references outside the bundle; dangling: ` +
          [...dangling].map(([p, why]) => `${p} → ${why}`).join('; ')
      );
    }
  }

  async allPages(query) {
    const everything = [];
    for await (const page of this.reader.searchResourcePages('Observation', query)) {
      everything.push(...page);
    }
    return everything;
  }

  async pageDefault(s) {
    const everything = await this.allPages({ patient: s.readNhs });
    const total = (await this.reader.search('Observation', { patient: s.readNhs })).total;
    checkPages(everything, total);
  }

  async pageCount5(s) {
    const total = (await this.reader.search('Observation', { patient: s.readNhs })).total;
    if (!(total > 5)) {
      throw new Failed(`the patient has ${total} Observations: too few for pages of 5`);
    }
    checkPages(await this.allPages({ patient: s.readNhs, _count: '5' }), total);
  }

  async searchByCode(s) {
    const everything = await this.reader.searchResources('Observation', { patient: s.readNhs });
    const code = everything.flatMap(snomedCodes)[0];
    const expected = everything.filter((o) => snomedCodes(o).includes(code)).map((o) => o.id);
    const got = await this.reader.searchResources('Observation', { patient: s.readNhs, code: `${SNOMED}|${code}` });
    if (!sameIds(got.map((o) => o.id), expected)) {
      throw new Failed(`code=${SNOMED}|${code} found ${got.length}, expected ${expected.length}`);
    }
  }

  async searchByStatus(s) {
    const { found } = await this.loadRecord(s);
    const expected = found.MedicationStatement.filter((m) => m.status === 'active').map((m) => m.id);
    const got = await this.reader.searchResources('MedicationStatement', { patient: s.readNhs, status: 'active' });
    if (!sameIds(got.map((m) => m.id), expected)) {
      throw new Failed(`status=active found ${got.length}, expected ${expected.length}`);
    }
  }

  async searchByCategory(s) {
    const { found } = await this.loadRecord(s);
    const problem = (c) => (c.category ?? []).some((cc) => (cc.coding ?? []).some((x) => x.code === 'problem-list-item'));
    const expected = found.Condition.filter(problem).map((c) => c.id);
    if (!expected.length) {
      throw new Failed('the patient has no problem-list-item Condition');
    }
    const got = await this.reader.searchResources('Condition', { patient: s.readNhs, category: 'problem-list-item' });
    if (!sameIds(got.map((c) => c.id), expected)) {
      throw new Failed(`category=problem-list-item found ${got.length}, expected ${expected.length}`);
    }
  }

  async searchElements(s) {
    const got = await this.reader.searchResources('Observation', { patient: s.readNhs, _elements: 'code' });
    if (!got.length) {
      throw new Failed('no Observations');
    }
    const problems = new Set();
    for (const o of got) {
      const extra = Object.keys(o).filter((k) => !['resourceType', 'id', 'meta', 'status', 'code'].includes(k));
      if (extra.length) {
        problems.add(`kept ${extra.join(',')}`);
      }
      if (!o.code) {
        problems.add('lost code');
      }
      if (!(o.meta?.tag ?? []).some((t) => t.code === 'SUBSETTED')) {
        problems.add('not marked SUBSETTED');
      }
    }
    if (problems.size) {
      throw new Failed(`_elements=code: ${[...problems].join('; ')}`);
    }
  }

  async searchSortDate(s) {
    const got = await this.reader.searchResources('Observation', { patient: s.readNhs, _sort: '-date' });
    const moments = got.map((o) => Date.parse(o.effectiveDateTime));
    if (moments.length < 2 || moments.some((m, i) => i > 0 && moments[i - 1] < m)) {
      throw new Failed(`_sort=-date gave ${got.map((o) => o.effectiveDateTime).join(', ')}`);
    }
  }

  async searchPost(s) {
    // MedplumClient's post() with a form body to [base]/Observation/_search.
    const form = new URLSearchParams({ patient: s.readNhs, _sort: '-date', _count: '5' }).toString();
    const posted = await this.reader.post(this.reader.fhirUrl('Observation', '_search'), form, 'application/x-www-form-urlencoded');
    const get = await this.reader.search('Observation', { patient: s.readNhs, _sort: '-date', _count: '5' });
    const ids = (b) => (b.entry ?? []).map((e) => e.resource.id).join();
    if (posted.resourceType !== 'Bundle' || ids(posted) !== ids(get) || posted.total !== get.total) {
      throw new Failed(`POST _search gave ${ids(posted)} of ${posted.total}, GET ${ids(get)} of ${get.total}`);
    }
  }

  async searchInclude(s) {
    // searchResources with _include / _revinclude: the array holds the matches and what
    // came with them; the Bundle's search.mode says which is which.
    const split = (got) => {
      const entries = got.bundle?.entry ?? [];
      const matches = entries.filter((e) => e.search?.mode === 'match').map((e) => e.resource);
      const extra = entries.filter((e) => e.search?.mode === 'include').map((e) => `${e.resource.resourceType}/${e.resource.id}`);
      return { matches, extra };
    };
    const got = await this.reader.searchResources('Observation', { patient: s.readNhs, _include: 'Observation:performer', _count: '50' });
    const { matches, extra } = split(got);
    const referred = [...new Set(matches.flatMap((o) => (o.performer ?? []).map((p) => p.reference)).filter(Boolean))];
    if (!matches.length || !extra.length || !sameIds(extra, referred) || got.length !== matches.length + extra.length) {
      throw new Failed(`_include=Observation:performer: ${matches.length} matches referring to ${referred.join(', ')}; included ${extra.join(', ')}`);
    }
    const { found } = await this.loadRecord(s);
    const patient = await this.reader.searchResources('Patient', {
      identifier: `https://fhir.nhs.uk/Id/nhs-number|${s.readNhs}`,
      _revinclude: 'Condition:patient',
    });
    const rev = split(patient);
    const expected = found.Condition.map((c) => `Condition/${c.id}`);
    if (rev.matches.length !== 1 || patient.bundle?.total !== 1 || !sameIds(rev.extra, expected)) {
      throw new Failed(`_revinclude=Condition:patient included ${rev.extra.length} of the patient's ${expected.length} Conditions`);
    }
  }

  async batch(s) {
    const entry = [
      { request: { method: 'GET', url: `Patient/${s.readNhs}` } },
      { request: { method: 'GET', url: `Observation?patient=${s.readNhs}&_sort=-date&_count=2` } },
      { request: { method: 'GET', url: `Condition?patient=${s.readNhs}&_summary=count` } },
    ];
    await this.readerWire.makeRoom(1 + entry.length);
    const answer = await this.reader.executeBatch({ resourceType: 'Bundle', type: 'batch', entry });
    const statuses = (answer.entry ?? []).map((e) => e.response?.status);
    if (answer.type !== 'batch-response' || statuses.join() !== ['200 OK', '200 OK', '200 OK'].join()) {
      throw new Failed(`executeBatch answered ${answer.type} with ${statuses.join(', ')}`);
    }
    if (answer.entry[0].resource?.id !== s.readNhs || answer.entry[1].resource?.entry?.length !== 2) {
      throw new Failed('batch entries are not the read and the search asked for');
    }
  }

  async searchByDate(s) {
    const everything = await this.reader.searchResources('Observation', { patient: s.readNhs });
    const since = dateBoundary(everything.map(day));
    const expected = everything.filter((o) => day(o) >= since).map((o) => o.id);
    const got = await this.reader.searchResources('Observation', [
      ['patient', s.readNhs],
      ['date', `ge${since}`],
    ]);
    if (!sameIds(got.map((o) => o.id), expected)) {
      throw new Failed(`date=ge${since} found ${got.length}, expected ${expected.length}`);
    }
  }

  // -- writes -----------------------------------------------------------------------

  reading(s, what) {
    const effective = new Date(Date.now() - 3600_000);
    effective.setUTCMilliseconds(0);
    const body = {
      resourceType: 'Observation',
      status: 'final',
      identifier: [{ system: 'https://example.com/medplum-suite/readings', value: `${this.runId}-${s.name}-${what}` }],
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      subject: { reference: `Patient/${s.writeNhs}` },
      effectiveDateTime: effective.toISOString().replace('.000Z', '+00:00'),
    };
    if (what === 'bp') {
      body.code = { coding: [{ system: SNOMED, code: '75367002', display: 'Blood pressure' }] };
      body.component = [
        ['271649006', 128],
        ['271650006', 82],
      ].map(([code, value]) => ({
        code: { coding: [{ system: SNOMED, code }] },
        valueQuantity: { value, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' },
      }));
    } else {
      body.code = { coding: [{ system: SNOMED, code: '27113001', display: 'Body weight' }] };
      body.valueQuantity = { value: 72.4, unit: 'kg', system: UCUM, code: 'kg' };
    }
    return body;
  }

  async createAndReadBack(s, what) {
    const sent = this.reading(s, what);
    const mark = this.writerWire.log.length;
    const created = await this.writer.createResource(structuredClone(sent));
    const post = this.writerWire.log[mark];
    const problems = [];
    if (post.status !== 201) {
      problems.push(`POST answered ${post.status}, not 201`);
    }
    const prefix = `${this.base}/Observation/`;
    let id = created.id;
    if (!post.location) {
      problems.push('no Location');
    } else if (!post.location.startsWith(prefix) || post.location.includes('?')) {
      problems.push(`Location is ${post.location}, not ${prefix}{id}/_history/{vid}`);
    } else {
      id = post.location.slice(prefix.length).split('/')[0];
      if (id !== created.id) {
        problems.push(`Location names ${id}, the body ${created.id}`);
      }
    }
    if (!id) {
      throw new Failed([...problems, 'no id to read back'].join('; '));
    }
    let got;
    try {
      got = await this.writer.readResource('Observation', id);
    } catch (e) {
      throw new Failed([...problems, `read back Observation/${id}: ${this.answerTo(e)}`].join('; '));
    }
    problems.push(...differences(sent, got));
    if (problems.length) {
      throw new Failed(problems.join('; '));
    }
  }

  async conditionalCreate(s) {
    const sent = this.reading(s, 'conditional');
    const [ident] = sent.identifier;
    const query = `identifier=${ident.system}|${ident.value}`;
    const mark = this.writerWire.log.length;
    const first = await this.writer.createResourceIfNoneExist(structuredClone(sent), query);
    const again = await this.writer.createResourceIfNoneExist(structuredClone(sent), query);
    const statuses = this.writerWire.log.slice(mark).map((x) => x.status);
    if (statuses.join() !== '201,200') {
      throw new Failed(`answered ${statuses.join(', ')}, not 201 then 200`);
    }
    if (!first.id || again.id !== first.id) {
      throw new Failed(`the second answered id ${again.id}, the first ${first.id}`);
    }
  }

  newTelecom(patient, system, use, value) {
    return [...(patient.telecom ?? []).filter((t) => !(t.system === system && t.use === use)), { system, value, use }];
  }

  async patchPatientContact(s) {
    const patient = await this.reader.readResource('Patient', s.writeNhs);
    const phone = `07700 900${String(Date.now() % 1000).padStart(3, '0')}`;
    const telecom = this.newTelecom(patient, 'phone', 'mobile', phone);
    await this.reader.patchResource('Patient', s.writeNhs, [{ op: 'add', path: '/telecom', value: telecom }]);
    const got = await this.reader.readResource('Patient', s.writeNhs);
    if (!(got.telecom ?? []).some((t) => t.value === phone)) {
      throw new Failed(`mobile is not ${phone} after the patch`);
    }
  }

  async patchPatientIfMatch(s) {
    const patient = await this.reader.readResource('Patient', s.writeNhs);
    const version = patient.meta?.versionId;
    if (!version) {
      throw new Failed('Patient has no meta.versionId to send as If-Match');
    }
    const phone = `01632 960${String(Date.now() % 1000).padStart(3, '0')}`;
    const telecom = this.newTelecom(patient, 'phone', 'home', phone);
    const patched = await this.reader.patchResource('Patient', s.writeNhs, [{ op: 'add', path: '/telecom', value: telecom }], {
      headers: { 'If-Match': `W/"${version}"` },
    });
    if (!(patched.telecom ?? []).some((t) => t.value === phone)) {
      throw new Failed(`home phone is not ${phone} after the patch`);
    }
    if (patched.meta?.versionId === version) {
      throw new Failed(`meta.versionId is still ${version} after the patch`);
    }
  }

  async updatePatient(s) {
    const patient = await this.reader.readResource('Patient', s.writeNhs);
    const email = `medplum.${this.runId.toLowerCase()}@example.com`;
    patient.telecom = [...(patient.telecom ?? []).filter((t) => t.system !== 'email'), { system: 'email', value: email }];
    await this.reader.updateResource(patient);
    const got = await this.reader.readResource('Patient', s.writeNhs);
    if (!(got.telecom ?? []).some((t) => t.value === email)) {
      throw new Failed(`email is not ${email} after the update`);
    }
  }

  // -- the gateway ------------------------------------------------------------------

  // -- appointments -------------------------------------------------------------------

  // A free slot at the booking patient's practice an hour or more ahead, found with
  // searchResources and _include / _include:recurse, and its Location.
  async freeSlot(s, extra = {}) {
    const day = (d) => new Date(Date.now() + d * 86400000).toISOString().slice(0, 10);
    const got = await this.booker.searchResources('Slot', {
      start: `ge${day(0)}`,
      end: `le${day(13)}`,
      status: 'free',
      practice: this.practiceOf[s.writeNhs],
      _include: 'Slot:schedule',
      '_include:recurse': 'Schedule:actor:Location',
      ...extra,
    });
    const entries = got.bundle?.entry ?? [];
    const included = new Map(
      entries.filter((e) => e.search?.mode === 'include').map((e) => [`${e.resource.resourceType}/${e.resource.id}`, e.resource]),
    );
    const soon = Date.now() + 3600000;
    const slots = entries.filter((e) => e.search?.mode === 'match').map((e) => e.resource);
    for (const slot of slots) {
      if (slot.resourceType !== 'Slot' || Date.parse(slot.start) < soon) {
        continue;
      }
      const schedule = included.get(slot.schedule.reference);
      if (!schedule) {
        throw new Failed(`Slot/${slot.id}'s ${slot.schedule.reference} is not included`);
      }
      const location = (schedule.actor ?? []).map((a) => a.reference).find((r) => r?.startsWith('Location/'));
      if (!included.has(location)) {
        throw new Failed(`${slot.schedule.reference}'s Location ${location} is not included`);
      }
      return { slot, location, slots };
    }
    throw new Failed(`no free slot an hour or more ahead in ${entries.length} entries`);
  }

  async bookAppointmentReadBack(s) {
    const { slot, location } = await this.freeSlot(s);
    const sent = {
      resourceType: 'Appointment',
      status: 'booked',
      identifier: [{ system: 'https://medplum.example/bookings', value: `${this.runId}-${s.name}` }],
      slot: [{ reference: `Slot/${slot.id}` }],
      start: slot.start,
      end: slot.end,
      created: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      description: 'Review booked by @medplum/core',
      participant: [
        { actor: { reference: `Patient/${s.writeNhs}` }, status: 'accepted' },
        { actor: { reference: location }, status: 'accepted' },
      ],
    };
    const mark = this.bookerWire.log.length;
    const created = await this.booker.createResource(structuredClone(sent));
    const post = this.bookerWire.log[mark];
    if (post.status !== 201) {
      throw new Failed(`POST answered ${post.status}, not 201`);
    }
    const got = await this.booker.readResource('Appointment', created.id);
    const problems = [];
    if (got.status !== 'booked') {
      problems.push(`read back as ${got.status}`);
    }
    if (JSON.stringify((got.slot ?? []).map((r) => r.reference)) !== JSON.stringify([`Slot/${slot.id}`])) {
      problems.push(`read back with slots ${JSON.stringify(got.slot)}`);
    }
    if (problems.length) {
      throw new Failed(problems.join('; '));
    }
    s.appointment = { id: created.id, slot: slot.id };
  }

  async cancelAppointmentUpdate(s) {
    if (!s.appointment) {
      throw new Failed('nothing booked to cancel (book-appointment-read-back failed)');
    }
    const appointment = await this.booker.readResource('Appointment', s.appointment.id);
    await this.booker.updateResource({ ...appointment, status: 'cancelled', cancelationReason: { text: 'Patient no longer needs it' } });
    const got = await this.booker.readResource('Appointment', s.appointment.id);
    if (got.status !== 'cancelled') {
      throw new Failed(`read back as ${got.status} after the update`);
    }
    const { slots } = await this.freeSlot(s);
    if (!slots.some((slot) => slot.id === s.appointment.slot)) {
      throw new Failed(`Slot/${s.appointment.slot} is not free again after the cancel`);
    }
  }

  async discoverSmartConfiguration() {
    const url = `${this.base}/.well-known/smart-configuration`;
    const response = await fetch(url, { headers: { Accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
    const text = await response.text();
    if (!response.ok) {
      throw new Failed(`GET ${url} answered ${response.status}: ${summarise(text)}`);
    }
    const config = JSON.parse(text);
    const problems = [];
    if (config.token_endpoint !== this.tokenUrl) {
      problems.push(`token_endpoint is ${config.token_endpoint}, not ${this.tokenUrl}`);
    }
    if (!(config.token_endpoint_auth_methods_supported ?? []).includes('private_key_jwt')) {
      problems.push('token_endpoint_auth_methods_supported lacks private_key_jwt');
    }
    if (!(config.grant_types_supported ?? []).includes('client_credentials')) {
      problems.push('grant_types_supported lacks client_credentials');
    }
    if (problems.length) {
      throw new Failed(problems.join('; '));
    }
  }

  async discoverCapabilityOauthUris() {
    const statement = await this.reader.get(this.reader.fhirUrl('metadata'));
    const uris = (statement.rest?.[0]?.security?.extension ?? []).find((e) => e.url === OAUTH_URIS);
    if (!uris) {
      throw new Failed(`CapabilityStatement.rest[0].security has no ${OAUTH_URIS} extension`);
    }
    const token = (uris.extension ?? []).find((e) => e.url === 'token')?.valueUri;
    if (token !== this.tokenUrl) {
      throw new Failed(`oauth-uris token is ${token}, not ${this.tokenUrl}`);
    }
  }

  // -- running ----------------------------------------------------------------------

  checks() {
    const perSystem = [
      ['read-patient', (s) => this.readPatient(s)],
      ['search-patient-by-identifier', (s) => this.searchPatientByIdentifier(s)],
      ['read-search-entry-by-id', (s) => this.readSearchEntryById(s)],
      ...REFERENCED_TYPES.map((t) => [`resolve-record-references-${t}`, (s) => this.resolveReferences(s, t)]),
      ['resolve-structured-record-references', (s) => this.resolveStructuredRecordReferences(s)],
      ['page-default', (s) => this.pageDefault(s)],
      ['page-count-5', (s) => this.pageCount5(s)],
      ['search-by-code', (s) => this.searchByCode(s)],
      ['search-by-date', (s) => this.searchByDate(s)],
      ['search-by-status', (s) => this.searchByStatus(s)],
      ['search-by-category', (s) => this.searchByCategory(s)],
      ['search-elements', (s) => this.searchElements(s)],
      ['search-sort-date', (s) => this.searchSortDate(s)],
      ['search-post', (s) => this.searchPost(s)],
      ['search-include', (s) => this.searchInclude(s)],
      ['batch', (s) => this.batch(s)],
      ['create-observation-read-back', (s) => this.createAndReadBack(s, 'weight')],
      ['create-bp-panel-read-back', (s) => this.createAndReadBack(s, 'bp')],
      ['conditional-create', (s) => this.conditionalCreate(s)],
      ['patch-patient-contact', (s) => this.patchPatientContact(s)],
      ['patch-patient-if-match', (s) => this.patchPatientIfMatch(s)],
      ['update-patient', (s) => this.updatePatient(s)],
      ['slot-search-include', (s) => this.freeSlot(s)],
      ['book-appointment-read-back', (s) => this.bookAppointmentReadBack(s)],
      ['cancel-appointment-update', (s) => this.cancelAppointmentUpdate(s)],
      ['file-document-read-back', (s) => this.fileDocumentReadBack(s)],
    ];
    const gateway = [
      ['discover-smart-configuration', () => this.discoverSmartConfiguration()],
      ['discover-capability-oauth-uris', () => this.discoverCapabilityOauthUris()],
    ];
    return { perSystem, gateway };
  }

  async run() {
    const { perSystem, gateway } = this.checks();
    for (const [name, fn] of gateway) {
      await this.runCheck(name, 'gateway', fn);
    }
    this.progress('gateway');
    for (const s of this.systems) {
      for (const [name, fn] of perSystem) {
        await this.runCheck(name, s.name, () => fn(s));
      }
      // Referenced types beyond the usual ones get a check each.
      let extra = [];
      try {
        extra = [...(await this.recordReferences(s)).keys()].filter((t) => !REFERENCED_TYPES.includes(t)).sort();
      } catch {
        extra = [];
      }
      for (const t of extra) {
        await this.runCheck(`resolve-record-references-${t}`, s.name, () => this.resolveReferences(s, t));
      }
      this.progress(s.name);
    }
  }

  async runCheck(name, system, fn) {
    const marks = [this.readerWire.log.length, this.writerWire.log.length, this.bookerWire.log.length];
    const started = performance.now();
    let error;
    let timer;
    try {
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Failed(`no answer within ${CHECK_SECONDS} s`)), CHECK_SECONDS * 1000);
      });
      await Promise.race([fn(), timeout]);
    } catch (e) {
      error = this.answerTo(e, true);
    } finally {
      clearTimeout(timer);
    }
    const exchanges = [
      ...this.readerWire.log.slice(marks[0]),
      ...this.writerWire.log.slice(marks[1]),
      ...this.bookerWire.log.slice(marks[2]),
    ];
    const r = verdict(name, system, error, exchanges, (performance.now() - started) / 1000);
    this.results.push(r);
    if (r.outcome === 'FAIL') {
      console.log(`  FAIL ${name} @ ${system}: ${r.detail}`);
    }
  }

  progress(system) {
    const rows = this.results.filter((r) => r.system === system);
    const count = (o) => rows.filter((r) => r.outcome === o).length;
    const seconds = rows.reduce((sum, r) => sum + r.seconds, 0);
    console.log(
      `  ${system}: ${rows.length} checks, ${count('pass')} pass, ${count('gap')} known gap, ${count('FAIL')} FAIL (${seconds.toFixed(1)} s)`
    );
  }

  // The gateway's answer that made medplum throw `e`: status and Spine code, and with
  // `full` the diagnostics too. Anything else is described as it is.
  answerTo(e, full = false) {
    const logs = [this.readerWire.log, this.writerWire.log, this.bookerWire.log].filter((l) => l.length);
    const last = logs.map((l) => l[l.length - 1]).sort((a, b) => a.at - b.at).pop();
    if (!last || !e?.outcome) {
      return brief(e);
    }
    return `${last.status} ${full ? last.answer : last.answer.split(':')[0]}`;
  }
}

function checkPages(everything, total) {
  const ids = everything.map((o) => o.id);
  if (new Set(ids).size !== ids.length) {
    throw new Failed(`${ids.length - new Set(ids).size} entries came twice across pages`);
  }
  if (total !== undefined && ids.length !== total) {
    throw new Failed(`the pages gave ${ids.length} of a total of ${total}`);
  }
}

function sameIds(a, b) {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

// A day between two of the patient's entry dates with no entry on it.
function dateBoundary(days) {
  const distinct = [...new Set(days.filter(Boolean))].sort();
  const middle = Math.floor(distinct.length / 2);
  for (let i = Math.max(middle - 1, 0); i + 1 < distinct.length; i++) {
    const after = new Date(`${distinct[i]}T00:00:00Z`);
    after.setUTCDate(after.getUTCDate() + 1);
    const next = after.toISOString().slice(0, 10);
    if (next < distinct[i + 1]) {
      return next;
    }
  }
  throw new Failed(`no date boundary among ${distinct.join(', ')}`);
}

// What a read-back lost or changed of a reading as sent.
function differences(sent, got) {
  const problems = [];
  for (const key of ['status', 'code', 'subject', 'valueQuantity', 'category']) {
    if (key in sent && !contains(got[key], sent[key])) {
      problems.push(`${key} read back as ${JSON.stringify(got[key])}`);
    }
  }
  if (!contains(got.identifier, sent.identifier)) {
    problems.push(`identifier read back as ${JSON.stringify(got.identifier)}`);
  }
  if (got.effectiveDateTime && Date.parse(got.effectiveDateTime) !== Date.parse(sent.effectiveDateTime)) {
    problems.push(`effectiveDateTime read back as ${got.effectiveDateTime}`);
  }
  if (sent.component) {
    const pairs = (list) =>
      (list ?? [])
        .map((c) => `${c.code?.coding?.[0]?.code}=${c.valueQuantity?.value}`)
        .sort()
        .join(',');
    if (pairs(got.component) !== pairs(sent.component)) {
      problems.push(`components read back as ${pairs(got.component) || 'none'} (code ${snomedCodes(got)})`);
    }
  }
  return problems;
}

// Whether `got` holds everything `sent` has (the gateway may add displays, codings).
function contains(got, sent) {
  if (Array.isArray(sent)) {
    return Array.isArray(got) && sent.every((s) => got.some((g) => contains(g, s)));
  }
  if (sent && typeof sent === 'object') {
    return (
      !!got &&
      typeof got === 'object' &&
      Object.entries(sent).every(([k, v]) => k === 'display' || contains(got[k], v))
    );
  }
  return got === sent;
}

function brief(e) {
  if (e instanceof Failed) {
    return e.message;
  }
  return `${e?.constructor?.name ?? 'Error'}: ${e?.message ?? e}`.slice(0, 400);
}

function verdict(name, system, error, exchanges, seconds) {
  const gap = KNOWN_GAPS[`${name}@${system}`] ?? KNOWN_GAPS[name];
  let outcome;
  let detail;
  if (error === undefined && gap === undefined) {
    [outcome, detail] = ['pass', ''];
  } else if (error === undefined) {
    [outcome, detail] = ['FAIL', `passes now: remove it from KNOWN_GAPS (${gap})`];
  } else if (gap === undefined) {
    [outcome, detail] = ['FAIL', error];
  } else {
    [outcome, detail] = ['gap', error];
  }
  return { check: name, system, outcome, detail, gap: gap ?? null, seconds: Math.round(seconds * 100) / 100, exchanges };
}

// The first active supplier whose SMART scopes grant `needs` ({type: 'rs', …}).
function supplierWith(manifest, needs, avoid) {
  const grants = (scopes, kind, letters) =>
    scopes.some((scope) => {
      const [type, granted = ''] = scope.replace(/^system\//, '').split('.');
      return (type === kind || type === '*') && [...letters].every((l) => granted.includes(l));
    });
  const able = manifest.suppliers
    .filter((s) => s.status === 'active' && !s.operator)
    .filter((s) => Object.entries(needs).every(([kind, letters]) => grants(s.scopes, kind, letters)))
    .map((s) => s.client_id);
  if (!able.length) {
    throw new Error(`no supplier in the manifest has the scopes ${JSON.stringify(needs)}`);
  }
  return able.find((c) => c !== avoid) ?? able[0];
}

// Per GP system, two ordinary patients (no flags) at a practice both suppliers may see.
function pickPatients(manifest, reader, writer) {
  const practices = Object.fromEntries(manifest.suppliers.map((s) => [s.client_id, new Set(s.practices)]));
  const systems = new Map();
  for (const p of manifest.patients) {
    if (!p.flags.length && practices[reader].has(p.practice) && practices[writer].has(p.practice)) {
      if (!systems.has(p.system)) {
        systems.set(p.system, []);
      }
      systems.get(p.system).push(p.nhs_number);
    }
  }
  return [...systems].map(([name, nhs]) => ({ name, readNhs: nhs[0], writeNhs: nhs[1] }));
}

function table(results) {
  const systems = [...new Set(results.map((r) => r.system))];
  const checks = [...new Set(results.map((r) => r.check))];
  const cell = new Map(results.map((r) => [`${r.check}@${r.system}`, r.outcome]));
  const width = Math.max(...checks.map((c) => c.length));
  const lines = [`${LIBRARY}: check × GP system (pass / gap = known gap / FAIL)`];
  lines.push(`  ${'check'.padEnd(width)}  ` + systems.map((s) => s.padEnd(9)).join('  '));
  for (const c of checks) {
    lines.push(`  ${c.padEnd(width)}  ` + systems.map((s) => (cell.get(`${c}@${s}`) ?? '·').padEnd(9)).join('  '));
  }
  return lines.join('\n');
}

async function main() {
  const [manifestPath, gateway, resultsPath] = process.argv.slice(2);
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  const suite = new Suite(manifest, gateway);
  await suite.connect();
  console.log(`== ${LIBRARY} against ${suite.base}: ` + suite.systems.map((s) => `${s.name} ${s.readNhs}/${s.writeNhs}`).join(', '));
  await suite.run();
  const ran = new Set(suite.results.flatMap((r) => [r.check, `${r.check}@${r.system}`]));
  for (const key of Object.keys(KNOWN_GAPS).filter((k) => !ran.has(k))) {
    suite.results.push({
      check: key,
      system: 'gateway',
      outcome: 'FAIL',
      detail: 'KNOWN_GAPS names a check that did not run: remove it',
      gap: KNOWN_GAPS[key],
      seconds: 0,
      exchanges: [],
    });
  }
  console.log(table(suite.results));
  writeFileSync(resultsPath, JSON.stringify({ library: LIBRARY, results: suite.results }, null, 1));
  const failed = suite.results.filter((r) => r.outcome === 'FAIL');
  const passed = suite.results.filter((r) => r.outcome === 'pass').length;
  const gaps = suite.results.filter((r) => r.outcome === 'gap').length;
  console.log(`${LIBRARY}: ${passed} passed, ${gaps} known gaps, ${failed.length} failed`);
  for (const r of failed) {
    console.log(`FAIL ${r.check} @ ${r.system}: ${r.detail}`);
    for (const x of r.exchanges) {
      console.log(`     ${x.sent} → ${x.status} ${x.answer}`);
    }
  }
  process.exitCode = failed.length ? 1 : 0;
}

await main();
