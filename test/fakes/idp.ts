import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import * as jose from 'jose'
// @ts-expect-error oidc-provider ships no type declarations; the few members used are typed below.
import ProviderModule from 'oidc-provider'

/**
 * Local OpenID providers for the identity tests (AUTH-1, AUTH-2, AUTH-6, T44, T54, T55):
 *
 * - `LocalIdp`: a real OpenID provider (panva's oidc-provider) on 127.0.0.1 — Google's stand-in or
 *   an org's IdP. Accounts and clients are registered by the test; PKCE is required; redirect URIs
 *   are matched exactly; `max_age` / `prompt=login` force a new login and the ID token carries
 *   `auth_time`. Its login and consent "pages" answer JSON so a test can drive them with fetch.
 * - `RogueIdp`: a hand-written provider (discovery, authorization, token and JWKS endpoints, built
 *   with jose) whose token endpoint hands out whatever ID token the test crafts.
 * - `Browser`: fetch with a cookie jar and manual redirects — the tests play the user agent.
 */

// ---------------------------------------------------------------- the browser

interface StoredCookie {
  readonly name: string
  readonly value: string
  readonly path: string
}

/**
 * A user agent: a cookie jar (one per origin — the local servers share 127.0.0.1 on different
 * ports, where a real browser would mix their cookies by host) and fetch without automatic
 * redirects. `localhost` is dialled as 127.0.0.1 (the servers listen on IPv4 loopback) but keeps
 * its own cookies, as a browser keeps `localhost` and `127.0.0.1` apart.
 */
export class Browser {
  readonly #jar = new Map<string, Map<string, StoredCookie>>()

  /** One request, cookies sent and stored, redirects not followed. */
  async fetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const u = new URL(url)
    const dial = new URL(u)
    if (dial.hostname === 'localhost') dial.hostname = '127.0.0.1'
    const headers = new Headers(init.headers)
    const cookie = this.cookieHeader(u)
    if (cookie && !headers.has('cookie')) headers.set('cookie', cookie)
    const res = await fetch(dial, { ...init, headers, redirect: 'manual' })
    this.#store(u, res.headers.getSetCookie())
    return res
  }

  /** GET, then follow redirects while `follow(next)` says so; returns the last response and the URL it came from. */
  async navigate(url: string | URL, follow: (next: URL) => boolean = () => true, maxHops = 20): Promise<{ url: URL; res: Response; next: URL | undefined }> {
    let at = new URL(url)
    for (let hop = 0; hop < maxHops; hop++) {
      const res = await this.fetch(at)
      const next = redirectTarget(res, at)
      if (!next || !follow(next)) return { url: at, res, next }
      await res.body?.cancel()
      at = next
    }
    throw new Error(`more than ${maxHops} redirects from ${String(url)}`)
  }

  /** The Cookie header this browser would send to `url`. */
  cookieHeader(url: string | URL): string {
    const u = new URL(url)
    const forOrigin = this.#jar.get(u.origin)
    if (!forOrigin) return ''
    return [...forOrigin.values()]
      .filter((c) => pathMatches(u.pathname, c.path))
      .sort((a, b) => b.path.length - a.path.length)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ')
  }

  /** A cookie's value for an origin (any path). */
  cookie(origin: string, name: string): string | undefined {
    for (const c of this.#jar.get(new URL(origin).origin)?.values() ?? []) if (c.name === name) return c.value
    return undefined
  }

  setCookie(origin: string, name: string, value: string, path = '/'): void {
    const o = new URL(origin).origin
    const m = this.#jar.get(o) ?? new Map<string, StoredCookie>()
    m.set(`${name}\0${path}`, { name, value, path })
    this.#jar.set(o, m)
  }

  deleteCookie(origin: string, name: string): void {
    const m = this.#jar.get(new URL(origin).origin)
    for (const [k, c] of m ?? []) if (c.name === name) m!.delete(k)
  }

  /** Forgets every cookie of an origin (e.g. signs out of an IdP). */
  forget(origin: string): void {
    this.#jar.delete(new URL(origin).origin)
  }

  #store(u: URL, setCookies: string[]): void {
    for (const line of setCookies) {
      const [pair, ...attrs] = line.split(';')
      const eq = pair!.indexOf('=')
      if (eq <= 0) continue
      const name = pair!.slice(0, eq).trim()
      const value = pair!.slice(eq + 1).trim()
      let path = u.pathname.lastIndexOf('/') > 0 ? u.pathname.slice(0, u.pathname.lastIndexOf('/')) : '/'
      let expired = value === ''
      for (const a of attrs) {
        const [k, v = ''] = a.split('=').map((s) => s.trim())
        const key = k!.toLowerCase()
        if (key === 'path' && v.startsWith('/')) path = v
        if (key === 'max-age' && Number(v) <= 0) expired = true
        if (key === 'expires' && Date.parse(v) <= Date.now()) expired = true
      }
      const m = this.#jar.get(u.origin) ?? new Map<string, StoredCookie>()
      const key = `${name}\0${path}`
      if (expired) m.delete(key)
      else m.set(key, { name, value, path })
      this.#jar.set(u.origin, m)
    }
  }
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true
  if (!requestPath.startsWith(cookiePath)) return false
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/'
}

