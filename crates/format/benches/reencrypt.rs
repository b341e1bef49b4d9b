//! Re-encryption of one field (decrypt under the old key, encrypt under the
//! primary) beside raw AEAD seal+open of the same size, in the same run.
//!
//! Run: cargo bench -p keyturn-format --bench reencrypt -- --warm-up-time 1 --measurement-time 3
//!
//! Every benchmark counts one element per iteration, so criterion's
//! "thrpt" column is re-encryptions (or seal+open pairs, or nonces) per
//! second. Criterion runs one benchmark after another; on a shared, noisy
//! machine the load can change between them. So after criterion, a paired
//! run alternates short batches of each re-encryption and its reference
//! (raw seal+open) many times and reports the median rate of each and the
//! median of the per-round ratios: both sides of a ratio see the same load.
//!
//! Time is the benchmark thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not
//! wall time: on a machine shared with other jobs, wall time mostly
//! measures how often the thread was preempted. Rates are therefore per
//! CPU-second of one core.
//! See BENCHMARKS.md at the repository root for recorded figures.

use aws_lc_rs::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use keyturn_format::{Algorithm, Encoding, KeyId, KeyState, Keyring, Reencrypted, SecretKey, v1};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion measurement: the benchmark thread's CPU time, in nanoseconds.
struct ThreadCpuTime;

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds) as wall time, so the same formatting.
        WALL.formatter()
    }
}

type Crit = Criterion<ThreadCpuTime>;

/// A realistic context: table, column, primary key value.
const CONTEXT: [&[u8]; 3] = [b"users", b"email", b"1234567"];

/// Length of the associated data keyturn builds for this context and key id
/// "k1"/"k2": header (magic, version, alg, id length, 2-byte id, ct length)
/// plus three length-prefixed parts.
fn aad_len() -> usize {
    (2 + 1 + 1 + 1 + 2 + 4) + CONTEXT.iter().map(|p| 4 + p.len()).sum::<usize>()
}

fn ring(alg: Algorithm) -> Keyring {
    Keyring::builder()
        .add(
            KeyId::new("k1").unwrap(),
            SecretKey::from_bytes(alg, &[1u8; 32]).unwrap(),
            KeyState::DecryptOnly,
        )
        .add(
            KeyId::new("k2").unwrap(),
            SecretKey::from_bytes(alg, &[2u8; 32]).unwrap(),
            KeyState::Primary,
        )
        .build()
        .unwrap()
}

fn old_value(alg: Algorithm, plaintext: &[u8], encoding: Encoding) -> Vec<u8> {
    let old = SecretKey::from_bytes(alg, &[1u8; 32]).unwrap();
    v1::seal(
        &old,
        &KeyId::new("k1").unwrap(),
        plaintext,
        &CONTEXT,
        encoding,
    )
    .unwrap()
}

fn bench_size(c: &mut Crit, size: usize) {
    let plaintext = vec![0x5au8; size];
    let mut g = c.benchmark_group(format!("reencrypt_{size}B"));
    g.throughput(Throughput::Elements(1));

    for (alg, alg_name) in [
        (Algorithm::Aes256Gcm, "aes256gcm"),
        (Algorithm::XChaCha20Poly1305, "xchacha20poly1305"),
    ] {
        let ring = ring(alg);
        for encoding in [Encoding::Binary, Encoding::Text] {
            let old = old_value(alg, &plaintext, encoding);
            // Sanity: the benchmark really rotates.
            assert!(matches!(
                ring.reencrypt(&old, &CONTEXT).unwrap(),
                Reencrypted::Rotated(_)
            ));
            g.bench_function(format!("keyturn_{alg_name}_{}", encoding.name()), |b| {
                b.iter(|| {
                    ring.reencrypt(black_box(&old), black_box(&CONTEXT))
                        .unwrap()
                })
            });
        }
    }

    // Raw AES-256-GCM through aws-lc-rs: one seal and one open of the same
    // plaintext size with the same amount of associated data, in place, no
    // allocation, fixed nonce (no random generation): the floor under what a
    // re-encryption can cost.
    let mut raw_aes = RawSealOpen::new(&AES_256_GCM, size);
    g.bench_function("raw_aes256gcm_seal_open", |b| b.iter(|| raw_aes.run()));
    // Raw ChaCha20-Poly1305 (aws-lc, RFC 8439): what keyturn's XChaCha20
    // runs on after deriving a subkey with HChaCha20.
    let mut raw_chacha = RawSealOpen::new(&CHACHA20_POLY1305, size);
    g.bench_function("raw_chacha20poly1305_seal_open", |b| {
        b.iter(|| raw_chacha.run())
    });

    // Raw XChaCha20-Poly1305 from RustCrypto (which keyturn used before;
    // now only a cross-check in the tests).
    let xkey = XChaCha20Poly1305::new(&[3u8; 32].into());
    let xnonce = XNonce::from([7u8; 24]);
    let aad = vec![0x11u8; aad_len()];
    let mut xbuf = plaintext.clone();
    g.bench_function("raw_rustcrypto_xchacha20poly1305_seal_open", |b| {
        b.iter(|| {
            xbuf.copy_from_slice(&plaintext);
            let tag = xkey
                .encrypt_in_place_detached(&xnonce, black_box(&aad[..]), &mut xbuf)
                .unwrap();
            xkey.decrypt_in_place_detached(&xnonce, black_box(&aad[..]), &mut xbuf, &tag)
                .unwrap();
            black_box(&xbuf);
        })
    });
    g.finish();
}

