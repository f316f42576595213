import { randomUUID } from 'node:crypto';
import { startTestApp } from '../harness';
import { runEntry } from '../harness/processes';
import { auditRetentionScheduleId, jobReconciliationScheduleId } from '../../workflows/definitions';

describe('the worker process (workers/main.ts)', () => {
  it('serves both task queues, logs its identity, and drains and exits cleanly on SIGTERM', async () => {
    const queue = `test-proc-${randomUUID()}`;
    const worker = runEntry('workers/main.ts', { TEMPORAL_TASK_QUEUE: queue, TEMPORAL_LLM_TASK_QUEUE: `${queue}-llm` });
    try {
      await worker.waitFor(/"msg":"worker started"/, 60_000);
      const started = JSON.parse(worker.output().split('\n').find((l) => l.includes('"worker started"')) ?? '{}') as {
        identity?: string;
        taskQueues?: string[];
      };
      expect(started.identity).toMatch(new RegExp(`^${worker.child.pid}@`));
      expect(started.taskQueues).toContain(queue);

      worker.child.kill('SIGTERM');
      expect(await worker.exited).toEqual({ code: 0, signal: null });
      expect(worker.output()).toMatch(/"msg":"worker stopped"/);
    } finally {
      worker.child.kill('SIGKILL');
      // The worker created its queue's schedules at start: remove them, they would outlive the test.
      const t = await startTestApp();
      for (const id of [auditRetentionScheduleId(queue), jobReconciliationScheduleId(queue)]) {
        await t.temporal.schedule.getHandle(id).delete().catch(() => undefined);
      }
      await t.close();
    }
  });
});
