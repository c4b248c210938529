//! [`super::Collective`] over MPI (the `mpi` feature): Open MPI through the `mpi` crate (rsmpi),
//! for `mpirun -np N alexnet train ...`.

use super::Collective;
use crate::error::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::sync::Mutex;

/// The processes `mpirun` started, as one communicator. MPI is finalised when this is dropped.
pub struct MpiWorld {
    /// Behind a lock: `Threading::Serialized` lets any thread call MPI, but one at a time.
    world: Mutex<SimpleCommunicator>,
    _universe: Universe,
}

// SAFETY: MPI is initialised with `Threading::Serialized` (checked in `init`): any thread may call
// it as long as no two do at once, which the lock around the communicator ensures; the
// communicator is an opaque handle MPI itself owns, not tied to the thread that made it.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    /// Initialises MPI (once per process) and takes its world communicator. Call it before the
    /// process starts any thread (it may set an environment variable).
    ///
    /// Unless the user set it, Open MPI's `mpi_yield_when_idle` is turned on: a thread waiting
    /// in a collective then yields its core instead of spinning on it, and the gradient
    /// exchange's thread waits most of the backward pass for the other processes. Measured on
    /// 2 processes on 2 cores (AMD EPYC Zen 3), paper net, 2 epochs: 12.7 and 13.5 img/s
    /// spinning, 16.3 and 20.5 yielding (the all-reduce after the backward pass in the same
    /// series: 16.7 and 16.8); BENCHMARKS.md has a later run.
    pub fn init() -> Result<Self> {
        const YIELD: &str = "OMPI_MCA_mpi_yield_when_idle";
        if std::env::var_os(YIELD).is_none() {
            // SAFETY: no other thread runs yet (see above), so none reads the environment.
            unsafe { std::env::set_var(YIELD, "1") };
        }
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Serialized)
            .ok_or_else(|| Error::Invalid("MPI was already initialised in this process".into()))?;
        if threading < mpi::Threading::Serialized {
            return Err(Error::Invalid(format!(
                "this MPI library offers only {threading:?} threading; data-parallel training needs Serialized"
            )));
        }
        Ok(MpiWorld { world: Mutex::new(universe.world()), _universe: universe })
    }

    fn world(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
        // A poisoned lock only says another thread panicked, and a panic aborts the run.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `buf` reduced element-wise by `op` over all processes, in place (MPI wants a separate send
    /// buffer). In pieces, as MPI counts are C ints.
    fn all_reduce<T: Equivalence + Clone>(&self, buf: &mut [T], op: SystemOperation) {
        let world = self.world();
        for piece in buf.chunks_mut(1 << 30) {
            let send = piece.to_vec();
            world.all_reduce_into(&send[..], piece, op);
        }
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world().rank() as usize
    }
    fn size(&self) -> usize {
        self.world().size() as usize
    }
    fn sum_f32(&self, buf: &mut [f32]) {
        self.all_reduce(buf, SystemOperation::sum())
    }
    fn sum_f64(&self, buf: &mut [f64]) {
        self.all_reduce(buf, SystemOperation::sum())
    }
    fn max_f64(&self, buf: &mut [f64]) {
        self.all_reduce(buf, SystemOperation::max())
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) {
        assert!(recv.len() < i32::MAX as usize, "an all-gather beyond MPI's count");
        self.world().all_gather_into(send, recv);
    }
    fn send_recv_u16(&self, send: &[u16], to: usize, recv: &mut [u16], from: usize) {
        // A ring step's chunk is a bucket's share: far below MPI's C-int count. (Checked before
        // the lock: a panic holding it would deadlock the abort that follows.)
        assert!(send.len().max(recv.len()) < i32::MAX as usize, "a message beyond MPI's count");
        let world = self.world();
        let (to, from) = (world.process_at_rank(to as i32), world.process_at_rank(from as i32));
        mpi::point_to_point::send_receive_into(send, &to, recv, &from);
    }
    fn abort(&self, code: i32) -> ! {
        self.world().abort(code)
    }
}
