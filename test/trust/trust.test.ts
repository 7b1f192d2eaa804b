// TRUST-1: the live trust page (/trust, /trust.json) and /.well-known/security.txt (RFC 9116).
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { PROMISES } from '../../src/trust/promises.ts'
import { escapeHtml } from '../../src/trust/render.ts'
import { ManualClock } from '../fakes/clock.ts'
import { startApp } from '../helpers/app.ts'
import { freshPostgres, needService } from '../helpers/services.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const SHARED_PROMISES = '/work/shared/PROMISES.md'
const DAY = 86_400_000

interface TrustJson {
  status: string
  checked_at: string
  instance: { mode: string; environments: string[]; storage: string; cache: string }
  checks: { id: string; status: string; detail: string }[]
  promises: { id: string; promise: string; status: string; missing?: string; settings: { setting: string; value: unknown; unit?: string }[]; self_check: string; checks: string[] }[]
}

async function trustJson(url: string): Promise<TrustJson> {
  const res = await fetch(`${url}/trust.json`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^application\/json; charset=utf-8/)
  return (await res.json()) as TrustJson
}

const setting = (j: TrustJson, id: string, name: string) => j.promises.find((p) => p.id === id)?.settings.find((s) => s.setting === name)?.value
const check = (j: TrustJson, id: string) => j.checks.find((c) => c.id === id)

/** The promise IDs this instance must cover: PROMISES.md when it is there, else the README's list. */
function expectedIds(): { source: string; ids: string[] } {
  if (existsSync(SHARED_PROMISES)) {
    const ids = readFileSync(SHARED_PROMISES, 'utf8').split('\n').map((l) => /^\|\s*([A-Z]+-\d+)\s*\|/.exec(l)?.[1]).filter((x): x is string => x !== undefined)
    return { source: SHARED_PROMISES, ids }
  }
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Security model'))
  const line = section.split('\n').find((l) => l.includes('Promise IDs'))
  assert.ok(line, 'the README Security model section lists the promise IDs')
  return { source: 'README.md (Security model)', ids: [...line.matchAll(/`([A-Z]+-\d+)`/g)].map((m) => m[1]!) }
}

test('TRUST-1: /trust.json lists every promise ID (PROMISES.md, or the README list without it), each in one sentence with a status', async (t) => {
  const { source, ids } = expectedIds()
  t.diagnostic(`promise IDs read from ${source}: ${ids.length}`)
  assert.ok(ids.length >= 40, `read the list (${ids.length} IDs)`)
  const tg = await startApp(t)
  if (!tg) return
  const j = await trustJson(tg.url)
  const listed = j.promises.map((p) => p.id)
  assert.deepEqual(ids.filter((id) => !listed.includes(id)), [], 'every promise ID appears on /trust.json')
  assert.deepEqual(listed.filter((id) => !ids.includes(id)), [], 'no invented promise')
  assert.equal(new Set(listed).size, listed.length)
  for (const p of j.promises) {
    assert.ok(p.promise.length > 20 && p.promise.length < 240 && !p.promise.includes('\n'), `${p.id}: one short sentence`)
    assert.ok(['kept', 'partial', 'planned'].includes(p.status), p.id)
    if (p.status !== 'kept') assert.ok((p.missing ?? '').length > 10, `${p.id} says what is missing`)
    assert.ok(['ok', 'warn', 'fail', 'none'].includes(p.self_check), p.id)
  }
  // The README's list and the code's list agree too (both ways).
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const readmeIds = [...(readme.slice(readme.indexOf('## Security model')).split('\n').find((l) => l.includes('Promise IDs')) ?? '').matchAll(/`([A-Z]+-\d+)`/g)].map((m) => m[1]!)
  assert.deepEqual([...readmeIds].sort(), [...listed].sort(), 'README Security model lists exactly the promise IDs the trust page covers')
})

