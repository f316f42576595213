import { Job, terminalJobStatuses, type JobEvent } from '../db';
import type { Logger } from '../lib/logger';
import { PgListener } from '../lib/pg-listener';
import { isTerminal, JOB_EVENTS_CHANNEL, jobEventsAfter } from './jobs';

/** The process's one connection listening for job events; close it on shutdown. */
export async function listenForJobEvents(config: { DATABASE_URL: string }, logger: Logger): Promise<PgListener> {
  const listener = new PgListener({ connectionString: config.DATABASE_URL, channels: [JOB_EVENTS_CHANNEL], logger, applicationName: 'auditflow-listener' });
  await listener.start();
  return listener;
}

/** Events read per query; a longer backlog is read in several. */
const PAGE_SIZE = 500;

export interface JobEventStreamRequest {
  jobId: string;
  /** The seq of the last event the client has (0: from the start). */
  afterSeq: number;
  /** Ends the stream (the client went away). */
  signal: AbortSignal;
}

/** An event that set a final status: the job takes no more events after it. */
const isTerminalEvent = (event: JobEvent) => terminalJobStatuses.some((status) => status === event.data.status);

/**
 * A job's events after `afterSeq`, in order: those already written, then each new one as it is
 * announced on the job-events channel, whichever API instance or worker wrote it. Ends after the
 * terminal event (at once when the job had already finished), or when `signal` aborts.
 */
export async function* streamJobEvents(listener: Pick<PgListener, 'subscribe'>, request: JobEventStreamRequest): AsyncGenerator<JobEvent> {
  const { jobId, signal } = request;
  let cursor = request.afterSeq;
  // Set by every wake-up; a burst of them while a read is under way costs one more read, not one each.
  let woken = true;
  let resume: (() => void) | undefined;
  const wake = () => {
    woken = true;
    resume?.();
  };
  // Subscribed before the first read: an event committed between a read and the subscription
  // would otherwise never be announced to us.
  const unsubscribe = listener.subscribe(JOB_EVENTS_CHANNEL, jobId, wake);
  signal.addEventListener('abort', wake);
  try {
    for (;;) {
      if (!woken) await new Promise<void>((resolve) => (resume = resolve));
      woken = false;
      resume = undefined;
      if (signal.aborted) return;
      // The status before the events: if the job had finished, the read below sees all of them.
      const job = await Job.findByPk(jobId, { attributes: ['status'] });
      if (!job) return; // deleted with its project
      let events: JobEvent[];
      do {
        events = await jobEventsAfter(jobId, cursor, PAGE_SIZE);
        for (const event of events) {
          if (signal.aborted) return;
          yield event;
          cursor = event.seq;
          if (isTerminalEvent(event)) return;
        }
      } while (events.length === PAGE_SIZE);
      // Finished, yet no terminal event after the cursor: the client already has it.
      if (isTerminal(job.status)) return;
    }
  } finally {
    unsubscribe();
    signal.removeEventListener('abort', wake);
  }
}
