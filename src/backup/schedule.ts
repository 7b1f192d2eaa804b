import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import type { Job } from '../ops/jobs.ts'
import type { DB } from '../storage/schema.ts'
import { DAY_MS } from './backup.ts'
import { latestSlot, MINUTE, type Cron } from './cron.ts'

/**
 * Claims a cron slot for this instance: an insert on the slot's primary key, so among several
 * instances exactly one wins it. Slots claimed more than 30 days ago are forgotten.
 */
export async function claimSlot(db: Kysely<DB>, slotAt: number, now: number): Promise<boolean> {
  const r = await db.insertInto('backup_slot').values({ slot_at: slotAt, claimed_at: now })
    .onConflict((oc) => oc.column('slot_at').doNothing()).executeTakeFirst()
  if (Number(r.numInsertedOrUpdatedRows ?? 0n) !== 1) return false
  await db.deleteFrom('backup_slot').where('slot_at', '<', now - 30 * DAY_MS).execute()
  return true
}

/**
 * TOLLGATE_BACKUP_CRON on the Jobs runner: every 20 s it looks for the latest slot since its last
 * look (the minute it started in counts), claims it, and runs the backup if the claim is its own.
 */
export function backupJob(cron: Cron, db: Kysely<DB>, clock: Clock, backup: () => Promise<unknown>): Job {
  let seenUpTo = Math.floor(clock.now() / MINUTE) * MINUTE - 1
  return {
    name: 'backup',
    everyMs: 20_000,
    async run() {
      const now = clock.now()
      const slot = latestSlot(cron, seenUpTo, now)
      seenUpTo = Math.max(seenUpTo, now)
      if (slot === undefined || !(await claimSlot(db, slot, now))) return 0
      await backup()
      return 1
    },
  }
}
