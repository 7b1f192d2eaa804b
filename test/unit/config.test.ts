import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { inspect } from 'node:util'
import { loadConfig, settingDocs, type Config } from '../../src/config/load.ts'
import { diagnosticFlags } from '../../src/config/process-checks.ts'
import { Secret } from '../../src/core/secret.ts'

const ROOT = new URL('../..', import.meta.url).pathname
const README = join(ROOT, 'README.md')
const MASTER = '0123456789abcdef'.repeat(4)

function ok(env: Record<string, string | undefined>, cwd = '/srv/tollgate'): Config {
  const r = loadConfig(env, cwd)
  if (!r.ok) assert.fail(`expected a valid config, got:\n${r.problems.join('\n')}`)
  return r.config
}

function problems(env: Record<string, string | undefined>): string[] {
  const r = loadConfig(env, '/srv/tollgate')
  assert.equal(r.ok, false, 'expected configuration problems')
  return (r as { problems: string[] }).problems
}

test('OPS-1: an empty environment gives the documented defaults', () => {
  const c = ok({}, '/srv/tollgate')
  assert.equal(c.mode, 'development')
  assert.equal(c.server.host, '127.0.0.1')
  assert.equal(c.server.port, 8787)
  assert.equal(c.storage.dataDir, '/srv/tollgate/data', './data, resolved against the working directory')
  assert.equal(c.storage.databaseUrl, undefined, 'SQLite by default')
  assert.equal(c.cache.redisUrl, undefined, 'memory cache by default')
  assert.equal(c.masterKey, undefined, 'development generates one in the data dir')
  assert.equal(c.server.tls, undefined)
  assert.deepEqual(c.server.environments, ['sandbox', 'production'])
  assert.equal(c.log.level, 'info')
  assert.equal(c.decisions.batchMax, 512)
  assert.deepEqual(c.providers.upstreams, { sandbox: {}, production: {} }, 'no upstream configured: the local provider answers (D17)')
  assert.ok(c.providers.routes.some((r) => r.pattern === 'claude-*' && r.provider === 'anthropic'))
  // Blank values count as unset.
  assert.equal(ok({ TOLLGATE_PORT: '  ', TOLLGATE_HOST: '' }).server.port, 8787)
})

test('OPS-1: valid settings are parsed (absolute data dir, TLS pair, routes, environments)', () => {
  const c = ok({
    TOLLGATE_MODE: 'production', TOLLGATE_MASTER_KEY: MASTER, TOLLGATE_SMTP_URL: 'smtps://mail.example.com:465', TOLLGATE_PORT: '0', TOLLGATE_DATA_DIR: '/var/lib/tollgate',
    TOLLGATE_TLS_CERT: 'cert.pem', TOLLGATE_TLS_KEY: 'key.pem', TOLLGATE_ENVIRONMENTS: 'sandbox',
    TOLLGATE_MODEL_ROUTES: 'my-model=local, gpt-*=openai', OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1',
    TOLLGATE_DATABASE_URL: 'postgres://u:p@127.0.0.1:5432/db', TOLLGATE_REDIS_URL: 'redis://localhost:6379',
  })
  assert.equal(c.mode, 'production')
  assert.equal(c.server.port, 0)
  assert.equal(c.storage.dataDir, '/var/lib/tollgate')
  assert.deepEqual(c.server.tls, { certPath: '/srv/tollgate/cert.pem', keyPath: '/srv/tollgate/key.pem' })
  assert.deepEqual(c.server.environments, ['sandbox'])
  assert.deepEqual(c.providers.routes, [{ pattern: 'my-model', provider: 'local' }, { pattern: 'gpt-*', provider: 'openai' }])
  assert.deepEqual(c.providers.upstreams.production.openai, { apiKey: undefined, baseUrl: 'http://127.0.0.1:11434/v1' }, 'a keyless local OpenAI-compatible server')
})

