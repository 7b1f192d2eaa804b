import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { withAudit } from '../../src/audit/audit.ts'
import { openSqlite } from '../../src/storage/sqlite.ts'
import { startMockUpstream, upstreamEnv } from '../fakes/upstreams.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { freshPostgres, needService } from '../helpers/services.ts'
import { aiCall, ENDPOINTS, signedInOwner, sleep, type Admin } from './helpers.ts'

/**
 * KEY-3 (security-tests T41, T42): rotation without downtime and instant revocation, on two
 * instances sharing PostgreSQL and Redis (plus a cheap single-instance SQLite run).
 *
 * A bounded closed-loop client (WORKERS concurrent callers, each sending its next request when
 * the previous one is answered) keeps calling the three AI endpoints on both instances, with
 * models answered by a mock upstream and by the local provider. Through the admin API (a
 * signed-in OWNER with a fresh step-up): rotate K1 → K2 with a grace period, half of the
 * clients move to K2 at once, then all of them, and — once no request with K1 is in flight —
 * K1 is revoked. Every request sent with a not-yet-revoked key must succeed.
 */

const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'
const WORKERS = 8
const MODELS = ['local-echo', 'claude-sonnet-4-5', 'gpt-4o', 'gemini-2.5-flash'] as const

type KeyName = 'K1' | 'K2'
interface Sample { key: KeyName; instance: number; status: number; ms: number; phase: string; body: string }

/** The closed-loop client: bounded by `stop()` and by a hard wall-clock limit. */
class ClosedLoop {
  readonly samples: Sample[] = []
  readonly inFlight: Record<KeyName, number> = { K1: 0, K2: 0 }
  readonly #current: KeyName[] = Array.from({ length: WORKERS }, () => 'K1' as KeyName)
  #stopped = false
  phase = 'K1 only'
  #workers: Promise<void>[] = []

  constructor(private readonly targets: readonly TestApp[], private readonly keys: Record<KeyName, string | undefined>, private readonly hardLimitMs: number) {}

  start(): void {
    const deadline = Date.now() + this.hardLimitMs
    this.#workers = this.#current.map((_, w) => (async () => {
      for (let i = w; !this.#stopped && Date.now() < deadline; i++) {
        const name = this.#current[w]!
        const key = this.keys[name]!
        const instance = i % this.targets.length
        const endpoint = ENDPOINTS[i % ENDPOINTS.length]!
        const model = MODELS[Math.floor(i / ENDPOINTS.length) % MODELS.length]!
        this.inFlight[name]++
        const t0 = performance.now()
        try {
          const r = await aiCall(this.targets[instance]!.url, endpoint, key, model, { stream: i % 5 === 0 })
          const failed = r.status !== 200 || /event: error/.test(r.body)
          this.samples.push({ key: name, instance, status: failed && r.status === 200 ? -1 : r.status, ms: performance.now() - t0, phase: this.phase, body: failed ? r.body.slice(0, 200) : '' })
        } catch (err) {
          this.samples.push({ key: name, instance, status: 0, ms: performance.now() - t0, phase: this.phase, body: String(err) })
        } finally {
          this.inFlight[name]--
        }
      }
    })())
  }

  /** Moves workers [from, to) to `key`: their NEXT request uses it. */
  switchTo(key: KeyName, from = 0, to = WORKERS): void {
    for (let w = from; w < to; w++) this.#current[w] = key
  }

  async drained(key: KeyName): Promise<void> {
    for (const deadline = Date.now() + 30_000; this.inFlight[key] > 0;) {
      if (Date.now() > deadline) throw new Error(`${this.inFlight[key]} ${key} requests still in flight`)
      await sleep(2)
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#workers)
  }
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN
}

/**
 * The whole T41 + T42 scenario on `instances` (one or two, sharing a database). `phaseMs` is the
 * length of each of the four load phases.
 */
