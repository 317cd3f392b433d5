//! SMART on FHIR `system/` scopes (v2 `cruds` letters, v1 `read`/`write`/`*` accepted).

use std::collections::BTreeMap;
use std::fmt;

use gp_fhir::{FhirError, IssueType, SpineCode};

/// What a SMART scope permits on a resource type (its `cruds` letters): not to be
/// confused with the FHIR interactions the router serves (`gp_gateway::routes::Interaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `create` (SMART letter `c`).
    Create,
    /// `read` and `vread` (letter `r`).
    Read,
    /// `update` and `patch` (letter `u`).
    Update,
    /// `delete` (letter `d`).
    Delete,
    /// `search` (letter `s`).
    Search,
}

impl Permission {
    fn bit(self) -> u8 {
        match self {
            Self::Create => C,
            Self::Read => R,
            Self::Update => U,
            Self::Delete => D,
            Self::Search => S,
        }
    }

    fn letter(self) -> char {
        match self {
            Self::Create => 'c',
            Self::Read => 'r',
            Self::Update => 'u',
            Self::Delete => 'd',
            Self::Search => 's',
        }
    }
}

const C: u8 = 1;
const R: u8 = 2;
const U: u8 = 4;
const D: u8 = 8;
const S: u8 = 16;
const LETTERS: [(char, u8); 5] = [('c', C), ('r', R), ('u', U), ('d', D), ('s', S)];

/// Which resource types a scope covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Target {
    /// `*`: every resource type (sorts first).
    All,
    /// One resource type, e.g. `Patient`.
    Type(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Type(t) => f.write_str(t),
        }
    }
}

/// A set of granted `system/` scopes, normalised: one permission set per resource type.
///
/// [`Display`](fmt::Display) writes the canonical SMART v2 form, space separated, e.g.
/// `system/*.rs system/Appointment.cruds`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    grants: BTreeMap<Target, u8>,
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeParseError {
    /// No scope at all.
    #[error("scope is empty")]
    Empty,
    /// `patient/` or `user/` context.
    #[error(
        "scope '{scope}' uses the '{context}/' context; backend services may only request 'system/' scopes"
    )]
    UnsupportedContext {
        /// The scope as sent (bounded).
        scope: String,
        /// `patient` or `user`.
        context: String,
    },
    /// Not of the form `system/<ResourceType|*>.<permissions>`.
    #[error("scope '{0}' is not a SMART scope of the form 'system/<ResourceType|*>.<cruds>'")]
    NotSmart(String),
    /// Query-parameter (finer-grained) scopes.
    #[error("scope '{0}' has query parameters, which this gateway does not support")]
    QueryNotSupported(String),
    /// The resource type is not a FHIR type name.
    #[error("scope '{0}' names an invalid resource type; use a FHIR type such as 'Patient' or '*'")]
    BadResourceType(String),
    /// The permission letters are wrong.
    #[error(
        "scope '{scope}' has invalid permissions '{permissions}': use v2 letters from 'cruds' in that order, each at most once, or v1 'read', 'write' or '*'"
    )]
    BadPermissions {
        /// The scope as sent (bounded).
        scope: String,
        /// The part after the dot.
        permissions: String,
    },
}

/// A request needs a scope the token does not carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The access token lacks the scope for this interaction.
    #[error("token lacks scope {needed}")]
    Missing {
        /// The narrowest v2 scope that would allow the request, e.g. `system/Observation.s`.
        needed: String,
    },
}

impl FhirError for ScopeError {
    fn status(&self) -> u16 {
        403
    }
    fn spine_code(&self) -> SpineCode {
        SpineCode::AccessDenied
    }
    fn issue_type(&self) -> IssueType {
        IssueType::Forbidden
    }
}

use gp_fhir::text::shown;

impl ScopeSet {
    /// An empty set (allows nothing).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses a space-separated scope string (the OAuth2 `scope` parameter or claim).
    pub fn parse(scopes: &str) -> Result<Self, ScopeParseError> {
        Self::parse_all(scopes.split_ascii_whitespace())
    }

