import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A local stand-in for the classifier's LLM providers, speaking the real wire formats:
 * Anthropic Messages (`POST /v1/messages`, answering with a forced `tool_use` block) and Gemini
 * generateContent (`POST /v1beta/models/<model>:generateContent`, answering with JSON text in
 * the first candidate part). It listens on 127.0.0.1 only and keeps every request body it
 * received in memory, so tests can check what was (and was not) sent.
 */
export const CLASSIFIER_KEYS = { anthropic: 'sk-ant-classifier-mock', gemini: 'gemini-classifier-mock' } as const

export interface ClassifierMockAnswers {
  /** The tool input the mock returns (or a function of the request body). */
  anthropic: unknown | ((body: any) => unknown)
  /** The JSON object the mock returns as text. */
  gemini: unknown | ((body: any) => unknown)
}

export interface ClassifierMock {
  readonly url: string
  readonly received: { readonly provider: 'anthropic' | 'gemini'; readonly path: string; readonly headers: IncomingMessage['headers']; readonly raw: string; readonly body: any }[]
  readonly answers: ClassifierMockAnswers
  /** Milliseconds to wait before answering (timeout tests). */
  delayMs: number
  /** Answer every request with this status and an error body instead. */
  failStatus: number | undefined
  close(): Promise<void>
}

export const DEFAULT_TEXT_LABELS = {
  domain: 'medical', domain_confidence: 0.92, intent: 'learn', intent_confidence: 0.88, safety: [], prompt_injection: false,
}
export const DEFAULT_IMAGE_LABELS = { labels: ['photo', 'document'], safety: [] }

export async function startClassifierMock(): Promise<ClassifierMock> {
  const sockets = new Set<import('node:net').Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const state: ClassifierMock = {
    url: '',
    received: [],
    answers: { anthropic: DEFAULT_TEXT_LABELS, gemini: DEFAULT_IMAGE_LABELS },
    delayMs: 0,
    failStatus: undefined,
    close: async () => {
      for (const t of timers) clearTimeout(t)
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      // Recorded on arrival, not after the delay: a request a test gave up on (a timeout) must not
      // appear in the next test's `received`.
      record(req, Buffer.concat(chunks).toString('utf8'))
      const t = setTimeout(() => {
        timers.delete(t)
        handle(req, res, Buffer.concat(chunks).toString('utf8'))
      }, state.delayMs)
      timers.add(t)
    })
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })

  function send(res: ServerResponse, status: number, body: unknown) {
    if (res.destroyed) return
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
  }

  function record(req: IncomingMessage, raw: string) {
    let body: any
    try {
      body = JSON.parse(raw)
    } catch {
      return
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname
    if (req.method === 'POST' && path === '/v1/messages') state.received.push({ provider: 'anthropic', path, headers: req.headers, raw, body })
    else if (req.method === 'POST' && /^\/v1beta\/models\/([^/:]+):generateContent$/.test(path)) state.received.push({ provider: 'gemini', path, headers: req.headers, raw, body })
  }

  function handle(req: IncomingMessage, res: ServerResponse, raw: string) {
    let body: any
    try {
      body = JSON.parse(raw)
    } catch {
      return send(res, 400, { error: 'bad json' })
    }
    const path = new URL(req.url ?? '/', 'http://x').pathname
    if (req.method === 'POST' && path === '/v1/messages') {
      const key = req.headers['x-api-key'] ?? String(req.headers['authorization'] ?? '').replace(/^Bearer /, '')
      if (key !== CLASSIFIER_KEYS.anthropic) return send(res, 401, { type: 'error', error: { type: 'authentication_error', message: 'bad key' } })
      if (state.failStatus) return send(res, state.failStatus, { type: 'error', error: { type: 'api_error', message: 'mock failure' } })
      const tool = body?.tool_choice?.name ?? 'record_classification'
      const input = typeof state.answers.anthropic === 'function' ? (state.answers.anthropic as (b: any) => unknown)(body) : state.answers.anthropic
      return send(res, 200, {
        id: 'msg_mock', type: 'message', role: 'assistant', model: body.model, stop_reason: 'tool_use',
        content: [{ type: 'tool_use', id: 'toolu_mock', name: tool, input }],
        usage: { input_tokens: 100, output_tokens: 20 },
      })
    }
    const m = /^\/v1beta\/models\/([^/:]+):generateContent$/.exec(path)
    if (req.method === 'POST' && m) {
      if (req.headers['x-goog-api-key'] !== CLASSIFIER_KEYS.gemini) return send(res, 403, { error: { code: 403, message: 'bad key', status: 'PERMISSION_DENIED' } })
      if (state.failStatus) return send(res, state.failStatus, { error: { code: state.failStatus, message: 'mock failure', status: 'INTERNAL' } })
      const answer = typeof state.answers.gemini === 'function' ? (state.answers.gemini as (b: any) => unknown)(body) : state.answers.gemini
      return send(res, 200, {
        candidates: [{ content: { role: 'model', parts: [{ text: JSON.stringify(answer) }] }, finishReason: 'STOP' }],
        usageMetadata: { promptTokenCount: 300, candidatesTokenCount: 12 },
      })
    }
    send(res, 404, { error: 'not found' })
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  ;(state as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return state
}
