import swagger from '@fastify/swagger'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { INSTANCE_CHAIN, withAudit, type AuditLog } from './audit/audit.ts'
import { truncateIp } from './core/ip.ts'
import { claimIdempotency, keepsOutcome, type Claimed } from './idempotency/claim.ts'
import { runUnderClaim } from './idempotency/context.ts'
import { seal, unseal } from './identity/seal.ts'
import { adminGuard } from './api/guard.ts'
import { registerMeRoutes } from './api/routes/me.ts'
import { registerOrgRoutes } from './api/routes/orgs.ts'
import { registerPolicyRoutes } from './api/routes/policies.ts'
import { registerAnalyticsRoutes } from './api/routes/analytics.ts'
import type { AlertWebhooks } from './analytics/alerts.ts'
import type { Analytics } from './analytics/analytics.ts'
import { registerAccountRoutes } from './api/routes/account.ts'
import { registerArtifactRoutes } from './api/routes/artifacts.ts'
import type { Cache } from './cache/cache.ts'
import type { Secret } from './core/secret.ts'
import { seedDemo } from './identity/bootstrap.ts'
import type { LoginLinks } from './identity/login-links.ts'
import type { Oidc, OidcProvider } from './identity/oidc.ts'
import type { Passkeys } from './identity/passkeys.ts'
import { registerAuthRoutes } from './identity/routes.ts'
import type { SessionStore } from './identity/sessions.ts'
import type { UserStore } from './identity/users.ts'
import type { MailTransport } from './mail/mail.ts'
import { registerOperatorRoutes } from './ops/routes.ts'
import type { Backups } from './backup/backup.ts'
import type { InviteStore } from './orgs/invites.ts'
import type { MemberStore } from './orgs/members.ts'
import type { OrgStore } from './orgs/orgs.repo.ts'
import type { SsoStore } from './orgs/sso.ts'
import type { OrgSettingsStore } from './orgs/org-settings.ts'
import { registerWebRoutes } from './web/routes.ts'
import { ERRORS, TollgateError, type ErrorCode } from './core/errors.ts'
import { jsonNestingExceeds } from './core/json-depth.ts'
import { newRequestId } from './core/ids.ts'
import type { GatewayDeps } from './gateway/pipeline.ts'
import { registerGatewayRoutes, rejectOnAiRoute } from './gateway/routes.ts'
import { safeError } from './observe/log.ts'
import { classifierLoaded, registerOpsRoutes } from './observe/routes.ts'
import { sql } from 'kysely'
import type { TrustInstance } from './trust/instance.ts'
import { registerTrustRoutes } from './trust/routes.ts'
import { pendingMigrations } from './storage/migrations/index.ts'
import type { Database } from './storage/database.ts'

export interface HttpSettings {
  readonly bodyLimitBytes: number
  /** LIMIT-3: request line + headers (431 above), time to receive the headers and the whole request (408), open connections. */
  readonly maxHeaderBytes: number
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly maxConnections: number
  /** Deepest object/array nesting of a JSON body, checked before it is parsed. */
  readonly jsonMaxDepth: number
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined
  readonly hstsMaxAgeS: number
  /** https:// here means a TLS proxy is in front: HSTS is sent then too. */
  readonly publicUrl: string | undefined
  /** Reverse proxies whose X-Forwarded-For is believed (addresses or CIDRs); empty: nobody's. */
  readonly trustedProxies: readonly string[]
}

export interface ServerDeps extends GatewayDeps {
  readonly db: Database
  readonly cache: Cache
  readonly http: HttpSettings
  readonly audit: AuditLog
  readonly orgs: OrgStore
  readonly users: UserStore
  readonly members: MemberStore
  readonly invites: InviteStore
  readonly links: LoginLinks
  readonly sso: SsoStore
  readonly sessions: SessionStore
  readonly passkeys: Passkeys
  readonly oidc: Oidc
  readonly google: OidcProvider | undefined
  readonly mail: MailTransport
  readonly origin: string
  readonly stepUpWindowMs: number
  /** RIGHTS-2: a terminated org's data is deleted by termination + this (TOLLGATE_ORG_PURGE_DELAY_S). */
  readonly orgPurgeDelayMs: number
  readonly secureCookies: boolean
  readonly opsSecret: Secret | undefined
  /** BACKUP-1: POST /ops/backup takes one now; undefined when backups are off (production without a key). */
  readonly backups?: Backups | undefined
  readonly orgSettings: OrgSettingsStore
  /** TRUST-1: the publishable view of the loaded settings (never a secret). */
  readonly trust: TrustInstance
  /** AUDIT-4, RBAC-3: k-floored cohort analytics and the orgs' alert webhooks. */
  readonly analytics: Analytics
  readonly alertWebhooks: AlertWebhooks
}

