// LIMIT-2 (D2): the Idempotency-Key on the AI endpoints and the admin API — T20 (concurrent
// duplicates execute exactly once, across two instances, plus a scheduler property test over the
// store), T21 (the status table), T22 (replay fidelity, what is remembered, 24 h expiry and the
// sweep), T23 (tenant scoping), T24 (crash after claim), T25 (durability across Redis and app
// restarts) and transit-only (the table never holds the key or the request).
//
// Documented behaviour these tests pin down:
// - the header is an RFC 9651 sf-string or a bare token; the quoted and the bare spelling of the
//   same value are THE SAME key (`abc` ≡ `"abc"`); values are case-sensitive;
// - scope = (org, credential, method, route): another API key of the same org, or another person,
//   has independent keys; the same person in two orgs too;
// - remembered: 2xx and 403; forgotten (the key may be reused): 400, 404, 409, 422, 429, 5xx;
// - an AI replay returns the recorded decision (no output), never calls the provider, writes no
//   new decision record; an admin replay returns the stored response byte for byte, except that
//   a key's `secret` is null; a replayed AI block (403) is the first answer byte for byte, the
//   policy's reason code included (the decision record keeps it);
// - the key is settled before the answer leaves: a retry sent the moment an answer arrives is
//   replayed (or, after a forgotten outcome, executes) — never a 409 for a finished request.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import fc from 'fast-check'
import { Kysely, SqliteDialect, type Dialect, type Driver } from 'kysely'
import { ERRORS } from '../../src/core/errors.ts'
import { unseal } from '../../src/identity/seal.ts'
import { claimIdempotency } from '../../src/idempotency/claim.ts'
import { runUnderClaim } from '../../src/idempotency/context.ts'
import { IdempotencyStore, type IdempotencyScope, type Recorded } from '../../src/idempotency/store.ts'
import { openSqlite, withStatementCache } from '../../src/storage/sqlite.ts'
import { migrateToLatest } from '../../src/storage/migrations/index.ts'
import type { DB } from '../../src/storage/schema.ts'
import type { PolicyDB } from '../../src/policy/policies.repo.ts'
import { call, person, type Person } from '../api/world.ts'
import { ManualClock } from '../fakes/clock.ts'
import { startMockUpstream, upstreamEnv, type MockUpstream } from '../fakes/upstreams.ts'
import { orgWithKeys, startApp, testConfig, type AppOptions, type TestApp } from '../helpers/app.ts'
import { encodingsOf } from '../helpers/scan.ts'
import { freshPostgres, needService } from '../helpers/services.ts'
import { ai, aiBody, auditCount, decisionCount, FULL, gate, ownRedis, rawRequest, until, type Res } from './idempotency-world.ts'

/** T20 trials (the research plan's PR level is 20, full 200). */
const TRIALS = FULL ? 200 : 3
const BURST = 50
const PROPERTY_RUNS = FULL ? 1000 : 100
/** T23: key values reused by two orgs. */
const SHARED_KEYS = FULL ? 100 : 20

const rnd = () => randomBytes(6).toString('hex')
const SLOW = 'claude-sonnet-4-5-slow'

interface World {
  readonly mock: MockUpstream
  readonly tg: TestApp
  readonly orgId: string
  /** A production gateway key (reaches the mock upstream) and its id. */
  readonly key: string
  readonly keyId: string
}

/** One app whose production keys reach a mock upstream, with one org. */
async function world(t: TestContext, opts: AppOptions = {}): Promise<World | undefined> {
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const tg = await startApp(t, { ...opts, env: { ...upstreamEnv(mock), ...opts.env } })
  if (!tg) return undefined
  const o = await orgWithKeys(tg.deps)
  return { mock, tg, orgId: o.org.id, key: o.production, keyId: o.productionId }
}

/** An admin POST as `who`, with an Idempotency-Key when `idem` is given. */
async function adminPost(tg: TestApp, who: Person, path: string, body: unknown, idem?: string) {
  const r = await call(tg, who, 'POST', path, body, idem === undefined ? {} : { headers: { 'idempotency-key': idem } })
  return { ...r, replayed: r.headers.get('idempotent-replayed') === 'true' }
}

/** Anthropic-format errors carry the code only through the message: the table's message identifies it. */
function assertCode(r: Res | { status: number; text: string }, code: keyof typeof ERRORS, what: string): void {
  assert.equal(r.status, ERRORS[code].status, `${what}: status (${r.text})`)
  assert.ok(r.text.includes(ERRORS[code].message) || r.text.includes(`"${code}"`), `${what}: ${code} (${r.text})`)
}

async function idemRows(tg: TestApp, orgId?: string) {
  let q = tg.deps.db.db.selectFrom('idempotency').selectAll()
  if (orgId !== undefined) q = q.where('org_id', '=', orgId)
  return q.execute()
}

async function count(tg: TestApp, table: 'invite' | 'api_key', orgId: string): Promise<number> {
  const r = await tg.deps.db.db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).where('org_id', '=', orgId).executeTakeFirstOrThrow()
  return Number(r.n)
}

// ---------------------------------------------------------------------------------------------
// T21: the status table

