// LIMIT-1 rate limits, proven from outside (security-tests.md §5.4, T30–T35): two Tollgate
// instances sharing PostgreSQL and a Redis of the test's own, real HTTP, the documented limits
// (auth 10, intercept 30, api 120 per 60 s). Heavier counts behind TOLLGATE_TEST_LEVEL=full.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { runCli } from '../../src/cli/index.ts'
import { RedisLimitStore } from '../../src/ratelimit/limiter.ts'
import { TEST_MASTER_KEY, type TestApp } from '../helpers/app.ts'
import { ManualClock } from '../fakes/clock.ts'
import { parseList, rateLimitItems, SfError, type RateItem } from './sf.ts'
import { OwnRedis, pool, rateFields, zscores } from './ratelimit-traffic.ts'
import {
  ACCEPTED_STATUS, accepted, assertRefusal, burst, cluster, FULL, GROUPS, LIMIT, maxInAnyWindow, newOrg, onlyVerdicts, parsedFields,
  partition, POLICIES, prng, refused, secondKey, single, storeFailures, WINDOW_S, type Group, type Partition, type Shot, type World,
} from './ratelimit-world.ts'

const QUOTA_EXCEEDED = 'https://iana.org/assignments/http-problem-types#quota-exceeded'
const REDUCED_CAPACITY = 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity'

/** Responses of the T30 bursts, kept for the header conformance checks of T32. */
const sampled: { p: Partition; shots: Shot[] }[] = []

/** One T30 trial: 3 × limit requests on a fresh partition, round-robin over both instances, 16 in flight. */
async function exactTrial(t: TestContext, w: World, group: Group, what: string, p?: Partition): Promise<{ p: Partition; shots: Shot[]; ms: number }> {
  p ??= await partition(w, group)
  const t0 = performance.now()
  const shots = await burst(w, p, 3 * LIMIT[group], 16)
  const ms = performance.now() - t0
  onlyVerdicts(group, shots, what)
  const ok = accepted(shots)
  assert.equal(ok.length, LIMIT[group], `${what}: accepted ${ok.length}, limit ${LIMIT[group]}`)
  for (const s of refused(shots)) assertRefusal(group, s, what)
  t.diagnostic(`${what}: ${ok.length}/${shots.length} accepted (A ${ok.filter((s) => s.instance === 0).length}, B ${ok.filter((s) => s.instance === 1).length}) in ${Math.round(ms)} ms`)
  return { p, shots, ms }
}

/** tollgate_ratelimit_store_failures_total per group, summed over the instances. */
async function allStoreFailures(w: World): Promise<Record<Group, number>> {
  const out = { auth: 0, intercept: 0, api: 0 }
  for (const app of w.apps) for (const g of GROUPS) out[g] += await storeFailures(app, g)
  return out
}

/** The server-side admission log (Redis sorted sets): exactly `limit` admissions, all inside one window. */
async function serverLog(w: World, p: Partition, expected: number): Promise<number[][]> {
  const r = new Redis(w.redis!.url, { lazyConnect: true })
  await r.connect()
  try {
    const out: number[][] = []
    for (const key of p.storeKeys) {
      const scores = [...(await zscores(r, `tollgate:rl:${key}`)).values()]
      assert.equal(scores.length, expected, `${p.label}: ${key} holds ${scores.length} admissions`)
      assert.ok(maxInAnyWindow(scores, WINDOW_S * 1000) <= LIMIT[p.group])
      out.push(scores)
    }
    return out
  } finally {
    r.disconnect()
  }
}

async function t30(t: TestContext, w: World): Promise<void> {
  const failuresBefore = await allStoreFailures(w)
  const trials = FULL ? 10 : 3
  let total = 0
  for (const group of GROUPS) {
    for (let k = 0; k < trials; k++) {
      const run = await exactTrial(t, w, group, `T30 ${group} trial ${k + 1}/${trials}`)
      // Both instances admitted part of the quota: the exact total is the shared store's doing.
      assert.ok(accepted(run.shots).some((s) => s.instance === 0) && accepted(run.shots).some((s) => s.instance === 1), 'both instances took part')
      await serverLog(w, run.p, LIMIT[group])
      sampled.push({ p: run.p, shots: run.shots })
      total++
    }
  }
  // Exact because of Redis, never by luck of a fallback: no decision was taken without the shared store.
  assert.deepEqual(await allStoreFailures(w), failuresBefore, 'a T30 decision fell back to per-instance memory')
  t.diagnostic(`T30: ${total}/${total} trials exact (${trials} per group), 0 store fallbacks`)

  // Auth refusals are audited once per address per minute per instance, the address truncated (D15).
  const audit = await w.apps[0]!.deps.db.db.selectFrom('audit_event').select(['target_id']).where('action', '=', 'excess_rate_limit_exceeded').execute()
  const addresses = sampled.filter((s) => s.p.group === 'auth').map((s) => s.p.address!)
  assert.ok(audit.length >= addresses.length && audit.length <= addresses.length * 4, `${audit.length} refusal audits for ${addresses.length} refused addresses`)
  for (const a of audit) {
    assert.match(a.target_id ?? '', / from 127\.0\.0\.0\/24$/)
    for (const ip of addresses) assert.ok(!(a.target_id ?? '').includes(ip), 'a raw address is at rest in the audit log')
  }
}

