/**
 * Document ingestion at scale, in one run on one machine (issue 7, criterion 11):
 *  - a corpus of real Markdown and text documents nobody here wrote: READMEs, changelogs,
 *    licences and guides found under node_modules (the project's, then other node_modules trees
 *    on this machine, then /usr/share/doc when those hold too few), deduplicated by content,
 *    none over MAX_DOCUMENT_BYTES;
 *  - ingested end to end: one ZIP of it uploaded to POST /projects/:id/documents on the API
 *    (in-process, over HTTP), the `ingestDocuments` workflow on a Temporal dev server, its
 *    activities in a real worker process (workers/main.ts), into Postgres and LanceDB;
 *  - the same read out of the same ZIP → open → parse → chunk → embed → store as a plain
 *    in-process loop (the pipeline's own step functions, bench/harness/ingest-loop.ts) into a
 *    project of another tenant, registered for it: the gateway caches embeddings per tenant, so
 *    the loop embeds every chunk as the job does (both sides' cache hits are printed). What the
 *    platform costs on top is the ratio of the two;
 *  - search latency per mode (vector, keyword, hybrid) through POST /search (50 queries each,
 *    20 in the quick run), and the worker's peak RSS.
 * Figures only: speed never fails the run (an ingestion that fails, or stores other documents
 * or chunks than the loop, does).
 *
 *   node --import tsx bench/ingest.ts [--quick]     (quick: 200 documents; full: 2,000)
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { lstat, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { QueryTypes, type Sequelize } from 'sequelize';
import { formatOf } from '../lib/documents/formats';
import { zipOf } from '../test/harness/zip';
import { median } from './harness';
import { jobEnd, type Api, type JobView } from './harness/api';
import { ingestZipInProcess, type LoopDocument } from './harness/ingest-loop';
import { withBenchTemporal } from './harness/temporal';
import { workflowTimeline } from './harness/timeline';
import { withBenchPlatform } from './harness/platform';
import { procStatus } from './harness/worker-process';

const quick = process.argv.includes('--quick');
const targetDocuments = quick ? 200 : 2_000;
/** Larger files (a few huge changelogs) are left out: a sane size for a knowledge-base document. */
const MAX_DOCUMENT_BYTES = 256 * 1024;
/** The ingestion job's default batch size (services/documents/ingestion.ts): the loop embeds and stores in batches of the same size. */
const BATCH_SIZE = 100;
/** Search latency is sampled with fewer queries in the quick run (CI), which must stay well under a minute. */
const QUERIES_PER_MODE = quick ? 20 : 50;
const TOP_K = 10;
const searchModes = ['vector', 'keyword', 'hybrid'] as const;

const repoRoot = path.resolve(__dirname, '..');
/** Where documents are looked for, in order: node_modules trees first, the system's documentation only to make up the number. */
const corpusRoots = [
  { label: 'node_modules', dir: path.join(repoRoot, 'node_modules') },
  { label: 'usr-lib-node_modules', dir: '/usr/lib/node_modules' },
  { label: 'usr-local-lib-node_modules', dir: '/usr/local/lib/node_modules' },
  { label: 'usr-share-doc', dir: '/usr/share/doc' },
];

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const rate = (count: number, ms: number, unit: string) => `${((count / ms) * 1000).toFixed(0)} ${unit}/s`;
const mib = (bytes: number | null) => (bytes === null ? 'n/a' : `${(bytes / 1024 / 1024).toFixed(1)} MiB`);
const thousands = (n: number) => n.toLocaleString('en-US');
const digest = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

// ---------------------------------------------------------------------------------------------
// The corpus

