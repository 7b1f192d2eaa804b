// The `tollgate` command, run in-process (runCli) against a temp data dir, exactly as main.ts
// runs it: the same config loading, the same stores, the same exit codes.
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'
import { runCli } from '../../src/cli/index.ts'
import { sha256Hex } from '../../src/core/crypto.ts'
import { buildStores } from '../../src/deps.ts'
import { silentLogger } from '../../src/observe/log.ts'
import { TEST_MASTER_KEY, testConfig } from '../helpers/app.ts'

/** The identity a verified key carries (other fields, such as a scope, may be added beside it). */
function who(v: { id: string; orgId: string; environment: string; userId: string | null } | undefined) {
  return v && { id: v.id, orgId: v.orgId, environment: v.environment, userId: v.userId }
}

interface Run {
  readonly code: number
  readonly out: string
  readonly err: string
}

interface Cli {
  readonly dir: string
  readonly env: Record<string, string>
  run(...argv: string[]): Promise<Run>
  /** Runs a command that must succeed and returns its stdout. */
  ok(...argv: string[]): Promise<string>
}

function cliWorld(t: TestContext, extraEnv: Record<string, string> = {}): Cli {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-cli-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const env = { TOLLGATE_DATA_DIR: dir, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_LOG_LEVEL: 'silent', ...extraEnv }
  const run = async (...argv: string[]): Promise<Run> => {
    const out: string[] = []
    const err: string[] = []
    const code = await runCli(argv, { env, execArgv: [], cwd: dir }, { out: (s) => out.push(s), err: (s) => err.push(s) })
    return { code, out: out.join('\n'), err: err.join('\n') }
  }
  return {
    dir, env, run,
    async ok(...argv) {
      const r = await run(...argv)
      assert.equal(r.code, 0, `tollgate ${argv.join(' ')} failed (${r.code}): ${r.err}`)
      return r.out
    },
  }
}

/** Reads rows straight from the SQLite file, as someone with access to the disk would. */
function rows<T>(dir: string, query: string, ...params: unknown[]): T[] {
  const db = new SqliteDatabase(join(dir, 'tollgate.db'), { readonly: true })
  try {
    return db.prepare(query).all(...params) as T[]
  } finally {
    db.close()
  }
}

/** Every byte Tollgate keeps in the data dir (database, WAL, master key file). */
function dataDirBytes(dir: string): Buffer {
  return Buffer.concat(readdirSync(dir).map((f) => readFileSync(join(dir, f))))
}

async function withStores<T>(cli: Cli, fn: (s: Awaited<ReturnType<typeof buildStores>>) => Promise<T>): Promise<T> {
  const s = await buildStores(testConfig(cli.env), { log: silentLogger })
  try {
    return await fn(s)
  } finally {
    await s.close()
  }
}

test('AUDIT-1 OPS-1: org create and list; a duplicate slug exits 1, a bad slug or unknown command exits 2', async (t) => {
  const cli = cliWorld(t)
  assert.match(await cli.ok('org', 'create', 'acme'), /^Created org acme \([0-9A-Za-z]{17}\)\.$/)
  const created = JSON.parse(await cli.ok('org', 'create', 'globex', '--json')) as { id: string; slug: string }
  assert.equal(created.slug, 'globex')
  const listed = JSON.parse(await cli.ok('org', 'list', '--json')) as { id: string; slug: string }[]
  assert.deepEqual(listed.map((o) => o.slug).sort(), ['acme', 'globex'])
  assert.ok(listed.some((o) => o.id === created.id))

  const dup = await cli.run('org', 'create', 'acme')
  assert.equal(dup.code, 1)
  assert.match(dup.err, /already exists/)
  for (const bad of ['Bad_Slug', 'a', '-leading-dash', 'UPPER', 'x'.repeat(64)]) {
    const r = await cli.run('org', 'create', bad)
    assert.equal(r.code, 2, `slug ${bad}`)
    // (A leading dash is read as an unknown option: a usage error all the same.)
    assert.match(r.err, bad.startsWith('-') ? /unknown option/ : /slug is 2-63 characters/)
  }
  assert.equal((await cli.run('org', 'frobnicate')).code, 2)
  assert.equal((await cli.run('keys', 'create', '--org', 'acme')).code, 2, 'missing --env')
  assert.equal((await cli.run('keys', 'create', '--org', 'acme', '--env', 'staging')).code, 2, 'unknown environment')
  assert.deepEqual(rows<{ n: number }>(cli.dir, 'select count(*) as n from org'), [{ n: 2 }], 'the failed commands created nothing')
})

