//! The shared, mutable population the simulators serve.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::appointments::{
    self, Appointment, Book, BookError, BookView, Books, Change, NewBooking,
};

use crate::changes::{ChangeKind, ChangeLogs, ChangesError, ChangesPage};
use crate::concepts::Concept;
use crate::date::SimDate;
use crate::documents::{
    ContentView, DocumentError, Documents, NewSimDocument, PracticeDocuments, SimDocument,
};
use crate::model::{
    Address, Code, EntryMeta, ExternalId, Observation, Practice, Qualifiers, SimPatient, SystemKind,
};
use crate::population::Population;

/// The population behind a lock, cheap to clone. Simulators read it per request (the
/// lock is never held across an `.await`); tests and later write paths update it.
#[derive(Debug, Clone)]
pub struct SimStore {
    inner: Arc<RwLock<Population>>,
    /// The practices' appointment books, opened on first use.
    books: Arc<Mutex<Books>>,
    /// The practices' documents, generated on first use.
    documents: Arc<Mutex<Documents>>,
    /// The practices' change logs.
    changes: Arc<Mutex<ChangeLogs>>,
}

impl SimStore {
    /// Wraps a population.
    pub fn new(population: Population) -> Self {
        Self {
            inner: Arc::new(RwLock::new(population)),
            books: Arc::new(Mutex::new(Books::default())),
            documents: Arc::new(Mutex::new(Documents::default())),
            changes: Arc::new(Mutex::new(ChangeLogs::default())),
        }
    }