/** Headers on every response (CRYPTO-1: HSTS whenever the client reached us over TLS). */
export function baseHeaders(http: HttpSettings): Readonly<Record<string, string>> {
  const h: Record<string, string> = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' }
  if (http.tls || http.publicUrl?.startsWith('https://')) h['strict-transport-security'] = `max-age=${http.hstsMaxAgeS}; includeSubDomains`
  return Object.freeze(h)
}

declare module 'fastify' {
  interface FastifyRequest {
    idempotencyClaim?: Claimed
  }
}

/** A replayed response never shows a key secret twice (LIMIT-2). */
function withoutSecret(payload: string): string {
  if (!payload.includes('"secret"')) return payload
  const body = JSON.parse(payload) as Record<string, unknown>
  return 'secret' in body ? JSON.stringify({ ...body, secret: null }) : payload
}

/** The problem types of draft-ietf-httpapi-ratelimit-headers-10 (IANA HTTP problem types registry). */
const PROBLEMS: Partial<Record<ErrorCode, string>> = {
  rate_limited: 'https://iana.org/assignments/http-problem-types#quota-exceeded',
  rate_limit_unavailable: 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity',
}

/** Maps what the framework throws (parser, limits, routing) to a public code. */
export function frameworkCode(err: FastifyError | Error): ErrorCode {
  if (err instanceof TollgateError) return err.code
  const code = (err as FastifyError).code
  const status = (err as FastifyError).statusCode
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return 'unsupported_media_type'
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE' || status === 413) return 'payload_too_large'
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) return 'invalid_json'
  if (status === 404) return 'not_found'
  if (status === 405) return 'method_not_allowed'
  if (status === 408) return 'request_timeout'
  if (status === 415) return 'unsupported_media_type'
  if (status !== undefined && status >= 400 && status < 500) return 'invalid_request'
  return 'internal_error'
}

/**
 * A request Node's HTTP parser refused (malformed framing, headers over TOLLGATE_MAX_HEADER_BYTES,
 * a header or request timeout): answered once, in Tollgate's shape, then the connection is
 * closed — nothing after the refusal is read as another request. Like Node's own handler, it
 * writes only when no response has started on the connection.
 */
function clientError(err: Error & { code?: string }, socket: Socket, base: Readonly<Record<string, string>>): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  // A method Node's parser does not know (TRACK, PROPFIND…) is a method this server does not allow.
  const unknownMethod = err.code === 'HPE_INVALID_METHOD' && /^[A-Z]{1,32} /.test((err as { rawPacket?: Buffer }).rawPacket?.subarray(0, 40).toString('latin1') ?? '')
  const code: ErrorCode = err.code === 'HPE_HEADER_OVERFLOW' ? 'headers_too_large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'request_timeout' : unknownMethod ? 'method_not_allowed' : 'invalid_request'
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  if (socket.writable && !inFlight?.headersSent) {
    const { status, message } = ERRORS[code]
    const body = JSON.stringify({ error: { code, message } })
    const head = Object.entries({ ...base, ...(code === 'method_not_allowed' ? { allow: 'GET, HEAD, POST, PUT, PATCH, DELETE' } : {}) }).map(([k, v]) => `${k}: ${v}\r\n`).join('')
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head}connection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
  socket.destroy(err)
}

/** For a schema validation failure: which field, as `body.role` — schema names and indexes only. */
function validationParam(err: FastifyError): string | undefined {
  const v = err.validation?.[0]
  if (!v) return undefined
  const path = v.instancePath.split('/').filter((p) => /^[A-Za-z0-9_]{1,64}$/.test(p)).join('.')
  const missing = v.keyword === 'required' && typeof v.params['missingProperty'] === 'string' && /^[a-z_]{1,64}$/.test(v.params['missingProperty']) ? v.params['missingProperty'] : undefined
  return [err.validationContext ?? 'body', path, missing].filter((p) => p).join('.')
}

