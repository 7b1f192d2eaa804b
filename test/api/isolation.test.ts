import assert from 'node:assert/strict'
import { randomInt } from 'node:crypto'
import { test } from 'node:test'
import { startApp, type TestApp } from '../helpers/app.ts'
import { artifactOf, reportOf } from '../artifacts/seed.ts'
import { apiRoutes, call, email, inviteIn, keyFor, newUser, nobody, passkeyFor, person, stateDiff, tableState, type Person, type Res } from './world.ts'

/**
 * DATA-3 (security-tests T61): no data crosses org boundaries. Org A is seeded with keys,
 * members, invites, SSO, a policy, sessions, a passkey and audit entries; then B's OWNER, with a
 * fresh step-up, asks for every one of A's ids on every route that takes an id (and for A itself
 * on every org route). Nothing succeeds, nothing changes, and "exists in A" answers byte for byte
 * what "does not exist" answers. B's own lists, aggregates and audit log name nothing of A's.
 */

const DOC = { version: 1, default_action: 'allow', rules: [] }

/** A valid body for each state-changing route, so that the answer is about the id, not the body. */
const BODIES: Record<string, unknown> = {
  'PATCH /api/orgs/:org/members/:user': { role: 'ANALYST' },
  'POST /api/orgs/:org/members/:user/end-sessions': {},
  'POST /api/orgs/:org/keys/:id/rotate': { grace_seconds: 0 },
  'PUT /api/orgs/:org/policies/:id': { document: DOC },
  'POST /api/orgs/:org/policies/:id/activate': {},
  'POST /api/orgs/:org/policies/:id/test': { samples: [{ facts: {} }] },
  'POST /api/orgs/:org/policies/:id/promote': {},
  'POST /api/orgs/:org/policies/:id/retire': {},
  'POST /api/orgs/:org/invites': { email: 'someone@example.com', role: 'MEMBER' },
  'PUT /api/orgs/:org/sso': { issuer: 'https://idp.example.com', client_id: 'tollgate', allowed_domains: ['example.com'] },
  'POST /api/orgs/:org/keys': { environment: 'sandbox' },
  'POST /api/orgs/:org/policies': { document: DOC },
  'POST /api/orgs/:org/policies/validate': { document: DOC },
  'PATCH /api/orgs/:org/settings': { training_consent: true },
  'POST /api/orgs/:org/reports/:id/resolve': { outcome: 'dismissed' },
}

/** An id of the same length and character classes as `id` that names nothing (the baseline must pass the same schema). */
function lookalike(id: string): string {
  const pick = (set: string) => set[randomInt(set.length)]!
  return [...id].map((c) => (/[0-9]/.test(c) ? pick('0123456789') : /[a-z]/.test(c) ? pick('abcdefghijklmnopqrstuvwxyz') : /[A-Z]/.test(c) ? pick('ABCDEFGHIJKLMNOPQRSTUVWXYZ') : c)).join('')
}

/** The answer with its request id blanked: everything else must be identical. */
function shape(r: Res): string {
  return JSON.stringify({ status: r.status, type: r.headers.get('content-type'), length: r.text.length, body: r.text.replace(/"request_id":"req_[0-9A-Za-z]+"/g, '"request_id":"-"') })
}

async function seedA(tg: TestApp, orgA: string, owner: Person) {
  const api = async (method: string, path: string, body: unknown, want: number) => {
    const r = await call(tg, owner, method, `/api/orgs/${orgA}${path}`, body)
    assert.equal(r.status, want, `seed ${method} ${path}: ${r.text}`)
    return r.json
  }
  const admin = await newUser(tg, orgA, 'ADMIN')
  const member = await person(tg, orgA, 'MEMBER')
  const keys = [
    (await api('POST', '/keys', { environment: 'sandbox', label: 'a-sandbox' }, 201)).key.id,
    (await api('POST', '/keys', { environment: 'production', label: 'a-prod', user_id: admin.userId, scope: 'admin' }, 201)).key.id,
    (await keyFor(tg, orgA, member.userId)).id,
    (await keyFor(tg, orgA, null)).id,
    (await keyFor(tg, orgA, owner.userId)).id,
  ] as string[]
  const invites = [(await api('POST', '/invites', { email: email('a-invite'), role: 'ADMIN' }, 201)).id as string]
  const openInvite = await inviteIn(tg, orgA)
  invites.push(openInvite.id)
  await api('PUT', '/sso', { issuer: 'https://idp.a.example', client_id: 'client-of-org-a', client_secret: 'secret-of-org-a', allowed_domains: ['a.example'] }, 200)
  const policy = (await api('POST', '/policies', { document: DOC }, 201)).id as string
  await api('PATCH', `/members/${member.userId}`, { role: 'ANALYST' }, 200)
  const passkey = await passkeyFor(tg, owner.userId)
  const extraSession = (await tg.deps.sessions.create(owner.userId, 'bootstrap', null)).session.id
  // RIGHTS-3, GW-8: an artifact and an open report of A's.
  const stored = [await artifactOf(tg, orgA, owner.userId), await reportOf(tg, orgA, member.userId)]
  return {
    users: [owner.userId, admin.userId, member.userId], keys, invites, inviteToken: openInvite.token, policy, passkey, stored,
    sessions: [owner.sessionId, member.sessionId, extraSession], emails: [owner.email, admin.email, member.email, openInvite.email],
  }
}

