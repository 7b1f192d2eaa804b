import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { UPSTREAM_KEYS, type MockUpstream } from '../fakes/upstreams.ts'
import type { TestApp } from '../helpers/app.ts'

/** Helpers shared by the KEY-2/3/4 tests (test/keys/). */

export type UpstreamName = 'anthropic' | 'openai' | 'gemini'
export type Credentials = Readonly<Record<UpstreamName, string>>

export interface CredentialFront {
  readonly url: string
  /** Every request that reached this front: which provider API, and the credential it carried. */
  readonly seen: { provider: UpstreamName; credential: string | undefined; path: string }[]
  close(): Promise<void>
}

/**
 * A reverse proxy in front of a mock upstream that accepts only its own environment's provider
 * credentials: it records what it received, answers 401 to anything else, and forwards the
 * rest to the mock with the mock's own key. So a test sees both WHERE a request went (which
 * front) and WITH WHICH credential (a sandbox base URL paired with a production key is caught).
 */
export async function credentialFront(target: MockUpstream, creds: Credentials): Promise<CredentialFront> {
  const seen: CredentialFront['seen'] = []
  const server = http.createServer((req, res) => {
    const path = req.url ?? '/'
    const provider: UpstreamName = path.startsWith('/v1/messages') ? 'anthropic' : path.startsWith('/v1/chat/completions') ? 'openai' : 'gemini'
    const header = provider === 'anthropic' ? 'x-api-key' : provider === 'openai' ? 'authorization' : 'x-goog-api-key'
    const raw = req.headers[header]
    const credential = typeof raw === 'string' ? (provider === 'openai' ? raw.replace(/^Bearer /, '') : raw) : undefined
    seen.push({ provider, credential, path })
    if (credential !== creds[provider]) {
      req.resume()
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"wrong credential for this environment"}}')
      return
    }
    const headers = { ...req.headers }
    delete headers['host']
    headers[header] = provider === 'openai' ? `Bearer ${UPSTREAM_KEYS.openai}` : UPSTREAM_KEYS[provider]
    const up = http.request(`${target.url}${path}`, { method: req.method, headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers)
      ur.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  server.keepAliveTimeout = 5000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}

/** Provider settings for one environment pointing at `front`: `''` for production, `TOLLGATE_SANDBOX_` for sandbox. */
export function providerEnv(prefix: '' | 'TOLLGATE_SANDBOX_', front: { url: string }, creds: Credentials): Record<string, string> {
  return {
    [`${prefix}ANTHROPIC_API_KEY`]: creds.anthropic, [`${prefix}ANTHROPIC_BASE_URL`]: front.url,
    [`${prefix}OPENAI_API_KEY`]: creds.openai, [`${prefix}OPENAI_BASE_URL`]: `${front.url}/v1`,
    [`${prefix}GEMINI_API_KEY`]: creds.gemini, [`${prefix}GEMINI_BASE_URL`]: front.url,
  }
}

export const ENDPOINTS = ['/v1/messages', '/v1/chat/completions', '/v1/intercept'] as const
export type Endpoint = (typeof ENDPOINTS)[number]

/** A minimal valid body for each AI endpoint. */
export function aiBody(endpoint: Endpoint, model: string, prompt: string, stream = false): Record<string, unknown> {
  if (endpoint === '/v1/messages') return { model, max_tokens: 16, stream, messages: [{ role: 'user', content: prompt }] }
  if (endpoint === '/v1/chat/completions') return { model, stream, messages: [{ role: 'user', content: prompt }] }
  return { model, prompt, stream }
}

export interface AiResult {
  readonly status: number
  readonly requestId: string | null
  readonly provider: string | null
  readonly body: string
}

/** One AI call with `Authorization: Bearer <key>` (or `x-api-key`); the whole body is read. */
export async function aiCall(base: string, endpoint: Endpoint, key: string, model: string, opts: { stream?: boolean; header?: 'bearer' | 'x-api-key'; prompt?: string } = {}): Promise<AiResult> {
  const auth: Record<string, string> = opts.header === 'x-api-key' ? { 'x-api-key': key } : { authorization: `Bearer ${key}` }
  const res = await fetch(base + endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify(aiBody(endpoint, model, opts.prompt ?? 'Say hello.', opts.stream ?? false)),
  })
  return { status: res.status, requestId: res.headers.get('x-request-id'), provider: res.headers.get('x-tollgate-provider'), body: await res.text() }
}

export interface Admin {
  readonly userId: string
  readonly cookie: string
  readonly csrf: string
  /** A call to the admin API as this person (cookie, same origin, CSRF token on state changes). */
  call(method: string, path: string, body?: unknown, on?: TestApp): Promise<{ status: number; json: any; requestId: string | null }>
}

/**
 * A person who is OWNER of `orgId`, signed in a moment ago (so a step-up is fresh), the way an
 * owner arrives from the bootstrap link. `tg` is where the session is created; `call` may target
 * another instance sharing the same database.
 */
export async function signedInOwner(tg: TestApp, orgId: string, email = `owner-${Math.random().toString(36).slice(2, 10)}@example.test`): Promise<Admin> {
  const user = await tg.deps.users.create(tg.deps.db.db, email)
  await tg.deps.members.add(tg.deps.db.db, orgId, user.id, 'OWNER')
  const { token } = await tg.deps.sessions.create(user.id, 'bootstrap', null)
  const cookie = `__Host-tollgate=${token}`
  const me = await fetch(`${tg.url}/api/me`, { headers: { cookie } })
  if (me.status !== 200) throw new Error(`GET /api/me answered ${me.status}`)
  const csrf = ((await me.json()) as { csrf_token: string }).csrf_token
  return {
    userId: user.id, cookie, csrf,
    async call(method, path, body, on = tg) {
      const res = await fetch(on.url + path, {
        method,
        headers: {
          cookie, origin: on.deps.origin, 'x-csrf-token': csrf,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
      const text = await res.text()
      return { status: res.status, json: text ? JSON.parse(text) : undefined, requestId: res.headers.get('x-request-id') }
    },
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
