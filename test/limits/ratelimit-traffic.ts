import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import http, { type IncomingHttpHeaders } from 'node:http'
import type { TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../helpers/app.ts'
import { IN_CI, reachable } from '../helpers/services.ts'

/**
 * Load tools for the rate-limit tests (LIMIT-1, T30–T35): a keep-alive HTTP client that can
 * pick its source address (127.0.0.x are distinct clients on Linux loopback), a bounded
 * concurrency pool, and a redis-server of the test's own that the test may kill and restart.
 */

export interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
  /** performance.now() when the request was sent and when the answer was complete. */
  readonly sentAt: number
  readonly doneAt: number
}

export interface Req {
  readonly method?: string
  readonly path: string
  readonly headers?: Record<string, string>
  readonly body?: unknown
  readonly localAddress?: string
}

/** A client with its own keep-alive pool (pooled per source address); destroyed after the test. */
export function client(t: TestContext) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })
  t.after(() => agent.destroy())
  return (base: string, r: Req): Promise<Reply> => send(agent, base, r)
}
export type Send = ReturnType<typeof client>

export function send(agent: http.Agent, base: string, r: Req): Promise<Reply> {
  const u = new URL(r.path, base)
  const payload = r.body === undefined ? undefined : typeof r.body === 'string' ? r.body : JSON.stringify(r.body)
  const headers: Record<string, string> = { ...r.headers }
  if (payload !== undefined) {
    headers['content-type'] ??= 'application/json'
    headers['content-length'] = String(Buffer.byteLength(payload))
  }
  const sentAt = performance.now()
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname + u.search, method: r.method ?? (payload === undefined ? 'GET' : 'POST'),
      headers, agent, ...(r.localAddress ? { localAddress: r.localAddress } : {}), timeout: 20_000,
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), sentAt, doneAt: performance.now() }))
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`request to ${r.path} timed out`)))
    req.on('error', reject)
    req.end(payload)
  })
}

/** Runs fn(0..n-1) with at most `concurrency` in flight; results in index order. */
export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n)
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      out[i] = await fn(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return out
}

/** Distinct loopback client addresses (127.0.0.2 …): every test takes fresh ones. */
let lastHost = 1
export function nextAddress(): string {
  lastHost = lastHost >= 254 ? 2 : lastHost + 1
  return `127.0.0.${lastHost}`
}

export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
}

/**
 * A redis-server of this test's own on a free loopback port, nothing persisted. `stop()` kills
 * it (SIGKILL: an outage, not a shutdown), `start()` brings it back on the same port, empty.
 */
export class OwnRedis {
  #child: ChildProcess | undefined
  private constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  static async start(t: TestContext): Promise<OwnRedis | undefined> {
    if (!hasRedisServer()) {
      if (IN_CI) throw new Error('redis-server is not installed — CI requires it')
      t.skip('redis-server is not installed; install it to run this test')
      return undefined
    }
    const r = new OwnRedis(await freePort())
    t.after(() => r.stop())
    await r.start()
    return r
  }

  async start(): Promise<void> {
    if (this.#child) return
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'], { stdio: 'ignore' })
    this.#child = child
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined
    })
    for (let i = 0; i < 200; i++) {
      if (await reachable(this.url, 200)) return
      if (!this.#child) throw new Error('redis-server exited at start')
      await sleep(25)
    }
    throw new Error('redis-server did not start')
  }

  /** SIGSTOP: Redis keeps its connections but answers nothing (a hung server, not a dead one). */
  pause(): void {
    this.#child?.kill('SIGSTOP')
  }

  resume(): void {
    this.#child?.kill('SIGCONT')
  }

  async stop(): Promise<void> {
    const child = this.#child
    if (!child) return
    this.#child = undefined
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    child.kill('SIGCONT')
    await exited
  }
}

/** The draft-10 header fields and Retry-After of one response, as strings (undefined when absent). */
export function rateFields(r: Reply): { policy: string | undefined; limit: string | undefined; retryAfter: string | undefined } {
  const one = (h: string | string[] | undefined) => (Array.isArray(h) ? h.join(', ') : h)
  return { policy: one(r.headers['ratelimit-policy']), limit: one(r.headers['ratelimit']), retryAfter: one(r.headers['retry-after']) }
}

/** Members and scores of a sorted set, whatever shape the client's protocol gives (flat RESP2 or RESP3 pairs). */
export async function zscores(redis: { call(...args: string[]): Promise<unknown> }, key: string): Promise<Map<string, number>> {
  const reply = (await redis.call('ZRANGE', key, '0', '-1', 'WITHSCORES')) as unknown[]
  const flat = reply.flat() as (string | number)[]
  const out = new Map<string, number>()
  for (let i = 0; i < flat.length; i += 2) out.set(String(flat[i]), Number(flat[i + 1]))
  return out
}
