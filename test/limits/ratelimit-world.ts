import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { TestContext } from 'node:test'
import { SESSION_COOKIE } from '../../src/api/guard.ts'
import type { Clock } from '../../src/core/clock.ts'
import { ERRORS } from '../../src/core/errors.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { freshPostgres, needService } from '../helpers/services.ts'
import { rateLimitItems, type RateItem } from './sf.ts'
import { client, nextAddress, OwnRedis, pool, rateFields, type Reply, type Req, type Send } from './ratelimit-traffic.ts'

/**
 * The rate-limit test world (LIMIT-1): one Tollgate or two sharing PostgreSQL and a Redis of the
 * test's own, an org, and fresh partitions of each endpoint group — a client address (auth), a
 * member's key (intercept), a signed-in person (api) — each with the request that counts on it.
 */

export type Group = 'auth' | 'intercept' | 'api'
export const GROUPS: readonly Group[] = ['auth', 'intercept', 'api']
/** The documented defaults (README: TOLLGATE_LIMIT_*_PER_MIN), set explicitly: startApp raises them otherwise. */
export const LIMIT: Readonly<Record<Group, number>> = { auth: 10, intercept: 30, api: 120 }
export const LIMIT_ENV: Readonly<Record<string, string>> = {
  TOLLGATE_LIMIT_AUTH_PER_MIN: String(LIMIT.auth), TOLLGATE_LIMIT_INTERCEPT_PER_MIN: String(LIMIT.intercept), TOLLGATE_LIMIT_API_PER_MIN: String(LIMIT.api),
}
export const WINDOW_S = 60
/** What a request that passed the limiter answers: a bad sign-in link is refused 401, the others succeed. */
export const ACCEPTED_STATUS: Readonly<Record<Group, number>> = { auth: ERRORS.sign_in_failed.status, intercept: 200, api: 200 }
/** The policy names each group's partitions carry in the headers, in order. */
export const POLICIES: Readonly<Record<Group, readonly string[]>> = { auth: ['auth-address'], intercept: ['intercept-key', 'intercept-actor'], api: ['api-principal'] }
export const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'

export interface World {
  readonly apps: readonly TestApp[]
  readonly org: { readonly id: string; readonly slug: string }
  readonly send: Send
  readonly redis: OwnRedis | undefined
  readonly databaseUrl: string | undefined
}

export interface Partition {
  readonly group: Group
  readonly label: string
  /** Values that must never appear in a response header: the raw key, ids, email, address, session token. */
  readonly secrets: readonly string[]
  /** The limiter's keys for this partition (group-prefixed, as RateLimiter.check stores them). */
  readonly storeKeys: readonly string[]
  /** The request that counts on this partition, addressed to `app`. */
  req(app: TestApp, extra?: Partial<Req>): Req
  readonly keyId?: string
  readonly address?: string
}

export interface Shot extends Reply {
  /** Index of the instance that answered. */
  readonly instance: number
}

/** Two instances sharing PostgreSQL and a Redis of this test's own (undefined: skipped). */
export async function cluster(t: TestContext, o: { clocks?: readonly Clock[]; env?: Record<string, string> } = {}): Promise<World | undefined> {
  if (!(await needService(t, 'postgres'))) return undefined
  const redis = await OwnRedis.start(t)
  if (!redis) return undefined
  const databaseUrl = await freshPostgres(t)
  const apps: TestApp[] = []
  for (let i = 0; i < 2; i++) {
    const app = await startApp(t, { databaseUrl, env: { ...LIMIT_ENV, TOLLGATE_REDIS_URL: redis.url, ...o.env }, ...(o.clocks?.[i] ? { clock: o.clocks[i] } : {}) })
    if (!app) return undefined
    apps.push(app)
  }
  return world(t, apps, redis, databaseUrl)
}

/** One instance on SQLite with the in-memory limit store (single-instance mode). */
export async function single(t: TestContext, o: { clock?: Clock; env?: Record<string, string> } = {}): Promise<World | undefined> {
  const app = await startApp(t, { env: { ...LIMIT_ENV, ...o.env }, ...(o.clock ? { clock: o.clock } : {}) })
  if (!app) return undefined
  assert.equal(app.config.cache.redisUrl, undefined)
  return world(t, [app], undefined, undefined)
}

async function world(t: TestContext, apps: TestApp[], redis: OwnRedis | undefined, databaseUrl: string | undefined): Promise<World> {
  const org = await newOrg(apps[0]!)
  return { apps, org, send: client(t), redis, databaseUrl }
}

export async function newOrg(app: TestApp): Promise<{ id: string; slug: string }> {
  const org = await app.deps.orgs.create(`rl-${randomBytes(5).toString('hex')}`, { type: 'operator', id: null })
  assert.ok(org)
  return { id: org.id, slug: org.slug }
}

const AI_BODY = { model: 'claude-sonnet-4-5', max_tokens: 8, messages: [{ role: 'user', content: 'hello' }] }

