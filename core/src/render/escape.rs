//! HTML escaping, one implementation for upon's default formatter and the fast renderer, so
//! that both escape alike.

/// What HTML-escaping replaces a byte with, if anything.
fn escape_of(b: u8) -> Option<&'static str> {
    match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'"' => Some("&quot;"),
        b'\'' => Some("&#x27;"),
        _ => None,
    }
}

/// The position of the first byte at or after `from` that HTML-escaping replaces.
///
/// Most values need no escaping at all, so this is the hot loop: it tests eight bytes at a time.
/// `&`/`'` and `<`/`>` differ in one bit, so three byte-wise compares cover all five bytes.
fn find_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    // Non-zero in a byte's high bit where that byte of `v` was zero (exact as a whole).
    let zero = |v: u64| v.wrapping_sub(LO) & !v;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        let amp_apos = zero((w & !LO) ^ (LO * 0x26));
        let lt_gt = zero((w & !(LO * 2)) ^ (LO * 0x3c));
        let quot = zero(w ^ (LO * 0x22));
        if (amp_apos | lt_gt | quot) & HI != 0 {
            break;
        }
        i += 8;
    }
    let rest = bytes.get(i..)?;
    rest.iter()
        .position(|&b| escape_of(b).is_some())
        .map(|p| i + p)
}

pub(super) fn escape_html_into(f: &mut impl std::fmt::Write, s: &str) -> upon::fmt::Result {
    escape_html_with(s, |part| f.write_str(part))?;
    Ok(())
}

/// HTML-escapes `s`, handing the pieces to `write`: shared by upon's formatter and the fast
/// renderer, so both escape identically.
pub(super) fn escape_html_with<E>(
    s: &str,
    mut write: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = find_escape(bytes, start) {
        // Escaped bytes are ASCII, so these cuts are on char boundaries.
        write(&s[start..i])?;
        write(escape_of(bytes[i]).unwrap_or_default())?;
        start = i + 1;
    }
    write(&s[start..])
}

#[cfg(test)]
mod tests {
    use super::escape_html_into;

    #[test]
    fn escaping_matches_a_byte_by_byte_reference() {
        let reference = |s: &str| {
            s.chars()
                .map(|c| match c {
                    '&' => "&amp;".to_string(),
                    '<' => "&lt;".to_string(),
                    '>' => "&gt;".to_string(),
                    '"' => "&quot;".to_string(),
                    '\'' => "&#x27;".to_string(),
                    c => c.to_string(),
                })
                .collect::<String>()
        };
        // Every ASCII character and a few multi-byte ones, at every offset within a word.
        let alphabet: Vec<char> = (0u8..128).map(char::from).chain(['é', '✓', '世']).collect();
        let mut cases = Vec::new();
        for c in &alphabet {
            for pad in 0..17 {
                cases.push(format!("{}{c}{}", "a".repeat(pad), "b".repeat(16 - pad)));
            }
        }
        cases.push(alphabet.iter().collect());
        cases.push("plain text that needs no escaping at all, twice as long".into());
        cases.push("&&<<>>\"\"''".into());
        for s in cases {
            let mut out = String::new();
            escape_html_into(&mut out, &s).unwrap();
            assert_eq!(out, reference(&s), "{s:?}");
        }
    }
}
