#!/usr/bin/env python3
"""Reads back the values keyturn rotated (check.sh), with only the new key.

Real libraries: cryptography's Fernet (and the timestamp MultiFernet.rotate
would have kept), django-fernet-fields' key derivation, PyNaCl, and the
OpenBao server that wrote the Vault inputs (transit/decrypt). Laravel,
Rails, Lockbox, version-byte and JSON envelope values are read with an
independent implementation of the published layout ("spec").
Prints `N passed, M failed` and exits non-zero on any failure.
"""
import base64
import json
import os
import sys
import zlib

import nacl.bindings
import nacl.secret
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import hashlib
import hmac

sys.path.insert(0, os.path.dirname(__file__))
import gen_vectors as g  # noqa: E402


def laravel(cfg, key_text, stored):
    key = base64.b64decode(key_text[len("base64:"):])
    p = json.loads(base64.b64decode(stored, validate=True))
    assert list(p) == ["iv", "value", "mac", "tag"], list(p)
    iv = base64.b64decode(p["iv"])
    if cfg["cipher"] == "aes-256-gcm":
        assert p["mac"] == "" and len(iv) == 12
        return AESGCM(key).decrypt(iv, base64.b64decode(p["value"]) + base64.b64decode(p["tag"]), None)
    mac = hmac.new(key, (p["iv"] + p["value"]).encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, p["mac"]) and p["tag"] == ""
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = d.update(base64.b64decode(p["value"])) + d.finalize()
    u = padding.PKCS7(128).unpadder()
    return u.update(padded) + u.finalize()


def rails(cfg, key_text, stored):
    key = g.rails_derive(key_text, cfg["key_derivation_salt"], cfg.get("kdf", "sha1"))
    m = json.loads(stored)
    h = m["h"]
    if "i" in h:
        assert base64.b64decode(h["i"]).decode() == g.rails_ref(key)
    iv = base64.b64decode(h["iv"])
    text = AESGCM(key).decrypt(iv, base64.b64decode(m["p"]) + base64.b64decode(h["at"]), b"")
    return zlib.decompress(text) if h.get("c") else text


def lockbox(cfg, key_text, stored):
    key = g.lockbox_key(key_text, cfg["table"], cfg["column"])
    raw = base64.b64decode(stored, validate=True)
    return AESGCM(key).decrypt(raw[:12], raw[12:], None)


def aes_key(text):
    return bytes.fromhex(text[4:]) if text.startswith("hex:") else base64.b64decode(text)


def version_byte(cfg, key_text, stored_hex, primary_id):
    raw = bytes.fromhex(stored_hex)
    byte = next(int(k, 0) for k, v in cfg["versions"].items() if v == primary_id)
    assert raw[0] == byte
    return AESGCM(aes_key(key_text)).decrypt(raw[1:13], raw[13:], None)


def json_envelope(key_text, stored, primary_id):
    e = json.loads(stored)
    assert e["key_id"] == primary_id
    key = base64.b64decode(key_text.rsplit(":", 1)[1])
    return AESGCM(key).decrypt(base64.b64decode(e["nonce"]), base64.b64decode(e["ciphertext"]), None)


def sodium(cfg, key_text, stored, primary_id):
    label, body = stored.split(":", 1)
    assert label == primary_id
    raw = base64.b64decode(body, validate=True)
    key = aes_key(key_text)
    if cfg.get("algorithm", "xsalsa20poly1305") == "xsalsa20poly1305":
        return nacl.secret.SecretBox(key).decrypt(raw)
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(raw[24:], None, raw[:24], key)


def vault(doc, stored):
    out = g.bao("POST", f"transit/decrypt/{doc['bao_key']}", {"ciphertext": stored})
    return base64.b64decode(out["data"]["plaintext"])


def main(root):
    passed = failed = 0
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            doc = json.load(open(path))
            cfg = doc["codec"]
            codec = cfg["codec"]
            pid, ptext = doc["primary"]["id"], doc["primary"]["text"]
            for v in doc["values"]:
                label = f"{os.path.relpath(path, root)} / {v['name']}"
                stored = v.get("stored")
                try:
                    if codec in ("fernet", "django-fernet-fields"):
                        key = g.django_key(ptext) if codec == "django-fernet-fields" else ptext
                        fk = Fernet(key)
                        got = fk.decrypt(stored.encode())
                        assert fk.extract_timestamp(stored.encode()) == v["timestamp"], "timestamp not kept"
                        how = "cryptography Fernet"
                    elif codec == "laravel":
                        got, how = laravel(cfg, ptext, stored), "spec"
                    elif codec == "rails":
                        got, how = rails(cfg, ptext, stored), "spec"
                    elif codec == "lockbox":
                        got, how = lockbox(cfg, ptext, stored), "spec"
                    elif codec == "version-byte":
                        got, how = version_byte(cfg, ptext, v["stored_hex"], pid), "spec"
                    elif codec == "json-envelope":
                        got, how = json_envelope(ptext, stored, pid), "spec"
                    elif codec == "sodium-prefix":
                        got, how = sodium(cfg, ptext, stored, pid), "PyNaCl"
                    elif codec == "vault-transit":
                        if not os.environ.get("BAO_ADDR"):
                            print(f"SKIP {label}: no OpenBao server")
                            continue
                        got, how = vault(doc, stored), "OpenBao transit/decrypt"
                    else:
                        continue  # cloak and node-gcm: verify_rotated.mjs
                    assert got == v["plaintext"].encode(), "wrong plaintext"
                    passed += 1
                    print(f"ok   {label} ({how})")
                except Exception as e:  # report every failure, then fail
                    failed += 1
                    print(f"FAIL {label}: {type(e).__name__}: {e}")
    print(f"python: {passed} passed, {failed} failed")
    return failed == 0 and passed > 0


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1]) else 1)