/**
 * The HTTP server: Fastify with Tollgate's error handler (nothing from the request is ever
 * echoed), request ids generated here (an inbound id is ignored), the AI routes and the
 * operational endpoints. No I/O of its own: tests drive it with inject() or a socket.
 */
export async function buildServer(d: ServerDeps): Promise<FastifyInstance> {
  const base = baseHeaders(d.http)
  // LIMIT-3: Node enforces these; it checks the two timeouts every connectionsCheckingInterval,
  // so a slowloris is cut off within half a second of its limit (Node's default is 30 s).
  const limits = {
    maxHeaderSize: d.http.maxHeaderBytes,
    headersTimeout: d.http.headersTimeoutMs,
    requestTimeout: d.http.requestTimeoutMs,
    connectionsCheckingInterval: 500,
  }
  const app = Fastify({
    logger: false,
    bodyLimit: d.http.bodyLimitBytes,
    genReqId: () => newRequestId(),
    requestIdHeader: false,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Admin API schemas reject unknown fields (never strip them silently) and never coerce types.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false } },
    return503OnClosing: true,
    // Router-level refusals (an undecodable URL, a path parameter over the length limit) would
    // otherwise get Fastify's own body, which quotes the raw URL and skips our headers.
    frameworkErrors: (_err, request, reply) => {
      void (reply as FastifyReply).headers(base).header('x-request-id', request.id).code(400).type('application/json; charset=utf-8')
        .send({ error: { code: 'invalid_request', message: ERRORS.invalid_request.message, param: 'params', request_id: request.id } })
    },
    // What Node refuses before any route runs (a malformed or smuggling-shaped message, headers
    // over the limit, a request too slow to arrive) is answered in Tollgate's shape too.
    clientErrorHandler: (err, socket) => clientError(err, socket, base),
    forceCloseConnections: 'idle',
    // The client address comes from X-Forwarded-For only through the configured proxies (ASVS 15.3.4).
    trustProxy: d.http.trustedProxies.length > 0 ? [...d.http.trustedProxies] : false,
    keepAliveTimeout: 65_000,
    requestTimeout: d.http.requestTimeoutMs,
    http: limits,
    ...(d.http.tls ? { https: { cert: d.http.tls.cert, key: d.http.tls.key, minVersion: 'TLSv1.2' as const, ...limits } } : {}),
  })
  app.server.maxConnections = d.http.maxConnections

  // JSON bodies: nesting deeper than the limit is refused before JSON.parse (or anything that
  // walks the result) recurses into it; then Fastify's own parser, which refuses __proto__ and
  // constructor.prototype keys (prototype pollution, ASVS 15.3.6).
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (jsonNestingExceeds(body as string, d.http.jsonMaxDepth)) return done(new TollgateError('json_too_deep'), undefined)
    parseJson(request, body as string, done)
  })

  // JSON is the only request body Tollgate reads; anything else is answered 415.
  app.removeContentTypeParser(['text/plain'])

  // RFC 9112 §3.2: a request with more than one Host header is refused (Node keeps the first).
  app.addHook('onRequest', async (request) => {
    let hosts = 0
    const raw = request.raw.rawHeaders
    for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'host') hosts++
    if (hosts > 1) throw new TollgateError('invalid_request', undefined, 'headers')
  })

  // Access log and metrics for every response, streamed or not (route pattern, never the raw URL).
  app.addHook('onRequest', async (request, reply) => {
    const t0 = performance.now()
    reply.raw.once('close', () => {
      const route = request.routeOptions.url ?? 'unmatched'
      const status = reply.raw.statusCode
      const ms = performance.now() - t0
      d.metrics.httpRequests.inc({ route, method: request.method, status: String(status) })
      d.metrics.httpDuration.observe({ route }, ms / 1000)
      d.log.info({ reqId: request.id, method: request.method, route, status, ms: Math.round(ms * 100) / 100 }, 'request')
    })
  })

  // Every /api/ route must declare its action in the permission table (RBAC-1): refuse to start otherwise.
  app.addHook('onRoute', (route) => {
    if ((route.url.startsWith('/api/') || route.url.startsWith('/auth/') || route.url.startsWith('/ops/')) && route.config?.action === undefined) {
      throw new Error(`route ${route.method} ${route.url} declares no action`)
    }
  })
  const kdb = d.db.db
  const guard = adminGuard({ ...d, db: kdb })
  // Forged cross-origin state changes are refused and audited before a parser can answer them (T53).
  // The admin guard runs before the body is read: authentication, CSRF, membership and
  // permission come first, so a forged or anonymous request is refused (and audited) as such.
  app.addHook('onRequest', async (request, reply) => {
    if (request.routeOptions.url?.startsWith('/api/')) await guard(request, reply)
  })
  // LIMIT-1 `auth` group: sign-in, callbacks, invites and operator calls, per client address.
  app.addHook('onRequest', async (request, reply) => {
    const url = request.routeOptions.url
    if (!url || !(url.startsWith('/auth/') || url.startsWith('/ops/')) || url === '/auth/providers') return
    const quota = await d.rate.check('auth', [{ policy: 'auth-address', key: `ip:${request.ip}`, limit: await d.tiers.limit(undefined, 'auth') }])
    reply.headers(quota.headers)
    if (quota.unavailable) throw new TollgateError('rate_limit_unavailable', undefined, undefined, quota.headers)
    if (!quota.allowed) {
      await auditRefusal(request.ip, url, request.id)
      throw new TollgateError('rate_limited', undefined, undefined, quota.headers)
    }
  })
  // A refused address is audited once per minute, not once per attempt: a flood cannot flood the log.
  const refusalsAudited = new Map<string, number>()
  const auditRefusal = async (ip: string, url: string, requestId: string) => {
    const minute = Math.floor(d.clock.now() / 60_000)
    if (refusalsAudited.get(ip) === minute) return
    if (refusalsAudited.size > 10_000) refusalsAudited.clear()
    refusalsAudited.set(ip, minute)
    await withAudit(kdb, (trx) => d.audit.append(trx, { chainId: INSTANCE_CHAIN, actorType: 'anonymous', actorId: null, action: 'excess_rate_limit_exceeded', targetType: 'route', targetId: `${url} from ${truncateIp(ip)}`, outcome: 'denied', requestId }))
  }

  // LIMIT-2 on the admin API: POST/PATCH with an Idempotency-Key is claimed once validated, and
  // the rest of the request runs under the claim, so its first audited effect marks the claim in
  // the effect's own transaction (src/idempotency/context.ts). A callback hook: the handler must
  // run inside `runUnderClaim`, which an async hook's returned promise would not carry.
  const claimAdminWrite = async (request: FastifyRequest, reply: FastifyReply): Promise<Claimed | 'replied' | undefined> => {
    const url = request.routeOptions.url
    const p = request.principal
    if (!url?.startsWith('/api/') || (request.method !== 'POST' && request.method !== 'PATCH') || !p) return undefined
    const scope = { orgId: request.orgAccess?.orgId ?? '', principal: p.kind === 'key' ? `key:${p.keyId}` : `user:${p.userId}`, method: request.method, route: url }
    const step = await claimIdempotency(d.idempotency, d.keyring, request.headers['idempotency-key'], scope, request.body ?? null)
    if (step.kind === 'stop') throw new TollgateError(step.code)
    if (step.kind === 'none') return undefined
    if (step.kind === 'claimed') return (request.idempotencyClaim = step.claim)
    reply.code(step.recorded.status).header('idempotent-replayed', 'true').type('application/json; charset=utf-8')
    const effect = step.recorded.effect
    if (step.recorded.responseSealed === null && effect !== null) {
      // The claimer committed the effect and died before recording its response: answer with
      // what it made (the audited target), never by running the request again. Serialized here:
      // the route's response schema describes its own answer, not this one.
      const at = effect.indexOf(':')
      reply.send(JSON.stringify({ id: effect.slice(at + 1), type: effect.slice(0, at), replay: 'effect' }))
      return 'replied'
    }
    // Our own sealed row, as large as the response was (not a cookie): no 8 KiB cap, or a large response replays empty.
    const stored = step.recorded.responseSealed === null ? undefined : unseal<{ b: string }>(step.sealKey, step.recorded.responseSealed, 0, 'idempotent-replay', Number.POSITIVE_INFINITY)
    reply.send(stored?.b ?? '')
    return 'replied'
  }
  app.addHook('preHandler', (request, reply, done) => {
    claimAdminWrite(request, reply).then((claim) => {
      if (claim === 'replied') return
      if (claim) runUnderClaim(claim, () => done())
      else done()
    }, (err: Error) => done(err))
  })

  app.addHook('onSend', async (request, reply, payload) => {
    const claim = request.idempotencyClaim
    if (claim) {
      request.idempotencyClaim = undefined
      const status = reply.statusCode
      if (keepsOutcome(status) && typeof payload === 'string') {
        const sealed = seal(claim.sealKey, { b: withoutSecret(payload) }, Number.MAX_SAFE_INTEGER, 'idempotent-replay')
        await d.idempotency.complete(claim.scope, claim.keyHash, { status, responseSealed: sealed, decisionId: null })
      } else await d.idempotency.release(claim.scope, claim.keyHash)
    }
    reply.headers(base)
    reply.header('x-request-id', request.id)
    // TRANSIT-5: every response carries Server-Timing (AI routes write their own, step by step).
    reply.header('server-timing', `total;dur=${Math.round(reply.elapsedTime * 100) / 100}`)
    return payload
  })

  app.setErrorHandler(async (err: FastifyError, request, reply) => {
    const code = frameworkCode(err)
    if (code === 'internal_error') d.log.error({ reqId: request.id, err: safeError(err) }, 'unhandled error')
    const wire = request.routeOptions.config.wire
    // Fastify marks a reply `connection: close` when the body could not be read (413, bad JSON):
    // unread bytes must not be parsed as a next request. The AI route writes its own reply, so it
    // carries that over.
    if (wire) return rejectOnAiRoute(code, request, reply, wire, d, reply.getHeader('connection') === 'close' ? { ...base, connection: 'close' } : base)
    const param = err instanceof TollgateError ? err.param : err.validation ? validationParam(err) : undefined
    if (err instanceof TollgateError && err.headers) reply.headers(err.headers)
    const error = { code, message: ERRORS[code].message, ...(param ? { param } : {}), request_id: request.id }
    // Rate limiting answers RFC 9457 problem details (D7); `error` keeps Tollgate's own shape alongside.
    const problem = PROBLEMS[code]
    if (problem) {
      const policies = String(reply.getHeader('ratelimit-policy') ?? '').match(/"([a-z-]+)"/g)?.map((p) => p.slice(1, -1)) ?? []
      return reply.code(ERRORS[code].status).type('application/problem+json; charset=utf-8')
        .send({ type: problem, title: ERRORS[code].message, status: ERRORS[code].status, 'violated-policies': policies, error })
    }
    return reply.code(ERRORS[code].status).type('application/json; charset=utf-8').send({ error })
  })

  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).type('application/json; charset=utf-8').send({ error: { code: 'not_found', message: ERRORS.not_found.message, request_id: request.id } }))

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Tollgate admin API', version: '1', description: 'Session cookie (with x-csrf-token on state changes) or an admin-scope API key. Every route names its permission; sensitive ones need a step-up.' },
    },
  })
  registerGatewayRoutes(app, d, base)
  registerOpsRoutes(app, d)
  registerTrustRoutes(app, {
    clock: d.clock,
    trust: d.trust,
    // The /readyz probes, plus the schema version and whether the master key opens this database's keys.
    trustProbes: {
      database: () => sql`select 1 as ok`.execute(kdb).then(() => true, () => false),
      cache: () => d.cache.ping(),
      pendingMigrations: () => pendingMigrations(kdb, d.db.dialect),
      masterKey: () => d.keyring.instanceKey('identity').then(() => true, () => false),
      classifier: () => classifierLoaded(d.classifier),
    },
  })
  const auth = { ...d, db: kdb }
  registerAuthRoutes(app, auth)
  registerMeRoutes(app, { ...auth, instance: () => ({ providers: d.providers.configured(), google_sign_in: d.google !== undefined, mail: d.mail.kind }) })
  registerOrgRoutes(app, auth)
  registerPolicyRoutes(app, auth)
  registerAnalyticsRoutes(app, auth)
  registerAccountRoutes(app, auth)
  registerArtifactRoutes(app, auth)
  registerOperatorRoutes(app, { ...auth, seed: (requestId) => seedDemo(auth, requestId) })
  registerWebRoutes(app)
  app.get('/api/openapi.json', { config: { action: 'public' }, schema: { hide: true } }, async () => app.swagger())
  return app
}
