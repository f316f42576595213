import type { ChatMessage, JsonOutput } from './types';

/**
 * JSON answers from providers that cannot be handed a schema (Anthropic, and OpenAI-compatible
 * endpoints in `json_object` mode): the schema goes into the system prompt, and the answer is
 * cleaned of the Markdown fence models like to wrap JSON in. The gateway validates the object.
 */

export function jsonInstruction(json: JsonOutput): string {
  return [
    `Answer with only a JSON object named "${json.name}" that matches this JSON Schema, with no other text before or after it:`,
    JSON.stringify(json.schema),
  ].join('\n');
}

/** The messages with the JSON instruction appended to the system message (or as a new first one). */
export function withJsonInstruction(messages: ChatMessage[], json: JsonOutput): ChatMessage[] {
  const instruction = jsonInstruction(json);
  const systemIndex = messages.findIndex((message) => message.role === 'system');
  if (systemIndex === -1) return [{ role: 'system', content: instruction }, ...messages];
  return messages.map((message, index) => (index === systemIndex ? { ...message, content: `${message.content}\n\n${instruction}` } : message));
}

/** "```json\n{…}\n```" (with or without the language tag, with text around it) → "{…}". */
export function stripJsonFence(text: string): string {
  const fenced = /```(?:json|JSON)?[ \t]*\r?\n([\s\S]*?)\r?\n?```/.exec(text);
  return (fenced?.[1] ?? text).trim();
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Whether OpenAI's strict structured outputs accept this schema: every object closed
 * (`additionalProperties: false`) with all its properties required. Strict mode rejects any
 * other schema with a 400, so other schemas are sent non-strict (the gateway validates).
 */
export function isStrictCompatible(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.every(isStrictCompatible);
  if (!isRecord(schema)) return true;
  const properties = schema.properties;
  if (isRecord(properties) || schema.type === 'object') {
    if (schema.additionalProperties !== false) return false;
    const required = Array.isArray(schema.required) ? schema.required : [];
    if (isRecord(properties) && !Object.keys(properties).every((key) => required.includes(key))) return false;
  }
  const children = [
    ...(isRecord(properties) ? Object.values(properties) : []),
    ...(isRecord(schema.$defs) ? Object.values(schema.$defs) : []),
    ...(isRecord(schema.definitions) ? Object.values(schema.definitions) : []),
    schema.items,
    schema.anyOf,
  ];
  return children.every(isStrictCompatible);
}
