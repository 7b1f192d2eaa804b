import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RouteAction } from '../../src/api/guard.ts'
import { ACTIONS, can, ROLES, SENSITIVE, type Role } from '../../src/orgs/rbac.ts'
import { buildServer } from '../../src/server.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { artifactOf, enableWorkspace, reportOf } from '../artifacts/seed.ts'
import { apiRoutes, call, email, inviteIn, keyFor, newUser, nobody, passkeyFor, person, signIn, ssoIn, type Person, type Res } from './world.ts'

/**
 * RBAC-1 (security-tests T60): every /api/ route, read from the running router, joined to this
 * file's own table of (route → action). Each route × principal × {own org, another org} gets the
 * status the permission table predicts: anonymous 401; not a member 404; `can()` false 403;
 * sensitive without a fresh step-up 403 step_up_required; otherwise the route's own success.
 * A route missing from the table (or a table entry without a route) fails the test.
 */

interface World {
  readonly tg: TestApp
  /** A throwaway org whose invites principals accept (accepting must not change their roles in A or B). */
  readonly spareOrg: string
  /** Owners of each org, for fixtures owned by "someone else". */
  readonly owners: Map<string, Person>
}

interface Call {
  readonly params?: Record<string, string>
  readonly body?: unknown
}

interface RouteSpec {
  readonly action: RouteAction
  /** The status the route answers when the guard lets the caller through. */
  readonly ok: number
  /** Fixtures for one call on `orgId` (the ids name real objects of that org). */
  readonly prepare?: (w: World, orgId: string, who: Person | undefined) => Promise<Call>
  /** When the route's own answer is a refusal (a failed WebAuthn step-up): how to tell the handler ran. */
  readonly reached?: (w: World, res: Res) => Promise<boolean>
  /** A `self` route declaring `stepUp: true`: a stale authentication (or an admin key) gets step_up_required. */
  readonly stepUp?: true
}

/** A key owned by the caller when they belong to the org (MEMBERs manage only their own), else by its OWNER. */
const ownKey = async (w: World, orgId: string, who: Person | undefined): Promise<Call> => {
  const mine = who && (await w.tg.deps.users.role(who.userId, orgId))
  return { params: { id: (await keyFor(w.tg, orgId, mine ? who!.userId : w.owners.get(orgId)!.userId)).id } }
}
const freshMember = async (w: World, orgId: string): Promise<Call> => ({ params: { user: (await newUser(w.tg, orgId, 'MEMBER')).userId } })

/** The person a call acts as: the signed-in one, or the member behind the org's admin-scope key (else its OWNER). */
const actingUser = async (w: World, orgId: string, who: Person | undefined): Promise<string> =>
  who?.userId ?? (await w.tg.deps.db.db.selectFrom('api_key').select('user_id').where('org_id', '=', orgId).where('scope', '=', 'admin').where('user_id', 'is not', null).executeTakeFirst())?.user_id ?? w.owners.get(orgId)!.userId
/** RIGHTS-3 / GW-8 fixtures owned by the caller: nobody else's artifact or report is theirs to read or delete. */
const ownArtifact = async (w: World, orgId: string, who: Person | undefined): Promise<Call> => ({ params: { id: await artifactOf(w.tg, orgId, await actingUser(w, orgId, who)) } })
const ownReport = async (w: World, orgId: string, who: Person | undefined): Promise<Call> => ({ params: { id: await reportOf(w.tg, orgId, await actingUser(w, orgId, who)) } })

/** Policy fixtures go through the API as the org's OWNER, like the dashboard makes them. */
const DOC = { version: 1, default_action: 'allow', rules: [] }
const asOwner = async (w: World, orgId: string, method: string, path: string, body: unknown, want: number): Promise<any> => {
  const res = await call(w.tg, w.owners.get(orgId)!, method, `/api/orgs/${orgId}${path}`, body)
  if (res.status !== want) throw new Error(`fixture ${method} ${path}: ${res.status} ${res.text.slice(0, 200)}`)
  return res.json
}
const draft = async (w: World, orgId: string): Promise<string> => (await asOwner(w, orgId, 'POST', '/policies', { document: DOC }, 201)).id
const activeTested = async (w: World, orgId: string): Promise<string> => {
  const id = await draft(w, orgId)
  await asOwner(w, orgId, 'POST', `/policies/${id}/activate`, {}, 200)
  await asOwner(w, orgId, 'POST', `/policies/${id}/test`, { samples: [{ facts: {} }] }, 200)
  return id
}

