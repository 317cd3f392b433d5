//! The one mapping from a neutral [`DocumentMeta`] to FHIR R4 (UK Core DocumentReference),
//! so the four GP systems answer identical FHIR.
//!
//! A DocumentReference's id is `{ODS}-{content id}` ([`crate::practice_ids`]), the same
//! id as its content's `Binary`: a read by id learns the patient from the content
//! ([`crate::Adapter::read_content`]) before anything is answered, which no other id
//! the GP systems give would allow without state.

use base64::Engine as _;
use gp_fhir::OdsCode;
use gp_fhir::model::{
    Attachment, CodeableConcept, DocumentContentElement, DocumentReference, Identifier, Reference,
    SNOMED,
};

use super::DocumentMeta;
use crate::practice_ids::fhir_id;

/// The title of a document too large to be sent, in place of its own, with no
/// `attachment.url`: GP Connect Access Document lists such documents with a placeholder
/// rather than leaving them out (its own wording could not be found in the sources this
/// gateway was built from; this is ours).
pub const TOO_LARGE_TITLE: &str = "The document is too large to be transferred by this API. Please contact the practice for a copy.";

/// `docStatus` of a document where the practice's workflow has it: `preliminary` while
/// it awaits a clinician's review, `final` once filed.
pub fn doc_status(workflow: &str) -> Option<&'static str> {
    match workflow {
        "awaiting-review" => Some("preliminary"),
        "filed" => Some("final"),
        _ => None,
    }
}

/// `d` as a UK Core DocumentReference of `practice`; content over `inline_limit` bytes
/// has no `attachment.url` and the [`TOO_LARGE_TITLE`].
pub fn document_reference(
    practice: &OdsCode,
    d: &DocumentMeta,
    inline_limit: u64,
) -> DocumentReference {
    let id = fhir_id(practice, &d.content_id);
    let too_large = d.size > inline_limit;
    let author = d.author_ods.as_deref().map(|ods| Reference {
        reference: None,
        identifier: Some(Box::new(Identifier::new(
            gp_fhir::ids::ODS_CODE_SYSTEM,
            ods,
        ))),
        display: d.author_name.clone(),
    });
    let created = crate::appointments::fhir::instant(d.created);
    DocumentReference {
        meta: crate::uk_core::meta("DocumentReference", d.confidential),
        identifier: d
            .identifier
            .iter()
            .map(|(system, value)| Identifier::new(system, value))
            .collect(),
        status: "current".into(),
        doc_status: doc_status(&d.workflow).map(str::to_owned),
        type_: Some(CodeableConcept::coded(
            SNOMED,
            &d.type_snomed,
            &d.type_display,
        )),
        subject: Reference::to("Patient", &d.nhs_number.to_string()),
        date: Some(crate::appointments::fhir::instant(d.indexed)),
        author: author.into_iter().collect(),
        custodian: Some(Reference {
            reference: None,
            identifier: Some(Box::new(Identifier::ods(practice))),
            display: None,
        }),
        description: Some(if too_large {
            TOO_LARGE_TITLE.to_owned()
        } else {
            d.title.clone()
        }),
        content: vec![DocumentContentElement {
            attachment: Attachment {
                content_type: Some(d.content_type.clone()),
                url: (!too_large).then(|| format!("Binary/{id}")),
                size: Some(d.size),
                hash: d
                    .sha1
                    .map(|h| base64::engine::general_purpose::STANDARD.encode(h)),
                title: Some(if too_large {
                    TOO_LARGE_TITLE.to_owned()
                } else {
                    d.title.clone()
                }),
                creation: Some(created),
            },
        }],
        context: None,
        extension: Vec::new(),
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::UtcDateTime;
    use gp_fhir::NhsNumber;

    fn meta(size: u64) -> DocumentMeta {
        let t = UtcDateTime {
            year: 2026,
            month: 7,
            day: 1,
            hour: 9,
            minute: 30,
            second: 0,
        };
        DocumentMeta {
            id: "D1".into(),
            content_id: "C-1".into(),
            nhs_number: NhsNumber::parse("9000000009").unwrap(),
            created: t,
            indexed: t,
            type_snomed: "823691000000103".into(),
            type_display: "Clinical letter".into(),
            title: "Discharge letter".into(),
            content_type: "application/pdf".into(),
            size,
            sha1: Some([0; 20]),
            author_ods: Some("RR8".into()),
            author_name: Some("Leeds Teaching Hospitals".into()),
            identifier: None,
            workflow: "filed".into(),
            confidential: true,
        }
    }

    #[test]
    fn maps_a_document_and_withholds_the_url_of_a_large_one() {
        let ods = OdsCode::parse("A12345").unwrap();
        let d = document_reference(&ods, &meta(1000), 5000);
        assert_eq!(d.id, "A12345-C-1");
        assert_eq!(d.doc_status.as_deref(), Some("final"));
        assert_eq!(d.date.as_deref(), Some("2026-07-01T10:30:00+01:00"));
        let a = &d.content[0].attachment;
        assert_eq!(a.url.as_deref(), Some("Binary/A12345-C-1"));
        assert_eq!(a.hash.as_deref(), Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
        assert_eq!(d.description.as_deref(), Some("Discharge letter"));
        assert!(
            d.meta
                .unwrap()
                .security
                .iter()
                .any(|c| c.code.as_deref() == Some("R"))
        );
        let big = document_reference(&ods, &meta(6000), 5000);
        assert_eq!(big.content[0].attachment.url, None);
        assert_eq!(big.description.as_deref(), Some(TOO_LARGE_TITLE));
        assert_eq!(big.content[0].attachment.size, Some(6000));
    }
}