    /// Parses a list of scopes (as in configuration).
    pub fn parse_all<'a>(
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, ScopeParseError> {
        let mut set = Self::default();
        let mut any = false;
        for scope in scopes {
            let (target, bits) = parse_one(scope)?;
            *set.grants.entry(target).or_insert(0) |= bits;
            any = true;
        }
        if !any {
            return Err(ScopeParseError::Empty);
        }
        Ok(set.normalise())
    }

    /// Whether the set allows `interaction` on `resource_type`.
    pub fn allows(&self, resource_type: &str, interaction: Permission) -> bool {
        self.bits_for(resource_type) & interaction.bit() != 0
    }

    /// Like [`allows`](Self::allows), as an error naming the missing scope.
    pub fn require(&self, resource_type: &str, interaction: Permission) -> Result<(), ScopeError> {
        if self.allows(resource_type, interaction) {
            Ok(())
        } else {
            Err(ScopeError::Missing {
                needed: format!("system/{}.{}", shown(resource_type), interaction.letter()),
            })
        }
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.grants.values().all(|b| *b == 0)
    }

    /// The scopes both sets allow: `requested ∩ allowed` when granting a token.
    ///
    /// `system/*.rs` ∩ `system/Patient.cruds` is `system/Patient.rs`.
    pub fn intersect(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = ScopeSet::default();
        for (ta, ba) in &self.grants {
            for (tb, bb) in &other.grants {
                let target = match (ta, tb) {
                    (Target::All, t) | (t, Target::All) => t.clone(),
                    (Target::Type(a), Target::Type(b)) if a == b => ta.clone(),
                    _ => continue,
                };
                let bits = ba & bb;
                if bits != 0 {
                    *out.grants.entry(target).or_insert(0) |= bits;
                }
            }
        }
        out.normalise()
    }

    fn bits_for(&self, resource_type: &str) -> u8 {
        let all = self.grants.get(&Target::All).copied().unwrap_or(0);
        let one = self
            .grants
            .get(&Target::Type(resource_type.to_owned()))
            .copied()
            .unwrap_or(0);
        all | one
    }

    /// Drops per-type letters already covered by `*`, and empty entries.
    fn normalise(mut self) -> Self {
        let all = self.grants.get(&Target::All).copied().unwrap_or(0);
        self.grants.retain(|t, bits| {
            if *t != Target::All {
                *bits &= !all;
            }
            *bits != 0
        });
        self
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (target, bits) in &self.grants {
            if *bits == 0 {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "system/{target}.")?;
            for (letter, bit) in LETTERS {
                if bits & bit != 0 {
                    write!(f, "{letter}")?;
                }
            }
        }
        Ok(())
    }
}

