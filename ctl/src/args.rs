//! A small argument reader: positionals, `--flag`, `--opt value` and `--opt=value`.

use std::collections::HashMap;

/// Bad usage: exit code 2.
#[derive(Debug)]
pub struct Usage(pub String);

pub struct Args {
    pub positional: Vec<String>,
    options: HashMap<String, String>,
    flags: Vec<String>,
}

/// Options that take a value; every other `--name` is a flag.
const VALUED: &[&str] = &[
    "redis",
    "prefix",
    "at",
    "data",
    "template",
    "template-file",
    "to",
    "keep",
];

impl Args {
    pub fn parse(raw: impl IntoIterator<Item = String>) -> Result<Args, Usage> {
        let mut args = Args {
            positional: Vec::new(),
            options: HashMap::new(),
            flags: Vec::new(),
        };
        let mut it = raw.into_iter();
        while let Some(a) = it.next() {
            if a == "--" {
                args.positional.extend(it.by_ref());
                break;
            }
            let Some(name) = a.strip_prefix("--") else {
                args.positional.push(a);
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if VALUED.contains(&name.as_str()) {
                let value = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .ok_or_else(|| Usage(format!("--{name} needs a value")))?,
                };
                if args.options.insert(name.clone(), value).is_some() {
                    return Err(Usage(format!("--{name} given twice")));
                }
            } else if inline.is_some() {
                return Err(Usage(format!("--{name} takes no value")));
            } else {
                args.flags.push(name);
            }
        }
        Ok(args)
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// Fails on options and flags the command does not know.
    pub fn only(&self, allowed: &[&str]) -> Result<(), Usage> {
        for name in self.options.keys().chain(self.flags.iter()) {
            if !allowed.contains(&name.as_str())
                && !["redis", "prefix", "help"].contains(&name.as_str())
            {
                return Err(Usage(format!("unknown option --{name}")));
            }
        }
        Ok(())
    }
}
