/**
 * Shared short-lived state (rate-limit counters, pub/sub fan-out): process memory for one
 * instance, Redis for several. Every method is atomic. Nothing here may hold request content.
 */
export interface Cache {
  readonly kind: 'memory' | 'redis'
  get(key: string): Promise<string | undefined>
  /** Sets `key` with a TTL in seconds (> 0). */
  set(key: string, value: string, ttlSeconds: number): Promise<void>
  /** Sets only when absent; true when this call set it. */
  setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean>
  /** Adds 1 and returns the new value; the TTL is applied when the key is created, never extended. */
  increment(key: string, ttlSeconds: number): Promise<number>
  delete(key: string): Promise<void>
  /** Liveness probe for /readyz. */
  ping(): Promise<boolean>
  close(): Promise<void>
}
