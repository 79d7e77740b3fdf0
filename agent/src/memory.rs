//! Keeping the agent's resident memory flat: glibc's allocator gives every
//! thread that allocates an arena of its own and rarely returns freed pages,
//! which on a long-lived daemon reads as slow growth. Two arenas and a
//! periodic trim keep the resident set near what is really in use.

#![allow(unsafe_code)]

use std::time::Duration;

/// How often freed memory is handed back to the kernel.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Caps the number of malloc arenas; call before threads start.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap pages to the kernel.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
