//! Strong ETags and If-None-Match matching.

use std::io::Write;

use crate::coding::Coding;

/// A strong ETag: `"` + 16 hex digits + `"`.
pub type EtagBuf = [u8; 18];

pub fn etag_value(hash: u64) -> EtagBuf {
    let mut buf = [0u8; 18];
    let _ = write!(&mut buf[..], "\"{hash:016x}\"");
    buf
}

/// The ETag of an output's compressed bytes (`dynpage_gzip`, `dynpage_brotli`): its identity
/// ETag with `-gz` (`-br`) inside the quotes, strong like it (an output's compressed bytes never
/// change).
pub type CodedEtagBuf = [u8; 21];

pub fn coded_etag(etag: &EtagBuf, coding: Coding) -> CodedEtagBuf {
    let mut buf = [0u8; 21];
    buf[..17].copy_from_slice(&etag[..17]);
    buf[17..20].copy_from_slice(coding.etag_suffix());
    buf[20] = b'"';
    buf
}

/// Whether an If-None-Match value (a list, `*`, weak tags allowed) matches `etag`.
pub fn etag_matches(header: &[u8], etag: &[u8]) -> bool {
    header.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
        tag == b"*" || tag == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        let e = etag_value(0xab);
        assert_eq!(&e, b"\"00000000000000ab\"");
        assert!(etag_matches(b"\"00000000000000ab\"", &e));
        assert!(etag_matches(b"\"x\", W/\"00000000000000ab\"", &e));
        assert!(etag_matches(b"*", &e));
        assert!(!etag_matches(b"\"00000000000000ac\"", &e));
        assert!(!etag_matches(b"", &e));
        let gz = coded_etag(&e, Coding::Gzip);
        assert_eq!(&gz, b"\"00000000000000ab-gz\"");
        assert!(etag_matches(b"\"00000000000000ab-gz\"", &gz));
        assert!(!etag_matches(b"\"00000000000000ab-gz\"", &e));
        assert!(!etag_matches(b"\"00000000000000ab\"", &gz));
        assert_eq!(&coded_etag(&e, Coding::Br), b"\"00000000000000ab-br\"");
    }
}
