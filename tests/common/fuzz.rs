//! What the fuzz tests share: a counting allocator each fuzz binary installs as its global
//! allocator (`#[global_allocator] static ALLOC: Counting = Counting::new();`), the seeded
//! PRNG, and the mutations they make alike.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Wraps `System` and counts the bytes allocated now and the most held at once since
/// [`Counting::begin`]. A request that would take the process past the hard limit fails
/// (the test then aborts) rather than a runaway case taking the machine's memory; requests
/// larger than a bound, and refused ones, are first passed to a report function (which must
/// not allocate: it runs inside the allocator).
pub struct Counting {
    current: AtomicUsize,
    peak: AtomicUsize,
    hard_limit: usize,
    report_above: usize,
    report: fn(usize),
}

fn ignore(_: usize) {}

impl Counting {
    /// Counts only: no limit, nothing reported.
    pub const fn new() -> Self {
        Self::limited(usize::MAX)
    }

    /// Fails requests that would take the process past `hard_limit` bytes.
    pub const fn limited(hard_limit: usize) -> Self {
        Counting {
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            hard_limit,
            report_above: usize::MAX,
            report: ignore,
        }
    }

    /// Calls `report(size)` for a request of more than `above` bytes, or one that is refused.
    pub const fn reporting(self, above: usize, report: fn(usize)) -> Self {
        Counting { report_above: above, report, ..self }
    }

    /// Bytes allocated now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Starts a case: the peak is reset to what is allocated now, which is returned.
    pub fn begin(&self) -> usize {
        let base = self.current();
        self.peak.store(base, Ordering::Relaxed);
        base
    }

    /// The most held at once since [`Counting::begin`] returned `base`, above `base`.
    pub fn peak_since(&self, base: usize) -> usize {
        self.peak.load(Ordering::Relaxed).saturating_sub(base)
    }

    /// Whether a request of `size` more bytes may go ahead.
    fn admit(&self, size: usize) -> bool {
        let over = self.current().saturating_add(size) > self.hard_limit;
        if size > self.report_above || over {
            (self.report)(size);
        }
        !over
    }

    fn grew(&self, size: usize) {
        let now = self.current.fetch_add(size, Ordering::Relaxed) + size;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn shrank(&self, size: usize) {
        self.current.fetch_sub(size, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !self.admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !self.admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        self.shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if !self.admit(new_size.saturating_sub(old)) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= old {
                self.grew(new_size - old);
            } else {
                self.shrank(old - new_size);
            }
        }
        p
    }
}

/// splitmix64: small, seeded, fast and the same on every platform.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Inserts 1 to 16 random bytes at a random place of `buf`; returns (where, how many).
pub fn insert_random_bytes(rng: &mut Rng, buf: &mut Vec<u8>) -> (usize, usize) {
    let at = rng.below(buf.len() + 1);
    let n = 1 + rng.below(16);
    let junk = rng.bytes(n);
    buf.splice(at..at, junk);
    (at, n)
}

/// Replaces a number of `buf` (a run of digits, then of digits or bytes of `tail`, such as
/// `.e`) by one of `numbers`; returns where and by what, or None when `buf` has no digit.
pub fn replace_number(
    rng: &mut Rng,
    buf: &mut Vec<u8>,
    tail: &[u8],
    numbers: &[&'static str],
) -> Option<(usize, &'static str)> {
    let starts: Vec<usize> =
        (0..buf.len()).filter(|&i| buf[i].is_ascii_digit() && (i == 0 || !buf[i - 1].is_ascii_digit())).collect();
    if starts.is_empty() {
        return None;
    }
    let s = *rng.pick(&starts);
    let mut e = s;
    while e < buf.len() && (buf[e].is_ascii_digit() || tail.contains(&buf[e])) {
        e += 1;
    }
    let n = *rng.pick(numbers);
    buf.splice(s..e, n.bytes());
    Some((s, n))
}

/// The message of a caught panic (empty when it is neither a `String` nor a `&str`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
