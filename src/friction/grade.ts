/**
 * The offline reasoning grader (used when no LLM grader is configured). It is a heuristic, and
 * documented as one: it rewards a reply that is long enough to carry reasoning, uses the
 * connectives of explanation (because, so, first, then, if …), and engages with the original
 * request (shared content words); it fails refusals and "just answer" replies. It cannot judge
 * whether the reasoning is right — that needs the LLM rubric.
 */
export interface Grade {
  /** Reasoning-quality score in [0, 1]. */
  readonly score: number
  readonly passed: boolean
  /** Why it failed, as a code the client can show feedback for. */
  readonly feedback: 'ok' | 'too_short' | 'no_reasoning' | 'off_topic' | 'refused'
}

export const PASS_SCORE = 0.5

const CONNECTIVES = /\b(because|since|so|therefore|thus|hence|first|then|next|finally|if|otherwise|which means|so that|in order to|assume|expect|would|step|approach|plan|try|idea|think|reason)\b/gi
const REFUSAL = /\b(just (answer|do it|tell me|give me)|i don'?t know|no idea|skip|whatever|idk)\b/i
const STOP = new Set('the a an and or but of to in on for with is are was were be it this that what how why can you i me my we our your do does did have has not at by as from'.split(' '))

function contentWords(text: string): Set<string> {
  return new Set(text.toLowerCase().split(/[^a-z0-9]+/).filter((w) => w.length > 3 && !STOP.has(w)))
}

export function gradeReasoning(reply: string, original: string): Grade {
  const words = reply.trim().split(/\s+/).filter((w) => w.length > 0)
  if (REFUSAL.test(reply) && words.length < 25) return { score: 0.05, passed: false, feedback: 'refused' }
  if (words.length < 8) return { score: Math.min(0.2, words.length / 40), passed: false, feedback: 'too_short' }
  const length = Math.min(1, words.length / 40)
  const connectives = Math.min(1, (reply.match(CONNECTIVES)?.length ?? 0) / 3)
  const mine = contentWords(reply)
  const theirs = contentWords(original)
  let shared = 0
  for (const w of mine) if (theirs.has(w)) shared++
  const relevance = theirs.size === 0 ? 1 : Math.min(1, shared / Math.min(4, theirs.size))
  const score = Math.round((0.3 * length + 0.4 * connectives + 0.3 * relevance) * 100) / 100
  const passed = score >= PASS_SCORE && connectives > 0
  const feedback = passed ? 'ok' : connectives === 0 ? 'no_reasoning' : relevance < 0.25 ? 'off_topic' : 'no_reasoning'
  return { score, passed, feedback }
}

export const FEEDBACK: Record<Grade['feedback'], string> = {
  ok: 'Thanks — that reasoning is enough to go on.',
  too_short: 'That is too short to show your approach. Write a few sentences on how you would start and why.',
  no_reasoning: 'Try to explain why: which steps you would take and what you expect from each.',
  off_topic: 'That does not seem to address your original request. How would you approach that problem?',
  refused: 'The org asks for your own approach first. Describe how you would start, even if you are unsure.',
}
