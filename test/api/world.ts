import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import { newId } from '../../src/core/ids.ts'
import type { Role } from '../../src/orgs/rbac.ts'
import { SESSION_COOKIE } from '../../src/api/guard.ts'
import type { TestApp } from '../helpers/app.ts'

/**
 * Shared setup for the admin API tests (RBAC-1/2, DATA-3, AUDIT-1): people with sessions, their
 * CSRF tokens, and one request helper that speaks like the dashboard does (same Origin,
 * x-csrf-token on state changes, the rotated session cookie kept).
 */

/** A signed-in person: the session cookie is updated when the server rotates the token. */
export interface Person {
  readonly userId: string
  readonly email: string
  readonly sessionId: string
  cookie: string
  csrf: string
}

export interface Res {
  readonly status: number
  readonly text: string
  readonly json: any
  readonly headers: Headers
}

export const email = (tag = 'p') => `${tag}-${randomBytes(5).toString('hex')}@example.com`

/** A person in `orgId` with `role` (or in no org), created directly in the database. */
export async function newUser(tg: TestApp, orgId: string | null, role?: Role, address = email()): Promise<{ userId: string; email: string }> {
  const db = tg.deps.db.db
  const user = await tg.deps.users.create(db, address)
  if (orgId !== null) await tg.deps.members.add(db, orgId, user.id, role ?? 'MEMBER')
  return { userId: user.id, email: user.email }
}

/**
 * A session for an existing user. `authAt` defaults to now (the step-up window is open); pass an
 * older time for a stale one. The CSRF token comes from GET /api/me, as the dashboard gets it.
 */
export async function signIn(tg: TestApp, u: { userId: string; email: string }, authAt?: number): Promise<Person> {
  const { token, session } = await tg.deps.sessions.create(u.userId, 'bootstrap', null, authAt)
  const p: Person = { userId: u.userId, email: u.email, sessionId: session.id, cookie: `${SESSION_COOKIE}=${token}`, csrf: '' }
  const me = await call(tg, p, 'GET', '/api/me')
  if (me.status !== 200 || typeof me.json?.csrf_token !== 'string') throw new Error(`GET /api/me answered ${me.status}`)
  p.csrf = me.json.csrf_token
  return p
}

export async function person(tg: TestApp, orgId: string | null, role?: Role, authAt?: number): Promise<Person> {
  return signIn(tg, await newUser(tg, orgId, role), authAt)
}

export interface CallOptions {
  /** Raw body text (sent as is) instead of JSON.stringify(body). */
  readonly raw?: string
  readonly contentType?: string | null
  /** Drop the CSRF token / Origin, to provoke a CSRF block. */
  readonly noCsrf?: boolean
  readonly headers?: Record<string, string>
}

/** One admin API request as `who` (a person, or undefined for anonymous). */
export async function call(tg: TestApp, who: Person | undefined, method: string, path: string, body?: unknown, o: CallOptions = {}): Promise<Res> {
  const headers: Record<string, string> = { ...(o.noCsrf ? {} : { origin: tg.deps.origin }), ...o.headers }
  if (who) {
    headers['cookie'] = who.cookie
    if (!o.noCsrf && who.csrf) headers['x-csrf-token'] = who.csrf
  }
  let payload: string | undefined
  if (o.raw !== undefined) payload = o.raw
  else if (body !== undefined) payload = JSON.stringify(body)
  if (payload !== undefined && o.contentType !== null) headers['content-type'] = o.contentType ?? 'application/json'
  // A hung request (a deadlock) fails the test in seconds instead of stalling the run.
  const res = await fetch(tg.url + path, { method, headers, signal: AbortSignal.timeout(20_000), ...(payload !== undefined ? { body: payload } : {}) })
  const text = await res.text()
  // The server rotates session tokens (periodically, after a privilege change): keep the new one.
  const set = res.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))
  if (who && set) {
    const value = set.slice(SESSION_COOKIE.length + 1).split(';')[0]!
    if (value) who.cookie = `${SESSION_COOKIE}=${value}`
  }
  let json: any
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  return { status: res.status, text, json, headers: res.headers }
}

/** A key owned by `userId` in `orgId`, minted as the operator would. */
export async function keyFor(tg: TestApp, orgId: string, userId: string | null, scope: 'gateway' | 'admin' = 'gateway') {
  const { info, key } = await tg.deps.keys.create({ orgId, environment: 'sandbox', userId, scope, actor: { type: 'operator', id: null } })
  return { id: info.id, key }
}

