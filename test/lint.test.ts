import { execFile } from 'node:child_process';
import path from 'node:path';

/**
 * The import boundaries of DESIGN.md ("Layout — who may import whom") are enforced by
 * eslint.config.mjs; this suite lints small probe files (in memory, never written to disk) with
 * that config, so a loosened or broken rule fails here and not only in review.
 *
 * ESLint runs in a child process: its flat config is an ES module, which jest's CommonJS runtime
 * cannot import. Type-aware rules are switched off for the probes (they exist only in memory, so
 * the TypeScript project cannot see them); the import rules need no type information.
 */

const repoRoot = path.resolve(__dirname, '..');

interface Probe {
  file: string;
  code: string;
}
interface LintResult {
  /** Rule ids reported for each probe, in order. */
  probes: string[][];
  /** Severity (0 off, 1 warn, 2 error) of selected rules for a TypeScript file, from the real config. */
  severities: Record<string, number>;
  projectService: unknown;
}

const checkedRules = [
  '@typescript-eslint/no-floating-promises',
  '@typescript-eslint/no-misused-promises',
  '@typescript-eslint/no-explicit-any',
  '@typescript-eslint/consistent-type-imports',
  '@typescript-eslint/no-unused-vars',
];

const childScript = `
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
let input = '';
for await (const chunk of process.stdin) input += chunk;
const { probes, rules } = JSON.parse(input);
const real = new ESLint({ cwd: process.cwd() });
const config = await real.calculateConfigForFile('api/app.ts');
const severity = (entry) => {
  const level = Array.isArray(entry) ? entry[0] : entry;
  return typeof level === 'number' ? level : ({ off: 0, warn: 1, error: 2 })[level] ?? 0;
};
const severities = Object.fromEntries(rules.map((rule) => [rule, severity(config.rules?.[rule])]));
const untyped = new ESLint({ cwd: process.cwd(), overrideConfig: [{ files: ['**/*.ts'], ...tseslint.configs.disableTypeChecked }] });
const results = [];
for (const probe of probes) {
  const [result] = await untyped.lintText(probe.code, { filePath: probe.file });
  const fatal = result.messages.find((m) => m.fatal);
  if (fatal) throw new Error(probe.file + ': ' + fatal.message);
  results.push(result.messages.map((m) => m.ruleId));
}
process.stdout.write(JSON.stringify({ probes: results, severities, projectService: config.languageOptions?.parserOptions?.projectService }));
`;

async function lint(probes: Probe[]): Promise<LintResult> {
  const child = execFile(process.execPath, ['--input-type=module', '-e', childScript], { cwd: repoRoot, maxBuffer: 16 * 1024 * 1024 });
  child.stdin?.end(JSON.stringify({ probes, rules: checkedRules }));
  const output = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`eslint child exited with ${code}: ${stderr}`))));
  });
  return JSON.parse(output) as LintResult;
}

const RESTRICTED = '@typescript-eslint/no-restricted-imports';
type Expectation = 'allowed' | 'restricted';

