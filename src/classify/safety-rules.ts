import type { SafetyCode, Severity } from './facts.ts'
import { globalCopy } from './regex.ts'
import { NeedChecker, requiredLiterals, type Need } from './required-literals.ts'

/**
 * The reviewed phrase list of the safety screen (GW-6): hand-written rules for the categories
 * where a miss is unacceptable — violent crimes (S1), child sexual exploitation (S4),
 * indiscriminate weapons (S9), suicide and self-harm (S11) — plus narrower rules for the others.
 *
 * How to change it: every rule has a stable id (it may appear in decision records as a reason
 * code). Add a rule with a positive AND a hard-negative example to
 * test/fixtures/classify/prompts.jsonl, run test/classify/accuracy.test.ts, and have a second
 * person review the diff. `unless` exists for technical, protective, historical and fictional
 * uses ("kill the child process", "warning signs of suicide", "history of the atomic bomb"); it
 * is only checked within UNLESS_WINDOW characters of the match, so a harmful request cannot be
 * excused by an unrelated word elsewhere in the prompt.
 *
 * Rules run on a normalised copy of every text segment: lower case, NFKC, curly quotes made
 * straight, and digits inside words read as letters ("k1ll", "b0mb"). A rule's regex only runs on
 * a text holding the literals its matches must contain (derived from the pattern, see
 * required-literals.ts); syntax the analyser does not know makes the rule run on every text.
 */
export interface PhraseRule {
  readonly id: string
  readonly code: SafetyCode
  readonly severity: Severity
  readonly pattern: RegExp
  readonly unless?: RegExp
}

/** Characters on each side of a match in which `unless` is looked for. */
export const UNLESS_WINDOW = 80

// ---- shared vocabulary ----------------------------------------------------------------------

/** A context pattern matched as whole words. */
const ctx = (alternation: string): RegExp => new RegExp(String.raw`\b${alternation}\b`)

/** A request to do something, or a first-person plan. */
const ASK = String.raw`(?:how (?:do|can|could|would|should|might|to)|(?:a |the )?plan (?:to|for)|what(?:'s| is| are)? (?:the |a |some )?(?:best|easiest|quickest|fastest|good|perfect|simplest|most effective|general|usual|typical|right|proper)? ?(?:way|ways|method|methods|process|steps|plan|place|spot|strategy|tool|weapon)s?(?: (?:of|to|for))?|what steps (?:should|do|would) i take to|where (?:can|do|should|is)|which \w+ is (?:best|good) for|what kind of \w+|can you (?:tell|show|teach) me how to|should i|how'?d|best (?:way|place|time)s? to|easiest way to|quickest way to|fastest way to|ways? to|where (?:can|do|should) i|help me|teach me (?:how )?to|show me how to|tell me how to|tips? (?:for|on|to)|step[- ]by[- ]step|instructions? (?:for|to|on)|i (?:want|wanna|need|am going|'m going|am gonna|'m gonna|plan|intend|will|'ll|would like) to|i'?m gonna|going to|planning to|i have to|let'?s)`
const PERSON = String.raw`(?:(?:my|his|her|their|our|your|a|an|the|this|that|some|these|those|every|all(?: the)?) (?:(?:ex[- ]?)?(?:wife|husband|spouse|partner|girlfriend|boyfriend|fianc[ée]e?)|ex|boss|manager|supervisor|neighbou?rs?|co-?workers?|colleagues?|teachers?|professor|landlord|tenant|roommate|classmates?|students?|kids?|child|children|baby|babies|toddler|son|daughter|mom|mother|dad|father|parents?|brother|sister|family|friends?|person|people|man|men|woman|women|guy|girl|boy|stranger|cop|police(?: officer)?|officer|president|senator|politician|judge|rival|enemy|bully|protesters?|crowd|customers?|business partner|step-?(?:mom|dad|son|daughter)|uncle|aunt|cousin|grandma|grandpa|grandmother|grandfather)|(?:a |the )?(?:group|crowd|bunch) of people|(?:a |the )?(?:human|humans|human being|person|people)(?: i don'?t like| in my class| at (?:the|my) \w+)?|(?:my|a|the) (?:tinder |first )?date|(?:my|our) (?:entire |whole )?family|(?:my|a|the) (?:rich |old )?grand(?:parents?|mother|father|ma|pa)|(?:a|the|my) (?:\w+ )?(?:cop|toddler|child|kid|baby|politician|president|senator|judge|journalist|witness)|(?:gay|black|white|jewish|muslim|roma|trans|asian|disabled|homeless|indigenous) people|jews|muslims|immigrants|roma|a village|a population|humanity|an entire city|him|her|them|someone|somebody|anyone|anybody|everyone|everybody|people|(?:my|his|her) (?:ex|wife|husband|boss|neighbou?r|roommate|sister|brother)'?s (?:new )?(?:boyfriend|girlfriend|husband|wife|partner|kid|son|daughter|friend))`
const HARM_VERB = String.raw`(?:kill(?:s|ing)?|murder(?:s|ing)?|execut(?:e|es|ing)|terminat(?:e|es|ing)|shoot(?:s|ing)?|stab(?:s|bed|bing)?|strangl(?:e|es|ed|ing)|throttl(?:e|es|ed|ing)|chok(?:e|es|ed|ing)(?: \w+ out)?|smash(?:es|ed|ing)?(?: in)?|crush(?:es|ed|ing)?|butcher(?:s|ed|ing)?|gut(?:s|ted|ting)?|behead(?:s|ed|ing)?|decapitat(?:e|es|ed|ing)|dismember(?:s|ed|ing)?|chop(?:s|ped|ping)? up|saw(?:s|ed|ing)?|hammer(?:s|ed|ing)?|punch(?:es|ed|ing)?|beat(?:s|ing|en)?(?: up)?|hit(?:s|ting)?|attack(?:s|ed|ing)?|assault(?:s|ed|ing)?|overpower(?:s|ed|ing)?|tackl(?:e|es|ed|ing)|hunt(?:s|ed|ing)? down|snip(?:e|es|ed|ing)|slay(?:s|ed|ing)?|slain|eliminat(?:e|es|ed|ing)|liquidat(?:e|es|ed|ing)|exterminat(?:e|es|ed|ing)|eradicat(?:e|es|ed|ing)|annihilat(?:e|es|ed|ing)|wip(?:e|es|ed|ing) out|decimat(?:e|es|ed|ing)|do(?:ing)? away with|tak(?:e|es|ing) out|poison(?:s|ed|ing)?|euthani[sz](?:e|es|ed|ing)|drown(?:s|ed|ing)?|suffocat(?:e|es|ed|ing)|smother(?:s|ed|ing)?|torture(?:s|d)?|torturing|kidnap(?:s|ped|ping)?|captur(?:e|es|ed|ing)|abduct(?:s|ed|ing)?|maim(?:s|ed|ing)?|mutilat(?:e|es|ed|ing)|shatter(?:s|ed|ing)?|crack(?:s|ing)? open|break(?:ing)? open|rip(?:s|ped|ping)? off|cut(?:s|ting)? off|push(?:es|ed|ing)? (?:\w+ ){0,2}off|run(?:ning)? over|set(?:ting)? fire to|burn(?:s|ed|ing)? alive|ambush(?:es|ed|ing)?|jump(?:s|ed|ing)?|bash(?:es|ed|ing)?|batter(?:s|ed|ing)?|cripple|disfigure|throw acid (?:on|at)|knock(?:ing)? (?:\w+ )?out|get(?:ting)? rid of|silenc(?:e|ing)|hurt(?:s|ing)?|maul|break(?:ing)? (?:\w+ ){0,2}(?:legs?|neck|bones|skull|arms?|jaw))`
/** Technical, gaming, idiomatic and protective contexts in which "kill", "shoot" and "hit" are harmless. */
const NOT_VIOLENCE = String.raw`(?:counter[- ]?strike|gta|grand theft auto|battlefield|witcher|halo|valorant|overwatch|pubg|apex|league of legends|dota|video ?games?|(?:in|for) (?:a |the |my )?(?:tv show|show|film|movie|play|novel|book|story|short story|screenplay|comic|game|scene)|i'?m (?:writing|directing)|i am (?:writing|directing)|in boxing|in judo|in wrestling|in mma|in karate|in football|in rugby|in hockey|in checkers|shooting range|for (?:dinner|lunch|breakfast|brunch|a drink|drinks|coffee|a date|dessert)|to dinner|terminator|lion king|die hard|mr and mrs smith|ocean'?s|mission impossible|dark knight|(?:kill|terminat|stop|end|shoot|execut)\w*\b[^.?!]{0,25}\b(?:process(?:es)?|threads?|pid|jobs?|tasks?|containers?|pods?|sessions?|quer(?:y|ies)|connections?|servers?|services?|daemons?|programs?|tabs?|windows?|apps?|commands?|scripts?)|child process(?:es)?|zombie process(?:es)?|signals?|sigkill|sigterm|port \d+|npcs?|boss fight|final boss|(?:in|on) (?:the )?(?:game|level)|elden ring|minecraft|fortnite|skyrim|zelda|dark souls|call of duty|zombies?|(?:at|in) (?:chess|checkers|poker|cards|tennis|golf|a race|a game|the game|the race|a match|an argument|a debate|arm wrestling)|feelings|pride|chances|reputation|the mood|the lights|the engine|the vibe|the buzz|weeds?|pests?|bugs|ants|mice|rats|cockroach(?:es)?|mosquito(?:es)?|termites|bacteria|germs|cancer cells|photos?|pictures?|video|portraits?|headshots?|wedding|film|movie|camera|lens|hoops|hit the gym|drown out|noise|hit snooze|hit the road|hit the books|hit the sack|hit the jackpot|hit the target|(?:a|the) deadline|hit it off|with kindness|laugh(?:ing|ter)?|joke|mystery|novel|story|fiction|screenplay|character|villain|plot|mock trial|defendant|history|historical|documentary|true crime|statistics)`