test('LIMIT-1 T31: sliding window — an exact model check of the sliding log (injected clock, memory store), the 59.9 s / 60.1 s boundary probe, and two Redis clients under real time never exceed the limit in any window', async (t) => {
  const clock = new ManualClock(Date.UTC(2031, 0, 1, 0, 0, 0))
  const w = await single(t, { clock })
  if (!w) return
  const app = w.apps[0]!

  // (1) Random arrivals at about twice the allowed rate, bursts included; every verdict and header
  // is compared with the definition "at most N admissions in any 60 s" (D7).
  const rand = prng(20310101)
  const started = performance.now()
  for (const group of GROUPS) {
    const p = await partition(w, group)
    const limit = LIMIT[group]
    const n = { auth: 60, intercept: 80, api: 280 }[group] * (FULL ? 5 : 1)
    const meanGapMs = (WINDOW_S * 1000) / (2 * limit)
    const admitted: number[] = []
    let mismatches = 0
    let refusals = 0
    for (let i = 0; i < n; i++) {
      clock.advance(rand() < 0.3 ? 0 : Math.round(-Math.log(1 - rand()) * meanGapMs * 1.4))
      const now = clock.now()
      const r: Shot = { ...(await w.send(app.url, p.req(app))), instance: 0 }
      const inWindow = admitted.filter((a) => a > now - WINDOW_S * 1000)
      const expectAllowed = inWindow.length < limit
      if (expectAllowed) admitted.push(now)
      const log = expectAllowed ? [...inWindow, now] : inWindow
      const expectR = limit - log.length
      const expectT = log.length === 0 ? 0 : Math.max(1, Math.ceil((log[0]! + WINDOW_S * 1000 - now) / 1000))
      const got: RateItem = parsedFields(r).limit.at(-1)!
      if ((r.status !== 429) !== expectAllowed || got.params['r'] !== expectR || got.params['t'] !== expectT) mismatches++
      if (r.status === 429) {
        refusals++
        assert.equal(r.headers['retry-after'], String(expectT))
      } else assert.equal(r.status, ACCEPTED_STATUS[group])
    }
    assert.equal(mismatches, 0, `${group}: ${mismatches} verdicts or headers differ from the sliding-log definition`)
    assert.ok(refusals > n / 4 && admitted.length > limit, `${group}: the run exercised both verdicts and more than one window (${admitted.length} admitted, ${refusals} refused)`)
    assert.ok(maxInAnyWindow(admitted, WINDOW_S * 1000) <= limit)
    t.diagnostic(`T31 model ${group} (${Math.round(performance.now() - started)} ms so far): ${n} requests over ${Math.round((clock.now() - Date.UTC(2031, 0, 1)) / 1000)} s simulated, ${admitted.length} admitted, ${refusals} refused, 0 mismatches, max ${maxInAnyWindow(admitted, WINDOW_S * 1000)} in any 60 s`)
  }

  // (2) The boundary probe: `limit` requests at t0 + 59.9 s, then `limit` at t0 + 60.1 s, t0 a
  // minute boundary. A fixed window would admit both batches (2 × limit in 0.2 s); the sliding
  // log admits none of the second until 60 s after the first.
  for (const group of GROUPS) {
    const p = await partition(w, group)
    const limit = LIMIT[group]
    const t0 = (Math.floor(clock.now() / 60_000) + 2) * 60_000
    const at = async (ms: number, n: number): Promise<Shot[]> => {
      clock.set(t0 + ms)
      // The clock stands still during a batch: its requests can be concurrent.
      return pool(n, 8, async (): Promise<Shot> => ({ ...(await w.send(app.url, p.req(app))), instance: 0 }))
    }
    assert.equal(accepted(await at(59_900, limit)).length, limit, `${group}: the first batch at t0+59.9 s`)
    const second = await at(60_100, limit)
    assert.equal(accepted(second).length, 0, `${group}: a fixed window would admit the batch at t0+60.1 s`)
    for (const s of second) assert.equal(assertRefusal(group, s, `${group} t0+60.1 s`).params['t'], 60)
    assert.deepEqual(second.map((s) => s.headers['retry-after']), Array(limit).fill('60'))
    assert.equal(accepted(await at(119_899, 1)).length, 0, `${group}: 59.999 s after the first batch`)
    assert.equal(accepted(await at(119_900, limit + 1)).length, limit, `${group}: 60 s after the first batch the whole quota is back, and no more`)
  }
  t.diagnostic(`T31 model + boundary: ${Math.round(performance.now() - started)} ms`)
  t.diagnostic('T31 boundary: limit at t0+59.9 s admitted, 0 of limit at t0+60.1 s (Retry-After 60), 0 at t0+119.899 s, limit at t0+119.9 s — auth, intercept, api')

  // (3) Real time on Redis: two store clients (as two instances would be) race on one partition
  // with a 2 s window; the admission times are read back from Redis (its own clock).
  const redis = await OwnRedis.start(t)
  if (!redis) return
  const stores = [new RedisLimitStore(redis.url, 'tgtest:'), new RedisLimitStore(redis.url, 'tgtest:')]
  t.after(() => Promise.all(stores.map((s) => s.close())))
  // Used at once, before their connections are up: a just-started instance waits for its first connection.
  const L = { limit: 5, windowS: 2 }
  const seen = new Map<string, number>()
  let admittedCount = 0
  let calls = 0
  const runMs = FULL ? 20_000 : 5_000
  const deadline = performance.now() + runMs
  const jitter = prng(7)
  await Promise.all(Array.from({ length: 8 }, async (_, worker) => {
    while (performance.now() < deadline) {
      const v = await stores[(worker + calls++) % 2]!.admit('probe', L)
      if (v.allowed) {
        admittedCount++
        for (const [m, score] of await zscores(stores[0]!.redis, 'tgtest:probe')) seen.set(m, score)
      }
      await sleep(Math.floor(jitter() * 40))
    }
  }))
  assert.equal(seen.size, admittedCount, 'every admission was read back from Redis')
  const times = [...seen.values()]
  assert.ok(maxInAnyWindow(times, L.windowS * 1000) <= L.limit, `max ${maxInAnyWindow(times, L.windowS * 1000)} in a ${L.windowS} s window`)
  // Not over-strict either: under continuous demand every window's quota is used.
  assert.ok(admittedCount >= L.limit * Math.floor(runMs / 1000 / L.windowS), `${admittedCount} admitted in ${runMs} ms`)
  t.diagnostic(`T31 Redis: ${calls} calls from 2 clients in ${runMs} ms, ${admittedCount} admitted, max ${maxInAnyWindow(times, L.windowS * 1000)} (limit ${L.limit}) in any ${L.windowS} s by Redis TIME, 0 violations`)
})

