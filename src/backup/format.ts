import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { open, unlink } from 'node:fs/promises'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Dialect } from '../storage/database.ts'

/**
 * The backup file format (BACKUP-1, D12):
 *
 *   "TGBACKUP" | version (1 byte) | header length (4 bytes, big-endian) | header (JSON) | ciphertext | GCM tag (16 bytes)
 *
 * AES-256-GCM under the backup key, a fresh 96-bit nonce per backup, and every header byte
 * (magic, version, length, JSON) authenticated as associated data. The key is never in the file:
 * the header names it by id (the first 16 hex digits of its SHA-256).
 */
export const MAGIC = Buffer.from('TGBACKUP', 'latin1')
export const FORMAT_VERSION = 1
const PREFIX = MAGIC.length + 1 + 4
const MAX_HEADER = 4096
const TAG = 16

export interface BackupKey {
  readonly id: string
  readonly key: Buffer
}

export interface BackupHeader {
  readonly alg: 'AES-256-GCM'
  readonly key_id: string
  /** 96-bit GCM nonce, hex. */
  readonly nonce: string
  readonly dialect: Dialect
  /** ms since the epoch. */
  readonly created_at: number
  /** The last migration applied to the database when it was copied. */
  readonly schema: string
  /** The master key that wraps the org keys inside (CRYPTO-2): a restore needs this one, or a re-wrap. */
  readonly master_key_id: string | null
}

export type BackupProblem = 'not_a_backup' | 'unsupported_version' | 'unknown_key' | 'tampered' | 'wrong_dialect' | 'newer_schema' | 'not_empty' | 'no_key' | 'snapshot_failed'

const PROBLEMS: Record<BackupProblem, string> = {
  not_a_backup: 'This file is not a Tollgate backup (no TGBACKUP header).',
  unsupported_version: 'This backup was written in a format version this Tollgate does not read.',
  unknown_key: 'No backup key with this key id was given: pass the key that wrote it with --key-file (or set TOLLGATE_BACKUP_KEY).',
  tampered: 'The backup failed authentication (altered, truncated or the wrong key): nothing was restored.',
  wrong_dialect: 'This backup is of another database kind than the configured one (SQLite vs PostgreSQL).',
  newer_schema: 'This backup was made by a newer Tollgate (its schema is unknown here): restore it with that version.',
  not_empty: 'The target database is not empty: restore into an empty database, or pass --force to replace it.',
  no_key: 'No backup key: set TOLLGATE_BACKUP_KEY (64 hex characters, e.g. openssl rand -hex 32).',
  snapshot_failed: 'The database snapshot failed: nothing was written and no older backup was deleted.',
}

/** A refusal with a fixed message; `detail` carries only ids (a key id, a schema name), never data. */
export class BackupError extends Error {
  constructor(readonly problem: BackupProblem, readonly detail?: string) {
    super(detail ? `${PROBLEMS[problem]} (${detail})` : PROBLEMS[problem])
    this.name = 'BackupError'
  }
}

export function backupKeyFromHex(hex: string): BackupKey {
  if (!/^[0-9a-fA-F]{64}$/.test(hex.trim())) throw new Error('a backup key is 64 hex characters')
  const key = Buffer.from(hex.trim(), 'hex')
  return { id: createHash('sha256').update(key).digest('hex').slice(0, 16), key }
}

export function encodeHeader(h: BackupHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h), 'utf8')
  const prefix = Buffer.alloc(PREFIX)
  MAGIC.copy(prefix)
  prefix.writeUInt8(FORMAT_VERSION, MAGIC.length)
  prefix.writeUInt32BE(json.length, MAGIC.length + 1)
  return Buffer.concat([prefix, json])
}

