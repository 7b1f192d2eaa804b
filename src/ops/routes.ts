import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Kysely } from 'kysely'
import { INSTANCE_CHAIN, withAudit, type AuditLog } from '../audit/audit.ts'
import type { Backups } from '../backup/backup.ts'
import { BackupError } from '../backup/format.ts'
import type { Cache } from '../cache/cache.ts'
import type { Clock } from '../core/clock.ts'
import { digestsEqual, sha256 } from '../core/crypto.ts'
import { TollgateError } from '../core/errors.ts'
import type { Secret } from '../core/secret.ts'
import type { DB } from '../storage/schema.ts'

export interface OpsDeps {
  readonly clock: Clock
  readonly db: Kysely<DB>
  readonly audit: AuditLog
  readonly cache: Cache
  readonly opsSecret: Secret | undefined
  /** BACKUP-1: undefined when backups are off (production without TOLLGATE_BACKUP_KEY). */
  readonly backups?: Backups | undefined
  /** Loads demo orgs and people for staging; returns what it created. */
  readonly seed: (requestId: string) => Promise<{ orgs: number; users: number }>
}


/** What the gate keeps of the operator secret: its SHA-256, computed once at start-up. */
export function operatorSecretDigest(secret: string): Buffer {
  return sha256(secret)
}

/**
 * The operator gate's comparison (KEY-4): true only for a single header value equal to the secret.
 * Any length and any bytes are fine: the presented value is hashed to 32 bytes and compared with
 * `timingSafeEqual` (no RangeError). The secret is hashed once, not per call, so the only
 * length-dependent work is hashing what the client sent — nothing in the time depends on the
 * secret's length or content (T70 measured a few-ns interaction when the secret was re-hashed
 * on every call). Repeated headers arrive joined (`a, b`) and so never match.
 */
export function verifyOperatorSecret(presented: unknown, secretDigest: Uint8Array): boolean {
  return typeof presented === 'string' && digestsEqual(sha256(presented), secretDigest)
}

/**
 * Operator-only endpoints (KEY-4): behind `X-Backup-Secret`, compared in constant time on
 * fixed-length digests (any length, any bytes: no RangeError), off (404, like any unknown
 * route) when TOLLGATE_OPS_SECRET is unset, rate-limited, every call audited.
 */
export function registerOperatorRoutes(app: FastifyInstance, d: OpsDeps): void {
  if (!d.opsSecret) return
  const secretDigest = operatorSecretDigest(d.opsSecret.reveal())

  // The `auth` rate-limit group has already counted this call (server.ts) before it gets here.
  const gate = async (request: FastifyRequest, action: string): Promise<void> => {
    const ok = verifyOperatorSecret(request.headers['x-backup-secret'], secretDigest)
    await withAudit(d.db, (trx) => d.audit.append(trx, { chainId: INSTANCE_CHAIN, actorType: 'operator', actorId: null, action, targetType: 'ops', targetId: null, outcome: ok ? 'success' : 'failure', requestId: request.id }))
    if (!ok) throw new TollgateError('invalid_operator_secret')
  }

  // BACKUP-1: a backup now, to the configured destination, with retention. The answer names the
  // backup and its key id, never the key; the run is audited (backup_created) beside the gate's entry.
  app.post('/ops/backup', { config: { action: 'public' } }, async (request, reply) => {
    await gate(request, 'ops_backup')
    if (!d.backups) throw new TollgateError('backup_unavailable')
    let r
    try {
      r = await d.backups.run({ type: 'operator', id: null }, { requestId: request.id })
    } catch (err) {
      throw new TollgateError('backup_failed', { reason: err instanceof BackupError ? err.problem : err instanceof Error ? err.name : 'unknown' })
    }
    return reply.code(201).send({ name: r.name, size: r.bytes, key_id: r.keyId, created_at: r.createdAt, deleted: r.deleted.length })
  })

  app.post('/ops/seed', { config: { action: 'public' } }, async (request) => {
    await gate(request, 'ops_seed')
    return d.seed(request.id)
  })
}
