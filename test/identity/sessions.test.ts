import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { test, type TestContext } from 'node:test'
import { SESSION_COOKIE } from '../../src/api/guard.ts'
import { bootstrapOrg } from '../../src/identity/bootstrap.ts'
import type { SessionKind } from '../../src/identity/sessions.ts'
import { ManualClock } from '../fakes/clock.ts'
import { SoftAuthenticator } from '../e2e/soft-authenticator.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { captureLog } from '../helpers/log.ts'
import { walkFiles } from '../helpers/scan.ts'

/**
 * Sessions over HTTP with cookies (security-tests T50, T51, T52; AUTH-3, AUTH-4, AUTH-5):
 * token properties and storage, fixation, rotation and its grace, the timeouts of each session
 * class at ±1 s on an injected clock, and every way a session ends.
 */

const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'
const SEC = 1000
const MIN = 60 * SEC
const HOUR = 60 * MIN
const DAY = 24 * HOUR
const sha256Hex = (s: string) => createHash('sha256').update(s).digest('hex')

interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly json: any
  /** The session token this response set, if any. */
  readonly newToken: string | undefined
}

/** A cookie-keeping client that behaves like our own dashboard (same-origin, CSRF token attached). */
class Client {
  readonly cookies = new Map<string, string>()
  csrf: string | undefined

  constructor(readonly tg: TestApp, token?: string) {
    if (token !== undefined) this.cookies.set(SESSION_COOKIE, token)
  }

  get token(): string | undefined {
    return this.cookies.get(SESSION_COOKIE)
  }

  async req(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    const h: Record<string, string> = { accept: 'application/json', origin: this.tg.deps.origin, 'sec-fetch-site': 'same-origin' }
    if (body !== undefined) h['content-type'] = 'application/json'
    if (this.cookies.size > 0) h['cookie'] = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
    if (this.csrf && method !== 'GET') h['x-csrf-token'] = this.csrf
    const res = await fetch(`${this.tg.url}${path}`, { method, headers: { ...h, ...headers }, body: body === undefined ? undefined : JSON.stringify(body) })
    let newToken: string | undefined
    for (const sc of res.headers.getSetCookie()) {
      const [pair] = sc.split(';')
      const eq = pair!.indexOf('=')
      const name = pair!.slice(0, eq)
      const value = pair!.slice(eq + 1)
      if (/;\s*Max-Age=0(;|$)/i.test(sc) || value === '') this.cookies.delete(name)
      else {
        this.cookies.set(name, value)
        if (name === SESSION_COOKIE) newToken = value
      }
    }
    const text = await res.text()
    return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : null, newToken }
  }

  /** GET /api/me, keeping the CSRF token for later state changes. */
  async me(): Promise<Reply> {
    const r = await this.req('GET', '/api/me')
    if (r.status === 200) this.csrf = r.json.csrf_token
    return r
  }
}

/** GET /api/me with exactly this token and nothing else (no jar): the token's own status. */
async function statusOf(tg: TestApp, token: string): Promise<number> {
  const res = await fetch(`${tg.url}/api/me`, { headers: { cookie: `${SESSION_COOKIE}=${token}` } })
  await res.arrayBuffer()
  return res.status
}

async function world(t: TestContext, opts: { clock?: ManualClock; log?: ReturnType<typeof captureLog> } = {}) {
  const tg = await startApp(t, { ...(opts.clock ? { clock: opts.clock } : {}), ...(opts.log ? { log: opts.log.logger } : {}) })
  assert.ok(tg)
  const d = tg.deps
  const made = await bootstrapOrg({ ...d, db: d.db.db }, `org-${randomBytes(4).toString('hex')}`, 'owner@acme.example', { type: 'operator', id: null })
  assert.ok(made)
  const ownerLink = new URL(made.link).hash.slice('#token='.length)
  return { tg, d, orgId: made.orgId, ownerId: made.userId, ownerLink }
}

