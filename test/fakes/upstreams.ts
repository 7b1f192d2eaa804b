import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A local stand-in for the internet's LLM providers, speaking each real wire format:
 * Anthropic Messages, OpenAI Chat Completions and Gemini generateContent, JSON and SSE.
 * It listens on 127.0.0.1 only and keeps what it received in memory for assertions.
 *
 * Behaviour is chosen by the model name's suffix:
 *   …-fail-<status>  answers <status> with an error body that QUOTES THE PROMPT (it must never reach the client or a log)
 *   …-hang           never answers (abort tests)
 *   …-slow           streams with 40 ms between events
 *   …-midstream      streams two deltas, then fails (error event / dropped connection)
 *   …-garbage        answers 200 with a body that is not JSON
 */
export const UPSTREAM_KEYS = { anthropic: 'sk-ant-mock-key', openai: 'sk-openai-mock-key', gemini: 'gemini-mock-key' } as const
export const ANSWERS = {
  anthropic: ['Hello ', 'from the ', 'mock Anthropic ', 'upstream.'],
  openai: ['Hello ', 'from the ', 'mock OpenAI ', 'upstream.'],
  gemini: ['Hello ', 'from the ', 'mock Gemini ', 'upstream.'],
} as const
export const USAGE = { anthropic: [11, 7], openai: [12, 8], gemini: [13, 9] } as const

export interface Received {
  readonly provider: 'anthropic' | 'openai' | 'gemini'
  readonly path: string
  readonly headers: IncomingMessage['headers']
  readonly body: any
}

export interface MockUpstream {
  readonly url: string
  readonly received: Received[]
  /** Requests whose connection closed before the mock finished answering. */
  aborted: number
  /** Resolves when `n` requests have been aborted by the caller. */
  waitForAborts(n: number, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

const sse = (event: string | undefined, data: unknown) => (event ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`

function promptOf(body: any): string {
  return JSON.stringify(body?.messages ?? body?.contents ?? '')
}

export async function startMockUpstream(): Promise<MockUpstream> {
  const received: Received[] = []
  const state = { aborted: 0, waiters: [] as (() => void)[] }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => handle(req, res, Buffer.concat(chunks)))
  })

  function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer) {
    let body: any
    try {
      body = JSON.parse(raw.toString('utf8'))
    } catch {
      res.writeHead(400).end('{"error":"bad json"}')
      return
    }
    const url = new URL(req.url ?? '/', 'http://x')
    let provider: Received['provider']
    let model: string
    let stream: boolean
    if (req.method === 'POST' && url.pathname === '/v1/messages') {
      provider = 'anthropic'
      model = String(body.model)
      stream = body.stream === true
      if (req.headers['x-api-key'] !== UPSTREAM_KEYS.anthropic) return fail(res, provider, 401, body)
    } else if (req.method === 'POST' && url.pathname === '/v1/chat/completions') {
      provider = 'openai'
      model = String(body.model)
      stream = body.stream === true
      if (req.headers['authorization'] !== `Bearer ${UPSTREAM_KEYS.openai}`) return fail(res, provider, 401, body)
    } else {
      const m = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(url.pathname)
      if (req.method !== 'POST' || !m) return res.writeHead(404).end('{"error":"no such route"}')
      provider = 'gemini'
      model = decodeURIComponent(m[1]!)
      stream = m[2] === 'streamGenerateContent'
      if (stream && url.searchParams.get('alt') !== 'sse') return res.writeHead(400).end('{"error":"alt=sse required"}')
      if (req.headers['x-goog-api-key'] !== UPSTREAM_KEYS.gemini) return fail(res, provider, 401, body)
    }
    received.push({ provider, path: url.pathname, headers: req.headers, body })
    res.on('close', () => {
      if (!res.writableFinished) {
        state.aborted++
        for (const w of state.waiters.splice(0)) w()
      }
    })
    const failStatus = /-fail-(\d{3})$/.exec(model)
    if (failStatus) return fail(res, provider, Number(failStatus[1]), body)
    if (model.endsWith('-hang')) return
    if (model.endsWith('-garbage')) return res.writeHead(200, { 'content-type': 'application/json' }).end('this is not json <html>')
    if (!stream) return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jsonAnswer(provider, model)))
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const events = streamAnswer(provider, model)
    const gap = model.endsWith('-slow') ? 40 : 0
    const midstream = model.endsWith('-midstream')
    let i = 0
    const next = () => {
      if (res.destroyed) return
      if (midstream && i === 4) {
        if (provider === 'anthropic') res.end(sse('error', { type: 'error', error: { type: 'overloaded_error', message: `overloaded while answering ${promptOf(body)}` } }))
        else res.destroy()
        return
      }
      if (i >= events.length) return void res.end()
      res.write(events[i++])
      if (gap > 0) setTimeout(next, gap)
      else next()
    }
    next()
  }

  function fail(res: ServerResponse, provider: Received['provider'], status: number, body: any) {
    // Real providers often quote the request in errors: this one always does.
    const message = `mock ${provider} refused: ${promptOf(body)}`
    const payload = provider === 'anthropic' ? { type: 'error', error: { type: 'invalid_request_error', message } }
      : provider === 'openai' ? { error: { message, type: 'invalid_request_error', param: null, code: null } }
      : { error: { code: status, message, status: 'INVALID_ARGUMENT' } }
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload))
  }

  server.keepAliveTimeout = 5000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    get aborted() {
      return state.aborted
    },
    set aborted(v) {
      state.aborted = v
    },
    waitForAborts(n, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${state.aborted} of ${n} upstream requests were aborted`)), timeoutMs)
        const check = () => {
          if (state.aborted >= n) {
            clearTimeout(timer)
            resolve()
          } else state.waiters.push(check)
        }
        check()
      })
    },
    close: () => new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}

