#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/seeds/<target>/,
from the project's real inputs: the v1 test vectors (testdata/v1), the codec
vector files (testdata/codecs), the key specs they use, and the example
configs of README.md and docs/*.md. `cargo fuzz cmin` then keeps what adds
coverage into fuzz/corpus/<target>/ (see docs/TESTING.md, "Fuzzing").

Run from the repository root: python3 fuzz/make_seeds.py
"""
import glob
import hashlib
import json
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")
MAX = 64 * 1024  # larger inputs (the 1 MiB vectors) only slow fuzzing down

seeds = {}


def add(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) <= MAX:
        seeds.setdefault(target, set()).add(data)


def pack(cells):
    out = b""
    for c in cells:
        if c is None:
            out += b"\x00"
        else:
            out += b"\x01" + struct.pack(">I", len(c)) + c
    return out


# --- format v1 -------------------------------------------------------------
specs = set()
for f in sorted(glob.glob(os.path.join(ROOT, "testdata/v1/*.json"))):
    d = json.load(open(f))
    for k in d.get("keys", []):
        specs.add(k)
    if "ciphertext_hex" in d:
        b = bytes.fromhex(d["ciphertext_hex"])
        add("v1_binary", b)
        add("codec_detect", b)
    if isinstance(d.get("ciphertext"), str):
        add("v1_text", d["ciphertext"])
        add("codec_detect", d["ciphertext"])

for s in sorted(specs):
    add("key_spec", s)
    add("codec_parse_key", b"\x00\n" + s.encode())
add("key_spec", "# keys\n" + "\n".join(sorted(specs)) + "\n")
add("key_spec", " , ".join(sorted(specs)))

# --- codecs ----------------------------------------------------------------
TARGET = {
    "cloak": "codec_cloak",
    "fernet": "codec_fernet",
    "django-fernet-fields": "codec_fernet",
    "json-envelope": "codec_json_envelope",
    "laravel": "codec_laravel",
    "lockbox": "codec_lockbox",
    "node-gcm": "codec_node",
    "rails": "codec_rails",
    "sodium-prefix": "codec_sodium",
    "vault-transit": "codec_vault",
    "version-byte": "codec_version_byte",
    "envelope": "codec_envelope",
    "split-columns": "multi_cells",
}
# The index of the codec config codec_parse_key picks (src/codecs.rs).
PICK = {
    "native": 0, "fernet": 1, "django-fernet-fields": 2, "laravel": 4,
    "lockbox": 5, "vault-transit": 6, "cloak": 7, "node-gcm": 8,
    "version-byte": 9, "sodium-prefix": 10, "json-envelope": 12,
    "envelope": 13, "split-columns": 14,
}
# Packing order of PackedCells: the key-id cell first, then the codec's roles.
ORDER = {
    "envelope": ["key_id", "wrapped_key", "iv", "ciphertext"],
    "split-columns": ["key_id", "ciphertext", "iv"],
}


def cell(cells, role):
    if role == "key_id":
        v = cells.get("key_id")
        return None if v is None else v.encode()
    v = cells.get(role + "_hex")
    return None if v is None else bytes.fromhex(v)


for f in sorted(glob.glob(os.path.join(ROOT, "testdata/codecs/*/*.json"))):
    d = json.load(open(f))
    name = d["codec"]["codec"]
    target = TARGET[name]
    for case in d["cases"]:
        if "cells" in case:
            v = pack([cell(case["cells"], r) for r in ORDER[name]])
            add(target, v)
            add("multi_cells", v)
            continue
        v = case["stored"].encode() if case.get("stored") is not None else bytes.fromhex(case["stored_hex"])
        add(target, v)
        add("codec_detect", v)
    if name in PICK:
        pick = PICK[name]
        if name == "sodium-prefix" and d["codec"].get("algorithm") == "xsalsa20poly1305":
            pick = 11
        for k in d["keys"]:
            add("codec_parse_key", bytes([pick]) + (k["id"] + "\n" + k["text"]).encode())
            add("codec_parse_key", bytes([pick]) + k["text"].encode())
            add("key_source", k["id"] + "=" + k["text"] + "\n# comment\n" + k["text"])

# --- key sources -----------------------------------------------------------
for s in ["env:KEYTURN_KEYS", "file:keys.txt", "file:/etc/keyturn/keys", "stdin", "-",
          "env:@@", "file:@@", "@@", "k1=@@\nk2 = @@\n# old\n@@\n"]:
    add("key_source", s)
add("key_source", 'sources = ["env:KEYTURN_KEYS", "file:keys.txt"]\nprimary = "k2"\nretired = ["k0"]\nallow_retired = false\n')
add("key_source", 'sources = ["@@"]\nprimary = "@@"\nretired = ["@@"]\n')

# --- configs ---------------------------------------------------------------
blocks = []
for md in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs/*.md"))):
    text = open(md).read()
    blocks += re.findall(r"```toml\n(.*?)```", text, re.S)
full = [b for b in blocks if "[database]" in b]
for b in blocks:
    add("config", b)
for b in full:
    add("config", b)
    add("config", re.sub(r'primary = "[^"]*"', 'primary = "@@"', b))
    add("config", b.replace("[keys]", '[keys]\nsources = ["@@"]'))
    add("config", b.replace("[keys]", '[keys]\nprimray = "@@"'))
    add("config", b.replace("[database]", '[database]\n"@@" = 1'))
add("config", '[database]\nurl = "sqlite://x.db"\n[keys]\nprimary = "k2"\n[[target]]\ntable = "patients"\nprimary_key = ["region", "id"]\ncolumns = [{ name = "phone", context = true }, { name = "nino", encoding = "binary" }]\n')
add("config", '[database]\nurl = "postgres://app:${DB_PASSWORD}@127.0.0.1/app"\n[rotation]\nbatch_size = 5000\nworkers = 2\n[keyrings.django]\nsources = ["env:FERNET_KEYS"]\nprimary = "f2"\n[[target]]\ntable = "users"\nprimary_key = "id"\ncolumns = [{ name = "token", codec = "laravel", options = { cipher = "aes-256-gcm" }, keyring = "django" }]\n')

# --- write -----------------------------------------------------------------
for target, items in sorted(seeds.items()):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for data in items:
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as fh:
            fh.write(data)
    print(f"{target}: {len(items)} seeds")
