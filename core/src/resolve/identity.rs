//! [`Identity`]: what identifies a page's inputs (its ETag, its newest production version, its
//! variant), built up as they are chosen.

use crate::version::{Field, Fnv, Variant};

fn stronger(a: Variant, b: Variant) -> Variant {
    match (a, b) {
        (Variant::Predeploy, _) | (_, Variant::Predeploy) => Variant::Predeploy,
        (Variant::Gray, _) | (_, Variant::Gray) => Variant::Gray,
        _ => Variant::Production,
    }
}

/// What identifies a page's inputs, built as they are chosen.
pub(super) struct Identity {
    pub(super) etag: Fnv,
    pub(super) newest: Option<u64>,
    pub(super) variant: Variant,
}

impl Identity {
    pub(super) fn new(variant: Variant) -> Identity {
        Identity {
            etag: Fnv::default(),
            newest: None,
            variant,
        }
    }

    /// Adds a document version used by the page.
    pub(super) fn version(&mut self, field: Field) {
        match field {
            Field::Version(n) => {
                self.etag.write_u64(n);
                self.newest = self.newest.max(Some(n));
            }
            other => {
                self.etag.write(other.to_string().as_bytes());
            }
        }
    }

    /// Adds the content of a field that can change without a new version (`predeploy`,
    /// `abVersion`): a republished one is another output.
    pub(super) fn content(&mut self, field: Field, hash: u64) {
        if !field.is_immutable() {
            self.etag.write_u64(hash);
        }
    }

    /// Adds a template version (and, for a mutable field, its content).
    pub(super) fn template(&mut self, name: &str, field: Field, variant: Variant, hash: u64) {
        self.etag.write(&[0]).write(name.as_bytes()).write(&[0]);
        self.version(field);
        self.content(field, hash);
        self.variant = stronger(self.variant, variant);
    }
}
