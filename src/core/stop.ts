import type { ErrorCode } from './errors.ts'

/** Why a request stops early: a returned value, not an exception. */
export interface Stop {
  readonly code: ErrorCode
  /** The bad field's path (schema names and indexes only). */
  readonly param?: string
  /** A policy reason code shown with a block (our own vocabulary, never input). */
  readonly reason?: string
  /** Extra response headers (e.g. Retry-After). */
  readonly headers?: Readonly<Record<string, string>>
}