async function rotateUnderLoad(t: TestContext, instances: readonly TestApp[], phaseMs: number, burstPerInstance: number) {
  const [a, b = a] = instances as [TestApp, TestApp | undefined]
  const org = await a.deps.orgs.create(`rot-${Math.random().toString(36).slice(2, 10)}`, { type: 'operator', id: null })
  assert.ok(org)
  const owner: Admin = await signedInOwner(a, org.id)

  // K1 is created through the admin API, like a customer would.
  const created = await owner.call('POST', `/api/orgs/${org.id}/keys`, { environment: 'production', label: 'ci-key' }, a)
  assert.equal(created.status, 201, JSON.stringify(created.json))
  const k1 = { id: created.json.key.id as string, secret: created.json.secret as string }
  const keys: Record<KeyName, string | undefined> = { K1: k1.secret, K2: undefined }

  const loop = new ClosedLoop(instances, keys, 8 * phaseMs + 30_000)
  loop.start()
  await sleep(phaseMs)

  // Rotate on one instance (grace 1 h); half the clients move to K2 at once, served by both instances.
  loop.phase = 'grace: K1 and K2'
  const rotated = await owner.call('POST', `/api/orgs/${org.id}/keys/${k1.id}/rotate`, { grace_seconds: 3600 }, a)
  assert.equal(rotated.status, 201, JSON.stringify(rotated.json))
  const k2 = { id: rotated.json.key.id as string, secret: rotated.json.secret as string }
  assert.notEqual(k2.secret, k1.secret)
  keys.K2 = k2.secret
  loop.switchTo('K2', 0, WORKERS / 2)
  await sleep(phaseMs)

  // Every client on K2; once no K1 request is in flight, revoke K1 on the OTHER instance.
  loop.phase = 'K2 only'
  loop.switchTo('K2')
  await loop.drained('K1')
  await sleep(phaseMs / 2)
  const revoked = await owner.call('DELETE', `/api/orgs/${org.id}/keys/${k1.id}`, undefined, b)
  // T42: the moment the revoke call returns, K1 is refused everywhere — no cache serves it.
  const burst = await Promise.all(instances.flatMap((tg) => Array.from({ length: burstPerInstance }, (_, i) =>
    aiCall(tg.url, ENDPOINTS[i % ENDPOINTS.length]!, k1.secret, MODELS[i % MODELS.length]!).then((r) => r.status))))
  assert.equal(revoked.status, 200, JSON.stringify(revoked.json))
  loop.phase = 'after revoke: K2'
  await sleep(phaseMs)
  await loop.stop()

  // ---- T41: zero failed requests among those sent with a not-yet-revoked key ----
  const failures = loop.samples.filter((s) => s.status !== 200)
  assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${loop.samples.length} requests failed`)
  const count = (f: (s: Sample) => boolean) => loop.samples.filter(f).length
  for (const key of ['K1', 'K2'] as const) {
    for (let i = 0; i < instances.length; i++) assert.ok(count((s) => s.key === key && s.instance === i) > 10, `${key} was served by instance ${i}`)
  }
  assert.ok(count((s) => s.phase === 'grace: K1 and K2' && s.key === 'K1') > 10 && count((s) => s.phase === 'grace: K1 and K2' && s.key === 'K2') > 10, 'both keys worked side by side during the grace period')
  assert.ok(count((s) => s.phase === 'after revoke: K2') > 10, 'K2 kept working after K1 was revoked')

  // ---- T42 ----
  assert.equal(burst.length, burstPerInstance * instances.length)
  assert.deepEqual([...new Set(burst)], [401], `after the revoke returned: ${burst.filter((s) => s !== 401).length} of ${burst.length} K1 requests were not refused`)

  // ---- the audit log: exactly created(K1), created(K2), rotated(K1), revoked(K1), each with its admin call's request id ----
  const audit = await owner.call('GET', `/api/orgs/${org.id}/audit?limit=1000`, undefined, b)
  assert.equal(audit.status, 200)
  const keyEvents = (audit.json.entries as any[]).filter((e) => e.action.startsWith('authn_token_'))
  assert.deepEqual(keyEvents.map((e) => [e.action, e.target_id, e.outcome, e.actor_type, e.request_id]), [
    ['authn_token_created', k1.id, 'success', 'user', created.requestId],
    ['authn_token_created', k2.id, 'success', 'user', rotated.requestId],
    ['authn_token_rotated', k1.id, 'success', 'user', rotated.requestId],
    ['authn_token_revoked', k1.id, 'success', 'user', revoked.requestId],
  ])
  const list = await owner.call('GET', `/api/orgs/${org.id}/keys`, undefined, a)
  const state = new Map((list.json.keys as any[]).map((k) => [k.id, k]))
  assert.equal(state.get(k1.id).state, 'revoked')
  assert.equal(state.get(k1.id).replaced_by, k2.id)
  assert.equal(state.get(k2.id).state, 'active')

  const ms = (f: (s: Sample) => boolean) => loop.samples.filter(f).map((s) => s.ms)
  const base = ms((s) => s.phase === 'K1 only')
  const window = ms((s) => s.phase !== 'K1 only')
  t.diagnostic(`KEY-3 ${instances.length} instance(s): ${loop.samples.length} requests (K1 ${count((s) => s.key === 'K1')}, K2 ${count((s) => s.key === 'K2')}), ${failures.length} failed; ` +
    `p50/p99 ms before rotation ${percentile(base, 50).toFixed(1)}/${percentile(base, 99).toFixed(1)}, from rotation on ${percentile(window, 50).toFixed(1)}/${percentile(window, 99).toFixed(1)}; ` +
    `${burst.length} K1 requests right after the revoke: ${burst.filter((s) => s === 401).length} × 401`)
  return { org, owner }
}

test('KEY-3: rotation under load on two instances sharing PostgreSQL + Redis — 0 failed requests; revocation is instant on both instances (T41, T42)', async (t) => {
  if (!(await needService(t, 'postgres')) || !(await needService(t, 'redis'))) return
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const databaseUrl = await freshPostgres(t)
  const a = await startApp(t, { databaseUrl, redis: true, env: upstreamEnv(mock) })
  const b = await startApp(t, { databaseUrl, redis: true, env: upstreamEnv(mock) })
  if (!a || !b) return
  assert.equal(a.deps.db.dialect, 'postgres')
  assert.equal(a.deps.cache.kind, 'redis')
  await rotateUnderLoad(t, [a, b], FULL ? 15_000 : 3_000, 100)
})

test('KEY-3: removing a member makes their keys fail on the very next request, on every instance (T42)', async (t) => {
  if (!(await needService(t, 'postgres')) || !(await needService(t, 'redis'))) return
  const databaseUrl = await freshPostgres(t)
  const a = await startApp(t, { databaseUrl, redis: true })
  const b = await startApp(t, { databaseUrl, redis: true })
  if (!a || !b) return
  const org = await a.deps.orgs.create(`rm-${Math.random().toString(36).slice(2, 10)}`, { type: 'operator', id: null })
  assert.ok(org)
  const owner = await signedInOwner(a, org.id)
  const member = await a.deps.users.create(a.deps.db.db, 'member@example.test')
  await a.deps.members.add(a.deps.db.db, org.id, member.id, 'MEMBER')
  // Two keys of the member (one per environment, one in its grace period after a rotation), one of the owner.
  const mk = async (body: object) => {
    const r = await owner.call('POST', `/api/orgs/${org.id}/keys`, body, a)
    assert.equal(r.status, 201, JSON.stringify(r.json))
    return { id: r.json.key.id as string, secret: r.json.secret as string }
  }
  const memberLive = await mk({ environment: 'production', user_id: member.id })
  const memberTest = await mk({ environment: 'sandbox', user_id: member.id })
  const rotated = await owner.call('POST', `/api/orgs/${org.id}/keys/${memberLive.id}/rotate`, { grace_seconds: 3600 }, b)
  assert.equal(rotated.status, 201)
  const memberNew = { id: rotated.json.key.id as string, secret: rotated.json.secret as string }
  const ownerKey = await mk({ environment: 'production' })
  const memberKeys = [memberLive.secret, memberTest.secret, memberNew.secret]

  const fire = (key: string, n: number) => Promise.all([a, b].flatMap((tg) => Array.from({ length: n }, (_, i) => aiCall(tg.url, ENDPOINTS[i % 3]!, key, 'local-echo').then((r) => r.status))))
  for (const key of memberKeys) assert.deepEqual([...new Set(await fire(key, 3))], [200], 'the member\'s keys work before the removal (positive control)')

  const removed = await owner.call('DELETE', `/api/orgs/${org.id}/members/${member.id}`, undefined, b)
  assert.equal(removed.status, 200, JSON.stringify(removed.json))
  const after = await Promise.all(memberKeys.map((key) => fire(key, 50)))
  for (const [i, statuses] of after.entries()) {
    assert.deepEqual([...new Set(statuses)], [401], `member key #${i} after the removal: ${statuses.filter((s) => s !== 401).length} of ${statuses.length} accepted`)
  }
  assert.deepEqual([...new Set(await fire(ownerKey.secret, 5))], [200], 'other members\' keys are untouched')
  t.diagnostic(`KEY-3 member removal: ${after.flat().length} requests with the removed member's 3 keys on 2 instances, all 401`)
})

