#!/usr/bin/env python3
"""An independent decoder for keyturn format v1, written from docs/FORMAT.md
alone (not from the Rust code), run against every test vector in
testdata/v1/. Needs Python 3.9+ and the `cryptography` package.

    python3 crates/format/tests/independent_decoder.py

Exits non-zero if any vector's outcome differs from what the file expects.
"""

import base64
import json
import pathlib
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.exceptions import InvalidTag

MAX_PLAINTEXT_LEN = 64 << 20
ALGS = {  # byte -> (text token, spec name, nonce length)
    0x01: ("a", "aes256gcm", 12),
    0x02: ("x", "xchacha20poly1305", 24),
}
TOKENS = {tok: byte for byte, (tok, _, _) in ALGS.items()}
SPEC_NAMES = {
    "aes256gcm": 0x01, "aes-256-gcm": 0x01,
    "xchacha20poly1305": 0x02, "xchacha20-poly1305": 0x02, "xchacha": 0x02,
}
URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
KEY_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


class Fail(Exception):
    def __init__(self, kind, field=None):
        super().__init__(kind if field is None else f"{kind} ({field})")
        self.kind, self.field = kind, field


def valid_key_id(b):
    return (1 <= len(b) <= 32 and chr(b[0]).isascii() and chr(b[0]).isalnum()
            and all(chr(c) in KEY_ID_CHARS for c in b))


def b64url_strict(s):
    """RFC 4648 §5 alphabet, no padding, canonical trailing bits."""
    vals = []
    for ch in s:
        i = URL_ALPHABET.find(chr(ch))
        if i < 0:
            raise Fail("bad_text_encoding")
        vals.append(i)
    if len(vals) % 4 == 1:
        raise Fail("bad_text_encoding")
    rem = len(vals) % 4
    if rem == 2 and vals[-1] & 0x0F:
        raise Fail("bad_text_encoding")
    if rem == 3 and vals[-1] & 0x03:
        raise Fail("bad_text_encoding")
    bits, nbits, out = 0, 0, bytearray()
    for v in vals:
        bits = ((bits << 6) | v) & 0xFFFF
        nbits += 6
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    return bytes(out)


def check_body(body, nlen):
    """Steps 5-10: returns (nonce, ciphertext, tag, N)."""
    if len(body) < 4:
        raise Fail("truncated", "ciphertext length")
    (n,) = struct.unpack(">I", body[:4])
    if n > MAX_PLAINTEXT_LEN:
        raise Fail("too_long")
    if len(body) < 4 + nlen:
        raise Fail("truncated", "nonce")
    if len(body) < 4 + nlen + n:
        raise Fail("truncated", "ciphertext")
    end = 4 + nlen + n + 16
    if len(body) < end:
        raise Fail("truncated", "tag")
    if len(body) > end:
        raise Fail("trailing_bytes")
    return body[4:4 + nlen], body[4 + nlen:4 + nlen + n], body[4 + nlen + n:], n


def parse(v):
    """Returns (encoding, alg byte, key id bytes, nonce, ct, tag, N)."""
    if not v:
        raise Fail("empty")
    if v[0] == 0x8B:
        if len(v) < 2:
            raise Fail("truncated", "magic")
        if v[1] != 0x4B:
            raise Fail("unknown_format")
        if len(v) < 3:
            raise Fail("truncated", "version")
        if v[2] != 0x01:
            raise Fail("unknown_version")
        if len(v) < 4:
            raise Fail("truncated", "algorithm")
        if v[3] not in ALGS:
            raise Fail("unknown_algorithm")
        alg = v[3]
        if len(v) < 5:
            raise Fail("truncated", "key id length")
        L = v[4]
        if not 1 <= L <= 32:
            raise Fail("invalid_key_id")
        if len(v) < 5 + L:
            raise Fail("truncated", "key id")
        kid = v[5:5 + L]
        if not valid_key_id(kid):
            raise Fail("invalid_key_id")
        return ("binary", alg, kid) + check_body(v[5 + L:], ALGS[alg][2])
    if v[0] == ord("k"):
        if len(v) < 2:
            raise Fail("truncated", "magic")
        if v[1] != ord("t"):
            raise Fail("unknown_format")
        i = 2
        while i < len(v) and chr(v[i]).isdigit():
            i += 1
        if i == 2:
            raise Fail("truncated", "version") if len(v) == 2 else Fail("unknown_format")
        if i == len(v):
            raise Fail("truncated", "version")
        if v[i] != ord(":"):
            raise Fail("unknown_format")
        digits = v[2:i]
        if len(digits) > 1 and digits[0] == ord("0"):
            raise Fail("unknown_format")
        if int(digits) >= 2**32:
            raise Fail("unknown_format")
        if int(digits) != 1:
            raise Fail("unknown_version")
        rest = v[i + 1:]
        j = rest.find(b":")
        if j < 0:
            raise Fail("invalid_key_id") if len(rest) > 32 else Fail("truncated", "key id")
        kid = rest[:j]
        if not valid_key_id(kid):
            raise Fail("invalid_key_id")
        rest = rest[j + 1:]
        k = rest.find(b":")
        if k < 0:
            raise Fail("truncated", "algorithm")
        tok = rest[:k].decode("latin-1")
        if tok not in TOKENS:
            raise Fail("unknown_algorithm")
        alg = TOKENS[tok]
        b64 = rest[k + 1:]
        if not b64:
            raise Fail("truncated", "ciphertext length")
        if len(b64) // 4 * 3 > 4 + ALGS[alg][2] + MAX_PLAINTEXT_LEN + 16 + 3:
            raise Fail("too_long")
        return ("text", alg, kid) + check_body(b64url_strict(b64), ALGS[alg][2])
    raise Fail("unknown_format")