/** The classification of every /api/ route: the action it must declare and what success looks like. */
const ROUTES: Record<string, RouteSpec> = {
  'GET /api/openapi.json': { action: 'public', ok: 200 },
  'GET /api/instance': { action: 'self', ok: 200 },
  'POST /api/invites/accept': {
    action: 'self', ok: 200,
    prepare: async (w, _org, who) => ({ body: { token: (await inviteIn(w.tg, w.spareOrg, who?.email ?? email())).token } }),
  },
  'GET /api/me': { action: 'self', ok: 200 },
  'GET /api/me/sessions': { action: 'self', ok: 200 },
  'DELETE /api/me/sessions/:id': {
    action: 'self', ok: 200,
    prepare: async (w, _org, who) => ({ params: { id: who ? (await w.tg.deps.sessions.create(who.userId, 'bootstrap', null)).session.id : nobody() } }),
  },
  'POST /api/me/sessions/end-others': { action: 'self', ok: 200, prepare: async () => ({ body: {} }) },
  'GET /api/me/passkeys': { action: 'self', ok: 200 },
  'POST /api/me/passkeys/options': { action: 'self', ok: 200, prepare: async () => ({ body: {} }) },
  // No registration ceremony is in flight, so the handler refuses the attestation: 400, past the guard.
  'POST /api/me/passkeys': { action: 'self', ok: 400, prepare: async () => ({ body: {} }) },
  'DELETE /api/me/passkeys/:id': {
    action: 'self', ok: 200,
    prepare: async (w, _org, who) => ({ params: { id: who ? await passkeyFor(w.tg, who.userId) : 'AAAAAAAAAAAAAAAAAAAAAA' } }),
  },
  'POST /api/me/step-up/options': { action: 'self', ok: 200, prepare: async () => ({ body: {} }) },
  // Without a WebAuthn assertion the handler answers step_up_required — after auditing the failed
  // attempt under this request's id, which the guard never does for a `self` route.
  'POST /api/me/step-up': {
    action: 'self', ok: 403, prepare: async () => ({ body: {} }),
    reached: async (w, res) => res.json?.error?.code === 'step_up_required' &&
      (await w.tg.deps.db.db.selectFrom('audit_event').select('action').where('request_id', '=', res.headers.get('x-request-id')!).execute()).some((e) => e.action === 'authn_stepup_fail'),
  },
  'GET /api/orgs': { action: 'self', ok: 200 },
  // RIGHTS-1/2: self routes behind a fresh step-up. Deleting the principal would end the sweep, so the
  // caller is made the last OWNER of a fresh org with another member: the handler refuses (409).
  'GET /api/account/export': { action: 'self', ok: 200, stepUp: true },
  'DELETE /api/account': {
    action: 'self', ok: 409, stepUp: true,
    prepare: async (w, _org, who) => {
      if (who) {
        const org = (await w.tg.deps.orgs.create(`rbac-last-${Math.random().toString(36).slice(2, 10)}`, { type: 'operator', id: null }))!.id
        await w.tg.deps.members.add(w.tg.deps.db.db, org, who.userId, 'OWNER')
        await newUser(w.tg, org, 'MEMBER')
      }
      return {}
    },
    reached: async (_w, res) => res.status === 409 && res.json?.error?.code === 'account_last_owner',
  },
  // A wrong confirmation: the handler refuses, so the org the sweep uses is not terminated.
  'DELETE /api/orgs/:org': {
    action: 'org.terminate', ok: 400, prepare: async () => ({ body: { confirm: 'not-this-org' } }),
    reached: async (_w, res) => res.json?.error?.code === 'confirmation_mismatch',
  },
  'GET /api/orgs/:org': { action: 'org.read', ok: 200 },
  'GET /api/orgs/:org/environments': { action: 'environment.list', ok: 200 },
  'GET /api/orgs/:org/members': { action: 'member.list', ok: 200 },
  'PATCH /api/orgs/:org/members/:user': { action: 'member.role', ok: 200, prepare: async (w, org) => ({ ...(await freshMember(w, org)), body: { role: 'ANALYST' } }) },
  'DELETE /api/orgs/:org/members/:user': { action: 'member.remove', ok: 200, prepare: (w, org) => freshMember(w, org) },
  'POST /api/orgs/:org/members/:user/end-sessions': {
    action: 'member.sessions.end', ok: 200,
    prepare: async (w, org) => {
      const c = await freshMember(w, org)
      await w.tg.deps.sessions.create(c.params!['user']!, 'bootstrap', null)
      return { ...c, body: {} }
    },
  },
  'GET /api/orgs/:org/invites': { action: 'invite.list', ok: 200 },
  'POST /api/orgs/:org/invites': { action: 'member.invite', ok: 201, prepare: async () => ({ body: { email: email('invitee'), role: 'MEMBER' } }) },
  'DELETE /api/orgs/:org/invites/:id': { action: 'invite.revoke', ok: 200, prepare: async (w, org) => ({ params: { id: (await inviteIn(w.tg, org)).id } }) },
  'GET /api/orgs/:org/sso': { action: 'sso.read', ok: 200 },
  'PUT /api/orgs/:org/sso': {
    action: 'sso.write', ok: 200,
    prepare: async () => ({ body: { issuer: 'https://idp.example.com', client_id: 'tollgate', client_secret: 'shh', allowed_domains: ['example.com'] } }),
  },
  'DELETE /api/orgs/:org/sso': { action: 'sso.write', ok: 200, prepare: async (w, org) => (await ssoIn(w.tg, org), {}) },
  'GET /api/orgs/:org/keys': { action: 'key.list', ok: 200 },
  'POST /api/orgs/:org/keys': { action: 'key.create', ok: 201, prepare: async () => ({ body: { environment: 'sandbox', label: 'rbac' } }) },
  'POST /api/orgs/:org/keys/:id/rotate': { action: 'key.rotate', ok: 201, prepare: async (w, org, who) => ({ ...(await ownKey(w, org, who)), body: { grace_seconds: 0 } }) },
  'DELETE /api/orgs/:org/keys/:id': { action: 'key.revoke', ok: 200, prepare: ownKey },
  'GET /api/orgs/:org/audit': { action: 'audit.read', ok: 200 },
  'GET /api/orgs/:org/policies': { action: 'policy.read', ok: 200 },
  'GET /api/orgs/:org/policies/active': { action: 'policy.read', ok: 200 },
  'POST /api/orgs/:org/policies/validate': { action: 'policy.read', ok: 200, prepare: async () => ({ body: { document: DOC } }) },
  'GET /api/orgs/:org/policies/:id': { action: 'policy.read', ok: 200, prepare: async (w, org) => ({ params: { id: await draft(w, org) } }) },
  'POST /api/orgs/:org/policies': { action: 'policy.write', ok: 201, prepare: async () => ({ body: { document: DOC } }) },
  'PUT /api/orgs/:org/policies/:id': { action: 'policy.write', ok: 200, prepare: async (w, org) => ({ params: { id: await draft(w, org) }, body: { document: DOC } }) },
  'POST /api/orgs/:org/policies/:id/activate': { action: 'policy.write', ok: 200, prepare: async (w, org) => ({ params: { id: await draft(w, org) }, body: {} }) },
  'POST /api/orgs/:org/policies/:id/test': { action: 'policy.test', ok: 200, prepare: async (w, org) => ({ params: { id: await draft(w, org) }, body: { samples: [{ facts: {} }] } }) },
  'POST /api/orgs/:org/policies/:id/promote': { action: 'policy.promote', ok: 201, prepare: async (w, org) => ({ params: { id: await activeTested(w, org) }, body: {} }) },
  'POST /api/orgs/:org/policies/:id/retire': { action: 'policy.retire', ok: 200, prepare: async (w, org) => ({ params: { id: await draft(w, org) }, body: {} }) },
  'GET /api/orgs/:org/settings': { action: 'settings.read', ok: 200 },
  'PATCH /api/orgs/:org/settings': { action: 'settings.write', ok: 200, prepare: async () => ({ body: { training_consent: false } }) },
  // AUDIT-4, RBAC-3: k-floored analytics (ANALYSTs too) and the alert webhook (OWNER/ADMIN).
  'GET /api/orgs/:org/analytics/requests': { action: 'analytics.read', ok: 200 },
  'GET /api/orgs/:org/analytics/decisions': { action: 'analytics.read', ok: 200 },
  'GET /api/orgs/:org/analytics/challenges': { action: 'analytics.read', ok: 200 },
  'GET /api/orgs/:org/alerts/webhook': { action: 'alerts.read', ok: 200 },
  'PUT /api/orgs/:org/alerts/webhook': { action: 'alerts.write', ok: 200, prepare: async () => ({ body: { url: 'https://hooks.example.com/tollgate' } }) },
  'DELETE /api/orgs/:org/alerts/webhook': {
    action: 'alerts.write', ok: 200,
    prepare: async (w, org) => (await w.tg.deps.alertWebhooks.put(w.tg.deps.db.db, org, 'https://hooks.example.com/tollgate', false), {}),
  },
  // RIGHTS-3: every role saves, lists, reads and deletes its own artifacts (in an org with the workspace on).
  'POST /api/orgs/:org/artifacts': { action: 'artifact.write', ok: 201, prepare: async (w, org) => (await enableWorkspace(w.tg, org), { body: { content: 'an answer worth keeping', temporary: true } }) },
  'GET /api/orgs/:org/artifacts': { action: 'artifact.read', ok: 200 },
  'GET /api/orgs/:org/artifacts/:id': { action: 'artifact.read', ok: 200, prepare: ownArtifact },
  'DELETE /api/orgs/:org/artifacts/:id': { action: 'artifact.write', ok: 200, prepare: ownArtifact },
  // GW-8: every role reports and withdraws its own report; OWNER/ADMIN review.
  'POST /api/orgs/:org/reports': { action: 'report.create', ok: 201, prepare: async () => ({ body: { text: 'a harmful answer', category: 'S2' } }) },
  'DELETE /api/orgs/:org/reports/:id': { action: 'report.create', ok: 200, prepare: ownReport },
  'GET /api/orgs/:org/reports': { action: 'report.review', ok: 200 },
  'POST /api/orgs/:org/reports/:id/resolve': {
    action: 'report.review', ok: 200,
    prepare: async (w, org) => ({ params: { id: await reportOf(w.tg, org, w.owners.get(org)!.userId) }, body: { outcome: 'dismissed' } }),
  },
}

