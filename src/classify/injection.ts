import { globalCopy } from './regex.ts'

/**
 * Prompt-injection flag: phrases that try to override the instructions a model was given, leak
 * its system prompt, or switch it into an "unrestricted" persona, and chat-template tokens
 * smuggled into user text. A flag, not a verdict: the policy decides what to do with it.
 * Runs on the normalised text of every segment (see normaliseForRules).
 */
const INJECTION: readonly RegExp[] = [
  /\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.?!\n]{0,25}\b(?:all |any |the |your |my )?(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|developer|safety)?\s*(?:instructions?|prompts?|rules|directives?|directions|guidelines|guardrails|content polic(?:y|ies)|programming|constraints)\b/,
  /\bforget (?:everything|all) (?:you (?:were|have been) told|you know|above|before)\b/,
  /\b(?:reveal|print|show|repeat|output|display|leak|dump|tell me|give me|what (?:is|are|were))\b[^.?!\n]{0,25}\b(?:your|the) (?:system prompt|initial prompt|hidden (?:prompt|instructions)|secret instructions|original instructions|developer (?:message|prompt|instructions)|instructions (?:you were given|above))\b/,
  /\b(?:print|repeat|output)\b[^.?!\n]{0,30}\b(?:instructions|text) (?:you were given|above (?:this|starting))\b|\brepeat the (?:text|words|instructions) above\b/,
  /\byou are (?:now )?(?:dan\b|in (?:developer|god|jailbreak|unrestricted) mode|jailbroken|unfiltered|no longer bound)|\bdo anything now\b|\b(?:developer|god|jailbreak) mode\b|\bjailbreak(?:ing|ed)? (?:prompt|mode|you)\b/,
  /\b(?:act|pretend|roleplay|behave)(?: to be| as| like| you are)?\b[^.?!\n]{0,40}\b(?:without|with no|free of|free from) (?:any )?(?:restrictions|filters|limits|rules|guidelines|censorship|content polic(?:y|ies))\b/,
  /\b(?:system override|new instructions:|admin override|end of (?:system )?prompt|begin (?:new )?system prompt)\b/,
  /<\|im_start\|>|<\|im_end\|>|<\|system\|>|\[inst\]|\[\/inst\]|<<sys>>|<\/?system>/,
  /\b(?:ai|assistant|chatbot|llm|model)\s*[:,]\s*(?:please )?(?:ignore|disregard|forget)\b/,
]

/** Educational or defensive mentions of injection phrases are not injections. */
const ABOUT_INJECTION = /\b(?:prompt injection|jailbreak attacks?|defend\w*|protect\w* against|mitigat\w*|detect\w*|guard against|example of an? (?:attack|injection)|\.gitignore|git ignore|ignore (?:all )?(?:previously )?tracked|eslint|linter|warnings?)\b/

const WINDOW = 80

export function detectInjection(normalised: string): boolean {
  for (const pattern of INJECTION) {
    const re = globalCopy(pattern)
    let m: RegExpExecArray | null
    while ((m = re.exec(normalised)) !== null) {
      if (m[0].length === 0) re.lastIndex++
      const around = normalised.slice(Math.max(0, m.index - WINDOW), m.index + m[0].length + WINDOW)
      if (!ABOUT_INJECTION.test(around)) return true
    }
  }
  return false
}
