//! The spoken languages the simulated GP systems offer for a patient's main language:
//! their pick list, as staff see it, of a two-character code and the language's name.
//!
//! The simulators' own list, kept apart from the gateway's: the e2e crate checks the two
//! hold the same codes with the same names.

/// One entry of the main-language pick list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    /// The code recorded against the patient (ISO 639-1, `q4` for British Sign Language).
    pub code: &'static str,
    /// The name the GP system shows.
    pub name: &'static str,
}

const fn lang(name: &'static str, code: &'static str) -> Language {
    Language { code, name }
}

/// The pick list, in the alphabetical order staff see it.
pub const MAIN_LANGUAGES: [Language; 19] = [
    lang("Arabic", "ar"),
    lang("Bengali", "bn"),
    lang("British Sign Language", "q4"),
    lang("Chinese", "zh"),
    lang("English", "en"),
    lang("French", "fr"),
    lang("Gujarati", "gu"),
    lang("Italian", "it"),
    lang("Lithuanian", "lt"),
    lang("Panjabi", "pa"),
    lang("Polish", "pl"),
    lang("Portuguese", "pt"),
    lang("Romanian", "ro"),
    lang("Somali", "so"),
    lang("Spanish", "es"),
    lang("Tamil", "ta"),
    lang("Turkish", "tr"),
    lang("Urdu", "ur"),
    lang("Welsh", "cy"),
];

/// The name of the language recorded as `code`, if it is on the pick list.
pub fn name(code: &str) -> Option<&'static str> {
    MAIN_LANGUAGES
        .iter()
        .find_map(|l| (l.code == code).then_some(l.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_the_list_is_alphabetical() {
        let mut codes: Vec<_> = MAIN_LANGUAGES.iter().map(|l| l.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), MAIN_LANGUAGES.len());
        assert!(MAIN_LANGUAGES.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(name("cy"), Some("Welsh"));
        assert_eq!(name("xx"), None);
    }
}