/** HEAD is Fastify's automatic twin of a GET route: same guard, same status, no body. */
function specFor(route: string): RouteSpec | undefined {
  const [method, path] = route.split(' ') as [string, string]
  return ROUTES[method === 'HEAD' ? `GET ${path}` : route]
}

type Expect = { readonly status: number; readonly code?: string } | 'ok'

/** What the permission table predicts, independently of the guard's code. */
function predict(spec: RouteSpec, role: Role | 'anonymous' | undefined, fresh: boolean): Expect {
  if (spec.action === 'public') return 'ok'
  if (role === 'anonymous') return { status: 401, code: 'unauthenticated' }
  if (spec.action === 'self') return spec.stepUp && !fresh ? { status: 403, code: 'step_up_required' } : 'ok'
  if (role === undefined) return { status: 404, code: 'not_found' }
  if (!can(role, spec.action)) return { status: 403, code: 'forbidden' }
  if (SENSITIVE.has(spec.action) && !fresh) return { status: 403, code: 'step_up_required' }
  return 'ok'
}

async function run(w: World, route: string, orgId: string, who: Person | undefined, headers?: Record<string, string>): Promise<Res> {
  const spec = specFor(route)!
  const [method, template] = route.split(' ') as [string, string]
  const c = (await spec.prepare?.(w, orgId, who)) ?? {}
  const params: Record<string, string> = { org: orgId, ...c.params }
  const path = template.replace(/:([a-z]+)/g, (_, name: string) => encodeURIComponent(params[name] ?? nobody()))
  return call(w.tg, who, method, path, method === 'GET' || method === 'HEAD' ? undefined : c.body, headers ? { headers, noCsrf: true } : {})
}

