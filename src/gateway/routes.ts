import type { FastifyInstance } from 'fastify'
import { TollgateError } from '../core/errors.ts'
import { safeError } from '../observe/log.ts'
import { authenticate } from '../keys/authenticate.ts'
import { handleAiRequest, handleChallengeReply, rejectAiRequest, type GatewayDeps } from './pipeline.ts'
import { AiReply } from './reply.ts'
import { anthropicWire } from './wire/anthropic.ts'
import { nativeWire } from './wire/native.ts'
import { openaiWire } from './wire/openai.ts'
import type { Wire } from './wire/wire.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set on AI routes: errors there are answered in this wire format and recorded. */
    wire?: Wire
  }
}

export const AI_ROUTES: readonly { path: string; wire: Wire }[] = [
  { path: '/v1/messages', wire: anthropicWire },
  { path: '/v1/chat/completions', wire: openaiWire },
  { path: '/v1/intercept', wire: nativeWire },
]

function abortOnClose(res: import('node:http').ServerResponse): AbortSignal {
  const ac = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) ac.abort()
  })
  return ac.signal
}

/** The AI endpoints (GW-1) and `/v1/models`. */
export function registerGatewayRoutes(app: FastifyInstance, d: GatewayDeps, baseHeaders: Readonly<Record<string, string>>): void {
  for (const { path, wire } of AI_ROUTES) {
    app.post(path, { config: { wire } }, async (request, reply) => {
      reply.hijack()
      const out = new AiReply(reply.raw, baseHeaders)
      const req = { wire, route: path, requestId: request.id, headers: request.headers, body: request.body, signal: abortOnClose(reply.raw) }
      await d.inFlight.around(() => handleAiRequest(req, d, out).catch((err) => failed(err, request.id, wire, out, d, reply.elapsedTime)))
    })
  }

  // GW-5: the native API's reply to a challenge; the reply text is graded in memory only.
  app.post('/v1/intercept/:id/reply', { config: { wire: nativeWire } }, async (request, reply) => {
    reply.hijack()
    const out = new AiReply(reply.raw, baseHeaders)
    const req = { wire: nativeWire, route: '/v1/intercept/:id/reply', requestId: request.id, headers: request.headers, body: request.body, signal: abortOnClose(reply.raw) }
    const id = String((request.params as Record<string, unknown>)['id'] ?? '')
    await d.inFlight.around(() => handleChallengeReply(req, id, d, out).catch((err) => failed(err, request.id, nativeWire, out, d, reply.elapsedTime)))
  })

  app.get('/v1/models', async (request, reply) => {
    const who = await authenticate(request.headers, d.keys)
    if (!who.ok) throw new TollgateError('invalid_api_key')
    // KEY-2: like the AI endpoints, a key of an environment this instance does not serve gets 403.
    if (!d.environments.includes(who.value.environment)) throw new TollgateError('environment_not_served')
    const models = d.providers.models(who.value.environment)
    const created = 1_700_000_000
    reply.type('application/json; charset=utf-8')
    // One list both SDKs read: OpenAI's `object/owned_by` and Anthropic's `type/display_name` fields.
    return {
      object: 'list',
      data: models.map((m) => ({ id: m.id, object: 'model', type: 'model', created, created_at: new Date(created * 1000).toISOString(), owned_by: m.provider, display_name: m.id })),
      has_more: false,
      first_id: models[0]?.id ?? null,
      last_id: models.at(-1)?.id ?? null,
    }
  })
}

/** A request the framework refused before the handler (415, 413, bad JSON) on an AI route. */
export function rejectOnAiRoute(code: TollgateError['code'], request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply, wire: Wire, d: GatewayDeps, baseHeaders: Readonly<Record<string, string>>): Promise<void> {
  reply.hijack()
  const out = new AiReply(reply.raw, baseHeaders)
  const req = { wire, route: request.routeOptions.url ?? '', requestId: request.id, headers: request.headers, signal: abortOnClose(reply.raw) }
  return d.inFlight.around(() => rejectAiRequest(req, code, d, out).catch((err) => failed(err, request.id, wire, out, d, reply.elapsedTime)))
}

function failed(err: unknown, requestId: string, wire: Wire, out: AiReply, d: GatewayDeps, elapsedMs: number): void {
  d.log.error({ reqId: requestId, err: safeError(err) }, 'ai request failed')
  if (!out.headersSent) out.send(500, wire.error('internal_error', requestId), { 'x-request-id': requestId, 'request-id': requestId, 'server-timing': `total;dur=${Math.round(elapsedMs * 100) / 100}` })
  else out.end()
}
