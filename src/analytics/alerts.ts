import { createHmac, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { fetch, type Dispatcher } from 'undici'
import type { Kysely } from 'kysely'
import type { Clock } from '../core/clock.ts'
import { seal, unseal } from '../identity/seal.ts'
import type { OrgKeyring } from '../privacy/org-keys.ts'
import type { DB } from '../storage/schema.ts'
import { isPublicAddress, publicOnlyDispatcher } from './outbound.ts'

/**
 * Anomaly alerts (AUDIT-4): spikes of blocked requests, failed sign-ins and rate-limited (429)
 * requests, counted per org over the last 5 minutes and POSTed to the org's webhook as a signed
 * JSON body of counts only — no person, key or request ids, no text.
 */
export const ALERT_KINDS = ['blocks', 'signin_failures', 'rate_limited'] as const
export type AlertKind = (typeof ALERT_KINDS)[number]
export const WINDOW_MS = 5 * 60_000

export interface AlertSettings {
  /** Alert when a kind reaches this many events in the window; 0 turns the kind off. */
  readonly thresholds: Readonly<Record<AlertKind, number>>
  readonly timeoutMs: number
  /**
   * Whether an https webhook may reach private, loopback and link-local addresses (an operator's
   * choice for an internal receiver). Off: such a URL's delivery fails without connecting (SSRF).
   */
  readonly allowPrivate?: boolean
}

export interface WebhookConfig {
  readonly url: string
  readonly secret: string
}

const FOREVER = Number.MAX_SAFE_INTEGER
const aad = (orgId: string) => `alert-webhook:${orgId}`

/** `X-Tollgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>`, as Stripe and Standard Webhooks sign. */
export function signature(secret: string, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`
}

/** An https URL, or http to a loopback address (a receiver on the same host); never credentials in it. */
export function webhookUrlOk(raw: string): boolean {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return false
  }
  if (u.username || u.password) return false
  if (u.protocol === 'https:') return true
  return u.protocol === 'http:' && /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/.test(u.hostname)
}

/** Each org's webhook, URL and signing secret sealed together under the org's data key. */
export class AlertWebhooks {
  constructor(private readonly db: Kysely<DB>, private readonly clock: Clock, private readonly keyring: OrgKeyring) {}

  async get(orgId: string, db: Kysely<DB> = this.db): Promise<(WebhookConfig & { createdAt: number; updatedAt: number }) | undefined> {
    const row = await db.selectFrom('alert_webhook').selectAll().where('org_id', '=', orgId).executeTakeFirst()
    if (!row) return undefined
    const c = unseal<WebhookConfig>(await this.keyring.key(orgId, 'data', db), row.config_sealed, 0, aad(orgId))
    return c && { url: c.url, secret: c.secret, createdAt: row.created_at, updatedAt: row.updated_at }
  }

  /** Sets the URL; a secret is generated when there is none yet or `rotate` asks. Returns the new secret, if any. */
  async put(trx: Kysely<DB>, orgId: string, url: string, rotate: boolean): Promise<string | undefined> {
    const current = await this.get(orgId, trx)
    const fresh = current === undefined || rotate ? `whsec_${randomBytes(32).toString('base64url')}` : undefined
    const sealed = seal(await this.keyring.key(orgId, 'data', trx), { url, secret: fresh ?? current!.secret }, FOREVER, aad(orgId))
    const now = this.clock.now()
    await trx.insertInto('alert_webhook').values({ org_id: orgId, config_sealed: sealed, created_at: now, updated_at: now })
      .onConflict((oc) => oc.column('org_id').doUpdateSet({ config_sealed: sealed, updated_at: now })).execute()
    return fresh
  }

  async remove(trx: Kysely<DB>, orgId: string): Promise<boolean> {
    const r = await trx.deleteFrom('alert_webhook').where('org_id', '=', orgId).executeTakeFirst()
    return Number(r.numDeletedRows) === 1
  }

  /** Orgs with a webhook, terminated ones left out (their keys are destroyed: nothing to unseal or alert). */
  async orgs(): Promise<string[]> {
    return (await this.db.selectFrom('alert_webhook').innerJoin('org', 'org.id', 'alert_webhook.org_id')
      .where('org.terminated_at', 'is', null).select('alert_webhook.org_id').execute()).map((r) => r.org_id)
  }
}

export interface AlertObserver {
  sent(kind: AlertKind, outcome: 'delivered' | 'failed'): void
}

/**
 * The job: for every org with a webhook, counts each kind over the last 5 minutes and, at or
 * above its threshold, claims (org, kind, window) with an INSERT on a unique key — on several
 * instances only the one whose insert lands sends — then POSTs once: short timeout, redirects
 * not followed, outcome recorded on the claim and counted in tollgate_alerts_total.
 * The window is the 5-minute UTC slot that contains the evaluation time, so a spike alerts at
 * most once per slot and kind.
 */
export class AlertJob {
  constructor(
    private readonly db: Kysely<DB>,
    private readonly clock: Clock,
    private readonly webhooks: AlertWebhooks,
    private readonly settings: AlertSettings,
    private readonly observer: AlertObserver,
  ) {}

  async run(): Promise<number> {
    let sent = 0
    for (const orgId of await this.webhooks.orgs()) {
      for (const kind of ALERT_KINDS) {
        const threshold = this.settings.thresholds[kind]
        if (threshold === 0) continue
        const now = this.clock.now()
        const count = await this.count(orgId, kind, now - WINDOW_MS, now)
        if (count < threshold) continue
        if (await this.#deliver(orgId, kind, count, threshold, now)) sent++
      }
    }
    return sent
  }

  /** Events of `kind` in the org in [from, to]. */
  async count(orgId: string, kind: AlertKind, from: number, to: number): Promise<number> {
    if (kind === 'signin_failures') {
      const r = await this.db.selectFrom('audit_event').select((eb) => eb.fn.countAll<number | string>().as('n'))
        .where('chain_id', '=', orgId).where('action', '=', 'authn_login_fail').where('at', '>=', from).where('at', '<=', to).executeTakeFirst()
      return Number(r?.n ?? 0)
    }
    let q = this.db.selectFrom('decision').select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('org_id', '=', orgId).where('created_at', '>=', from).where('created_at', '<=', to)
    q = kind === 'blocks' ? q.where('outcome', 'in', ['blocked', 'output_blocked']) : q.where('status', '=', 429)
    return Number((await q.executeTakeFirst())?.n ?? 0)
  }

  #publicOnly: Dispatcher | undefined

  /**
   * http webhooks reach only loopback (a receiver on this host, checked when the URL is set);
   * https ones only public addresses unless the operator allows private ones. An IP literal is
   * checked here (no lookup happens for it); a name, by the dispatcher's lookup as it connects.
   */
  #dispatcherFor(url: string): Dispatcher | undefined {
    const u = new URL(url)
    if (u.protocol !== 'https:' || this.settings.allowPrivate) return undefined
    const host = u.hostname.replace(/^\[|\]$/g, '')
    if (isIP(host) !== 0 && !isPublicAddress(host)) throw new Error('webhook address refused')
    return (this.#publicOnly ??= publicOnlyDispatcher())
  }

  async #deliver(orgId: string, kind: AlertKind, count: number, threshold: number, now: number): Promise<boolean> {
    const windowStart = Math.floor(now / WINDOW_MS) * WINDOW_MS
    const claimed = await this.db.insertInto('alert_sent')
      .values({ org_id: orgId, kind, window_start: windowStart, count, threshold, outcome: 'pending', sent_at: now })
      .onConflict((oc) => oc.columns(['org_id', 'kind', 'window_start']).doNothing()).returning('org_id').executeTakeFirst()
    if (claimed === undefined) return false
    const hook = await this.webhooks.get(orgId)
    const org = await this.db.selectFrom('org').select('slug').where('id', '=', orgId).executeTakeFirst()
    let outcome: 'delivered' | 'failed' = 'failed'
    if (hook && org) {
      const body = JSON.stringify({
        type: 'tollgate.alert', org: org.slug, kind, count, threshold, window_seconds: WINDOW_MS / 1000,
        window_start: new Date(now - WINDOW_MS).toISOString(), window_end: new Date(now).toISOString(), sent_at: new Date(now).toISOString(),
      })
      try {
        const res = await fetch(hook.url, {
          method: 'POST', redirect: 'manual', signal: AbortSignal.timeout(this.settings.timeoutMs), body, dispatcher: this.#dispatcherFor(hook.url),
          headers: { 'content-type': 'application/json', 'user-agent': 'Tollgate-Alerts', 'x-tollgate-signature': signature(hook.secret, Math.floor(now / 1000), body) },
        })
        await res.body?.cancel()
        if (res.status >= 200 && res.status < 300) outcome = 'delivered'
      } catch {
        // Unreachable, timed out or refused: counted as failed; the next window alerts again if the spike goes on.
      }
    }
    await this.db.updateTable('alert_sent').set({ outcome }).where('org_id', '=', orgId).where('kind', '=', kind).where('window_start', '=', windowStart).execute()
    this.observer.sent(kind, outcome)
    return outcome === 'delivered'
  }
}