test('LIMIT-1 T31 (full): real time across two instances — paced requests on one key for 75 s; the admissions read from Redis never exceed 30 in any 60 s, and the window slides', { skip: FULL ? false : 'TOLLGATE_TEST_LEVEL=full only (75 s of real time)' }, async (t) => {
  const w = await cluster(t)
  if (!w) return
  const p = await partition(w, 'intercept')
  const r = new Redis(w.redis!.url)
  t.after(() => r.disconnect())
  const seen = new Map<string, number>()
  const scrape = async () => {
    for (const key of p.storeKeys) {
      for (const [m, score] of await zscores(r, `tollgate:rl:${key}`)) seen.set(`${key} ${m}`, score)
    }
  }
  const shots: Shot[] = []
  const deadline = performance.now() + 75_000
  let i = 0
  while (performance.now() < deadline) {
    shots.push(...(await burst(w, p, 2, 2, [w.apps[i++ % 2]!])))
    await scrape()
    await sleep(1000)
  }
  const ok = accepted(shots).length
  const keyTimes = [...seen.entries()].filter(([k]) => k.startsWith('intercept:key:')).map(([, v]) => v)
  assert.equal(keyTimes.length, ok, 'every admission read back')
  assert.ok(maxInAnyWindow(keyTimes, 60_000) <= LIMIT.intercept)
  assert.ok(ok > LIMIT.intercept, `the window slid: ${ok} admitted in 75 s`)
  t.diagnostic(`T31 full: ${shots.length} requests, ${ok} admitted, max ${maxInAnyWindow(keyTimes, 60_000)} in any 60 s`)
})