/** A fresh partition of `group`: nothing has been counted on it yet. */
export async function partition(w: World, group: Group, o: { orgId?: string; address?: string } = {}): Promise<Partition> {
  const deps = w.apps[0]!.deps
  const db = deps.db.db
  const orgId = o.orgId ?? w.org.id
  if (group === 'auth') {
    const address = o.address ?? nextAddress()
    return {
      group, label: `auth ${address}`, address, secrets: [address], storeKeys: [`auth:ip:${address}`],
      // A sign-in attempt with a bootstrap link token that does not exist (a guess).
      req: (app, extra) => ({ method: 'POST', path: '/auth/link', body: { token: 'not-a-real-link-token' }, localAddress: address, ...extra, headers: { origin: app.deps.origin, ...extra?.headers } }),
    }
  }
  const email = `rl-${randomBytes(5).toString('hex')}@example.com`
  const user = await deps.users.create(db, email)
  await deps.members.add(db, orgId, user.id, 'MEMBER')
  if (group === 'intercept') {
    const { info, key } = await deps.keys.create({ orgId, environment: 'sandbox', userId: user.id, scope: 'gateway', actor: { type: 'operator', id: null } })
    return {
      group, label: `key ${info.id}`, keyId: info.id, secrets: [key, info.id, user.id, email, orgId],
      storeKeys: [`intercept:key:${info.id}`, `intercept:actor:${orgId}:${user.id}`],
      req: (_app, extra) => ({ method: 'POST', path: '/v1/messages', body: AI_BODY, ...extra, headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', ...extra?.headers } }),
    }
  }
  const { token, session } = await deps.sessions.create(user.id, 'bootstrap', null)
  return {
    group, label: `person ${user.id}`, secrets: [token, user.id, email, session.id], storeKeys: [`api:user:${user.id}`],
    req: (_app, extra) => ({ method: 'GET', path: '/api/me', ...extra, headers: { cookie: `${SESSION_COOKIE}=${token}`, ...extra?.headers } }),
  }
}

/** A second key of the same member as `p` (it shares the intercept-actor partition). */
export async function secondKey(w: World, userId: string): Promise<{ id: string; key: string }> {
  const { info, key } = await w.apps[0]!.deps.keys.create({ orgId: w.org.id, environment: 'sandbox', userId, scope: 'gateway', actor: { type: 'operator', id: null } })
  return { id: info.id, key }
}

/** `n` requests on `p`, round-robin across `apps` (request i goes to apps[i % apps.length]), `concurrency` in flight. */
export function burst(w: World, p: Partition, n: number, concurrency = 16, apps: readonly TestApp[] = w.apps, extra?: (i: number) => Partial<Req>): Promise<Shot[]> {
  return pool(n, concurrency, async (i) => {
    const k = i % apps.length
    const app = apps[k]!
    return { ...(await w.send(app.url, p.req(app, extra?.(i)))), instance: w.apps.indexOf(app) }
  })
}

export const accepted = (shots: readonly Shot[]) => shots.filter((s) => s.status !== 429)
export const refused = (shots: readonly Shot[]) => shots.filter((s) => s.status === 429)

/** Every status is the group's accepted status or 429 (anything else is a failure of the run, not a verdict). */
export function onlyVerdicts(group: Group, shots: readonly Shot[], what: string): void {
  const odd = shots.filter((s) => s.status !== 429 && s.status !== ACCEPTED_STATUS[group])
  assert.equal(odd.length, 0, `${what}: unexpected statuses ${JSON.stringify(odd.slice(0, 3).map((s) => [s.status, s.body.slice(0, 200)]))}`)
}

/** The parsed `RateLimit-Policy` and `RateLimit` lists of a response (throws if either is missing or malformed). */
export function parsedFields(s: Reply): { policy: RateItem[]; limit: RateItem[] } {
  const f = rateFields(s)
  assert.ok(f.policy !== undefined && f.limit !== undefined, `status ${s.status} without RateLimit-Policy/RateLimit`)
  return { policy: rateLimitItems(f.policy), limit: rateLimitItems(f.limit) }
}

/** A 429 as draft-10 wants it: Retry-After an integer 1..60, and the refusing partition's `r=0` in RateLimit. */
export function assertRefusal(group: Group, s: Reply, what: string): RateItem {
  assert.equal(s.status, 429, what)
  const ra = s.headers['retry-after']
  assert.ok(typeof ra === 'string' && /^[0-9]+$/.test(ra), `${what}: Retry-After ${String(ra)} is not a whole number of seconds`)
  assert.ok(Number(ra) >= 1 && Number(ra) <= WINDOW_S, `${what}: Retry-After ${ra} outside 1..60`)
  const { limit } = parsedFields(s)
  const violated = limit.at(-1)!
  assert.ok(POLICIES[group].includes(violated.name), `${what}: refusing policy ${violated.name}`)
  assert.equal(violated.params['r'], 0, `${what}: the refusing partition shows r=${violated.params['r']}`)
  // Draft-10 §4: Retry-After does not point earlier than the partition's reset.
  assert.ok(Number(ra) >= (violated.params['t'] ?? 0), `${what}: Retry-After ${ra} earlier than t=${violated.params['t']}`)
  return violated
}

/** Per-group failure counter (tollgate_ratelimit_store_failures_total). */
export async function storeFailures(app: TestApp, group: Group): Promise<number> {
  const m = await app.deps.metrics.rateStoreFallback.get()
  return m.values.find((v) => v.labels['group'] === group)?.value ?? 0
}

export { prng } from '../helpers/prng.ts'

/** The largest number of times in any half-open window (x - windowMs, x] (the sliding log's own definition). */
export function maxInAnyWindow(times: readonly number[], windowMs: number): number {
  const s = [...times].sort((a, b) => a - b)
  let best = 0
  let lo = 0
  for (let hi = 0; hi < s.length; hi++) {
    while (s[lo]! <= s[hi]! - windowMs) lo++
    best = Math.max(best, hi - lo + 1)
  }
  return best
}
