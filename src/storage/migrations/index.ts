import { Migrator, type Kysely, type Migration, type MigrationProvider } from 'kysely'
import type { Dialect } from '../database.ts'
import { foundation } from './0001-foundation.ts'
import { identity } from './0002-identity.ts'
import { policy } from './0003-policy.ts'
import { abuse } from './0004-abuse.ts'
import { auditCheckpoints } from './0005-audit-checkpoints.ts'
import { orgClassifier } from './0006-org-classifier.ts'
import { analytics } from './0007-analytics.ts'
import { backupSlots } from './0009-backup-slots.ts'
import { idempotentEffects } from './0010-idempotent-effects.ts'
import { artifacts } from './0011-artifacts.ts'
import { decisionReason } from './0012-decision-reason.ts'
import { orgKeyVault } from './0013-org-key-vault.ts'
import { memberTeams } from './0014-member-teams.ts'

/**
 * Frozen migrations, in order. A migration, once released, never changes: a later change is a
 * new file. Each is written once for both dialects through the few type helpers in `types.ts`.
 */
const MIGRATIONS: Record<string, (d: Dialect) => Migration> = {
  '0001-foundation': foundation,
  '0002-identity': identity,
  '0003-policy': policy,
  '0004-abuse': abuse,
  '0005-audit-checkpoints': auditCheckpoints,
  '0006-org-classifier': orgClassifier,
  '0007-analytics': analytics,
  '0009-backup-slots': backupSlots,
  '0010-idempotent-effects': idempotentEffects,
  '0011-artifacts': artifacts,
  '0012-decision-reason': decisionReason,
  '0013-org-key-vault': orgKeyVault,
  '0014-member-teams': memberTeams,
}

/** Every migration's name, in order. */
export const MIGRATION_NAMES: readonly string[] = Object.keys(MIGRATIONS)

class InCodeProvider implements MigrationProvider {
  constructor(private readonly dialect: Dialect) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return Object.fromEntries(Object.entries(MIGRATIONS).map(([name, m]) => [name, m(this.dialect)]))
  }
}

function migrator(db: Kysely<any>, dialect: Dialect): Migrator {
  return new Migrator({ db, provider: new InCodeProvider(dialect), migrationTableName: 'tollgate_migration', migrationLockTableName: 'tollgate_migration_lock' })
}

/** Migrations this code knows of that the database has not applied (read-only: creates nothing). */
export async function pendingMigrations(db: Kysely<any>, dialect: Dialect): Promise<string[]> {
  const infos = await migrator(db, dialect).getMigrations()
  return infos.filter((m) => m.executedAt === undefined).map((m) => m.name)
}

/** Brings the schema to the latest version; safe to call on every start and from several instances. */
export async function migrateToLatest(db: Kysely<any>, dialect: Dialect): Promise<{ applied: string[] }> {
  const { error, results } = await migrator(db, dialect).migrateToLatest()
  if (error) throw error instanceof Error ? error : new Error('migration failed')
  return { applied: (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName) }
}
