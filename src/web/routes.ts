import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'

/** The dashboard's content security policy: our own scripts only, never framed (T53). */
export const DASHBOARD_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

const webDir = new URL('../../web/', import.meta.url).pathname
const require = createRequire(import.meta.url)
const webauthnBundle = join(dirname(require.resolve('@simplewebauthn/browser')), '..', 'dist', 'bundle', 'index.umd.min.js')

/** Serves the dashboard (read once at start-up): `/`, the sign-in link and invite pages, and its assets. */
export function registerWebRoutes(app: FastifyInstance): void {
  const page = readFileSync(join(webDir, 'index.html'))
  const assets: Record<string, { body: Buffer; type: string }> = {
    '/web/app.js': { body: readFileSync(join(webDir, 'app.js')), type: 'text/javascript; charset=utf-8' },
    '/web/style.css': { body: readFileSync(join(webDir, 'style.css')), type: 'text/css; charset=utf-8' },
    '/web/vendor/simplewebauthn.js': { body: readFileSync(webauthnBundle), type: 'text/javascript; charset=utf-8' },
  }
  for (const path of ['/', '/auth/link', '/invite']) {
    app.get(path, { config: { action: 'public' } }, async (_request, reply) =>
      reply.type('text/html; charset=utf-8').header('content-security-policy', DASHBOARD_CSP).header('x-frame-options', 'DENY').send(page))
  }
  for (const [path, asset] of Object.entries(assets)) {
    app.get(path, { config: { action: 'public' } }, async (_request, reply) => reply.type(asset.type).header('content-security-policy', DASHBOARD_CSP).send(asset.body))
  }
}