test('OPS-1: every problem is reported at once, each with how to fix it, never echoing the value', () => {
  const bad = {
    TOLLGATE_PORT: 'port-99999',
    TOLLGATE_MASTER_KEY: 'not-hex-secret-value',
    TOLLGATE_TLS_CERT: 'cert.pem',
    TOLLGATE_MODEL_ROUTES: 'claude-*=anthropic,bogus-route-value',
    TOLLGATE_MODE: 'staging-mode',
    TOLLGATE_LOG_LEVEL: 'chatty-level',
    TOLLGATE_DATABASE_URL: 'mysql://secret-db-password@db',
    TOLLGATE_REDIS_URL: 'memcached://secret-redis-host',
    TOLLGATE_ENVIRONMENTS: 'sandbox,staging',
    TOLLGATE_PUBLIC_URL: 'ftp://example.test',
    TOLLGATE_DECISION_BATCH_MAX: '0',
    ANTHROPIC_BASE_URL: 'https://user:pw-in-url@api.example.test',
  }
  const list = problems(bad)
  const expect: [string, RegExp][] = [
    ['bad port', /^TOLLGATE_PORT must be a whole number from 0 to 65535 \(port\).*unset it to use 8787/],
    ['bad master key', /^TOLLGATE_MASTER_KEY: must be 64 hex characters — generate one with: openssl rand -hex 32$/],
    ['TLS cert without key', /TOLLGATE_TLS_CERT and TOLLGATE_TLS_KEY must be set together/],
    ['bad route', /^TOLLGATE_MODEL_ROUTES entry #2 must look like claude-\*=anthropic/],
    ['bad mode', /^TOLLGATE_MODE must be one of development, production/],
    ['bad log level', /^TOLLGATE_LOG_LEVEL must be one of fatal, error, warn, info, debug, silent/],
    ['bad database URL', /^TOLLGATE_DATABASE_URL: must start with postgres:\/\//],
    ['bad Redis URL', /^TOLLGATE_REDIS_URL: must start with redis:\/\/ or rediss:\/\//],
    ['bad environments', /^TOLLGATE_ENVIRONMENTS must list sandbox and\/or production/],
    ['bad public URL', /^TOLLGATE_PUBLIC_URL: must be an http:\/\/ or https:\/\/ URL/],
    ['bad batch size', /^TOLLGATE_DECISION_BATCH_MAX must be a whole number from 1 to 10000/],
    ['credentials in a base URL', /^ANTHROPIC_BASE_URL: must not carry credentials in the URL/],
  ]
  for (const [what, re] of expect) assert.ok(list.some((p) => re.test(p)), `${what}: expected a problem matching ${re}; got:\n${list.join('\n')}`)
  assert.equal(list.length, expect.length, `exactly one problem per mistake; got:\n${list.join('\n')}`)
  // A problem never repeats what was supplied: the value may be a secret.
  for (const value of ['99999', 'not-hex-secret-value', 'bogus-route-value', 'secret-db-password', 'secret-redis-host', 'pw-in-url', 'staging-mode', 'chatty-level']) {
    assert.equal(list.join('\n').includes(value), false, `the problems do not echo ${value}`)
  }
})

test('OPS-1: production mode refuses to start without a master key, and (D14) without TLS to a remote database or Redis', () => {
  assert.deepEqual(problems({ TOLLGATE_MODE: 'production', TOLLGATE_SMTP_URL: 'smtps://mail.example.com' }), ['TOLLGATE_MASTER_KEY is required when TOLLGATE_MODE=production — generate one with: openssl rand -hex 32'])
  // Invites would otherwise be logged with their links: production needs real mail.
  assert.deepEqual(problems({ TOLLGATE_MODE: 'production', TOLLGATE_MASTER_KEY: MASTER }), ['TOLLGATE_SMTP_URL is required when TOLLGATE_MODE=production: invites would otherwise be written to the log, links included.'])
  const remote = problems({ TOLLGATE_MODE: 'production', TOLLGATE_MASTER_KEY: MASTER, TOLLGATE_SMTP_URL: 'smtps://mail.example.com', TOLLGATE_DATABASE_URL: 'postgres://u:p@db.internal:5432/x', TOLLGATE_REDIS_URL: 'redis://cache.internal:6379' })
  assert.equal(remote.length, 2)
  assert.match(remote.join('\n'), /TOLLGATE_DATABASE_URL.*TLS.*sslmode/)
  assert.match(remote.join('\n'), /TOLLGATE_REDIS_URL.*TLS.*rediss:\/\//)
  ok({ TOLLGATE_MODE: 'production', TOLLGATE_MASTER_KEY: MASTER, TOLLGATE_SMTP_URL: 'smtps://mail.example.com', TOLLGATE_DATABASE_URL: 'postgres://u:p@db.internal:5432/x?sslmode=verify-full', TOLLGATE_REDIS_URL: 'rediss://cache.internal:6379' })
  ok({ TOLLGATE_MODE: 'development', TOLLGATE_DATABASE_URL: 'postgres://u:p@db.internal:5432/x' })
})

test('OPS-1: the loaded configuration is deeply frozen', () => {
  const c = ok({ ANTHROPIC_API_KEY: 'sk-ant-test' })
  // ES modules run in strict mode: writing to a frozen object throws.
  assert.throws(() => { (c as { mode: string }).mode = 'production' }, TypeError)
  assert.throws(() => { (c.server as { port: number }).port = 1 }, TypeError)
  assert.throws(() => { (c.server.environments as string[]).push('staging') }, TypeError)
  assert.throws(() => { (c.providers.routes as unknown[]).pop() }, TypeError)
  assert.throws(() => { (c.providers.routes[0] as { provider: string }).provider = 'local' }, TypeError)
  assert.throws(() => { (c.providers.upstreams.production as Record<string, unknown>)['openai'] = {} }, TypeError)
  assert.throws(() => { (c.providers.upstreams.production.anthropic as { baseUrl: string }).baseUrl = 'http://evil.test' }, TypeError)
  assert.throws(() => { delete (c as { log?: unknown }).log }, TypeError)
  assert.equal(c.server.port, 8787)
})

test('KEY-1 TRANSIT-4: secrets parse straight into Secret and print as [secret] everywhere', () => {
  const raw = {
    TOLLGATE_MASTER_KEY: MASTER, TOLLGATE_DATABASE_URL: 'postgres://user:db-pass-123@127.0.0.1/db', TOLLGATE_REDIS_URL: 'redis://:redis-pass-456@127.0.0.1:6379',
    ANTHROPIC_API_KEY: 'sk-ant-789', OPENAI_API_KEY: 'sk-openai-abc', GEMINI_API_KEY: 'gemini-def', TOLLGATE_SANDBOX_ANTHROPIC_API_KEY: 'sk-ant-sandbox-ghi',
  }
  const c = ok(raw)
  const secrets = [c.masterKey, c.storage.databaseUrl, c.cache.redisUrl, c.providers.upstreams.production.anthropic?.apiKey,
    c.providers.upstreams.production.openai?.apiKey, c.providers.upstreams.production.gemini?.apiKey, c.providers.upstreams.sandbox.anthropic?.apiKey]
  for (const s of secrets) assert.ok(s instanceof Secret)
  assert.equal(c.masterKey!.reveal(), MASTER)
  assert.equal(c.providers.upstreams.sandbox.anthropic!.apiKey!.reveal(), 'sk-ant-sandbox-ghi')
  const printed = [JSON.stringify(c), inspect(c, { depth: 10 }), String(c.masterKey), `${c.storage.databaseUrl}`]
  for (const text of printed) {
    for (const value of Object.values(raw)) assert.equal(text.includes(value), false, 'a secret leaked into a printed config')
    for (const part of ['db-pass-123', 'redis-pass-456']) assert.equal(text.includes(part), false)
  }
  assert.match(JSON.stringify(c), /"masterKey":"\[secret\]"/)
  assert.match(inspect(c, { depth: 10 }), /\[secret\]/)
  // Every setting whose unit is `secret` is one of these, documented as such.
  assert.deepEqual(settingDocs().filter((d) => d.unit === 'secret').map((d) => d.env).sort(),
    ['ANTHROPIC_API_KEY', 'GEMINI_API_KEY', 'OPENAI_API_KEY', 'TOLLGATE_BACKUP_KEY', 'TOLLGATE_BACKUP_S3_SECRET_ACCESS_KEY', 'TOLLGATE_DATABASE_URL', 'TOLLGATE_GOOGLE_CLIENT_SECRET', 'TOLLGATE_KEY_VAULT_AWS_SECRET_ACCESS_KEY', 'TOLLGATE_MASTER_KEY', 'TOLLGATE_MASTER_KEY_PREVIOUS', 'TOLLGATE_OPS_SECRET',
      'TOLLGATE_REDIS_URL', 'TOLLGATE_SANDBOX_ANTHROPIC_API_KEY', 'TOLLGATE_SANDBOX_GEMINI_API_KEY', 'TOLLGATE_SANDBOX_OPENAI_API_KEY', 'TOLLGATE_SMTP_URL'])
})

test('TRUST-1: every setting has a one-line doc, a default and a unique name', () => {
  const docs = settingDocs()
  assert.ok(docs.length >= 30)
  assert.equal(new Set(docs.map((d) => d.env)).size, docs.length, 'no setting is read twice')
  for (const d of docs) {
    assert.match(d.env, /^[A-Z][A-Z0-9_]+$/)
    assert.ok(d.doc.length > 10 && !d.doc.includes('\n'), `${d.env} has a one-line doc`)
    assert.ok(d.default.length > 0, `${d.env} has a default (or "(unset)")`)
  }
  // Units live in the names of numeric settings (`_MS`, `_S`, `_BYTES`…) where they are not obvious.
  for (const d of docs.filter((x) => x.unit === 'ms')) assert.match(d.env, /_MS$/)
  for (const d of docs.filter((x) => x.unit === 'seconds')) assert.match(d.env, /_S$/)
  for (const d of docs.filter((x) => x.unit === 'bytes')) assert.match(d.env, /_BYTES$/)
})

test('TRUST-1: every documented setting appears in the README configuration table, with its default', { skip: existsSync(README) ? false : 'README.md does not exist yet (the lead writes it); this check runs once it does' }, () => {
  const readme = readFileSync(README, 'utf8')
  const rows = new Map<string, string[]>()
  for (const line of readme.split('\n')) {
    const m = /^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|/.exec(line)
    if (m) rows.set(m[1]!, line.split('|').slice(1, -1).map((c) => c.trim()))
  }
  const docs = settingDocs()
  const missing = docs.filter((d) => !rows.has(d.env)).map((d) => d.env)
  assert.deepEqual(missing, [], `settings missing from README.md's configuration table (npx tollgate config prints them): ${missing.join(', ')}`)
  const known = new Set(docs.map((d) => d.env))
  const stale = [...rows.keys()].filter((env) => env.startsWith('TOLLGATE_') || env.endsWith('_API_KEY') || env.endsWith('_BASE_URL')).filter((env) => !known.has(env))
  assert.deepEqual(stale, [], `README.md documents settings the code does not read: ${stale.join(', ')}`)
  for (const d of docs) {
    const cell = rows.get(d.env)![1]!
    const code = /^`([^`]*)`$/.exec(cell)?.[1]
    if (d.default === '(unset)') assert.match(cell, /unset/i, `${d.env}: README default should say unset`)
    else if (code !== undefined) assert.equal(code, d.default, `${d.env}: README default matches the code`)
  }
})

test('OPS-1 TRANSIT-1: diagnosticFlags catches flags that write memory to disk, in execArgv and NODE_OPTIONS (D11)', () => {
  assert.deepEqual(diagnosticFlags([], undefined), [])
  assert.deepEqual(diagnosticFlags(['--import', 'tsx', '--enable-source-maps', '--max-old-space-size=4096'], '--no-warnings --tls-min-v1.2'), [])
  const cases: [readonly string[], string | undefined, string[]][] = [
    [['--inspect'], undefined, ['--inspect']],
    [['--inspect=127.0.0.1:9229'], undefined, ['--inspect']],
    [['--inspect-brk'], undefined, ['--inspect-brk']],
    [['--cpu-prof'], undefined, ['--cpu-prof']],
    [['--heap-prof'], undefined, ['--heap-prof']],
    [['--heapsnapshot-signal=SIGUSR2'], undefined, ['--heapsnapshot-signal']],
    [['--heapsnapshot-near-heap-limit=3'], undefined, ['--heapsnapshot-near-heap-limit']],
    [['--report-on-fatalerror'], undefined, ['--report-on-fatalerror']],
    [['--report-on-signal'], undefined, ['--report-on-signal']],
    [['--prof'], undefined, ['--prof']],
    [[], '--inspect', ['--inspect']],
    [[], '  --max-old-space-size=512   --heapsnapshot-signal=SIGUSR2 ', ['--heapsnapshot-signal']],
    [[], '--report-on-fatalerror --cpu-prof', ['--report-on-fatalerror', '--cpu-prof']],
    [['--inspect'], '--inspect --cpu-prof', ['--inspect', '--cpu-prof']],
  ]
  for (const [argv, nodeOptions, expected] of cases) {
    assert.deepEqual(diagnosticFlags(argv, nodeOptions), expected, `${argv.join(' ')} | NODE_OPTIONS=${nodeOptions}`)
  }
  // Look-alikes are not caught.
  assert.deepEqual(diagnosticFlags(['--inspector-not-a-flag', '--profile-ish', '--reportx'], undefined), [])
})

test('BACKUP-1: backup settings — the key is 64 hex and never the master key, the cron is checked, S3 credentials come in pairs; production needs a key for a schedule', () => {
  const c = ok({ TOLLGATE_MASTER_KEY: MASTER, TOLLGATE_BACKUP_KEY: 'b'.repeat(64), TOLLGATE_BACKUP_CRON: '15 3 * * 1-5', TOLLGATE_BACKUP_S3_BUCKET: 'bk', TOLLGATE_BACKUP_S3_ENDPOINT: 'http://127.0.0.1:9000' })
  assert.ok(c.backup.key instanceof Secret)
  assert.equal(c.backup.retentionDays, 30)
  assert.equal(c.backup.cron, '15 3 * * 1-5')
  assert.deepEqual({ ...c.backup.s3, secretAccessKey: undefined }, { bucket: 'bk', prefix: 'tollgate/', region: 'us-east-1', endpoint: 'http://127.0.0.1:9000', accessKeyId: undefined, secretAccessKey: undefined })
  const problems = (env: Record<string, string>) => {
    const r = loadConfig({ TOLLGATE_MASTER_KEY: MASTER, ...env })
    return r.ok ? [] : r.problems
  }
  assert.match(problems({ TOLLGATE_BACKUP_KEY: 'short' }).join('\n'), /TOLLGATE_BACKUP_KEY: must be 64 hex/)
  assert.match(problems({ TOLLGATE_BACKUP_KEY: MASTER.toUpperCase() }).join('\n'), /must not be the master key/)
  assert.match(problems({ TOLLGATE_BACKUP_CRON: '0 25 * * *' }).join('\n'), /TOLLGATE_BACKUP_CRON: the hour field/)
  assert.match(problems({ TOLLGATE_BACKUP_S3_ACCESS_KEY_ID: 'id' }).join('\n'), /set together/)
  assert.match(problems({ TOLLGATE_MODE: 'production', TOLLGATE_SMTP_URL: 'smtp://127.0.0.1', TOLLGATE_BACKUP_CRON: '0 3 * * *' }).join('\n'), /TOLLGATE_BACKUP_CRON needs TOLLGATE_BACKUP_KEY/)
})
