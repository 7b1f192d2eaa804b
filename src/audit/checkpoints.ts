import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Kysely, Transaction } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { randomAlnum } from '../core/crypto.ts'
import type { AuditCheckpointTable, AuditEventTable, DB } from '../storage/schema.ts'
import { GENESIS, linkHash } from './audit.ts'

/**
 * Signed audit checkpoints (AUDIT-3, D9). The hash chain alone is tamper-evident only against
 * someone who cannot recompute it; whoever can write the database can. So every chain's head
 * (org, seq, head hash, time) is signed with an Ed25519 key that lives outside the database —
 * every `everyEvents` entries (in the appending transaction) and at least every `everyMs`, with
 * empty checkpoints when a chain is idle. An auditor verifies an export offline with nothing but
 * the public key(s) and checkpoints exported earlier (which also catches a rollback).
 */

export const CHECKPOINT_CONTEXT = 'tollgate-audit-checkpoint/1'

export interface Checkpoint {
  readonly chain_id: string
  readonly seq: number
  readonly head_hash: string
  readonly at: number
  readonly key_id: string
  /** Ed25519 signature, base64. */
  readonly signature: string
}

/** The exact bytes a checkpoint signs. */
export function checkpointMessage(c: Pick<Checkpoint, 'chain_id' | 'seq' | 'head_hash' | 'at'>): Buffer {
  return Buffer.from(JSON.stringify([CHECKPOINT_CONTEXT, c.chain_id, c.seq, c.head_hash, c.at]), 'utf8')
}

/** A public key's id: the first 16 hex digits of SHA-256 over its SPKI DER. */
export function keyId(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16)
}

/** The instance's checkpoint signing key: an Ed25519 private key in a PEM file (0600), created on first use. */
export class AuditSigner {
  readonly keyId: string
  readonly #private: KeyObject
  readonly publicKey: KeyObject

  constructor(privateKey: KeyObject) {
    this.#private = privateKey
    this.publicKey = createPublicKey(privateKey)
    if (this.publicKey.asymmetricKeyType !== 'ed25519') throw new Error('the audit signing key must be an Ed25519 key')
    this.keyId = keyId(this.publicKey)
  }

  /** Loads the key file, or creates it (0600) when it does not exist. */
  static fromFile(path: string): AuditSigner {
    if (!existsSync(path)) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
      const { privateKey } = generateKeyPairSync('ed25519')
      writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' })
    }
    return new AuditSigner(createPrivateKey(readFileSync(path, 'utf8')))
  }

  /**
   * Rotation: a new key replaces the file; the old public key is kept beside it as
   * `<path>.<key id>.pub.pem` (old checkpoints still verify with it). The old private key is gone.
   */
  static rotate(path: string): { retired: { keyId: string; publicPem: string; file: string }; current: AuditSigner } {
    const old = AuditSigner.fromFile(path)
    const file = `${path}.${old.keyId}.pub.pem`
    writeFileSync(file, old.publicPem(), { mode: 0o644 })
    const { privateKey } = generateKeyPairSync('ed25519')
    const tmp = `${path}.new-${randomAlnum(8)}`
    writeFileSync(tmp, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' })
    renameSync(tmp, path)
    return { retired: { keyId: old.keyId, publicPem: old.publicPem(), file }, current: new AuditSigner(privateKey) }
  }

  publicPem(): string {
    return this.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }

  sign(c: Pick<Checkpoint, 'chain_id' | 'seq' | 'head_hash' | 'at'>): Checkpoint {
    return { ...c, key_id: this.keyId, signature: sign(null, checkpointMessage(c), this.#private).toString('base64') }
  }
}

export interface CheckpointSettings {
  /** A checkpoint at least every this many entries of a chain (≤ 1,000). */
  readonly everyEvents: number
  /** …and at least this often, empty or not (≤ 5 minutes). */
  readonly everyMs: number
}

/** Writes checkpoints: in the appending transaction every `everyEvents` entries, and on a timer. */
export class Checkpointer {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    readonly signer: AuditSigner,
    readonly settings: CheckpointSettings,
  ) {}

  /** Called by AuditLog.append inside its transaction, after the entry is inserted. */
  async appended(trx: Transaction<DB> | Kysely<DB>, entry: Pick<AuditEventTable, 'chain_id' | 'seq' | 'hash'>): Promise<void> {
    if (entry.seq % this.settings.everyEvents !== 0) return
    await this.#write(trx, { chain_id: entry.chain_id, seq: entry.seq, head_hash: entry.hash, at: this.clock.now() })
  }

  /**
   * The timer's work: every chain whose last checkpoint is older than `everyMs` (or that has
   * none) gets one for its current head — the same head as before when it was idle. Returns
   * how many were written.
   */
  async tick(): Promise<number> {
    const now = this.clock.now()
    const chains = await this.db.selectFrom('audit_event').select('chain_id').distinct().execute()
    const lastAt = new Map((await this.db.selectFrom('audit_checkpoint').select('chain_id').select((eb) => eb.fn.max('at').as('at')).groupBy('chain_id').execute())
      .map((r) => [r.chain_id, Number(r.at)]))
    let written = 0
    for (const { chain_id } of chains) {
      // The timer ticks every tenth of the interval: write when the next tick would be too late.
      const last = lastAt.get(chain_id)
      if (last !== undefined && now - last < this.settings.everyMs * 0.9) continue
      // The head is read and signed in one transaction, so it is the head as committed.
      await this.db.transaction().execute(async (trx) => {
        const head = await trx.selectFrom('audit_event').select(['seq', 'hash']).where('chain_id', '=', chain_id).orderBy('seq', 'desc').limit(1).executeTakeFirst()
        await this.#write(trx, { chain_id, seq: head ? Number(head.seq) : 0, head_hash: head?.hash ?? GENESIS, at: now })
      })
      written++
    }
    return written
  }

  async #write(trx: Transaction<DB> | Kysely<DB>, c: Pick<Checkpoint, 'chain_id' | 'seq' | 'head_hash' | 'at'>): Promise<void> {
    const signed = this.signer.sign(c)
    const row: AuditCheckpointTable = { id: `acp_${randomAlnum(20)}`, ...signed }
    await trx.insertInto('audit_checkpoint').values(row).execute()
  }
}

