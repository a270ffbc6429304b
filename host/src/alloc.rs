//! The gateway's heap: mimalloc, entered through its plain functions.
//!
//! glibc's allocator showed as a sixth of a proxied request's CPU (malloc,
//! free, consolidation); mimalloc's thread-local free lists are cheaper for
//! the many small, short-lived buffers of an HTTP exchange.
//!
//! The `mimalloc` crate's allocator passes every Rust allocation to
//! `mi_malloc_aligned`, whose fast path needs a free block at hand in a
//! small page. Otherwise (a buffer over 1 KiB, or the first allocation
//! after a page fills) mimalloc 3 takes its aligned slow path, which serves
//! even a word alignment by over-allocating. Every block of `mi_malloc`'s
//! is aligned to a word at least (its size classes are whole words, and a
//! page's first block starts 16-byte aligned), so the usual alignments go
//! to the plain functions and only larger ones take the aligned ones: a
//! request on a route without plugins went from 33,355 to 32,867
//! instructions, one through the quickstart's users chain from 138,236 to
//! 136,025 (`bench/instructions.sh`, nginx as the upstream).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// What any `mi_malloc` block is aligned to.
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

pub struct Mimalloc;

// SAFETY: each function returns mimalloc memory of the layout's size and at
// least its alignment (or null), and every block goes back through
// `mi_free`/`mi_realloc*`, which take blocks from any of these functions.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C calls; mimalloc accepts any size and any power of
        // two alignment (which a Layout's is).
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from one of this allocator's functions.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`'s alignment,
        // which the new block keeps.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class from a byte to past the small pages, at every
    /// alignment from a byte to a page: each block is aligned as asked,
    /// holds its bytes, keeps them through growing and shrinking, and
    /// zeroed ones read zero.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = Mimalloc;
        let sizes = (1..=160).chain([255, 256, 1000, 1024, 1025, 4000, 70_000, 1 << 20]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; each block is used within its
                // size and freed once, with the layout it was made with.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "zeroed {size} at {align}");
                    assert!((0..size).all(|i| *z.add(i) == 0), "zeroed {size}");
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "{size} at {align}");
                    for i in 0..size {
                        *p.add(i) = i as u8;
                    }
                    let grown = a.realloc(p, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "{size} grown at {align}");
                    assert!((0..size).all(|i| *grown.add(i) == i as u8));
                    let grown_layout = Layout::from_size_align(size * 3, align).unwrap();
                    let shrunk = a.realloc(grown, grown_layout, size.div_ceil(2));
                    assert_eq!(shrunk as usize % align, 0, "{size} shrunk at {align}");
                    assert!((0..size.div_ceil(2)).all(|i| *shrunk.add(i) == i as u8));
                    let shrunk_layout = Layout::from_size_align(size.div_ceil(2), align).unwrap();
                    a.dealloc(shrunk, shrunk_layout);
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
