//! Generators shared by the harnesses: strings, JSON values and JSON text, byte mutations.

use serde_json::{Map, Number, Value};

use crate::rng::Rng;

/// Pieces of text that tend to matter: escaping, delimiters, whitespace of every kind,
/// multi-byte and odd code points.
pub const PIECES: &[&str] = &[
    "",
    "a",
    "Z",
    "0",
    "9",
    "é",
    "世界",
    "\u{1F600}",
    "\u{0}",
    "\u{1}",
    "\u{7f}",
    "\u{feff}",
    "\u{a0}",
    "\u{2028}",
    "\u{3000}",
    "<",
    ">",
    "&",
    "\"",
    "'",
    "\\",
    "/",
    "{",
    "}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "-",
    ":",
    "@",
    "?",
    "#",
    "%",
    "%00",
    "%41",
    "%zz",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "page:",
    "tpl:",
    "x",
    "loop",
    "null",
    "true",
    "01",
    "-1",
    "1e3",
    ".",
];

/// A short string built from [`PIECES`] and random characters.
pub fn string(rng: &mut Rng, max_pieces: usize) -> String {
    let mut s = String::new();
    for _ in 0..rng.size(max_pieces) {
        if rng.chance(80) {
            s.push_str(rng.pick(PIECES));
        } else {
            s.push(char_any(rng));
        }
    }
    s
}

/// Any char, mostly ASCII.
pub fn char_any(rng: &mut Rng) -> char {
    match rng.below(10) {
        0..=5 => (0x20 + rng.below(0x5f) as u8) as char,
        6 => rng.below(0x20) as u8 as char,
        7 => char::from_u32(0x80 + rng.below(0x780) as u32).unwrap_or('?'),
        8 => char::from_u32(0x800 + rng.below(0xf800) as u32).unwrap_or('\u{fffd}'),
        _ => char::from_u32(0x10000 + rng.below(0x100000) as u32).unwrap_or('\u{fffd}'),
    }
}

/// Names that templates look up (so that generated data and templates meet).
pub const KEYS: &[&str] = &[
    "a", "b", "c", "s", "i", "n", "t", "f", "xs", "m", "users", "name", "tags", "page", "request",
    "loop", "k", "v", "it", "w", "data", "template", "",
];

/// A JSON number, mostly at the edges.
pub fn number(rng: &mut Rng) -> Value {
    let f = |x: f64| Number::from_f64(x).map_or(Value::Null, Value::Number);
    match rng.below(16) {
        0 => Value::from(0),
        1 => Value::from(rng.below(1000) as i64 - 500),
        2 => Value::from(i64::MAX),
        3 => Value::from(i64::MIN),
        4 => Value::from(u64::MAX),
        5 => Value::from(rng.next_u64()),
        6 => Value::from(rng.next_u64() as i64),
        7 => f(-0.0),
        8 => f(0.1 + 0.2),
        9 => f(1e21),
        10 => f(5e-324),
        11 => f(f64::MAX),
        12 => f(9_007_199_254_740_993.0),
        13 => Value::from(253_402_300_799_999u64 + rng.below(3) as u64 - 1),
        14 => f(rng.below(100_000) as f64 / 8.0),
        _ => {
            // Any finite double.
            let x = f64::from_bits(rng.next_u64());
            if x.is_finite() {
                f(x)
            } else {
                f(1.5)
            }
        }
    }
}

/// A JSON value at most `depth` deep, of at most about `budget` nodes.
pub fn value(rng: &mut Rng, depth: usize, budget: &mut usize) -> Value {
    *budget = budget.saturating_sub(1);
    let leaf = depth == 0 || *budget == 0;
    match rng.below(if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => number(rng),
        3 | 4 => Value::String(string(rng, 6)),
        5 => {
            let n = rng.size(6);
            Value::Array((0..n).map(|_| value(rng, depth - 1, budget)).collect())
        }
        _ => Value::Object(object(rng, depth - 1, budget)),
    }
}

/// A JSON object whose keys are mostly from [`KEYS`].
pub fn object(rng: &mut Rng, depth: usize, budget: &mut usize) -> Map<String, Value> {
    let mut m = Map::new();
    for _ in 0..rng.size(6) {
        let k = if rng.chance(80) {
            rng.pick(KEYS).to_string()
        } else {
            string(rng, 3)
        };
        let v = value(rng, depth, budget);
        m.insert(k, v);
    }
    m
}

/// JSON text of `v` with random (valid) whitespace and string escapes.
pub fn to_text(rng: &mut Rng, v: &Value, out: &mut String) {
    ws(rng, out);
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&v.to_string()),
        Value::String(s) => string_text(rng, s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_text(rng, x, out);
            }
            ws(rng, out);
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                string_text(rng, k, out);
                ws(rng, out);
                out.push(':');
                to_text(rng, x, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
    ws(rng, out);
}

fn ws(rng: &mut Rng, out: &mut String) {
    if rng.chance(20) {
        for _ in 0..rng.range(1, 3) {
            out.push(rng.pick(&[' ', '\n', '\t', '\r']));
        }
    }
}

/// A JSON string literal for `s`, each char escaped or not at random (the value is the same).
pub fn string_text(rng: &mut Rng, s: &str, out: &mut String) {
    out.push('"');
    let escape_all = rng.chance(10);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if escape_all || rng.chance(3) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            '/' if rng.chance(50) => out.push_str("\\/"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Tokens that break or bend JSON.
pub const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u",
    "\\ud800",
    "\\udc00",
    "\\u0000",
    "null",
    "true",
    "false",
    "1e400",
    "-1e400",
    "-",
    "0",
    "01",
    "-0",
    "1.",
    ".5",
    "1e",
    "1E+2",
    "18446744073709551616",
    "-9223372036854775809",
    "\"template\"",
    "\"data\"",
    "\"name\"",
    "\"version\"",
    "NaN",
    "Infinity",
    "\u{feff}",
    "/*",
    "//",
    "'",
    "\u{0}",
    " ",
    "\n",
];

/// Mutates `bytes` a few times: flips, inserts, deletes, duplicates, truncates.
pub fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, dictionary: &[&str]) {
    for _ in 0..rng.range(1, 4) {
        let len = bytes.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                bytes[i] = rng.byte();
            }
            2 => {
                let i = rng.below(len + 1);
                let tok = rng.pick(dictionary).as_bytes().to_vec();
                bytes.splice(i..i, tok);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.range(1, 16)).min(len);
                bytes.drain(i..j);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.range(1, 32)).min(len);
                let piece = bytes[i..j].to_vec();
                let at = rng.below(len + 1);
                bytes.splice(at..at, piece);
            }
            5 if len > 0 => bytes.truncate(rng.below(len)),
            _ => {
                let i = rng.below(len + 1);
                let b = rng.byte();
                bytes.insert(i, b);
            }
        }
    }
}

/// Text from bytes: as is when it is UTF-8, else lossily.
pub fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
