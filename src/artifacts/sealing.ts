import { seal, unseal } from '../identity/seal.ts'

/** Largest artifact content, in UTF-8 bytes (RIGHTS-3). */
export const ARTIFACT_MAX_BYTES = 64 * 1024
/** Largest reported text, in UTF-8 bytes (GW-8). */
export const REPORT_MAX_BYTES = 16 * 1024
/** A temporary artifact expires this long after it was saved (RIGHTS-3). */
export const TEMPORARY_TTL_MS = 24 * 3600_000
/** An unreviewed report is deleted by this age at the latest (GW-8). */
export const REPORT_MAX_AGE_MS = 30 * 24 * 3600_000
/** Kept artifacts never expire by themselves: their owner deletes them (or the org ends). */
export const NEVER = Number.MAX_SAFE_INTEGER
/** The most a sealed value can be: 64 KiB of text JSON-escaped (≤ 6 chars a byte), base64 (4/3), framing. */
const SEALED_MAX = 1 << 20

export type SealedKind = 'artifact' | 'report'

/** Associated data: a sealed value opens only as the row it was written for (no swapping rows or orgs). */
const aad = (kind: SealedKind, orgId: string, id: string) => `${kind}\0${orgId}\0${id}`

/**
 * AES-256-GCM under the org's data key with a fresh 96-bit nonce (identity/seal.ts), the org id and
 * row id bound in as associated data, and the expiry sealed inside: an expired value does not open
 * even before the retention job deletes its row.
 */
export function sealStored<T extends object>(dataKey: Buffer, kind: SealedKind, orgId: string, id: string, value: T, expiresAt: number): string {
  return seal(dataKey, value, expiresAt, aad(kind, orgId, id))
}

/** The value, or undefined when it does not open (wrong key or row, tampered, expired). */
export function openStored<T>(dataKey: Buffer, kind: SealedKind, orgId: string, id: string, sealed: string, now: number): T | undefined {
  return unseal<T>(dataKey, sealed, now, aad(kind, orgId, id), SEALED_MAX)
}

export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8')
