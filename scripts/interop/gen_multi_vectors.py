#!/usr/bin/env python3
"""Generates the multi-column codec vectors (envelope, split-columns) under
testdata/codecs with PyPI `cryptography` only (AESGCM, aes_key_wrap).

These layouts have no reference library (hand-rolled KMS envelope schemes,
Coder dbcrypt-like split columns): the vectors follow the layouts in
docs/CODECS.md, built independently of keyturn's code, and are marked
"source": "spec-derived". Each case gives the row's cells: `ciphertext_hex`
(ct || tag), `iv_hex`, `key_id`, `wrapped_key_hex`; a missing cell is SQL
NULL.

Usage:
  gen_multi_vectors.py --out testdata/codecs

Key material is derived from fixed labels: these are test keys, never use
them for anything else.
"""
import argparse
import base64
import hashlib
import json
import os

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

PLAINTEXTS = [
    "hello",
    "",
    "h\u00e9llo w\u00f6rld \u2713",
    "4111 1111 1111 1111",
    "a 64-byte value: " + "x" * 47,
]
NOTE = (
    "no reference library for this layout: built from docs/CODECS.md with python "
    f"cryptography {cryptography.__version__} (AESGCM, aes_key_wrap)"
)


def material(label, n=32):
    return hashlib.sha256(b"keyturn-test-vector-" + label.encode()).digest()[:n]


def b64(b):
    return base64.b64encode(b).decode()


def flip(b, i=-1):
    b = bytearray(b)
    b[i] ^= 1
    return bytes(b)


def write(out, codec_dir, name, doc):
    d = os.path.join(out, codec_dir)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name + ".json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote", path, len(doc["cases"]), "cases")


def cells(ct=None, iv=None, key_id=None, wrapped=None):
    c = {}
    if ct is not None:
        c["ciphertext_hex"] = ct.hex()
    if iv is not None:
        c["iv_hex"] = iv.hex()
    if key_id is not None:
        c["key_id"] = key_id
    if wrapped is not None:
        c["wrapped_key_hex"] = wrapped.hex()
    return c


def pos(name, row, plaintext, key_id):
    return {"name": name, "cells": row, "plaintext": plaintext, "key_id": key_id, "inspect": f"under:{key_id}"}


def neg(name, row, error, inspect, decrypt_error=None):
    c = {"name": name, "cells": row, "error": error, "inspect": inspect}
    if decrypt_error:
        c["decrypt_error"] = decrypt_error
    return c


# --- envelope ---------------------------------------------------------------

def wrap_dek(kek, dek, wrap):
    if wrap == "aes-gcm":
        n = os.urandom(12)
        return n + AESGCM(kek).encrypt(n, dek, None)
    return aes_key_wrap(kek, dek)


def envelope_row(kek, kid, plaintext, wrap, dek=None):
    """(ct || tag, iv, key id, wrapped data key) of one row."""
    dek = dek or os.urandom(32)
    iv = os.urandom(12)
    return AESGCM(dek).encrypt(iv, plaintext, None), iv, kid, wrap_dek(kek, dek, wrap)


