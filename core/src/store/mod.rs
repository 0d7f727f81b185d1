//! Reading and writing the Redis layout. Blocking calls: run them off the nginx event loop
//! (the module's fetch threads) or in `dynpagectl`.
//!
//! This file only names the parts and re-exports them, so every item is reached as
//! `store::<item>`.

mod batch;
mod bounded;
mod fetch;
mod hints;
mod keys;
mod lookup;
mod plain;
mod replies;
mod scripted;
mod url;
mod writes;

pub use batch::fetch_batch;
pub use bounded::{fetch_batch_within, BatchReply};
pub use fetch::{
    Fetch, ItemFailure, Raw, RawMeta, MAX_DATA_BYTES, MAX_DOC_FIELDS, MAX_ENTRY_BYTES,
    MAX_FIELD_BYTES, MAX_FIELD_NAME_BYTES,
};
pub use hints::{hint_bytes, Hint, VersionHints};
pub use keys::{
    data_cache_key, field_cache_key, meta_cache_key, write_data_cache_key, write_field_cache_key,
    write_meta_cache_key, CacheKey, CacheKeyKind, CACHE_KEY_SEP,
};
pub use lookup::{get_field, get_meta, glob_escape, list_pages};
pub use scripted::{fetch_batch_scripted, Guess, ReadScript, READ_SCRIPT, SCRIPT_RETRY};
pub use url::{check_url, connect, redact_url};
pub use writes::{delete_fields, publish, put_field, put_new_version, set_gray, set_pin};