test('KEY-1 KEY-2: keys create prints a tg_test_ key exactly once; keys list never shows it; the database holds only its SHA-256', async (t) => {
  const cli = cliWorld(t)
  await cli.ok('org', 'create', 'acme')
  const created = JSON.parse(await cli.ok('keys', 'create', '--org', 'acme', '--env', 'sandbox', '--json')) as { id: string; key: string; org: string; environment: string }
  assert.match(created.key, /^tg_test_/)
  assert.equal(created.environment, 'sandbox')
  assert.equal(created.org, 'acme')
  const text = await cli.ok('keys', 'create', '--org', 'acme', '--env', 'production', '--label', 'ci runner')
  const live = /tg_live_\S+/.exec(text)?.[0]
  assert.ok(live, 'text mode prints the key')
  assert.equal(text.split(live).length - 1, 1, 'the key appears once in the output')
  assert.match(text, /shown only this once/)

  const keys = [created.key, live]
  const secrets = keys.map((k) => k.slice(-39)) // 33 secret characters + 6 checksum characters
  for (const args of [['keys', 'list'], ['keys', 'list', '--json'], ['keys', 'list', '--org', 'acme', '--json'], ['org', 'list', '--json']]) {
    const out = await cli.ok(...args)
    for (const [i, k] of keys.entries()) {
      assert.equal(out.includes(k), false, `${args.join(' ')} shows no key`)
      assert.equal(out.includes(secrets[i]!), false, `${args.join(' ')} shows no secret part`)
      assert.equal(out.includes(sha256Hex(k)), false, `${args.join(' ')} shows no hash`)
    }
  }
  const listed = JSON.parse(await cli.ok('keys', 'list', '--json')) as { id: string; environment: string; label: string | null; state: string }[]
  assert.deepEqual(listed.map((k) => [k.environment, k.label, k.state]).sort(), [['production', 'ci runner', 'active'], ['sandbox', null, 'active']])

  // The api_key rows hold SHA-256 of the key; no byte of the data dir holds the key or its secret.
  const stored = rows<{ id: string; secret_hash: string }>(cli.dir, 'select id, secret_hash from api_key order by created_at')
  assert.deepEqual(stored.map((r) => r.secret_hash).sort(), keys.map((k) => sha256Hex(k)).sort())
  const disk = dataDirBytes(cli.dir)
  assert.ok(disk.includes(sha256Hex(created.key)), 'positive control: the grep finds what is stored (the hash)')
  for (const [i, k] of keys.entries()) {
    assert.equal(disk.includes(k), false, 'the full key is in no file of the data dir')
    assert.equal(disk.includes(secrets[i]!), false, 'the secret part is in no file of the data dir')
    assert.equal(disk.includes(secrets[i]!.slice(0, 16)), false, 'no prefix of the secret part either')
  }

  // The printed key works, in its own environment.
  await withStores(cli, async (s) => {
    assert.deepEqual(who(await s.keys.verify(created.key)), { id: created.id, orgId: (await s.orgs.bySlug('acme'))!.id, environment: 'sandbox', userId: null })
    assert.equal((await s.keys.verify(live))?.environment, 'production')
  })

  const missing = await cli.run('keys', 'create', '--org', 'nope', '--env', 'sandbox')
  assert.equal(missing.code, 1)
  assert.match(missing.err, /No org with the slug nope/)
  assert.equal((await cli.run('keys', 'create', '--org', 'acme', '--env', 'sandbox', '--label', 'bad/label')).code, 2)
})

