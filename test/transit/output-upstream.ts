import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A local upstream for canary tests whose ANSWERS carry markers (TRANSIT-1 covers model
 * outputs too). It sits in front of test/fakes/upstreams.ts: a model registered in `outputs`
 * is answered here, in the provider's own wire format (JSON or SSE), with the registered text
 * pieces; every other request is forwarded to the mock unchanged, so the mock's suffix
 * behaviours (-fail-<status>, -hang, -slow, -midstream, -garbage) keep working, aborts included.
 */
export interface OutputPlan {
  /** The answer's text, one streamed delta per piece. */
  readonly pieces: readonly string[]
  /**
   * Streaming only: after the pieces, fail — Anthropic with an error event that quotes the
   * request (as the real API can), OpenAI and Gemini by dropping the connection.
   */
  readonly failMidStream?: boolean
}

export interface OutputUpstream {
  readonly url: string
  /** model name → how to answer it. */
  readonly outputs: Map<string, OutputPlan>
  /** Every request received (method, URL and body), answered here or forwarded. */
  readonly seen: string[]
  close(): Promise<void>
}

const sse = (event: string | undefined, data: unknown) => (event ? `event: ${event}\n` : '') + `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`

function answer(provider: 'anthropic' | 'openai' | 'gemini', stream: boolean, model: string, plan: OutputPlan, request: string, res: ServerResponse): void {
  const pieces = plan.pieces
  const text = pieces.join('')
  if (!stream) {
    const body = provider === 'anthropic'
      ? { id: 'msg_out', type: 'message', role: 'assistant', model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 5, output_tokens: 5 } }
      : provider === 'openai'
        ? { id: 'chatcmpl-out', object: 'chat.completion', created: 1700000000, model, choices: [{ index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs: null, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } }
        : { candidates: [{ content: { parts: [{ text }], role: 'model' }, finishReason: 'STOP', index: 0 }], usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 5, totalTokenCount: 10 }, modelVersion: model }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    return
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  if (plan.failMidStream) {
    if (provider === 'anthropic') {
      res.write(sse('message_start', { type: 'message_start', message: { id: 'msg_out', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 5, output_tokens: 1 } } }))
      for (const p of pieces) res.write(sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } }))
    } else if (provider === 'openai') {
      for (const p of pieces) res.write(sse(undefined, { id: 'chatcmpl-out', object: 'chat.completion.chunk', created: 1700000000, model, choices: [{ index: 0, delta: { content: p }, logprobs: null, finish_reason: null }] }))
    } else {
      for (const p of pieces) res.write(sse(undefined, { candidates: [{ content: { parts: [{ text: p }], role: 'model' }, index: 0 }], modelVersion: model }))
    }
    // Let the deltas reach the gateway first, then fail.
    setTimeout(() => {
      if (provider === 'anthropic') res.end(sse('error', { type: 'error', error: { type: 'overloaded_error', message: `overloaded while answering ${request}` } }))
      else res.destroy()
    }, 30)
    return
  }
  if (provider === 'anthropic') {
    res.write(sse('message_start', { type: 'message_start', message: { id: 'msg_out', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 5, output_tokens: 1 } } }))
    res.write(sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }))
    for (const p of pieces) res.write(sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: p } }))
    res.write(sse('content_block_stop', { type: 'content_block_stop', index: 0 }))
    res.write(sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 5 } }))
    res.end(sse('message_stop', { type: 'message_stop' }))
  } else if (provider === 'openai') {
    const chunk = (delta: object, finish: string | null) => sse(undefined, { id: 'chatcmpl-out', object: 'chat.completion.chunk', created: 1700000000, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })
    res.write(chunk({ role: 'assistant', content: '' }, null))
    for (const p of pieces) res.write(chunk({ content: p }, null))
    res.write(chunk({}, 'stop'))
    res.write(sse(undefined, { id: 'chatcmpl-out', object: 'chat.completion.chunk', created: 1700000000, model, choices: [], usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 } }))
    res.end(sse(undefined, '[DONE]'))
  } else {
    pieces.forEach((p, i) => res.write(sse(undefined, {
      candidates: [{ content: { parts: [{ text: p }], role: 'model' }, ...(i === pieces.length - 1 ? { finishReason: 'STOP' } : {}), index: 0 }],
      usageMetadata: { promptTokenCount: 5, ...(i === pieces.length - 1 ? { candidatesTokenCount: 5 } : {}) },
      modelVersion: model,
    })))
    res.end()
  }
}

export async function startOutputUpstream(target: string): Promise<OutputUpstream> {
  const outputs = new Map<string, OutputPlan>()
  const seen: string[] = []
  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      seen.push(`${req.method} ${req.url}\n${raw.toString('utf8')}`)
      const url = new URL(req.url ?? '/', 'http://x')
      const gemini = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(url.pathname)
      let model: string | undefined
      let stream = false
      let provider: 'anthropic' | 'openai' | 'gemini' | undefined
      try {
        const body = JSON.parse(raw.toString('utf8')) as { model?: unknown; stream?: unknown }
        if (gemini) {
          provider = 'gemini'
          model = decodeURIComponent(gemini[1]!)
          stream = gemini[2] === 'streamGenerateContent'
        } else if (typeof body.model === 'string') {
          provider = url.pathname === '/v1/messages' ? 'anthropic' : url.pathname === '/v1/chat/completions' ? 'openai' : undefined
          model = body.model
          stream = body.stream === true
        }
      } catch {
        // not JSON: the mock answers it
      }
      const plan = model === undefined ? undefined : outputs.get(model)
      if (provider && model && plan) return answer(provider, stream, model, plan, raw.toString('utf8'), res)
      const up = http.request(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers)
        ur.on('data', (c: Buffer) => res.write(c))
        ur.on('end', () => res.end())
        ur.on('error', () => res.destroy())
        ur.on('close', () => {
          if (!ur.complete) res.destroy()
        })
      })
      up.on('error', () => res.destroy())
      // The caller went away (client abort, timeout): the mock must see it too.
      res.on('close', () => {
        if (!res.writableFinished) up.destroy()
      })
      up.end(raw)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    outputs,
    seen,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}
