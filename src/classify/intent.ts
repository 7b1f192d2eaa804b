import type { Intent } from './facts.ts'

/** Error vocabulary. "\w*(?:Error|Exception)" catches TypeError, ModuleNotFoundError, NullPointerException. */
export const ERROR_WORDS = /[a-z]\w*(?:Error|Exception)\b|\b(?:Error|Exception):|\bE\d{2,}\b/
const E_DIGITS = /E\d\d/
/**
 * Whether `text` could hold ERROR_WORDS: every match contains "Error", "Exception" or an E and
 * two digits. ERROR_WORDS tries `[a-z]\w*` from every letter of every word (~10 µs per KB);
 * these checks cost a fraction of that and rule out almost every prompt.
 */
export const mayHoldErrorWords = (text: string): boolean => text.includes('Error') || text.includes('Exception') || E_DIGITS.test(text)

/**
 * Intent by cue phrases (debug > learn > do_it). Intent is about how a request is phrased, not
 * what it is about, and sentence embeddings mostly encode the subject, so rules decide; the
 * embedding only breaks ties when no cue fires (see embedded.ts).
 *
 *  - debug: something the person has is not working or is wrong, and they want the cause.
 *  - learn: they want to understand a concept, a mechanism or a reason.
 *  - do_it: they want an artifact or an answer produced (the default).
 */
const DEBUG_CUES: readonly RegExp[] = [
  /\btraceback\b|\bstack ?trace\b|\bsegfault\b|\bsegmentation fault\b|\bcore dumped\b|\bpanic(?:ked)?:|\bexit(?:s|ed)? (?:immediately )?with (?:code|status)\b|\bcode 1\d\d\b|\berror (?:code )?[a-z]?\d+\b/i,
  /\b(?:errors?|exceptions?|bugs?|buggy|crash(?:es|ed|ing)?|deadlocks?|freez(?:es|ing)|hangs|broke|broken|fail(?:s|ed|ing)?|rejected|won'?t (?:start|drain|compile|run|load|work|boot|connect|turn on|rise)|doesn'?t (?:work|balance|compile|run|load|start|match)|does not (?:work|balance|compile|run|load|start|match)|isn'?t working|is not working|stopped working|not working|keeps? (?:dropping|failing|crashing|slipping|getting|jamming|disconnecting|going off|timing out|returning)|infinite loop|overflows?|memory leak|off by (?:one|a factor)|is off by|inconsistent)\b/i,
  /\bwhy (?:doesn'?t|does not|won'?t|isn'?t|didn'?t|can'?t)\b[^.?!]{0,50}\b(?:work|working|apply|compile|run|load|start|match)\b/i,
  /\b(?:what am i (?:doing wrong|missing)|what did i do wrong|where (?:is|did) (?:my|i|the) (?:mistake|error|go wrong)|where is my mistake|where did i go wrong|what went wrong|what(?:'s| is) wrong with|what is going wrong|what(?:'s| is) causing|what could (?:be )?caus(?:e|ing)|why (?:is|does|am|are|do|did) (?:my|this|the|i)\b[^.?!]{0,60}\b(?:fail|wrong|break|crash|slow|error|throw|return|null|undefined|nan|negative|off)|can you (?:check|find) (?:my|the) (?:steps|mistake|problem|error)|find the (?:bug|problem|issue)|troubleshoot|debug|fix (?:it|this|my|the)\b|which is wrong|came out as)\b/i,
  /\b(?:returns?|gives?|gets?|getting|shows?) (?:me )?(?:the )?(?:wrong|no rows|null|undefined|nan|none|a different|different|incorrect|unexpected|negative)\b/i,
]

const LEARN_CUES: readonly RegExp[] = [
  /\b(?:explain|explaining|explanation|help me understand|i (?:want|would like|'d like) to (?:learn|understand)|teach me|walk me through how|eli5|like i'?m five|intuition|what'?s the idea|the idea behind|concept of|understand (?:how|why|what)|how come)\b/i,
  /\b(?:why (?:do|does|did|is|are|was|were|can'?t|don'?t|doesn'?t|isn'?t)|how (?:do|does|did|is|are|can|could|should) [^.?!]{0,60}\b(?:work|works|happen|form|develop|affect|relate|differ|apply|produce|communicate|know|make money|move|spread|become|get|justify|compare|protect|grow)|what (?:is|are) (?:the )?(?:difference|differences|distinction|tradeoffs?|trade-offs|role|purpose|point|meaning|history|origin|rules?|signs|warning signs|symptoms|side effects|penalties|consequences)|difference between|what (?:does|do) [^.?!]{0,60}\bmean\b|what does it mean|what happens (?:during|when|if|to)|how (?:long|much|many) [^.?!]{0,40}\b(?:is|are|does|do) (?:too|normal|safe|contagious)|is (?:it|a|an) [^.?!]{0,50}\b(?:normal|legal|safe|binding)\b|can (?:a|my|the|i) [^.?!]{0,80}\?|do i need|who (?:was|is|were|inherits|owns)|what counts as|what rights|what are my rights|how should i (?:talk|think)|how to play|how do you play|what is a\b|what is an\b|what are\b|what is\b)/i,
]

/** Imperative openings (of the request or of any sentence in it) that mean do_it even when a weak learn cue appears later ("List the signs of…"). */
const DO_IT_OPENING = /(?:^|[.!?:]\s+|\n\s*)(?:please\s+)?(?:write|draft|create|make|generate|build|give me|list|compose|translate|summari[sz]e|rewrite|convert|calculate|compute|estimate|find|suggest|recommend|plan|prepare|design|add|implement|scaffold|solve|differentiate|evaluate|prove|balance|classify|shorten|polish|turn|compare|outline|set up|configure|fill in|draft)\b/i

/** A question for a quantity, in a prompt that gives numbers, asks for a computation (do_it). */
const QUANTITY_QUESTION = /\b(?:how (?:many|much|long|far|fast|old|tall|big|heavy)|what (?:is|are|was) the (?:sum|product|value|area|volume|perimeter|probability|chance|odds|total|average|mean|median|derivative|integral|limit|result|answer|remainder|slope|distance|speed|cost|price|payment|return|yield|rate))\b/i

/** "How do I …?" asks for steps to get something done (do_it), unless a learn cue fired first. */
const HOW_DO_I = /^\s*(?:so |ok |okay |hi,? |hey,? )?how (?:do|can|should|would) (?:i|we|you)\b/i

export type IntentCue = 'debug_cue' | 'imperative' | 'learn_cue' | 'how_to'

/**
 * Intent from the rules, in order: a debug cue, an imperative opening (do_it), a learn cue.
 * Undefined when nothing fires: the caller breaks the tie (embedding) or defaults to do_it.
 */
export function intentByRules(text: string): { readonly intent: Intent; readonly cue: IntentCue } | undefined {
  if ((mayHoldErrorWords(text) && ERROR_WORDS.test(text)) || DEBUG_CUES.some((re) => re.test(text))) return { intent: 'debug', cue: 'debug_cue' }
  if (DO_IT_OPENING.test(text) || (/\d/.test(text) && QUANTITY_QUESTION.test(text))) return { intent: 'do_it', cue: 'imperative' }
  if (LEARN_CUES.some((re) => re.test(text))) return { intent: 'learn', cue: 'learn_cue' }
  if (HOW_DO_I.test(text)) return { intent: 'do_it', cue: 'how_to' }
  return undefined
}
