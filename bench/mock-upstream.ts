/**
 * Mock LLM upstream for the benchmark (loopback only). Speaks just enough of two APIs:
 *
 *   POST /v1/chat/completions   OpenAI Chat Completions: JSON, or SSE when "stream": true
 *                               (a usage chunk when "stream_options": {"include_usage": true})
 *   POST /v1/messages           Anthropic Messages: JSON, or SSE when "stream": true
 *
 * Every default answer is built once at start-up: per request the server only collects the body,
 * runs two or three regex tests on it and writes a prebuilt buffer, so it is never the bottleneck.
 * Credentials are checked (cheap string compares) so a gateway that forgot to send its key fails
 * the pre-flight check instead of being measured.
 *
 * Timing probe: a body containing the marker `bench:gap=<ms>:chunks=<n>` (e.g. in OpenAI's `user`
 * field or Anthropic's `metadata.user_id`) streams <n> content deltas <ms> apart instead of all at once.
 *
 * Run alone: `node --import tsx bench/mock-upstream.ts` (env MOCK_HOST=127.0.0.1, MOCK_PORT=0).
 * It prints one line `{"mock":{"port":N}}` on stdout once it listens.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'

export const MOCK_OPENAI_KEY = 'sk-bench-openai-mock'
export const MOCK_ANTHROPIC_KEY = 'sk-ant-bench-mock'
/** The answer text every target must return (checked before measuring). */
export const MOCK_WORDS = ['Hello', ' from', ' the', ' bench', ' mock', ' upstream', '.', ' Nothing', ' to', ' see', '.']
export const DEFAULT_CHUNKS = 8
export const answerText = (chunks = DEFAULT_CHUNKS): string => pieces(chunks).join('')

const CREATED = 1_700_000_000
const USAGE_IN = 271
const MAX_PROBE_CHUNKS = 200
const MAX_PROBE_GAP_MS = 1000

function pieces(n: number): string[] {
  return Array.from({ length: n }, (_, i) => MOCK_WORDS[i % MOCK_WORDS.length]!)
}

interface Answers {
  readonly openaiJson: Buffer
  readonly openaiStream: Buffer[]
  readonly openaiStreamUsage: Buffer[]
  readonly anthropicJson: Buffer
  readonly anthropicStream: Buffer[]
}

