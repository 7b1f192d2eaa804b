import assert from 'node:assert/strict'
import type { TestApp } from '../helpers/app.ts'
import { call, email, inviteIn, keyFor, newUser, nobody, passkeyFor, ssoIn, type Person } from './world.ts'
import { artifactOf, enableWorkspace, reportOf } from '../artifacts/seed.ts'

/**
 * A live fixture for every state-changing /api/ route, for a signed-in OWNER of `orgId`: the path
 * parameters name real objects and the body is valid, so the request — if let through — changes
 * something (the admin-input and audit fail-closed tests rely on that).
 */

export const DOC = { version: 1, default_action: 'allow', rules: [] }

export interface Valid {
  readonly params: Record<string, string>
  readonly body?: Record<string, unknown>
  /** The status of the valid request (the positive control); undefined when it cannot succeed without a browser. */
  readonly ok?: number
}

export type Ctx = { tg: TestApp; owner: Person; orgId: string; spareOrg: string }

const api = async (c: Ctx, method: string, path: string, body: unknown, want: number) => {
  const r = await call(c.tg, c.owner, method, `/api/orgs/${c.orgId}${path}`, body)
  assert.equal(r.status, want, `fixture ${method} ${path}: ${r.text}`)
  return r.json
}

/** Live fixtures for each route: if a bad request were accepted, it would change something. */
export const VALID: Record<string, (c: Ctx) => Promise<Valid>> = {
  'POST /api/invites/accept': async (c) => ({ params: {}, body: { token: (await inviteIn(c.tg, c.spareOrg, c.owner.email)).token }, ok: 200 }),
  'DELETE /api/me/sessions/:id': async (c) => ({ params: { id: (await c.tg.deps.sessions.create(c.owner.userId, 'bootstrap', null)).session.id }, ok: 200 }),
  'POST /api/me/sessions/end-others': async () => ({ params: {}, body: {}, ok: 200 }),
  'POST /api/me/passkeys/options': async () => ({ params: {}, body: {}, ok: 200 }),
  'POST /api/me/passkeys': async () => ({ params: {}, body: {} }),
  'DELETE /api/me/passkeys/:id': async (c) => ({ params: { id: await passkeyFor(c.tg, c.owner.userId) }, ok: 200 }),
  'POST /api/me/step-up/options': async () => ({ params: {}, body: {}, ok: 200 }),
  'POST /api/me/step-up': async () => ({ params: {}, body: {} }),
  'PATCH /api/orgs/:org/members/:user': async (c) => ({ params: { user: (await newUser(c.tg, c.orgId, 'MEMBER')).userId }, body: { role: 'ANALYST', team: 'students' }, ok: 200 }),
  'DELETE /api/orgs/:org/members/:user': async (c) => ({ params: { user: (await newUser(c.tg, c.orgId, 'MEMBER')).userId }, ok: 200 }),
  'POST /api/orgs/:org/members/:user/end-sessions': async (c) => {
    const u = await newUser(c.tg, c.orgId, 'MEMBER')
    await c.tg.deps.sessions.create(u.userId, 'bootstrap', null)
    return { params: { user: u.userId }, body: {}, ok: 200 }
  },
  'POST /api/orgs/:org/invites': async () => ({ params: {}, body: { email: email('input'), role: 'MEMBER' }, ok: 201 }),
  'DELETE /api/orgs/:org/invites/:id': async (c) => ({ params: { id: (await inviteIn(c.tg, c.orgId)).id }, ok: 200 }),
  'PUT /api/orgs/:org/sso': async () => ({ params: {}, body: { issuer: 'https://idp.example.com', client_id: 'tollgate', client_secret: 'shh', allowed_domains: ['example.com'] }, ok: 200 }),
  'DELETE /api/orgs/:org/sso': async (c) => (await ssoIn(c.tg, c.orgId), { params: {}, ok: 200 }),
  'POST /api/orgs/:org/keys': async (c) => ({ params: {}, body: { environment: 'sandbox', label: 'input test', user_id: c.owner.userId, scope: 'gateway' }, ok: 201 }),
  'POST /api/orgs/:org/keys/:id/rotate': async (c) => ({ params: { id: (await keyFor(c.tg, c.orgId, c.owner.userId)).id }, body: { grace_seconds: 0 }, ok: 201 }),
  'DELETE /api/orgs/:org/keys/:id': async (c) => ({ params: { id: (await keyFor(c.tg, c.orgId, c.owner.userId)).id }, ok: 200 }),
  'POST /api/orgs/:org/policies/validate': async () => ({ params: {}, body: { document: DOC }, ok: 200 }),
  'POST /api/orgs/:org/policies': async () => ({ params: {}, body: { document: DOC }, ok: 201 }),
  'PUT /api/orgs/:org/policies/:id': async (c) => ({ params: { id: (await api(c, 'POST', '/policies', { document: DOC }, 201)).id }, body: { document: DOC }, ok: 200 }),
  'POST /api/orgs/:org/policies/:id/activate': async (c) => ({ params: { id: (await api(c, 'POST', '/policies', { document: DOC }, 201)).id }, body: {}, ok: 200 }),
  'POST /api/orgs/:org/policies/:id/test': async (c) => ({ params: { id: (await api(c, 'POST', '/policies', { document: DOC }, 201)).id }, body: { samples: [{ facts: {} }] }, ok: 200 }),
  'POST /api/orgs/:org/policies/:id/promote': async (c) => {
    const id = (await api(c, 'POST', '/policies', { document: DOC }, 201)).id
    await api(c, 'POST', `/policies/${id}/activate`, {}, 200)
    await api(c, 'POST', `/policies/${id}/test`, { samples: [{ facts: {} }] }, 200)
    return { params: { id }, body: {}, ok: 201 }
  },
  'POST /api/orgs/:org/policies/:id/retire': async (c) => ({ params: { id: (await api(c, 'POST', '/policies', { document: DOC }, 201)).id }, body: {}, ok: 200 }),
  'PATCH /api/orgs/:org/settings': async () => ({ params: {}, body: { training_consent: true }, ok: 200 }),
  'PUT /api/orgs/:org/alerts/webhook': async () => ({ params: {}, body: { url: 'https://hooks.example.com/tollgate', rotate_secret: true }, ok: 200 }),
  'DELETE /api/orgs/:org/alerts/webhook': async (c) => (await c.tg.deps.alertWebhooks.put(c.tg.deps.db.db, c.orgId, 'https://hooks.example.com/tollgate', false), { params: {}, ok: 200 }),
  // RIGHTS-3, GW-8: the OWNER's own artifact and report (the workspace turned on first).
  'POST /api/orgs/:org/artifacts': async (c) => (await enableWorkspace(c.tg, c.orgId), { params: {}, body: { content: 'an answer worth keeping', title: 'kept', temporary: true }, ok: 201 }),
  'DELETE /api/orgs/:org/artifacts/:id': async (c) => ({ params: { id: await artifactOf(c.tg, c.orgId, c.owner.userId) }, ok: 200 }),
  'POST /api/orgs/:org/reports': async () => ({ params: {}, body: { text: 'a harmful answer', category: 'S1', decision_id: nobody() }, ok: 201 }),
  'POST /api/orgs/:org/reports/:id/resolve': async (c) => ({ params: { id: await reportOf(c.tg, c.orgId, c.owner.userId) }, body: { outcome: 'actioned' }, ok: 200 }),
  'DELETE /api/orgs/:org/reports/:id': async (c) => ({ params: { id: await reportOf(c.tg, c.orgId, c.owner.userId) }, ok: 200 }),
  // RIGHTS-2: the fixture OWNER is the last OWNER of an org with members, so the valid deletion is
  // refused (409, audited) and the OWNER lives on for the other routes; test/rights proves the deletion.
  'DELETE /api/account': async () => ({ params: {}, ok: 409 }),
  // A valid termination would end the fixture org for every route after it: no positive run here
  // (test/rights proves it); a refused request must still change nothing.
  'DELETE /api/orgs/:org': async (c) => ({ params: {}, body: { confirm: (await c.tg.deps.orgs.byId(c.orgId))!.slug } }),
}
