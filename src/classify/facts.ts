import type { Content } from '../core/content.ts'
import type { ImageType } from '../core/model.ts'

/**
 * What the classifier learns about a request: labels, scores and codes — never text (GW-3).
 * PII spans are character offsets kept in memory only, for redaction; they are never stored
 * or logged (the decision record keeps finding codes and counts).
 */
export const DOMAINS = ['coding', 'math', 'writing', 'science', 'medical', 'legal', 'finance', 'other'] as const
export type Domain = (typeof DOMAINS)[number]

export const INTENTS = ['do_it', 'learn', 'debug'] as const
export type Intent = (typeof INTENTS)[number]

/** MLCommons AILuminate hazard categories (S1–S14). */
export const SAFETY_CODES = ['S1', 'S2', 'S3', 'S4', 'S5', 'S6', 'S7', 'S8', 'S9', 'S10', 'S11', 'S12', 'S13', 'S14'] as const
export type SafetyCode = (typeof SAFETY_CODES)[number]
export const SAFETY_NAMES: Readonly<Record<SafetyCode, string>> = {
  S1: 'violent_crimes', S2: 'non_violent_crimes', S3: 'sex_related_crimes', S4: 'child_sexual_exploitation', S5: 'defamation',
  S6: 'specialized_advice', S7: 'privacy', S8: 'intellectual_property', S9: 'indiscriminate_weapons', S10: 'hate',
  S11: 'suicide_self_harm', S12: 'sexual_content', S13: 'elections', S14: 'code_interpreter_abuse',
}
export const SEVERITIES = ['low', 'medium', 'high'] as const
export type Severity = (typeof SEVERITIES)[number]

export interface SafetyFinding {
  readonly code: SafetyCode
  readonly severity: Severity
  /** 0..1 */
  readonly score: number
  readonly source: 'rules' | 'lexicon' | 'embedding' | 'llm'
}

/** Presidio entity names, plus keyword-gated PHI identifiers of our own. */
export const PII_KINDS = [
  'EMAIL_ADDRESS', 'PHONE_NUMBER', 'US_SSN', 'CREDIT_CARD', 'IBAN_CODE', 'IP_ADDRESS', 'PERSON',
  'MEDICAL_RECORD_NUMBER', 'HEALTH_PLAN_ID', 'DATE_OF_BIRTH', 'US_PASSPORT', 'US_DRIVER_LICENSE',
] as const
export type PiiKind = (typeof PII_KINDS)[number]

/** A character range in one text segment of the input (see ClassifierInput.segments). Memory only. */
export interface Span {
  readonly segment: number
  readonly start: number
  readonly end: number
}

export interface PiiFinding {
  readonly kind: PiiKind
  readonly count: number
  /** 0..1: validated (checksum) ≈ 0.99, keyword-gated ≈ 0.8, name heuristics lower. */
  readonly confidence: number
  readonly spans: readonly Span[]
}

export const DETECTORS = ['domain', 'intent', 'safety', 'pii', 'injection', 'image'] as const
export type Detector = (typeof DETECTORS)[number]

export interface Facts {
  readonly domain: Domain
  readonly domainScore: number
  /** Top-1 minus top-2 score: small = uncertain (escalate to the LLM classifier). */
  readonly domainMargin: number
  readonly intent: Intent
  readonly intentScore: number
  readonly safety: readonly SafetyFinding[]
  readonly promptInjection: boolean
  readonly pii: readonly PiiFinding[]
  readonly attachments: { readonly count: number; readonly mimeTypes: readonly string[]; readonly imageLabels: readonly string[] }
  /** Which classifier produced these facts, e.g. `embedded` or `llm:anthropic`. */
  readonly classifier: string
  readonly latencyMs: number
  /** Detectors that failed: policy rules that depend on them apply their failure mode (GW-4). */
  readonly errors: readonly Detector[]
  /**
   * The model (embedding) was not run because the policy does not need it: domain is unknown and
   * intent is known only when a cue rule decided it. Not a failure.
   */
  readonly modelSkipped?: boolean
  /** Profanity without a hazard category (obscenity's word list; slurs are S10 findings instead). */
  readonly profanity?: boolean
}

/**
 * The closed vocabulary of image labels (an LLM is asked to choose from it, never to describe):
 * a label can never carry text read from the image.
 */
export const IMAGE_LABELS = [
  'photo', 'screenshot', 'document', 'id_document', 'receipt_or_invoice', 'chart_or_diagram', 'code', 'handwriting',
  'person', 'face', 'child', 'medical_image', 'text_heavy', 'nudity', 'violence', 'weapon', 'other',
] as const
export type ImageLabel = (typeof IMAGE_LABELS)[number]

/** What a classifier reads: every text segment (system first, then message text parts in order) and the images. */
export interface ClassifierInput {
  readonly segments: readonly Content[]
  readonly images: readonly { readonly mediaType: ImageType; readonly data: Content }[]
  readonly attachmentTypes: readonly string[]
}

export const LLM_MODES = ['off', 'low_margin', 'always'] as const
export type LlmModeSetting = (typeof LLM_MODES)[number]

export interface ClassifyOptions {
  readonly signal?: AbortSignal
  readonly model?: boolean
  /** The org's choice of LLM escalation (GW-3), overriding the instance's; an embedded-only classifier ignores it. */
  readonly llm?: LlmModeSetting
}

/** The classifier seam: embedded (offline default) or LLM-backed. Must never write input anywhere. */
export interface Classifier {
  readonly name: string
  /** `model: false` skips the embedding model (domain, intent tie-break, harm hints, LLM escalation): the rules and PII still run. */
  classify(input: ClassifierInput, opts?: ClassifyOptions): Promise<Facts>
  /** Resolves once the classifier can answer (with the embedded model, when it is preloaded). Optional. */
  ready?(): Promise<void>
  /** Loads the embedding model now if it is loaded lazily (a policy needs it). Optional. */
  loadModel?(): Promise<void>
  close(): Promise<void>
}