    /// Runs `f` with shared access. A panic while writing cannot leave a half-built
    /// population worth refusing to serve, so a poisoned lock is simply re-entered.
    pub fn read<R>(&self, f: impl FnOnce(&Population) -> R) -> R {
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    /// Runs `f` with exclusive access.
    pub fn write<R>(&self, f: impl FnOnce(&mut Population) -> R) -> R {
        let mut guard = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// A copy of the practice with ODS code `ods`.
    pub fn practice(&self, ods: &str) -> Option<Practice> {
        self.read(|p| p.practice(ods).cloned())
    }

    /// A copy of the practice and the patient `nhs` registered there.
    pub fn patient(&self, ods: &str, nhs: &str) -> Option<(Practice, SimPatient)> {
        self.read(|p| Some((p.practice(ods)?.clone(), p.patient(ods, nhs)?.clone())))
    }

    /// A copy of the patient `nhs`, wherever registered.
    pub fn patient_by_nhs(&self, nhs: &str) -> Option<SimPatient> {
        self.read(|p| p.patient_by_nhs(nhs).cloned())
    }
}

// ---- appointment books ----

impl SimStore {
    /// Runs `f` on the book of practice `ods` (which must run `system`), opening it on
    /// first use. Exclusive: every booking operation is atomic under this lock, so a
    /// slot is booked at most once however many requests race for it.
    pub fn with_book<R>(
        &self,
        system: SystemKind,
        ods: &str,
        f: impl FnOnce(&Practice, &mut Book) -> R,
    ) -> Result<R, BookError> {
        let (seed, practice, patients) = self
            .read(|pop| {
                let practice = pop.practice(ods).filter(|p| p.system == system)?.clone();
                let patients: Vec<String> = pop
                    .patients
                    .iter()
                    .filter(|p| p.practice == ods)
                    .map(|p| p.nhs_number.clone())
                    .collect();
                Some((pop.seed, practice, patients))
            })
            .ok_or_else(|| BookError::PracticeNotFound(ods.to_owned()))?;
        let mut books = self.books.lock().unwrap_or_else(PoisonError::into_inner);
        let book = books.of(seed, &practice, &patients);
        Ok(f(&practice, book))
    }

    /// The slots of practice `ods` starting in `[from, to)`, with their sessions, sites
    /// and the practice's clinicians.
    pub fn book_view(
        &self,
        system: SystemKind,
        ods: &str,
        from: appointments::Instant,
        to: appointments::Instant,
    ) -> Result<BookView, BookError> {
        self.with_book(system, ods, |practice, book| book.view(practice, from, to))
    }

    /// Books `booking` in practice `ods`'s book, now; the patient must be registered
    /// there. See [`Book::book`].
    pub fn book_appointment(
        &self,
        system: SystemKind,
        ods: &str,
        booking: NewBooking,
    ) -> Result<(Appointment, bool), BookError> {
        if self.patient(ods, &booking.nhs).is_none() {
            return Err(BookError::PatientNotFound(ods.to_owned()));
        }
        let by_practice = booking.booked_by.is_none();
        let (appointment, created) = self.with_book(system, ods, |_, book| {
            book.book(booking, appointments::now())
        })??;
        if created {
            self.log_change(
                ods,
                &appointment.nhs,
                ChangeKind::AppointmentBooked,
                Some((appointment.id.clone(), Some(appointment.number))),
                by_practice,
            );
        }
        Ok((appointment, created))
    }

    /// Changes appointment `id` of practice `ods`. See [`Book::change`].
    pub fn change_appointment(
        &self,
        system: SystemKind,
        ods: &str,
        id: &str,
        expected_version: Option<u64>,
        change: Change,
    ) -> Result<Appointment, BookError> {
        self.change_appointment_by(system, ods, id, expected_version, change, false)
    }

    /// Changes appointment `id` of practice `ods` at the practice itself (a receptionist
    /// cancelling, say): as [`SimStore::change_appointment`], logged as the practice's.
    pub fn change_appointment_at_practice(
        &self,
        system: SystemKind,
        ods: &str,
        id: &str,
        change: Change,
    ) -> Result<Appointment, BookError> {
        self.change_appointment_by(system, ods, id, None, change, true)
    }

    fn change_appointment_by(
        &self,
        system: SystemKind,
        ods: &str,
        id: &str,
        expected_version: Option<u64>,
        change: Change,
        by_practice: bool,
    ) -> Result<Appointment, BookError> {
        let kind = match change {
            Change::Amend { .. } => ChangeKind::AppointmentAmended,
            Change::Cancel { .. } => ChangeKind::AppointmentCancelled,
        };
        let before = self.with_book(system, ods, |_, book| book.appointment(id).cloned())?;
        let after = self.with_book(system, ods, |_, book| {
            book.change(id, expected_version, change)
        })??;
        // A repeated cancel (or an amend to the same values) changes nothing.
        if before.as_ref() != Some(&after) {
            self.log_change(
                ods,
                &after.nhs,
                kind,
                Some((after.id.clone(), Some(after.number))),
                by_practice,
            );
        }
        Ok(after)
    }

    /// Appointment `id` (GUID or number) of practice `ods`.
    pub fn appointment(
        &self,
        system: SystemKind,
        ods: &str,
        id: &str,
    ) -> Result<Option<Appointment>, BookError> {
        self.with_book(system, ods, |_, book| book.appointment(id).cloned())
    }

    /// An appointment booked at practice `ods` itself (no booking organisation), still
    /// standing and starting after `after`, of a patient registered there (most practice
    /// bookings hold patients the simulator does not have): what tests of "booked at the
    /// practice" read, list and cancel. `None` when there is none.
    pub fn practice_booking(
        &self,
        system: SystemKind,
        ods: &str,
        after: appointments::Instant,
    ) -> Option<Appointment> {
        let candidates = self
            .with_book(system, ods, |_, book| {
                book.appointments
                    .iter()
                    .filter(|a| {
                        a.booked_by.is_none()
                            && a.state == appointments::AppointmentState::Booked
                            && a.start > after
                    })
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .ok()?;
        candidates
            .into_iter()
            .find(|a| self.patient(ods, &a.nhs).is_some())
    }

    /// Patient `nhs`'s appointments at practice `ods` overlapping `[from, to)`.
    pub fn appointments_of(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        from: appointments::Instant,
        to: appointments::Instant,
    ) -> Result<Vec<Appointment>, BookError> {
        if self.patient(ods, nhs).is_none() {
            return Err(BookError::PatientNotFound(ods.to_owned()));
        }
        self.with_book(system, ods, |_, book| book.appointments_of(nhs, from, to))
    }
}

// ---- documents ----

impl SimStore {
    /// Runs `f` on the documents of practice `ods` (which must run `system`), generating
    /// them on first use. Exclusive: every document operation is atomic under this lock.
    pub fn with_documents<R>(
        &self,
        system: SystemKind,
        ods: &str,
        f: impl FnOnce(&mut PracticeDocuments) -> R,
    ) -> Result<R, DocumentError> {
        let (seed, practice, patients) = self
            .read(|pop| {
                let practice = pop.practice(ods).filter(|p| p.system == system)?.clone();
                let patients: Vec<(String, crate::date::SimDate)> = pop
                    .patients
                    .iter()
                    .filter(|p| p.practice == ods)
                    .map(|p| (p.nhs_number.clone(), p.birth_date))
                    .collect();
                Some((pop.seed, practice, patients))
            })
            .ok_or_else(|| DocumentError::PracticeNotFound(ods.to_owned()))?;
        let mut documents = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(f(documents.of(seed, &practice, &patients)))
    }

    fn registered(&self, ods: &str, nhs: &str) -> Result<(), DocumentError> {
        match self.patient(ods, nhs) {
            Some(_) => Ok(()),
            None => Err(DocumentError::PatientNotFound(ods.to_owned())),
        }
    }

    /// Patient `nhs`'s documents at practice `ods`, newest first.
    pub fn documents_of(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
    ) -> Result<Vec<SimDocument>, DocumentError> {
        self.with_documents(system, ods, |_| ())?;
        self.registered(ods, nhs)?;
        self.with_documents(system, ods, |d| d.of_patient(nhs))
    }

    /// Content `id` (GUID or number) of practice `ods`; `None` when there is none.
    pub fn document_content(
        &self,
        system: SystemKind,
        ods: &str,
        id: &str,
    ) -> Result<Option<ContentView>, DocumentError> {
        self.with_documents(system, ods, |d| d.content(id))
    }

    /// Document `id` (GUID or number) of practice `ods`.
    pub fn document(
        &self,
        system: SystemKind,
        ods: &str,
        id: &str,
    ) -> Result<Option<SimDocument>, DocumentError> {
        self.with_documents(system, ods, |d| d.document(id).cloned())
    }

    /// Keeps uploaded content, unfiled, in patient `nhs`'s record at practice `ods`.
    pub fn upload_content(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        content_type: &str,
        bytes: bytes::Bytes,
    ) -> Result<ContentView, DocumentError> {
        self.with_documents(system, ods, |_| ())?;
        self.registered(ods, nhs)?;
        let guid = write_guid(&format!("content:{ods}:{nhs}"), next_serial());
        self.with_documents(system, ods, |d| d.upload(nhs, content_type, bytes, guid))?
    }

    /// Files `doc` in patient `nhs`'s record at practice `ods`, now. See
    /// [`PracticeDocuments::file`].
    pub fn file_document(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        doc: NewSimDocument,
    ) -> Result<(SimDocument, bool), DocumentError> {
        self.with_documents(system, ods, |_| ())?;
        self.registered(ods, nhs)?;
        let guid = write_guid(&format!("document:{}", doc.key), next_serial());
        let (filed, created) = self.with_documents(system, ods, |d| {
            d.file(nhs, doc, crate::documents::now(), guid)
        })??;
        if created {
            self.log_change(
                ods,
                nhs,
                ChangeKind::DocumentFiled,
                Some((filed.id.clone(), Some(filed.number))),
                false,
            );
        }
        Ok((filed, created))
    }
}

/// A process-wide serial, so ids of uploads are unique.
fn next_serial() -> usize {
    static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Why a simulator refused a write. Each simulator renders it in its native error format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No practice on this system has that ODS code.
    #[error("no practice with ODS code {0} on this system")]
    PracticeNotFound(String),
    /// No such patient registered at the practice.
    #[error("no patient with that NHS number is registered at {0}")]
    PatientNotFound(String),
    /// The demographics changed since the version the write was made against.
    #[error("the record was modified since the version given; it is now at {0}")]
    Conflict(SimDate),
    /// The write itself is not acceptable (unknown code, wrong unit, bad date).
    #[error("{0}")]
    Invalid(String),
}

/// One measured value a supplier writes back.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReading {
    /// A quantitative observation concept.
    pub concept: &'static Concept,
    /// In the concept's units.
    pub value: f64,
    /// This measurement's interpretation.
    pub interpretation: Option<Code>,
}

/// What [`SimStore::record_readings`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The entries holding the readings, in the order given.
    pub ids: Vec<String>,
    /// False when the key had been seen and the existing entries were answered instead.
    pub created: bool,
}

/// Complete new contact details for a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUpdate {
    /// Home landline.
    pub home_phone: Option<String>,
    /// Mobile.
    pub mobile: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Home address.
    pub address: Address,
    /// Preferred language code.
    pub language: Option<String>,
}

/// A GUID derived from the write's key, so a replayed population is reproducible.
fn write_guid(key: &str, index: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut parts = [0u64; 2];
    for (n, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (key, index, n).hash(&mut h);
        *part = h.finish();
    }
    let [a, b] = parts;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// One write of readings a third-party supplier sent.
#[derive(Debug, Clone, Copy)]
pub struct ReadingsWrite<'a> {
    /// The idempotency key.
    pub key: &'a str,
    /// When they were taken: a date-time, or a date (precision YMD) when the supplier
    /// gave only the date.
    pub date: SimDate,
    pub readings: &'a [NewReading],
    /// The supplier's identifier of what it wrote.
    pub external_id: Option<&'a ExternalId>,
    /// The whole reading's details, kept on the first entry (each entry's own
    /// interpretation comes from its reading).
    pub details: &'a Qualifiers,
    /// The practice clinician who took it (an id of `practice.clinicians`), recorded as
    /// the entries' author; `None`: the supplier (no practice author).
    pub author: Option<&'a str>,
}

impl SimStore {
    /// Records `write.readings`, taken at `write.date` (a date-time), in the record of
    /// patient `nhs` at practice `ods` (which must run `system`), under idempotency key
    /// `write.key`, each entry keeping the supplier's `write.external_id`. Atomic: a key
    /// already recorded answers its entries with `created: false`, however many
    /// concurrent requests carry it; an invalid reading records nothing.
    pub fn record_readings(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        write: ReadingsWrite<'_>,
    ) -> Result<Recorded, WriteError> {
        let ReadingsWrite {
            key,
            date,
            readings,
            external_id,
            details,
            author,
        } = write;
        if key.is_empty()
            || key.len() > 64
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(WriteError::Invalid(
                "the idempotency key must be 1 to 64 letters, digits or hyphens".into(),
            ));
        }
        if readings.is_empty() {
            return Err(WriteError::Invalid("no readings given".into()));
        }
        if date.day.is_none() {
            return Err(WriteError::Invalid(
                "the date must be a full date, with or without a time of day".into(),
            ));
        }
        for r in readings {
            if r.concept.units.is_none()
                || !r.value.is_finite()
                || r.value <= 0.0
                || r.value >= 1.0e6
            {
                return Err(WriteError::Invalid(format!(
                    "{} of {} is not a plausible reading",
                    r.concept.term, r.value
                )));
            }
        }
        let recorded = self.write(|pop| {
            let practice = pop.practice(ods).filter(|p| p.system == system);
            let Some(practice) = practice else {
                return Err(WriteError::PracticeNotFound(ods.to_owned()));
            };
            if let Some(a) = author
                && practice.clinician(a).is_none()
            {
                return Err(WriteError::Invalid(format!(
                    "no clinician {a} at the practice"
                )));
            }
            let patient = pop
                .patients
                .iter_mut()
                .find(|p| p.practice == ods && p.nhs_number == nhs)
                .ok_or_else(|| WriteError::PatientNotFound(ods.to_owned()))?;
            let existing: Vec<String> = patient
                .observations
                .iter()
                .filter(|o| o.meta.external_key.as_deref() == Some(key))
                .map(|o| o.meta.id.clone())
                .collect();
            if !existing.is_empty() {
                return Ok(Recorded {
                    ids: existing,
                    created: false,
                });
            }
            let mut ids = Vec::with_capacity(readings.len());
            for (i, r) in readings.iter().enumerate() {
                let id = write_guid(key, i);
                ids.push(id.clone());
                patient.observations.push(Observation {
                    meta: EntryMeta {
                        id,
                        date,
                        // Written by a third-party supplier, unless a practice clinician took it.
                        author: author.unwrap_or_default().to_owned(),
                        consultation: None,
                        confidential: false,
                        external_key: Some(key.to_owned()),
                        external_id: external_id.cloned(),
                    },
                    concept: r.concept,
                    value: Some(r.value),
                    units: r.concept.units,
                    qualifiers: {
                        let q = if i == 0 {
                            Qualifiers {
                                interpretation: r.interpretation.clone(),
                                ..details.clone()
                            }
                        } else {
                            Qualifiers {
                                interpretation: r.interpretation.clone(),
                                ..Qualifiers::default()
                            }
                        };
                        (q != Qualifiers::default()).then(|| Box::new(q))
                    },
                });
            }
            Ok(Recorded { ids, created: true })
        })?;
        // One change per write, naming its first entry: a blood pressure is one
        // reading, whichever entries hold it.
        if recorded.created
            && let Some(first) = recorded.ids.first()
        {
            self.log_change(
                ods,
                nhs,
                ChangeKind::ReadingRecorded,
                Some((first.clone(), None)),
                false,
            );
        }
        Ok(recorded)
    }

