//! Splits a kernel over libtorch's intra-op threads: its OpenMP team (libgomp, loaded with
//! libtorch), found at run time, so that our kernels and libtorch's share one set of
//! threads instead of two competing ones. Without the runtime the work runs on the caller.

use std::ffi::{c_char, c_int, c_uint, c_void};

type Parallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);
type Query = unsafe extern "C" fn() -> c_int;

struct Omp {
    parallel: Parallel,
    thread_num: Query,
    num_threads: Query,
}

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// libgomp's entry points (the ABI its compilers emit for `#pragma omp parallel`), looked
/// up once among the loaded libraries.
fn omp() -> Option<&'static Omp> {
    static OMP: std::sync::OnceLock<Option<Omp>> = std::sync::OnceLock::new();
    OMP.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT (null) and NUL-terminated names; a non-null
        // result is the named function, whose C signature is the one transmuted to.
        unsafe {
            let find = |name: &[u8]| {
                let f = dlsym(std::ptr::null_mut(), name.as_ptr() as *const c_char);
                (!f.is_null()).then_some(f)
            };
            let parallel = find(b"GOMP_parallel\0")?;
            let thread_num = find(b"omp_get_thread_num\0")?;
            let num_threads = find(b"omp_get_num_threads\0")?;
            Some(Omp {
                parallel: std::mem::transmute::<*mut c_void, Parallel>(parallel),
                thread_num: std::mem::transmute::<*mut c_void, Query>(thread_num),
                num_threads: std::mem::transmute::<*mut c_void, Query>(num_threads),
            })
        }
    })
    .as_ref()
}

/// Runs `f(part, parts)` for every part of a split of some work, one part per thread of
/// the intra-op team (`parts` = the team's size); `f(0, 1)` on the caller where there is no
/// team or `split` is false. Each part must write only what no other part writes.
pub fn run(split: bool, f: &(dyn Fn(usize, usize) + Sync)) {
    let threads = tch::get_num_threads();
    let Some(omp) = omp().filter(|_| split && threads > 1) else {
        f(0, 1);
        return;
    };
    struct Job<'a> {
        f: &'a (dyn Fn(usize, usize) + Sync),
        omp: &'a Omp,
    }
    extern "C" fn part(data: *mut c_void) {
        // SAFETY: `data` is the `Job` below, alive until GOMP_parallel returns; the
        // queries are libgomp's, valid inside its parallel region.
        let job = unsafe { &*(data as *const Job) };
        let (i, n) = unsafe { ((job.omp.thread_num)(), (job.omp.num_threads)()) };
        // A panic must not unwind into C: the kernels do not panic, and if one did the
        // process would abort here rather than run on with a half-written tensor.
        let _abort = AbortOnUnwind;
        (job.f)(i as usize, n.max(1) as usize);
        std::mem::forget(_abort);
    }
    let job = Job { f, omp };
    // SAFETY: `part` reads `job` only during the call, which returns after every thread
    // of the team has finished.
    unsafe { (omp.parallel)(part, &job as *const Job as *mut c_void, threads as c_uint, 0) };
}

struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        std::process::abort();
    }
}

/// The `part`-th of `parts` nearly equal ranges of `0..n`.
pub fn range(n: usize, part: usize, parts: usize) -> std::ops::Range<usize> {
    let (q, r) = (n / parts, n % parts);
    let start = part * q + part.min(r);
    start..start + q + usize::from(part < r)
}
