import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * One pino logger per process. Secrets never reach it: tokens, passwords and cookies are
 * redacted wherever they appear in a logged object.
 */
export function createLogger(opts: { level: string; pretty?: boolean; name?: string }): Logger {
  return pino({
    name: opts.name ?? 'auditflow',
    level: opts.level,
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
        'req.headers.authorization',
        'req.headers.cookie',
        'headers.authorization',
      ],
      censor: '[redacted]',
    },
    ...(opts.pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss' } } } : {}),
  });
}
