//! The edge's allocator on wasm: a free list per power-of-two size class in front of the
//! platform's allocator (dlmalloc in Rust's wasm std).
//!
//! CDNs bill CPU inside the guest, and a profile of a single-flag OFREP request put
//! dlmalloc's `malloc`/`free` and Rust's allocation shims at about a quarter of the
//! guest's time: a request allocates and frees many small blocks (header names and
//! values, JSON, keys) of few sizes. Here a small block is a pop or a push on its class's
//! list, a few instructions. Blocks of up to 4 KiB come from slabs taken from the backing
//! allocator and are never given back to it: an instance keeps its peak per class, as wasm
//! memory never shrinks anyway. Larger or over-aligned blocks go straight to the backing.
//!
//! Not thread-safe: it is the global allocator only on wasm targets without threads (no
//! `atomics` target feature), where nothing can call it from two threads.
//!
//! The only `unsafe` in Verge: an allocator cannot be written without it. Every block says
//! why it holds, and the tests run it natively under many sizes, alignments and reallocs.
#![allow(unsafe_code, reason = "a global allocator hands out raw memory")]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// The smallest class is 16 bytes (the largest alignment a small type here asks for).
const MIN_SHIFT: u32 = 4;
/// 16, 32, … 4096 bytes.
const CLASSES: usize = 9;
const MAX_SMALL: usize = 1 << (MIN_SHIFT as usize + CLASSES - 1);
/// What a class takes from the backing allocator when its list and slab are empty.
const SLAB: usize = 16 * 1024;

pub(crate) struct SizeClasses<B> {
    lists: UnsafeCell<Lists>,
    backing: B,
}

struct Lists {
    /// Freed blocks of each class, linked through their first word.
    free: [*mut u8; CLASSES],
    /// The unused rest of each class's newest slab: `next..end`.
    next: [usize; CLASSES],
    end: [usize; CLASSES],
}

// SAFETY: only where no second thread can exist (see the module doc), so the lists are
// never touched by two callers at once.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<B: Sync> Sync for SizeClasses<B> {}

/// The class a layout is served from, or `None` when the backing allocator serves it.
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    if size > MAX_SMALL {
        return None;
    }
    // ceil(log2(size)) - MIN_SHIFT
    Some((usize::BITS - (size - 1).leading_zeros() - MIN_SHIFT) as usize)
}

const fn class_size(class: usize) -> usize {
    1 << (class + MIN_SHIFT as usize)
}

impl<B> SizeClasses<B> {
    pub(crate) const fn new(backing: B) -> Self {
        Self {
            lists: UnsafeCell::new(Lists { free: [ptr::null_mut(); CLASSES], next: [0; CLASSES], end: [0; CLASSES] }),
            backing,
        }
    }
}