def envelope_vectors(wrap):
    k1, k2, k3 = (material(f"envelope-{wrap}-{i}") for i in (1, 2, 3))
    cases = []
    for i, p in enumerate(PLAINTEXTS):
        cases.append(pos(f"under kek-v1 #{i}", cells(*envelope_row(k1, "kek-v1", p.encode(), wrap)), p, "kek-v1"))
    cases.append(pos("under kek-v2 (primary)", cells(*envelope_row(k2, "kek-v2", b"new", wrap)), "new", "kek-v2"))
    ct, iv, kid, w = envelope_row(k1, "kek-v1", b"hello", wrap)
    ct_b, iv_b, _, w_b = envelope_row(k1, "kek-v1", b"other row", wrap)
    cases += [
        neg("wrapped key tampered", cells(ct, iv, kid, flip(w, 20)), "authentication_failed", "under:kek-v1"),
        neg("ciphertext tampered", cells(flip(ct), iv, kid, w), "authentication_failed", "under:kek-v1"),
        neg("IV tampered", cells(ct, flip(iv, 0), kid, w), "authentication_failed", "under:kek-v1"),
        neg("wrapped key of another row", cells(ct, iv, kid, w_b), "authentication_failed", "under:kek-v1"),
        neg("wrapped under another key than its key id names",
            cells(*envelope_row(k3, "kek-v1", b"hello", wrap)), "authentication_failed", "under:kek-v1"),
        neg("unknown key id", cells(*envelope_row(k3, "kek-v9", b"hello", wrap)), "unknown_key", "under:kek-v9"),
        neg("key id not a valid key id", cells(ct, iv, "kek v1", w), "invalid_key_id", "invalid"),
        neg("wrapped key NULL", cells(ct, iv, kid, None), "null_cell", "invalid"),
        neg("IV NULL", cells(ct, None, kid, w), "null_cell", "invalid"),
        neg("key id NULL", cells(ct, iv, None, w), "null_cell", "invalid"),
        neg("IV of 16 bytes", cells(ct, iv + b"\0\0\0\0", kid, w), "cell_length", "invalid"),
        neg("wrapped key truncated", cells(ct, iv, kid, w[:-1]), "cell_length", "invalid"),
        neg("ciphertext shorter than a tag", cells(ct[:15], iv, kid, w), "truncated", "invalid"),
        neg("plaintext: only the ciphertext column set", cells(b"4111 1111 1111 1111"), "unknown_format",
            "not_this_format"),
    ]
    other = "aes-kw" if wrap == "aes-gcm" else "aes-gcm"
    _, _, _, w_other = envelope_row(k1, "kek-v1", b"hello", other)
    cases.append(neg(f"data key wrapped with {other}", cells(ct, iv, kid, w_other), "cell_length", "invalid"))
    codec = {"codec": "envelope"}
    if wrap != "aes-gcm":
        codec["wrap"] = wrap
    return {
        "codec": codec,
        "source": "spec-derived",
        "note": NOTE,
        "keys": [{"id": "kek-v1", "text": b64(k1)}, {"id": "kek-v2", "text": "hex:" + k2.hex()}],
        "primary": "kek-v2",
        "cases": cases,
    }


# --- split-columns ------------------------------------------------------------

def split_row(k, kid, plaintext):
    iv = os.urandom(12)
    return AESGCM(k).encrypt(iv, plaintext, None), iv, kid


def split_vectors():
    k1, k2, k3 = (material(f"split-columns-{i}") for i in (1, 2, 3))
    cases = [pos(f"under k1 #{i}", cells(*split_row(k1, "k1", p.encode())), p, "k1") for i, p in enumerate(PLAINTEXTS)]
    cases.append(pos("under k2 (primary)", cells(*split_row(k2, "k2", b"new")), "new", "k2"))
    ct, iv, kid = split_row(k1, "k1", b"hello")
    cases += [
        neg("ciphertext tampered", cells(flip(ct), iv, kid), "authentication_failed", "under:k1"),
        neg("under another key than its key id names", cells(*split_row(k3, "k1", b"hello")),
            "authentication_failed", "under:k1"),
        neg("unknown key id", cells(*split_row(k3, "k9", b"hello")), "unknown_key", "under:k9"),
        neg("IV NULL", cells(ct, None, kid), "null_cell", "invalid"),
        neg("key id NULL", cells(ct, iv, None), "null_cell", "invalid"),
        neg("IV of 8 bytes", cells(ct, iv[:8], kid), "cell_length", "invalid"),
        neg("plaintext: only the ciphertext column set", cells(b"hello"), "unknown_format", "not_this_format"),
    ]
    return {
        "codec": {"codec": "split-columns"},
        "source": "spec-derived",
        "note": NOTE,
        "keys": [{"id": "k1", "text": b64(k1)}, {"id": "k2", "text": b64(k2)}],
        "primary": "k2",
        "cases": cases,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    write(a.out, "envelope", "aes-gcm", envelope_vectors("aes-gcm"))
    write(a.out, "envelope", "aes-kw", envelope_vectors("aes-kw"))
    write(a.out, "split-columns", "aes-gcm", split_vectors())


if __name__ == "__main__":
    main()