    /// Replaces patient `nhs`'s contact details if their demographics are still at
    /// `expected` (their `last_modified`); returns the new `last_modified`, which is
    /// always later than the old one.
    pub fn update_contact(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        expected: SimDate,
        update: ContactUpdate,
    ) -> Result<SimDate, WriteError> {
        self.update_contact_by(system, ods, nhs, expected, update, false)
    }

    /// Replaces patient `nhs`'s contact details at the practice itself (the patient
    /// told the receptionist): as [`SimStore::update_contact`], logged as the practice's.
    pub fn update_contact_at_practice(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        update: ContactUpdate,
    ) -> Result<SimDate, WriteError> {
        let expected = self
            .patient(ods, nhs)
            .ok_or_else(|| WriteError::PatientNotFound(ods.to_owned()))?
            .1
            .last_modified;
        self.update_contact_by(system, ods, nhs, expected, update, true)
    }

    fn update_contact_by(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        expected: SimDate,
        update: ContactUpdate,
        by_practice: bool,
    ) -> Result<SimDate, WriteError> {
        let modified = self.write(|pop| {
            let practice_ok = pop.practice(ods).is_some_and(|p| p.system == system);
            if !practice_ok {
                return Err(WriteError::PracticeNotFound(ods.to_owned()));
            }
            let patient = pop
                .patients
                .iter_mut()
                .find(|p| p.practice == ods && p.nhs_number == nhs)
                .ok_or_else(|| WriteError::PatientNotFound(ods.to_owned()))?;
            if patient.last_modified != expected {
                return Err(WriteError::Conflict(patient.last_modified));
            }
            patient.home_phone = update.home_phone;
            patient.mobile = update.mobile;
            patient.email = update.email;
            patient.address = update.address;
            patient.language = update.language;
            patient.last_modified = patient.last_modified.plus_seconds(1);
            Ok(patient.last_modified)
        })?;
        self.log_change(ods, nhs, ChangeKind::ContactChanged, None, by_practice);
        Ok(modified)
    }
}

