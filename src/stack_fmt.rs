//! Formatting into a caller's stack buffer: header values and variable values without an
//! allocation per request.

use std::io::Write;

/// Formats into a stack buffer (truncating if it is too small): no allocation per request.
pub fn format_into<'a>(buf: &'a mut [u8], args: std::fmt::Arguments<'_>) -> &'a [u8] {
    let cap = buf.len();
    let mut w = &mut buf[..];
    let _ = w.write_fmt(args);
    let n = cap - w.len();
    &buf[..n]
}
