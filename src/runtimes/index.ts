// Choose a runtime implementation from configuration.
import { createDockerRuntime, type DockerRuntime, type DockerRuntimeOptions } from './docker/docker-runtime.ts';
import { createFakeRuntime, type FakeRuntime, type FakeRuntimeOptions } from './fake/index.ts';
import { createProcessRuntime, type ProcessRuntime, type ProcessRuntimeOptions } from './process/index.ts';
import type { Runtime } from './types.ts';

export type RuntimeConfig =
  ({ kind: 'process' } & ProcessRuntimeOptions) | ({ kind: 'docker' } & DockerRuntimeOptions) | ({ kind: 'fake' } & FakeRuntimeOptions);

export function createRuntime(config: { kind: 'process' } & ProcessRuntimeOptions): ProcessRuntime;
export function createRuntime(config: { kind: 'docker' } & DockerRuntimeOptions): DockerRuntime;
export function createRuntime(config: { kind: 'fake' } & FakeRuntimeOptions): FakeRuntime;
export function createRuntime(config: RuntimeConfig): Runtime;
export function createRuntime(config: RuntimeConfig): Runtime {
  switch (config.kind) {
    case 'process': {
      const { kind: _kind, ...options } = config;
      return createProcessRuntime(options);
    }
    case 'docker': {
      const { kind: _kind, ...options } = config;
      return createDockerRuntime(options);
    }
    case 'fake': {
      const { kind: _kind, ...options } = config;
      return createFakeRuntime(options);
    }
  }
}

export type { Capacity, PortRange } from './ledger.ts';
export type { LogChunk, Runtime, RuntimeCapabilities, StartResult, TaskHandle, TaskSpec, TaskStatus } from './types.ts';
export type { FakeRuntime, FakeRuntimeOptions, FakeStartBehaviour } from './fake/index.ts';
export type { ProcessRuntime, ProcessRuntimeOptions, ProcessTaskHandle } from './process/index.ts';
export { createFakeRuntime } from './fake/index.ts';
export { createProcessRuntime } from './process/index.ts';