test('TRUST-1: a promise the trust page calls kept or partial has a test named after its ID; planned ones say so instead', () => {
  const names: string[] = []
  const walk = (dir: string) => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f)
      if (statSync(p).isDirectory()) walk(p)
      else if (f.endsWith('.test.ts')) names.push(...[...readFileSync(p, 'utf8').matchAll(/\btest\(\s*[`'"]([^`'"]*)/g)].map((m) => m[1]!))
    }
  }
  walk(join(ROOT, 'test'))
  assert.ok(names.length > 50)
  for (const p of PROMISES.filter((x) => x.status !== 'planned')) {
    const id = new RegExp(`(^|[^A-Z-])${p.id}(?![0-9])`)
    assert.ok(names.some((n) => id.test(n)), `${p.id} is called ${p.status} but no test name carries its ID`)
  }
  // Every promise may be kept; those that are not yet say what is missing.
  assert.ok(PROMISES.filter((x) => x.status === 'planned').every((x) => (x.missing ?? '').length > 10))
})

test('TRUST-1: the live settings and self-checks follow the configuration (sessions, limits, idempotency, challenge, TLS, providers, classifier, ops secret, environments)', async (t) => {
  const a = await startApp(t)
  const b = await startApp(t, {
    env: {
      TOLLGATE_STEP_UP_WINDOW_S: '300', TOLLGATE_SESSION_MAX_AGE_S: '86400', TOLLGATE_SSO_SESSION_MAX_AGE_S: '7200', TOLLGATE_SSO_SESSION_IDLE_S: '900',
      TOLLGATE_LIMIT_INTERCEPT_PER_MIN: '42', TOLLGATE_LIMIT_API_PER_MIN: '77', TOLLGATE_LIMIT_AUTH_PER_MIN: '5',
      TOLLGATE_IDEMPOTENCY_TTL_S: '3600', TOLLGATE_CHALLENGE_TTL_S: '120',
      TOLLGATE_PUBLIC_URL: 'https://tollgate.example.test', TOLLGATE_ENVIRONMENTS: 'production',
      ANTHROPIC_API_KEY: 'sk-ant-live-test', TOLLGATE_CLASSIFIER_LLM: 'off', TOLLGATE_OPS_SECRET: 'o'.repeat(40),
    },
  })
  if (!a || !b) return
  const ja = await trustJson(a.url)
  const jb = await trustJson(b.url)
  const pairs: [string, string, unknown, unknown][] = [
    ['AUTH-6', 'TOLLGATE_STEP_UP_WINDOW_S', 600, 300],
    ['AUTH-3', 'TOLLGATE_SESSION_MAX_AGE_S', 2592000, 86400],
    ['AUTH-4', 'TOLLGATE_SSO_SESSION_MAX_AGE_S', 28800, 7200],
    ['AUTH-4', 'TOLLGATE_SSO_SESSION_IDLE_S', 3600, 900],
    ['LIMIT-1', 'TOLLGATE_LIMIT_INTERCEPT_PER_MIN', 1000000, 42],
    ['LIMIT-1', 'TOLLGATE_LIMIT_API_PER_MIN', 1000000, 77],
    ['LIMIT-1', 'TOLLGATE_LIMIT_AUTH_PER_MIN', 1000000, 5],
    ['LIMIT-2', 'TOLLGATE_IDEMPOTENCY_TTL_S', 86400, 3600],
    ['GW-5', 'TOLLGATE_CHALLENGE_TTL_S', 300, 120],
    ['CRYPTO-1', 'HSTS', 'not sent', 'sent'],
    ['CRYPTO-1', 'TLS', 'off', 'at a proxy (https public URL)'],
    ['KEY-4', 'TOLLGATE_OPS_SECRET', 'not configured', 'configured'],
    ['GW-3', 'TOLLGATE_CLASSIFIER_LLM', 'low_margin', 'off'],
    ['GW-3', 'TOLLGATE_CLASSIFIER_MODEL', 'as_needed', 'as_needed'],
    ['OPS-1', 'TOLLGATE_ENVIRONMENTS', ['sandbox', 'production'], ['production']],
    ['OPS-1', 'storage', 'sqlite', 'sqlite'],
    ['OPS-1', 'cache', 'memory', 'memory'],
    ['GW-2', 'providers (production)', ['local provider only'], ['anthropic']],
  ]
  for (const [id, name, before, after] of pairs) {
    assert.deepEqual(setting(ja, id, name), before, `${id} ${name} with the defaults`)
    assert.deepEqual(setting(jb, id, name), after, `${id} ${name} follows the setting`)
  }
  assert.deepEqual(jb.instance.environments, ['production'])
  assert.equal(check(ja, 'transport')?.status, 'warn', 'plain HTTP warns')
  assert.equal(check(jb, 'transport')?.status, 'ok', 'an https public URL means TLS in front')
  for (const j of [ja, jb]) {
    for (const id of ['database', 'cache', 'migrations', 'master_key', 'classifier']) assert.equal(check(j, id)?.status, 'ok', `${id}: ${check(j, id)?.detail}`)
    assert.equal(j.promises.find((p) => p.id === 'TRANSIT-3')?.self_check, 'ok')
  }
  // A failing dependency shows on the promises that rest on it.
  await b.deps.db.db.destroy()
  const broken = await trustJson(b.url)
  assert.equal(check(broken, 'database')?.status, 'fail')
  assert.equal(check(broken, 'migrations')?.status, 'fail')
  assert.equal(broken.status, 'fail')
  assert.equal(broken.promises.find((p) => p.id === 'TRANSIT-3')?.self_check, 'fail')
  assert.equal(broken.promises.find((p) => p.id === 'GW-1')?.self_check, 'none')
  assert.doesNotMatch(JSON.stringify(broken.checks), /select|sqlite_|driver|destroy|SQLITE/i, 'a failing check is named, never its error')
})

test('TRUST-1: no secret (master key, ops secret, provider and OAuth keys, SMTP URL password) appears on /trust or /trust.json — after finding each planted value in the config', async (t) => {
  const planted = {
    master: 'b7'.repeat(32),
    ops: 'OPSSECRET-plant-9f3a1c7e5d2b4a6c8e0f',
    anthropic: 'sk-ant-PLANT-71c2e9a0d4',
    openai: 'sk-openai-PLANT-3b8d6f1a92',
    gemini: 'gemini-PLANT-5e0c7a9b13',
    sandbox: 'sk-ant-sandbox-PLANT-8d2f4b6a',
    google: 'google-secret-PLANT-0a9c8e7d',
    smtpPass: 'smtp-pw-PLANT-61d3',
  }
  const tg = await startApp(t, {
    env: {
      TOLLGATE_MASTER_KEY: planted.master, TOLLGATE_OPS_SECRET: planted.ops, ANTHROPIC_API_KEY: planted.anthropic, OPENAI_API_KEY: planted.openai,
      GEMINI_API_KEY: planted.gemini, TOLLGATE_SANDBOX_ANTHROPIC_API_KEY: planted.sandbox,
      TOLLGATE_GOOGLE_CLIENT_ID: 'client-id.apps.example', TOLLGATE_GOOGLE_CLIENT_SECRET: planted.google,
      TOLLGATE_SMTP_URL: `smtp://mailer:${planted.smtpPass}@127.0.0.1:2525`,
      TOLLGATE_CLASSIFIER_LLM: 'off',
      TOLLGATE_SECURITY_CONTACT: 'mailto:security@example.test', TOLLGATE_SECURITY_EXPIRES: new Date(Date.now() + 200 * DAY).toISOString().slice(0, 10),
    },
  })
  if (!tg) return
  // Positive control: every planted value is in the loaded configuration, so a leak would have a source.
  const c = tg.config
  const revealed = [c.masterKey?.reveal(), c.ops.secret?.reveal(), c.providers.upstreams.production.anthropic?.apiKey?.reveal(), c.providers.upstreams.production.openai?.apiKey?.reveal(),
    c.providers.upstreams.production.gemini?.apiKey?.reveal(), c.providers.upstreams.sandbox.anthropic?.apiKey?.reveal(), c.identity.google?.clientSecret?.reveal(), c.mail.smtpUrl?.reveal()].join('\n')
  for (const [name, v] of Object.entries(planted)) assert.ok(revealed.includes(v), `control: the config holds the planted ${name}`)
  // And the search below finds a planted value in a text that has it.
  const find = (text: string) => Object.values(planted).filter((v) => text.includes(v) || text.includes(escapeHtml(v)) || text.includes(v.slice(0, 12)))
  assert.deepEqual(find(`xx ${planted.ops} yy`), [planted.ops], 'control: the search finds a planted value')

  const pages = await Promise.all(['/trust', '/trust.json', '/.well-known/security.txt'].map(async (p) => {
    const res = await fetch(tg.url + p)
    assert.equal(res.status, 200, p)
    return `${[...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${await res.text()}`
  }))
  for (const text of pages) assert.deepEqual(find(text), [], 'no secret on the trust page, its JSON or security.txt')
  const j = await trustJson(tg.url)
  assert.deepEqual(setting(j, 'KEY-4', 'TOLLGATE_OPS_SECRET'), 'configured')
  assert.deepEqual(setting(j, 'GW-2', 'providers (production)'), ['anthropic', 'gemini', 'openai'])
  assert.deepEqual(setting(j, 'GW-2', 'providers (sandbox)'), ['anthropic'])
  assert.equal(check(j, 'master_key')?.status, 'ok')
})

test('TRUST-1: no database URL (with a planted password) or Redis URL on /trust or /trust.json with PostgreSQL + Redis', async (t) => {
  if (!(await needService(t, 'postgres'))) return
  // The test server trusts local connections, so a password in the URL is carried but never checked.
  const withPassword = new URL(await freshPostgres(t))
  withPassword.password = 'pg-pw-PLANT-4e8a1d'
  const tg = await startApp(t, { databaseUrl: withPassword.toString(), redis: true })
  if (!tg) return
  const dbUrl = tg.config.storage.databaseUrl!.reveal()
  const redisUrl = tg.config.cache.redisUrl!.reveal()
  assert.ok(dbUrl.includes('pg-pw-PLANT-4e8a1d') && redisUrl.startsWith('redis'), 'control: the planted password and the URLs are in the config')
  const j = await trustJson(tg.url)
  const html = await (await fetch(`${tg.url}/trust`)).text()
  assert.equal(j.instance.storage, 'postgres')
  assert.equal(j.instance.cache, 'redis')
  for (const text of [JSON.stringify(j), html]) {
    for (const v of ['pg-pw-PLANT-4e8a1d', dbUrl, redisUrl, new URL(dbUrl).host, new URL(dbUrl).pathname.slice(1), tg.config.masterKey!.reveal()]) assert.equal(text.includes(v), false, 'no URL, host, database name or key')
    assert.doesNotMatch(text, /postgres(ql)?:\/\/|rediss?:\/\//)
  }
  for (const id of ['database', 'cache', 'migrations']) assert.equal(check(j, id)?.status, 'ok')
})

test('TRUST-1: /.well-known/security.txt per RFC 9116 — Contact and Expires, text/plain; charset=utf-8, optional fields from settings', async (t) => {
  const tg = await startApp(t, {
    env: {
      TOLLGATE_SECURITY_CONTACT: 'mailto:security@example.test,https://example.test/report',
      TOLLGATE_SECURITY_EXPIRES: '2030-06-30T12:00:00Z',
      TOLLGATE_SECURITY_POLICY_URL: 'https://example.test/disclosure',
      TOLLGATE_SECURITY_LANGUAGES: 'en,de',
      TOLLGATE_PUBLIC_URL: 'https://gate.example.test',
    },
  })
  if (!tg) return
  const res = await fetch(`${tg.url}/.well-known/security.txt`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'text/plain; charset=utf-8')
  // The base headers stay on this public route.
  assert.equal(res.headers.get('cache-control'), 'no-store')
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
  assert.match(res.headers.get('x-request-id') ?? '', /^req_/)
  assert.match(res.headers.get('server-timing') ?? '', /^total;dur=/)
  const text = await res.text()
  // RFC 9116 §2.2: `Field: value` lines (order irrelevant), comments start with #, CRLF or LF.
  const fields = new Map<string, string[]>()
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue
    const m = /^([A-Za-z-]+): (.+)$/.exec(line)
    assert.ok(m, `a field line: ${line}`)
    fields.set(m[1]!.toLowerCase(), [...(fields.get(m[1]!.toLowerCase()) ?? []), m[2]!])
  }
  assert.deepEqual(fields.get('contact'), ['mailto:security@example.test', 'https://example.test/report'])
  assert.deepEqual(fields.get('expires'), ['2030-06-30T12:00:00Z'], 'Expires once, RFC 3339')
  assert.deepEqual(fields.get('policy'), ['https://example.test/disclosure'])
  assert.deepEqual(fields.get('preferred-languages'), ['en, de'])
  assert.deepEqual(fields.get('canonical'), ['https://gate.example.test/.well-known/security.txt'])
  for (const [name, values] of fields) if (name !== 'contact') assert.equal(values.length, 1, `${name} at most once`)
  assert.ok(text.endsWith('\n'))
})

test('TRUST-1: without a contact security.txt answers 404 and the self-check warns; a contact without Expires is a configuration problem', async (t) => {
  const tg = await startApp(t)
  if (!tg) return
  const res = await fetch(`${tg.url}/.well-known/security.txt`)
  assert.equal(res.status, 404)
  assert.equal(res.headers.get('cache-control'), 'no-store')
  const j = await trustJson(tg.url)
  assert.equal(check(j, 'security_txt')?.status, 'warn')
  assert.match(check(j, 'security_txt')!.detail, /TOLLGATE_SECURITY_CONTACT/)
  assert.equal(j.promises.find((p) => p.id === 'TRUST-1')?.self_check, 'warn')
  assert.equal(setting(j, 'TRUST-1', 'TOLLGATE_SECURITY_CONTACT'), 'not configured')

  const { loadConfig } = await import('../../src/config/load.ts')
  const bad = (env: Record<string, string>) => { const r = loadConfig(env); return r.ok ? [] : r.problems }
  assert.match(bad({ TOLLGATE_SECURITY_CONTACT: 'mailto:sec@example.test' }).join('\n'), /TOLLGATE_SECURITY_EXPIRES is required with TOLLGATE_SECURITY_CONTACT/)
  assert.match(bad({ TOLLGATE_SECURITY_CONTACT: 'http://insecure.example.test', TOLLGATE_SECURITY_EXPIRES: '2030-01-01' }).join('\n'), /TOLLGATE_SECURITY_CONTACT entries must be/)
  assert.match(bad({ TOLLGATE_SECURITY_CONTACT: 'mailto:a@b.test\r\nX-Injected: 1', TOLLGATE_SECURITY_EXPIRES: '2030-01-01' }).join('\n'), /TOLLGATE_SECURITY_CONTACT entries must be/, 'no line injection')
  for (const expires of ['2030-02-30', 'next year', '2030-13-01', '31/12/2030']) {
    assert.match(bad({ TOLLGATE_SECURITY_CONTACT: 'mailto:sec@example.test', TOLLGATE_SECURITY_EXPIRES: expires }).join('\n'), /TOLLGATE_SECURITY_EXPIRES must be an ISO date/, expires)
  }
  assert.match(bad({ TOLLGATE_SECURITY_POLICY_URL: 'http://example.test/policy' }).join('\n'), /TOLLGATE_SECURITY_POLICY_URL/)
})

test('TRUST-1: Expires within 30 days warns, a passed Expires fails, further ahead is ok (injected clock)', async (t) => {
  const expiresAt = Date.UTC(2031, 0, 31)
  const clock = new ManualClock(expiresAt - 60 * DAY)
  const tg = await startApp(t, { clock, env: { TOLLGATE_SECURITY_CONTACT: 'mailto:sec@example.test', TOLLGATE_SECURITY_EXPIRES: '2031-01-31' } })
  if (!tg) return
  const at = async () => check(await trustJson(tg.url), 'security_txt')!
  assert.equal((await at()).status, 'ok', '60 days ahead')
  clock.set(expiresAt - 30 * DAY - 1000)
  assert.equal((await at()).status, 'ok', 'one second more than 30 days ahead')
  clock.set(expiresAt - 30 * DAY)
  const soon = await at()
  assert.equal(soon.status, 'warn', 'exactly 30 days ahead')
  assert.match(soon.detail, /2031-01-31T00:00:00\.000Z, in 30 day\(s\)/)
  const j = await trustJson(tg.url)
  assert.equal(j.checked_at, new Date(expiresAt - 30 * DAY).toISOString(), 'the page reports the injected time')
  assert.equal(j.promises.find((p) => p.id === 'TRUST-1')?.self_check, 'warn')
  clock.set(expiresAt)
  assert.equal((await at()).status, 'fail', 'expired')
  // The file itself is still served (its contact is still right); consumers see it is stale from Expires.
  assert.equal((await fetch(`${tg.url}/.well-known/security.txt`)).status, 200)
})

test('TRUST-1: /trust is server-rendered HTML without scripts, with a strict CSP, escaped values and the base headers', async (t) => {
  const tg = await startApp(t, { env: { TOLLGATE_SECURITY_CONTACT: 'https://example.test/a?b=1&c=<x>', TOLLGATE_SECURITY_EXPIRES: '2031-01-31' } })
  if (!tg) return
  const res = await fetch(`${tg.url}/trust`)
  assert.equal(res.status, 200)
  assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8')
  const csp = res.headers.get('content-security-policy') ?? ''
  assert.match(csp, /default-src 'none'/)
  assert.match(csp, /style-src 'sha256-[A-Za-z0-9+/=]+'/)
  assert.doesNotMatch(csp, /unsafe-inline|script-src/)
  assert.match(csp, /frame-ancestors 'none'/)
  assert.equal(res.headers.get('x-frame-options'), 'DENY')
  assert.equal(res.headers.get('cache-control'), 'no-store')
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
  assert.match(res.headers.get('x-request-id') ?? '', /^req_/)
  assert.match(res.headers.get('server-timing') ?? '', /^total;dur=/)
  const html = await res.text()
  assert.doesNotMatch(html, /<script/i)
  assert.doesNotMatch(html, /\son[a-z]+=/i, 'no inline event handlers')
  // The inline style's hash is the one the CSP allows.
  const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!
  const { createHash } = await import('node:crypto')
  assert.ok(csp.includes(`'sha256-${createHash('sha256').update(style).digest('base64')}'`))
  for (const p of PROMISES) assert.ok(html.includes(`<code>${p.id}</code>`), p.id)
  assert.ok(html.includes('https://example.test/a?b=1&amp;c=&lt;x&gt;'), 'an operator-supplied value is escaped')
  assert.equal(html.includes('c=<x>'), false)
  assert.equal(escapeHtml(`<a href="x" onclick='y'>&`), '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;')
})