/** A person in the org with the given role (as an invite would leave them). */
async function member(tg: TestApp, orgId: string, email: string, role: 'ADMIN' | 'MEMBER' | 'ANALYST' = 'MEMBER'): Promise<string> {
  const d = tg.deps
  const u = await d.users.create(d.db.db, email)
  await d.members.add(d.db.db, orgId, u.id, role)
  return u.id
}

/** Signs in through POST /auth/link with a fresh single-use link, as the dashboard's link page does. */
async function signIn(tg: TestApp, userId: string, client = new Client(tg)): Promise<Client> {
  const link = await tg.deps.links.create(tg.deps.db.db, userId)
  const r = await client.req('POST', '/auth/link', { token: link })
  assert.equal(r.status, 200, `sign-in: ${JSON.stringify(r.json)}`)
  assert.ok(r.newToken, 'sign-in sets the session cookie')
  assert.equal((await client.me()).status, 200)
  return client
}

/** A client holding a session of `kind` created as that sign-in would (SSO and Google need an IdP: created directly). */
async function sessionOf(tg: TestApp, userId: string, kind: SessionKind, orgId: string | null = null): Promise<Client> {
  if (kind === 'bootstrap') return signIn(tg, userId)
  const { token } = await tg.deps.sessions.create(userId, kind, kind === 'sso' ? orgId : null)
  const c = new Client(tg, token)
  assert.equal((await c.me()).status, 200)
  return c
}

async function audits(tg: TestApp, action: string) {
  return tg.deps.db.db.selectFrom('audit_event').selectAll().where('action', '=', action).orderBy('at').execute()
}

/** Registers a passkey for the signed-in client (POST /api/me/passkeys/options, then /api/me/passkeys). */
async function registerPasskey(c: Client, auth: SoftAuthenticator): Promise<void> {
  const options = await c.req('POST', '/api/me/passkeys/options', {})
  assert.equal(options.status, 200, JSON.stringify(options.json))
  const done = await c.req('POST', '/api/me/passkeys', auth.register(options.json))
  assert.equal(done.status, 200, JSON.stringify(done.json))
}

/** A passkey step-up: returns the new token the response set. */
async function stepUp(c: Client, auth: SoftAuthenticator): Promise<string> {
  const options = await c.req('POST', '/api/me/step-up/options', {})
  assert.equal(options.status, 200, JSON.stringify(options.json))
  const done = await c.req('POST', '/api/me/step-up', auth.assert(options.json))
  assert.equal(done.status, 200, JSON.stringify(done.json))
  assert.ok(done.newToken, 'a step-up sets a new session cookie')
  return done.newToken
}

// ---------------------------------------------------------------------------------------------
// T50: token properties

/**
 * Every occurrence of the given tokens in `buf`, as issued (base64url), as standard base64, as
 * hex of the 32 bytes, or as the raw 32 bytes.
 */
function findTokens(buf: Buffer, tokens: ReadonlySet<string>): { token: string; encoding: string }[] {
  const b64url = new Map<string, string>()
  const b64 = new Map<string, string>()
  const hex = new Map<string, string>()
  const raw = new Map<number, { bytes: Buffer; token: string }[]>()
  for (const t of tokens) {
    const bytes = Buffer.from(t, 'base64url')
    b64url.set(t, t)
    b64.set(bytes.toString('base64').slice(0, 43), t)
    hex.set(bytes.toString('hex'), t)
    const k = bytes.readUInt32LE(0)
    raw.set(k, [...(raw.get(k) ?? []), { bytes, token: t }])
  }
  const hits: { token: string; encoding: string }[] = []
  const text = buf.toString('latin1')
  const windows = (re: RegExp, len: number, table: Map<string, string>, encoding: string, lower = false) => {
    for (const m of text.matchAll(re)) {
      const run = lower ? m[0].toLowerCase() : m[0]
      for (let i = 0; i + len <= run.length; i++) {
        const hit = table.get(run.slice(i, i + len))
        if (hit) hits.push({ token: hit, encoding })
      }
    }
  }
  windows(/[A-Za-z0-9_-]{43,}/g, 43, b64url, 'base64url')
  windows(/[A-Za-z0-9+/]{43,}/g, 43, b64, 'base64')
  windows(/[0-9a-fA-F]{64,}/g, 64, hex, 'hex', true)
  for (let i = 0; i + 32 <= buf.length; i++) {
    const cands = raw.get(buf.readUInt32LE(i))
    if (!cands) continue
    for (const c of cands) if (buf.subarray(i, i + 32).equals(c.bytes)) hits.push({ token: c.token, encoding: 'raw' })
  }
  return hits
}