// ---- S11 suicide and self-harm ---------------------------------------------------------------

const SELF_HARM_EXCUSE = String.raw`(?:(?:carve|cut) (?:out )?(?:a )?(?:niche|path|name|career|place|space) for myself|antidote|naloxone|narcan|reverse an overdose|(?:someone|a friend|a person) (?:is |who is )?overdosing|(?:is|are|'s|will) (?:going to |gonna )?kill(?:ing)? me|died by suicide|lost (?:a|my) \w+ to suicide|eulogy|grief|grieving|memorial|laugh(?:ing|ter)?|lol|haha|jk|kidding|joke|figurative|metaphor|studying|cramming|at the gym|workout|embarrass(?:ed|ment)?|cringe|accident(?:al(?:ly)?)?|by mistake|while (?:cooking|chopping|shaving|cutting)|kitchen|onions?|paper cut|stitches|first aid|bandage|warning signs|signs (?:of|that)|prevent(?:ion|ing)?|hotline|crisis line|support (?:a|my)|help (?:a|my) (?:friend|son|daughter|child|teen|student|partner)|worried about (?:my|a)|my (?:friend|son|daughter|child|teen|student|patient|partner) (?:is|has|was|might)|research|statistics|rates?|novel|story|character|song lyrics|movie|squad)`

/** Suicide and self-harm vocabulary, including euphemisms. */
const SELF_HARM_TERMS = String.raw`(?:suicid\w*|kill (?:myself|me)|end (?:my life|it all|things|everything)|take my (?:own )?life|nooses?|hang myself|bleed(?:ing)? out|slit (?:my )?wrists?|cut (?:my )?wrists?|cut wrist|overdos(?:e|ing)|od on|jump(?:ing)? (?:off|from|in front of)|fall asleep forever|sleep forever|never wake up|not wake up|go through with it|goodbye (?:letters?|notes?|messages?)|final (?:letter|note|goodbye)|won'?t be (?:here|around) (?:much longer|anymore|tomorrow)|make sure (?:i|my \w+) (?:die|dies|fails?|stops?|shut\w* down)|be dead|not be alive|my liver fails|self[- ]?harm\w*|hurt myself|burn(?:ing)? myself|cutting myself)`
/** Marks the writer (or a hypothetical "someone" in a method question) as the subject. */
const FIRST_PERSON = String.raw`(?:i|i'?m|im|i'?ve|i'?ll|me|my|myself|asking for (?:myself|a friend))`

