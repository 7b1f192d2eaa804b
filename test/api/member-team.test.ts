import assert from 'node:assert/strict'
import { test } from 'node:test'
import { startApp } from '../helpers/app.ts'
import { call, newUser, person } from './world.ts'

/**
 * A member's team (a cohort id policies match on and analytics group by): set and cleared through
 * the member PATCH route under the role-change rules (step-up, only an OWNER touches an OWNER),
 * audited as `member_team_changed` with the team as a label, shown in the member list.
 */
for (const dialect of ['sqlite', 'postgres'] as const) {
  test(`RBAC-3: a member's team is set and cleared by PATCH …/members/:user with a step-up, audited with the team label, listed; bad ids and non-OWNERs touching an OWNER are refused [${dialect}]`, async (t) => {
    const tg = await startApp(t, { postgres: dialect === 'postgres' })
    if (!tg) return
    const orgId = (await tg.deps.orgs.create(`teams-${dialect}`, { type: 'operator', id: null }))!.id
    const owner = await person(tg, orgId, 'OWNER')
    const admin = await person(tg, orgId, 'ADMIN')
    const staleAdmin = await person(tg, orgId, 'ADMIN', tg.deps.clock.now() - tg.deps.stepUpWindowMs - 1000)
    const member = await newUser(tg, orgId, 'MEMBER')
    const path = (u: { userId: string }) => `/api/orgs/${orgId}/members/${u.userId}`
    const teamOf = async (u: { userId: string }) => ((await call(tg, owner, 'GET', `/api/orgs/${orgId}/members`)).json.members as any[]).find((m) => m.user_id === u.userId).team
    const code = (r: { json: any }) => r.json?.error?.code

    const stale = await call(tg, staleAdmin, 'PATCH', path(member), { team: 'students' })
    assert.deepEqual([stale.status, code(stale)], [403, 'step_up_required'])
    assert.equal(await teamOf(member), null)

    assert.equal((await call(tg, admin, 'PATCH', path(member), { team: 'students' })).status, 200)
    assert.equal(await teamOf(member), 'students')
    assert.deepEqual(await tg.deps.users.member(member.userId, orgId), { role: 'MEMBER', team: 'students' }, 'the gateway reads the same team')
    for (const bad of [{}, { team: 'Students' }, { team: '-x' }, { team: 'x'.repeat(65) }, { team: 7 }]) {
      const r = await call(tg, admin, 'PATCH', path(member), bad)
      assert.equal(r.status, 400, JSON.stringify(bad))
    }
    const toOwner = await call(tg, admin, 'PATCH', path(owner), { team: 'staff' })
    assert.deepEqual([toOwner.status, code(toOwner)], [403, 'forbidden'], 'an ADMIN does not change an OWNER')
    assert.equal((await call(tg, owner, 'PATCH', path(owner), { team: 'staff' })).status, 200)
    assert.equal((await call(tg, admin, 'PATCH', path(member), { role: 'ANALYST', team: null })).status, 200, 'role and team together')
    assert.equal(await teamOf(member), null)
    assert.deepEqual(await tg.deps.users.member(member.userId, orgId), { role: 'ANALYST', team: null })

    const pseudo = (u: { userId: string }) => tg.deps.keyring.pseudonym(orgId, u.userId)
    const audit = await tg.deps.db.db.selectFrom('audit_event').select(['action', 'target_type', 'target_id']).where('chain_id', '=', orgId)
      .where('action', 'in', ['member_team_changed', 'privilege_permissions_changed']).orderBy('seq').execute()
    assert.deepEqual(audit, [
      { action: 'member_team_changed', target_type: 'member', target_id: `${await pseudo(member)}:students` },
      { action: 'member_team_changed', target_type: 'member', target_id: `${await pseudo(owner)}:staff` },
      { action: 'privilege_permissions_changed', target_type: 'member', target_id: await pseudo(member) },
      { action: 'member_team_changed', target_type: 'member', target_id: `${await pseudo(member)}:-` },
    ])
    assert.ok(!JSON.stringify(audit).includes(member.email), 'no email in the audit log')
  })
}