test('DATA-3 T61: as B\'s OWNER, every id of org A on every route that takes one: 0 successes, no change, and the same bytes as an id that does not exist', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const orgA = (await tg.deps.orgs.create('iso-a', { type: 'operator', id: null }))!.id
  const orgB = (await tg.deps.orgs.create('iso-b', { type: 'operator', id: null }))!.id
  const ownerA = await person(tg, orgA, 'OWNER')
  const ownerB = await person(tg, orgB, 'OWNER')
  const a = await seedA(tg, orgA, ownerA)
  // B has its own, distinctive, content: 2 sandbox keys (A has 3 live sandbox keys).
  await keyFor(tg, orgB, ownerB.userId)
  await keyFor(tg, orgB, ownerB.userId)
  const aIds = [...a.users, ...a.keys, ...a.invites, a.policy, ...a.sessions, a.passkey, ...a.stored]

  const routes = apiRoutes(tg.app.printRoutes({ commonPrefix: false })).filter((r) => !r.startsWith('HEAD '))
  const idRoutes = routes.filter((r) => /:(?!org\b)[a-z]+/.test(r))
  assert.ok(idRoutes.length >= 8, `${idRoutes.length} routes take an id`)
  for (const r of idRoutes) if (!r.startsWith('GET ') && !r.startsWith('DELETE ')) assert.ok(r in BODIES, `${r} takes an id: give it a valid body in BODIES`)

  // Positive control: the same id, asked by A's own OWNER in A, is found — the sweep asks about real objects.
  assert.equal((await call(tg, ownerA, 'GET', `/api/orgs/${orgA}/policies/${a.policy}`)).status, 200)

  const before = await tableState(tg)
  const failures: string[] = []
  let requests = 0
  const ask = async (route: string, org: string, id: string | undefined, body = BODIES[route]) => {
    const [method, template] = route.split(' ') as [string, string]
    const path = template.replace(':org', org).replace(/:(?!org\b)[a-z]+/, id ?? nobody())
    requests++
    return call(tg, ownerB, method, path, method === 'GET' ? undefined : body)
  }
  const same = (label: string, got: Res, baseline: Res) => {
    if (got.status < 400) failures.push(`${label}: succeeded (${got.status})`)
    if (shape(got) !== shape(baseline)) failures.push(`${label}: ${got.status} ${got.text} differs from a missing id's ${baseline.status} ${baseline.text}`)
  }

  // 1. Every route with an object id: A's ids in B's org, and in A's org, against ids that do not exist.
  for (const route of idRoutes) {
    for (const id of aIds) {
      const missing = lookalike(id)
      if (route.includes(':org')) {
        same(`${route} org=B id=A:${id}`, await ask(route, orgB, id), await ask(route, orgB, missing))
        same(`${route} org=A id=A:${id}`, await ask(route, orgA, id), await ask(route, nobody(), missing))
      } else {
        same(`${route} id=A:${id}`, await ask(route, orgB, id), await ask(route, orgB, missing))
      }
    }
  }
  // 2. Every org route on A itself (GET, PATCH, PUT, POST, DELETE): the same as an org that does not exist.
  for (const route of routes.filter((r) => r.includes(':org') && !idRoutes.includes(r))) {
    same(`${route} org=A`, await ask(route, orgA, undefined), await ask(route, nobody(), undefined))
  }
  // 3. Ids carried in a body: A's member as a key owner in B; A's invite token accepted by B's OWNER.
  for (const userId of a.users) {
    same(`POST /api/orgs/B/keys user_id=A:${userId}`, await ask('POST /api/orgs/:org/keys', orgB, undefined, { environment: 'sandbox', user_id: userId }),
      await ask('POST /api/orgs/:org/keys', orgB, undefined, { environment: 'sandbox', user_id: nobody() }))
  }
  same('POST /api/invites/accept token=A', await call(tg, ownerB, 'POST', '/api/invites/accept', { token: a.inviteToken }),
    await call(tg, ownerB, 'POST', '/api/invites/accept', { token: 'A'.repeat(43) }))

  assert.deepEqual(failures, [], `${failures.length} of ${requests} cross-org requests leaked or differed`)
  assert.ok(requests > 200, `${requests} requests`)
  // Nothing changed anywhere: every row of every table (A's keys live, members, invites, sessions, audit).
  assert.deepEqual(stateDiff(before, await tableState(tg)), [], 'a cross-org request changed stored data')
})