/** Where a 3xx response points, resolved against the URL it answered. */
export function redirectTarget(res: Response, from: URL): URL | undefined {
  const location = res.headers.get('location')
  return res.status >= 300 && res.status < 400 && location ? new URL(location, from) : undefined
}

// ---------------------------------------------------------------- shared bits

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  return (server.address() as AddressInfo).port
}

async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers })
  res.end(text)
}

const epoch = () => Math.floor(Date.now() / 1000)

function normalizePath(path: string | undefined): string {
  if (!path || path === '/') return ''
  return `/${path.replace(/^\/+|\/+$/g, '')}`
}

// ---------------------------------------------------------------- the real provider

/** The claims of one account at the IdP. `sub` is the registry key. */
export interface AccountClaims {
  email: string
  email_verified?: boolean
  /** Google Workspace hosted domain. */
  hd?: string
  [claim: string]: unknown
}

export interface ClientRegistration {
  readonly client_id: string
  /** Absent: a public client (token_endpoint_auth_method none). */
  readonly client_secret?: string
  /** Compared by exact string match (RFC 9700 §2.1). */
  readonly redirect_uris: readonly string[]
  /** Put `auth_time` in every ID token (default true), not only when max_age is asked for. */
  readonly require_auth_time?: boolean
}

/** What the person does at the IdP's login prompt. */
export interface LoginChoice {
  /** The account (sub) to sign in as when the IdP asks for a login. */
  readonly account?: string
  /** The person authenticated this many seconds ago (auth_time = now − this). Default 0. */
  readonly authAgeS?: number
}

export interface AuthorizeOutcome {
  /** The redirect back to the client (code, state, iss — or an error), not followed. */
  readonly callback: URL
  /** The prompts the IdP showed, in order ('login', 'consent'). */
  readonly prompts: readonly string[]
}

/** The IdP refused the authorization request itself (no redirect back to the client). */
export class IdpRefusal extends Error {
  constructor(
    readonly status: number,
    readonly body: { error?: string; error_description?: string },
  ) {
    super(`IdP refused the request: ${status} ${body.error ?? ''} ${body.error_description ?? ''}`)
  }
}

interface InteractionDetails {
  uid: string
  prompt: { name: string; details: { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> } }
  params: Record<string, string | undefined>
  session?: { accountId?: string }
  grantId?: string
}

interface GrantLike {
  addOIDCScope(scope: string): void
  addOIDCClaims(claims: string[]): void
  addResourceScope(indicator: string, scope: string): void
  save(): Promise<string>
}

interface OidcProviderLike {
  callback(): (req: IncomingMessage, res: ServerResponse) => void
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>
  interactionFinished(req: IncomingMessage, res: ServerResponse, result: object, opts?: { mergeWithLastSubmission?: boolean }): Promise<void>
  Grant: { new (init: { accountId: string; clientId: string }): GrantLike; find(id: string): Promise<GrantLike | undefined> }
  on(event: string, listener: (...args: unknown[]) => void): void
}

const Provider = ProviderModule as new (issuer: string, configuration: object) => OidcProviderLike

type Stored = { payload: Record<string, unknown>; expiresAt: number }

