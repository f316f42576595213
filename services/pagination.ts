import { Op, type Order, type WhereOptions } from 'sequelize';
import { ValidationError } from '../lib/errors';

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface PageRequest {
  limit: number;
  cursor?: string;
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

/** What `pageInCreationOrder` hands its query: merge `after` into the query's own filter. */
export interface CreationOrderQuery {
  after: WhereOptions;
  order: Order;
  limit: number;
}

/**
 * One page of rows in creation order (oldest first, or newest first), keyset-paginated on
 * (created_at, id): pages stay stable while rows are added, and ties on created_at are broken by
 * id. `find` runs the actual query.
 */
export async function pageInCreationOrder<T extends { id: string; createdAt: Date }>(
  request: PageRequest,
  find: (query: CreationOrderQuery) => Promise<T[]>,
  opts: { newestFirst?: boolean } = {},
): Promise<Page<T>> {
  const cursor = decodeCursor(request.cursor);
  const beyond = opts.newestFirst ? Op.lt : Op.gt;
  const direction = opts.newestFirst ? 'DESC' : 'ASC';
  const after: WhereOptions = cursor?.createdAt
    ? {
        [Op.or]: [
          { createdAt: { [beyond]: new Date(cursor.createdAt) } },
          { createdAt: new Date(cursor.createdAt), id: { [beyond]: cursor.id } },
        ],
      }
    : {};
  // One row more than asked tells whether another page follows.
  const rows = await find({ after, order: [['createdAt', direction], ['id', direction]], limit: request.limit + 1 });
  const items = rows.slice(0, request.limit);
  const last = items.at(-1);
  return {
    items,
    nextCursor: rows.length > request.limit && last ? encodeCursor({ id: last.id, createdAt: last.createdAt.toISOString() }) : null,
  };
}