test('LIMIT-2 T21: status table — missing key, malformed keys (400), quoted ≡ bare, other body or route (422), in flight (409), per-credential scope', async (t) => {
  const w = await world(t)
  if (!w) return
  const { tg, mock, orgId, key } = w
  const owner = await person(tg, orgId, 'OWNER')
  const invites = `/api/orgs/${orgId}/invites`
  const body = aiBody('anthropic', `t21 ${rnd()}`)
  const executions = async () => ({ upstream: mock.received.length, decisions: await decisionCount([tg], orgId), invites: await count(tg, 'invite', orgId) })
  const start = await executions()

  // 1. No header: no idempotency at all — two identical requests are two executions, no rows.
  for (let i = 0; i < 2; i++) {
    const r = await ai(tg, key, body)
    assert.equal(r.status, 200, r.text)
    assert.equal(r.replayed, false)
  }
  assert.equal(mock.received.length, start.upstream + 2, 'no key → each request executes')
  assert.equal((await idemRows(tg)).length, 0, 'no key → no idempotency record')

  // 2. Malformed values → 400 idempotency_key_invalid, on both APIs; nothing executes or is recorded.
  const malformed: Record<string, string> = {
    empty: '', 'empty sf-string': '""', '256 characters': 'k'.repeat(256), '256 characters quoted': `"${'k'.repeat(256)}"`,
    'unbalanced quote (open)': '"abc', 'unbalanced quote (close)': 'abc"', 'stray inner quote': '"a"b"', 'bad escape': '"a\\nb"',
    'space in a bare token': 'a b', 'two values (a list)': 'a, b', 'non-ASCII': 'clé',
  }
  const before = await executions()
  for (const [what, value] of Object.entries(malformed)) {
    // fetch refuses non-ByteString headers: non-ASCII goes on the raw socket below.
    if (/[^\x00-\x7f]/.test(value)) continue
    assertCode(await ai(tg, key, body, { idem: value }), 'idempotency_key_invalid', `AI, ${what}`)
    const a = await adminPost(tg, owner, invites, { email: `m-${rnd()}@example.com`, role: 'MEMBER' }, value)
    assertCode(a, 'idempotency_key_invalid', `admin, ${what}`)
  }
  // Control characters and other raw bytes: written on a socket (fetch would refuse them).
  const raw: Record<string, string> = { 'tab inside': 'a\tb', 'tab inside quotes': '"a\tb"', 'obs-text (latin-1 é)': 'cl\xe9', 'obs-text quoted': '"cl\xe9"' }
  for (const [what, value] of Object.entries(raw)) {
    const r = await rawRequest(tg.url, 'POST', '/v1/messages', [['content-type', 'application/json'], ['authorization', `Bearer ${key}`], ['idempotency-key', value]], JSON.stringify(body))
    assert.equal(r.status, 400, `AI, ${what}: ${r.text}`)
    assert.ok(r.text.includes(ERRORS.idempotency_key_invalid.message), `AI, ${what}: idempotency_key_invalid (${r.text})`)
  }
  // NUL, other C0 controls and DEL never reach Tollgate: Node's HTTP parser refuses the request (400).
  for (const value of ['a\x01b', 'a\x00b', 'a\x1bb', 'a\x7fb', '"a\x7fb"']) {
    const r = await rawRequest(tg.url, 'POST', '/v1/messages', [['content-type', 'application/json'], ['authorization', `Bearer ${key}`], ['idempotency-key', value]], JSON.stringify(body))
    assert.equal(r.status, 400, `control ${JSON.stringify(value)}`)
  }
  assert.deepEqual(await executions(), before, 'malformed keys: 0 executions, 0 decision records, 0 invites')
  assert.equal((await idemRows(tg)).length, 0)

  // Boundaries: 255 characters is accepted, bare and quoted (then replayed under the same key).
  const k255 = `${rnd()}${'k'.repeat(243)}`
  assert.equal(k255.length, 255)
  const first255 = await ai(tg, key, body, { idem: k255 })
  assert.equal(first255.status, 200, first255.text)
  assert.equal(first255.replayed, false)
  const again255 = await ai(tg, key, body, { idem: `"${k255}"` })
  assert.equal(again255.replayed, true, '255 characters quoted = the same key, replayed')

  // 3. Quoted vs bare: the same value is the same key (sf-string unwrapped, escapes decoded).
  const qb = `qb-${rnd()}`
  const bare = await ai(tg, key, body, { idem: qb })
  assert.equal(bare.replayed, false)
  const quoted = await ai(tg, key, body, { idem: `"${qb}"` })
  assert.equal(quoted.status, 200)
  assert.equal(quoted.replayed, true, '`abc` and `"abc"` are the same key')
  const spaced = await ai(tg, key, body, { idem: `  ${qb}  ` })
  assert.equal(spaced.replayed, true, 'surrounding whitespace is not part of the key')
  // …and values are case-sensitive: another case is another key.
  const upper = await ai(tg, key, body, { idem: qb.toUpperCase() })
  assert.equal(upper.status, 200)
  assert.equal(upper.replayed, false, 'keys are case-sensitive')
  // An escaped sf-string is a key of its own, replayed only with the same value.
  const esc = `"e-${rnd()}\\"x\\\\"`
  assert.equal((await ai(tg, key, body, { idem: esc })).replayed, false)
  assert.equal((await ai(tg, key, body, { idem: esc })).replayed, true)

  // Canonical JSON: the same request with keys reordered and other spacing is the same request.
  const canon = `canon-${rnd()}`
  assert.equal((await ai(tg, key, body, { idem: canon })).replayed, false)
  const reordered = Object.fromEntries(Object.entries(body).reverse())
  const again = await ai(tg, key, undefined, { idem: canon, raw: JSON.stringify(reordered, null, 2) })
  assert.equal(again.replayed, true, 'key order and whitespace do not change the fingerprint')

  // 4. Same key, different body → 422 (AI and admin); the first outcome is still replayed after.
  const k4 = `body-${rnd()}`
  assert.equal((await ai(tg, key, body, { idem: k4 })).status, 200)
  const u4 = mock.received.length
  assertCode(await ai(tg, key, aiBody('anthropic', 'another prompt'), { idem: k4 }), 'idempotency_conflict', 'AI, other body')
  assertCode(await ai(tg, key, { ...body, max_tokens: 33 }, { idem: k4 }), 'idempotency_conflict', 'AI, one field changed')
  assert.equal(mock.received.length, u4, '422: no provider call')
  assert.equal((await ai(tg, key, body, { idem: k4 })).replayed, true, 'after a 422 the original is still replayed')
  const a4 = `abody-${rnd()}`
  const inv = { email: `a4-${rnd()}@example.com`, role: 'MEMBER' }
  assert.equal((await adminPost(tg, owner, invites, inv, a4)).status, 201)
  const nInv = await count(tg, 'invite', orgId)
  assertCode(await adminPost(tg, owner, invites, { ...inv, role: 'ADMIN' }, a4), 'idempotency_conflict', 'admin, other body')
  assert.equal(await count(tg, 'invite', orgId), nInv, '422: nothing created')

  // 5. Same key on another route → 422, even with a body the other route accepts.
  const k5 = `route-${rnd()}`
  assert.equal((await ai(tg, key, body, { idem: k5 })).status, 200)
  const other = await ai(tg, key, aiBody('openai', 'route test'), { idem: k5, wire: 'openai' })
  assertCode(other, 'idempotency_conflict', 'AI, /v1/chat/completions after /v1/messages')
  const same = await ai(tg, key, body, { idem: k5, wire: 'native' })
  assertCode(same, 'idempotency_conflict', 'AI, /v1/intercept with the same body')
  const a5 = `aroute-${rnd()}`
  assert.equal((await adminPost(tg, owner, invites, { email: `a5-${rnd()}@example.com`, role: 'MEMBER' }, a5)).status, 201)
  const nKeys = await count(tg, 'api_key', orgId)
  assertCode(await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, { environment: 'sandbox' }, a5), 'idempotency_conflict', 'admin, /keys after /invites')
  assert.equal(await count(tg, 'api_key', orgId), nKeys, '422 on another route: no key created')

  // 6. Same key while the first is in flight → 409 (AI: a slow stream; admin: the handler paused).
  const k6 = `flight-${rnd()}`
  const slow = aiBody('anthropic', `in flight ${rnd()}`, { stream: true, model: SLOW })
  const u6 = mock.received.length
  const firstP = ai(tg, key, slow, { idem: k6 })
  await until('the first request to reach the upstream', () => mock.received.length > u6)
  const dup = await ai(tg, key, slow, { idem: k6 })
  assertCode(dup, 'idempotency_in_flight', 'AI, duplicate while streaming')
  const first = await firstP
  assert.equal(first.status, 200)
  assert.ok(first.text.includes('message_stop'), 'the first request streamed to the end')
  assert.equal(mock.received.length, u6 + 1, 'the 409 made no provider call')
  const after = await ai(tg, key, slow, { idem: k6 })
  assert.equal(after.status, 200)
  assert.equal(after.replayed, true, 'after completion: replay')

  const paused = gate()
  const reached = gate()
  const send = tg.deps.mail.send.bind(tg.deps.mail)
  tg.deps.mail.send = async (m) => {
    reached.open()
    await paused.promise
    return send(m)
  }
  t.after(() => {
    tg.deps.mail.send = send
  })
  const a6 = `aflight-${rnd()}`
  const inv6 = { email: `a6-${rnd()}@example.com`, role: 'MEMBER' }
  const firstAdmin = adminPost(tg, owner, invites, inv6, a6)
  await reached.promise
  assertCode(await adminPost(tg, owner, invites, inv6, a6), 'idempotency_in_flight', 'admin, duplicate while the handler runs')
  paused.open()
  const fa = await firstAdmin
  assert.equal(fa.status, 201, fa.text)
  tg.deps.mail.send = send
  const fa2 = await adminPost(tg, owner, invites, inv6, a6)
  assert.deepEqual([fa2.status, fa2.replayed, fa2.text], [201, true, fa.text], 'after completion: byte-identical replay')

  // 7. Another credential of the same org: independent keys (same value, same or other body).
  const second = await tg.deps.keys.create({ orgId, environment: 'production', actor: { type: 'operator', id: null } })
  const k7 = `cred-${rnd()}`
  const u7 = mock.received.length
  const byFirst = await ai(tg, key, body, { idem: k7 })
  const bySecond = await ai(tg, second.key, body, { idem: k7 })
  assert.deepEqual([byFirst.status, byFirst.replayed, bySecond.status, bySecond.replayed], [200, false, 200, false])
  assert.notEqual(bySecond.headers.get('x-tollgate-decision'), byFirst.headers.get('x-tollgate-decision'))
  assert.equal(mock.received.length, u7 + 2, 'each credential executes its own request')
  const k7b = `credb-${rnd()}`
  assert.equal((await ai(tg, key, body, { idem: k7b })).status, 200)
  const otherBody = await ai(tg, second.key, aiBody('anthropic', 'different'), { idem: k7b })
  assert.deepEqual([otherBody.status, otherBody.replayed], [200, false], 'another credential with another body: no 422, executes')
  // Admin: another person of the same org has independent keys.
  const owner2 = await person(tg, orgId, 'OWNER')
  const a7 = `acred-${rnd()}`
  const mine = await adminPost(tg, owner, invites, { email: `a7-${rnd()}@example.com`, role: 'MEMBER' }, a7)
  const theirs = await adminPost(tg, owner2, invites, { email: `a7b-${rnd()}@example.com`, role: 'MEMBER' }, a7)
  assert.deepEqual([mine.status, mine.replayed, theirs.status, theirs.replayed], [201, false, 201, false])

  // 409, 422 and 400 are answers, not decisions: the only decision records are the executions.
  const rows = await tg.deps.db.db.selectFrom('decision').select(['status', 'error_code']).where('org_id', '=', orgId).execute()
  assert.deepEqual(rows.filter((r) => r.status !== 200), [], 'no decision record for a 400/409/422 idempotency answer')
  assert.equal(rows.length, mock.received.length - start.upstream, 'one decision record per provider call, none per replay or refusal')
})

// ---------------------------------------------------------------------------------------------
// T22: replay fidelity, what is remembered, expiry

