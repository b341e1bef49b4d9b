//! A forked child must never hand out a nonce its parent also hands out,
//! even though nonces are drawn from a per-thread block (see src/nonce.rs).
//! Alone in its own test binary so that no other test thread is inside
//! aws-lc when the process forks.

#![cfg(unix)]

use keyturn_nonce::fill as fill_nonce;
use std::collections::HashSet;

const N: usize = 64;

fn nonces() -> Vec<[u8; 12]> {
    (0..N)
        .map(|_| {
            let mut n = [0u8; 12];
            fill_nonce(&mut n).unwrap();
            n
        })
        .collect()
}

#[test]
fn parent_and_child_never_share_nonces() {
    // Draw one nonce so that the parent's block is filled and mostly unused.
    let mut first = [0u8; 12];
    fill_nonce(&mut first).unwrap();

    let mut fds = [0i32; 2];
    // SAFETY: a plain pipe(2) into a two-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only draws nonces, writes them to the pipe and
    // leaves with _exit, running no destructors or test-harness code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut out = Vec::with_capacity(N * 12);
        let mut ok = true;
        for _ in 0..N {
            let mut n = [0u8; 12];
            ok &= fill_nonce(&mut n).is_ok();
            out.extend_from_slice(&n);
        }
        // SAFETY: writing our own buffer to our pipe, then leaving at once.
        unsafe {
            libc::write(fds[1], out.as_ptr().cast(), out.len());
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    // SAFETY: closing the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    let parent: HashSet<[u8; 12]> = nonces().into_iter().collect();

    let mut child = vec![0u8; N * 12];
    let mut got = 0;
    while got < child.len() {
        // SAFETY: reading into the unread tail of our own buffer.
        let r = unsafe { libc::read(fds[0], child[got..].as_mut_ptr().cast(), child.len() - got) };
        assert!(r > 0, "child wrote too little");
        got += r as usize;
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);

    for n in child.chunks(12) {
        let n: [u8; 12] = n.try_into().unwrap();
        assert!(!parent.contains(&n), "child repeated a parent nonce");
        assert_ne!(n, first);
    }
}
