import { literal, Op, where, type FindOptions, type Model, type ModelStatic, type Order, type WhereOptions } from 'sequelize';
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

/**
 * One order a keyset-paginated list can follow: a SQL expression over non-null columns of the
 * queried table, tie-broken by `id` in the same direction, so (key, id) is unique and pages stay
 * stable while rows are added or change elsewhere in the order.
 */
export interface KeysetOrder {
  /** Written into cursors: a cursor returned for another order is refused. */
  name: string;
  /**
   * The SQL expression ordered by, over unqualified columns (the query reads one table). Its
   * values must survive a round trip through JSON: numbers, text, or timestamps truncated to
   * milliseconds (`date_trunc('milliseconds', …)`, as JavaScript dates hold no more).
   */
  expression: string;
  direction: 'ASC' | 'DESC';
  /** What the expression yields, to check a cursor's value before it reaches SQL. */
  valueType: 'number' | 'string' | 'timestamp';
}

interface KeysetCursor {
  /** The order's name. */
  o: string;
  /** The last row's key. */
  k: string | number;
  id: string;
}

const KEYSET_VALUE = 'keysetValue';
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function decodeKeysetCursor(raw: string | undefined, order: KeysetOrder): KeysetCursor | null {
  if (!raw) return null;
  const invalid = (message: string) => new ValidationError('Invalid cursor.', [{ path: 'cursor', message }]);
  let c: Partial<KeysetCursor>;
  try {
    c = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<KeysetCursor>;
  } catch {
    throw invalid('is not a cursor this API returned');
  }
  const validKey =
    order.valueType === 'number' ? typeof c.k === 'number' && Number.isFinite(c.k) : typeof c.k === 'string' && (order.valueType === 'string' || !Number.isNaN(Date.parse(c.k)));
  if (typeof c.id !== 'string' || !uuid.test(c.id) || !validKey || c.k === undefined) throw invalid('is not a cursor this API returned');
  if (c.o !== order.name) throw invalid(`was returned for another order than ${order.name}: start again without a cursor`);
  return { o: c.o, k: c.k, id: c.id };
}

/** The key a row was read with (selected as `keysetValue`), in the form cursors hold. */
function keyOf(row: Model): string | number {
  const value: unknown = row.get(KEYSET_VALUE);
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'number' || typeof value === 'string') return value;
  throw new Error(`A keyset order yielded ${typeof value}: its expression must be non-null`);
}

/**
 * One page of `model` rows matching `filter`, in `order` then id, keyset-paginated: the query
 * reads `limit + 1` rows after the cursor's (key, id), never the rows before it.
 */
export async function pageByKeyset<M extends Model & { id: string }>(
  model: ModelStatic<M>,
  filter: WhereOptions,
  order: KeysetOrder,
  request: PageRequest,
  options: Pick<FindOptions, 'transaction'> = {},
): Promise<Page<M>> {
  const cursor = decodeKeysetCursor(request.cursor, order);
  const key = literal(order.expression);
  const beyond = order.direction === 'DESC' ? Op.lt : Op.gt;
  const after: WhereOptions = cursor
    ? { [Op.or]: [where(key, { [beyond]: cursor.k }), { [Op.and]: [where(key, cursor.k), { id: { [beyond]: cursor.id } }] }] }
    : {};
  const rows = await model.findAll({
    ...options,
    attributes: { include: [[key, KEYSET_VALUE]] },
    where: { [Op.and]: [filter, after] },
    order: [
      [key, order.direction],
      ['id', order.direction],
    ],
    limit: request.limit + 1,
  });
  const items = rows.slice(0, request.limit);
  const last = items.at(-1);
  return {
    items,
    nextCursor: rows.length > request.limit && last ? Buffer.from(JSON.stringify({ o: order.name, k: keyOf(last), id: last.id } satisfies KeysetCursor)).toString('base64url') : null,
  };
}
