/**
 * The floor for one Node proxy hop: node:http in front, an undici Pool driven through the
 * low-level `dispatch` API behind. Method, path, headers (minus hop-by-hop ones) and body bytes
 * go upstream unchanged; the response goes back chunk by chunk as it arrives, so SSE passes
 * through untouched. No JSON parsing, no auth, no logging, no records: whatever Tollgate costs
 * above this is the cost of being a gateway rather than a pipe.
 *
 * Run alone: `node --import tsx bench/baseline-proxy.ts` (env PROXY_HOST=127.0.0.1, PROXY_PORT=0,
 * UPSTREAM_URL=http://127.0.0.1:<mock port>). It prints `{"proxy":{"port":N}}` once it listens.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { Pool } from 'undici'

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|\[::1\])$/

/** Headers that describe one hop only (or that undici sets itself). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer',
  'proxy-authenticate', 'proxy-authorization', 'expect', 'host'])

export interface ProxyOptions {
  readonly host?: string
  readonly port?: number
  readonly upstream: string
  readonly connections?: number
}

export interface RunningProxy {
  readonly port: number
  close(): Promise<void>
}

function forwardHeaders(raw: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (HOP_BY_HOP.has(name)) continue
    const prev = out[name]
    out[name] = prev === undefined ? raw[i + 1]! : `${prev}, ${raw[i + 1]!}`
  }
  return out
}

export function startProxy(opts: ProxyOptions): Promise<RunningProxy> {
  const host = opts.host ?? '127.0.0.1'
  const upstream = new URL(opts.upstream)
  if (!LOOPBACK.test(host) || !LOOPBACK.test(upstream.hostname)) return Promise.reject(new Error('baseline-proxy: listen address and upstream must be loopback'))
  const pool = new Pool(upstream.origin, { connections: opts.connections ?? 256, pipelining: 1, keepAliveTimeout: 60_000 })

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer | null) => {
    let abort: ((err?: Error) => void) | undefined
    let finished = false
    res.once('close', () => {
      if (!finished) abort?.(new Error('client went away'))
    })
    pool.dispatch({ method: req.method as 'POST', path: req.url ?? '/', headers: forwardHeaders(req.rawHeaders), body }, {
      onConnect(a) {
        abort = a
      },
      onHeaders(status, rawHeaders, resume) {
        const h: Record<string, string> = {}
        for (let i = 0; i < rawHeaders.length; i += 2) {
          const name = rawHeaders[i]!.toString('latin1').toLowerCase()
          if (!HOP_BY_HOP.has(name)) h[name] = rawHeaders[i + 1]!.toString('latin1')
        }
        res.writeHead(status, h)
        res.on('drain', resume)
        return true
      },
      onData(chunk) {
        return res.write(chunk)
      },
      onComplete() {
        finished = true
        res.end()
      },
      onError(err) {
        finished = true
        if (res.headersSent) {
          res.destroy(err)
          return
        }
        res.writeHead(502, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: { message: `baseline-proxy: upstream ${(err as { code?: string }).code ?? err.name}` } }))
      },
    })
  }

  const server = http.createServer((req, res) => {
    if (req.method === 'GET' || req.method === 'HEAD') {
      forward(req, res, null)
      return
    }
    const parts: Buffer[] = []
    req.on('data', (c: Buffer) => parts.push(c))
    req.on('end', () => forward(req, res, parts.length === 1 ? parts[0]! : Buffer.concat(parts)))
  })
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, host, () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        close: async () => {
          await new Promise<void>((r) => {
            server.close(() => r())
            server.closeAllConnections()
          })
          await pool.close()
        },
      })
    })
  })
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const upstream = process.env['UPSTREAM_URL']
  if (!upstream) {
    process.stderr.write('baseline-proxy: set UPSTREAM_URL\n')
    process.exit(2)
  }
  const proxy = await startProxy({ host: process.env['PROXY_HOST'] ?? '127.0.0.1', port: Number(process.env['PROXY_PORT'] ?? 0), upstream })
  process.stdout.write(`${JSON.stringify({ proxy: { port: proxy.port } })}\n`)
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      setTimeout(() => process.exit(0), 1000).unref()
      void proxy.close().finally(() => process.exit(0))
    })
  }
}
