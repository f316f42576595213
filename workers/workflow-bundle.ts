import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';

/**
 * The workflow bundle, built once and run from a file. The worker builds it in a child process:
 * webpack leaves about 100 MB in the heap of whoever runs it, and a worker keeps its heap for
 * hours. The test harness builds it in jest's global setup with the same function.
 */

/** Bundles workflows/ (its webpack report silenced) and writes the code to `file`. */
export async function writeWorkflowBundle(file: string): Promise<void> {
  const bundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../workflows'), logger: new DefaultLogger('WARN') });
  await writeFile(file, bundle.code);
}

/** Runs this module as a child (with the same loader flags, e.g. tsx in development) to write the bundle to `file`. */
export async function writeWorkflowBundleInChild(file: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, __filename, file], { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bundling the workflows failed (exit code ${code})`))));
  });
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: workflow-bundle <output file>');
  writeWorkflowBundle(file).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
