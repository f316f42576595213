import { z } from 'zod';
import { roles } from '../db';

/** Schemas shared by several routers. */
export const idParams = z.object({ id: z.uuid() });
export const role = z.enum(roles);
export const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(25),
  cursor: z.string().max(512).optional(),
});
export const page = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item), nextCursor: z.string().nullable() });
export const timestamp = z.iso.datetime({ offset: true });
export const noContent = { description: 'Done' };