interface Corpus {
  documents: LoopDocument[];
  bytes: number;
  /** Documents taken from each root. */
  from: Map<string, number>;
  duplicates: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Text we would ingest as Markdown or text: valid UTF-8, no NUL, not empty or whitespace. */
function isText(bytes: Buffer): boolean {
  if (bytes.includes(0)) return false;
  try {
    return utf8.decode(bytes).trim().length > 0;
  } catch {
    return false;
  }
}

/** Markdown and text files under `dir` (symbolic links not followed), in a fixed order that mixes packages (a small corpus samples many). */
async function textFilesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string): Promise<void> => {
    const entries = await readdir(current, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile() && /\.(md|markdown|txt)$|^(readme|license|licence|changelog|history|notice|authors|copyright)([-.][\w.-]*)?$/i.test(entry.name)) found.push(full);
    }
  };
  await walk(dir);
  return found.map((file) => ({ file, key: digest(file) })).sort((a, b) => (a.key < b.key ? -1 : 1)).map((f) => f.file);
}

/**
 * Up to `target` distinct documents. Each is named by its root's label and its path below it
 * (its identity in the upload and in the project); a name with no extension we parse (LICENSE-MIT,
 * copyright) gets `.txt`, since it is text all the same.
 */
async function buildCorpus(target: number): Promise<Corpus> {
  const seen = new Set<string>();
  const corpus: Corpus = { documents: [], bytes: 0, from: new Map(), duplicates: 0 };
  for (const root of corpusRoots) {
    if (!(await lstat(root.dir).catch(() => null))?.isDirectory()) continue;
    for (const file of await textFilesUnder(root.dir)) {
      if (corpus.documents.length >= target) return corpus;
      const stats = await lstat(file);
      if (stats.size > MAX_DOCUMENT_BYTES) continue;
      const bytes = await readFile(file);
      if (!isText(bytes)) continue;
      const hash = digest(bytes);
      if (seen.has(hash)) {
        corpus.duplicates += 1;
        continue;
      }
      seen.add(hash);
      const relative = `${root.label}/${path.relative(root.dir, file)}`;
      const name = formatOf(relative) === 'text' || formatOf(relative) === 'markdown' ? relative : `${relative}.txt`;
      corpus.documents.push({ name, bytes });
      corpus.bytes += bytes.length;
      corpus.from.set(root.label, (corpus.from.get(root.label) ?? 0) + 1);
    }
  }
  return corpus;
}

