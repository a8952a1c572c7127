// Choose a health watcher implementation from configuration.
import { FakeHealth } from './fake/index.ts';
import { HealthMonitor, type HealthMonitorOptions } from './http/health-monitor.ts';
import type { HealthWatcher } from './types.ts';

export type HealthConfig = ({ kind: 'http' } & HealthMonitorOptions) | ({ kind: 'fake' } & Pick<HealthMonitorOptions, 'onResult'>);

export function createHealthWatcher(config: { kind: 'fake' } & Pick<HealthMonitorOptions, 'onResult'>): FakeHealth;
export function createHealthWatcher(config: HealthConfig): HealthWatcher;
export function createHealthWatcher(config: HealthConfig): HealthWatcher {
  switch (config.kind) {
    case 'fake':
      return new FakeHealth(config.onResult);
    case 'http': {
      const { kind: _kind, ...options } = config;
      return new HealthMonitor(options);
    }
  }
}

export type { HealthReport, HealthWatcher, PreviousHealth, WatchedTask } from './types.ts';
export type { HealthMonitorOptions } from './http/health-monitor.ts';
export { FakeHealth, type FakeHealthPolicy } from './fake/index.ts';
