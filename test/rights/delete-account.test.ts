import assert from 'node:assert/strict'
import { test } from 'node:test'
import { verifyChains } from '../../src/audit/audit.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { freshPostgres, needService } from '../helpers/services.ts'
import { aiCall } from '../keys/helpers.ts'
import { call, keyFor, newUser, passkeyFor, person, signIn } from '../api/world.ts'
import { rowsHolding, tablesHolding } from './dump.ts'

/**
 * RIGHTS-2 (security-tests T105): DELETE /api/account. PostgreSQL runs two instances sharing the
 * database and Redis: the deletion is made on one, and the other refuses the cookie and the keys
 * on the very next request. SQLite runs one instance.
 */
for (const dialect of ['sqlite', 'postgres'] as const) {
  test(`RIGHTS-2: deleting my account ends my sessions and keys at once (every instance), deletes my email and decision records, refuses the last OWNER, terminates my sole-member org, keeps the audit chains valid [${dialect}]`, async (t) => {
    let a: TestApp | undefined
    let b: TestApp | undefined
    if (dialect === 'postgres') {
      if (!(await needService(t, 'postgres')) || !(await needService(t, 'redis'))) return
      const databaseUrl = await freshPostgres(t)
      a = await startApp(t, { databaseUrl, redis: true })
      b = await startApp(t, { databaseUrl, redis: true })
    } else {
      a = await startApp(t)
      b = a
    }
    if (!a || !b) return
    const db = a.deps.db.db
    const org = async (slug: string) => (await a!.deps.orgs.create(slug, { type: 'operator', id: null }))!.id
    const x = await org('del-x')
    const y = await org('del-y')
    const z = await org('del-z')
    const owner = await person(a, x, 'OWNER')
    // The leaver: ADMIN of X, last OWNER of Y (which has another member), sole member of Z.
    const me = await person(a, x, 'ADMIN')
    await a.deps.members.add(db, y, me.userId, 'OWNER')
    await a.deps.members.add(db, z, me.userId, 'OWNER')
    const other = await newUser(a, y, 'MEMBER')
    const myKeys = [await keyFor(a, x, me.userId), await keyFor(a, y, me.userId), await keyFor(a, z, me.userId)]
    const myAdminKey = await keyFor(a, x, me.userId, 'admin')
    const ownersKey = await keyFor(a, x, owner.userId)
    for (const k of [...myKeys, ownersKey]) assert.equal((await aiCall(a.url, '/v1/intercept', k.key, 'local-echo')).status, 200)
    await a.deps.decisions.drain()
    await passkeyFor(a, me.userId)
    await a.deps.users.link(db, me.userId, `subject-of-${me.userId}`, 'google', null)
    await a.deps.invites.create(db, x, 'invitee@example.com', 'MEMBER', me.userId)
    const extraSession = await signIn(a, { userId: me.userId, email: me.email })
    const mine = { x: await a.deps.keyring.pseudonym(x, me.userId), y: await a.deps.keyring.pseudonym(y, me.userId) }
    const myDecisions = (await db.selectFrom('decision').select('id').where('key_id', 'in', myKeys.map((k) => k.id)).execute()).map((r) => r.id)
    assert.equal(myDecisions.length, 3)

    // A stale authentication cannot delete (step-up), and changes nothing.
    const stale = await signIn(a, { userId: me.userId, email: me.email }, a.deps.clock.now() - a.deps.stepUpWindowMs - 1000)
    const staleRes = await call(a, stale, 'DELETE', '/api/account')
    assert.equal(staleRes.status, 403)
    assert.equal(staleRes.json.error.code, 'step_up_required')

    // Last OWNER of Y, which has another member: refused, audited in Y's chain, nothing deleted.
    const refused = await call(a, me, 'DELETE', '/api/account')
    assert.equal(refused.status, 409, refused.text)
    assert.equal(refused.json.error.code, 'account_last_owner')
    const refusal = await db.selectFrom('audit_event').selectAll().where('request_id', '=', refused.headers.get('x-request-id')!).execute()
    assert.deepEqual(refusal.map((e) => [e.chain_id, e.action, e.outcome, e.actor_id]), [[y, 'account_deletion_refused', 'denied', mine.y]])
    assert.equal((await call(a, me, 'GET', '/api/me')).status, 200)
    assert.equal((await aiCall(a.url, '/v1/intercept', myKeys[0]!.key, 'local-echo')).status, 200)
    await a.deps.decisions.drain()

    // Ownership moves: then the deletion goes through.
    assert.equal((await call(a, me, 'PATCH', `/api/orgs/${y}/members/${other.userId}`, { role: 'OWNER' })).status, 200)
    const myDecisionsNow = (await db.selectFrom('decision').select('id').where('key_id', 'in', myKeys.map((k) => k.id)).execute()).map((r) => r.id)
    assert.equal(myDecisionsNow.length, 4)
    // Positive control for the scans: my email and id are in the database now, in these tables.
    assert.deepEqual(await tablesHolding(a, [me.email]), ['user'])
    assert.deepEqual(await tablesHolding(a, [me.userId]), ['api_key', 'invite', 'membership', 'passkey', 'session', 'user', 'user_identity'])
    assert.deepEqual(await tablesHolding(a, myDecisionsNow), ['decision'])

    const res = await call(a, me, 'DELETE', '/api/account')
    assert.equal(res.status, 204, res.text)
    assert.equal(res.headers.get('clear-site-data'), '"cookies", "storage"')
    assert.ok(res.headers.getSetCookie().some((c) => /^__Host-tollgate=;.*Max-Age=0/.test(c)), 'the session cookie is cleared')

    // At once, on the other instance: the cookies are refused, and every key of mine.
    for (const p of [me, extraSession]) assert.equal((await call(b, p, 'GET', '/api/me')).status, 401)
    for (const k of myKeys) assert.equal((await aiCall(b.url, '/v1/intercept', k.key, 'local-echo')).status, 401)
    assert.equal((await call(b, undefined, 'GET', '/api/me', undefined, { headers: { authorization: `Bearer ${myAdminKey.key}` } })).status, 401)
    // Others' keys still work (the refusal is about me).
    assert.equal((await aiCall(b.url, '/v1/intercept', ownersKey.key, 'local-echo')).status, 200)

    // My email and my user id are nowhere in the database; my decision records are gone.
    assert.deepEqual(await rowsHolding(a, [me.email]), [])
    assert.deepEqual(await rowsHolding(a, [me.userId]), [])
    assert.deepEqual(await rowsHolding(a, myDecisionsNow), [])
    assert.equal((await db.selectFrom('decision').select('id').where((eb) => eb.or([eb('actor_id', 'in', [mine.x, mine.y]), eb('key_id', 'in', myKeys.map((k) => k.id))])).execute()).length, 0)
    // My keys are still listed to the org (revoked), but no longer linked to anyone.
    const keyRows = await db.selectFrom('api_key').select(['id', 'user_id', 'label', 'revoked_at']).where('id', 'in', [...myKeys, myAdminKey].map((k) => k.id)).execute()
    assert.ok(keyRows.every((r) => r.user_id === null && r.label === null && r.revoked_at !== null))
    // The org I was the sole member of is terminated; X and Y keep their other members and data.
    assert.notEqual((await db.selectFrom('org').select('terminated_at').where('id', '=', z).executeTakeFirstOrThrow()).terminated_at, null)
    assert.equal((await call(b, owner, 'GET', `/api/orgs/${x}/members`)).json.members.length, 1)

    // Audited in X's and Y's chains under my pseudonym; Z's termination in the instance chain; every chain verifies.
    const entries = await db.selectFrom('audit_event').select(['chain_id', 'action', 'actor_id']).where('request_id', '=', res.headers.get('x-request-id')!).execute()
    const deleted = entries.filter((e) => e.action === 'account_deleted').map((e) => `${e.chain_id}:${e.actor_id}`).sort()
    assert.ok([`${x}:${mine.x}`, `${y}:${mine.y}`].every((e) => deleted.includes(e)), JSON.stringify(entries))
    assert.ok(entries.some((e) => e.chain_id === 'instance' && e.action === 'org_terminated'))
    assert.deepEqual((await verifyChains(db)).filter((r) => r.broken), [])
  })
}
