// AUDIT-3 with D9: hash chains plus signed checkpoints, verified offline with only public keys.
import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import SqliteDatabase from 'better-sqlite3-multiple-ciphers'
import { GENESIS, linkHash } from '../../src/audit/audit.ts'
import { AuditSigner, EXPORT_FORMAT, verifyExport, type Checkpoint } from '../../src/audit/checkpoints.ts'
import { runCli } from '../../src/cli/index.ts'
import type { AuditEventTable } from '../../src/storage/schema.ts'
import { ManualClock } from '../fakes/clock.ts'
import { orgWithKeys, startApp, TEST_MASTER_KEY } from '../helpers/app.ts'
import { prng } from '../helpers/prng.ts'

const FULL = process.env['TOLLGATE_TEST_LEVEL'] === 'full'


const newSigner = () => new AuditSigner(generateKeyPairSync('ed25519').privateKey)

/**
 * An export as the server would write it: `perChain` entries on each of `chains` chains, a
 * checkpoint every `every` entries, an idle checkpoint every 5 minutes of quiet, and the signing
 * key rotated half-way (checkpoints signed by two keys).
 */
function buildExport(chains: number, perChain: number, every: number) {
  const [k1, k2] = [newSigner(), newSigner()]
  const lines: string[] = [JSON.stringify({ type: 'header', format: EXPORT_FORMAT, exported_at: 0 })]
  const checkpoints: string[] = []
  const t0 = 1_750_000_000_000
  for (let c = 0; c < chains; c++) {
    const chain = `org_${c}`
    let prev = GENESIS
    let at = t0
    for (let seq = 1; seq <= perChain; seq++) {
      at += seq > 1 && (seq - 1) % 97 === 0 ? 600_000 : 1000 // after every 97th entry, an idle 10 minutes
      const row: Omit<AuditEventTable, 'hash'> = {
        chain_id: chain, seq, at, actor_type: 'user', actor_id: `ps_${seq % 13}`, action: ['key_created', 'policy_updated', 'member_removed'][seq % 3]!,
        target_type: 'api_key', target_id: `key_${seq}`, outcome: 'success', request_id: `req_${c}_${seq}`, prev_hash: prev,
      }
      const hash = linkHash(row)
      lines.push(JSON.stringify({ type: 'entry', ...row, hash }))
      const signer = seq < perChain / 2 ? k1 : k2
      if (seq % every === 0) checkpoints.push(JSON.stringify({ type: 'checkpoint', ...signer.sign({ chain_id: chain, seq, head_hash: hash, at }) }))
      // The timer's checkpoints during the idle 10 minutes that follow: the same head, twice.
      if (seq % 97 === 0) for (const idle of [290_000, 580_000]) checkpoints.push(JSON.stringify({ type: 'checkpoint', ...signer.sign({ chain_id: chain, seq, head_hash: hash, at: at + idle }) }))
      prev = hash
    }
  }
  // The exporter writes checkpoints per chain in time order.
  return { lines: [...lines, ...checkpoints], checkpoints, keys: [k1.publicKey, k2.publicKey] }
}

type Json = Record<string, any>
const parse = (l: string) => JSON.parse(l) as Json
const isEntry = (l: string) => l.startsWith('{"type":"entry"')

