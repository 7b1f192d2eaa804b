import type { FastifyReply, FastifyRequest } from 'fastify'
import { withAudit, type AuditLog } from '../audit/audit.ts'
import type { Clock } from '../core/clock.ts'
import type { Environment } from '../core/model.ts'
import { constantTimeEqual, hmacSha256 } from '../core/crypto.ts'
import { TollgateError } from '../core/errors.ts'
import { auditPerson } from '../identity/auth-events.ts'
import type { SessionInfo, SessionStore } from '../identity/sessions.ts'
import type { UserStore } from '../identity/users.ts'
import { presentedKey } from '../keys/authenticate.ts'
import type { KeyStore } from '../keys/keys.repo.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { RateLimiter } from '../ratelimit/limits.ts'
import type { RateTiers } from '../ratelimit/tiers.ts'
import { can, SENSITIVE, type Action, type Role } from '../orgs/rbac.ts'
import type { Kysely } from 'kysely'
import type { DB } from '../storage/schema.ts'

/** Who is calling the admin API: a person with a session cookie, or an admin key acting for its member. */
export type Principal =
  | { readonly kind: 'session'; readonly userId: string; readonly session: SessionInfo }
  | { readonly kind: 'key'; readonly userId: string; readonly keyId: string; readonly keyOrgId: string }

/** Every admin route declares one of these: an RBAC action, `self` (any signed-in person) or `public`. */
export type RouteAction = Action | 'self' | 'public'

declare module 'fastify' {
  interface FastifyContextConfig {
    action?: RouteAction
    /** A `self` route that needs a fresh authentication like a SENSITIVE action (account export and deletion). */
    stepUp?: boolean
  }
  interface FastifyRequest {
    principal?: Principal
    /** The org named by the route's :org parameter and the caller's role in it. */
    orgAccess?: { readonly orgId: string; readonly role: Role }
  }
}

export const SESSION_COOKIE = '__Host-tollgate'

export interface GuardDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  readonly sessions: SessionStore
  readonly users: UserStore
  readonly keys: KeyStore
  readonly keyring: OrgKeyring
  readonly audit: AuditLog
  /** This instance's own origin, e.g. https://tollgate.example.com. */
  readonly origin: string
  readonly stepUpWindowMs: number
  readonly secureCookies: boolean
  readonly rate: RateLimiter
  readonly tiers: RateTiers
  /** Key environments this instance serves (TOLLGATE_ENVIRONMENTS): an admin key of another one gets 403 (KEY-2). */
  readonly environments: readonly Environment[]
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])

export function sessionCookie(token: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${Math.max(0, Math.floor(maxAgeS))}${secure ? '; Secure' : ''}`
}

export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0${secure ? '; Secure' : ''}`
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 8192) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** The CSRF token of a session: HMAC(instance CSRF key, session id). Given out by GET /api/me. */
export async function csrfToken(keyring: OrgKeyring, sessionId: string): Promise<string> {
  return hmacSha256(await keyring.instanceKey('csrf'), sessionId).toString('base64url')
}

/**
 * The admin API's gate, run before every /api/ handler, in this order:
 * 1. principal — session cookie (rotated when due) or an admin-scoped API key; else 401;
 * 2. CSRF — a cookie-authenticated state change must come from our own origin (Sec-Fetch-Site
 *    or Origin) AND carry the session's CSRF token in `x-csrf-token`; else 403 (audited);
 * 3. org — a route with :org answers 404 unless the caller is a member (the same 404 whether the
 *    org exists or not, DATA-3);
 * 4. permission — `can(role, action)` from the one table; else 403 (audited);
 * 5. step-up — a sensitive action, or a `self` route declaring `stepUp: true`, needs an
 *    authentication within the window (by session, never by key); else 403 step_up_required (audited).
 */
