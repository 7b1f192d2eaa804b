import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startApp } from '../helpers/app.ts'
import { aiCall } from '../keys/helpers.ts'
import { call, keyFor, passkeyFor, person, signIn } from '../api/world.ts'
import { rowsHolding } from './dump.ts'

/**
 * RIGHTS-1 (security-tests T104): GET /api/account/export — everything stored about the caller
 * and nothing of anyone else's, no secret; a fresh step-up; audited.
 */
for (const dialect of ['sqlite', 'postgres'] as const) {
  test(`RIGHTS-1: the export holds exactly my things (memberships, sessions, passkeys, keys, decisions, audit), nothing of another person's and no secret; needs a step-up; audited [${dialect}]`, async (t) => {
    const tg = await startApp(t, { postgres: dialect === 'postgres' })
    if (!tg) return
    const db = tg.deps.db.db
    const x = (await tg.deps.orgs.create('export-x', { type: 'operator', id: null }))!.id
    const y = (await tg.deps.orgs.create('export-y', { type: 'operator', id: null }))!.id
    // A: OWNER of X, MEMBER of Y. B: OWNER of Y, MEMBER of X. Each: keys in both, AI calls, a passkey.
    const a = await person(tg, x, 'OWNER')
    const b = await person(tg, y, 'OWNER')
    await tg.deps.members.add(db, y, a.userId, 'MEMBER')
    await tg.deps.members.add(db, x, b.userId, 'MEMBER')
    const keys = { a: [await keyFor(tg, x, a.userId), await keyFor(tg, y, a.userId)], b: [await keyFor(tg, x, b.userId), await keyFor(tg, y, b.userId)] }
    for (const k of [...keys.a, ...keys.b]) for (let i = 0; i < 2; i++) assert.equal((await aiCall(tg.url, '/v1/intercept', k.key, 'local-echo')).status, 200)
    await tg.deps.decisions.drain()
    const passkeys = { a: await passkeyFor(tg, a.userId), b: await passkeyFor(tg, b.userId) }
    // Admin actions by each (audited under their pseudonyms), including one on the other person.
    assert.equal((await call(tg, a, 'POST', `/api/orgs/${x}/keys`, { environment: 'sandbox', label: 'a-made' })).status, 201)
    assert.equal((await call(tg, a, 'POST', `/api/orgs/${x}/members/${b.userId}/end-sessions`, {})).status, 200)
    const bAgain = await signIn(tg, { userId: b.userId, email: b.email })
    assert.equal((await call(tg, bAgain, 'POST', `/api/orgs/${y}/keys`, { environment: 'sandbox', label: 'b-made' })).status, 201)

    const pB = { x: await tg.deps.keyring.pseudonym(x, b.userId), y: await tg.deps.keyring.pseudonym(y, b.userId) }
    const pA = { x: await tg.deps.keyring.pseudonym(x, a.userId), y: await tg.deps.keyring.pseudonym(y, a.userId) }
    const bAudit = await db.selectFrom('audit_event').select(['chain_id', 'seq']).where((eb) => eb.or([eb.and([eb('chain_id', '=', x), eb('actor_id', '=', pB.x)]), eb.and([eb('chain_id', '=', y), eb('actor_id', '=', pB.y)])])).execute()

    const res = await call(tg, bAgain, 'GET', '/api/account/export')
    assert.equal(res.status, 200, res.text)
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="tollgate-account-export\.json"$/)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const ex = res.json
    assert.equal(ex.format, 'tollgate-account-export/1')
    assert.equal(ex.user.email, b.email)
    assert.equal(ex.user.id, b.userId)
    assert.deepEqual(ex.memberships.map((m: any) => [m.org_slug, m.role]).sort(), [['export-x', 'MEMBER'], ['export-y', 'OWNER']])
    assert.deepEqual(ex.memberships.map((m: any) => m.pseudonym).sort(), [pB.x, pB.y].sort())
    // Sessions: both of B's (the one A ended and this one, flagged current), metadata only.
    assert.deepEqual(ex.sessions.map((s: any) => s.id).sort(), [b.sessionId, bAgain.sessionId].sort())
    assert.deepEqual(ex.sessions.filter((s: any) => s.current).map((s: any) => s.id), [bAgain.sessionId])
    assert.equal(ex.sessions.find((s: any) => s.id === b.sessionId).end_reason, 'ended_by_admin')
    assert.deepEqual(ex.passkeys.map((p: any) => p.id), [passkeys.b])
    // Keys: B's two plus the one B made; decisions: exactly the four B's keys made.
    const bKeyIds = (await db.selectFrom('api_key').select('id').where('user_id', '=', b.userId).execute()).map((r) => r.id).sort()
    assert.equal(bKeyIds.length, 3)
    assert.deepEqual(ex.api_keys.map((k: any) => k.id).sort(), bKeyIds)
    const bDecisions = (await db.selectFrom('decision').select('id').where('key_id', 'in', keys.b.map((k) => k.id)).execute()).map((r) => r.id).sort()
    assert.equal(bDecisions.length, 4)
    assert.deepEqual(ex.decisions.map((d: any) => d.id).sort(), bDecisions)
    assert.ok(ex.decisions.every((d: any) => d.actor_id === pB.x || d.actor_id === pB.y))
    // Audit: entries where B is the actor, in both orgs (B's key creation is among them); none of A's.
    assert.ok(ex.audit.some((e: any) => e.action === 'authn_token_created' && e.org_id === y))
    assert.deepEqual(ex.audit.map((e: any) => `${e.org_id}:${e.seq}`).sort(), bAudit.map((e) => `${e.chain_id}:${e.seq}`).sort())

    // Nothing of A's: A's email, id, pseudonyms, keys, sessions, passkey and decisions are absent.
    const aDecisions = (await db.selectFrom('decision').select('id').where('key_id', 'in', keys.a.map((k) => k.id)).execute()).map((r) => r.id)
    assert.equal(aDecisions.length, 4)
    const aThings = [a.email, a.userId, pA.x, pA.y, a.sessionId, passkeys.a, ...keys.a.map((k) => k.id), ...aDecisions]
    const leaked = (text: string) => aThings.filter((v) => text.includes(v))
    assert.deepEqual(leaked(res.text), [], "B's export names something of A's")
    // Positive control: the same check finds every one of them in A's own export.
    const aExport = await call(tg, a, 'GET', '/api/account/export')
    assert.equal(aExport.status, 200)
    assert.deepEqual(leaked(aExport.text).sort(), [...aThings].sort(), "A's export holds all of A's things (the check works)")

    // No secrets: no key (anyone's), no token or key hash, no wrapped key, no public key.
    const secretRows = await db.selectFrom('api_key').select('secret_hash').execute()
    const sessionRows = await db.selectFrom('session').select(['token_hash', 'prev_token_hash']).execute()
    const wrapped = await db.selectFrom('org_key').select('wrapped').execute()
    const publicKeys = await db.selectFrom('passkey').select('public_key').execute()
    const secrets = [
      ...[...keys.a, ...keys.b].map((k) => k.key), ...secretRows.map((r) => r.secret_hash), ...sessionRows.flatMap((r) => [r.token_hash, r.prev_token_hash]).filter((v): v is string => v !== null),
      ...wrapped.map((r) => r.wrapped), ...publicKeys.map((r) => r.public_key), bAgain.cookie.split('=')[1]!,
    ]
    assert.ok(secrets.length >= 15)
    assert.deepEqual(secrets.filter((s) => res.text.includes(s) || aExport.text.includes(s)), [], 'an export holds a secret')
    // Positive control: the same secrets are found where they are stored.
    assert.ok((await rowsHolding(tg, secretRows.map((r) => r.secret_hash))).length >= secretRows.length)

    // Audited, under the request's id, in each of B's orgs.
    const audited = await db.selectFrom('audit_event').select(['chain_id', 'actor_id']).where('action', '=', 'account_exported').where('request_id', '=', res.headers.get('x-request-id')!).execute()
    assert.deepEqual(audited.map((e) => `${e.chain_id}:${e.actor_id}`).sort(), [`${x}:${pB.x}`, `${y}:${pB.y}`].sort())

    // A stale authentication gets 403 step_up_required (and the refusal is audited); so does an admin key.
    const stale = await signIn(tg, { userId: b.userId, email: b.email }, tg.deps.clock.now() - tg.deps.stepUpWindowMs - 1000)
    const refused = await call(tg, stale, 'GET', '/api/account/export')
    assert.equal(refused.status, 403)
    assert.equal(refused.json.error.code, 'step_up_required')
    assert.ok(!refused.text.includes(b.email))
    assert.ok((await db.selectFrom('audit_event').select('action').where('request_id', '=', refused.headers.get('x-request-id')!).execute()).some((e) => e.action === 'authz_fail'))
    const adminKey = await keyFor(tg, y, b.userId, 'admin')
    const byKey = await call(tg, undefined, 'GET', '/api/account/export', undefined, { headers: { authorization: `Bearer ${adminKey.key}` } })
    assert.equal(byKey.status, 403)
    assert.equal(byKey.json.error.code, 'step_up_required')
  })
}
