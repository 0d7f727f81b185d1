//! Hands the memory the allocator holds free back to the system (see
//! `dynpage_core::memory_release` for when).

/// Returns the free room in every malloc arena of the process (the event loop's heap and each
/// thread's) to the system, whole pages at a time. On a C library without `malloc_trim`
/// (musl returns free pages itself) it does nothing.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes each arena's lock and only touches the allocator's own free
    // chunks; glibc lets any thread call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
