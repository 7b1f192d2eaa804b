import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sql } from 'kysely'
import { verifyChains } from '../../src/audit/audit.ts'
import { SESSION_COOKIE } from '../../src/api/guard.ts'
import { bootstrapOrg, issueLoginLink } from '../../src/identity/bootstrap.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { VALID, type Valid } from './fixtures.ts'
import { apiRoutes, call, email, newUser, person, stateDiff, tableState, type Person } from './world.ts'

/**
 * AUDIT-1 (T80): a scripted scenario does every audited kind of action three times and the audit
 * log gains exactly the expected entries — none missing, none extra — each with actor type, a
 * pseudonymous actor, action, target, outcome, UTC time and request id; the chains verify
 * (AUDIT-3). D8 / T82: with the audit table unwritable, every admin operation is refused with a
 * 5xx that says nothing about why, and changes nothing.
 */

const OPS_SECRET = 'ops-secret-for-the-audit-test-0123456789'
const OPERATOR = { type: 'operator' as const, id: null }

const bootstrapDeps = (tg: TestApp) => ({ ...tg.deps, db: tg.deps.db.db })

/** POST /auth/link as a browser on our own page would: the new session cookie, or the status. */
async function signInWithLink(tg: TestApp, link: string): Promise<{ status: number; cookie?: string }> {
  const token = new URL(link).hash.replace('#token=', '')
  const res = await fetch(`${tg.url}/auth/link`, { method: 'POST', headers: { origin: tg.deps.origin, 'content-type': 'application/json' }, body: JSON.stringify({ token }) })
  await res.arrayBuffer()
  const set = res.headers.getSetCookie().find((c) => c.startsWith(`${SESSION_COOKIE}=`))
  return { status: res.status, ...(set ? { cookie: set.split(';')[0]! } : {}) }
}

type Entry = { chain_id: string; seq: number; at: number; actor_type: string; actor_id: string | null; action: string; target_type: string | null; target_id: string | null; outcome: string; request_id: string | null }

async function entries(tg: TestApp): Promise<Entry[]> {
  return (await tg.deps.db.db.selectFrom('audit_event').selectAll().orderBy('chain_id').orderBy('seq').execute()) as Entry[]
}

