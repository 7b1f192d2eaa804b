import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import Database from 'better-sqlite3-multiple-ciphers'
import OpenAI from 'openai'
import { builtDigest, chooseEntry, sourceDigest, STAMP } from '../../bin/build-state.mjs'
import { cli, instanceEnv, ROOT, startInstance } from '../../scripts/lib/instances.ts'
import { TEST_MASTER_KEY } from '../helpers/app.ts'

/**
 * `npm start` runs the compiled build in dist/ (`npm run build`, also run by `npm ci` as
 * `prepare`): ~100 MB less memory than the sources through tsx. These tests build into a scratch
 * directory beside src/ (files are found relative to it, e.g. ../../web/), run the compiled
 * server with the official SDK, and check that a stale build is never chosen.
 */

const run = promisify(execFile)

function files(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name), base) : [relative(base, join(dir, e.name))]))
}

test('GW-1: the compiled build serves the official OpenAI SDK, with the classifier worker and a decision record', async (t) => {
  const outName = `.build-test-${process.pid}`
  const out = join(ROOT, outName)
  t.after(() => rmSync(out, { recursive: true, force: true }))
  const digest = sourceDigest(ROOT)
  await run(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), '--out', outName], { cwd: ROOT, timeout: 300_000 })

  // Every source compiled, every other file beside it, no TypeScript left, the digest recorded.
  const src = files(join(ROOT, 'src'))
  const built = new Set(files(out))
  for (const f of src) assert.ok(built.has(f.endsWith('.ts') ? f.replace(/\.ts$/, '.js') : f), `${f} is in the build`)
  assert.equal([...built].filter((f) => f.endsWith('.ts')).length, 0)
  assert.equal(builtDigest(ROOT, outName), digest)

  const data = mkdtempSync(join(tmpdir(), 'tollgate-build-'))
  t.after(() => rmSync(data, { recursive: true, force: true }))
  const entry = join(out, 'main.js')
  const env = instanceEnv({ TOLLGATE_DATA_DIR: data, TOLLGATE_PORT: '0', TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_LOG_LEVEL: 'silent' })
  await cli(['org', 'create', 'built'], env, 60_000, entry)
  const { key } = JSON.parse((await cli(['keys', 'create', '--org', 'built', '--env', 'production', '--json'], env, 60_000, entry)).trim().split('\n').pop()!) as { key: string }
  const tg = await startInstance({ name: 'built', env, entry })
  t.after(() => tg.kill())

  const openai = new OpenAI({ apiKey: key, baseURL: `${tg.url}/v1`, maxRetries: 0 })
  // A name and an email: the PII detectors run, names in the classifier's worker (a plain .mjs beside the build).
  const r = await openai.chat.completions.create({ model: 'local-echo', messages: [{ role: 'user', content: 'Please draft a thank-you note to Mr. John Smith (john@example.com).' }] })
  assert.match(r.choices[0]?.message.content ?? '', /\S/)
  const stream = await openai.chat.completions.create({ model: 'local-echo', stream: true, messages: [{ role: 'user', content: 'Say hello.' }] })
  let text = ''
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
  assert.match(text, /\S/)
  assert.equal((await tg.stop()).code, 0, 'a graceful stop')

  const db = new Database(join(data, 'tollgate.db'), { readonly: true })
  try {
    const rows = db.prepare('select finding_codes, stream from decision order by created_at').all() as { finding_codes: string | null; stream: number }[]
    assert.deepEqual(rows.map((r) => r.stream), [0, 1], 'one decision record per request')
    // EMAIL_ADDRESS from the main thread's detectors; PERSON from compromise in the worker.
    assert.deepEqual(rows[0]!.finding_codes?.split(',').filter((c) => c === 'EMAIL_ADDRESS' || c === 'PERSON').sort(), ['EMAIL_ADDRESS', 'PERSON'])
  } finally {
    db.close()
  }
})

test('GW-1: tollgate runs dist/ only when it was built from exactly the current sources', () => {
  const root = mkdtempSync(join(tmpdir(), 'tollgate-entry-'))
  try {
    mkdirSync(join(root, 'src', 'core'), { recursive: true })
    writeFileSync(join(root, 'src', 'main.ts'), 'export {}\n')
    writeFileSync(join(root, 'src', 'core', 'a.ts'), 'export const a = 1\n')
    writeFileSync(join(root, 'tsconfig.json'), '{}\n')
    writeFileSync(join(root, 'tsconfig.build.json'), '{}\n')
    assert.equal(chooseEntry(root), 'source', 'no build yet')
    mkdirSync(join(root, 'dist'))
    writeFileSync(join(root, 'dist', STAMP), JSON.stringify({ digest: sourceDigest(root) }))
    assert.equal(chooseEntry(root), 'dist', 'a build of these sources')
    writeFileSync(join(root, 'src', 'core', 'a.ts'), 'export const a = 2\n')
    assert.equal(chooseEntry(root), 'source', 'a source edited after the build')
    writeFileSync(join(root, 'dist', STAMP), JSON.stringify({ digest: sourceDigest(root) }))
    writeFileSync(join(root, 'src', 'core', 'b.ts'), 'export const b = 1\n')
    assert.equal(chooseEntry(root), 'source', 'a source added after the build')
    rmSync(join(root, 'src', 'core', 'b.ts'))
    assert.equal(chooseEntry(root), 'dist', 'back to the sources it was built from')
    writeFileSync(join(root, 'tsconfig.build.json'), '{"compilerOptions":{}}\n')
    assert.equal(chooseEntry(root), 'source', 'the build settings changed')
    writeFileSync(join(root, 'dist', STAMP), 'not json')
    assert.equal(chooseEntry(root), 'source', 'an unreadable stamp')
    assert.ok(!existsSync(join(root, 'dist', 'main.js')))
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})
