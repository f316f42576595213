import { AsyncLocalStorage } from 'node:async_hooks';
import pino, { type Logger } from 'pino';

export type { Logger };

const logContext = new AsyncLocalStorage<Record<string, unknown>>();

/**
 * Runs `work` with fields (a request id, a job id) added to every line logged inside it, through
 * any logger of ours: code deep in a service need not be handed a child logger to be traceable.
 */
export function withLogContext<T>(fields: Record<string, unknown>, work: () => T): T {
  return logContext.run({ ...logContext.getStore(), ...fields }, work);
}

/**
 * One pino logger per process. Secrets never reach it: tokens, passwords, secret values and cookies are
 * redacted wherever they appear in a logged object.
 */
export function createLogger(opts: { level: string; pretty?: boolean; name?: string }, destination?: NodeJS.WritableStream): Logger {
  const options: pino.LoggerOptions = {
    name: opts.name ?? 'auditflow',
    level: opts.level,
    mixin: () => logContext.getStore() ?? {},
    redact: {
      paths: [
        'password',
        '*.password',
        'token',
        '*.token',
        'refreshToken',
        '*.refreshToken',
        'accessToken',
        '*.accessToken',
        // Secret values (request bodies of the vault, anything that carries one).
        'value',
        '*.value',
        'req.headers.authorization',
        'req.headers.cookie',
        'headers.authorization',
      ],
      censor: '[redacted]',
    },
    ...(opts.pretty && !destination ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss' } } } : {}),
  };
  return destination ? pino(options, destination) : pino(options);
}
