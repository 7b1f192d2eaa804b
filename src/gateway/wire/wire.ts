import type { ErrorCode } from '../../core/errors.ts'
import type { ClientFormat, ModelEvent, ModelRequest, ModelResponse, ProviderName, StopReason, Usage } from '../../core/model.ts'
import type { DecisionRecord } from '../../decisions/record.ts'

/** A challenge as the client sees it (GW-5): the question, never anything of the request. */
export interface ChallengeView {
  readonly id: string
  readonly question: string
  readonly expiresAt: number
  readonly attemptsLeft: number
  /** After a failed reply: what to improve, and its grade. */
  readonly feedback?: string
  readonly reasoningScore?: number
}

/** The friction decision as the client sees it: codes and kinds, never text. */
export interface DecisionView {
  readonly outcome: 'allow' | 'redact' | 'challenge'
  readonly ruleId: string | null
  readonly reason: string | null
  /** PII kinds replaced before forwarding (GW-7): the kinds, never the values. */
  readonly redacted: readonly string[]
  readonly challenge?: ChallengeView
  /** A challenge reply that passed: its reasoning-quality score. */
  readonly reasoningScore?: number
}

/** Reason codes are our own vocabulary; anything else is never shown. */
export const REASON = /^[a-z][a-z0-9_]{0,63}$/

/** What an answer needs to know besides the model's output. */
export interface ReplyContext {
  readonly requestId: string
  readonly decisionId: string
  /** The client's model string: echoed in successful answers (as the APIs do), never in errors. */
  readonly model: string
  readonly createdS: number
  readonly provider: ProviderName
  /** The local provider answered because no upstream is configured for this model (D17). */
  readonly fallback: boolean
  /** The client asked for usage in its stream (OpenAI `stream_options.include_usage`). */
  readonly includeUsage: boolean
  readonly decision: DecisionView
}

/**
 * Writes a streamed answer in the client's format. `event` may return nothing (an event the
 * client does not see); `finish` is written only after the decision record is committed (D8).
 * When the provider speaks the client's format, its events pass through byte for byte.
 */
export interface StreamEncoder {
  start(): string
  event(ev: ModelEvent): string | Buffer | undefined
  finish(s: { readonly stopReason: StopReason; readonly usage: Usage }): string | Buffer
  error(code: ErrorCode): string
}

/** One client-facing API format. */
export interface Wire {
  readonly format: ClientFormat
  /** Throws TollgateError (`invalid_request` with a param path, `attachment_rejected`, …). */
  parse(body: unknown, headers: Record<string, string | string[] | undefined>): ModelRequest
  respond(res: ModelResponse, ctx: ReplyContext): string | Buffer
  stream(ctx: ReplyContext, passthrough: boolean): StreamEncoder
  /** `reason`: a policy reason code (e.g. `safety_violent_crimes`) shown with a block. */
  error(code: ErrorCode, requestId: string, param?: string, reason?: string): string
  /** An idempotent replay: the recorded decision in this API's shape — with no output, which Tollgate never keeps. */
  replay(d: DecisionRecord): string
}