/// One seal and one open through aws-lc-rs's `LessSafeKey`, in place, with a
/// fixed nonce and as much associated data as keyturn builds.
struct RawSealOpen {
    key: LessSafeKey,
    plaintext: Vec<u8>,
    buf: Vec<u8>,
    aad: Vec<u8>,
}

impl RawSealOpen {
    fn new(alg: &'static aws_lc_rs::aead::Algorithm, size: usize) -> Self {
        RawSealOpen {
            key: LessSafeKey::new(UnboundKey::new(alg, &[3u8; 32]).unwrap()),
            plaintext: vec![0x5au8; size],
            buf: Vec::with_capacity(size + 16),
            aad: vec![0x11u8; aad_len()],
        }
    }

    fn run(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&self.plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([7u8; 12]),
                Aad::from(black_box(&self.aad[..])),
                &mut self.buf,
            )
            .unwrap();
        self.buf.extend_from_slice(tag.as_ref());
        let n = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key([7u8; 12]),
                Aad::from(black_box(&self.aad[..])),
                &mut self.buf,
            )
            .unwrap()
            .len();
        black_box(n);
    }
}

fn reencrypt(c: &mut Crit) {
    bench_size(c, 64);
    bench_size(c, 1024);
}

fn nonces(c: &mut Crit) {
    let mut g = c.benchmark_group("nonce");
    g.throughput(Throughput::Elements(1));
    let mut n12 = [0u8; 12];
    g.bench_function("keyturn_fill_nonce_12B", |b| {
        b.iter(|| {
            v1::fill_nonce(black_box(&mut n12)).unwrap();
        })
    });
    let mut n24 = [0u8; 24];
    g.bench_function("keyturn_fill_nonce_24B", |b| {
        b.iter(|| {
            v1::fill_nonce(black_box(&mut n24)).unwrap();
        })
    });
    g.bench_function("aws_lc_rand_fill_12B", |b| {
        b.iter(|| {
            aws_lc_rs::rand::fill(black_box(&mut n12)).unwrap();
        })
    });
    g.finish();
}

/// Alternates batches of `a` and `b` (each about 1 ms) for `rounds` rounds.
/// Returns the median rate of each (operations per second) and the median
/// of the per-round ratios a/b.
fn paired(mut a: impl FnMut(), mut b: impl FnMut(), rounds: usize) -> (f64, f64, f64) {
    fn batch_for(f: &mut impl FnMut()) -> u64 {
        let mut n = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1) {
            f();
            n += 1;
        }
        n.max(1)
    }
    fn time(f: &mut impl FnMut(), n: u64) -> f64 {
        let t = thread_cpu_time();
        for _ in 0..n {
            f();
        }
        n as f64 / (thread_cpu_time() - t).as_secs_f64()
    }
    // Warm up and size the batches.
    let (na, nb) = (batch_for(&mut a), batch_for(&mut b));
    let (mut ra, mut rb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which side goes first.
        let (x, y) = if round % 2 == 0 {
            let x = time(&mut a, na);
            (x, time(&mut b, nb))
        } else {
            let y = time(&mut b, nb);
            (time(&mut a, na), y)
        };
        ra.push(x);
        rb.push(y);
        ratio.push(x / y);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|p, q| p.partial_cmp(q).unwrap());
        v[v.len() / 2]
    };
    (median(&mut ra), median(&mut rb), median(&mut ratio))
}