test('LIMIT-2 T22: replays are byte-identical (AI decisions in three formats, admin responses, a remembered 403); no provider call, no new record', async (t) => {
  const w = await world(t)
  if (!w) return
  const { tg, mock, orgId, key } = w

  // AI, each wire format: 1 execution, then 5 replays — the recorded decision, never the output.
  for (const wire of ['anthropic', 'openai', 'native'] as const) {
    for (const stream of [false, true]) {
      const k = `fid-${wire}-${stream}-${rnd()}`
      const body = aiBody(wire, `fidelity ${wire} ${rnd()}`, { stream })
      const first = await ai(tg, key, body, { wire, idem: k })
      assert.equal(first.status, 200, first.text)
      assert.equal(first.replayed, false)
      const decisionId = first.headers.get('x-tollgate-decision')!
      const u = mock.received.length
      const d = await decisionCount([tg], orgId)
      const replays: Res[] = []
      for (let i = 0; i < 5; i++) replays.push(await ai(tg, key, body, { wire, idem: k }))
      for (const r of replays) {
        assert.deepEqual([r.status, r.replayed, r.headers.get('x-tollgate-decision')], [200, true, decisionId], `${wire} stream=${stream}: replay status, header, decision`)
        assert.equal(r.text, replays[0]!.text, `${wire} stream=${stream}: replays byte-identical`)
        assert.match(r.headers.get('content-type') ?? '', /^application\/json/, 'a replay is one JSON body, even of a stream')
      }
      const j = JSON.parse(replays[0]!.text)
      if (wire === 'anthropic') assert.deepEqual([j.id, j.content], [`msg_${decisionId}`, []])
      if (wire === 'openai') assert.deepEqual([j.id, j.choices[0].message.content], [`chatcmpl-${decisionId}`, null])
      if (wire === 'native') assert.deepEqual([j.id, j.replayed, j.output], [decisionId, true, null])
      assert.ok(!replays[0]!.text.includes('upstream.'), 'no output in a replay (the mock answers "… upstream.")')
      assert.equal(mock.received.length, u, `${wire}: 0 provider calls for 5 replays`)
      assert.equal(await decisionCount([tg], orgId), d, `${wire}: 0 new decision records for 5 replays`)
    }
  }

  // AI, a remembered 403: the org's sandbox policy blocks everything; the block is replayed, not re-evaluated.
  const blocked = await orgWithKeys(tg.deps)
  const draft = await tg.deps.policies.createDraft({ orgId: blocked.org.id, document: { version: 1, default_action: 'allow', rules: [{ id: 'block-all', when: {}, action: 'block', reason: 'blocked_for_test' }] }, actor: { type: 'operator', id: null } })
  await tg.deps.policies.activate({ orgId: blocked.org.id, id: draft.id, actor: { type: 'operator', id: null } })
  for (const wire of ['anthropic', 'openai', 'native'] as const) {
    const kb = `block-${wire}-${rnd()}`
    const body = aiBody(wire, `blocked ${rnd()}`, { model: wire === 'anthropic' ? 'claude-sonnet-4-5' : wire === 'openai' ? 'gpt-4o' : 'local' })
    const first = await ai(tg, blocked.sandbox, body, { wire, idem: kb })
    assertCode(first, 'blocked_by_policy', `${wire}: the policy blocks`)
    assert.ok(first.text.includes('blocked_for_test'), `${wire}: the first answer names the policy's reason`)
    const d = await decisionCount([tg], blocked.org.id)
    const replays: Res[] = []
    for (let i = 0; i < 5; i++) replays.push(await ai(tg, blocked.sandbox, body, { wire, idem: kb }))
    for (const r of replays) {
      assert.deepEqual([r.status, r.replayed, r.headers.get('x-tollgate-decision')], [403, true, replays[0]!.headers.get('x-tollgate-decision')], `${wire}: 403 replayed`)
      assert.equal(r.text, replays[0]!.text, `${wire}: 403 replays byte-identical`)
    }
    // The replay is the original answer, except for the policy's reason code: the decision record
    // keeps the rule id, not the reason, so a replayed block cannot repeat "(reason: …)".
    assert.ok(first.text.includes('blocked_for_test'), `${wire}: the first answer names the reason`)
    assert.equal(replays[0]!.text, first.text, `${wire}: the 403 replay equals the original answer, reason included`)
    assert.equal(await decisionCount([tg], blocked.org.id), d, `${wire}: 0 new decision records for 5 replays of a block`)
  }

  // Admin: an invite — 5 replays equal the original status and body byte for byte.
  const owner = await person(tg, orgId, 'OWNER')
  const invites = `/api/orgs/${orgId}/invites`
  const inv = { email: `fid-${rnd()}@example.com`, role: 'ANALYST' }
  const k = `afid-${rnd()}`
  const nAudit = await auditCount(tg, orgId, 'user_invited')
  const first = await adminPost(tg, owner, invites, inv, k)
  assert.equal(first.status, 201, first.text)
  for (let i = 0; i < 5; i++) {
    const r = await adminPost(tg, owner, invites, inv, k)
    assert.deepEqual([r.status, r.replayed, r.text], [201, true, first.text], `admin replay ${i + 1} byte-identical`)
    assert.equal(r.headers.get('content-type'), first.headers.get('content-type'))
  }
  assert.equal(await auditCount(tg, orgId, 'user_invited'), nAudit + 1, '1 execution for 6 requests (audit)')
  assert.equal((await tg.deps.invites.pending(orgId)).filter((i) => i.email === inv.email).length, 1, '1 invite for 6 requests')

  // A remembered 403: a MEMBER asks for a key for someone else (refused by the handler after the claim).
  const member = await person(tg, orgId, 'MEMBER')
  const k403 = `a403-${rnd()}`
  const forbidden = { environment: 'sandbox', user_id: owner.userId }
  const nKeys = await count(tg, 'api_key', orgId)
  const refused = await adminPost(tg, member, `/api/orgs/${orgId}/keys`, forbidden, k403)
  assertCode(refused, 'forbidden', 'MEMBER creating a key for another member')
  for (let i = 0; i < 5; i++) {
    const r = await adminPost(tg, member, `/api/orgs/${orgId}/keys`, forbidden, k403)
    assert.deepEqual([r.status, r.replayed, r.text], [403, true, refused.text], `403 replay ${i + 1} byte-identical`)
  }
  // Even once the member may do it (promoted to ADMIN), the key answers what it answered.
  await tg.deps.members.setRole(tg.deps.db.db, orgId, member.userId, 'ADMIN')
  const still = await adminPost(tg, member, `/api/orgs/${orgId}/keys`, forbidden, k403)
  assert.deepEqual([still.status, still.replayed, still.text], [403, true, refused.text], 'the 403 is remembered under its key')
  assert.equal(await count(tg, 'api_key', orgId), nKeys, 'no key created')

  // A large admin response (a policy with many rules) replays byte for byte too.
  const rules = Array.from({ length: 120 }, (_, i) => ({ id: `rule-${i}-${'x'.repeat(20)}`, when: { domains: ['coding'] }, action: 'allow', reason: `reason_number_${i}_for_this_rule` }))
  const doc = { version: 1, default_action: 'allow', rules }
  const kp = `apol-${rnd()}`
  const created = await adminPost(tg, owner, `/api/orgs/${orgId}/policies`, { document: doc }, kp)
  assert.equal(created.status, 201, created.text.slice(0, 300))
  assert.ok(created.text.length > 10_000, `a large response (${created.text.length} bytes)`)
  const big = await adminPost(tg, owner, `/api/orgs/${orgId}/policies`, { document: doc }, kp)
  assert.equal(big.status, 201)
  assert.equal(big.replayed, true)
  assert.equal(big.text.length, created.text.length, 'large replay: same length')
  assert.equal(big.text, created.text, 'large replay: byte-identical')
})

