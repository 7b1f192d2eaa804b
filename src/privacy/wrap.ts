import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { sha256Hex } from '../core/crypto.ts'

/** The key that wraps every per-org key. Lives outside the database (env var or a 0600 file). */
export interface MasterKey {
  readonly id: string
  readonly key: Buffer
}

export function masterKeyFromHex(hex: string): MasterKey {
  const key = Buffer.from(hex, 'hex')
  if (key.length !== 32) throw new Error('master key must be 32 bytes')
  return { id: sha256Hex(key).slice(0, 16), key }
}

/** AES-256-GCM with a fresh 96-bit nonce; the org id and purpose are bound in as associated data. */
export function wrapKey(master: MasterKey, orgId: string, purpose: string, plain: Buffer): string {
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', master.key, nonce)
  c.setAAD(Buffer.from(`${orgId}\0${purpose}`))
  const ct = Buffer.concat([c.update(plain), c.final()])
  return ['v1', nonce.toString('base64url'), ct.toString('base64url'), c.getAuthTag().toString('base64url')].join('.')
}

export function unwrapKey(master: MasterKey, orgId: string, purpose: string, wrapped: string): Buffer {
  const [v, n, ct, tag] = wrapped.split('.')
  if (v !== 'v1' || !n || !ct || !tag) throw new Error('unknown wrapped key format')
  const d = createDecipheriv('aes-256-gcm', master.key, Buffer.from(n, 'base64url'))
  d.setAAD(Buffer.from(`${orgId}\0${purpose}`))
  d.setAuthTag(Buffer.from(tag, 'base64url'))
  return Buffer.concat([d.update(Buffer.from(ct, 'base64url')), d.final()])
}