test('DATA-3 T61: B\'s lists, aggregates and audit log contain none of A\'s ids (and the same scan finds them in A\'s)', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const orgA = (await tg.deps.orgs.create('iso-list-a', { type: 'operator', id: null }))!.id
  const orgB = (await tg.deps.orgs.create('iso-list-b', { type: 'operator', id: null }))!.id
  const ownerA = await person(tg, orgA, 'OWNER')
  const ownerB = await person(tg, orgB, 'OWNER')
  const a = await seedA(tg, orgA, ownerA)
  await keyFor(tg, orgB, ownerB.userId)
  assert.equal((await call(tg, ownerB, 'POST', `/api/orgs/${orgB}/invites`, { email: email('b-invite'), role: 'MEMBER' })).status, 201)
  // A's audit chain: its hashes and actor pseudonyms are A's ids too.
  const aAudit = await tg.deps.db.db.selectFrom('audit_event').selectAll().where('chain_id', '=', orgA).execute()
  assert.ok(aAudit.length >= 8, `A has ${aAudit.length} audit entries`)
  const secrets = [
    orgA, 'iso-list-a', ...a.users, ...a.keys, ...a.invites, a.policy, a.passkey, ...a.sessions, ...a.emails, 'client-of-org-a', 'idp.a.example',
    ...aAudit.map((e) => e.hash), ...aAudit.flatMap((e) => (e.actor_id ? [e.actor_id] : [])),
  ]

  const lists = (org: string) => [
    '/api/me', '/api/me/sessions', '/api/me/passkeys', '/api/orgs', `/api/orgs/${org}`, `/api/orgs/${org}/environments`, `/api/orgs/${org}/members`,
    `/api/orgs/${org}/invites`, `/api/orgs/${org}/keys`, `/api/orgs/${org}/keys?environment=sandbox`, `/api/orgs/${org}/sso`, `/api/orgs/${org}/audit?limit=1000`,
    `/api/orgs/${org}/policies`, `/api/orgs/${org}/policies/active`, `/api/orgs/${org}/settings`,
  ]
  const read = async (who: Person, org: string) => {
    let text = ''
    for (const path of lists(org)) {
      const r = await call(tg, who, 'GET', path)
      assert.equal(r.status, 200, `${path}: ${r.text}`)
      text += r.text
    }
    return text
  }
  // Positive control: the scanner finds A's ids in A's own lists.
  const inA = await read(ownerA, orgA)
  const found = secrets.filter((s) => inA.includes(s))
  assert.ok(found.length >= 20, `the scan finds ${found.length} of A's ids in A's own lists`)

  const inB = await read(ownerB, orgB)
  assert.deepEqual(secrets.filter((s) => inB.includes(s)), [], 'B\'s lists name something of A\'s')

  // Aggregates count B only: B's one sandbox key, not A's.
  const envs = (await call(tg, ownerB, 'GET', `/api/orgs/${orgB}/environments`)).json.environments
  assert.deepEqual(envs.map((e: any) => [e.name, e.active_keys]), [['sandbox', 1], ['production', 0]])
  const audit = (await call(tg, ownerB, 'GET', `/api/orgs/${orgB}/audit?limit=1000`)).json.entries as any[]
  const bChain = await tg.deps.db.db.selectFrom('audit_event').select('seq').where('chain_id', '=', orgB).execute()
  assert.equal(audit.length, bChain.length, 'B sees exactly its own chain')
})
