import type { Domain, Intent } from '../classify/facts.ts'

/**
 * The question a challenge asks, from templates (offline default). It is built from the
 * request's domain and intent only — never from its words — so it can be shown, logged as a
 * template id, and asked again without holding any text beyond the request itself.
 */
const BY_DOMAIN: Record<Domain, string> = {
  coding: 'Before I write this: how would you approach it yourself? Name the steps or the structure you have in mind, and the part you are least sure about.',
  math: 'Before I solve this: which method would you try first, and why? Sketch your first steps and what you expect the answer to look like.',
  writing: 'Before I draft this: what is the main point you want to make, who is it for, and how would you structure it?',
  science: 'Before I answer: what do you already know about the mechanism involved, and what would you predict, and why?',
  medical: 'Before I answer: what do you understand so far about the situation, and what are you trying to decide?',
  legal: 'Before I answer: what do you think the key issue is, and which facts seem to matter most, and why?',
  finance: 'Before I answer: how would you reason about this yourself — which numbers or assumptions drive the result?',
  other: 'Before I answer: how would you approach this yourself? Describe your first step and why you would take it.',
}

const BY_INTENT: Record<Intent, string> = {
  do_it: '',
  learn: ' Say what you already understand, even partly.',
  debug: ' What have you tried so far, and what did you expect to happen instead?',
}

export function challengeQuestion(domain: Domain, intent: Intent): string {
  return BY_DOMAIN[domain] + BY_INTENT[intent]
}