/** The tamperings of T81, each applied to a fresh copy of the export. */
const MUTATIONS: Record<string, (lines: string[], rnd: () => number, lastCheckpointSeq: Map<string, number>) => string[]> = {
  'edit a field': (lines, rnd) => {
    const i = pickEntry(lines, rnd)
    const e = parse(lines[i]!)
    const field = ['actor_id', 'action', 'target_id', 'outcome', 'at'][Math.floor(rnd() * 5)]!
    e[field] = field === 'at' ? e['at'] + 1 : `${e[field]}x`
    lines[i] = JSON.stringify(e)
    return lines
  },
  'delete a middle entry': (lines, rnd) => {
    lines.splice(pickEntry(lines, rnd), 1)
    return lines
  },
  'reorder two entries': (lines, rnd) => {
    const i = pickEntry(lines, rnd)
    const j = i + 1 < lines.length && isEntry(lines[i + 1]!) ? i + 1 : i - 1
    ;[lines[i], lines[j]] = [lines[j]!, lines[i]!]
    return lines
  },
  'insert a forged entry': (lines, rnd) => {
    const i = pickEntry(lines, rnd)
    const e = parse(lines[i]!)
    const forged: Json = { ...e, action: 'key_revoked', target_id: 'key_forged' }
    forged['hash'] = linkHash(forged as unknown as AuditEventTable)
    lines.splice(i + 1, 0, JSON.stringify(forged))
    return lines
  },
  'duplicate an entry': (lines, rnd) => {
    const i = pickEntry(lines, rnd)
    lines.splice(i, 0, lines[i]!)
    return lines
  },
  'edit, then recompute the whole chain without the signing key': (lines, rnd, last) => {
    // An edit covered by a checkpoint (after the last checkpoint, only a later one can tell).
    let i = pickEntry(lines, rnd)
    while (parse(lines[i]!)['seq'] > last.get(parse(lines[i]!)['chain_id'])!) i = pickEntry(lines, rnd)
    const edited = parse(lines[i]!)
    edited['outcome'] = 'denied'
    let prev = edited['prev_hash'] as string
    for (let k = i; k < lines.length && isEntry(lines[k]!); k++) {
      const e = k === i ? edited : parse(lines[k]!)
      if (e['chain_id'] !== edited['chain_id']) break
      e['prev_hash'] = prev
      const { type: _t, hash: _h, ...row } = e
      e['hash'] = linkHash(row as AuditEventTable)
      prev = e['hash']
      lines[k] = JSON.stringify(e)
    }
    return lines
  },
  'roll back to an older copy (entries and checkpoints)': (lines, rnd, last) => {
    // A copy taken before the auditor's latest checkpoint of some chain (what happened after the
    // newest checkpoint anyone kept cannot be told from a rollback: that is the checkpoint interval).
    const entries = lines.filter(isEntry).map(parse)
    const covered = Math.max(...entries.filter((e) => e['seq'] === last.get(e['chain_id'])).map((e) => e['at'] as number))
    let cut = covered
    while (cut >= covered) cut = entries[Math.floor(rnd() * entries.length)]!['at'] as number
    return lines.filter((l) => {
      const v = parse(l)
      return v['type'] === 'header' || (v['at'] as number) <= cut
    })
  },
  'move an entry to another org’s chain': (lines, rnd) => {
    const i = pickEntry(lines, rnd)
    const e = parse(lines[i]!)
    e['chain_id'] = e['chain_id'] === 'org_0' ? 'org_1' : 'org_0'
    lines[i] = JSON.stringify(e)
    return lines
  },
  'truncate a chain’s tail before its last checkpoint': (lines, rnd, last) => {
    const chain = `org_${Math.floor(rnd() * 3)}`
    const from = 1 + Math.floor(rnd() * (last.get(chain)! - 1))
    return lines.filter((l) => !(isEntry(l) && parse(l)['chain_id'] === chain && parse(l)['seq'] > from))
  },
  'forge a checkpoint (move its seq or head)': (lines, rnd) => {
    const cps = lines.map((l, i) => [l, i] as const).filter(([l]) => l.startsWith('{"type":"checkpoint"'))
    const [l, i] = cps[Math.floor(rnd() * cps.length)]!
    const c = parse(l)
    if (rnd() < 0.5) c['seq'] = c['seq'] + 1
    else c['head_hash'] = GENESIS
    lines[i] = JSON.stringify(c)
    return lines
  },
  'drop the checkpoints, then truncate': (lines, rnd, last) => {
    const chain = `org_${Math.floor(rnd() * 3)}`
    const from = Math.floor(rnd() * last.get(chain)!)
    return lines.filter((l) => {
      const v = parse(l)
      return !(v['chain_id'] === chain && (v['type'] === 'checkpoint' || v['seq'] > from))
    })
  },
}