test('AUDIT-1 T80 AUDIT-3: each audited action, done 3 times, adds exactly its audit entries, each complete and pseudonymous; the chains verify', async (t) => {
  const tg = await startApp(t, { env: { TOLLGATE_OPS_SECRET: OPS_SECRET } })
  if (!tg) return
  const d = bootstrapDeps(tg)

  // ---- the world, before the scenario ----
  const ownerEmail = email('owner')
  const made = (await bootstrapOrg(d, 'audit-org', ownerEmail, OPERATOR))!
  const orgId = made.orgId
  const first = await signInWithLink(tg, made.link)
  assert.equal(first.status, 200)
  const owner: Person = { userId: made.userId, email: ownerEmail, sessionId: '', cookie: first.cookie!, csrf: '' }
  owner.csrf = (await call(tg, owner, 'GET', '/api/me')).json.csrf_token
  const analyst = await person(tg, orgId, 'ANALYST')
  const toChange = [await newUser(tg, orgId, 'MEMBER'), await newUser(tg, orgId, 'MEMBER'), await newUser(tg, orgId, 'MEMBER')]
  const toRemove = [await newUser(tg, orgId, 'MEMBER'), await newUser(tg, orgId, 'MEMBER'), await newUser(tg, orgId, 'MEMBER')]
  const people = [made.userId, analyst.userId, ...toChange.map((u) => u.userId), ...toRemove.map((u) => u.userId)]
  const emails = [ownerEmail, analyst.email, ...toChange.map((u) => u.email), ...toRemove.map((u) => u.email)]
  const seen = new Set((await entries(tg)).map((e) => `${e.chain_id}:${e.seq}`))

  // ---- the scenario: every action 3 times ----
  const api = (who: Person, method: string, path: string, body?: unknown, o = {}) => call(tg, who, method, `/api/orgs/${orgId}${path}`, body, o)
  const expectStatus = (r: { status: number; text: string }, want: number, what: string) => assert.equal(r.status, want, `${what}: ${r.text}`)
  for (let i = 0; i < 3; i++) {
    // Sign-in with a fresh link (issued by the operator), a sign-in with a bad link, a sign-out.
    const link = (await issueLoginLink(d, ownerEmail, OPERATOR))!
    const signedIn = await signInWithLink(tg, link)
    expectStatus({ status: signedIn.status, text: '' }, 200, 'sign-in')
    expectStatus({ status: (await signInWithLink(tg, `${tg.deps.origin}/auth/link#token=${'B'.repeat(43)}`)).status, text: '' }, 401, 'bad link')
    const out = await fetch(`${tg.url}/auth/sign-out`, { method: 'POST', headers: { origin: tg.deps.origin, cookie: signedIn.cookie! } })
    expectStatus({ status: out.status, text: '' }, 204, 'sign-out')

    // Keys: create, rotate, revoke.
    const created = await api(owner, 'POST', '/keys', { environment: 'sandbox', label: `audit ${i}` })
    expectStatus(created, 201, 'key create')
    const rotated = await api(owner, 'POST', `/keys/${created.json.key.id}/rotate`, { grace_seconds: 60 })
    expectStatus(rotated, 201, 'key rotate')
    expectStatus(await api(owner, 'DELETE', `/keys/${rotated.json.key.id}`), 200, 'key revoke')

    // Team: invite, role change, removal.
    expectStatus(await api(owner, 'POST', '/invites', { email: email('invitee'), role: 'MEMBER' }), 201, 'invite')
    expectStatus(await api(owner, 'PATCH', `/members/${toChange[i]!.userId}`, { role: 'ANALYST' }), 200, 'role change')
    expectStatus(await api(owner, 'DELETE', `/members/${toRemove[i]!.userId}`), 200, 'remove')

    // Configuration.
    expectStatus(await api(owner, 'PUT', '/sso', { issuer: 'https://idp.example.com', client_id: `client-${i}`, allowed_domains: ['example.com'] }), 200, 'sso')

    // Operator call (the first one seeds two demo orgs; the others find them there).
    const ops = await fetch(`${tg.url}/ops/seed`, { method: 'POST', headers: { 'x-backup-secret': OPS_SECRET } })
    expectStatus({ status: ops.status, text: await ops.text() }, 200, 'ops seed')

    // Denied access and a CSRF block.
    const denied = await api(analyst, 'POST', '/keys', { environment: 'sandbox' })
    assert.equal(denied.json?.error?.code, 'forbidden')
    const csrf = await api(owner, 'POST', '/keys', { environment: 'sandbox' }, { noCsrf: true })
    assert.equal(csrf.json?.error?.code, 'csrf_rejected')
  }

  // ---- exactly these entries, no more, no fewer ----
  const added = (await entries(tg)).filter((e) => !seen.has(`${e.chain_id}:${e.seq}`))
  const count = (xs: Entry[]) => {
    const m: Record<string, number> = {}
    for (const e of xs) m[`${e.action}/${e.outcome}`] = (m[`${e.action}/${e.outcome}`] ?? 0) + 1
    return m
  }
  assert.deepEqual(count(added), {
    'authn_login_link_created/success': 3 + 2, // three links for the owner + the two seeded orgs' first OWNERs
    'authn_login_success/success': 3,
    'authn_login_fail/failure': 3,
    'session_logout/success': 3,
    'authn_token_created/success': 3 + 3, // created, and the replacement minted by each rotation
    'authn_token_rotated/success': 3,
    'authn_token_revoked/success': 3,
    'user_invited/success': 3,
    'privilege_permissions_changed/success': 3,
    'user_removed_from_org/success': 3,
    'sso_config_changed/success': 3,
    'ops_seed/success': 3,
    'org_created/success': 2,
    'user_created/success': 2 * 4,
    'authz_fail/denied': 3,
    'malicious_csrf/denied': 3,
  })
  // The owner's own events land in the owner's org chain; anonymous failures and operator calls in the instance chain.
  for (const e of added) {
    if (['authn_login_fail', 'ops_seed'].includes(e.action)) assert.equal(e.chain_id, 'instance', `${e.action} chain`)
    else if (!['org_created', 'user_created'].includes(e.action) && !(e.action === 'authn_login_link_created' && e.actor_type === 'operator' && e.chain_id !== orgId)) assert.equal(e.chain_id, orgId, `${e.action} chain`)
  }

  // ---- every entry is complete and names people only by pseudonym ----
  const pseudonyms = new Map<string, string>()
  for (const u of people) pseudonyms.set(await tg.deps.keyring.pseudonym(orgId, u), u)
  const seededRequest = added.filter((e) => e.action === 'ops_seed')
  for (const e of added) {
    const label = `${e.chain_id}#${e.seq} ${e.action}`
    assert.ok(['user', 'api_key', 'operator', 'system', 'anonymous'].includes(e.actor_type), `${label}: actor type ${e.actor_type}`)
    if (e.actor_type === 'user' || e.actor_type === 'api_key') {
      assert.match(e.actor_id ?? '', /^[A-Za-z0-9_-]{22}$/, `${label}: actor is a 128-bit pseudonym`)
      assert.ok(pseudonyms.has(e.actor_id!), `${label}: the actor is the org's pseudonym of a known person`)
    } else {
      // The operator (one shared secret) and anonymous callers have no identity to pseudonymize.
      assert.equal(e.actor_id, null, `${label}: ${e.actor_type} actor id`)
    }
    assert.ok(e.target_type, `${label}: target type`)
    if (!e.action.startsWith('ops_')) assert.ok(e.target_id, `${label}: target id`)
    assert.ok(['success', 'failure', 'denied'].includes(e.outcome), `${label}: outcome`)
    assert.ok(Number.isInteger(e.at) && new Date(e.at).toISOString().endsWith('Z'), `${label}: time`)
    // Entries made through HTTP carry that request's id; the three links issued through the CLI path have none to carry.
    const viaCli = e.action === 'authn_login_link_created' && e.chain_id === orgId
    if (!viaCli) assert.match(e.request_id ?? '', /^req_[0-9A-Za-z]+$/, `${label}: request id`)
    for (const raw of [...people, ...emails]) {
      assert.ok(!JSON.stringify(e).includes(raw), `${label}: names a person by raw id or email`)
    }
  }
  // The seed's own entries carry the operator call's request id.
  const seedRequestIds = new Set(seededRequest.map((e) => e.request_id))
  for (const e of added.filter((x) => ['org_created', 'user_created'].includes(x.action))) assert.ok(seedRequestIds.has(e.request_id), `${e.action}: made by an operator call, carries its request id`)

  // The API presents times in UTC.
  const viaApi = (await api(owner, 'GET', '/audit?limit=1000')).json.entries as Array<{ at: string }>
  assert.ok(viaApi.length > 0 && viaApi.every((e) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(e.at)), 'audit times are ISO 8601 UTC')

  // AUDIT-3: every chain verifies.
  const reports = await verifyChains(tg.deps.db.db)
  assert.ok(reports.length >= 4)
  assert.deepEqual(reports.filter((r) => r.broken), [])
})

