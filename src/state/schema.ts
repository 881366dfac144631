import { Ajv } from 'ajv';

/**
 * One JSON Schema for the two state files (`journal.json`, `records.json`): whatever is in the state
 * directory is checked against it on read, so a file of the wrong shape (hand-edited, truncated by a
 * full disk, written by a future version) is refused before any of it reaches the host — every name
 * that later becomes part of a sysfs path is held to the shape the kernel gives it.
 */
const ADDRESS = { type: 'string', pattern: '^([0-9a-fA-F]{4}|0000[0-9a-fA-F]{4}):[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\\.[0-7]$' } as const;
/** A driver or module name as the driver core names it (never `.`/`..`, no `/`). */
const NAME = { type: 'string', pattern: '^(?!\\.{1,2}$)[A-Za-z0-9_.:+-]{1,64}$' } as const;
const VTCONSOLE = { type: 'string', pattern: '^vtcon[0-9]{1,3}$' } as const;
const COUNT = { type: 'integer', minimum: 0 } as const;
const GROUP = { type: 'integer', minimum: 0, maximum: 2147483647 } as const;

const step = (kind: string, props: Record<string, unknown>, required: string[]) => ({
  type: 'object',
  additionalProperties: false,
  required: ['kind', ...required],
  properties: { kind: { const: kind }, ...props },
});

const STEP = {
  oneOf: [
    step('load-module', { module: NAME }, ['module']),
    step('unbind-vtconsole', { vtconsole: VTCONSOLE }, ['vtconsole']),
    step('bind-vtconsole', { vtconsole: VTCONSOLE }, ['vtconsole']),
    step('unbind-framebuffer', { device: NAME, driver: NAME }, ['device', 'driver']),
    step('bind-framebuffer', { device: NAME, driver: NAME }, ['device', 'driver']),
    step('set-override', { address: ADDRESS, driver: NAME }, ['address', 'driver']),
    step('clear-override', { address: ADDRESS }, ['address']),
    step('unbind-driver', { address: ADDRESS, driver: NAME }, ['address', 'driver']),
    step('probe', { address: ADDRESS, expect: NAME }, ['address']),
    step('verify-group', { group: GROUP, expect: { enum: ['vfio', 'host'] }, members: { type: 'array', items: ADDRESS }, nodeGone: { const: false } }, ['group', 'expect', 'members']),
  ],
};

const RECORD = {
  type: 'object',
  required: ['group', 'gpus', 'originalDrivers', 'framebuffers', 'vtconsoles'],
  properties: {
    group: GROUP,
    gpus: { type: 'array', items: ADDRESS },
    // Keys are addresses; null = the function had no driver.
    originalDrivers: { type: 'object', propertyNames: ADDRESS, additionalProperties: { anyOf: [NAME, { type: 'null' }] } },
    framebuffers: { type: 'array', items: { type: 'object', required: ['device', 'driver'], properties: { device: NAME, driver: NAME } } },
    vtconsoles: { type: 'array', items: VTCONSOLE },
  },
};

export const STATE_SCHEMA = {
  $id: 'https://handoff.dev/schemas/state.json',
  definitions: {
    step: STEP,
    record: RECORD,
    journal: {
      type: 'object',
      required: ['version', 'id', 'operation', 'pid', 'startedAt', 'preamble', 'groups'],
      properties: {
        version: { const: 1 },
        id: { type: 'string' },
        operation: { enum: ['prepare', 'release'] },
        pid: COUNT,
        startedAt: { type: 'number' },
        preamble: {
          type: 'object',
          required: ['steps', 'completed'],
          properties: { steps: { type: 'array', items: { $ref: '#/definitions/step' } }, completed: COUNT },
        },
        groups: {
          type: 'array',
          items: {
            type: 'object',
            required: ['group', 'record', 'steps', 'completed', 'status'],
            properties: {
              group: GROUP,
              record: { $ref: '#/definitions/record' },
              steps: { type: 'array', items: { $ref: '#/definitions/step' } },
              completed: COUNT,
              status: { enum: ['pending', 'running', 'done', 'failed', 'rolled-back'] },
              hung: { type: 'object', required: ['what', 'target', 'at'], properties: { what: { type: 'string' }, target: { type: 'string' }, at: { type: 'number' } } },
            },
          },
        },
      },
    },
    records: {
      type: 'object',
      required: ['groups'],
      properties: { version: { const: 1 }, groups: { type: 'array', items: { $ref: '#/definitions/record' } } },
    },
  },
} as const;

const ajv = new Ajv({ allErrors: false, strict: false });
ajv.addSchema(STATE_SCHEMA);
const journalValidator = ajv.getSchema(`${STATE_SCHEMA.$id}#/definitions/journal`)!;
const recordsValidator = ajv.getSchema(`${STATE_SCHEMA.$id}#/definitions/records`)!;

/** Undefined when `value` is a valid journal, else the first problem as "<json pointer> <message>". */
export function journalProblem(value: unknown): string | undefined {
  return problem(journalValidator, value, (v) => {
    // Beyond the schema: `completed` must be within the group's steps.
    const j = v as { preamble: { steps: unknown[]; completed: number }; groups: { steps: unknown[]; completed: number }[] };
    if (j.preamble.completed > j.preamble.steps.length) return '/preamble/completed exceeds the number of steps';
    const bad = j.groups.findIndex((g) => g.completed > g.steps.length);
    return bad >= 0 ? `/groups/${bad}/completed exceeds the number of steps` : undefined;
  });
}

/** Undefined when `value` is a valid records file, else the first problem. */
export function recordsProblem(value: unknown): string | undefined {
  return problem(recordsValidator, value);
}

function problem(validate: ReturnType<Ajv['compile']>, value: unknown, extra?: (v: unknown) => string | undefined): string | undefined {
  if (!validate(value)) {
    const e = validate.errors?.[0];
    return e ? `${e.instancePath || '/'} ${e.message ?? 'is invalid'}` : 'is invalid';
  }
  return extra?.(value);
}
