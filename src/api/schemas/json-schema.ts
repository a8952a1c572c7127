// JSON Schemas of the input bodies, for the OpenAPI document (the input side: defaults are
// shown, legacy and ignored Singularity fields are listed with their descriptions).
import { z } from 'zod';
import { schemas } from './catalog.ts';
import { meaningOf } from './meanings.ts';

export type JsonSchema = Record<string, unknown>;

export function toJsonSchema(options: { target?: 'draft-2020-12' | 'openapi-3.0' } = {}): Record<string, JsonSchema> {
  const entries: [string, z.ZodType][] = [
    ['RequestInput', schemas.request],
    ['DeployInput', schemas.deploy(true)],
    ['DeployBody', schemas.deployRequest(true)],
    ['ScaleBody', schemas.scale],
    ['PauseBody', schemas.pause],
    ['UnpauseBody', schemas.unpause],
    ['BounceBody', schemas.bounce],
    ['DeleteRequestBody', schemas.deleteRequest],
    ['RunBody', schemas.run],
    ['WebhookBody', schemas.webhook],
    ['UpdateDeployBody', schemas.updateDeploy],
    ['DeployDecisionBody', schemas.deployDecision],
    ['RollbackBody', schemas.rollback],
    ['KillTaskBody', schemas.killTask],
    ['HostChangeBody', schemas.hostChange],
    ['ExitCooldownBody', schemas.exitCooldown],
    ['SkipHealthchecksBody', schemas.skipHealthchecks],
    ['CreateTokenBody', schemas.createToken],
  ];
  return Object.fromEntries(
    entries.map(([name, schema]) => {
      const { $schema: _ignored, ...json } = z.toJSONSchema(schema, {
        io: 'input',
        // transforms/preprocess have no JSON Schema form; the input side is what callers send
        unrepresentable: 'any',
        target: options.target ?? 'draft-2020-12',
      }) as JsonSchema;
      describe(name, json, '');
      return [name, json];
    }),
  );
}

/** Fills absent descriptions from meanings.ts, walking properties and array items. */
function describe(schemaName: string, node: JsonSchema, path: string, depth = 0): void {
  if (depth > 8 || !node || typeof node !== 'object') return;
  for (const branch of (node.anyOf as JsonSchema[] | undefined) ?? []) describe(schemaName, branch, path, depth + 1);
  if (node.items && typeof node.items === 'object') describe(schemaName, node.items as JsonSchema, `${path}[]`, depth + 1);
  const props = node.properties as Record<string, JsonSchema> | undefined;
  for (const [k, child] of Object.entries(props ?? {})) {
    const childPath = path ? `${path}${path.endsWith('[]') ? '.' : '.'}${k}` : k;
    const meaning = meaningOf(schemaName, childPath);
    if (meaning && child.description === undefined) child.description = meaning;
    describe(schemaName, child, childPath, depth + 1);
  }
}