export function adminGuard(d: GuardDeps) {
  return async function guard(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const action = request.routeOptions.config.action
    if (action === undefined) throw new TollgateError('internal_error', { reason: 'route_without_action' })
    if (action === 'public') return

    const principal = await resolvePrincipal(request, reply, d)
    if (!principal) throw new TollgateError('unauthenticated')
    request.principal = principal

    // The caller's role in the route's org (an admin key acts only inside its own org). Looked up
    // before the limit: an org's tier applies only to its own members, never to a caller who names
    // another org in the URL to borrow its (higher) limit.
    const orgParam = (request.params as Record<string, string | undefined>)['org']
    const role = orgParam === undefined || (principal.kind === 'key' && principal.keyOrgId !== orgParam) ? undefined : await d.users.role(principal.userId, orgParam)

    // LIMIT-1: at most N admin requests in any 60 s per person or admin key (their org's tier if any).
    const quota = await d.rate.check('api', [{ policy: 'api-principal', key: principal.kind === 'key' ? `key:${principal.keyId}` : `user:${principal.userId}`, limit: await d.tiers.limit(role ? orgParam : undefined, 'api') }])
    reply.headers(quota.headers)
    if (!quota.allowed) throw new TollgateError('rate_limited', undefined, undefined, quota.headers)

    if (principal.kind === 'session' && !SAFE_METHODS.has(request.method)) {
      const sameOrigin = fromOwnOrigin(request, d.origin)
      const presented = request.headers['x-csrf-token']
      const tokenOk = typeof presented === 'string' && constantTimeEqual(presented, await csrfToken(d.keyring, principal.session.id))
      if (!sameOrigin || !tokenOk) {
        await auditDenied(d, request, 'malicious_csrf', principal)
        throw new TollgateError('csrf_rejected')
      }
    }

    if (action === 'self') {
      if (request.routeOptions.config.stepUp) await requireStepUp(d, request, principal)
      return
    }
    if (orgParam === undefined) throw new TollgateError('internal_error', { reason: 'action_route_without_org' })
    if (!role) throw new TollgateError('not_found')
    request.orgAccess = { orgId: orgParam, role }
    if (!can(role, action)) {
      await auditDenied(d, request, 'authz_fail', principal, orgParam)
      throw new TollgateError('forbidden')
    }
    if (SENSITIVE.has(action)) await requireStepUp(d, request, principal, orgParam)
  }
}

/** Step 5: a fresh authentication of this session within the window; else audited and 403 step_up_required. */
async function requireStepUp(d: GuardDeps, request: FastifyRequest, principal: Principal, orgId?: string): Promise<void> {
  const fresh = principal.kind === 'session' && d.clock.now() - principal.session.authAt <= d.stepUpWindowMs
  if (fresh) return
  await auditDenied(d, request, 'authz_fail', principal, orgId)
  throw new TollgateError('step_up_required')
}

/** Sec-Fetch-Site says same-origin, or (older browsers, no Sec-Fetch-*) Origin is ours. */
function fromOwnOrigin(request: FastifyRequest, origin: string): boolean {
  const site = request.headers['sec-fetch-site']
  return site !== undefined ? site === 'same-origin' : request.headers['origin'] === origin
}

async function resolvePrincipal(request: FastifyRequest, reply: FastifyReply, d: GuardDeps): Promise<Principal | undefined> {
  const token = readCookie(request.headers.cookie, SESSION_COOKIE)
  if (token) {
    const r = await d.sessions.check(token)
    if (!r.ok) {
      // The check that ends an expired session audits it, once, with the reason (T51).
      if (r.firstSeen && r.session && (r.reason === 'expired' || r.reason === 'idle')) await auditExpired(d, request, r.session, r.reason)
      return undefined
    }
    const user = await d.users.byId(r.userId)
    if (!user || user.disabledAt !== null) return undefined
    if (r.newToken) reply.header('set-cookie', sessionCookie(r.newToken, (r.session.expiresAt - d.clock.now()) / 1000, d.secureCookies))
    return { kind: 'session', userId: r.userId, session: r.session }
  }
  const presented = presentedKey(request.headers)
  if (presented) {
    const key = await d.keys.verify(presented)
    if (!key || key.scope !== 'admin' || key.userId === null) return undefined
    // KEY-2: the same rule as the AI endpoints — a sandbox key never acts on a production-only instance.
    if (!d.environments.includes(key.environment)) throw new TollgateError('environment_not_served')
    return { kind: 'key', userId: key.userId, keyId: key.id, keyOrgId: key.orgId }
  }
  return undefined
}

async function auditExpired(d: GuardDeps, request: FastifyRequest, s: SessionInfo, reason: 'expired' | 'idle'): Promise<void> {
  await withAudit(d.db, (trx) => auditPerson(trx, d.audit, d.keyring, {
    userId: s.userId, action: 'session_expired', outcome: 'denied', requestId: request.id, targetType: 'session',
    targetId: `${reason === 'idle' ? 'idle' : 'absolute'}:${s.id}`, ...(s.kind === 'sso' ? { orgId: s.orgId } : {}),
  }))
}

async function auditDenied(d: GuardDeps, request: FastifyRequest, action: string, p: Principal, orgId?: string): Promise<void> {
  const chains = orgId ? [orgId] : (await d.users.memberships(p.userId)).map((m) => m.orgId)
  await withAudit(d.db, async (trx) => {
    const entries: { chainId: string; actorId: string | null }[] = []
    for (const chainId of chains) {
      // An org whose keys are gone (a shredded org in a restored backup, D13) takes no entry.
      const actorId = await d.keyring.livePseudonym(chainId, p.userId, trx)
      if (actorId !== undefined) entries.push({ chainId, actorId })
    }
    if (entries.length === 0) entries.push({ chainId: 'instance', actorId: null })
    for (const { chainId, actorId } of entries) {
      await d.audit.append(trx, {
        chainId, actorType: p.kind === 'session' ? 'user' : 'api_key', actorId, action, targetType: 'route',
        targetId: `${request.method} ${request.routeOptions.url ?? ''}`, outcome: 'denied', requestId: request.id,
      })
    }
  })
}
