import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { Cache } from '../cache/cache.ts'
import { clearedSessionCookie, readCookie, SESSION_COOKIE, sessionCookie } from '../api/guard.ts'
import type { Clock } from '../core/clock.ts'
import { TollgateError } from '../core/errors.ts'
import type { Logger } from '../observe/log.ts'
import type { InviteStore } from '../orgs/invites.ts'
import type { MemberStore } from '../orgs/members.ts'
import type { SsoStore } from '../orgs/sso.ts'
import type { OrgStore } from '../orgs/orgs.repo.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'
import { auditPerson } from './auth-events.ts'
import type { LoginLinks } from './login-links.ts'
import type { Oidc, OidcFlow, OidcProvider } from './oidc.ts'
import type { Passkeys } from './passkeys.ts'
import { seal, unseal } from './seal.ts'
import type { SessionCheck, SessionKind, SessionStore } from './sessions.ts'
import { normalizeEmail, subjectHash, type UserStore } from './users.ts'

export const FLOW_COOKIE = '__Host-tollgate-flow'
const FLOW_TTL_MS = 10 * 60_000
/** An IdP re-login counts as a step-up only if its `auth_time` is at most this old (D4). */
export const FRESH_AUTH_MS = 2 * 60_000

/** What the browser carries through a sign-in or step-up (sealed: it can neither read nor forge it). */
export type Flow =
  | { readonly t: 'oidc'; readonly provider: 'google' | 'sso'; readonly orgId?: string; readonly oidc: OidcFlow; readonly intent: 'signin' | 'stepup'; readonly sessionId?: string; readonly invite?: string }
  | { readonly t: 'webauthn'; readonly challenge: string; readonly intent: 'signin' | 'register' | 'stepup'; readonly sessionId?: string }
  /** An invite being accepted by someone not signed in yet: carried into the sign-in that follows. */
  | { readonly t: 'invite'; readonly token: string }

export interface AuthDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  /** Marks used OIDC states (single-use across instances when it is Redis). */
  readonly cache: Cache
  readonly audit: AuditLog
  readonly keyring: OrgKeyring
  readonly log: Logger
  readonly users: UserStore
  readonly sessions: SessionStore
  readonly oidc: Oidc
  readonly google: OidcProvider | undefined
  readonly sso: SsoStore
  readonly orgs: OrgStore
  readonly members: MemberStore
  readonly invites: InviteStore
  readonly passkeys: Passkeys
  readonly links: LoginLinks
  readonly origin: string
  readonly secureCookies: boolean
}

export async function setFlow(d: AuthDeps, reply: FastifyReply, flow: Flow): Promise<void> {
  const sealed = seal(await d.keyring.instanceKey('flow'), flow, d.clock.now() + FLOW_TTL_MS, 'flow')
  reply.header('set-cookie', `${FLOW_COOKIE}=${sealed}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${FLOW_TTL_MS / 1000}${d.secureCookies ? '; Secure' : ''}`)
}

/** Reads and clears the flow cookie: every flow is single-use. */
export async function takeFlow(d: AuthDeps, request: FastifyRequest, reply: FastifyReply): Promise<Flow | undefined> {
  const raw = readCookie(request.headers.cookie, FLOW_COOKIE)
  reply.header('set-cookie', `${FLOW_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0${d.secureCookies ? '; Secure' : ''}`)
  const flow = raw ? unseal<Flow>(await d.keyring.instanceKey('flow'), raw, d.clock.now(), 'flow') : undefined
  // A WebAuthn challenge is answered once, on the server too: a copied flow cookie replayed with
  // the same assertion must fail even for passkeys whose signature counter stays 0 (synced ones).
  if (flow?.t === 'webauthn' && !(await d.cache.setIfAbsent(`webauthn-challenge:${flow.challenge}`, '1', FLOW_TTL_MS / 1000))) return undefined
  return flow
}

/** A cookie-less POST that creates a session must still come from our own pages (login CSRF). */
export function sameOrigin(request: FastifyRequest, origin: string): boolean {
  const site = request.headers['sec-fetch-site']
  if (site !== undefined) return site === 'same-origin'
  return request.headers['origin'] === origin
}

