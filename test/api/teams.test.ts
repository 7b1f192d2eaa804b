import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test, type TestContext } from 'node:test'
import { TollgateError } from '../../src/core/errors.ts'
import { INVITE_TTL_MS } from '../../src/orgs/invites.ts'
import { ManualClock } from '../fakes/clock.ts'
import { startApp, type TestApp } from '../helpers/app.ts'
import { captureLog } from '../helpers/log.ts'
import { startSmtpSink, type SmtpSink } from './smtp-sink.ts'
import { call, email, keyFor, newUser, person, signIn, tableState, type Person } from './world.ts'

/**
 * RBAC-2: team management. Invites travel through a real SMTP server (or, without one, the log
 * outbox — never both); the token is single-use, expires after 7 days, works only for the invited
 * address, and only its SHA-256 is stored. Role changes need a step-up, only an OWNER touches
 * OWNER, and an org always keeps an OWNER — also under concurrent demotions.
 */

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')

async function sink(t: TestContext): Promise<SmtpSink> {
  const s = await startSmtpSink()
  t.after(() => s.close())
  return s
}

async function orgWithOwner(tg: TestApp, slug: string): Promise<{ orgId: string; owner: Person }> {
  const orgId = (await tg.deps.orgs.create(slug, { type: 'operator', id: null }))!.id
  return { orgId, owner: await person(tg, orgId, 'OWNER') }
}

const tokenOf = (text: string, origin: string): string => {
  const m = new RegExp(`${origin.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/invite#token=([A-Za-z0-9_-]{43})`).exec(text)
  assert.ok(m, 'the mail carries the invite link with the token in the URL fragment')
  return m[1]!
}

test('RBAC-2: an invite mailed through SMTP is accepted once by the invited address; reuse, expiry (7 d + 1 s) and another address get 410; only the token hash is stored', async (t) => {
  const smtp = await sink(t)
  const clock = new ManualClock()
  const log = captureLog()
  const tg = await startApp(t, { clock, log: log.logger, env: { TOLLGATE_SMTP_URL: smtp.url, TOLLGATE_MAIL_FROM: 'Tollgate <tollgate@example.com>' } })
  if (!tg) return
  assert.equal((await call(tg, await person(tg, null), 'GET', '/api/instance')).json.mail, 'smtp')
  const { orgId, owner } = await orgWithOwner(tg, 'team-invites')
  const invitee = email('invitee')

  const created = await call(tg, owner, 'POST', `/api/orgs/${orgId}/invites`, { email: invitee, role: 'ANALYST' })
  assert.equal(created.status, 201, created.text)
  const mail = await smtp.message(1)
  assert.deepEqual(mail.to && !Array.isArray(mail.to) ? mail.to.value.map((a) => a.address) : [], [invitee])
  assert.equal(mail.from?.value[0]?.address, 'tollgate@example.com')
  assert.match(mail.subject ?? '', /team-invites/)
  const token = tokenOf(mail.text ?? '', tg.deps.origin)

  // Only the SHA-256 of the token is stored: no column of any row holds the token itself.
  const row = await tg.deps.db.db.selectFrom('invite').selectAll().where('id', '=', created.json.id).executeTakeFirstOrThrow()
  assert.equal(row.token_hash, sha256(token))
  const stored = await tableState(tg, {})
  assert.ok(JSON.stringify(stored.invite).includes(sha256(token)), 'positive control: the scan sees the stored hash')
  for (const [table, rows] of Object.entries(stored)) assert.ok(!JSON.stringify(rows).includes(token), `${table} holds the raw invite token`)
  // With SMTP configured nothing goes to the log: not the message, the link or the address.
  assert.ok(!log.text().includes(token) && !log.text().includes(invitee) && !log.text().includes('mail_outbox'), 'with SMTP, the invite is not written to the log')

  // Someone signed in with another address cannot use it (and does not use it up).
  const stranger = await person(tg, null)
  const wrong = await call(tg, stranger, 'POST', '/api/invites/accept', { token })
  assert.equal(wrong.status, 410)
  assert.equal(wrong.json.error.code, 'gone')

  // The invited address accepts it once.
  const me = await signIn(tg, await newUser(tg, null, undefined, invitee))
  const accepted = await call(tg, me, 'POST', '/api/invites/accept', { token })
  assert.equal(accepted.status, 200, accepted.text)
  assert.deepEqual(accepted.json, { org_id: orgId, role: 'ANALYST' })
  assert.equal(await tg.deps.users.role(me.userId, orgId), 'ANALYST')
  const again = await call(tg, me, 'POST', '/api/invites/accept', { token })
  assert.equal(again.status, 410)
  assert.equal(again.json.error.code, 'gone')
  assert.equal((await call(tg, await signIn(tg, { userId: me.userId, email: invitee }), 'POST', '/api/invites/accept', { token })).status, 410, 'single use, from any session')

  // Expiry: still good 1 s before 7 days, gone 1 s after.
  const late = email('late')
  const early = email('early')
  assert.equal((await call(tg, owner, 'POST', `/api/orgs/${orgId}/invites`, { email: late, role: 'MEMBER' })).status, 201)
  assert.equal((await call(tg, owner, 'POST', `/api/orgs/${orgId}/invites`, { email: early, role: 'MEMBER' })).status, 201)
  const lateToken = tokenOf((await smtp.message(2)).text ?? '', tg.deps.origin)
  const earlyToken = tokenOf((await smtp.message(3)).text ?? '', tg.deps.origin)
  const lateUser = await signIn(tg, await newUser(tg, null, undefined, late))
  const earlyUser = await signIn(tg, await newUser(tg, null, undefined, early))
  clock.advance(INVITE_TTL_MS - 1000)
  assert.equal((await call(tg, earlyUser, 'POST', '/api/invites/accept', { token: earlyToken })).status, 200, 'valid until the 7 days are over')
  clock.advance(2000)
  const expired = await call(tg, lateUser, 'POST', '/api/invites/accept', { token: lateToken })
  assert.equal(expired.status, 410)
  assert.equal(expired.json.error.code, 'gone')
  assert.equal(await tg.deps.users.role(lateUser.userId, orgId), undefined)
  // A made-up token is just as gone.
  assert.equal((await call(tg, lateUser, 'POST', '/api/invites/accept', { token: 'A'.repeat(43) })).status, 410)
  assert.equal(smtp.messages.length, 3)
})

