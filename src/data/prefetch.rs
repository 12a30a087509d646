//! A pool of decoder threads that reads and letterboxes images ahead of the model, yielding
//! them in index order so batches are deterministic.

use super::{letterbox, load_rgb, DataError, Letterboxed};
use crossbeam_channel::{bounded, Receiver};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Decodes `paths` on `threads` threads, at most `depth` images ahead of the consumer.
pub struct Prefetcher {
    rx: Receiver<(usize, Result<Letterboxed, DataError>)>,
    pending: BTreeMap<usize, Result<Letterboxed, DataError>>,
    next: usize,
    total: usize,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Prefetcher {
    pub fn new(paths: Vec<PathBuf>, size: u32, threads: usize, depth: usize) -> Self {
        let total = paths.len();
        let paths = Arc::new(paths);
        let counter = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = bounded(depth.max(1));
        let workers = (0..threads.max(1))
            .map(|_| {
                let (paths, counter, stop, tx) = (paths.clone(), counter.clone(), stop.clone(), tx.clone());
                std::thread::spawn(move || loop {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    if i >= paths.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let item = load_rgb(&paths[i]).map(|img| letterbox(&img, size));
                    if tx.send((i, item)).is_err() {
                        break;
                    }
                })
            })
            .collect();
        Self { rx, pending: BTreeMap::new(), next: 0, total, stop, workers }
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
                Err(_) => return None,
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