for (const variant of [{ name: 'SQLite', postgres: false }, { name: 'PostgreSQL', postgres: true }]) {
  test(`AUDIT-1 D8 T82: with the audit log unwritable, every admin operation is refused (5xx, nothing said about why) and changes nothing (${variant.name})`, async (t) => {
    const tg = await startApp(t, { postgres: variant.postgres, env: { TOLLGATE_OPS_SECRET: OPS_SECRET } })
    if (!tg) return
    const db = tg.deps.db.db
    const orgId = (await tg.deps.orgs.create('fail-closed', { type: 'operator', id: null }))!.id
    const spareOrg = (await tg.deps.orgs.create('fail-closed-spare', { type: 'operator', id: null }))!.id
    const owner = await person(tg, orgId, 'OWNER')
    const analyst = await person(tg, orgId, 'ANALYST')
    const routes = apiRoutes(tg.app.printRoutes({ commonPrefix: false })).filter((r) => !r.startsWith('GET ') && !r.startsWith('HEAD '))
    assert.deepEqual(routes.filter((r) => !(r in VALID)), [], 'state-changing routes without a fixture in fixtures.ts')
    const valid = new Map<string, Valid>()
    for (const r of routes) valid.set(r, await VALID[r]!({ tg, owner, orgId, spareOrg }))

    const before = await tableState(tg)
    const REASON = 'AUDIT_STORE_DOWN_7f3a'
    if (tg.deps.db.dialect === 'sqlite') {
      await sql.raw(`CREATE TRIGGER audit_down BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, '${REASON}'); END`).execute(db)
    } else {
      await sql.raw(`CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${REASON}'; END $$`).execute(db)
      await sql.raw('CREATE TRIGGER audit_down BEFORE INSERT ON audit_event FOR EACH ROW EXECUTE FUNCTION audit_down()').execute(db)
    }
    // Positive control: the audit log really is unwritable.
    await assert.rejects(db.insertInto('audit_event').values({ chain_id: 'probe', seq: 1, at: 0, actor_type: 'system', actor_id: null, action: 'probe', target_type: null, target_id: null, outcome: 'success', request_id: null, prev_hash: '0'.repeat(64), hash: '0'.repeat(64) }).execute(), new RegExp(REASON))

    const failures: string[] = []
    const refused = (what: string, r: { status: number; text: string }) => {
      if (r.status < 500) failures.push(`${what}: ${r.status} ${r.text.slice(0, 160)}`)
      if (new RegExp(`${REASON}|sqlite|postgres|trigger|audit_event|insert|stack|\\bat \\w`, 'i').test(r.text)) failures.push(`${what}: the body says why: ${r.text.slice(0, 200)}`)
    }
    /**
     * Routes that write nothing — starting a WebAuthn ceremony, validating a document, a
     * registration or step-up without a ceremony in flight — have no effect to refuse; they
     * must still change nothing (checked below with everything else).
     */
    const WRITES_NOTHING = new Set(['POST /api/me/passkeys/options', 'POST /api/me/step-up/options', 'POST /api/orgs/:org/policies/validate', 'POST /api/me/passkeys'])
    for (const route of routes) {
      const v = valid.get(route)!
      const [method, template] = route.split(' ') as [string, string]
      const path = template.replace(':org', orgId).replace(/:([a-z]+)/g, (_, n: string) => encodeURIComponent(v.params[n]!))
      const r = await call(tg, owner, method, path, v.body)
      if (WRITES_NOTHING.has(route)) {
        if (r.status >= 500) refused(route, r)
      } else {
        refused(route, r)
      }
    }
    // Denied access and CSRF blocks are audited too: unaudited, they are not answered as usual either.
    refused('denied access', await call(tg, analyst, 'POST', `/api/orgs/${orgId}/keys`, { environment: 'sandbox' }))
    refused('CSRF block', await call(tg, owner, 'POST', `/api/orgs/${orgId}/keys`, { environment: 'sandbox' }, { noCsrf: true }))
    const ops = await fetch(`${tg.url}/ops/seed`, { method: 'POST', headers: { 'x-backup-secret': OPS_SECRET } })
    refused('operator call', { status: ops.status, text: await ops.text() })

    assert.deepEqual(failures, [], 'admin operations went ahead (or said why) without an audit log')
    assert.deepEqual(stateDiff(before, await tableState(tg)), [], 'an admin operation took effect without its audit entry')

    // And once the audit log is back, the same operations work again.
    await sql.raw('DROP TRIGGER audit_down' + (tg.deps.db.dialect === 'postgres' ? ' ON audit_event' : '')).execute(db)
    assert.equal((await call(tg, owner, 'POST', `/api/orgs/${orgId}/keys`, { environment: 'sandbox' })).status, 201)
    assert.deepEqual((await verifyChains(db)).filter((r) => r.broken), [])
  })
}