fn parse_one(scope: &str) -> Result<(Target, u8), ScopeParseError> {
    let Some((context, rest)) = scope.split_once('/') else {
        return Err(ScopeParseError::NotSmart(shown(scope)));
    };
    match context {
        "system" => {}
        "patient" | "user" => {
            return Err(ScopeParseError::UnsupportedContext {
                scope: shown(scope),
                context: context.to_owned(),
            });
        }
        _ => return Err(ScopeParseError::NotSmart(shown(scope))),
    }
    if rest.contains('?') {
        return Err(ScopeParseError::QueryNotSupported(shown(scope)));
    }
    let Some((resource, permissions)) = rest.split_once('.') else {
        return Err(ScopeParseError::NotSmart(shown(scope)));
    };
    let target = if resource == "*" {
        Target::All
    } else if resource.len() <= 64
        && resource.starts_with(|c: char| c.is_ascii_uppercase())
        && resource.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Target::Type(resource.to_owned())
    } else {
        return Err(ScopeParseError::BadResourceType(shown(scope)));
    };
    let bad = || ScopeParseError::BadPermissions {
        scope: shown(scope),
        permissions: shown(permissions),
    };
    let bits = match permissions {
        // SMART v1, mapped as the SMART v2 specification does.
        "read" => R | S,
        "write" => C | U | D,
        "*" => C | R | U | D | S,
        "" => return Err(bad()),
        v2 => {
            let mut bits = 0u8;
            // Letters must appear in c-r-u-d-s order, each at most once.
            let mut next = 0usize;
            for ch in v2.chars() {
                let Some(pos) = LETTERS.iter().position(|(l, _)| *l == ch) else {
                    return Err(bad());
                };
                if pos < next {
                    return Err(bad());
                }
                bits |= LETTERS[pos].1;
                next = pos + 1;
            }
            bits
        }
    };
    Ok((target, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v2_and_writes_canonical_form() {
        let s = ScopeSet::parse("system/Patient.rs system/Observation.crs system/*.s").unwrap();
        assert!(s.allows("Patient", Permission::Read));
        assert!(s.allows("Observation", Permission::Create));
        assert!(!s.allows("Observation", Permission::Delete));
        assert!(s.allows("Slot", Permission::Search));
        assert!(!s.allows("Slot", Permission::Read));
        assert_eq!(
            s.to_string(),
            "system/*.s system/Observation.cr system/Patient.r"
        );
    }

    #[test]
    fn parses_v1_forms() {
        let s = ScopeSet::parse("system/Patient.read system/Appointment.write").unwrap();
        assert_eq!(s.to_string(), "system/Appointment.cud system/Patient.rs");
        let all = ScopeSet::parse("system/Patient.*").unwrap();
        assert_eq!(all.to_string(), "system/Patient.cruds");
        let star = ScopeSet::parse("system/*.write").unwrap();
        assert!(star.allows("Observation", Permission::Update));
        assert!(!star.allows("Observation", Permission::Read));
    }

    #[test]
    fn rejects_letters_out_of_order_or_repeated_or_unknown() {
        for bad in [
            "system/Patient.sr",
            "system/Patient.rr",
            "system/Patient.rx",
            "system/Patient.",
        ] {
            let err = ScopeSet::parse(bad).unwrap_err();
            assert!(
                matches!(err, ScopeParseError::BadPermissions { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            ScopeSet::parse("system/Patient.sr")
                .unwrap_err()
                .to_string(),
            "scope 'system/Patient.sr' has invalid permissions 'sr': use v2 letters from 'cruds' in that order, each at most once, or v1 'read', 'write' or '*'"
        );
    }

    #[test]
    fn rejects_patient_and_user_contexts_and_other_prefixes() {
        assert_eq!(
            ScopeSet::parse("patient/Patient.rs")
                .unwrap_err()
                .to_string(),
            "scope 'patient/Patient.rs' uses the 'patient/' context; backend services may only request 'system/' scopes"
        );
        assert!(matches!(
            ScopeSet::parse("user/*.read").unwrap_err(),
            ScopeParseError::UnsupportedContext { .. }
        ));
        assert!(matches!(
            ScopeSet::parse("openid").unwrap_err(),
            ScopeParseError::NotSmart(_)
        ));
        assert!(matches!(
            ScopeSet::parse("launch/patient").unwrap_err(),
            ScopeParseError::NotSmart(_)
        ));
        assert!(matches!(
            ScopeSet::parse("system/Patient").unwrap_err(),
            ScopeParseError::NotSmart(_)
        ));
        assert!(matches!(
            ScopeSet::parse("system/patient.rs").unwrap_err(),
            ScopeParseError::BadResourceType(_)
        ));
        assert!(matches!(
            ScopeSet::parse("system/Observation.rs?category=vital-signs").unwrap_err(),
            ScopeParseError::QueryNotSupported(_)
        ));
        assert_eq!(ScopeSet::parse("  ").unwrap_err(), ScopeParseError::Empty);
    }

    #[test]
    fn intersection_narrows_to_what_both_allow() {
        let allowed = ScopeSet::parse("system/Patient.rs system/Observation.crs").unwrap();
        let requested = ScopeSet::parse("system/*.rs system/Appointment.c").unwrap();
        assert_eq!(
            requested.intersect(&allowed).to_string(),
            "system/Observation.rs system/Patient.rs"
        );
        let none = ScopeSet::parse("system/Slot.rs")
            .unwrap()
            .intersect(&allowed);
        assert!(none.is_empty());
        assert_eq!(none.to_string(), "");
    }

    #[test]
    fn missing_scope_names_the_needed_scope() {
        let s = ScopeSet::parse("system/Patient.rs").unwrap();
        let err = s.require("Observation", Permission::Search).unwrap_err();
        assert_eq!(err.to_string(), "token lacks scope system/Observation.s");
        assert_eq!(err.status(), 403);
        assert_eq!(err.spine_code(), SpineCode::AccessDenied);
    }
}
