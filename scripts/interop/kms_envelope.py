#!/usr/bin/env python3
"""A KMS envelope application, as the platform's Node app stores secrets:
AES-256-GCM of the secret under a per-row data key (payload_ciphertext =
ct || tag, payload_iv = 12 bytes), the data key made by the KMS
(data_key_ciphertext = AWS GenerateDataKey CiphertextBlob, or transit
datakey vault:vN:...), encryption_key_id naming a row of encryption_keys.

Written with the real libraries (boto3 against AWS KMS / moto, urllib
against Vault / OpenBao transit, cryptography's AESGCM), for keyturn's
end-to-end tests: the test gives JSON on stdin and reads JSON on stdout.

  kms_envelope.py aws-keys N        -> {"keys": [arn, ...]}  (create KMS keys)
  kms_envelope.py seal              stdin {"kms", "rows": [{"id", "key_id", "kms_key",
                                          "plaintext_b64", "context"?}]}
                                    -> {"rows": [{"id", "payload_ciphertext", "payload_iv",
                                          "data_key_ciphertext", "encryption_key_id"}]} (cells base64)
  kms_envelope.py open              stdin {"kms", "keys": {id: kms_key},
                                          "rows": [{"id", cells base64 or null, "context"?}]}
                                    -> {"rows": [{"id", "key_id", "plaintext_b64"} or {"id", "error"}]}

"kms" is {"kind": "aws", "endpoint": URL, "region": R} or
{"kind": "transit", "addr": URL, "mount": M, "token_env": VAR}.
Credentials for moto come from the environment (AWS_ACCESS_KEY_ID, ...).
"""
import base64
import json
import os
import sys
import urllib.request

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def b64(b):
    return base64.b64encode(b).decode()


def unb64(s):
    return base64.b64decode(s)


class Aws:
    def __init__(self, cfg):
        import boto3

        self.kms = boto3.client(
            "kms", endpoint_url=cfg["endpoint"], region_name=cfg.get("region", "us-east-1")
        )

    def new_data_key(self, kms_key, context):
        kw = {"KeyId": kms_key, "KeySpec": "AES_256"}
        if context:
            kw["EncryptionContext"] = context
        r = self.kms.generate_data_key(**kw)
        return r["Plaintext"], r["CiphertextBlob"]

    def decrypt_data_key(self, kms_key, wrapped, context):
        kw = {"KeyId": kms_key, "CiphertextBlob": wrapped}
        if context:
            kw["EncryptionContext"] = context
        return self.kms.decrypt(**kw)["Plaintext"]


class Transit:
    def __init__(self, cfg):
        self.addr = cfg["addr"].rstrip("/")
        self.mount = cfg["mount"]
        self.token = os.environ[cfg["token_env"]]

    def post(self, path, body):
        req = urllib.request.Request(
            f"{self.addr}/v1/{self.mount}/{path}",
            data=json.dumps(body).encode(),
            headers={"X-Vault-Token": self.token, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)["data"]

    def new_data_key(self, kms_key, context):
        d = self.post(f"datakey/plaintext/{kms_key}", {})
        return unb64(d["plaintext"]), d["ciphertext"].encode()

    def decrypt_data_key(self, kms_key, wrapped, context):
        d = self.post(f"decrypt/{kms_key}", {"ciphertext": wrapped.decode()})
        return unb64(d["plaintext"])


def client(cfg):
    return Aws(cfg) if cfg["kind"] == "aws" else Transit(cfg)


def seal(req):
    kms = client(req["kms"])
    out = []
    for row in req["rows"]:
        dek, wrapped = kms.new_data_key(row["kms_key"], row.get("context"))
        iv = os.urandom(12)
        ct = AESGCM(dek).encrypt(iv, unb64(row["plaintext_b64"]), None)
        out.append(
            {
                "id": row["id"],
                "payload_ciphertext": b64(ct),
                "payload_iv": b64(iv),
                "data_key_ciphertext": b64(wrapped),
                "encryption_key_id": row["key_id"],
            }
        )
    return {"rows": out}


def open_rows(req):
    kms = client(req["kms"])
    keys = req["keys"]
    out = []
    for row in req["rows"]:
        try:
            kid = row["encryption_key_id"]
            if kid not in keys:
                raise ValueError("unknown key id")
            dek = kms.decrypt_data_key(
                keys[kid], unb64(row["data_key_ciphertext"]), row.get("context")
            )
            pt = AESGCM(dek).decrypt(
                unb64(row["payload_iv"]), unb64(row["payload_ciphertext"]), None
            )
            out.append({"id": row["id"], "key_id": kid, "plaintext_b64": b64(pt)})
        except Exception as e:  # one row's failure is reported, not fatal
            out.append({"id": row["id"], "error": type(e).__name__})
    return {"rows": out}


def main():
    cmd = sys.argv[1]
    if cmd == "aws-keys":
        import boto3

        kms = boto3.client(
            "kms", endpoint_url=sys.argv[3], region_name="us-east-1"
        )
        keys = [kms.create_key()["KeyMetadata"]["Arn"] for _ in range(int(sys.argv[2]))]
        json.dump({"keys": keys}, sys.stdout)
    elif cmd == "seal":
        json.dump(seal(json.load(sys.stdin)), sys.stdout)
    elif cmd == "open":
        json.dump(open_rows(json.load(sys.stdin)), sys.stdout)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
