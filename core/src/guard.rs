//! `dynpage_guard`: a sanity check of the rendered output (the "exception scanning" that keeps
//! a broken layout off the site). An output that fails it is treated like a failed render: the
//! previous version is served instead.

/// The checks one location asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    /// The output must have at least this many bytes.
    pub min_bytes: usize,
    /// The output must contain this.
    pub contains: Option<Vec<u8>>,
}

impl Guard {
    /// Parses the directive's arguments: `off`, or `min_bytes=<n>` and/or `contains=<s>`.
    pub fn parse(args: &[&str]) -> Result<Option<Guard>, String> {
        if args == ["off"] {
            return Ok(None);
        }
        let mut guard = Guard::default();
        let (mut min_seen, mut contains_seen) = (false, false);
        for arg in args {
            if let Some(n) = arg.strip_prefix("min_bytes=") {
                if min_seen {
                    return Err("has min_bytes twice".into());
                }
                min_seen = true;
                guard.min_bytes = n
                    .parse()
                    .map_err(|_| format!("has an invalid min_bytes \"{n}\""))?;
            } else if let Some(s) = arg.strip_prefix("contains=") {
                if contains_seen {
                    return Err("has contains twice".into());
                }
                if s.is_empty() {
                    return Err("has an empty contains".into());
                }
                contains_seen = true;
                guard.contains = Some(s.as_bytes().to_vec());
            } else {
                return Err(format!(
                    "has an unknown parameter \"{arg}\" (expected min_bytes=<n>, contains=<s> or off)"
                ));
            }
        }
        if !min_seen && !contains_seen {
            return Err("needs min_bytes=<n>, contains=<s> or off".into());
        }
        Ok(Some(guard))
    }

    /// Why `output` fails the guard, if it does.
    pub fn check(&self, output: &[u8]) -> Result<(), String> {
        if output.len() < self.min_bytes {
            return Err(format!(
                "output is {} bytes, under dynpage_guard min_bytes={}",
                output.len(),
                self.min_bytes
            ));
        }
        if let Some(needle) = &self.contains {
            if !contains(output, needle) {
                return Err(format!(
                    "output does not contain dynpage_guard contains=\"{}\"",
                    String::from_utf8_lossy(needle).escape_debug()
                ));
            }
        }
        Ok(())
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let mut at = 0;
    while let Some(i) = hay[at..].iter().position(|&b| b == first) {
        let start = at + i;
        if hay[start + 1..].starts_with(rest) {
            return true;
        }
        at = start + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let g = Guard::parse(&["min_bytes=10", "contains=</html>"])
            .unwrap()
            .unwrap();
        assert!(g.check(b"<html>hello</html>").is_ok());
        assert!(g.check(b"<html>hi").unwrap_err().contains("under"));
        assert!(g
            .check(b"<html>hello world")
            .unwrap_err()
            .contains("does not contain"));
        assert_eq!(Guard::parse(&["off"]).unwrap(), None);
        assert!(Guard::parse(&["min_bytes=x"]).is_err());
        assert!(Guard::parse(&["contains="]).is_err());
        assert!(Guard::parse(&["size=3"]).is_err());
        assert!(Guard::parse(&["min_bytes=1", "min_bytes=2"]).is_err());
        assert!(contains(b"aab", b"ab") && !contains(b"a", b"ab") && contains(b"x", b""));
    }
}