async function startSession(d: AuthDeps, reply: FastifyReply, userId: string, kind: SessionKind, orgId: string | null, requestId: string, authAt?: number): Promise<void> {
  const { token, session } = await d.sessions.create(userId, kind, orgId, authAt)
  await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId, action: 'authn_login_success', outcome: 'success', requestId, targetType: 'session', targetId: session.id, ...(kind === 'sso' ? { orgId } : {}) }))
  reply.header('set-cookie', sessionCookie(token, (session.expiresAt - d.clock.now()) / 1000, d.secureCookies))
}

async function loginFailed(d: AuthDeps, requestId: string, reason: string, orgId?: string | null): Promise<never> {
  await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: null, action: 'authn_login_fail', outcome: 'failure', requestId, targetType: 'sign_in', targetId: reason, orgId: orgId ?? null }))
  d.log.warn({ reqId: requestId, event: 'authn_login_fail', reason }, 'sign-in refused')
  throw new TollgateError('sign_in_failed', { reason })
}

/** A refused step-up is audited as one and answered `step_up_required` (T44), never as a failed sign-in. */
async function stepUpFailed(d: AuthDeps, request: FastifyRequest, reply: FastifyReply, reason: string, checked?: SessionCheck): Promise<never> {
  const token = readCookie(request.headers.cookie, SESSION_COOKIE)
  const check = checked ?? (token ? await d.sessions.check(token) : undefined)
  // A rotation that fell due on this request must still reach the browser.
  if (check?.ok && check.newToken) reply.header('set-cookie', sessionCookie(check.newToken, (check.session.expiresAt - d.clock.now()) / 1000, d.secureCookies))
  await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: check?.ok ? check.userId : null, action: 'authn_stepup_fail', outcome: 'failure', requestId: request.id, targetType: 'step_up', targetId: reason }))
  d.log.warn({ reqId: request.id, event: 'authn_stepup_fail', reason }, 'step-up refused')
  throw new TollgateError('step_up_required', { reason })
}

const failureReason = (err: unknown): string => String((err as TollgateError).detail?.['reason'] ?? 'invalid_response')

/**
 * Sign-in and step-up flows (AUTH-1, AUTH-2, AUTH-6, AUTH-7): Google, org SSO, the bootstrap
 * link and passkeys. No password exists anywhere.
 */
