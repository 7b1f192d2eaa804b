import type { Classifier, Facts } from '../classify/facts.ts'
import { Content } from '../core/content.ts'
import type { Environment } from '../core/model.ts'
import type { PolicyDocument } from './document.ts'
import { evaluatePolicy } from './evaluate.ts'
import { decisionJson, factsJson, type DecisionJson, type FactsJson } from './present.ts'
import { factsFromJson } from './sample-facts.ts'
import type { PolicyProblem } from './validate.ts'

/** One sandbox sample: a prompt (classified in memory) or facts given directly; and who is asking. */
export interface Sample {
  readonly prompt?: string
  readonly facts?: unknown
  readonly role?: string | null
  readonly cohorts?: readonly string[]
}

/** One sample's outcome: the decision and the facts it was taken on. Never the prompt. */
export interface SampleResult {
  index: number
  decision: DecisionJson
  facts: FactsJson
  /** Time `evaluatePolicy` took for this sample, in milliseconds (the classifier's time is in facts). */
  policy_ms: number
}

export type DryRun = { ok: true; results: SampleResult[] } | { ok: false; problems: PolicyProblem[] } | { ok: false; needsClassifier: true }

/**
 * Tries a policy on samples (GW-4 sandbox): classify each prompt in memory, evaluate, report.
 * Nothing is stored and nothing is forwarded anywhere; prompts are dropped as soon as they are
 * classified. Facts samples are checked first, so a bad sample costs no classification.
 */
export async function dryRun(doc: PolicyDocument, samples: readonly Sample[], environment: Environment, classifier: Classifier | undefined, signal?: AbortSignal): Promise<DryRun> {
  const given: (Facts | undefined)[] = []
  const problems: PolicyProblem[] = []
  samples.forEach((s, i) => {
    if (s.facts === undefined) return given.push(undefined)
    const r = factsFromJson(s.facts, `$.samples[${i}].facts`)
    if (r.ok) given.push(r.facts)
    else {
      problems.push(...r.problems)
      given.push(undefined)
    }
  })
  if (problems.length > 0) return { ok: false, problems }
  if (classifier === undefined && samples.some((s) => s.facts === undefined)) return { ok: false, needsClassifier: true }
  const results: SampleResult[] = []
  for (const [index, s] of samples.entries()) {
    const facts = given[index] ?? (await classifier!.classify({ segments: [Content.of(s.prompt ?? '')], images: [], attachmentTypes: [] }, signal ? { signal } : undefined))
    const t0 = performance.now()
    const decision = evaluatePolicy(doc, facts, { role: s.role ?? null, cohorts: s.cohorts ?? [], environment })
    const policyMs = performance.now() - t0
    results.push({ index, decision: decisionJson(decision), facts: factsJson(facts), policy_ms: Math.round(policyMs * 1000) / 1000 })
  }
  return { ok: true, results }
}
