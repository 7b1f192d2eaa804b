import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { ROOT } from '../../scripts/lib/instances.ts'

/**
 * Memory (issue 2): what an instance does not use, it does not load. A server built as `serve`
 * builds it — SQLite, the memory cache, every other setting at its default — must not have loaded
 * in its main thread the NLP library of the name finder (its worker has it), the AWS SDKs (KMS,
 * S3 backups), the passkey library, or the PostgreSQL, Redis and SMTP clients: ~20–40 MB each.
 * The child reports the packages it loaded; an in-process name search afterwards must show
 * compromise arriving (the recorder sees what it should).
 */
const LAZY = ['compromise', '@aws-sdk/client-kms', '@aws-sdk/client-s3', '@aws-sdk/lib-storage', '@simplewebauthn/server', 'pg', 'ioredis', 'nodemailer']

test('GW-1: a default SQLite instance starts without the libraries it does not use (positive control: a name search loads compromise)', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/unit/lazy-deps.child.ts'], { cwd: ROOT, timeout: 120_000, maxBuffer: 1 << 20 })
  const { atStart, afterNames } = JSON.parse(stdout.trim().split('\n').pop()!) as { atStart: string[]; afterNames: string[] }
  for (const used of ['fastify', 'kysely', 'better-sqlite3-multiple-ciphers', 'obscenity', 'libphonenumber-js']) assert.ok(atStart.includes(used), `${used} is loaded (the recorder works)`)
  assert.deepEqual(atStart.filter((p) => LAZY.includes(p)), [], 'loaded at start although unused')
  assert.ok(afterNames.includes('compromise'), 'an in-process name search loads compromise')
})
