//! A client's `Accept-Encoding`: whether it takes gzip (`dynpage_gzip`) or brotli
//! (`dynpage_brotli`), and which it prefers.
//!
//! Read as RFC 9110 §12.5.3 says, with nginx's `ngx_http_gzip_ok` as the reference for what is
//! lenient: a comma-separated list of codings, each with an optional `;q=` weight. Codings are
//! case-insensitive; `x-gzip` is gzip (§8.4.1.3). A coding is taken when it is listed with a
//! weight above 0 (`gzip;q=0` refuses it), or, not listed, when `*` is listed with a weight
//! above 0. Of two taken, the higher weight is preferred, brotli on a tie (smaller bytes).
//! `identity;q=0` changes nothing: like nginx, dynpage never answers 406, a client that takes
//! nothing dynpage has gets the identity bytes. Garbage is ignored safely: a coding that is not
//! a token, or whose weight is not a qvalue (`q=2`, `q=0.0001`, `q=abc`), counts as not listed.
//! A coding listed twice counts by its first listing (nginx reads the first `gzip` too).
//!
//! Bounded work on any header: one pass, at most [`MAX_CODINGS`] codings looked at, nothing
//! allocated.

use crate::coding::Coding;

/// Codings of one header looked at; the rest are ignored (a browser sends four or five).
pub const MAX_CODINGS: usize = 64;

/// The weights (thousandths; 0: not taken) a client's `Accept-Encoding` gives the codings
/// dynpage serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub gzip: u16,
    pub br: u16,
}

/// What a client whose `Accept-Encoding` is `header` takes.
pub fn accepted(header: &[u8]) -> Accepted {
    let (mut gzip, mut br, mut any) = (None, None, None);
    for element in header.split(|&b| b == b',').take(MAX_CODINGS) {
        let Some((coding, q)) = coding(element) else {
            continue;
        };
        if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            gzip.get_or_insert(q);
        } else if coding.eq_ignore_ascii_case(b"br") {
            br.get_or_insert(q);
        } else if coding == b"*" {
            any.get_or_insert(q);
        }
    }
    Accepted {
        gzip: gzip.or(any).unwrap_or(0),
        br: br.or(any).unwrap_or(0),
    }
}

/// Whether a client whose `Accept-Encoding` is `header` takes gzip (what the tests ask).
#[cfg(test)]
fn accepts_gzip(header: &[u8]) -> bool {
    accepted(header).gzip > 0
}

/// Codings in the order a client prefers them (at most two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Preference {
    codings: [Option<Coding>; 2],
}

impl Preference {
    pub fn iter(&self) -> impl Iterator<Item = Coding> + '_ {
        self.codings.iter().flatten().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.codings[0].is_none()
    }
}

impl Accepted {
    /// Of the codings offered (`gzip`, `br`: the location serves them, and for gzip nginx's
    /// own test agreed), those this client takes, preferred first: the higher weight, brotli on
    /// a tie.
    pub fn preference(&self, gzip: bool, br: bool) -> Preference {
        let gz = (gzip && self.gzip > 0).then_some((self.gzip, Coding::Gzip));
        let br = (br && self.br > 0).then_some((self.br, Coding::Br));
        let codings = match (br, gz) {
            (Some((b, _)), Some((g, _))) if g > b => [Some(Coding::Gzip), Some(Coding::Br)],
            (Some(_), Some(_)) => [Some(Coding::Br), Some(Coding::Gzip)],
            (Some(_), None) => [Some(Coding::Br), None],
            (None, Some(_)) => [Some(Coding::Gzip), None],
            (None, None) => [None, None],
        };
        Preference { codings }
    }
}

/// One element of the list: its coding and weight (thousandths), or `None` when it is empty or
/// not well formed.
fn coding(element: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = element.split(|&b| b == b';');
    let coding = trim_ows(parts.next()?);
    if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let param = trim_ows(param);
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (trim_ows(&param[..i]), trim_ows(&param[i + 1..])),
            None => (param, &b""[..]),
        };
        if name.eq_ignore_ascii_case(b"q") {
            q = qvalue(value)?;
        }
        // Other parameters (none is defined for Accept-Encoding) are ignored.
    }
    Some((coding, q))
}

/// A qvalue in thousandths: `0`, `0.5`, `0.001`, `1`, `1.000`; `None` for anything else.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    let whole: u16 = match int {
        b"0" => 0,
        b"1" => 1000,
        _ => return None,
    };
    let frac = frac.unwrap_or_default();
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

/// Without the optional white space (spaces and tabs) around it.
fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else {
        return &[];
    };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &s[start..=end]
}