test('AUTH-3 T50: 1,000 sign-ins over HTTP give 1,000 distinct 256-bit opaque tokens; the database holds only their SHA-256 (file grep: 0 raw tokens, planted controls found)', async (t) => {
  const log = captureLog('debug')
  const { tg, d, ownerId } = await world(t, { log })
  const n = FULL ? 10_000 : 1_000
  const tokens: string[] = []
  for (let i = 0; i < n; i++) {
    const link = await d.links.create(d.db.db, ownerId)
    const res = await fetch(`${tg.url}/auth/link`, { method: 'POST', headers: { 'content-type': 'application/json', origin: d.origin, 'sec-fetch-site': 'same-origin' }, body: JSON.stringify({ token: link }) })
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))
    assert.ok(cookie)
    tokens.push(cookie.slice(SESSION_COOKIE.length + 1).split(';')[0]!)
  }
  for (const tok of tokens) {
    assert.match(tok, /^[A-Za-z0-9_-]{43}$/, 'base64url, no padding, no structure (not a JWT)')
    const bytes = Buffer.from(tok, 'base64url')
    assert.equal(bytes.length, 32, 'decodes to 32 bytes = 256 bits')
    assert.equal(bytes.toString('base64url'), tok, 'canonical encoding')
  }
  assert.equal(new Set(tokens).size, n, '100% unique')
  // A sample still works (they are real sessions), in order not to spend the budget on GETs.
  for (const tok of tokens.filter((_, i) => i % 100 === 0)) assert.equal(await statusOf(tg, tok), 200)

  // The sessions table holds exactly SHA-256(token) of every token, and nothing else token-like.
  const rows = await d.db.db.selectFrom('session').select(['token_hash', 'prev_token_hash']).execute()
  assert.equal(rows.length, n)
  assert.deepEqual(new Set(rows.map((r) => r.token_hash)), new Set(tokens.map(sha256Hex)))
  assert.ok(rows.every((r) => r.prev_token_hash === null))

  // Positive controls: three decoy tokens planted in the database, one per encoding family; and the
  // hashes themselves must be found, proving the scan reads the sessions table's pages.
  const decoys = { text: randomBytes(32).toString('base64url'), hex: randomBytes(32), raw: randomBytes(32) }
  const now = d.clock.now()
  const plant = (token_hash: string | Buffer) => d.db.db.insertInto('login_link').values({ token_hash: token_hash as string, user_id: ownerId, created_at: now, expires_at: now, used_at: now }).execute()
  await plant(decoys.text)
  await plant(decoys.hex.toString('hex'))
  await plant(decoys.raw) // a BLOB: SQLite stores any type in any column
  const decoyTokens = [decoys.text, decoys.hex.toString('base64url'), decoys.raw.toString('base64url')]
  const wanted = new Set([...tokens, ...decoyTokens])

  const files = walkFiles(tg.dataDir).files
  assert.ok(files.some((f) => f.path.endsWith('tollgate.db')), 'the SQLite file is scanned')
  const hits: { token: string; encoding: string; file: string }[] = []
  let hashHits = 0
  const someHashes = tokens.slice(0, 20).map(sha256Hex)
  for (const f of files) {
    const buf = readFileSync(f.path)
    for (const h of findTokens(buf, wanted)) hits.push({ ...h, file: f.path })
    const text = buf.toString('latin1')
    hashHits += someHashes.filter((h) => text.includes(h)).length
  }
  const found = (tok: string, enc: string) => hits.some((h) => h.token === tok && h.encoding === enc)
  assert.ok(found(decoys.text, 'base64url'), 'control: a planted base64url token is found')
  assert.ok(found(decoyTokens[1]!, 'hex'), 'control: a planted hex token is found')
  assert.ok(found(decoyTokens[2]!, 'raw'), 'control: a planted raw 32-byte token is found')
  assert.ok(hashHits >= someHashes.length, 'control: the scan sees the token hashes in the file')
  const leaks = hits.filter((h) => !decoyTokens.includes(h.token))
  assert.deepEqual(leaks, [], 'no issued session token is in any file of the data dir, in any encoding')

  // …nor in the log (control: the same search finds a decoy written into it).
  const logText = Buffer.from(`${log.text()}\n{"decoy":"${decoyTokens[0]}"}`, 'latin1')
  const logHits = findTokens(logText, wanted)
  assert.ok(logHits.some((h) => h.token === decoyTokens[0]), 'control: a decoy in the log is found')
  assert.deepEqual(logHits.filter((h) => !decoyTokens.includes(h.token)), [], 'no session token in the log')
})

