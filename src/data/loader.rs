//! Batches from background threads, so the network never waits on data: while it computes on
//! batch t, the workers read, decode and augment batches t+1, t+2, … (up to `prefetch` each).
//!
//! With `workers` threads, worker w makes batches w, w + workers, w + 2·workers, … and the
//! consumer takes them back in order from each worker's own bounded queue: the batches and
//! their contents do not depend on the number of workers (an image's augmentation is a
//! function of the seed, the epoch and its index alone), so a resumed run stays bit-exact.

use super::DataError;
use super::cache::PackedImages;
use super::pipeline::LoaderOptions;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// `x [B, 3, crop, crop]`, labels, and the batch's position in its epoch.
pub struct Batch {
    pub x: Vec<f32>,
    pub labels: Vec<usize>,
    /// Batch number within the epoch (0-based).
    pub index: usize,
    /// Seconds the worker spent making this batch (reading, decoding, cropping, augmenting,
    /// normalising), without the time it waited for the consumer.
    pub make_seconds: f64,
}

/// Turns image `i` (HWC bytes) into a network input. Called on the worker threads.
pub type MakeInput = dyn Fn(&[u8], usize, &mut [f32]) + Send + Sync;

pub struct Loader {
    queues: Vec<Receiver<Result<Batch, DataError>>>,
    handles: Vec<JoinHandle<()>>,
    /// Which worker's queue holds the next batch.
    next: usize,
    /// Set after an error or the last batch: nothing more comes.
    done: bool,
}

impl Loader {
    /// Serves `order` (image indices) in batches of `opts.batch`, from batch `opts.start_batch`,
    /// each image made into `input_len` values by `make`, on `opts.workers` threads. Usually
    /// called through [`LoaderOptions::spawn`].
    pub fn spawn(
        images: Arc<PackedImages>,
        order: Vec<u32>,
        opts: LoaderOptions,
        input_len: usize,
        make: Arc<MakeInput>,
    ) -> Self {
        let workers = opts.workers.max(1);
        let order = Arc::new(order);
        let (mut queues, mut handles) = (Vec::new(), Vec::new());
        for w in 0..workers {
            let (tx, rx) = sync_channel(opts.prefetch.max(1));
            let (images, order, make) = (images.clone(), order.clone(), make.clone());
            let handle = std::thread::Builder::new()
                .name(format!("alexnet-loader-{w}"))
                .spawn(move || produce(&images, &order, opts, (w, workers), input_len, &*make, tx))
                .expect("spawn loader thread");
            queues.push(rx);
            handles.push(handle);
        }
        // The first batch served is `start_batch`: its worker is `start_batch % workers`.
        Self { queues, handles, next: opts.start_batch % workers, done: false }
    }
}

/// Worker `w` of `n`: makes batches `index ≡ w (mod n)` of `order` from `opts.start_batch` on.
fn produce(
    images: &PackedImages,
    order: &[u32],
    opts: LoaderOptions,
    (w, n): (usize, usize),
    input_len: usize,
    make: &MakeInput,
    tx: SyncSender<Result<Batch, DataError>>,
) {
    let batches = order.chunks(opts.batch).enumerate().skip(opts.start_batch).filter(|(index, _)| index % n == w);
    for (index, ids) in batches {
        if ids.len() < opts.batch && !opts.keep_last {
            break;
        }
        let t0 = std::time::Instant::now();
        let made = make_batch(images, ids, input_len, make).map(|(x, labels)| Batch {
            x,
            labels,
            index,
            make_seconds: t0.elapsed().as_secs_f64(),
        });
        let failed = made.is_err();
        if tx.send(made).is_err() || failed {
            return; // the consumer hung up, or has the error
        }
    }
}

fn make_batch(
    images: &PackedImages,
    ids: &[u32],
    input_len: usize,
    make: &MakeInput,
) -> Result<(Vec<f32>, Vec<usize>), DataError> {
    let mut x = vec![0.0f32; ids.len() * input_len];
    for (&i, out) in ids.iter().zip(x.chunks_mut(input_len)) {
        make(&images.image(i as usize)?, i as usize, out);
    }
    Ok((x, ids.iter().map(|&i| images.labels[i as usize] as usize).collect()))
}

impl Iterator for Loader {
    /// A batch, or the error that stopped the loader (an image of the cache that cannot be
    /// read back: the file was damaged after it was packed).
    type Item = Result<Batch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        // Worker `next` ends its queue when its next batch would be past the end (or short).
        let item = self.queues[self.next].recv().ok();
        self.next = (self.next + 1) % self.queues.len();
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock producers waiting on a full queue, then join them.
        self.queues.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