test('KEY-3: rotation under load, single instance on SQLite (T41, T42) — with a positive control: the same client does see failures when a key is rotated with grace 0 under it', async (t) => {
  const a = await startApp(t)
  if (!a) return
  assert.equal(a.deps.db.dialect, 'sqlite')
  const { org, owner } = await rotateUnderLoad(t, [a], FULL ? 5_000 : 1_200, 100)

  // Positive control: "0 failures" above means something only if this client notices failures.
  // Rotating with grace_seconds 0 revokes the old key at once, so requests still using it fail.
  const created = await owner.call('POST', `/api/orgs/${org.id}/keys`, { environment: 'production' }, a)
  assert.equal(created.status, 201)
  const loop = new ClosedLoop([a], { K1: created.json.secret, K2: undefined }, 20_000)
  loop.start()
  await sleep(300)
  const rotated = await owner.call('POST', `/api/orgs/${org.id}/keys/${created.json.key.id}/rotate`, { grace_seconds: 0 }, a)
  assert.equal(rotated.status, 201)
  await sleep(300)
  await loop.stop()
  const failed = loop.samples.filter((s) => s.status !== 200)
  assert.ok(failed.length > 0, 'the closed-loop client detects refused requests (else "0 failures" proves nothing)')
  assert.deepEqual([...new Set(failed.map((s) => s.status))], [401])
  assert.ok(loop.samples.some((s) => s.status === 200), 'the key worked before the rotation')
})

