#!/usr/bin/env node
// Generates keyturn-codecs vectors with the real @47ng/cloak and Node's own
// crypto (the ad hoc `hex(iv):hex(tag):hex(ct)` AES-256-GCM layout).
//
//   NODE_PATH=.interop/node_modules node scripts/interop/gen_vectors.mjs --out testdata/codecs [--interop]
//
// Test keys are derived from fixed labels: never use them for anything else.
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(path.resolve(process.env.NODE_PATH || '.interop/node_modules', 'x.js'));
const cloak = require('@47ng/cloak');
const cloakVersion = require('@47ng/cloak/package.json').version;

const args = process.argv.slice(2);
const out = args[args.indexOf('--out') + 1];
const interop = args.includes('--interop');

const PLAINTEXTS = [
  'hello',
  '',
  'h\u00e9llo w\u00f6rld \u2713',
  '4111 1111 1111 1111',
  'a longer value that goes past the Rails compression threshold of one hundred and forty bytes, ' +
    'so that Rails compresses it with zlib before encrypting it',
];

const material = (label) =>
  crypto.createHash('sha256').update('keyturn-test-vector-' + label).digest().subarray(0, 32);

function write(dir, name, doc) {
  const d = path.join(out, dir);
  fs.mkdirSync(d, { recursive: true });
  const p = path.join(d, name + '.json');
  fs.writeFileSync(p, JSON.stringify(doc, null, 2) + '\n');
  console.log('wrote', p, doc.cases.length, 'cases');
}

const pos = (name, stored, plaintext, key_id, inspect = 'key_unknown') => ({ name, stored, plaintext, key_id, inspect });
const neg = (name, stored, error, inspect) => (inspect ? { name, stored, error, inspect } : { name, stored, error });
const flipLast = (b) => { const c = Buffer.from(b); c[c.length - 1] ^= 1; return c; };

// --- @47ng/cloak ---
{
  // serializeKey of raw bytes is cloak's own key text (k1.aesgcm256.<b64url>).
  const [k1, k2, k3] = await Promise.all([1, 2, 3].map((i) => cloak.serializeKey({ raw: material('cloak-' + i) })));
  const [f1, f2, f3] = [k1, k2, k3].map((k) => cloak.parseKeySync(k).fingerprint);
  const cases = PLAINTEXTS.map((p, i) => pos(`under old key #${i}`, cloak.encryptStringSync(p, k1), p, f1, 'under:' + f1));
  cases.push(pos('under primary', cloak.encryptStringSync('new', k2), 'new', f2, 'under:' + f2));
  if (!interop) {
    const good = cloak.encryptStringSync('hello', k1);
    const parts = good.split('.');
    const ct = Buffer.from(parts[4], 'base64');
    const tampered = [...parts.slice(0, 4), flipLast(ct).toString('base64').replace(/\+/g, '-').replace(/\//g, '_')].join('.');
    cases.push(
      neg('tampered tag', tampered, 'authentication_failed', 'under:' + f1),
      neg('fingerprint not in the ring', cloak.encryptStringSync('hello', k3), 'unknown_key', 'under:' + f3),
      neg('truncated', [...parts.slice(0, 4), 'AAAA'].join('.'), 'truncated', 'invalid'),
      neg('bad base64', [...parts.slice(0, 4), parts[4].slice(0, -3) + '*=='].join('.'), 'bad_text_encoding', 'invalid'),
      neg('extra part', good + '.x', 'bad_text_encoding', 'invalid'),
      neg('other version', good.replace(/^v1\./, 'v2.'), 'unknown_format', 'not_this_format'),
      neg('plaintext is not this format', 'hello world', 'unknown_format', 'not_this_format'),
    );
  }
  write('cloak', 'aesgcm256', {
    codec: { codec: 'cloak' },
    source: `@47ng/cloak ${cloakVersion} (Node.js ${process.version})`,
    keys: [{ id: '', text: k1 }, { id: '', text: k2 }],
    primary: f2,
    cases,
  });
}

// --- Node ad hoc hex(iv):hex(tag):hex(ct) ---
for (const ivLen of [12, 16]) {
  const [k1, k2, k3] = [1, 2, 3].map((i) => material(`node-gcm-${ivLen}-${i}`));
  const enc = (k, p) => {
    const iv = crypto.randomBytes(ivLen);
    const c = crypto.createCipheriv('aes-256-gcm', k, iv);
    const ct = Buffer.concat([c.update(p, 'utf8'), c.final()]);
    return `${iv.toString('hex')}:${c.getAuthTag().toString('hex')}:${ct.toString('hex')}`;
  };
  const cases = PLAINTEXTS.map((p, i) => pos(`under old key #${i}`, enc(k1, p), p, 'old'));
  cases.push(pos('under primary', enc(k2, 'new'), 'new', 'new'));
  if (!interop) {
    const [iv, tag, ct] = enc(k1, 'hello').split(':');
    cases.push(
      neg('tampered tag', `${iv}:${flipLast(Buffer.from(tag, 'hex')).toString('hex')}:${ct}`, 'authentication_failed', 'key_unknown'),
      neg('wrong key', enc(k3, 'hello'), 'authentication_failed'),
      neg('other IV length', `${ivLen === 16 ? iv.slice(0, 24) : iv + '00000000'}:${tag}:${ct}`, 'truncated', 'invalid'),
      neg('truncated tag', `${iv}:${tag.slice(0, 30)}:${ct}`, 'truncated', 'invalid'),
      neg('uppercase hex', `${iv.toUpperCase()}:${tag}:${ct}`, 'unknown_format', 'not_this_format'),
      neg('plaintext is not this format', 'hello world', 'unknown_format', 'not_this_format'),
    );
  }
  write('node-gcm', `iv${ivLen}`, {
    codec: { codec: 'node-gcm', iv_len: ivLen },
    source: `Node.js ${process.version} crypto (aes-256-gcm, ${ivLen}-byte IV)`,
    keys: [{ id: 'old', text: k1.toString('hex') }, { id: 'new', text: 'base64:' + k2.toString('base64') }],
    primary: 'new',
    cases,
  });
}
