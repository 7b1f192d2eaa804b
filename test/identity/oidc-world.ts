import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { TestContext } from 'node:test'
import type { Kysely } from 'kysely'
import type { DB } from '../../src/storage/schema.ts'
import type { Role } from '../../src/orgs/rbac.ts'
import { Browser, IdpRefusal, LocalIdp, redirectTarget, RogueIdp, type LoginChoice } from '../fakes/idp.ts'
import { startApp, type TestApp } from '../helpers/app.ts'

/** Tollgate plus the local IdP standing in for Google, wired as an operator would. */
export interface World {
  readonly app: TestApp
  readonly idp: LocalIdp
  /** Tollgate's public origin (http://localhost:<port>): what browsers and redirect URIs name. */
  readonly origin: string
  readonly db: Kysely<DB>
  readonly googleClientId: string
  readonly googleClientSecret: string
}

export const SESSION_COOKIE = '__Host-tollgate'
export const FLOW_COOKIE = '__Host-tollgate-flow'

export async function googleWorld(t: TestContext, opts: { allowedDomains?: string } = {}): Promise<World> {
  const idp = await LocalIdp.start({ path: '/google' })
  t.after(() => idp.close())
  const googleClientId = `tollgate-${randomBytes(4).toString('hex')}.apps.example`
  const googleClientSecret = randomBytes(24).toString('base64url')
  const app = (await startApp(t, {
    env: {
      TOLLGATE_GOOGLE_CLIENT_ID: googleClientId,
      TOLLGATE_GOOGLE_CLIENT_SECRET: googleClientSecret,
      TOLLGATE_GOOGLE_ISSUER: idp.issuer,
      ...(opts.allowedDomains ? { TOLLGATE_GOOGLE_ALLOWED_DOMAINS: opts.allowedDomains } : {}),
    },
  }))!
  const origin = app.deps.origin
  idp.registerClient({ client_id: googleClientId, client_secret: googleClientSecret, redirect_uris: [`${origin}/auth/callback`] })
  return { app, idp, origin, db: app.deps.db.db, googleClientId, googleClientSecret }
}

/** An org with nobody in it yet. */
export async function newOrg(app: TestApp, slug = `org-${randomBytes(4).toString('hex')}`) {
  const org = await app.deps.orgs.create(slug, { type: 'operator', id: null })
  assert.ok(org)
  return org
}

/** A pending invite's token, created as an admin would. */
export async function invite(app: TestApp, orgId: string, email: string, role: Role = 'MEMBER'): Promise<string> {
  const { token } = await app.deps.invites.create(app.deps.db.db, orgId, email, role, null)
  return token
}

/** Someone with a Tollgate session made directly (set-up only): returns a browser carrying it. */
export async function personWithSession(app: TestApp, email: string, orgId: string, role: Role, authAgoMs = 0): Promise<{ browser: Browser; userId: string }> {
  const db = app.deps.db.db
  const user = await app.deps.users.create(db, email)
  await app.deps.members.add(db, orgId, user.id, role)
  const { token } = await app.deps.sessions.create(user.id, 'bootstrap', null, app.deps.clock.now() - authAgoMs)
  const browser = new Browser()
  browser.setCookie(app.deps.origin, SESSION_COOKIE, token)
  return { browser, userId: user.id }
}

export interface Outcome {
  /** Tollgate's answer to the last request (the callback, or the start when it refused). */
  readonly status: number
  readonly error: string | undefined
  readonly location: string | undefined
  /** The IdP's redirect back to Tollgate, as it arrived (before any tampering by the test). */
  readonly callback: URL | undefined
  /** The authorization URL Tollgate sent the browser to (before tampering). */
  readonly authorize: URL | undefined
  readonly prompts: readonly string[]
}

export interface FlowOptions {
  readonly login?: LoginChoice
  /** Changes the authorization request on its way to the IdP (what a user agent or attacker could do). */
  readonly tamperAuthorize?: (u: URL) => void
  /** Changes the authorization response on its way back to Tollgate. */
  readonly tamperCallback?: (u: URL) => void
  /** Stops after the IdP answers, without delivering the callback to Tollgate. */
  readonly holdCallback?: boolean
}

/**
 * The browser side of a sign-in: GET Tollgate's start URL, follow its 303 to the IdP, log in and
 * consent there, and bring the redirect back to Tollgate's /auth/callback (flow cookie and all).
 */