/** Parses the header at the start of `bytes` (which must hold all of it); the header is not yet authenticated. */
export function decodeHeader(bytes: Buffer): { header: BackupHeader; length: number } {
  if (bytes.length < PREFIX || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new BackupError('not_a_backup')
  if (bytes.readUInt8(MAGIC.length) !== FORMAT_VERSION) throw new BackupError('unsupported_version')
  const n = bytes.readUInt32BE(MAGIC.length + 1)
  if (n > MAX_HEADER || bytes.length < PREFIX + n) throw new BackupError('tampered')
  let h: BackupHeader
  try {
    h = JSON.parse(bytes.subarray(PREFIX, PREFIX + n).toString('utf8')) as BackupHeader
  } catch {
    throw new BackupError('tampered')
  }
  if (h === null || typeof h !== 'object' || h.alg !== 'AES-256-GCM' || typeof h.key_id !== 'string' || !/^[0-9a-f]{24}$/.test(String(h.nonce))
    || (h.dialect !== 'sqlite' && h.dialect !== 'postgres') || typeof h.created_at !== 'number' || typeof h.schema !== 'string') throw new BackupError('tampered')
  return { header: h, length: PREFIX + n }
}

/** Reads and parses the header of a backup file (not yet authenticated: only the tag at the end does that). */
export async function readHeader(file: string): Promise<{ header: BackupHeader; length: number; size: number }> {
  const fh = await open(file, 'r')
  try {
    const size = (await fh.stat()).size
    const buf = Buffer.alloc(Math.min(size, PREFIX + MAX_HEADER))
    await fh.read(buf, 0, buf.length, 0)
    return { ...decodeHeader(buf), size }
  } finally {
    await fh.close()
  }
}

export function newHeader(key: BackupKey, fields: Pick<BackupHeader, 'dialect' | 'created_at' | 'schema' | 'master_key_id'>): BackupHeader {
  return { alg: 'AES-256-GCM', key_id: key.id, nonce: randomBytes(12).toString('hex'), ...fields }
}

/** A stream that writes the header, then the plaintext it is given encrypted, then the GCM tag. */
export function encryptStream(key: BackupKey, header: BackupHeader): Transform {
  const head = encodeHeader(header)
  const cipher = createCipheriv('aes-256-gcm', key.key, Buffer.from(header.nonce, 'hex'))
  cipher.setAAD(head)
  let started = false
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      if (!started) {
        started = true
        this.push(head)
      }
      cb(null, cipher.update(chunk))
    },
    flush(cb: TransformCallback) {
      if (!started) this.push(head)
      this.push(cipher.final())
      cb(null, cipher.getAuthTag())
    },
  })
}

/**
 * Decrypts `file` into `dest` (created 0600) and verifies the GCM tag over the header and every
 * byte. On any failure `dest` is removed and a BackupError is thrown: nothing unauthenticated is
 * left behind for a restore to apply.
 */
export async function decryptFile(file: string, dest: string, keys: readonly BackupKey[]): Promise<BackupHeader> {
  const { header, length, size } = await readHeader(file)
  const key = keys.find((k) => k.id === header.key_id)
  if (!key) throw new BackupError('unknown_key', `key id ${header.key_id}`)
  if (size < length + TAG) throw new BackupError('tampered')
  const fh = await open(file, 'r')
  const tag = Buffer.alloc(TAG)
  const head = Buffer.alloc(length)
  try {
    await fh.read(tag, 0, TAG, size - TAG)
    await fh.read(head, 0, length, 0)
  } finally {
    await fh.close()
  }
  const decipher = createDecipheriv('aes-256-gcm', key.key, Buffer.from(header.nonce, 'hex'))
  decipher.setAAD(head)
  decipher.setAuthTag(tag)
  try {
    const body = size - TAG > length ? createReadStream(file, { start: length, end: size - TAG - 1 }) : Readable.from([])
    await pipeline(body, decipher, createWriteStream(dest, { mode: 0o600, flags: 'wx' }))
  } catch (err) {
    await unlink(dest).catch(() => undefined)
    if (err instanceof Error && /unable to authenticate|auth/i.test(err.message)) throw new BackupError('tampered')
    throw err
  }
  return header
}

