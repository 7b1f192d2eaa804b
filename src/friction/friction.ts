import type { Domain, Intent } from '../classify/facts.ts'
import type { Content } from '../core/content.ts'
import { gradeReasoning, type Grade } from './grade.ts'
import { challengeQuestion } from './questions.ts'

/** Grades a challenge reply against the held request (GW-5): pass/fail and a score in [0, 1]. */
export interface Grader {
  readonly name: string
  grade(reply: Content, original: Content, signal?: AbortSignal): Promise<Grade>
}

/** Asks the challenge's question for a request of this domain and intent. */
export interface QuestionSource {
  readonly name: string
  question(domain: Domain, intent: Intent, signal?: AbortSignal): Promise<string>
}

/** The offline grader: the documented heuristic in grade.ts (length, connectives of reasoning, relevance). */
export class HeuristicGrader implements Grader {
  readonly name = 'heuristic'
  async grade(reply: Content, original: Content): Promise<Grade> {
    return gradeReasoning(reply.reveal(), original.reveal())
  }
}

/** The offline questions: templates by domain and intent. */
export class TemplateQuestions implements QuestionSource {
  readonly name = 'templates'
  async question(domain: Domain, intent: Intent): Promise<string> {
    return challengeQuestion(domain, intent)
  }
}
