//! The error log: every line goes to nginx's error log, never to stdout.
//!
//! The level macros write one line that starts with `dynpage: ` (callers do not write it):
//!
//! ```ignore
//! error!(r, "page \"{}\" timed out waiting for its sources", key);  // a request's log
//! warn!(cycle; "{} sources down", n);                                // the cycle's log
//! ```
//!
//! `error!`, `warn!`, `info!`, `debug!` (and `alert!`) take a target first: `cycle;` for the
//! cycle's log, or an expression whose type names a log (a `&ngx_http_request_t`, whose
//! connection's log adds client, server and request; a [`Log`]). The level is checked before
//! anything is formatted: arguments are not even evaluated for a line the log drops. `debug!` writes at `NGX_LOG_DEBUG` whether or not nginx was built `--with-debug`
//! (nginx's own `ngx_log_debugN` macros vanish without it; an `error_log ... debug;` shows
//! these lines on any build).

use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

use ngx::ffi::{ngx_http_request_t, ngx_log_t, ngx_uint_t};
use ngx::log::{write_fmt, LOG_BUFFER_SIZE};

/// What every line of the module starts with.
pub const PREFIX: &str = "dynpage: ";

/// An nginx log, for as long as what owns it lives. It stays a pointer: nginx writes to the
/// log struct while logging (`disk_full_time`).
#[derive(Clone, Copy)]
pub struct Log<'a> {
    log: NonNull<ngx_log_t>,
    owner: PhantomData<&'a ngx_log_t>,
}

impl Log<'static> {
    /// The cycle's log (for what happens outside any request). Use it at once: a reload
    /// replaces the cycle and its log (the macros never keep one).
    pub fn cycle() -> Log<'static> {
        Log {
            log: ngx::log::ngx_cycle_log(),
            owner: PhantomData,
        }
    }
}

impl Log<'_> {
    pub fn enabled(&self, level: u32) -> bool {
        // SAFETY: the log is live while its owner is (see the constructors).
        let log_level = unsafe { (*self.log.as_ptr()).log_level };
        level as ngx_uint_t <= log_level
    }

    /// Writes `dynpage: ` and `args` at `level`, cut at nginx's line limit (the macros check
    /// `enabled` first).
    pub fn write(&self, level: u32, args: fmt::Arguments<'_>) {
        let mut buf = [const { MaybeUninit::<u8>::uninit() }; LOG_BUFFER_SIZE];
        let line = write_fmt(&mut buf, format_args!("{PREFIX}{args}"));
        // SAFETY: the log is live while its owner is (see the constructors).
        unsafe { ngx::log::log_error(level as ngx_uint_t, self.log.as_ptr(), 0, line) };
    }
}

/// What the macros accept as a target.
pub trait AsLog {
    fn as_log(&self) -> Log<'_>;
}

impl AsLog for Log<'_> {
    fn as_log(&self) -> Log<'_> {
        *self
    }
}

impl AsLog for ngx_http_request_t {
    /// The request's connection log: nginx adds client, server and request to each line.
    fn as_log(&self) -> Log<'_> {
        // SAFETY: a live request's connection outlives it (and so does the connection's log).
        let log = unsafe { (*self.connection).log };
        match NonNull::new(log) {
            Some(log) => Log {
                log,
                owner: PhantomData,
            },
            None => Log::cycle(),
        }
    }
}

impl<T: AsLog + ?Sized> AsLog for &T {
    fn as_log(&self) -> Log<'_> {
        (**self).as_log()
    }
}

impl<T: AsLog + ?Sized> AsLog for &mut T {
    fn as_log(&self) -> Log<'_> {
        (**self).as_log()
    }
}

// The macros are in scope in every module declared after `log` (`#[macro_use]` in lib.rs).

/// Writes one line at `$level` (an `NGX_LOG_*`); the level macros are this with theirs.
macro_rules! log_at {
    ($level:expr, cycle; $($arg:tt)+) => {
        log_at!($level, $crate::log::Log::cycle(), $($arg)+)
    };
    ($level:expr, $target:expr, $($arg:tt)+) => {{
        let level: u32 = $level;
        let target = &$target;
        let log = $crate::log::AsLog::as_log(target);
        if log.enabled(level) {
            log.write(level, format_args!($($arg)+));
        }
    }};
}

/// `alert!(r, "...", args)` / `alert!(cycle; "...", args)`: a line at `alert`.
macro_rules! alert {
    ($($t:tt)+) => { log_at!(::ngx::ffi::NGX_LOG_ALERT, $($t)+) };
}

/// `error!(r, "...", args)` / `error!(cycle; "...", args)`: a line at `error`.
macro_rules! error {
    ($($t:tt)+) => { log_at!(::ngx::ffi::NGX_LOG_ERR, $($t)+) };
}

/// `warn!(r, "...", args)` / `warn!(cycle; "...", args)`: a line at `warn`.
macro_rules! warn {
    ($($t:tt)+) => { log_at!(::ngx::ffi::NGX_LOG_WARN, $($t)+) };
}

/// `info!(r, "...", args)` / `info!(cycle; "...", args)`: a line at `info`.
macro_rules! info {
    ($($t:tt)+) => { log_at!(::ngx::ffi::NGX_LOG_INFO, $($t)+) };
}

/// `debug!(r, "...", args)` / `debug!(cycle; "...", args)`: a line at `debug`, on any build.
macro_rules! debug {
    ($($t:tt)+) => { log_at!(::ngx::ffi::NGX_LOG_DEBUG, $($t)+) };
}
