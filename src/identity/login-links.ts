import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { sha256Hex } from '../core/crypto.ts'
import type { DB } from '../storage/schema.ts'

/** Bootstrap sign-in links (AUTH-7): 256-bit single-use tokens, 15 minutes, only the hash stored. */
export const LOGIN_LINK_TTL_MS = 15 * 60_000

export class LoginLinks {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
  ) {}

  /** Creates a link token for `userId` in the caller's transaction. */
  async create(trx: Kysely<DB>, userId: string): Promise<string> {
    const token = randomBytes(32).toString('base64url')
    const now = this.clock.now()
    await trx.insertInto('login_link').values({ token_hash: sha256Hex(token), user_id: userId, created_at: now, expires_at: now + LOGIN_LINK_TTL_MS, used_at: null }).execute()
    return token
  }

  /** Uses a link once: the user id, or undefined if unknown, used or expired. Atomic against a concurrent use. */
  async consume(token: string): Promise<string | undefined> {
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined
    const now = this.clock.now()
    const hash = sha256Hex(token)
    const res = await this.db.updateTable('login_link').set({ used_at: now })
      .where('token_hash', '=', hash).where('used_at', 'is', null).where('expires_at', '>', now).executeTakeFirst()
    if (Number(res.numUpdatedRows) !== 1) return undefined
    const row = await this.db.selectFrom('login_link').select('user_id').where('token_hash', '=', hash).executeTakeFirst()
    return row?.user_id
  }
}