// ---------------------------------------------------------------------------------------------
// Export and offline verification

export const EXPORT_FORMAT = 'tollgate-audit-export/1'

export type ExportLine =
  | { readonly type: 'header'; readonly format: string; readonly exported_at: number }
  | ({ readonly type: 'entry' } & AuditEventTable)
  | ({ readonly type: 'checkpoint' } & Checkpoint)

/** Every entry and checkpoint, as JSON lines: a header, then each chain's entries in order, then the checkpoints. */
export async function* exportAudit(db: Kysely<DB>, clock: Clock, chainId?: string): AsyncGenerator<string> {
  yield JSON.stringify({ type: 'header', format: EXPORT_FORMAT, exported_at: clock.now() })
  let q = db.selectFrom('audit_event').selectAll().orderBy('chain_id').orderBy('seq')
  if (chainId) q = q.where('chain_id', '=', chainId)
  for (const r of await q.execute()) yield JSON.stringify({ type: 'entry', ...r, seq: Number(r.seq), at: Number(r.at) })
  let c = db.selectFrom('audit_checkpoint').select(['chain_id', 'seq', 'head_hash', 'at', 'key_id', 'signature']).orderBy('chain_id').orderBy('at').orderBy('seq')
  if (chainId) c = c.where('chain_id', '=', chainId)
  for (const r of await c.execute()) yield JSON.stringify({ type: 'checkpoint', ...r, seq: Number(r.seq), at: Number(r.at) })
}

export interface VerifyReport {
  readonly ok: boolean
  readonly chains: number
  readonly entries: number
  readonly checkpoints: number
  /** The first problem found, naming the chain and seq. */
  readonly problem?: string
}

const HEX64 = /^[0-9a-f]{64}$/

/**
 * Verifies an export offline (T81): each chain links from genesis with consecutive seqs and
 * correct hashes; every checkpoint is signed by one of `publicKeys` and names an entry of the
 * export with that exact hash; no chain ends before its latest checkpoint (a truncated tail); and
 * every `trusted` checkpoint — exported earlier and kept elsewhere — verifies and is consistent
 * with the export (a rollback to an older copy drops entries those checkpoints cover).
 */