def aad(alg, kid, n, context):
    out = bytes([0x8B, 0x4B, 0x01, alg, len(kid)]) + kid + struct.pack(">I", n)
    for part in context:
        out += struct.pack(">I", len(part)) + part
    return out


def rotl(x, n):
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def hchacha20(key, nonce16):
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF; s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF; s[b] = rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def aead(alg, key, nonce):
    if alg == 0x01:
        return AESGCM(key), nonce
    sub = hchacha20(key, nonce[:16])
    return ChaCha20Poly1305(sub), b"\0\0\0\0" + nonce[16:]


def parse_spec(spec):
    kid, alg, material = spec.split(":", 2)
    if not valid_key_id(kid.encode()):
        raise ValueError("bad key id")
    alg = SPEC_NAMES[alg.lower()]
    if len(material) != 44 or base64.b64encode(base64.b64decode(material, validate=True)).decode() != material:
        raise ValueError("bad key material")
    return kid.encode(), alg, base64.b64decode(material)


def decrypt(stored, ring, retired, context):
    enc, alg, kid, nonce, ct, tag, n = parse(stored)
    if kid not in ring:
        raise Fail("unknown_key")
    if kid in retired:
        raise Fail("key_retired")
    key_alg, key = ring[kid]
    if key_alg != alg:
        raise Fail("algorithm_mismatch")
    cipher, nonce2 = aead(alg, key, nonce)
    try:
        return cipher.decrypt(nonce2, ct + tag, aad(alg, kid, n, context))
    except InvalidTag:
        raise Fail("authentication_failed")


def seal(enc, alg, kid, key, nonce, plaintext, context):
    cipher, nonce2 = aead(alg, key, nonce)
    sealed = cipher.encrypt(nonce2, plaintext, aad(alg, kid, len(plaintext), context))
    body = struct.pack(">I", len(plaintext)) + nonce + sealed
    if enc == "binary":
        return bytes([0x8B, 0x4B, 0x01, alg, len(kid)]) + kid + body
    b64 = base64.urlsafe_b64encode(body).rstrip(b"=")
    return b"kt1:" + kid + b":" + ALGS[alg][0].encode() + b":" + b64


def main():
    root = pathlib.Path(__file__).resolve().parents[3] / "testdata" / "v1"
    files = sorted(root.glob("*.json"))
    bad = 0
    for f in files:
        v = json.loads(f.read_text())
        ring = {}
        for spec in v["keys"]:
            kid, alg, key = parse_spec(spec)
            ring[kid] = (alg, key)
        retired = {r.encode() for r in v.get("retired", [])}
        context = [bytes.fromhex(p) for p in v["context"]]
        stored = (bytes.fromhex(v["ciphertext_hex"]) if v["encoding"] == "binary"
                  else v["ciphertext"].encode())
        if "plaintext_hex" in v:
            pt = bytes.fromhex(v["plaintext_hex"])
        else:
            r = v["plaintext_repeat"]
            pt = bytes.fromhex(r["byte_hex"]) * r["count"]
        try:
            got = decrypt(stored, ring, retired, context)
            outcome = "ok" if got == pt else "wrong plaintext"
            if outcome == "ok":
                enc, alg, kid, nonce, *_ = parse(stored)
                if seal(enc, alg, kid, ring[kid][1], nonce, pt, context) != stored:
                    outcome = "re-seal differs"
        except Fail as e:
            outcome = e.kind if e.field is None else f"{e.kind} ({e.field})"
        want = v.get("expected") or v["expected_error"]
        if "expected_field" in v:
            want += f" ({v['expected_field']})"
        if outcome != want:
            bad += 1
            print(f"MISMATCH {f.name}: got {outcome}, expected {want}")
    print(f"independent decoder: {len(files) - bad} passed, {bad} failed")
    return 1 if bad or len(files) < 20 else 0


if __name__ == "__main__":
    sys.exit(main())