async function check(w: World, route: string, label: string, res: Res, want: Expect, failures: string[]): Promise<void> {
  const spec = specFor(route)!
  const head = route.startsWith('HEAD ')
  if (want === 'ok') {
    const reached = spec.reached ? await spec.reached(w, res) : res.status === spec.ok
    if (!reached) failures.push(`${route} as ${label}: expected the route's own ${spec.ok}, got ${res.status} ${res.text.slice(0, 120)}`)
    return
  }
  if (res.status !== want.status || (!head && res.json?.error?.code !== want.code)) {
    failures.push(`${route} as ${label}: expected ${want.status} ${want.code}, got ${res.status} ${res.text.slice(0, 120)}`)
  }
}

test('RBAC-1 T60: every /api/ route × {OWNER, ADMIN, ANALYST, MEMBER, admin key, member of another org, anonymous} × {own org, another org} answers what can() + SENSITIVE predict', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const routes = apiRoutes(tg.app.printRoutes({ commonPrefix: false }))

  // The parser really reads the router: every documented path is among the routes it found.
  const openapi = (await call(tg, undefined, 'GET', '/api/openapi.json')).json as { paths: Record<string, Record<string, unknown>> }
  for (const [p, methods] of Object.entries(openapi.paths)) {
    if (!p.startsWith('/api/')) continue
    for (const m of Object.keys(methods)) assert.ok(routes.includes(`${m.toUpperCase()} ${p.replace(/\{(\w+)\}/g, ':$1')}`), `${m} ${p} is documented but the router parse missed it`)
  }
  assert.ok(routes.length >= 30, `found ${routes.length} /api/ routes`)

  // Every route is classified, and every classification names a real route: a new route fails here until added.
  const unclassified = routes.filter((r) => !specFor(r))
  assert.deepEqual(unclassified, [], `routes without an RBAC classification in rbac.test.ts: ${unclassified.join(', ')}`)
  const stale = Object.keys(ROUTES).filter((r) => !routes.includes(r))
  assert.deepEqual(stale, [], `classified routes the server does not have: ${stale.join(', ')}`)
  // Every action of the permission table is exercised by some route.
  const used = new Set(Object.values(ROUTES).map((s) => s.action))
  assert.deepEqual(ACTIONS.filter((a) => !used.has(a)), [], 'actions no route uses')

  const orgA = (await tg.deps.orgs.create('rbac-a', { type: 'operator', id: null }))!.id
  const orgB = (await tg.deps.orgs.create('rbac-b', { type: 'operator', id: null }))!.id
  const orgC = (await tg.deps.orgs.create('rbac-c', { type: 'operator', id: null }))!.id
  const spareOrg = (await tg.deps.orgs.create('rbac-spare', { type: 'operator', id: null }))!.id
  const owners = new Map<string, Person>([[orgA, await person(tg, orgA, 'OWNER')], [orgB, await person(tg, orgB, 'OWNER')], [orgC, await person(tg, orgC, 'OWNER')]])
  const w: World = { tg, spareOrg, owners }

  const staleAuth = tg.deps.clock.now() - tg.deps.stepUpWindowMs - 1000
  type Principal = { label: string; who: Person | undefined; role: (org: string) => Role | 'anonymous' | undefined; fresh: boolean; headers?: Record<string, string>; orgRoutesOnly?: boolean }
  const principals: Principal[] = [{ label: 'anonymous', who: undefined, role: () => 'anonymous', fresh: false }]
  for (const role of ROLES) {
    const p = role === 'OWNER' ? owners.get(orgA)! : await person(tg, orgA, role)
    principals.push({ label: role, who: p, role: (org) => (org === orgA ? role : undefined), fresh: true })
    // The same role without a fresh authentication: sensitive actions need a step-up.
    principals.push({ label: `${role} (stale step-up)`, who: await person(tg, orgA, role, staleAuth), role: (org) => (org === orgA ? role : undefined), fresh: false, orgRoutesOnly: true })
  }
  principals.push({ label: 'OWNER of another org', who: owners.get(orgC)!, role: (org) => (org === orgC ? 'OWNER' : undefined), fresh: true })
  // An admin-scope key acts as its member, inside its own org only, and is never a fresh authentication.
  const keyAdmin = await newUser(tg, orgA, 'ADMIN')
  const adminKey = await keyFor(tg, orgA, keyAdmin.userId, 'admin')
  principals.push({ label: 'ADMIN via admin-scope key', who: undefined, role: (org) => (org === orgA ? 'ADMIN' : undefined), fresh: false, headers: { authorization: `Bearer ${adminKey.key}` }, orgRoutesOnly: true })

  const failures: string[] = []
  let cells = 0
  for (const route of routes) {
    const spec = specFor(route)!
    const orgRoute = route.includes(':org')
    for (const p of principals) {
      if (p.orgRoutesOnly && !orgRoute && !spec.stepUp) continue
      // Self and public routes name no org: one cell per principal. Org routes: own org and another org.
      for (const orgId of orgRoute ? [orgA, orgB] : [orgA]) {
        const role = p.role(orgId)
        const res = await run(w, route, orgId, p.who, p.headers)
        await check(w, route, `${p.label} on ${orgId === orgA ? 'own org' : 'another org'}`, res, predict(spec, role, p.fresh), failures)
        assert.ok(res.status < 500, `${route} as ${p.label}: ${res.status}`)
        cells++
      }
    }
  }
  assert.deepEqual(failures, [], `${failures.length} of ${cells} cells differ from the permission table`)
  assert.ok(cells > 300, `${cells} cells`)
})

test('RBAC-1: the server refuses to start with an /api/ route that declares no action', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  for (const prefix of ['/api/', '/auth/', '/ops/']) {
    const app = await buildServer(tg.deps)
    app.register(async (scope) => {
      scope.get(`${prefix}unclassified`, async () => ({ ok: true }))
    })
    await assert.rejects(async () => { await app.ready() }, /declares no action/, `${prefix} route without an action must stop start-up`)
    await app.close().catch(() => {})
  }
  // Positive control: the same route with an action starts.
  const app = await buildServer(tg.deps)
  app.register(async (scope) => {
    scope.get('/api/classified', { config: { action: 'self' } }, async () => ({ ok: true }))
  })
  await app.ready()
  await app.close()
})