test('KEY-3: keys revoke refuses the key at once; keys rotate --grace 0 replaces it at once; the default grace keeps the old key working', async (t) => {
  const cli = cliWorld(t)
  await cli.ok('org', 'create', 'acme')
  const mk = async () => JSON.parse(await cli.ok('keys', 'create', '--org', 'acme', '--env', 'production', '--json')) as { id: string; key: string }
  const a = await mk()
  const b = await mk()
  const c = await mk()

  assert.equal(await cli.ok('keys', 'revoke', a.id), `Revoked key ${a.id}.`)
  const again = await cli.run('keys', 'revoke', a.id)
  assert.equal(again.code, 1, 'revoking a revoked key fails')
  assert.equal((await cli.run('keys', 'revoke', 'no-such-key')).code, 1)

  const rotated = JSON.parse(await cli.ok('keys', 'rotate', b.id, '--grace', '0', '--json')) as { id: string; key: string; replaces: string; grace_seconds: number }
  assert.equal(rotated.replaces, b.id)
  assert.equal(rotated.grace_seconds, 0)
  assert.match(rotated.key, /^tg_live_/)
  assert.equal((await cli.run('keys', 'rotate', b.id, '--grace', '0')).code, 1, 'a revoked key cannot be rotated')
  assert.equal((await cli.run('keys', 'rotate', c.id, '--grace', 'soon')).code, 2)
  assert.equal((await cli.run('keys', 'rotate', c.id, '--grace', '-1')).code, 2)

  const graceful = JSON.parse(await cli.ok('keys', 'rotate', c.id, '--json')) as { id: string; key: string; grace_seconds: number }
  assert.equal(graceful.grace_seconds, 3600)

  await withStores(cli, async (s) => {
    assert.equal(await s.keys.verify(a.key), undefined, 'revoked')
    assert.equal(await s.keys.verify(b.key), undefined, 'rotated with grace 0')
    assert.ok(await s.keys.verify(rotated.key), 'its replacement works')
    assert.ok(await s.keys.verify(c.key), 'rotated with the default grace: still works')
    assert.ok(await s.keys.verify(graceful.key))
  })
  const states = Object.fromEntries((JSON.parse(await cli.ok('keys', 'list', '--json')) as { id: string; state: string }[]).map((k) => [k.id, k.state]))
  assert.equal(states[a.id], 'revoked')
  assert.equal(states[b.id], 'revoked')
  assert.match(states[c.id]!, /^expires \d{4}-/)
  assert.equal(states[rotated.id], 'active')
})

test('AUDIT-1: every change made through the CLI is audited with actor_type operator', async (t) => {
  const cli = cliWorld(t)
  await cli.ok('org', 'create', 'acme')
  await cli.ok('org', 'create', 'globex')
  const k1 = JSON.parse(await cli.ok('keys', 'create', '--org', 'acme', '--env', 'sandbox', '--json')) as { id: string }
  const k2 = JSON.parse(await cli.ok('keys', 'create', '--org', 'globex', '--env', 'production', '--json')) as { id: string }
  await cli.ok('keys', 'revoke', k1.id)
  const k3 = JSON.parse(await cli.ok('keys', 'rotate', k2.id, '--grace', '0', '--json')) as { id: string }
  // Reads and failed commands change nothing and add no entry.
  await cli.ok('keys', 'list')
  await cli.ok('org', 'list')
  await cli.ok('audit', 'verify')
  await cli.run('org', 'create', 'acme')

  const events = rows<{ chain_id: string; seq: number; actor_type: string; actor_id: string | null; action: string; target_id: string; outcome: string }>(
    cli.dir, 'select chain_id, seq, actor_type, actor_id, action, target_id, outcome from audit_event order by chain_id, seq')
  const orgs = Object.fromEntries(rows<{ id: string; slug: string }>(cli.dir, 'select id, slug from org').map((o) => [o.slug, o.id]))
  assert.deepEqual(events.map((e) => [e.chain_id, e.action, e.target_id]).sort(), [
    [orgs['acme'], 'org_created', orgs['acme']],
    [orgs['acme'], 'authn_token_created', k1.id],
    [orgs['acme'], 'authn_token_revoked', k1.id],
    [orgs['globex'], 'org_created', orgs['globex']],
    [orgs['globex'], 'authn_token_created', k2.id],
    [orgs['globex'], 'authn_token_created', k3.id],
    [orgs['globex'], 'authn_token_rotated', k2.id],
  ].sort())
  for (const e of events) {
    assert.equal(e.actor_type, 'operator')
    assert.equal(e.outcome, 'success')
  }
})

