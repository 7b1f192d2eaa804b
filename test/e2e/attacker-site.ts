import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A static attacker site on loopback (T53). Chromium reaches it by a name of our choosing:
 * `http://evil.test:<port>` (another site, via --host-resolver-rules) or
 * `http://localhost:<port>` (the same site as the app on localhost:<app port>, another origin).
 * Pages are registered by path; everything the site serves is inert HTML written by the test.
 */
export interface AttackerSite {
  readonly port: number
  /** Serves `html` at `path`. */
  page(path: string, html: string): void
  close(): Promise<void>
}

export async function startAttackerSite(): Promise<AttackerSite> {
  const pages = new Map<string, string>()
  const server: Server = createServer((req, res) => {
    const html = pages.get((req.url ?? '/').split('?')[0]!)
    if (html === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no such page')
      return
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    page: (path, html) => void pages.set(path, html),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}

const esc = (s: string) => s.replaceAll('&', '&amp;').replaceAll('"', '&quot;').replaceAll('<', '&lt;')

export type FormEncoding = 'application/x-www-form-urlencoded' | 'multipart/form-data' | 'text/plain'

/**
 * A page that auto-submits a top-level POST form (the worst case for SameSite=Lax). For
 * text/plain the field is the classic JSON smuggling trick: name `{"a":"` + value `"}`
 * gives the body `{"a":"="}`.
 */
export function autoSubmitForm(action: string, enctype: FormEncoding, fields: Record<string, string>): string {
  const inputs = Object.entries(fields).map(([k, v]) => `<input type="hidden" name="${esc(k)}" value="${esc(v)}">`).join('')
  return `<!doctype html><title>win a prize</title><form method="POST" action="${esc(action)}" enctype="${enctype}">${inputs}</form><script>document.forms[0].submit()</script>`
}

/**
 * A page that fires every request in `calls` with credentials included, one after the other,
 * then sets its title to `done` (each result: 'opaque', a status, or the error's name).
 */
export function fetchAttacks(calls: { url: string; init: string }[]): string {
  const body = calls.map((c) => `  try { const r = await fetch(${JSON.stringify(c.url)}, ${c.init}); out.push(r.type === 'opaque' ? 'opaque' : String(r.status)) } catch (e) { out.push(e.name) }`).join('\n')
  return `<!doctype html><title>loading</title><script>
(async () => {
  const out = []
${body}
  window.results = out
  document.title = 'done'
})()
</script>`
}
