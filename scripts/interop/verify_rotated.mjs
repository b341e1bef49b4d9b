#!/usr/bin/env node
// Reads back the values keyturn rotated (check.sh) with the real
// @47ng/cloak and Node's crypto, using only the new (primary) key.
// Prints `N passed, M failed`; exits non-zero on any failure.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.resolve(process.env.NODE_PATH || '.interop/node_modules', 'x.js'));
const cloak = require('@47ng/cloak');
const root = process.argv[2];

function* walk(d) {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (p.endsWith('.json')) yield p;
  }
}

function nodeKey(text) {
  return text.startsWith('base64:') ? Buffer.from(text.slice(7), 'base64') : Buffer.from(text.replace(/^hex:/, ''), 'hex');
}

let passed = 0;
let failed = 0;
for (const file of [...walk(root)].sort()) {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  const codec = doc.codec.codec;
  if (codec !== 'cloak' && codec !== 'node-gcm') continue;
  for (const v of doc.values) {
    const label = `${path.relative(root, file)} / ${v.name}`;
    try {
      let got;
      if (codec === 'cloak') {
        if (cloak.getMessageKeyFingerprint(v.stored) !== doc.primary.id) throw new Error('fingerprint is not the new key');
        got = cloak.decryptStringSync(v.stored, doc.primary.text);
      } else {
        const [iv, tag, ct] = v.stored.split(':').map((h) => Buffer.from(h, 'hex'));
        if (iv.length !== doc.codec.iv_len) throw new Error(`IV is ${iv.length} bytes`);
        const d = crypto.createDecipheriv('aes-256-gcm', nodeKey(doc.primary.text), iv);
        d.setAuthTag(tag);
        got = Buffer.concat([d.update(ct), d.final()]).toString('utf8');
      }
      if (got !== v.plaintext) throw new Error('wrong plaintext');
      passed++;
      console.log(`ok   ${label} (${codec === 'cloak' ? '@47ng/cloak' : 'node crypto'})`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${label}: ${e.message}`);
    }
  }
}
console.log(`node: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
