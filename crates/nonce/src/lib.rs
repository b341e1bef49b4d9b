//! Nonce generation: fresh output of aws-lc's CSPRNG for every nonce, drawn
//! in blocks so that the generator's fixed cost per call does not dominate a
//! re-encryption.
//!
//! aws-lc's `RAND_bytes` is a per-thread CTR-DRBG seeded from the operating
//! system (and reseeded after fork or a VM clone it can detect). Each call
//! also mixes 32 bytes from the CPU's RDRAND into the DRBG as prediction
//! resistance; on x86-64 that costs about 0.5 µs per call, more than the AES
//! work of re-encrypting a short field. So each thread asks aws-lc for
//! [`BLOCK`] bytes at a time and hands them out front to back: every byte of
//! a block is handed out at most once, and a block is never re-read after it
//! is used up (it is overwritten by the next call to aws-lc).
//!
//! **Fork safety.** A block lives in its own anonymous page marked
//! `MADV_WIPEONFORK` (Linux ≥ 4.14), together with its count of unused bytes.
//! In a child process the kernel hands over that page zero-filled, so the
//! child's count is zero and its first nonce comes from a fresh aws-lc call
//! (aws-lc reseeds itself in the child): parent and child never hand out the
//! same bytes. This is the mechanism aws-lc and BoringSSL use for their own
//! DRBG state. Where the page cannot be set up (another operating system, an
//! older kernel, `mmap` failing), every nonce is taken straight from aws-lc,
//! one call per nonce, as before.
//!
//! **VM snapshots.** A running process restored twice from the same memory
//! snapshot repeats whatever is left in its block (up to [`BLOCK`] bytes), as
//! it would repeat aws-lc's own DRBG state on a hypervisor that gives no VM
//! generation id. Do not resume several clones of one running keyturn.
//!
//! This crate exists to keep that `unsafe` code (`mmap`, `madvise` and
//! `munmap` of one page, and a `&mut` view of it) out of keyturn-format,
//! which forbids `unsafe`: one concern, small enough to audit in one sitting.

#![deny(unsafe_op_in_unsafe_fn)]

use std::fmt;

/// The operating system's random generator failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomError;

impl fmt::Display for RandomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the system random generator failed")
    }
}

impl std::error::Error for RandomError {}

type FormatError = RandomError;

/// Bytes drawn from aws-lc per refill: 340 AES-GCM or 170 XChaCha20 nonces.
#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
pub const BLOCK: usize = 4080;

/// Fills `out` with fresh CSPRNG output never handed out before.
pub fn fill(out: &mut [u8]) -> Result<(), RandomError> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if out.len() <= BLOCK
        && let Some(done) = pool::try_fill(out)
    {
        return done;
    }
    direct(out)
}