/** [file the import is written in, the import statement, whether the boundary rule must report it] */
const imports: Array<[string, string, Expectation]> = [
  // workflows/: the SDK, its own folder, types of activities; nothing else.
  ['workflows/probe.ts', "import { proxyActivities } from '@temporalio/workflow';", 'allowed'],
  ['workflows/probe.ts', "import { defineSearchAttributeKey } from '@temporalio/common';", 'allowed'],
  ['workflows/probe.ts', "import { TASK_QUEUE } from './definitions';", 'allowed'],
  ['workflows/probe.ts', "import { auditRetention } from './audit-retention';", 'allowed'],
  ['workflows/probe.ts', "import type { Activities } from '../activities';", 'allowed'],
  ['workflows/probe.ts', "import { type Activities } from '../activities';", 'allowed'],
  ['workflows/probe.ts', "import { createActivities } from '../activities';", 'restricted'],
  ['workflows/probe.ts', "import { createAuditActivities } from '../activities/audit';", 'restricted'],
  ['workflows/probe.ts', "import { randomUUID } from 'node:crypto';", 'restricted'],
  ['workflows/probe.ts', "import crypto from 'crypto';", 'restricted'],
  ['workflows/probe.ts', "import { z } from 'zod';", 'restricted'],
  ['workflows/probe.ts', "import { Client } from '@temporalio/client';", 'restricted'],
  ['workflows/probe.ts', "import { sleep } from '@temporalio/workflow/lib/workflow';", 'restricted'],
  ['workflows/probe.ts', "import { loadConfig } from '../lib/config';", 'restricted'],
  ['workflows/probe.ts', "import type { Config } from '../lib/config';", 'restricted'],
  ['workflows/probe.ts', "import { loadConfig } from './../lib/config';", 'restricted'],
  ['workflows/probe.ts', "export { loadConfig } from '../lib/config';", 'restricted'],
  // lib/: nothing of ours above it.
  ['lib/probe.ts', "import { randomToken } from './crypto';", 'allowed'],
  ['lib/probe.ts', "import { z } from 'zod';", 'allowed'],
  ['lib/probe.ts', "import { Project } from '../db';", 'restricted'],
  ['lib/probe.ts', "import type { AuditScope } from '../services/audit';", 'restricted'],
  ['lib/probe.ts', "import { createApp } from '../api/app';", 'restricted'],
  ['lib/probe.ts', "import { TASK_QUEUE } from '../workflows/definitions';", 'restricted'],
  ['lib/probe.ts', "import { createActivities } from '../activities';", 'restricted'],
  ['lib/probe.ts', "import { ensureAuditRetentionSchedule } from '../workers/schedules';", 'restricted'],
  // db/: lib/config and lib/logger only.
  ['db/probe.ts', "import { loadConfig } from '../lib/config';", 'allowed'],
  ['db/probe.ts', "import type { Logger } from '../lib/logger';", 'allowed'],
  ['db/models/probe.ts', "import type { Logger } from '../../lib/logger';", 'allowed'],
  ['db/probe.ts', "import { randomToken } from '../lib/crypto';", 'restricted'],
  ['db/probe.ts', "import { AuditScope } from '../services/audit';", 'restricted'],
  ['db/models/probe.ts', "import { AuditScope } from '../../services/audit';", 'restricted'],
  ['db/probe.ts', "import { TASK_QUEUE } from '../workflows/definitions';", 'restricted'],
  // services/: db/, lib/, workflows/definitions.
  ['services/probe.ts', "import { Project } from '../db';", 'allowed'],
  ['services/probe.ts', "import { AppError } from '../lib/errors';", 'allowed'],
  ['services/probe.ts', "import { TASK_QUEUE } from '../workflows/definitions';", 'allowed'],
  ['services/probe.ts', "import { auditRetention } from '../workflows';", 'restricted'],
  ['services/probe.ts', "import { auditRetention } from '../workflows/audit-retention';", 'restricted'],
  ['services/probe.ts', "import { createApp } from '../api/app';", 'restricted'],
  ['services/probe.ts', "import { createActivities } from '../activities';", 'restricted'],
  ['services/probe.ts', "import { ensureAuditRetentionSchedule } from '../workers/schedules';", 'restricted'],
  // activities/: services/, db/, lib/, types of workflows/definitions.
  ['activities/probe.ts', "import { archiveExpiredAuditLogs } from '../services/audit';", 'allowed'],
  ['activities/probe.ts', "import type { AuditRetentionInput } from '../workflows/definitions';", 'allowed'],
  ['activities/probe.ts', "import { TASK_QUEUE } from '../workflows/definitions';", 'restricted'],
  ['activities/probe.ts', "import { auditRetention } from '../workflows/audit-retention';", 'restricted'],
  ['activities/probe.ts', "import { createApp } from '../api/app';", 'restricted'],
  ['activities/probe.ts', "import { ensureAuditRetentionSchedule } from '../workers/schedules';", 'restricted'],
  // api/: services/, db/, lib/, workflows/definitions.
  ['api/routes/probe.ts', "import { createProject } from '../../services/projects';", 'allowed'],
  ['api/routes/probe.ts', "import { TASK_QUEUE } from '../../workflows/definitions';", 'allowed'],
  ['api/routes/probe.ts', "import { ApiRouter } from '../route';", 'allowed'],
  ['api/routes/probe.ts', "import { auditRetention } from '../../workflows';", 'restricted'],
  ['api/routes/probe.ts', "import type { Activities } from '../../activities';", 'restricted'],
  ['api/routes/probe.ts', "import { ensureAuditRetentionSchedule } from '../../workers/schedules';", 'restricted'],
  // workers/: activities/, services/, lib/, db/, workflows/definitions.
  ['workers/probe.ts', "import { createActivities } from '../activities';", 'allowed'],
  ['workers/probe.ts', "import { AuditScope } from '../services/audit';", 'allowed'],
  ['workers/probe.ts', "import { TASK_QUEUE } from '../workflows/definitions';", 'allowed'],
  ['workers/probe.ts', "import { NativeConnection } from '@temporalio/worker';", 'allowed'],
  ['workers/probe.ts', "import { auditRetention } from '../workflows';", 'restricted'],
  ['workers/probe.ts', "import { createApp } from '../api/app';", 'restricted'],
];

/** Workflow code that must be reported, with the rule that reports it. */
const workflowCode: Array<[string, string]> = [
  ['export const r = Math.random();', 'no-restricted-properties'],
  ['export const id = crypto.randomUUID();', 'no-restricted-globals'],
  ['export const env = process.env.X;', 'no-restricted-globals'],
  ["export const load = () => import('./definitions');", 'no-restricted-syntax'],
];

describe('eslint.config.mjs', () => {
  let result: LintResult;
  beforeAll(async () => {
    result = await lint([
      ...imports.map(([file, statement]) => ({ file, code: `${statement}\n` })),
      ...workflowCode.map(([code]) => ({ file: 'workflows/probe.ts', code: `${code}\n` })),
    ]);
  }, 60_000);

  test('keeps the type-aware rules on at error level for TypeScript', () => {
    expect(result.severities).toEqual(Object.fromEntries(checkedRules.map((rule) => [rule, 2])));
    expect(result.projectService).toBe(true);
  });

  test.each(imports.map((entry, index) => [...entry, index] as const))('%s: %s is %s', (_file, _statement, expected, index) => {
    expect(result.probes[index]?.includes(RESTRICTED) ? 'restricted' : 'allowed').toBe(expected);
  });

  test.each(workflowCode.map((entry, index) => [...entry, imports.length + index] as const))(
    'workflows: `%s` is reported by %s',
    (_code, rule, index) => {
      expect(result.probes[index]).toContain(rule);
    },
  );
});