test('RBAC-2: without SMTP the outbox writes the invite to the log and sends nothing', async (t) => {
  const smtp = await sink(t)
  const log = captureLog()
  // The sink is running but not configured: the app must not find it or anything else.
  const tg = await startApp(t, { log: log.logger })
  if (!tg) return
  const { orgId, owner } = await orgWithOwner(tg, 'team-outbox')
  assert.equal((await call(tg, owner, 'GET', '/api/instance')).json.mail, 'outbox')
  const invitee = email('outboxed')
  const created = await call(tg, owner, 'POST', `/api/orgs/${orgId}/invites`, { email: invitee, role: 'MEMBER' })
  assert.equal(created.status, 201, created.text)
  const lines = log.lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'mail_outbox')
  assert.equal(lines.length, 1, 'one outbox line per message')
  const token = tokenOf(lines[0].outbox, tg.deps.origin)
  const row = await tg.deps.db.db.selectFrom('invite').select('token_hash').where('id', '=', created.json.id).executeTakeFirstOrThrow()
  assert.equal(row.token_hash, sha256(token), 'the logged link is the real invite')
  assert.equal(smtp.messages.length, 0, 'nothing was sent')
  // The logged token works like a mailed one.
  const me = await signIn(tg, await newUser(tg, null, undefined, invitee))
  assert.equal((await call(tg, me, 'POST', '/api/invites/accept', { token })).status, 200)
})