test('LIMIT-2 T22: failures that are not decisions are forgotten — a 400 (or 404) leaves the key free for the fixed request', async (t) => {
  const w = await world(t)
  if (!w) return
  const { tg, mock, orgId, key } = w
  const owner = await person(tg, orgId, 'OWNER')

  // AI: an invalid request (no messages) → 400; the same key with the fixed request executes.
  const k = `fix-${rnd()}`
  const good = aiBody('anthropic', `fixed ${rnd()}`)
  const bad = { ...good, messages: undefined }
  assertCode(await ai(tg, key, bad, { idem: k }), 'invalid_request', 'invalid AI request')
  assertCode(await ai(tg, key, bad, { idem: k }), 'invalid_request', 'the same invalid request again: validated again, not replayed')
  const u = mock.received.length
  const fixed = await ai(tg, key, good, { idem: k })
  assert.deepEqual([fixed.status, fixed.replayed], [200, false], 'the fixed request executes under the same key (no 422)')
  assert.equal(mock.received.length, u + 1)
  assert.equal((await ai(tg, key, good, { idem: k })).replayed, true, 'and is remembered from then on')
  // An unknown model → 404, forgotten too.
  const k404 = `fix404-${rnd()}`
  assertCode(await ai(tg, key, { ...good, model: 'no-such-model' }, { idem: k404 }), 'model_not_found', 'unknown model')
  assert.deepEqual([(await ai(tg, key, good, { idem: k404 })).status], [200])
  // An upstream failure (502) is forgotten: the client may retry with the same key.
  const k502 = `fix502-${rnd()}`
  const failing = aiBody('anthropic', 'upstream fails', { model: 'claude-sonnet-4-5-fail-500' })
  const f1 = await ai(tg, key, failing, { idem: k502 })
  assert.ok(f1.status >= 500, `upstream failure ${f1.status}`)
  const f2 = await ai(tg, key, failing, { idem: k502 })
  assert.equal(f2.replayed, false, 'a transient failure is retried, not replayed')

  // Admin: a handler-level 400 (unparseable email) then the fixed request with the same key.
  const invites = `/api/orgs/${orgId}/invites`
  const ka = `afix-${rnd()}`
  assertCode(await adminPost(tg, owner, invites, { email: 'not an address', role: 'MEMBER' }, ka), 'invalid_request', 'invalid email')
  const ok = await adminPost(tg, owner, invites, { email: `fixed-${rnd()}@example.com`, role: 'MEMBER' }, ka)
  assert.deepEqual([ok.status, ok.replayed], [201, false], 'admin: the fixed request executes under the same key')
  // A schema failure (refused before the claim) leaves the key free as well.
  const ks = `aschema-${rnd()}`
  assertCode(await adminPost(tg, owner, invites, { email: `s-${rnd()}@example.com`, role: 'KING' }, ks), 'invalid_request', 'schema failure')
  const ok2 = await adminPost(tg, owner, invites, { email: `s2-${rnd()}@example.com`, role: 'MEMBER' }, ks)
  assert.deepEqual([ok2.status, ok2.replayed], [201, false])
  // No released claim is left behind.
  assert.deepEqual((await idemRows(tg, orgId)).filter((r) => r.state !== 'done'), [], 'no in-flight row left')
})

test('LIMIT-2 T22: expiry — with TTL 2 s a key is replayed until the TTL and executes anew at TTL + 1 s; the sweep job removes expired rows', async (t) => {
  const clock = new ManualClock()
  const w = await world(t, { clock, env: { TOLLGATE_IDEMPOTENCY_TTL_S: '2' } })
  if (!w) return
  const { tg, mock, orgId, key } = w
  assert.equal(tg.deps.idempotency.settings.ttlMs, 2000)
  const owner = await person(tg, orgId, 'OWNER')

  const k = `ttl-${rnd()}`
  const body = aiBody('anthropic', `ttl ${rnd()}`)
  const first = await ai(tg, key, body, { idem: k })
  assert.deepEqual([first.status, first.replayed], [200, false])
  const ka = `attl-${rnd()}`
  const keyBody = { environment: 'sandbox', label: 'ttl' }
  const created = await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, keyBody, ka)
  assert.equal(created.status, 201, created.text)

  clock.advance(1000) // within the TTL
  assert.equal((await ai(tg, key, body, { idem: k })).replayed, true, 'replayed at +1 s')
  assert.equal((await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, keyBody, ka)).replayed, true, 'admin replayed at +1 s')

  clock.advance(2000) // +3 s: TTL + 1 s
  const u = mock.received.length
  const d = await decisionCount([tg], orgId)
  const again = await ai(tg, key, body, { idem: k })
  assert.deepEqual([again.status, again.replayed], [200, false], 'after TTL + 1 s: a new execution')
  assert.notEqual(again.headers.get('x-tollgate-decision'), first.headers.get('x-tollgate-decision'))
  assert.equal(mock.received.length, u + 1, 'count + 1 (provider)')
  assert.equal(await decisionCount([tg], orgId), d + 1, 'count + 1 (decision records)')
  const nKeys = await count(tg, 'api_key', orgId)
  const recreated = await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, keyBody, ka)
  assert.deepEqual([recreated.status, recreated.replayed], [201, false], 'admin: a new execution after the TTL')
  assert.notEqual(recreated.json.key.id, created.json.key.id)
  assert.equal(typeof recreated.json.secret, 'string', 'a new execution shows its new secret')
  assert.equal(await count(tg, 'api_key', orgId), nKeys + 1)

  // Sweep: the 2 fresh rows expire; a row written after the jump stays.
  const live = (await idemRows(tg)).length
  assert.equal(live, 2)
  clock.advance(2001)
  assert.equal((await ai(tg, key, body, { idem: `fresh-${rnd()}` })).status, 200)
  const swept = await tg.deps.jobs.runAll()
  assert.equal(swept['idempotency_expired'], 2, 'the sweep removed the 2 expired rows')
  const left = await idemRows(tg)
  assert.equal(left.length, 1, 'the unexpired row stays')
  assert.ok(left[0]!.expires_at > clock.now())
})

test('LIMIT-2 T22: the production default TTL is 86,400 s — replayed at 86,399 s, a new execution at 86,401 s', async (t) => {
  const defaults = testConfig({})
  assert.equal(defaults.limits.idempotencyTtlS, 86_400)
  assert.equal(defaults.limits.idempotencyLockS, 120)
  const clock = new ManualClock()
  const w = await world(t, { clock })
  if (!w) return
  const { tg, mock, key, orgId } = w
  assert.deepEqual(tg.deps.idempotency.settings, { ttlMs: 86_400_000, lockMs: 120_000 })
  const k = `day-${rnd()}`
  const body = aiBody('anthropic', `a day ${rnd()}`)
  assert.equal((await ai(tg, key, body, { idem: k })).replayed, false)
  const [row] = await idemRows(tg, orgId)
  assert.equal(row!.expires_at - row!.created_at, 86_400_000, 'the row is kept 24 h')
  clock.advance(86_399_000)
  const u = mock.received.length
  assert.equal((await ai(tg, key, body, { idem: k })).replayed, true, 'replayed at 86,399 s')
  clock.advance(2000)
  const r = await ai(tg, key, body, { idem: k })
  assert.deepEqual([r.status, r.replayed], [200, false], 'a new execution at 86,401 s')
  assert.equal(mock.received.length, u + 1)
})

// ---------------------------------------------------------------------------------------------
// T23: tenant scoping

test('LIMIT-2 T23: two orgs reuse the same key values with different bodies — 0 cross-tenant replays', async (t) => {
  const w = await world(t)
  if (!w) return
  const { tg, mock } = w
  const A = await orgWithKeys(tg.deps)
  const B = await orgWithKeys(tg.deps)
  const keys = Array.from({ length: SHARED_KEYS }, (_, i) => `shared-key-${i}`)
  const bodyOf = (org: 'A' | 'B', i: number) => aiBody('anthropic', `org ${org} request ${i}`)
  const u = mock.received.length
  const results = { A: [] as Res[], B: [] as Res[] }
  for (let i = 0; i < keys.length; i += 5) {
    const chunk = keys.slice(i, i + 5)
    const rs = await Promise.all(chunk.flatMap((k, j) => [ai(tg, A.production, bodyOf('A', i + j), { idem: k }), ai(tg, B.production, bodyOf('B', i + j), { idem: k })]))
    rs.forEach((r, n) => results[n % 2 === 0 ? 'A' : 'B'].push(r))
  }
  for (const org of ['A', 'B'] as const) {
    for (const r of results[org]) assert.deepEqual([r.status, r.replayed], [200, false], `org ${org}: executes on its own (${r.text.slice(0, 120)})`)
  }
  assert.equal(mock.received.length, u + 2 * SHARED_KEYS, 'every request of both orgs reached the provider once')
  assert.equal(await decisionCount([tg], A.org.id), SHARED_KEYS)
  assert.equal(await decisionCount([tg], B.org.id), SHARED_KEYS)
  const aIds = new Set(results.A.map((r) => r.headers.get('x-tollgate-decision')))
  assert.equal(results.B.filter((r) => aIds.has(r.headers.get('x-tollgate-decision'))).length, 0, '0 of B\'s answers name one of A\'s decisions')
  // Positive control: each org's own retry is replayed (its own decision).
  for (const [i, k] of keys.entries()) {
    const ra = await ai(tg, A.production, bodyOf('A', i), { idem: k })
    assert.deepEqual([ra.replayed, ra.headers.get('x-tollgate-decision')], [true, results.A[i]!.headers.get('x-tollgate-decision')])
  }
  // B sending A's exact body under the shared key: B's own record decides (422), never A's replay.
  const cross = await ai(tg, B.production, bodyOf('A', 0), { idem: keys[0]! })
  assertCode(cross, 'idempotency_conflict', 'B with A\'s body')
  assert.equal(cross.replayed, false)
  // A key value only A has used: B executes it fresh with A's body.
  const onlyA = `only-a-${rnd()}`
  const ra = await ai(tg, A.production, bodyOf('A', 999), { idem: onlyA })
  const rb = await ai(tg, B.production, bodyOf('A', 999), { idem: onlyA })
  assert.deepEqual([ra.replayed, rb.status, rb.replayed], [false, 200, false], 'same key and body in another org: executes, no replay')

  // Admin: one person, OWNER in both orgs, same key in each (same and different bodies).
  const both = await person(tg, A.org.id, 'OWNER')
  await tg.deps.members.add(tg.deps.db.db, B.org.id, both.userId, 'OWNER')
  const k = `admin-shared-${rnd()}`
  const inv = { email: `x-${rnd()}@example.com`, role: 'MEMBER' }
  const inA = await adminPost(tg, both, `/api/orgs/${A.org.id}/invites`, inv, k)
  const inB = await adminPost(tg, both, `/api/orgs/${B.org.id}/invites`, inv, k)
  const inB2 = await adminPost(tg, both, `/api/orgs/${B.org.id}/invites`, { ...inv, role: 'ADMIN' }, `${k}-2`)
  assert.deepEqual([inA.status, inA.replayed, inB.status, inB.replayed, inB2.status], [201, false, 201, false, 201])
  assert.notEqual(inA.json.id, inB.json.id)
})

