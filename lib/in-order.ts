/**
 * Runs `inspect` on up to `concurrency` items at once and yields the results in input order.
 * Each promise gets a no-op catch when it starts, so one that fails while an earlier one is
 * awaited is not an unhandled rejection; its error is thrown when its turn comes.
 */
export async function* inOrder<T, R>(items: AsyncIterable<T> | Iterable<T>, concurrency: number, inspect: (item: T) => Promise<R>): AsyncGenerator<R> {
  const window: Array<Promise<R>> = [];
  for await (const item of items) {
    const pending = inspect(item);
    pending.catch(() => undefined);
    window.push(pending);
    const next = window.length >= concurrency ? window.shift() : undefined;
    if (next) yield await next;
  }
  for (let next = window.shift(); next; next = window.shift()) yield await next;
}