/// A character of an HTTP token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes(h: &str) {
        assert!(accepts_gzip(h.as_bytes()), "{h:?} should take gzip");
    }

    fn no(h: &str) {
        assert!(!accepts_gzip(h.as_bytes()), "{h:?} should not take gzip");
    }

    #[test]
    fn what_browsers_send() {
        yes("gzip, deflate, br, zstd");
        yes("gzip,deflate");
        yes("gzip, deflate, sdch");
        yes("deflate, gzip;q=1.0, *;q=0.5");
        yes("br;q=1.0, gzip;q=0.8, *;q=0.1");
        yes("gzip");
        no("");
        no("deflate, br");
        no("identity");
    }

    #[test]
    fn tokens_are_case_insensitive_and_x_gzip_is_gzip() {
        yes("GZIP");
        yes("GZip;Q=0.5");
        yes("x-gzip");
        yes("X-GZIP, deflate");
        no("gzipx");
        no("xgzip");
        no("gzip-x");
        no("my-gzip");
    }

    #[test]
    fn q_values() {
        no("gzip;q=0");
        no("gzip; q=0.000");
        no("gzip ; q = 0");
        no("gzip;q=0.");
        yes("gzip;q=0.001");
        yes("gzip;q=1");
        yes("gzip;q=1.000");
        yes("gzip;\tq=0.5");
        no("gzip;q=.5;q=0.5");
        // Not a qvalue: the element is ignored, as if gzip were not listed.
        no("gzip;q=1.5");
        no("gzip;q=2");
        no("gzip;q=0.0001");
        no("gzip;q=abc");
        no("gzip;q=");
        no("gzip;q=-1");
        no("gzip;q=.5");
        // ...and then `*` decides.
        yes("gzip;q=2, *");
        // Parameters other than q are ignored.
        yes("gzip;level=1");
    }

    #[test]
    fn star_and_identity() {
        yes("*");
        yes("*;q=0.1");
        no("*;q=0");
        // gzip listed wins over `*`, either way round.
        no("*, gzip;q=0");
        no("gzip;q=0, *");
        yes("*;q=0, gzip");
        // identity;q=0 says nothing about gzip: with gzip it is gzip, without it identity
        // (dynpage, like nginx, never answers 406).
        yes("gzip, identity;q=0");
        no("identity;q=0");
        no("deflate, identity;q=0");
        yes("identity;q=0, *");
        no("identity;q=0, *;q=0");
    }

    #[test]
    fn the_first_listing_counts() {
        yes("gzip, gzip;q=0");
        no("gzip;q=0, gzip");
    }

    #[test]
    fn garbage_is_ignored() {
        no(",,,;;;===");
        no("\u{7f}gzip");
        no("\"gzip\"");
        no("g zip");
        no("gzip gzip");
        no("deflate gzip");
        yes("garbage \u{1} , gzip");
        yes(" , ;q=1, gzip ");
        no(";q=1");
        no("q=1");
        no("gzip;q=0x1");
        yes("gzip;=1");
        assert!(!accepts_gzip(&[0xff, 0xfe, b'g', b'z', b'i', b'p']));
        assert!(accepts_gzip(&[0xff, b',', b'g', b'z', b'i', b'p']));
    }

    #[test]
    fn long_headers_are_bounded() {
        // gzip past the first MAX_CODINGS codings is not looked at.
        let many = "a,".repeat(MAX_CODINGS) + "gzip";
        no(&many);
        let within = "a,".repeat(MAX_CODINGS - 1) + "gzip";
        yes(&within);
        // A megabyte of one coding, or of parameters, is one pass.
        let long = "x".repeat(1 << 20) + ", gzip";
        yes(&long);
        let params = "gzip".to_string() + &";a=b".repeat(1 << 18);
        yes(&params);
    }

    fn order(h: &str, gzip: bool, br: bool) -> Vec<Coding> {
        accepted(h.as_bytes()).preference(gzip, br).iter().collect()
    }

    #[test]
    fn brotli_and_gzip_by_weight_brotli_on_a_tie() {
        use Coding::{Br, Gzip};
        assert_eq!(order("gzip, deflate, br, zstd", true, true), [Br, Gzip]);
        assert_eq!(order("br;q=0.5, gzip", true, true), [Gzip, Br]);
        assert_eq!(order("BR, gzip;q=0.9", true, true), [Br, Gzip]);
        assert_eq!(order("gzip", true, true), [Gzip]);
        assert_eq!(order("br", true, true), [Br]);
        assert_eq!(order("br;q=0, gzip", true, true), [Gzip]);
        assert_eq!(order("*", true, true), [Br, Gzip]);
        assert_eq!(order("*;q=0.5, gzip", true, true), [Gzip, Br]);
        assert_eq!(order("gzip, br", false, true), [Br]);
        assert_eq!(order("gzip, br", true, false), [Gzip]);
        assert_eq!(order("gzip, br", false, false), Vec::<Coding>::new());
        assert!(accepted(b"deflate").preference(true, true).is_empty());
        assert_eq!(
            accepted(b"br;q=0.25, gzip;q=0.5, identity;q=0"),
            Accepted { gzip: 500, br: 250 }
        );
        // brotli past the first MAX_CODINGS codings is not looked at either.
        let late = "a,".repeat(MAX_CODINGS) + "br";
        assert_eq!(accepted(late.as_bytes()).br, 0);
    }

    #[test]
    fn qvalue_digits() {
        assert_eq!(qvalue(b"0"), Some(0));
        assert_eq!(qvalue(b"0.5"), Some(500));
        assert_eq!(qvalue(b"0.05"), Some(50));
        assert_eq!(qvalue(b"0.999"), Some(999));
        assert_eq!(qvalue(b"1.0"), Some(1000));
        assert_eq!(qvalue(b"1.001"), None);
        assert_eq!(qvalue(b"01"), None);
    }
}