test('AUTH-5 T50: a session cookie planted before sign-in never becomes valid (fixation, 100 attempts)', async (t) => {
  const { tg, d, orgId } = await world(t)
  const victim = await member(tg, orgId, 'victim@acme.example')
  const attacker = await member(tg, orgId, 'attacker@acme.example')
  const attackerSession = await signIn(tg, attacker)
  const attempts = FULL ? 1000 : 100
  for (let i = 0; i < attempts; i++) {
    // The planted value: a random well-formed token, or (every tenth) the attacker's own live session.
    const planted = i % 10 === 0 ? attackerSession.token! : randomBytes(32).toString('base64url')
    const browser = new Client(tg, planted)
    const link = await d.links.create(d.db.db, victim)
    const r = await browser.req('POST', '/auth/link', { token: link })
    assert.equal(r.status, 200)
    assert.ok(r.newToken, 'sign-in issues a new token')
    assert.notEqual(r.newToken, planted, 'the token changes at sign-in')
    const asVictim = await fetch(`${tg.url}/api/me`, { headers: { cookie: `${SESSION_COOKIE}=${r.newToken}` } })
    assert.equal(((await asVictim.json()) as any).user.id, victim)
    // The planted value gives the attacker nothing: unknown, or still only the attacker's own session.
    const asPlanted = await fetch(`${tg.url}/api/me`, { headers: { cookie: `${SESSION_COOKIE}=${planted}` } })
    const body = (await asPlanted.json()) as any
    if (planted === attackerSession.token) assert.equal(body.user.id, attacker)
    else assert.equal(asPlanted.status, 401)
  }
  const hashes = (await d.db.db.selectFrom('session').select('token_hash').where('user_id', '=', victim).execute()).map((r) => r.token_hash)
  assert.equal(hashes.length, attempts)
})

