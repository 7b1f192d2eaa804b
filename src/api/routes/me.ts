import type { FastifyInstance } from 'fastify'
import { withAudit } from '../../audit/audit.ts'
import { TollgateError } from '../../core/errors.ts'
import { auditPerson } from '../../identity/auth-events.ts'
import { setFlow, takeFlow, type AuthDeps } from '../../identity/routes.ts'
import { csrfToken, sessionCookie } from '../guard.ts'
import { EMPTY_BODY, ID, iso, NULLABLE_TIME, object, OK, ROLE, TIME } from '../schemas.ts'

export interface InstanceView {
  readonly providers: { readonly production: string[]; readonly sandbox: string[] }
  readonly google_sign_in: boolean
  readonly mail: 'smtp' | 'outbox'
}

const SESSION = object({ id: ID, kind: { type: 'string' }, current: { type: 'boolean' }, created_at: TIME, last_seen_at: TIME, expires_at: TIME, idle_expires_at: NULLABLE_TIME })
const PASSKEY = object({ id: { type: 'string' }, created_at: TIME, last_used_at: NULLABLE_TIME, backed_up: { type: 'boolean' } })

/** The signed-in person's own account: profile, sessions, passkeys, step-up (action `self`). */
export function registerMeRoutes(app: FastifyInstance, d: AuthDeps & { stepUpWindowMs: number; instance: () => InstanceView }): void {
  app.get('/api/instance', {
    config: { action: 'self' },
    schema: { summary: 'This instance: which upstream providers serve each key environment (none = the local provider answers), sign-in methods, mail transport.', response: { 200: object({
      providers: object({ production: { type: 'array', items: { type: 'string' } }, sandbox: { type: 'array', items: { type: 'string' } } }),
      google_sign_in: { type: 'boolean' }, mail: { type: 'string', enum: ['smtp', 'outbox'] },
    }) } },
  }, async () => d.instance())

  app.post('/api/invites/accept', {
    config: { action: 'self' },
    schema: { summary: 'Accept an invite as the signed-in person (the invite\'s email must be yours).', body: object({ token: { type: 'string', maxLength: 64 } }), response: { 200: object({ org_id: ID, role: ROLE }) } },
  }, async (request) => {
    const p = request.principal!
    const invite = await d.invites.open((request.body as { token: string }).token)
    const user = await d.users.byId(p.userId)
    if (!invite || !user || invite.email !== user.email) throw new TollgateError('gone')
    await withAudit(d.db, async (trx) => {
      if (!(await d.invites.accept(trx, invite.id))) throw new TollgateError('gone')
      await d.members.add(trx, invite.orgId, user.id, invite.role)
      await d.audit.append(trx, { chainId: invite.orgId, actorType: 'user', actorId: await d.keyring.pseudonym(invite.orgId, user.id, trx), action: 'invite_accepted', targetType: 'invite', targetId: invite.id, outcome: 'success', requestId: request.id })
    })
    await d.sessions.rotateOnNextUse(user.id)
    return { org_id: invite.orgId, role: invite.role }
  })

  app.get('/api/me', {
    config: { action: 'self' },
    schema: {
      summary: 'Who am I: email, memberships, this session, and the CSRF token for state-changing calls.',
      response: { 200: object({
        user: object({ id: ID, email: { type: 'string' } }),
        memberships: { type: 'array', items: object({ org_id: ID, slug: { type: 'string' }, role: ROLE }) },
        session: { anyOf: [object({ id: ID, kind: { type: 'string' }, expires_at: TIME, step_up_valid_until: NULLABLE_TIME }), { type: 'null' }] },
        csrf_token: { type: ['string', 'null'] },
      }) },
    },
  }, async (request) => {
    const p = request.principal!
    const user = await d.users.byId(p.userId)
    if (!user) throw new TollgateError('unauthenticated')
    const memberships = await d.users.memberships(user.id)
    const session = p.kind === 'session' ? p.session : undefined
    const stepUpUntil = session ? session.authAt + d.stepUpWindowMs : null
    return {
      user: { id: user.id, email: user.email },
      memberships: memberships.map((m) => ({ org_id: m.orgId, slug: m.slug, role: m.role })),
      session: session ? { id: session.id, kind: session.kind, expires_at: iso(session.expiresAt), step_up_valid_until: stepUpUntil !== null && stepUpUntil > d.clock.now() ? iso(stepUpUntil) : null } : null,
      csrf_token: session ? await csrfToken(d.keyring, session.id) : null,
    }
  })

  app.get('/api/me/sessions', {
    config: { action: 'self' },
    schema: { summary: 'My live sessions.', response: { 200: object({ sessions: { type: 'array', items: SESSION } }) } },
  }, async (request) => {
    const p = request.principal!
    const current = p.kind === 'session' ? p.session.id : undefined
    const live = await d.sessions.live(p.userId)
    return { sessions: live.map((s) => ({ id: s.id, kind: s.kind, current: s.id === current, created_at: iso(s.createdAt), last_seen_at: iso(s.lastSeenAt), expires_at: iso(s.expiresAt), idle_expires_at: iso(s.idleExpiresAt) })) }
  })

  app.delete('/api/me/sessions/:id', {
    config: { action: 'self' },
    schema: { summary: 'End one of my sessions.', params: object({ id: ID }), response: { 200: OK } },
  }, async (request) => {
    const p = request.principal!
    const id = (request.params as { id: string }).id
    const mine = (await d.sessions.live(p.userId)).some((s) => s.id === id)
    if (!mine) throw new TollgateError('not_found')
    // The effect and its audit entry commit together (D8: no audit, no effect).
    await withAudit(d.db, async (trx) => {
      if (!(await d.sessions.end(id, 'ended_by_user', trx))) throw new TollgateError('not_found')
      await auditPerson(trx, d.audit, d.keyring, { userId: p.userId, action: 'session_ended', outcome: 'success', requestId: request.id, targetType: 'session', targetId: id })
    })
    return { ok: true }
  })

  app.post('/api/me/sessions/end-others', {
    config: { action: 'self' },
    schema: { summary: 'End all my sessions except this one.', body: EMPTY_BODY, response: { 200: object({ ended: { type: 'integer' } }) } },
  }, async (request) => {
    const p = request.principal!
    const ended = await withAudit(d.db, async (trx) => {
      const n = await d.sessions.endAll(p.userId, 'ended_by_user', p.kind === 'session' ? p.session.id : undefined, trx)
      await auditPerson(trx, d.audit, d.keyring, { userId: p.userId, action: 'session_ended', outcome: 'success', requestId: request.id, targetType: 'sessions', targetId: `others:${n}` })
      return n
    })
    return { ended }
  })

  app.get('/api/me/passkeys', {
    config: { action: 'self' },
    schema: { summary: 'My passkeys (public keys only are stored).', response: { 200: object({ passkeys: { type: 'array', items: PASSKEY } }) } },
  }, async (request) => {
    const list = await d.passkeys.list(request.principal!.userId)
    return { passkeys: list.map((k) => ({ id: k.id, created_at: iso(k.createdAt), last_used_at: iso(k.lastUsedAt), backed_up: k.backedUp })) }
  })

  app.post('/api/me/passkeys/options', {
    config: { action: 'self' },
    schema: { summary: 'Start registering a passkey: WebAuthn creation options.', body: EMPTY_BODY },
  }, async (request, reply) => {
    const p = request.principal!
    if (p.kind !== 'session') throw new TollgateError('forbidden')
    const user = await d.users.byId(p.userId)
    const options = await d.passkeys.registrationOptions({ id: p.userId, email: user!.email })
    await setFlow(d, reply, { t: 'webauthn', challenge: options.challenge, intent: 'register', sessionId: p.session.id })
    return options
  })

  app.post('/api/me/passkeys', {
    config: { action: 'self' },
    schema: { summary: 'Finish registering a passkey (the WebAuthn attestation response).', body: { type: 'object' }, response: { 200: PASSKEY } },
  }, async (request, reply) => {
    const p = request.principal!
    const flow = await takeFlow(d, request, reply)
    if (p.kind !== 'session' || !flow || flow.t !== 'webauthn' || flow.intent !== 'register' || flow.sessionId !== p.session.id) throw new TollgateError('invalid_request')
    const key = await d.passkeys.register(p.userId, flow.challenge, request.body as never)
    if (!key) throw new TollgateError('invalid_request')
    await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: p.userId, action: 'authn_factor_added', outcome: 'success', requestId: request.id, targetType: 'passkey', targetId: key.id.slice(0, 32) }))
    return { id: key.id, created_at: iso(key.createdAt), last_used_at: null, backed_up: key.backedUp }
  })

  app.delete('/api/me/passkeys/:id', {
    config: { action: 'self' },
    schema: { summary: 'Remove one of my passkeys (needs a fresh authentication).', params: object({ id: { type: 'string', maxLength: 1024 } }), response: { 200: OK } },
  }, async (request) => {
    const p = request.principal!
    if (p.kind !== 'session' || d.clock.now() - p.session.authAt > d.stepUpWindowMs) throw new TollgateError('step_up_required')
    const id = (request.params as { id: string }).id
    await withAudit(d.db, async (trx) => {
      if (!(await d.passkeys.remove(p.userId, id, trx))) throw new TollgateError('not_found')
      await auditPerson(trx, d.audit, d.keyring, { userId: p.userId, action: 'authn_factor_removed', outcome: 'success', requestId: request.id, targetType: 'passkey', targetId: id.slice(0, 32) })
    })
    return { ok: true }
  })

  app.post('/api/me/step-up/options', {
    config: { action: 'self' },
    schema: { summary: 'Start a passkey step-up: WebAuthn request options for my passkeys.', body: EMPTY_BODY },
  }, async (request, reply) => {
    const p = request.principal!
    if (p.kind !== 'session') throw new TollgateError('forbidden')
    const options = await d.passkeys.authenticationOptions(p.userId)
    await setFlow(d, reply, { t: 'webauthn', challenge: options.challenge, intent: 'stepup', sessionId: p.session.id })
    return options
  })

  app.post('/api/me/step-up', {
    config: { action: 'self' },
    schema: { summary: 'Finish a passkey step-up: the session token is rotated and the step-up window starts.', body: { type: 'object' }, response: { 200: object({ step_up_valid_until: TIME }) } },
  }, async (request, reply) => {
    const p = request.principal!
    const flow = await takeFlow(d, request, reply)
    const ok = p.kind === 'session' && flow?.t === 'webauthn' && flow.intent === 'stepup' && flow.sessionId === p.session.id &&
      (await d.passkeys.authenticate(flow.challenge, request.body as never, p.userId)) === p.userId
    if (!ok || p.kind !== 'session') {
      await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: p.userId, action: 'authn_stepup_fail', outcome: 'failure', requestId: request.id }))
      throw new TollgateError('step_up_required')
    }
    const now = d.clock.now()
    const token = await d.sessions.reauthenticated(p.session.id, now)
    await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: p.userId, action: 'authn_stepup_success', outcome: 'success', requestId: request.id, targetType: 'session', targetId: p.session.id }))
    reply.header('set-cookie', sessionCookie(token, (p.session.expiresAt - now) / 1000, d.secureCookies))
    return { step_up_valid_until: iso(now + d.stepUpWindowMs) }
  })
}