test('AUDIT-3: audit verify exits 0 on an intact log and 1 naming the seq after the database is tampered with', async (t) => {
  const cli = cliWorld(t)
  assert.equal(await cli.ok('audit', 'verify'), 'The audit log is empty.')
  await cli.ok('org', 'create', 'acme')
  for (let i = 0; i < 3; i++) await cli.ok('keys', 'create', '--org', 'acme', '--env', 'sandbox')
  const orgId = rows<{ id: string }>(cli.dir, 'select id from org')[0]!.id
  assert.equal(await cli.ok('audit', 'verify'), `${orgId}: ok (4 entries)`)
  assert.deepEqual(JSON.parse(await cli.ok('audit', 'verify', '--json')), [{ chainId: orgId, entries: 4 }])

  // Someone with write access to the file edits entry 3.
  const db = new SqliteDatabase(join(cli.dir, 'tollgate.db'))
  db.prepare("update audit_event set action = 'authn_token_revoked' where seq = 3").run()
  db.close()
  const edited = await cli.run('audit', 'verify')
  assert.equal(edited.code, 1)
  assert.match(edited.out, new RegExp(`^${orgId}: BROKEN at seq 3: `))
  const json = await cli.run('audit', 'verify', '--json')
  assert.equal(json.code, 1)
  assert.equal((JSON.parse(json.out) as { broken?: { seq: number } }[])[0]!.broken?.seq, 3)

  // …or deletes an entry: the gap is named too.
  const db2 = new SqliteDatabase(join(cli.dir, 'tollgate.db'))
  db2.prepare('delete from audit_event where seq = 2').run()
  db2.close()
  const removed = await cli.run('audit', 'verify')
  assert.equal(removed.code, 1)
  assert.match(removed.out, /BROKEN at seq 3: expected seq 2/)
})