/// One aws-lc call.
pub fn direct(out: &mut [u8]) -> Result<(), RandomError> {
    aws_lc_rs::rand::fill(out).map_err(|_| RandomError)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod pool {
    use super::{BLOCK, FormatError, direct};
    use std::cell::RefCell;
    use std::ptr::NonNull;

    /// Mapping length. The kernel rounds it up to its page size.
    const MAP_LEN: usize = 4096;
    /// Offset of the block in the page; bytes 0..8 hold the count of unused
    /// bytes (little-endian), which reads as 0 in a forked child.
    const BLOCK_AT: usize = 16;
    const _: () = assert!(BLOCK_AT + BLOCK <= MAP_LEN);

    /// One private anonymous page, wiped in forked children.
    struct Page(NonNull<u8>);

    impl Page {
        fn new() -> Option<Page> {
            // SAFETY: a fresh private anonymous mapping: no file, no address
            // hint, and nothing else refers to it.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    MAP_LEN,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            let page = Page(NonNull::new(p.cast::<u8>())?);
            // SAFETY: `p` is the start of our own mapping of MAP_LEN bytes.
            if unsafe { libc::madvise(p, MAP_LEN, libc::MADV_WIPEONFORK) } != 0 {
                // Kernel without MADV_WIPEONFORK: the page is dropped
                // (unmapped) and the caller falls back to aws-lc per nonce.
                return None;
            }
            Some(page)
        }

        fn bytes(&mut self) -> &mut [u8; MAP_LEN] {
            // SAFETY: the mapping is MAP_LEN readable and writable bytes,
            // zero-initialized by the kernel, owned by this `Page` alone
            // (it lives in one thread's thread-local and is never shared),
            // and `&mut self` makes this the only view of it.
            unsafe { &mut *self.0.as_ptr().cast::<[u8; MAP_LEN]>() }
        }

        fn take(&mut self, out: &mut [u8]) -> Result<(), FormatError> {
            let page = self.bytes();
            let (head, rest) = page.split_at_mut(BLOCK_AT);
            let block = &mut rest[..BLOCK];
            let mut count = [0u8; 8];
            count.copy_from_slice(&head[..8]);
            let mut avail = u64::from_le_bytes(count) as usize;
            if avail > BLOCK {
                // Cannot happen; never trust it.
                avail = 0;
            }
            if avail < out.len() {
                // Empty, used up, or wiped by fork: a fresh block.
                direct(block)?;
                avail = BLOCK;
            }
            let start = BLOCK - avail;
            out.copy_from_slice(&block[start..start + out.len()]);
            avail -= out.len();
            head[..8].copy_from_slice(&(avail as u64).to_le_bytes());
            Ok(())
        }
    }

    impl Drop for Page {
        fn drop(&mut self) {
            // SAFETY: our own mapping, unmapped once, never used afterwards.
            unsafe {
                libc::munmap(self.0.as_ptr().cast(), MAP_LEN);
            }
        }
    }

    enum State {
        Unset,
        Pooled(Page),
        /// No wipe-on-fork page could be had on this thread: every nonce
        /// comes from aws-lc directly.
        Direct,
    }

    thread_local! {
        static POOL: RefCell<State> = const { RefCell::new(State::Unset) };
    }

    /// `None` when this thread cannot use a pool (no page, or the
    /// thread-local is being destroyed): the caller goes to aws-lc directly.
    pub(super) fn try_fill(out: &mut [u8]) -> Option<Result<(), FormatError>> {
        POOL.try_with(|cell| {
            let mut state = cell.try_borrow_mut().ok()?;
            if let State::Unset = *state {
                *state = match Page::new() {
                    Some(p) => State::Pooled(p),
                    None => State::Direct,
                };
            }
            match &mut *state {
                State::Pooled(page) => Some(page.take(out)),
                _ => None,
            }
        })
        .ok()
        .flatten()
    }

    /// Test hook: forget what is left of this thread's block, exactly as a
    /// fork would (the count reads as zero).
    #[cfg(test)]
    pub(super) fn simulate_wipe() -> bool {
        POOL.with(|cell| match &mut *cell.borrow_mut() {
            State::Pooled(page) => {
                page.bytes().fill(0);
                true
            }
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn nonces_never_repeat_across_refills() {
        let mut seen = HashSet::new();
        // Several blocks' worth, mixing both nonce sizes so that takes straddle
        // block ends.
        for i in 0..2000 {
            let mut n = vec![0u8; if i % 3 == 0 { 24 } else { 12 }];
            fill(&mut n).unwrap();
            assert!(seen.insert(n), "nonce repeated at {i}");
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_wiped_page_refills_with_fresh_bytes() {
        let mut a = [0u8; 12];
        fill(&mut a).unwrap();
        if !pool::simulate_wipe() {
            // This kernel has no MADV_WIPEONFORK: nonces come from aws-lc directly.
            return;
        }
        let mut b = [0u8; 12];
        fill(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(b, [0u8; 12]);
    }

    #[test]
    fn larger_requests_go_direct() {
        let mut big = vec![0u8; BLOCK + 1];
        fill(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
    }
}
