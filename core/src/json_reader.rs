//! A stored snapshot read without serde: its `data` straight into a [`Doc`]'s builder, its
//! `template` apart. It takes only what it reads exactly as the serde path
//! ([`crate::json_value::parse_snapshot`]) does, and gives up (`None`) on anything else (an
//! error, an escaped wrapper key, a nesting deeper than [`MAX_DEPTH`], a string that cannot be
//! decoded): the serde path then reads the snapshot again and decides, with its own messages.
//! So it changes how fast a snapshot is read, never what is read or refused.
//!
//! On the fetch threads, serde's visitor calls cost about as much as the scanning: reading the
//! benchmark's 13 KB product snapshot this way takes about half the time.

use crate::doc::{with_scratch, Builder, Doc, Slot};

/// Nesting this deep (the snapshot's own object counting as one) is left to serde_json, whose
/// limit (128) then applies.
const MAX_DEPTH: usize = 100;

/// A snapshot's `template` value (as serde_json reads it) and `data` document, each the last
/// of its key, or `None` if the text is not a JSON object read in full.
pub(crate) type SnapshotParts = (Option<serde_json::Value>, Option<Doc>);

/// Reads a snapshot (see the module's comment); `None` leaves it to the serde path (so does a
/// text that is not an object).
pub(crate) fn read_snapshot(text: &str) -> Option<SnapshotParts> {
    let mut r = Reader {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    r.ws();
    if r.peek() != Some(b'{') {
        return None;
    }
    let (mut template, mut data) = (None, None);
    // Members other than these two are read into a builder of their own, then dropped.
    let mut skipped = Builder::default();
    r.elements(b'}', |r| {
        let key = r.plain_key()?;
        r.ws();
        r.eat(b':')?;
        r.ws();
        match key {
            "template" => {
                let start = r.pos;
                r.value(&mut skipped)?;
                let raw = text.get(start..r.pos)?;
                template = Some(serde_json::from_str::<serde_json::Value>(raw).ok()?);
            }
            "data" => {
                data = Some(with_scratch(|b| {
                    b.clear();
                    let root = r.value(b)?;
                    Some(b.finish(root))
                })?);
            }
            _ => {
                r.value(&mut skipped)?;
            }
        }
        skipped.clear();
        Some(())
    })?;
    r.ws();
    (r.pos == r.bytes.len()).then_some((template, data))
}

struct Reader<'t> {
    text: &'t str,
    bytes: &'t [u8],
    pos: usize,
    /// Containers open around the value being read.
    depth: usize,
}

impl<'t> Reader<'t> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Skips JSON whitespace.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// One value into `b`.
    fn value(&mut self, b: &mut Builder) -> Option<Slot> {
        match self.peek()? {
            b'{' => self.map(b),
            b'[' => self.list(b),
            b'"' => {
                let (at, len) = self.string(b)?;
                Some(Slot::Str { at, len })
            }
            b't' => self.literal(b"true", Slot::Bool(true)),
            b'f' => self.literal(b"false", Slot::Bool(false)),
            b'n' => self.literal(b"null", Slot::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], slot: Slot) -> Option<Slot> {
        let end = self.pos.checked_add(word.len())?;
        (self.bytes.get(self.pos..end)? == word).then(|| {
            self.pos = end;
            slot
        })
    }

    fn list(&mut self, b: &mut Builder) -> Option<Slot> {
        let base = b.items_len();
        self.elements(b']', |r| {
            let item = r.value(b)?;
            b.push_item(item);
            Some(())
        })?;
        b.close_list(base)
    }

    fn map(&mut self, b: &mut Builder) -> Option<Slot> {
        let base = b.members_len();
        self.elements(b'}', |r| {
            if r.peek() != Some(b'"') {
                return None;
            }
            let (at, len) = r.string(b)?;
            r.ws();
            r.eat(b':')?;
            r.ws();
            let value = r.value(b)?;
            b.push_member(at, len, value);
            Some(())
        })?;
        b.close_map(base)
    }

    /// A container's elements (its opening bracket at `pos`), each read by `one` (from its
    /// first character), separated by commas, up to `close`.
    fn elements(&mut self, close: u8, mut one: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.depth += 1;
        self.pos += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                self.ws();
                one(self)?;
                self.ws();
                match self.next()? {
                    b',' => continue,
                    c if c == close => break,
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A wrapper key, as it is written (one with an escape is left to serde).
    fn plain_key(&mut self) -> Option<&'t str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + special(self.bytes.get(start..)?)?;
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        self.text.get(start..end)
    }

    /// A string's value appended to the builder's text (the opening quote at `pos`): where it
    /// is in the text (offset and length).
    fn string(&mut self, b: &mut Builder) -> Option<(u32, u32)> {
        let at = b.text_len();
        self.pos += 1;
        loop {
            let start = self.pos;
            let end = start + special(self.bytes.get(start..)?)?;
            // Both ends are at ASCII bytes: a whole run of characters.
            b.push_text(self.text.get(start..end)?);
            self.pos = end + 1;
            match self.bytes.get(end) {
                Some(b'"') => return b.text_since(at),
                Some(b'\\') => {}
                // A control character: serde_json refuses it in a string.
                _ => return None,
            }
            let c = match self.next()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => self.unicode_escape()?,
                _ => return None,
            };
            b.push_char(c);
        }
    }

    /// The character of a `\u` escape (its four digits at `pos`), a surrogate pair's as one;
    /// a lone surrogate is left to serde.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            self.eat(b'\\')?;
            self.eat(b'u')?;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return None;
            }
            char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
        } else {
            char::from_u32(first)
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.pos.checked_add(4)?;
        let digits = self.text.get(self.pos..end)?;
        if !digits.bytes().all(|d| d.is_ascii_hexdigit()) {
            return None;
        }
        self.pos = end;
        u32::from_str_radix(digits, 16).ok()
    }

    /// A number, as serde_json reads it and the document keeps it: an integer within i64 as
    /// one, anything else as serde_json's number (an integer beyond i64 as the nearest float).
    fn number(&mut self) -> Option<Slot> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let int_end = self.pos;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.pos += 1;
            self.digits_one_or_more()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits_one_or_more()?;
        }
        let digits = self.bytes.get(start + usize::from(negative)..int_end)?;
        // 18 digits always fit an i64; -0 is serde_json's float -0.0.
        if integer && digits.len() <= 18 && !(negative && digits == b"0") {
            let n = digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
            return Some(Slot::Int(if negative { -n } else { n }));
        }
        let n: serde_json::Number = serde_json::from_str(self.text.get(start..self.pos)?).ok()?;
        Some(if let Some(u) = n.as_u64() {
            i64::try_from(u).map_or(Slot::Float(u as f64), Slot::Int)
        } else if let Some(i) = n.as_i64() {
            Slot::Int(i)
        } else {
            Slot::Float(n.as_f64()?)
        })
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn digits_one_or_more(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }
}

/// Where the first quote, backslash or control character of `bytes` is: eight bytes at a time
/// (a byte equal to a quote or a backslash, or below 0x20, sets its high bit in a mask; the
/// lowest set bit is the first such byte, exactly).
fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let found = zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = bytes.get(at..)?;
    let i = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(at + i)
}
