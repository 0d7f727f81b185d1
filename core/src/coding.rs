//! The content codings a kept output is served in besides identity (`dynpage_gzip`,
//! `dynpage_brotli`), and compressing into them. Both encoders are pure Rust: nothing to link
//! into the nginx module.

use std::io::Write;

/// A coding a request may get a kept output in, and at which level it is compressed (once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoding {
    pub coding: Coding,
    pub level: u32,
}

/// A content coding of kept outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    Gzip,
    Br,
}

impl Coding {
    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Br => "br",
        }
    }

    /// What its ETag adds inside the identity ETag's quotes.
    pub fn etag_suffix(self) -> &'static [u8; 3] {
        match self {
            Coding::Gzip => b"-gz",
            Coding::Br => b"-br",
        }
    }

    /// `body` in this coding, at `level` (gzip 1–9, brotli 0–11; clamped).
    pub fn compress(self, body: &[u8], level: u32) -> Vec<u8> {
        match self {
            Coding::Gzip => gzip(body, level),
            Coding::Br => brotli(body, level),
        }
    }
}

/// The gzip member (RFC 1952) of `body` at `level` (1 fastest to 9 smallest; clamped).
pub fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    let level = flate2::Compression::new(level.clamp(1, 9));
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), level);
    // Writing to a Vec does not fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// The brotli stream (RFC 7932) of `body` at quality `level` (0 fastest to 11 smallest;
/// clamped), with a 4 MiB window (`lgwin` 22, brotli's default).
pub fn brotli(body: &[u8], level: u32) -> Vec<u8> {
    let out = Vec::with_capacity(body.len() / 4 + 64);
    let mut enc = brotli::CompressorWriter::new(out, 4096, level.min(11), 22);
    // Writing to a Vec does not fail.
    let _ = enc.write_all(body);
    let _ = enc.flush();
    enc.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map(|_| out)
            .unwrap_or_default()
    }

    pub fn unbrotli(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .map(|_| out)
            .unwrap_or_default()
    }

    fn page(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"<li>item</li>\n"[i % 14]).collect()
    }

    #[test]
    fn both_codings_round_trip_at_every_level() {
        let body = page(50_000);
        for level in [0, 1, 6, 9, 100] {
            assert_eq!(gunzip(&Coding::Gzip.compress(&body, level)), body);
        }
        for level in [0, 1, 6, 11, 100] {
            let br = Coding::Br.compress(&body, level);
            assert!(br.len() < 1000, "level {level}: {}", br.len());
            assert_eq!(unbrotli(&br), body);
        }
        assert_eq!(gunzip(&gzip(b"", 6)), b"");
        assert_eq!(unbrotli(&brotli(b"", 6)), b"");
    }

    #[test]
    fn tokens_and_etag_suffixes() {
        assert_eq!((Coding::Gzip.token(), Coding::Br.token()), ("gzip", "br"));
        assert_eq!(Coding::Gzip.etag_suffix(), b"-gz");
        assert_eq!(Coding::Br.etag_suffix(), b"-br");
    }
}
