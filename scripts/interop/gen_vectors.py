#!/usr/bin/env python3
"""Generates keyturn-codecs test vectors with the real libraries.

Real implementations: PyPI `cryptography` (Fernet, MultiFernet; the HKDF of
django-fernet-fields), `PyNaCl` (libsodium secretbox and XChaCha20-Poly1305
IETF) and an OpenBao dev server (Vault transit). The @47ng/cloak and Node
crypto vectors come from gen_vectors.mjs. Laravel, Rails and Lockbox have no
implementation that runs here (PHP / Ruby): their vectors are built from the
published layouts with `cryptography`'s primitives and marked
"source": "spec-derived"; so are the in-house layouts (version byte, JSON
envelope), which have no reference library.

Usage:
  gen_vectors.py --out testdata/codecs            # the checked-in vectors
  gen_vectors.py --out DIR --interop              # fresh inputs for check.sh
Vault vectors need BAO_ADDR/BAO_TOKEN of a running server (check.sh and
gen_all.sh start one); without it they are skipped.

Key material is derived from fixed labels: these are test keys, never use
them for anything else.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import urllib.request
import zlib

import cryptography
import nacl
import nacl.bindings
import nacl.secret
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

PLAINTEXTS = [
    "hello",
    "",
    "h\u00e9llo w\u00f6rld \u2713",
    "4111 1111 1111 1111",
    "a longer value that goes past the Rails compression threshold of one hundred and forty bytes, "
    "so that Rails compresses it with zlib before encrypting it",
]
FIXED_TS = 1700000000
CRYPTOGRAPHY = f"python cryptography {cryptography.__version__}"
PYNACL = f"PyNaCl {nacl.__version__} (libsodium)"


def material(label, n=32):
    return hashlib.sha256(b"keyturn-test-vector-" + label.encode()).digest()[:n]


def b64(b):
    return base64.b64encode(b).decode()


def ub64(b):
    return base64.urlsafe_b64encode(b).decode()


def flip_last(b):
    return b[:-1] + bytes([b[-1] ^ 1])


def write(out, codec_dir, name, doc):
    d = os.path.join(out, codec_dir)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name + ".json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote", path, len(doc["cases"]), "cases")


def pos(name, stored, plaintext, key_id, inspect="key_unknown", **extra):
    c = {"name": name, "stored": stored, "plaintext": plaintext, "key_id": key_id, "inspect": inspect}
    c.update(extra)
    return c


def neg(name, stored, error, inspect=None, decrypt_error=None):
    """A negative case: `error` is what reencrypt (the engine's path) fails
    with; `decrypt_error`, when given, what decrypt fails with (they differ
    where a damaged value cannot be told from plaintext)."""
    c = {"name": name, "stored": stored, "error": error}
    if inspect:
        c["inspect"] = inspect
    if decrypt_error:
        c["decrypt_error"] = decrypt_error
    return c


def plain_cases(extra=()):
    out = [neg("plaintext is not this format", "hello world", "unknown_format", "not_this_format")]
    for s in extra:
        out.append(neg(f"other format {s[:12]!r}", s, "unknown_format", "not_this_format"))
    return out


# --- Fernet ---------------------------------------------------------------

def fernet_vectors(interop):
    k1, k2, k3 = (ub64(material(f"fernet-{i}")) for i in (1, 2, 3))
    f1, f2, f3 = Fernet(k1), Fernet(k2), Fernet(k3)
    cases = []
    for i, p in enumerate(PLAINTEXTS):
        tok = f1.encrypt_at_time(p.encode(), FIXED_TS + i).decode()
        cases.append(pos(f"under old key #{i}", tok, p, "k1", timestamp=FIXED_TS + i))
    cases.append(pos("under primary", f2.encrypt_at_time(b"new", FIXED_TS).decode(), "new", "k2", timestamp=FIXED_TS))
    # MultiFernet([k2, k1]).rotate keeps the timestamp: keyturn must too.
    rotated = MultiFernet([f2, f1]).rotate(f1.encrypt_at_time(b"rot", FIXED_TS))
    cases.append(pos("rotated by MultiFernet", rotated.decode(), "rot", "k2", timestamp=FIXED_TS))
    if not interop:
        raw = base64.urlsafe_b64decode(f1.encrypt_at_time(b"hello", FIXED_TS))
        cases += [
            neg("tampered HMAC", ub64(flip_last(raw)), "authentication_failed", "key_unknown"),
            neg("tampered ciphertext", ub64(raw[:30] + bytes([raw[30] ^ 1]) + raw[31:]), "authentication_failed"),
            neg("wrong key", f3.encrypt(b"hello").decode(), "authentication_failed"),
            neg("truncated", ub64(raw[:60]), "truncated", "invalid"),
            neg("bad base64", ub64(raw)[:-6] + "!" + ub64(raw)[-5:], "bad_text_encoding", "invalid"),
            neg("wrong version byte", ub64(b"\x81" + raw[1:]), "unknown_version"),
            neg("trailing garbage", ub64(raw) + "AAAA", "bad_text_encoding", "invalid"),
        ] + plain_cases(["eyJpdiI6IjEyMyJ9"])
    return {
        "codec": {"codec": "fernet"},
        "source": CRYPTOGRAPHY,
        "keys": [{"id": "k1", "text": k1}, {"id": "k2", "text": k2}],
        "primary": "k2",
        "cases": cases,
    }


def django_key(secret):
    # django-fernet-fields' hkdf.derive_fernet_key, with cryptography's HKDF.
    h = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"django-fernet-fields-hkdf-salt", info=b"django-fernet-fields")
    return base64.urlsafe_b64encode(h.derive(secret.encode()))


def django_vectors(interop):
    s1, s2 = "old-django-secret-key-\u00e9", "new-django-secret-key"
    f1, f2 = Fernet(django_key(s1)), Fernet(django_key(s2))
    cases = [pos(f"under old key #{i}", f1.encrypt_at_time(p.encode(), FIXED_TS).decode(), p, "old", timestamp=FIXED_TS) for i, p in enumerate(PLAINTEXTS)]
    cases.append(pos("under primary", f2.encrypt(b"x").decode(), "x", "new"))
    if not interop:
        cases.append(neg("plain Fernet key (no HKDF)", Fernet(ub64(s1.encode()[:32].ljust(32, b"-"))).encrypt(b"x").decode(), "authentication_failed"))
    return {
        "codec": {"codec": "django-fernet-fields"},
        "source": CRYPTOGRAPHY + " (django-fernet-fields' HKDF-SHA256 key derivation)",
        "column": "binary: the token's ASCII bytes",
        "keys": [{"id": "old", "text": s1}, {"id": "new", "text": s2}],
        "primary": "new",
        "cases": cases,
    }


# --- Laravel ----------------------------------------------------------------

def laravel_encrypt(key, plaintext, gcm, iv=None):
    if gcm:
        iv = iv or os.urandom(12)
        out = AESGCM(key).encrypt(iv, plaintext, None)
        ct, tag = out[:-16], out[-16:]
        payload = {"iv": b64(iv), "value": b64(ct), "mac": "", "tag": b64(tag)}
    else:
        iv = iv or os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        ct = enc.update(padded) + enc.finalize()
        iv_b64, value_b64 = b64(iv), b64(ct)
        mac = hmac.new(key, (iv_b64 + value_b64).encode(), hashlib.sha256).hexdigest()
        payload = {"iv": iv_b64, "value": value_b64, "mac": mac, "tag": ""}
    return payload


def laravel_pack(payload):
    return b64(json.dumps(payload, separators=(",", ":")).encode())


def php_serialize(s):
    return f's:{len(s.encode())}:"{s}";'


def laravel_vectors(gcm, interop):
    k1, k2, k3 = (material(f"laravel-{i}") for i in (1, 2, 3))
    cases = []
    for i, p in enumerate(PLAINTEXTS):
        pt = php_serialize(p)
        cases.append(pos(f"under old key #{i}", laravel_pack(laravel_encrypt(k1, pt.encode(), gcm)), pt, "old"))
    cases.append(pos("under primary", laravel_pack(laravel_encrypt(k2, b"s:1:\"x\";", gcm)), "s:1:\"x\";", "new"))
    if not gcm:
        legacy = laravel_encrypt(k1, b"legacy", gcm)
        del legacy["tag"]
        cases.append(pos("no tag member (before Laravel 9)", laravel_pack(legacy), "legacy", "old"))
        escaped = json.dumps(laravel_encrypt(k1, b"slashes", gcm), separators=(",", ":")).replace("/", "\\/")
        cases.append(pos("escaped slashes (older json_encode)", b64(escaped.encode()), "slashes", "old"))
    if not interop:
        p = laravel_encrypt(k1, b"hello", gcm)
        t = dict(p)
        if gcm:
            t["tag"] = b64(flip_last(base64.b64decode(p["tag"])))
        else:
            t["mac"] = p["mac"][:-1] + ("0" if p["mac"][-1] != "0" else "1")
        trunc = dict(p)
        trunc["iv"] = b64(base64.b64decode(p["iv"])[:-1])
        other = laravel_encrypt(k1, b"hello", not gcm)
        cases += [
            neg("tampered " + ("tag" if gcm else "mac"), laravel_pack(t), "authentication_failed", "key_unknown"),
            neg("wrong key", laravel_pack(laravel_encrypt(k3, b"hello", gcm)), "authentication_failed"),
            neg("truncated iv", laravel_pack(trunc), "truncated", "invalid"),
            neg("bad base64", laravel_pack(p)[:-3] + "!==", "bad_text_encoding", "invalid"),
            neg("not JSON inside", b64(b'{"iv":"x"'), "bad_text_encoding", "invalid"),
            neg("other cipher's value", laravel_pack(other), "unknown_algorithm", "invalid"),
            neg("unknown member", laravel_pack(dict(p, extra="1")), "bad_text_encoding", "invalid"),
        ] + plain_cases(["gAAAAABhello"])
    return {
        "codec": {"codec": "laravel", "cipher": "aes-256-gcm" if gcm else "aes-256-cbc"},
        "source": "spec-derived",
        "note": "Laravel Encrypter layout rebuilt with python cryptography primitives: PHP is not installed here",
        "keys": [{"id": "old", "text": "base64:" + b64(k1)}, {"id": "new", "text": "base64:" + b64(k2)}],
        "primary": "new",
        "cases": cases,
    }


# --- Rails -------------------------------------------------------------------

def rails_derive(primary_key, salt, digest):
    algo = hashes.SHA1() if digest == "sha1" else hashes.SHA256()
    return PBKDF2HMAC(algorithm=algo, length=32, salt=salt.encode(), iterations=65536).derive(primary_key.encode())


def rails_ref(key):
    return hashlib.sha1(key).hexdigest()[:4]


def rails_encrypt(key, text, store_ref=False, encoding=None, deterministic=False, compress=True):
    compressed = False
    if compress and len(text) > 140:
        text, compressed = zlib.compress(text, 6), True
    iv = hmac.new(key, text, hashlib.sha256).digest()[:12] if deterministic else os.urandom(12)
    out = AESGCM(key).encrypt(iv, text, b"")
    h = {"iv": b64(iv), "at": b64(out[-16:])}
    if encoding:
        h["e"] = b64(encoding.encode())
    if store_ref:
        h["i"] = b64(rails_ref(key).encode())
    if compressed:
        h["c"] = True
    return json.dumps({"p": b64(out[:-16]), "h": h}, separators=(",", ":"))


def rails_vectors(digest, interop):
    salt = "keyturn-test-derivation-salt"
    pk1, pk2, pk3 = "old rails primary key", "new rails primary key", "some other key"
    k1, k2, k3 = (rails_derive(p, salt, digest) for p in (pk1, pk2, pk3))
    r1, r2 = rails_ref(k1), rails_ref(k2)
    cases = []
    for i, p in enumerate(PLAINTEXTS):
        cases.append(pos(f"under old key #{i}", rails_encrypt(k1, p.encode()), p, r1))
        cases.append(pos(f"under old key with key reference #{i}", rails_encrypt(k1, p.encode(), store_ref=True), p, r1, inspect="under:" + r1))
    cases.append(pos("encoding header", rails_encrypt(k1, b"ascii", encoding="US-ASCII"), "ascii", r1))
    cases.append(pos("under primary", rails_encrypt(k2, b"new"), "new", r2))
    cases.append(pos("under primary with reference", rails_encrypt(k2, b"new", store_ref=True), "new", r2, inspect="under:" + r2))
    if not interop:
        good = json.loads(rails_encrypt(k1, b"hello"))
        tam = json.loads(json.dumps(good))
        tam["h"]["at"] = b64(flip_last(base64.b64decode(good["h"]["at"])))
        trunc = json.loads(json.dumps(good))
        trunc["h"]["iv"] = b64(base64.b64decode(good["h"]["iv"])[:8])
        bad = json.loads(json.dumps(good))
        bad["p"] = good["p"] + "!"
        env = json.loads(json.dumps(good))
        env["h"]["k"] = {"p": "AAAA", "h": {}}
        cases += [
            neg("deterministic value (not rotatable)", rails_encrypt(k1, b"det@example.com", deterministic=True), "not_rotatable", "key_unknown"),
            neg("tampered tag", json.dumps(tam, separators=(",", ":")), "authentication_failed"),
            neg("wrong key", rails_encrypt(k3, b"hello"), "authentication_failed"),
            neg("key reference not in the ring", rails_encrypt(k3, b"hello", store_ref=True), "unknown_key", "under:" + rails_ref(k3)),
            neg("truncated iv", json.dumps(trunc, separators=(",", ":")), "truncated", "invalid"),
            neg("bad base64 payload", json.dumps(bad, separators=(",", ":")), "bad_text_encoding", "invalid"),
            neg("envelope (k header) not supported", json.dumps(env, separators=(",", ":")), "not_rotatable", "invalid"),
            neg("trailing garbage", json.dumps(good, separators=(",", ":")) + "x", "bad_text_encoding", "invalid"),
        ] + plain_cases(['{"key_id":"a"}'])
    return {
        "codec": {"codec": "rails", "key_derivation_salt": salt, "kdf": digest},
        "source": "spec-derived",
        "note": "Rails Active Record Encryption layout rebuilt with python cryptography (PBKDF2-HMAC-" + digest.upper() + ", 65536 iterations): Ruby is not installed here",
        "keys": [{"id": "", "text": pk1}, {"id": "", "text": pk2}],
        "primary": r2,
        "cases": cases,
    }


# --- Lockbox -----------------------------------------------------------------

def lockbox_key(master_hex, table, column):
    h = HKDF(algorithm=hashes.SHA384(), length=32, salt=table.encode(), info=b"\xb4" * 32 + column.encode())
    return h.derive(bytes.fromhex(master_hex))


def lockbox_vectors(interop):
    table, column = "users", "email_ciphertext"
    m1, m2, m3 = (material(f"lockbox-{i}").hex() for i in (1, 2, 3))
    k1, k2, k3 = (lockbox_key(m, table, column) for m in (m1, m2, m3))

    def enc(k, p):
        n = os.urandom(12)
        return b64(n + AESGCM(k).encrypt(n, p, None))

    cases = [pos(f"under old key #{i}", enc(k1, p.encode()), p, "old") for i, p in enumerate(PLAINTEXTS)]
    cases.append(pos("under primary", enc(k2, b"new"), "new", "new"))
    if not interop:
        raw = base64.b64decode(enc(k1, b"hello"))
        cases += [
            neg("tampered tag", b64(flip_last(raw)), "authentication_failed", "key_unknown"),
            neg("wrong key", enc(k3, b"hello"), "authentication_failed"),
            neg("other table's key", enc(lockbox_key(m1, "accounts", column), b"hello"), "authentication_failed"),
            neg("truncated", b64(raw[:20]), "truncated", "invalid"),
            neg("bad base64", b64(raw)[:-2] + "*=", "unknown_format", "not_this_format", "bad_text_encoding"),
        ]
    return {
        "codec": {"codec": "lockbox", "table": table, "column": column},
        "source": "spec-derived",
        "note": "Lockbox layout and HKDF-SHA384 field keys rebuilt with python cryptography: Ruby is not installed here",
        "keys": [{"id": "old", "text": m1}, {"id": "new", "text": m2}],
        "primary": "new",
        "cases": cases,
    }


# --- Vault / OpenBao transit ---------------------------------------------------

def bao(method, path, body=None):
    addr, token = os.environ["BAO_ADDR"], os.environ.get("BAO_TOKEN", "root")
    req = urllib.request.Request(f"{addr}/v1/{path}", method=method, headers={"X-Vault-Token": token})
    if body is not None:
        req.data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
    return json.loads(data) if data else {}


def bao_version():
    try:
        return bao("GET", "sys/seal-status").get("version", "?")
    except Exception:
        return "?"


def vault_vectors(interop, key_name):
    if not os.environ.get("BAO_ADDR"):
        print("BAO_ADDR not set: skipping vault-transit vectors", file=sys.stderr)
        return None
    try:
        bao("POST", "sys/mounts/transit", {"type": "transit"})
    except urllib.error.HTTPError:
        pass  # already mounted
    bao("POST", f"transit/keys/{key_name}", {"type": "aes256-gcm96", "exportable": True})

    def enc(p):
        return bao("POST", f"transit/encrypt/{key_name}", {"plaintext": b64(p.encode())})["data"]["ciphertext"]

    cases = [pos(f"under v1 #{i}", enc(p), p, "v1", inspect="under:v1") for i, p in enumerate(PLAINTEXTS)]
    bao("POST", f"transit/keys/{key_name}/rotate", {})
    cases.append(pos("under v2 (primary)", enc("new"), "new", "v2", inspect="under:v2"))
    exported = bao("GET", f"transit/export/encryption-key/{key_name}")["data"]["keys"]
    if not interop:
        bao("POST", f"transit/keys/{key_name}/rotate", {})
        v3 = enc("hello")
        good = cases[0]["stored"]
        raw = base64.b64decode(good.split(":", 2)[2])
        cases += [
            neg("version not in the ring", v3, "unknown_key", "under:v3"),
            neg("tampered tag", "vault:v1:" + b64(flip_last(raw)), "authentication_failed", "under:v1"),
            neg("truncated", "vault:v1:" + b64(raw[:20]), "truncated", "invalid"),
            neg("bad base64", good + "!", "bad_text_encoding", "invalid"),
            neg("bad version", "vault:vx:" + b64(raw), "bad_text_encoding", "invalid"),
        ] + plain_cases(["v1.aesgcm256.abcd"])
    return {
        "codec": {"codec": "vault-transit"},
        "source": f"OpenBao {bao_version()} dev server, transit aes256-gcm96, exportable key",
        "keys": [{"id": "v1", "text": exported["1"]}, {"id": "v2", "text": exported["2"]}],
        "primary": "v2",
        "bao_key": key_name,
        "cases": cases,
    }


# --- libsodium prefix -----------------------------------------------------------

def sodium_vectors(alg, interop):
    k1, k2, k3 = (material(f"sodium-{alg}-{i}") for i in (1, 2, 3))

    def enc(k, p, label):
        n = os.urandom(24)
        if alg == "xsalsa20poly1305":
            box = nacl.secret.SecretBox(k).encrypt(p, n)  # nonce ‖ tag ‖ ct
            assert box[:24] == n
            body = bytes(box)
        else:
            body = n + nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(p, None, n, k)
        return f"{label}:{b64(body)}"

    cases = [pos(f"under v1 #{i}", enc(k1, p.encode(), "v1"), p, "v1", inspect="under:v1") for i, p in enumerate(PLAINTEXTS)]
    cases.append(pos("under v2 (primary)", enc(k2, b"new", "v2"), "new", "v2", inspect="under:v2"))
    if not interop:
        good = enc(k1, b"hello", "v1")
        raw = base64.b64decode(good[3:])
        cases += [
            neg("tampered", "v1:" + b64(flip_last(raw)), "authentication_failed", "under:v1"),
            neg("wrong key under a known label", enc(k3, b"hello", "v1"), "authentication_failed", "under:v1"),
            neg("unknown label", enc(k3, b"hello", "v9"), "unknown_key", "under:v9"),
            neg("truncated", "v1:" + b64(raw[:30]), "truncated", "invalid"),
            neg("bad base64", good + "!", "unknown_format", "not_this_format", "bad_text_encoding"),
        ] + plain_cases()
    return {
        "codec": {"codec": "sodium-prefix", "algorithm": alg},
        "source": PYNACL,
        "keys": [{"id": "v1", "text": b64(k1)}, {"id": "v2", "text": b64(k2)}],
        "primary": "v2",
        "cases": cases,
    }


# --- in-house layouts (no reference library) ---------------------------------------

def version_byte_vectors(interop):
    k1, k2, k3 = (material(f"version-byte-{i}") for i in (1, 2, 3))

    def enc(k, ver, p):
        n = os.urandom(12)
        return (bytes([ver]) + n + AESGCM(k).encrypt(n, p, None)).hex()

    cases = []
    for i, p in enumerate(PLAINTEXTS):
        c = pos(f"under version 1 #{i}", None, p, "k2024", inspect="under:k2024")
        del c["stored"]
        c["stored_hex"] = enc(k1, 1, p.encode())
        cases.append(c)
    c = pos("under version 2 (primary)", None, "new", "k2025", inspect="under:k2025")
    del c["stored"]
    c["stored_hex"] = enc(k2, 2, b"new")
    cases.append(c)
    if not interop:
        good = bytes.fromhex(enc(k1, 1, b"hello"))
        for name, v, err, ins in [
            ("tampered", flip_last(good), "authentication_failed", "under:k2024"),
            ("wrong key", bytes.fromhex(enc(k3, 1, b"hello")), "authentication_failed", "under:k2024"),
            ("unknown version byte", b"\x07" + good[1:], "unknown_version", "invalid"),
            ("truncated", good[:20], "truncated", "invalid"),
        ]:
            cases.append({"name": name, "stored_hex": v.hex(), "error": err, "inspect": ins})
    return {
        "codec": {"codec": "version-byte", "versions": {"1": "k2024", "0x02": "k2025"}},
        "source": "spec-derived",
        "note": "in-house layout, no reference library: built with python cryptography AESGCM",
        "keys": [{"id": "k2024", "text": b64(k1)}, {"id": "k2025", "text": "hex:" + k2.hex()}],
        "primary": "k2025",
        "cases": cases,
    }


def json_envelope_vectors(interop):
    k1, k2, k3 = (material(f"json-envelope-{i}") for i in (1, 2, 3))

    def enc(k, kid, p, sep=(",", ":")):
        n = os.urandom(12)
        return json.dumps({"key_id": kid, "nonce": b64(n), "ciphertext": b64(AESGCM(k).encrypt(n, p, None))}, separators=sep)

    cases = [pos(f"under kek-v1 #{i}", enc(k1, "kek-v1", p.encode()), p, "kek-v1", inspect="under:kek-v1") for i, p in enumerate(PLAINTEXTS)]
    cases.append(pos("spaces after separators", enc(k1, "kek-v1", b"spaced", sep=(", ", ": ")), "spaced", "kek-v1", inspect="under:kek-v1"))
    cases.append(pos("under kek-v2 (primary)", enc(k2, "kek-v2", b"new"), "new", "kek-v2", inspect="under:kek-v2"))
    if not interop:
        good = json.loads(enc(k1, "kek-v1", b"hello"))
        tam = dict(good, ciphertext=b64(flip_last(base64.b64decode(good["ciphertext"]))))
        cases += [
            neg("tampered", json.dumps(tam), "authentication_failed", "under:kek-v1"),
            neg("wrong key under a known id", enc(k3, "kek-v1", b"hello"), "authentication_failed", "under:kek-v1"),
            neg("unknown key id", enc(k3, "kek-v9", b"hello"), "unknown_key", "under:kek-v9"),
            neg("truncated nonce", json.dumps(dict(good, nonce=b64(b"123"))), "truncated", "invalid"),
            neg("bad base64", json.dumps(dict(good, ciphertext="***")), "bad_text_encoding", "invalid"),
            neg("trailing garbage", json.dumps(good) + "}", "bad_text_encoding", "invalid"),
        ] + plain_cases(['{"p":"x"}'])
    return {
        "codec": {"codec": "json-envelope"},
        "source": "spec-derived",
        "note": "in-house layout, no reference library: built with python cryptography AESGCM",
        "keys": [{"id": "", "text": "kek-v1:" + b64(k1)}, {"id": "", "text": "kek-v2:" + b64(k2)}],
        "primary": "kek-v2",
        "cases": cases,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--interop", action="store_true", help="positive cases only, for check.sh")
    ap.add_argument("--bao-key", default="keyturn-vectors")
    a = ap.parse_args()
    i = a.interop
    write(a.out, "fernet", "fernet", fernet_vectors(i))
    write(a.out, "django-fernet-fields", "hkdf", django_vectors(i))
    write(a.out, "laravel", "aes-256-cbc", laravel_vectors(False, i))
    write(a.out, "laravel", "aes-256-gcm", laravel_vectors(True, i))
    write(a.out, "rails", "sha1", rails_vectors("sha1", i))
    write(a.out, "rails", "sha256", rails_vectors("sha256", i))
    write(a.out, "lockbox", "aes-gcm", lockbox_vectors(i))
    v = vault_vectors(i, a.bao_key)
    if v:
        write(a.out, "vault-transit", "aes256-gcm96", v)
    write(a.out, "sodium-prefix", "xsalsa20poly1305", sodium_vectors("xsalsa20poly1305", i))
    write(a.out, "sodium-prefix", "xchacha20poly1305", sodium_vectors("xchacha20poly1305", i))
    write(a.out, "version-byte", "aes-gcm", version_byte_vectors(i))
    write(a.out, "json-envelope", "aes-gcm", json_envelope_vectors(i))


if __name__ == "__main__":
    main()