/** A pending invite in `orgId`; returns its id and (secret) token. */
export async function inviteIn(tg: TestApp, orgId: string, address = email('inv'), role: Role = 'MEMBER') {
  const created = await tg.deps.invites.create(tg.deps.db.db, orgId, address, role, null)
  return { ...created, email: address }
}

export async function ssoIn(tg: TestApp, orgId: string): Promise<void> {
  await tg.deps.sso.put(tg.deps.db.db, orgId, { issuer: 'https://idp.example.com', clientId: `client-${orgId}`, clientSecret: 'sso-secret', allowedDomains: ['example.com'] })
}

/** A stored passkey row for `userId` (public material only; enough for list and delete). */
export async function passkeyFor(tg: TestApp, userId: string): Promise<string> {
  const id = randomBytes(16).toString('base64url')
  await tg.deps.db.db.insertInto('passkey').values({ id, user_id: userId, public_key: randomBytes(77).toString('base64url'), counter: 0, transports: null, backed_up: 0, created_at: tg.deps.clock.now(), last_used_at: null }).execute()
  return id
}

/** A well-formed id that names nothing. */
export const nobody = () => newId()

export const TABLES = ['org', 'org_key', 'api_key', 'decision', 'audit_event', 'user', 'user_identity', 'membership', 'session', 'passkey', 'invite', 'sso_config', 'login_link', 'instance_key'] as const

/** Row counts of every table the schema has (the list is checked against the database itself). */
export async function rowCounts(tg: TestApp): Promise<Record<string, number>> {
  const db = tg.deps.db.db
  const names = tg.deps.db.dialect === 'sqlite'
    ? (await sql<{ name: string }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' and name not like 'kysely_%'`.execute(db)).rows.map((r) => r.name)
    : (await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = 'public' and table_name not like 'kysely_%'`.execute(db)).rows.map((r) => r.name)
  const out: Record<string, number> = {}
  for (const name of names.sort()) {
    const { rows } = await sql<{ n: number | string }>`select count(*) as n from ${sql.table(name)}`.execute(db)
    out[name] = Number(rows[0]!.n)
  }
  return out
}

/**
 * A fingerprint of every row of every table, to prove "nothing changed" beyond counts (an
 * UPDATE that revokes a key or ends a session keeps the count). `skip` names columns that move
 * on reads (last_seen_at, last_used_at, token rotation).
 */
export async function tableState(tg: TestApp, skip: Record<string, string[]> = SKIP_ON_READ): Promise<Record<string, string[]>> {
  const db = tg.deps.db.db
  const out: Record<string, string[]> = {}
  for (const name of Object.keys(await rowCounts(tg))) {
    const { rows } = await sql<Record<string, unknown>>`select * from ${sql.table(name)}`.execute(db)
    out[name] = rows.map((r) => JSON.stringify(Object.keys(r).sort().filter((k) => !(skip[name] ?? []).includes(k)).map((k) => [k, r[k]]))).sort()
  }
  return out
}

export const SKIP_ON_READ: Record<string, string[]> = {
  session: ['last_seen_at', 'token_hash', 'prev_token_hash', 'prev_valid_until', 'rotated_at', 'rotate_after'],
  api_key: ['last_used_at'],
}

/** Routes as the router has them: "METHOD /path" for every /api/ route (HEAD included). */
export function apiRoutes(printed: string): string[] {
  const out: string[] = []
  const stack: string[] = []
  for (const line of printed.split('\n')) {
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(\S+)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (!m) continue
    const depth = m[1]!.length / 4
    stack.length = depth
    stack.push(m[2]!)
    const path = stack.join('').replace(/\/{2,}/g, '/')
    for (const method of m[3]?.split(', ') ?? []) if (path.startsWith('/api/')) out.push(`${method} ${path}`)
  }
  return out.sort()
}

/** What differs between two `tableState` snapshots, one short line per changed row (empty when equal). */
export function stateDiff(before: Record<string, string[]>, after: Record<string, string[]>): string[] {
  const out: string[] = []
  for (const table of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = new Set(before[table] ?? [])
    const a = new Set(after[table] ?? [])
    for (const row of b) if (!a.has(row)) out.push(`${table} - ${row.slice(0, 240)}`)
    for (const row of a) if (!b.has(row)) out.push(`${table} + ${row.slice(0, 240)}`)
  }
  return out
}
