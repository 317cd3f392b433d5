#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! EMIS Web MedicalRecord XML → UK Core: the demo patient's record and a 1,000-entry
//! record, both rendered by the EMIS simulator, the latter also with national-size
//! terminology maps; and a fortnight's appointment book of 4,000 slots → the neutral
//! book. `cargo bench -p gp-adapter-emis`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gp_adapter_emis::Want;
use gp_fhir::model::Resource;
use gp_sim::SystemKind;

#[path = "../../../bench/support/records.rs"]
mod records;

fn mapping(c: &mut Criterion) {
    let (practice, patient) = records::typical(SystemKind::Emis);
    let large = records::grown(&patient, records::LARGE);
    let mut group = c.benchmark_group("emis/map_record");
    for (name, p) in [("typical", &patient), ("1000_entries", &large)] {
        let xml = gp_sim::emis::render_record(&practice, p);
        let mapped = gp_adapter_emis::map_record(xml.as_bytes()).unwrap();
        assert!(mapped.clinical.len() >= records::entries(p) / 2, "{name}");
        group.throughput(Throughput::Elements(records::entries(p) as u64));
        group.bench_function(name, |b| {
            b.iter(|| gp_adapter_emis::map_record(black_box(xml.as_bytes())).unwrap())
        });
    }
    let xml = gp_sim::emis::render_record(&practice, &large);
    records::with_national_maps(&mut group, records::entries(&large), || {
        gp_adapter_emis::map_record(black_box(xml.as_bytes())).unwrap()
    });
    // What a Patient read and an Observation search map of the same record (issue 27:
    // work the answer never uses is not done).
    for (name, want) in [
        ("1000_entries_demographics_only", Want::Demographics),
        (
            "1000_entries_observations_only",
            Want::Area(gp_adapter::ClinicalType::Observation),
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| gp_adapter_emis::map_record_for(black_box(xml.as_bytes()), want).unwrap())
        });
    }
    group.finish();
    // Native bytes to answer bytes: the whole record mapped, then every entry
    // serialised into the searchset Bundle.
    let mut group = c.benchmark_group("emis/record_to_bundle_bytes");
    group.throughput(Throughput::Elements(records::entries(&large) as u64));
    group.bench_function("1000", |b| {
        b.iter(|| {
            let r = gp_adapter_emis::map_record(black_box(xml.as_bytes())).unwrap();
            let mut resources = Vec::with_capacity(r.clinical.len() + 1);
            resources.push(Resource::Patient(r.patient));
            resources.extend(r.clinical);
            records::bundle_bytes(resources)
        })
    });
    group.finish();
}

/// An `AppointmentBook` answer as `docs/native-formats/emis.md` describes it: two sites,
/// ten clinicians, two sessions a day each over ten working days, twenty slots a session.
fn appointment_book() -> String {
    let ns = gp_adapter_emis::NS;
    let guid = |kind: u32, n: u32| format!("{kind:08x}-0000-4000-8000-{n:012x}");
    let mut xml =
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<AppointmentBook xmlns=\"{ns}\">");
    xml.push_str("<SiteList>");
    for site in 0..2 {
        xml.push_str(&format!(
            "<Site><GUID>{}</GUID><Name>Site {site}</Name><Address><HouseNameFlat/><Street>1 High Street</Street>\
             <Village/><Town>Leeds</Town><County/><PostCode>LS1 4AP</PostCode></Address></Site>",
            guid(1, site)
        ));
    }
    xml.push_str("</SiteList><PeopleList>");
    for person in 0..10 {
        xml.push_str(&format!(
            "<Person><GUID>{}</GUID><Title>Dr</Title><FirstNames>Amir</FirstNames><FamilyName>Khan</FamilyName>\
             <Sex>M</Sex><Role>GP</Role><SdsUserId>100200300401</SdsUserId>\
             <JobRole><Code>R0260</Code><Term>General Medical Practitioner</Term></JobRole></Person>",
            guid(2, person)
        ));
    }
    xml.push_str("</PeopleList><SessionList>");
    let mut slots = String::from("<SlotList>");
    let mut slot = 0;
    for day in 0..10u32 {
        for person in 0..10 {
            for (half, hour) in [(0, 8), (1, 14)] {
                let session = day * 100 + person * 2 + half;
                xml.push_str(&format!(
                    "<Session><GUID>{}</GUID><Name>Surgery</Name><UserID>{}</UserID><SiteID>{}</SiteID>\
                     <ServiceType>GP consultation</ServiceType><StartDateTime>{:02}/01/2027 {hour:02}:00:00</StartDateTime>\
                     <EndDateTime>{:02}/01/2027 {:02}:20:00</EndDateTime></Session>",
                    guid(3, session),
                    guid(2, person),
                    guid(1, half),
                    day + 4,
                    day + 4,
                    hour + 3,
                ));
                for n in 0..20 {
                    slots.push_str(&format!(
                        "<Slot><GUID>{}</GUID><SessionID>{}</SessionID>\
                         <StartDateTime>{:02}/01/2027 {:02}:{:02}:00</StartDateTime><Duration>10</Duration>\
                         <SlotType>GP consultation</SlotType><DeliveryChannel>FaceToFace</DeliveryChannel>\
                         <Status>{}</Status></Slot>",
                        guid(4, slot),
                        guid(3, session),
                        day + 4,
                        hour + n / 6,
                        n % 6 * 10,
                        ["Free", "Booked", "Embargoed"][(slot % 3) as usize],
                    ));
                    slot += 1;
                }
            }
        }
    }
    xml.push_str("</SessionList>");
    xml.push_str(&slots);
    xml.push_str("</SlotList></AppointmentBook>\n");
    xml
}

fn slot_search(c: &mut Criterion) {
    let xml = appointment_book();
    let at = |day| gp_adapter::UtcDateTime {
        year: 2027,
        month: 1,
        day,
        hour: 0,
        minute: 0,
        second: 0,
    };
    let (start, end) = (at(4), at(18));
    let book = gp_adapter_emis::appointments::map_slot_search(xml.as_bytes(), start, end).unwrap();
    assert_eq!(book.slots.len(), 4000);
    let mut group = c.benchmark_group("emis/map_slot_search");
    group.throughput(Throughput::Elements(4000));
    group.bench_function("4000_slots", |b| {
        b.iter(|| {
            gp_adapter_emis::appointments::map_slot_search(black_box(xml.as_bytes()), start, end)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, mapping, slot_search);
criterion_main!(benches);