impl<B: GlobalAlloc> SizeClasses<B> {
    /// # Safety
    /// No other call on `self` may be running (single-threaded use).
    unsafe fn alloc_small(&self, class: usize) -> *mut u8 {
        // SAFETY: exclusive access, per this function's contract.
        let lists = unsafe { &mut *self.lists.get() };
        let head = lists.free[class];
        if !head.is_null() {
            // SAFETY: every listed block is a freed block of this class, at least a word
            // long and aligned, whose first word links the next one.
            lists.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = class_size(class);
        if lists.next[class] == lists.end[class] {
            // SAFETY: a non-zero size and a power-of-two alignment.
            let slab = unsafe { self.backing.alloc(Layout::from_size_align_unchecked(SLAB, size)) };
            if slab.is_null() {
                return slab;
            }
            lists.next[class] = slab as usize;
            lists.end[class] = slab as usize + SLAB;
        }
        let block = lists.next[class];
        lists.next[class] += size;
        block as *mut u8
    }

    /// # Safety
    /// `block` came from `alloc_small(class)` and is not in use; no other call on `self`
    /// may be running.
    unsafe fn free_small(&self, block: *mut u8, class: usize) {
        // SAFETY: exclusive access, per this function's contract.
        let lists = unsafe { &mut *self.lists.get() };
        // SAFETY: the block is ours, unused, and at least a word long and aligned.
        unsafe { block.cast::<*mut u8>().write(lists.free[class]) };
        lists.free[class] = block;
    }
}

// SAFETY: small blocks are handed out once until freed (a list pop or a fresh slab slice),
// are at least as large and as aligned as asked (a class's size is a power of two at least
// the layout's size and alignment, slabs are aligned to it); the rest is the backing's.
unsafe impl<B: GlobalAlloc> GlobalAlloc for SizeClasses<B> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            // SAFETY: single-threaded use (see the Sync impl).
            Some(class) => unsafe { self.alloc_small(class) },
            // SAFETY: the caller's layout contract, passed on.
            None => unsafe { self.backing.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout) {
            Some(class) => {
                // SAFETY: single-threaded use; a non-null block is `layout.size()` long.
                unsafe {
                    let block = self.alloc_small(class);
                    if !block.is_null() {
                        block.write_bytes(0, layout.size());
                    }
                    block
                }
            }
            // Fresh memory from the backing may be zero already; let it decide.
            // SAFETY: the caller's layout contract, passed on.
            None => unsafe { self.backing.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            // SAFETY: the same layout chose the same class when it was allocated.
            Some(class) => unsafe { self.free_small(block, class) },
            // SAFETY: the backing allocated it with this layout.
            None => unsafe { self.backing.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees the new size, rounded up to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // Still fits its class (a Vec growing within it, or shrinking a little).
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: the backing allocated it with this layout.
            (None, None) => unsafe { self.backing.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: the caller's contract; the copy is within both blocks.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::System;

    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_are_the_smallest_power_of_two_that_holds_size_and_alignment() {
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(16, 8)), Some(0));
        assert_eq!(class_of(layout(17, 1)), Some(1));
        assert_eq!(class_of(layout(8, 64)), Some(2));
        assert_eq!(class_of(layout(4096, 8)), Some(CLASSES - 1));
        assert_eq!(class_of(layout(4097, 8)), None);
        assert_eq!(class_of(layout(8, 8192)), None);
    }

    /// Many live blocks of mixed sizes, filled with a byte of their own: none overlaps,
    /// each is aligned as asked, freed blocks are reused, and contents survive realloc.
    #[test]
    fn blocks_never_overlap_keep_their_alignment_and_contents_and_are_reused() {
        let heap = SizeClasses::new(System);
        let sizes = [1, 7, 16, 24, 33, 100, 500, 1000, 4000, 4096, 5000, 70_000];
        let aligns = [1, 8, 16, 64, 4096];
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let mut fill = 0u8;
        for round in 0..40 {
            for (i, &size) in sizes.iter().enumerate() {
                let layout = layout(size, aligns[(i + round) % aligns.len()]);
                fill = fill.wrapping_add(1);
                // SAFETY: a non-zero layout; the test is the only user of `heap`.
                let block = unsafe { heap.alloc(layout) };
                assert!(!block.is_null());
                assert_eq!(block as usize % layout.align(), 0, "{layout:?} misaligned");
                // SAFETY: the block is `layout.size()` long and ours.
                unsafe { block.write_bytes(fill, layout.size()) };
                live.push((block, layout, fill));
            }
            // Free every third block, grow every fifth.
            let mut kept = Vec::new();
            for (n, (block, layout, fill)) in live.drain(..).enumerate() {
                if n % 3 == 0 {
                    // SAFETY: allocated above with this layout, not freed before.
                    unsafe { heap.dealloc(block, layout) };
                } else if n % 5 == 0 {
                    let new_size = layout.size() * 2 + 3;
                    // SAFETY: allocated above with this layout; a valid new size.
                    let moved = unsafe { heap.realloc(block, layout, new_size) };
                    // SAFETY: the first `layout.size()` bytes were copied; the rest is ours.
                    unsafe {
                        assert!(std::slice::from_raw_parts(moved, layout.size()).iter().all(|&b| b == fill));
                        moved.write_bytes(fill, new_size);
                    }
                    kept.push((moved, Layout::from_size_align(new_size, layout.align()).unwrap(), fill));
                } else {
                    kept.push((block, layout, fill));
                }
            }
            live = kept;
        }
        // Every live block still holds its own byte: nothing handed out twice.
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for &(block, layout, fill) in &live {
            // SAFETY: live blocks of `layout.size()` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(block, layout.size()) };
            assert!(bytes.iter().all(|&b| b == fill), "a block was overwritten");
            ranges.push((block as usize, block as usize + layout.size()));
        }
        ranges.sort_unstable();
        assert!(ranges.windows(2).all(|pair| pair[0].1 <= pair[1].0), "two live blocks overlap");

        // A freed small block is the next one its class hands out.
        let small = layout(40, 8);
        // SAFETY: as above.
        unsafe {
            let first = heap.alloc(small);
            heap.dealloc(first, small);
            assert_eq!(heap.alloc(small), first);
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_even_when_reused() {
        let heap = SizeClasses::new(System);
        let small = layout(200, 8);
        // SAFETY: the test is the only user of `heap`; blocks are used within their size.
        unsafe {
            let dirty = heap.alloc(small);
            dirty.write_bytes(0xAB, small.size());
            heap.dealloc(dirty, small);
            let zeroed = heap.alloc_zeroed(small);
            assert_eq!(zeroed, dirty);
            assert!(std::slice::from_raw_parts(zeroed, small.size()).iter().all(|&b| b == 0));
        }
    }
}
