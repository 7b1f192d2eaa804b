// The closed vocabularies Facts may contain: any other string in a Facts value would be text.
import { DOMAINS, IMAGE_LABELS, INTENTS, PII_KINDS, SAFETY_CODES, SEVERITIES, type Detector } from '../../src/classify/facts.ts'

export const DETECTORS_FOR_TEST: readonly Detector[] = ['domain', 'intent', 'safety', 'pii', 'injection', 'image']
const SOURCES = ['rules', 'lexicon', 'embedding', 'llm']
const CLASSIFIERS = ['embedded', 'llm:anthropic', 'llm:gemini', 'llm:anthropic+gemini']
/** Attachment MIME types the gateway allowlists (they are facts, not content). */
const MIME_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp', 'text/plain', 'text/markdown', 'text/csv', 'application/json']

export function closedVocabulary(): Set<string> {
  return new Set<string>([...DOMAINS, ...INTENTS, ...SAFETY_CODES, ...SEVERITIES, ...PII_KINDS, ...IMAGE_LABELS, ...DETECTORS_FOR_TEST, ...SOURCES, ...CLASSIFIERS, ...MIME_TYPES])
}
