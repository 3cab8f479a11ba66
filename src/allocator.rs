//! The process's allocator: mimalloc, asked through its plain entry points whenever the
//! alignment Rust asks for is one they already give.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`, whose checks cost
//! ~20 instructions each time, and which takes a slow over-allocating path for any block past
//! mimalloc's small size (1 KiB) whatever the alignment: ~3,400 instructions of a plain
//! proxied request (`bench/instructions.py`). Rust's own `System` allocator makes the same
//! choice: plain `malloc` when the alignment is at most what malloc guarantees.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment of every block `mi_malloc` returns of at least this size (mimalloc's
/// `MI_MAX_ALIGN_SIZE` on 64-bit targets: its size classes are multiples of 16 bytes from 16
/// bytes up). A smaller block (8 bytes) is only aligned to its size.
const MALLOC_ALIGN: usize = 16;

/// mimalloc as the global allocator.
pub struct MiMalloc;

/// Whether a block of `size` bytes from the plain entry points is aligned to `align`.
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= MALLOC_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc with at least the layout's alignment (see `plain`),
// and is freed or resized by mimalloc, which accepts blocks from any of its entry points.
unsafe impl GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.align(), layout.size()) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(layout.align(), new_size) {
            mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

/// mimalloc v3's `mi_option_purge_delay` (its position in `mi_option_e`, `mimalloc.h`); the
/// binding names no constant for it. A test checks it reads mimalloc's default.
const OPTION_PURGE_DELAY: mi::mi_option_t = 15;

/// Keeps freed pages committed for `delay` before mimalloc hands them back to the system
/// (its default is 1 s), unless `MIMALLOC_PURGE_DELAY` says otherwise.
///
/// A configuration compile frees tens of MiB (the parsed tree, the decoded entities, the
/// previous snapshot), and the compile thread means to keep them for the next compile for
/// [`crate::reload::compiler::KEEP_SCRATCH`], then returns them at once with a forced
/// collect. mimalloc's own purge after 1 s undid that for reloads a second or more apart:
/// every compile faulted its scratch memory in again. Measured over 12 file-change reloads of
/// `bench/reload.py`'s config, one second apart: 129,942 → 33,300 page faults, 1,379 → 1,085
/// ms of CPU. While reloads go on, RSS holds at most one compile's scratch more.
pub fn keep_freed_pages_for(delay: std::time::Duration) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    let ms = std::os::raw::c_long::try_from(delay.as_millis()).unwrap_or(std::os::raw::c_long::MAX);
    // SAFETY: setting an option only stores the value; mimalloc reads it on each purge.
    unsafe { mi::mi_option_set(OPTION_PURGE_DELAY, ms) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is mimalloc's purge delay: it reads the documented default, 1 s.
    #[test]
    fn the_purge_delay_option_is_the_one_mimalloc_documents() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reading an option has no preconditions.
            assert_eq!(unsafe { mi::mi_option_get(OPTION_PURGE_DELAY) }, 1000);
        }
    }

    /// Blocks of every size and alignment up to a page are aligned, keep their contents when
    /// resized across size classes, and come back zeroed when asked.
    #[test]
    fn blocks_are_aligned_and_resizable() {
        let a = MiMalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [
                1,
                7,
                8,
                15,
                16,
                24,
                40,
                100,
                1000,
                1025,
                5000,
                70_000,
                3 << 20,
            ] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layouts are non-zero-sized; each block is used within its size
                // and freed once with its current layout.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null() && z as usize % align == 0, "{size}/{align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                    let p = a.alloc(layout);
                    assert!(!p.is_null() && p as usize % align == 0, "{size}/{align}");
                    std::ptr::write_bytes(p, 0xab, size);
                    let big = size * 2 + 3;
                    let p = a.realloc(p, layout, big);
                    assert!(p as usize % align == 0, "{size}/{align} -> {big}");
                    assert!(std::slice::from_raw_parts(p, size)
                        .iter()
                        .all(|&b| b == 0xab));
                    let small = (size / 3).max(1);
                    let big_layout = Layout::from_size_align(big, align).unwrap();
                    let p = a.realloc(p, big_layout, small);
                    assert!(p as usize % align == 0, "{big}/{align} -> {small}");
                    assert!(std::slice::from_raw_parts(p, small)
                        .iter()
                        .all(|&b| b == 0xab));
                    a.dealloc(p, Layout::from_size_align(small, align).unwrap());
                }
            }
        }
    }
}
