import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import type { TestContext } from 'node:test'
import { freePort, until, type TestApp } from '../helpers/app.ts'

export { until }

/**
 * Shared setup for the LIMIT-2 (Idempotency-Key) tests: an AI request helper, a raw-socket
 * request for header bytes fetch refuses to send, a private redis-server that can be restarted,
 * and counters of executions (decision records, audit entries).
 */

export const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'

export interface Res {
  readonly status: number
  readonly text: string
  readonly headers: Headers
  /** The response carries `idempotent-replayed: true`. */
  readonly replayed: boolean
}

export const AI_PATHS = { anthropic: '/v1/messages', openai: '/v1/chat/completions', native: '/v1/intercept' } as const
export type AiWire = keyof typeof AI_PATHS

/** A request body in `wire`'s format (model names route to the mock upstream with a production key). */
export function aiBody(wire: AiWire, prompt: string, o: { stream?: boolean; model?: string } = {}): Record<string, unknown> {
  if (wire === 'anthropic') return { model: o.model ?? 'claude-sonnet-4-5', max_tokens: 32, stream: o.stream ?? false, messages: [{ role: 'user', content: prompt }] }
  if (wire === 'openai') return { model: o.model ?? 'gpt-4o', stream: o.stream ?? false, messages: [{ role: 'user', content: prompt }] }
  return { model: o.model ?? 'gemini-2.5-flash', stream: o.stream ?? false, prompt }
}

/** One AI request; `idem` is the raw Idempotency-Key header value (omitted when undefined). */
export async function ai(tg: TestApp, key: string, body: unknown, o: { wire?: AiWire; idem?: string; raw?: string } = {}): Promise<Res> {
  const headers: Record<string, string> = { 'content-type': 'application/json', authorization: `Bearer ${key}` }
  if (o.idem !== undefined) headers['idempotency-key'] = o.idem
  const res = await fetch(tg.url + AI_PATHS[o.wire ?? 'anthropic'], { method: 'POST', headers, body: o.raw ?? JSON.stringify(body), signal: AbortSignal.timeout(30_000) })
  const text = await res.text()
  return { status: res.status, text, headers: res.headers, replayed: res.headers.get('idempotent-replayed') === 'true' }
}

/**
 * A request written byte for byte on a socket (header values fetch would refuse: control
 * characters, obs-text). Returns the status and body of the first response.
 */
export async function rawRequest(url: string, method: string, path: string, headers: readonly (readonly [string, string])[], body: string): Promise<{ status: number; text: string }> {
  const u = new URL(url)
  const sock = net.connect({ host: u.hostname, port: Number(u.port) })
  await once(sock, 'connect')
  const head = [`${method} ${path} HTTP/1.1`, `host: ${u.host}`, 'connection: close', `content-length: ${Buffer.byteLength(body)}`, ...headers.map(([k, v]) => `${k}: ${v}`)].join('\r\n')
  sock.write(Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), Buffer.from(body, 'utf8')]))
  const chunks: Buffer[] = []
  sock.on('data', (c: Buffer) => chunks.push(c))
  await Promise.race([once(sock, 'close'), new Promise((r) => setTimeout(r, 10_000))])
  sock.destroy()
  const text = Buffer.concat(chunks).toString('latin1')
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)
  const sep = text.indexOf('\r\n\r\n')
  return { status, text: sep >= 0 ? text.slice(sep + 4) : '' }
}

/** A promise and its resolver: a start barrier for simultaneous requests, or a handler pause. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void
  const promise = new Promise<void>((r) => (open = r))
  return { promise, open }
}

/** Decision records of an org (after every instance's writer has drained). */
export async function decisionCount(apps: readonly TestApp[], orgId: string): Promise<number> {
  for (const a of apps) await a.deps.decisions.drain()
  const r = await apps[0]!.deps.db.db.selectFrom('decision').select((eb) => eb.fn.countAll<string>().as('n')).where('org_id', '=', orgId).executeTakeFirstOrThrow()
  return Number(r.n)
}

/** Audit entries of an org's chain with `action`. */
export async function auditCount(tg: TestApp, orgId: string, action: string): Promise<number> {
  const r = await tg.deps.db.db.selectFrom('audit_event').select((eb) => eb.fn.countAll<string>().as('n')).where('chain_id', '=', orgId).where('action', '=', action).executeTakeFirstOrThrow()
  return Number(r.n)
}


/**
 * A private, non-persistent redis-server on a free loopback port (never the shared 6379): a
 * restart loses everything it held, which is the point of T25.
 */
export interface OwnRedis {
  readonly url: string
  readonly port: number
  restart(): Promise<void>
  stop(): Promise<void>
}

export async function ownRedis(t: TestContext): Promise<OwnRedis> {
  const port = await freePort()
  let proc: ChildProcess | undefined
  const start = async () => {
    const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: 'ignore' })
    proc = p
    const end = Date.now() + 10_000
    while (!(await canConnect(port))) {
      if (p.exitCode !== null || Date.now() > end) throw new Error(`redis-server on port ${port} did not start`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const stop = async () => {
    const p = proc
    proc = undefined
    if (!p || p.exitCode !== null) return
    const exited = once(p, 'exit')
    p.kill('SIGTERM')
    await exited
  }
  await start()
  t.after(stop)
  return { url: `redis://127.0.0.1:${port}`, port, restart: async () => { await stop(); await start() }, stop }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { s.destroy(); resolve(false) })
  })
}
