//! The time every part of the module reads: nginx's cached wall clock.

/// Wall-clock milliseconds from nginx's cached time (no syscall).
pub fn now_ms() -> u64 {
    let t = ngx::ffi::ngx_timeofday();
    (t.sec as u64) * 1000 + t.msec as u64
}
