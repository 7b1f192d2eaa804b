import type { UpstreamHttp } from '../providers/http.ts'
import { EmbeddedClassifier, type EmbeddedOptions } from './embedded.ts'
import type { Classifier } from './facts.ts'
import { LlmClassifier, type LlmEndpoint, type LlmMode } from './llm.ts'

export type { Classifier, ClassifierInput, Facts } from './facts.ts'
export { EmbeddedClassifier, screenOutput } from './embedded.ts'
export { LlmClassifier } from './llm.ts'
export { redactSegments, placeholder } from './redact.ts'

export interface ClassifierOptions {
  /** The offline classifier (always built: it is the default, and the LLM classifier's first pass and fallback). */
  readonly embedded?: EmbeddedOptions
  /**
   * LLM-backed classification when a provider key is configured: Anthropic for text, Gemini for
   * images. Without `anthropic` and `gemini` the embedded classifier is returned alone.
   */
  readonly llm?: {
    readonly http: UpstreamHttp
    readonly mode: LlmMode
    readonly anthropic?: LlmEndpoint
    readonly gemini?: LlmEndpoint
    readonly timeoutMs?: number
    readonly lowMargin?: number
    readonly maxChars?: number
    readonly onFallback?: (e: { readonly provider: 'anthropic' | 'gemini'; readonly code: string }) => void
  }
}

/**
 * Builds the classifier (GW-3): the embedded one (offline, USE-lite in worker threads), or an
 * LLM-backed one that runs the embedded one first and falls back to it. The caller owns the
 * result and must `close()` it (that terminates the worker threads); the HTTP client is not closed.
 */
export function createClassifier(opts: ClassifierOptions = {}): Classifier {
  const embedded = new EmbeddedClassifier(opts.embedded)
  const llm = opts.llm
  if (!llm || (!llm.anthropic && !llm.gemini)) return embedded
  return new LlmClassifier({ ...llm, embedded })
}