test('AUTH-5 T50: the token changes at sign-in, on step-up, on a role change and periodically; a replaced token works only within the 10 s grace', async (t) => {
  const clock = new ManualClock()
  const { tg, d, orgId, ownerId } = await world(t, { clock })
  const auth = new SoftAuthenticator(d.origin)

  // Sign-in: a new token, different from the one the browser had (an older session of the same person).
  const earlier = await signIn(tg, ownerId)
  const owner = await signIn(tg, ownerId, new Client(tg, earlier.token))
  const a = owner.token!
  assert.notEqual(a, earlier.token)
  await registerPasskey(owner, auth)
  assert.equal(owner.token, a, 'registering a passkey is not a re-authentication')

  // Step-up: a new token; the old one keeps working for in-flight requests for < 10 s, then 401.
  clock.advance(MIN)
  const b = await stepUp(owner, auth)
  assert.notEqual(b, a)
  assert.equal(await statusOf(tg, a), 200, 'old token inside the grace')
  clock.advance(9_999)
  assert.equal(await statusOf(tg, a), 200, 'old token at grace − 1 ms')
  clock.advance(1)
  assert.equal(await statusOf(tg, a), 401, 'old token at the end of the grace')
  assert.equal(await statusOf(tg, b), 200)

  // Privilege change: the member's next request gets a new token; the old one lapses after the grace.
  const m = await member(tg, orgId, 'm@acme.example')
  const mc = await signIn(tg, m)
  const m1 = mc.token!
  const change = await owner.req('PATCH', `/api/orgs/${orgId}/members/${m}`, { role: 'ADMIN' })
  assert.equal(change.status, 200, JSON.stringify(change.json))
  const next = await mc.me()
  assert.equal(next.status, 200)
  assert.ok(next.newToken, 'the first request after a role change is answered with a new token')
  assert.notEqual(next.newToken, m1)
  assert.equal(next.json.memberships[0].role, 'ADMIN')
  const again = await mc.me()
  assert.equal(again.newToken, undefined, 'rotated once, not on every request')
  clock.advance(10 * SEC)
  assert.equal(await statusOf(tg, m1), 401, 'the pre-change token is gone after the grace')
  assert.equal((await mc.me()).status, 200)

  // Periodically (TOLLGATE_SESSION_ROTATE_S, default 24 h): a session in use gets a new token.
  clock.advance(DAY)
  const before = owner.token!
  const periodic = await owner.me()
  assert.equal(periodic.status, 200)
  assert.ok(periodic.newToken && periodic.newToken !== before, 'rotated after 24 h of use')
  clock.advance(10 * SEC + 1)
  assert.equal(await statusOf(tg, before), 401)
  assert.equal(await statusOf(tg, owner.token!), 200)
})

// ---------------------------------------------------------------------------------------------
// T51: timeouts at the boundaries (injected clock)

async function expiries(tg: TestApp, sessionId: string) {
  return (await audits(tg, 'session_expired')).filter((e) => (e.target_id ?? '').endsWith(`:${sessionId}`))
}

test('AUTH-4 T51: an SSO session idles out after 1 h: 59:59 → 200, 60:01 → 401, audited session_expired (idle) once', async (t) => {
  const clock = new ManualClock()
  const { tg, orgId } = await world(t, { clock })
  const u = await member(tg, orgId, 'sso@acme.example')
  const c = await sessionOf(tg, u, 'sso', orgId)
  const id = (await c.me()).json.session.id
  clock.advance(59 * MIN + 59 * SEC)
  assert.equal((await c.me()).status, 200, 'idle 59:59')
  clock.advance(60 * MIN + 1 * SEC)
  assert.equal((await c.me()).status, 401, 'idle 60:01')
  assert.equal((await c.me()).status, 401, 'and stays ended')
  const e = await expiries(tg, id)
  assert.equal(e.length, 1, 'audited exactly once')
  assert.equal(e[0]!.target_id, `idle:${id}`)
  assert.equal(e[0]!.chain_id, orgId, 'in the SSO org\'s chain')
  const row = await tg.deps.db.db.selectFrom('session').select(['ended_at', 'end_reason']).where('id', '=', id).executeTakeFirstOrThrow()
  assert.equal(row.end_reason, 'idle')
})

test('AUTH-4 T51: activity every 50 min keeps an SSO session alive to 8 h − 1 s → 200; at 8 h + 1 s → 401 even while active (audited absolute)', async (t) => {
  const clock = new ManualClock()
  const { tg, orgId } = await world(t, { clock })
  const u = await member(tg, orgId, 'sso@acme.example')
  const t0 = clock.now()
  const c = await sessionOf(tg, u, 'sso', orgId)
  const id = (await c.me()).json.session.id
  for (let k = 1; k <= 9; k++) {
    clock.set(t0 + k * 50 * MIN)
    assert.equal((await c.me()).status, 200, `active at ${k * 50} min`)
  }
  clock.set(t0 + 8 * HOUR - SEC)
  assert.equal((await c.me()).status, 200, '8 h − 1 s')
  clock.set(t0 + 8 * HOUR + SEC)
  assert.equal((await c.me()).status, 401, '8 h + 1 s, 29 min after the last request')
  const e = await expiries(tg, id)
  assert.equal(e.length, 1)
  assert.equal(e[0]!.target_id, `absolute:${id}`)
})