function pickEntry(lines: readonly string[], rnd: () => number): number {
  for (;;) {
    const i = 1 + Math.floor(rnd() * (lines.length - 1))
    if (isEntry(lines[i]!)) return i
  }
}

test('AUDIT-3 T81: 1,000 seeded tamperings of a 10,500-entry export over 3 orgs — edits, deletions, reorders, forged and duplicated entries, a chain recomputed without the key, rollbacks, moves between orgs, truncations, forged and dropped checkpoints — are all detected offline; 0 false alarms', () => {
  const seed = process.env['TOLLGATE_TEST_SEED'] ? Number(process.env['TOLLGATE_TEST_SEED']) : Math.floor(Math.random() * 2 ** 31)
  const rnd = prng(seed)
  const { lines, checkpoints, keys } = buildExport(3, 3500, 1000)
  const last = new Map<string, number>()
  for (const c of checkpoints.map(parse)) last.set(c['chain_id'], Math.max(last.get(c['chain_id']) ?? 0, c['seq']))

  // Clean exports verify (and the checkpoint cadence is within configuration).
  for (let i = 0; i < (FULL ? 100 : 20); i++) {
    const r = verifyExport(lines, keys, checkpoints)
    assert.equal(r.ok, true, r.problem)
  }
  const clean = verifyExport(lines, keys, checkpoints)
  assert.deepEqual([clean.ok, clean.chains, clean.entries], [true, 3, 10_500], clean.problem)
  const byChain = new Map<string, Json[]>()
  for (const e of lines.filter(isEntry).map(parse)) byChain.set(e['chain_id'], [...(byChain.get(e['chain_id']) ?? []), e])
  for (const [chain, entries] of byChain) {
    const cps = checkpoints.map(parse).filter((c) => c['chain_id'] === chain).sort((a, b) => a['seq'] - b['seq'])
    let covered = 0
    for (const c of cps) {
      assert.ok(c['seq'] - covered <= 1000, `${chain}: at most 1,000 entries between checkpoints`)
      covered = c['seq']
    }
    assert.ok(entries.length - covered < 1000)
  }
  assert.ok(checkpoints.map(parse).some((c, i, all) => i > 0 && all[i - 1]!['seq'] === c['seq']), 'idle periods have checkpoints of an unchanged head')

  // Positive control on the verifier's inputs: without the trusted checkpoints a rollback is
  // consistent in itself (that is why auditors keep exported checkpoints elsewhere).
  const rolled = MUTATIONS['roll back to an older copy (entries and checkpoints)']!([...lines], prng(1), last)
  assert.equal(verifyExport(rolled, keys).ok, true, 'control: a rollback alone verifies without trusted checkpoints')
  assert.equal(verifyExport(rolled, keys, checkpoints).ok, false, 'and is caught with them')
  assert.equal(verifyExport(lines, [newSigner().publicKey], checkpoints).ok, false, 'control: an unknown key is refused')

  const names = Object.keys(MUTATIONS)
  const missed: string[] = []
  const counts = new Map<string, number>()
  const total = FULL ? 10_000 : 1000
  for (let n = 0; n < total; n++) {
    const name = names[n % names.length]!
    const mutated = MUTATIONS[name]!([...lines], rnd, last)
    counts.set(name, (counts.get(name) ?? 0) + 1)
    const r = verifyExport(mutated, keys, checkpoints)
    if (r.ok) missed.push(`#${n} ${name}`)
  }
  for (const [name, c] of counts) process.stdout.write(`# T81 ${name}: ${c}\n`)
  process.stdout.write(`# T81 seed ${seed}: ${total - missed.length}/${total} tamperings detected\n`)
  assert.deepEqual(missed, [], `undetected tamperings (TOLLGATE_TEST_SEED=${seed})`)

  // 10⁵ entries: how long offline verification takes (reported; speed belongs to the benchmark).
  const big = buildExport(1, 100_000, 1000)
  const t = performance.now()
  assert.equal(verifyExport(big.lines, big.keys, big.checkpoints).ok, true)
  process.stdout.write(`# T81 100,000 entries + ${big.checkpoints.length} checkpoints verified in ${Math.round(performance.now() - t)} ms\n`)
})

