//! A pool of decoder threads that reads and letterboxes images ahead of the model, yielding
//! them in index order so batches are deterministic.
//!
//! The stream is never silently short: it yields exactly one item per path. A decoder that
//! panics gives a fatal error naming its image, and should the decoders stop before the end
//! for any other reason, the first missing image is yielded as a fatal error (see
//! [`DataError::fatal`]), after which the stream ends.

use super::letterbox::{LetterboxError, MAX_SIZE};
use super::preprocess::Preprocess;
use super::{load_rgb, DataError, Letterboxed};
use crossbeam_channel::{bounded, Receiver};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Decodes `paths` on `threads` threads, at most `depth` images ahead of the consumer.
pub struct Prefetcher {
    rx: Receiver<(usize, Result<Letterboxed, DataError>)>,
    pending: BTreeMap<usize, Result<Letterboxed, DataError>>,
    paths: Arc<Vec<PathBuf>>,
    next: usize,
    total: usize,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// Reads and letterboxes one image. A size that cannot be letterboxed is fatal (no image
/// would do); an image that cannot be read or is empty is a bad image.
pub fn decode(path: &Path, size: u32) -> Result<Letterboxed, DataError> {
    decode_with(path, size, Preprocess::Letterbox)
}

/// Reads one image and makes it an input with `prep`, as [`decode`] letterboxes it.
pub fn decode_with(path: &Path, size: u32, prep: Preprocess) -> Result<Letterboxed, DataError> {
    if size == 0 || size > MAX_SIZE {
        return Err(DataError::Letterbox { file: path.to_path_buf(), source: LetterboxError::Size { size } });
    }
    let img = load_rgb(path)?;
    prep.apply(&img, size).map_err(|source| DataError::Letterbox { file: path.to_path_buf(), source })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Prefetcher {
    pub fn new(paths: Vec<PathBuf>, size: u32, threads: usize, depth: usize) -> Self {
        Self::with_decoder(paths, threads, depth, move |p| decode(p, size))
    }

    /// Like [`new`](Self::new) with another transform than the letterbox.
    pub fn with_preprocess(paths: Vec<PathBuf>, size: u32, prep: Preprocess, threads: usize, depth: usize) -> Self {
        Self::with_decoder(paths, threads, depth, move |p| decode_with(p, size, prep))
    }

    /// Like [`new`](Self::new) with another decoder (tests inject failing ones).
    pub fn with_decoder<F>(paths: Vec<PathBuf>, threads: usize, depth: usize, decoder: F) -> Self
    where
        F: Fn(&Path) -> Result<Letterboxed, DataError> + Send + Sync + 'static,
    {
        let total = paths.len();
        let paths = Arc::new(paths);
        let decoder = Arc::new(decoder);
        let counter = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = bounded(depth.max(1));
        let workers = (0..threads.max(1))
            .map(|_| {
                let (paths, counter, stop, tx, decoder) =
                    (paths.clone(), counter.clone(), stop.clone(), tx.clone(), decoder.clone());
                std::thread::spawn(move || loop {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    if i >= paths.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let path = &paths[i];
                    let item = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder(path))).unwrap_or_else(
                        |payload| {
                            Err(DataError::fatal(
                                path,
                                format!("the image decoder panicked: {}", panic_message(payload.as_ref())),
                            ))
                        },
                    );
                    if tx.send((i, item)).is_err() {
                        break;
                    }
                })
            })
            .collect();
        Self { rx, pending: BTreeMap::new(), paths, next: 0, total, stop, workers }
    }
}

impl Iterator for Prefetcher {
    type Item = (usize, Result<Letterboxed, DataError>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        while !self.pending.contains_key(&self.next) {
            match self.rx.recv() {
                Ok((i, item)) => {
                    self.pending.insert(i, item);
                }
                Err(_) => {
                    // Every decoder is gone before this image: say so, then end.
                    let i = self.next;
                    self.next = self.total;
                    let e = DataError::fatal(
                        &self.paths[i],
                        format!("the image decoders stopped before this image ({i} of {} decoded)", self.total),
                    );
                    return Some((i, Err(e)));
                }
            }
        }
        let i = self.next;
        self.next += 1;
        self.pending.remove(&i).map(|item| (i, item))
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock senders waiting on a full queue, then wait for the threads.
        while self.rx.try_recv().is_ok() {}
        for w in self.workers.drain(..) {
            while !w.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(n: usize) -> Vec<PathBuf> {
        (0..n).map(|i| PathBuf::from(format!("img{i}.png"))).collect()
    }

    fn ok_image() -> Result<Letterboxed, DataError> {
        Ok(Letterboxed { data: vec![0.0; 3], size: 1, original: (1, 1), ratio: 1.0, pad: (0, 0) })
    }

    #[test]
    fn a_panicking_decoder_is_a_fatal_error_naming_the_image() {
        for threads in [1, 3] {
            let p = Prefetcher::with_decoder(paths(6), threads, 2, |p| {
                if p == Path::new("img3.png") {
                    panic!("boom");
                }
                ok_image()
            });
            let items: Vec<_> = p.collect();
            assert_eq!(items.len(), 6, "one item per image, in order");
            for (n, (i, item)) in items.iter().enumerate() {
                assert_eq!(*i, n);
                match item {
                    Err(e) => {
                        assert_eq!(n, 3);
                        assert!(e.is_fatal());
                        assert!(e.to_string().starts_with("img3.png: the image decoder panicked: boom"), "{e}");
                    }
                    Ok(_) => assert_ne!(n, 3),
                }
            }
            // A fatal error is never skipped.
            let e = items.into_iter().find_map(|(_, r)| r.err()).unwrap();
            assert!(super::super::SkipReport::default().handle(super::super::OnBad::Skip, e).is_err());
        }
    }

    #[test]
    fn a_size_that_overflows_is_an_error_per_image_not_a_short_stream() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.png");
        image::RgbImage::new(8, 6).save(&img).unwrap();
        for size in [0, 65536, u32::MAX] {
            let items: Vec<_> = Prefetcher::new(vec![img.clone(), img.clone()], size, 2, 2).collect();
            assert_eq!(items.len(), 2, "size {size}");
            for (_, r) in items {
                let e = r.unwrap_err();
                assert!(e.is_fatal() && e.to_string().contains("a.png") && e.to_string().contains("image size"), "{e}");
            }
        }
    }

    #[test]
    fn decoders_that_stop_early_give_an_error_naming_the_first_missing_image() {
        // A decoder that ends its thread without sending (not a panic): simulated by a
        // Prefetcher whose workers are all gone before the end.
        let mut p = Prefetcher::with_decoder(paths(4), 1, 1, |_| ok_image());
        let first = p.next().unwrap();
        assert!(first.1.is_ok());
        // Stop the workers and drop what they queued: the stream must not end silently.
        p.stop.store(true, Ordering::Relaxed);
        for w in p.workers.drain(..) {
            while !w.is_finished() {
                while p.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
        }
        while p.rx.try_recv().is_ok() {}
        p.pending.clear();
        let (i, r) = p.next().unwrap();
        let e = r.unwrap_err();
        assert!(e.is_fatal() && e.to_string().starts_with(&format!("img{i}.png: the image decoders stopped")), "{e}");
        assert!(p.next().is_none());
    }
}