async function t32(t: TestContext, w: World): Promise<void> {
  // The parser is strict (positive and negative controls), or the 100% below would mean nothing.
  assert.deepEqual(rateLimitItems('"permin";q=50;w=60,"perhr";q=1000;w=3600'), [{ name: 'permin', params: { q: 50, w: 60 } }, { name: 'perhr', params: { q: 1000, w: 3600 } }])
  assert.deepEqual(rateLimitItems('"a\\"b";r=0;t=1'), [{ name: 'a"b', params: { r: 0, t: 1 } }])
  assert.equal(parseList('').length, 0)
  for (const bad of [
    'limit=10, remaining=5, reset=30', // draft-07
    '10', // RateLimit-Limit (draft ≤ 06)
    'default;r=50;t=30', // a token, not an sf-string
    '"default";r=5.0;t=30', // a decimal
    '"default";r=5;t', // a boolean parameter
    '"default";r=5;r=4', // a repeated key
    '"default";R=5', // an uppercase key
    '"default";r=5,', // a trailing comma
    '"default";r=5 "other";r=1', // no comma
    '("a" "b");r=1', // an inner list
    '"d\\n";r=1', // a bad escape
    '"unterminated;r=1',
    '"default";r=1234567890123456', // 16 digits
    '"default";r=--1',
    '',
  ]) assert.throws(() => rateLimitItems(bad), SfError, `the parser accepted ${JSON.stringify(bad)}`)

  // Enough burst traffic: T30's responses, topped up here when T30 did not run.
  while (sampled.reduce((n, s) => n + s.shots.length, 0) < 1000) {
    for (const group of GROUPS) sampled.push(await exactTrial(t, w, group, `T32 sample ${group}`))
  }

  // Sequential runs (one in flight, alternating instances): r and t in response order.
  const sequential: { p: Partition; shots: Shot[] }[] = []
  for (const group of GROUPS) {
    const p = await partition(w, group)
    const shots = await burst(w, p, LIMIT[group] + 5, 1)
    const rs = shots.map((s) => parsedFields(s).limit.at(-1)!)
    assert.deepEqual(rs.map((x) => x.params['r']), [...Array.from({ length: LIMIT[group] }, (_, i) => LIMIT[group] - 1 - i), 0, 0, 0, 0, 0], `${group}: r in order`)
    for (let i = 1; i < rs.length; i++) assert.ok(rs[i]!.params['t']! <= rs[i - 1]!.params['t']!, `${group}: t went up`)
    for (const s of refused(shots)) assert.equal(s.headers['retry-after'], String(Math.max(1, assertRefusal(group, s, `${group} sequential`).params['t']!)))
    sequential.push({ p, shots })
  }

  // Every response of every run.
  let parsed = 0
  for (const { p, shots } of [...sampled, ...sequential]) {
    const admittedR = new Map<string, number[]>()
    for (const s of shots) {
      const f = rateFields(s)
      const { policy, limit } = parsedFields(s)
      parsed++
      assert.deepEqual(policy.map((i) => i.name), limit.map((i) => i.name), 'the two fields name the same policies')
      const names = policy.map((i) => i.name)
      assert.deepEqual(names, s.status === 429 ? POLICIES[p.group].slice(0, names.length) : POLICIES[p.group], `${p.group}: policies ${f.policy}`)
      for (const i of policy) assert.deepEqual(i.params, { q: LIMIT[p.group], w: WINDOW_S }, `policy ${f.policy}`)
      for (const i of limit) {
        assert.deepEqual(Object.keys(i.params).sort(), ['r', 't'], `no pk or other parameter: ${f.limit}`)
        assert.ok(i.params['r']! >= 0 && i.params['r']! < LIMIT[p.group] && i.params['t']! >= 0 && i.params['t']! <= WINDOW_S, `RateLimit ${f.limit}`)
        if (s.status !== 429) admittedR.set(i.name, [...(admittedR.get(i.name) ?? []), i.params['r']!])
      }
      // Nothing identifying in any header (Set-Cookie, a rotated session token, aside).
      const headerText = Object.entries(s.headers).filter(([k]) => k !== 'set-cookie').map(([k, v]) => `${k}: ${String(v)}`).join('\n')
      for (const secret of p.secrets) assert.ok(!headerText.includes(secret), `${p.group}: a partition secret appears in the headers`)
      if (s.status === 429 && p.group !== 'intercept') {
        // RFC 9457 problem details with the draft's quota-exceeded type.
        assert.match(String(s.headers['content-type']), /^application\/problem\+json/)
        const body = JSON.parse(s.body)
        assert.equal(body.type, QUOTA_EXCEEDED)
        assert.equal(body.status, 429)
        assert.equal(typeof body.title, 'string')
        assert.deepEqual(body['violated-policies'], [limit.at(-1)!.name])
      }
    }
    // Concurrent admissions each took one unit: the remaining values are limit-1 … 0, once each.
    for (const [name, rs] of admittedR) assert.deepEqual(rs.sort((a, b) => b - a), Array.from({ length: LIMIT[p.group] }, (_, i) => LIMIT[p.group] - 1 - i), `${p.label} ${name}: r values`)
  }
  assert.ok(parsed >= 1000, `${parsed} responses parsed`)
  t.diagnostic(`T32: ${parsed}/${parsed} responses parsed strictly, q/w/r/t conforming, no identifier in headers`)

  // The AI endpoints answer 429 in the caller's SDK format (not problem+json: SDKs parse their own shape), recorded as decisions.
  const ip = sequential.find((s) => s.p.group === 'intercept')!.p
  const key = (ip.req(w.apps[0]!).headers!['x-api-key'])!
  const anthropic = await w.send(w.apps[0]!.url, ip.req(w.apps[0]!))
  const openai = await w.send(w.apps[1]!.url, { method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}` }, body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello' }] } })
  const native = await w.send(w.apps[0]!.url, { method: 'POST', path: '/v1/intercept', headers: { authorization: `Bearer ${key}` }, body: { model: 'gemini-2.5-flash', prompt: 'hello' } })
  for (const r of [anthropic, openai, native]) {
    assertRefusal('intercept', r, 'AI endpoint')
    assert.match(String(r.headers['content-type']), /^application\/json/)
  }
  const a = JSON.parse(anthropic.body)
  assert.deepEqual(Object.keys(a).sort(), ['error', 'request_id', 'type'])
  assert.equal(a.type, 'error')
  assert.equal(a.error.type, 'rate_limit_error')
  assert.equal(typeof a.error.message, 'string')
  const o = JSON.parse(openai.body)
  assert.deepEqual(o, { error: { message: o.error.message, type: 'rate_limit_error', param: null, code: 'rate_limited' } })
  const n = JSON.parse(native.body)
  assert.equal(n.error.code, 'rate_limited')
  assert.equal(n.error.request_id, native.headers['x-request-id'])
  const decisions = await w.apps[0]!.deps.db.db.selectFrom('decision').select(['status', 'error_code']).where('key_id', '=', ip.keyId!).execute()
  assert.equal(decisions.filter((d) => d.error_code === 'rate_limited' && d.status === 429).length, refused(sequential.find((s) => s.p === ip)!.shots).length + 3, 'every AI 429 is recorded as a decision')
  assert.equal(decisions.filter((d) => d.status === 200).length, LIMIT.intercept)
}

async function t33(t: TestContext, w: World): Promise<void> {
  // A (a key, a person, an address) exhausted.
  const exhausted = await Promise.all(GROUPS.map(async (g) => (await exactTrial(t, w, g, `T33 exhaust ${g}`)).p))
  // A member's second key shares the intercept-actor partition (by design: the limit is per key AND per actor).
  const ownerOfA = exhausted[1]!.storeKeys[1]!.split(':').at(-1)!
  const sibling = await secondKey(w, ownerOfA)
  const siblingShot = await w.send(w.apps[1]!.url, { method: 'POST', path: '/v1/messages', headers: { 'x-api-key': sibling.key }, body: { model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] } })
  assert.equal(assertRefusal('intercept', siblingShot, 'sibling key').name, 'intercept-actor')

  // B: other keys (other members), another person, another address, each sending exactly its limit
  // while A keeps hammering. Any 429 for B is a false one.
  const keysB = FULL ? 34 : 4
  const others = [
    ...(await Promise.all(Array.from({ length: keysB }, () => partition(w, 'intercept')))),
    await partition(w, 'api'), await partition(w, 'auth'),
  ]
  const work = others.flatMap((p) => Array.from({ length: LIMIT[p.group] }, (_, i) => ({ p, i })))
  const order = prng(33)
  for (let i = work.length - 1; i > 0; i--) {
    const j = Math.floor(order() * (i + 1))
    const swap = work[i]!
    work[i] = work[j]!
    work[j] = swap
  }
  const [hammer, bShots] = await Promise.all([
    Promise.all(exhausted.map((p) => burst(w, p, LIMIT[p.group], 2))),
    pool(work.length, 16, async (k): Promise<Shot & { p: Partition }> => {
      const { p, i } = work[k]!
      const app = w.apps[i % 2]!
      return { ...(await w.send(app.url, p.req(app))), instance: i % 2, p }
    }),
  ])
  assert.equal(refused(bShots).length, 0, `${refused(bShots).length} false 429s among ${bShots.length} requests of others`)
  for (const p of others) assert.equal(accepted(bShots.filter((s) => s.p === p)).length, LIMIT[p.group])
  // Anything but the accepted status is not a rate-limit verdict; shown, not hidden.
  const odd = bShots.filter((s) => s.status !== ACCEPTED_STATUS[s.p.group])
  if (odd.length > 0) t.diagnostic(`T33: ${odd.length} of B's requests answered neither ${[...new Set(GROUPS.map((g) => ACCEPTED_STATUS[g]))].join('/')} nor 429: ${JSON.stringify(odd.slice(0, 3).map((s) => [s.status, s.body.slice(0, 160)]))}`)
  for (const [i, p] of exhausted.entries()) assert.equal(accepted(hammer[i]!).length, 0, `A ${p.group} stays exhausted`)
  t.diagnostic(`T33 isolation: 0 false 429s in ${bShots.length} requests (${keysB} keys × 30, a person × 120, an address × 10) while A was refused ${hammer.flat().length}/${hammer.flat().length}`)

  // Untrusted client rotating X-Forwarded-For (and its cousins): still one address.
  const spoofer = await partition(w, 'auth')
  const spoofed = await burst(w, spoofer, 3 * LIMIT.auth, 16, w.apps, (i) => ({ headers: { 'x-forwarded-for': `203.0.113.${i + 1}`, 'x-real-ip': `198.51.100.${i + 1}`, forwarded: `for=192.0.2.${i + 1}` } }))
  assert.equal(accepted(spoofed).length, LIMIT.auth, 'X-Forwarded-For from an untrusted client bypassed the limit')
  for (const s of refused(spoofed)) assertRefusal('auth', s, 'spoofed XFF')

  // Behind a trusted proxy (127.0.0.1): the forwarded client is the partition.
  const proxied = await single(t, { env: { TOLLGATE_TRUSTED_PROXIES: '127.0.0.1' } })
  if (!proxied) return
  const app = proxied.apps[0]!
  const viaProxy = await partition(proxied, 'auth', { address: '127.0.0.1' })
  const clients = Array.from({ length: 5 }, (_, k) => `198.51.100.${k + 11}`)
  const perClient = await pool(clients.length * 2 * LIMIT.auth, 16, async (i) => {
    const c = clients[i % clients.length]!
    return { c, r: await proxied.send(app.url, viaProxy.req(app, { headers: { 'x-forwarded-for': c } })) }
  })
  for (const c of clients) assert.equal(perClient.filter((x) => x.c === c && x.r.status !== 429).length, LIMIT.auth, `forwarded client ${c} counted on its own`)
  // A client-supplied XFF prefix, with the proxy appending the real client: the real one counts.
  const appended = await pool(3 * LIMIT.auth, 16, (i) => proxied.send(app.url, viaProxy.req(app, { headers: { 'x-forwarded-for': `10.${i}.0.1, 198.51.100.99` } })))
  assert.equal(appended.filter((r) => r.status !== 429).length, LIMIT.auth, 'a spoofed prefix before the proxy-appended address bypassed the limit')
  // The same header from a client that is not the trusted proxy is ignored.
  const untrusted = await partition(proxied, 'auth', { address: '127.0.0.2' })
  const fromUntrusted = await pool(3 * LIMIT.auth, 16, (i) => proxied.send(app.url, untrusted.req(app, { headers: { 'x-forwarded-for': `198.51.100.${100 + i}` } })))
  assert.equal(fromUntrusted.filter((r) => r.status !== 429).length, LIMIT.auth, 'X-Forwarded-For from 127.0.0.2 (not a trusted proxy) was believed')
  // Refusals are audited with the forwarded client's truncated address, never a raw one (D15).
  const audit = (await app.deps.db.db.selectFrom('audit_event').select(['target_id']).where('action', '=', 'excess_rate_limit_exceeded').execute()).map((a) => a.target_id ?? '')
  assert.ok(audit.some((a) => a.endsWith(' from 198.51.100.0/24')) && audit.some((a) => a.endsWith(' from 127.0.0.0/24')))
  for (const a of audit) assert.match(a, / from \d+\.\d+\.\d+\.0\/24$/)
  t.diagnostic(`T33 spoofing: 0 bypasses (${spoofed.length} rotating-XFF requests → ${LIMIT.auth}); trusted proxy: ${clients.length} forwarded clients × ${LIMIT.auth} each; 127.0.0.2's XFF ignored`)
}

async function t34(t: TestContext, w: World, clocks: readonly ManualClock[]): Promise<void> {
  const trials = FULL ? 10 : 1
  for (const group of GROUPS) for (let k = 0; k < trials; k++) await exactTrial(t, w, group, `T34 ${group} (A +30 s, B −30 s) trial ${k + 1}/${trials}`)
  // Sixty seconds of skew later (the instances' clocks, not Redis's): still exhausted.
  clocks[0]!.advance(60_000)
  clocks[1]!.advance(60_000)
  const p = await partition(w, 'intercept')
  assert.equal(accepted(await burst(w, p, 3 * LIMIT.intercept, 16)).length, LIMIT.intercept)
  assert.equal(accepted(await burst(w, p, 4, 2)).length, 0, 'an instance clock moving on does not reopen a Redis window')
}

async function t35(t: TestContext, w: World): Promise<void> {
  const [a, b] = w.apps as [TestApp, TestApp]
  await exactTrial(t, w, 'auth', 'T35 before the outage')
  const before = await allStoreFailures(w)

  // A hung Redis (SIGSTOP: connected, silent): each decision gives up after about a second —
  // auth 503, intercept answered from memory — instead of hanging.
  w.redis!.pause()
  try {
    const hungAuth = await partition(w, 'auth')
    const hungKey = await partition(w, 'intercept')
    const t0 = performance.now()
    const [authHung, aiHung] = await Promise.all([burst(w, hungAuth, 2, 2), burst(w, hungKey, 2, 2)])
    const hungMs = performance.now() - t0
    assert.deepEqual(authHung.map((s) => s.status), [503, 503], 'auth while Redis hangs')
    assert.deepEqual(aiHung.map((s) => s.status), [200, 200], 'intercept while Redis hangs (memory fallback)')
    assert.ok(hungMs < 8_000, `decisions waited ${Math.round(hungMs)} ms on a hung Redis`)
    t.diagnostic(`T35 hung Redis: auth 503 ×2, intercept 200 ×2 from memory, in ${Math.round(hungMs)} ms`)
  } finally {
    w.redis!.resume()
  }
  await sleep(200)

  // Background AI traffic across the kill: keys under their limit, so any non-200 is a failure.
  let stop = false
  const background: Shot[] = []
  const backgroundRun = Promise.all(Array.from({ length: 4 }, async () => {
    while (!stop) {
      const p = await partition(w, 'intercept')
      for (let i = 0; i < 10 && !stop; i++) background.push(...(await burst(w, p, 2, 2)))
    }
  }))
  await sleep(300)
  await w.redis!.stop()
  await sleep(700)
  stop = true
  await backgroundRun
  assert.deepEqual([...new Set(background.map((s) => s.status))], [200], 'AI requests across the moment Redis died')

  // auth: every request refused 503 (fail closed), as problem+json with Retry-After.
  const authP = await partition(w, 'auth')
  const authShots = await burst(w, authP, 3 * LIMIT.auth, 8)
  assert.deepEqual(authShots.map((s) => s.status), Array(authShots.length).fill(503), 'auth during the outage')
  for (const s of authShots) {
    assert.match(String(s.headers['content-type']), /^application\/problem\+json/)
    const body = JSON.parse(s.body)
    assert.equal(body.type, REDUCED_CAPACITY)
    assert.equal(body.status, 503)
    assert.ok(Array.isArray(body['violated-policies']))
    assert.match(String(s.headers['retry-after']), /^[1-9][0-9]*$/)
  }
  // /auth/providers (the sign-in page's own data) is not rate limited and still answers.
  assert.equal((await w.send(a.url, { path: '/auth/providers' })).status, 200)

  // intercept and api: each instance limits from its own memory — exactly `limit` per instance.
  for (const group of ['intercept', 'api'] as const) {
    const p = await partition(w, group)
    for (const inst of [a, b]) {
      const shots = await burst(w, p, 2 * LIMIT[group], 16, [inst])
      onlyVerdicts(group, shots, `${group} on one instance during the outage`)
      assert.equal(accepted(shots).length, LIMIT[group], `${group}: per-instance memory limit during the outage`)
      for (const s of refused(shots)) assertRefusal(group, s, `${group} outage`)
    }
  }
  for (const inst of [a, b]) assert.equal((await w.send(inst.url, { path: '/healthz' })).status, 200, 'alive')
  const after = await allStoreFailures(w)
  assert.ok(after.auth - before.auth >= authShots.length, `auth failures counted: ${after.auth - before.auth}`)
  assert.ok(after.intercept - before.intercept >= 4 * LIMIT.intercept && after.api - before.api >= 4 * LIMIT.api, `fallbacks counted: ${JSON.stringify(after)}`)

  // Redis back (same port, empty): both instances use it again within 10 s.
  await w.redis!.start()
  const back = performance.now()
  for (const inst of [a, b]) {
    const probe = await partition(w, 'auth')
    for (;;) {
      const r = await w.send(inst.url, probe.req(inst))
      if (r.status !== 503) break
      assert.ok(performance.now() - back < 10_000, 'auth still failing 10 s after Redis returned')
      await sleep(100)
    }
  }
  const resumedMs = Math.round(performance.now() - back)
  assert.ok(resumedMs <= 10_000)
  for (const group of GROUPS) await exactTrial(t, w, group, `T35 after Redis returned: ${group}`)
  t.diagnostic(`T35: auth 503 ${authShots.length}/${authShots.length}; intercept/api exactly the limit per instance; failures +${after.auth - before.auth} auth, +${after.intercept - before.intercept} intercept, +${after.api - before.api} api; shared limits back after ${resumedMs} ms`)
}

async function tiers(t: TestContext, w: World, clocks: readonly ManualClock[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-limits-cli-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const cli = async (...argv: string[]) => {
    const out: string[] = []
    const err: string[] = []
    const env = { TOLLGATE_DATA_DIR: dir, TOLLGATE_DATABASE_URL: w.databaseUrl!, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_LOG_LEVEL: 'silent' }
    const code = await runCli(argv, { env, execArgv: [], cwd: dir }, { out: (s) => out.push(s), err: (s) => err.push(s) })
    assert.equal(code, 0, `tollgate ${argv.join(' ')}: ${err.join('\n')}`)
    return out.join('\n')
  }
  const qOf = (s: Shot) => parsedFields(s).policy[0]!.params['q']

  const p = await partition(w, 'intercept')
  const first = await burst(w, p, 3 * LIMIT.intercept, 16)
  assert.equal(accepted(first).length, 30)
  assert.equal(qOf(first[0]!), 30)

  await cli('limits', 'set', '--org', w.org.slug, '--group', 'intercept', '--per-minute', '60')
  await cli('limits', 'set', '--org', w.org.slug, '--group', 'api', '--per-minute', '5')
  assert.match(await cli('limits', 'list', '--org', w.org.slug, '--json'), /"per_minute":\s*60/)
  const stale = await burst(w, p, 2, 2)
  t.diagnostic(`right after the change (cached tier): ${stale.map((s) => `${s.status} q=${qOf(s)}`).join(', ')}`)

  for (const c of clocks) c.advance(10_000) // the documented cache time (each instance's own clock)
  const raised = await burst(w, p, 60, 16)
  // Same Redis window: 30 (+ any admitted while stale) already counted, the new limit is 60.
  const staleOk = accepted(stale).length
  assert.equal(accepted(raised).length, 60 - 30 - staleOk, 'the raised limit applies on both instances within 10 s')
  assert.ok(raised.every((s) => qOf(s) === 60), 'RateLimit-Policy shows the tier on both instances')
  assert.ok(accepted(raised).some((s) => s.instance === 0) && accepted(raised).some((s) => s.instance === 1))

  // The api tier: /api/orgs/:org requests for this org are limited to 5 a minute.
  const person = await partition(w, 'api')
  const orgShots = await burst(w, person, 12, 4, w.apps, () => ({ path: `/api/orgs/${w.org.id}` }))
  assert.equal(accepted(orgShots).length, 5)
  assert.ok(orgShots.every((s) => qOf(s) === 5))
  // A tier belongs to the org's members: someone else naming the org in the URL keeps the default
  // limit (and gets the org's usual 404), so a higher tier cannot be borrowed this way.
  const outsider = await partition(w, 'api', { orgId: (await newOrg(w.apps[0]!)).id })
  const borrowed = await burst(w, outsider, 2, 1, w.apps, () => ({ path: `/api/orgs/${w.org.id}` }))
  assert.ok(borrowed.every((s) => s.status === 404 && qOf(s) === LIMIT.api), `outsider: ${borrowed.map((s) => `${s.status} q=${qOf(s)}`).join(', ')}`)

  // Another org keeps the defaults.
  const other = await newOrg(w.apps[0]!)
  const otherP = await partition(w, 'intercept', { orgId: other.id })
  assert.equal(qOf(await burst(w, otherP, 1, 1).then((s) => s[0]!)), 30)

  // Audited in the org's chain, as the operator's action.
  const audit = await w.apps[0]!.deps.db.db.selectFrom('audit_event').select(['chain_id', 'actor_type', 'action', 'target_id', 'outcome']).where('action', '=', 'rate_tier_changed').execute()
  assert.deepEqual(audit.map((e) => [e.chain_id, e.actor_type, e.target_id, e.outcome]).sort(), [[w.org.id, 'operator', 'api:5', 'success'], [w.org.id, 'operator', 'intercept:60', 'success']])

  // Cleared: back to the default within the cache time.
  await cli('limits', 'clear', '--org', w.org.slug, '--group', 'intercept')
  for (const c of clocks) c.advance(10_000)
  const fresh = await partition(w, 'intercept')
  const cleared = await burst(w, fresh, 3 * LIMIT.intercept, 16)
  assert.equal(accepted(cleared).length, 30)
  assert.ok(cleared.every((s) => qOf(s) === 30))
  assert.equal((await w.apps[0]!.deps.db.db.selectFrom('audit_event').select('target_id').where('action', '=', 'rate_tier_changed').execute()).length, 3)
}

// T30, T32, T33 and T35 share one pair of instances (T35 last: it kills and restarts their Redis).
test('LIMIT-1 on two instances sharing PostgreSQL and Redis: T30, T32, T33, T35', async (t) => {
  const w = await cluster(t)
  if (!w) return
  await t.test('LIMIT-1 T30: two instances sharing Redis admit exactly the limit — auth 10 per client address, intercept 30 per key and actor, api 120 per person — in every trial of 3 × limit concurrent requests; every refusal is 429 with Retry-After 1..60 and r=0', (t) => t30(t, w))
  await t.test('LIMIT-1 T32: RateLimit and RateLimit-Policy (draft-10) parse as strict RFC 9651 lists on every response; q/w match the configuration, r never increases, 0 ≤ t ≤ w; 429 bodies are problem+json on /api/ and /auth/ and each SDK\'s error shape on the AI endpoints; no key, email, id or address in any header', (t) => t32(t, w))
  await t.test('LIMIT-1 T33: isolation and spoofing — while A is exhausted, others get 0 false 429s; rotating X-Forwarded-For from an untrusted client bypasses nothing; behind TOLLGATE_TRUSTED_PROXIES=127.0.0.1 each forwarded client counts alone, and from 127.0.0.2 the header is ignored', (t) => t33(t, w))
  await t.test('LIMIT-1 T35: Redis killed — auth answers 503 temporary-reduced-capacity to 100% of requests (fail closed), intercept and api are limited per instance from memory, nothing crashes, the failure metric rises; after Redis returns the shared limits resume within 10 s', (t) => t35(t, w))
})

// T34 and the tiers share a pair of instances whose clocks are 30 s ahead and 30 s behind real time.
test('LIMIT-1 on two instances with skewed clocks: T34, per-org tiers', async (t) => {
  const real = Math.floor(Date.now() / 1000) * 1000
  const clocks = [new ManualClock(real + 30_000), new ManualClock(real - 30_000)]
  const w = await cluster(t, { clocks })
  if (!w) return
  await t.test('LIMIT-1 T34 (instead of libfaketime): instances whose clocks are 30 s ahead and 30 s behind still admit exactly the limit together — the window is kept on Redis\'s TIME', (t) => t34(t, w, clocks))
  await t.test('LIMIT-1: `tollgate limits set` raises an org\'s intercept limit (and lowers its api limit) on both instances within the documented 10 s cache; audited as rate_tier_changed; other orgs keep the default; `limits clear` restores it', (t) => tiers(t, w, clocks))
})