test('RBAC-2: role changes need a step-up; only an OWNER grants or removes OWNER; the last OWNER can be neither demoted nor removed (409 last_owner)', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const { orgId, owner } = await orgWithOwner(tg, 'team-roles')
  const admin = await person(tg, orgId, 'ADMIN')
  const staleAdmin = await person(tg, orgId, 'ADMIN', tg.deps.clock.now() - tg.deps.stepUpWindowMs - 1000)
  const member = await newUser(tg, orgId, 'MEMBER')
  const path = (u: { userId: string }) => `/api/orgs/${orgId}/members/${u.userId}`
  const role = (u: { userId: string }) => tg.deps.users.role(u.userId, orgId)
  const code = (r: { json: any }) => r.json?.error?.code

  const stale = await call(tg, staleAdmin, 'PATCH', path(member), { role: 'ANALYST' })
  assert.equal(stale.status, 403)
  assert.equal(code(stale), 'step_up_required')
  assert.equal(await role(member), 'MEMBER')

  assert.equal((await call(tg, admin, 'PATCH', path(member), { role: 'ANALYST' })).status, 200, 'an ADMIN changes non-OWNER roles')
  assert.equal(await role(member), 'ANALYST')
  for (const [what, r] of [
    ['grant OWNER', await call(tg, admin, 'PATCH', path(member), { role: 'OWNER' })],
    ['demote an OWNER', await call(tg, admin, 'PATCH', path(owner), { role: 'ADMIN' })],
    ['remove an OWNER', await call(tg, admin, 'DELETE', path(owner))],
    ['invite an OWNER', await call(tg, admin, 'POST', `/api/orgs/${orgId}/invites`, { email: email(), role: 'OWNER' })],
  ] as const) {
    assert.equal(r.status, 403, `an ADMIN may not ${what}`)
    assert.equal(code(r), 'forbidden')
  }
  assert.equal(await role(owner), 'OWNER')
  assert.equal(await role(member), 'ANALYST')

  // The sole OWNER can neither step down nor leave.
  for (const r of [await call(tg, owner, 'PATCH', path(owner), { role: 'ADMIN' }), await call(tg, owner, 'DELETE', path(owner))]) {
    assert.equal(r.status, 409)
    assert.equal(code(r), 'last_owner')
  }
  assert.equal(await role(owner), 'OWNER')

  // An OWNER grants OWNER; then either may step down, but not both.
  assert.equal((await call(tg, owner, 'PATCH', path(member), { role: 'OWNER' })).status, 200)
  assert.equal(await role(member), 'OWNER')
  assert.equal((await call(tg, owner, 'PATCH', path(member), { role: 'ADMIN' })).status, 200, 'an OWNER removes OWNER from another')
  assert.equal(await role(member), 'ADMIN')
  assert.equal((await call(tg, owner, 'PATCH', path(member), { role: 'OWNER' })).status, 200)
  assert.equal((await call(tg, owner, 'DELETE', path(owner))).status, 200, 'with another OWNER, an OWNER may leave')
  assert.equal(await role(owner), undefined)
  const lastOwner = await signIn(tg, member)
  assert.equal(code(await call(tg, lastOwner, 'DELETE', path(member))), 'last_owner')
  assert.equal(await role(member), 'OWNER')
})

test('RBAC-2: removing a member revokes their keys in that org (and only there)', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const a = await orgWithOwner(tg, 'team-keys-a')
  const b = await orgWithOwner(tg, 'team-keys-b')
  const leaver = await newUser(tg, a.orgId, 'ADMIN')
  await tg.deps.members.add(tg.deps.db.db, b.orgId, leaver.userId, 'MEMBER')
  const inA = [await keyFor(tg, a.orgId, leaver.userId), await keyFor(tg, a.orgId, leaver.userId, 'admin')]
  const inB = await keyFor(tg, b.orgId, leaver.userId)
  const colleague = await keyFor(tg, a.orgId, a.owner.userId)
  for (const k of [...inA, inB, colleague]) assert.ok(await tg.deps.keys.verify(k.key))

  const removed = await call(tg, a.owner, 'DELETE', `/api/orgs/${a.orgId}/members/${leaver.userId}`)
  assert.equal(removed.status, 200, removed.text)
  for (const k of inA) assert.equal(await tg.deps.keys.verify(k.key), undefined, 'the removed member\'s key in that org stops working')
  assert.ok(await tg.deps.keys.verify(inB.key), 'their key in another org keeps working')
  assert.ok(await tg.deps.keys.verify(colleague.key), 'other members\' keys keep working')
  const listed = await call(tg, a.owner, 'GET', `/api/orgs/${a.orgId}/keys`)
  for (const k of inA) assert.equal(listed.json.keys.find((x: any) => x.id === k.id).state, 'revoked')
  // Through the gateway too: the revoked admin key no longer reaches the admin API.
  const viaKey = await call(tg, undefined, 'GET', `/api/orgs/${a.orgId}/members`, undefined, { headers: { authorization: `Bearer ${inA[1]!.key}` } })
  assert.equal(viaKey.status, 401)
  assert.equal(await tg.deps.users.role(leaver.userId, a.orgId), undefined)
  assert.equal(await tg.deps.users.role(leaver.userId, b.orgId), 'MEMBER')
})

