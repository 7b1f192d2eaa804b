// Several instances, end to end: `npm run instances` (scripts/instances.ts) starts two real
// `serve` processes together on one fresh PostgreSQL database and one Redis; the test drives both
// over HTTP, then stops the script with SIGTERM and expects every instance to finish gracefully.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import http from 'node:http'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { cli, instanceEnv, ROOT } from '../../scripts/lib/instances.ts'
import { startMockUpstream, UPSTREAM_KEYS } from '../fakes/upstreams.ts'
import { freePort, TEST_MASTER_KEY } from '../helpers/app.ts'
import { freshPostgres, needService, REDIS_URL } from '../helpers/services.ts'
import { post } from './harness.ts'

const LIMIT = 12

test('OPS-1 KEY-3 LIMIT-1 LIMIT-2: `npm run instances` starts two instances on one PostgreSQL + Redis — a revoked key is refused by both at once, the rate limit is exact across them, an Idempotency-Key replays on the other instance, SIGTERM stops both gracefully', async (t) => {
  if (!(await needService(t, 'postgres')) || !(await needService(t, 'redis'))) return
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const databaseUrl = await freshPostgres(t)
  const settings = {
    TOLLGATE_DATABASE_URL: databaseUrl, TOLLGATE_REDIS_URL: REDIS_URL, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_LOG_LEVEL: 'warn',
    TOLLGATE_LIMIT_INTERCEPT_PER_MIN: String(LIMIT),
    OPENAI_API_KEY: UPSTREAM_KEYS.openai, OPENAI_BASE_URL: `${mock.url}/v1`, TOLLGATE_CLASSIFIER_LLM: 'off',
  }
  const ports = [await freePort(), await freePort()]
  // The script on an EMPTY database: both instances start at the same moment (first start included).
  const script = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', 'instances.ts'), '--count', '2', '--ports', ports.join(','), '--json'], {
    cwd: ROOT, env: instanceEnv(settings), stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  })
  const exited = new Promise<number | null>((r) => script.once('exit', (code) => r(code)))
  t.after(async () => {
    if (script.exitCode === null) {
      try {
        process.kill(-script.pid!, 'SIGKILL')
      } catch {
        // gone
      }
    }
  })
  let stderr = ''
  script.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-8000)))
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`instances did not start within 180 s:\n${stderr}`)), 180_000)
    createInterface({ input: script.stdout! }).once('line', (l) => {
      clearTimeout(timer)
      resolve(l)
    })
    void exited.then((code) => reject(new Error(`instances exited (${code}) before listening:\n${stderr}`)))
  })
  const started = JSON.parse(line) as { instances: { name: string; url: string; pid: number }[] }
  assert.deepEqual(started.instances.map((i) => i.url), ports.map((p) => `http://127.0.0.1:${p}`))
  const [a, b] = started.instances.map((i) => i.url) as [string, string]

  const env = instanceEnv(settings)
  await cli(['org', 'create', 'several'], env)
  const made = JSON.parse((await cli(['keys', 'create', '--org', 'several', '--env', 'production', '--json'], env)).trim().split('\n').pop()!) as { id: string; key: string }
  const agent = new http.Agent({ keepAlive: true })
  t.after(() => agent.destroy())
  const call = (url: string, key: string, prompt: string, idem?: string) =>
    post(url, '/v1/intercept', { authorization: `Bearer ${key}`, ...(idem ? { 'idempotency-key': idem } : {}) }, JSON.stringify({ model: 'gpt-4o-mini', prompt, max_tokens: 8 }), agent, 60_000)
  const status = (r: Awaited<ReturnType<typeof call>>) => (r.kind === 'response' ? r.status : r.kind)

  // LIMIT-2: a key executed on A is replayed on B (the recorded decision; the provider is not called again).
  const first = await call(a, made.key, 'several: idempotent', 'several-idem-1')
  assert.equal(status(first), 200)
  const calls = mock.received.length
  const again = await call(b, made.key, 'several: idempotent', 'several-idem-1')
  assert.equal(status(again), 200)
  assert.ok(first.kind === 'response' && again.kind === 'response')
  assert.equal(again.headers['idempotent-replayed'], 'true')
  assert.equal(again.headers['x-tollgate-decision'], first.headers['x-tollgate-decision'], 'B replays the decision A recorded')
  assert.equal(mock.received.length, calls, 'the replay on B never called the provider')
  const other = await call(b, made.key, 'several: another request', 'several-idem-1')
  assert.equal(status(other), 422, 'the same key with another request is refused on B too')

  // LIMIT-1: LIMIT per minute for the key, counted in Redis: exactly LIMIT succeed across both.
  // Three requests were counted above (the replay and the 422 too: the limit comes first); the rest of the window's allowance is shared by A and B.
  const burst = await Promise.all(Array.from({ length: LIMIT + 6 }, (_, i) => call(i % 2 === 0 ? a : b, made.key, `several: burst ${i}`)))
  const ok = burst.filter((r) => status(r) === 200).length
  const limited = burst.filter((r) => status(r) === 429).length
  assert.equal(ok, LIMIT - 3, `exactly ${LIMIT} requests in the window across both instances (3 before the burst)`)
  assert.equal(limited, burst.length - ok, 'the rest are refused with 429')

  // KEY-3: revocation is instant on every instance (no instance caches keys).
  const fresh = JSON.parse((await cli(['keys', 'create', '--org', 'several', '--env', 'production', '--json'], env)).trim().split('\n').pop()!) as { id: string; key: string }
  assert.equal(status(await call(a, fresh.key, 'several: before revocation a')), 200)
  assert.equal(status(await call(b, fresh.key, 'several: before revocation b')), 200)
  await cli(['keys', 'revoke', fresh.id], env)
  assert.equal(status(await call(a, fresh.key, 'several: after revocation a')), 401, 'A refuses the revoked key at once')
  assert.equal(status(await call(b, fresh.key, 'several: after revocation b')), 401, 'B refuses the revoked key at once')

  // OPS-1: SIGTERM to the script is forwarded; both instances finish and exit 0, and so does the script.
  agent.destroy()
  process.kill(script.pid!, 'SIGTERM')
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 60_000))])
  assert.equal(code, 0, `the script exits 0 after a graceful stop:\n${stderr}`)
  for (const i of started.instances) {
    assert.throws(() => process.kill(i.pid, 0), 'instance process is gone')
  }
})