for (const kind of ['bootstrap', 'google', 'passkey'] as const) {
  test(`AUTH-3 T51: a ${kind} session has no idle timeout and lives 30 days: 30 d − 1 s → 200, 30 d + 1 s → 401 (audited absolute)`, async (t) => {
    const clock = new ManualClock()
    const { tg, orgId } = await world(t, { clock })
    const u = await member(tg, orgId, `${kind}@acme.example`)
    const t0 = clock.now()
    const c = await sessionOf(tg, u, kind)
    const me = await c.me()
    const id = me.json.session.id
    assert.equal(me.json.session.kind, kind)
    assert.equal(Date.parse(me.json.session.expires_at), t0 + 30 * DAY)
    // 30 days without a single request: no idle timeout for this class (D5).
    clock.set(t0 + 30 * DAY - SEC)
    const late = await c.me()
    assert.equal(late.status, 200, '30 d − 1 s')
    assert.ok(late.newToken, 'unused for a day: rotated on this request')
    clock.set(t0 + 30 * DAY + SEC)
    assert.equal((await c.me()).status, 401, '30 d + 1 s')
    const e = await expiries(tg, id)
    assert.equal(e.length, 1)
    assert.equal(e[0]!.target_id, `absolute:${id}`)
  })
}

test('AUTH-4 AUTH-6 T51: a passkey re-authentication resets both clocks of an SSO session', async (t) => {
  const clock = new ManualClock()
  const { tg, orgId } = await world(t, { clock })
  const u = await member(tg, orgId, 'sso@acme.example')
  const auth = new SoftAuthenticator(tg.deps.origin)
  const t0 = clock.now()
  const c = await sessionOf(tg, u, 'sso', orgId)
  await registerPasskey(c, auth)
  for (let k = 1; k <= 9; k++) {
    clock.set(t0 + k * 50 * MIN)
    assert.equal((await c.me()).status, 200)
  }
  const r = t0 + 7 * HOUR + 50 * MIN
  clock.set(r)
  await stepUp(c, auth)
  const me = await c.me()
  assert.equal(Date.parse(me.json.session.expires_at), r + 8 * HOUR, 'absolute limit restarts at the re-authentication')
  // Idle clock restarted at r: 59:59 later still alive…
  clock.set(r + 59 * MIN + 59 * SEC)
  assert.equal((await c.me()).status, 200, 'idle 59:59 after re-authentication')
  // …and the original 8 h limit no longer applies.
  for (let at = r + 59 * MIN + 59 * SEC + 50 * MIN; at < r + 8 * HOUR - SEC; at += 50 * MIN) {
    clock.set(at)
    assert.equal((await c.me()).status, 200)
  }
  assert.ok(clock.now() > t0 + 8 * HOUR, 'alive beyond the first sign-in\'s 8 h')
  clock.set(r + 8 * HOUR - SEC)
  assert.equal((await c.me()).status, 200, 're-auth + 8 h − 1 s')
  clock.set(r + 8 * HOUR + SEC)
  assert.equal((await c.me()).status, 401, 're-auth + 8 h + 1 s')
})

// ---------------------------------------------------------------------------------------------
// T52: termination

