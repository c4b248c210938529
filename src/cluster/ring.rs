//! The ring all-reduce with bf16 on the wire (`--grad-dtype bf16`): half the bytes of f32 for
//! the gradients, summed in f32 where they are held. MPI's own all-reduce cannot sum bf16
//! (it has no such type, and a user-defined operation needs the `mpi` crate's libffi
//! feature), so this is the bandwidth-optimal ring (Patarasuk and Yuan 2009, as Horovod and
//! NCCL run it) over point-to-point exchanges.
//!
//! `N` processes cut the buffer into `N` chunks. Reduce-scatter: in `N-1` steps each process
//! sends a chunk's partial sum, rounded to bf16, to its right neighbour and adds the one from
//! its left (in f32) to its own values, after which process `r` holds chunk `r+1`'s whole sum.
//! It rounds that to bf16, and the all-gather passes the finished chunks round the ring in
//! `N-1` more steps. Each process sends and receives `2(N-1)/N` times the buffer's size in
//! bf16, and every process ends with the same values (each chunk's sum is rounded once, by the
//! process that finished it, and copied exactly).

use super::Cluster;
use crate::matmul::bf16::{from_bf16, round_bf16, to_bf16};

/// Sums `buf` element-wise over all processes as described above, in place. Every process
/// gets the same values, each within about 2⁻⁸ relative of the f32 sum per rounding (one per
/// hop of the partial sum, `N-1` in all, and the final one).
pub fn sum_bf16(cluster: &Cluster, buf: &mut [f32]) {
    let (n, r) = (cluster.size(), cluster.rank());
    if n == 1 {
        return;
    }
    let len = buf.len();
    let chunk = |c: usize| c * len / n..(c + 1) * len / n;
    let (right, left) = ((r + 1) % n, (r + n - 1) % n);
    let widest = len.div_ceil(n);
    let (mut send, mut recv) = (vec![0u16; widest], vec![0u16; widest]);
    for s in 0..n - 1 {
        let (out, inc) = (chunk((r + n - s) % n), chunk((r + 2 * n - s - 1) % n));
        for (h, &x) in send.iter_mut().zip(&buf[out.clone()]) {
            *h = to_bf16(x);
        }
        cluster.send_recv_u16(&send[..out.len()], right, &mut recv[..inc.len()], left);
        for (x, &h) in buf[inc.clone()].iter_mut().zip(&recv) {
            *x += from_bf16(h);
        }
    }
    let own = chunk((r + 1) % n);
    buf[own].iter_mut().for_each(|x| *x = round_bf16(*x));
    for s in 0..n - 1 {
        let (out, inc) = (chunk((r + 1 + n - s) % n), chunk((r + n - s) % n));
        for (h, &x) in send.iter_mut().zip(&buf[out.clone()]) {
            *h = to_bf16(x);
        }
        cluster.send_recv_u16(&send[..out.len()], right, &mut recv[..inc.len()], left);
        for (x, &h) in buf[inc.clone()].iter_mut().zip(&recv) {
            *x = from_bf16(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::threads;

    /// Every process ends with the same values, near the exact sum, for sizes that do and do
    /// not divide by the number of processes (and buffers shorter than it).
    #[test]
    fn bf16_ring_sums_alike_everywhere() {
        for size in [2, 3, 4] {
            for len in [0, 1, 3, 17, 1000] {
                let value = |rank: usize, i: usize| ((rank * 31 + i * 7) % 13) as f32 * 0.37 - 2.0;
                let runs: Vec<_> = threads::members(size)
                    .into_iter()
                    .map(|m| {
                        std::thread::spawn(move || {
                            let rank = m.rank;
                            let mut buf: Vec<f32> = (0..len).map(|i| value(rank, i)).collect();
                            sum_bf16(&Cluster::new(m), &mut buf);
                            buf
                        })
                    })
                    .collect();
                let got: Vec<Vec<f32>> = runs.into_iter().map(|h| h.join().unwrap()).collect();
                for (i, &x) in got[0].iter().enumerate() {
                    let exact: f32 = (0..size).map(|r| value(r, i)).sum();
                    let scale: f32 = (0..size).map(|r| value(r, i).abs()).sum();
                    assert!((x - exact).abs() <= scale * size as f32 / 256.0, "{size} x {len} [{i}]: {x} vs {exact}");
                    assert_eq!(round_bf16(x), x, "the sum is a bf16 value");
                }
                assert!(got.iter().all(|g| g == &got[0]), "{size} processes x {len}: not the same everywhere");
            }
        }
    }
}