for (const variant of [{ name: 'SQLite', postgres: false }, { name: 'PostgreSQL', postgres: true }]) {
  test(`RBAC-2: two OWNERs demoting or removing each other at the same time leave exactly one OWNER (${variant.name})`, async (t) => {
    const tg = await startApp(t, { postgres: variant.postgres })
    if (!tg) return
    const db = tg.deps.db.db
    const owners = async (orgId: string) => (await db.selectFrom('membership').select('user_id').where('org_id', '=', orgId).where('role', '=', 'OWNER').execute()).length

    // Interleaved by hand: the first transaction has demoted its OWNER and not committed when the
    // second one checks. Without a lock both see two OWNERs and both commit.
    {
      const orgId = (await tg.deps.orgs.create('race-store', { type: 'operator', id: null }))!.id
      const o1 = await newUser(tg, orgId, 'OWNER')
      const o2 = await newUser(tg, orgId, 'OWNER')
      let demoted!: () => void
      let release!: () => void
      const firstDemoted = new Promise<void>((r) => (demoted = r))
      const commit = new Promise<void>((r) => (release = r))
      const first = db.transaction().execute(async (trx) => {
        await tg.deps.members.setRole(trx, orgId, o2.userId, 'ADMIN')
        demoted()
        await commit
      })
      await firstDemoted
      const second = db.transaction().execute((trx) => tg.deps.members.remove(trx, orgId, o1.userId))
      // Give the second transaction time to run as far as it can, then let the first commit.
      await new Promise((r) => setTimeout(r, 300))
      release()
      const [r1, r2] = await Promise.allSettled([first, second])
      assert.equal(r1.status, 'fulfilled')
      assert.equal(r2.status, 'rejected', 'the second change must see the first and refuse')
      assert.ok(r2.status === 'rejected' && r2.reason instanceof TollgateError && r2.reason.code === 'last_owner', String(r2.status === 'rejected' ? r2.reason : ''))
      assert.equal(await owners(orgId), 1)
    }

    // Through the API: each OWNER demotes (or removes) the other at the same moment, several times.
    for (let round = 0; round < 6; round++) {
      const { orgId, owner: o1 } = await orgWithOwner(tg, `race-${round}`)
      const o2 = await person(tg, orgId, 'OWNER')
      const [r1, r2] = await Promise.all([
        call(tg, o1, 'PATCH', `/api/orgs/${orgId}/members/${o2.userId}`, { role: 'ADMIN' }),
        round % 2 === 0
          ? call(tg, o2, 'PATCH', `/api/orgs/${orgId}/members/${o1.userId}`, { role: 'MEMBER' })
          : call(tg, o2, 'DELETE', `/api/orgs/${orgId}/members/${o1.userId}`),
      ])
      // The loser is refused: 409 last_owner, or — when its caller was already demoted (403) or
      // removed (404) by the time the request arrived — by the guard.
      const statuses = [r1.status, r2.status].sort()
      assert.ok(statuses[0] === 200 && [403, 404, 409].includes(statuses[1]!), `round ${round}: ${r1.status} ${r1.text} / ${r2.status} ${r2.text}`)
      assert.equal(await owners(orgId), 1, `round ${round}: exactly one OWNER remains`)
    }
  })
}