test('AUTH-3 T52: sign-out ends the session on the server (old cookie → 401, 20/20 replays) and answers with Clear-Site-Data; a cross-site sign-out is refused', async (t) => {
  const { tg, d, ownerId } = await world(t)
  const c = await signIn(tg, ownerId)
  const forged = await c.req('POST', '/auth/sign-out', undefined, { 'sec-fetch-site': 'cross-site', origin: 'http://evil.test' })
  assert.equal(forged.status, 403)
  assert.equal(forged.json.error.code, 'csrf_rejected')
  assert.equal((await c.me()).status, 200, 'a forged sign-out changes nothing')

  for (let i = 0; i < 20; i++) {
    const s = i === 0 ? c : await signIn(tg, ownerId)
    const old = s.token!
    const id = (await s.me()).json.session.id
    const out = await s.req('POST', '/auth/sign-out')
    assert.equal(out.status, 204)
    assert.match(out.headers.get('clear-site-data') ?? '', /"cookies"/)
    assert.match(out.headers.get('clear-site-data') ?? '', /"storage"/)
    assert.ok(out.headers.getSetCookie().some((sc) => sc.startsWith(`${SESSION_COOKIE}=;`) && /Max-Age=0/.test(sc)), 'the cookie is cleared')
    assert.equal(s.token, undefined)
    assert.equal(await statusOf(tg, old), 401, 'replaying the old cookie after sign-out')
    const row = await d.db.db.selectFrom('session').select(['ended_at', 'end_reason']).where('id', '=', id).executeTakeFirstOrThrow()
    assert.notEqual(row.ended_at, null)
    assert.equal(row.end_reason, 'logout')
  }
  assert.equal((await audits(tg, 'session_logout')).length, 20)
})

test('AUTH-3 T52: an ADMIN ends every session of a member (audited); the member\'s cookies get 401; a MEMBER may not do it', async (t) => {
  const { tg, orgId } = await world(t)
  const adminId = await member(tg, orgId, 'admin@acme.example', 'ADMIN')
  const m = await member(tg, orgId, 'm@acme.example')
  const admin = await signIn(tg, adminId)
  const phone = await signIn(tg, m)
  const laptop = await signIn(tg, m)
  const mine = await laptop.req('POST', `/api/orgs/${orgId}/members/${adminId}/end-sessions`, {})
  assert.equal(mine.status, 403, 'a MEMBER cannot end an ADMIN\'s sessions')
  assert.equal((await admin.me()).status, 200)

  const r = await admin.req('POST', `/api/orgs/${orgId}/members/${m}/end-sessions`, {})
  assert.equal(r.status, 200, JSON.stringify(r.json))
  assert.equal(r.json.ended, 2)
  assert.equal(await statusOf(tg, phone.token!), 401)
  assert.equal(await statusOf(tg, laptop.token!), 401)
  assert.equal((await admin.me()).status, 200, 'the admin\'s own session is untouched')
  const e = await audits(tg, 'session_ended_by_admin')
  assert.equal(e.length, 1)
  assert.equal(e[0]!.chain_id, orgId)
  assert.equal(e[0]!.outcome, 'success')
})

test('AUTH-3 T52: a person lists their sessions and ends the others (or one); those cookies get 401, this one lives', async (t) => {
  const { tg, ownerId } = await world(t)
  const a = await signIn(tg, ownerId)
  const b = await signIn(tg, ownerId)
  const c = await signIn(tg, ownerId)
  const d2 = await signIn(tg, ownerId)
  const list = await a.req('GET', '/api/me/sessions')
  assert.equal(list.json.sessions.length, 4)
  assert.equal(list.json.sessions.filter((s: any) => s.current).length, 1)
  const dId = (await d2.me()).json.session.id
  const one = await a.req('DELETE', `/api/me/sessions/${dId}`)
  assert.equal(one.status, 200)
  assert.equal(await statusOf(tg, d2.token!), 401)
  const r = await a.req('POST', '/api/me/sessions/end-others', {})
  assert.equal(r.status, 200)
  assert.equal(r.json.ended, 2)
  assert.equal(await statusOf(tg, b.token!), 401)
  assert.equal(await statusOf(tg, c.token!), 401)
  assert.equal((await a.me()).status, 200)
  assert.equal((await a.req('GET', '/api/me/sessions')).json.sessions.length, 1)
})

