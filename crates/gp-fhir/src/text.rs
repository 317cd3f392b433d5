//! Echoing text someone else wrote (a caller's input, a GP system's native data) back in
//! an error message: bounded and printable, so an error can neither flood a log nor
//! smuggle control characters into it.

/// Most characters of foreign text an error message repeats.
pub const SHOWN_CHARS: usize = 100;

/// `s` without control characters, cut to [`SHOWN_CHARS`] with `…` when longer.
pub fn shown(s: &str) -> String {
    let mut chars = s.chars().filter(|c| !c.is_control());
    let mut out: String = chars.by_ref().take(SHOWN_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_text_is_bounded_and_printable() {
        assert_eq!(shown("abc"), "abc");
        assert_eq!(shown("a\nb\u{1b}[31mc\r"), "ab[31mc");
        let long = "x".repeat(SHOWN_CHARS + 1);
        let cut = shown(&long);
        assert_eq!(cut.chars().count(), SHOWN_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(shown(&"y".repeat(SHOWN_CHARS)), "y".repeat(SHOWN_CHARS));
        // Control characters do not count towards the bound.
        assert_eq!(shown(&"\n".repeat(500)), "");
    }
}