/** A query per sampled document, as a person would type it: its first heading or line, up to a dozen words. */
function queriesFrom(corpus: Corpus, count: number): string[] {
  const step = Math.max(1, Math.floor(corpus.documents.length / count));
  const queries: string[] = [];
  for (let i = 0; i < corpus.documents.length && queries.length < count; i += step) {
    const lines = (corpus.documents[i]?.bytes.toString('utf8') ?? '').split('\n').map((l) => l.replace(/[#*_`>[\]()|=-]+/g, ' ').trim());
    const line = lines.find((l) => l.split(/\s+/).length >= 3) ?? lines.find((l) => l.length > 0);
    if (line) queries.push(line.split(/\s+/).slice(0, 12).join(' '));
  }
  return queries;
}

// ---------------------------------------------------------------------------------------------

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

/** Latency of each query in `mode` through POST /search (one warm-up query first, not counted). */
async function searchLatencies(api: Api, projectId: string, mode: (typeof searchModes)[number], queries: string[]): Promise<{ p50: number; p95: number; hits: number }> {
  const search = (query: string) => api.call<{ results: unknown[] }>('POST', '/search', { query, projectId, topK: TOP_K, mode });
  await search(queries[0] ?? 'warm-up');
  const ms: number[] = [];
  let hits = 0;
  for (const query of queries) {
    const started = performance.now();
    const { results } = await search(query);
    ms.push(performance.now() - started);
    if (results.length > 0) hits += 1;
  }
  ms.sort((a, b) => a - b);
  return { p50: median(ms), p95: percentile(ms, 95), hits };
}

/** Embeddings the gateway served to the tenant from its cache: the two sides compare fairly when neither had any. */
async function embeddingCacheHits(sequelize: Sequelize, tenantId: string): Promise<number> {
  const [row] = await sequelize.query<{ hits: number }>(`SELECT coalesce(sum(hits), 0)::int AS hits FROM llm_cache WHERE tenant_id = :tenantId AND operation = 'embedding'`, {
    replacements: { tenantId },
    type: QueryTypes.SELECT,
  });
  return row?.hits ?? 0;
}

async function storedIn(sequelize: Sequelize, projectId: string): Promise<{ documents: number; chunks: number }> {
  const [row] = await sequelize.query<{ documents: number; chunks: number }>(
    `SELECT count(*)::int AS documents, coalesce(sum(chunk_count), 0)::int AS chunks FROM documents WHERE project_id = :projectId AND status = 'stored'`,
    { replacements: { projectId }, type: QueryTypes.SELECT },
  );
  return row ?? { documents: 0, chunks: 0 };
}

async function run(corpus: Corpus, temporalAddress: string): Promise<void> {
  const env = {
    TEMPORAL_ADDRESS: temporalAddress,
    TEMPORAL_TASK_QUEUE: `bench-ingest-${randomUUID().slice(0, 8)}`,
    JWT_SECRET: randomBytes(48).toString('base64url'),
    BCRYPT_COST: '4',
    LOG_LEVEL: 'silent',
  };
  await withBenchPlatform(env, async ({ dir, config, sequelize, temporal, blobs, vectors, api, tenantId, registerTenant, worker, pid, startupPeak, peakReset }) => {
    const project = await api.call<{ id: string }>('POST', '/projects', { name: 'ingested through the API' });
    const { api: loopApi, tenantId: loopTenantId } = await registerTenant('bench-loop');
    const baselineProject = await loopApi.call<{ id: string }>('POST', '/projects', { name: 'ingested by the baseline loop' });
    const archive = await zipOf(Object.fromEntries(corpus.documents.map((d) => [d.name, d.bytes.toString('utf8')])));
    const archiveFile = path.join(dir, 'corpus.zip');
    await writeFile(archiveFile, archive);

    // End to end: the upload, the workflow, the worker, until the job is seen finished.
    const rssAtStart = procStatus(pid, 'VmRSS');
    let sampledPeak = 0;
    const sampler = setInterval(() => (sampledPeak = Math.max(sampledPeak, procStatus(pid, 'VmRSS') ?? 0)), 100);
    const started = performance.now();
    const form = new FormData();
    form.append('files', new Blob([archive], { type: 'application/zip' }), 'corpus.zip');
    const job = await jobEnd(api, await api.upload<JobView>(`/projects/${project.id}/documents`, form));
    const endToEndMs = performance.now() - started;
    clearInterval(sampler);
    const workerPeak = peakReset ? procStatus(pid, 'VmHWM') : sampledPeak;
    if (job.status !== 'completed') throw new Error(`the ingestion job ended ${job.status}: ${job.error?.message ?? ''}\n${worker.output().slice(-4000)}`);
    const timeline = await workflowTimeline(temporal, job.workflowId);

    // The baseline, from the same ZIP, into the other tenant's project.
    const zipLimits = { maxEntries: config.ZIP_MAX_ENTRIES, maxInflatedBytes: config.ZIP_MAX_INFLATED_BYTES, maxCompressionRatio: config.ZIP_MAX_COMPRESSION_RATIO };
    const baseline = await ingestZipInProcess({ sequelize, blobs, vectors, config }, { tenantId: loopTenantId, projectId: baselineProject.id }, archiveFile, zipLimits, BATCH_SIZE);
    const cacheHits = { job: await embeddingCacheHits(sequelize, tenantId), loop: await embeddingCacheHits(sequelize, loopTenantId) };

    const viaApi = await storedIn(sequelize, project.id);
    const viaLoop = await storedIn(sequelize, baselineProject.id);
    const queries = queriesFrom(corpus, QUERIES_PER_MODE);
    const latencies = [];
    for (const mode of searchModes) latencies.push({ mode, ...(await searchLatencies(api, project.id, mode, queries)) });

    console.log(`document ingestion, ${quick ? 'quick' : 'full'} run`);
    console.log(
      `corpus: ${thousands(corpus.documents.length)} documents, ${mib(corpus.bytes)} ` +
        `(${[...corpus.from].map(([root, n]) => `${thousands(n)} from ${root}`).join(', ')}; ${thousands(corpus.duplicates)} duplicates and files over ${MAX_DOCUMENT_BYTES / 1024} KiB left out), one ZIP of ${mib(archive.length)}`,
    );
    console.log(
      `through API + Temporal: ${seconds(endToEndMs)} end to end; ${thousands(job.counters.documentsStored ?? 0)} documents stored, ${thousands(job.counters.documentsFailed ?? 0)} failed, ` +
        `${thousands(job.counters.chunksCreated ?? 0)} chunks; ${rate(viaApi.documents, endToEndMs, 'documents')}, ${rate(viaApi.chunks, endToEndMs, 'chunks')}`,
    );
    const steps = [...timeline.steps].sort((a, b) => b[1].runMs - a[1].runMs);
    console.log(`  ${timeline.runs} workflow run(s), ${seconds(timeline.to - timeline.from)} from the first event to the last; per step (count, run time summed, queued summed, first scheduled to last done):`);
    for (const [name, s] of steps) console.log(`    ${name.padEnd(28)} ${String(s.count).padStart(5)}  ${seconds(s.runMs).padStart(10)}  ${seconds(s.queueMs).padStart(10)}  ${seconds(s.to - s.from).padStart(10)}`);
    console.log(
      `baseline loop: ${seconds(baseline.ms)}; ${thousands(baseline.documents)} documents, ${thousands(baseline.failed)} failed, ${thousands(baseline.chunks)} chunks; ` +
        `${rate(baseline.documents, baseline.ms, 'documents')}, ${rate(baseline.chunks, baseline.ms, 'chunks')} ` +
        `(read out of the ZIP ${seconds(baseline.readMs)}, open + parse ${seconds(baseline.parseMs)}, chunk ${seconds(baseline.chunkMs)}, stage ${seconds(baseline.stageMs)}, embed ${seconds(baseline.embedMs)}, store + publish ${seconds(baseline.storeMs)})`,
    );
    console.log(`embeddings served from the gateway's cache: ${thousands(cacheHits.job)} to the job, ${thousands(cacheHits.loop)} to the loop (each in a tenant of its own)`);
    console.log(`ratio end to end / baseline: ${(endToEndMs / baseline.ms).toFixed(2)}× (goal ≤ 1.3× at 2,000 documents${quick ? '; a quick run’s fixed costs weigh more' : ''})`);
    console.log(`search through POST /search, ${queries.length} queries per mode, topK ${TOP_K}, over the API's project:`);
    for (const l of latencies) console.log(`  ${l.mode.padEnd(8)} p50 ${l.p50.toFixed(1)} ms, p95 ${l.p95.toFixed(1)} ms (${l.hits} of ${queries.length} with results)`);
    console.log(
      `worker peak RSS during the ingestion: ${mib(workerPeak)}${peakReset ? '' : ' (sampled every 100 ms)'}; ${mib(rssAtStart)} when it started, ${mib(startupPeak)} peak at start-up (workflow bundling)`,
    );
    if (viaApi.documents !== viaLoop.documents || viaApi.chunks !== viaLoop.chunks) {
      throw new Error(`the job stored ${viaApi.documents} documents and ${viaApi.chunks} chunks, the loop ${viaLoop.documents} and ${viaLoop.chunks}`);
    }
  });
}

async function main(): Promise<void> {
  const built = performance.now();
  const corpus = await buildCorpus(targetDocuments);
  console.log(`(corpus found and read in ${seconds(performance.now() - built)})`);
  if (corpus.documents.length < targetDocuments) throw new Error(`only ${corpus.documents.length} documents found, ${targetDocuments} wanted`);
  const dir = await mkdtemp(path.join(tmpdir(), 'auditflow-bench-ingest-'));
  try {
    await withBenchTemporal(dir, (temporal) => run(corpus, temporal.address));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