test('AUTH-3 T52: a disabled person\'s sessions get 401 at once, and a sign-in link issued before cannot start a new one', async (t) => {
  const { tg, d, orgId } = await world(t)
  const u = await member(tg, orgId, 'leaver@acme.example')
  const s1 = await signIn(tg, u)
  const s2 = await signIn(tg, u)
  const pendingLink = await d.links.create(d.db.db, u)
  // No endpoint disables people yet; the flag is what every check reads.
  await d.db.db.updateTable('user').set({ disabled_at: d.clock.now() }).where('id', '=', u).execute()
  assert.equal(await statusOf(tg, s1.token!), 401)
  assert.equal(await statusOf(tg, s2.token!), 401)
  const again = await new Client(tg).req('POST', '/auth/link', { token: pendingLink })
  assert.equal(again.status, 401)
  assert.equal(again.newToken, undefined)
  const live = await d.db.db.selectFrom('session').select('id').where('user_id', '=', u).execute()
  assert.equal(live.length, 2, 'no session was created for the disabled person')
})

// ---------------------------------------------------------------------------------------------
// AUTH-6: a passkey ceremony is single-use on the server, not only in the browser

test('AUTH-6 T44: a replayed passkey step-up or sign-in (same flow cookie, same assertion) is refused, even from an authenticator without a signature counter', async (t) => {
  const clock = new ManualClock()
  const { tg, ownerId, orgId } = await world(t, { clock })
  const auth = new SoftAuthenticator(tg.deps.origin, { counter: false })
  const c = await signIn(tg, ownerId)
  await registerPasskey(c, auth)
  clock.advance(11 * MIN)
  const refused = await c.req('POST', `/api/orgs/${orgId}/keys`, { environment: 'sandbox' })
  assert.equal(refused.status, 403)
  assert.equal(refused.json.error.code, 'step_up_required')

  // Step-up, recording exactly what the browser sent (cookies and body).
  const options = await c.req('POST', '/api/me/step-up/options', {})
  const flowCookies = new Map(c.cookies)
  const assertion = auth.assert(options.json)
  const first = await c.req('POST', '/api/me/step-up', assertion)
  assert.equal(first.status, 200)
  // Nine minutes later the sealed flow is still inside its 10-minute life: replay the request
  // (the current session cookie, the same flow cookie, the same assertion). Accepted, it would
  // restart the step-up window.
  clock.advance(9 * MIN)
  const replay = new Client(tg)
  for (const [k, v] of flowCookies) replay.cookies.set(k, v)
  replay.cookies.set(SESSION_COOKIE, c.token!)
  replay.csrf = c.csrf
  const replayed = await replay.req('POST', '/api/me/step-up', assertion)
  assert.equal(replayed.status, 403, `replayed step-up: ${JSON.stringify(replayed.json)}`)
  assert.equal(replayed.json.error.code, 'step_up_required')
  assert.equal(replayed.newToken, undefined)
  clock.advance(2 * MIN)
  const after = await c.req('POST', `/api/orgs/${orgId}/keys`, { environment: 'sandbox' })
  assert.equal(after.status, 403, 'the window of the real step-up passed; the replay did not renew it')
  assert.equal((await audits(tg, 'authn_stepup_success')).length, 1)

  // Passwordless sign-in, replayed: no second session.
  const anon = new Client(tg)
  const signOptions = await anon.req('POST', '/auth/passkey/options', {})
  const signFlow = new Map(anon.cookies)
  const signAssertion = auth.assert(signOptions.json)
  const ok = await anon.req('POST', '/auth/passkey', signAssertion)
  assert.equal(ok.status, 200)
  const sessionsBefore = (await tg.deps.db.db.selectFrom('session').select('id').execute()).length
  const thief = new Client(tg)
  for (const [k, v] of signFlow) thief.cookies.set(k, v)
  const stolen = await thief.req('POST', '/auth/passkey', signAssertion)
  assert.equal(stolen.status, 401, `replayed sign-in: ${JSON.stringify(stolen.json)}`)
  assert.equal(stolen.newToken, undefined)
  assert.equal((await tg.deps.db.db.selectFrom('session').select('id').execute()).length, sessionsBefore)
})
