import { ValidationError } from '../lib/errors';

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** Keyset position after the last item of a page; opaque to clients. */
export interface Cursor {
  id: string;
  createdAt?: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify(c)).toString('base64url');
}

export function decodeCursor(raw: string | undefined): Cursor | null {
  if (!raw) return null;
  try {
    const c = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Cursor;
    if (typeof c.id === 'string' && (c.createdAt === undefined || !Number.isNaN(Date.parse(c.createdAt)))) return c;
  } catch {
    // fall through to the error below
  }
  throw new ValidationError('Invalid cursor.', [{ path: 'cursor', message: 'is not a cursor this API returned' }]);
}