fn paired_report() {
    const ROUNDS: usize = 300;
    println!();
    println!(
        "Paired run: {ROUNDS} alternating rounds of ~1 ms per side; thread CPU time; medians."
    );
    println!();
    println!(
        "| re-encryption | size | keyturn reencrypt/s | reference | reference ops/s | ratio |"
    );
    println!("|---|---:|---:|---|---:|---:|");
    for size in [64usize, 1024] {
        let plaintext = vec![0x5au8; size];
        for (alg, alg_name) in [
            (Algorithm::Aes256Gcm, "aes256gcm"),
            (Algorithm::XChaCha20Poly1305, "xchacha20poly1305"),
        ] {
            let ring = ring(alg);
            for encoding in [Encoding::Binary, Encoding::Text] {
                let old = old_value(alg, &plaintext, encoding);
                let mut refs: Vec<(&str, RawSealOpen)> = vec![(
                    "raw AES-256-GCM seal+open",
                    RawSealOpen::new(&AES_256_GCM, size),
                )];
                if alg == Algorithm::XChaCha20Poly1305 {
                    refs.push((
                        "raw ChaCha20-Poly1305 seal+open",
                        RawSealOpen::new(&CHACHA20_POLY1305, size),
                    ));
                }
                for (ref_name, mut raw) in refs {
                    let (rk, rr, ratio) = paired(
                        || {
                            black_box(
                                ring.reencrypt(black_box(&old), black_box(&CONTEXT))
                                    .unwrap(),
                            );
                        },
                        || raw.run(),
                        ROUNDS,
                    );
                    println!(
                        "| {alg_name} {} | {size} B | {:.2} M | {ref_name} | {:.2} M | {ratio:.2} |",
                        encoding.name(),
                        rk / 1e6,
                        rr / 1e6,
                    );
                }
            }
        }
    }
    // Nonce generation against one re-encryption.
    let ring = ring(Algorithm::Aes256Gcm);
    let old = old_value(Algorithm::Aes256Gcm, &[0x5au8; 64], Encoding::Binary);
    let mut n12 = [0u8; 12];
    let (rk, rn, _) = paired(
        || {
            black_box(
                ring.reencrypt(black_box(&old), black_box(&CONTEXT))
                    .unwrap(),
            );
        },
        || v1::fill_nonce(black_box(&mut n12)).unwrap(),
        ROUNDS,
    );
    println!();
    println!(
        "Nonce generation (12 B): {:.1} M/s, {:.1} ns each = {:.1}% of a 64 B aes256gcm binary re-encryption ({:.0} ns).",
        rn / 1e6,
        1e9 / rn,
        100.0 * rk / rn,
        1e9 / rk
    );
    let mut n12 = [0u8; 12];
    let (rk, rd, _) = paired(
        || {
            black_box(
                ring.reencrypt(black_box(&old), black_box(&CONTEXT))
                    .unwrap(),
            );
        },
        || aws_lc_rs::rand::fill(black_box(&mut n12)).unwrap(),
        ROUNDS,
    );
    println!(
        "For comparison, one aws-lc rand::fill call per nonce: {:.1} M/s, {:.0} ns each = {:.0}% of a re-encryption.",
        rd / 1e6,
        1e9 / rd,
        100.0 * rk / rd
    );
}

fn main() {
    let mut c = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .configure_from_args();
    reencrypt(&mut c);
    nonces(&mut c);
    c.final_summary();
    // Only under `cargo bench` (not `cargo test --benches`), and not when
    // profiling one benchmark.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench")
        && !args.iter().any(|a| a == "--profile-time" || a == "--list")
    {
        paired_report();
    }
}
