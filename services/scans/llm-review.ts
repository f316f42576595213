import { Op } from 'sequelize';
import { z } from 'zod';
import { Issue, Scan, ScanFile, severities } from '../../db';
import type { Config } from '../../lib/config';
import { hasRealChatModel, structuredCompletion, type LlmCall, type LlmDeps } from '../llm';
import { codeContextOf, upsertIssues, type IssueInput, type ScanDeps, type StepContext } from './pipeline';
import { ensureWorkspace } from './workspace';

/**
 * The LLM analyzer: a real chat model reads source files and reports findings the rules cannot
 * express. Its findings are validated (structured output), merged with the rule findings (one
 * near the same line with the same CWE is the rules' already) and tracked like any issue. It
 * runs only when the tenant's chat provider is a real model: the built-in one cannot read code.
 */

export type LlmReviewDeps = ScanDeps & LlmDeps & { config: Pick<Config, 'SCAN_LLM_MAX_FILES'> };

const reviewedLanguages = ['javascript', 'typescript', 'python', 'java', 'go', 'php', 'ruby', 'csharp', 'kotlin', 'rust', 'c', 'cpp', 'shell'];
/** Files the model reads whole: larger ones would cost much and fit badly in a context window. */
const MAX_REVIEWED_BYTES = 24 * 1024;
const FILES_PER_REVIEW_BATCH = 10;

const reviewSchema = z.object({
  findings: z
    .array(
      z.object({
        line: z.number().int().min(1),
        title: z.string().min(3).max(120),
        severity: z.enum(severities),
        cwe: z.string().regex(/^CWE-\d{1,5}$/).nullable(),
        message: z.string().min(1).max(1000),
        code: z.string().max(500).describe('The offending code, copied from the file'),
      }),
    )
    .max(20),
});

function eligibleFiles(scanId: string) {
  return { scanId, state: 'analyzed' as const, language: reviewedLanguages, bytes: { [Op.lte]: MAX_REVIEWED_BYTES } };
}

/** How many review batches the scan's LLM stage has, or why it does not run. */
export async function planLlmReview(deps: LlmReviewDeps, scanId: string): Promise<{ batches: number; files: number } | { skipped: string }> {
  const scan = await Scan.findByPk(scanId, { rejectOnEmpty: true });
  if (!(await hasRealChatModel(deps.config, scan.tenantId))) {
    return { skipped: "The tenant's chat provider is the built-in one, which cannot analyze code; configure a real model to run the LLM analyzer." };
  }
  if (deps.config.SCAN_LLM_MAX_FILES === 0) return { skipped: 'The LLM analyzer is turned off (SCAN_LLM_MAX_FILES=0).' };
  const files = Math.min(await ScanFile.count({ where: eligibleFiles(scanId) }), deps.config.SCAN_LLM_MAX_FILES);
  return { files, batches: Math.ceil(files / FILES_PER_REVIEW_BATCH) };
}

const normalize = (code: string) => code.replace(/\s+/g, ' ').trim();

/** Has the model review one batch of files and records its findings as issues (source `llm`). */
export async function reviewScanBatchWithLlm(deps: LlmReviewDeps, scanId: string, batch: number, call: LlmCall, context: StepContext): Promise<{ filesReviewed: number; issuesFound: number }> {
  const scan = await Scan.findByPk(scanId, { rejectOnEmpty: true });
  const limit = Math.max(0, Math.min(FILES_PER_REVIEW_BATCH, deps.config.SCAN_LLM_MAX_FILES - batch * FILES_PER_REVIEW_BATCH));
  const files = await ScanFile.findAll({ where: eligibleFiles(scanId), order: [['seq', 'ASC']], offset: batch * FILES_PER_REVIEW_BATCH, limit });
  const { tree } = await ensureWorkspace(deps, scan, context, context.signal);
  const inputs: IssueInput[] = [];
  try {
    for (const file of files) {
      inputs.push(...(await reviewFile(deps, scan, file, call, (await tree.read(file)).toString('utf8'))));
      context.heartbeat?.({ batch, reviewed: file.path });
    }
  } finally {
    await tree.close();
  }
  await deps.sequelize.transaction((transaction) => upsertIssues(deps.sequelize, scan, inputs, transaction));
  return { filesReviewed: files.length, issuesFound: inputs.length };
}

/** The model's findings in one file that the rules did not report already. */
async function reviewFile(deps: LlmReviewDeps, scan: Scan, file: ScanFile, call: LlmCall, text: string): Promise<IssueInput[]> {
  const numbered = text
    .split('\n')
    .map((line, i) => `${i + 1}: ${line}`)
    .join('\n');
  const { value } = await structuredCompletion(deps, { ...call, projectId: scan.projectId }, {
    name: 'security_review',
    schema: reviewSchema,
    temperature: 0,
    messages: [
      {
        role: 'system',
        content:
          'You are a meticulous application-security reviewer. Report only real, exploitable security weaknesses in the given file ' +
          '(injection, unsafe deserialization, broken authentication or access control, secrets, SSRF, path traversal, weak cryptography). ' +
          'For each: the line number, a short title, severity, the CWE id if one fits, a message saying what is wrong and how to fix it, and the offending code copied verbatim. ' +
          'No style issues. An empty list is a fine answer.',
      },
      { role: 'user', content: `File ${file.path} (${file.language}):\n\n${numbered}` },
    ],
  });
  const rules = await Issue.findAll({ where: { projectId: scan.projectId, path: file.path, lastSeenScanId: scan.id, source: 'rule' }, attributes: ['startLine', 'cwe'] });
  const occurrences = new Map<string, number>();
  const inputs: IssueInput[] = [];
  for (const f of value.findings) {
    // The rules found it already: one issue, not two.
    if (rules.some((r) => Math.abs(r.startLine - f.line) <= 3 && (f.cwe === null || r.cwe === f.cwe))) continue;
    const normalizedMatch = normalize(f.code) || normalize(f.title).toLowerCase();
    const occurrence = occurrences.get(normalizedMatch) ?? 0;
    occurrences.set(normalizedMatch, occurrence + 1);
    const finding = {
      ruleId: 'llm-review',
      title: f.title,
      severity: f.severity,
      cwe: f.cwe,
      message: f.message,
      path: file.path,
      startLine: f.line,
      endLine: f.line,
      startColumn: 1,
      matchedText: f.code.slice(0, 500),
      normalizedMatch,
      occurrence,
      suppressed: false,
    };
    inputs.push({ source: 'llm', finding, codeContext: codeContextOf(text, finding) });
  }
  return inputs;
}