/** oidc-provider's storage, per provider instance (its built-in memory adapter is shared by the whole process). */
function memoryAdapter(store: Map<string, Stored>, clients: Map<string, Record<string, unknown>>) {
  return class Adapter {
    constructor(private readonly model: string) {}
    #key(id: string) {
      return `${this.model}:${id}`
    }
    async upsert(id: string, payload: Record<string, unknown>, expiresIn?: number) {
      store.set(this.#key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity })
      if (this.model === 'Session' && typeof payload['uid'] === 'string') store.set(`SessionUid:${payload['uid']}`, { payload: { id }, expiresAt: Infinity })
    }
    async find(id: string) {
      if (this.model === 'Client') return clients.get(id)
      const e = store.get(this.#key(id))
      if (!e || e.expiresAt <= Date.now()) return undefined
      return e.payload
    }
    async findByUid(uid: string) {
      const ref = store.get(`SessionUid:${uid}`)
      return ref ? this.find(String(ref.payload['id'])) : undefined
    }
    async findByUserCode() {
      return undefined
    }
    async consume(id: string) {
      const e = store.get(this.#key(id))
      if (e) e.payload['consumed'] = epoch()
    }
    async destroy(id: string) {
      store.delete(this.#key(id))
    }
    async revokeByGrantId(grantId: string) {
      for (const [k, e] of store) if (e.payload['grantId'] === grantId) store.delete(k)
    }
  }
}

export interface LocalIdpOptions {
  /** The issuer's path on the server, e.g. '/google' (default: none, the issuer is the origin). */
  readonly path?: string
}

/**
 * A real OpenID provider on 127.0.0.1:<random port>. Accounts (sub → claims) and clients are
 * registered by the test; the test logs in through `authorize()`.
 */
export class LocalIdp {
  /** Every authorization request the IdP received, in order (to check what the client asked for). */
  readonly authorizationRequests: URLSearchParams[] = []
  /** Internal errors of the provider (a test may assert there were none). */
  readonly serverErrors: unknown[] = []
  /** oidc-provider's own request handler (a Koa app). */
  readonly #handler: (req: IncomingMessage, res: ServerResponse) => void

  private constructor(
    private readonly server: Server,
    readonly origin: string,
    readonly path: string,
    private readonly provider: OidcProviderLike,
    /** sub → the claims the IdP asserts about that account. */
    readonly accounts: Map<string, AccountClaims>,
    private readonly clients: Map<string, Record<string, unknown>>,
  ) {
    this.#handler = provider.callback()
  }

  get issuer(): string {
    return `${this.origin}${this.path}`
  }

  static async start(opts: LocalIdpOptions = {}): Promise<LocalIdp> {
    const path = normalizePath(opts.path)
    const store = new Map<string, Stored>()
    // The server starts first so the issuer can name its port; requests arrive only later.
    let idp: LocalIdp | undefined
    const server = createServer((req, res) => {
      if (!idp) return sendJson(res, 503, { error: 'starting' })
      idp.#route(req, res).catch((err: unknown) => {
        idp!.serverErrors.push(err)
        if (!res.headersSent) sendJson(res, 500, { error: 'server_error', error_description: String(err) })
        else res.end()
      })
    })
    const port = await listen(server)
    const origin = `http://127.0.0.1:${port}`
    const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true })
    const jwk = { ...(await jose.exportJWK(privateKey)), kid: `idp-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' }
    const clients = new Map<string, Record<string, unknown>>()
    const accounts = new Map<string, AccountClaims>()
    const provider = new Provider(`${origin}${path}`, {
      adapter: memoryAdapter(store, clients),
      jwks: { keys: [jwk] },
      cookies: { keys: [randomBytes(32).toString('hex')] },
      // Google puts email, email_verified and hd in the ID token itself; Tollgate reads them there.
      conformIdTokenClaims: false,
      claims: { openid: ['sub', 'hd'], email: ['email', 'email_verified'] },
      scopes: ['openid', 'email'],
      responseTypes: ['code'],
      pkce: { required: () => true },
      ttl: { AuthorizationCode: 60, AccessToken: 600, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
      features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: false } },
      interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `${path}/interaction/${interaction.uid}` },
      findAccount: async (_ctx: unknown, sub: string) => {
        const a = accounts.get(sub)
        if (!a) return undefined
        return { accountId: sub, claims: async () => ({ ...accounts.get(sub), sub }) }
      },
      // Errors the IdP shows the user (not redirected to the client) answer JSON the test can read.
      renderError: async (ctx: { type: string; body: unknown }, out: Record<string, string>) => {
        ctx.type = 'json'
        ctx.body = { error: out['error'], error_description: out['error_description'] }
      },
    })
    idp = new LocalIdp(server, origin, path, provider, accounts, clients)
    provider.on('server_error', (_ctx: unknown, err: unknown) => idp!.serverErrors.push(err))
    return idp
  }

  /** Adds or replaces an account (sub → claims). `email_verified` defaults to true. */
  setAccount(sub: string, claims: AccountClaims): void {
    this.accounts.set(sub, { email_verified: true, ...claims })
  }

  /** Registers (or replaces) a client. */
  registerClient(c: ClientRegistration): void {
    this.clients.set(c.client_id, {
      client_id: c.client_id,
      ...(c.client_secret ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_post' } : { token_endpoint_auth_method: 'none' }),
      redirect_uris: [...c.redirect_uris],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      require_auth_time: c.require_auth_time ?? true,
    })
  }

  async close(): Promise<void> {
    await closeServer(this.server)
  }

  /**
   * Plays the user at the IdP: follows `authorizeUrl` (the redirect a client sent the browser to),
   * logs in as `choice.account` when the IdP asks, consents when asked, and returns the redirect
   * back to the client without following it. Throws `IdpRefusal` when the IdP refuses the request
   * outright (an unregistered redirect_uri, an unknown client, a missing PKCE challenge…).
   */
  async authorize(browser: Browser, authorizeUrl: string | URL, choice: LoginChoice = {}): Promise<AuthorizeOutcome> {
    let at = new URL(authorizeUrl)
    const prompts: string[] = []
    for (let hop = 0; hop < 20; hop++) {
      if (at.origin !== this.origin) return { callback: at, prompts }
      let res = await browser.fetch(at)
      if (res.status === 200 && at.pathname.startsWith(`${this.path}/interaction/`)) {
        const page = (await res.json()) as { uid: string; prompt: string }
        prompts.push(page.prompt)
        const form = new URLSearchParams()
        if (page.prompt === 'login') {
          if (!choice.account) throw new Error('the IdP asked for a login but the test gave no account')
          form.set('account', choice.account)
          form.set('auth_age_s', String(choice.authAgeS ?? 0))
        }
        res = await browser.fetch(new URL(`${this.path}/interaction/${page.uid}/${page.prompt}`, this.origin), {
          method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(),
        })
      }
      const next = redirectTarget(res, at)
      if (!next) {
        const text = await res.text()
        let body: { error?: string; error_description?: string } = {}
        try {
          body = JSON.parse(text) as typeof body
        } catch {
          body = { error_description: text.slice(0, 200) }
        }
        throw new IdpRefusal(res.status, body)
      }
      await res.body?.cancel()
      at = next
    }
    throw new Error('too many redirects at the IdP')
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin)
    if (this.path && url.pathname !== this.path && !url.pathname.startsWith(`${this.path}/`)) return sendJson(res, 404, { error: 'not_found' })
    const local = url.pathname.slice(this.path.length) || '/'
    if (local === '/auth' && req.method === 'GET') this.authorizationRequests.push(new URLSearchParams(url.search))
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|consent))?$/.exec(local)
    if (m) return this.#interaction(req, res, m[1]!, m[2])
    // Mounted under the issuer path, as express/koa mounting does (oidc-provider reads originalUrl).
    if (this.path) {
      ;(req as IncomingMessage & { originalUrl?: string }).originalUrl = req.url
      req.url = (req.url ?? '/').slice(this.path.length) || '/'
    }
    this.#handler(req, res)
  }

  /** The login and consent "pages": JSON on GET, a form POST to finish each prompt. */
  async #interaction(req: IncomingMessage, res: ServerResponse, uid: string, action: string | undefined): Promise<void> {
    let details: InteractionDetails
    try {
      details = await this.provider.interactionDetails(req, res)
    } catch (err) {
      return sendJson(res, 400, { error: 'invalid_request', error_description: String((err as Error).message) })
    }
    if (details.uid !== uid) return sendJson(res, 400, { error: 'invalid_request', error_description: 'interaction mismatch' })
    if (req.method === 'GET' && action === undefined) {
      return sendJson(res, 200, {
        uid, prompt: details.prompt.name, client_id: details.params['client_id'], scope: details.params['scope'],
        max_age: details.params['max_age'], requested_prompt: details.params['prompt'], signed_in_as: details.session?.accountId ?? null,
      })
    }
    if (req.method !== 'POST' || action !== details.prompt.name) return sendJson(res, 400, { error: 'invalid_request', error_description: `expected ${details.prompt.name}` })
    const form = new URLSearchParams(await readBody(req))
    if (action === 'login') {
      const account = form.get('account') ?? ''
      if (!this.accounts.has(account)) return sendJson(res, 400, { error: 'invalid_request', error_description: 'unknown account' })
      const ts = epoch() - Number(form.get('auth_age_s') ?? 0)
      return this.provider.interactionFinished(req, res, { login: { accountId: account, ts } }, { mergeWithLastSubmission: false })
    }
    const accountId = details.session?.accountId
    if (!accountId) return sendJson(res, 400, { error: 'invalid_request', error_description: 'no login' })
    const grant = details.grantId ? (await this.provider.Grant.find(details.grantId))! : new this.provider.Grant({ accountId, clientId: String(details.params['client_id']) })
    const d = details.prompt.details
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '))
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims)
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '))
    const grantId = await grant.save()
    return this.provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
  }
}

// ---------------------------------------------------------------- the rogue provider

/** What the rogue knows when it mints an ID token for a token request. */
export interface RogueTokenRequest {
  readonly issuer: string
  readonly clientId: string
  readonly nonce: string | undefined
  readonly account: AccountClaims & { sub: string }
  readonly now: number
}

export interface RogueIdpOptions {
  readonly path?: string
  /** The `issuer` its discovery document claims (default: its real issuer URL). */
  readonly metadataIssuer?: string
  /** `id_token_signing_alg_values_supported` (default: RS256, HS256 and none — the worst case a client may meet). */
  readonly algs?: readonly string[]
  /** Advertise and send the RFC 9207 `iss` authorization response parameter (default false). */
  readonly issParameter?: boolean
}

/**
 * An OpenID provider that signs whatever the test asks: honest tokens by default, crafted ones
 * (wrong iss/aud, expired, unsigned, HS256 key confusion, foreign key, unknown kid, replayed…)
 * when `mint` is replaced. Authorization codes are single-use and PKCE-checked like a real one, so
 * only the ID token is in question.
 */
export class RogueIdp {
  account: AccountClaims & { sub: string } = { sub: 'rogue-user', email: 'user@rogue.test', email_verified: true }
  /** Builds the ID token for a token request. Default: honest claims signed with the published key. */
  mint: (r: RogueTokenRequest) => Promise<string> = (r) => this.sign(this.honestClaims(r))
  /** Every ID token handed out, in order (for replays). */
  readonly issued: string[] = []
  readonly #codes = new Map<string, { clientId: string; redirectUri: string; nonce: string | undefined; challenge: string | undefined; used: boolean }>()

  private constructor(
    private readonly server: Server,
    readonly origin: string,
    readonly path: string,
    readonly kid: string,
    readonly privateKey: jose.CryptoKey,
    readonly publicJwk: jose.JWK,
    private readonly opts: RogueIdpOptions,
  ) {}

  get issuer(): string {
    return `${this.origin}${this.path}`
  }

  static async start(opts: RogueIdpOptions = {}): Promise<RogueIdp> {
    const path = normalizePath(opts.path ?? '/rogue')
    let rogue: RogueIdp | undefined
    const server = createServer((req, res) => {
      if (!rogue) return sendJson(res, 503, { error: 'starting' })
      rogue.#route(req, res).catch((err: unknown) => sendJson(res, 500, { error: 'server_error', error_description: String(err) }))
    })
    const port = await listen(server)
    const kid = `rogue-${randomBytes(4).toString('hex')}`
    const { privateKey, publicKey } = await jose.generateKeyPair('RS256', { extractable: true })
    const publicJwk = { ...(await jose.exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }
    rogue = new RogueIdp(server, `http://127.0.0.1:${port}`, path, kid, privateKey, publicJwk, opts)
    return rogue
  }

  async close(): Promise<void> {
    await closeServer(this.server)
  }

  /** The claims an honest provider would assert. */
  honestClaims(r: RogueTokenRequest, overrides: Record<string, unknown> = {}): Record<string, unknown> {
    const { sub, ...claims } = r.account
    return { iss: r.issuer, sub, aud: r.clientId, iat: r.now, exp: r.now + 300, auth_time: r.now, ...(r.nonce ? { nonce: r.nonce } : {}), ...claims, ...overrides }
  }

  /** RS256 with the published key (or another key / kid / header). */
  async sign(claims: Record<string, unknown>, opts: { key?: jose.CryptoKey; kid?: string | null; alg?: string } = {}): Promise<string> {
    const header: jose.JWTHeaderParameters = { alg: opts.alg ?? 'RS256', typ: 'JWT', ...(opts.kid === null ? {} : { kid: opts.kid ?? this.kid }) }
    return new jose.SignJWT(claims as jose.JWTPayload).setProtectedHeader(header).sign(opts.key ?? this.privateKey)
  }

  /** `alg: none`, no signature. */
  unsigned(claims: Record<string, unknown>): string {
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
    return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`
  }

  /** Key confusion: HS256 with the IdP's own public key (as PEM, and as its JWK's modulus bytes) as the HMAC secret. */
  async hs256WithPublicKey(claims: Record<string, unknown>): Promise<string> {
    const pem = await jose.exportSPKI((await jose.importJWK(this.publicJwk, 'RS256', { extractable: true })) as jose.CryptoKey)
    return new jose.SignJWT(claims as jose.JWTPayload).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: this.kid }).sign(new TextEncoder().encode(pem))
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin)
    const local = url.pathname.startsWith(this.path) ? url.pathname.slice(this.path.length) : url.pathname
    const algs = this.opts.algs ?? ['RS256', 'HS256', 'none']
    if (local === '/.well-known/openid-configuration') {
      return sendJson(res, 200, {
        issuer: this.opts.metadataIssuer ?? this.issuer,
        authorization_endpoint: `${this.issuer}/authorize`,
        token_endpoint: `${this.issuer}/token`,
        jwks_uri: `${this.issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: algs,
        code_challenge_methods_supported: ['S256'],
        token_endpoint_auth_methods_supported: ['client_secret_post', 'none'],
        ...(this.opts.issParameter ? { authorization_response_iss_parameter_supported: true } : {}),
      })
    }
    if (local === '/jwks') return sendJson(res, 200, { keys: [this.publicJwk] })
    if (local === '/authorize') {
      const p = url.searchParams
      const redirectUri = p.get('redirect_uri')
      if (!redirectUri) return sendJson(res, 400, { error: 'invalid_request' })
      const code = randomBytes(16).toString('base64url')
      this.#codes.set(code, { clientId: p.get('client_id') ?? '', redirectUri, nonce: p.get('nonce') ?? undefined, challenge: p.get('code_challenge') ?? undefined, used: false })
      const back = new URL(redirectUri)
      back.searchParams.set('code', code)
      if (p.get('state') !== null) back.searchParams.set('state', p.get('state')!)
      if (this.opts.issParameter) back.searchParams.set('iss', this.issuer)
      res.writeHead(303, { location: back.toString() })
      return void res.end()
    }
    if (local === '/token' && req.method === 'POST') {
      const form = new URLSearchParams(await readBody(req))
      const entry = this.#codes.get(form.get('code') ?? '')
      const verifier = form.get('code_verifier') ?? ''
      if (!entry || entry.used || entry.redirectUri !== form.get('redirect_uri') || entry.clientId !== form.get('client_id')) return sendJson(res, 400, { error: 'invalid_grant' })
      if (entry.challenge !== undefined && createHash('sha256').update(verifier).digest('base64url') !== entry.challenge) return sendJson(res, 400, { error: 'invalid_grant' })
      entry.used = true
      const idToken = await this.mint({ issuer: this.issuer, clientId: entry.clientId, nonce: entry.nonce, account: this.account, now: epoch() })
      this.issued.push(idToken)
      return sendJson(res, 200, { access_token: randomBytes(16).toString('base64url'), token_type: 'Bearer', expires_in: 300, id_token: idToken })
    }
    return sendJson(res, 404, { error: 'not_found' })
  }
}