export function registerAuthRoutes(app: FastifyInstance, d: AuthDeps): void {
  const redirect = (reply: FastifyReply, to: string) => reply.code(303).header('location', to).send()

  app.get('/auth/providers', { config: { action: 'public' } }, async () => ({ google: d.google !== undefined }))

  // Remember an invite through the sign-in that follows (the token never goes into a URL).
  app.post('/auth/invite', { config: { action: 'public' } }, async (request, reply) => {
    if (!sameOrigin(request, d.origin)) throw new TollgateError('csrf_rejected')
    const token = (request.body as Record<string, unknown> | undefined)?.['token']
    if (typeof token !== 'string' || !(await d.invites.open(token))) throw new TollgateError('gone')
    await setFlow(d, reply, { t: 'invite', token })
    return reply.send({ ok: true })
  })

  app.get('/auth/google', { config: { action: 'public' } }, async (request, reply) => {
    if (!d.google) throw new TollgateError('not_found')
    const pending = await takeFlow(d, request, reply)
    const invite = pending?.t === 'invite' ? pending.token : undefined
    // A provider that cannot be used (discovery failed, or its metadata names another issuer) is a refused sign-in, audited.
    const { url, flow } = await d.oidc.start(d.google).catch((err: unknown) => loginFailed(d, request.id, failureReason(err)))
    await setFlow(d, reply, { t: 'oidc', provider: 'google', oidc: flow, intent: 'signin', ...(invite ? { invite } : {}) })
    return redirect(reply, url.toString())
  })

  app.get('/auth/sso/:slug', { config: { action: 'public' } }, async (request, reply) => {
    const org = await d.orgs.bySlug(String((request.params as Record<string, string>)['slug']))
    const provider = org && org.terminatedAt === null ? await d.sso.provider(org.id) : undefined
    if (!org || !provider) throw new TollgateError('not_found')
    const { url, flow } = await d.oidc.start(provider).catch((err: unknown) => loginFailed(d, request.id, failureReason(err), org.id))
    await setFlow(d, reply, { t: 'oidc', provider: 'sso', orgId: org.id, oidc: flow, intent: 'signin' })
    return redirect(reply, url.toString())
  })

  // Step-up by signing in again at the IdP (max_age=0); the callback insists on a fresh auth_time.
  app.get('/auth/step-up', { config: { action: 'public' } }, async (request, reply) => {
    const token = readCookie(request.headers.cookie, SESSION_COOKIE)
    const check = token ? await d.sessions.check(token) : undefined
    if (!check?.ok) throw new TollgateError('unauthenticated')
    const s = check.session
    const provider = s.kind === 'google' ? d.google : s.kind === 'sso' && s.orgId ? await d.sso.provider(s.orgId) : undefined
    if (!provider) throw new TollgateError('step_up_required')
    const { url, flow } = await d.oidc.start(provider, { stepUp: true })
    await setFlow(d, reply, { t: 'oidc', provider: s.kind === 'google' ? 'google' : 'sso', ...(s.orgId ? { orgId: s.orgId } : {}), oidc: flow, intent: 'stepup', sessionId: s.id })
    return redirect(reply, url.toString())
  })

  app.get('/auth/callback', { config: { action: 'public' } }, async (request, reply) => {
    const flow = await takeFlow(d, request, reply)
    if (!flow || flow.t !== 'oidc') return loginFailed(d, request.id, 'no_flow')
    const refuse = (reason: string): Promise<never> => flow.intent === 'stepup' ? stepUpFailed(d, request, reply, reason) : loginFailed(d, request.id, reason, flow.orgId)
    // RFC 9700 §2.1: the state is single-use. The browser drops the flow cookie, but a copy of it
    // (replayed with a fresh code for the same authorization request) must not work twice.
    if (!(await d.cache.setIfAbsent(`oidc-state:${flow.oidc.state}`, '1', FLOW_TTL_MS / 1000))) return refuse('state_reused')
    const provider = flow.provider === 'google' ? d.google : flow.orgId ? await d.sso.provider(flow.orgId) : undefined
    if (!provider) return refuse('provider_gone')
    const callbackUrl = new URL(request.url, d.origin)
    let claims
    try {
      claims = await d.oidc.finish(provider, callbackUrl, flow.oidc)
    } catch (err) {
      return refuse(failureReason(err))
    }
    const email = normalizeEmail(claims.email)
    if (!email) return refuse('bad_email')
    // When the IdP reports when it authenticated the person, that (not this redirect) is the
    // authentication time: a sign-in riding on an old IdP session is no fresh authentication (D4).
    const authAt = claims.authTime !== undefined ? Math.min(claims.authTime * 1000, d.clock.now()) : undefined
    const subject = subjectHash(await d.keyring.instanceKey('identity'), claims.issuer, claims.sub)
    let user = await d.users.bySubject(subject)

    if (flow.intent === 'stepup') {
      const token = readCookie(request.headers.cookie, SESSION_COOKIE)
      const check = token ? await d.sessions.check(token) : undefined
      const fresh = claims.authTime !== undefined && d.clock.now() - claims.authTime * 1000 <= FRESH_AUTH_MS
      if (!check?.ok || check.session.id !== flow.sessionId || !user || user.id !== check.userId || !fresh) {
        return stepUpFailed(d, request, reply, fresh ? 'session_mismatch' : 'stale_auth_time', check)
      }
      const newToken = await d.sessions.reauthenticated(check.session.id, authAt!)
      await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: user!.id, action: 'authn_stepup_success', outcome: 'success', requestId: request.id, targetType: 'session', targetId: check.session.id }))
      reply.header('set-cookie', sessionCookie(newToken, (check.session.expiresAt - d.clock.now()) / 1000, d.secureCookies))
      return redirect(reply, '/')
    }

    if (user) {
      if (user.disabledAt !== null) return loginFailed(d, request.id, 'user_disabled', flow.orgId)
      // The IdP's subject is the account; the email follows it (T55).
      if (user.email !== email) await d.users.setEmail(user.id, email)
    }
    if (flow.invite) {
      const invite = await d.invites.open(flow.invite)
      if (!invite || invite.email !== email) return loginFailed(d, request.id, 'invite_mismatch', flow.orgId)
      user = await withAudit(d.db, async (trx) => {
        const u = user ?? (await d.users.create(trx, email))
        if (!user) await d.users.link(trx, u.id, subject, provider.kind, provider.orgId ?? null)
        if (!(await d.invites.accept(trx, invite.id))) throw new TollgateError('gone')
        await d.members.add(trx, invite.orgId, u.id, invite.role)
        await d.audit.append(trx, { chainId: invite.orgId, actorType: 'user', actorId: await d.keyring.pseudonym(invite.orgId, u.id, trx), action: 'user_created_by_invite', targetType: 'invite', targetId: invite.id, outcome: 'success', requestId: request.id })
        return u
      })
    } else if (flow.provider === 'sso' && flow.orgId) {
      // Just-in-time membership for the org whose IdP vouched for an allowed domain.
      const orgId = flow.orgId
      user = await withAudit(d.db, async (trx) => {
        const u = user ?? (await d.users.create(trx, email))
        if (!user) await d.users.link(trx, u.id, subject, 'oidc', orgId)
        if (await d.members.add(trx, orgId, u.id, 'MEMBER')) {
          await d.audit.append(trx, { chainId: orgId, actorType: 'system', actorId: null, action: 'user_created_by_sso', targetType: 'user', targetId: await d.keyring.pseudonym(orgId, u.id, trx), outcome: 'success', requestId: request.id })
        }
        return u
      })
    }
    if (!user) return loginFailed(d, request.id, 'no_account', flow.orgId)
    await startSession(d, reply, user.id, flow.provider === 'sso' ? 'sso' : 'google', flow.provider === 'sso' ? flow.orgId ?? null : null, request.id, authAt)
    return redirect(reply, '/')
  })

  // The bootstrap link: the token travels in the URL fragment (never sent to a server or logged);
  // the page's script posts it here.
  app.post('/auth/link', { config: { action: 'public' } }, async (request, reply) => {
    if (!sameOrigin(request, d.origin)) throw new TollgateError('csrf_rejected')
    const token = (request.body as Record<string, unknown> | undefined)?.['token']
    const userId = typeof token === 'string' ? await d.links.consume(token) : undefined
    if (!userId) return loginFailed(d, request.id, 'bad_link')
    // A link issued before the person was disabled must not start a session (T52).
    if ((await d.users.byId(userId))?.disabledAt !== null) return loginFailed(d, request.id, 'user_disabled')
    await startSession(d, reply, userId, 'bootstrap', null, request.id)
    return reply.send({ ok: true })
  })

  app.post('/auth/passkey/options', { config: { action: 'public' } }, async (request, reply) => {
    if (!sameOrigin(request, d.origin)) throw new TollgateError('csrf_rejected')
    const options = await d.passkeys.authenticationOptions()
    await setFlow(d, reply, { t: 'webauthn', challenge: options.challenge, intent: 'signin' })
    return reply.send(options)
  })

  app.post('/auth/passkey', { config: { action: 'public' } }, async (request, reply) => {
    if (!sameOrigin(request, d.origin)) throw new TollgateError('csrf_rejected')
    const flow = await takeFlow(d, request, reply)
    if (!flow || flow.t !== 'webauthn' || flow.intent !== 'signin') return loginFailed(d, request.id, 'no_flow')
    const userId = await d.passkeys.authenticate(flow.challenge, request.body as never)
    const user = userId ? await d.users.byId(userId) : undefined
    if (!user || user.disabledAt !== null) return loginFailed(d, request.id, 'passkey_not_verified')
    await startSession(d, reply, user.id, 'passkey', null, request.id)
    return reply.send({ ok: true })
  })

  app.post('/auth/sign-out', { config: { action: 'public' } }, async (request, reply) => {
    if (!sameOrigin(request, d.origin)) throw new TollgateError('csrf_rejected')
    const token = readCookie(request.headers.cookie, SESSION_COOKIE)
    const check = token ? await d.sessions.check(token) : undefined
    if (check?.ok) {
      await d.sessions.end(check.session.id, 'logout')
      await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, { userId: check.userId, action: 'session_logout', outcome: 'success', requestId: request.id, targetType: 'session', targetId: check.session.id }))
    }
    reply.header('set-cookie', clearedSessionCookie(d.secureCookies))
    reply.header('clear-site-data', '"cache", "cookies", "storage"')
    return reply.code(204).send()
  })
}
