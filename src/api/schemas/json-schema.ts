// JSON Schemas of the input bodies, for the OpenAPI document (the input side: defaults are
// shown, legacy and ignored Singularity fields are listed with their descriptions).
import { z } from 'zod';
import { schemas } from './catalog.ts';

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
      return [name, json];
    }),
  );
}