test('OPS-1: configuration problems exit 78 and list every problem, before touching the data dir', async (t) => {
  const cli = cliWorld(t, { TOLLGATE_PORT: 'eighty', TOLLGATE_MASTER_KEY: 'too-short', TOLLGATE_MODEL_ROUTES: 'nonsense', TOLLGATE_TLS_KEY: 'key.pem' })
  for (const argv of [['org', 'create', 'acme'], ['keys', 'list'], ['audit', 'verify'], ['migrate'], ['serve']]) {
    const r = await cli.run(...argv)
    assert.equal(r.code, 78, `${argv.join(' ')} exits 78`)
    assert.match(r.err, /the configuration has 4 problem\(s\)/)
    for (const re of [/TOLLGATE_PORT must be a whole number/, /TOLLGATE_MASTER_KEY: .*openssl rand -hex 32/, /TOLLGATE_MODEL_ROUTES entry #1/, /TOLLGATE_TLS_CERT and TOLLGATE_TLS_KEY must be set together/]) {
      assert.match(r.err, re)
    }
    assert.equal(r.err.includes('too-short'), false, 'the bad secret is not echoed')
    assert.equal(r.out, '')
  }
  assert.equal(existsSync(join(cli.dir, 'tollgate.db')), false, 'nothing was opened or created')
  assert.equal(existsSync(join(cli.dir, 'master.key')), false)
})

test('OPS-1: config prints every setting; migrate reports the schema up to date', async (t) => {
  const cli = cliWorld(t)
  const docs = JSON.parse(await cli.ok('config', '--json')) as { env: string }[]
  assert.ok(docs.some((d) => d.env === 'TOLLGATE_MASTER_KEY'))
  const text = await cli.ok('config')
  for (const d of docs) assert.ok(text.includes(d.env))
  assert.equal(text.includes(TEST_MASTER_KEY), false, 'config lists settings, never their values')
  await cli.ok('migrate')
  assert.equal(await cli.ok('migrate'), 'The schema is up to date.')
})

test('CRYPTO-2: master key rotation through the CLI — NEW + TOLLGATE_MASTER_KEY_PREVIOUS serves, `master-key rewrap` moves every key, then NEW alone opens everything and the old key nothing', async (t) => {
  const NEW = 'c'.repeat(64)
  const cli = cliWorld(t)
  await cli.ok('org', 'create', 'acme')
  const created = JSON.parse(await cli.ok('keys', 'create', '--org', 'acme', '--env', 'sandbox', '--json')) as { id: string; key: string }
  const pseudonymUnder = (env: Record<string, string>) => withStores({ ...cli, env }, async (s) => {
    const org = (await s.orgs.list()).find((o) => o.slug === 'acme')!
    return s.keyring.pseudonym(org.id, 'user-1')
  })
  const before = await pseudonymUnder(cli.env)

  // Positive control: NEW alone cannot open keys wrapped under the old key.
  const newOnly = { ...cli.env, TOLLGATE_MASTER_KEY: NEW }
  await assert.rejects(pseudonymUnder(newOnly), /TOLLGATE_MASTER_KEY_PREVIOUS/)
  assert.match(await cli.ok('master-key', 'rewrap'), /^Re-wrapped 0 org key\(s\) and 0 instance key\(s\)/, 'nothing to do under the same key')

  const rotating = { ...cli.env, TOLLGATE_MASTER_KEY: NEW, TOLLGATE_MASTER_KEY_PREVIOUS: TEST_MASTER_KEY }
  const cli2: Cli = { ...cli, env: rotating, run: (...argv) => runCliWith(rotating, cli.dir, argv), ok: async (...argv) => { const r = await runCliWith(rotating, cli.dir, argv); assert.equal(r.code, 0, r.err); return r.out } }
  assert.equal(await pseudonymUnder(rotating), before)
  const moved = JSON.parse(await cli2.ok('master-key', 'rewrap', '--json')) as { org_keys: number; instance_keys: number; remaining: number; master_key_id: string }
  assert.ok(moved.org_keys >= 2, `org keys moved: ${moved.org_keys}`)
  assert.equal(moved.remaining, 0)
  assert.equal(moved.master_key_id, sha256Hex(Buffer.from(NEW, 'hex')).slice(0, 16))
  assert.equal(await pseudonymUnder(newOnly), before, 'NEW alone now opens every key; derived values unchanged')
  await assert.rejects(pseudonymUnder(cli.env), 'the old master key opens nothing any more')
  // The API key (hashed, not wrapped) still verifies; the rewrap is audited.
  assert.ok(await withStores({ ...cli, env: newOnly }, (s) => s.keys.verify(created.key)))
  const audited = rows<{ actor_type: string; target_id: string }>(cli.dir, "select actor_type, target_id from audit_event where action = 'master_key_rewrapped'")
  assert.deepEqual(audited.at(-1), { actor_type: 'operator', target_id: moved.master_key_id })
})

async function runCliWith(env: Record<string, string>, dir: string, argv: readonly string[]): Promise<Run> {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { env, execArgv: [], cwd: dir }, { out: (s) => out.push(s), err: (s) => err.push(s) })
  return { code, out: out.join('\n'), err: err.join('\n') }
}