// ---------------------------------------------------------------------------------------------
// T24: crash after claim

test('LIMIT-2 T24: a claim whose instance died — 409 before the lock timeout, exactly one execution after it, no row stays locked', async (t) => {
  const clock = new ManualClock()
  const LOCK_S = 5
  const w = await world(t, { clock, env: { TOLLGATE_IDEMPOTENCY_LOCK_S: String(LOCK_S) } })
  if (!w) return
  const { tg, mock, orgId, key, keyId } = w
  const owner = await person(tg, orgId, 'OWNER')

  // The dead instance: it claimed exactly what the pipeline claims, then never completed.
  const k = `crash-${rnd()}`
  const body = aiBody('anthropic', `crash ${rnd()}`)
  const dead = await claimIdempotency(tg.deps.idempotency, tg.deps.keyring, k, { orgId, principal: keyId, method: 'POST', route: '/v1/messages' }, body)
  assert.equal(dead.kind, 'claimed')
  const ka = `acrash-${rnd()}`
  const keyBody = { environment: 'sandbox', label: 'after-crash' }
  const deadAdmin = await claimIdempotency(tg.deps.idempotency, tg.deps.keyring, ka, { orgId, principal: `user:${owner.userId}`, method: 'POST', route: '/api/orgs/:org/keys' }, keyBody)
  assert.equal(deadAdmin.kind, 'claimed')

  const u = mock.received.length
  const nKeys = await count(tg, 'api_key', orgId)
  assertCode(await ai(tg, key, body, { idem: k }), 'idempotency_in_flight', 'AI retry right away')
  assertCode(await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, keyBody, ka), 'idempotency_in_flight', 'admin retry right away')
  clock.advance(LOCK_S * 1000 - 1000)
  assertCode(await ai(tg, key, body, { idem: k }), 'idempotency_in_flight', 'AI retry 1 s before the lock timeout')
  assertCode(await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, keyBody, ka), 'idempotency_in_flight', 'admin retry 1 s before the lock timeout')
  assert.equal(mock.received.length, u)

  clock.advance(1000) // the lock ends now (lock_until <= now)
  // 10 simultaneous retries on each API: exactly one takes the claim over.
  const go = gate()
  const aiRetries = Array.from({ length: 10 }, () => go.promise.then(() => ai(tg, key, body, { idem: k })))
  const adminRetries = Array.from({ length: 10 }, () => go.promise.then(() => adminPost(tg, owner, `/api/orgs/${orgId}/keys`, keyBody, ka)))
  go.open()
  const ais = await Promise.all(aiRetries)
  const admins = await Promise.all(adminRetries)
  const aiExec = ais.filter((r) => r.status === 200 && !r.replayed)
  assert.equal(aiExec.length, 1, `AI: exactly one execution after the timeout (${ais.map((r) => r.status).join(',')})`)
  for (const r of ais) assert.ok(r.status === 409 || (r.status === 200 && r.replayed) || r === aiExec[0], `AI: ${r.status}`)
  assert.equal(mock.received.length, u + 1, 'AI: one provider call')
  const adminExec = admins.filter((r) => r.status === 201 && !r.replayed)
  assert.equal(adminExec.length, 1, `admin: exactly one execution after the timeout (${admins.map((r) => r.status).join(',')})`)
  for (const r of admins) assert.ok(r.status === 409 || (r.status === 201 && r.replayed) || r === adminExec[0], `admin: ${r.status}`)
  assert.equal(await count(tg, 'api_key', orgId), nKeys + 1, 'admin: one key created')
  // The key is settled: replays from now on.
  assert.equal((await ai(tg, key, body, { idem: k })).replayed, true)
  assert.equal((await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, keyBody, ka)).replayed, true)

  // No row stays locked past the timeout.
  const locked = (await idemRows(tg)).filter((r) => r.state !== 'done')
  assert.deepEqual(locked, [], 'no in-flight row is left')
})

test('LIMIT-2 T24: an admin write whose instance died after its commit, before completing the key — a retry gets the committed effect, never a second execution', async (t) => {
  const clock = new ManualClock()
  const LOCK_S = 5
  const w = await world(t, { clock, env: { TOLLGATE_IDEMPOTENCY_LOCK_S: String(LOCK_S) } })
  if (!w) return
  const { tg, orgId } = w
  const owner = await person(tg, orgId, 'OWNER')
  const route = '/api/orgs/:org/policies'
  const path = `/api/orgs/${orgId}/policies`
  const policyCount = async () => (await (tg.deps.db.db as unknown as Kysely<PolicyDB>).selectFrom('policy').select('id').where('org_id', '=', orgId).execute()).length

  // The dead instance claimed the key and ran the route's effect — the audited policy creation —
  // under the claim, then died before the response was recorded (kill -9 between the two).
  const k = `effect-${rnd()}`
  const body = { document: { version: 1, default_action: 'allow', rules: [{ id: `r-${rnd()}`, when: { domains: ['medical'] }, action: 'block', reason: 'medical' }] } }
  const dead = await claimIdempotency(tg.deps.idempotency, tg.deps.keyring, k, { orgId, principal: `user:${owner.userId}`, method: 'POST', route }, body)
  assert.ok(dead.kind === 'claimed')
  const actor = { type: 'user' as const, id: await tg.deps.keyring.pseudonym(orgId, owner.userId), requestId: 'req-dead' }
  const made = await runUnderClaim(dead.claim, () => tg.deps.policies.createDraft({ orgId, document: body.document, actor }))
  const before = await policyCount()
  const [row] = await idemRows(tg, orgId)
  assert.equal(row?.state, 'in_flight')
  assert.equal(row?.effect, `policy:${made.id}`, 'the effect marked the claim in its own transaction')

  // Positive control: a claim whose effect never committed is executed again after the lock.
  const k2 = `no-effect-${rnd()}`
  const body2 = { document: { ...body.document, rules: [{ ...body.document.rules[0]!, id: `r-${rnd()}` }] } }
  assert.equal((await claimIdempotency(tg.deps.idempotency, tg.deps.keyring, k2, { orgId, principal: `user:${owner.userId}`, method: 'POST', route }, body2)).kind, 'claimed')

  assertCode(await adminPost(tg, owner, path, body, k), 'idempotency_in_flight', 'retry before the lock timeout')
  clock.advance(LOCK_S * 1000)
  const go = gate()
  const retries = Array.from({ length: 6 }, () => go.promise.then(() => adminPost(tg, owner, path, body, k)))
  go.open()
  for (const r of await Promise.all(retries)) {
    assert.ok(r.status === 409 || r.status === 200, `retry after the lock: ${r.status} ${r.text}`)
    if (r.status === 200) {
      assert.equal(r.replayed, true)
      assert.deepEqual(JSON.parse(r.text), { id: made.id, type: 'policy', replay: 'effect' })
    }
  }
  const settled = await adminPost(tg, owner, path, body, k)
  assert.equal(settled.status, 200)
  assert.equal(settled.replayed, true)
  assert.equal(JSON.parse(settled.text).id, made.id)
  assert.equal(await policyCount(), before, 'no second policy')

  const again = await adminPost(tg, owner, path, body2, k2)
  assert.equal(again.status, 201, 'the claim without an effect executes after the lock (control)')
  assert.equal(again.replayed, false)
  assert.equal(await policyCount(), before + 1)

  // A request that fails after its effect committed keeps the effect too (release never forgets it).
  const k3 = `fail-after-${rnd()}`
  const body3 = { document: { ...body.document, rules: [{ ...body.document.rules[0]!, id: `r-${rnd()}` }] } }
  const c3 = await claimIdempotency(tg.deps.idempotency, tg.deps.keyring, k3, { orgId, principal: `user:${owner.userId}`, method: 'POST', route }, body3)
  assert.ok(c3.kind === 'claimed')
  const made3 = await runUnderClaim(c3.claim, () => tg.deps.policies.createDraft({ orgId, document: body3.document, actor }))
  await tg.deps.idempotency.release(c3.claim.scope, c3.claim.keyHash)
  const r3 = await adminPost(tg, owner, path, body3, k3)
  assert.equal(r3.status, 200)
  assert.equal(JSON.parse(r3.text).id, made3.id)
  assert.equal(await policyCount(), before + 2)
})

