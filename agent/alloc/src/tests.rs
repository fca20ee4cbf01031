use super::*;
use proptest::prelude::*;

unsafe extern "C" {
    fn mi_usable_size(p: *const c_void) -> usize;
    fn mi_good_size(size: usize) -> usize;
}

// The whole test binary (harness, proptest) runs on it too, as the shipped binary does.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const ALIGNS: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 512, 4096];

/// Allocates, checks alignment, fills with a pattern and checks it back, grows and shrinks
/// with realloc (content kept), frees.
fn exercise(size: usize, align: usize, zeroed: bool) {
    let layout = Layout::from_size_align(size, align).unwrap();
    let a = MiMalloc;
    // SAFETY: every pointer is checked non-null, used within its layout and freed once.
    unsafe {
        let p = if zeroed {
            a.alloc_zeroed(layout)
        } else {
            a.alloc(layout)
        };
        assert!(!p.is_null(), "size {size} align {align}");
        assert_eq!(p as usize % align, 0, "size {size} align {align}");
        if zeroed {
            assert!((0..size).all(|i| *p.add(i) == 0), "zeroed {size}");
        }
        for i in 0..size {
            *p.add(i) = (i * 7 + size) as u8;
        }
        let grown = size * 2 + 8;
        let q = a.realloc(p, layout, grown);
        assert!(!q.is_null());
        assert_eq!(q as usize % align, 0, "realloc size {size} align {align}");
        assert!(
            (0..size).all(|i| *q.add(i) == (i * 7 + size) as u8),
            "kept {size}"
        );
        let big = Layout::from_size_align(grown, align).unwrap();
        let r = a.realloc(q, big, size / 2 + 1);
        assert!(!r.is_null());
        assert_eq!(r as usize % align, 0);
        assert!((0..size / 2).all(|i| *r.add(i) == (i * 7 + size) as u8));
        a.dealloc(r, Layout::from_size_align(size / 2 + 1, align).unwrap());
    }
}

#[test]
fn every_small_size_and_alignment() {
    for size in 1..=1100 {
        for align in ALIGNS {
            exercise(size, align, size % 3 == 0);
        }
    }
}

/// The reason for this crate: word-aligned blocks come from the size class of their size,
/// also once its pages have to be refilled. Through `mi_malloc_aligned` a 112-byte block then
/// came from the 128-byte class (119 bytes asked), and every later one too.
#[test]
fn word_aligned_blocks_come_from_their_own_size_class() {
    let a = MiMalloc;
    for size in (8..=1024).step_by(8) {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // Enough to use up the free blocks of a page or two, then free them and do it again:
        // the second round allocates from refilled pages.
        for _round in 0..2 {
            let blocks: Vec<*mut u8> = (0..1200)
                // SAFETY: freed below with the same layout.
                .map(|_| unsafe { a.alloc(layout) })
                .collect();
            for &p in &blocks {
                // SAFETY: p is a live mimalloc block.
                let usable = unsafe { mi_usable_size(p.cast()) };
                // SAFETY: a pure function of the size.
                let good = unsafe { mi_good_size(size) };
                assert_eq!(
                    usable, good,
                    "a {size}-byte block from the wrong size class"
                );
            }
            for p in blocks {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { a.dealloc(p, layout) };
            }
        }
    }
}

#[test]
fn allocates_after_configure() {
    configure();
    exercise(100, 8, false);
}

proptest! {
    #[test]
    fn any_layout_is_aligned_and_writable(size in 1usize..70_000, align_pow in 0u32..13, zeroed in any::<bool>()) {
        exercise(size, 1 << align_pow, zeroed);
    }
}