test('KEY-3: the old key works until its grace period ends and not a moment longer; a second rotation never extends it', async (t) => {
  let now = Date.UTC(2030, 0, 1)
  const clock = { now: () => now }
  const a = await startApp(t, { clock })
  if (!a) return
  const org = await a.deps.orgs.create(`grace-${Math.random().toString(36).slice(2, 10)}`, { type: 'operator', id: null })
  assert.ok(org)
  const owner = await signedInOwner(a, org.id)
  const created = await owner.call('POST', `/api/orgs/${org.id}/keys`, { environment: 'production' })
  const k1 = { id: created.json.key.id as string, secret: created.json.secret as string }
  const ok = async (key: string) => (await aiCall(a.url, '/v1/intercept', key, 'local-echo')).status === 200

  const r1 = await owner.call('POST', `/api/orgs/${org.id}/keys/${k1.id}/rotate`, { grace_seconds: 60 })
  assert.equal(r1.status, 201)
  const k2 = r1.json.secret as string
  now += 59_999
  assert.ok(await ok(k1.secret), 'K1 works 1 ms before its grace period ends')
  assert.ok(await ok(k2))
  // Rotating the old key again (grace 1 h) must not make it outlive its first grace period.
  const r2 = await owner.call('POST', `/api/orgs/${org.id}/keys/${k1.id}/rotate`, { grace_seconds: 3600 })
  assert.equal(r2.status, 201)
  now += 1
  assert.equal(await ok(k1.secret), false, 'K1 is refused once its grace period is over')
  assert.ok(await ok(k2), 'K2 keeps working')
  assert.ok(await ok(r2.json.secret), 'the key minted by the second rotation works')
  const list = await owner.call('GET', `/api/orgs/${org.id}/keys`)
  assert.equal((list.json.keys as any[]).find((k) => k.id === k1.id).state, 'expired')
})

test('KEY-3: a key operation whose SQLite transaction loses its WAL snapshot to a concurrent commit (the decision writer) is retried, not answered 500', async (t) => {
  // Found by the positive control above: under AI load a rotation failed with SQLITE_BUSY_SNAPSHOT.
  const a = await startApp(t)
  if (!a) return
  const org = await a.deps.orgs.create(`snap-${Math.random().toString(36).slice(2, 10)}`, { type: 'operator', id: null })
  assert.ok(org)
  const key = await a.deps.keys.create({ orgId: org.id, environment: 'production', actor: { type: 'operator', id: null } })
  const other = openSqlite(a.deps.db.sqlitePath!)
  t.after(() => other.close())
  // Control: a bare transaction with the same interleaving does fail, with that very code.
  await assert.rejects(a.deps.db.db.transaction().execute(async (trx) => {
    await trx.selectFrom('api_key').select('id').where('id', '=', key.info.id).executeTakeFirstOrThrow()
    other.prepare('update api_key set last_used_at = ? where id = ?').run(Date.now(), key.info.id)
    await trx.updateTable('api_key').set({ label: 'control' }).where('id', '=', key.info.id).execute()
  }), (err: { code?: string }) => err.code === 'SQLITE_BUSY_SNAPSHOT')

  let attempts = 0
  const result = await withAudit(a.deps.db.db, async (trx) => {
    attempts++
    // Read first (the transaction's snapshot starts here)…
    await trx.selectFrom('api_key').select('id').where('id', '=', key.info.id).executeTakeFirstOrThrow()
    // …another connection commits in between (as the decision writer thread does all the time)…
    if (attempts === 1) other.prepare('update api_key set last_used_at = ? where id = ?').run(Date.now(), key.info.id)
    // …then write: the stale snapshot cannot be upgraded to a write transaction.
    await trx.updateTable('api_key').set({ label: 'renamed' }).where('id', '=', key.info.id).execute()
    return 'committed'
  })
  assert.equal(result, 'committed')
  assert.equal(attempts, 2, 'the first attempt hit SQLITE_BUSY_SNAPSHOT and the whole transaction was run again')
  assert.equal((await a.deps.keys.list({ orgId: org.id }))[0]!.label, 'renamed')
})
