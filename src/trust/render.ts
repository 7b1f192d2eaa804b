import { createHash } from 'node:crypto'
import type { LiveSetting, SecurityTxtSettings } from './instance.ts'
import type { TrustReport } from './report.ts'

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(v: string): string {
  return v.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

const STYLE = [
  'body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}',
  'table{border-collapse:collapse;width:100%;margin:1rem 0}th,td{border-bottom:1px solid #ddd;padding:.4rem .5rem;text-align:left;vertical-align:top}',
  'code{font-size:.9em}.ok{color:#176b2c}.warn{color:#8a5a00}.fail{color:#b00020}.planned,.partial{color:#8a5a00}.none{color:#666}',
  'ul{margin:0;padding-left:1.1rem}',
].join('')

/**
 * The page's content security policy: no scripts at all, only its own inline stylesheet
 * (allowed by hash, not by 'unsafe-inline'), never framed, no forms.
 */
export const TRUST_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`

function value(v: LiveSetting['value']): string {
  return Array.isArray(v) ? (v.length === 0 ? '(none)' : v.join(', ')) : String(v)
}

function settingItem(x: LiveSetting): string {
  return `<li><code>${escapeHtml(x.setting)}</code>: ${escapeHtml(value(x.value))}${x.unit ? ` ${escapeHtml(x.unit)}` : ''}</li>`
}

/** The trust page as server-rendered HTML; every value from the report is escaped. */
export function renderTrustHtml(r: TrustReport): string {
  const e = escapeHtml
  const checks = r.checks.map((c) => `<tr><td><code>${e(c.id)}</code></td><td class="${e(c.status)}">${e(c.status)}</td><td>${e(c.detail)}</td></tr>`).join('\n')
  const promises = r.promises.map((p) => [
    '<tr>',
    `<td><code>${e(p.id)}</code></td>`,
    `<td>${e(p.promise)}</td>`,
    `<td class="${e(p.status)}">${e(p.status)}${p.missing ? `<br>missing: ${e(p.missing)}` : ''}</td>`,
    `<td>${p.settings.length === 0 ? '<span class="none">—</span>' : `<ul>${p.settings.map(settingItem).join('')}</ul>`}</td>`,
    `<td class="${e(p.self_check)}">${e(p.self_check)}${p.checks.length > 0 ? ` (${p.checks.map(e).join(', ')})` : ''}</td>`,
    '</tr>',
  ].join('')).join('\n')
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tollgate trust page</title>
<style>${STYLE}</style>
</head>
<body>
<h1>What this Tollgate instance promises</h1>
<p>Mode <code>${e(r.instance.mode)}</code>, environments <code>${e(r.instance.environments.join(', '))}</code>, storage <code>${e(r.instance.storage)}</code>, cache <code>${e(r.instance.cache)}</code>.
Checked at <time datetime="${e(r.checked_at)}">${e(r.checked_at)}</time>: overall <strong class="${e(r.status)}">${e(r.status)}</strong>.
The same report is at <a href="/trust.json">/trust.json</a>; the security contact is in <a href="/.well-known/security.txt">/.well-known/security.txt</a>.</p>
<h2>Self-checks</h2>
<table>
<thead><tr><th>check</th><th>result</th><th>detail</th></tr></thead>
<tbody>
${checks}
</tbody>
</table>
<h2>Promises</h2>
<p>Each promise is <em>kept</em> (the code keeps it and a test named after its ID proves it), <em>partial</em> or <em>planned</em> (with what is missing).</p>
<table>
<thead><tr><th>ID</th><th>promise</th><th>status</th><th>live settings</th><th>self-check</th></tr></thead>
<tbody>
${promises}
</tbody>
</table>
</body>
</html>
`
}

/** RFC 3339 with whole seconds when there are no milliseconds (2026-12-31T00:00:00Z). */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, 'Z')
}

/**
 * `/.well-known/security.txt` (RFC 9116), or undefined when no contact is configured (Contact
 * and Expires are required fields, so no file is better than an invalid one).
 */
export function renderSecurityTxt(sec: SecurityTxtSettings): string | undefined {
  if (sec.contacts.length === 0 || sec.expiresAt === undefined) return undefined
  return [
    '# Security contact for this Tollgate instance (RFC 9116).',
    ...sec.contacts.map((c) => `Contact: ${c}`),
    `Expires: ${rfc3339(sec.expiresAt)}`,
    ...(sec.policyUrl ? [`Policy: ${sec.policyUrl}`] : []),
    ...(sec.languages.length > 0 ? [`Preferred-Languages: ${sec.languages.join(', ')}`] : []),
    ...(sec.canonical ? [`Canonical: ${sec.canonical}`] : []),
    '',
  ].join('\n')
}