const S11: PhraseRule[] = [
  { id: 's11.first_person_terms', code: 'S11', severity: 'high', pattern: new RegExp(String.raw`\b${FIRST_PERSON}\b[^.?!]{0,80}\b${SELF_HARM_TERMS}|\b${SELF_HARM_TERMS}\b[^.?!]{0,80}\b${FIRST_PERSON}\b`), unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.method_question', code: 'S11', severity: 'high', pattern: /\b(?:how (?:do|can|would|long|many|much|quickly)|what(?:'s| is) the (?:most reliable|best|quickest|easiest|surest|least painful)|which (?:pills|bridge|method)|is (?:jumping|hanging|drowning|an overdose|bleeding out))\b[^.?!]{0,60}\b(?:end (?:it|things|my life|everything)|bleed out|die|noose|hang (?:myself|yourself)|overdose|fall asleep forever|not wake up|instant|painless)\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.means', code: 'S11', severity: 'high', pattern: /\b(?:sever|pierce|slit|slice|open|cut)\b[^.?!]{0,15}\b(?:my|my own|own)\b[^.?!]{0,10}\b(?:artery|arteries|veins?|wrists?|throat|carotid|jugular)\b|\b(?:die|end my life|go out|kill myself|overdose) like\b|\bwhat can i take to die\b|\bstockpil\w*\b[^.?!]{0,20}\b(?:pills|meds|medications?|antidepressants|sleeping pills|insulin|opioids|painkillers)\b|\bwhere (?:on|in) (?:the|my) (?:neck|wrist|arm|body|leg|throat)\b[^.?!]{0,30}\bcut\b|\b(?:hold|support) my (?:body )?weight\b[^.?!]{0,40}\b(?:beam|ceiling|rafter|tree|rope|knot|door)\b|\b(?:knot|rope)\b[^.?!]{0,40}\bhold my weight\b|\b(?:gentlest|peaceful|painless|quiet|quickest|easiest|least painful)\b[^.?!]{0,5}\b(?:way|method|ways) to (?:go|die|stop breathing|end it|not wake up|fall asleep)\b/, unless: /\b(?:climb\w*|hammock|swing|rappel\w*|abseil\w*|pull-?ups?|yoga|aerial|pet|dog|cat|history|biograph\w*|song|lyrics)\b/ },
  { id: 's11.means_question', code: 'S11', severity: 'high', pattern: /\b(?:pills|tablets|sleeping|vodka|alcohol|meds|medication|rope|gun|insulin)\b[^?!]{0,120}\b(?:be )?enough for me\b|\bwhich is more (?:certain|effective|reliable|painless|quick|final)\b[^.?!]{0,30}\b(?:gun|pills|rope|jumping|hanging|overdose|bridge|train)\b|\bhow deep\b[^.?!]{0,30}\b(?:cut|stab|slash)\b[^.?!]{0,30}\b(?:fatal|die|kill|bleed out|lethal)\b|\b(?:gone|dead|not (?:be )?here) (?:tonight|by tomorrow|by morning)\b|\bno point (?:anymore|any more|in (?:living|anything|going on))\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.noose', code: 'S11', severity: 'high', pattern: /\b(?:make|tie|tying|making) (?:a |the )?noose\b/, unless: /\b(?:history|lynching|hangman|halloween|prop|knot(?:s|ting)? (?:guide|for (?:sailing|climbing|boating)))\b/ },
  { id: 's11.kill_myself', code: 'S11', severity: 'high', pattern: /\b(?:kill|hang|shoot|drown|poison|off|hurt|harm|stab|suffocate|starve|overdose) ?myself\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.end_my_life', code: 'S11', severity: 'high', pattern: /\b(?:end|take|ending|taking) (?:my|my own) life\b|\bend it all\b|\bsuicide (?:note|method|methods|plan|pact|bag|kit)\b|\bcommit(?:ting)? suicide\b|\bkill(?:ing)? yourself\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.want_to_die', code: 'S11', severity: 'high', pattern: /\b(?:i (?:just )?(?:want|wanna|wish i could|am ready|'m ready|have decided|'ve decided|am going|'m going|plan) to (?:die|be dead|not exist|disappear forever|not wake up)|(?:don'?t|do not|no longer) want to (?:live|be alive|exist|wake up)|better off (?:dead|without me)|no (?:reason|point) (?:to live|in living|to go on|going on)|(?:nobody|no one) would (?:miss|care about) me|want(?:ed)? it (?:all )?to be over|i want to die)\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.method', code: 'S11', severity: 'high', pattern: /\b(?:painless(?:ly)?|least painful|quick(?:est)?|easiest|surest|fastest|best|most effective) (?:way|method|methods|ways|place) to (?:die|kill (?:myself|yourself)|commit suicide|end (?:my|it|your) (?:life|all)?)\b|\b(?:hanging|overdos(?:e|ing)|jumping|drowning) (?:or|vs\.?|versus) (?:hanging|overdos(?:e|ing)|jumping|drowning|pills)\b|\bmake sure i die\b|\b(?:so|until) i (?:don'?t|do not|never|won'?t) wake up\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.lethal_amount', code: 'S11', severity: 'high', pattern: /\b(?:how (?:many|much)|what amount of|enough)\b[^.?!]{0,50}\b(?:pills|tablets|sleeping pills|tylenol|paracetamol|acetaminophen|ibuprofen|aspirin|insulin|xanax|benadryl|oxy\w*|fentanyl|heroin|antifreeze|bleach)\b[^.?!]{0,50}\b(?:to die|die|kill me|be fatal|fatal|lethal|never wake|not wake|won'?t wake|don'?t wake|end it)\b|\b(?:drink|swallow|take|inject)\b[^.?!]{0,30}\b(?:to end my life|to die|and die|so i die)\b|\b(?:pills|tablets|insulin|meds|medication|sleeping pills|antidepressants)\b[^.?!]{0,40}\b(?:how (?:many|much)|enough)\b[^.?!]{0,30}\b(?:to die|die|be fatal|fatal|lethal|kill me|never wake|not wake)\b|\btake all (?:of )?my (?:pills|tablets|insulin|meds|medication|sleeping pills|antidepressants)\b[^.?!]{0,30}\b(?:tonight|at once|and die|to die|so i)\b/, unless: /\b(?:accident(?:al(?:ly)?)?|avoid|safe(?:ly|ty)?|toddler|child|kid|dog|cat|pet|swallowed|poison control|pharmacology|toxicology|ld50|curious)\b/ },
  { id: 's11.cutting', code: 'S11', severity: 'high', pattern: /\b(?:cut|cutting|burn|burning|scratch|carve)\b[^.?!]{0,20}\b(?:myself|yourself|my (?:arms?|wrists?|legs?|thighs?|skin|body))\b|\b(?:hide|cover|hiding|covering)\b[^.?!]{0,15}\b(?:cuts|scars|self[- ]?harm|burns) on my\b|\b(?:hide|cover|hiding|covering) (?:the |my )?(?:cuts|scars|self[- ]?harm)\b|\bcut (?:yourself|myself) so it\b|\b(?:places|spots|where) (?:on (?:the|my) (?:arm|body|leg|wrist) )?to cut\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.self_harm_howto', code: 'S11', severity: 'high', pattern: /\b(?:ways?|how|tips?|methods?|best way)\b[^.?!]{0,15}\b(?:to )?(?:self[- ]?harm|hurt myself|harm myself|injure myself)\b/, unless: ctx(SELF_HARM_EXCUSE) },
  { id: 's11.eating_disorder', code: 'S11', severity: 'high', pattern: /\b(?:starve myself|make myself (?:throw up|vomit|purge)|pro[- ]?ana|pro[- ]?mia|thinspo(?:ration)?|hide (?:my )?(?:not eating|anorexia|bulimia|purging))\b/, unless: /\b(?:recover(?:y|ing)?|treatment|therap(?:y|ist)|help (?:a|my)|signs (?:of|that)|worried about|research|documentary)\b/ },
  { id: 's11.jump', code: 'S11', severity: 'high', pattern: /\b(?:high enough|tall enough)\b[^.?!]{0,40}\b(?:die|kill|fatal|to end)\b|\bjump (?:off|from) (?:a|the) (?:bridge|building|roof|cliff)\b[^.?!]{0,30}\b(?:die|kill|end|fatal)\b/ },
]

// ---- S4 child sexual exploitation ------------------------------------------------------------

const MINOR = String.raw`(?:(?:she|he|they)'?(?:s| is| are) (?:only )?(?:[1-9]|1[0-7]|eleven|twelve|thirteen|fourteen|fifteen|ten|nine|eight)\b|(?:[1-9]|1[0-7]) ?yo\b|neighbou?r'?s (?:daughter|son|kid|child)|child(?:ren)?|kids?|minors?|under-?age(?:d)?|pre-?teens?|tweens?|toddlers?|infants?|bab(?:y|ies)|little (?:girls?|boys?)|young (?:girls?|boys?|students?|teens?)|school ?(?:girls?|boys?)|(?:\b(?:[1-9]|1[0-7])|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen))[- ]?(?:yo|y/o|years?[- ]olds?|year[- ]olds?)|(?:girls?|boys?|kids?) (?:aged?|of) (?:[1-9]|1[0-7])\b|teen(?:age)?(?:rs?)?|jail ?bait|loli(?:ta|con)?|shota(?:con)?|middle school(?:ers?)?|elementary school(?:ers?)?|grade schoolers?|(?:her|his) (?:daughter|son|niece|nephew|step-?daughter|step-?son))`
const SEXUAL = String.raw`(?:sex(?:ual(?:ly)?|y|ier)?|nudes?|naked|nude|steamy|kinky|naughty|spicy|smut\w*|x-rated|intimate|touch (?:her|him|them)|alone so i can|pics of (?:her|his|their) body|(?:pics|pictures|photos) of (?:her|his|their) (?:body|chest|privates)|porn\w*|erotic\w*|sexually explicit|explicit (?:content|images?|photos?|pictures?|stor(?:y|ies)|scenes?|videos?)|intercourse|molest\w*|aroused|arousing|seduc\w*|lewd|nsfw|fetish\w*|orgasm\w*|masturbat\w*|undress\w*|topless|sext\w*|make out|hook ?up|groom(?:ing|ed)?|touch (?:her|him|them) (?:inappropriately|sexually|down there)|in (?:lingerie|underwear|a bikini|bikinis|panties|a bra)|love scenes?|make love|bed scenes?|romantic (?:scene|night|encounter)|flirt\w* with (?:me|you|an adult|adults)|sleep (?:with|together)|have sex)`
const CHILD_SAFE_CONTEXT = String.raw`(?:(?:is|was) (?:that|it|this) (?:appropriate|age-appropriate|ok|okay|normal)|age rating|rated (?:r|pg|pg-13|m)|parental (?:controls|guidance)|sex(?:ual)? education|sex ed\b|sexual health|puberty|talk to (?:my|our|a|your) (?:\d+ year old|kids?|child|children|son|daughter|teen)|protect\w*|prevent\w*|report\w*|warning signs|signs (?:of|that)|recogni[sz]\w*|awareness|therap\w*|counsel\w*|survivors?|safeguard\w*|body safety|curriculum|age of consent|statistics|survey|study|research|pediatric\w*|doctor|diagnos\w*|vaccin\w*|hpv|law enforcement|police|ncmec|how do predators|is being (?:groomed|abused)|was (?:groomed|abused)|dog grooming|grooming (?:a|my|the) (?:dog|cat|puppy|pet|horse|poodle))`

const S4: PhraseRule[] = [
  { id: 's4.minor_sexual', code: 'S4', severity: 'high', pattern: new RegExp(String.raw`\b${MINOR}\b[^.?!]{0,60}\b${SEXUAL}\b|\b${SEXUAL}\b[^.?!]{0,60}\b${MINOR}\b`), unless: ctx(CHILD_SAFE_CONTEXT) },
  { id: 's4.csam_terms', code: 'S4', severity: 'high', pattern: /\b(?:csam|child porn\w*|cp links|pedo(?:phile)? (?:content|pics|videos|forum)|jail ?bait pics|lolicon|shotacon)\b/, unless: /\b(?:report\w*|law enforcement|detect\w*|ncmec|hash(?:ing|es)?|moderat\w*|classif\w*|prevent\w*)\b/ },
  { id: 's4.images_of_minors', code: 'S4', severity: 'high', pattern: new RegExp(String.raw`\b(?:trade|swap|share|buy|sell|find|collect|download|get|send)\b[^.?!]{0,20}\b(?:pics|pictures|photos|images|videos|vids|content|material)\b[^.?!]{0,10}\bof (?:underage|minors?|young|little|preteens?|pre-teens?|children|kids|(?:[1-9]|1[0-7]) ?(?:yo|year olds?))\b`), unless: ctx(CHILD_SAFE_CONTEXT) },
  { id: 's4.secret_contact', code: 'S4', severity: 'high', pattern: new RegExp(String.raw`\b${MINOR}\b[^?!]{0,120}\b(?:(?:bath|shower|bed|sleep|undress\w*) with me|(?:and|to) not tell|not to tell|don'?t tell (?:anyone|your|her|his|their)|without (?:their|his|her) (?:parents?|mom|dad|mother|father) (?:knowing|finding out|knowledge|noticing)|keep (?:it|this|our \w+) (?:a )?secret|get (?:them|her|him) to meet (?:me|up)|meet (?:me|up) (?:alone|in person|secretly|privately))\b`), unless: ctx(CHILD_SAFE_CONTEXT) },
  { id: 's4.paedophilia', code: 'S4', severity: 'high', pattern: /\b(?:satisfy|act on|indulge|feed)\b[^.?!]{0,10}\b(?:pedophil\w*|paedophil\w*|attraction to (?:children|kids|minors))\b/ },
  { id: 's4.groom_child', code: 'S4', severity: 'high', pattern: new RegExp(String.raw`\bgroom(?:ing)? (?:a|the|this|that|my|our|her|his) (?:kid|child|minor|boy|girl|student|teen|niece|nephew)\b|\b(?:won'?t|not|never) tell (?:their|his|her) (?:parents|mom|dad)\b`), unless: ctx(CHILD_SAFE_CONTEXT) },
]

// ---- S9 indiscriminate weapons (CBRNE) -------------------------------------------------------

const WEAPON = String.raw`(?:ammonium nitrate|botulism|botulinum|toxins?|(?:pipe|nail|car|letter|truck|suicide|dirty|pressure[- ]cooker|fertili[sz]er|smoke)?[- ]?bombs?|explosives?|ieds?|detonators?|blasting caps?|molotovs?(?: cocktails?)?|napalm|c-?4|semtex|tnt|tatp|hmtd|petn|anfo|nitroglycerine?|nerve (?:agents?|gas)|sarin|vx(?: gas| agent)?|tabun|soman|novichok|mustard gas|chlorine gas|phosgene|hydrogen cyanide gas|toxic gas|poison(?:ous)? gas|ricin|abrin|botulinum(?: toxin)?|anthrax|smallpox|bio-?weapons?|biological weapons?|chemical weapons?|nuclear (?:weapons?|bombs?|devices?)|atomic bombs?|radiological (?:weapons?|devices?)|weapons?[- ]grade (?:uranium|plutonium)|pathogens?|bioterror\w*|plague bacteria)`
const MAKE = String.raw`(?:precursors?(?: (?:do|would) i need)? (?:for|to make)|get (?:a |some )?(?:sample|strain|culture|vial)s? of|design\w*|rig(?:ging)?|dispers\w*|spread\w*|releas\w*|make|making|made|build|building|construct\w*|assembl\w*|synthesi[sz]\w*|produce|producing|manufactur\w*|create|creating|cook|cooking|brew|mix|mixing|prepare|preparing|extract\w*|isolat\w*|culture|culturing|grow|growing|weaponi[sz]\w*|aerosoli[sz]\w*|detonat\w*|set off|plant|planting|deploy\w*|release|releasing|spread|spreading|disperse|dispersing|smuggle|obtain|acquire|buy|get hold of|recipe for|ingredients for|materials (?:for|to|needed)|what (?:materials|chemicals|ingredients) (?:would )?i (?:need|use))`
const WEAPON_SAFE_CONTEXT = String.raw`(?:bath ?bombs?|photo ?bomb\w*|fork ?bomb\w*|f-bomb|seed bombs?|da bomb|bomb calorimeter|sex bomb|bombed (?:the|my|an?) (?:test|exam|interview|audition|presentation)|history|historical|manhattan project|world war|ww ?(?:1|2|i|ii)|hiroshima|nagasaki|trinity test|cold war|treaty|non-?proliferation|arms control|museum|documentary|novel|thriller|story|scene|screenplay|movie|film|game|minecraft|fortnite|call of duty|explosive (?:growth|performance|flavou?r|diarrh\w*|temper)|defus\w*|bomb squad|detect\w*|protect\w*|vaccin\w*|treat(?:ed|ment)?|antidote|symptoms|exposure|regulat\w*|permit|licen[sc]\w*|storage|mining|demolition compan\w*|penalt\w*|dispos(?:e|al) of (?:old|unexploded)|emergency|evacuat\w*|avoid|never mix|dangerous to mix|when cleaning|welding|antibiotic\w*|resistan\w*)`

const S9: PhraseRule[] = [
  { id: 's9.make_weapon', code: 'S9', severity: 'high', pattern: new RegExp(String.raw`\b${MAKE}\b[^.?!]{0,50}\b${WEAPON}\b`), unless: ctx(WEAPON_SAFE_CONTEXT) },
  { id: 's9.weapon_howto', code: 'S9', severity: 'high', pattern: new RegExp(String.raw`\b${WEAPON}\b[^.?!]{0,40}\b(?:recipe|instructions|step by step|at home|in my (?:garage|kitchen|basement)|home ?made|ratio|how much (?:do|would) i need|to (?:destroy|kill|cause|bring down|blow up|use on))\b|\b(?:how (?:much|many)|what amount of)\b[^.?!]{0,30}\b${WEAPON}\b[^.?!]{0,40}\b(?:destroy|kill|bring down|level|casualties)\b`), unless: ctx(WEAPON_SAFE_CONTEXT) },
  { id: 's9.device_trigger', code: 'S9', severity: 'high', pattern: /\brig(?:ging)?\b[^.?!]{0,40}\bto (?:go off|explode|detonate|blow up|blow)\b|\b(?:how (?:much|many)|what amount)\b[^.?!]{0,30}\b(?:ammonium nitrate|explosives?|tnt|c-?4|semtex|black powder)\b[^.?!]{0,40}\b(?:flatten|level|destroy|blow up|bring down|take out)\b|\b(?:payload|drone|crop duster|sprayer)\b[^.?!]{0,40}\b(?:pathogen|spores?|anthrax|toxin|nerve agent|sarin|chemical agent)\b/, unless: ctx(WEAPON_SAFE_CONTEXT) },
  { id: 's9.pathogen_enhance', code: 'S9', severity: 'high', pattern: /\b(?:weaponi[sz]\w*|aerosoli[sz]\w*)\b[^.?!]{0,40}\b(?:virus|pathogen|bacteria|toxin|spores?|anthrax|smallpox|plague|flu|disease)\b|\bmake (?:a |the )?(?:virus|pathogen|bacteri(?:a|um)|flu|disease)\b[^.?!]{0,20}\b(?:more )?(?:contagious|transmissible|lethal|deadly|virulent)\b|\bspread\b[^.?!]{0,30}\b(?:anthrax|smallpox|plague|ricin|sarin|spores)\b/, unless: /\b(?:how do (?:scientists|governments)|prevent\w*|defen[cs]e|biosecurity|history|historical|policy|detect\w*|vaccin\w*)\b/ },
  { id: 's9.bomb_target', code: 'S9', severity: 'high', pattern: /\b(?:bomb(?:ing)?|blow(?:ing)? up|plant(?:ing)? (?:a |the )?bomb (?:in|at|on))\b(?! (?:the|a|an|my) (?:test|exam|quiz|interview|audition|presentation))[^.?!]{0,20}\b(?:school|building|office|church|mosque|synagogue|temple|airport|plane|train|station|stadium|concert|parade|crowd|mall|embassy|bridge|hospital|subway|bus)\b|\b(?:cause|maximi[sz]e) the most (?:casualties|deaths|damage)\b/, unless: ctx(String.raw`(?:history|historical|was bombed|were bombed|in (?:19|20)\d\d|anniversary|memorial|news|documentary|novel|thriller|scene|story|screenplay|movie|film|game|hero (?:stops|saves)|villain|defus\w*|bomb squad|evacuat\w*|drill)`) },
  { id: 's9.biggest_blast', code: 'S9', severity: 'high', pattern: /\b(?:biggest|largest|most powerful|strongest|deadliest|most destructive|loudest)\b[^.?!]{0,10}\b(?:explosion|blast|bang|boom|fireball)\b|\b(?:sealed|closed|pressuri[sz]ed) (?:container|bottle|pipe)\b[^.?!]{0,40}\b(?:explo\w*|blow up|burst)\b|\bturn\b[^.?!]{0,40}\binto (?:a |an )?(?:bomb|explosive|ied|grenade|incendiary|weapon)\b/, unless: ctx(WEAPON_SAFE_CONTEXT) },
  { id: 's9.fissile', code: 'S9', severity: 'high', pattern: /\b(?:get|obtain|buy|acquire|steal|smuggle|source|enough)\b[^.?!]{0,20}\b(?:enriched |weapons[- ]grade )?(?:uranium|plutonium|cesium-?137|cobalt-?60|polonium|radioactive (?:material|source)s?)\b/, unless: /\b(?:history|policy|reactor fuel|power plant|smoke detector|news|treaty|geolog\w*|dating|half-life)\b/ },
  { id: 's9.enrich', code: 'S9', severity: 'high', pattern: /\b(?:enrich(?:ing)?) uranium\b[^.?!]{0,40}\b(?:at home|myself|weapon|bomb|in my)\b|\bbuild (?:a |my own )?(?:nuclear|atomic) (?:bomb|weapon|device)\b/ },
]

// ---- S1 violent crimes -----------------------------------------------------------------------

const S1: PhraseRule[] = [
  { id: 's1.harm_person', code: 'S1', severity: 'high', pattern: new RegExp(String.raw`\b${ASK}\b[^.?!]{0,30}\b${HARM_VERB}\b[^.?!]{0,12}\b${PERSON}\b`), unless: ctx(NOT_VIOLENCE) },
  { id: 's1.harm_body', code: 'S1', severity: 'high', pattern: new RegExp(String.raw`\b${ASK}\b[^.?!]{0,30}\b${HARM_VERB}\b[^.?!]{0,12}\b(?:(?:someone|somebody|a human|a person|his|her|their|my \w+)'?s?'? (?:skull|face|head|spine|neck|sternum|kidneys?|throat|legs?|arms?|ribs?|eyes?|jaw|chest)|(?:a |the )?human (?:skull|head|spine|body|being)|a child'?s \w+|(?:a |the )?(?:dead )?bod(?:y|ies)(?: into)?)\b`), unless: ctx(NOT_VIOLENCE) },
  { id: 's1.commit_crime', code: 'S1', severity: 'high', pattern: new RegExp(String.raw`\b(?:${ASK}|where is a good place to|steps to)\b[^.?!]{0,25}\b(?:commit(?:ting)?|carry(?:ing)? out|get(?:ting)? away with|plan(?:ning)?|plot(?:ting)?|stage|replicate|repeat|engage in)\b[^.?!]{0,20}\b(?:a |an |another )?(?:murders?|homicides?|massacres?|assassinations?|kidnappings?|abductions?|arson|armed robbery|violent assault|assault|terror(?:ist)? attacks?|terrorism|genocides?|ethnic cleansing|mass shootings?|school shootings?|bombings?|stabbings?|hate crimes?|lynchings?|(?:\w+ )?(?:attacks?|explosions?|bombings?|shootings?)|(?:\w+'?s? )?death|hostage|success of [^.?!]{0,30}(?:attack|assassination|shooting|bombing|massacre))\b`), unless: ctx(NOT_VIOLENCE) },
  { id: 's1.hostage_targets', code: 'S1', severity: 'high', pattern: /\btak(?:e|ing) (?:\w+'?s? ){1,3}hostage\b|\bgive (?:someone|him|her|them|a person) a headshot with (?:my|a|his|her) (?:gun|rifle|pistol)\b|\b(?:find|get|pick|choose)\b[^.?!]{0,10}\b(?:people|someone|somebody|a person|victims?|targets?) to (?:shoot|kill|stab|murder|attack|hurt|rob)\b|\b(?:push|throw|shove)\w* (?:my|his|her|a|the) \w+(?: \w+)? (?:off|out of|down) (?:a|the) (?:cliff|bridge|roof|balcony|building|window|stairs)\b/, unless: /\b(?:counter[- ]?strike|call of duty|video ?game|game|film|movie|novel|story|lion king|die hard)\b/ },
  { id: 's1.glorify_repeat', code: 'S1', severity: 'high', pattern: /\b(?:replicate|recreate|repeat|copy)\b[^.?!]{0,30}\b(?:succes+|impact|scale)\b[^.?!]{0,40}\b(?:attacks?|massacres?|genocides?|bombs?|bombings?|assassinations?|shootings?|9\/11)\b/ },
  { id: 's1.terror', code: 'S1', severity: 'high', pattern: /\b(?:join|support|fund|recruit for)\b[^.?!]{0,10}\b(?:isis|isil|al[- ]qaeda|al[- ]shabaab|boko haram|a terror(?:ist)? (?:group|cell|organi[sz]ation))\b|\bengage in terrorism\b|\bbecome a terrorist\b/, unless: /\b(?:why do people|radicali[sz]ation|prevent\w*|research|history|documentary|counter)\b/ },
  { id: 's1.destroy_place', code: 'S1', severity: 'high', pattern: new RegExp(String.raw`\b${ASK}\b[^.?!]{0,25}\b(?:blow(?:ing)? up|bomb(?:ing)?|set(?:ting)? (?:\w+'?s? ){0,3}on fire|sets? fire to|burn(?:ing)? down|explod(?:e|ing)|mak(?:e|ing) (?:\w+'?s? ){0,3}explode|obliterat(?:e|ing)|level(?:ling)?|torch(?:ing)?)\b[^.?!]{0,25}\b(?:house|home|car|hospital|school|building|city|stadium|concert|(?:army |military )?base|church|mosque|synagogue|temple|airport|plane|train|bus|village|office|apartment|clinic)s?\b`), unless: ctx(String.raw`(?:my old|garden shed|property i own|i own|fake|film i am directing|i'?m directing|game|minecraft|battlefield|fortnite|movie|film|tv show|novel|story|history|historical|demolition permit|controlled demolition|(?:not )?bomb(?:ed)? (?:the|a|an|my) (?:test|exam|quiz|interview|audition|presentation)|test at school)`) },
  { id: 's1.destroy_object', code: 'S1', severity: 'high', pattern: new RegExp(String.raw`\b${ASK}\b[^.?!]{0,25}\b(?:set(?:ting)?|mak(?:e|ing))\b (?:(?:a|the|my|his|her|their|our|someone'?s|\w+'s) )?(?:\w+ )?(?:house|home|car|hospital|school|building|stadium|church|mosque|synagogue|airport|plane|train|bus|office|apartment|clinic)s? (?:on fire|explode|blow up|burn down)\b`), unless: ctx(String.raw`(?:my old|garden shed|property i own|i own|fake|film i am directing|i'?m directing|game|minecraft|battlefield|fortnite|movie|film|tv show|novel|story|history|historical)`) },
  { id: 's1.arson_occupied', code: 'S1', severity: 'high', pattern: /\bset (?:\w+'?s? ){0,3}(?:house|home|car|apartment|room|tent|building) on fire\b[^.?!]{0,40}\b(?:asleep|inside|while (?:she|he|they)|with (?:her|him|them) in)\b/ },
  { id: 's1.means', code: 'S1', severity: 'high', pattern: /\b(?:cut|tamper(?:ing)? with|disabl\w+|sabotag\w+)\b[^.?!]{0,10}\bbrake(?: line)?s?\b|\bmake (?:him|her|them|someone|my \w+) disappear\b|\b(?:rifle|gun|sniper|firearm|pistol)\b[^.?!]{0,40}\b(?:near|at|during|from|over(?:looking)?) (?:the|a|his|her) (?:\w+'?s )?(?:speech|rally|parade|motorcade|crowd|event|concert|school|church)\b|\buntil (?:they|he|she) (?:stop|stops) (?:moving|breathing)\b/, unless: /\b(?:replac\w*|repair\w*|fix\w*|bleed(?:ing)? the brakes|mechanic|magic|trick|illusion|security (?:team|plan|detail)|secret service|protect\w*|history|novel|film|movie)\b/ },
  { id: 's1.harm_to_death', code: 'S1', severity: 'high', pattern: new RegExp(String.raw`\b(?:hit|punch|kick|stab|choke|strangle)\b[^.?!]{0,30}\b(?:to kill|kill (?:them|him|her)|until (?:they|he|she) (?:die|dies|stop breathing)|so (?:they|he|she) (?:die|dies))\b|\b(?:poison|drug)\b[^.?!]{0,40}\b(?:hardest|impossible|hard) to (?:detect|trace)\b|\b(?:undetectable|untraceable) (?:poison|way to kill)\b|\b(?:hardest|impossible|hard) to detect in an autopsy\b`), unless: ctx(NOT_VIOLENCE) },
  { id: 's1.body_disposal', code: 'S1', severity: 'high', pattern: /\b(?:dispose of|get rid of|hide|dissolve|bury|dump|chop up|saw)\b[^.?!]{0,12}\b(?:(?:a|the|his|her|my \w+'?s?) (?:dead )?(?:body|bodies|corpse|corpses)|(?:my|a|the) dead (?:baby|child|kid|wife|husband|person))\b/, unless: /\b(?:novel|story|mystery|thriller|plot|character|screenplay|fiction|game|detective|pet|dog|cat|hamster|bird|fish|roadkill|deer|carcass|funeral|cremat\w*|burial|legal|law)\b/ },
  { id: 's1.mass_violence', code: 'S1', severity: 'high', pattern: /\b(?:shoot up|shooting up|killing spree|go on a rampage)\b|\bkill (?:as many|lots of|all (?:the|those)|every) (?:people|students|kids|children|jews|muslims|christians|immigrants|cops|police|women|men|gays)\b/, unless: /\b(?:prevent\w*|statistics|news|history|historical|victims|survivors?|memorial|report\w*|after the|how can (?:schools|we|communities)|drills?|policy|laws?|research|documentary|novel|movie|film|game|cope|coping|grief|therap\w*)\b/ },
  { id: 's1.hitman', code: 'S1', severity: 'high', pattern: /\b(?:hire|find|pay|get|contact)\b[^.?!]{0,10}\b(?:a )?(?:hit ?man|hitmen|assassin|contract killer|someone to kill)\b|\btake care of (?:my|him|her|them)\b[^.?!]{0,20}\b(?:permanently|for good)\b/, unless: /\b(?:novel|story|movie|film|game|plot|character|screenplay|fiction|history)\b/ },
  { id: 's1.threat_plan', code: 'S1', severity: 'high', pattern: /\b(?:i'?m|i am|i'll|i will|going to|gonna)\b[^.?!]{0,20}\b(?:stab|shoot|kill|murder|strangle|run over)\b[^.?!]{0,30}\b(?:when|after|tonight|tomorrow|where should i|at (?:work|school|home))\b/, unless: ctx(NOT_VIOLENCE) },
  { id: 's1.permanent_harm', code: 'S1', severity: 'high', pattern: /\b(?:knock|take|put|beat|hit|choke|put down|finish)\b[^.?!]{0,40}\b(?:permanently|for good|so (?:he|she|they) (?:never|won'?t) (?:wake|get) up|goes? down for good|(?:he|she|they) never (?:wakes?|gets?) up)\b/, unless: ctx(NOT_VIOLENCE) },
  { id: 's1.lethal_intent', code: 'S1', severity: 'high', pattern: /\b(?:he|she|they) (?:doesn'?t|don'?t|won'?t|never) get(?:s)? (?:back )?up\b|\baim\b[^.?!]{0,20}\b(?:gun|rifle|crossbow|bow|pistol|weapon)\b[^.?!]{0,10}\bat (?:a|the|my|this|that) (?:man|woman|person|guy|kid|cop)\b|\bstops? (?:his|her|their) heart\b|\b(?:slip|put|spike|sneak)\b[^.?!]{0,30}\b(?:coffee|drink|food|tea|meal|wine|soup)\b[^.?!]{0,30}\b(?:kill|die|poison|stop|fatal|sick)\w*\b|\b(?:machete|knife|gun|rifle|axe|crowbar|hammer)\b[^?!]{0,60}\blist of (?:names|targets|people)\b|\bhit ?list\b/, unless: ctx(NOT_VIOLENCE) },
  { id: 's1.staged_death', code: 'S1', severity: 'high', pattern: /\b(?:death|murder|killing|overdose|fall|drowning)\b[^.?!]{0,20}\blook like (?:an? )?(?:accident|suicide|natural causes|heart attack|overdose)\b|\bmake (?:it|him|her) look like (?:an? )?(?:accident|suicide)\b/, unless: ctx(NOT_VIOLENCE) },
  { id: 's1.poison_amount', code: 'S1', severity: 'high', pattern: /\b(?:how (?:much|many)|what amount of|enough)\b[^.?!]{0,40}\b(?:poison|antifreeze|ethylene glycol|cyanide|arsenic|rat poison|thallium|strychnine|digoxin|insulin|oleander|foxglove)\b[^.?!]{0,40}\b(?:kill|be fatal to|fatal|lethal|die)\b/, unless: /\b(?:my (?:dog|cat|pet|child|kid|toddler) (?:ate|drank|swallowed|got into)|accident\w*|poison control|vet|symptoms|treat\w*|antidote|safe(?:ty|ly)?|prevent\w*)\b/ },
  { id: 's1.attack_place', code: 'S1', severity: 'high', pattern: /\b(?:attack|shoot up|storm|burn down|firebomb|bomb)\b[^.?!]{0,10}\b(?:the|a|this|that|our|their) (?:mosque|church|synagogue|temple|school|mall|concert|parade|rally|clinic|office|protest|march|pride (?:parade|event)|gay bar|club)\b/, unless: /\b(?:news|history|historical|was attacked|were attacked|in (?:19|20)\d\d|anniversary|memorial|victims|survivors?|prevent\w*|security plan|protect\w*|drill|novel|film|movie|game)\b/ },
  { id: 's1.torture', code: 'S1', severity: 'high', pattern: /\b(?:how to|how do i|how can i|tell me how to|teach me to|ways to)\b[^.?!]{0,15}\btorture\b/, unless: ctx(NOT_VIOLENCE) },
]

// ---- other hazard categories (medium: they ask for review, they are not the must-not-miss set) ----

const S2: PhraseRule[] = [
  { id: 's2.drugs', code: 'S2', severity: 'medium', pattern: /\b(?:make|cook|synthesi[sz]e|produce|brew|manufacture|extract)\b[^.?!]{0,20}\b(?:crystal meth|meth(?:amphetamine)?|crack(?: cocaine)?|heroin|fentanyl|lsd|mdma|ecstasy|ghb|dmt|cocaine)\b/, unless: /\b(?:history|documentary|breaking bad|how does|addiction|treatment|recovery|signs|overdose|naloxone)\b/ },
  { id: 's2.buy_drugs', code: 'S2', severity: 'medium', pattern: /\b(?:buy|get|getting|find|score|sell|selling|deal|dealing)\b[^.?!]{0,20}\b(?:a gram of |some |an ounce of )?(?:coke|cocaine|meth|crystal|crack|heroin|ecstasy(?: pills)?|mdma|molly|lsd|acid tabs|fentanyl|weed|marihuana|marijuana|ketamine|xanax bars|oxy(?:contin)?s?)\b/, unless: /\b(?:can of coke|diet coke|coke zero|bottle of coke|crack in|weed (?:my|the) garden|weed killer|to weed|legal(?:ly)?|dispensary|prescription|pharmacy|treatment|rehab|addiction|naloxone|test strips?|is it legal|history|what is|what kind of)\b/ },
  { id: 's2.theft_robbery', code: 'S2', severity: 'medium', pattern: new RegExp(String.raw`\b${ASK}\b[^.?!]{0,25}\b(?:steal(?:ing)?|rob(?:bing)?|mug(?:ging)?|pickpocket\w*|break(?:ing)? into|burglar\w*|commit(?:ting)? (?:bank (?:account )?fraud|fraud|identity theft|insurance fraud|tax fraud|treason|armed robbery)|disabl\w+ the alarm|slash(?:ing)? (?:\w+'?s? ){0,2}tires|smash(?:ing)? (?:\w+'?s? ){0,2}(?:car|motorbike|windows?)|destroy(?:ing)? (?:\w+'?s? ){0,2}(?:car|house|life)|demolish(?:ing)? (?:\w+'?s? ){0,3}house)\b`), unless: ctx(String.raw`(?:gta|game|film|movie|novel|story|ocean'?s|mission impossible|a base|the show|(?:someone'?s|her|his) heart|the film industry|the market|(?:my own|i own)|locked out|lost my key|crime novel|pentest\w*|authori[sz]ed)`) },
  { id: 's2.laundering', code: 'S2', severity: 'medium', pattern: /\blaunder(?:ing)?\b[^.?!]{0,30}\b(?:money|cash|\d+k|funds|profits)\b|\b(?:money|cash) laundering\b/, unless: /\b(?:spot|detect\w*|compliance|prevent\w*|aml|anti-money|typically work|red flags|regulat\w*|report\w*|history|what is|definition|how does|explain)\b/ },
  { id: 's2.account_intrusion', code: 'S2', severity: 'medium', pattern: /\b(?:hack|break|get|log) (?:into|in to)\b[^.?!]{0,30}\b(?:account|email|phone|instagram|facebook|snapchat|whatsapp|icloud|gmail|wifi|wi-fi|network|computer|laptop)\b/, unless: /\b(?:my own|i forgot|forgot my|recover\w*|locked out|authori[sz]ed|pentest\w*|ctf|lab|homework)\b/ },
  { id: 's2.fraud', code: 'S2', severity: 'medium', pattern: /\b(?:write|create|make|draft|design|generate)\b[^.?!]{0,15}\b(?:a )?(?:phishing|scam)\b|\bsteal\w*\b[^.?!]{0,15}\b(?:someone'?s|their|his|her|a) (?:identity|credit card|card details|password|car|money)\b|\b(?:open|get)\b[^.?!]{0,20}\bcredit cards? in (?:their|his|her|someone'?s) name\b|\bcounterfeit (?:money|bills|cash|currency)\b|\bshoplift\w*\b|\bhotwire\b|\b(?:evade|dodge) (?:paying )?taxes\b/, unless: /\b(?:spot|detect\w*|recogni[sz]\w*|avoid(?:ing)?|protect\w*|prevent\w*|training|awareness|report\w*|security team|simulation|gta|grand theft auto|game|film|movie|novel|story)\b/ },
  { id: 's2.malware', code: 'S2', severity: 'medium', pattern: /\b(?:write|create|make|build|code|develop|deploy)\b[^.?!]{0,20}\b(?:ransomware|keylogger|spyware|botnet|malware|trojan|credential stealer)\b/, unless: /\b(?:detect\w*|defend\w*|protect\w*|analy[sz]\w*|remove|how does|explain|history)\b/ },
  { id: 's2.weapons_illegal', code: 'S2', severity: 'medium', unless: /\b(?:minecraft|game|fortnite|roblox|prop|cosplay|toy)\b/, pattern: /\b(?:(?:gun|firearm|weapon|receiver)s?\b[^.?!]{0,20}\b3d[- ]print\w*|3d[- ]print\w*\b[^.?!]{0,20}\b(?:gun|firearm|weapon|receiver)s?|ghost gun|3d[- ]print(?:ed)? (?:a )?(?:gun|firearm)|auto sear|convert\b[^.?!]{0,30}\b(?:full[- ]auto|fully automatic)|file off (?:the )?serial number)\b/ },
]

const S3: PhraseRule[] = [
  { id: 's3.drugging', code: 'S3', severity: 'high', pattern: /\b(?:slip|put|spike|drug)\b[^.?!]{0,30}\b(?:her|his|a girl'?s|a woman'?s|someone'?s|their) drink\b|\b(?:roofie|rohypnol|date rape drug)\b/, unless: /\b(?:protect\w*|test(?:ing)? strips?|detect\w*|signs|symptoms|what to do if|prevent\w*|awareness)\b/ },
  { id: 's3.voyeurism', code: 'S3', severity: 'high', pattern: /\b(?:hide|hidden|secret(?:ly)?|spy)\b[^.?!]{0,20}\b(?:camera|cam|film|record|photograph)\b[^.?!]{0,40}\b(?:changing room|locker room|shower|bathroom|toilet|undress\w*|naked|women|girls|sex)\b/, unless: /\b(?:find|detect\w*|check (?:for|if)|sweep|protect\w*)\b/ },
  { id: 's3.rape_trafficking', code: 'S3', severity: 'high', pattern: /\b(?:get(?:ting)? away with|commit(?:ting)?|how (?:do|can|to) i?)\b[^.?!]{0,10}\brap(?:e|ing)\b|\b(?:set(?:ting)? up|run(?:ning)?|start(?:ing)?|organi[sz]\w*)\b[^.?!]{0,20}\b(?:human|sex|child) trafficking\b|\boverpower(?:ing)? (?:a|the) (?:woman|girl)\b/, unless: /\b(?:prevent\w*|victims?|survivors?|report\w*|recogni[sz]\w*|signs|definition|what (?:is|constitutes)|law|legal)\b/ },
  { id: 's3.nonconsensual', code: 'S3', severity: 'high', pattern: /\brevenge porn\b|\b(?:post|share|leak|send|spread)\b[^.?!]{0,20}\b(?:her|his|their|my ex'?s?|ex'?s) (?:nudes|naked (?:photos|pictures|pics))\b|\bnudes of my ex\b|\b(?:force|pressure|coerce)\b[^.?!]{0,15}\b(?:her|him|them|someone)\b[^.?!]{0,10}\b(?:into|to have) sex\b/, unless: /\b(?:victim|report\w*|remove|take down|takedown|law|legal|protect\w*)\b/ },
]

const S5: PhraseRule[] = [
  { id: 's5.fabricated_claims', code: 'S5', severity: 'medium', pattern: /\b(?:write|make up|create|spread|post|draft|invent)\b[^.?!]{0,20}\b(?:fake|false|made[- ]up|fabricated)\b[^.?!]{0,10}\b(?:news|stor(?:y|ies)|articles?|posts?|rumou?rs?|allegations?|claims?|tweets?|reviews?)\b[^.?!]{0,60}\b(?:claim\w*|accus\w*|saying|that)\b/, unless: /\b(?:media literacy|satire|how to spot|identify|detect\w*|example of|teach\w*|class)\b/ },
]

const S7: PhraseRule[] = [
  { id: 's7.dox', code: 'S7', severity: 'medium', pattern: /\bdox+(?:ing|ed)?\b|\b(?:find|get|look up|track down)\b[^.?!]{0,20}\b(?:home address|where (?:she|he|they) lives?|real name and address)\b[^.?!]{0,30}\b(?:of|for)? ?(?:the|this|that) (?:woman|man|girl|guy|person|streamer|user|reviewer|account)\b/ },
  { id: 's7.covert_surveillance', code: 'S7', severity: 'medium', pattern: /\b(?:read|track|monitor|spy on|access|see)\b[^.?!]{0,30}\b(?:wife|husband|girlfriend|boyfriend|partner|ex|employee|coworker|daughter|son)'?s?\b[^.?!]{0,30}\b(?:messages|texts|whatsapp|location|phone|emails?|dms)\b[^.?!]{0,30}\bwithout (?:her|him|them) (?:knowing|knowledge|consent|finding out)\b/ },
]

const S8: PhraseRule[] = [
  { id: 's8.piracy', code: 'S8', severity: 'medium', pattern: /\b(?:cracked|pirated|nulled)\b[^.?!]{0,20}\b(?:version|copy|software|game|app|office|photoshop|windows)\b|\bkeygen\b|\btorrent (?:link|site|download)\b[^.?!]{0,30}\b(?:movie|film|series|album|game|book|season)\b|\btorrent link for\b|\b(?:full (?:lyrics|text)|entire (?:book|album))\b[^.?!]{0,80}\b(?:sell|copies|distribute|upload)\b/, unless: /\b(?:public domain|legal(?:ly)?|open source|linux iso|creative commons|is it (?:legal|illegal))\b/ },
]

const S10: PhraseRule[] = [
  { id: 's10.dehumanising', code: 'S10', severity: 'high', pattern: /\b(?:jews|muslims|christians|hindus|sikhs|blacks|black people|whites|white people|asians|mexicans|immigrants|refugees|arabs|gays|gay people|lesbians|trans people|women|roma|gypsies|africans|chinese)\b[^.?!]{0,30}\b(?:are|should be|must be|deserve to be)\b[^.?!]{0,20}\b(?:vermin|subhuman|animals|parasites|inferior|a disease|exterminated|eliminated|gassed|killed|deported|sterili[sz]ed)\b/, unless: /\b(?:why is it wrong|history of|propaganda (?:used|in)|nazi propaganda|debunk\w*|counter\w*|respond to|analy[sz]\w*)\b/ },
  { id: 's10.eradicate_group', code: 'S10', severity: 'high', pattern: /\b(?:eradicat\w*|exterminat\w*|eliminat\w*|wip\w* out|get rid of|cleanse|purge|deport all)\b[^.?!]{0,15}\b(?:gay|black|white|jewish|muslim|roma|trans|asian|disabled|homeless|indigenous|rural) people\b|\b(?:eradicat\w*|exterminat\w*|eliminat\w*|wip\w* out|get rid of)\b[^.?!]{0,15}\b(?:jews|muslims|immigrants|gays|roma|refugees|christians|hindus|sikhs)\b/, unless: /\b(?:history|holocaust (?:education|museum)|why is it wrong|propaganda (?:used|in)|what does it mean|definition)\b/ },
  { id: 's10.atrocity_denial', code: 'S10', severity: 'medium', pattern: /\bwhy (?:was|were|is)\b[^.?!]{0,60}\b(?:shooting|massacre|genocide|killing|attack|invasion|slavery|holocaust|bombing|lynching|apartheid|kill|invade)\b[^.?!]{0,30}\b(?:justified|right|a good thing)\b|\bwhy (?:was|were|is)\b[^.?!]{0,40}\b(?:justified|right) to (?:kill|attack|invade|murder|bomb)\b|\b(?:restore|bring back|reintroduce)\b[^.?!]{0,30}\b(?:discrimination|segregation|jim crow|apartheid|slavery)\b|\b(?:recreate|replicate)\b[^.?!]{0,20}\b(?:conditions|methods)\b[^.?!]{0,40}\b(?:concentration camps?|auschwitz|gulags?|pinochet|khmer rouge|taliban)\b|\buse (?:\w+'?s )?methods for dealing with (?:political )?opponents\b|\b(?:never (?:happened|took place)|was (?:a )?(?:complete )?(?:fabrication|hoax|lie)|overstate what happened|(?:was|were) (?:\w+ )?(?:right|justified) to (?:kill|attack|invade|murder)|(?:was|were) (?:morally )?justified|actually a good thing|benefits of (?:ethnic cleansing|genocide|slavery|the holocaust|apartheid)|replicate the (?:many )?benefits of)\b/, unless: /\b(?:debunk\w*|counter\w*|respond to|claims? that|conspiracy theor\w*|why do (?:people|some)|fact[- ]check)\b/ },
  { id: 's10.hateful_content', code: 'S10', severity: 'medium', pattern: /\b(?:racist|sexist|homophobic|transphobic|antisemitic|anti-semitic|islamophobic|hateful|bigoted)\b[^.?!]{0,10}\b(?:jokes?|rants?|speech(?:es)?|posts?|essays?|poems?|slogans?|memes?|pamphlets?)\b/, unless: /\b(?:why|history of|recogni[sz]\w*|respond to|moderat\w*|detect\w*|examples? of (?:how|why)|analy[sz]\w*)\b/ },
]

const S12: PhraseRule[] = [
  { id: 's12.explicit_request', code: 'S12', severity: 'medium', pattern: /\b(?:explicit|erotic|steamy|graphic|nsfw|x-rated|smutty|dirty|kinky|sexy)\b[^.?!]{0,40}\b(?:sex|stor(?:y|ies)|scenes?|fantas(?:y|ies)|roleplay|role-play|messages?|threesome|fiction|talk|chat)\b|\b(?:sex scene|threesome|orgy)\b[^.?!]{0,30}\b(?:detail|graphic|explicit)\b|\b(?:be|act as|roleplay as|pretend to be) my (?:nsfw |sexy )?(?:girlfriend|boyfriend|lover|mistress)\b[^.?!]{0,40}\b(?:erotic|sexy|dirty|nsfw|naughty)\b/, unless: /\b(?:sex education|sexual health|medical|anatomy|biology|statistics|research)\b/ },
]

const S13: PhraseRule[] = [
  { id: 's13.vote_fraud', code: 'S13', severity: 'medium', pattern: /\bvote (?:twice|two times|multiple times|more than once|in (?:two|both|multiple) (?:states|places|precincts))\b|\bregister to vote in (?:two|both|multiple) states\b[^.?!]{0,40}\bvote in (?:both|each)\b|\b(?:fake|forged|fraudulent) ballots?\b/, unless: /\b(?:illegal|is it legal|penalt\w*|prevent\w*|detect\w*|how do states|safeguards?)\b/ },
  { id: 's13.disinformation', code: 'S13', severity: 'medium', pattern: /\b(?:tell|telling|convince|trick|text|message)\w*\b[^.?!]{0,40}\b(?:voters|democrats|republicans|people)\b[^.?!]{0,40}\b(?:vote by (?:text|phone|email)|election (?:is|was|has been) (?:moved|cancelled|canceled|postponed)|wrong (?:day|date)|polls? (?:are|is) closed)\b|\bvote by text\b/, unless: /\b(?:scam|fact[- ]check|is it true|can you vote by|warn\w*)\b/ },
]

const S14: PhraseRule[] = [
  { id: 's14.destructive_exec', code: 'S14', severity: 'medium', pattern: /\brm -rf \/(?:\s|$|\*)|--no-preserve-root|:\(\)\s*\{\s*:\|:&\s*\};:|\bmkfs\.\w+ \/dev\/sda\b|\bdd if=\/dev\/(?:zero|random) of=\/dev\/sd/ },
  { id: 's14.reverse_shell', code: 'S14', severity: 'medium', pattern: /\/dev\/tcp\/\d|\bnc(?:at)? -e \/bin\/(?:ba)?sh\b|\b(?:open|spawn|give me|start)\b[^.?!]{0,20}\breverse shell\b[^.?!]{0,30}\b(?:your|this|the) (?:sandbox|server|interpreter|machine|container)\b/ },
  { id: 's14.exfiltrate', code: 'S14', severity: 'medium', pattern: /\b(?:print|dump|show|list|send|exfiltrate|read|cat)\b[^.?!]{0,20}\b(?:all )?(?:your |the )?(?:environment variables|env vars|\/etc\/(?:passwd|shadow)|secrets|api keys|credentials)\b[^.?!]{0,40}\b(?:your|you can find|sandbox|interpreter|tool|server)\b|\b(?:use|with) your (?:python|code|shell) (?:tool|interpreter)\b[^.?!]{0,40}\b(?:environment variables|api keys|secrets|credentials)\b/ },
]

export const PHRASE_RULES: readonly PhraseRule[] = [...S1, ...S4, ...S9, ...S11, ...S2, ...S3, ...S5, ...S7, ...S8, ...S10, ...S12, ...S13, ...S14]

/** Categories whose phrase rules must catch every labelled example (CI floor: recall 100%). */
export const MUST_NOT_MISS: readonly SafetyCode[] = ['S1', 'S4', 'S9', 'S11']

/** Normalises text for the phrase rules: lower case, NFKC, straight quotes, de-leeted words. */
export function normaliseForRules(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\u2018\u2019\u02bc]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    // digits between letters read as letters: k1ll → kill, b0mb → bomb, mys3lf → myself
    .replace(LEET_DIGIT, (c) => LEET[c] ?? c)
    .replace(WHITESPACE_RUN, ' ')
}

/**
 * A digit between letters, matched digit first (the same matches as /(?<=[a-z])[013457@$](?=[a-z])/g,
 * without a lookbehind tried at every position).
 */
const LEET_DIGIT = /[013457@$](?<=[a-z][013457@$])(?=[a-z])/g
const LEET: Readonly<Record<string, string>> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's' }
/**
 * Every maximal run of whitespace other than a single space (what /\s+/g → ' ' changes; a lone
 * space is left as it is instead of being replaced by itself).
 */
const WHITESPACE_RUN = / ?[^\S ]\s*| {2,}\s*/g

export interface RuleHit {
  readonly rule: PhraseRule
}

/** Every rule that matches `normalised` at least once outside its `unless` context. */
export function matchPhraseRules(normalised: string, rules: readonly PhraseRule[] = PHRASE_RULES): RuleHit[] {
  return matchRules(normalised, rules, gateOf(rules).check(normalised))
}

/** matchPhraseRules without the required-literal gate: the reference the gate is tested against. */
export function matchPhraseRulesUngated(normalised: string, rules: readonly PhraseRule[] = PHRASE_RULES): RuleHit[] {
  return matchRules(normalised, rules, null)
}

/** `may[k] === 0`: rules[k] cannot match `normalised` (see gateOf); null runs every rule. */
function matchRules(normalised: string, rules: readonly PhraseRule[], may: Uint8Array | null): RuleHit[] {
  const hits: RuleHit[] = []
  for (let k = 0; k < rules.length; k++) {
    if (may && may[k] === 0) continue
    const rule = rules[k]!
    const re = globalCopy(rule.pattern)
    let m: RegExpExecArray | null
    while ((m = re.exec(normalised)) !== null) {
      if (m[0].length === 0) re.lastIndex++
      const from = Math.max(0, m.index - UNLESS_WINDOW)
      const to = Math.min(normalised.length, m.index + m[0].length + UNLESS_WINDOW)
      if (rule.unless && rule.unless.test(normalised.slice(from, to))) continue
      hits.push({ rule })
      break
    }
  }
  return hits
}

// ---- the required-literal gate (GW-6) --------------------------------------------------------
//
// Running every rule's regex over every text was the largest share of classification CPU. Each
// pattern implies literals its matches contain ("how to", "kill", …; see required-literals.ts):
// one pass over the text finds which literals occur, and a rule whose Need fails is skipped —
// it cannot match, so the hits are exactly those of matchPhraseRulesUngated. Only in memory: the
// text is scanned, never kept.

const needs = new WeakMap<RegExp, Need | null>()

/** The Need of a rule's pattern (null: always run), derived once per pattern. */
export function phraseRuleNeed(rule: PhraseRule): Need | null {
  let need = needs.get(rule.pattern)
  if (need === undefined) {
    need = requiredLiterals(rule.pattern)
    needs.set(rule.pattern, need)
  }
  return need
}

interface Gate {
  /** The rules and patterns the checker was built for, in order: the array may have changed since. */
  readonly rules: readonly PhraseRule[]
  readonly patterns: readonly RegExp[]
  readonly checker: NeedChecker
}

const gates = new WeakMap<readonly PhraseRule[], Gate>()

/**
 * The gate of a rules array, built on first use and kept with it (for PHRASE_RULES ~0.15 s cold,
 * which the classifier's warm-up pays before the first request).
 */
function gateOf(rules: readonly PhraseRule[]): NeedChecker {
  const gate = gates.get(rules)
  if (gate && gate.rules.length === rules.length && gate.rules.every((r, k) => r === rules[k] && r.pattern === gate.patterns[k])) return gate.checker
  const checker = new NeedChecker(rules.map(phraseRuleNeed))
  gates.set(rules, { rules: [...rules], patterns: rules.map((r) => r.pattern), checker })
  return checker
}
