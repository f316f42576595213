/**
 * The LLM gateway's costs, in one run:
 *  - the built-in embedder's throughput (texts/s), called directly and through the gateway;
 *  - what the gateway adds to one model call (tenant settings, budget check, the key from the
 *    vault, the shared rate-limit bucket, the usage row) against the same call made with the
 *    provider client directly, both to one loopback server speaking OpenAI's wire format;
 *  - a cache hit's latency.
 * The texts are real prose nobody here wrote: sentences of the READMEs under node_modules.
 *
 *   npx tsx bench/llm.ts [--quick]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Tenant } from '../db';
import { createBuiltinProvider } from '../lib/llm/builtin';
import { createProvider } from '../lib/llm';
import { AuditScope } from '../services/audit';
import { chatCompletion, embedTexts, updateLlmSettings, type LlmCall } from '../services/llm';
import { createSecret } from '../services/secrets';
import { startLlmStandIn } from '../test/harness/llm-stand-in';
import { mean, median, withBenchDatabase } from './harness';

const quick = process.argv.includes('--quick');
const embedTextsWanted = quick ? 3_000 : 30_000;
const chatCalls = quick ? 60 : 600;
const API_KEY = 'sk-bench-0123456789abcdef0123456789abcdef';

/** Sentences of 5 to 60 words from README files under node_modules, up to `wanted`. */
function readmeSentences(wanted: number): string[] {
  const sentences: string[] = [];
  const root = path.resolve(__dirname, '../node_modules');
  const stack = [root];
  while (stack.length > 0 && sentences.length < wanted) {
    const dir = stack.pop()!;
    let entries: string[];
    try {
      entries = readdirSync(dir).sort();
    } catch {
      continue;
    }
    for (const name of entries) {
      const file = path.join(dir, name);
      if (/^readme\.md$/i.test(name)) {
        const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, ' ');
        for (const s of text.split(/(?<=[.!?])\s+|\n{2,}/)) {
          const words = s.trim().split(/\s+/).length;
          if (words >= 5 && words <= 60) sentences.push(s.trim());
        }
      } else if (!name.startsWith('.') && statSync(file, { throwIfNoEntry: false })?.isDirectory()) {
        stack.push(file);
      }
    }
  }
  return sentences.slice(0, wanted);
}

const perSecond = (count: number, ms: number) => ((count / ms) * 1000).toFixed(0);
const row = (label: string, xs: number[]) => `${label.padEnd(34)} mean ${mean(xs).toFixed(3).padStart(8)} ms   median ${median(xs).toFixed(3).padStart(8)} ms`;

async function main(): Promise<void> {
  const texts = readmeSentences(embedTextsWanted);
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
  console.log(`corpus: ${texts.length} sentences (${(bytes / 1024).toFixed(0)} KiB) from READMEs under node_modules${quick ? ' (quick)' : ''}`);

  const builtin = createBuiltinProvider();
  let started = performance.now();
  for (let i = 0; i < texts.length; i += 256) await builtin.embed({ model: 'hashing-384', inputs: texts.slice(i, i + 256) });
  const directMs = performance.now() - started;

  const standIn = await startLlmStandIn('openai');
  try {
    await withBenchDatabase({ LLM_ALLOWED_HOSTS: '127.0.0.1', LOG_LEVEL: 'silent' }, async ({ config, sequelize }) => {
      const deps = { sequelize, config };
      const tenant = await Tenant.create({ name: 'bench' });
      const call: LlmCall = { tenantId: tenant.id, mode: 'job', cache: 'bypass' };

      started = performance.now();
      for (let i = 0; i < texts.length; i += 256) await embedTexts(deps, call, texts.slice(i, i + 256));
      const gatewayMs = performance.now() - started;
      console.log(`built-in embedder, direct:          ${perSecond(texts.length, directMs)} texts/s`);
      console.log(`built-in embedder, through gateway: ${perSecond(texts.length, gatewayMs)} texts/s   ratio gateway/direct ${(gatewayMs / directMs).toFixed(2)}`);

      const system = new AuditScope({ type: 'system', id: 'bench', tenantId: tenant.id });
      await createSecret(deps, system, tenant.id, 'bench', { name: 'openai-key', value: API_KEY });
      await updateLlmSettings(deps, system, tenant.id, { chat: { provider: 'openai', model: 'gpt-4o-mini', baseUrl: standIn.url, apiKey: 'secret://openai-key', requestsPerMinute: 1_000_000 } }, 'bench');
      const client = createProvider({ provider: 'openai', baseUrl: standIn.url, apiKey: API_KEY });
      const request = (i: number) => ({ messages: [{ role: 'user' as const, content: `Summarise finding ${i} of the audit in one sentence.` }], maxTokens: 40 });

      const timed = async (work: () => Promise<unknown>) => {
        const t0 = performance.now();
        await work();
        return performance.now() - t0;
      };
      const direct: number[] = [];
      const gateway: number[] = [];
      const warmup = 10;
      for (let i = -warmup; i < chatCalls; i++) {
        // Alternate the order each round, so drift (GC, caches, CPU clocks) hits both alike.
        const runs = [
          async () => direct.push(await timed(() => client.chat({ ...request(i), model: 'gpt-4o-mini' }))),
          async () => gateway.push(await timed(() => chatCompletion(deps, call, request(i)))),
        ];
        for (const run of i % 2 === 0 ? runs : runs.reverse()) await run();
        if (i < 0) {
          direct.length = 0;
          gateway.length = 0;
        }
      }
      const cachedCall: LlmCall = { ...call, cache: 'use' };
      await chatCompletion(deps, cachedCall, request(-1));
      const cached: number[] = [];
      for (let i = 0; i < chatCalls; i++) cached.push(await timed(() => chatCompletion(deps, cachedCall, request(-1))));

      console.log(`chat completion, ${chatCalls} sequential calls to a loopback OpenAI-wire server:`);
      console.log(row('client directly', direct));
      console.log(row('through the gateway (no cache)', gateway));
      console.log(row('through the gateway (cache hit)', cached));
      console.log(
        `ratio gateway/direct: mean ${(mean(gateway) / mean(direct)).toFixed(2)}   median ${(median(gateway) / median(direct)).toFixed(2)}   ` +
          `overhead per call: median ${(median(gateway) - median(direct)).toFixed(3)} ms`,
      );
    });
  } finally {
    await standIn.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