// ---- change logs ----

impl SimStore {
    fn log_change(
        &self,
        ods: &str,
        nhs: &str,
        kind: ChangeKind,
        entry: Option<(String, Option<u64>)>,
        by_practice: bool,
    ) {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(ods, nhs, kind, entry, by_practice);
    }

    /// Up to `limit` changes to the records of practice `ods` (which must run
    /// `system`) after change number `after` (0: from the first), oldest first.
    pub fn changes_since(
        &self,
        system: SystemKind,
        ods: &str,
        after: u64,
        limit: usize,
    ) -> Result<ChangesPage, ChangesError> {
        if self.practice(ods).is_none_or(|p| p.system != system) {
            return Err(ChangesError::PracticeNotFound(ods.to_owned()));
        }
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .since(ods, after, limit)
    }

    /// The number of the last change to the records of practice `ods` (which must run
    /// `system`); 0 when none has been made yet. Where a reader starts from now.
    pub fn latest_change(&self, system: SystemKind, ods: &str) -> Result<u64, ChangesError> {
        if self.practice(ods).is_none_or(|p| p.system != system) {
            return Err(ChangesError::PracticeNotFound(ods.to_owned()));
        }
        Ok(self
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest(ods))
    }

    /// A reading recorded at practice `ods` by one of its clinicians (a nurse taking a
    /// blood pressure at the surgery): `value` in the concept's units, now. Returns the
    /// new entry's id.
    pub fn record_reading_at_practice(
        &self,
        system: SystemKind,
        ods: &str,
        nhs: &str,
        concept: &'static Concept,
        value: f64,
    ) -> Result<String, WriteError> {
        let id = write_guid(&format!("practice-reading:{ods}:{nhs}"), next_serial());
        self.write(|pop| {
            let practice = pop
                .practice(ods)
                .filter(|p| p.system == system)
                .ok_or_else(|| WriteError::PracticeNotFound(ods.to_owned()))?;
            let author = practice
                .clinicians
                .first()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            let patient = pop
                .patients
                .iter_mut()
                .find(|p| p.practice == ods && p.nhs_number == nhs)
                .ok_or_else(|| WriteError::PatientNotFound(ods.to_owned()))?;
            patient.observations.push(Observation {
                meta: EntryMeta {
                    id: id.clone(),
                    date: crate::documents::now(),
                    author,
                    consultation: None,
                    confidential: false,
                    external_key: None,
                    external_id: None,
                },
                concept,
                value: Some(value),
                units: concept.units,
                qualifiers: None,
            });
            Ok(())
        })?;
        self.log_change(
            ods,
            nhs,
            ChangeKind::ReadingRecorded,
            Some((id.clone(), None)),
            true,
        );
        Ok(id)
    }

