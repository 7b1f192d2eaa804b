import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

/**
 * AES-256-GCM sealing of small JSON values with an expiry, for the short-lived flow cookie that
 * carries OIDC state/nonce/PKCE verifier and WebAuthn challenges through the browser: bound to
 * that browser, unreadable and unforgeable by it, valid on any instance.
 */
export function seal(key: Buffer, value: object, expiresAt: number, aad: string): string {
  const nonce = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, nonce)
  c.setAAD(Buffer.from(aad))
  const body = Buffer.concat([c.update(JSON.stringify({ v: value, exp: expiresAt })), c.final()])
  return [nonce, body, c.getAuthTag()].map((b) => b.toString('base64url')).join('.')
}

/**
 * `maxLength` caps what is decrypted at all (8 KiB: a cookie); values Tollgate reads back from its
 * own database (a replayed admin response, LIMIT-2) pass their own bound.
 */
export function unseal<T>(key: Buffer, sealed: string, now: number, aad: string, maxLength = 8192): T | undefined {
  const parts = sealed.split('.')
  if (parts.length !== 3 || sealed.length > maxLength) return undefined
  try {
    const [nonce, body, tag] = parts.map((p) => Buffer.from(p, 'base64url'))
    const d = createDecipheriv('aes-256-gcm', key, nonce!)
    d.setAAD(Buffer.from(aad))
    d.setAuthTag(tag!)
    const plain = JSON.parse(Buffer.concat([d.update(body!), d.final()]).toString('utf8')) as { v: T; exp: number }
    return typeof plain.exp === 'number' && now < plain.exp ? plain.v : undefined
  } catch {
    return undefined
  }
}