test('LIMIT-2 T24: two instances on PostgreSQL — the instance holding a claim dies mid-request; the other answers 409, then executes once after the lock timeout', async (t) => {
  if (!(await needService(t, 'postgres'))) return
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const clock = new ManualClock()
  const databaseUrl = await freshPostgres(t)
  const LOCK_S = 5
  const env = { ...upstreamEnv(mock), TOLLGATE_IDEMPOTENCY_LOCK_S: String(LOCK_S) }
  const a = await startApp(t, { postgres: true, databaseUrl, clock, env })
  const b = await startApp(t, { postgres: true, databaseUrl, clock, env })
  if (!a || !b) return
  const o = await orgWithKeys(a.deps)
  const k = `died-${rnd()}`
  const body = aiBody('anthropic', `dies ${rnd()}`, { stream: true, model: SLOW })
  // Instance A loses its database at the worst moment: nothing it does about the key lands any more.
  const lost = () => Promise.reject(new Error('instance A is gone'))
  a.deps.idempotency.complete = lost
  a.deps.idempotency.release = lost
  const u = mock.received.length
  const doomed = ai(a, o.production, body, { idem: k }).then(() => undefined, (err: unknown) => err)
  await until('A to call the provider', () => mock.received.length > u)
  a.app.server.closeAllConnections() // A's sockets die mid-stream: its client sees a reset, as after kill -9
  assert.ok((await doomed) instanceof Error, 'the client of the dead instance got no complete answer')
  await mock.waitForAborts(1)

  const [row] = await idemRows(b, o.org.id)
  assert.deepEqual([row!.state, row!.lock_until - row!.created_at], ['in_flight', LOCK_S * 1000], 'the dead claim holds for TOLLGATE_IDEMPOTENCY_LOCK_S')
  assertCode(await ai(b, o.production, body, { idem: k }), 'idempotency_in_flight', 'B, right away')
  clock.advance(LOCK_S * 1000 - 1)
  assertCode(await ai(b, o.production, body, { idem: k }), 'idempotency_in_flight', 'B, 1 ms before the lock timeout')
  clock.advance(1)
  const ub = mock.received.length
  const d = await decisionCount([a, b], o.org.id)
  const go = gate()
  const retries = Array.from({ length: 10 }, () => go.promise.then(() => ai(b, o.production, body, { idem: k })))
  go.open()
  const rs = await Promise.all(retries)
  const exec = rs.filter((r) => r.status === 200 && !r.replayed)
  assert.equal(exec.length, 1, `exactly one execution after the timeout (${rs.map((r) => r.status + (r.replayed ? 'r' : '')).join(',')})`)
  assert.ok(rs.every((r) => r === exec[0] || r.status === 409 || r.replayed))
  assert.ok(exec[0]!.text.includes('message_stop'), 'the execution streamed to the end')
  assert.equal(mock.received.length, ub + 1, 'one provider call')
  assert.equal(await decisionCount([a, b], o.org.id), d + 1, 'one decision record')
  const again = await ai(b, o.production, body, { idem: k })
  assert.deepEqual([again.replayed, again.headers.get('x-tollgate-decision')], [true, exec[0]!.headers.get('x-tollgate-decision')])
  assert.deepEqual((await idemRows(b)).filter((r) => r.state !== 'done'), [], 'no row stays locked')
})

test('LIMIT-2: the key is settled before the answer leaves — a retry sent the moment an answer arrives is replayed, or finds the key free (PostgreSQL)', async (t) => {
  // Regression: the record used to be completed after the answer's last byte, so on PostgreSQL
  // 2–6 % of immediate retries of a finished request got 409 (and a fixed retry after a 400 could get 422).
  const w = await world(t, { postgres: true })
  if (!w) return
  const { tg, mock, key } = w
  const N = FULL ? 100 : 20
  const seen: Record<string, number> = {}
  for (let i = 0; i < N; i++) {
    for (const stream of [false, true]) {
      const k = `settle-${stream}-${i}-${rnd()}`
      const body = aiBody('anthropic', `settle ${i}`, { stream })
      assert.equal((await ai(tg, key, body, { idem: k })).status, 200)
      const r = await ai(tg, key, body, { idem: k })
      seen[`${stream ? 'stream' : 'json'} ${r.status}${r.replayed ? ' replay' : ''}`] = (seen[`${stream ? 'stream' : 'json'} ${r.status}${r.replayed ? ' replay' : ''}`] ?? 0) + 1
    }
    const kf = `settle-fix-${i}-${rnd()}`
    const good = aiBody('anthropic', `fix ${i}`)
    assert.equal((await ai(tg, key, { ...good, messages: undefined }, { idem: kf })).status, 400)
    const u = mock.received.length
    const fixed = await ai(tg, key, good, { idem: kf })
    seen[`fixed ${fixed.status}`] = (seen[`fixed ${fixed.status}`] ?? 0) + 1
    assert.equal(mock.received.length, u + (fixed.status === 200 ? 1 : 0))
  }
  assert.deepEqual(seen, { 'json 200 replay': N, 'stream 200 replay': N, 'fixed 200': N }, 'every immediate retry: replayed (or executed after a 400)')
})

// ---------------------------------------------------------------------------------------------
// T25: durability

test('LIMIT-2 T25: completed keys survive a Redis restart and an app restart — 100% replayed, 0 re-executions (records in PostgreSQL, D2)', async (t) => {
  if (!(await needService(t, 'postgres'))) return
  const redis = await ownRedis(t)
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const databaseUrl = await freshPostgres(t)
  const env = { ...upstreamEnv(mock), TOLLGATE_REDIS_URL: redis.url }
  const app1 = await startApp(t, { postgres: true, databaseUrl, env })
  if (!app1) return
  const o = await orgWithKeys(app1.deps)
  const owner = await person(app1, o.org.id, 'OWNER')
  const N = 5
  const aiKeys = Array.from({ length: N }, (_, i) => ({ k: `dur-${i}-${rnd()}`, body: aiBody('anthropic', `durable ${i} ${rnd()}`) }))
  const adminKeys = Array.from({ length: N }, (_, i) => ({ k: `adur-${i}-${rnd()}`, body: { email: `dur-${i}-${rnd()}@example.com`, role: 'MEMBER' } }))
  const firstAi: Res[] = []
  const firstAdmin: { status: number; text: string }[] = []
  for (const x of aiKeys) firstAi.push(await ai(app1, o.production, x.body, { idem: x.k }))
  for (const x of adminKeys) firstAdmin.push(await adminPost(app1, owner, `/api/orgs/${o.org.id}/invites`, x.body, x.k))
  assert.ok(firstAi.every((r) => r.status === 200 && !r.replayed))
  assert.ok(firstAdmin.every((r) => r.status === 201))
  // The AI replay before any restart, to compare with afterwards.
  const replayBefore = await Promise.all(aiKeys.map((x) => ai(app1, o.production, x.body, { idem: x.k })))
  assert.ok(replayBefore.every((r) => r.replayed))
  const counts = async (tg: TestApp) => ({ upstream: mock.received.length, decisions: await decisionCount([tg], o.org.id), invites: await count(tg, 'invite', o.org.id), audit: await auditCount(tg, o.org.id, 'user_invited') })
  const before = await counts(app1)

  // 1. Redis restarts (empty: it persists nothing).
  await redis.restart()
  const afterRedis = await Promise.all(aiKeys.map((x) => ai(app1, o.production, x.body, { idem: x.k })))
  assert.ok(afterRedis.every((r, i) => r.status === 200 && r.replayed && r.text === replayBefore[i]!.text), `after the Redis restart: ${afterRedis.map((r) => r.status).join(',')}`)

  // 2. The app restarts on the same database.
  await app1.close()
  const app2 = await startApp(t, { postgres: true, databaseUrl, env })
  if (!app2) return
  let replayed = 0
  for (const [i, x] of aiKeys.entries()) {
    const r = await ai(app2, o.production, x.body, { idem: x.k })
    assert.deepEqual([r.status, r.replayed, r.text], [200, true, replayBefore[i]!.text], `AI key ${i} after the restarts`)
    replayed++
  }
  for (const [i, x] of adminKeys.entries()) {
    const r = await adminPost(app2, owner, `/api/orgs/${o.org.id}/invites`, x.body, x.k)
    assert.deepEqual([r.status, r.replayed, r.text], [201, true, firstAdmin[i]!.text], `admin key ${i} after the restarts`)
    replayed++
  }
  assert.equal(replayed, 2 * N, '100% replayed')
  assert.deepEqual(await counts(app2), before, '0 re-executions (provider calls, decision records, invites, audit entries)')
})