export function verifyExport(lines: readonly string[], publicKeys: readonly KeyObject[], trusted: readonly string[] = []): VerifyReport {
  const keys = new Map(publicKeys.map((k) => [keyId(k), k]))
  const chains = new Map<string, AuditEventTable[]>()
  const checkpoints: Checkpoint[] = []
  let headerSeen = false
  let n = 0
  const fail = (problem: string): VerifyReport => ({ ok: false, chains: chains.size, entries: n, checkpoints: checkpoints.length, problem })
  for (const [i, v] of jsonLines(lines)) {
    if (typeof v === 'string') return fail(`line ${i + 1}: ${v}`)
    if (v['type'] === 'header') {
      if (headerSeen || v['format'] !== EXPORT_FORMAT) return fail(`line ${i + 1}: unexpected header`)
      headerSeen = true
    } else if (v['type'] === 'entry') {
      const e = entryOf(v)
      if (!e) return fail(`line ${i + 1}: malformed entry`)
      const list = chains.get(e.chain_id) ?? []
      list.push(e)
      chains.set(e.chain_id, list)
      n++
    } else if (v['type'] === 'checkpoint') {
      const c = checkpointOf(v)
      if (!c) return fail(`line ${i + 1}: malformed checkpoint`)
      checkpoints.push(c)
    } else return fail(`line ${i + 1}: unknown line type`)
  }
  if (!headerSeen) return fail('no export header')

  // 1. The chains link.
  const hashAt = new Map<string, Map<number, string>>()
  for (const [chain, entries] of chains) {
    const at = new Map<number, string>([[0, GENESIS]])
    let prev = GENESIS
    for (const [i, e] of entries.entries()) {
      if (e.seq !== i + 1) return fail(`${chain}: seq ${e.seq} where ${i + 1} was expected (an entry was removed, inserted, duplicated or moved)`)
      if (e.prev_hash !== prev) return fail(`${chain}: seq ${e.seq}: prev_hash does not match the previous entry`)
      if (linkHash(e) !== e.hash) return fail(`${chain}: seq ${e.seq}: hash does not match the entry (edited)`)
      prev = e.hash
      at.set(e.seq, e.hash)
    }
    hashAt.set(chain, at)
  }

  // 2. Checkpoints: signed by a known key, pointing at an entry that exists with that hash.
  const check = (c: Checkpoint, where: string): string | undefined => {
    const key = keys.get(c.key_id)
    if (!key) return `${where} ${c.chain_id} seq ${c.seq}: signed by unknown key ${c.key_id}`
    if (!verify(null, checkpointMessage(c), key, Buffer.from(c.signature, 'base64'))) return `${where} ${c.chain_id} seq ${c.seq}: bad signature`
    const at = hashAt.get(c.chain_id)
    if (c.seq === 0) return c.head_hash === GENESIS ? undefined : `${where} ${c.chain_id} seq 0: not the genesis hash`
    if (!at) return `${where} ${c.chain_id}: the chain is missing from the export (deleted or rolled back)`
    const h = at.get(c.seq)
    if (h === undefined) return `${where} ${c.chain_id} seq ${c.seq}: the export ends at seq ${at.size - 1}, before this checkpoint (truncated or rolled back)`
    if (h !== c.head_hash) return `${where} ${c.chain_id} seq ${c.seq}: the entry's hash differs from the signed head (the chain was rewritten)`
    return undefined
  }
  const lastAt = new Map<string, number>()
  for (const c of checkpoints) {
    const problem = check(c, 'checkpoint')
    if (problem) return fail(problem)
    const prev = lastAt.get(c.chain_id)
    if (prev !== undefined && c.at < prev) return fail(`checkpoint ${c.chain_id} seq ${c.seq}: out of time order`)
    lastAt.set(c.chain_id, c.at)
  }
  for (const [i, v] of jsonLines(trusted)) {
    if (typeof v === 'string') return fail(`trusted line ${i + 1}: ${v}`)
    if (v['type'] !== 'checkpoint') continue
    const c = checkpointOf(v)
    if (!c) return fail(`trusted line ${i + 1}: malformed checkpoint`)
    const problem = check(c, 'trusted checkpoint')
    if (problem) return fail(problem)
  }
  return { ok: true, chains: chains.size, entries: n, checkpoints: checkpoints.length }
}

/** The non-blank lines with their index, each parsed — or the problem, as a string. */
function* jsonLines(lines: readonly string[]): Generator<[number, Record<string, unknown> | string]> {
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue
    try {
      const v = JSON.parse(line) as unknown
      yield [i, v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : 'not a JSON object']
    } catch {
      yield [i, 'not JSON']
    }
  }
}

function entryOf(v: Record<string, unknown>): AuditEventTable | undefined {
  const s = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined)
  const ns = (k: string) => (v[k] === null ? null : s(k))
  const num = (k: string) => (typeof v[k] === 'number' && Number.isSafeInteger(v[k]) ? (v[k] as number) : undefined)
  const e = {
    chain_id: s('chain_id'), seq: num('seq'), at: num('at'), actor_type: s('actor_type'), actor_id: ns('actor_id'), action: s('action'),
    target_type: ns('target_type'), target_id: ns('target_id'), outcome: s('outcome'), request_id: ns('request_id'), prev_hash: s('prev_hash'), hash: s('hash'),
  }
  if (e.chain_id === undefined || e.seq === undefined || e.at === undefined || e.actor_type === undefined || e.actor_id === undefined || e.action === undefined
    || e.target_type === undefined || e.target_id === undefined || e.outcome === undefined || e.request_id === undefined || e.prev_hash === undefined || e.hash === undefined) return undefined
  return e as AuditEventTable
}

function checkpointOf(v: Record<string, unknown>): Checkpoint | undefined {
  const { chain_id, seq, head_hash, at, key_id, signature } = v
  if (typeof chain_id !== 'string' || typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0 || typeof head_hash !== 'string' || !HEX64.test(head_hash)
    || typeof at !== 'number' || !Number.isSafeInteger(at) || typeof key_id !== 'string' || typeof signature !== 'string') return undefined
  return { chain_id, seq, head_hash, at, key_id, signature }
}
