//! [`HugePageAlloc`]: the system allocator, with large blocks backed by 2 MiB pages on Linux.
//!
//! Why: the paper net's fully connected weights (234 MB in f32) are read whole for every image,
//! and a training step streams several hundred MB of activations and gradients. In 4 KiB pages
//! that is ~57,000 pages for the weights alone, more than the TLB holds, so the reads also walk
//! page tables. Most Linux systems ship transparent huge pages in `madvise` mode (Debian, Ubuntu):
//! a process gets 2 MiB pages only where it asks. Measured on a Zen 4 EPYC (2 cores, the same
//! binary with the kernel's setting flipped between `never` and `madvise`): `bench --mode memory`
//! read the fc weights at 30.5-32.7 GB/s in 4 KiB pages, 34.4-34.7 in 2 MiB pages; the paper net's
//! training step at batch 64 took a median 940 ms against 980 (4%).
//!
//! How: every block of at least [`THRESHOLD`] bytes gets `madvise(MADV_HUGEPAGE)` over the whole
//! 2 MiB-aligned pages inside it, right after allocation: before its pages are touched when the
//! block comes fresh from the kernel (as the largest do), after when the allocator reuses memory
//! already faulted in (`calloc` from an arena clears it first; `realloc` may copy first), which
//! keeps its small pages (the kernel's khugepaged may merge them later). Each call takes the
//! process's memory-map lock briefly: one call per large allocation. Where transparent huge
//! pages are off (`never`) or on for all memory (`always`) the call changes nothing; off Linux
//! it is not made. No allocator crate does only this (jemalloc and
//! mimalloc replace the allocator wholesale), hence these few lines.
//!
//! The library never installs it; the `alexnet` binary does:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: alexnet::hugepages::HugePageAlloc = alexnet::hugepages::HugePageAlloc;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks from this size on are advised: two huge pages, so at least one whole one lies inside.
pub const THRESHOLD: usize = 4 << 20;

const HUGE_PAGE: usize = 2 << 20;

/// [`System`], advising blocks of [`THRESHOLD`] bytes or more to use huge pages.
pub struct HugePageAlloc;

// SAFETY: every call is forwarded to `System` unchanged; `advise` only passes a hint to the
// kernel about pages inside the block just returned, and never reads or writes memory.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}

/// The whole 2 MiB pages inside `[p, p + len)`, or `None` when there is none.
fn huge_pages_within(p: usize, len: usize) -> Option<(usize, usize)> {
    let start = p.checked_add(HUGE_PAGE - 1)? & !(HUGE_PAGE - 1);
    let end = p.checked_add(len)? & !(HUGE_PAGE - 1);
    (end > start).then_some((start, end - start))
}

#[inline]
fn advise(p: *mut u8, len: usize) {
    if p.is_null() || len < THRESHOLD {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Some((start, len)) = huge_pages_within(p as usize, len) {
        // A hint: failure (an old kernel, THP compiled out) leaves ordinary pages, so the result
        // is ignored.
        // SAFETY: the range lies inside the block just allocated, page-aligned; MADV_HUGEPAGE
        // does not change the memory's contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = huge_pages_within;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_huge_pages_inside_the_block_are_advised() {
        const H: usize = HUGE_PAGE;
        assert_eq!(huge_pages_within(H, 2 * H), Some((H, 2 * H)));
        assert_eq!(huge_pages_within(H + 16, 3 * H), Some((2 * H, 2 * H)));
        assert_eq!(huge_pages_within(H + 16, H), None);
        assert_eq!(huge_pages_within(16, 3 * H), Some((H, 2 * H)));
        assert_eq!(huge_pages_within(usize::MAX - 8, 3 * H), None);
    }

    #[test]
    fn advised_blocks_read_and_write_as_any_other() {
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(3 * THRESHOLD + 12, 16).unwrap();
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            let s = std::slice::from_raw_parts_mut(p, layout.size());
            assert!(s.iter().all(|&b| b == 0));
            s.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
            let q = a.realloc(p, layout, 5 * THRESHOLD);
            let s = std::slice::from_raw_parts(q, layout.size());
            assert!(s.iter().enumerate().all(|(i, &b)| b == i as u8));
            a.dealloc(q, Layout::from_size_align(5 * THRESHOLD, 16).unwrap());
        }
    }
}
