export { createDockerRuntime, DockerRuntime, exitStatusOf, type DockerRuntimeOptions, type DockerTaskHandle } from './docker-runtime.ts';
export {
  DockerApiError,
  DockerClient,
  DockerUnreachableError,
  parseEndpoint,
  describeEndpoint,
  type DockerEndpoint,
  type DockerTls,
} from './client.ts';
export {
  LABELS,
  MIN_MEMORY_MB,
  SUPPORTED_DOCKER_PARAMETERS,
  parameterIssue,
  planContainer,
  normaliseParameterKey,
} from './container-config.ts';
