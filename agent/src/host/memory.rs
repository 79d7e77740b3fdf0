//! Keeping the agent's resident memory flat: glibc's allocator gives every
//! thread that allocates an arena of its own and rarely returns freed pages,
//! which on a long-lived daemon reads as slow growth. Two arenas and a
//! periodic trim keep the resident set near what is really in use.

#![allow(unsafe_code)]

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

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

/// RPCs served so far: the trim loop releases code only when none came
/// since its last round.
static ACTIVITY: AtomicU64 = AtomicU64::new(0);

/// Counts one RPC.
pub fn note_activity() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

pub fn activity() -> u64 {
    ACTIVITY.load(Ordering::Relaxed)
}

/// Unmaps the pages of this program's code and read-only data that the
/// process has touched (start-up, past requests) so that its resident set
/// holds only what it runs next. They are clean pages of the binary: the
/// next use maps them again from the page cache (a minor fault), and
/// meanwhile the kernel may reclaim them like any unmapped file page.
/// Writable segments (data, relocated read-only data) are left alone.
/// Returns the bytes released.
pub fn release_code() -> usize {
    #[cfg(target_os = "linux")]
    {
        let page = rustix::param::page_size();
        let mut total = 0;
        for (start, end) in read_only_segments() {
            let start = start.div_ceil(page) * page;
            let end = end / page * page;
            if end <= start {
                continue;
            }
            // SAFETY: the range lies inside a read-only, never written
            // PT_LOAD segment of the main program: dropping its pages loses
            // nothing, and any thread touching them faults them back in.
            if unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) } == 0 {
                total += end - start;
            }
        }
        total
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Address ranges of the main program's loaded segments without write
/// permission.
#[cfg(target_os = "linux")]
fn read_only_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn first_object(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info for the call's duration,
        // and `data` is the Vec handed to dl_iterate_phdr below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<(usize, usize)>)) };
        if !info.dlpi_phdr.is_null() {
            // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
            let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
            for h in headers {
                if h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0 {
                    let start = info.dlpi_addr as usize + h.p_vaddr as usize;
                    out.push((start, start + h.p_memsz as usize));
                }
            }
        }
        1 // the main program comes first: stop there
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    // SAFETY: the callback only reads the headers and writes into `out`.
    unsafe {
        libc::dl_iterate_phdr(Some(first_object), &mut out as *mut Vec<(usize, usize)> as *mut libc::c_void);
    }
    out
}

/// Every [`TRIM_INTERVAL`]: gives freed heap back to the kernel, and code
/// pages too while quiet (`idle` says no execution runs, and under one call
/// a second came), so that a busy agent keeps its hot code mapped.
pub fn spawn_trim(idle: impl Fn() -> bool + Send + 'static, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        // The first round comes once start-up is over.
        let first = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut tick = tokio::time::interval_at(first, TRIM_INTERVAL);
        let mut seen = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = crate::shutdown::stopped(&mut stop) => return,
            }
            trim();
            let now = activity();
            if seen.is_none_or(|s: u64| now - s < TRIM_INTERVAL.as_secs()) && idle() {
                let bytes = release_code();
                tracing::trace!(bytes, "code pages released");
            }
            seen = Some(now);
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn releasing_code_keeps_the_program_running() {
        let segments = super::read_only_segments();
        assert!(!segments.is_empty(), "the test binary has read-only segments");
        let here = releasing_code_keeps_the_program_running as fn() as usize;
        assert!(segments.iter().any(|(s, e)| (*s..*e).contains(&here)), "this function is in one of them");
        assert!(super::release_code() > 0);
        // The code runs on from the page cache.
        assert_eq!((1..=10).sum::<u32>(), 55);
        assert!(super::release_code() > 0);
    }
}
