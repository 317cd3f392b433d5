//! A document's content inline in a JSON body (`attachment.data`, `Binary.data`), decoded
//! where it lies: the base64 is turned into bytes over itself in the body's own buffer,
//! and the decoded part handed on as a slice of it, so a 5 MB document costs the body's
//! buffer and nothing more (no parsed JSON tree, no second copy of the content).

use bytes::{Bytes, BytesMut};

/// Where a JSON body's base64 string lies.
#[derive(Debug)]
pub enum Inline {
    /// Bytes `start..start + len` of the body itself (the usual case: base64 needs no
    /// JSON escapes).
    InBody { start: usize, len: usize },
    /// The string had escapes (`\/`): its unescaped text.
    Unescaped(String),
}

impl Inline {
    /// Where `s`, borrowed from `body` or unescaped, lies.
    pub fn of(body: &[u8], s: std::borrow::Cow<'_, str>) -> Self {
        match s {
            std::borrow::Cow::Borrowed(b) => {
                let start = (b.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
                if start <= body.len() && b.len() <= body.len() - start {
                    Self::InBody {
                        start,
                        len: b.len(),
                    }
                } else {
                    Self::Unescaped(b.to_owned())
                }
            }
            std::borrow::Cow::Owned(o) => Self::Unescaped(o),
        }
    }

    /// The decoded bytes: over the base64 in `body` (which becomes their storage), or
    /// over the unescaped string.
    pub fn decode(self, body: BytesMut) -> Result<Bytes, Base64Error> {
        match self {
            Self::InBody { start, len } => {
                let mut body = body;
                let region = body
                    .get_mut(start..start + len)
                    .ok_or(Base64Error { at: 0 })?;
                let n = decode_in_place(region)?;
                Ok(body.freeze().slice(start..start + n))
            }
            Self::Unescaped(s) => {
                drop(body);
                let mut v = s.into_bytes();
                let n = decode_in_place(&mut v)?;
                v.truncate(n);
                Ok(Bytes::from(v))
            }
        }
    }
}

/// A JSON string borrowed from the body when it has no escapes (serde gives an
/// `Option<Cow<str>>` field an owned copy whatever `#[serde(borrow)]` says, so the
/// borrow is asked for here).
#[derive(Debug)]
pub struct Text<'a>(pub std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

/// Not base64: the offset of the first character that cannot be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is not base64 (RFC 4648, standard alphabet) from character {at}")]
pub struct Base64Error {
    pub at: usize,
}

fn sextet(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes standard base64 (padded or not; ASCII whitespace between groups skipped) held
/// in `buf`, writing the bytes over it from its start: every four characters read give
/// at most three bytes written, so the write position always stays behind the read
/// position. Returns how many bytes were written.
pub fn decode_in_place(buf: &mut [u8]) -> Result<usize, Base64Error> {
    let (mut w, mut acc, mut n, mut pad) = (0usize, 0u32, 0u8, 0u8);
    for r in 0..buf.len() {
        let c = buf[r];
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            pad += 1;
            if n < 2 || n + pad > 4 {
                return Err(Base64Error { at: r });
            }
            continue;
        }
        let v = sextet(c).ok_or(Base64Error { at: r })?;
        if pad > 0 {
            return Err(Base64Error { at: r });
        }
        acc = (acc << 6) | v;
        n += 1;
        if n == 4 {
            buf[w] = (acc >> 16) as u8;
            buf[w + 1] = (acc >> 8) as u8;
            buf[w + 2] = acc as u8;
            w += 3;
            acc = 0;
            n = 0;
        }
    }
    let end = buf.len();
    match n {
        0 => {}
        2 if acc & 0xf == 0 => {
            buf[w] = (acc >> 4) as u8;
            w += 1;
        }
        3 if acc & 0x3 == 0 => {
            buf[w] = (acc >> 10) as u8;
            buf[w + 1] = (acc >> 2) as u8;
            w += 2;
        }
        _ => return Err(Base64Error { at: end }),
    }
    if pad > 0 && n + pad != 4 {
        return Err(Base64Error { at: end });
    }
    Ok(w)
}

/// The base64 length of `n` bytes (padded).
pub fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// A small deterministic generator (xorshift): random inputs without a dependency.
    fn bytes(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn decodes_as_the_base64_crate_does_on_random_inputs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for len in (0..300).chain([4095, 4096, 4097, 65_537]) {
            let raw = bytes(&mut seed, len);
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
            ] {
                let mut text = engine.encode(&raw).into_bytes();
                let n = decode_in_place(&mut text).unwrap();
                assert_eq!(&text[..n], &raw[..], "length {len}");
            }
        }
    }

    #[test]
    fn refuses_what_the_base64_crate_refuses() {
        let mut seed = 42;
        for _ in 0..2000 {
            let len = (bytes(&mut seed, 1)[0] % 12) as usize;
            let text: Vec<u8> = bytes(&mut seed, len)
                .into_iter()
                .map(|b| b"AQ/+=z9*"[(b % 8) as usize])
                .collect();
            let expected = base64::engine::general_purpose::STANDARD.decode(&text);
            let mut buf = text.clone();
            let ours = decode_in_place(&mut buf).map(|n| buf[..n].to_vec());
            // Ours also takes unpadded input; where the crate accepts, both agree.
            if let Ok(e) = expected {
                assert_eq!(ours.unwrap(), e, "{}", String::from_utf8_lossy(&text));
            } else if ours.is_ok() {
                let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&text);
                assert!(unpadded.is_ok(), "{}", String::from_utf8_lossy(&text));
            }
        }
        for bad in ["A", "A===", "AB=C", "ABC*", "AB==AB==", "=AAA"] {
            assert!(
                decode_in_place(&mut bad.as_bytes().to_vec()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn decodes_inside_the_body_and_hands_on_a_slice_of_it() {
        let raw = b"%PDF-1.7 hello %%EOF";
        let json = format!(
            "{{\"data\":\"{}\"}}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let body = BytesMut::from(json.as_bytes());
        let start = json.find("\":\"").unwrap() + 3;
        let len = json.len() - start - 2;
        let s = std::str::from_utf8(&body[start..start + len]).unwrap();
        let at = Inline::of(&body, std::borrow::Cow::Borrowed(s));
        assert!(matches!(at, Inline::InBody { .. }));
        // Parsed as a body field is: borrowed, not copied.
        #[derive(serde::Deserialize)]
        struct Holder<'a> {
            #[serde(borrow)]
            data: Option<Text<'a>>,
        }
        let h: Holder<'_> = serde_json::from_slice(&body).unwrap();
        assert!(matches!(h.data.unwrap().0, std::borrow::Cow::Borrowed(_)));
        let escaped: Holder<'_> = serde_json::from_slice(br#"{"data":"QQ\/="}"#).unwrap();
        assert!(matches!(
            escaped.data.unwrap().0,
            std::borrow::Cow::Owned(_)
        ));
        let base = body.as_ptr() as usize;
        let decoded = at.decode(body).unwrap();
        assert_eq!(&decoded[..], raw);
        // The same storage: the decoded bytes lie where the base64 lay.
        assert_eq!(decoded.as_ptr() as usize, base + start);
    }
}
