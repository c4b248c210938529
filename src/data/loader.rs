//! Batches from a background thread, so the network never waits on data: while it computes on
//! batch t, the loader fills batch t+1 (and a few more, up to `prefetch`).

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
    /// Seconds the loader thread spent making this batch (reading, cropping, augmenting,
    /// normalising), without the time it waited for the consumer.
    pub make_seconds: f64,
}

/// Turns image `i` (HWC bytes) into a network input. Called on the loader thread.
pub type MakeInput = dyn Fn(&[u8], usize, &mut [f32]) + Send + Sync;

pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Loader {
    /// Serves `order` (image indices) in batches of `opts.batch`, from batch `opts.start_batch`,
    /// each image made into `input_len` values by `make`. Usually called through
    /// [`LoaderOptions::spawn`].
    pub fn spawn(
        images: Arc<PackedImages>,
        order: Vec<u32>,
        opts: LoaderOptions,
        input_len: usize,
        make: Arc<MakeInput>,
    ) -> Self {
        let (tx, rx) = sync_channel(opts.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("alexnet-loader".into())
            .spawn(move || produce(&images, &order, opts, input_len, &*make, tx))
            .expect("spawn loader thread");
        Self { rx, handle: Some(handle) }
    }
}

fn produce(
    images: &PackedImages,
    order: &[u32],
    opts: LoaderOptions,
    input_len: usize,
    make: &MakeInput,
    tx: SyncSender<Batch>,
) {
    for (index, ids) in order.chunks(opts.batch).enumerate().skip(opts.start_batch) {
        if ids.len() < opts.batch && !opts.keep_last {
            break;
        }
        let t0 = std::time::Instant::now();
        let mut x = vec![0.0f32; ids.len() * input_len];
        for (&i, out) in ids.iter().zip(x.chunks_mut(input_len)) {
            make(images.image(i as usize), i as usize, out);
        }
        let labels = ids.iter().map(|&i| images.labels[i as usize] as usize).collect();
        let make_seconds = t0.elapsed().as_secs_f64();
        if tx.send(Batch { x, labels, index, make_seconds }).is_err() {
            return; // the consumer hung up
        }
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock a producer waiting on a full channel, then join it.
        let (_, dummy) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, dummy));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