async function cliWorld(t: TestContext, extra: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-audit-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const env = { TOLLGATE_DATA_DIR: dir, TOLLGATE_MASTER_KEY: TEST_MASTER_KEY, TOLLGATE_LOG_LEVEL: 'silent', TOLLGATE_AUDIT_CHECKPOINT_EVENTS: '5', ...extra }
  const run = async (...argv: string[]) => {
    const out: string[] = []
    const err: string[] = []
    const code = await runCli(argv, { env, execArgv: [], cwd: dir }, { out: (s) => out.push(s), err: (s) => err.push(s) })
    return { code, out: out.join('\n'), err: err.join('\n') }
  }
  return { dir, run }
}

test('AUDIT-3 D9: the CLI writes a checkpoint every N entries in the same transaction; `audit export` + `audit verify --export --public-key` verify offline; a database rewrite without the key is caught; a rotated key keeps old checkpoints verifiable', async (t) => {
  const { dir, run } = await cliWorld(t)
  assert.equal((await run('org', 'create', 'acme')).code, 0)
  for (let i = 0; i < 11; i++) assert.equal((await run('keys', 'create', '--org', 'acme', '--env', 'sandbox')).code, 0)
  const keyFile = join(dir, 'audit-signing-key.pem')
  assert.equal(statSync(keyFile).mode & 0o777, 0o600, 'the signing key file is private')
  const pub = await run('audit', 'public-key')
  assert.match(pub.out, /# key id [0-9a-f]{16}\n-----BEGIN PUBLIC KEY-----/)
  writeFileSync(join(dir, 'k1.pub.pem'), pub.out.split('\n').slice(1).join('\n'))

  assert.equal((await run('audit', 'export', '--out', 'export.jsonl')).code, 0)
  assert.equal((await run('audit', 'export', '--checkpoints-only', '--out', 'trusted.jsonl')).code, 0)
  const exported = readFileSync(join(dir, 'export.jsonl'), 'utf8').trim().split('\n')
  const cps = exported.filter((l) => l.includes('"type":"checkpoint"')).map(parse) as unknown as Checkpoint[]
  assert.equal(exported.filter(isEntry).length, 12, 'org created + 11 keys')
  assert.deepEqual(cps.map((c) => c.seq), [5, 10], 'a checkpoint at every 5th entry, written with the entry')
  assert.ok(!readFileSync(join(dir, 'trusted.jsonl'), 'utf8').includes('"type":"entry"'))

  const ok = await run('audit', 'verify', '--export', 'export.jsonl', '--public-key', 'k1.pub.pem', '--checkpoints', 'trusted.jsonl')
  assert.equal(ok.code, 0, ok.out)
  assert.match(ok.out, /^ok: 1 chain\(s\), 12 entries, 2 signed checkpoint\(s\)/)
  assert.equal((await run('audit', 'verify', '--export', 'export.jsonl')).code, 2, 'a public key is required')

  // Someone with write access to the database edits entry 3 and recomputes the chain: the
  // database-only walk is fooled; the signed checkpoints are not.
  const db = new SqliteDatabase(join(dir, 'tollgate.db'))
  const rows = db.prepare('select * from audit_event order by seq').all() as AuditEventTable[]
  let prev = GENESIS
  for (const r of rows) {
    const row = { ...r, prev_hash: prev, outcome: r.seq === 3 ? 'failure' : r.outcome }
    const { hash: _h, ...unhashed } = row
    const hash = linkHash(unhashed)
    db.prepare('update audit_event set outcome = ?, prev_hash = ?, hash = ? where chain_id = ? and seq = ?').run(row.outcome, prev, hash, r.chain_id, r.seq)
    prev = hash
  }
  db.close()
  assert.equal((await run('audit', 'verify')).code, 0, 'control: the rewritten chain is consistent in itself')
  assert.equal((await run('audit', 'export', '--out', 'rewritten.jsonl')).code, 0)
  const caught = await run('audit', 'verify', '--export', 'rewritten.jsonl', '--public-key', 'k1.pub.pem')
  assert.equal(caught.code, 1)
  assert.match(caught.out, /seq 5: the entry's hash differs from the signed head/)

  // Rotation: new checkpoints use the new key; both public keys verify a fresh export of a clean org.
  const rotated = await run('audit', 'rotate-key')
  assert.equal(rotated.code, 0)
  const retiredFile = /public key is in (\S+)/.exec(rotated.out)![1]!
  assert.notEqual(readFileSync(keyFile, 'utf8'), '', 'a new key is in place')
  assert.equal((await run('org', 'create', 'beta')).code, 0)
  for (let i = 0; i < 5; i++) assert.equal((await run('keys', 'create', '--org', 'beta', '--env', 'sandbox')).code, 0)
  writeFileSync(join(dir, 'k2.pub.pem'), (await run('audit', 'public-key')).out.split('\n').slice(1).join('\n'))
  assert.equal((await run('audit', 'export', '--org', 'beta', '--out', 'beta.jsonl')).code, 0)
  const beta = await run('audit', 'verify', '--export', 'beta.jsonl', '--public-key', 'k2.pub.pem', '--json')
  assert.equal(beta.code, 0, beta.out)
  assert.equal(JSON.parse(beta.out).checkpoints, 1)
  const old = await run('audit', 'verify', '--export', 'export.jsonl', '--public-key', retiredFile, 'k2.pub.pem')
  assert.equal(old.code, 0, `old checkpoints verify with the retired public key: ${old.out}`)
  assert.equal((await run('audit', 'verify', '--export', 'export.jsonl', '--public-key', 'k2.pub.pem')).code, 1, 'but not with the new key alone')
})

test('AUDIT-3 D9: the timer signs every chain at least every interval — empty checkpoints of an unchanged head when idle', async (t) => {
  const clock = new ManualClock()
  const tg = (await startApp(t, { clock }))!
  const { org } = await orgWithKeys(tg.deps)
  const count = async () => (await tg.deps.db.db.selectFrom('audit_checkpoint').select(['seq', 'at']).where('chain_id', '=', org.id).orderBy('at').execute()).map((r) => [Number(r.seq), Number(r.at)])
  assert.equal(await tg.deps.checkpoints.tick(), 1, 'a chain without a checkpoint gets one at once')
  const first = await count()
  assert.equal(first.length, 1)
  assert.equal(await tg.deps.checkpoints.tick(), 0, 'not again within the interval')
  clock.advance(300_000)
  assert.equal(await tg.deps.checkpoints.tick(), 1)
  clock.advance(300_000)
  await tg.deps.checkpoints.tick()
  const all = await count()
  assert.equal(all.length, 3)
  assert.ok(all.every(([seq]) => seq === first[0]![0]), 'idle: the same head, signed again')
  for (let i = 1; i < all.length; i++) assert.ok(all[i]![1]! - all[i - 1]![1]! <= 300_000, 'never more than 5 minutes apart')
  const job = tg.deps.jobs.jobs.find((j) => j.name === 'audit_checkpoints')!
  assert.ok(job.everyMs <= 30_000, 'the job ticks at a tenth of the interval')
})
