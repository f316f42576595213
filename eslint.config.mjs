// ESLint flat config. `npm run lint` = `eslint --max-warnings 0 .`: every finding fails CI.
//
// TypeScript files get the type-checked typescript-eslint rules (through the project service,
// which reads tsconfig.json) and the import boundaries of DESIGN.md ("Layout — who may import
// whom"), one `files:` block per folder. Plain JS files get ESLint's recommended rules only.
import { fileURLToPath } from 'node:url';
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const repoRoot = fileURLToPath(new URL('.', import.meta.url));

/**
 * `// eslint-disable…` comments must say why, after ` -- ` (ESLint's description separator):
 * e.g. `// eslint-disable-line @typescript-eslint/no-explicit-any -- tests read any JSON body`.
 */
const requireDisableReason = {
  meta: {
    type: 'suggestion',
    docs: { description: 'require a reason (` -- why`) on every eslint-disable comment' },
    schema: [],
    messages: { missing: 'Say why after " -- " in this eslint-disable comment.' },
  },
  create(context) {
    return {
      Program() {
        for (const comment of context.sourceCode.getAllComments()) {
          const text = comment.value.trim();
          if (/^eslint-disable(-next-line|-line)?(\s|$)/.test(text) && !/\s--\s*\S/.test(text)) {
            context.report({ loc: comment.loc, messageId: 'missing' });
          }
        }
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------
// Import boundaries (DESIGN.md, "Layout — who may import whom").
//
// Patterns are matched against the import specifier as written. Imports of our folders are
// relative, so `^(\.\./)+db(/|$)` means "the db/ folder, from any depth" (a file in
// services/x/y.ts reaches it as ../../db). A subfolder of the importing folder that happened to
// share a top-level folder's name would be caught too; our folders avoid such names.

/** A regex matching an import of one of our top-level `folders` (any depth, any file inside). */
const ours = (...folders) => `^(\\.\\./)+(${folders.join('|')})(/.*)?$`;
/** Every file of workflows/ except definitions.ts, the one module others may import. */
const workflowsExceptDefinitions = '^(\\.\\./)+workflows(/(?!definitions$).*)?$';

const layerMessage = (folder, allowed) => `${folder}/ may import only ${allowed} of ours (DESIGN.md, "who may import whom").`;

/** `@typescript-eslint/no-restricted-imports` options from a list of patterns. */
const restrictImports = (...patterns) => ['error', { patterns }];

const boundaries = [
  {
    // Workflow code runs in Temporal's deterministic sandbox: the SDK, its own folder, and the
    // *types* of the activities; no Node built-ins, no npm packages, nothing else of ours.
    //
    // gitignore semantics (the `ignore` package): `*` also matches the first path segment
    // (`@temporalio`, `.`, `..`), and a path whose parent directory is excluded cannot be
    // re-included, so the parents are re-included explicitly before their allowed children; the
    // last two patterns close the `./../lib/x` escape.
    files: ['workflows/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrictImports(
        {
          group: ['*', '!@temporalio/', '!@temporalio/workflow', '!@temporalio/common', '!./', '!./**', './**/..', './**/../**'],
          message:
            'Workflow code may import only @temporalio/workflow, @temporalio/common, files of workflows/ and types of ../activities (deterministic sandbox; do I/O in activities).',
        },
        {
          group: ['../activities', '../activities/**', '../../activities', '../../activities/**'],
          allowTypeImports: true,
          message: 'Workflows import only the types of activities (`import type`), then call them through proxyActivities.',
        },
      ),
      'no-restricted-syntax': [
        'error',
        { selector: 'ImportExpression', message: 'No dynamic import() in workflow code: import statically from the allowed modules.' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'crypto', message: 'Workflow code takes randomness and ids from the SDK (uuid4()), never crypto.' },
        { name: 'process', message: 'Workflow code has no process: pass values in the workflow input.' },
        { name: 'require', message: 'Workflow code imports statically from the allowed modules.' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'Workflow code takes randomness from the SDK (uuid4()), never Math.random.' },
      ],
    },
  },
  {
    files: ['lib/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrictImports({
        regex: ours('api', 'workflows', 'activities', 'workers', 'services', 'db', 'test', 'bench', 'scripts'),
        message: 'lib/ is infrastructure with no knowledge of our tables: it imports nothing of ours above it (DESIGN.md).',
      }),
    },
  },
  {
    files: ['db/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrictImports(
        { regex: ours('api', 'workflows', 'activities', 'workers', 'services', 'test', 'bench', 'scripts'), message: layerMessage('db', 'lib/config and lib/logger') },
        { regex: '^(\\.\\./)+lib(/(?!(config|logger)$).*)?$', message: layerMessage('db', 'lib/config and lib/logger') },
      ),
    },
  },
  {
    // services/ may also import workflows/definitions (ids, search-attribute keys, input types):
    // the jobs service starts the workflows that the API and activities share.
    files: ['services/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrictImports(
        { regex: ours('api', 'activities', 'workers', 'test', 'bench', 'scripts'), message: layerMessage('services', 'db/, lib/ and workflows/definitions') },
        { regex: workflowsExceptDefinitions, message: layerMessage('services', 'db/, lib/ and workflows/definitions') },
      ),
    },
  },
  {
    files: ['activities/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrictImports(
        { regex: ours('api', 'workers', 'test', 'bench', 'scripts'), message: layerMessage('activities', 'services/, db/, lib/ and types of workflows/definitions') },
        { regex: workflowsExceptDefinitions, message: layerMessage('activities', 'services/, db/, lib/ and types of workflows/definitions') },
        {
          regex: '^(\\.\\./)+workflows/definitions$',
          allowTypeImports: true,
          message: 'activities/ may import only the types of workflows/definitions (`import type`).',
        },
      ),
    },
  },
  {
    files: ['api/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrictImports(
        { regex: ours('activities', 'workers', 'test', 'bench', 'scripts'), message: layerMessage('api', 'services/, db/, lib/ and workflows/definitions') },
        { regex: workflowsExceptDefinitions, message: layerMessage('api', 'services/, db/, lib/ and workflows/definitions') },
      ),
    },
  },
  {
    // The worker passes the workflow code by path (require.resolve('../workflows')), which is
    // not an import: the bundler loads it into the sandbox.
    files: ['workers/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': restrictImports(
        { regex: ours('api', 'test', 'bench', 'scripts'), message: layerMessage('workers', 'activities/, services/, db/, lib/ and workflows/definitions') },
        { regex: workflowsExceptDefinitions, message: layerMessage('workers', 'activities/, services/, db/, lib/ and workflows/definitions') },
      ),
    },
  },
];

export default defineConfig(
  globalIgnores(['dist/', '.data/', '.tools/', 'node_modules/', 'coverage/']),
  {
    linterOptions: { reportUnusedDisableDirectives: 'error', reportUnusedInlineConfigs: 'error' },
    plugins: { local: { rules: { 'require-disable-reason': requireDisableReason } } },
    rules: { 'local/require-disable-reason': 'error' },
  },

  // Plain JavaScript (scripts/run.mjs, eslint.config.mjs, jest.config.js): no type information.
  {
    files: ['**/*.{js,mjs,cjs}'],
    extends: [js.configs.recommended],
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: globals.node },
  },
  { files: ['**/*.{js,cjs}'], languageOptions: { sourceType: 'commonjs' } },

  // TypeScript: type-checked rules.
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: repoRoot },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { prefer: 'type-imports' }],
      '@typescript-eslint/no-import-type-side-effects': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          caughtErrors: 'all',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
    },
  },

  // Tests read response bodies through the harness's `body: any` (declared there with a
  // reasoned disable comment): using such a value is fine in tests; declaring a new `any` still
  // needs its own disable comment with a reason (no-explicit-any stays on).
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },

  ...boundaries,
);