export async function runFlow(b: Browser, origin: string, startPath: string, idp: LocalIdp | RogueIdp, opts: FlowOptions = {}): Promise<Outcome> {
  const start = await b.fetch(`${origin}${startPath}`)
  const authorize = redirectTarget(start, new URL(startPath, origin))
  if (!authorize) return { status: start.status, error: await errorCode(start), location: undefined, callback: undefined, authorize: undefined, prompts: [] }
  const sent = new URL(authorize)
  opts.tamperAuthorize?.(sent)
  let callback: URL
  let prompts: readonly string[] = []
  if (idp instanceof LocalIdp) {
    const r = await idp.authorize(b, sent, opts.login)
    callback = r.callback
    prompts = r.prompts
  } else {
    const res = await b.fetch(sent)
    const next = redirectTarget(res, sent)
    if (!next) throw new IdpRefusal(res.status, (await res.json()) as { error?: string })
    callback = next
  }
  const received = new URL(callback)
  if (opts.holdCallback) return { status: 0, error: undefined, location: undefined, callback: received, authorize, prompts }
  opts.tamperCallback?.(callback)
  const res = await b.fetch(callback)
  return { status: res.status, error: await errorCode(res), location: res.headers.get('location') ?? undefined, callback: received, authorize, prompts }
}

async function errorCode(res: Response): Promise<string | undefined> {
  if (res.status < 400) {
    await res.body?.cancel()
    return undefined
  }
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } }
  return body.error?.code
}

/** Rows that must not move when a sign-in is refused, and the refusals' audit entries. */
export async function tally(db: Kysely<DB>) {
  const count = async (q: Promise<{ n: number | string | bigint }>) => Number((await q).n)
  return {
    sessions: await count(db.selectFrom('session').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()),
    users: await count(db.selectFrom('user').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()),
    memberships: await count(db.selectFrom('membership').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()),
    loginFails: await count(db.selectFrom('audit_event').where('action', '=', 'authn_login_fail').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()),
    loginSuccesses: await count(db.selectFrom('audit_event').where('action', '=', 'authn_login_success').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()),
    stepUpFails: await count(db.selectFrom('audit_event').where('action', '=', 'authn_stepup_fail').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()),
    stepUpSuccesses: await count(db.selectFrom('audit_event').where('action', '=', 'authn_stepup_success').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()),
  }
}

/** The reasons recorded for refused sign-ins, newest last. */
export async function failReasons(db: Kysely<DB>): Promise<string[]> {
  const rows = await db.selectFrom('audit_event').where('action', '=', 'authn_login_fail').select(['target_id', 'at', 'seq']).orderBy('at').orderBy('seq').execute()
  return rows.map((r) => String(r.target_id))
}

/**
 * Runs one attempt that must be refused: 401 sign_in_failed, no session anywhere (none created,
 * none in the browser), and exactly one `authn_login_fail` audit entry. Returns the audited reason.
 */
export async function assertSignInRefused(w: { db: Kysely<DB>; origin: string }, b: Browser, attempt: () => Promise<Outcome>, label: string): Promise<string> {
  const before = await tally(w.db)
  const out = await attempt()
  const after = await tally(w.db)
  assert.equal(out.status, 401, `${label}: refused with 401 (got ${out.status} ${out.error ?? ''})`)
  assert.equal(out.error, 'sign_in_failed', `${label}: sign_in_failed`)
  assert.equal(after.sessions, before.sessions, `${label}: no session created`)
  assert.equal(after.loginSuccesses, before.loginSuccesses, `${label}: no sign-in audited as a success`)
  assert.equal(after.users, before.users, `${label}: no user created`)
  assert.equal(after.memberships, before.memberships, `${label}: no membership created`)
  assert.equal(after.loginFails, before.loginFails + 1, `${label}: audited once as authn_login_fail`)
  assert.equal(b.cookie(w.origin, SESSION_COOKIE), undefined, `${label}: no session cookie in the browser`)
  return (await failReasons(w.db)).at(-1)!
}

/** Same-origin JSON call to the admin API with the session's CSRF token. */
export async function api(b: Browser, origin: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = { origin }
  if (method !== 'GET') {
    const me = await b.fetch(`${origin}/api/me`)
    const csrf = me.status === 200 ? ((await me.json()) as { csrf_token: string }).csrf_token : ''
    if (me.status !== 200) await me.body?.cancel()
    headers['x-csrf-token'] = csrf
  }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await b.fetch(`${origin}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  const text = await res.text()
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
}

export interface Me {
  user: { id: string; email: string }
  memberships: { org_id: string; slug: string; role: string }[]
  session: { id: string; kind: string; step_up_valid_until: string | null } | null
}

export async function me(b: Browser, origin: string): Promise<Me | undefined> {
  const r = await api(b, origin, 'GET', '/api/me')
  return r.status === 200 ? (r.json as unknown as Me) : undefined
}

/** POST /auth/invite from our own page: remembers the invite for the sign-in that follows. */
export async function holdInvite(b: Browser, origin: string, token: string): Promise<void> {
  const res = await b.fetch(`${origin}/auth/invite`, { method: 'POST', headers: { origin, 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
  assert.equal(res.status, 200, await res.text())
}