    /// Moves patient `nhs` to practice `to` (any system): they leave their practice and
    /// register at `to`, their record going with them (GP2GP). Each practice's log
    /// records its side. Returns the practice they left.
    pub fn transfer_patient(&self, nhs: &str, to: &str) -> Result<String, WriteError> {
        let from = self.write(|pop| {
            let usual_gp = pop
                .practice(to)
                .ok_or_else(|| WriteError::PracticeNotFound(to.to_owned()))?
                .clinicians
                .first()
                .map(|c| c.id.clone())
                .unwrap_or_default();
            let today = crate::documents::now().truncate(crate::date::Precision::YMD);
            let patient = pop
                .patients
                .iter_mut()
                .find(|p| p.nhs_number == nhs)
                .ok_or_else(|| WriteError::PatientNotFound(to.to_owned()))?;
            if patient.practice == to {
                return Err(WriteError::Invalid(format!(
                    "the patient is already registered at {to}"
                )));
            }
            let from = std::mem::replace(&mut patient.practice, to.to_owned());
            patient.registered_on = today;
            patient.usual_gp = usual_gp;
            patient.last_modified = patient.last_modified.plus_seconds(1);
            Ok(from)
        })?;
        self.log_change(&from, nhs, ChangeKind::Deregistered, None, true);
        self.log_change(to, nhs, ChangeKind::Registered, None, true);
        Ok(from)
    }
}
