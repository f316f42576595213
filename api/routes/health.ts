import { z } from 'zod';
import { checkReadiness } from '../../services/health';
import type { AppDeps } from '../app';
import { ApiRouter } from '../route';

const check = z.object({ status: z.enum(['healthy', 'unhealthy']), latencyMs: z.number(), error: z.string().optional() });
const readiness = z.object({ status: z.enum(['healthy', 'degraded', 'unhealthy']), checks: z.record(z.string(), check) });

export function healthRouter(deps: AppDeps): ApiRouter {
  return new ApiRouter()
    .add(
      {
        method: 'get',
        path: '/health',
        operationId: 'liveness',
        summary: 'Liveness: the process answers',
        tag: 'health',
        access: 'public',
        responses: { 200: { description: 'Alive', schema: z.object({ status: z.literal('ok') }) } },
      },
      (ctx) => {
        ctx.body = { status: 'ok' };
      },
    )
    .add(
      {
        method: 'get',
        path: '/health/ready',
        operationId: 'readiness',
        summary: 'Readiness: each dependency checked, with its latency',
        tag: 'health',
        access: 'public',
        responses: {
          200: { description: 'Ready (healthy or degraded)', schema: readiness },
          503: { description: 'A critical dependency is failing', schema: readiness },
        },
      },
      async (ctx) => {
        const result = await checkReadiness({ sequelize: deps.sequelize, temporalAddress: deps.config.TEMPORAL_ADDRESS });
        ctx.status = result.status === 'unhealthy' ? 503 : 200;
        ctx.body = result;
      },
    );
}