function jsonAnswer(provider: Received['provider'], model: string): unknown {
  const text = ANSWERS[provider].join('')
  const [input, output] = USAGE[provider]
  if (provider === 'anthropic') return { id: 'msg_mock', type: 'message', role: 'assistant', model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: input, output_tokens: output } }
  if (provider === 'openai') return { id: 'chatcmpl-mock', object: 'chat.completion', created: 1700000000, model, choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }], usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output } }
  return { candidates: [{ content: { parts: [{ text }], role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata: { promptTokenCount: input, candidatesTokenCount: output, totalTokenCount: input + output }, modelVersion: model }
}

function streamAnswer(provider: Received['provider'], model: string): string[] {
  const pieces = ANSWERS[provider]
  const [input, output] = USAGE[provider]
  if (provider === 'anthropic') {
    return [
      sse('message_start', { type: 'message_start', message: { id: 'msg_mock', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: input, output_tokens: 1 } } }),
      sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
      sse('ping', { type: 'ping' }),
      ...pieces.map((p) => sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } })),
      sse('content_block_stop', { type: 'content_block_stop', index: 0 }),
      sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: output } }),
      sse('message_stop', { type: 'message_stop' }),
    ]
  }
  if (provider === 'openai') {
    const chunk = (delta: object, finish: string | null) => sse(undefined, { id: 'chatcmpl-mock', object: 'chat.completion.chunk', created: 1700000000, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })
    return [
      chunk({ role: 'assistant', content: '' }, null),
      ...pieces.map((p) => chunk({ content: p }, null)),
      chunk({}, 'stop'),
      sse(undefined, { id: 'chatcmpl-mock', object: 'chat.completion.chunk', created: 1700000000, model, choices: [], usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output } }),
      sse(undefined, '[DONE]'),
    ]
  }
  return pieces.map((p, i) => sse(undefined, {
    candidates: [{ content: { parts: [{ text: p }], role: 'model' }, ...(i === pieces.length - 1 ? { finishReason: 'STOP' } : {}), index: 0 }],
    usageMetadata: { promptTokenCount: input, ...(i === pieces.length - 1 ? { candidatesTokenCount: output } : {}) },
    modelVersion: model,
  }))
}

/** Env that points every production provider at the mock (sandbox keys stay on the local provider). */
export function upstreamEnv(mock: MockUpstream): Record<string, string> {
  return {
    ANTHROPIC_API_KEY: UPSTREAM_KEYS.anthropic, ANTHROPIC_BASE_URL: mock.url,
    OPENAI_API_KEY: UPSTREAM_KEYS.openai, OPENAI_BASE_URL: `${mock.url}/v1`,
    GEMINI_API_KEY: UPSTREAM_KEYS.gemini, GEMINI_BASE_URL: mock.url,
  }
}
