import type { Content } from './content.ts'

/** The wire formats Tollgate speaks to providers. Clients use `anthropic`, `openai` or Tollgate's `native`. */
export type WireFormat = 'anthropic' | 'openai' | 'gemini'
export type ClientFormat = 'anthropic' | 'openai' | 'native'

export type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use' | 'refusal' | 'other'

/** Image MIME types accepted anywhere, checked against the bytes' magic numbers. */
export const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'] as const
export type ImageType = (typeof IMAGE_TYPES)[number]

export type Part =
  | { readonly kind: 'text'; readonly text: Content }
  /** Base64 image bytes, held in memory only. */
  | { readonly kind: 'image'; readonly mediaType: ImageType; readonly data: Content }

export interface Message {
  readonly role: 'user' | 'assistant'
  readonly parts: readonly Part[]
}

/**
 * A request in Tollgate's own terms, whatever the client's wire format. Everything a person
 * wrote is `Content`. `passthrough` keeps the client's parsed body when it is in a provider's
 * own format, so fields Tollgate does not model (tools, metadata, new parameters) reach that
 * provider unchanged; a provider of another format uses only the modelled fields.
 */
export interface ModelRequest {
  readonly model: string
  readonly system: Content | undefined
  readonly messages: readonly Message[]
  readonly maxTokens: number | undefined
  readonly temperature: number | undefined
  readonly topP: number | undefined
  readonly stop: readonly string[] | undefined
  readonly stream: boolean
  /** Tools, tool results, remote images or several choices: only a same-format provider can carry them. */
  readonly sameFormatOnly: boolean
  /** Attachment MIME types from the allowlist, in order (images and native attachments). */
  readonly attachmentTypes: readonly string[]
  readonly passthrough: {
    readonly format: WireFormat
    readonly body: Record<string, unknown>
    /** Provider-specific request headers from the client (e.g. `anthropic-version`), validated. */
    readonly headers: Readonly<Record<string, string>>
  } | undefined
}

export interface Usage {
  readonly inputTokens: number | undefined
  readonly outputTokens: number | undefined
}

export interface ModelResponse {
  readonly text: Content
  readonly stopReason: StopReason
  readonly usage: Usage
  /** The provider's own response body, when the client speaks the same format (sent unchanged). */
  readonly raw: { readonly format: WireFormat; readonly body: Buffer } | undefined
}

/**
 * One event of a streamed answer. `raw` is the provider's own SSE event bytes (forwarded as-is
 * to a client of the same format); the other fields are what Tollgate understood of it.
 */
export interface ModelEvent {
  readonly format: WireFormat | 'local'
  readonly raw: Buffer | undefined
  readonly text?: Content
  readonly stopReason?: StopReason
  readonly usage?: Partial<Usage>
  /** The provider's end-of-stream marker (`message_stop`, `[DONE]`): held back until the decision is recorded. */
  readonly terminal?: boolean
}

/** Key environments: sandbox (`tg_test_…`) and production (`tg_live_…`), fully separated (KEY-2). */
export const ENVIRONMENTS = ['sandbox', 'production'] as const
export type Environment = (typeof ENVIRONMENTS)[number]

export const UPSTREAM_PROVIDERS = ['anthropic', 'openai', 'gemini'] as const
export type UpstreamProvider = (typeof UPSTREAM_PROVIDERS)[number]
export type ProviderName = UpstreamProvider | 'local'
