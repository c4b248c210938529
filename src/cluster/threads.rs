//! The processes of a data-parallel run as threads of this one: a [`Collective`] for tests
//! (the data-parallel arithmetic, checked without MPI) and for trying the code on one machine.
//! Each collective gathers every member's buffer, then each member folds them in rank order,
//! so all get the same result.

use super::Collective;
use std::collections::HashMap;
use std::sync::{Arc, Barrier, Condvar, Mutex};

struct Group {
    barrier: Barrier,
    f32s: Mutex<Vec<Vec<f32>>>,
    f64s: Mutex<Vec<Vec<f64>>>,
    /// Messages in flight, by (from, to).
    mail: Mutex<HashMap<(usize, usize), Vec<u16>>>,
    posted: Condvar,
}

/// One member of a group made by [`members`].
pub struct Member {
    pub rank: usize,
    pub size: usize,
    group: Arc<Group>,
}

/// A group of `size` members, one for each thread that plays a process.
pub fn members(size: usize) -> Vec<Member> {
    let group = Arc::new(Group {
        barrier: Barrier::new(size),
        f32s: Mutex::new(vec![Vec::new(); size]),
        f64s: Mutex::new(vec![Vec::new(); size]),
        mail: Mutex::new(HashMap::new()),
        posted: Condvar::new(),
    });
    (0..size).map(|rank| Member { rank, size, group: group.clone() }).collect()
}

fn reduce<T: Copy>(m: &Member, slots: &Mutex<Vec<Vec<T>>>, buf: &mut [T], op: impl Fn(T, T) -> T) {
    slots.lock().unwrap()[m.rank] = buf.to_vec();
    m.group.barrier.wait();
    {
        let s = slots.lock().unwrap();
        for (i, v) in buf.iter_mut().enumerate() {
            *v = (1..m.size).fold(s[0][i], |acc, r| op(acc, s[r][i]));
        }
    }
    m.group.barrier.wait();
}

impl Collective for Member {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sum_f32(&self, buf: &mut [f32]) {
        reduce(self, &self.group.f32s, buf, |a, b| a + b)
    }
    fn sum_f64(&self, buf: &mut [f64]) {
        reduce(self, &self.group.f64s, buf, |a, b| a + b)
    }
    fn max_f64(&self, buf: &mut [f64]) {
        reduce(self, &self.group.f64s, buf, f64::max)
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) {
        let g = &self.group;
        g.f32s.lock().unwrap()[self.rank] = send.to_vec();
        g.barrier.wait();
        for (out, part) in recv.chunks_exact_mut(send.len().max(1)).zip(g.f32s.lock().unwrap().iter()) {
            out.copy_from_slice(part);
        }
        g.barrier.wait();
    }
    fn send_recv_u16(&self, send: &[u16], to: usize, recv: &mut [u16], from: usize) {
        let g = &self.group;
        let mut mail = g.mail.lock().unwrap();
        // One message per pair at a time, as a blocking send would wait for its receiver.
        while mail.contains_key(&(self.rank, to)) {
            mail = g.posted.wait(mail).unwrap();
        }
        mail.insert((self.rank, to), send.to_vec());
        g.posted.notify_all();
        loop {
            if let Some(m) = mail.remove(&(from, self.rank)) {
                assert_eq!(m.len(), recv.len(), "message of {} values for a buffer of {}", m.len(), recv.len());
                recv.copy_from_slice(&m);
                g.posted.notify_all();
                return;
            }
            mail = g.posted.wait(mail).unwrap();
        }
    }
    fn abort(&self, code: i32) -> ! {
        panic!("member {} aborted the group with {code}", self.rank)
    }
}
