/** The LLM gateway (see gateway.ts) and its settings, cache, usage and rate limits. */
export * from './gateway';
export * from './settings';
export { purgeExpiredLlmCache } from './cache';
export { aggregateUsage, assertLlmBudgetLeft, LlmBudgetExhaustedError, spentThisMonth, usageDimensions, type UsageDimension, type UsageGroup } from './usage';
