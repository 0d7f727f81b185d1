//! Panics stop at nginx's door: every `extern "C"` entry point runs its body through `catch`,
//! which logs the panic once at `alert` and answers what the entry point answers on failure
//! (500 for a request, an error for a directive, nothing for an event).

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

use ngx::ffi::ngx_http_request_t;

thread_local! {
    /// The last panic's message and place, kept by the hook for `catch` to log.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces Rust's default panic hook (which writes to stderr, not the error log) with one that
/// keeps the message and place for `catch`. Idempotent; called while nginx reads its
/// configuration, so workers inherit it.
pub fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let message = format!("{}{place}", payload_text(info.payload()));
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(message));
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "a panic"
    }
}

fn run<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    LAST_PANIC.with(|last| last.borrow_mut().take());
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        LAST_PANIC
            .with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| payload_text(&*payload).to_string())
    })
}

/// Runs `f` outside any request; a panic is logged at `alert` naming `what`, and `on_panic` is
/// returned.
pub fn catch<T>(what: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    run(f).unwrap_or_else(|detail| {
        alert!(cycle; "panic in {what}: {detail}");
        on_panic
    })
}

/// Runs `f` for request `r`; a panic is logged at `alert` through the request's log, naming
/// `what` and the page key `key_of` gives, and `on_panic` is returned.
pub fn catch_request<T>(
    r: *mut ngx_http_request_t,
    what: &str,
    key_of: impl FnOnce(&ngx_http_request_t) -> String,
    on_panic: T,
    f: impl FnOnce() -> T,
) -> T {
    run(f).unwrap_or_else(|detail| {
        // SAFETY: `r` is the live request the callback that panicked was given; what the
        // callback held of it is gone with the unwind.
        let r = unsafe { &*r };
        let key = key_of(r);
        alert!(
            r,
            "panic in {what} for page \"{}\": {detail}",
            key.escape_debug()
        );
        on_panic
    })
}
