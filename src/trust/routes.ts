import type { FastifyInstance } from 'fastify'
import type { Clock } from '../core/clock.ts'
import type { TrustInstance } from './instance.ts'
import { renderSecurityTxt, renderTrustHtml, TRUST_CSP } from './render.ts'
import { trustReport, type TrustProbes } from './report.ts'

export interface TrustDeps {
  readonly clock: Clock
  readonly trust: TrustInstance
  readonly trustProbes: TrustProbes
}

/**
 * TRUST-1: the live trust page (`/trust`, `/trust.json`) and `/.well-known/security.txt`. Public
 * and read-only. Responses keep the base headers, `Cache-Control: no-store` included: the page
 * carries live self-check results, and a cached copy would go on saying "ok" after a check fails.
 */
export function registerTrustRoutes(app: FastifyInstance, d: TrustDeps): void {
  const report = () => trustReport(d.trust, d.trustProbes, d.clock.now())

  app.get('/trust.json', { config: { action: 'public' } }, async (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(await report()))

  app.get('/trust', { config: { action: 'public' } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').header('content-security-policy', TRUST_CSP).header('x-frame-options', 'DENY').send(renderTrustHtml(await report())))

  app.get('/.well-known/security.txt', { config: { action: 'public' } }, async (_request, reply) => {
    const text = renderSecurityTxt(d.trust.security)
    if (text === undefined) return reply.callNotFound()
    return reply.type('text/plain; charset=utf-8').send(text)
  })
}
