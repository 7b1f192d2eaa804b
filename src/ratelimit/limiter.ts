import { createRequire } from 'node:module'
import type { Redis } from 'ioredis'
import type { Clock } from '../core/clock.ts'

/** One limit: at most `limit` admissions in ANY window of `windowS` seconds (D7: a sliding log, not a fixed window). */
export interface Limit {
  readonly limit: number
  readonly windowS: number
}

/** The verdict for one request on one partition. */
export interface Verdict {
  readonly allowed: boolean
  /** Admissions left in the current window after this request. */
  readonly remaining: number
  /** Seconds until the oldest admission leaves the window (0 when the window is empty). */
  readonly resetS: number
}

/**
 * The atomic store behind the limits: in-process memory for one instance, Redis for several.
 * `admit` checks and records in one step, with the store's own clock, so instances agree.
 */
export interface LimitStore {
  readonly kind: 'memory' | 'redis'
  admit(key: string, l: Limit): Promise<Verdict>
  close(): Promise<void>
}

/** The sliding log in memory: timestamps of admissions per key, pruned as they leave the window. */
export class MemoryLimitStore implements LimitStore {
  readonly kind = 'memory' as const
  readonly #logs = new Map<string, number[]>()
  readonly #sweep: NodeJS.Timeout

  constructor(private readonly clock: Clock) {
    this.#sweep = setInterval(() => this.#prune(), 60_000)
    this.#sweep.unref()
  }

  async admit(key: string, l: Limit): Promise<Verdict> {
    return this.admitSync(key, l)
  }

  admitSync(key: string, l: Limit): Verdict {
    const now = this.clock.now()
    const windowMs = l.windowS * 1000
    let log = this.#logs.get(key)
    if (!log) {
      log = []
      this.#logs.set(key, log)
    }
    let drop = 0
    while (drop < log.length && log[drop]! <= now - windowMs) drop++
    if (drop > 0) log.splice(0, drop)
    const allowed = log.length < l.limit
    if (allowed) log.push(now)
    const resetS = log.length === 0 ? 0 : Math.max(1, Math.ceil((log[0]! + windowMs - now) / 1000))
    return { allowed, remaining: Math.max(0, l.limit - log.length), resetS }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweep)
    this.#logs.clear()
  }

  #prune(): void {
    const now = this.clock.now()
    // Keys idle for over an hour (longer than any window) are dropped.
    for (const [k, log] of this.#logs) if (log.length === 0 || log[log.length - 1]! < now - 3_600_000) this.#logs.delete(k)
  }
}

// KEYS[1] = the partition's sorted set; ARGV = limit, window (ms), a unique member.
// Redis's own TIME is the clock, so instances with skewed clocks still agree (T34).
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local reset = 0
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then reset = math.ceil((tonumber(oldest[2]) + window - now) / 1000) if reset < 1 then reset = 1 end end
return {allowed, limit - count, reset}
`

const require = createRequire(import.meta.url)

const ADMIT_TIMEOUT_MS = 1000

/**
 * Rejects when `p` has not settled `ms` after the call, but only once the event loop has read
 * pending I/O again (setImmediate runs after the poll phase). A reply that arrived while this
 * process was busy (a CPU stall of the event loop, not an outage) is still used: a plain timer
 * (ioredis's commandTimeout) fires before that read, and the request would fall back to this
 * instance's memory log and could be admitted although Redis refused it (T30, found by
 * test/limits/ratelimit.test.ts during the classifier's cold start).
 */
function deadline<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => setImmediate(() => reject(new Error('rate-limit store timed out'))), ms)
    p.then((v) => {
      clearTimeout(timer)
      resolve(v)
    }, (err: unknown) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** The shared sliding log in Redis (several instances): one Lua script, atomic. */
export class RedisLimitStore implements LimitStore {
  readonly kind = 'redis' as const
  readonly redis: Redis
  #seq = 0
  /** Settles when the first connection attempt has ended, either way (see admit()). */
  readonly #firstAttempt: Promise<void>
  #starting = true

  constructor(url: string, private readonly prefix = 'tollgate:rl:') {
    const { Redis: RedisClient } = require('ioredis') as typeof import('ioredis')
    this.redis = new RedisClient(url, {
      maxRetriesPerRequest: 1,
      // Fail fast while Redis is down (the caller applies the D7 outage policy), reconnect in the background.
      enableOfflineQueue: false,
      connectTimeout: 2000,
      // A backstop only: admit() gives up after ADMIT_TIMEOUT_MS itself (see deadline()).
      commandTimeout: 10_000,
      retryStrategy: (times) => Math.min(times * 100, 2000),
    })
    this.redis.on('error', () => {})
    this.redis.defineCommand('tgAdmit', { numberOfKeys: 1, lua: ADMIT })
    this.#firstAttempt = new Promise<void>((resolve) => {
      const done = () => {
        this.#starting = false
        resolve()
      }
      this.redis.once('ready', done)
      this.redis.once('close', done)
    })
  }

  async admit(key: string, l: Limit): Promise<Verdict> {
    const member = `${process.pid}:${Date.now()}:${this.#seq++}:${Math.random()}`
    const run = async () => {
      // A just-started instance waits for its first connection instead of deciding without Redis
      // (auth 503, others per-instance); later outages still fail fast (no offline queue).
      if (this.#starting) await this.#firstAttempt
      return (this.redis as unknown as { tgAdmit(k: string, limit: number, w: number, m: string): Promise<[number, number, number]> })
        .tgAdmit(this.prefix + key, l.limit, l.windowS * 1000, member)
    }
    const [allowed, remaining, reset] = await deadline(run(), ADMIT_TIMEOUT_MS)
    return { allowed: allowed === 1, remaining: Math.max(0, Number(remaining)), resetS: Number(reset) }
  }

  async close(): Promise<void> {
    this.redis.disconnect()
  }
}
