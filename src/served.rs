//! What a request was served (variant, version, source, cache status), kept in its context
//! for the `$dynpage_*` variables.

use dynpage_core::serve::{cache_status, Source};
use dynpage_core::version::{Field, Variant};

/// What a request was served, kept in its context. Plain bytes, so the all-zero value that
/// `ngx_pcalloc` gives is valid and means "nothing served yet".
#[derive(Clone, Copy)]
pub struct Served {
    variant: [u8; 12],
    variant_len: u8,
    source: [u8; 12],
    source_len: u8,
    version: [u8; 24],
    version_len: u8,
    /// `$dynpage_cache_status` (all zero: `None`).
    cache_status: Option<&'static str>,
    /// What was served, for the counters: 1 + the index of the variant in `VARIANTS`, and
    /// 1 + the index of the source in `Source::ALL` (0: nothing yet).
    served: [u8; 2],
}

const VARIANTS: [Variant; 3] = [Variant::Production, Variant::Predeploy, Variant::Gray];

/// 1 + where `x` is in `all` (0 if it is not).
fn code<T: PartialEq>(all: &[T], x: T) -> u8 {
    all.iter().position(|a| *a == x).map_or(0, |i| i as u8 + 1)
}

/// Which value of [`Served`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServedValue {
    Variant,
    Version,
    Source,
    CacheStatus,
}

fn fill(buf: &mut [u8], args: std::fmt::Arguments<'_>) -> u8 {
    crate::stack_fmt::format_into(buf, args).len() as u8
}

impl Served {
    pub fn set(&mut self, variant: Variant, field: Field, source: Source) {
        self.variant_len = fill(&mut self.variant, format_args!("{}", variant.as_str()));
        self.source_len = fill(&mut self.source, format_args!("{}", source.as_str()));
        self.version_len = fill(&mut self.version, format_args!("{field}"));
        self.cache_status = Some(cache_status(variant, source));
        self.served = [code(&VARIANTS, variant), code(&Source::ALL, source)];
    }

    /// Inputs past their TTL served this page while a background fetch refreshes them:
    /// `$dynpage_cache_status` is `UPDATING` (for a page from the worker cache).
    pub fn set_updating(&mut self) {
        if self.cache_status == Some("HIT") {
            self.cache_status = Some("UPDATING");
        }
    }

    /// What was served, or `None` before a page was served.
    pub fn served(&self) -> Option<(Variant, Source)> {
        let [v, s] = self.served.map(|c| usize::from(c).checked_sub(1));
        Some((*VARIANTS.get(v?)?, *Source::ALL.get(s?)?))
    }

    /// The value, or `None` before a page was served.
    pub fn value(&self, which: ServedValue) -> Option<&[u8]> {
        if self.variant_len == 0 {
            return None;
        }
        Some(match which {
            ServedValue::Variant => &self.variant[..usize::from(self.variant_len)],
            ServedValue::Version => &self.version[..usize::from(self.version_len)],
            ServedValue::Source => &self.source[..usize::from(self.source_len)],
            ServedValue::CacheStatus => self.cache_status.unwrap_or_default().as_bytes(),
        })
    }
}