// ---------------------------------------------------------------------------------------------
// Transit-only

test('LIMIT-2 D2 transit-only: the idempotency table holds neither the key nor the request; a key-creation replay never shows the secret', async (t) => {
  const w = await world(t)
  if (!w) return
  const { tg, orgId, key } = w
  const owner = await person(tg, orgId, 'OWNER')
  const keyValue = `IDEMKEYMARKER${rnd()}`
  const prompt = `PROMPTMARKER${rnd()}`
  const email = `emailmarker${rnd()}@example.com`
  const body = aiBody('anthropic', `please keep ${prompt} secret`)
  assert.equal((await ai(tg, key, body, { idem: keyValue })).status, 200)
  assert.equal((await ai(tg, key, body, { idem: `"${keyValue}"` })).replayed, true)
  assert.equal((await ai(tg, key, aiBody('anthropic', `${prompt} changed`), { idem: keyValue })).status, 422)
  const slowKey = `${keyValue}S`
  assert.equal((await ai(tg, key, aiBody('anthropic', `stream ${prompt}`, { stream: true }), { idem: slowKey })).status, 200)
  const adminKey = `${keyValue}A`
  assert.equal((await adminPost(tg, owner, `/api/orgs/${orgId}/invites`, { email, role: 'MEMBER' }, adminKey)).status, 201)
  const secretKey = `${keyValue}K`
  const created = await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, { environment: 'sandbox', label: 'transit' }, secretKey)
  assert.equal(created.status, 201)
  const secret: string = created.json.secret
  assert.match(secret, /^tg_test_/)

  // The key secret is shown once: 5 replays say null, the rest of the response is identical.
  for (let i = 0; i < 5; i++) {
    const r = await adminPost(tg, owner, `/api/orgs/${orgId}/keys`, { environment: 'sandbox', label: 'transit' }, secretKey)
    assert.deepEqual([r.status, r.replayed], [201, true])
    assert.equal(r.json.secret, null)
    assert.ok(!r.text.includes(secret.slice(-20)), 'no part of the secret in a replay')
    assert.equal(r.text, JSON.stringify({ ...created.json, secret: null }), 'otherwise byte-identical')
  }
  // …and the sealed response itself never held it.
  const sealedRows = (await idemRows(tg, orgId)).filter((r) => r.response_sealed !== null)
  assert.equal(sealedRows.length, 2)
  const dataKey = await tg.deps.keyring.key(orgId, 'data')
  for (const r of sealedRows) {
    const opened = unseal<{ b: string }>(dataKey, r.response_sealed!, 0, 'idempotent-replay')
    assert.ok(opened, 'sealed under the org data key')
    assert.ok(!opened.b.includes(secret), 'the sealed response has no secret')
  }

  // Scan every row of the table for the key values, the prompt, the email and the secret.
  const needles = [keyValue, prompt, email, secret, secret.split('_').at(-1)!]
  const scanRows = (rows: readonly object[]) => {
    const text = Buffer.from(JSON.stringify(rows), 'utf8')
    const hits: string[] = []
    for (const n of needles) for (const e of encodingsOf(n)) if (text.includes(e.bytes)) hits.push(`${n.slice(0, 16)}… as ${e.encoding}`)
    return hits
  }
  const rows = await idemRows(tg)
  assert.equal(rows.length, 4, 'AI ×2, invite, key')
  // Positive control: the same scan finds each needle, in plain and in base64, in a planted row.
  const planted = { ...rows[0]!, key_hash: Buffer.from(keyValue).toString('base64'), fingerprint: prompt, route: `${email} ${secret}` }
  const control = scanRows([planted])
  for (const n of [keyValue, prompt, email, secret]) assert.ok(control.some((h) => h.startsWith(n.slice(0, 16))), `control: ${n.slice(0, 16)} found`)
  assert.deepEqual(scanRows(rows), [], 'idempotency rows: 0 hits')
  // The AI rows hold a decision id and never a response; the admin rows only sealed text.
  for (const r of rows) {
    if (r.route.startsWith('/v1/')) assert.deepEqual([r.response_sealed, typeof r.decision_id], [null, 'string'])
    else assert.equal(r.decision_id, null)
  }
  // And the database files on disk: neither the key value nor the prompt anywhere.
  await tg.deps.decisions.drain()
  const files = readdirSync(tg.dataDir).filter((f) => f.startsWith('tollgate.db')).map((f) => join(tg.dataDir, f))
  assert.ok(files.length >= 1)
  const bytes = Buffer.concat(files.map((f) => readFileSync(f)))
  const fileNeedles = [keyValue, prompt]
  for (const n of fileNeedles) for (const e of encodingsOf(n)) assert.equal(bytes.includes(e.bytes), false, `${n.slice(0, 16)}… as ${e.encoding} in the database files`)
  // Control: a value written to the database is found by the same file scan.
  const controlMarker = `CONTROLMARKER${rnd()}`
  await tg.deps.db.db.insertInto('idempotency').values({ ...rows[0]!, key_hash: controlMarker }).execute()
  const bytes2 = Buffer.concat(files.map((f) => readFileSync(f)))
  assert.ok(bytes2.includes(Buffer.from(controlMarker)), 'control: the file scan sees what the database wrote')
})

// ---------------------------------------------------------------------------------------------
// T20: concurrent duplicates, two instances

test('LIMIT-2 T20: 50 simultaneous duplicates over two instances (PostgreSQL + Redis) execute exactly once per trial — AI and admin', async (t) => {
  if (!(await needService(t, 'postgres')) || !(await needService(t, 'redis'))) return
  const mock = await startMockUpstream()
  t.after(() => mock.close())
  const databaseUrl = await freshPostgres(t)
  const opts: AppOptions = { postgres: true, redis: true, databaseUrl, env: upstreamEnv(mock) }
  const a = await startApp(t, opts)
  const b = await startApp(t, opts)
  if (!a || !b) return
  const apps = [a, b]
  const o = await orgWithKeys(a.deps)
  const orgId = o.org.id
  const owner = await person(a, orgId, 'OWNER')
  // Warm both instances (keys, CSRF, org keys) so the burst measures claiming, not first-use setup.
  for (const tg of apps) {
    assert.equal((await ai(tg, o.production, aiBody('anthropic', 'warm'))).status, 200)
    assert.equal((await call(tg, owner, 'GET', `/api/orgs/${orgId}/invites`)).status, 200)
  }
  const tally = { ai: { exec: 0, conflict: 0, replay: 0 }, admin: { exec: 0, conflict: 0, replay: 0 } }

  for (let trial = 0; trial < TRIALS; trial++) {
    // --- AI: a slow stream, so the duplicates overlap the execution.
    const k = `t20-${trial}-${rnd()}`
    const body = aiBody('anthropic', `t20 trial ${trial} ${rnd()}`, { stream: true, model: SLOW })
    const u = mock.received.length
    const d = await decisionCount(apps, orgId)
    const go = gate()
    const burst = Array.from({ length: BURST }, (_, i) => go.promise.then(() => ai(apps[i % 2]!, o.production, body, { idem: k })))
    go.open()
    const rs = await Promise.all(burst)
    const exec = rs.filter((r) => r.status === 200 && !r.replayed)
    const conflicts = rs.filter((r) => r.status === 409)
    const replays = rs.filter((r) => r.replayed)
    assert.equal(rs.filter((r) => r.status >= 500).length, 0, `trial ${trial}: 0 5xx`)
    assert.equal(exec.length, 1, `trial ${trial}: exactly 1 execution (${rs.map((r) => r.status + (r.replayed ? 'r' : '')).join(',')})`)
    assert.equal(exec.length + conflicts.length + replays.length, BURST, `trial ${trial}: every other answer is a 409 or a replay`)
    for (const r of conflicts) assertCode(r, 'idempotency_in_flight', `trial ${trial}`)
    const decisionId = exec[0]!.headers.get('x-tollgate-decision')
    for (const r of replays) {
      assert.equal(r.status, 200)
      assert.equal(r.text, replays[0]!.text, 'replays byte-identical')
      assert.equal(r.headers.get('x-tollgate-decision'), decisionId, 'a replay names the one execution')
    }
    assert.equal(mock.received.length, u + 1, `trial ${trial}: 1 provider call`)
    assert.equal(await decisionCount(apps, orgId), d + 1, `trial ${trial}: 1 decision record`)
    // Afterwards, on either instance: a byte-identical replay.
    const late = await Promise.all(apps.map((tg) => ai(tg, o.production, body, { idem: k })))
    assert.ok(late.every((r) => r.replayed && r.headers.get('x-tollgate-decision') === decisionId))
    if (replays.length > 0) assert.equal(late[0]!.text, replays[0]!.text)
    assert.equal(late[0]!.text, late[1]!.text, 'both instances replay the same bytes')
    tally.ai.exec += exec.length
    tally.ai.conflict += conflicts.length
    tally.ai.replay += replays.length

    // --- Admin: create an invite (even trials) or a key (odd trials), same key and body ×50.
    const invite = trial % 2 === 0
    const path = invite ? `/api/orgs/${orgId}/invites` : `/api/orgs/${orgId}/keys`
    const abody = invite ? { email: `t20-${trial}-${rnd()}@example.com`, role: 'MEMBER' } : { environment: 'sandbox', label: `t20-${trial}` }
    const ak = `t20a-${trial}-${rnd()}`
    const created0 = await count(a, invite ? 'invite' : 'api_key', orgId)
    const audit0 = await auditCount(a, orgId, invite ? 'user_invited' : 'authn_token_created')
    const go2 = gate()
    const aburst = Array.from({ length: BURST }, (_, i) => go2.promise.then(() => adminPost(apps[i % 2]!, owner, path, abody, ak)))
    go2.open()
    const ar = await Promise.all(aburst)
    const aexec = ar.filter((r) => r.status === 201 && !r.replayed)
    const aconf = ar.filter((r) => r.status === 409)
    const areplay = ar.filter((r) => r.replayed)
    assert.equal(ar.filter((r) => r.status >= 500).length, 0, `admin trial ${trial}: 0 5xx`)
    assert.equal(aexec.length, 1, `admin trial ${trial}: exactly 1 execution (${ar.map((r) => r.status + (r.replayed ? 'r' : '')).join(',')})`)
    assert.equal(aexec.length + aconf.length + areplay.length, BURST, `admin trial ${trial}: every other answer is a 409 or a replay`)
    for (const r of aconf) assertCode(r, 'idempotency_in_flight', `admin trial ${trial}`)
    const expected = invite ? aexec[0]!.text : JSON.stringify({ ...aexec[0]!.json, secret: null })
    for (const r of areplay) assert.deepEqual([r.status, r.text], [201, expected], `admin trial ${trial}: byte-identical replay`)
    assert.equal(await count(a, invite ? 'invite' : 'api_key', orgId), created0 + 1, `admin trial ${trial}: 1 object created`)
    assert.equal(await auditCount(a, orgId, invite ? 'user_invited' : 'authn_token_created'), audit0 + 1, `admin trial ${trial}: 1 audit entry`)
    const lateAdmin = await Promise.all(apps.map((tg) => adminPost(tg, owner, path, abody, ak)))
    for (const r of lateAdmin) assert.deepEqual([r.status, r.replayed, r.text], [201, true, expected], `admin trial ${trial}: a later replay on either instance`)
    tally.admin.exec += aexec.length
    tally.admin.conflict += aconf.length
    tally.admin.replay += areplay.length
  }
  t.diagnostic(`T20 ${TRIALS} trials × ${BURST}: AI ${JSON.stringify(tally.ai)}, admin ${JSON.stringify(tally.admin)}`)
})

