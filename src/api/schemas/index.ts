// Input schemas for the HTTP API: untrusted JSON → the normalised model types, or a 400.
export type { Issue } from './common.ts';
export { parseInput, type ParseOptions, type ParseResult } from './parse.ts';
export { DEPLOY_DEFAULTS, deploySchema, validateDeployForRequest, type DeploySchema } from './deploy.ts';
export { REQUEST_DEFAULTS, requestSchema } from './request.ts';
export { deployBodySchema, type DeployBody, type DeployBodySchema } from './bodies.ts';
export { IGNORED_DEPLOY_FIELDS, IGNORED_REQUEST_FIELDS, SINGULARITY_PROPERTIES } from './singularity-fields.ts';
export { toJsonSchema, type JsonSchema } from './json-schema.ts';
export { schemas } from './catalog.ts';
