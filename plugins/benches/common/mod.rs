//! What the benches share (a folder, so cargo does not take it for a bench of its own).

/// CPU time of this thread: on a shared, loaded machine wall-clock figures mostly measure the
/// neighbours, so the benches also report rates per CPU-second.
pub fn thread_cpu_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}