// ---------------------------------------------------------------------------------------------
// T20: scheduler property over the store (SQLite)

/** A dialect whose every query first waits for the scheduler: statements of concurrent clients interleave in every order. */
function scheduledDialect(inner: Dialect, gateFn: () => Promise<void>): Dialect {
  return {
    createAdapter: () => inner.createAdapter(),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createIntrospector: (db) => inner.createIntrospector(db),
    createDriver: () => {
      const d = inner.createDriver()
      return new Proxy(d, {
        get(target, p, recv) {
          if (p === 'acquireConnection') return async () => { await gateFn(); return target.acquireConnection() }
          const v = Reflect.get(target, p, recv)
          return typeof v === 'function' ? v.bind(target) : v
        },
      }) as Driver
    },
  }
}

type Mode = 'complete' | 'fail'
interface ClientPlan { readonly mode: Mode; readonly request: 'A' | 'B'; readonly route: '/r1' | '/r2' }

test('LIMIT-2 T20: scheduler property over the SQLite store — never two executions for one key, every replay is the completed result', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-idem-prop-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const conn = openSqlite(join(dir, 'tollgate.db'))
  let scheduler: fc.Scheduler | undefined
  const db = new Kysely<DB>({ dialect: scheduledDialect(new SqliteDialect({ database: withStatementCache(conn) }), () => (scheduler ? scheduler.schedule(Promise.resolve(), 'db') : Promise.resolve())) })
  t.after(() => db.destroy())
  await migrateToLatest(db, 'sqlite')
  const LOCK_MS = 10_000
  let run = 0
  const stats = { executions: 0, replays: 0, conflicts: 0, mismatches: 0, takeovers: 0 }

  await fc.assert(fc.asyncProperty(
    fc.scheduler(),
    fc.array(fc.record({ mode: fc.constantFrom<Mode>('complete', 'complete', 'fail'), request: fc.constantFrom<'A' | 'B'>('A', 'A', 'A', 'B'), route: fc.constantFrom<'/r1' | '/r2'>('/r1', '/r1', '/r1', '/r2') }), { minLength: 2, maxLength: 6 }),
    fc.boolean(),
    async (s, plans: ClientPlan[], crashedFirst: boolean) => {
      const clock = new ManualClock()
      const store = new IdempotencyStore(db, clock, { ttlMs: 86_400_000, lockMs: LOCK_MS })
      const keyHash = `key-${run++}`
      const scopeOf = (route: string): IdempotencyScope => ({ orgId: 'org', principal: 'cred', method: 'POST', route })
      const fp = (r: 'A' | 'B') => `fingerprint-${r}`
      // An instance that claimed the key (the first request) and died before doing anything.
      if (crashedFirst) assert.equal((await store.claim(scopeOf('/r1'), keyHash, fp('A'))).kind, 'claimed')
      let working = 0
      let executions = 0
      let completedWith: (Recorded & { request: string; route: string }) | undefined
      const replays: { recorded: Recorded; request: string; route: string }[] = []
      const history: string[] = []
      scheduler = s
      try {
        const clients = plans.map(async (p, i) => {
          await s.schedule(Promise.resolve(), `client ${i} starts`)
          const c = await store.claim(scopeOf(p.route), keyHash, fp(p.request))
          history.push(`${i}:${c.kind}`)
          if (c.kind === 'replay') return void replays.push({ recorded: c.recorded, request: p.request, route: p.route })
          if (c.kind === 'in_flight') return void stats.conflicts++
          if (c.kind === 'mismatch') return void stats.mismatches++
          // claimed: the work runs alone, then completes or fails.
          working++
          assert.equal(working, 1, `two clients working on one key at once (${history.join(' ')})`)
          await s.schedule(Promise.resolve(), `client ${i} works`)
          working--
          if (p.mode === 'complete') {
            executions++
            const recorded: Recorded = { status: 201, responseSealed: `response of client ${i}`, decisionId: `decision-${i}`, effect: null }
            completedWith = { ...recorded, request: p.request, route: p.route }
            await store.complete(scopeOf(p.route), keyHash, recorded)
          } else await store.release(scopeOf(p.route), keyHash)
        })
        // The crashed claim's lock runs out at some point among the clients' steps.
        const expiry = crashedFirst ? s.schedule(Promise.resolve(), 'lock expires').then(() => { clock.advance(LOCK_MS) }) : Promise.resolve()
        await s.waitFor(Promise.all([...clients, expiry]))
      } finally {
        scheduler = undefined
      }
      assert.ok(executions <= 1, `never two executions for one key: ${executions} (${history.join(' ')})`)
      for (const r of replays) {
        assert.ok(completedWith, 'a replay only of a completed result')
        assert.deepEqual(r.recorded, { status: completedWith.status, responseSealed: completedWith.responseSealed, decisionId: completedWith.decisionId, effect: null }, 'every replay equals the completed result')
        assert.deepEqual([r.request, r.route], [completedWith.request, completedWith.route], 'replayed only for the same request and route')
      }
      const row = await db.selectFrom('idempotency').selectAll().where('key_hash', '=', keyHash).executeTakeFirst()
      if (completedWith) assert.deepEqual([row?.state, row?.status, row?.response_sealed], ['done', 201, completedWith.responseSealed])
      else if (!crashedFirst) assert.equal(row, undefined, 'a failed claim leaves no row')
      else if (row) assert.equal(row.state, 'in_flight')
      if (crashedFirst && history.some((h) => h.endsWith(':claimed'))) stats.takeovers++
      stats.executions += executions
      stats.replays += replays.length
    },
  ), { numRuns: PROPERTY_RUNS })
  t.diagnostic(`property: ${PROPERTY_RUNS} runs, ${JSON.stringify(stats)}`)
  assert.ok(stats.replays > 0 && stats.conflicts > 0 && stats.mismatches > 0 && stats.takeovers > 0, `the runs explored every outcome: ${JSON.stringify(stats)}`)
})