function buildAnswers(chunks: number, model: { openai: string; anthropic: string }): Answers {
  const words = pieces(chunks)
  const text = words.join('')
  const oaUsage = { prompt_tokens: USAGE_IN, completion_tokens: chunks, total_tokens: USAGE_IN + chunks }
  const openaiJson = Buffer.from(JSON.stringify({
    id: 'chatcmpl-benchmock', object: 'chat.completion', created: CREATED, model: model.openai,
    choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: oaUsage, system_fingerprint: 'fp_benchmock',
  }))
  const oa = (choices: unknown[], usage?: unknown) => Buffer.from(`data: ${JSON.stringify({
    id: 'chatcmpl-benchmock', object: 'chat.completion.chunk', created: CREATED, model: model.openai,
    system_fingerprint: 'fp_benchmock', choices, ...(usage === undefined ? {} : { usage }),
  })}\n\n`)
  const delta = (d: object, finish: string | null = null) => oa([{ index: 0, delta: d, logprobs: null, finish_reason: finish }])
  const oaEvents = (withUsage: boolean) => [
    delta({ role: 'assistant', content: '' }),
    ...words.map((w) => delta({ content: w })),
    delta({}, 'stop'),
    ...(withUsage ? [oa([], oaUsage)] : []),
    Buffer.from('data: [DONE]\n\n'),
  ]
  const an = (name: string, data: object) => Buffer.from(`event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`)
  const anthropicJson = Buffer.from(JSON.stringify({
    id: 'msg_benchmock', type: 'message', role: 'assistant', model: model.anthropic,
    content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null,
    usage: { input_tokens: USAGE_IN, output_tokens: chunks },
  }))
  const anthropicStream = [
    an('message_start', { message: { id: 'msg_benchmock', type: 'message', role: 'assistant', model: model.anthropic, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: USAGE_IN, output_tokens: 1 } } }),
    an('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
    an('ping', {}),
    ...words.map((w) => an('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } })),
    an('content_block_stop', { index: 0 }),
    an('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: chunks } }),
    an('message_stop', {}),
  ]
  return { openaiJson, openaiStream: oaEvents(false), openaiStreamUsage: oaEvents(true), anthropicJson, anthropicStream }
}

const STREAM = /"stream"\s*:\s*true/
const INCLUDE_USAGE = /"include_usage"\s*:\s*true/
const PROBE = /bench:gap=(\d{1,4}):chunks=(\d{1,3})/
const JSON_HEADERS = { 'content-type': 'application/json', 'x-mock': '1' }
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-mock': '1' }

export interface MockOptions {
  readonly host?: string
  readonly port?: number
}

export interface RunningMock {
  readonly port: number
  close(): Promise<void>
}

/** Starts the mock; resolves once it listens. */
export function startMock(opts: MockOptions = {}): Promise<RunningMock> {
  const host = opts.host ?? '127.0.0.1'
  if (!/^(127\.\d+\.\d+\.\d+|::1)$/.test(host)) return Promise.reject(new Error(`mock-upstream: refusing non-loopback address ${host}`))
  const model = { openai: 'gpt-4o-mini-benchmock', anthropic: 'claude-benchmock' }
  const base = buildAnswers(DEFAULT_CHUNKS, model)
  const probeCache = new Map<number, Answers>()
  const answersFor = (chunks: number) => {
    let a = probeCache.get(chunks)
    if (!a) probeCache.set(chunks, (a = buildAnswers(chunks, model)))
    return a
  }

  // A JSON answer carries Content-Length like the real APIs (writeHead alone would make it chunked).
  const sendJson = (res: http.ServerResponse, body: Buffer) => {
    res.writeHead(200, { ...JSON_HEADERS, 'content-length': String(body.length) })
    res.end(body)
  }

  const sendStream = (res: http.ServerResponse, events: Buffer[], gapMs: number) => {
    res.writeHead(200, SSE_HEADERS)
    if (gapMs <= 0) {
      // Whole stream at once: one chunked write, the cheapest way to serve it.
      res.end(events.length === 1 ? events[0] : Buffer.concat(events))
      return
    }
    let i = 0
    const next = () => {
      if (res.destroyed) return
      res.write(events[i++])
      if (i >= events.length) res.end()
      else setTimeout(next, gapMs)
    }
    next()
  }

  const server = http.createServer((req, res) => {
    const path = req.url
    const openai = path === '/v1/chat/completions'
    const anthropic = path === '/v1/messages'
    if (req.method !== 'POST' || (!openai && !anthropic)) {
      res.writeHead(404, JSON_HEADERS).end('{"error":{"message":"mock: no such route"}}')
      req.resume()
      return
    }
    const authorized = openai
      ? req.headers.authorization === `Bearer ${MOCK_OPENAI_KEY}`
      : req.headers['x-api-key'] === MOCK_ANTHROPIC_KEY || req.headers.authorization === `Bearer ${MOCK_ANTHROPIC_KEY}`
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (!authorized) {
        res.writeHead(401, JSON_HEADERS).end('{"error":{"message":"mock: bad credentials"}}')
        return
      }
      const body = (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('latin1')
      const stream = STREAM.test(body)
      const probe = PROBE.exec(body)
      const a = probe ? answersFor(Math.min(MAX_PROBE_CHUNKS, Math.max(1, Number(probe[2])))) : base
      const gap = probe ? Math.min(MAX_PROBE_GAP_MS, Number(probe[1])) : 0
      if (openai) {
        if (!stream) sendJson(res, a.openaiJson)
        else sendStream(res, INCLUDE_USAGE.test(body) ? a.openaiStreamUsage : a.openaiStream, gap)
      } else {
        if (!stream) sendJson(res, a.anthropicJson)
        else sendStream(res, a.anthropicStream, gap)
      }
    })
  })
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, host, () => {
      const port = (server.address() as AddressInfo).port
      resolve({
        port,
        close: () => new Promise<void>((r) => {
          server.close(() => r())
          server.closeAllConnections()
        }),
      })
    })
  })
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const mock = await startMock({ host: process.env['MOCK_HOST'] ?? '127.0.0.1', port: Number(process.env['MOCK_PORT'] ?? 0) })
  process.stdout.write(`${JSON.stringify({ mock: { port: mock.port } })}\n`)
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void mock.close().finally(() => process.exit(0)))
}
