/** The API over HTTP, as a client sees it, for benchmarks (not a benchmark itself: .ci/run runs only bench/*.ts). */

export interface Api {
  call<T>(method: string, route: string, body?: unknown): Promise<T>;
  /** A multipart/form-data request (uploads). */
  upload<T>(route: string, form: FormData): Promise<T>;
  token?: string;
}

export interface JobView {
  id: string;
  status: string;
  workflowId: string;
  counters: Record<string, number>;
  error: { message: string } | null;
}

export function apiAt(base: string): Api {
  const send = async <T>(method: string, route: string, body: string | FormData | undefined, contentType?: string): Promise<T> => {
    const res = await fetch(`${base}/api/v1${route}`, {
      method,
      headers: { ...(contentType ? { 'content-type': contentType } : {}), ...(api.token ? { authorization: `Bearer ${api.token}` } : {}) },
      body,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route} answered ${res.status}: ${text}`);
    return JSON.parse(text) as T;
  };
  const api: Api = {
    call: <T>(method: string, route: string, body?: unknown) => send<T>(method, route, body === undefined ? undefined : JSON.stringify(body), body === undefined ? undefined : 'application/json'),
    upload: <T>(route: string, form: FormData) => send<T>('POST', route, form),
  };
  return api;
}

/** Polls GET /jobs/:id every 100 ms until the job is no longer queued or running. */
export async function jobEnd(api: Api, job: JobView): Promise<JobView> {
  let seen = job;
  while (seen.status === 'queued' || seen.status === 'running') {
    await new Promise((r) => setTimeout(r, 100));
    seen = await api.call<JobView>('GET', `/jobs/${job.id}`);
  }
  return seen;
}
